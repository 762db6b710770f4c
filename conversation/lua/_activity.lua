-- Loaded in front of every script (conversation/store/scripts.py), after the type and actor
-- codes that conversation/activity.py generates (ACTIVITY_TYPE, ACTOR).
-- log() appends one entry to a conversation's activity list in the script's own atomic call,
-- and remembers it in LOGGED, which the script returns last so that the caller can publish
-- the live events derived from it: {index, entry, index, entry, ...}.
local LOGGED = {}
local function log(key, kind, at, actor, name, details)
  local code, who = ACTIVITY_TYPE[kind], ACTOR[actor]
  if not code or not who then error('unknown activity type or actor: ' .. tostring(kind) .. ', ' .. tostring(actor)) end
  local entry = cmsgpack.pack({code, tonumber(at), who, name or '', details or {}})
  local index = redis.call('RPUSH', key, entry) - 1
  table.insert(LOGGED, index)
  table.insert(LOGGED, entry)
  return index
end
