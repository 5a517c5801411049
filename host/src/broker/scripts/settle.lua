-- Records the outcomes of leased tasks of one queue, any number and any mix
-- at once (a worker's acker sends every outcome that is ready in one call
-- per queue). Each task is recorded only if the caller still holds its
-- lease (the owner token matches), and once even if it appears twice.
--
--   complete  completed with its result, kept for its retention (or
--             forgotten at once when that is 0); its unique lock released.
--             The queue's stored results are held to a byte budget: past
--             it, the completed tasks that expire soonest are forgotten
--             early, and a result larger than the whole budget is not
--             stored (the task is kept as completed, with a note saying so
--             as its last error).
--   retry     a failed attempt: to retry, due after a delay, with its error.
--   archive   a failed attempt that ends the task: archived with its error,
--             its unique lock released; the archive is then trimmed to its
--             caps.
--   postpone  back to scheduled for a while, the attempt not counted, with
--             a note as its last error (a busy concurrency slot, a plugin on
--             probation or on trial, no room for an instance).
--   requeue   back to the head of pending, the attempt not counted (the
--             worker is shutting down).
--
-- A flow child or a batch's task that completes or is archived also notes
-- its end in the flow outbox (prelude.lua's note_flow_end), in this same
-- call; a child that completes beside its parent, in this queue, is
-- recorded for the parent at once (flow_child_completed).
--
-- KEYS: the queue's keys (prelude.lua)
-- ARGV[1] -> the queue's result budget, bytes (0: none)
-- ARGV[2] -> the archive's size cap (tasks)
-- ARGV[3] -> the archive's age cap, ms
-- ARGV[4..]: seven per task, task after task:
--   [i]   -> what to record: 'complete', 'retry', 'archive', 'postpone' or 'requeue'
--   [i+1] -> task id
--   [i+2] -> the worker's lease token
--   [i+3] -> complete: retention, ms; retry, postpone: delay, ms; otherwise ''
--   [i+4] -> complete: result bytes (empty when its retention is 0 and
--            it is no flow child nor in a batch: nothing would read them);
--            retry, archive: the error (JSON);
--            postpone: the note (JSON); requeue: ''
--   [i+5] -> complete, archive: the task's unique key, or ''; otherwise ''
--   [i+6] -> '1' when the task is a flow child or in a batch (its end is
--            noted for its parent or batch), else ''
--
-- Returns one number per task, in order: 1 when recorded, 0 when the caller
-- no longer holds the task (its lease expired and it was taken back, or it
-- was cancelled or deleted; the task is left alone).
local FIRST, STRIDE = 4, 7
local now = now_ms()
local budget = tonumber(ARGV[1])
local archive_max_size, archive_max_age = tonumber(ARGV[2]), tonumber(ARGV[3])

local ids = {}
for i = FIRST, #ARGV, STRIDE do
    ids[#ids + 1] = ARGV[i + 1]
end
local owners = hmget(OWNER, ids)

-- The messages of the flow children among them, read before any record is
-- forgotten.
local child_ids = {}
for n, id in ipairs(ids) do
    if ARGV[FIRST + (n - 1) * STRIDE + 6] == '1' then
        child_ids[#child_ids + 1] = id
    end
end
local child_messages = {}
if #child_ids > 0 then
    for n, msg in ipairs(hmget(MSG, child_ids)) do
        child_messages[child_ids[n]] = msg
    end
end

-- The held tasks, by what to record for them.
local complete = {done = {}, forgotten = {}, kept = {}, expiries = {}, results = {}, added = 0, dropped = {}}
local retry = {ids = {}, due = {}, errors = {}}
local postpone = {ids = {}, due = {}, notes = {}}
local archive = {ids = {}, at = {}, errors = {}}
local requeue = {}
local answers, seen = {}, {}

-- Adds a task due `delay_ms` from now to `group` (retry or postpone).
local function add_delayed(group, id, delay_ms, error)
    local at = now + tonumber(delay_ms)
    group.ids[#group.ids + 1] = id
    group.due[#group.due + 1] = at
    group.due[#group.due + 1] = id
    local errors = group.errors or group.notes
    errors[#errors + 1] = id
    errors[#errors + 1] = error
    if group.earliest == nil or at < group.earliest then
        group.earliest = at
    end
end

for n, id in ipairs(ids) do
    local i = FIRST + (n - 1) * STRIDE
    local kind, owner = ARGV[i], ARGV[i + 2]
    if seen[id] or owners[n] ~= owner then
        answers[n] = 0
    else
        seen[id] = true
        answers[n] = 1
        if kind == 'complete' then
            local retention, result = tonumber(ARGV[i + 3]), ARGV[i + 4]
            flow_child_completed(id, child_messages[id], result, now)
            complete.done[#complete.done + 1] = id
            release_unique(ARGV[i + 5], id)
            if retention <= 0 then
                complete.forgotten[#complete.forgotten + 1] = id
            else
                complete.kept[#complete.kept + 1] = id
                complete.expiries[#complete.expiries + 1] = now + retention
                complete.expiries[#complete.expiries + 1] = id
                if budget > 0 and #result > budget then
                    complete.dropped[#complete.dropped + 1] = id
                    complete.dropped[#complete.dropped + 1] = cjson.encode({
                        kind = 'result-too-large',
                        message = 'completed, but its result (' .. #result .. ' bytes) was not stored: it is larger than the result budget of its queue ('
                            .. budget .. ' bytes, the worker\'s --result-budget)',
                        attempt = tonumber(redis.call('HGET', ATTEMPTS, id) or '1'),
                        at_ms = now,
                    })
                    result = ''
                end
                complete.added = complete.added + #result
                complete.results[#complete.results + 1] = id
                complete.results[#complete.results + 1] = result
            end
        elseif kind == 'retry' then
            add_delayed(retry, id, ARGV[i + 3], ARGV[i + 4])
        elseif kind == 'postpone' then
            add_delayed(postpone, id, ARGV[i + 3], ARGV[i + 4])
        elseif kind == 'archive' then
            archive.ids[#archive.ids + 1] = id
            archive.at[#archive.at + 1] = now
            archive.at[#archive.at + 1] = id
            archive.errors[#archive.errors + 1] = id
            archive.errors[#archive.errors + 1] = ARGV[i + 4]
            release_unique(ARGV[i + 5], id)
            note_flow_end(id, child_messages[id], 'archived', ARGV[i + 4], nil, now)
        elseif kind == 'requeue' then
            requeue[#requeue + 1] = id
        else
            return redis.error_reply('BAD_SETTLEMENT ' .. tostring(kind))
        end
    end
end

-- Forgets the completed tasks that expire soonest until their results
-- free `excess` bytes (at most 1,000 tasks per call: the next completion
-- goes on). Returns the bytes freed.
local function evict_results(excess)
    local freed = 0
    for _ = 1, 10 do
        local oldest = redis.call('ZRANGE', COMPLETED, 0, 99)
        if #oldest == 0 then
            break
        end
        local evicted = {}
        for _, id in ipairs(oldest) do
            evicted[#evicted + 1] = id
            freed = freed + redis.call('HSTRLEN', RESULT, id)
            if freed >= excess then
                break
            end
        end
        call_with('ZREM', COMPLETED, evicted)
        forget_all(evicted, true)
        if freed >= excess then
            break
        end
    end
    return freed
end

if #complete.done > 0 then
    call_with('ZREM', ACTIVE, complete.done)
    forget_all(complete.forgotten, true)
    local kept = complete.kept
    if #kept > 0 then
        -- A task run again (`wasmq task run` on a completed task) replaces
        -- its earlier result.
        local replaced = 0
        if budget > 0 then
            replaced = result_sizes(kept)
        end
        call_with('ZADD', COMPLETED, complete.expiries)
        call_with('HSET', STATE, each_with(kept, 'completed'))
        call_with('HSET', RESULT, complete.results)
        call_with('HDEL', OWNER, kept)
        if #complete.dropped > 0 then
            call_with('HSET', ERROR, complete.dropped)
        end
        if budget > 0 then
            local total = redis.call('HINCRBY', RESULT, RESULT_BYTES, complete.added - replaced)
            if total > budget then
                results_freed(evict_results(total - budget))
            end
        end
    end
    count_attempt('processed', now, #complete.done)
end

if #retry.ids > 0 then
    leave_active(retry.ids, 'retry', retry.errors)
    add_due(RETRY, retry.due, retry.earliest)
    count_attempt('failed', now, #retry.ids)
end

if #postpone.ids > 0 then
    -- The attempt the task was leased for is not counted.
    uncount_attempts(postpone.ids)
    leave_active(postpone.ids, 'scheduled', postpone.notes)
    add_due(SCHEDULED, postpone.due, postpone.earliest)
end

if #archive.ids > 0 then
    leave_active(archive.ids, 'archived', archive.errors)
    call_with('ZADD', ARCHIVED, archive.at)
    count_attempt('failed', now, #archive.ids)
    -- Trimming drops at most this many, so that one call stays short; the
    -- next archiving (or the worker's trim) goes on where it stopped.
    trim_archive(now, archive_max_size, archive_max_age, 100 + #archive.ids)
end

if #requeue > 0 then
    -- The attempt the task was leased for is not counted.
    uncount_attempts(requeue)
    call_with('ZREM', ACTIVE, requeue)
    push_pending(requeue, true, true)
    call_with('HSET', STATE, each_with(requeue, 'pending'))
    call_with('HDEL', OWNER, requeue)
    redis.call('PUBLISH', NOTIFY, 'pending')
end

return answers
