-- A tenant's request rate as a generic cell rate algorithm: one request every 1000/rate ms on
-- average, up to `burst` at once. gcra() returns the ms to wait when the request is over the rate
-- (and nil), or 0 and the new theoretical arrival time, which gcra_store() records once the
-- request is accepted (a request refused for another reason is not counted).
--
-- Numbers reach Redis as Lua writes them ("%.14g"): a larger one is written with an exponent,
-- which SET ... PX refuses and a reply turns into nonsense. The interval is therefore held to a
-- day (the least rate the admin API accepts is one a day) and the expiry to 10^13 ms, so no stored
-- limit, however small its rate, can make a submit fail.
local GCRA_MAX_INTERVAL_MS = 86400000
local GCRA_MAX_PX = 10000000000000

local function gcra(rate_key, rate, burst, now)
  if rate <= 0 then return 0, nil end
  local interval = math.min(1000 / rate, GCRA_MAX_INTERVAL_MS)
  local tat = tonumber(redis.call('GET', rate_key) or '0') or 0
  if tat < now then tat = now end
  -- Under unchanged limits a stored arrival time is at most burst intervals ahead. One further
  -- ahead was recorded under a slower rate or a smaller burst: it is brought down to what the
  -- limits in force allow (and kept so), or an admin's raised rate would hold the tenant to the
  -- old one for up to a day.
  local most = now + interval * math.max(1, burst)
  if tat > most then
    tat = most
    redis.call('SET', rate_key, string.format('%.6f', tat), 'PX', math.ceil(tat - now) + 1000)
  end
  local allowed_at = tat - interval * (math.max(1, burst) - 1)
  -- Within a microsecond counts as on time: the sums of a fractional interval drift by less.
  if now + 0.001 < allowed_at then return math.ceil(allowed_at - now), nil end
  return 0, tat + interval
end

local function gcra_store(rate_key, new_tat, now)
  if new_tat then
    local px = math.min(math.ceil(new_tat - now) + 1000, GCRA_MAX_PX)
    -- Microseconds kept: tostring's 14 digits leave a millisecond timestamp one decimal, which
    -- rounded away the interval of any rate over 20,000 a second (none was limited).
    redis.call('SET', rate_key, string.format('%.6f', new_tat), 'PX', px)
  end
end
