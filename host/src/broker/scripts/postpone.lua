-- Puts leased tasks of one queue back in scheduled for a while without
-- counting their attempts, each with a note as its last error, any number
-- at once: used when every slot of a task's concurrency limit is held and
-- its policy is to wait, for tasks of plugins on probation when the
-- worker's park is full, and for tasks of plugins on trial whose attempts
-- being tried do not end (a worker batches those that are ready together).
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
local postponed, moved, due, notes, earliest = held_with_delays(now)
if #moved > 0 then
    -- The attempt the task was leased for is not counted.
    local attempts = hmget(ATTEMPTS, moved)
    local counts = {}
    for k, id in ipairs(moved) do
        counts[#counts + 1] = id
        counts[#counts + 1] = (tonumber(attempts[k]) or 1) - 1
    end
    leave_active(moved, 'scheduled', notes)
    add_due(SCHEDULED, due, earliest)
    call_with('HSET', ATTEMPTS, counts)
end
return postponed
