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
local ids = {}
for i = 1, #ARGV, 5 do
    ids[#ids + 1] = ARGV[i]
end
local owners = hmget(OWNER, ids)
local recorded, done, forgotten, seen = {}, {}, {}, {}
local kept, expiries, results = {}, {}, {}
for n, id in ipairs(ids) do
    local i = (n - 1) * 5 + 1
    local owner, retention = ARGV[i + 1], tonumber(ARGV[i + 2])
    -- The same id twice in a batch is recorded once.
    if seen[id] or owners[n] ~= owner then
        recorded[n] = 0
    else
        seen[id] = true
        done[#done + 1] = id
        release_unique(ARGV[i + 4], id)
        if retention <= 0 then
            forgotten[#forgotten + 1] = id
        else
            kept[#kept + 1] = id
            expiries[#expiries + 1] = now + retention
            expiries[#expiries + 1] = id
            results[#results + 1] = id
            results[#results + 1] = ARGV[i + 3]
        end
        recorded[n] = 1
    end
end
if #done > 0 then
    call_with('ZREM', ACTIVE, done)
    forget_all(forgotten)
    if #kept > 0 then
        call_with('ZADD', COMPLETED, expiries)
        call_with('HSET', STATE, each_with(kept, 'completed'))
        call_with('HSET', RESULT, results)
        call_with('HDEL', OWNER, kept)
    end
    count_attempt('processed', now, #done)
end
return recorded
