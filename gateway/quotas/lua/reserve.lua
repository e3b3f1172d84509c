-- reserve.lua: atomically check and reserve one request's tokens and concurrency slot for a tenant.
-- All keys share the tenant's hash tag {tenant_id}, so they live in one Redis Cluster slot.
-- KEYS[1] month counter   fw:q:{T}:m:<YYYYMM>  tokens spent + held this month. Absent = unknown
--                         (new month, or Redis lost its data): the caller rebuilds it from PostgreSQL.
-- KEYS[2] minute counter  fw:q:{T}:w:<epoch minute>  tokens spent + held in this TPM window
-- KEYS[3] live holds      fw:q:{T}:active  zset request_id -> lease deadline (ms)
-- KEYS[4] hold details    fw:q:{T}:holds   hash request_id -> "tokens|spent|month|minute"
-- ARGV[1] now (ms)  ARGV[2] request_id  ARGV[3] tokens to reserve (prompt + max_tokens)
-- ARGV[4] monthly token budget  ARGV[5] tokens per minute  ARGV[6] max concurrent requests
-- ARGV[7] lease (ms)  ARGV[8] month id  ARGV[9] minute id  ARGV[10] minute ttl (s)  ARGV[11] state ttl (s)
-- Returns {1, month_used, minute_used, active}          admitted (counters include this hold)
--         {0, reason, month_used, minute_used, active}  refused; reason = budget | tpm | concurrency
--         {-1}                                          month counter missing: rebuild, then retry
-- Idempotent per request_id (a retry after a lost reply finds its hold and changes nothing).
local now = tonumber(ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1}
end
if redis.call('HEXISTS', KEYS[4], ARGV[2]) == 1 then
  return {1, tonumber(redis.call('GET', KEYS[1])), tonumber(redis.call('GET', KEYS[2]) or '0'),
          redis.call('ZCARD', KEYS[3])}
end

-- Lapse holds whose lease passed (their gateway crashed or stalled): keep what they spent counted,
-- release the rest of the reservation and the concurrency slot. Bounded work per call.
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 64)
for _, id in ipairs(expired) do
  local hold = redis.call('HGET', KEYS[4], id)
  if hold then
    local tokens, spent, month, minute = string.match(hold, '^(%d+)|(%d+)|(%d+)|(%d+)$')
    local release = tonumber(tokens) - tonumber(spent)
    if release > 0 then
      if month == ARGV[8] then redis.call('DECRBY', KEYS[1], release) end
      if minute == ARGV[9] and redis.call('EXISTS', KEYS[2]) == 1 then redis.call('DECRBY', KEYS[2], release) end
    end
    redis.call('HSET', KEYS[4], id, spent .. '|' .. spent .. '|' .. month .. '|' .. minute)
  end
  redis.call('ZREM', KEYS[3], id)
end

local tokens = tonumber(ARGV[3])
local active = redis.call('ZCARD', KEYS[3])
local month_used = tonumber(redis.call('GET', KEYS[1]))
local minute_used = tonumber(redis.call('GET', KEYS[2]) or '0')
if month_used + tokens > tonumber(ARGV[4]) then
  return {0, 'budget', month_used, minute_used, active}
end
if minute_used + tokens > tonumber(ARGV[5]) then
  return {0, 'tpm', month_used, minute_used, active}
end
if active >= tonumber(ARGV[6]) then
  return {0, 'concurrency', month_used, minute_used, active}
end

redis.call('INCRBY', KEYS[1], tokens)  -- keeps the TTL the rebuild set (month end + a week)
redis.call('INCRBY', KEYS[2], tokens)
redis.call('EXPIRE', KEYS[2], ARGV[10])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[7]), ARGV[2])
redis.call('HSET', KEYS[4], ARGV[2], tokens .. '|0|' .. ARGV[8] .. '|' .. ARGV[9])
redis.call('EXPIRE', KEYS[3], ARGV[11])
redis.call('EXPIRE', KEYS[4], ARGV[11])
return {1, month_used + tokens, minute_used + tokens, active + 1}
