-- Housekeeping: forgets completed tasks past their retention, drops expired
-- unique locks and id reservations and daily counts older than 31 days, and
-- trims the archive to its caps.
--
-- KEYS: the queue's keys (prelude.lua)
-- ARGV[1] -> how many entries to drop per structure and call at most
-- ARGV[2] -> the archive's size cap (tasks)
-- ARGV[3] -> the archive's age cap, ms
--
-- Returns {completed dropped, unique locks dropped, archived dropped}.
--
-- A queue with nothing to trim (no completed or archived task, lock or
-- reservation, and at most 31 days of counts) costs two commands.
if redis.call('EXISTS', COMPLETED, UNIQUE_UNTIL, RESERVED_IDS, ARCHIVED) == 0 and redis.call('HLEN', STATS) <= 62 then
    return {0, 0, 0}
end
local now, budget = now_ms(), tonumber(ARGV[1])
local done = redis.call('ZRANGEBYSCORE', COMPLETED, '-inf', now, 'LIMIT', 0, budget)
call_with('ZREM', COMPLETED, done)
forget_all(done)
local locks = redis.call('ZRANGEBYSCORE', UNIQUE_UNTIL, '-inf', now, 'LIMIT', 0, budget)
for _, key in ipairs(locks) do
    redis.call('ZREM', UNIQUE_UNTIL, key)
    redis.call('HDEL', UNIQUE, key)
end
redis.call('ZREMRANGEBYSCORE', RESERVED_IDS, '-inf', now)
-- Daily counts are kept for 31 days.
-- (two fields a day: read only once there are more than 31 days' worth)
local today = math.floor(now / 86400000)
if redis.call('HLEN', STATS) > 62 then
    for _, field in ipairs(redis.call('HKEYS', STATS)) do
        local day = tonumber(string.match(field, ':(%d+)$') or today)
        if day < today - 30 then
            redis.call('HDEL', STATS, field)
        end
    end
end
local archived = trim_archive(now, tonumber(ARGV[2]), tonumber(ARGV[3]), budget)
return {#done, #locks, archived}
