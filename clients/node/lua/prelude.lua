-- Prepended to every wasmq script (see broker/scripts.rs).
--
-- Every script receives all of one queue's keys, in this order, so that it
-- declares every key it may touch and all of them share the queue's hash tag
-- (one Redis Cluster slot per queue):
--
-- KEYS[1]  -> wasmq:{<queue>}:pending       LIST of task ids, oldest at the right
-- KEYS[2]  -> wasmq:{<queue>}:active        ZSET task id -> lease expiry (server ms)
-- KEYS[3]  -> wasmq:{<queue>}:scheduled     ZSET task id -> due time (server ms)
-- KEYS[4]  -> wasmq:{<queue>}:retry         ZSET task id -> next attempt (server ms)
-- KEYS[5]  -> wasmq:{<queue>}:archived      ZSET task id -> archived at (server ms)
-- KEYS[6]  -> wasmq:{<queue>}:completed     ZSET task id -> expiry of the record (server ms)
-- KEYS[7]  -> wasmq:{<queue>}:msg           HASH task id -> task message (JSON, immutable)
-- KEYS[8]  -> wasmq:{<queue>}:state         HASH task id -> state name
-- KEYS[9]  -> wasmq:{<queue>}:attempts      HASH task id -> attempts started
-- KEYS[10] -> wasmq:{<queue>}:owner         HASH task id -> lease token of the worker running it
-- KEYS[11] -> wasmq:{<queue>}:error         HASH task id -> last error (JSON)
-- KEYS[12] -> wasmq:{<queue>}:result        HASH task id -> result bytes
-- KEYS[13] -> wasmq:{<queue>}:unique        HASH unique key -> id of the task holding it
-- KEYS[14] -> wasmq:{<queue>}:unique_until  ZSET unique key -> lock expiry (server ms)
-- KEYS[15] -> wasmq:{<queue>}:paused        STRING, present while the queue is paused
-- KEYS[16] -> wasmq:{<queue>}:reserved_ids  ZSET task id -> until when the id stays reserved after its task is gone (server ms)
-- KEYS[17] -> wasmq:{<queue>}:stats         HASH 'processed:<day>' / 'failed:<day>' -> attempts that day
--                                           (<day>: days since the unix epoch, server clock)
--
-- Workers are woken by a PUBLISH on wasmq:{<queue>}:notify, and told of
-- cancelled tasks on wasmq:{<queue>}:cancel (KEYS[1] with its last part
-- replaced): channels, not keys.
--
-- All times are the Redis server's clock (TIME), in milliseconds, so that
-- workers with skewed clocks agree on leases and due times.

local PENDING, ACTIVE, SCHEDULED, RETRY = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ARCHIVED, COMPLETED = KEYS[5], KEYS[6]
local MSG, STATE, ATTEMPTS, OWNER, ERROR, RESULT = KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11], KEYS[12]
local UNIQUE, UNIQUE_UNTIL, PAUSED, RESERVED_IDS, STATS = KEYS[13], KEYS[14], KEYS[15], KEYS[16], KEYS[17]
local NOTIFY = string.sub(PENDING, 1, -8) .. 'notify'

-- The server's clock in milliseconds.
local function now_ms()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Counts processed or failed attempts for today ('processed' or 'failed'):
-- one, or n.
local function count_attempt(what, now, n)
    redis.call('HINCRBY', STATS, what .. ':' .. math.floor(now / 86400000), n or 1)
end

-- Most values one command gets from the helpers below (Lua's stack holds
-- about 8,000); even, so that pairs are never split.
local CHUNK = 1000

