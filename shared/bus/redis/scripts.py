"""The Lua scripts of the Redis bus: each touches the keys of one code (one slot on a cluster),
except ``TAKE``, which runs on one server only."""

from __future__ import annotations

__all__ = ["CLAIM", "GIVE_BACK", "NOBODY", "RELEASE", "RENEW_CLAIMS", "RENEW_LEASES", "TAKE"]

# A lease value no process ever writes: giving back "as" it returns a code only if it has no lease.
NOBODY = "\0nobody"

# KEYS: lease, claim[, pool]. ARGV: holder, code. When the lease is this holder's, or gone (it
# expired, or a cut-off take never set it): deletes lease and claim, adds the code to the pool
# when given the pool (one server; on a cluster the pool is in another slot), and returns the
# call SID of the claim it dropped, or "" when there was none. False when another holder has it.
GIVE_BACK = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return false end
local call = redis.call('GET', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2])
if KEYS[3] then redis.call('SADD', KEYS[3], ARGV[2]) end
return call or ''
"""

# One server only (it names lease keys it was not given). KEYS: pool. ARGV: lease key before and
# after the code, holder, ttl ms. The code popped and leased to the holder, or false when the
# pool is empty. Stale entries (leased already) are dropped on the way, a bounded number of them.
TAKE = """
for _ = 1, 64 do
  local code = redis.call('SPOP', KEYS[1])
  if not code then return false end
  if redis.call('SET', ARGV[1] .. code .. ARGV[2], ARGV[3], 'PX', ARGV[4], 'NX') then return code end
end
return redis.error_reply('too many stale pool entries')
"""

# KEYS: leases (one slot each on a cluster: one key per call there). ARGV: holder, ttl ms, and
# "1" to set it again if it is gone, for each key in turn. For each key: 1 extended; 2 set
# again; 0 another holder has it, or it is gone and not to be set again.
RENEW_LEASES = """
local results = {}
for i, key in ipairs(KEYS) do
  local holder, ttl = ARGV[3 * i - 2], ARGV[3 * i - 1]
  local current = redis.call('GET', key)
  if not current then
    if ARGV[3 * i] == '1' then
      redis.call('SET', key, holder, 'PX', ttl)
      results[i] = 2
    else
      results[i] = 0
    end
  elseif current ~= holder then
    results[i] = 0
  else
    redis.call('PEXPIRE', key, ttl)
    results[i] = 1
  end
end
return results
"""

# KEYS: lease and claim of each code in turn. ARGV: call SID, the game's lease value, ttl ms and
# "1" to set the claim again if it is gone, for each code in turn. For each: 1 extended; 2 set
# again; 0 the claim is gone or another call's; 3 the game is not the one claimed (it left, or
# its lease is not set again yet), and a claim of this call on it is dropped.
RENEW_CLAIMS = """
local results = {}
for i = 1, #KEYS / 2 do
  local lease, claim = KEYS[2 * i - 1], KEYS[2 * i]
  local call, game, ttl = ARGV[4 * i - 3], ARGV[4 * i - 2], ARGV[4 * i - 1]
  local current = redis.call('GET', claim)
  if redis.call('GET', lease) ~= game then
    if current == call then redis.call('DEL', claim) end
    results[i] = 3
  elseif not current then
    if ARGV[4 * i] == '1' then
      redis.call('SET', claim, call, 'PX', ttl)
      results[i] = 2
    else
      results[i] = 0
    end
  elseif current ~= call then
    results[i] = 0
  else
    redis.call('PEXPIRE', claim, ttl)
    results[i] = 1
  end
end
return results
"""

# KEYS: lease, claim. ARGV: call SID, ttl ms. -1 no live game, 0 another call has it, else the
# game's lease value: the claim follows that game, and lapses with it.
CLAIM = """
local game = redis.call('GET', KEYS[1])
if not game then return -1 end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return game
"""

# KEYS: claim. ARGV: call SID or "". The SID whose claim was dropped, or false.
RELEASE = """
local holder = redis.call('GET', KEYS[1])
if not holder then return false end
if ARGV[1] ~= '' and holder ~= ARGV[1] then return false end
redis.call('DEL', KEYS[1])
return holder
"""
