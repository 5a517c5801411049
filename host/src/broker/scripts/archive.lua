-- Records a failed attempt that ends the task: it is archived with its
-- error, its unique lock is released, and the archive is trimmed.
--
-- KEYS: the queue's keys (prelude.lua)
-- ARGV[1] -> task id
-- ARGV[2] -> the worker's lease token
-- ARGV[3] -> the error (JSON)
-- ARGV[4] -> the task's unique key, or ''
-- ARGV[5] -> the archive's size cap (tasks)
-- ARGV[6] -> the archive's age cap, ms
--
-- Returns 1, or the error 'LEASE_LOST' when the worker no longer holds the task.
local id, owner = ARGV[1], ARGV[2]
if redis.call('HGET', OWNER, id) ~= owner then
    return redis.error_reply('LEASE_LOST')
end
local now = now_ms()
redis.call('ZREM', ACTIVE, id)
redis.call('ZADD', ARCHIVED, now, id)
count_attempt('failed', now)
redis.call('HSET', STATE, id, 'archived')
redis.call('HSET', ERROR, id, ARGV[3])
redis.call('HDEL', OWNER, id)
release_unique(ARGV[4], id)
trim_archive(now, tonumber(ARGV[5]), tonumber(ARGV[6]), 100)
return 1
