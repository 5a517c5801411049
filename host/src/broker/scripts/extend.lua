-- Extends the leases a worker still holds.
--
-- KEYS: the queue's keys (prelude.lua)
-- ARGV[1] -> lease duration from now, ms
-- ARGV[2..] -> pairs of task id and the lease token it was leased under
--
-- Returns the ids whose lease the worker no longer holds (taken back after
-- expiring, or deleted): the worker must stop running them.
local until_ms = now_ms() + tonumber(ARGV[1])
local lost = {}
for i = 2, #ARGV, 2 do
    local id, owner = ARGV[i], ARGV[i + 1]
    if redis.call('HGET', OWNER, id) == owner and redis.call('ZSCORE', ACTIVE, id) then
        redis.call('ZADD', ACTIVE, 'XX', until_ms, id)
    else
        lost[#lost + 1] = id
    end
end
return lost
