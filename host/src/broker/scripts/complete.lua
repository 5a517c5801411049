-- Records successful attempts of tasks of one queue, any number at once (a
-- worker batches the completions that are ready together): each task is
-- kept as completed with its result for its retention, or forgotten when the
-- retention is 0. Its unique lock is released either way.
--
-- KEYS: the queue's keys (prelude.lua)
-- ARGV: five per task, task after task:
--   [i]   -> task id
--   [i+1] -> the worker's lease token
--   [i+2] -> retention, ms
--   [i+3] -> result bytes
--   [i+4] -> the task's unique key, or ''
--
-- Returns one number per task, in order: 1 when recorded, 0 when the worker
-- no longer holds the task (its lease expired and it was taken back; the
-- task is left alone).
local now = now_ms()
local recorded = {}
local processed = 0
for i = 1, #ARGV, 5 do
    local id, owner, retention = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
    if redis.call('HGET', OWNER, id) ~= owner then
        recorded[#recorded + 1] = 0
    else
        redis.call('ZREM', ACTIVE, id)
        release_unique(ARGV[i + 4], id)
        processed = processed + 1
        if retention <= 0 then
            forget(id)
        else
            redis.call('ZADD', COMPLETED, now + retention, id)
            redis.call('HSET', STATE, id, 'completed')
            redis.call('HSET', RESULT, id, ARGV[i + 3])
            redis.call('HDEL', OWNER, id)
        end
        recorded[#recorded + 1] = 1
    end
end
if processed > 0 then
    count_attempt('processed', now, processed)
end
return recorded
