-- A thread an agent held is let go (resolved, pending, transferred, unassigned): its capacity
-- frees, in the {ag} slot. KEYS[1] claims hash, KEYS[2] loads hash. ARGV: 1 conversation id,
-- 2 the agent it must belong to ("" any), 3 the {ag} key prefix (the push ranking's).
-- Returns the agent whose capacity freed, or false when the thread was held by nobody (or by
-- another agent than ARGV[2]).
--@include _ranking.lua
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if not existing then return false end
local who, channel = string.match(existing, '^(.*)|([^|]*)|%d*$')
if ARGV[2] ~= '' and who ~= ARGV[2] then return false end
local field = who .. '|' .. channel
if tonumber(redis.call('HGET', KEYS[2], field) or '0') > 0 then redis.call('HINCRBY', KEYS[2], field, -1) end
redis.call('HDEL', KEYS[1], ARGV[1])
rerank(ARGV[3], who)
return who
