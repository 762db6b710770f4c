-- The ack path in one round trip: dedupe, then durable record, atomically.
-- KEYS[1] dedupe key, KEYS[2] ingest stream (same {p:N} slot)
-- ARGV[1] dedupe TTL seconds ("0": no dedupe, e.g. status callbacks), ARGV[2] field, ARGV[3] payload
-- Returns the stream entry id, or false for a duplicate.
if ARGV[1] ~= '0' then
  if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
    return false
  end
end
return redis.call('XADD', KEYS[2], '*', ARGV[2], ARGV[3])
