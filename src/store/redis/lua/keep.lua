-- keep: KEYS 1 the channel's shelf (key -> value); ARGV 1 key (decimal), 2 value.
-- The shelf's index of channels lives in another slot, so it is written apart (after).
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
