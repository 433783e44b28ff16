-- Renews a running job's lease (and its tenant's concurrency slot), only while the renewing
-- dispatcher still owns it: one whose job was taken over, requeued or ended learns so (0) and stops.
-- A lease that has already run out is not renewed either: the job is lost to its dispatcher (one cut
-- off from Redis for longer than its lease comes back to find it so), and a reaper puts it back; its
-- slot counts until then (take.lua).
-- KEYS: job, running (all)
-- ARGV: 1 job_id, 2 owner, 3 lease_ms, 4 tenant running template (the expiry is a lease from now,
--       by Redis's clock: lib/clock.lua)
-- include: clock
local now = ledger_now_ms()
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[2] or redis.call('HGET', KEYS[1], 'state') ~= 'RUNNING' then
  return 0
end
local tenant = redis.call('HGET', KEYS[1], 'tenant')
local member = tenant .. '|' .. ARGV[1]
local expiry = redis.call('ZSCORE', KEYS[2], member)
if not expiry or tonumber(expiry) < now then return 0 end
local expires = now + tonumber(ARGV[3])
redis.call('ZADD', KEYS[2], 'XX', expires, member)
redis.call('ZADD', string.format(ARGV[4], tenant), 'XX', expires, ARGV[1])
return 1
