-- Opens a batch: a group of tasks, added until it is closed, whose
-- callbacks run once when all have succeeded (on-success) or all have
-- ended (on-complete). Not part of a queue: a batch's keys share the hash
-- tag {batch:<id>}, whatever queues its tasks go to.
--
-- KEYS[1] -> wasmq:{batch:<id>}:info     HASH total, succeeded, failed, closed (0/1), done (0/1),
--                                        opened_ms, on_success, on_complete (task objects, JSON)
-- KEYS[2] -> wasmq:{batch:<id>}:members  HASH '<queue> <id>' -> how the task ended
--                                        ('completed', 'archived', 'deleted')
-- ARGV[1] -> the on-success callback (JSON), or ''
-- ARGV[2] -> the on-complete callback (JSON), or ''
--
-- Returns 'ok', or 'exists' (nothing changed) when the id is taken.
local info = KEYS[1]
if redis.call('EXISTS', info) == 1 then
    return 'exists'
end
local t = redis.call('TIME')
redis.call('HSET', info, 'total', 0, 'succeeded', 0, 'failed', 0, 'closed', 0, 'done', 0,
    'opened_ms', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000),
    'on_success', ARGV[1], 'on_complete', ARGV[2])
return 'ok'