-- Calls `command` on `key` with the values of `args` appended, in as few
-- calls as the stack allows: one command for a whole batch of tasks costs
-- Redis far less than one per task. Returns the replies' elements, in
-- order, for commands that answer with an array.
local function call_with(command, key, args)
    local elements = {}
    for first = 1, #args, CHUNK do
        local reply = redis.call(command, key, unpack(args, first, math.min(first + CHUNK - 1, #args)))
        if type(reply) == 'table' then
            for _, element in ipairs(reply) do
                elements[#elements + 1] = element
            end
        end
    end
    return elements
end

-- HMGET of many fields: the values in order, false where a field is missing.
local function hmget(key, fields)
    return call_with('HMGET', key, fields)
end

-- {id1, value, id2, value, ...}: field-value pairs giving each id the same value.
local function each_with(ids, value)
    local pairs_ = {}
    for _, id in ipairs(ids) do
        pairs_[#pairs_ + 1] = id
        pairs_[#pairs_ + 1] = value
    end
    return pairs_
end

-- The hashes that hold only tasks in flight (owner, attempts; state when
-- the queue is short) stay small, and Redis keeps small hashes as a
-- listpack that it scans from the start on every lookup: with a hundred
-- tasks leased, most of a dequeue or completion went into those scans. A
-- field whose value is longer than hash-max-listpack-value (64 bytes by
-- default) keeps a hash in the hashtable encoding for good. Its name has a
-- space, which no task id may have.
local PIN_FIELD = ' encoding'
local PIN_VALUE = 'keeps this hash in the hashtable encoding, for constant-time lookups of task ids (wasmq prelude.lua)'

local function pin_hashtables(hashes)
    for _, hash in ipairs(hashes) do
        redis.call('HSETNX', hash, PIN_FIELD, PIN_VALUE)
    end
end

-- Besides results by task id, RESULT holds the total size of the results
-- stored (bytes) under this field, which the queue's result budget is
-- checked against (settle.lua). Its name has a space, which no task id
-- may have.
local RESULT_BYTES = ' bytes'

-- The total size of the results of `ids` (bytes).
local function result_sizes(ids)
    local total = 0
    for _, id in ipairs(ids) do
        total = total + redis.call('HSTRLEN', RESULT, id)
    end
    return total
end

-- Takes `freed` bytes off the results' total (never below 0).
local function results_freed(freed)
    if freed > 0 and redis.call('HINCRBY', RESULT, RESULT_BYTES, -freed) < 0 then
        redis.call('HSET', RESULT, RESULT_BYTES, 0)
    end
end

-- Removes the records of tasks (not their places in lists or sets), and
-- takes their results off the results' total unless `without_results`
-- (the caller knows they have none, or counts them itself). The sizes are
-- read before and the total written after the deletions: at Redis's memory
-- limit a script may write only once it has deleted something.
local function forget_all(ids, without_results)
    if #ids == 0 then
        return
    end
    local freed = 0
    if not without_results and redis.call('HEXISTS', RESULT, RESULT_BYTES) == 1 then
        freed = result_sizes(ids)
    end
    for _, hash in ipairs({MSG, STATE, ATTEMPTS, OWNER, ERROR, RESULT}) do
        call_with('HDEL', hash, ids)
    end
    results_freed(freed)
end

-- Removes a task's record (not its place in a list or set).
local function forget(id)
    forget_all({id})
end

-- Releases a unique lock if the given task still holds it.
local function release_unique(unique_key, id)
    if unique_key ~= nil and unique_key ~= '' and redis.call('HGET', UNIQUE, unique_key) == id then
        redis.call('HDEL', UNIQUE, unique_key)
        redis.call('ZREM', UNIQUE_UNTIL, unique_key)
    end
end

-- The unique key a stored message holds, or nil.
local function unique_key_of(id)
    local msg = redis.call('HGET', MSG, id)
    if not msg then
        return nil
    end
    local ok, decoded = pcall(cjson.decode, msg)
    if ok and type(decoded.unique_key) == 'string' then
        return decoded.unique_key
    end
    return nil
end

-- Drops archived tasks beyond max_size or older than max_age_ms, at most
-- `budget` of them per call. Returns how many were dropped.
local function trim_archive(now, max_size, max_age_ms, budget)
    local dropped = 0
    local old = redis.call('ZRANGEBYSCORE', ARCHIVED, '-inf', now - max_age_ms, 'LIMIT', 0, budget)
    for _, id in ipairs(old) do
        redis.call('ZREM', ARCHIVED, id)
        release_unique(unique_key_of(id), id)
        forget(id)
        dropped = dropped + 1
    end
    local excess = math.min(redis.call('ZCARD', ARCHIVED) - max_size, budget - dropped)
    if excess > 0 then
        local oldest = redis.call('ZRANGE', ARCHIVED, 0, excess - 1)
        for _, id in ipairs(oldest) do
            redis.call('ZREM', ARCHIVED, id)
            release_unique(unique_key_of(id), id)
            forget(id)
            dropped = dropped + 1
        end
    end
    return dropped
end

-- Adds `due` ({due time, id, due time, id, ...}) to `zset` (scheduled or
-- retry) and wakes idle workers when `earliest`, the soonest of those due
-- times, is now the set's first.
local function add_due(zset, due, earliest)
    local first = redis.call('ZRANGE', zset, 0, 0, 'WITHSCORES')
    call_with('ZADD', zset, due)
    if first[2] == nil or earliest < tonumber(first[2]) then
        redis.call('PUBLISH', NOTIFY, 'due')
    end
end

-- Takes back the attempt counted when leased tasks (`ids`) were leased:
-- they go back to wait without having run.
local function uncount_attempts(ids)
    local attempts = hmget(ATTEMPTS, ids)
    local counts = {}
    for k, id in ipairs(ids) do
        counts[#counts + 1] = id
        counts[#counts + 1] = math.max((tonumber(attempts[k]) or 1) - 1, 0)
    end
    call_with('HSET', ATTEMPTS, counts)
end

-- Takes leased tasks (`ids`) out of active, for good or for a while: their
-- state becomes `state`, `errors` ({id, error JSON, ...}) their last
-- errors, and they have no owner any more.
local function leave_active(ids, state, errors)
    call_with('ZREM', ACTIVE, ids)
    call_with('HSET', STATE, each_with(ids, state))
    call_with('HSET', ERROR, errors)
    call_with('HDEL', OWNER, ids)
end
