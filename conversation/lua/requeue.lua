-- An operator's replay of a dead-lettered send: back to queued with a fresh attempt count.
-- This is the one deliberate step backwards in delivery status.
-- KEYS[1] delivery overlay; ARGV: 1 seq. Returns 1, or 0 when the message was delivered meanwhile.
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return -1 end
local rec = cjson.decode(raw)
if rec[1] ~= 'failed' and rec[1] ~= 'queued' then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode({'queued', cjson.null, cjson.null, 0}))
return 1
