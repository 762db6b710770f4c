-- List an identity on its customer (after its identity key was given to that customer), so that
-- the customer shows every way to reach them before each has written in; logged as linked.
-- KEYS[1] thread hash, KEYS[2] activity list; ARGV: 1 identity kind, 2 address, 3 now_ms, 4 how
-- it was linked (verified_email, reference, session...)
-- Returns thread_state(1 when added / 0 when already listed, -1).
if redis.call('HSETNX', KEYS[1], 'created', ARGV[3]) == 1 then
  redis.call('HSET', KEYS[1], 'ids', '[]', 'ep', 0)
end
local ids = cjson.decode(redis.call('HGET', KEYS[1], 'ids') or '[]')
for _, ident in ipairs(ids) do
  if ident[1] == ARGV[1] and ident[2] == ARGV[2] then return thread_state(0, -1) end
end
table.insert(ids, {ARGV[1], ARGV[2], 0})
redis.call('HSET', KEYS[1], 'ids', cjson.encode(ids))
redis.call('HINCRBY', KEYS[1], 'ver', 1)
log(KEYS[2], 'identity_linked', ARGV[3], 'system', '', {identity = ARGV[1] .. ':' .. ARGV[2], via = ARGV[4]})
return thread_state(1, -1)
