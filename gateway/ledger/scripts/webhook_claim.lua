-- Claims due webhook deliveries for one worker: each is moved a lease ahead in the due set (if the
-- worker dies mid-attempt, another claims it when the lease runs out) and marked with the claim, so
-- only this worker's record of the attempt is accepted. Deliveries that expired, ended, or whose
-- endpoint was deleted or disabled leave the due set. A tenant has at most ARGV[8] attempts in flight
-- across every worker (its in-flight set holds each claimed delivery until its lease's end, so a dead
-- worker's claims count only until then): a tenant whose receiver hangs holds that many slots, not
-- every worker's. Its deliveries a look passes over are put a second later in the due set, so the
-- other tenants' deliveries behind them are claimed within a look or two however many it has.
-- KEYS: 1 webhooks due
-- ARGV: 1 lease_ms, 2 most to claim, 3 claim id, 4 delivery template, 5 endpoints template,
--       6 secrets template, 7 tenant's in-flight template, 8 most in flight per tenant (claims'
--       leases, the attempts in flight and what is due are judged by Redis's clock, lib/clock.lua,
--       as every worker's own clock differs)
-- Returns {claimed, ms until the next is due by Redis's clock ('' when none)}; each claimed one is
-- {fields..., secrets JSON ('')}
-- with the fields id, tenant, job, endpoint, url, type, event, kind, parent, project, user,
-- attempt, attempts, created_ms.
local FIELDS = {'id', 'tenant', 'job', 'endpoint', 'url', 'type', 'event', 'kind', 'parent', 'project', 'user',
  'attempt', 'attempts', 'created_ms'}
local SKIP_MS = 1000
-- include: clock
local now = ledger_now_ms()
local most = tonumber(ARGV[2])
local cap = tonumber(ARGV[8])
-- Due deliveries looked at, at most: past the tenants at their cap (a bounded script either way).
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, math.max(most * 16, 256))
local claimed = {}
local in_flight = {}  -- by tenant: its attempts in flight, read once per call
for _, id in ipairs(ids) do
  if #claimed >= most then break end
  local key = string.format(ARGV[4], id)
  local tenant = redis.call('HGET', key, 'tenant') or ''
  local flying = string.format(ARGV[7], tenant)
  if in_flight[tenant] == nil then
    redis.call('ZREMRANGEBYSCORE', flying, '-inf', now)  -- claims whose lease ran out
    in_flight[tenant] = redis.call('ZCARD', flying)
  end
  if redis.call('HGET', key, 'status') ~= 'pending' then
    redis.call('ZREM', KEYS[1], id)
  elseif in_flight[tenant] >= cap then
    -- Due again a little later, out of the way: a tenant with thousands due (its receiver hangs)
    -- would otherwise fill every look, and no other tenant's delivery behind them would be seen.
    redis.call('ZADD', KEYS[1], now + SKIP_MS, id)
  else
    local endpoint = redis.call('HGET', key, 'endpoint')
    local field = 'tenant'
    local refused = nil
    if endpoint ~= '' then
      field = 'endpoint:' .. endpoint
      local config = redis.call('HGET', string.format(ARGV[5], tenant), endpoint)
      if not config then
        refused = 'the endpoint was deleted'
      elseif cjson.decode(config).disabled then
        refused = 'the endpoint is disabled (it answered 410 Gone)'
      end
    end
    if refused then
      redis.call('HSET', key, 'status', 'failed', 'reason', refused, 'next_ms', '')
      redis.call('ZREM', KEYS[1], id)
    else
      redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), id)
      redis.call('ZADD', flying, now + tonumber(ARGV[1]), id)
      redis.call('PEXPIRE', flying, tonumber(ARGV[1]))
      in_flight[tenant] = in_flight[tenant] + 1
      redis.call('HSET', key, 'claim', ARGV[3])
      local values = redis.call('HMGET', key, unpack(FIELDS))
      for i = 1, #values do values[i] = values[i] or '' end
      values[#values + 1] = redis.call('HGET', string.format(ARGV[6], tenant), field) or ''
      claimed[#claimed + 1] = values
    end
  end
end
-- When to look again: the first delivery due later. One due now was claimed, is its tenant's to wait
-- for (an attempt's end wakes the worker, and every worker looks again within a second anyway), or
-- waits for a slot this worker does not have free.
local first = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
-- A wait, not a time: the worker's own clock may be off Redis's (lib/clock.lua).
local wait = ''
if first[2] then wait = tostring(math.max(0, math.ceil(tonumber(first[2]) - now))) end
return {claimed, wait}
