-- Move a conversation between the listing indexes, newest version wins.
-- All index keys share the {ix} tag, so this is one atomic call even on a Cluster. The keys are
-- derived from ARGV because which sets are touched depends on the stored state.
-- KEYS[1] index state hash
-- ARGV: 1 key prefix ("<prefix>:{ix}"), 2 cid, 3 version, 4 status, 5 queue, 6 assignee,
--       7 recency score (last message ms), 8 urgency score
-- Live work (open, pending) is in queue:<q> by urgency and assignee:<a> by recency; resolved
-- threads move to queue:<q>:resolved and assignee:<a>:resolved, by recency, so that "X's
-- resolved conversations" is one read too.
-- Returns 1 when applied, 0 when an equal or newer version was already applied.
local p, cid, ver = ARGV[1], ARGV[2], tonumber(ARGV[3])

local function sets(status, queue, assignee)
  local out = {{p .. ':status:' .. status, 'recency'}}
  local suffix = status == 'resolved' and ':resolved' or ''
  if queue ~= '' then table.insert(out, {p .. ':queue:' .. queue .. suffix, suffix == '' and 'urgency' or 'recency'}) end
  if assignee ~= '' then table.insert(out, {p .. ':assignee:' .. assignee .. suffix, 'recency'}) end
  return out
end

local old = redis.call('HGET', KEYS[1], cid)
if old then
  local over, ostatus, oqueue, oassignee = string.match(old, '^(%d+)|([^|]*)|([^|]*)|(.*)$')
  if tonumber(over) >= ver then return 0 end
  for _, s in ipairs(sets(ostatus, oqueue, oassignee)) do redis.call('ZREM', s[1], cid) end
end
local status, queue, assignee = ARGV[4], ARGV[5], ARGV[6]
local scores = {recency = ARGV[7], urgency = ARGV[8]}
for _, s in ipairs(sets(status, queue, assignee)) do redis.call('ZADD', s[1], scores[s[2]], cid) end
if queue ~= '' then redis.call('SADD', p .. ':queues', queue) end
redis.call('HSET', KEYS[1], cid, ver .. '|' .. status .. '|' .. queue .. '|' .. assignee)
return 1
