//! The Lua scripts that make each once-only step one atomic operation: Redis runs a script
//! without interleaving any other command, and every key a script touches is in the slot of its
//! first key (see [`super::keys`]), so the scripts also run on Redis Cluster.
//!
//! Every key a script touches is in its `KEYS` (Redis runs scripts that build key names
//! themselves only on a single server, and cluster proxies and other Redis-compatible servers
//! route by the declared keys). A step whose keys depend on what is stored (revoking an agent
//! cancels each of its pending requests; an enrollment looks at each of the user's agents)
//! reads them first and names them; the script checks that they are still exactly those and
//! otherwise changes nothing and answers `changed`, and the caller reads and runs it again
//! (optimistic, like `WATCH`). Every script answers an array whose first element names the
//! outcome; records come back as the flat field list of `HGETALL`.
//!
//! Times are the gateway's (`now` is an argument), never Redis's clock, so that a request's
//! status means the same in both stores. Redis expiry (`EXPIREAT`) only removes entries well
//! after the gateway stops accepting them.

use std::sync::LazyLock;

use redis::Script;

/// Accepts a request already written as created (see `RedisStore::create_approval`) if its
/// agent may ask and has fewer than the limit pending: enters it in the user's history and its
/// agent's pending set, which is what makes it exist. The agent's expired entries leave that
/// set here.
/// KEYS: the user's history, the agent, the agent's pending set. ARGV: now, max pending, id,
/// kind, created_at, expires_at.
pub static ACCEPT_REQUEST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local now, max_pending, id, kind = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local status = redis.call('HGET', KEYS[2], 'status')
if not status then return {'agent_not_found'} end
local may_ask = 'active'
if kind == 'enrollment' then may_ask = 'pending' end
if status ~= may_ask then return {'agent_inactive', status} end
if redis.call('ZSCORE', KEYS[1], id) then return {'exists'} end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if redis.call('ZCARD', KEYS[3]) >= max_pending then return {'too_many_pending'} end
redis.call('ZADD', KEYS[1], ARGV[5], id)
redis.call('ZADD', KEYS[3], ARGV[6], id)
return {'ok'}
"#,
    )
});

/// The decision hash of an accepted request, or `unknown` for a request its user's history
/// does not hold (written as created, never accepted).
/// KEYS: the user's history, the request's decision. ARGV: id.
pub static READ_DECISION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return {'unknown'} end
local all = redis.call('HGETALL', KEYS[2])
table.insert(all, 1, 'ok')
return all
"#,
    )
});

/// Records a decision on an accepted request pending at `now`, that is in its agent's pending
/// set and not yet expired; for an enrollment, sets its agent active (approved, if still
/// pending) or revoked (denied) in the same step. Kind and agent come from the request as
/// created, which never changes. Answers the decision hash.
/// KEYS: the request's decision, the user's history, the agent's pending set, the agent.
/// ARGV: now, id, kind, status (`approved`/`denied`), state, decided_at.
pub static DECIDE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local now, id, kind, decision = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
if not redis.call('ZSCORE', KEYS[2], id) then return {'not_found'} end
local expires_at = redis.call('ZSCORE', KEYS[3], id)
if not expires_at or now >= tonumber(expires_at) or redis.call('EXISTS', KEYS[1]) == 1 then
  local all = redis.call('HGETALL', KEYS[1])
  table.insert(all, 1, 'not_pending')
  return all
end
if kind == 'enrollment' then
  local agent_status = redis.call('HGET', KEYS[4], 'status')
  if not agent_status then return {'agent_not_found'} end
  -- Only a still pending agent becomes active: an operator's suspension or revocation in the
  -- meantime stands.
  if decision == 'denied' then
    redis.call('HSET', KEYS[4], 'status', 'revoked')
  elseif agent_status == 'pending' then
    redis.call('HSET', KEYS[4], 'status', 'active')
  end
end
redis.call('HSET', KEYS[1], 'status', decision, 'state', ARGV[5], 'decided_at', ARGV[6])
redis.call('ZREM', KEYS[3], id)
local all = redis.call('HGETALL', KEYS[1])
table.insert(all, 1, 'ok')
return all
"#,
    )
});

