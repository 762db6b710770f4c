-- Move a conversation between the listing indexes, newest version wins.
-- All index keys share the {ix} tag, so this is one atomic call even on a Cluster. The keys are
-- derived from ARGV because which sets are touched depends on the stored state.
-- KEYS[1] index state hash
-- ARGV: 1 key prefix ("<prefix>:{ix}"), 2 cid, 3 version, 4 status, 5 queue, 6 assignee,
--       7 recency score (last message ms), 8 urgency score
-- Returns 1 when applied, 0 when an equal or newer version was already applied.
local p, cid, ver = ARGV[1], ARGV[2], tonumber(ARGV[3])
local old = redis.call('HGET', KEYS[1], cid)
if old then
  local over, ostatus, oqueue, oassignee = string.match(old, '^(%d+)|([^|]*)|([^|]*)|(.*)$')
  if tonumber(over) >= ver then return 0 end
  redis.call('ZREM', p .. ':status:' .. ostatus, cid)
  if oqueue ~= '' then redis.call('ZREM', p .. ':queue:' .. oqueue, cid) end
  if oassignee ~= '' then redis.call('ZREM', p .. ':assignee:' .. oassignee, cid) end
end
local status, queue, assignee = ARGV[4], ARGV[5], ARGV[6]
redis.call('ZADD', p .. ':status:' .. status, ARGV[7], cid)
-- queues and assignee lists hold live work only; resolved threads leave them
if status == 'resolved' then queue = ''; assignee = '' end
if queue ~= '' then
  redis.call('ZADD', p .. ':queue:' .. queue, ARGV[8], cid)
  redis.call('SADD', p .. ':queues', queue)
end
if assignee ~= '' then redis.call('ZADD', p .. ':assignee:' .. assignee, ARGV[7], cid) end
redis.call('HSET', KEYS[1], cid, ver .. '|' .. status .. '|' .. queue .. '|' .. assignee)
return 1
