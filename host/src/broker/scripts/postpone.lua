-- Puts leased tasks of one queue back in scheduled for a while without
-- counting their attempts, each with a note as its last error, any number
-- at once: used when every slot of a task's concurrency limit is held and
-- its policy is to wait, and for tasks of plugins on probation when the
-- worker's park is full (a worker batches those that are ready together).
--
-- KEYS: the queue's keys (prelude.lua)
-- ARGV: four per task, task after task:
--   [i]   -> task id
--   [i+1] -> the worker's lease token
--   [i+2] -> delay before it is tried again, ms
--   [i+3] -> the note (JSON error record)
--
-- Returns one number per task, in order: 1 when put back, 0 when the worker
-- no longer holds the task (the task is left alone).
local now = now_ms()
local ids = {}
for i = 1, #ARGV, 4 do
    ids[#ids + 1] = ARGV[i]
end
local owners = hmget(OWNER, ids)
local attempts = hmget(ATTEMPTS, ids)
local postponed, moved, seen = {}, {}, {}
local due, notes, counts = {}, {}, {}
local earliest
for n, id in ipairs(ids) do
    local i = (n - 1) * 4 + 1
    -- The same id twice in a batch is put back once.
    if seen[id] or owners[n] ~= ARGV[i + 1] then
        postponed[n] = 0
    else
        seen[id] = true
        moved[#moved + 1] = id
        local at = now + tonumber(ARGV[i + 2])
        due[#due + 1] = at
        due[#due + 1] = id
        notes[#notes + 1] = id
        notes[#notes + 1] = ARGV[i + 3]
        counts[#counts + 1] = id
        counts[#counts + 1] = (tonumber(attempts[n]) or 1) - 1
        if earliest == nil or at < earliest then
            earliest = at
        end
        postponed[n] = 1
    end
end
if #moved > 0 then
    local first = redis.call('ZRANGE', SCHEDULED, 0, 0, 'WITHSCORES')
    call_with('ZREM', ACTIVE, moved)
    call_with('ZADD', SCHEDULED, due)
    call_with('HSET', STATE, each_with(moved, 'scheduled'))
    call_with('HSET', ERROR, notes)
    call_with('HDEL', OWNER, moved)
    call_with('HSET', ATTEMPTS, counts)
    -- Wake idle fetch loops when one of these is now the first due.
    if first[2] == nil or earliest < tonumber(first[2]) then
        redis.call('PUBLISH', NOTIFY, 'due')
    end
end
return postponed
