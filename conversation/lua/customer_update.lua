-- Change a customer's details (name, locale, tier, account manager) with its activity entry, atomically.
-- KEYS[1] thread hash, KEYS[2] activity list. ARGV: 1 now, 2 actor kind, 3 actor name, then
-- pairs of (field, value): fields 'name', 'loc', 'tier', 'am'; "" clears the field.
-- Only what differs from the stored value is changed and logged; nothing differing, nothing
-- logged and the version stays. Returns thread_state(changed 1/0, -1), or {-2, -1} with no thread.
if redis.call('EXISTS', KEYS[1]) == 0 then return {-2, -1} end
local API = {name = 'name', loc = 'locale', tier = 'tier', am = 'account_manager'}
local changes = {}
local changed = 0
for i = 4, #ARGV, 2 do
  local field, value = ARGV[i], ARGV[i + 1]
  local current = redis.call('HGET', KEYS[1], field) or ''
  if current ~= value then
    if value == '' then redis.call('HDEL', KEYS[1], field) else redis.call('HSET', KEYS[1], field, value) end
    changes[API[field]] = {from = current, to = value}
    changed = 1
  end
end
if changed == 1 then
  redis.call('HINCRBY', KEYS[1], 'ver', 1)
  log(KEYS[2], 'customer_updated', ARGV[1], ARGV[2], ARGV[3], changes)
end
return thread_state(changed, -1)
