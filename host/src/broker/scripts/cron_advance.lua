-- Moves an entry's last handled tick forward, never back. Every scheduler
-- replica calls this after handling ticks; only the first to move it past a
-- tick gets the previous value back, so one-time records (such as skipped
-- ticks) are written once.
--
-- KEYS[1] -> wasmq:{cron}:last   HASH entry name -> last tick handled (unix ms)
-- ARGV[1] -> entry name
-- ARGV[2] -> the tick just handled (unix ms)
--
-- Returns the previous last tick when this call moved it forward, else -1.
local previous = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
local tick = tonumber(ARGV[2])
if tick > previous then
    redis.call('HSET', KEYS[1], ARGV[1], tick)
    return previous
end
return -1
