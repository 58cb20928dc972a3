-- extend: ARGV 4 reservation, 5 min, 6 max, 7 '1' when min > max. Returns the state and
-- the reservation's new amount.
local s = load()
if not s then
  return { 'not_found' }
end
reclaim(s)
local h = s.live[ARGV[4]]
if not h then
  return refuse(s, 'not_found')
end
local granted, why, detail = grant(s, tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7] == '1')
if not granted then
  return refuse(s, why, detail)
end
if h.amount + granted > LIMIT then
  return refuse(s, 'invalid')
end
h.amount = h.amount + granted
h.expires = NOW + LEASE
s.reserved = s.reserved + granted
touch(s, ARGV[4], h)
save(s)
return reply(s, text(h.amount))
