-- Move one outbound message's delivery state forward, never back, with its activity; the first
-- reply of an episode is stamped when it is sent (not when it was queued).
-- KEYS[1] delivery overlay hash, KEYS[2] thread hash, KEYS[3] activity list ({c:ID} slot)
-- ARGV: 1 seq, 2 new status, 3 its rank, 4 error ("" keeps the old), 5 provider id ("" keeps),
--       6 attempts ("" keeps), 7 now_ms, 8 next attempt ms ("" keeps, "0" clears),
--       9 last transient error ("" keeps), 10 dead-lettered ("1"/"0"), 11.. rank table as status=rank pairs
-- The overlay record is a JSON array {status, error, provider_id, attempts, next_attempt_ms, last_error}.
-- Returns {changed (1/0), status, error, provider_id, attempts, logged}; changed -1: no such message.
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return {-1, '', '', '', 0, LOGGED} end
local rec = cjson.decode(raw)
local ranks = {}
for i = 11, #ARGV, 2 do ranks[ARGV[i]] = tonumber(ARGV[i + 1]) end
local changed = 0
if ARGV[5] ~= '' and (rec[3] == cjson.null or rec[3] == '' or rec[3] == nil) then rec[3] = ARGV[5]; changed = 1 end
if ARGV[6] ~= '' then rec[4] = tonumber(ARGV[6]); changed = 1 end
if ARGV[8] ~= '' then rec[5] = tonumber(ARGV[8]); changed = 1 end
if ARGV[9] ~= '' then rec[6] = ARGV[9]; changed = 1 end
local old = rec[1]
local old_rank = ranks[old] or 0
if tonumber(ARGV[3]) > old_rank then
  rec[1] = ARGV[2]
  if ARGV[4] ~= '' then rec[2] = ARGV[4] end
  if ARGV[2] ~= 'queued' then rec[5] = 0 end  -- no next attempt once it left the queue
  changed = 1
  local seq = tonumber(ARGV[1])
  if ARGV[2] == 'failed' then
    local details = {m = seq, error = ARGV[4]}
    if ARGV[10] == '1' then details.dead_letter = true end
    log(KEYS[3], 'reply_failed', ARGV[7], 'system', '', details)
  else
    log(KEYS[3], 'reply_' .. ARGV[2], ARGV[7], 'system', '', {m = seq})
  end
  if ARGV[2] ~= 'failed' and old_rank < ranks['sent'] then
    local status = redis.call('HGET', KEYS[2], 'status')
    if status and status ~= 'resolved' then redis.call('HSETNX', KEYS[2], 'ep_first_reply', ARGV[7]) end
  end
end
if changed == 1 then redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(rec)) end
local err = rec[2]; if err == cjson.null or err == nil then err = '' end
local pid = rec[3]; if pid == cjson.null or pid == nil then pid = '' end
return {changed, rec[1], err, pid, rec[4] or 0, LOGGED}