/// Cancels a request pending at `now` (in its agent's pending set, not expired, undecided):
/// records the cancelled state and takes it out of the pending set in the same step. Answers
/// the decision hash.
/// KEYS: the request's decision, its agent's pending set. ARGV: now, id, the cancelled state.
pub static CANCEL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local now, id = tonumber(ARGV[1]), ARGV[2]
local expires_at = redis.call('ZSCORE', KEYS[2], id)
if not expires_at or now >= tonumber(expires_at) or redis.call('EXISTS', KEYS[1]) == 1 then
  local all = redis.call('HGETALL', KEYS[1])
  table.insert(all, 1, 'not_pending')
  return all
end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'state', ARGV[3])
redis.call('ZREM', KEYS[2], id)
local all = redis.call('HGETALL', KEYS[1])
table.insert(all, 1, 'ok')
return all
"#,
    )
});

/// Marks an approved request's token delivered, once, if it is collected in time by an agent
/// that is active. Answers the decision hash (empty while the request is undecided).
/// KEYS: the request's decision, its agent, the user's history. ARGV: now, seconds an approval
/// may wait for collection, id.
pub static COLLECT_TOKEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local now = tonumber(ARGV[1])
if not redis.call('ZSCORE', KEYS[3], ARGV[3]) then return {'not_found'} end
local f = redis.call('HMGET', KEYS[1], 'status', 'decided_at', 'delivered_at')
local outcome = 'unchanged'
if f[1] == 'approved' and not f[3] and now < tonumber(f[2]) + tonumber(ARGV[2]) then
  local agent_status = redis.call('HGET', KEYS[2], 'status') or 'revoked'
  if agent_status ~= 'active' then return {'agent_inactive', agent_status} end
  redis.call('HSET', KEYS[1], 'delivered_at', ARGV[1])
  outcome = 'deliver'
end
local all = redis.call('HGETALL', KEYS[1])
table.insert(all, 1, outcome)
return all
"#,
    )
});

/// Sets an agent's status; revoking cancels its requests pending at `now`, which the caller
/// read first and names: if the agent's live pending requests are not exactly those, nothing
/// changes and the answer is `changed` (read again, run again). A revoked agent stays revoked.
/// KEYS: agent, its pending set, the decision of each request named. ARGV: status, now, the
/// cancelled state, then the ids of the requests named, in the pending set's order.
pub static SET_AGENT_STATUS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local status, now = ARGV[1], ARGV[2]
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return {'not_found'} end
if current == 'revoked' and status ~= 'revoked' then return {'revoked'} end
if status == 'revoked' then
  local live = redis.call('ZRANGE', KEYS[2], '(' .. now, '+inf', 'BYSCORE')
  if #live ~= #KEYS - 2 then return {'changed'} end
  for i, id in ipairs(live) do
    if id ~= ARGV[3 + i] then return {'changed'} end
  end
  for i = 3, #KEYS do
    if redis.call('EXISTS', KEYS[i]) == 0 then
      redis.call('HSET', KEYS[i], 'status', 'cancelled', 'state', ARGV[3])
    end
  end
  redis.call('DEL', KEYS[2])
end
redis.call('HSET', KEYS[1], 'status', status)
local all = redis.call('HGETALL', KEYS[1])
table.insert(all, 1, 'ok')
return all
"#,
    )
});

/// Requests pending at `now` in the agents' pending sets given: the ids, or with `count` only
/// how many. A read: the caller lists the agents first.
/// KEYS: the pending sets. ARGV: now, `ids` or `count`.
pub static PENDING_REQUESTS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local live = '(' .. ARGV[1]
local ids, count = {}, 0
for i = 1, #KEYS do
  if ARGV[2] == 'count' then
    count = count + redis.call('ZCOUNT', KEYS[i], live, '+inf')
  else
    for _, id in ipairs(redis.call('ZRANGE', KEYS[i], live, '+inf', 'BYSCORE')) do
      table.insert(ids, id)
    end
  end
end
if ARGV[2] == 'count' then return {'ok', tostring(count)} end
table.insert(ids, 1, 'ok')
return ids
"#,
    )
});

/// Adds an agent record; its id must be new in this user's slot.
/// KEYS: agent, the user's agent set. ARGV: agent id, record, status.
pub static ADD_AGENT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists'} end
redis.call('HSET', KEYS[1], 'record', ARGV[2], 'status', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[1])
return {'ok'}
"#,
    )
});

