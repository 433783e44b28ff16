-- Moves a job: progress of a running job, or its one terminal state.
-- KEYS: job, events, active set, checkpoints, running (all), waiting dispatchers, webhooks due, the
--       job's webhook deliveries, queued tenants, parked tenants, storage folders due for a delete,
--       the job's cancel-asked mark (a batch's: Jobs.cancelling)
-- ARGV: 1 job_id, 2 owner ('' = anyone), 3 new_state ('' = unchanged), 4 retention_ms, 5 event,
--       6 op, 7 the job's notice channel, 8 work channel, 9 tenant running template, 10 tenant active
--       template, 11 the credits the end charges ('cancel': by the job's state), 12 credit balance
--       template, 13 credits reserved template, 14 credit log template, 15 the event's webhook
--       category ('start', 'progress'; an end is 'completed'), 16 now_ms (unused: lib/clock.lua), 17 webhook endpoints
--       template, 18 webhook delivery template, 19 job webhooks template, 20 webhooks channel,
--       21 a delivery's ttl_ms, 22 ms between progress deliveries, 23 most start and progress
--       deliveries per job, 24 the event as the notice carries it (base64; '' to leave it out),
--       25 the storage folders an end leaves to delete (JSON list), 26 n, the number of progress
--       events written before it, then n pairs (the event, as its notice carries it), then fields
--       and values.
-- A terminal job never moves again; a dispatcher that is no longer the owner cannot write. Each call
-- carries an operation id: repeating it (a retry after a lost reply) changes nothing. The end frees
-- the job's concurrency slot and its place in the tenant's quota, and settles its credits, in the
-- same step: it happens once, so a job is charged once and refunded at most once. The freed slot is
-- announced (a work notice) only while a dispatcher waits and some job is queued: with nothing
-- queued there is nothing it could take, and every waiting dispatcher would look in vain. What it charges
-- is never more than it reserved; a cancelled job pays nothing if it had not started, else its base.
-- The event's webhook deliveries are queued in the same step (lib/webhooks.lua): an end, once.
-- Progress events given before it (steps the job took without waiting for anything between them)
-- are written first, in order, each with its own stream entry, webhooks and notice: to a watcher
-- they are the events separate calls would have written.
-- include: clock
-- include: webhooks
-- include: states
-- include: parking
-- include: room_places
-- Webhooks fall due by Redis's clock, which their claims are judged by (lib/clock.lua).
local clock_now = ledger_now_ms()
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if redis.call('HGET', KEYS[1], 'op') == ARGV[6] then return 'ok' end
if terminal(state) then return 'terminal' end
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'owner') ~= ARGV[2] then return 'not_owner' end
local earlier = tonumber(ARGV[26])
local fields = {'op', ARGV[6]}
for i = 27 + 2 * earlier, #ARGV do fields[#fields + 1] = ARGV[i] end
-- The job's times are Redis's clock, as its events' are (their stream entries' ids), whatever the
-- writing replica's clock said.
for i = 3, #fields, 2 do
  if fields[i] == 'updated_ms' or fields[i] == 'ended_ms' then fields[i + 1] = clock_now end
