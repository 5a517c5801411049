-- Deletes tasks that are not running, with their records and unique locks.
-- A flow child that had not ended yet has its end ('deleted') noted for its
-- parent, so no parent waits for a task that no longer exists.
--
-- KEYS: the queue's keys (prelude.lua)
-- ARGV[1] -> the state the tasks must be in, or '' for any state but active
-- ARGV[2..] -> task ids
--
-- Returns, per id, the state it was deleted from; 'active' when it runs
-- (not deleted), or false when there is no such task or it is in another
-- state than ARGV[1].
local wanted = ARGV[1]
local replies = {}
for i = 2, #ARGV do
    local id = ARGV[i]
    local state = redis.call('HGET', STATE, id)
    if not state or (wanted ~= '' and state ~= wanted) then
        replies[#replies + 1] = false
    elseif state == 'active' then
        replies[#replies + 1] = 'active'
    else
        if state == 'pending' then
            unpend(id)
        end
        redis.call('ZREM', SCHEDULED, id)
        redis.call('ZREM', RETRY, id)
        redis.call('ZREM', ARCHIVED, id)
        redis.call('ZREM', COMPLETED, id)
        release_unique(unique_key_of(id), id)
        if state ~= 'completed' and state ~= 'archived' then
            note_flow_end(id, redis.call('HGET', MSG, id), 'deleted', nil, nil, now_ms())
        end
        forget(id)
        replies[#replies + 1] = state
    end
end
return replies
