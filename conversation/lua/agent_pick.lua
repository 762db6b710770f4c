-- Push: pick the agent for a thread and claim it for them, in one atomic step in the {ag} slot.
-- KEYS[1] loads hash, KEYS[2] claims hash, KEYS[3] last-assignment sorted set, KEYS[4] heartbeats
-- sorted set
-- ARGV: 1 conversation id, 2 channel, 3 now ms, 4 presence timeout ms, 5 the eligible agents
--       (members with the skills and the language), each between newlines: "\nana\nbo\n",
--       6 the {ag} key prefix
-- The ranking (lua/_ranking.lua) holds the agents online with room, best first, so this reads
-- from its top until an eligible agent whose heartbeat is fresh: the one with the most room on
-- the channel, then idle longest, then by name. Agents who declared no capacity are ranked apart
-- ('*') and compete with the channel's best. Linear in how many better-ranked agents are not
-- eligible, not in the team's size.
-- Returns {1, agent} claimed, {0} nobody has room, {-1, holder} already held.
--@include _ranking.lua
local held = redis.call('HGET', KEYS[2], ARGV[1])
if held then return {-1, string.match(held, '^(.*)|[^|]*|%d*$')} end
local p, channel, eligible = ARGV[6], ARGV[2], ARGV[5]
local now, timeout = tonumber(ARGV[3]), tonumber(ARGV[4])
local PAGE = 32
local silent = {}

local function best_in(key)
  local start = 0
  while true do
    local page = redis.call('ZRANGE', key, start, start + PAGE - 1, 'WITHSCORES')
    for i = 1, #page, 2 do
      local name = page[i]
      if string.find(eligible, '\n' .. name .. '\n', 1, true) then
        local seen = redis.call('ZSCORE', KEYS[4], name)
        if seen and now - tonumber(seen) <= timeout then return name, tonumber(page[i + 1]) end
        table.insert(silent, name)
      end
    end
    if #page < 2 * PAGE then return nil end
    start = start + PAGE
  end
end

local best, score = best_in(p .. ':rank:' .. channel)
local other, other_score = best_in(p .. ':rank:*')
if other and (not best or other_score < score or (other_score == score and other < best)) then best = other end
for _, name in ipairs(silent) do unrank(p, name) end  -- away by silence, until they beat again
if best == nil then return {0} end
redis.call('HINCRBY', KEYS[1], best .. '|' .. channel, 1)
redis.call('HSET', KEYS[2], ARGV[1], best .. '|' .. channel .. '|' .. ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[3], best)
rerank(p, best)
return {1, best}
