-- settle.lua: a request ended; replace its hold by the tokens actually billed and free its slot.
-- KEYS[1] month counter of the hold's month    fw:q:{T}:m:<YYYYMM>
-- KEYS[2] minute counter of the hold's minute  fw:q:{T}:w:<epoch minute>
-- KEYS[3] live holds (zset)  KEYS[4] hold details (hash "tokens|spent|month|minute")
-- ARGV[1] request_id  ARGV[2] spent (tokens billed for the request)
-- The counters move by (spent - tokens the hold still counts). No hold means nothing to do: it was
-- settled already, or Redis lost it and the rebuild from PostgreSQL counted the request itself
-- (as a hold while pending, as billed tokens once final). A missing counter is left alone too.
-- Idempotent: a retry after a lost reply finds no hold. Returns the delta applied.
local hold = redis.call('HGET', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if not hold then
  return 0
end
redis.call('HDEL', KEYS[4], ARGV[1])
local delta = tonumber(ARGV[2]) - tonumber(string.match(hold, '^(%d+)|'))
if delta ~= 0 then
  if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('INCRBY', KEYS[1], delta) end
  if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('INCRBY', KEYS[2], delta) end
end
return delta
