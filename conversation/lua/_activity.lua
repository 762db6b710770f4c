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

-- The thread's state after a change, as every thread-changing script returns it (store/threads.py
-- reads it back as a ThreadState): what the listing indexes and their conversation cards need.
-- KEYS[1] is always the thread hash. LOGGED comes last.
local function thread_state(applied, seq)
  local h = redis.call('HMGET', KEYS[1], 'status', 'queue', 'assignee', 'priority', 'lm', 'ver', 'ep', 'ep_open',
                       'created', 'name', 'ids', 'loc', 'tier', 'tags', 'am', 'li')
  return {applied, seq, h[1] or '', h[2] or '', h[3] or '', h[4] or '', h[5] or '0', h[6] or '0', h[7] or '0',
          h[8] or '0', h[9] or '0', h[10] or '', h[11] or '[]', h[12] or '', h[13] or '', h[14] or '[]', h[15] or '',
          h[16] or '', LOGGED}
end
