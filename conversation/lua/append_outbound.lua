-- Queue an agent's reply (or store an internal note) on a customer's thread, atomically, with
-- its activity, honouring the Idempotency-Key and the recipient's opt-out.
-- KEYS[1] thread hash, KEYS[2] timeline, KEYS[3] delivery overlay, KEYS[4] idempotency key,
-- KEYS[5] activity list
-- ARGV: 1 message blob, 2 created_ms, 3 idempotency TTL seconds ("0": no key given),
--       4 is_note ("1"/"0"), 5 recipient identity kind, 6 recipient address, 7 overlay record,
--       8 author ("" none), 9 channel, 10 instance
-- Returns {code, seq, logged}: code 1 created, 0 an earlier request with the same key (seq is
-- its message), -1 the recipient opted out, -2 no such thread.
if redis.call('EXISTS', KEYS[1]) == 0 then return {-2, -1} end
if ARGV[3] ~= '0' then
  local earlier = redis.call('GET', KEYS[4])
  if earlier then return thread_state(0, tonumber(earlier)) end
end
if ARGV[4] ~= '1' then
  for _, ident in ipairs(cjson.decode(redis.call('HGET', KEYS[1], 'ids') or '[]')) do
    if ident[1] == ARGV[5] and ident[2] == ARGV[6] and ident[3] == 1 then return {-1, -1} end
  end
end
local seq = redis.call('RPUSH', KEYS[2], ARGV[1]) - 1
if ARGV[3] ~= '0' then redis.call('SET', KEYS[4], seq, 'EX', ARGV[3]) end
local actor = ARGV[8] ~= '' and 'agent' or 'system'
if ARGV[4] ~= '1' then
  redis.call('HSET', KEYS[3], seq, ARGV[7])
  redis.call('HSET', KEYS[1], 'lm', ARGV[2])
  redis.call('HINCRBY', KEYS[1], 'ver', 1)
  log(KEYS[5], 'reply_queued', ARGV[2], actor, ARGV[8],
      {m = seq, channel = ARGV[9], instance = ARGV[10], to = ARGV[5] .. ':' .. ARGV[6]})
else
  log(KEYS[5], 'note_added', ARGV[2], actor, ARGV[8], {m = seq})
end
return thread_state(1, seq)
