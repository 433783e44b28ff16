-- Renews a running job's work entry (resets its idle time, so no one reclaims it), only while the
-- renewing dispatcher still owns the job: one whose job was taken over or ended learns so (0) and
-- stops, instead of taking the entry back from the new owner.
-- KEYS: work stream, job
-- ARGV: work group, consumer, work entry id
if redis.call('HGET', KEYS[2], 'owner') ~= ARGV[2] or redis.call('HGET', KEYS[2], 'state') ~= 'RUNNING' then
  return 0
end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
