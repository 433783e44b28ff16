-- Registers a tenant's webhook endpoint with its secret, within the tenant's endpoint limit.
-- KEYS: 1 the tenant's endpoints, 2 the tenant's secrets
-- ARGV: 1 endpoint id, 2 its configuration (JSON), 3 its secrets (JSON), 4 the most endpoints a
--       tenant may have
-- Returns 1, or 0 when the tenant is at its limit. Repeating a call (a retry after a lost reply:
-- the same endpoint id) answers 1 again rather than counting its own endpoint against the limit.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], 'endpoint:' .. ARGV[1], ARGV[3])
return 1
