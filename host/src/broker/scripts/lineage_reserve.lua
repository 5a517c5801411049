-- Reserves a place in a tree of follow-up tasks for one new descendant of
-- its root, before the descendant is enqueued (by enqueue.lua, in its own
-- queue's slot). Not part of a queue: its keys are the tree's, all under
-- the hash tag {tree:<root queue>/<root id>}, so they share one slot
-- whatever queues the descendants go to.
--
-- KEYS[1] -> wasmq:{tree:<root>}:info     HASH descendants (reserved), depth (deepest reserved),
--                                         stopped (server ms, when an operator stopped the tree)
-- KEYS[2] -> wasmq:{tree:<root>}:members  ZSET '<queue> <id>' of each descendant -> its depth
-- ARGV[1] -> the descendant, '<queue> <id>'
-- ARGV[2] -> its depth below the root (1 for a child of the root)
-- ARGV[3] -> the most descendants the root may have
-- ARGV[4] -> how long the tree's keys live after its last change, ms
--
-- Returns {'ok', descendants} when reserved (or already reserved for this
-- descendant), {'stopped', stopped at} when the tree was stopped, or
-- {'full', descendants} when the root has its most descendants.
local info, members = KEYS[1], KEYS[2]
local member, depth, most, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local stopped = redis.call('HGET', info, 'stopped')
if stopped then
    return {'stopped', tonumber(stopped)}
end
local count = tonumber(redis.call('HGET', info, 'descendants') or '0')
if redis.call('ZSCORE', members, member) then
    return {'ok', count}
end
if count >= most then
    return {'full', count}
end
redis.call('ZADD', members, depth, member)
count = redis.call('HINCRBY', info, 'descendants', 1)
if depth > tonumber(redis.call('HGET', info, 'depth') or '0') then
    redis.call('HSET', info, 'depth', depth)
end
redis.call('PEXPIRE', info, ttl)
redis.call('PEXPIRE', members, ttl)
return {'ok', count}
