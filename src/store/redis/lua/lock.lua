-- lock: KEYS 1 the lock; ARGV 1 holder, 2 ttl in milliseconds. Takes a free or lapsed
-- lock, or renews it for its holder (expiry on the server's clock).
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
