-- Claims due webhook deliveries for one worker: each is moved a lease ahead in the due set (if the
-- worker dies mid-attempt, another claims it when the lease runs out) and marked with the claim, so
-- only this worker's record of the attempt is accepted. Deliveries that expired, ended, or whose
-- endpoint was deleted or disabled leave the due set.
-- KEYS: 1 webhooks due
-- ARGV: 1 now_ms, 2 lease_ms, 3 most to claim, 4 claim id, 5 delivery template, 6 endpoints
--       template, 7 secrets template
-- Returns {claimed, next due ms ('' when none)}; each claimed one is {fields..., secrets JSON ('')}
-- with the fields id, tenant, job, endpoint, url, type, event, kind, parent, project, user,
-- attempt, attempts, created_ms.
local FIELDS = {'id', 'tenant', 'job', 'endpoint', 'url', 'type', 'event', 'kind', 'parent', 'project', 'user',
  'attempt', 'attempts', 'created_ms'}
local now = tonumber(ARGV[1])
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local claimed = {}
for _, id in ipairs(ids) do
  local key = string.format(ARGV[5], id)
  if redis.call('HGET', key, 'status') ~= 'pending' then
    redis.call('ZREM', KEYS[1], id)
  else
    local tenant = redis.call('HGET', key, 'tenant')
    local endpoint = redis.call('HGET', key, 'endpoint')
    local field = 'tenant'
    local refused = nil
    if endpoint ~= '' then
      field = 'endpoint:' .. endpoint
      local config = redis.call('HGET', string.format(ARGV[6], tenant), endpoint)
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
      redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), id)
      redis.call('HSET', key, 'claim', ARGV[4])
      local values = redis.call('HMGET', key, unpack(FIELDS))
      for i = 1, #values do values[i] = values[i] or '' end
      values[#values + 1] = redis.call('HGET', string.format(ARGV[7], tenant), field) or ''
      claimed[#claimed + 1] = values
    end
  end
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {claimed, first[2] or ''}
