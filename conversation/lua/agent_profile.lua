-- An agent's profile is written or removed, and the push ranking follows, in the {ag} slot.
-- KEYS[1] the profile key, KEYS[2] the set of agent names, KEYS[3] presence hash, KEYS[4]
-- heartbeats sorted set
-- ARGV: 1 the {ag} key prefix, 2 agent, 3 what: 'create' (only if none of that name exists),
--       'save', 'delete', or 'rank' (the ranking rebuilt from the stored profile),
--       4 the profile (msgpack, as conversation.agents.Agent) for create and save
-- Returns 1 done, 0 not (create: the name exists; delete and rank: no such agent).
--@include _ranking.lua

-- Set the agent's capacities from their stored profile (KEYS[1]) and rank them; no profile: their
-- capacities go and they are ranked nowhere.
local function recap(p, agent)
  unrank(p, agent)
  redis.call('DEL', p .. ':caps:' .. agent)
  local packed = redis.call('GET', KEYS[1])
  if not packed then return end
  local capacity = cmsgpack.unpack(packed).capacity
  local fields = {}
  if type(capacity) == 'table' then
    for channel, n in pairs(capacity) do
      table.insert(fields, channel)
      table.insert(fields, n)
    end
  end
  if #fields == 0 then fields = {'*', 0} end
  redis.call('HSET', p .. ':caps:' .. agent, unpack(fields))
  rerank(p, agent)
end

local p, agent, what = ARGV[1], ARGV[2], ARGV[3]
if what == 'delete' then
  local deleted = redis.call('DEL', KEYS[1])
  recap(p, agent)
  redis.call('SREM', KEYS[2], agent)
  redis.call('HDEL', KEYS[3], agent)
  redis.call('ZREM', KEYS[4], agent)
  return deleted
end
if what == 'rank' then
  if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
elseif what == 'create' and redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
else
  redis.call('SET', KEYS[1], ARGV[4])
  redis.call('SADD', KEYS[2], agent)
end
recap(p, agent)
return 1
