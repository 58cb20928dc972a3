-- finalize: no more accepts or reservations.
local s = load()
if not s then
  return { 'not_found' }
end
reclaim(s)
s.finalized = 1
save(s)
return reply(s)
