-- Reads assets a new job uses and keeps each at least until min_expire_ms (the job's retention),
-- so an asset cannot expire under a job that refers to it. With a job's id, also notes the job in
-- each asset's set of jobs (by the submit's time; a retry keeps the first), which outlives the
-- asset's hash by ARGV[5]: a job may wait in the queue past the hash's expiry, and the sweep then
-- keeps the file while a job there has not ended (sweep_asset.lua).
-- KEYS: 1 the tenant's assets (id by expiry), 2 every asset by expiry, then one hash per asset,
--       then one set of jobs per asset (both in the ids' order)
-- ARGV: 1 tenant, 2 min_expire_ms, 3 the job's id ('': a read alone), 4 the submit's time (ms),
--       5 how long a set of jobs outlives its asset's hash (ms), then the asset ids
-- Returns one flat field/value list per asset (empty when there is no such asset); with a job's id,
-- each ends with 'jobs' and the size of its set of jobs (the submit prunes a large one: assets.py).
local out = {}
local min_expire, n = tonumber(ARGV[2]), #ARGV - 5
for i = 1, n do
  local id, hash, jobs = ARGV[5 + i], KEYS[2 + i], KEYS[2 + n + i]
  local fields = redis.call('HGETALL', hash)
  if #fields > 0 then
    local expire = tonumber(redis.call('HGET', hash, 'expire_ms') or '0')
    if expire < min_expire then
      expire = min_expire
      redis.call('HSET', hash, 'expire_ms', expire)
      redis.call('PEXPIREAT', hash, expire)
      redis.call('ZADD', KEYS[1], expire, id)
      redis.call('ZADD', KEYS[2], expire, ARGV[1] .. '/' .. id)
      fields = redis.call('HGETALL', hash)
    end
    if ARGV[3] ~= '' then
      redis.call('ZADD', jobs, 'NX', ARGV[4], ARGV[3])
      redis.call('PEXPIREAT', jobs, expire + tonumber(ARGV[5]))
      fields[#fields + 1] = 'jobs'
      fields[#fields + 1] = tostring(redis.call('ZCARD', jobs))
    end
  end
  out[#out + 1] = fields
end
return out
