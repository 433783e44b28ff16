-- Adds credits to a tenant's balance (an admin's grant), with its entry in the credit log.
-- KEYS: credit balance, credit log, this grant's operation key
-- ARGV: 1 amount (positive), 2 note, 3 the grant's fingerprint (its amount and note), 4 how long
-- the operation key is kept (seconds), 5 this call's own id (the same for the ledger's retries of it)
-- Returns {entry id, balance, repeat}: repeat 0 for a new grant (or a retry of this call whose
-- first try landed with its reply lost: this call is the grant), 1 for a repeat of the grant the
-- operation key names made by another call (nothing is added again: a caller's idempotency key
-- sent again), 2 when that key was used for a grant with another fingerprint (nothing is added).
local done = redis.call('GET', KEYS[3])
if done then
  local entry, fingerprint, call = string.match(done, '^(%S+) ?(%S*) ?(%S*)$')
  local balance = tonumber(redis.call('GET', KEYS[1]) or '0')
  if call ~= '' and call == ARGV[5] then return {entry, balance, 0} end
  if fingerprint ~= '' and fingerprint ~= ARGV[3] then return {entry, balance, 2} end
  return {entry, balance, 1}
end
local balance = redis.call('INCRBY', KEYS[1], ARGV[1])
local entry = redis.call('XADD', KEYS[2], '*', 'kind', 'grant', 'amount', ARGV[1], 'balance', balance, 'note', ARGV[2])
redis.call('SET', KEYS[3], entry .. ' ' .. ARGV[3] .. ' ' .. ARGV[5], 'EX', ARGV[4])
return {entry, balance, 0}
