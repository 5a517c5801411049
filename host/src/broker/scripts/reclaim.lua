-- Takes back tasks whose lease expired: their worker crashed, froze or lost
-- Redis. Each goes back to the head of pending with a 'lease-expired' error,
-- or to the archive when that attempt was its last (a flow child's end is
-- then noted for its parent).
--
-- KEYS: the queue's keys (prelude.lua)
-- ARGV[1] -> how many tasks to take back at most
-- ARGV[2] -> the archive's size cap (tasks)
-- ARGV[3] -> the archive's age cap, ms
--
-- Returns the ids taken back.
if redis.call('EXISTS', ACTIVE) == 0 then
    return {}
end
local now = now_ms()
local expired = redis.call('ZRANGEBYSCORE', ACTIVE, '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(expired) do
    redis.call('ZREM', ACTIVE, id)
    local owner = redis.call('HGET', OWNER, id) or '?'
    redis.call('HDEL', OWNER, id)
    local msg = redis.call('HGET', MSG, id)
    if msg then
        local decoded = cjson.decode(msg)
        local attempt = tonumber(redis.call('HGET', ATTEMPTS, id) or '1')
        local err = cjson.encode({
            kind = 'lease-expired',
            message = 'the worker running it (lease ' .. owner .. ') stopped renewing its lease',
            attempt = attempt,
            at_ms = now,
        })
        redis.call('HSET', ERROR, id, err)
        count_attempt('failed', now)
        if attempt > tonumber(decoded.max_retry) then
            redis.call('ZADD', ARCHIVED, now, id)
            redis.call('HSET', STATE, id, 'archived')
            if type(decoded.unique_key) == 'string' then
                release_unique(decoded.unique_key, id)
            end
            note_flow_end(id, msg, 'archived', err, nil, now)
        else
            redis.call('HSET', STATE, id, 'pending')
            push_pending({id}, true, true)
        end
    else
        forget(id)
    end
end
if #expired > 0 then
    redis.call('PUBLISH', NOTIFY, 'pending')
    trim_archive(now, tonumber(ARGV[2]), tonumber(ARGV[3]), 100)
end
return expired
