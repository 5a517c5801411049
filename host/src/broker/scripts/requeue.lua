-- Puts a leased task back at the head of pending without counting the
-- attempt: used when a worker shuts down before the task finished.
--
-- KEYS: the queue's keys (prelude.lua)
-- ARGV[1] -> task id
-- ARGV[2] -> the worker's lease token
--
-- Returns 1, or the error 'LEASE_LOST' when the worker no longer holds the task.
local id, owner = ARGV[1], ARGV[2]
if redis.call('HGET', OWNER, id) ~= owner then
    return redis.error_reply('LEASE_LOST')
end
redis.call('ZREM', ACTIVE, id)
redis.call('RPUSH', PENDING, id)
redis.call('HSET', STATE, id, 'pending')
redis.call('HDEL', OWNER, id)
redis.call('HINCRBY', ATTEMPTS, id, -1)
redis.call('PUBLISH', NOTIFY, 'pending')
return 1
