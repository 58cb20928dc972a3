-- ask: ARGV 4 asker, 5 cumulative, 6 ttl in milliseconds. Keeps at most 64 live asks,
-- dropping the one that lapses first. Asking is no payment: no reclaim, no version bump.
local s = load()
if not s then
  return { 'not_found' }
end
if s.finalized == 1 then
  return { 'finalized' }
end
local asks = redis.call('HGETALL', ASKS)
local count, mine, oldest, oldest_expires = 0, false, nil, nil
for i = 1, #asks, 2 do
  local expires = numbers(asks[i + 1])[2]
  if expires <= NOW then
    redis.call('HDEL', ASKS, asks[i])
  else
    count = count + 1
    mine = mine or asks[i] == ARGV[4]
    if not oldest_expires or expires < oldest_expires then
      oldest, oldest_expires = asks[i], expires
    end
  end
end
if count >= 64 and not mine then
  redis.call('HDEL', ASKS, oldest)
end
redis.call('HSET', ASKS, ARGV[4], ARGV[5] .. ' ' .. text(NOW + tonumber(ARGV[6])))
return reply(s)
