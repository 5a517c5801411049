-- Archives tasks that wait (pending, scheduled, retry, or a flow parent
-- waiting for its children) without running them, releasing their unique
-- locks; a flow child's end is noted for its parent. A running task must
-- be cancelled instead.
--
-- KEYS: the queue's keys (prelude.lua)
-- ARGV[1] -> the state the tasks must be in, or '' for any of those three
-- ARGV[2] -> the archive's size cap (tasks)
-- ARGV[3] -> the archive's age cap, ms
-- ARGV[4..] -> task ids
--
-- Returns, per id, the state it left, or false when there is no such task
-- or it is in another state.
local wanted = ARGV[1]
local waiting = {pending = true, scheduled = SCHEDULED, retry = RETRY, waiting = WAITING}
local now = now_ms()
local replies = {}
for i = 4, #ARGV do
    local id = ARGV[i]
    local state = redis.call('HGET', STATE, id)
    if state and waiting[state] and (wanted == '' or wanted == state) then
        if state == 'pending' then
            unpend(id)
        elseif state == 'waiting' then
            redis.call('HDEL', WAITING, id)
        else
            redis.call('ZREM', waiting[state], id)
        end
        redis.call('ZADD', ARCHIVED, now, id)
        redis.call('HSET', STATE, id, 'archived')
        release_unique(unique_key_of(id), id)
        note_flow_end(id, redis.call('HGET', MSG, id), 'archived', redis.call('HGET', ERROR, id) or nil, nil, now)
        replies[#replies + 1] = state
    else
        replies[#replies + 1] = false
    end
end
trim_archive(now, tonumber(ARGV[2]), tonumber(ARGV[3]), 100)
return replies
