-- Records successful attempts of tasks of one queue, any number at once (a
-- worker batches the completions that are ready together): each task is
-- kept as completed with its result for its retention, or forgotten when the
-- retention is 0. Its unique lock is released either way.
--
-- The queue's stored results are held to a byte budget, so that results
-- alone cannot fill Redis: past it, the completed tasks that expire soonest
-- are forgotten early (record and result, as if their retention had
-- ended), and a result larger than the whole budget is not stored (the task
-- is kept as completed, with a note saying so as its last error).
--
-- KEYS: the queue's keys (prelude.lua)
-- ARGV[1] -> the queue's result budget, bytes (0: none)
-- ARGV: then five per task, task after task:
--   [i]   -> task id
--   [i+1] -> the worker's lease token
--   [i+2] -> retention, ms
--   [i+3] -> result bytes
--   [i+4] -> the task's unique key, or ''
--
-- Returns one number per task, in order: 1 when recorded, 0 when the worker
-- no longer holds the task (its lease expired and it was taken back; the
-- task is left alone).
local FIRST = 2
local now = now_ms()
local budget = tonumber(ARGV[1])
local ids = {}
for i = FIRST, #ARGV, 5 do
    ids[#ids + 1] = ARGV[i]
end
local owners = hmget(OWNER, ids)
local recorded, done, forgotten, seen = {}, {}, {}, {}
local kept, expiries, results, added, dropped = {}, {}, {}, 0, {}
for n, id in ipairs(ids) do
    local i = FIRST + (n - 1) * 5
    local owner, retention = ARGV[i + 1], tonumber(ARGV[i + 2])
    -- The same id twice in a batch is recorded once.
    if seen[id] or owners[n] ~= owner then
        recorded[n] = 0
    else
        seen[id] = true
        done[#done + 1] = id
        release_unique(ARGV[i + 4], id)
        if retention <= 0 then
            forgotten[#forgotten + 1] = id
        else
            kept[#kept + 1] = id
            expiries[#expiries + 1] = now + retention
            expiries[#expiries + 1] = id
            local result = ARGV[i + 3]
            if budget > 0 and #result > budget then
                dropped[#dropped + 1] = id
                dropped[#dropped + 1] = cjson.encode({
                    kind = 'result-too-large',
                    message = 'completed, but its result (' .. #result .. ' bytes) was not stored: it is larger than the result budget of its queue ('
                        .. budget .. ' bytes, the worker\'s --result-budget)',
                    attempt = tonumber(redis.call('HGET', ATTEMPTS, id) or '1'),
                    at_ms = now,
                })
                result = ''
            end
            added = added + #result
            results[#results + 1] = id
            results[#results + 1] = result
        end
        recorded[n] = 1
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

if #done > 0 then
    call_with('ZREM', ACTIVE, done)
    forget_all(forgotten, true)
    if #kept > 0 then
        -- A task run again (`wasmq task run` on a completed task) replaces
        -- its earlier result.
        local replaced = 0
        if budget > 0 then
            replaced = result_sizes(kept)
        end
        call_with('ZADD', COMPLETED, expiries)
        call_with('HSET', STATE, each_with(kept, 'completed'))
        call_with('HSET', RESULT, results)
        call_with('HDEL', OWNER, kept)
        if #dropped > 0 then
            call_with('HSET', ERROR, dropped)
        end
        if budget > 0 then
            local total = redis.call('HINCRBY', RESULT, RESULT_BYTES, added - replaced)
            if total > budget then
                results_freed(evict_results(total - budget))
            end
        end
    end
    count_attempt('processed', now, #done)
end
return recorded
