#!lua flags=allow-oom
-- Records a worker as alive when Redis is at its memory limit, where the
-- plain SET and ZADD of a heartbeat are refused: `wasmq server ls` must
-- still show live workers then. The allow-oom flag lets it write; it
-- rewrites the worker's own description and score, which take about the
-- memory they took before, and drops expired entries.
--
-- KEYS[1] -> wasmq:{fleet}:servers       ZSET worker id -> heartbeat expiry (unix ms)
-- KEYS[2] -> wasmq:{fleet}:server:<id>   STRING the worker's description
-- ARGV[1] -> worker id
-- ARGV[2] -> description (JSON)
-- ARGV[3] -> time to live, ms
-- ARGV[4] -> now, unix ms (the worker's clock, as for every heartbeat)
local ttl, now = tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ttl)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return 1
