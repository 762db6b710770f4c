-- Find our message for a provider status report; if the send has not recorded its provider id
-- yet (the callback outran the API answer), park the report for provider_link.lua to apply.
-- KEYS[1] provider-message hash; ARGV: 1 status, 2 report JSON, 3 TTL seconds
-- Returns our location "cid seq", or false when parked.
local loc = redis.call('HGET', KEYS[1], 'loc')
if loc then return loc end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return false
