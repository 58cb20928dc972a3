-- keep: KEYS 1 the channel's shelf (key -> value), 2 the names of the channel's shelves
-- (so a sweep of the channel finds them); ARGV 1 key (decimal), 2 value, 3 the shelf's name.
-- The shelf's index of channels lives in another slot, so it is written apart (after).
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return 1
