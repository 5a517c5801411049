-- Points a plugin at a component already stored (a rollback), or at none
-- (a removal), and records it in the plugin's history.
--
-- KEYS[1] -> wasmq:{plugins}:current          HASH plugin name -> SHA-256 of its current component
-- KEYS[2] -> wasmq:{plugins}:history:<name>   LIST of deployments (JSON), newest first
-- KEYS[3] -> wasmq:{plugins}:blob:<sha256>    STRING the component to switch to (unused for a removal)
-- ARGV[1] -> plugin name
-- ARGV[2] -> SHA-256 to make current, or '' to remove the plugin
-- ARGV[3] -> the history record (JSON)
-- ARGV[4] -> deployments kept in the history
-- ARGV[5] -> the channel that tells workers plugins changed
--
-- Returns the digest that was current before, or false; the error
-- 'NO_BLOB' when the component to switch to is no longer stored.
local previous = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '' then
    redis.call('HDEL', KEYS[1], ARGV[1])
else
    if redis.call('EXISTS', KEYS[3]) == 0 then
        return redis.error_reply('NO_BLOB')
    end
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('LPUSH', KEYS[2], ARGV[3])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
redis.call('PUBLISH', ARGV[5], ARGV[1])
return previous
