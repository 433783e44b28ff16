-- Takes a job for a dispatcher: RUNNING, owned by it, one more attempt.
-- KEYS: job, events, work stream
-- ARGV: job_id, owner, now_ms, event, op, events channel, work group, work entry id
-- Returns the attempt number, -1 when the job is gone, -2 when it has ended, -3 when the claimer
-- does not hold the job's work entry (another dispatcher reclaimed it first: two may not run one
-- job). Repeating an operation id returns the same attempt without counting another.
local function terminal(s) return s == 'SUCCEEDED' or s == 'FAILED' or s == 'CANCELLED' end
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
if redis.call('HGET', KEYS[1], 'op') == ARGV[5] then return tonumber(redis.call('HGET', KEYS[1], 'attempt')) end
if terminal(state) then return -2 end
local pending = redis.call('XPENDING', KEYS[3], ARGV[7], ARGV[8], ARGV[8], 1)
if #pending == 0 or pending[1][2] ~= ARGV[2] then return -3 end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
redis.call('HSET', KEYS[1], 'state', 'RUNNING', 'owner', ARGV[2], 'updated_ms', ARGV[3], 'op', ARGV[5])
redis.call('HSETNX', KEYS[1], 'started_ms', ARGV[3])
redis.call('XADD', KEYS[2], '*', 'event', ARGV[4])
redis.call('PUBLISH', ARGV[6], ARGV[1])
return attempt