/// Adds an agent that asked to enroll, unless an agent with its id exists or the user has
/// `max` agents whose enrollment is pending; deletes the user's agents whose enrollment expired
/// undecided. The caller read the user's agents first and names them all: if the set holds
/// others, nothing changes and the answer is `changed` (read again, run again).
/// KEYS: agent, the user's agent set, then each agent named. ARGV: agent id, record, now, max,
/// when the enrollment expires, then the ids of the agents named.
pub static ADD_ENROLLING_AGENT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local id, now, max = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4])
local named = {}
for i = 6, #ARGV do named[ARGV[i]] = true end
local members = redis.call('SMEMBERS', KEYS[2])
if #members ~= #KEYS - 2 then return {'changed'} end
for _, member in ipairs(members) do
  if not named[member] then return {'changed'} end
end
local function expired(i)
  local f = redis.call('HMGET', KEYS[i], 'status', 'enrolling_until')
  return f[1] == 'pending' and f[2] and now >= tonumber(f[2])
end
if redis.call('EXISTS', KEYS[1]) == 1 and not expired(1) then return {'exists'} end
local enrolling = 0
for i = 3, #KEYS do
  if expired(i) then
    redis.call('DEL', KEYS[i])
    redis.call('SREM', KEYS[2], ARGV[3 + i])
  elseif redis.call('HGET', KEYS[i], 'status') == 'pending' then
    enrolling = enrolling + 1
  end
end
if enrolling >= max then return {'too_many'} end
redis.call('HSET', KEYS[1], 'record', ARGV[2], 'status', 'pending', 'enrolling_until', ARGV[5])
redis.call('SADD', KEYS[2], id)
return {'ok'}
"#,
    )
});

/// Replaces a user's record if the user exists.
/// KEYS: users. ARGV: user id, record.
pub static REPLACE_USER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return {'not_found'} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return {'ok'}
"#,
    )
});

/// Consumes an invitation live at `now` and, in the same step, creates the user with the
/// passkey. Anything refused leaves the invitation unused.
/// KEYS: invitation, users, passkey, the user's passkey set. ARGV: now, user id, user record,
/// credential id, passkey record.
pub static REDEEM_INVITATION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local now, user = tonumber(ARGV[1]), ARGV[2]
local invitation = redis.call('HMGET', KEYS[1], 'user', 'expires_at')
if not invitation[2] or now >= tonumber(invitation[2]) then return {'invalid'} end
if invitation[1] ~= '' and invitation[1] ~= user then return {'invalid'} end
-- A setup code works only while there is no user at all.
if invitation[1] == '' and redis.call('HLEN', KEYS[2]) > 0 then return {'invalid'} end
-- An invitation creates a user; it never adds a passkey to an existing one.
if redis.call('HEXISTS', KEYS[2], user) == 1 then return {'user_exists'} end
if redis.call('EXISTS', KEYS[3]) == 1 then return {'passkey_exists'} end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[2], user, ARGV[3])
redis.call('HSET', KEYS[3], 'user', user, 'record', ARGV[5])
redis.call('SADD', KEYS[4], ARGV[4])
return {'ok'}
"#,
    )
});

/// Adds a passkey to an existing user; a credential id already registered is refused.
/// KEYS: users, passkey, the user's passkey set. ARGV: user id, credential id, record.
pub static ADD_PASSKEY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return {'user_not_found'} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'exists'} end
redis.call('HSET', KEYS[2], 'user', ARGV[1], 'record', ARGV[3])
redis.call('SADD', KEYS[3], ARGV[2])
return {'ok'}
"#,
    )
});

/// Replaces a passkey record if the credential is stored for the same user.
/// KEYS: passkey. ARGV: user id, record.
pub static UPDATE_PASSKEY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HGET', KEYS[1], 'user') ~= ARGV[1] then return {'not_found'} end
redis.call('HSET', KEYS[1], 'record', ARGV[2])
return {'ok'}
"#,
    )
});

/// Deletes a passkey if the credential is stored for that user.
/// KEYS: passkey, the user's passkey set. ARGV: user id, credential id.
pub static DELETE_PASSKEY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HGET', KEYS[1], 'user') ~= ARGV[1] then return {'not_found'} end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
return {'ok'}
"#,
    )
});

