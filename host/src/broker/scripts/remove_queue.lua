-- Removes a queue and everything in it. Without force, refuses a queue
-- that still has unfinished tasks (flow parents waiting included). The
-- caller reports the unfinished flow children and batch tasks it removes
-- to their parents and batches (broker/flows.rs).
--
-- KEYS: the queue's keys (prelude.lua)
-- ARGV[1] -> '1' to remove it whatever it holds
--
-- Returns the number of tasks it held; the error 'NOT_EMPTY' when it holds
-- unfinished tasks and ARGV[1] is not '1'.
local unfinished = redis.call('LLEN', PENDING) + tonumber(redis.call('GET', GROUPED) or '0') + redis.call('ZCARD', ACTIVE)
    + redis.call('ZCARD', SCHEDULED) + redis.call('ZCARD', RETRY) + redis.call('HLEN', WAITING)
if unfinished > 0 and ARGV[1] ~= '1' then
    return redis.error_reply('NOT_EMPTY')
end
local tasks = redis.call('HLEN', MSG)
for _, key in ipairs(KEYS) do
    redis.call('DEL', key)
end
for _, group in ipairs(redis.call('LRANGE', GROUPS, 0, -1)) do
    if group ~= '' then
        redis.call('DEL', group_pending(group))
    end
end
redis.call('DEL', GROUPS, GROUPED, GROUP_OF, PROGRESS, AGGREGATED)
return tasks
