-- Records and queues a new job in one step.
-- KEYS: job, events, work stream, active set, tenant index, idempotency key ('idem:none' when unused)
-- ARGV: job_id, use_idempotency ('1'/'0'), queue_limit, created_ms, retention_ms, event, events channel,
--       then the job hash's fields and values.
-- Idempotent under retry: a second call for a job id already recorded changes nothing.
if redis.call('EXISTS', KEYS[1]) == 1 then return {'ok', ARGV[1]} end
if ARGV[2] == '1' then
  local existing = redis.call('GET', KEYS[6])
  if existing then return {'duplicate', existing} end
end
local limit = tonumber(ARGV[3])
if limit > 0 and redis.call('SCARD', KEYS[4]) >= limit then return {'full', ''} end
local fields = {}
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('XADD', KEYS[2], '*', 'event', ARGV[6])
redis.call('XADD', KEYS[3], '*', 'job_id', ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[4], ARGV[1])
if ARGV[2] == '1' then redis.call('SET', KEYS[6], ARGV[1], 'PX', ARGV[5]) end
redis.call('PUBLISH', ARGV[7], ARGV[1])
return {'ok', ARGV[1]}
