-- An operator's replay of a dead-lettered send: back to queued with a fresh attempt count.
-- This is the one deliberate step backwards in delivery status; logged with who did it.
-- KEYS[1] delivery overlay, KEYS[2] activity list; ARGV: 1 seq, 2 now_ms, 3 actor kind, 4 actor name
-- Returns {1, logged}; {0, logged} when the message was delivered meanwhile; {-1} when there is none.
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return {-1, LOGGED} end
local rec = cjson.decode(raw)
if rec[1] ~= 'failed' and rec[1] ~= 'queued' then return {0, LOGGED} end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode({'queued', cjson.null, cjson.null, 0, 0, cjson.null}))
log(KEYS[2], 'reply_requeued', ARGV[2], ARGV[3], ARGV[4], {m = tonumber(ARGV[1])})
return {1, LOGGED}
