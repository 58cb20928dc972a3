-- reserve: ARGV 4 min, 5 max, 6 '1' when min > max, 7 (optional) the usage record head a
-- reclaim completes. Returns the state, the new reservation's id and its amount.
local s = load()
if not s then
  return { 'not_found' }
end
reclaim(s)
local granted, why, detail = grant(s, tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6] == '1')
if not granted then
  return refuse(s, why, detail)
end
local id = text(redis.call('HINCRBY', STATE, 'next', 1))
s.reserved = s.reserved + granted
if ARGV[7] then
  redis.call('HSET', HEADS, id, ARGV[7])
end
touch(s, id, { amount = granted, committed = 0, units = 0, delivered = 0, delivered_units = 0, expires = NOW + LEASE })
save(s)
return reply(s, id, text(granted))
