-- Removes a cron entry with its state and history.
--
-- KEYS[1] -> wasmq:{cron}:entries          HASH entry name -> entry (JSON)
-- KEYS[2] -> wasmq:{cron}:last             HASH entry name -> last tick handled
-- KEYS[3] -> wasmq:{cron}:history:<name>   LIST of tick records, newest first
-- ARGV[1] -> entry name
-- ARGV[2] -> the channel that tells schedulers entries changed
--
-- Returns 1 if the entry existed, else 0.
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
if removed == 1 then
    redis.call('PUBLISH', ARGV[2], ARGV[1])
end
return removed
