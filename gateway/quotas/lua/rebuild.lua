-- rebuild.lua: restore a tenant's counters from PostgreSQL (the source of truth) after Redis lost them.
-- KEYS[1] month counter  KEYS[2] minute counter  KEYS[3] live holds (zset)  KEYS[4] hold details (hash)
-- ARGV[1] month tokens (billed + held, from usage records)  ARGV[2] minute tokens  ARGV[3] month ttl (s)
-- ARGV[4] minute ttl (s)  ARGV[5] state ttl (s)
-- ARGV[6..] triples: request_id, lease deadline ms ("0": lapsed, no slot), "tokens|spent|month|minute"
-- Does nothing if the month counter exists (another gateway rebuilt first, or it never went away).
-- Returns 1 if it rebuilt, else 0.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[4])
for i = 6, #ARGV, 3 do
  if ARGV[i + 1] ~= '0' then
    redis.call('ZADD', KEYS[3], 'NX', ARGV[i + 1], ARGV[i])
  end
  redis.call('HSETNX', KEYS[4], ARGV[i], ARGV[i + 2])
end
redis.call('EXPIRE', KEYS[3], ARGV[5])
redis.call('EXPIRE', KEYS[4], ARGV[5])
return 1
