-- Adds credits to a tenant's balance (an admin's grant), with its entry in the credit log.
-- KEYS: credit balance, credit log, this grant's operation key
-- ARGV: 1 amount (positive), 2 note, 3 the grant's fingerprint (its amount and note), 4 how long
-- the operation key is kept (seconds)
-- Returns {entry id, balance, repeat}: repeat 0 for a new grant, 1 for a repeat of the grant the
-- operation key names (nothing is added again: a retry, or a caller's idempotency key sent again),
-- 2 when that key was used for a grant with another fingerprint (nothing is added).
local done = redis.call('GET', KEYS[3])
if done then
  local entry, fingerprint = string.match(done, '^(%S+) ?(.*)$')
  local balance = tonumber(redis.call('GET', KEYS[1]) or '0')
  if fingerprint ~= '' and fingerprint ~= ARGV[3] then return {entry, balance, 2} end
  return {entry, balance, 1}
end
local balance = redis.call('INCRBY', KEYS[1], ARGV[1])
local entry = redis.call('XADD', KEYS[2], '*', 'kind', 'grant', 'amount', ARGV[1], 'balance', balance, 'note', ARGV[2])
redis.call('SET', KEYS[3], entry .. ' ' .. ARGV[3], 'EX', ARGV[4])
return {entry, balance, 0}
