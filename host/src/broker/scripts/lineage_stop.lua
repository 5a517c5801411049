-- Marks a tree of follow-up tasks stopped: lineage_reserve.lua refuses
-- every further descendant of its root. The first stop's time is kept.
--
-- KEYS[1] -> wasmq:{tree:<root>}:info     HASH (see lineage_reserve.lua)
-- KEYS[2] -> wasmq:{tree:<root>}:members  ZSET '<queue> <id>' -> depth
-- ARGV[1] -> how long the tree's keys live from now, ms
--
-- Returns when the tree was stopped (server ms).
local info, members = KEYS[1], KEYS[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSETNX', info, 'stopped', now)
redis.call('PEXPIRE', info, tonumber(ARGV[1]))
redis.call('PEXPIRE', members, tonumber(ARGV[1]))
return tonumber(redis.call('HGET', info, 'stopped'))
