-- Leases up to ARGV[1] pending tasks to a worker, after moving due scheduled
-- and retry tasks to pending.
--
-- KEYS: the queue's keys (prelude.lua)
-- ARGV[1] -> how many tasks to lease at most
-- ARGV[2] -> lease duration, ms
-- ARGV[3] -> the worker's lease token
-- ARGV[4] -> how many due tasks to move per set and call at most
--
-- Returns {now, next due, paused, id, message, attempt, id, message, attempt, ...}
--   now:       the server's clock, ms
--   next due:  when the earliest scheduled or retry task falls due, ms, or -1
--   paused:    1 if the queue is paused (then no task is leased), else 0
local now = now_ms()
local limit, lease_ms, owner = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local forward_budget = tonumber(ARGV[4])

for _, zset in ipairs({SCHEDULED, RETRY}) do
    local due = redis.call('ZRANGEBYSCORE', zset, '-inf', now, 'LIMIT', 0, forward_budget)
    for _, id in ipairs(due) do
        redis.call('ZREM', zset, id)
        redis.call('LPUSH', PENDING, id)
        redis.call('HSET', STATE, id, 'pending')
    end
end

local next_due = -1
for _, zset in ipairs({SCHEDULED, RETRY}) do
    local first = redis.call('ZRANGE', zset, 0, 0, 'WITHSCORES')
    if first[2] then
        local at = tonumber(first[2])
        if next_due < 0 or at < next_due then
            next_due = at
        end
    end
end

local reply = {now, next_due, 0}
if redis.call('EXISTS', PAUSED) == 1 then
    reply[3] = 1
    return reply
end

local ids = redis.call('RPOP', PENDING, limit)
if not ids then
    return reply
end
for _, id in ipairs(ids) do
    local msg = redis.call('HGET', MSG, id)
    -- An id whose record is gone (deleted while pending) is dropped.
    if msg then
        redis.call('ZADD', ACTIVE, now + lease_ms, id)
        redis.call('HSET', STATE, id, 'active')
        redis.call('HSET', OWNER, id, owner)
        local attempt = redis.call('HINCRBY', ATTEMPTS, id, 1)
        reply[#reply + 1] = id
        reply[#reply + 1] = msg
        reply[#reply + 1] = attempt
    end
end
return reply
