-- Makes waiting or archived tasks run now: each goes to the head of
-- pending (it runs next), keeping its attempt count and last error.
--
-- KEYS: the queue's keys (prelude.lua)
-- ARGV[1] -> the state the tasks must be in (scheduled, retry or
--            archived), or '' for any of those
-- ARGV[2..] -> task ids
--
-- Returns, per id, the state it left, or false when there is no such task
-- or it is in another state (pending, active, completed are left alone).
local wanted = ARGV[1]
local sets = {scheduled = SCHEDULED, retry = RETRY, archived = ARCHIVED}
local replies = {}
local moved = false
for i = 2, #ARGV do
    local id = ARGV[i]
    local state = redis.call('HGET', STATE, id)
    if state and sets[state] and (wanted == '' or wanted == state) then
        redis.call('ZREM', sets[state], id)
        redis.call('HSET', STATE, id, 'pending')
        push_pending({id}, true, true)
        replies[#replies + 1] = state
        moved = true
    else
        replies[#replies + 1] = false
    end
end
if moved then
    redis.call('PUBLISH', NOTIFY, 'pending')
end
return replies
