-- Change a thread's routing state (status, assignee, queue, priority) atomically, keeping episodes.
-- KEYS[1] thread hash, KEYS[2] episodes list
-- ARGV: 1 now_ms, then field/value pairs among status, assignee ("" unassigns), queue, priority
-- Resolving closes the episode (kept in the episodes list); reopening starts a new one.
-- Returns the state as in append_inbound.lua, with applied = 1, or {-2} for no such thread.
if redis.call('EXISTS', KEYS[1]) == 0 then return {-2} end
local now = ARGV[1]
for i = 2, #ARGV, 2 do
  local field, value = ARGV[i], ARGV[i + 1]
  if field == 'status' then
    local old = redis.call('HGET', KEYS[1], 'status')
    if value == 'resolved' and old ~= 'resolved' then
      local h = redis.call('HMGET', KEYS[1], 'ep', 'ep_open', 'ep_first_reply')
      redis.call('RPUSH', KEYS[2], cjson.encode({tonumber(h[1]) or 0, h[2] or '', h[3] or '', now}))
    elseif value ~= 'resolved' and old == 'resolved' then
      redis.call('HINCRBY', KEYS[1], 'ep', 1)
      redis.call('HSET', KEYS[1], 'ep_open', now)
      redis.call('HDEL', KEYS[1], 'ep_first_reply')
    end
    redis.call('HSET', KEYS[1], 'status', value)
  elseif value == '' then
    redis.call('HDEL', KEYS[1], field)
  else
    redis.call('HSET', KEYS[1], field, value)
  end
end
redis.call('HINCRBY', KEYS[1], 'ver', 1)
local h = redis.call('HMGET', KEYS[1], 'status', 'queue', 'assignee', 'priority', 'lm', 'ver', 'ep', 'ep_open')
return {1, -1, h[1] or '', h[2] or '', h[3] or '', h[4] or '', h[5] or '0', h[6] or '0', h[7] or '0', h[8] or '0'}
