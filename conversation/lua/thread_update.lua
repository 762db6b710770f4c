-- Change a thread's routing state (status, assignee, queue, priority) atomically, keeping
-- episodes, with one activity entry per actual change.
-- KEYS[1] thread hash, KEYS[2] episodes list, KEYS[3] activity list
-- ARGV: 1 now_ms, 2 actor kind, 3 actor name, then field/value pairs among status,
--       assignee ("" unassigns), queue, priority
-- Resolving closes the episode (kept in the episodes list); reopening starts a new one. A value
-- equal to the current one changes nothing and logs nothing.
-- Returns thread_state(1 when something changed else 0, -1), or {-2, -1} for no such thread.
if redis.call('EXISTS', KEYS[1]) == 0 then return {-2, -1} end
local now, actor, name = ARGV[1], ARGV[2], ARGV[3]
local changed = 0
for i = 4, #ARGV, 2 do
  local field, value = ARGV[i], ARGV[i + 1]
  local old = redis.call('HGET', KEYS[1], field) or ''
  if old ~= value then
    changed = 1
    if field == 'status' then
      if value == 'resolved' then
        local h = redis.call('HMGET', KEYS[1], 'ep', 'ep_open', 'ep_first_reply')
        redis.call('RPUSH', KEYS[2], cjson.encode({tonumber(h[1]) or 0, h[2] or '', h[3] or '', now}))
        log(KEYS[3], 'status_changed', now, actor, name, {from = old, to = value})
      elseif old == 'resolved' then
        local episode = redis.call('HINCRBY', KEYS[1], 'ep', 1)
        redis.call('HSET', KEYS[1], 'ep_open', now)
        redis.call('HDEL', KEYS[1], 'ep_first_reply')
        log(KEYS[3], 'reopened', now, actor, name, {from = old, to = value, episode = episode})
      else
        log(KEYS[3], 'status_changed', now, actor, name, {from = old, to = value})
      end
      redis.call('HSET', KEYS[1], 'status', value)
    elseif field == 'assignee' then
      if value == '' then
        redis.call('HDEL', KEYS[1], field)
        log(KEYS[3], 'unassigned', now, actor, name, {agent = old})
      else
        redis.call('HSET', KEYS[1], field, value, 'last_agent', value)
        local details = {agent = value}
        if old ~= '' then details.previous = old end
        log(KEYS[3], 'assigned', now, actor, name, details)
      end
    else
      redis.call('HSET', KEYS[1], field, value)
      local details = {}
      details[field] = field == 'priority' and tonumber(value) or value
      if old ~= '' then details['previous_' .. field] = field == 'priority' and tonumber(old) or old end
      log(KEYS[3], 'routed', now, actor, name, details)
    end
  end
end
if changed == 1 then redis.call('HINCRBY', KEYS[1], 'ver', 1) end
return thread_state(changed, -1)
