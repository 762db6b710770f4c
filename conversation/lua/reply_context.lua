-- What a reply is rendered with (the customer's name, language and tier, the language their
-- channel told, the queue), and whether it is the first reply of the thread's episode: claimed
-- here, atomically, so that two agents answering at once greet the customer once.
-- KEYS[1] thread hash. ARGV[1] "1": claim the episode's first reply ("0": only tell, a preview).
-- Returns false when there is no thread, else {name, locale, tier, channel locale, queue,
-- episode, 1 if this reply is the episode's first else 0}.
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local h = redis.call('HMGET', KEYS[1], 'name', 'loc', 'tier', 'lh', 'queue', 'ep', 'gr')
local first = 0
if h[6] and h[7] ~= h[6] then
  first = 1
  if ARGV[1] == '1' then redis.call('HSET', KEYS[1], 'gr', h[6]) end
end
return {h[1] or '', h[2] or '', h[3] or '', h[4] or '', h[5] or '', h[6] or '0', first}
