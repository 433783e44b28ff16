-- Reads assets a new job uses and keeps each at least until min_expire_ms (the job's retention),
-- so an asset cannot expire under a job that refers to it.
-- KEYS: 1 the tenant's assets (id by expiry), 2 every asset by expiry, then one hash per asset
-- ARGV: 1 tenant, 2 min_expire_ms, then the asset ids (in KEYS' order)
-- Returns one flat field/value list per asset (empty when there is no such asset).
local out = {}
local min_expire = tonumber(ARGV[2])
for i = 3, #KEYS do
  local id = ARGV[i]
  local fields = redis.call('HGETALL', KEYS[i])
  if #fields > 0 then
    local expire = tonumber(redis.call('HGET', KEYS[i], 'expire_ms') or '0')
    if expire < min_expire then
      redis.call('HSET', KEYS[i], 'expire_ms', min_expire)
      redis.call('PEXPIREAT', KEYS[i], min_expire)
      redis.call('ZADD', KEYS[1], min_expire, id)
      redis.call('ZADD', KEYS[2], min_expire, ARGV[1] .. '/' .. id)
      fields = redis.call('HGETALL', KEYS[i])
    end
  end
  out[#out + 1] = fields
end
return out
