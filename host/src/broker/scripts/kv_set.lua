-- Sets a key of a plugin's key-value store, refusing a new key beyond the
-- plugin's key cap. Not part of a queue: its only key is the store's.
--
-- KEYS[1] -> wasmq:{kv:<plugin>}:data   HASH key -> value
-- ARGV[1] -> the key
-- ARGV[2] -> the value
-- ARGV[3] -> the most keys the store may hold
-- ARGV[4] -> 'set' to store ARGV[2], 'incr' to add it (an integer) to the value
--
-- Returns the stored value for 'incr', 1 for 'set'; the error 'FULL' when a
-- new key would go over the cap.
local store, key = KEYS[1], ARGV[1]
if redis.call('HEXISTS', store, key) == 0 and redis.call('HLEN', store) >= tonumber(ARGV[3]) then
    return redis.error_reply('FULL')
end
if ARGV[4] == 'incr' then
    return redis.call('HINCRBY', store, key, ARGV[2])
end
redis.call('HSET', store, key, ARGV[2])
return 1