/// Adds a device, replacing the user's device with the same push endpoint.
/// KEYS: devices, device endpoints. ARGV: id, endpoint, record.
pub static ADD_DEVICE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local old = redis.call('HGET', KEYS[2], ARGV[2])
if old then redis.call('HDEL', KEYS[1], old) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
return {'ok'}
"#,
    )
});

/// Removes a user's device.
/// KEYS: devices, device endpoints. ARGV: id, endpoint.
pub static DELETE_DEVICE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return {'not_found'} end
if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] then redis.call('HDEL', KEYS[2], ARGV[2]) end
return {'ok'}
"#,
    )
});

/// Stores an entry that expires: fields `value` and `expires_at`, removed by Redis at
/// `cleanup_at`. KEYS: entry. ARGV: value, expires_at, cleanup_at.
pub static PUT_EXPIRING: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'value', ARGV[1], 'expires_at', ARGV[2])
redis.call('EXPIREAT', KEYS[1], ARGV[3])
return {'ok'}
"#,
    )
});

/// Stores an invitation (replacing one with the same code): like [`PUT_EXPIRING`] with the
/// user it is for, which [`REDEEM_INVITATION`] checks.
/// KEYS: invitation. ARGV: record, expires_at, cleanup_at, user (empty for the setup code).
pub static PUT_INVITATION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'record', ARGV[1], 'expires_at', ARGV[2], 'user', ARGV[4])
redis.call('EXPIREAT', KEYS[1], ARGV[3])
return {'ok'}
"#,
    )
});

/// Removes and returns an entry stored by [`PUT_EXPIRING`] if live at `now`; of concurrent
/// takers one gets it. KEYS: entry. ARGV: now.
pub static TAKE_EXPIRING: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local f = redis.call('HMGET', KEYS[1], 'value', 'expires_at')
redis.call('DEL', KEYS[1])
if f[1] and tonumber(ARGV[1]) < tonumber(f[2]) then return {'ok', f[1]} end
return {'none'}
"#,
    )
});

/// Remembers a `jti` until `expires_at` unless it is remembered and live at `now`.
/// KEYS: jti. ARGV: now, expires_at, cleanup_at.
pub static REMEMBER_JTI: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local until_at = redis.call('GET', KEYS[1])
if until_at and tonumber(ARGV[1]) < tonumber(until_at) then return {'replay'} end
redis.call('SET', KEYS[1], ARGV[2], 'EXAT', ARGV[3])
return {'new'}
"#,
    )
});

/// Raises the time a request's agent waits until to `until`, when that is at least `step` past
/// the recorded one; Redis forgets it at `cleanup_at`.
/// KEYS: the request's agent-waiting time. ARGV: until, step, cleanup_at.
pub static NOTE_AGENT_WAITING: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local recorded = redis.call('GET', KEYS[1])
if recorded and tonumber(ARGV[1]) < tonumber(recorded) + tonumber(ARGV[2]) then
  return {'unchanged'}
end
redis.call('SET', KEYS[1], ARGV[1], 'EXAT', ARGV[3])
return {'ok'}
"#,
    )
});

/// Counts one event in a window that Redis forgets at `cleanup_at`.
/// KEYS: window. ARGV: cleanup_at.
pub static COUNT_IN_WINDOW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIREAT', KEYS[1], ARGV[1]) end
return {'ok', tostring(count)}
"#,
    )
});

#[cfg(test)]
mod tests {
    /// Every key a script touches is declared: each call names its key as `KEYS[...]`, never
    /// a name the script builds or reads.
    #[test]
    fn every_key_is_declared() {
        let call = ["redis", "call("].join(".");
        let source = include_str!("scripts.rs");
        let calls: Vec<&str> = source.split(call.as_str()).skip(1).collect();
        assert!(calls.len() > 40, "{} calls found", calls.len());
        for call in calls {
            let key = call.split_once(", ").map(|(_, key)| key);
            assert!(
                key.is_some_and(|key| key.starts_with("KEYS[")),
                "a key not in KEYS: {}",
                call.lines().next().unwrap_or_default()
            );
        }
    }
}
