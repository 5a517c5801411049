-- Forgets the tasks of this queue among ARGV that have finished (completed
-- or archived): children of a flow parent that was forgotten (its
-- retention ended, or it was deleted), so that a finished flow goes whole.
-- A task that has not finished is left alone, and so is one that is gone.
-- A forgotten task that is itself a flow parent leaves its own children in
-- this queue's outbox for the next trim (prelude.lua's forget_all).
--
-- KEYS: the queue's keys (prelude.lua)
-- ARGV: task ids
--
-- Returns how many tasks were forgotten.
local states = hmget(STATE, ARGV)
local finished = {}
for n, id in ipairs(ARGV) do
    if states[n] == 'completed' or states[n] == 'archived' then
        finished[#finished + 1] = id
    end
end
if #finished == 0 then
    return 0
end
for _, id in ipairs(finished) do
    release_unique(unique_key_of(id), id)
end
call_with('ZREM', COMPLETED, finished)
call_with('ZREM', ARCHIVED, finished)
forget_all(finished)
return #finished
