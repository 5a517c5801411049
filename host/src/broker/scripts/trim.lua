-- Housekeeping: forgets completed tasks past their retention, drops expired
-- unique locks and id reservations and daily counts older than 31 days, and
-- trims the archive to its caps.
--
-- KEYS: the queue's keys (prelude.lua)
-- ARGV[1] -> how many entries to drop per structure and call at most
-- ARGV[2] -> the archive's size cap (tasks)
-- ARGV[3] -> the archive's age cap, ms
--
-- Returns {completed dropped, unique locks dropped, archived dropped,
-- {flow children whose end has waited more than 2 s in the flow outbox},
-- {parent id, its children (JSON), ...},
-- {root id, the tasks of its flow written in later calls (JSON), ...}}:
-- the caller delivers those reports (their first delivery, right after
-- the end, did not happen: its process died or lost Redis); forgets the
-- finished children of flow parents that were forgotten (prelude.lua's
-- forget_field), so that retention removes a finished flow whole; and
-- reports as deleted the tasks of flows whose producer stopped more than
-- a minute ago between two of their writes (flow_enqueue.lua's note).
--
-- A queue with nothing to trim (no completed or archived task, lock,
-- reservation or undelivered report, and at most 31 days of counts) costs
-- two commands.
if redis.call('EXISTS', COMPLETED, UNIQUE_UNTIL, RESERVED_IDS, ARCHIVED, FLOW_OUTBOX) == 0 and redis.call('HLEN', STATS) <= 62 then
    return {0, 0, 0, {}, {}, {}}
end
local now, budget = now_ms(), tonumber(ARGV[1])
local done = redis.call('ZRANGEBYSCORE', COMPLETED, '-inf', now, 'LIMIT', 0, budget)
call_with('ZREM', COMPLETED, done)
forget_all(done)
local locks = redis.call('ZRANGEBYSCORE', UNIQUE_UNTIL, '-inf', now, 'LIMIT', 0, budget)
for _, key in ipairs(locks) do
    redis.call('ZREM', UNIQUE_UNTIL, key)
    redis.call('HDEL', UNIQUE, key)
end
redis.call('ZREMRANGEBYSCORE', RESERVED_IDS, '-inf', now)
-- Daily counts are kept for 31 days.
-- (two fields a day: read only once there are more than 31 days' worth)
local today = math.floor(now / 86400000)
if redis.call('HLEN', STATS) > 62 then
    for _, field in ipairs(redis.call('HKEYS', STATS)) do
        local day = tonumber(string.match(field, ':(%d+)$') or today)
        if day < today - 30 then
            redis.call('HDEL', STATS, field)
        end
    end
end
local archived = trim_archive(now, tonumber(ARGV[2]), tonumber(ARGV[3]), budget)
local overdue, leftovers, unfinished = {}, {}, {}
local scan = redis.call('HSCAN', FLOW_OUTBOX, 0, 'COUNT', 200)
for k = 1, #scan[2], 2 do
    local field, value = scan[2][k], scan[2][k + 1]
    local parent = string.match(field, '^(.+) f$')
    local root = string.match(field, '^(.+) w$')
    if parent then
        leftovers[#leftovers + 1] = parent
        leftovers[#leftovers + 1] = value
    elseif root then
        local at_ms, nodes = string.match(value, '^(%d+) (.*)$')
        if not at_ms or tonumber(at_ms) < now - 60000 then
            unfinished[#unfinished + 1] = root
            unfinished[#unfinished + 1] = nodes or '[]'
        end
    elseif not string.find(field, ' ', 1, true) then
        local ok, report = pcall(cjson.decode, value)
        if not ok or type(report) ~= 'table' or (tonumber(report.at_ms) or 0) < now - 2000 then
            overdue[#overdue + 1] = field
        end
    end
end
return {#done, #locks, archived, overdue, leftovers, unfinished}
