-- An agent takes a thread: the capacity check and the claim in one atomic step, in the {ag} slot.
-- KEYS[1] the loads hash ("<agent>|<channel>" -> threads held), KEYS[2] claims hash (cid -> claim),
-- KEYS[3] last-assignment sorted set (agent -> ms: who has been idle longest)
-- ARGV: 1 agent, 2 conversation id, 3 channel, 4 capacity for that channel, 5 now ms,
--       6 "1": count it even beyond capacity (a supervisor's assignment, a key account's manager),
--       7 the {ag} key prefix (the push ranking's keys, lua/_ranking.lua)
-- A claim is "<agent>|<channel>|<ms>", read from the right (a name may hold "|").
-- Returns 1 claimed, 2 already this agent's, 0 at capacity, -1 claimed by another agent.
--@include _ranking.lua
local existing = redis.call('HGET', KEYS[2], ARGV[2])
if existing then
  local who = string.match(existing, '^(.*)|[^|]*|%d*$')
  if who == ARGV[1] then return 2 end
  return -1
end
if ARGV[6] ~= '1' then
  local held = tonumber(redis.call('HGET', KEYS[1], ARGV[1] .. '|' .. ARGV[3]) or '0')
  if held >= tonumber(ARGV[4]) then return 0 end
end
redis.call('HINCRBY', KEYS[1], ARGV[1] .. '|' .. ARGV[3], 1)
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1] .. '|' .. ARGV[3] .. '|' .. ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
rerank(ARGV[7], ARGV[1])
return 1
