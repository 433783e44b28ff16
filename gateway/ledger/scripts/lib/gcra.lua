-- A tenant's request rate as a generic cell rate algorithm: one request every 1000/rate ms on
-- average, up to `burst` at once. gcra() returns the ms to wait when the request is over the rate
-- (and nil), or 0 and the new theoretical arrival time, which gcra_store() records once the
-- request is accepted (a request refused for another reason is not counted).
local function gcra(rate_key, rate, burst, now)
  if rate <= 0 then return 0, nil end
  local interval = 1000 / rate
  local tat = tonumber(redis.call('GET', rate_key) or '0')
  if tat < now then tat = now end
  local allowed_at = tat - interval * (math.max(1, burst) - 1)
  if now < allowed_at then return math.ceil(allowed_at - now), nil end
  return 0, tat + interval
end

local function gcra_store(rate_key, new_tat, now)
  if new_tat then redis.call('SET', rate_key, tostring(new_tat), 'PX', math.ceil(new_tat - now) + 1000) end
end
