-- include: clock
-- include: gcra
-- An uploaded asset of a tenant, in two steps. 'admit' (before the file is written) counts the
-- upload against the tenant's request rate, every upload (the same bytes again too), and checks a
-- new asset against the tenant's asset quota. 'record' (once the file is written) records it, or
-- keeps an existing one longer; a new asset is checked against the quota again (another upload
-- may have taken the last place meanwhile).
-- A retried 'admit' whose first call was admitted (its reply lost) is not counted again.
-- An asset a sweep is deleting (sweep_asset.lua marks it) is not admitted: its upload waits, or
-- the delete would take the file it writes. An admitted one is held in the expiry index until at
-- least ARGV[4], past the upload's write: no sweep claims it meanwhile, and a file whose upload
-- dies before its record is still deleted by a later sweep.
-- KEYS: 1 the asset's hash, 2 the tenant's assets (id by expiry), 3 every asset by expiry
--       ("tenant/id"), 4 tenant limits, 5 tenant rate, 6 this call's mark (keys.counted),
--       7 the asset's sweep mark, 8 its set of jobs (use_assets.lua)
-- ARGV: 1 asset id, 2 tenant, 3 now_ms, 4 expire_ms ('admit': held in the index until), 5 default
--       rate per second (0: none), 6 default burst, 7 the tenant's asset quota (0: none), 8 'admit' or
--       'record', 9 how long the set of jobs outlives the hash (ms), then (to record) the hash's
--       fields and values.
-- Returns {'ok', created_ms ('' when admitted and new), and when admitting, its expire_ms ('0':
-- new)}, {'limited', ms until a retry is allowed}, {'quota', the quota} or {'sweeping', ms the
-- sweep's claim has left}.
local now = tonumber(ARGV[3])
local rate_now = ledger_now_ms()  -- the tenant's rate is judged by Redis's clock (lib/clock.lua)
local created = redis.call('HGET', KEYS[1], 'created_ms')
local function over_quota()
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  local quota = tonumber(ARGV[7])
  return quota > 0 and redis.call('ZCARD', KEYS[2]) >= quota
end
if ARGV[8] == 'admit' then
  local sweeping = redis.call('PTTL', KEYS[7])
  if sweeping > 0 then return {'sweeping', tostring(sweeping)} end
  local function limit(name, default)
    return tonumber(redis.call('HGET', KEYS[4], name) or default)
  end
  if redis.call('EXISTS', KEYS[6]) == 0 then
    local wait, new_tat = gcra(KEYS[5], limit('rate', ARGV[5]), limit('burst', ARGV[6]), rate_now)
    if wait > 0 then return {'limited', tostring(wait)} end
    if not created and over_quota() then return {'quota', ARGV[7]} end
    gcra_store(KEYS[5], new_tat, rate_now)
    redis.call('SET', KEYS[6], '1', 'PX', 60000)
  end
  redis.call('ZADD', KEYS[3], 'GT', ARGV[4], ARGV[2] .. '/' .. ARGV[1])
  return {'ok', created or '', redis.call('HGET', KEYS[1], 'expire_ms') or '0'}
end
if not created then
  if over_quota() then return {'quota', ARGV[7]} end
  created = ARGV[3]
end
local expire = math.max(tonumber(ARGV[4]), tonumber(redis.call('HGET', KEYS[1], 'expire_ms') or '0'))
local fields = {'created_ms', created, 'expire_ms', expire}
for i = 10, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIREAT', KEYS[1], expire)
redis.call('ZADD', KEYS[2], expire, ARGV[1])
redis.call('ZADD', KEYS[3], expire, ARGV[2] .. '/' .. ARGV[1])
-- The jobs that named it are read when the hash has expired: their set lasts past that.
if redis.call('EXISTS', KEYS[8]) == 1 then redis.call('PEXPIREAT', KEYS[8], expire + tonumber(ARGV[9])) end
return {'ok', created}
