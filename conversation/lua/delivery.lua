-- Move one outbound message's delivery state forward, never back.
-- KEYS[1] delivery overlay hash ({c:ID} slot)
-- ARGV: 1 seq, 2 new status, 3 its rank, 4 error ("" keeps the old), 5 provider id ("" keeps),
--       6 attempts ("" keeps), 7.. rank table as status=rank pairs
-- The overlay record is a JSON array {status, error, provider_id, attempts}.
-- Returns {changed (1/0), status, error, provider_id, attempts}.
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return {-1, '', '', '', 0} end
local rec = cjson.decode(raw)
local ranks = {}
for i = 7, #ARGV, 2 do ranks[ARGV[i]] = tonumber(ARGV[i + 1]) end
local changed = 0
if ARGV[5] ~= '' and (rec[3] == cjson.null or rec[3] == '') then rec[3] = ARGV[5]; changed = 1 end
if ARGV[6] ~= '' then rec[4] = tonumber(ARGV[6]); changed = 1 end
if tonumber(ARGV[3]) > (ranks[rec[1]] or 0) then
  rec[1] = ARGV[2]
  if ARGV[4] ~= '' then rec[2] = ARGV[4] end
  changed = 1
end
if changed == 1 then redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(rec)) end
local err = rec[2]; if err == cjson.null then err = '' end
local pid = rec[3]; if pid == cjson.null then pid = '' end
return {changed, rec[1], err, pid, rec[4] or 0}
