-- Points a plugin at a component already stored (a rollback), or at none
-- (a removal), and records it in the plugin's history. A rollback is
-- checked first: it may not take a task type another deployed plugin
-- handles. A removal keeps the name held (its task types stay recorded).
--
-- KEYS[1] -> wasmq:{plugins}:current          HASH plugin name -> SHA-256 of its current component
-- KEYS[2] -> wasmq:{plugins}:history:<name>   LIST of deployments (JSON), newest first
-- KEYS[3] -> wasmq:{plugins}:blob:<sha256>    STRING the component's bytes as registries before the
--                                             index stored them (unused for a removal)
-- KEYS[4] -> wasmq:{plugins}:types            HASH plugin name -> its task types (JSON array, sorted)
-- KEYS[5] -> wasmq:{plugins}:stored           HASH SHA-256 -> the copy holding its bytes
-- ARGV[1] -> plugin name
-- ARGV[2] -> SHA-256 to make current, or '' to remove the plugin
-- ARGV[3] -> the history record (JSON)
-- ARGV[4] -> deployments kept in the history
-- ARGV[5] -> the channel that tells workers plugins changed
-- ARGV[6] -> the task types of the version switched to (JSON array,
--            sorted), or '' when unknown or for a removal
--
-- Returns the digest that was current before, or false; the error
-- 'NO_BLOB' when the component to switch to is no longer stored, and
-- 'CONFLICT <JSON {task_type, plugin}>' when another deployed plugin
-- handles one of its task types.
local previous = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '' then
    redis.call('HDEL', KEYS[1], ARGV[1])
else
    if redis.call('HEXISTS', KEYS[5], ARGV[2]) == 0 and redis.call('EXISTS', KEYS[3]) == 0 then
        return redis.error_reply('NO_BLOB')
    end
    if ARGV[6] ~= '' then
        local conflict = task_type_conflict(KEYS[1], KEYS[4], ARGV[1], ARGV[6])
        if conflict then
            return conflict
        end
        redis.call('HSET', KEYS[4], ARGV[1], ARGV[6])
    end
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('LPUSH', KEYS[2], ARGV[3])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
redis.call('PUBLISH', ARGV[5], ARGV[1])
return previous
