-- Enqueues tasks: each goes to pending, or to scheduled when it is due
-- later, unless its id or its unique key is already taken.
--
-- KEYS: the queue's keys (prelude.lua)
-- ARGV: seven values per task, repeated for each task of the batch:
--   ARGV[i]   -> task id
--   ARGV[i+1] -> task message (JSON)
--   ARGV[i+2] -> delay before the task is due, ms (0: due now); used when ARGV[i+3] is 0
--   ARGV[i+3] -> due time, unix ms by the server's clock, or 0
--   ARGV[i+4] -> unique key, or '' for none
--   ARGV[i+5] -> unique lock time to live, ms
--   ARGV[i+6] -> how long the id stays reserved, ms, even after the task is
--                gone (0: only while the task is kept)
--
-- Returns one reply per task, in order:
--   {'ok', state}                          state is 'pending' or 'scheduled'
--   {'duplicate-id', state}                the id is taken by a task in that state
--   {'duplicate-id', 'reserved', ms}       the id's task is gone, but the id is reserved for ms more
--   {'duplicate-unique', holder id, ms}    the unique key is held for ms more
local now = now_ms()
local replies = {}
local was_empty = redis.call('LLEN', PENDING) == 0
local pushed = false
for i = 1, #ARGV, 7 do
    local id, msg = ARGV[i], ARGV[i + 1]
    local delay, due_at = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
    local unique_key, unique_ttl = ARGV[i + 4], tonumber(ARGV[i + 5])
    local reserve = tonumber(ARGV[i + 6])
    local holder_state = redis.call('HGET', STATE, id)
    local reserved_until = tonumber(redis.call('ZSCORE', CLAIMS, id) or '0')
    if holder_state then
        replies[#replies + 1] = {'duplicate-id', holder_state}
    elseif reserved_until > now then
        replies[#replies + 1] = {'duplicate-id', 'reserved', reserved_until - now}
    else
        local refused = false
        if unique_key ~= '' then
            local holder = redis.call('HGET', UNIQUE, unique_key)
            local until_ms = tonumber(redis.call('ZSCORE', UNIQUE_UNTIL, unique_key) or '0')
            if holder and until_ms > now then
                replies[#replies + 1] = {'duplicate-unique', holder, until_ms - now}
                refused = true
            else
                redis.call('HSET', UNIQUE, unique_key, id)
                redis.call('ZADD', UNIQUE_UNTIL, now + unique_ttl, unique_key)
            end
        end
        if not refused then
            if reserve > 0 then
                redis.call('ZADD', CLAIMS, now + reserve, id)
            end
            redis.call('HSET', MSG, id, msg)
            if due_at == 0 then
                due_at = now + delay
            end
            if due_at > now then
                redis.call('ZADD', SCHEDULED, due_at, id)
                redis.call('HSET', STATE, id, 'scheduled')
                notify_if_earliest(SCHEDULED, id)
                replies[#replies + 1] = {'ok', 'scheduled'}
            else
                redis.call('LPUSH', PENDING, id)
                redis.call('HSET', STATE, id, 'pending')
                pushed = true
                replies[#replies + 1] = {'ok', 'pending'}
            end
        end
    end
end
-- Idle workers wait for the queue to go from empty to not empty; busy
-- workers come back for more on their own.
if pushed and was_empty then
    redis.call('PUBLISH', NOTIFY, 'pending')
end
return replies
