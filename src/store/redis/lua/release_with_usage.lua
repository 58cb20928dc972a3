-- release_with_usage: ARGV 4 reservation, 5 used, 6 units, 7 the usage record. As
-- release, and the record is pushed only by the step that releases (a repeated release
-- pushes nothing).
local s = load()
if not s then
  return { 'not_found' }
end
reclaim(s)
local h = s.live[ARGV[4]]
if h then
  local t, g = copy(s), copy(h)
  if not settle(t, g, tonumber(ARGV[5]), tonumber(ARGV[6])) then
    return refuse(s, 'invalid')
  end
  apply(s, t)
  s.live[ARGV[4]] = nil
  s.gone[#s.gone + 1] = ARGV[4]
  record(ARGV[7])
end
save(s)
return reply(s)
