-- Puts a tenant parked at its concurrency back among the queued tenants (an admin changed its
-- limits: it may have room now; a take parks it again if not), and tells a waiting dispatcher.
-- KEYS: parked tenants, queued tenants, waiting dispatchers
-- ARGV: 1 tenant, 2 work channel
-- include: parking
local was_parked = redis.call('ZSCORE', KEYS[1], ARGV[1])
unpark(KEYS[1], KEYS[2], ARGV[1])
if was_parked and redis.call('ZCARD', KEYS[3]) > 0 then redis.call('PUBLISH', ARGV[2], ARGV[1]) end
return 1
