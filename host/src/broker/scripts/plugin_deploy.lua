-- Makes a component the current version of a plugin: points the plugin at
-- it and records the deployment. Workers learn of it from the PUBLISH, and
-- by reconciling every few seconds. Every check comes first: a refused
-- deployment changes nothing.
--
-- The component's bytes are not written here: the caller has stored them
-- beforehand under a key of their own, wasmq:{blob:<sha256>}:<copy> (a slot
-- per component, so that on a Redis Cluster components spread over the
-- masters), and this script records that copy in the index of stored
-- components unless the index already has one (then the caller deletes its
-- own, unused copy). The index is the registry's authority on what is
-- stored: garbage collection removes a component from it before deleting
-- that copy, and a copy is never written twice, so a collection cannot
-- delete bytes a deployment relies on.
--
-- A name belongs to one plugin: the registry records the task-type set a
-- name holds (kept after a removal), and refuses a deployment of that name
-- with another set unless it says to replace the holder. No two deployed
-- plugins may share a task type.
--
-- KEYS[1] -> wasmq:{plugins}:current          HASH plugin name -> SHA-256 of its current component
-- KEYS[2] -> wasmq:{plugins}:history:<name>   LIST of deployments (JSON), newest first
-- KEYS[3] -> wasmq:{plugins}:stored           HASH SHA-256 -> the copy holding its bytes
-- KEYS[4] -> wasmq:{plugins}:types            HASH plugin name -> its task types (JSON array, sorted)
-- ARGV[1] -> plugin name
-- ARGV[2] -> SHA-256 of the component, hex
-- ARGV[3] -> the copy the caller stored
-- ARGV[4] -> the deployment record (JSON)
-- ARGV[5] -> deployments kept in the history
-- ARGV[6] -> the channel that tells workers plugins changed
-- ARGV[7] -> the component's task types (JSON array, sorted)
-- ARGV[8] -> '1' to replace a different plugin holding the name, else '0'
--
-- Returns {the digest that was current before or false, the task types the
-- name held before (JSON) when they differ, or false, 1 if the caller's
-- copy is now the stored one or 0 if another was}. Errors:
-- 'HELD <task types JSON>' when the name is held by another task-type set
-- and ARGV[8] is not '1'; 'CONFLICT <JSON {task_type, plugin}>' when
-- another deployed plugin handles one of its task types.
local held = redis.call('HGET', KEYS[4], ARGV[1])
if held and held ~= ARGV[7] and ARGV[8] ~= '1' then
    return redis.error_reply('HELD ' .. held)
end
local conflict = task_type_conflict(KEYS[1], KEYS[4], ARGV[1], ARGV[7])
if conflict then
    return conflict
end
local previous = redis.call('HGET', KEYS[1], ARGV[1])
local mine = redis.call('HSETNX', KEYS[3], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[7])
redis.call('LPUSH', KEYS[2], ARGV[4])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[5]) - 1)
redis.call('PUBLISH', ARGV[6], ARGV[1])
local replaced = false
if held and held ~= ARGV[7] then
    replaced = held
end
return {previous, replaced, mine}
