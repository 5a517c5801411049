-- Enqueues the nodes of a flow that live in this queue, all or none: flow
-- parents wait (state 'waiting') until their children end, the other
-- nodes go to pending, or to scheduled when due later. Nothing is written
-- if any node's id is taken or reserved.
--
-- A flow across queues is written in several calls, the first of which
-- also notes, in the outbox, the tasks the others will write: if the
-- producer stops before the last, the trim reports the tasks never written
-- to their parents as deleted, so that no parent waits for them forever
-- (broker/flows.rs). The producer removes the note once all are written.
--
-- The first node may instead be a running task that waits for children its
-- handler added (flow.add-children): if the caller still holds its lease,
-- it leaves active for 'waiting', its message replaced (listing every
-- child it ever added), its attempt not counted.
--
-- KEYS: the queue's keys (prelude.lua)
-- ARGV[1] -> the note's field in the outbox ('<root id> w'), or '' for none
-- ARGV[2] -> the note: the tasks the later calls write (JSON); '<now> '
--            is put before it
-- ARGV[3] -> the lease token of the first node, a running task that now
--            waits for its children; '' when every node is new
-- ARGV[4] -> with ARGV[3], how many children that task has in all
-- then five values per node, repeated for each node:
--   ARGV[i]   -> task id
--   ARGV[i+1] -> task message (JSON)
--   ARGV[i+2] -> how many children it has (0: it runs as soon as it is due)
--   ARGV[i+3] -> delay before it is due, ms (0: due now); used when ARGV[i+4] is 0
--   ARGV[i+4] -> due time, unix ms by the server's clock, or 0
--
-- Returns {'ok'}, or, writing nothing:
--   {'lease-lost'}                      the running task is no longer held
--   {'duplicate-id', id, state}         the id is taken by a task in that state
--   {'duplicate-id', id, 'reserved', ms} the id is reserved for ms more
local STRIDE, FIRST = 5, 5
local now = now_ms()
local ids = {}
for i = FIRST, #ARGV, STRIDE do
    ids[#ids + 1] = ARGV[i]
end
local awaiting = ARGV[3] ~= ''
if awaiting then
    if redis.call('HGET', OWNER, ids[1]) ~= ARGV[3] or redis.call('HGET', STATE, ids[1]) ~= 'active' then
        return {'lease-lost'}
    end
end
local states = hmget(STATE, ids)
if awaiting then
    states[1] = false
end
local reserved = {}
if redis.call('ZCARD', RESERVED_IDS) > 0 then
    reserved = call_with('ZMSCORE', RESERVED_IDS, ids)
end
for n, id in ipairs(ids) do
    if states[n] then
        return {'duplicate-id', id, states[n]}
    end
    local until_ms = tonumber(reserved[n] or '0') or 0
    if until_ms > now and not (n == 1 and awaiting) then
        return {'duplicate-id', id, 'reserved', until_ms - now}
    end
end

local messages, new_states, pending, scheduled, parents = {}, {}, {}, {}, {}
local earliest
for n, id in ipairs(ids) do
    local i = (n - 1) * STRIDE + FIRST
    messages[#messages + 1] = id
    messages[#messages + 1] = ARGV[i + 1]
    local children = tonumber(ARGV[i + 2])
    local state
    if n == 1 and awaiting then
        state = 'waiting'
    elseif children > 0 then
        state = 'waiting'
        parents[#parents + 1] = id
        parents[#parents + 1] = children
    else
        local due_at = tonumber(ARGV[i + 4])
        if due_at == 0 then
            due_at = now + tonumber(ARGV[i + 3])
        end
        if due_at > now then
            state = 'scheduled'
            scheduled[#scheduled + 1] = due_at
            scheduled[#scheduled + 1] = id
            if earliest == nil or due_at < earliest then
                earliest = due_at
            end
        else
            state = 'pending'
            pending[#pending + 1] = id
        end
    end
    new_states[#new_states + 1] = id
    new_states[#new_states + 1] = state
end
call_with('HSET', MSG, messages)
note_groups(messages)
if ARGV[1] ~= '' then
    redis.call('HSET', FLOW_OUTBOX, ARGV[1], now .. ' ' .. ARGV[2])
end
call_with('HSET', STATE, new_states)
if #parents > 0 then
    call_with('HSET', PARENTS, parents)
    call_with('HSET', WAITING, parents)
end
if awaiting then
    local id = ids[1]
    uncount_attempts({id})
    redis.call('ZREM', ACTIVE, id)
    redis.call('HDEL', OWNER, id)
    redis.call('HSET', PARENTS, id, tonumber(ARGV[4]))
    redis.call('HSET', WAITING, id, tonumber(ARGV[FIRST + 2]))
end
if #scheduled > 0 then
    add_due(SCHEDULED, scheduled, earliest)
end
push_pending(pending, false)
return {'ok'}
