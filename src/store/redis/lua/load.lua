-- load: the state, after reclaiming lapsed leases.
local s = load()
if not s then
  return { 'none' }
end
reclaim(s)
save(s)
return reply(s)
