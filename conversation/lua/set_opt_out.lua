-- Record that an identity opted in or out (STOP/START, or the provider refused it as unsubscribed).
-- KEYS[1] thread hash, KEYS[2] activity list
-- ARGV: 1 identity kind, 2 address, 3 "1" opted out / "0" opted in, 4 now_ms, 5 actor kind
-- Returns thread_state(1 when the identity belongs to this customer / 0 otherwise, -1).
local raw = redis.call('HGET', KEYS[1], 'ids')
if not raw then return thread_state(0, -1) end
local ids = cjson.decode(raw)
for _, ident in ipairs(ids) do
  if ident[1] == ARGV[1] and ident[2] == ARGV[2] then
    local value = tonumber(ARGV[3])
    if ident[3] ~= value then
      ident[3] = value
      redis.call('HSET', KEYS[1], 'ids', cjson.encode(ids))
      redis.call('HINCRBY', KEYS[1], 'ver', 1)
      log(KEYS[2], 'opt_out_changed', ARGV[4], ARGV[5], '',
          {identity = ARGV[1] .. ':' .. ARGV[2], opted_out = value == 1})
    end
    return thread_state(1, -1)
  end
end
return thread_state(0, -1)
