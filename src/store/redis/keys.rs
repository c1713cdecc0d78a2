//! Where each record lives in Redis. The braces are Redis Cluster hash tags: keys with the same
//! tag are in the same slot, so one script may change them together.
//!
//! - `{u:<user>}`: everything of one user that a once-only step touches together: the user's
//!   agents, each agent's pending requests, the decisions on their requests, the history index,
//!   devices. Accepting a request (checking the agent may ask and its pending limit), deciding
//!   it (and, for an enrollment, activating the agent), collecting its token, and revoking an
//!   agent (cancelling its pending requests) each run as one script on this slot.
//! - `{g}`: users, passkeys and invitations, so that redeeming an invitation (consume it, create
//!   the user, add the passkey) is one script. Registrations are rare; this slot is small.
//! - Everything else is one key per entry, spread over the cluster: each request as created
//!   (written once, never changed, and naming its user), the pointer from an agent id to its
//!   user (likewise), sessions, ceremonies, DPoP `jti`s, rate windows, the gateway's secrets.
//!   A request and an agent are found by id, without knowing their user: the key of the id is
//!   written first and counts only once the one script on the user's slot has accepted the
//!   request or added the agent (docs/protocol.md, "Storage").
//!
//! User names and ids never contain braces, so a tag always ends where it should.

use crate::domain::{ApprovalId, UserId};

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix`: lowercase letters, digits, `:`, `_` and `-` (no braces, which would
    /// change the hash tags).
    pub fn new(prefix: &str) -> Result<Self, String> {
        let valid = !prefix.is_empty()
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b":_-".contains(&b));
        if valid {
            Ok(Keys {
                prefix: prefix.to_owned(),
            })
        } else {
            Err(format!(
                "invalid Redis key prefix {prefix:?}: use a-z, 0-9, ':', '_' or '-'"
            ))
        }
    }

    // The `{g}` slot.

    /// Hash: user name to user record.
    pub fn users(&self) -> String {
        format!("{}:{{g}}:users", self.prefix)
    }

    /// Hash `user`, `expires_at`, `record`; expires.
    pub fn invitation(&self, code_sha256: &str) -> String {
        format!("{}:{{g}}:invitation:{code_sha256}", self.prefix)
    }

    /// Hash `user`, `record`.
    pub fn passkey(&self, credential_id: &str) -> String {
        format!("{}:{{g}}:passkey:{credential_id}", self.prefix)
    }

    /// Set of a user's credential ids.
    pub fn passkeys_of(&self, user: &UserId) -> String {
        format!("{}:{{g}}:passkeys:{user}", self.prefix)
    }

    // A user's slot.

    /// The start of every key in `user`'s slot.
    fn user_slot(&self, user: &UserId) -> String {
        format!("{}:{{u:{user}}}:", self.prefix)
    }

    /// Hash `record`, `status`.
    pub fn agent(&self, user: &UserId, agent: &str) -> String {
        format!("{}agent:{agent}", self.user_slot(user))
    }

    /// Set of the user's agent ids.
    pub fn agents_of(&self, user: &UserId) -> String {
        format!("{}agents", self.user_slot(user))
    }

    /// Sorted set of the agent's requests that are pending, by expiry. Deciding a request or
    /// revoking the agent removes them; expired ones go when the agent next asks.
    pub fn agent_pending(&self, user: &UserId, agent: &str) -> String {
        format!("{}agent-pending:{agent}", self.user_slot(user))
    }

    /// Hash, once a request is decided or cancelled: `status`, `state`, `decided_at`, and
    /// once its token is collected `delivered_at`.
    pub fn decision(&self, user: &UserId, id: &ApprovalId) -> String {
        format!("{}decision:{id}", self.user_slot(user))
    }

    /// Sorted set of the user's request ids by creation time.
    pub fn history(&self, user: &UserId) -> String {
        format!("{}history", self.user_slot(user))
    }

    /// Hash: device id to push subscription record.
    pub fn devices(&self, user: &UserId) -> String {
        format!("{}devices", self.user_slot(user))
    }

    /// Hash: push endpoint to device id.
    pub fn device_endpoints(&self, user: &UserId) -> String {
        format!("{}device-endpoints", self.user_slot(user))
    }

    // One key each.

    /// String: the user an agent belongs to.
    pub fn agent_owner(&self, agent: &str) -> String {
        format!("{}:agent-owner:{agent}", self.prefix)
    }

    /// Set of every agent id, for the operator's listing.
    pub fn all_agents(&self) -> String {
        format!("{}:agents", self.prefix)
    }

    /// String: a request as created ([`super::request`]).
    pub fn approval(&self, id: &ApprovalId) -> String {
        format!("{}:approval:{id}", self.prefix)
    }

    /// String: until when the request's agent was last known to wait (seconds).
    pub fn agent_waiting(&self, id: &ApprovalId) -> String {
        format!("{}:agent-waiting:{id}", self.prefix)
    }

    pub fn session(&self, id_sha256: &str) -> String {
        format!("{}:session:{id_sha256}", self.prefix)
    }

    pub fn ceremony(&self, id: &str) -> String {
        format!("{}:ceremony:{id}", self.prefix)
    }

    pub fn jti(&self, key: &str) -> String {
        format!("{}:jti:{key}", self.prefix)
    }

    pub fn rate_window(&self, key: &str, window_start: i64) -> String {
        format!("{}:rate:{key}:{window_start}", self.prefix)
    }

    pub fn secret(&self, name: &str) -> String {
        format!("{}:secret:{name}", self.prefix)
    }

    /// The pub/sub channel on which instances tell each other that a request changed.
    pub fn events_channel(&self) -> String {
        format!("{}:events", self.prefix)
    }
}
