-- Rotates a webhook signing secret (the previous one keeps signing until previous_until_ms), or
-- makes one where there is none ('ensure': an existing secret is kept).
-- KEYS: 1 the tenant's secrets, 2 the tenant's endpoints
-- ARGV: 1 field ('tenant' or 'endpoint:{id}'), 2 endpoint id ('' for the tenant's), 3 the new
--       secret, 4 until when the previous one still signs (ms), 5 mode ('rotate' or 'ensure')
-- Returns the secrets' JSON {current, previous, previous_until_ms}, or '' when the endpoint does
-- not exist. Repeating a call (the same new secret) changes nothing.
if ARGV[2] ~= '' and redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then return '' end
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing and ARGV[5] == 'ensure' then return existing end
-- A repeat of this very rotation (a retry after a lost reply carries the same new secret) changes
-- nothing: rotating again would make the new secret the previous one, and the old one would stop
-- signing at once instead of at the overlap's end.
if existing and cjson.decode(existing).current == ARGV[3] then return existing end
local record = {current = ARGV[3], previous = '', previous_until_ms = 0}
if existing then
  record.previous = cjson.decode(existing).current
  record.previous_until_ms = tonumber(ARGV[4])
end
local encoded = cjson.encode(record)
redis.call('HSET', KEYS[1], ARGV[1], encoded)
return encoded
