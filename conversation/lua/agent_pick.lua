-- Push: pick the agent for a thread and claim it for them, in one atomic step in the {ag} slot.
-- KEYS[1] loads hash, KEYS[2] claims hash, KEYS[3] last-assignment sorted set, KEYS[4] presence
-- hash, KEYS[5] heartbeats sorted set
-- ARGV: 1 conversation id, 2 channel, 3 now ms, 4 presence timeout ms, 5 the eligible agents
--       (members with the skills and the language) as a msgpack array of [agent, capacity on the
--       channel] (one argument, not four hundred: redis-py's encoding costs per argument).
-- Among them, those online (presence online and a heartbeat within the timeout) with room on the
-- channel; the one with the most room wins, then the one idle longest, then by name.
-- Returns {1, agent} claimed, {0} nobody has room, {-1, holder} already held.
local held = redis.call('HGET', KEYS[2], ARGV[1])
if held then return {-1, string.match(held, '^(.*)|[^|]*|%d*$')} end
local names, caps, loadfields = {}, {}, {}
for _, pair in ipairs(cmsgpack.unpack(ARGV[5])) do
  table.insert(names, pair[1])
  table.insert(caps, tonumber(pair[2]))
  table.insert(loadfields, pair[1] .. '|' .. ARGV[2])
end
if #names == 0 then return {0} end
local now, timeout = tonumber(ARGV[3]), tonumber(ARGV[4])
local status = redis.call('HMGET', KEYS[4], unpack(names))
local seen = redis.call('ZMSCORE', KEYS[5], unpack(names))
local loads = redis.call('HMGET', KEYS[1], unpack(loadfields))
local given = redis.call('ZMSCORE', KEYS[3], unpack(names))
local best, bestfree, bestidle = nil, 0, 0
for i, name in ipairs(names) do
  if status[i] == 'online' and seen[i] and now - tonumber(seen[i]) <= timeout then
    local free = caps[i] - tonumber(loads[i] or '0')
    local idle = tonumber(given[i] or '0')
    if free > 0 and (best == nil or free > bestfree or (free == bestfree and (idle < bestidle or
        (idle == bestidle and name < best)))) then
      best, bestfree, bestidle = name, free, idle
    end
  end
end
if best == nil then return {0} end
redis.call('HINCRBY', KEYS[1], best .. '|' .. ARGV[2], 1)
redis.call('HSET', KEYS[2], ARGV[1], best .. '|' .. ARGV[2] .. '|' .. ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[3], best)
return {1, best}
