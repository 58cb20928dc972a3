-- keep: KEYS 1 the channel's shelf (key -> value), 2 the shelf's index of channels;
-- ARGV 1 key (decimal), 2 value, 3 channel id.
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return 1
