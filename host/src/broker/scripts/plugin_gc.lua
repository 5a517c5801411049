-- Collects the registry's garbage: trims each plugin's history to the
-- entries of its newest ARGV[1] versions (distinct components; a removal's
-- entry is kept while newer than the cut), then drops from the index of
-- stored components every component that no plugin's current version, no
-- history entry kept and no live worker still needs, and deletes the copies
-- of registries from before the index (in this slot). The copies the index
-- named live in slots of their own: the caller deletes them after this
-- script. A copy is never written twice (a new deployment writes a new
-- copy), so deleting one that the index no longer names is always safe.
--
-- The caller reads the names first and passes their history keys; if the
-- registry gained a name since, the script changes nothing and answers
-- 'STALE' (read again and retry).
--
-- KEYS[1]   -> wasmq:{plugins}:current          HASH plugin name -> SHA-256 of its current component
-- KEYS[2]   -> wasmq:{plugins}:types            HASH plugin name -> task types (every name ever deployed)
-- KEYS[3]   -> wasmq:{plugins}:stored           HASH SHA-256 -> the copy holding its bytes
-- KEYS[4 .. 3+N]       -> wasmq:{plugins}:history:<name>, for each name in ARGV[4 .. 3+N]
-- KEYS[4+N .. 3+N+B]   -> wasmq:{plugins}:blob:<sha256>, the copies from before the index, for
--                         each digest in ARGV[5+N .. 4+N+B]
-- ARGV[1]   -> versions kept per plugin (at least 1)
-- ARGV[2]   -> '1' for a dry run (nothing changes), else '0'
-- ARGV[3]   -> N, the number of names
-- ARGV[4 .. 3+N]       -> the names
-- ARGV[4+N] -> B, the number of old-style copies passed
-- ARGV[5+N .. 4+N+B]   -> their digests
-- ARGV[5+N+B ..]       -> digests live workers run or are compiling (kept)
--
-- Returns {history entries trimmed, then for each component dropped (or,
-- in a dry run, that would be): its digest, its copy (the caller deletes
-- wasmq:{blob:<digest>}:<copy>) or '' for an old-style copy, and the bytes
-- of an old-style copy (0 for the others)}.
local keep = tonumber(ARGV[1])
local dry_run = ARGV[2] == '1'
local names = tonumber(ARGV[3])
local old_style = tonumber(ARGV[4 + names])

local passed_names = {}
for i = 1, names do
    passed_names[ARGV[3 + i]] = true
end
for _, hash in ipairs({KEYS[1], KEYS[2]}) do
    for _, name in ipairs(redis.call('HKEYS', hash)) do
        if not passed_names[name] then
            return redis.error_reply('STALE')
        end
    end
end

local needed = {}
for _, digest in ipairs(redis.call('HVALS', KEYS[1])) do
    needed[digest] = true
end
for i = 5 + names + old_style, #ARGV do
    needed[ARGV[i]] = true
end

local trimmed = 0
for i = 1, names do
    local history = KEYS[3 + i]
    local entries = redis.call('LRANGE', history, 0, -1)
    local versions = {}
    local count = 0
    local cut = #entries
    for at, json in ipairs(entries) do
        local ok, entry = pcall(cjson.decode, json)
        local digest = ok and type(entry) == 'table' and entry.digest or nil
        if type(digest) == 'string' and not versions[digest] then
            if count == keep then
                cut = at - 1
                break
            end
            versions[digest] = true
            count = count + 1
        end
    end
    for digest in pairs(versions) do
        needed[digest] = true
    end
    if cut < #entries then
        trimmed = trimmed + #entries - cut
        if not dry_run then
            redis.call('LTRIM', history, 0, cut - 1)
        end
    end
end

local dropped = {trimmed}
local stored = redis.call('HGETALL', KEYS[3])
for i = 1, #stored, 2 do
    local digest, copy = stored[i], stored[i + 1]
    if not needed[digest] then
        table.insert(dropped, digest)
        table.insert(dropped, copy)
        table.insert(dropped, 0)
        if not dry_run then
            redis.call('HDEL', KEYS[3], digest)
        end
    end
end
for i = 1, old_style do
    local digest = ARGV[4 + names + i]
    local key = KEYS[3 + names + i]
    -- An old-style copy goes when nothing needs its component, or when the
    -- index holds a copy of its own.
    if not needed[digest] or redis.call('HEXISTS', KEYS[3], digest) == 1 then
        local bytes = redis.call('STRLEN', key)
        if bytes > 0 then
            table.insert(dropped, digest)
            table.insert(dropped, '')
            table.insert(dropped, bytes)
            if not dry_run then
                redis.call('DEL', key)
            end
        end
    end
end
return dropped
