-- Records and queues a new job in one step, within the tenant's request rate and queue quota and
-- the global queue limit, its price reserved from the tenant's credits. Or, when the submitting
-- gateway's dispatcher has a slot free (an owner is given), no job of any tenant is queued and the
-- tenant runs fewer jobs than its concurrency, starts it there instead of queuing it: the take
-- (take.lua) would hand out this very job next, and the dispatcher is spared waiting for the work
-- notice, taking it and writing its start.
-- KEYS: job, events, active set, tenant index, idempotency key ('idem:none' when unused), tenant
--       queue, queued tenants, queue clock, tenant limits, tenant rate, tenant active set, credit
--       balance, credits reserved, credit log, waiting dispatchers, running (all), tenant running,
--       webhooks due, the job's webhook deliveries, parked tenants, tenants' virtual finish times
-- ARGV: 1 job_id, 2 use_idempotency ('1'/'0'), 3 queue_limit (0: none), 4 unused (was the gateway's now_ms:
--       a job's times are Redis's clock, TIME, as its events' are), 5 retention_ms (unused here),
--       6 event, 7 the job's notice channel, 8 work channel, 9 tenant, 10 default rate per second (0: none),
--       11 default burst, 12 default queue quota (0: none), 13 rate limited ('1'/'0'; 'room': a
--       batch's room, counted against neither the rate, the queue quota nor the queue limit), 14 credits
--       to reserve (0: none), 15 the dispatcher that may start it ('': none), 16 its lease_ms,
--       17 default concurrency, 18 the start's event (written when it starts it), 19 that event as
--       its notice carries it (base64; '' to leave it out), 20 webhook endpoints template,
--       21 webhook delivery template, 22 job webhooks template, 23 webhooks channel, 24 a
--       delivery's ttl_ms, 25 ms between progress deliveries, 26 most start and progress
--       deliveries per job (20-26 as transition.lua takes them), 27 default weight, 28 the job key
--       template (the tenant index's oldest members are checked against it), then the job
--       hash's fields and values from the request (the script adds the id, the tenant, created_ms and the initial
--       state: QUEUED, step 0, attempt 0, updated now), created_ms by Redis's clock (TIME).
-- Returns {'ok', id, the queued event's entry, created_ms}, {'started', id, the job's hash as HGETALL
-- gives it (its created_ms with it), the queued event's entry, the start's, how many subscribers its
-- notice channel had before its first notice} (RUNNING, attempt 1, owned
-- by that dispatcher, its start's event written: the dispatcher runs it without reading or writing
-- anything first), {'duplicate', id of the key's job}, {'limited', ms until a retry is allowed},
-- {'quota', the quota}, {'full', ''} or {'credits', the balance}. A repeat of a recorded job answers
-- 'ok' with '' for the entry and the job's created_ms as recorded, or 'started' without the entries
-- (it wrote none).
-- Idempotent under retry: a second call for a job id already recorded changes nothing (and is not
-- counted against the rate again); it answers 'started' again while the job is that dispatcher's
-- first attempt (the first answer was lost, so no one runs it yet).
-- include: gcra
-- include: admission
-- include: webhooks
-- include: clock
-- include: hand_out
-- include: room_places
-- The tenant's rate, a start here's slot and lease, and the job's creation time (its create_time,
-- its score in the tenant's index, which ListJobs orders and pages by) are Redis's clock
-- (lib/clock.lua), as its events' times are: a submitting replica whose clock was off made a job
-- created minutes after (or before) its QUEUED event.
local clock_now = ledger_now_ms()
if redis.call('EXISTS', KEYS[1]) == 1 then
  if ARGV[15] ~= '' and redis.call('HGET', KEYS[1], 'owner') == ARGV[15]
      and redis.call('HGET', KEYS[1], 'attempt') == '1' and redis.call('HGET', KEYS[1], 'state') == 'RUNNING' then
    return {'started', ARGV[1], redis.call('HGETALL', KEYS[1])}
  end
  -- A retry whose first reply was lost: the time the job was recorded at, not this call's.
  return {'ok', ARGV[1], '', redis.call('HGET', KEYS[1], 'created_ms') or ''}
end
if ARGV[2] == '1' then
  local existing = redis.call('GET', KEYS[5])
  if existing then return {'duplicate', existing} end
end
local price = tonumber(ARGV[14])
local refused, new_tat, set = admission({limits_key = KEYS[9], rate_key = KEYS[10], tenant_active_key = KEYS[11],
  active_key = KEYS[3], balance_key = KEYS[12], now = clock_now, default_rate = ARGV[10], default_burst = ARGV[11],
  default_quota = ARGV[12], queue_limit = tonumber(ARGV[3]), price = price, rate_limited = ARGV[13] == '1',
  batch_room = ARGV[13] == 'room'})
if refused then return refused end
if price > 0 then
  local left = redis.call('DECRBY', KEYS[12], price)
  redis.call('INCRBY', KEYS[13], price)
  redis.call('XADD', KEYS[14], '*', 'kind', 'reserve', 'amount', -price, 'balance', left, 'job', ARGV[1])
end
gcra_store(KEYS[10], new_tat, clock_now)
local fields = {'id', ARGV[1], 'tenant', ARGV[9], 'created_ms', clock_now, 'updated_ms', clock_now, 'state', 'QUEUED',
  'step', '0', 'progress', '0', 'message', 'Queued', 'attempt', '0'}
for i = 29, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
local queued = redis.call('XADD', KEYS[2], '*', 'event', ARGV[6])
-- The unfinished jobs the queue quota and the queue limit count (lib/room_places.lua): a batch's
-- room is not one of them, its batch holds its place from the batch's submit to its end.
if ARGV[13] ~= 'room' then
  local members = room_places(ARGV[1], redis.call('HGET', KEYS[1], 'room_places'))
  redis.call('SADD', KEYS[3], unpack(members))
  redis.call('SADD', KEYS[11], unpack(members))
end
redis.call('ZADD', KEYS[4], clock_now, ARGV[1])
-- The index's oldest members whose job has expired (a retention after its end) go, a few at each
-- submit: nothing else removes them (ListJobs only drops those a page walks over), and a tenant's
-- index would otherwise hold every job it ever submitted. Jobs expire about in creation order, so
-- this removes at least as many as submits add once the oldest have expired.
for _, old in ipairs(redis.call('ZRANGE', KEYS[4], 0, 3)) do
  if redis.call('EXISTS', string.format(ARGV[28], old)) == 0 then redis.call('ZREM', KEYS[4], old) end
end
-- The key lasts as long as its job: like the job's hash it expires a retention after the job's end
-- (transition.lua), however long the job waited and ran; an expiry from now would let a repeat of
-- a job still queued or running past the retention make a second job, charged again.
if ARGV[2] == '1' then redis.call('SET', KEYS[5], ARGV[1]) end
-- Started here: handed out as take.lua hands out a job (a slot for the lease, attempt 1, the owner),
-- its tenant's virtual finish time and the clock moved as the take moves them. The submitting
-- dispatcher's own entry among the waiting ones is left as it is: its intake still waits for work.
-- (A tenant parked at its concurrency has older jobs queued, ahead of this one: it is queued.)
if ARGV[15] ~= '' and redis.call('ZCARD', KEYS[7]) == 0 and not redis.call('ZSCORE', KEYS[20], ARGV[9])
    and redis.call('ZCARD', KEYS[17]) < tonumber(set[4] or ARGV[17]) then
  -- Its start's time is Redis's clock, as its start event's is (its stream entry's id).
  hand_out(KEYS[1], ARGV[1], ARGV[9], KEYS[17], KEYS[16], ARGV[15], clock_now, clock_now + tonumber(ARGV[16]), true)
  -- Its virtual time moves as the take's would (take.lua): queued again, the tenant starts after
  -- this job, not at the clock tied with (and by name ahead of) a tenant that queued meanwhile.
  local clock = tonumber(redis.call('GET', KEYS[8]) or '0')
  local start = math.max(clock, tonumber(redis.call('HGET', KEYS[21], ARGV[9]) or '0'))
  local weight = tonumber(redis.call('HGET', KEYS[9], 'weight') or ARGV[27])
  redis.call('HSET', KEYS[21], ARGV[9], start + 1 / weight)
  if start > clock then redis.call('SET', KEYS[8], tostring(start)) end
  redis.call('HSET', KEYS[1], 'message', 'Starting')
  -- The start's event and its webhooks, as the dispatcher's start (transition.lua) writes them; its
  -- notice names the queued event before it. Its entry is the queued one's next, at the same
  -- millisecond: an id of '*' took the clock again, and a script that crossed a millisecond (Redis
  -- 6 does not hold the clock still in a script) put the start a millisecond after its queuing.
  local queued_ms, queued_seq = string.match(queued, '^(%d+)-(%d+)$')
  local entry = redis.call('XADD', KEYS[2], queued_ms .. '-' .. (tonumber(queued_seq) + 1), 'event', ARGV[18])
  queue_webhooks({job_key = KEYS[1], job_id = ARGV[1], category = 'start', event = ARGV[18], now = clock_now, entry = entry,
    due = KEYS[18], list_key = KEYS[19], endpoints_template = ARGV[20], delivery_template = ARGV[21],
    list_template = ARGV[22], channel = ARGV[23], ttl_ms = tonumber(ARGV[24]), progress_ms = tonumber(ARGV[25]),
    most = tonumber(ARGV[26])})
  local notice = 'next ' .. entry .. ' ' .. queued
  if ARGV[19] ~= '' then notice = notice .. ' ' .. ARGV[19] end
  -- Whether the job's channel had a subscriber (the submitting gateway's, subscribed ahead: no one
  -- else knows the new id) before its first notice: its watch then needs no read to catch up.
  local followed = redis.call('PUBSUB', 'NUMSUB', ARGV[7])[2]
  redis.call('PUBLISH', ARGV[7], notice)
  return {'started', ARGV[1], redis.call('HGETALL', KEYS[1]), queued, entry, followed}
end
redis.call('RPUSH', KEYS[6], ARGV[1])
-- A tenant joining the queue starts at the virtual clock: it neither jumps ahead with credit saved
-- while idle nor waits behind the others' whole backlogs. One whose last job was taken just now
-- starts at that job's finish, when later: at the clock it would tie with (and, by name, go ahead
-- of) the tenants that waited while it ran, and one that keeps a job queued would never let them in.
-- (A tenant parked at its concurrency stays parked: lib/parking.lua.)
if not redis.call('ZSCORE', KEYS[7], ARGV[9]) and not redis.call('ZSCORE', KEYS[20], ARGV[9]) then
  local clock = tonumber(redis.call('GET', KEYS[8]) or '0')
  local finish = tonumber(redis.call('HGET', KEYS[21], ARGV[9]) or '0')
  redis.call('HDEL', KEYS[21], ARGV[9])
  redis.call('ZADD', KEYS[7], math.max(clock, finish), ARGV[9])
end
redis.call('PUBLISH', ARGV[7], '')
if redis.call('ZCARD', KEYS[15]) > 0 then redis.call('PUBLISH', ARGV[8], ARGV[9]) end
return {'ok', ARGV[1], queued, clock_now}
