-- One expired asset's sweep, in two steps. 'claim' hands it to one sweeper: only when it is due, its
-- hash is gone (an asset kept longer is put back at its expiry) and no job that named it is still
-- queued or running, and only for a lease: its entry stays in the index, due again when the lease
-- ends (a sweeper that dies or is stopped before its delete leaves it to a later sweep, not to
-- nobody), and its sweep mark tells an upload of the same bytes to wait until the delete is over
-- (asset.lua), or the delete would take the file the upload writes. The jobs are the asset's set
-- (use_assets.lua): the caller read their states and names those that ended or no longer exist,
-- which leave it; any left hold the asset until ARGV[7], when it is due again and they are read
-- again (none can join once the hash is gone: a submit cannot name the asset). 'end' (after the
-- delete) takes the entry out of the index, or, when the delete failed, makes it due again at
-- ARGV[5], and drops the mark: each only while this claim still holds it.
-- A retried claim whose first call claimed (its reply lost) is answered 'claimed' again; one whose
-- first call held the asset finds it not due ('skip').
-- KEYS: 1 every asset by expiry ("tenant/id"), 2 the asset's hash, 3 its sweep mark (the claim's id),
--       4 its set of jobs
-- ARGV: 1 "tenant/id", 2 'claim' or 'end', 3 now_ms, 4 the claim's lease end (ms),
--       5 ('end') when a failed delete is tried again (ms; 0: the file is deleted), 6 the claim's id,
--       7 ('claim') until when a job not ended holds the asset (ms), 8 ('claim') how long the set
--       of jobs outlives that (ms), then ('claim') the set's jobs that ended or no longer exist
-- Returns 'claimed', 'kept', 'held' or 'skip' ('claim'); 'ok' ('end').
local now, lease_end = tonumber(ARGV[3]), tonumber(ARGV[4])
local score = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '-1')
if ARGV[2] == 'claim' then
  if score == lease_end and redis.call('GET', KEYS[3]) == ARGV[6] then return 'claimed' end
  -- Gone, or not due: kept longer, held by an upload, or claimed by another sweeper.
  if score < 0 or score > now then return 'skip' end
  local expire = redis.call('HGET', KEYS[2], 'expire_ms')
  if expire then
    redis.call('ZADD', KEYS[1], expire, ARGV[1])
    return 'kept'
  end
  for i = 9, #ARGV do redis.call('ZREM', KEYS[4], ARGV[i]) end
  -- An emptied sorted set is deleted: the set goes before the asset it named.
  if redis.call('EXISTS', KEYS[4]) == 1 then
    redis.call('ZADD', KEYS[1], ARGV[7], ARGV[1])
    redis.call('PEXPIREAT', KEYS[4], tonumber(ARGV[7]) + tonumber(ARGV[8]))
    return 'held'
  end
  redis.call('ZADD', KEYS[1], lease_end, ARGV[1])
  redis.call('SET', KEYS[3], ARGV[6], 'PX', math.max(1, lease_end - now))
  return 'claimed'
end
local mine = redis.call('GET', KEYS[3]) == ARGV[6]
if mine and score == lease_end then
  local again = tonumber(ARGV[5])
  if again > 0 then
    redis.call('ZADD', KEYS[1], again, ARGV[1])
  else
    redis.call('ZREM', KEYS[1], ARGV[1])
  end
end
if mine then redis.call('DEL', KEYS[3]) end
return 'ok'
