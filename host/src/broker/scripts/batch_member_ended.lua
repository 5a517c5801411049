-- Records how one task of a batch ended, once per task however often the
-- report is delivered, and says whether the batch's callbacks are due
-- (closed, every task ended, callbacks not yet enqueued: asked again on a
-- repeated report, so a delivery cut short after the last task's end is
-- finished by the next).
--
-- KEYS[1] -> wasmq:{batch:<id>}:info     (batch_open.lua)
-- KEYS[2] -> wasmq:{batch:<id>}:members  (batch_open.lua)
-- ARGV[1] -> the task, '<queue> <id>'
-- ARGV[2] -> how it ended: 'completed', 'archived' or 'deleted'
--
-- Returns {status, total, succeeded, failed}, as batch_count.lua.
local info, members = KEYS[1], KEYS[2]
if redis.call('EXISTS', info) == 0 then
    return {'no-batch', 0, 0, 0}
end
if redis.call('HSETNX', members, ARGV[1], ARGV[2]) == 1 then
    if ARGV[2] == 'completed' then
        redis.call('HINCRBY', info, 'succeeded', 1)
    else
        redis.call('HINCRBY', info, 'failed', 1)
    end
end
local total, succeeded, failed, closed, done = unpack(redis.call('HMGET', info, 'total', 'succeeded', 'failed', 'closed', 'done'))
total, succeeded, failed = tonumber(total), tonumber(succeeded), tonumber(failed)
local status = 'ok'
if closed == '1' and done ~= '1' and succeeded + failed >= total then
    status = 'due'
end
return {status, total, succeeded, failed}
