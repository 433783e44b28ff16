-- Adds credits to a tenant's balance (an admin's grant), with its entry in the credit log.
-- KEYS: credit balance, credit log, this grant's operation key
-- ARGV: 1 amount (positive), 2 note
-- Returns {entry id, balance}. A retried grant (same operation key) adds nothing again.
local done = redis.call('GET', KEYS[3])
if done then return {done, tonumber(redis.call('GET', KEYS[1]) or '0')} end
local balance = redis.call('INCRBY', KEYS[1], ARGV[1])
local entry = redis.call('XADD', KEYS[2], '*', 'kind', 'grant', 'amount', ARGV[1], 'balance', balance, 'note', ARGV[2])
redis.call('SET', KEYS[3], entry, 'EX', 86400)
return {entry, balance}
