-- renew.lua: extend the leases of a tenant's live holds and checkpoint what each has spent so far.
-- KEYS[1] live holds (zset request_id -> deadline ms)  KEYS[2] hold details (hash "tokens|spent|month|minute")
-- ARGV[1] new deadline (ms); then pairs: ARGV[2k] request_id, ARGV[2k+1] tokens spent so far
-- A hold that already lapsed stays lapsed (its slot may have been reused). Returns how many renewed.
local renewed = 0
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('ZSCORE', KEYS[1], id) then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[1], id)
    local hold = redis.call('HGET', KEYS[2], id)
    if hold then
      local tokens, _, month, minute = string.match(hold, '^(%d+)|(%d+)|(%d+)|(%d+)$')
      redis.call('HSET', KEYS[2], id, tokens .. '|' .. ARGV[i + 1] .. '|' .. month .. '|' .. minute)
    end
    renewed = renewed + 1
  end
end
return renewed
