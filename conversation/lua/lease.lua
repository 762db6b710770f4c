-- The one lease primitive (conversation/store/leases.py): renew or release only while held.
-- KEYS[1] lease key; ARGV: 1 owner token, 2 "renew" or "release", 3 TTL ms (renew)
-- Returns 1 when the caller held the lease (renewed or released), 0 when it did not: a release
-- by a stale holder, whose lease expired and went to another, does nothing.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == 'release' then return redis.call('DEL', KEYS[1]) end
return redis.call('PEXPIRE', KEYS[1], ARGV[3])
