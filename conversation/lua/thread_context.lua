-- Keep a threaded channel's context per instance: the subject and the last provider ids to
-- reference in a reply (email References). append_inbound.lua does the same for inbound mail.
-- KEYS[1] thread hash; ARGV: 1 instance, 2 subject ("" keeps), 3 provider id ("" none), 4 max ids
local field = 'ctx:' .. ARGV[1]
local raw = redis.call('HGET', KEYS[1], field)
local ctx = raw and cjson.decode(raw) or {s = '', r = {}}
if ARGV[2] ~= '' then ctx.s = ARGV[2] end
if ARGV[3] ~= '' then
  table.insert(ctx.r, ARGV[3])
  while #ctx.r > tonumber(ARGV[4]) do table.remove(ctx.r, 1) end
end
redis.call('HSET', KEYS[1], field, cjson.encode(ctx))
return 1
