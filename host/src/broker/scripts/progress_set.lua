-- Keeps a running task's latest progress report, unless the task is gone
-- (a late report of a deleted task leaves nothing behind).
--
-- KEYS: the queue's keys (prelude.lua)
-- ARGV[1] -> task id
-- ARGV[2] -> the report (JSON: done, note, attempt, at_ms)
--
-- Returns 1 when kept, 0 when the task is gone.
if redis.call('HEXISTS', STATE, ARGV[1]) == 0 then
    return 0
end
redis.call('HSET', PROGRESS, ARGV[1], ARGV[2])
return 1
