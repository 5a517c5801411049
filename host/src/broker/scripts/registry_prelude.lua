-- Prepended to the plugin registry's scripts (plugin_deploy.lua,
-- plugin_switch.lua; see broker/scripts.rs): the checks they share.

-- The error reply 'CONFLICT <JSON {task_type, plugin}>' when a plugin other
-- than `name`, current in the HASH `current`, handles one of the task types
-- in `types_json` (a JSON array) according to the HASH `types` (plugin name
-- -> its task types, JSON); nil when none does.
local function task_type_conflict(current, types, name, types_json)
    local mine = {}
    for _, task_type in ipairs(cjson.decode(types_json)) do
        mine[task_type] = true
    end
    for _, other in ipairs(redis.call('HKEYS', current)) do
        if other ~= name then
            local held = redis.call('HGET', types, other)
            if held then
                for _, task_type in ipairs(cjson.decode(held)) do
                    if mine[task_type] then
                        return redis.error_reply('CONFLICT ' .. cjson.encode({task_type = task_type, plugin = other}))
                    end
                end
            end
        end
    end
    return nil
end
