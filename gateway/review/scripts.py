"""The Lua scripts that make the review queue atomic (registered once with ``register_script``).

Layout (every key of one queue shares the hash tag ``{<queue>}`` so the scripts stay in one Redis
Cluster slot; item keys are derived inside the scripts from the ``prefix`` argument)::

    rollguard:review:{q}:p1 .. :p3     streams of *slots*; consumer group ``reviewers``
    rollguard:review:{q}:item:<id>     hash: status open|decided, k, tenant, payload, times ...
    rollguard:review:{q}:item:<id>:verdicts   hash reviewer -> verdict JSON (k-overlap)
    rollguard:review:{q}:item:<id>:leases     hash slot entry id -> reviewer (live leases)
    rollguard:review:{q}:open | :claim_by | :decide_by | :decided   sorted sets (SLA, counts)
    rollguard:review:{q}:open:t:<tenant>   open items of one tenant (counts a reviewer may see)
    rollguard:review:{q}:audit        stream of every enqueue, claim, release, expiry, verdict

An item needing ``k`` verdicts is ``k`` slot entries. A claim hands a reviewer one slot, never
two slots of the same item and never a slot of an item they already judged (distinct reviewers);
a slot the reviewer may not take is parked on the consumer ``__parked__``, from where the next
claimer takes it first. Expired leases are moved to ``__parked__`` by ``XAUTOCLAIM`` (see
``SWEEP``). Pending entries are never trimmed: streams are written without ``MAXLEN`` and a slot
entry is deleted only after its verdict was recorded.

Lease clock: a lease is the slot's pending entry, and its age is the entry's idle time, which the
*server* keeps (set by ``XREADGROUP``/``XCLAIM``). A lease is expired once ``idle >= lease_ms``,
the same test ``XAUTOCLAIM``'s ``min-idle-time`` makes in the sweep, so an expired lease is refused
by ``HEARTBEAT`` and ``VERDICT`` inside the script (and its slot returned to the queue) whether or
not a sweep has run yet. Expiry times handed to clients are server time too (``TIME``), never the
gateway's clock.

Lease and item: a lease names a slot entry, and the slot names its item. ``VERDICT`` and
``RELEASE`` also take the caller's ``item_id`` (it derives the item keys), so both first check, in
the same script, that the slot's item *is* ``item_id`` and refuse otherwise without touching
anything: a verdict sent with one item's lease and another item's id would otherwise decide the
wrong item and consume the leased item's slot (which then could never be claimed again).
``VERDICT`` also refuses an unknown item and one whose tenant the reviewer is not granted.
"""

from __future__ import annotations

PARKED = "__parked__"
"""The consumer holding slots that are waiting for a (different) reviewer."""

_LEASE_LUA = r"""
local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The item id a slot entry points at, or nil when the entry is gone.
local function slot_item(stream, entry)
  local rows = redis.call('XRANGE', stream, entry, entry)
  if #rows == 0 then return nil end
  local fields = rows[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == 'item' then return fields[i + 1] end
  end
  return nil
end

-- Check the caller's lease on `entry`. Returns {state, expires_ms}:
--   'held'    the caller holds it and it is live (expires_ms = server time it ends)
--   'lost'    no such pending entry, or another consumer holds it
--   'expired' the caller held it but idle >= lease_ms: the slot is moved to `parked` (back to the
--             queue), the lease entry removed and `lease_expired` audited, as the sweep does.
local function check_lease(stream, group, reviewer, entry, lease_ms, parked, prefix, audit, ms)
  local p = redis.call('XPENDING', stream, group, entry, entry, 1)
  if #p == 0 or p[1][2] ~= reviewer then return {'lost', 0} end
  local now = server_ms()
  local idle = tonumber(p[1][3])
  local expires = now - idle + lease_ms
  if idle < lease_ms then return {'held', expires} end
  redis.call('XCLAIM', stream, group, parked, 0, entry, 'JUSTID')
  local item_id = slot_item(stream, entry)
  if item_id then
    redis.call('HDEL', prefix .. item_id .. ':leases', entry)
    redis.call('XADD', audit, '*', 'event', 'lease_expired', 'item', item_id, 'reviewer', reviewer,
      'entry', entry, 'ms', ms)
  end
  return {'expired', expires}
end
"""

ENQUEUE = r"""
-- KEYS: item, open, claim_by, decide_by, audit, stream, tenant_open
-- ARGV: item_id, now_ms, k, claim_by_ms, decide_by_ms, then field/value pairs for the item hash
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local k = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'status', 'open', 'k', k, 'nverdicts', 0,
  'created_ms', ARGV[2], 'claim_by_ms', ARGV[4], 'decide_by_ms', ARGV[5])
for i = 6, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
for s = 1, k do
  redis.call('XADD', KEYS[6], '*', 'item', ARGV[1], 'slot', s)
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[7], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1])
redis.call('XADD', KEYS[5], '*', 'event', 'enqueue', 'item', ARGV[1], 'ms', ARGV[2])
return 1
"""

