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
-- KEYS[18] -> wasmq:{<queue>}:parents       HASH flow parent id -> how many children it has
-- KEYS[19] -> wasmq:{<queue>}:waiting       HASH flow parent id -> its children not ended yet (while it waits)
-- KEYS[20] -> wasmq:{<queue>}:children      HASH '<parent id> <index>' -> how that child ended (JSON),
--                                           '<parent id> <index> r' -> the child's result
-- KEYS[21] -> wasmq:{<queue>}:flow_outbox   HASH child id -> its end, not yet delivered to its parent
--                                           (JSON), '<child id> r' -> its result
--
-- (Producers' copies of this prelude may pass only the first 17 keys: the
-- flow keys are then nil, and only scripts that need them use them.)
--
-- A queue whose tasks carry a group (fairness by key) also has these keys,
-- named from KEYS[1] (so in the queue's slot) and absent otherwise:
--
--   wasmq:{<queue>}:group_of         HASH task id -> its group (grouped tasks only)
--   wasmq:{<queue>}:groups           LIST the groups with pending tasks, in turn order
--                                    ('' stands for KEYS[1]'s ungrouped tasks)
--   wasmq:{<queue>}:grouped          STRING how many grouped tasks are pending
--   wasmq:{<queue>}:pending:<group>  LIST a group's pending task ids, oldest at the right
--
-- and, once a task reported progress (progress_set.lua):
--
--   wasmq:{<queue>}:progress         HASH task id -> its latest progress report (JSON)
--
-- and, while an aggregation's batch collects members (aggregate.lua):
--
--   wasmq:{<queue>}:aggregated       HASH batch task id -> how many members it holds
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
local PARENTS, WAITING, CHILDREN, FLOW_OUTBOX = KEYS[18], KEYS[19], KEYS[20], KEYS[21]
local QUEUE_PREFIX = string.sub(PENDING, 1, -8)
local NOTIFY = QUEUE_PREFIX .. 'notify'
local GROUP_OF, GROUPS, GROUPED = QUEUE_PREFIX .. 'group_of', QUEUE_PREFIX .. 'groups', QUEUE_PREFIX .. 'grouped'
local PROGRESS = QUEUE_PREFIX .. 'progress'
local AGGREGATED = QUEUE_PREFIX .. 'aggregated'

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

-- The outbox field (in FLOW_OUTBOX) naming the children of flow parent
-- `id` that went with it: the queue's trim forgets those that finished
-- (flow_forget.lua), so that retention removes a finished flow whole.
local function forget_field(id)
    return id .. ' f'
end

-- Forgets what flow parents among `ids` kept of their children's ends.
-- Returns the outbox fields to write once the records are gone: each
-- parent's children ({queue, id, type} objects, JSON).
local function forget_flow_parents(ids)
    if not PARENTS or redis.call('EXISTS', PARENTS) == 0 then
        return {}
    end
    local totals = hmget(PARENTS, ids)
    local parents, fields, leftovers = {}, {}, {}
    for n, id in ipairs(ids) do
        local total = tonumber(totals[n])
        if total then
            parents[#parents + 1] = id
            for index = 0, total - 1 do
                fields[#fields + 1] = id .. ' ' .. index
                fields[#fields + 1] = id .. ' ' .. index .. ' r'
            end
            local ok, msg = pcall(cjson.decode, redis.call('HGET', MSG, id) or '')
            if ok and type(msg) == 'table' and type(msg.children) == 'table' and #msg.children > 0 then
                leftovers[#leftovers + 1] = forget_field(id)
                leftovers[#leftovers + 1] = cjson.encode(msg.children)
            end
        end
    end
    if #parents > 0 then
        call_with('HDEL', PARENTS, parents)
        call_with('HDEL', WAITING, parents)
        call_with('HDEL', CHILDREN, fields)
    end
    return leftovers
end

-- Groups: fairness by key. A grouped task (its message has a "group")
-- waits, while pending, in its group's own list; dequeue.lua takes one task
-- from each group in turn (take_in_turn), the ungrouped tasks of PENDING
-- taking their turn as one more group, so that one group's backlog cannot
-- starve another's. GROUPS holds each group with pending tasks once, and
-- '' while PENDING has tasks too; it exists only while some group has
-- pending tasks, so a queue without groups costs one EXISTS more.

-- The list of `group`'s pending tasks.
local function group_pending(group)
    return QUEUE_PREFIX .. 'pending:' .. group
end

-- The group a task's message (JSON) names, or nil; reads the JSON only
-- when it may name one.
local function group_in(msg)
    if not string.find(msg, '"group":"', 1, true) then
        return nil
    end
    local ok, decoded = pcall(cjson.decode, msg)
    if ok and type(decoded) == 'table' and type(decoded.group) == 'string' and decoded.group ~= '' then
        return decoded.group
    end
    return nil
end

-- Notes the groups of new tasks ({id, message, ...}), so that wherever
-- they become pending they wait in their group's list.
local function note_groups(messages)
    local groups = {}
    for k = 1, #messages, 2 do
        local group = group_in(messages[k + 1])
        if group then
            groups[#groups + 1] = messages[k]
            groups[#groups + 1] = group
        end
    end
    if #groups > 0 then
        call_with('HSET', GROUP_OF, groups)
    end
end

-- Takes `group` ('' for PENDING) out of the turns once it has no pending
-- task; the turns go when no group is left in them.
local function leave_turns(group)
    redis.call('LREM', GROUPS, 0, group)
    local left = redis.call('LLEN', GROUPS)
    if left == 0 or (left == 1 and redis.call('LINDEX', GROUPS, 0) == '') then
        redis.call('DEL', GROUPS)
    end
end

-- Makes tasks `ids` pending: at the newest end, or with `at_head` where
-- they are taken next. A grouped task goes to its group's list, and the
-- group into the turns if it was not there. Wakes idle workers when the
-- queue had nothing pending, unless `quiet` (the caller wakes them).
local function push_pending(ids, at_head, quiet)
    if #ids == 0 then
        return
    end
    local command = at_head and 'RPUSH' or 'LPUSH'
    local turns = redis.call('EXISTS', GROUPS) == 1
    local was_empty = not turns and redis.call('LLEN', PENDING) == 0
    local groups = {}
    if redis.call('EXISTS', GROUP_OF) == 1 then
        groups = hmget(GROUP_OF, ids)
    end
    local plain, by_group, order = {}, {}, {}
    for n, id in ipairs(ids) do
        local group = groups[n]
        if group then
            if not by_group[group] then
                by_group[group] = {}
                order[#order + 1] = group
            end
            local list = by_group[group]
            list[#list + 1] = id
        else
            plain[#plain + 1] = id
        end
    end
    if #plain > 0 then
        if turns and redis.call('LLEN', PENDING) == 0 then
            redis.call('LPUSH', GROUPS, '')
        end
        call_with(command, PENDING, plain)
    end
    for _, group in ipairs(order) do
        local list = group_pending(group)
        if redis.call('EXISTS', list) == 0 then
            if not turns then
                turns = true
                if redis.call('LLEN', PENDING) > 0 then
                    redis.call('LPUSH', GROUPS, '')
                end
            end
            redis.call('LPUSH', GROUPS, group)
        end
        call_with(command, list, by_group[group])
        redis.call('INCRBY', GROUPED, #by_group[group])
    end
    if was_empty and not quiet then
        redis.call('PUBLISH', NOTIFY, 'pending')
    end
end

-- Takes up to `limit` pending task ids, oldest first: one from each group
-- in turn while there are groups, then from PENDING.
local function take_in_turn(limit)
    local taken, grouped = {}, 0
    while #taken < limit do
        local group = redis.call('LMOVE', GROUPS, GROUPS, 'RIGHT', 'LEFT')
        if not group then
            break
        end
        local list = PENDING
        if group ~= '' then
            list = group_pending(group)
        end
        local id = redis.call('RPOP', list)
        if id then
            taken[#taken + 1] = id
            if group ~= '' then
                grouped = grouped + 1
            end
        end
        if redis.call('EXISTS', list) == 0 then
            leave_turns(group)
        end
    end
    if grouped > 0 then
        redis.call('DECRBY', GROUPED, grouped)
    end
    if #taken < limit and redis.call('EXISTS', GROUPS) == 0 then
        local more = redis.call('RPOP', PENDING, limit - #taken)
        if more then
            for _, id in ipairs(more) do
                taken[#taken + 1] = id
            end
        end
    end
    return taken
end

-- Takes pending task `id` out of its list (its group's, or PENDING).
local function unpend(id)
    local group = redis.call('EXISTS', GROUP_OF) == 1 and redis.call('HGET', GROUP_OF, id)
    if group then
        local list = group_pending(group)
        if redis.call('LREM', list, 0, id) > 0 then
            redis.call('DECR', GROUPED)
            if redis.call('EXISTS', list) == 0 then
                leave_turns(group)
            end
        end
        return
    end
    redis.call('LREM', PENDING, 0, id)
    if redis.call('EXISTS', PENDING) == 0 and redis.call('EXISTS', GROUPS) == 1 then
        leave_turns('')
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
    local leftovers = forget_flow_parents(ids)
    for _, hash in ipairs({MSG, STATE, ATTEMPTS, OWNER, ERROR, RESULT}) do
        call_with('HDEL', hash, ids)
    end
    -- The hashes only some queues use: one check on the common path.
    if redis.call('EXISTS', GROUP_OF, PROGRESS, AGGREGATED) > 0 then
        for _, hash in ipairs({GROUP_OF, PROGRESS, AGGREGATED}) do
            call_with('HDEL', hash, ids)
        end
    end
    results_freed(freed)
    if #leftovers > 0 then
        call_with('HSET', FLOW_OUTBOX, leftovers)
    end
end

-- Notes that task `id` (message `msg`, JSON), a flow child or a batch's
-- task, ended, in the outbox its report is delivered from
-- (broker/flows.rs): `ended` is 'completed', 'archived' or 'deleted',
-- `error` the last error (JSON) or nil, `result` the result bytes or nil.
-- Any other task is left alone. Written in the same script as the end
-- itself, so a crash between the two cannot lose the report.
local function note_flow_end(id, msg, ended, error, result, now)
    if not FLOW_OUTBOX or not msg
        or not (string.find(msg, '"parent":{', 1, true) or string.find(msg, '"batch":"', 1, true)) then
        return
    end
    local ok, decoded = pcall(cjson.decode, msg)
    if not ok or type(decoded) ~= 'table'
        or (type(decoded.parent) ~= 'table' and type(decoded.batch) ~= 'string') then
        return
    end
    redis.call('HSET', FLOW_OUTBOX, id, cjson.encode({
        parent = decoded.parent or cjson.null,
        batch = decoded.batch or cjson.null,
        type = decoded.type,
        state = ended,
        error = error or cjson.null,
        at_ms = now,
    }))
    if result then
        redis.call('HSET', FLOW_OUTBOX, id .. ' r', result)
    end
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

-- Records, in this queue, how child `index` of waiting flow parent
-- `parent` ended (`outcome`, JSON; `result`, its result or nil), once per
-- child: a second report changes nothing. Returns 'duplicate' or
-- 'no-parent' (nothing recorded), 'recorded' (the parent waits on, or no
-- longer waits), 'ready' (the last child: the parent is now pending, at
-- the head of the queue), or, with `fails_parent`, 'fail' (the caller
-- fails the parent).
local function child_ended(parent, index, outcome, result, fails_parent)
    local field = parent .. ' ' .. index
    if redis.call('HEXISTS', CHILDREN, field) == 1 then
        return 'duplicate'
    end
    if redis.call('HEXISTS', PARENTS, parent) == 0 then
        return 'no-parent'
    end
    redis.call('HSET', CHILDREN, field, outcome)
    if result then
        redis.call('HSET', CHILDREN, field .. ' r', result)
    end
    if redis.call('HGET', STATE, parent) ~= 'waiting' then
        return 'recorded'
    end
    if fails_parent then
        return 'fail'
    end
    if redis.call('HINCRBY', WAITING, parent, -1) > 0 then
        return 'recorded'
    end
    redis.call('HDEL', WAITING, parent)
    redis.call('HSET', STATE, parent, 'pending')
    push_pending({parent}, true)
    return 'ready'
end

-- Records that flow child `id` (message `msg`, JSON) completed with
-- `result`. A child whose parent waits in this same queue (the same slot)
-- is recorded for its parent here and now (child_ended); any other end goes
-- through the flow outbox (note_flow_end), as does a batch's task.
local function flow_child_completed(id, msg, result, now)
    if not FLOW_OUTBOX or not msg then
        return
    end
    local ok, decoded = pcall(cjson.decode, msg)
    local parent = ok and type(decoded) == 'table' and decoded.parent
    if type(parent) ~= 'table' or parent.queue ~= decoded.queue or type(decoded.batch) == 'string' then
        note_flow_end(id, msg, 'completed', nil, result, now)
        return
    end
    child_ended(tostring(parent.id), tostring(parent.index), cjson.encode({
        queue = decoded.queue,
        id = id,
        type = decoded.type,
        state = 'completed',
        error = cjson.null,
        on_failure = parent.on_failure or 'fail-parent',
    }), result, false)
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

-- Schedules new task `id` (message `msg`) for `due` as the holder of
-- `key` in the unique hashes until `lock_until`: the open task of a
-- debounce (debounce.lua) or an aggregation (aggregate.lua).
local function schedule_holder(id, msg, due, key, lock_until)
    redis.call('HSET', MSG, id, msg)
    note_groups({id, msg})
    redis.call('HSET', STATE, id, 'scheduled')
    add_due(SCHEDULED, {due, id}, due)
    redis.call('HSET', UNIQUE, key, id)
    redis.call('ZADD', UNIQUE_UNTIL, lock_until, key)
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
