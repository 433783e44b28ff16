-- Whether a tenant's submit is admitted now (submit.lua's checks, which precheck.lua makes ahead of
-- an inline submit's upload): its request rate (when rate_limited), its queue quota, the global
-- queue limit and its credits, in that order. Needs gcra (include it first). Returns the refusal
-- as submit.lua answers it ({'limited', ms}, {'quota', the quota}, {'full', ''} or
-- {'credits', the balance}), else nil, the rate's new arrival time for gcra_store once the submit
-- is taken, and the tenant's own limits (rate, burst, queue quota, concurrency; nil: the default).
-- a: limits_key, rate_key, tenant_active_key, active_key, balance_key, now, default_rate,
--    default_burst, default_quota, queue_limit, price, rate_limited, batch_room (a batch's room:
--    neither the queue quota nor the queue limit, which its batch counted against: a batch
--    waits for its rooms, so rooms refused for the unfinished jobs that batches are would wait
--    for each other for good; a batch keeps at most 8 rooms unfinished)
local function admission(a)
  local set = redis.call('HMGET', a.limits_key, 'rate', 'burst', 'queue_quota', 'concurrency')
  local new_tat = nil
  if a.rate_limited then
    local wait
    wait, new_tat = gcra(a.rate_key, tonumber(set[1] or a.default_rate), tonumber(set[2] or a.default_burst), a.now)
    if wait > 0 then return {'limited', tostring(wait)} end
  end
  local quota = tonumber(set[3] or a.default_quota)
  if not a.batch_room then
    if quota > 0 and redis.call('SCARD', a.tenant_active_key) >= quota then return {'quota', tostring(quota)} end
    if a.queue_limit > 0 and redis.call('SCARD', a.active_key) >= a.queue_limit then return {'full', ''} end
  end
  if a.price > 0 then
    local balance = tonumber(redis.call('GET', a.balance_key) or '0')
    if balance < a.price then return {'credits', tostring(balance)} end
  end
  return nil, new_tat, set
end
