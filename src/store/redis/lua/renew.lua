-- renew: ARGV 4 reservation, 5 delivered, 6 units (provisional totals). Restarts the lease;
-- the figures count only if it lapses. No payment, so no version bump of its own.
local s = load()
if not s then
  return { 'not_found' }
end
reclaim(s)
local h = s.live[ARGV[4]]
if not h then
  return refuse(s, 'not_found')
end
local delivered = tonumber(ARGV[5])
if delivered > h.amount then
  return refuse(s, 'invalid')
end
h.delivered = math.max(h.delivered, delivered)
h.delivered_units = math.max(h.delivered_units, tonumber(ARGV[6]))
h.expires = NOW + LEASE
touch(s, ARGV[4], h)
save(s)
return reply(s)
