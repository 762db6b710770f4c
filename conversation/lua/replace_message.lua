-- Replace one timeline entry if it is still the one the caller read (compare and set): an edit
-- or deletion the provider reported for a message already in the thread; logged.
-- KEYS[1] timeline list, KEYS[2] activity list
-- ARGV: 1 index, 2 the entry as read, 3 the entry to write, 4 now_ms, 5 "1" deleted / "0" edited
-- Returns {1 when replaced / 0 when the entry changed meanwhile (the caller reads again), logged}.
if redis.call('LINDEX', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return {0, LOGGED}
end
redis.call('LSET', KEYS[1], ARGV[1], ARGV[3])
log(KEYS[2], ARGV[5] == '1' and 'message_deleted' or 'message_edited', ARGV[4], 'customer', '',
    {m = tonumber(ARGV[1])})
return {1, LOGGED}
