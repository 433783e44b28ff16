-- Tenants at their concurrency with jobs queued are parked (take.lua): out of the queued tenants a
-- take looks through, so a crowd of them at the head cannot hide a tenant that may run (a take looks
-- at a bounded number of tenants). A parked tenant keeps its virtual time and goes back when one of
-- its slots is freed (an end, a requeue), when an admin changes its limits, or when a take finds no
-- work and looks through the parked ones (a slot whose lease ran out is freed by the reaper's requeue).
local function unpark(parked_key, queued_key, tenant)
  local score = redis.call('ZSCORE', parked_key, tenant)
  if score then
    redis.call('ZREM', parked_key, tenant)
    redis.call('ZADD', queued_key, score, tenant)
  end
end
