-- Record that an identity opted in or out (STOP/START, or the provider refused it as unsubscribed).
-- KEYS[1] thread hash; ARGV: 1 identity kind, 2 address, 3 "1" opted out / "0" opted in
-- Returns 1 when the identity belongs to this customer, 0 otherwise.
local raw = redis.call('HGET', KEYS[1], 'ids')
if not raw then return 0 end
local ids = cjson.decode(raw)
for _, ident in ipairs(ids) do
  if ident[1] == ARGV[1] and ident[2] == ARGV[2] then
    ident[3] = tonumber(ARGV[3])
    redis.call('HSET', KEYS[1], 'ids', cjson.encode(ids))
    return 1
  end
end
return 0
