-- Registers a tenant's webhook endpoint with its secret, within the tenant's endpoint limit, once
-- per caller's idempotency key.
-- KEYS: 1 the tenant's endpoints, 2 the tenant's secrets, 3 this request's idempotency key's record
-- ARGV: 1 endpoint id, 2 its configuration (JSON), 3 its secrets (JSON), 4 the most endpoints a
--       tenant may have, 5 how long the key's record is kept (seconds; 0: the caller sent no key),
--       6 the request's fingerprint (its url, events and description)
-- Returns {outcome, endpoint id, configuration, secrets}: outcome 1 created (also for a retry of
-- this call after a lost reply: the same endpoint id), 0 the tenant is at its limit, 2 a repeat of
-- the key's request (the endpoint it created, as it is now), 3 the key was used for another
-- request, 4 the key's endpoint was deleted since.
if ARGV[5] ~= '0' then
  local done = redis.call('GET', KEYS[3])
  if done then
    local id, fingerprint = string.match(done, '^(%S+) (%S+)$')
    if fingerprint ~= ARGV[6] then return {3, id, '', ''} end
    local config = redis.call('HGET', KEYS[1], id)
    if not config then return {4, id, '', ''} end
    local outcome = 2
    if id == ARGV[1] then outcome = 1 end
    return {outcome, id, config, redis.call('HGET', KEYS[2], 'endpoint:' .. id) or ''}
  end
end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return {1, ARGV[1], ARGV[2], ARGV[3]} end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then return {0, '', '', ''} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], 'endpoint:' .. ARGV[1], ARGV[3])
if ARGV[5] ~= '0' then
  redis.call('SET', KEYS[3], ARGV[1] .. ' ' .. ARGV[6], 'EX', ARGV[5])
end
return {1, ARGV[1], ARGV[2], ARGV[3]}
