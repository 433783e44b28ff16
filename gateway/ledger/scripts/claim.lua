-- Takes a job for a dispatcher: RUNNING, owned by it, one more attempt.
-- KEYS: job, events
-- ARGV: job_id, owner, now_ms, event, op, events channel
-- Returns the attempt number, -1 when the job is gone, -2 when it has ended. Repeating an operation
-- id returns the same attempt without counting another.
local function terminal(s) return s == 'SUCCEEDED' or s == 'FAILED' or s == 'CANCELLED' end
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
if redis.call('HGET', KEYS[1], 'op') == ARGV[5] then return tonumber(redis.call('HGET', KEYS[1], 'attempt')) end
if terminal(state) then return -2 end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
redis.call('HSET', KEYS[1], 'state', 'RUNNING', 'owner', ARGV[2], 'updated_ms', ARGV[3], 'op', ARGV[5])
redis.call('HSETNX', KEYS[1], 'started_ms', ARGV[3])
redis.call('XADD', KEYS[2], '*', 'event', ARGV[4])
redis.call('PUBLISH', ARGV[6], ARGV[1])
return attempt
