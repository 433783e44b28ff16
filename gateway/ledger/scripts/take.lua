-- Takes the next job for a dispatcher, fairly across tenants (weighted fair queuing: the queued
-- tenant with the lowest virtual time whose running jobs are under its concurrency limit), and
-- gives it a concurrency slot for a lease: a slot not renewed counts until a reaper puts its job back.
-- A tenant found at its concurrency is parked (lib/parking.lua), so the next look reaches past it;
-- a take that finds no work looks through the parked tenants and puts back those with a slot free.
-- KEYS: queued tenants, queue clock, running (all), waiting dispatchers, parked tenants, tenants'
--       virtual finish times (when a take emptied their queue: submit.lua starts them there)
-- ARGV: 1 owner, 2 now_ms (unused: the start's time, its lease and slots are Redis's clock,
--       lib/clock.lua, as its events' times are), 3 lease_ms, 4 default concurrency, 5 default weight, 6 take key (this
--       take's id), 7 queue template, 8 tenant running template, 9 tenant limits template,
--       10 job template, 11 kinds that take no slot (",room_batch,"), 12 tenants looked at per take,
--       13 ms after which a waiting dispatcher that has not looked again is forgotten (12 and 13
--       also bound the look through the parked tenants: that many, at most), 14 '1' when
--       the owner has another slot free after this take ('0' or absent: not), 15 checkpoints
--       template
-- Returns {job_id, attempt, kind, drained, the job's hash, its checkpoints' hash} (the hashes as
-- HGETALL gives them: the dispatcher starts the job without reading it again) or {} when no tenant
-- may run another job now; then the
-- owner waits for work, and is noted as waiting (the scripts that make work publish a notice only
-- while someone waits). drained is 1 when this take emptied the queue and the owner, with a slot
-- still free, is noted as waiting at once (it waits instead of looking again and finding nothing).
-- A retried take (same take key) returns what the first one took (drained 0).
-- include: clock
-- include: hand_out
-- include: parking
local function answer(job_id, attempt, kind, drained)
  return {job_id, attempt, kind, drained, redis.call('HGETALL', string.format(ARGV[10], job_id)),
    redis.call('HGETALL', string.format(ARGV[15], job_id))}
end
local taken = redis.call('GET', ARGV[6])
if taken then
  local first = string.find(taken, '|', 1, true)
  local second = string.find(taken, '|', first + 1, true)
  return answer(string.sub(taken, 1, first - 1), tonumber(string.sub(taken, first + 1, second - 1)), string.sub(taken, second + 1), 0)
end
local now, lease = ledger_now_ms(), tonumber(ARGV[3])
local clock = tonumber(redis.call('GET', KEYS[2]) or '0')
local per_look = tonumber(ARGV[12])
-- Every slot counts, a lease that ran out included, until the job ends or a reaper puts it back
-- (requeue.lua, which frees the slot and unparks the tenant): a slot counted free at its expiry ran
-- another of the tenant's jobs while the dead dispatcher's job, not yet put back, was still RUNNING
-- by its events (the tenant over its concurrency), and that later job went ahead of the one put back
-- "at the front" of the queue.
local function has_room(tenant)
  local concurrency = tonumber(redis.call('HGET', string.format(ARGV[9], tenant), 'concurrency') or ARGV[4])
  return redis.call('ZCARD', string.format(ARGV[8], tenant)) < concurrency
end
-- The tenant's next job, handed out (nil when its queue holds none that can run: it leaves the
-- queued tenants).
local function take_from(tenant, score)
  local limits = string.format(ARGV[9], tenant)
  local queue = string.format(ARGV[7], tenant)
  while true do
    local job_id = redis.call('LPOP', queue)
    if not job_id then
      redis.call('ZREM', KEYS[1], tenant)
      -- Its queue held only jobs that ended there (cancelled): it keeps its virtual time, as a
      -- tenant whose last job was taken keeps its finish (submit.lua starts it there).
      redis.call('HSET', KEYS[6], tenant, score)
      return nil
    end
    local job = string.format(ARGV[10], job_id)
    local state = redis.call('HGET', job, 'state')
    -- RUNNING: handed back or reaped after its dispatcher died; anything else ended while queued.
    if state == 'QUEUED' or state == 'RUNNING' then
      local kind = redis.call('HGET', job, 'kind') or ''
      local takes_slot = not string.find(ARGV[11], ',' .. kind .. ',', 1, true)
      local running = string.format(ARGV[8], tenant)
      local attempt = hand_out(job, job_id, tenant, running, KEYS[3], ARGV[1], now, now + lease, takes_slot)
      local start = math.max(score, clock)
      local weight = tonumber(redis.call('HGET', limits, 'weight') or ARGV[5])
      if redis.call('LLEN', queue) > 0 then
        redis.call('ZADD', KEYS[1], start + 1 / weight, tenant)
      else
        redis.call('ZREM', KEYS[1], tenant)
        redis.call('HSET', KEYS[6], tenant, start + 1 / weight)  -- where it starts if it queues again
      end
      if start > clock then redis.call('SET', KEYS[2], tostring(start)) end
      redis.call('SET', ARGV[6], job_id .. '|' .. attempt .. '|' .. kind, 'EX', 300)
      if ARGV[14] == '1' and redis.call('ZCARD', KEYS[1]) == 0 then
        redis.call('ZADD', KEYS[4], now, ARGV[1])
        return answer(job_id, attempt, kind, 1)
      end
      redis.call('ZREM', KEYS[4], ARGV[1])
      return answer(job_id, attempt, kind, 0)
    end
  end
end
-- Up to ten looks at per_look queued tenants, lowest virtual time first: each tenant looked at
-- leaves them (its job taken, its queue found empty, or parked at its concurrency), so each look
-- reaches past the last.
local function look()
  for _ = 1, 10 do
    local candidates = redis.call('ZRANGE', KEYS[1], 0, per_look - 1, 'WITHSCORES')
    if #candidates == 0 then return nil end
    for i = 1, #candidates, 2 do
      local tenant, score = candidates[i], tonumber(candidates[i + 1])
      if has_room(tenant) then
        local found = take_from(tenant, score)
        if found then return found end
      else
        redis.call('ZREM', KEYS[1], tenant)
        redis.call('ZADD', KEYS[5], score, tenant)
      end
    end
  end
  return nil
end
local found = look()
if found then return found end
-- No work: the parked tenants with a slot free now go back (an older gateway's end does not put its
-- tenant back), then one more look.
local back = false
for _, tenant in ipairs(redis.call('ZRANGE', KEYS[5], 0, per_look - 1)) do
  if has_room(tenant) then
    unpark(KEYS[5], KEYS[1], tenant)
    back = true
  end
end
if back then
  found = look()
  if found then return found end
end
redis.call('ZADD', KEYS[4], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - tonumber(ARGV[13]))
return {}
