-- Collects the registry's garbage: trims each plugin's history to the
-- entries of its newest ARGV[1] versions (distinct components; a removal's
-- entry is kept while newer than the cut), then deletes every stored
-- component that no plugin's current version, no history entry kept and no
-- live worker still needs. It shares the `{plugins}` slot with deploys and
-- rollbacks, so it never deletes a component that one of them is making
-- current.
--
-- The caller reads the names and stored components first and passes their
-- keys; if the registry gained a name or a component since, the script
-- changes nothing and answers 'STALE' (read again and retry).
--
-- KEYS[1]   -> wasmq:{plugins}:current          HASH plugin name -> SHA-256 of its current component
-- KEYS[2]   -> wasmq:{plugins}:types            HASH plugin name -> task types (every name ever deployed)
-- KEYS[3]   -> wasmq:{plugins}:blobs            SET  SHA-256 of the components stored
-- KEYS[4 .. 3+N]       -> wasmq:{plugins}:history:<name>, for each name in ARGV[4 .. 3+N]
-- KEYS[4+N .. 3+N+B]   -> wasmq:{plugins}:blob:<sha256>, for each digest in ARGV[5+N .. 4+N+B]
-- ARGV[1]   -> versions kept per plugin (at least 1)
-- ARGV[2]   -> '1' for a dry run (nothing changes), else '0'
-- ARGV[3]   -> N, the number of names
-- ARGV[4 .. 3+N]       -> the names
-- ARGV[4+N] -> B, the number of candidate components
-- ARGV[5+N .. 4+N+B]   -> their digests
-- ARGV[5+N+B ..]       -> digests live workers run or are compiling (kept)
--
-- Returns {history entries trimmed, digest, bytes, digest, bytes, ...} for
-- each component deleted (or, in a dry run, that would be).
local keep = tonumber(ARGV[1])
local dry_run = ARGV[2] == '1'
local names = tonumber(ARGV[3])
local blobs = tonumber(ARGV[4 + names])

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
local candidate = {}
for i = 1, blobs do
    candidate[ARGV[4 + names + i]] = 3 + names + i
end
for _, digest in ipairs(redis.call('SMEMBERS', KEYS[3])) do
    if not candidate[digest] then
        return redis.error_reply('STALE')
    end
end

local needed = {}
for _, digest in ipairs(redis.call('HVALS', KEYS[1])) do
    needed[digest] = true
end
for i = 5 + names + blobs, #ARGV do
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

local deleted = {trimmed}
for digest, key_index in pairs(candidate) do
    if not needed[digest] then
        local key = KEYS[key_index]
        local bytes = redis.call('STRLEN', key)
        if bytes > 0 then
            table.insert(deleted, digest)
            table.insert(deleted, bytes)
        end
        if not dry_run then
            redis.call('DEL', key)
            redis.call('SREM', KEYS[3], digest)
        end
    end
end
return deleted
