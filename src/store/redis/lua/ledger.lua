-- The ledger of one channel, shared by every step on it (each step's script is this file
-- followed by the step). Everything a step reads or writes is under the channel's hash tag.
--
-- KEYS: 1 state hash, 2 held reservations (id -> "amount committed units delivered
-- delivered_units expires"), 3 asks (asker -> "cumulative expires"), 4 usage record heads
-- (id -> head, for reservations a reclaim must record), 5 the usage list, 6 a step's own.
-- ARGV: 1 the channel's state key (the wake-up payload), 2 the wake-up topic, 3 the lease
-- in milliseconds, then the step's own arguments.
--
-- Amounts are Lua numbers (doubles): exact up to 2^53 - 1, and the store never passes a
-- larger one. Numbers are written back with '%.0f', never with tostring (which rounds).
-- A step checks everything before it writes, so a refusal leaves the ledger as it was
-- (apart from the reclaim of lapsed leases, which stands whatever the step).

local STATE, HELD, ASKS, HEADS, USAGE = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local WAKE_KEY, TOPIC, LEASE = ARGV[1], ARGV[2], tonumber(ARGV[3])
local LIMIT = 9007199254740991
-- The usage records a channel keeps (MAX_USAGE_RECORDS; a unit test holds them equal).
local KEEP = 1000
-- The server's clock, so instances with skewed clocks agree on when a lease lapses.
local clock = redis.call('TIME')
local NOW = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local FIELDS = { 'accepted', 'deposit', 'spent', 'reserved', 'units', 'finalized', 'version' }

local function text(n)
  return string.format('%.0f', n)
end

local function numbers(value)
  local out = {}
  for word in string.gmatch(value, '%S+') do
    out[#out + 1] = tonumber(word)
  end
  return out
end

local function copy(t)
  local out = {}
  for k, v in pairs(t) do
    out[k] = v
  end
  return out
end

-- The channel as a table (nil when it does not exist), with its live reservations.
local function load()
  local values = redis.call('HMGET', STATE, unpack(FIELDS))
  if not values[1] then
    return nil
  end
  local s = { live = {}, gone = {}, touched = {} }
  for i, field in ipairs(FIELDS) do
    s[field] = tonumber(values[i])
  end
  s.before = copy(s)
  local held = redis.call('HGETALL', HELD)
  for i = 1, #held, 2 do
    local f = numbers(held[i + 1])
    s.live[held[i]] = {
      amount = f[1], committed = f[2], units = f[3], delivered = f[4], delivered_units = f[5], expires = f[6],
    }
  end
  return s
end

-- Raises h's committed totals to used / units and moves the difference from reserved to
-- spent. Works on copies: false means the caller must drop them.
local function commit(s, h, used, units)
  if used > h.amount then
    return false
  end
  local delta = math.max(used - h.committed, 0)
  local more_units = math.max(units - h.units, 0)
  if s.reserved < delta or s.spent + delta > LIMIT or s.units + more_units > LIMIT then
    return false
  end
  s.reserved = s.reserved - delta
  s.spent = s.spent + delta
  s.units = s.units + more_units
  h.committed = math.max(h.committed, used)
  h.units = math.max(h.units, units)
  return true
end

-- Commits used / units and frees the rest of h, on copies.
local function settle(s, h, used, units)
  if not commit(s, h, used, units) then
    return false
  end
  local free = h.amount - h.committed
  if s.reserved < free then
    return false
  end
  s.reserved = s.reserved - free
  return true
end

local function apply(s, t)
  for _, field in ipairs(FIELDS) do
    s[field] = t[field]
  end
end

-- Appends a usage record, keeping the newest KEEP.
local function record(value)
  redis.call('LPUSH', USAGE, value)
  redis.call('LTRIM', USAGE, 0, KEEP - 1)
end

-- Releases every lapsed lease with the larger of its committed and renewed usage, each
-- whole or not at all. A lease with a record head gets its record in the same step (the
-- caller always saves after a reclaim, so the lease is dropped with it).
local function reclaim(s)
  for id, h in pairs(s.live) do
    if h.expires <= NOW then
      local t, g = copy(s), copy(h)
      local used, units = math.max(h.committed, h.delivered), math.max(h.units, h.delivered_units)
      if settle(t, g, used, units) then
        apply(s, t)
        s.live[id] = nil
        s.gone[#s.gone + 1] = id
        local head = redis.call('HGET', HEADS, id)
        if head then
          record(head .. ',"units":' .. text(units) .. ',"cost":"' .. text(used) .. '","reclaimed":true}')
        end
      end
    end
  end
end

-- Writes what the step changed; a change of the state bumps the version and wakes waiters.
local function save(s)
  for _, id in ipairs(s.gone) do
    redis.call('HDEL', HELD, id)
    redis.call('HDEL', HEADS, id)
  end
  for id in pairs(s.touched) do
    local h = s.live[id]
    if h then
      local f = { h.amount, h.committed, h.units, h.delivered, h.delivered_units, h.expires }
      for i, n in ipairs(f) do
        f[i] = text(n)
      end
      redis.call('HSET', HELD, id, table.concat(f, ' '))
    end
  end
  local changed = false
  for _, field in ipairs(FIELDS) do
    if s[field] ~= s.before[field] then
      changed = true
    end
  end
  if changed then
    s.version = s.version + 1
    local args = {}
    for _, field in ipairs(FIELDS) do
      args[#args + 1] = field
      args[#args + 1] = text(s[field])
    end
    redis.call('HSET', STATE, unpack(args))
    redis.call('PUBLISH', TOPIC, WAKE_KEY)
  end
end

local function touch(s, id, h)
  s.live[id] = h
  s.touched[id] = true
end

-- The highest live ask.
local function asked()
  local asks = redis.call('HGETALL', ASKS)
  local best = 0
  for i = 2, #asks, 2 do
    local f = numbers(asks[i])
    if NOW < f[2] and f[1] > best then
      best = f[1]
    end
  end
  return best
end

-- The state as callers see it, then whatever the step adds.
local function reply(s, ...)
  local out = {
    'ok', text(s.accepted), text(s.deposit), text(s.spent), text(s.reserved), text(s.units), text(asked()),
    text(s.finalized), text(s.version),
  }
  for _, extra in ipairs({ ... }) do
    out[#out + 1] = extra
  end
  return out
end

-- Saves what the reclaim changed, then refuses the step.
local function refuse(s, why, detail)
  save(s)
  return { why, detail }
end

-- What a reservation may take: min(available, max), if that is at least min.
local function grant(s, min, max, inverted)
  if s.finalized == 1 then
    return nil, 'finalized'
  end
  if inverted then
    return nil, 'invalid'
  end
  local available = s.accepted - s.spent - s.reserved
  if available < 0 then
    return nil, 'invalid'
  end
  local granted = math.min(available, max)
  if granted < min then
    return nil, 'insufficient', text(available)
  end
  return granted
end

-- A new channel, version 1 (so waiting from version 0 resolves at once).
local function create(accepted, deposit)
  redis.call('HSET', STATE, 'accepted', accepted, 'deposit', deposit, 'spent', '0', 'reserved', '0', 'units', '0',
    'finalized', '0', 'version', '1', 'next', '0')
  return load()
end

