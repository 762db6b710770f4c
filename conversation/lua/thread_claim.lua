-- Give a waiting thread to the agent who claimed it (lua/agent_claim.lua), with its activity.
-- KEYS[1] thread hash, KEYS[2] activity list
-- ARGV: 1 now ms, 2 actor kind, 3 actor name, 4 agent, 5 how ("pull", "push", "sticky",
--       "account_manager"), 6 the queue it must still be in ("" any)
-- Only an open thread that nobody holds, still in that queue, is given. Returns thread_state(1,
-- -1) when given, {0, -1} when not (the claim is to be let go), {-2, -1} with no thread.
if redis.call('EXISTS', KEYS[1]) == 0 then return {-2, -1} end
local h = redis.call('HMGET', KEYS[1], 'status', 'assignee', 'queue')
if h[1] ~= 'open' or (h[2] and h[2] ~= '') or (ARGV[6] ~= '' and h[3] ~= ARGV[6]) then return {0, -1} end
redis.call('HSET', KEYS[1], 'assignee', ARGV[4], 'last_agent', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'ver', 1)
log(KEYS[2], 'assigned', ARGV[1], ARGV[2], ARGV[3], {agent = ARGV[4], via = ARGV[5], queue = h[3] or ''})
return thread_state(1, -1)
