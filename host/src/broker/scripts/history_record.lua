-- Samples a queue's throughput for its history: records the day's
-- processed and failed counts as they stand now, at most once a minute.
-- Consecutive samples' differences are the attempts that ended between
-- them (history.rs reads them back), so the history costs the task path
-- nothing: whichever worker takes the trim turn calls this.
--
-- KEYS[1] -> wasmq:{<queue>}:stats     HASH 'processed:<day>' / 'failed:<day>' -> attempts that day
-- KEYS[2] -> wasmq:{<queue>}:history   LIST '<unix ms> <day> <processed> <failed>', newest first
-- ARGV[1] -> samples kept
--
-- Returns 1 when it recorded a sample, 0 when this minute has one.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local newest = redis.call('LINDEX', KEYS[2], 0)
if newest then
    local at = tonumber(string.match(newest, '^(%d+)') or 0)
    if math.floor(at / 60000) >= math.floor(now / 60000) then
        return 0
    end
end
local day = math.floor(now / 86400000)
local processed = redis.call('HGET', KEYS[1], 'processed:' .. day) or '0'
local failed = redis.call('HGET', KEYS[1], 'failed:' .. day) or '0'
redis.call('LPUSH', KEYS[2], now .. ' ' .. day .. ' ' .. processed .. ' ' .. failed)
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[1]) - 1)
return 1
