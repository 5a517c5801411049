-- Records failed attempts that end their tasks, for tasks of one queue, any
-- number at once (a worker batches the failures that are ready together):
-- each task is archived with its error and its unique lock released; then
-- the archive is trimmed to its caps.
--
-- KEYS: the queue's keys (prelude.lua)
-- ARGV[1] -> the archive's size cap (tasks)
-- ARGV[2] -> the archive's age cap, ms
-- ARGV[3..]: four per task, task after task:
--   [i]   -> task id
--   [i+1] -> the worker's lease token
--   [i+2] -> the error (JSON)
--   [i+3] -> the task's unique key, or ''
--
-- Returns one number per task, in order: 1 when recorded, 0 when the worker
-- no longer holds the task (the task is left alone).
local FIRST = 3
local now = now_ms()
local ids = {}
for i = FIRST, #ARGV, 4 do
    ids[#ids + 1] = ARGV[i]
end
local owners = hmget(OWNER, ids)
local recorded, moved, seen = {}, {}, {}
local archived, errors = {}, {}
for n, id in ipairs(ids) do
    local i = FIRST + (n - 1) * 4
    -- The same id twice in a batch is recorded once.
    if seen[id] or owners[n] ~= ARGV[i + 1] then
        recorded[n] = 0
    else
        seen[id] = true
        moved[#moved + 1] = id
        archived[#archived + 1] = now
        archived[#archived + 1] = id
        errors[#errors + 1] = id
        errors[#errors + 1] = ARGV[i + 2]
        release_unique(ARGV[i + 3], id)
        recorded[n] = 1
    end
end
if #moved > 0 then
    leave_active(moved, 'archived', errors)
    call_with('ZADD', ARCHIVED, archived)
    count_attempt('failed', now, #moved)
    -- Trimming drops at most this many, so that one call stays short; the
    -- next archiving (or the worker's trim) goes on where it stopped.
    trim_archive(now, tonumber(ARGV[1]), tonumber(ARGV[2]), 100 + #moved)
end
return recorded
