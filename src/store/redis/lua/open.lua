-- open: ARGV 4 accepted, 5 deposit. Creates the channel or returns it as it is.
local s = load()
if not s then
  return reply(create(ARGV[4], ARGV[5]))
end
reclaim(s)
save(s)
return reply(s)
