-- Puts a leased task back in scheduled for a while without counting the
-- attempt, with a note as its last error: used when every slot of its
-- concurrency limit is held and its policy is to wait.
--
-- KEYS: the queue's keys (prelude.lua)
-- ARGV[1] -> task id
-- ARGV[2] -> the worker's lease token
-- ARGV[3] -> delay before it is tried again, ms
-- ARGV[4] -> the note (JSON error record)
--
-- Returns 1, or the error 'LEASE_LOST' when the worker no longer holds the task.
local id, owner = ARGV[1], ARGV[2]
if redis.call('HGET', OWNER, id) ~= owner then
    return redis.error_reply('LEASE_LOST')
end
redis.call('ZREM', ACTIVE, id)
redis.call('ZADD', SCHEDULED, now_ms() + tonumber(ARGV[3]), id)
redis.call('HSET', STATE, id, 'scheduled')
redis.call('HSET', ERROR, id, ARGV[4])
redis.call('HDEL', OWNER, id)
redis.call('HINCRBY', ATTEMPTS, id, -1)
notify_if_earliest(SCHEDULED, id)
return 1
