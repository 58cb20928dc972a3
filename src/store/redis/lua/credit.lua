-- credit: KEYS 6 the channel's claimed deposit references; ARGV 4 reference, 5 amount.
-- Claims the reference and credits the amount in one step; a claimed reference changes
-- nothing (answered with extra '0', a fresh credit with '1').
if redis.call('HEXISTS', KEYS[6], ARGV[4]) == 1 then
  local s = load()
  if not s then
    return { 'not_found' }
  end
  reclaim(s)
  save(s)
  return reply(s, '0')
end
local s = load()
if not s then
  s = create('0', '0')
end
reclaim(s)
if s.finalized == 1 then
  return refuse(s, 'finalized')
end
local amount = tonumber(ARGV[5])
if s.accepted + amount > LIMIT or s.deposit + amount > LIMIT then
  return refuse(s, 'invalid')
end
s.accepted = s.accepted + amount
s.deposit = s.deposit + amount
redis.call('HSET', KEYS[6], ARGV[4], ARGV[5])
save(s)
return reply(s, '1')
