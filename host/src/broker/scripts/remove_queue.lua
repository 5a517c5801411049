-- Removes a queue and everything in it. Without force, refuses a queue
-- that still has unfinished tasks.
--
-- KEYS: the queue's keys (prelude.lua)
-- ARGV[1] -> '1' to remove it whatever it holds
--
-- Returns the number of tasks it held; the error 'NOT_EMPTY' when it holds
-- unfinished tasks and ARGV[1] is not '1'.
local unfinished = redis.call('LLEN', PENDING) + redis.call('ZCARD', ACTIVE)
    + redis.call('ZCARD', SCHEDULED) + redis.call('ZCARD', RETRY)
if unfinished > 0 and ARGV[1] ~= '1' then
    return redis.error_reply('NOT_EMPTY')
end
local tasks = redis.call('HLEN', MSG)
for _, key in ipairs(KEYS) do
    redis.call('DEL', key)
end
return tasks
