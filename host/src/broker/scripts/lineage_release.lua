-- Gives back a descendant's place in its tree (see lineage_reserve.lua)
-- when its enqueue was refused, so a refused follow-up does not count.
--
-- KEYS[1] -> wasmq:{tree:<root>}:info     HASH (see lineage_reserve.lua)
-- KEYS[2] -> wasmq:{tree:<root>}:members  ZSET '<queue> <id>' -> depth
-- ARGV[1] -> the descendant, '<queue> <id>'
--
-- Returns 1 when a reservation was released, 0 when there was none.
local info, members = KEYS[1], KEYS[2]
if redis.call('ZREM', members, ARGV[1]) == 0 then
    return 0
end
if tonumber(redis.call('HGET', info, 'descendants') or '0') > 0 then
    redis.call('HINCRBY', info, 'descendants', -1)
end
return 1
