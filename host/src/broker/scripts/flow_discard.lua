-- Takes back the nodes of a flow that a failed enqueue had already written
-- in this queue (another queue refused one of its ids): each is removed
-- with its record, whatever its state, unless it is running (a leaf a
-- worker took meanwhile is left to end; its report finds no parent).
--
-- KEYS: the queue's keys (prelude.lua)
-- ARGV[1..] -> task ids
--
-- Returns how many were removed.
local removed = {}
for _, id in ipairs(ARGV) do
    local state = redis.call('HGET', STATE, id)
    if state and state ~= 'active' then
        unpend(id)
        redis.call('ZREM', SCHEDULED, id)
        removed[#removed + 1] = id
    end
end
forget_all(removed, true)
return #removed
