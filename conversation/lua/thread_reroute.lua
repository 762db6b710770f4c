-- Route a thread again (an agent asked): the rules' queue, priority and tags, with one
-- `rerouted` entry naming the rule, atomically.
-- KEYS[1] thread hash, KEYS[2] activity list
-- ARGV: 1 now_ms, 2 actor kind, 3 actor name, 4 queue, 5 priority, 6 rule, 7 tags to add (JSON list)
-- Always logged, even when the rules pick what the thread already has: the agent asked, and the
-- log says what the rules answered. Returns thread_state(1, -1), or {-2, -1} with no thread.
if redis.call('EXISTS', KEYS[1]) == 0 then return {-2, -1} end
local h = redis.call('HMGET', KEYS[1], 'queue', 'priority', 'tags')
local tags = cjson.decode(h[3] or '[]')
local have = {}
for _, t in ipairs(tags) do have[t] = true end
local added = cjson.decode(ARGV[7])
for _, t in ipairs(added) do
  if not have[t] then table.insert(tags, t); have[t] = true end
end
if #tags > 0 then redis.call('HSET', KEYS[1], 'tags', cjson.encode(tags)) end
redis.call('HSET', KEYS[1], 'queue', ARGV[4], 'priority', ARGV[5])
redis.call('HINCRBY', KEYS[1], 'ver', 1)
local details = {from_queue = h[1] or '', queue = ARGV[4], from_priority = tonumber(h[2] or '0'),
                 priority = tonumber(ARGV[5]), rule = ARGV[6]}
if #added > 0 then details.tags = added end
log(KEYS[2], 'rerouted', ARGV[1], ARGV[2], ARGV[3], details)
return thread_state(1, -1)