CLAIM = r"""
-- KEYS: stream p1, stream p2, stream p3, audit, claim_by
-- ARGV: group, reviewer, now_ms, count, scan_limit, item_prefix, parked, n_tenants, tenants...,
--       item ids... (none: any item; else only slots of these items are taken)
-- returns {taken {{priority, entry, item}...}, gone, server_ms}: each lease ends at server_ms + lease
local group, reviewer, now = ARGV[1], ARGV[2], ARGV[3]
local want, scan, prefix, parked = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], ARGV[7]
local last_tenant = 8 + tonumber(ARGV[8])
local any_tenant, tenants = false, {}
for i = 9, last_tenant do
  if ARGV[i] == '*' then any_tenant = true end
  tenants[ARGV[i]] = true
end
local only = nil
if #ARGV > last_tenant then
  only = {}
  for i = last_tenant + 1, #ARGV do only[ARGV[i]] = true end
end
local taken, gone = {}, 0

local function item_of(fields)
  for i = 1, #fields, 2 do
    if fields[i] == 'item' then return fields[i + 1] end
  end
  return nil
end

-- 'take' | 'skip' | 'gone'
local function judge(stream, entry, item_id)
  local ik = prefix .. item_id
  local st = redis.call('HMGET', ik, 'status', 'tenant')
  if not st[1] or st[1] ~= 'open' then
    redis.call('XACK', stream, group, entry)
    redis.call('XDEL', stream, entry)
    return 'gone'
  end
  if not any_tenant and not tenants[st[2] or ''] then return 'skip' end
  if only and not only[item_id] then return 'skip' end
  if redis.call('HEXISTS', ik .. ':verdicts', reviewer) == 1 then return 'skip' end
  local holders = redis.call('HVALS', ik .. ':leases')
  for _, h in ipairs(holders) do
    if h == reviewer then return 'skip' end
  end
  return 'take'
end

local function take(stream, p, entry, item_id)
  local ik = prefix .. item_id
  redis.call('HSET', ik .. ':leases', entry, reviewer)
  redis.call('ZREM', KEYS[5], item_id)
  redis.call('HSETNX', ik, 'first_claim_ms', now)
  redis.call('XADD', KEYS[4], '*', 'event', 'claim', 'item', item_id, 'reviewer', reviewer,
    'entry', entry, 'ms', now)
  table.insert(taken, {p, entry, item_id})
end

for p = 1, 3 do
  if #taken >= want then break end
  local stream = KEYS[p]
  -- 1. parked slots first (returned leases, slots other reviewers could not take)
  local pend = redis.call('XPENDING', stream, group, '-', '+', scan, parked)
  for _, pe in ipairs(pend) do
    if #taken >= want then break end
    local entry = pe[1]
    local rows = redis.call('XRANGE', stream, entry, entry)
    if #rows == 0 then
      redis.call('XACK', stream, group, entry)
      gone = gone + 1
    else
      local item_id = item_of(rows[1][2])
      local verdict = judge(stream, entry, item_id)
      if verdict == 'take' then
        redis.call('XCLAIM', stream, group, reviewer, 0, entry, 'JUSTID')
        take(stream, p, entry, item_id)
      elseif verdict == 'gone' then
        gone = gone + 1
      end
    end
  end
  -- 2. new slots
  local reads = 0
  while #taken < want and reads < scan do
    reads = reads + 1
    local res = redis.call('XREADGROUP', 'GROUP', group, reviewer, 'COUNT', 1, 'STREAMS', stream, '>')
    if not res or not res[1] or #res[1][2] == 0 then break end
    local row = res[1][2][1]
    local entry = row[1]
    local item_id = item_of(row[2])
    local verdict = judge(stream, entry, item_id)
    if verdict == 'take' then
      take(stream, p, entry, item_id)
    elseif verdict == 'skip' then
      redis.call('XCLAIM', stream, group, parked, 0, entry, 'JUSTID')
    else
      gone = gone + 1
    end
  end
end
local t = redis.call('TIME')
return {taken, gone, tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)}
"""

HEARTBEAT = (
    _LEASE_LUA
    + r"""
-- KEYS: stream, audit; ARGV: group, reviewer, entry, lease_ms, parked, item_prefix, now_ms
-- returns {code, expires_ms}: 1 renewed (expires_ms = new end), -1 lost, -4 expired (returned)
local lease = check_lease(KEYS[1], ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6],
  KEYS[2], ARGV[7])
if lease[1] == 'lost' then return {-1, 0} end
if lease[1] == 'expired' then return {-4, lease[2]} end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return {1, server_ms() + tonumber(ARGV[4])}
"""
)

