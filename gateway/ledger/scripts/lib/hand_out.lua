-- A job handed to a dispatcher, by a take (take.lua) or by its submit when it starts the job at
-- once (submit.lua): a slot for the lease in its tenant's running set (unless its kind takes none)
-- and in running:all, scored by the lease's expiry; RUNNING, owned by the dispatcher, its attempt
-- counted and its first start's time kept. Returns the attempt.
local function hand_out(job_key, job_id, tenant, tenant_running, all_running, owner, now_ms, expiry, takes_slot)
  if takes_slot then redis.call('ZADD', tenant_running, expiry, job_id) end
  redis.call('ZADD', all_running, expiry, tenant .. '|' .. job_id)
  local attempt = redis.call('HINCRBY', job_key, 'attempt', 1)
  redis.call('HSET', job_key, 'state', 'RUNNING', 'owner', owner, 'updated_ms', now_ms)
  redis.call('HSETNX', job_key, 'started_ms', now_ms)
  return attempt
end
