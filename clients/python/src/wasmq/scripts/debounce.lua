-- Enqueues a debounced task: while the task holding its debounce key is
-- still scheduled (has not started), that task takes the new message
-- (keeping its id) and waits its delay again from now; otherwise the new
-- task is scheduled and takes the key. 100 rapid duplicates thus make one
-- run, with the last payload.
--
-- KEYS: the queue's keys (prelude.lua)
-- ARGV[1] -> task id (fresh)
-- ARGV[2] -> task message (JSON, compact, starting with its "id" field)
-- ARGV[3] -> delay before the task is due, ms (at least 1)
-- ARGV[4] -> (unused: a due time)
-- ARGV[5] -> the debounce key (held in the unique hashes)
-- ARGV[6] -> the key's lock time to live, ms
-- ARGV[7] -> (unused: id reservation)
--
-- Returns {'replaced', id of the task that took the message}, or {'ok', id},
-- or {'duplicate-id', state} when the fresh id is taken.
local now = now_ms()
local id, msg, key = ARGV[1], ARGV[2], ARGV[5]
local due = now + tonumber(ARGV[3])
local ttl = tonumber(ARGV[6])
local holder = redis.call('HGET', UNIQUE, key)
if holder and redis.call('HGET', STATE, holder) == 'scheduled' then
    local from = '"id":' .. cjson.encode(id)
    local at, to = string.find(msg, from, 1, true)
    if at == 2 then
        msg = '{"id":' .. cjson.encode(holder) .. string.sub(msg, to + 1)
        redis.call('HSET', MSG, holder, msg)
        note_groups({holder, msg})
        add_due(SCHEDULED, {due, holder}, due)
        redis.call('ZADD', UNIQUE_UNTIL, now + ttl, key)
        return {'replaced', holder}
    end
end
local taken = redis.call('HGET', STATE, id)
if taken then
    return {'duplicate-id', taken}
end
schedule_holder(id, msg, due, key, now + ttl)
return {'ok', id}
