-- Stores one stage output of a job, only for its owner and only while the job runs: a job that
-- ended (cancelled while its dispatcher worked on) keeps the outputs it had, and a late write
-- would otherwise make its checkpoints again, after the end's expiry was set, and never expire.
-- KEYS: checkpoints, job
-- ARGV: owner, field, value
-- include: states
local job = redis.call('HMGET', KEYS[2], 'owner', 'state')
if job[1] ~= ARGV[1] or terminal(job[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
return 1
