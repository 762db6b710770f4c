-- Replace one timeline entry if it is still the one the caller read (compare and set): an edit
-- or deletion the provider reported for a message already in the thread.
-- KEYS[1] timeline list; ARGV: 1 index, 2 the entry as read, 3 the entry to write
-- Returns 1 when replaced, 0 when the entry changed meanwhile (the caller reads again).
if redis.call('LINDEX', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return 0
end
redis.call('LSET', KEYS[1], ARGV[1], ARGV[3])
return 1
