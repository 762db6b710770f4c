-- Move conversations between the listing indexes, newest version wins, a batch in one call.
-- All index keys share the {ix} tag, so this is one atomic call even on a Cluster. The keys are
-- derived from ARGV because which sets are touched depends on the stored state.
-- KEYS[1] index state hash, KEYS[2] the conversations' cards (what a listing shows)
-- ARGV: 1 key prefix ("<prefix>:{ix}"), 2 a msgpack array of states, each
--       {cid, version, status, queue, assignee, recency score (last message ms), urgency score,
--        waiting since (ms)},
--       3.. each state's card, in the same order (binary, so not inside the array: Redis's cmsgpack
--       cannot read msgpack's bin type)
-- Live work (open, pending) is in queue:<q> by urgency and assignee:<a> by recency; resolved
-- threads move to queue:<q>:resolved and assignee:<a>:resolved, by recency, so that "X's
-- resolved conversations" is one read too. all holds every conversation by recency. Open threads
-- nobody holds are also in waiting:<q> (by urgency) and waiting_since:<q> (by wait).
-- Returns how many states were applied (an equal or newer version already applied is skipped).
local p = ARGV[1]

local function sets(status, queue, assignee)
  local out = {{p .. ':status:' .. status, 'recency'}}
  local suffix = status == 'resolved' and ':resolved' or ''
  if queue ~= '' then table.insert(out, {p .. ':queue:' .. queue .. suffix, suffix == '' and 'urgency' or 'recency'}) end
  if assignee ~= '' then table.insert(out, {p .. ':assignee:' .. assignee .. suffix, 'recency'}) end
  -- Waiting: open, in a queue, nobody has it. By urgency (what a claim takes next) and by how
  -- long it has waited (the queue's oldest wait).
  if status == 'open' and queue ~= '' and assignee == '' then
    table.insert(out, {p .. ':waiting:' .. queue, 'urgency'})
    table.insert(out, {p .. ':waiting_since:' .. queue, 'since'})
  end
  return out
end

local applied = 0
for n, st in ipairs(cmsgpack.unpack(ARGV[2])) do
  local cid, ver, status, queue, assignee = st[1], tonumber(st[2]), st[3], st[4], st[5]
  local old = redis.call('HGET', KEYS[1], cid)
  local over, ostatus, oqueue, oassignee
  if old then over, ostatus, oqueue, oassignee = string.match(old, '^(%d+)|([^|]*)|([^|]*)|(.*)$') end
  if not old or tonumber(over) < ver then
    -- Most changes (a new message in an open thread) only move scores: then the sets stay.
    local moved = not old or ostatus ~= status or oqueue ~= queue or oassignee ~= assignee
    if old and moved then
      for _, s in ipairs(sets(ostatus, oqueue, oassignee)) do redis.call('ZREM', s[1], cid) end
    end
    local scores = {recency = st[6], urgency = st[7], since = st[8] or st[6]}
    for _, s in ipairs(sets(status, queue, assignee)) do redis.call('ZADD', s[1], scores[s[2]], cid) end
    redis.call('ZADD', p .. ':all', st[6], cid)
    if queue ~= '' and moved then redis.call('SADD', p .. ':queues', queue) end
    redis.call('HSET', KEYS[1], cid, ver .. '|' .. status .. '|' .. queue .. '|' .. assignee)
    redis.call('HSET', KEYS[2], cid, ARGV[2 + n])
    applied = applied + 1
  end
end
return applied
