-- The push ranking, in the {ag} slot (`p` is its key prefix). Kept by every script that changes
-- what it depends on, so that a push decision reads the best agents first instead of the team.
-- <p>:caps:<agent>  hash, channel -> capacity, from the profile; '*' for an agent who declared no
--                   capacity (they take any channel, without limit)
-- <p>:rank:<ch>     sorted set of the agents online (as set) with room on channel <ch> (or on any,
--                   for '*'), best first: the most room, then idle longest, then by name
-- A heartbeat gone silent is judged when picking (lua/agent_pick.lua drops that agent from the
-- ranking; their next heartbeat or presence ranks them again).
local ROOM_STEPS = 1024   -- room beyond this ranks as equal: a declared capacity is at most 1000
local IDLE_SPAN = 2199023255552   -- 2^41 ms (about 69 years past IDLE_EPOCH) per step of room
local IDLE_EPOCH = 1700000000000  -- ms; idle times are ranked from here (exact below 2^53)

local function rank_score(room, idle_ms)
  local since = idle_ms - IDLE_EPOCH
  if since < 0 then since = 0 end
  if room > ROOM_STEPS then room = ROOM_STEPS end
  -- '%.0f': an exact integer; Lua's own number-to-string keeps only 14 digits
  return string.format('%.0f', (ROOM_STEPS - room) * IDLE_SPAN + since)
end

-- Rank an agent again on every channel of their capacity, from their presence, loads and idle time.
local function rerank(p, agent)
  local caps = redis.call('HGETALL', p .. ':caps:' .. agent)
  if #caps == 0 then return end
  local online = redis.call('HGET', p .. ':presence', agent) == 'online'
  local idle = tonumber(redis.call('ZSCORE', p .. ':idle', agent) or '0')
  for i = 1, #caps, 2 do
    local channel = caps[i]
    local room = ROOM_STEPS
    if channel ~= '*' then
      room = tonumber(caps[i + 1]) - tonumber(redis.call('HGET', p .. ':loads', agent .. '|' .. channel) or '0')
    end
    if online and room > 0 then
      redis.call('ZADD', p .. ':rank:' .. channel, rank_score(room, idle), agent)
    else
      redis.call('ZREM', p .. ':rank:' .. channel, agent)
    end
  end
end

local function unrank(p, agent)
  for _, channel in ipairs(redis.call('HKEYS', p .. ':caps:' .. agent)) do
    redis.call('ZREM', p .. ':rank:' .. channel, agent)
  end
end
