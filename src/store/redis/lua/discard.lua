-- discard: KEYS 1 the channel's shelf; ARGV 1 'all' or 'some', then the keys to remove.
-- Returns 1 when the shelf is now empty (the caller then drops it from the index).
if ARGV[1] == 'all' then
  redis.call('DEL', KEYS[1])
else
  for i = 2, #ARGV do
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 1
end
return 0
