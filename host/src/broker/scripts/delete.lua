-- Deletes a task that is not running, whatever its state, with its record
-- and its unique lock. A running task must be cancelled first.
--
-- KEYS: the queue's keys (prelude.lua)
-- ARGV[1] -> task id
--
-- Returns the state the task was in, or false when there is no such task;
-- the error 'ACTIVE' when the task is running.
local id = ARGV[1]
local state = redis.call('HGET', STATE, id)
if not state then
    return false
end
if state == 'active' then
    return redis.error_reply('ACTIVE')
end
if state == 'pending' then
    redis.call('LREM', PENDING, 0, id)
end
redis.call('ZREM', SCHEDULED, id)
redis.call('ZREM', RETRY, id)
redis.call('ZREM', ARCHIVED, id)
redis.call('ZREM', COMPLETED, id)
release_unique(unique_key_of(id), id)
forget(id)
return state
