-- Append one inbound message to a customer's thread, and open/reopen the thread: atomically,
-- with its activity.
-- KEYS[1] thread hash, KEYS[2] timeline list, KEYS[3] activity list (one {c:ID} slot)
-- ARGV: 1 partition, 2 ingest entry id, 3 message blob, 4 created_ms,
--       5 identity kind, 6 identity address, 7 sender name, 8 channel, 9 instance,
--       10 routed queue, 11 routed priority, 12 opt ("stop"/"start"/""), 13 reopens ("1"/"0"),
--       14 link the sender identity to this customer ("1"/"0": it wrote in by reference only),
--       15 subject ("" none), 16 provider id to keep as thread context ("" for unthreaded channels),
--       17 the routing rule's name, 18 auto-reply ("1"/"0")
-- Replays are recognised by the per-partition watermark: entries of one partition arrive in
-- stream order, so an entry at or below the watermark was applied before a crash.
-- Returns {applied, seq, status, queue, assignee, priority, last_message_ms, ver, episode, ep_open, logged}
local function newer(a, b)  -- stream id a > b ?
  local ams, aseq = string.match(a, '(%d+)-(%d+)')
  local bms, bseq = string.match(b, '(%d+)-(%d+)')
  ams, aseq, bms, bseq = tonumber(ams), tonumber(aseq), tonumber(bms), tonumber(bseq)
  return ams > bms or (ams == bms and aseq > bseq)
end

local function state(applied, seq)
  local h = redis.call('HMGET', KEYS[1], 'status', 'queue', 'assignee', 'priority', 'lm', 'ver', 'ep', 'ep_open')
  return {applied, seq, h[1] or '', h[2] or '', h[3] or '', h[4] or '', h[5] or '0', h[6] or '0', h[7] or '0',
          h[8] or '0', LOGGED}
end

local wkey = 'w:' .. ARGV[1]
local mark = redis.call('HGET', KEYS[1], wkey)
if mark and not newer(ARGV[2], mark) then
  return state(0, -1)
end

local now = ARGV[4]
local identity = ARGV[5] .. ':' .. ARGV[6]
local first_contact = redis.call('HSETNX', KEYS[1], 'created', now) == 1
if first_contact then
  redis.call('HSET', KEYS[1], 'ids', '[]', 'ep', 0)
end
if ARGV[7] ~= '' and not redis.call('HGET', KEYS[1], 'name') then
  redis.call('HSET', KEYS[1], 'name', ARGV[7])
end

-- identities: [[kind, address, opted_out], ...]; opt-out words are recorded on the identity
local linked = ARGV[14] == '1'
if linked then
  local ids = cjson.decode(redis.call('HGET', KEYS[1], 'ids'))
  local found = nil
  for _, ident in ipairs(ids) do
    if ident[1] == ARGV[5] and ident[2] == ARGV[6] then found = ident end
  end
  if not found then
    found = {ARGV[5], ARGV[6], 0}
    table.insert(ids, found)
    log(KEYS[3], 'identity_linked', now, 'system', '',
        {identity = identity, via = first_contact and 'first_contact' or 'message'})
  end
  local opted = found[3]
  if ARGV[12] == 'stop' then found[3] = 1 elseif ARGV[12] == 'start' then found[3] = 0 end
  if found[3] ~= opted then
    log(KEYS[3], 'opt_out_changed', now, 'customer', '', {identity = identity, opted_out = found[3] == 1})
  end
  redis.call('HSET', KEYS[1], 'ids', cjson.encode(ids))
end

if ARGV[16] ~= '' then
  local field = 'ctx:' .. ARGV[9]
  local raw = redis.call('HGET', KEYS[1], field)
  local ctx = raw and cjson.decode(raw) or {s = '', r = {}}
  if ARGV[15] ~= '' then ctx.s = ARGV[15] end
  table.insert(ctx.r, ARGV[16])
  while #ctx.r > 10 do table.remove(ctx.r, 1) end  -- THREAD_REFERENCES in store/threads.py
  redis.call('HSET', KEYS[1], field, cjson.encode(ctx))
end

local seq = redis.call('RPUSH', KEYS[2], ARGV[3]) - 1
local received = {m = seq, channel = ARGV[8], instance = ARGV[9]}
if ARGV[18] == '1' then received.auto_reply = true end
log(KEYS[3], 'message_received', now, 'customer', '', received)

local status = redis.call('HGET', KEYS[1], 'status')
if (not status or status == 'resolved') and ARGV[13] == '1' then
  -- a new episode: routed afresh, with no assignee carried over from the last one
  local episode = redis.call('HINCRBY', KEYS[1], 'ep', 1)
  redis.call('HSET', KEYS[1], 'status', 'open', 'queue', ARGV[10], 'priority', ARGV[11], 'ep_open', now)
  redis.call('HDEL', KEYS[1], 'assignee', 'ep_first_reply')
  if status then
    log(KEYS[3], 'reopened', now, 'customer', '', {from = status, to = 'open', episode = episode})
  end
  log(KEYS[3], 'routed', now, 'rule', ARGV[17], {queue = ARGV[10], priority = tonumber(ARGV[11]), rule = ARGV[17]})
elseif not status then
  -- first contact that does not open a thread (e.g. an auto-reply): still routed, but resolved
  redis.call('HSET', KEYS[1], 'status', 'resolved', 'queue', ARGV[10], 'priority', ARGV[11])
  log(KEYS[3], 'routed', now, 'rule', ARGV[17], {queue = ARGV[10], priority = tonumber(ARGV[11]), rule = ARGV[17]})
end
-- 'in:<channel>' is the customer's last message on that medium: reply windows count from it.
-- 'li' (where to answer by default) only follows identities that belong to this customer.
redis.call('HSET', KEYS[1], 'lm', now, wkey, ARGV[2], 'in:' .. ARGV[8], now)
if linked then
  redis.call('HSET', KEYS[1], 'li', cjson.encode({ARGV[8], ARGV[9], ARGV[5], ARGV[6]}))
end
redis.call('HINCRBY', KEYS[1], 'ver', 1)
return state(1, seq)
