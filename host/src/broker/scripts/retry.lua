-- Records a failed attempt that will be retried after a delay.
--
-- KEYS: the queue's keys (prelude.lua)
-- ARGV[1] -> task id
-- ARGV[2] -> the worker's lease token
-- ARGV[3] -> delay before the next attempt, ms
-- ARGV[4] -> the error (JSON)
--
-- Returns 1, or the error 'LEASE_LOST' when the worker no longer holds the task.
local id, owner = ARGV[1], ARGV[2]
if redis.call('HGET', OWNER, id) ~= owner then
    return redis.error_reply('LEASE_LOST')
end
local now = now_ms()
redis.call('ZREM', ACTIVE, id)
redis.call('ZADD', RETRY, now + tonumber(ARGV[3]), id)
count_attempt('failed', now)
redis.call('HSET', STATE, id, 'retry')
redis.call('HSET', ERROR, id, ARGV[4])
redis.call('HDEL', OWNER, id)
notify_if_earliest(RETRY, id)
return 1
