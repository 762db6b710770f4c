-- Link a provider message id to our message, and collect status reports that arrived first.
-- KEYS[1] provider-message hash ({pm:instance:id} slot)
-- ARGV: 1 our location "cid seq", 2 TTL seconds
-- Returns the early reports as a flat list [status, json, ...].
redis.call('HSET', KEYS[1], 'loc', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
local early = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if all[i] ~= 'loc' then table.insert(early, all[i]); table.insert(early, all[i + 1]) end
end
return early
