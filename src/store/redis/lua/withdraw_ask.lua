-- withdraw_ask: ARGV 4 asker. Withdrawing an unknown ask changes nothing.
local s = load()
if not s then
  return { 'not_found' }
end
redis.call('HDEL', ASKS, ARGV[4])
return reply(s)
