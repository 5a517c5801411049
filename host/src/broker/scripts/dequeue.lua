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
--
-- An idle queue (nothing pending, scheduled or retried) costs one command:
-- it answers {0, -1, 0} at once (no time, no due task, not paused).
if redis.call('EXISTS', PENDING, SCHEDULED, RETRY, GROUPS) == 0 then
    return {0, -1, 0}
end
local now = now_ms()
local limit, lease_ms, owner = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local forward_budget = tonumber(ARGV[4])

for _, zset in ipairs({SCHEDULED, RETRY}) do
    local due = redis.call('ZRANGEBYSCORE', zset, '-inf', now, 'LIMIT', 0, forward_budget)
    if #due > 0 then
        call_with('ZREM', zset, due)
        call_with('HSET', STATE, each_with(due, 'pending'))
        push_pending(due, false, true)
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

local ids
if redis.call('EXISTS', GROUPS) == 1 then
    ids = take_in_turn(limit)
else
    ids = redis.call('RPOP', PENDING, limit)
end
if not ids or #ids == 0 then
    return reply
end
-- One command per step for the whole batch; an id whose record is gone
-- (deleted while pending) is dropped.
local messages = hmget(MSG, ids)
local leased, leased_messages, expiries = {}, {}, {}
for n, id in ipairs(ids) do
    if messages[n] then
        leased[#leased + 1] = id
        leased_messages[#leased_messages + 1] = messages[n]
        expiries[#expiries + 1] = now + lease_ms
        expiries[#expiries + 1] = id
    end
end
if #leased == 0 then
    return reply
end
pin_hashtables({STATE, OWNER, ATTEMPTS})
call_with('ZADD', ACTIVE, expiries)
call_with('HSET', STATE, each_with(leased, 'active'))
call_with('HSET', OWNER, each_with(leased, owner))
local attempts, counted, attempt_fields = hmget(ATTEMPTS, leased), {}, {}
for i, id in ipairs(leased) do
    -- An id leased twice in one batch (never expected) counts twice; HSET
    -- keeps the last, highest count.
    attempts[i] = (counted[id] or tonumber(attempts[i]) or 0) + 1
    counted[id] = attempts[i]
    attempt_fields[#attempt_fields + 1] = id
    attempt_fields[#attempt_fields + 1] = attempts[i]
end
call_with('HSET', ATTEMPTS, attempt_fields)
for i, id in ipairs(leased) do
    reply[#reply + 1] = id
    reply[#reply + 1] = leased_messages[i]
    reply[#reply + 1] = attempts[i]
end
return reply
