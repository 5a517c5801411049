-- Takes a slot of a concurrency limit for a task, if one is free. Slots
-- whose hold expired (their holder crashed, or their minimum spacing
-- passed) are freed first. Not part of a queue: its only key is the limit's.
--
-- KEYS[1] -> wasmq:{limit:<key>}:holders   ZSET task id -> when its slot frees (server ms)
-- ARGV[1] -> task id
-- ARGV[2] -> slots (max running)
-- ARGV[3] -> lock at most for, ms
--
-- Returns {1} when the slot is taken (or already held by this task), else
-- {0, id of a holder, ...}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local holders, id = KEYS[1], ARGV[1]
redis.call('ZREMRANGEBYSCORE', holders, '-inf', now)
if redis.call('ZSCORE', holders, id) then
    return {1}
end
if redis.call('ZCARD', holders) < tonumber(ARGV[2]) then
    redis.call('ZADD', holders, now + tonumber(ARGV[3]), id)
    redis.call('PEXPIRE', holders, tonumber(ARGV[3]) + 1000)
    return {1}
end
local reply = {0}
for _, holder in ipairs(redis.call('ZRANGE', holders, 0, 9)) do
    reply[#reply + 1] = holder
end
return reply