RELEASE = (
    _LEASE_LUA
    + r"""
-- KEYS: stream, leases, audit
-- ARGV: group, reviewer, entry, parked, item_id, now_ms, lease_ms, item_prefix
-- returns 1 released, 2 it had expired (returned to the queue all the same, audited as expiry), 0 lost,
-- -5 the lease is for another item than item_id (nothing changed)
local lease = check_lease(KEYS[1], ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[7]), ARGV[4], ARGV[8],
  KEYS[3], ARGV[6])
if lease[1] == 'lost' then return 0 end
if lease[1] == 'expired' then return 2 end
if slot_item(KEYS[1], ARGV[3]) ~= ARGV[5] then return -5 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[4], 0, ARGV[3], 'JUSTID')
redis.call('HDEL', KEYS[2], ARGV[3])
redis.call('XADD', KEYS[3], '*', 'event', 'release', 'item', ARGV[5], 'reviewer', ARGV[2],
  'entry', ARGV[3], 'ms', ARGV[6])
return 1
"""
)

VERDICT = (
    _LEASE_LUA
    + r"""
-- KEYS: stream, item, verdicts, leases, open, claim_by, decide_by, decided, audit
-- ARGV: group, reviewer, entry, item_id, verdict_json, now_ms, ttl_s, label, tenant_open_prefix,
--       lease_ms, parked, item_prefix, then the reviewer's granted tenants ('*' = any)
-- returns {code, n, k}: code 1 recorded, -1 lease lost, -2 item not open, -3 already judged,
-- -4 lease expired (n = the server time it expired, ms; the slot went back to the queue),
-- -5 the lease is for another item than item_id, -6 no such item, -7 the item's tenant is not
-- granted. Every refusal changes nothing (but -4, which returns the expired slot to the queue).
local st = redis.call('HMGET', KEYS[2], 'status', 'k', 'tenant')
if not st[1] then return {-6, 0, 0} end
local granted = false
for i = 13, #ARGV do
  if ARGV[i] == '*' or ARGV[i] == st[3] then granted = true end
end
if not granted then return {-7, 0, 0} end
local lease = check_lease(KEYS[1], ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[10]), ARGV[11], ARGV[12],
  KEYS[9], ARGV[6])
if lease[1] == 'lost' then return {-1, 0, 0} end
if lease[1] == 'expired' then return {-4, lease[2], 0} end
if slot_item(KEYS[1], ARGV[3]) ~= ARGV[4] then return {-5, 0, 0} end
if st[1] ~= 'open' then return {-2, 0, 0} end
local k = tonumber(st[2])
if redis.call('HSETNX', KEYS[3], ARGV[2], ARGV[5]) == 0 then return {-3, 0, k} end
local n = redis.call('HLEN', KEYS[3])
if n > k then
  redis.call('HDEL', KEYS[3], ARGV[2])
  return {-2, n - 1, k}
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
redis.call('HDEL', KEYS[4], ARGV[3])
redis.call('HSET', KEYS[2], 'nverdicts', n)
redis.call('XADD', KEYS[9], '*', 'event', 'verdict', 'item', ARGV[4], 'reviewer', ARGV[2],
  'label', ARGV[8], 'entry', ARGV[3], 'ms', ARGV[6])
if n == k then
  local ttl = tonumber(ARGV[7])
  redis.call('HSET', KEYS[2], 'status', 'decided', 'decided_ms', ARGV[6])
  redis.call('ZREM', KEYS[5], ARGV[4])
  redis.call('ZREM', ARGV[9] .. (st[3] or ''), ARGV[4])
  redis.call('ZREM', KEYS[6], ARGV[4])
  redis.call('ZREM', KEYS[7], ARGV[4])
  redis.call('ZADD', KEYS[8], ARGV[6], ARGV[4])
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('EXPIRE', KEYS[3], ttl)
  redis.call('DEL', KEYS[4])
  redis.call('XADD', KEYS[9], '*', 'event', 'decided', 'item', ARGV[4], 'ms', ARGV[6])
end
return {1, n, k}
"""
)

SWEEP = r"""
-- One XAUTOCLAIM page: slots idle longer than the lease move to the parked consumer.
-- KEYS: stream, audit; ARGV: group, lease_ms, cursor, page, item_prefix, parked, now_ms
-- returns {next_cursor, returned, deleted, scanned}
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[6], ARGV[2], ARGV[3], 'COUNT', ARGV[4], 'JUSTID')
local returned = 0
for _, entry in ipairs(r[2]) do
  local rows = redis.call('XRANGE', KEYS[1], entry, entry)
  if #rows > 0 then
    local fields = rows[1][2]
    local item_id = nil
    for i = 1, #fields, 2 do
      if fields[i] == 'item' then item_id = fields[i + 1] end
    end
    if item_id then
      local lk = ARGV[5] .. item_id .. ':leases'
      local who = redis.call('HGET', lk, entry)
      if who then
        redis.call('HDEL', lk, entry)
        redis.call('XADD', KEYS[2], '*', 'event', 'lease_expired', 'item', item_id, 'reviewer', who,
          'entry', entry, 'ms', ARGV[7])
        returned = returned + 1
      end
    end
  end
end
local deleted = r[3] or {}
for _, entry in ipairs(deleted) do
  redis.call('XADD', KEYS[2], '*', 'event', 'slot_deleted', 'entry', entry, 'ms', ARGV[7])
end
return {r[1], returned, #deleted, #r[2]}
"""
