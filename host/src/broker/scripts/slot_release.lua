-- Releases a task's slot of a concurrency limit when its attempt ends,
-- keeping it held until `lock at least for` after it was taken.
--
-- KEYS[1] -> wasmq:{limit:<key>}:holders   ZSET task id -> when its slot frees (server ms)
-- ARGV[1] -> task id
-- ARGV[2] -> lock at most for, ms (the slot was taken at score minus this)
-- ARGV[3] -> lock at least for, ms
--
-- Returns 1 if the task held a slot, else 0.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local holders, id = KEYS[1], ARGV[1]
local score = redis.call('ZSCORE', holders, id)
if not score then
    return 0
end
local hold_until = tonumber(score) - tonumber(ARGV[2]) + tonumber(ARGV[3])
if hold_until > now then
    redis.call('ZADD', holders, 'XX', hold_until, id)
else
    redis.call('ZREM', holders, id)
end
return 1
