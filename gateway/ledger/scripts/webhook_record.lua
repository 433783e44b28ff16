-- Records one attempt of a claimed webhook delivery, only for the worker holding the claim (one
-- whose lease ran out and was claimed again learns so: 0): delivered, failed, or due again at
-- next_ms; or hands the claim back unattempted (the worker is stopping). A 410 Gone from an
-- endpoint also disables the endpoint. Repeating a call (a retry after a lost reply) finds the
-- claim released and changes nothing.
-- The attempt leaves its tenant's in-flight set (webhook_claim.lua).
-- KEYS: 1 the delivery, 2 webhooks due
-- ARGV: 1 delivery id, 2 claim id, 3 outcome ('delivered', 'retry', 'failed', 'gone', 'release'),
--       4 the attempt (JSON), 5 ms until it is due again (retry; release: 0), by Redis's clock, which
--       claims are judged by (lib/clock.lua), 6 why it failed, 7 endpoints template, 8 tenant's
--       in-flight template
-- include: clock
local next_ms = ledger_now_ms() + tonumber(ARGV[5])
if redis.call('HGET', KEYS[1], 'claim') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'claim', '')
redis.call('ZREM', string.format(ARGV[8], redis.call('HGET', KEYS[1], 'tenant') or ''), ARGV[1])
local outcome = ARGV[3]
if outcome == 'release' then
  redis.call('ZADD', KEYS[2], next_ms, ARGV[1])
  return 1
end
local n = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'attempt:' .. n, ARGV[4])
if outcome == 'retry' then
  redis.call('HSET', KEYS[1], 'next_ms', next_ms)
  redis.call('ZADD', KEYS[2], next_ms, ARGV[1])
  return 1
end
redis.call('ZREM', KEYS[2], ARGV[1])
if outcome == 'delivered' then
  redis.call('HSET', KEYS[1], 'status', 'delivered', 'next_ms', '')
  return 1
end
redis.call('HSET', KEYS[1], 'status', 'failed', 'next_ms', '', 'reason', ARGV[6])
local endpoint = redis.call('HGET', KEYS[1], 'endpoint')
if outcome == 'gone' and endpoint ~= '' then
  local endpoints = string.format(ARGV[7], redis.call('HGET', KEYS[1], 'tenant'))
  local config = redis.call('HGET', endpoints, endpoint)
  if config then
    local decoded = cjson.decode(config)
    decoded.disabled = true
    redis.call('HSET', endpoints, endpoint, cjson.encode(decoded))
  end
end
return 1
