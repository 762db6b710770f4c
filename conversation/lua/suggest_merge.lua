-- Record on a customer that an identity not linked to them wrote into their thread, so that an
-- agent can merge; logged once per identity.
-- KEYS[1] thread hash, KEYS[2] activity list; ARGV: 1 identity key ("kind:address"), 2 now_ms,
-- 3 the customer that identity belongs to ("" nobody yet)
-- Returns {1 when new / 0 when already suggested, logged}.
if redis.call('HSETNX', KEYS[1], 'merge:' .. ARGV[1], ARGV[2]) == 0 then return {0, LOGGED} end
local details = {identity = ARGV[1]}
if ARGV[3] ~= '' then details.customer_id = ARGV[3] end
log(KEYS[2], 'merge_suggested', ARGV[2], 'system', '', details)
return {1, LOGGED}
