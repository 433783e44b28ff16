-- Moves a job: progress of a running job, or its one terminal state.
-- KEYS: job, events, active set, checkpoints, running (all)
-- ARGV: 1 job_id, 2 owner ('' = anyone), 3 new_state ('' = unchanged), 4 retention_ms, 5 event,
--       6 op, 7 events channel, 8 work channel, 9 tenant running template, 10 tenant active
--       template, then fields and values to set.
-- A terminal job never moves again; a dispatcher that is no longer the owner cannot write. Each call
-- carries an operation id: repeating it (a retry after a lost reply) changes nothing. The end frees
-- the job's concurrency slot and its place in the tenant's quota, in the same step.
local function terminal(s) return s == 'SUCCEEDED' or s == 'FAILED' or s == 'CANCELLED' end
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if redis.call('HGET', KEYS[1], 'op') == ARGV[6] then return 'ok' end
if terminal(state) then return 'terminal' end
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'owner') ~= ARGV[2] then return 'not_owner' end
local fields = {'op', ARGV[6]}
for i = 11, #ARGV do fields[#fields + 1] = ARGV[i] end
if ARGV[3] ~= '' then fields[#fields + 1] = 'state'; fields[#fields + 1] = ARGV[3] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('XADD', KEYS[2], '*', 'event', ARGV[5])
if ARGV[3] ~= '' and terminal(ARGV[3]) then
  local tenant = redis.call('HGET', KEYS[1], 'tenant')
  redis.call('SREM', KEYS[3], ARGV[1])
  redis.call('SREM', string.format(ARGV[10], tenant), ARGV[1])
  redis.call('ZREM', KEYS[5], tenant .. '|' .. ARGV[1])
  redis.call('ZREM', string.format(ARGV[9], tenant), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  redis.call('PEXPIRE', KEYS[4], ARGV[4])
  local idem = redis.call('HGET', KEYS[1], 'idempotency_key')
  if idem and idem ~= '' then redis.call('PEXPIRE', idem, ARGV[4]) end
  redis.call('PUBLISH', ARGV[8], tenant)
end
redis.call('PUBLISH', ARGV[7], ARGV[1])
return 'ok'
