-- create: ARGV 4 accepted, 5 deposit. Creates the channel only if it does not exist.
if redis.call('EXISTS', STATE) == 1 then
  return { 'exists' }
end
return reply(create(ARGV[4], ARGV[5]))
