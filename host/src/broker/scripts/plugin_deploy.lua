-- Makes a component the current version of a plugin: stores its bytes
-- (content-addressed), points the plugin at it and records the deployment.
-- Workers learn of it from the PUBLISH, and by reconciling every few
-- seconds.
--
-- KEYS[1] -> wasmq:{plugins}:current          HASH plugin name -> SHA-256 of its current component
-- KEYS[2] -> wasmq:{plugins}:history:<name>   LIST of deployments (JSON), newest first
-- KEYS[3] -> wasmq:{plugins}:blob:<sha256>    STRING the component's bytes
-- ARGV[1] -> plugin name
-- ARGV[2] -> SHA-256 of the component, hex
-- ARGV[3] -> the component's bytes
-- ARGV[4] -> the deployment record (JSON)
-- ARGV[5] -> deployments kept in the history
-- ARGV[6] -> the channel that tells workers plugins changed
--
-- Returns the digest that was current before, or false.
local previous = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[3], ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('LPUSH', KEYS[2], ARGV[4])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[5]) - 1)
redis.call('PUBLISH', ARGV[6], ARGV[1])
return previous
