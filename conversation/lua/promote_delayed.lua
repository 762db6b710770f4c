-- Move sends whose retry time has come from the delay set back onto the outbound stream.
-- KEYS[1] delay zset (members "<message id>|<attempt>"), KEYS[2] outbound stream (one {out} slot)
-- ARGV: 1 now_ms, 2 batch size. Returns how many were moved.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  local mid, attempt = string.match(member, '^(.*)|(%d+)$')
  redis.call('XADD', KEYS[2], '*', 'm', mid, 'a', attempt)
  redis.call('ZREM', KEYS[1], member)
end
return #due
