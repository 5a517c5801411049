-- Records, on the parent's queue, how one of a flow parent's children
-- ended, once per child however often the report is delivered: a report
-- whose child already has an outcome changes nothing. The parent then
--   * fails at once (archived with the child's error, and its own end
--     noted for its parent in turn) when a child failed under the
--     'fail-parent' policy;
--   * becomes pending, exactly once, when its last child ended, at the
--     head of the queue (it runs next: a flow under way finishes before
--     tasks enqueued after it start);
--   * is left as it is when it no longer waits (cancelled, failed by
--     another child, deleted): the outcome is still recorded for the tree.
--
-- KEYS: the parent queue's keys (prelude.lua)
-- ARGV[1] -> the parent's id
-- ARGV[2] -> the child's index among the parent's children
-- ARGV[3] -> the outcome (JSON: queue, id, type, state, error, policy)
-- ARGV[4] -> '1' when the child completed (ARGV[5] is its result), else ''
-- ARGV[5] -> the child's result bytes
-- ARGV[6] -> '1' when the parent is to fail (a failed child under 'fail-parent'), else ''
-- ARGV[7] -> the parent's error if it fails (JSON)
-- ARGV[8] -> the archive's size cap (tasks)
-- ARGV[9] -> the archive's age cap, ms
--
-- Returns one of 'duplicate', 'no-parent', 'recorded', 'parent-ready',
-- 'parent-failed'.
local parent, index = ARGV[1], ARGV[2]
local result
if ARGV[4] == '1' then
    result = ARGV[5]
end
local status = child_ended(parent, index, ARGV[3], result, ARGV[6] == '1')
if status == 'ready' then
    return 'parent-ready'
elseif status ~= 'fail' then
    return status
end
local now = now_ms()
redis.call('HDEL', WAITING, parent)
redis.call('HSET', ERROR, parent, ARGV[7])
redis.call('ZADD', ARCHIVED, now, parent)
redis.call('HSET', STATE, parent, 'archived')
release_unique(unique_key_of(parent), parent)
note_flow_end(parent, redis.call('HGET', MSG, parent), 'archived', ARGV[7], nil, now)
trim_archive(now, tonumber(ARGV[8]), tonumber(ARGV[9]), 100)
return 'parent-failed'
