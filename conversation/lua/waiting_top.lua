-- The most urgent waiting threads of a queue with their cards, in one call in the {ix} slot.
-- KEYS[1] the queue's waiting set, KEYS[2] the cards hash. ARGV[1] how many.
-- Returns {cid, card or false, cid, card or false, ...}.
local cids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #cids == 0 then return {} end
local cards = redis.call('HMGET', KEYS[2], unpack(cids))
local out = {}
for i, cid in ipairs(cids) do
  table.insert(out, cid)
  table.insert(out, cards[i])
end
return out