end
if ARGV[3] ~= '' then fields[#fields + 1] = 'state'; fields[#fields + 1] = ARGV[3] end
redis.call('HSET', KEYS[1], unpack(fields))
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local before = (last[1] and last[1][1]) or '0'
local function queue(category, event, entry)
  queue_webhooks({job_key = KEYS[1], job_id = ARGV[1], category = category, event = event, now = clock_now, entry = entry,
    due = KEYS[7], list_key = KEYS[8], endpoints_template = ARGV[17], delivery_template = ARGV[18],
    list_template = ARGV[19], channel = ARGV[20], ttl_ms = tonumber(ARGV[21]), progress_ms = tonumber(ARGV[22]),
    most = tonumber(ARGV[23])})
end
-- The notice names the event and the entry before it, and carries the event when the caller gave
-- it (in base64, so that any subscriber can read the notice as text): a gateway hands it at once to
-- the watchers whose cursor is that entry, and reads the stream for the rest. An end's notice says
-- so: a watcher past the end waits for nothing.
local function notice(kind, entry, payload)
  local text = kind .. ' ' .. entry .. ' ' .. before
  if payload ~= '' then text = text .. ' ' .. payload end
  return text
end
for i = 1, earlier do
  local event = ARGV[25 + 2 * i]
  local entry = redis.call('XADD', KEYS[2], '*', 'event', event)
  queue('progress', event, entry)
  redis.call('PUBLISH', ARGV[7], notice('next', entry, ARGV[26 + 2 * i]))
  before = entry
end
local entry = redis.call('XADD', KEYS[2], '*', 'event', ARGV[5])
local ending = ARGV[3] ~= '' and terminal(ARGV[3])
local category = ARGV[15]
if ending then category = 'completed' end
if category ~= '' then queue(category, ARGV[5], entry) end
if ending then
  local tenant = redis.call('HGET', KEYS[1], 'tenant')
  local reserved = tonumber(redis.call('HGET', KEYS[1], 'credits_reserved') or '0')
  if reserved > 0 then
    local charge
    if ARGV[11] == 'cancel' then
      if state == 'QUEUED' then charge = 0 else charge = tonumber(redis.call('HGET', KEYS[1], 'credits_base') or '0') end
    else
      charge = tonumber(ARGV[11])
    end
    charge = math.max(0, math.min(charge, reserved))
    redis.call('HSET', KEYS[1], 'credits_charged', charge)
    redis.call('DECRBY', string.format(ARGV[13], tenant), reserved)
    if charge < reserved then
      local left = redis.call('INCRBY', string.format(ARGV[12], tenant), reserved - charge)
      redis.call('XADD', string.format(ARGV[14], tenant), '*', 'kind', 'refund', 'amount', reserved - charge,
        'balance', left, 'job', ARGV[1])
    end
  end
  -- The folders the end leaves to delete, noted in the same step: a reaper deletes them when no
  -- dispatcher does (a queued job cancelled, a dispatcher killed as its job ended).
  local folders = cjson.decode(ARGV[25])
  if #folders > 0 then redis.call('SADD', KEYS[11], unpack(folders)) end
  local members = room_places(ARGV[1], redis.call('HGET', KEYS[1], 'room_places'))
  redis.call('SREM', KEYS[3], unpack(members))
  redis.call('SREM', string.format(ARGV[10], tenant), unpack(members))
  redis.call('ZREM', KEYS[5], tenant .. '|' .. ARGV[1])
  redis.call('ZREM', string.format(ARGV[9], tenant), ARGV[1])
  unpark(KEYS[10], KEYS[9], tenant)  -- its slot is free: a tenant parked at its concurrency goes back
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  redis.call('PEXPIRE', KEYS[4], ARGV[4])
  redis.call('PEXPIRE', KEYS[8], math.max(tonumber(ARGV[4]), tonumber(ARGV[21])))
  local idem = redis.call('HGET', KEYS[1], 'idempotency_key')
  if idem and idem ~= '' then redis.call('PEXPIRE', idem, ARGV[4]) end
  -- A batch's cancel mark is set for a day; ended, the batch needs it no more than its other keys.
  if redis.call('PTTL', KEYS[12]) > tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[12], ARGV[4]) end
end
-- The job's own notice first: a gateway that hears both at once hands the event to its watchers
-- before its dispatcher looks for work.
redis.call('PUBLISH', ARGV[7], notice(ending and 'end' or 'next', entry, ARGV[24]))
if ending and redis.call('ZCARD', KEYS[6]) > 0 and redis.call('ZCARD', KEYS[9]) > 0 then
  redis.call('PUBLISH', ARGV[8], redis.call('HGET', KEYS[1], 'tenant'))
end
return 'ok'
