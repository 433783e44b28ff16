-- include: gcra
-- Records an uploaded asset of a tenant, within its request rate and asset quota; uploading the
-- same asset again (same id: the same bytes) keeps it longer and is not counted again.
-- KEYS: 1 the asset's hash, 2 the tenant's assets (id by expiry), 3 every asset by expiry
--       ("tenant/id"), 4 tenant limits, 5 tenant rate
-- ARGV: 1 asset id, 2 tenant, 3 now_ms, 4 expire_ms, 5 default rate per second (0: none),
--       6 default burst, 7 the tenant's asset quota (0: none), then the hash's fields and values.
-- Returns {'ok', created_ms}, {'limited', ms until a retry is allowed} or {'quota', the quota}.
local now = tonumber(ARGV[3])
local created = redis.call('HGET', KEYS[1], 'created_ms')
if not created then
  local function limit(name, default)
    return tonumber(redis.call('HGET', KEYS[4], name) or default)
  end
  local wait, new_tat = gcra(KEYS[5], limit('rate', ARGV[5]), limit('burst', ARGV[6]), now)
  if wait > 0 then return {'limited', tostring(wait)} end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  local quota = tonumber(ARGV[7])
  if quota > 0 and redis.call('ZCARD', KEYS[2]) >= quota then return {'quota', tostring(quota)} end
  gcra_store(KEYS[5], new_tat, now)
  created = ARGV[3]
end
local expire = math.max(tonumber(ARGV[4]), tonumber(redis.call('HGET', KEYS[1], 'expire_ms') or '0'))
local fields = {'created_ms', created, 'expire_ms', expire}
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIREAT', KEYS[1], expire)
redis.call('ZADD', KEYS[2], expire, ARGV[1])
redis.call('ZADD', KEYS[3], expire, ARGV[2] .. '/' .. ARGV[1])
return {'ok', created}
