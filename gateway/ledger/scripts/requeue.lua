-- Puts running jobs back at the front of their tenants' queues, so any dispatcher resumes them
-- from their checkpoints: jobs whose lease ran out (their dispatcher died or lost Redis), or one
-- job its dispatcher hands back (it is stopping). Their owner is cleared, so the old dispatcher's
-- writes and renewals are refused from now on.
-- A tenant parked at its concurrency (lib/parking.lua) goes back to the queued tenants: a slot of
-- its is free now.
-- KEYS: running (all), queued tenants, queue clock, waiting dispatchers, parked tenants
-- ARGV: 1 most to requeue, 2 queue template, 3 tenant running template, 4 job template, 5 work
--       channel, 6 one job ('' for every expired lease), 7 its owner (leases are judged by Redis's
--       clock, lib/clock.lua)
-- include: clock
-- include: parking
local now = ledger_now_ms()
local members
if ARGV[6] ~= '' then
  local job = string.format(ARGV[4], ARGV[6])
  if redis.call('HGET', job, 'owner') ~= ARGV[7] or redis.call('HGET', job, 'state') ~= 'RUNNING' then return 0 end
  members = {redis.call('HGET', job, 'tenant') .. '|' .. ARGV[6]}
else
  members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
end
local requeued = 0
for _, member in ipairs(members) do
  local sep = string.find(member, '|', 1, true)
  local tenant, job_id = string.sub(member, 1, sep - 1), string.sub(member, sep + 1)
  redis.call('ZREM', KEYS[1], member)
  redis.call('ZREM', string.format(ARGV[3], tenant), job_id)
  local job = string.format(ARGV[4], job_id)
  if redis.call('HGET', job, 'state') == 'RUNNING' then
    redis.call('HSET', job, 'owner', '')
    redis.call('LPUSH', string.format(ARGV[2], tenant), job_id)
    unpark(KEYS[5], KEYS[2], tenant)
    if not redis.call('ZSCORE', KEYS[2], tenant) then
      redis.call('ZADD', KEYS[2], redis.call('GET', KEYS[3]) or '0', tenant)
    end
    requeued = requeued + 1
  end
end
if requeued > 0 and redis.call('ZCARD', KEYS[4]) > 0 then redis.call('PUBLISH', ARGV[5], '') end
return requeued
