-- unlock: KEYS 1 the lock; ARGV 1 holder. Only the holder gives it up.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 1
