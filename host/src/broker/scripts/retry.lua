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
local recorded, moved, due, errors, earliest = held_with_delays(now)
if #moved > 0 then
    leave_active(moved, 'retry', errors)
    add_due(RETRY, due, earliest)
    count_attempt('failed', now, #moved)
end
return recorded
