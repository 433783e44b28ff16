-- Puts a tenant parked at its concurrency back among the queued tenants (an admin changed its
-- limits: it may have room now; a take parks it again if not).
-- KEYS: parked tenants, queued tenants
-- ARGV: 1 tenant
-- include: parking
unpark(KEYS[1], KEYS[2], ARGV[1])
return 1
