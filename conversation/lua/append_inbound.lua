-- Append one inbound message to a customer's thread, and open/reopen the thread: atomically,
-- with its activity.
-- KEYS[1] thread hash, KEYS[2] timeline list, KEYS[3] activity list, KEYS[4] delivery overlay
-- (one {c:ID} slot)
-- ARGV[1]: a msgpack array of the arguments below but the third, ARGV[2]: the message blob
-- (two arguments instead of eighteen, because redis-py's command encoding costs per argument
-- and this call runs for every message; Redis's cmsgpack cannot read msgpack's bin type):
--       1 partition, 2 ingest entry id, 3 message blob, 4 created_ms,
--       5 identity kind, 6 identity address, 7 sender name, 8 channel, 9 instance,
--       10 routed queue, 11 routed priority, 12 opt ("stop"/"start"/""), 13 reopens ("1"/"0"),
--       14 link the sender identity to this customer ("1"/"0": it wrote in by reference only),
--       15 subject ("" none), 16 provider id to keep as thread context ("" for unthreaded channels),
--       17 the routing rule's name, 18 auto-reply ("1"/"0"), 19 when the customer sent it (ms, the
--       reply window's start), 20 the sender's address as the provider wrote it ("" as canonical),
--       21 an echo of ours ("1"/"0"), 22 the provider's message id, 23 the sender's language as
--       the channel tells it ("" unknown), 24 the tags the route adds (a JSON list, "" none),
--       25 the agent the route assigns the new episode to (a key account's manager, "" none)
-- Replays are recognised by the per-partition watermark: entries of one partition arrive in
-- stream order, so an entry at or below the watermark was applied before a crash.
-- Returns thread_state(applied, seq) (lua/_activity.lua).
local function newer(a, b)  -- stream id a > b ?
  local ams, aseq = string.match(a, '(%d+)-(%d+)')
  local bms, bseq = string.match(b, '(%d+)-(%d+)')
  ams, aseq, bms, bseq = tonumber(ams), tonumber(aseq), tonumber(bms), tonumber(bseq)
  return ams > bms or (ams == bms and aseq > bseq)
end


local A = cmsgpack.unpack(ARGV[1])
for i = 1, #A do A[i] = tostring(A[i]) end
table.insert(A, 3, ARGV[2])
local wkey = 'w:' .. A[1]
local mark = redis.call('HGET', KEYS[1], wkey)
if mark and not newer(A[2], mark) then
  return thread_state(0, -1)
end

local now = A[4]
local identity = A[5] .. ':' .. A[6]
local first_contact = redis.call('HSETNX', KEYS[1], 'created', now) == 1
if first_contact then
  redis.call('HSET', KEYS[1], 'ids', '[]', 'ep', 0)
end

if A[21] == '1' then
  -- Ours, sent from the provider's own app (the WhatsApp Business app, the Page inbox): an
  -- outbound message already sent. It answers nothing, opens no window and reopens nothing.
  if first_contact then
    redis.call('HSET', KEYS[1], 'ids', cjson.encode({{A[5], A[6], 0}}))
    log(KEYS[3], 'identity_linked', now, 'system', '', {identity = identity, via = 'first_contact'})
  end
  local seq = redis.call('RPUSH', KEYS[2], A[3]) - 1
  redis.call('HSET', KEYS[4], seq, cjson.encode({'sent', cjson.null, A[22], 0, 0, cjson.null}))
  log(KEYS[3], 'outside_reply', now, 'system', '', {m = seq, channel = A[8], instance = A[9]})
  if not redis.call('HGET', KEYS[1], 'status') then
    redis.call('HSET', KEYS[1], 'status', 'resolved', 'queue', A[10], 'priority', A[11])
  end
  redis.call('HSET', KEYS[1], 'lm', now, wkey, A[2])
  redis.call('HINCRBY', KEYS[1], 'ver', 1)
  return thread_state(1, seq)
end

if A[7] ~= '' then redis.call('HSETNX', KEYS[1], 'name', A[7]) end

-- identities: [[kind, address, opted_out], ...]; opt-out words are recorded on the identity.
-- 'li' names the identity the customer last wrote from, and is only ever one of theirs: a
-- message from that same identity, with no STOP or START in it, has nothing to change here,
-- which spares most messages decoding and rewriting the list.
local linked = A[14] == '1'
local li = cjson.encode({A[8], A[9], A[5], A[6]})
local li_changed = linked and redis.call('HGET', KEYS[1], 'li') ~= li
local opt_changed = nil  -- the STOP/START this message carries changed the identity: logged after it
if linked and (li_changed or A[12] ~= '') then
  local ids = cjson.decode(redis.call('HGET', KEYS[1], 'ids'))
  local found = nil
  for _, ident in ipairs(ids) do
    if ident[1] == A[5] and ident[2] == A[6] then found = ident end
  end
  if not found then
    found = {A[5], A[6], 0}
    table.insert(ids, found)
    log(KEYS[3], 'identity_linked', now, 'system', '',
        {identity = identity, via = first_contact and 'first_contact' or 'message'})
  end
  local opted = found[3]
  if A[12] == 'stop' then found[3] = 1 elseif A[12] == 'start' then found[3] = 0 end
  if found[3] ~= opted then opt_changed = found[3] == 1 end
  redis.call('HSET', KEYS[1], 'ids', cjson.encode(ids))
end

if A[16] ~= '' then
  local field = 'ctx:' .. A[9]
  local raw = redis.call('HGET', KEYS[1], field)
  local ctx = raw and cjson.decode(raw) or {s = '', r = {}}
  if A[15] ~= '' then ctx.s = A[15] end
  table.insert(ctx.r, A[16])
  while #ctx.r > 10 do table.remove(ctx.r, 1) end  -- THREAD_REFERENCES in store/threads.py
  redis.call('HSET', KEYS[1], field, cjson.encode(ctx))
end

local seq = redis.call('RPUSH', KEYS[2], A[3]) - 1
local received = {m = seq, channel = A[8], instance = A[9]}
if A[18] == '1' then received.auto_reply = true end
log(KEYS[3], 'message_received', now, 'customer', '', received)
if opt_changed ~= nil then
  log(KEYS[3], 'opt_out_changed', now, 'customer', '', {identity = identity, opted_out = opt_changed})
end

local status = redis.call('HGET', KEYS[1], 'status')
if (not status or status == 'resolved') and A[13] == '1' then
  -- a new episode: routed afresh, with no assignee carried over from the last one
  local episode = redis.call('HINCRBY', KEYS[1], 'ep', 1)
  local previous = redis.call('HGET', KEYS[1], 'assignee')
  redis.call('HSET', KEYS[1], 'status', 'open', 'queue', A[10], 'priority', A[11], 'ep_open', now)
  redis.call('HDEL', KEYS[1], 'assignee', 'ep_first_reply')
  if status then
    log(KEYS[3], 'reopened', now, 'customer', '', {from = status, to = 'open', episode = episode})
  end
  if previous then
    log(KEYS[3], 'unassigned', now, 'system', '', {agent = previous, reason = 'new_episode'})
  end
  local routed = {queue = A[10], priority = tonumber(A[11]), rule = A[17]}
  if A[24] and A[24] ~= '' then
    local tags = cjson.decode(redis.call('HGET', KEYS[1], 'tags') or '[]')
    local have = {}
    for _, t in ipairs(tags) do have[t] = true end
    for _, t in ipairs(cjson.decode(A[24])) do
      if not have[t] then table.insert(tags, t); have[t] = true end
    end
    redis.call('HSET', KEYS[1], 'tags', cjson.encode(tags))
    routed.tags = cjson.decode(A[24])
  end
  log(KEYS[3], 'routed', now, 'rule', A[17], routed)
  if A[25] and A[25] ~= '' then
    redis.call('HSET', KEYS[1], 'assignee', A[25], 'last_agent', A[25])
    log(KEYS[3], 'assigned', now, 'rule', A[17], {agent = A[25], rule = A[17], reason = 'account_manager'})
  end
elseif not status then
  -- first contact that does not open a thread (e.g. an auto-reply): still routed, but resolved
  redis.call('HSET', KEYS[1], 'status', 'resolved', 'queue', A[10], 'priority', A[11])
  log(KEYS[3], 'routed', now, 'rule', A[17], {queue = A[10], priority = tonumber(A[11]), rule = A[17]})
end
-- 'in:<instance>:<channel>' is when the customer last wrote there: reply windows count from it.
-- 'li' (where to answer by default) only follows identities that belong to this customer.
-- 'ra:<instance>:<channel>' is the address to answer at there when the provider writes it
-- otherwise (a Mexican WhatsApp id's old +52 1 form): the latest form the customer wrote from.
local wrote = A[19] ~= '' and A[19] or now
local rakey = 'ra:' .. A[9] .. ':' .. A[8]
if li_changed then
  redis.call('HSET', KEYS[1], 'lm', now, wkey, A[2], 'in:' .. A[9] .. ':' .. A[8], wrote, 'li', li)
else
  redis.call('HSET', KEYS[1], 'lm', now, wkey, A[2], 'in:' .. A[9] .. ':' .. A[8], wrote)
end
-- 'lh': the language the customer's channel last told (replies use it when they have none set).
if A[23] and A[23] ~= '' then redis.call('HSET', KEYS[1], 'lh', A[23]) end
if A[20] ~= '' then
  redis.call('HSET', KEYS[1], rakey, A[20])
else
  redis.call('HDEL', KEYS[1], rakey)
end
redis.call('HINCRBY', KEYS[1], 'ver', 1)
return thread_state(1, seq)
