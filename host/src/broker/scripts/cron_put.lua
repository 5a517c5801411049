-- Adds or replaces a cron entry. A new entry's last handled tick is set to
-- now, so ticks from before it existed never count as missed.
--
-- KEYS[1] -> wasmq:{cron}:entries   HASH entry name -> entry (JSON)
-- KEYS[2] -> wasmq:{cron}:last      HASH entry name -> last tick handled (unix ms, server clock)
-- ARGV[1] -> entry name
-- ARGV[2] -> entry (JSON)
-- ARGV[3] -> 'create' to refuse an existing name, 'put' to replace it
-- ARGV[4] -> the channel that tells schedulers entries changed
--
-- Returns 'created', 'updated' or 'unchanged'; the error 'EXISTS' when
-- ARGV[3] is 'create' and the name is taken.
local name, entry = ARGV[1], ARGV[2]
local current = redis.call('HGET', KEYS[1], name)
if current and ARGV[3] == 'create' then
    return redis.error_reply('EXISTS')
end
if current == entry then
    return 'unchanged'
end
redis.call('HSET', KEYS[1], name, entry)
if not redis.call('HGET', KEYS[2], name) then
    local t = redis.call('TIME')
    redis.call('HSET', KEYS[2], name, tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
end
redis.call('PUBLISH', ARGV[4], name)
if current then
    return 'updated'
end
return 'created'
