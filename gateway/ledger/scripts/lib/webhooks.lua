-- Queues the webhook deliveries of one job event, in the script that records the event, so an
-- event is never recorded without its deliveries (nor the other way round). Targets: the webhook
-- set on the job's request (fields webhook_url, webhook_events; a batch's room carries its batch's,
-- for its completion) and the tenant's endpoints (JSON in the endpoints hash), each when its
-- event filter names the event's category ('start', 'progress' or 'completed'). Progress is sent at
-- most once per `progress_ms` per job, and a job queues at most `most` deliveries of start and
-- progress; completions always go. Each delivery is a hash `delivery_template % id` (id
-- "msg_{job}_{n}", the webhook-id of every attempt) due now in `due`, listed under the job (and,
-- for a room, under its batch). Returns how many were queued.
-- w: {job_key, job_id, category, event, now, due, list_key, endpoints_template,
--     delivery_template, list_template, channel, ttl_ms, progress_ms, most, entry (the event's
--     stream entry: its time, the event's as it reads back, is the delivery's created_ms; a stream's
--     ids never go back, so after Redis's clock stepped back it is ahead of now)}
local function queue_webhooks(w)
  local at = w.now
  if w.entry then at = tonumber(string.match(w.entry, '^(%d+)')) end
  local job = w.job_key
  local url = redis.call('HGET', job, 'webhook_url')
  local tenant = redis.call('HGET', job, 'tenant')
  local endpoints_key = string.format(w.endpoints_template, tenant)
  if not url and redis.call('EXISTS', endpoints_key) == 0 then return 0 end
  local needle = ',' .. w.category .. ','
  local function wants(events)
    return string.find(',' .. (events or '') .. ',', needle, 1, true) ~= nil
  end
  local targets = {}
  if url and wants(redis.call('HGET', job, 'webhook_events')) then targets[#targets + 1] = {'', url} end
  local endpoints = redis.call('HGETALL', endpoints_key)
  for i = 1, #endpoints, 2 do
    local endpoint = cjson.decode(endpoints[i + 1])
    if not endpoint.disabled and wants(endpoint.events) then targets[#targets + 1] = {endpoints[i], endpoint.url} end
  end
  if #targets == 0 then return 0 end
  if w.category ~= 'completed' then
    if tonumber(redis.call('HGET', job, 'webhook_seq') or '0') >= w.most then return 0 end
    if w.category == 'progress' then
      local last = tonumber(redis.call('HGET', job, 'webhook_progress_ms') or '0')
      if w.now - last < w.progress_ms then return 0 end
      redis.call('HSET', job, 'webhook_progress_ms', w.now)
    end
  end
  local kind = redis.call('HGET', job, 'kind') or ''
  local parent = redis.call('HGET', job, 'parent_job_id') or ''
  local event_type = 'job.progress'
  if w.category == 'start' then
    event_type = 'job.started'
  elseif w.category == 'completed' then
    if kind == 'room_batch' then
      event_type = 'batch.completed'
    elseif parent ~= '' then
      event_type = 'batch.room.completed'
    else
      event_type = 'job.completed'
    end
  end
  local parent_list = ''
  if parent ~= '' then parent_list = string.format(w.list_template, parent) end
  for _, target in ipairs(targets) do
    local id = 'msg_' .. w.job_id .. '_' .. redis.call('HINCRBY', job, 'webhook_seq', 1)
    local key = string.format(w.delivery_template, id)
    redis.call('HSET', key, 'id', id, 'tenant', tenant, 'job', w.job_id, 'endpoint', target[1], 'url', target[2],
      'type', event_type, 'event', w.event, 'kind', kind, 'parent', parent,
      'project', redis.call('HGET', job, 'project_id') or '', 'user', redis.call('HGET', job, 'user_id') or '',
      'attempt', redis.call('HGET', job, 'attempt') or '0',
      'status', 'pending', 'attempts', 0, 'created_ms', at, 'next_ms', w.now)
    redis.call('PEXPIRE', key, w.ttl_ms)
    redis.call('ZADD', w.due, w.now, id)
    redis.call('RPUSH', w.list_key, id)
    redis.call('PEXPIRE', w.list_key, w.ttl_ms)
    if parent_list ~= '' then
      redis.call('RPUSH', parent_list, id)
      redis.call('PEXPIRE', parent_list, w.ttl_ms)
    end
  end
  redis.call('PUBLISH', w.channel, '')
  return #targets
end
