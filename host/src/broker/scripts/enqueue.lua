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
--   ARGV[i+5] -> unique lock time to live, ms; negative: also extend the
--                lock to that long from now on each refused duplicate
--   ARGV[i+6] -> how long the id stays reserved, ms, even after the task is
--                gone (0: only while the task is kept)
--
-- Returns one reply per task, in order:
--   {'ok', state}                          state is 'pending' or 'scheduled'
--   {'duplicate-id', state}                the id is taken by a task in that state
--   {'duplicate-id', 'reserved', ms}       the id's task is gone, but the id is reserved for ms more
--   {'duplicate-unique', holder id, ms}    the unique key is held for ms more
local now = now_ms()
local ids = {}
for i = 1, #ARGV, 7 do
    ids[#ids + 1] = ARGV[i]
end
-- Whether each id is taken, in one command each for the whole batch; ids
-- and unique keys taken earlier in this batch are tracked here.
local states = hmget(STATE, ids)
local reserved = {}
if redis.call('ZCARD', RESERVED_IDS) > 0 then
    reserved = call_with('ZMSCORE', RESERVED_IDS, ids)
end
local taken, locked = {}, {}
local replies = {}
local messages, new_states, pending, reservations = {}, {}, {}, {}
local scheduled, earliest = {}, nil
for n, id in ipairs(ids) do
    local i = (n - 1) * 7 + 1
    local msg = ARGV[i + 1]
    local delay, due_at = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
    local unique_key, unique_ttl = ARGV[i + 4], tonumber(ARGV[i + 5])
    local extends = unique_ttl < 0
    unique_ttl = math.abs(unique_ttl)
    local reserve = tonumber(ARGV[i + 6])
    local holder_state = taken[id] or states[n]
    local reserved_until = tonumber(reserved[n] or '0') or 0
    if holder_state then
        replies[n] = {'duplicate-id', holder_state}
    elseif reserved_until > now then
        replies[n] = {'duplicate-id', 'reserved', reserved_until - now}
    else
        local refused = false
        if unique_key ~= '' then
            local holder, until_ms
            if locked[unique_key] then
                holder, until_ms = locked[unique_key][1], locked[unique_key][2]
            else
                holder = redis.call('HGET', UNIQUE, unique_key)
                until_ms = tonumber(redis.call('ZSCORE', UNIQUE_UNTIL, unique_key) or '0')
            end
            if holder and until_ms > now then
                if extends and now + unique_ttl > until_ms then
                    until_ms = now + unique_ttl
                    redis.call('ZADD', UNIQUE_UNTIL, until_ms, unique_key)
                    locked[unique_key] = {holder, until_ms}
                end
                replies[n] = {'duplicate-unique', holder, until_ms - now}
                refused = true
            else
                redis.call('HSET', UNIQUE, unique_key, id)
                redis.call('ZADD', UNIQUE_UNTIL, now + unique_ttl, unique_key)
                locked[unique_key] = {id, now + unique_ttl}
            end
        end
        if not refused then
            if reserve > 0 then
                reservations[#reservations + 1] = now + reserve
                reservations[#reservations + 1] = id
            end
            messages[#messages + 1] = id
            messages[#messages + 1] = msg
            if due_at == 0 then
                due_at = now + delay
            end
            local state = 'pending'
            if due_at > now then
                state = 'scheduled'
                scheduled[#scheduled + 1] = due_at
                scheduled[#scheduled + 1] = id
                if earliest == nil or due_at < earliest then
                    earliest = due_at
                end
            else
                pending[#pending + 1] = id
            end
            taken[id] = state
            new_states[#new_states + 1] = id
            new_states[#new_states + 1] = state
            replies[n] = {'ok', state}
        end
    end
end
if #messages > 0 then
    call_with('HSET', MSG, messages)
    call_with('HSET', STATE, new_states)
    note_groups(messages)
    if #reservations > 0 then
        call_with('ZADD', RESERVED_IDS, reservations)
    end
end
if #scheduled > 0 then
    add_due(SCHEDULED, scheduled, earliest)
end
-- Idle workers wait for the queue to go from empty to not empty; busy
-- workers come back for more on their own.
push_pending(pending, false)
return replies
