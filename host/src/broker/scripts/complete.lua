-- Records a successful attempt: the task is kept as completed with its
-- result for its retention, or forgotten when the retention is 0. Its unique
-- lock is released either way.
--
-- KEYS: the queue's keys (prelude.lua)
-- ARGV[1] -> task id
-- ARGV[2] -> the worker's lease token
-- ARGV[3] -> retention, ms
-- ARGV[4] -> result bytes
-- ARGV[5] -> the task's unique key, or ''
--
-- Returns 1, or the error 'LEASE_LOST' when the worker no longer holds the
-- task (its lease expired and it was taken back).
local id, owner, retention = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('HGET', OWNER, id) ~= owner then
    return redis.error_reply('LEASE_LOST')
end
local now = now_ms()
redis.call('ZREM', ACTIVE, id)
release_unique(ARGV[5], id)
count_attempt('processed', now)
if retention <= 0 then
    forget(id)
    return 1
end
redis.call('ZADD', COMPLETED, now + retention, id)
redis.call('HSET', STATE, id, 'completed')
redis.call('HSET', RESULT, id, ARGV[4])
redis.call('HDEL', OWNER, id)
return 1
