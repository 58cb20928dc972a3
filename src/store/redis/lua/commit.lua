-- commit: ARGV 4 reservation, 5 used, 6 units (totals so far).
local s = load()
if not s then
  return { 'not_found' }
end
reclaim(s)
local h = s.live[ARGV[4]]
if not h then
  return refuse(s, 'not_found')
end
local t, g = copy(s), copy(h)
if not commit(t, g, tonumber(ARGV[5]), tonumber(ARGV[6])) then
  return refuse(s, 'invalid')
end
apply(s, t)
g.expires = NOW + LEASE
touch(s, ARGV[4], g)
save(s)
return reply(s)
