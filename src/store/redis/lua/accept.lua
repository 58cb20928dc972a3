-- accept: ARGV 4 cumulative, 5 deposit. Raises accepted and deposit where they are higher.
local s = load()
if not s then
  return { 'not_found' }
end
reclaim(s)
if s.finalized == 1 then
  return refuse(s, 'finalized')
end
local deposit = math.max(s.deposit, tonumber(ARGV[5]))
local accepted = math.max(s.accepted, tonumber(ARGV[4]))
if accepted > deposit then
  return refuse(s, 'invalid')
end
s.deposit, s.accepted = deposit, accepted
save(s)
return reply(s)
