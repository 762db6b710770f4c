-- An agent sets their presence, or keeps it alive with a heartbeat; the push ranking follows, in
-- the {ag} slot. KEYS[1] presence hash, KEYS[2] heartbeats sorted set.
-- ARGV: 1 the {ag} key prefix, 2 agent, 3 presence (online, away, offline; '' for a heartbeat),
--       4 now ms
-- Returns the presence as set (false: never set).
--@include _ranking.lua
local p, agent, status = ARGV[1], ARGV[2], ARGV[3]
redis.call('ZADD', KEYS[2], ARGV[4], agent)
if status ~= '' then
  redis.call('HSET', KEYS[1], agent, status)
else
  status = redis.call('HGET', KEYS[1], agent)
end
rerank(p, agent)  -- a heartbeat after silence ranks them again
return status
