-- discard: KEYS as keep; ARGV 1 channel id, 2 'all' or 'some', then the keys to remove.
if ARGV[2] == 'all' then
  redis.call('DEL', KEYS[1])
else
  for i = 3, #ARGV do
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[1])
end
return 1
