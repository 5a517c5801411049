-- Enqueues a task into an aggregation (NewTask::aggregate): tasks of one
-- type and queue under one aggregation key are collected into a single
-- task whose payload is the array of their payloads, in order of arrival.
-- The first opens the batch: a scheduled task (under the first member's
-- id) due `after` from now. Each later member appends its payload to that
-- task's message while it is still scheduled; the batch goes to pending
-- at once when it holds `max_group` members or the next member would take
-- its message past `max_bytes`, and otherwise when it falls due. The key
-- is held in the unique hashes, by the open batch.
--
-- The batch's payload array is the message's "payload" field; its end is
-- the last '],"max_retry":' of the message (no field after it holds an
-- array followed by "max_retry", and no JSON string can hold the
-- sequence), where a member's payload is spliced in.
--
-- KEYS: the queue's keys (prelude.lua)
-- ARGV[1] -> the member's id (fresh): the batch's id if it opens one
-- ARGV[2] -> the batch's message should it open one (JSON, "payload" an
--            array holding this member's payload only)
-- ARGV[3] -> delay before a new batch falls due, ms
-- ARGV[4] -> the aggregation key (held in the unique hashes)
-- ARGV[5] -> the most members a batch holds
-- ARGV[6] -> the member's payload (JSON text)
-- ARGV[7] -> the most bytes a batch's message may take
-- ARGV[8] -> the key's lock time to live, ms
--
-- Returns {'added', batch id, members, state} or {'ok', batch id, 1,
-- state} (a new batch); state is 'scheduled', or 'pending' once released;
-- {'duplicate-id', state} when the fresh id is taken.
local now = now_ms()
local id, message, key = ARGV[1], ARGV[2], ARGV[4]
local after, max_group, member = tonumber(ARGV[3]), tonumber(ARGV[5]), ARGV[6]
local max_bytes, ttl = tonumber(ARGV[7]), tonumber(ARGV[8])
local MEMBERS = AGGREGATED

-- Sends batch `batch` to pending now and closes it.
local function release(batch)
    redis.call('ZREM', SCHEDULED, batch)
    redis.call('HSET', STATE, batch, 'pending')
    redis.call('HDEL', MEMBERS, batch)
    if redis.call('HGET', UNIQUE, key) == batch then
        redis.call('HDEL', UNIQUE, key)
        redis.call('ZREM', UNIQUE_UNTIL, key)
    end
    push_pending({batch}, false)
end

-- Where a batch's payload array ends in its message, or nil.
local function payload_end(msg)
    local last, from = nil, 1
    while true do
        local at = string.find(msg, '],"max_retry":', from, true)
        if not at then
            return last
        end
        last, from = at, at + 1
    end
end

local holder = redis.call('HGET', UNIQUE, key)
if holder and redis.call('HGET', STATE, holder) == 'scheduled' then
    local msg = redis.call('HGET', MSG, holder)
    local at = msg and payload_end(msg)
    if at and #msg + #member + 1 <= max_bytes then
        msg = string.sub(msg, 1, at - 1) .. ',' .. member .. string.sub(msg, at)
        redis.call('HSET', MSG, holder, msg)
        local members = redis.call('HINCRBY', MEMBERS, holder, 1)
        if members >= max_group then
            release(holder)
            return {'added', holder, members, 'pending'}
        end
        return {'added', holder, members, 'scheduled'}
    end
    -- Full (or unreadable): it goes now, and this member opens a new batch.
    release(holder)
end

local taken = redis.call('HGET', STATE, id)
if taken then
    return {'duplicate-id', taken}
end
schedule_holder(id, message, now + after, key, now + ttl)
redis.call('HSET', MEMBERS, id, 1)
if max_group <= 1 then
    release(id)
    return {'ok', id, 1, 'pending'}
end
return {'ok', id, 1, 'scheduled'}
