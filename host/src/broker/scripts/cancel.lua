-- Cancels a task that has not finished: it is archived with a 'cancelled'
-- error and its unique lock is released. If it is running, its lease is
-- revoked and its id is published on wasmq:{<queue>}:cancel, so the worker
-- running it stops its instance at once and drops the outcome. A flow
-- parent waiting for its children is cancelled the same way, and a flow
-- child's end is noted for its parent.
--
-- KEYS: the queue's keys (prelude.lua)
-- ARGV[1] -> task id
-- ARGV[2] -> the archive's size cap (tasks)
-- ARGV[3] -> the archive's age cap, ms
--
-- Returns the state the task was in, or false when there is no such task;
-- the error 'FINISHED' when it is already archived or completed.
local id = ARGV[1]
local state = redis.call('HGET', STATE, id)
if not state then
    return false
end
if state == 'archived' or state == 'completed' then
    return redis.error_reply('FINISHED')
end
local now = now_ms()
if state == 'pending' then
    unpend(id)
elseif state == 'active' then
    redis.call('ZREM', ACTIVE, id)
    redis.call('HDEL', OWNER, id)
    redis.call('PUBLISH', string.sub(PENDING, 1, -8) .. 'cancel', id)
elseif state == 'waiting' then
    redis.call('HDEL', WAITING, id)
end
redis.call('ZREM', SCHEDULED, id)
redis.call('ZREM', RETRY, id)
local attempt = tonumber(redis.call('HGET', ATTEMPTS, id) or '0')
local error = cjson.encode({
    kind = 'cancelled',
    message = 'cancelled while ' .. state,
    attempt = attempt,
    at_ms = now,
})
redis.call('HSET', ERROR, id, error)
note_flow_end(id, redis.call('HGET', MSG, id), 'archived', error, nil, now)
redis.call('ZADD', ARCHIVED, now, id)
redis.call('HSET', STATE, id, 'archived')
release_unique(unique_key_of(id), id)
trim_archive(now, tonumber(ARGV[2]), tonumber(ARGV[3]), 100)
return state
