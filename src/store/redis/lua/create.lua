-- create: KEYS 6 the channel's claimed deposit references, 7 the names of its shelves,
-- 8 the store's lapse index (channel id -> lapse, unix ms); ARGV 4 accepted, 5 deposit,
-- 6 the lapse (unix ms) or '' for a channel that never lapses, 7 the escaped key prefix,
-- 8 the channel id, 9 how many other lapsed channels to sweep.
-- Sweeps lapsed channels first (this one if it has lapsed, then the longest-lapsed), then
-- creates the channel only if it does not exist. A swept channel's keys are named here
-- (they are not this channel's), so this script needs one Redis primary, not a cluster.
local LAPSES, PREFIX, ID = KEYS[8], ARGV[7], ARGV[8]

local function escape(s)
  return (string.gsub(s, '[%%{}]', { ['%'] = '%25', ['{'] = '%7B', ['}'] = '%7D' }))
end

-- Deletes every key of channel `id`, its shelves and their listings, and its lapse.
local function forget(id)
  local tagged = PREFIX .. ':{' .. escape(id) .. '}:'
  for _, shelf in ipairs(redis.call('SMEMBERS', tagged .. 'shelves')) do
    redis.call('DEL', tagged .. 'shelf:' .. shelf)
    redis.call('SREM', PREFIX .. ':shelved:' .. shelf, id)
  end
  redis.call('DEL', tagged .. 'state', tagged .. 'held', tagged .. 'asks', tagged .. 'heads', tagged .. 'usage',
    tagged .. 'credits', tagged .. 'shelves')
  redis.call('ZREM', LAPSES, id)
end

-- The keys this script names itself must be the ones the store names.
if PREFIX .. ':{' .. escape(ID) .. '}:state' ~= STATE then
  return redis.error_reply('tollgate: key names disagree')
end
local own = redis.call('ZSCORE', LAPSES, ID)
if own and tonumber(own) <= NOW then
  forget(ID)
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', LAPSES, '-inf', text(NOW), 'LIMIT', 0, tonumber(ARGV[9]))) do
  forget(id)
end
if redis.call('EXISTS', STATE) == 1 then
  return { 'exists' }
end
local s = create(ARGV[4], ARGV[5])
if ARGV[6] ~= '' then
  redis.call('ZADD', LAPSES, ARGV[6], ID)
else
  -- A plain channel never lapses, whatever a stale entry (keys deleted by hand) says.
  redis.call('ZREM', LAPSES, ID)
end
return reply(s)
