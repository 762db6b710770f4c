-- Pass a thread on, to another queue, another agent, or both, with one `transferred` entry.
-- KEYS[1] thread hash, KEYS[2] activity list
-- ARGV: 1 now ms, 2 actor kind, 3 actor name, 4 queue ("" keeps it), 5 agent ("" leaves it to
--       nobody: it waits in the queue), 6 the transferring agent's note ("" none)
-- Returns thread_state(1, -1), or {-2, -1} with no thread.
if redis.call('EXISTS', KEYS[1]) == 0 then return {-2, -1} end
local h = redis.call('HMGET', KEYS[1], 'queue', 'assignee')
local details = {from_queue = h[1] or '', queue = ARGV[4] ~= '' and ARGV[4] or (h[1] or ''),
                 from_agent = h[2] or ''}
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'queue', ARGV[4]) end
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[1], 'assignee', ARGV[5], 'last_agent', ARGV[5])
  details.agent = ARGV[5]
else
  redis.call('HDEL', KEYS[1], 'assignee')
end
if ARGV[6] ~= '' then details.note = ARGV[6] end
redis.call('HINCRBY', KEYS[1], 'ver', 1)
log(KEYS[2], 'transferred', ARGV[1], ARGV[2], ARGV[3], details)
return thread_state(1, -1)
