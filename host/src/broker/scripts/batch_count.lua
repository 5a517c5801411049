-- Changes a batch's count of tasks, or closes it, and says whether its
-- callbacks are due: closed, every task ended, callbacks not yet
-- enqueued.
--
-- KEYS[1] -> wasmq:{batch:<id>}:info     (batch_open.lua)
-- KEYS[2] -> wasmq:{batch:<id>}:members  (batch_open.lua)
-- ARGV[1] -> 'add' (ARGV[2]: tasks about to be enqueued; refused once closed),
--            'take-back' (ARGV[2]: tasks counted but refused by their queue),
--            'close', or 'check'
-- ARGV[2] -> a number of tasks (add, take-back)
--
-- Returns {status, total, succeeded, failed}; status is 'no-batch',
-- 'closed' (add refused), 'due' (the callbacks are due) or 'ok'.
local info, members = KEYS[1], KEYS[2]
if redis.call('EXISTS', info) == 0 then
    return {'no-batch', 0, 0, 0}
end
local op, n = ARGV[1], tonumber(ARGV[2] or '0')
if op == 'add' then
    if redis.call('HGET', info, 'closed') == '1' then
        return {'closed', 0, 0, 0}
    end
    redis.call('HINCRBY', info, 'total', n)
elseif op == 'take-back' then
    redis.call('HINCRBY', info, 'total', -n)
elseif op == 'close' then
    redis.call('HSET', info, 'closed', 1)
end
local total, succeeded, failed, closed, done = unpack(redis.call('HMGET', info, 'total', 'succeeded', 'failed', 'closed', 'done'))
total, succeeded, failed = tonumber(total), tonumber(succeeded), tonumber(failed)
local status = 'ok'
if closed == '1' and done ~= '1' and succeeded + failed >= total then
    status = 'due'
end
return {status, total, succeeded, failed}
