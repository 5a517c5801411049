-- Records failed attempts of tasks of one queue that will be retried after
-- a delay, any number at once (a worker batches the failures that are ready
-- together): each task goes to retry, due after its delay, with its error.
--
-- KEYS: the queue's keys (prelude.lua)
-- ARGV: four per task, task after task:
--   [i]   -> task id
--   [i+1] -> the worker's lease token
--   [i+2] -> delay before the next attempt, ms
--   [i+3] -> the error (JSON)
--
-- Returns one number per task, in order: 1 when recorded, 0 when the worker
-- no longer holds the task (the task is left alone).
local now = now_ms()
local ids = {}
for i = 1, #ARGV, 4 do
    ids[#ids + 1] = ARGV[i]
end
local owners = hmget(OWNER, ids)
local recorded, moved, seen = {}, {}, {}
local due, errors = {}, {}
local earliest
for n, id in ipairs(ids) do
    local i = (n - 1) * 4 + 1
    -- The same id twice in a batch is recorded once.
    if seen[id] or owners[n] ~= ARGV[i + 1] then
        recorded[n] = 0
    else
        seen[id] = true
        moved[#moved + 1] = id
        local at = now + tonumber(ARGV[i + 2])
        due[#due + 1] = at
        due[#due + 1] = id
        errors[#errors + 1] = id
        errors[#errors + 1] = ARGV[i + 3]
        if earliest == nil or at < earliest then
            earliest = at
        end
        recorded[n] = 1
    end
end
if #moved > 0 then
    local first = redis.call('ZRANGE', RETRY, 0, 0, 'WITHSCORES')
    call_with('ZREM', ACTIVE, moved)
    call_with('ZADD', RETRY, due)
    call_with('HSET', STATE, each_with(moved, 'retry'))
    call_with('HSET', ERROR, errors)
    call_with('HDEL', OWNER, moved)
    count_attempt('failed', now, #moved)
    -- Wake idle fetch loops when one of these is now the first due.
    if first[2] == nil or earliest < tonumber(first[2]) then
        redis.call('PUBLISH', NOTIFY, 'due')
    end
end
return recorded
