-- The clock that leases and concurrency slots are judged by: Redis's own (TIME), the same for
-- every gateway replica, however far a replica's wall clock is off or whichever way it was just
-- stepped. A lease written by one replica's clock and judged by another's was taken over while its
-- dispatcher lived (a replica two minutes ahead reaped every other's jobs) and a slot written by
-- one counted free on another (a tenant ran more jobs than its concurrency). Call it before the
-- script's first write: Redis 6 replicates a script that reads TIME only as its effects
-- (redis.replicate_commands, a no-op from Redis 7 on, where scripts are always replicated so).
local function ledger_now_ms()
  redis.replicate_commands()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
