-- include: gcra
-- Whether submit.lua would refuse a tenant's submit now: its request rate, queue quota, the global
-- queue limit and its credits, checked in submit.lua's order. A submit with inline images asks
-- first, so that one refused is not written to storage (and deleted) first. Admitted, the submit
-- is counted against the rate here (submit.lua is then called without the rate), so submits sent
-- at once cannot all pass and write their images: at most the tenant's burst. submit.lua checks the
-- rest again, atomically with the job.
-- KEYS: 1 tenant limits, 2 tenant rate, 3 tenant active set, 4 active set, 5 credit balance
-- ARGV: 1 now_ms, 2 default rate per second (0: none), 3 default burst, 4 default queue quota
--       (0: none), 5 queue_limit (0: none), 6 the price to reserve
-- Returns {'ok', ''} or submit.lua's refusal: {'limited', ms}, {'quota', the quota}, {'full', ''}
-- or {'credits', the balance}.
local set = redis.call('HMGET', KEYS[1], 'rate', 'burst', 'queue_quota')
local now = tonumber(ARGV[1])
local wait, new_tat = gcra(KEYS[2], tonumber(set[1] or ARGV[2]), tonumber(set[2] or ARGV[3]), now)
if wait > 0 then return {'limited', tostring(wait)} end
local quota = tonumber(set[3] or ARGV[4])
if quota > 0 and redis.call('SCARD', KEYS[3]) >= quota then return {'quota', tostring(quota)} end
local queue_limit = tonumber(ARGV[5])
if queue_limit > 0 and redis.call('SCARD', KEYS[4]) >= queue_limit then return {'full', ''} end
local price = tonumber(ARGV[6])
if price > 0 then
  local balance = tonumber(redis.call('GET', KEYS[5]) or '0')
  if balance < price then return {'credits', tostring(balance)} end
end
gcra_store(KEYS[2], new_tat, now)
return {'ok', ''}
