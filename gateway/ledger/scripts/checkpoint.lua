-- Stores one stage output of a job, only for its owner.
-- KEYS: checkpoints, job
-- ARGV: owner, field, value
if redis.call('HGET', KEYS[2], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
return 1
