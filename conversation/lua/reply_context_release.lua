-- Give back an episode's first reply that a reply claimed (lua/reply_context.lua) but that was
-- refused before it was stored, so the next reply greets. KEYS[1] thread hash, ARGV[1] episode.
if redis.call('HGET', KEYS[1], 'gr') == ARGV[1] then redis.call('HDEL', KEYS[1], 'gr') end
return 1
