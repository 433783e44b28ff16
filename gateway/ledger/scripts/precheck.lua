-- include: clock
-- include: gcra
-- include: admission
-- Whether submit.lua would refuse a tenant's submit now: its request rate, queue quota, the global
-- queue limit and its credits, checked as submit.lua checks them (lib/admission.lua). A submit with inline images asks
-- first, so that one refused is not written to storage (and deleted) first. Admitted, the submit
-- is counted against the rate here (submit.lua is then called without the rate), so submits sent
-- at once cannot all pass and write their images: at most the tenant's burst. submit.lua checks the
-- rest again, atomically with the job.
-- A retry whose first call was admitted (its reply lost) is admitted without counting again.
-- KEYS: 1 tenant limits, 2 tenant rate, 3 tenant active set, 4 active set, 5 credit balance,
--       6 this call's mark (keys.counted)
-- ARGV: 1 default rate per second (0: none), 2 default burst, 3 default queue quota (0: none),
--       4 queue_limit (0: none), 5 the price to reserve (the rate is judged by Redis's clock,
--       lib/clock.lua)
-- Returns {'ok', ''} or submit.lua's refusal: {'limited', ms}, {'quota', the quota}, {'full', ''}
-- or {'credits', the balance}.
if redis.call('EXISTS', KEYS[6]) == 1 then return {'ok', ''} end
local now = ledger_now_ms()
local refused, new_tat = admission({limits_key = KEYS[1], rate_key = KEYS[2], tenant_active_key = KEYS[3],
  active_key = KEYS[4], balance_key = KEYS[5], now = now, default_rate = ARGV[1], default_burst = ARGV[2],
  default_quota = ARGV[3], queue_limit = tonumber(ARGV[4]), price = tonumber(ARGV[5]), rate_limited = true})
if refused then return refused end
gcra_store(KEYS[2], new_tat, now)
redis.call('SET', KEYS[6], '1', 'PX', 60000)
return {'ok', ''}
