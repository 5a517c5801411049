-- Takes (or gives back) a start of a fleet-wide rate limit, on the Redis
-- server's clock (µs). Not part of a queue: its keys are the limit's, all
-- under the hash tag of the limit's target.
--
-- A start is granted when both hold:
--   * the window: fewer than `count` starts in the last `interval` (the log
--     of starts is exact: no window of `interval` ever sees more);
--   * the burst (GCRA): at most `burst` starts back to back, then one per
--     `interval / count`, give or take the margin below, so that a task
--     back a few ms late for its turn still starts (with `burst == count`
--     the window alone decides).
-- A start refused is given a turn in the bucket's waiting line: the first
-- turn is when the window and the burst next allow a start plus a margin
-- (5% of the interval, at most 50 ms), and later turns follow every
-- `interval / count` plus a `count`th of the margin, so that tasks put back
-- come back one at a time, a little after their start is free, instead of
-- all at once. The margin is what keeps the limit where it matters, at the
-- handlers: a handler starts a moment after its grant (a few ms, more on a
-- loaded machine), and a turn taken right at the window's edge could put
-- one start too many in a window of handler starts. It costs a twentieth of
-- the rate while tasks wait. A task early by less than the margin is told
-- to come back a margin after its start frees, keeping the line as it is.
--
-- KEYS[1] -> wasmq:{ratelimit:<target>}:log:<bucket>    ZSET start number -> server µs of the start
-- KEYS[2] -> wasmq:{ratelimit:<target>}:state:<bucket>  HASH seq (last start number), tat (µs, GCRA's
--                                                        theoretical arrival time), line (µs, the next
--                                                        free turn), spec (the limit they were for)
-- KEYS[3] -> wasmq:{ratelimit:<target>}:buckets         ZSET bucket -> server ms of its last start (listings)
-- ARGV[1] -> 'take', or 'refund' (give back start number ARGV[6], granted but never used)
-- ARGV[2] -> count: starts per interval
-- ARGV[3] -> interval, ms
-- ARGV[4] -> burst (1..count)
-- ARGV[5] -> the bucket's name (its member in KEYS[3])
-- ARGV[6] -> take: the limit's spec (a changed limit starts a new waiting line); refund: the start number
--
-- Returns {0, start number} when a start is granted, {1, µs until the
-- task's turn} when not; a refund returns {0, 0}.
local log, state, buckets = KEYS[1], KEYS[2], KEYS[3]
local count = tonumber(ARGV[2])
local interval = tonumber(ARGV[3]) * 1000
local burst = tonumber(ARGV[4])
local spacing = interval / count
local margin = math.min(interval * 0.05, 50000)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

if ARGV[1] == 'refund' then
    if redis.call('ZREM', log, ARGV[6]) == 1 then
        local tat = tonumber(redis.call('HGET', state, 'tat'))
        if tat then
            redis.call('HSET', state, 'tat', string.format('%.0f', tat - spacing))
        end
    end
    return {0, 0}
end

local held = redis.call('HMGET', state, 'seq', 'tat', 'line', 'spec')
local seq = tonumber(held[1]) or 0
local tat = tonumber(held[2]) or now
local line = tonumber(held[3]) or now
if held[4] ~= ARGV[6] then
    -- A new or changed limit: its burst and its waiting line start afresh.
    tat, line = now, now
end

-- The window: starts at or before now - interval no longer count.
redis.call('ZREMRANGEBYSCORE', log, '-inf', string.format('%.0f', now - interval))
local used = redis.call('ZCARD', log)
local window_free = now
if used >= count then
    local oldest = redis.call('ZRANGE', log, used - count, used - count, 'WITHSCORES')
    window_free = tonumber(oldest[2]) + interval
end
local burst_free = tat - (burst - 1) * spacing - margin
local free_at = math.max(window_free, burst_free)
local keep_ms

if free_at <= now then
    seq = seq + 1
    redis.call('ZADD', log, now, seq)
    tat = math.max(tat, now) + spacing
    redis.call('HSET', state, 'seq', seq, 'tat', string.format('%.0f', tat),
        'line', string.format('%.0f', line), 'spec', ARGV[6])
    local now_ms = math.floor(now / 1000)
    redis.call('ZADD', buckets, now_ms, ARGV[5])
    -- Buckets idle for two intervals (and a minute) leave the listing.
    redis.call('ZREMRANGEBYSCORE', buckets, '-inf', now_ms - 2 * interval / 1000 - 60000)
    keep_ms = math.ceil((math.max(line, tat) - now + 2 * interval) / 1000) + 60000
    redis.call('PEXPIRE', log, keep_ms)
    redis.call('PEXPIRE', state, keep_ms)
    redis.call('PEXPIRE', buckets, keep_ms)
    return {0, seq}
end

-- Just early (within the margin): back a margin after the start frees,
-- keeping the line as it is, so that a task a little early for its turn
-- does not lose it.
if free_at - now <= margin then
    return {1, math.ceil(free_at + margin - now)}
end
local turn = math.max(line, free_at + margin)
line = turn + spacing + margin / count
redis.call('HSET', state, 'seq', seq, 'tat', string.format('%.0f', tat),
    'line', string.format('%.0f', line), 'spec', ARGV[6])
keep_ms = math.ceil((line - now + 2 * interval) / 1000) + 60000
redis.call('PEXPIRE', state, keep_ms)
redis.call('PEXPIRE', log, keep_ms)
return {1, math.ceil(turn - now)}
