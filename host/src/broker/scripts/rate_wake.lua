-- Wakes the tasks of a queue waiting for their turn in a rate limit that
-- was just changed or removed: each scheduled task whose last error is a
-- `rate-limited` note naming the limit goes to pending (behind the tasks
-- already there, in the order of their turns), to be checked against the
-- limit as it is now. O(scheduled tasks due later): run when a limit
-- changes, never per task.
--
-- KEYS: the queue's keys (prelude.lua)
-- ARGV[1] -> the text the notes of the limit contain ('the rate limit of task type "x" (')
--
-- Returns how many tasks were woken.
local needle = ARGV[1]
local woken = 0
local waiting = redis.call('ZRANGEBYSCORE', SCHEDULED, now_ms(), '+inf')
for _, id in ipairs(waiting) do
    local raw = redis.call('HGET', ERROR, id)
    if raw then
        local ok, note = pcall(cjson.decode, raw)
        if ok and type(note) == 'table' and note.kind == 'rate-limited'
            and type(note.message) == 'string'
            and string.find(note.message, needle, 1, true) then
            redis.call('ZREM', SCHEDULED, id)
            redis.call('HSET', STATE, id, 'pending')
            push_pending({id}, false, true)
            woken = woken + 1
        end
    end
end
if woken > 0 then
    redis.call('PUBLISH', NOTIFY, 'pending')
end
return woken
