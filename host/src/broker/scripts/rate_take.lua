-- Takes one token from a fleet-wide token bucket (a plugin's enqueue rate),
-- on the Redis server's clock: the bucket holds up to ARGV[1] tokens and
-- refills at ARGV[1] tokens per ARGV[2] ms. Not part of a queue.
--
-- KEYS[1] -> wasmq:{rate:<name>}:bucket  HASH tokens (left, fractional), at (server ms of the last refill)
-- ARGV[1] -> tokens per period (also the largest burst)
-- ARGV[2] -> the period, ms
--
-- Returns 0 when a token was taken, else how many ms until one is.
local bucket = KEYS[1]
local capacity, period = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', bucket, 'tokens', 'at')
local tokens, at = tonumber(state[1]), tonumber(state[2])
if not tokens or not at then
    tokens, at = capacity, now
end
tokens = math.min(capacity, tokens + math.max(0, now - at) * capacity / period)
local reply = 0
if tokens >= 1 then
    tokens = tokens - 1
else
    reply = math.max(1, math.ceil((1 - tokens) * period / capacity))
end
redis.call('HSET', bucket, 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', bucket, period * 2 + 1000)
return reply
