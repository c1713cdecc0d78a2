//! The Redis store: every gateway instance keeps nothing of its own, so any number of them
//! behind a load balancer share users, passkeys, agents and requests. Works with one Redis
//! server or Redis Cluster.
//!
//! Each once-only operation is one Lua script on one slot ([`scripts`], [`keys`]); adding a
//! request or an agent, which are found by id, first writes the key of the id, which counts
//! only once that script has run ([`keys`]). Records are
//! JSON; what a script decides on is kept in fields of its own, so scripts never parse or
//! rewrite records. An agent's status is a field beside its record. A request is written once,
//! as created ([`request`]); whether it is pending is its entry in its agent's pending set,
//! scored by expiry, and its decision, delivery time included, is a hash of its own. Reading a
//! request puts them back together.
//!
//! Every Redis failure is [`StoreError::Unavailable`], on which the gateway fails closed. The
//! connection reconnects by itself, so the gateway recovers when Redis comes back.
//!
//! The once-only steps (taking a ceremony, deciding, delivering a token, remembering a DPoP
//! `jti`, redeeming an invitation) count only once the replicas asked for have them
//! ([`ReplicaWait`], sent after the script on the same connection): a failover then cannot
//! forget one and let it happen twice.

mod connection;
pub mod keys;
mod relay;
mod request;
mod scripts;

use std::collections::HashMap;
use std::fmt::Display;

use async_trait::async_trait;
use futures_util::future::try_join_all;
use handsign_verify::ReplicaWait;
use handsign_verify::replicas::WaitFailure;
use redis::AsyncCommands as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use connection::{Connection, RedisTarget};
use keys::Keys;
pub use relay::shared_events;

use super::{ApprovalFilter, Collection, Decision, Store, StoreError};
use crate::domain::{
    AGENT_WAITING_STEP_SECS, AgentRecord, AgentStatus, ApprovalId, ApprovalKind, ApprovalRecord,
    ApprovalState, ApprovalStatus, COLLECT_WITHIN_SECS, InvitationRecord, PasskeyRecord,
    PushSubscriptionRecord, SessionRecord, UserId, UserRecord,
};

/// The key prefix of `handsign serve --redis-url`.
pub const DEFAULT_PREFIX: &str = "handsign";

/// How long after an entry stops being accepted Redis deletes it: leaves room for a Redis clock
/// that runs ahead of the gateway's.
const CLEANUP_MARGIN_SECS: i64 = 300;

/// How many times [`RedisStore::run_optimistic`] reads and runs a step before giving up.
const OPTIMISTIC_ATTEMPTS: usize = 8;

/// The gateway's storage in Redis. Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct RedisStore {
    connection: Connection,
    keys: Keys,
    target: RedisTarget,
    replicas: ReplicaWait,
}

impl RedisStore {
    /// Connects to `target`, with keys under `prefix` (several gateways, or test runs, may share
    /// one Redis under different prefixes).
    pub async fn connect(target: &RedisTarget, prefix: &str) -> Result<Self, StoreError> {
        let keys = Keys::new(prefix).map_err(StoreError::Unavailable)?;
        let connection = target.connect().await.map_err(|e| {
            StoreError::Unavailable(format!("cannot reach Redis at {}: {e}", target.describe()))
        })?;
        Ok(RedisStore {
            connection,
            keys,
            target: target.clone(),
            replicas: ReplicaWait::NONE,
        })
    }

    /// Makes every once-only step wait as `wait` says. Checks the server (every primary of a
    /// cluster) at once: `Err` if it cannot do what `wait` asks; logs a warning if it has
    /// replicas that `wait` does not count, or fewer than it needs.
    pub async fn wait_for_replicas(mut self, wait: ReplicaWait) -> Result<Self, StoreError> {
        let mut connection = self.connection.clone();
        let warnings = wait
            .check_server(&mut connection)
            .await
            .map_err(|e| StoreError::Unavailable(format!("redis: {e}")))?;
        for warning in warnings {
            tracing::warn!("{warning}");
        }
        self.replicas = wait;
        Ok(self)
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The secret stored under `name`, created with `create` by whichever instance asks first
    /// (`SET NX`): every instance signs with the same key.
    pub async fn load_or_create_secret(
        &self,
        name: &str,
        create: impl FnOnce() -> anyhow::Result<Vec<u8>>,
    ) -> Result<Vec<u8>, StoreError> {
        let key = self.keys.secret(name);
        let mut connection = self.connection.clone();
        let stored: Option<Vec<u8>> = connection.get(&key).await.map_err(unavailable)?;
        if let Some(stored) = stored {
            return Ok(stored);
        }
        let created = create().map_err(unavailable)?;
        let _: bool = connection
            .set_nx(&key, &created)
            .await
            .map_err(unavailable)?;
        let stored: Option<Vec<u8>> = connection.get(&key).await.map_err(unavailable)?;
        stored.ok_or_else(|| StoreError::Unavailable(format!("redis: secret {name} vanished")))
    }

    async fn query<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, StoreError> {
        let mut connection = self.connection.clone();
        command
            .query_async(&mut connection)
            .await
            .map_err(unavailable)
    }

    /// Runs a script; its answer is the outcome and the rest of the array.
    async fn run(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<(String, Vec<Vec<u8>>), StoreError> {
        let mut connection = self.connection.clone();
        let answer: Vec<Vec<u8>> = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)?;
        script_outcome(answer)
    }

    /// Runs a once-only script: like [`run`](Self::run), and its answer counts only once the
    /// replicas have what it wrote (the wait follows it in one pipeline, on one connection).
    /// Fewer replicas in time is [`StoreError::Unavailable`]; what the script wrote stays on
    /// the primary.
    async fn run_once(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<(String, Vec<Vec<u8>>), StoreError> {
        let mut connection = self.connection.clone();
        let mut pipeline = redis::pipe();
        pipeline.invoke_script(invocation);
        let replies = match self.replicas.send(&pipeline, &mut connection).await {
            // A server that has not seen the script yet (a new or promoted one) ran nothing.
            Err(WaitFailure::Redis(e))
                if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                invocation
                    .load_async(&mut connection)
                    .await
                    .map_err(unavailable)?;
                self.replicas.send(&pipeline, &mut connection).await
            }
            sent => sent,
        }
        .map_err(unavailable)?;
        let answer = replies
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Unavailable("redis: no script answer".into()))?;
        script_outcome(redis::from_redis_value(answer).map_err(unavailable)?)
    }

    /// Runs a script whose keys depend on what is stored: `prepare` reads them and names them,
    /// and the script answers `changed` without changing anything if they are no longer the
    /// ones to touch. Read and run again until it is not `changed`, a bounded number of times
    /// (only other writes to the same few keys in between make it run again).
    async fn run_optimistic<'a, F, Fut>(
        &self,
        prepare: F,
    ) -> Result<(String, Vec<Vec<u8>>), StoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<redis::ScriptInvocation<'a>, StoreError>>,
    {
        for _ in 0..OPTIMISTIC_ATTEMPTS {
            let answer = self.run(&prepare().await?).await?;
            if answer.0 != "changed" {
                return Ok(answer);
            }
        }
        Err(StoreError::Unavailable(format!(
            "redis: what a step reads kept changing before it ran ({OPTIMISTIC_ATTEMPTS} attempts)"
        )))
    }

    /// Claims `pointer`, the key of an id in the id's own slot, with `value`, which names the
    /// id's user: `SET NX`, or a claim an earlier attempt left with the same value is taken over;
    /// any other value is `AlreadyExists(what)`. A claim is nothing by itself: the record
    /// exists once one script in its owner's slot has written it and every index of it (see
    /// docs/protocol.md, "Storage").
    async fn claim(
        &self,
        pointer: &str,
        value: &str,
        what: &'static str,
    ) -> Result<(), StoreError> {
        let claimed: Option<String> = self
            .query(redis::cmd("SET").arg(pointer).arg(value).arg("NX"))
            .await?;
        if claimed.is_some() {
            return Ok(());
        }
        let held: Option<String> = self.query(redis::cmd("GET").arg(pointer)).await?;
        if held.as_deref() == Some(value) {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists(what))
        }
    }

    /// Claims an agent id for its user (written once, never changed) and enters it in the
    /// operator's list of every agent, before the agent is written: both name an agent that
    /// exists only once the script on its user's slot has written it.
    async fn claim_agent_id(&self, agent: &AgentRecord) -> Result<(), StoreError> {
        self.claim(
            &self.keys.agent_owner(&agent.id),
            agent.user.as_str(),
            "agent",
        )
        .await?;
        let _: i64 = self
            .query(
                redis::cmd("SADD")
                    .arg(self.keys.all_agents())
                    .arg(&agent.id),
            )
            .await?;
        Ok(())
    }

    /// The agents of `user`, in no order.
    async fn agents_of(&self, user: &UserId) -> Result<Vec<AgentRecord>, StoreError> {
        let ids: Vec<String> = self
            .query(redis::cmd("SMEMBERS").arg(self.keys.agents_of(user)))
            .await?;
        Ok(try_join_all(ids.iter().map(|id| self.agent_in(user, id)))
            .await?
            .into_iter()
            .flatten()
            .collect())
    }

    async fn owner(&self, pointer: String) -> Result<Option<UserId>, StoreError> {
        let owner: Option<String> = self.query(redis::cmd("GET").arg(pointer)).await?;
        owner
            .map(|name| UserId::parse(&name).map_err(unavailable))
            .transpose()
    }

    async fn fields(&self, key: String) -> Result<Fields, StoreError> {
        let map: HashMap<String, Vec<u8>> = self.query(redis::cmd("HGETALL").arg(key)).await?;
        Ok(Fields(map))
    }

    /// Request `id` as created, without its decision.
    async fn created(&self, id: &ApprovalId) -> Result<Option<ApprovalRecord>, StoreError> {
        let json: Option<String> = self
            .query(redis::cmd("GET").arg(self.keys.approval(id)))
            .await?;
        json.map(|json| request::from_json(id, &json)).transpose()
    }

    /// Request `id` as created; `NotFound` for an unknown id.
    async fn existing(&self, id: &ApprovalId) -> Result<ApprovalRecord, StoreError> {
        self.created(id)
            .await?
            .ok_or(StoreError::NotFound("approval"))
    }

    async fn agent_in(&self, user: &UserId, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        let fields = self.fields(self.keys.agent(user, id)).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        fields.agent().map(Some)
    }

    async fn get_expiring(&self, key: String, now: i64) -> Result<Option<Vec<u8>>, StoreError> {
        let (value, expires_at): (Option<Vec<u8>>, Option<i64>) = self
            .query(redis::cmd("HMGET").arg(key).arg("value").arg("expires_at"))
            .await?;
        Ok(match (value, expires_at) {
            (Some(value), Some(expires_at)) if now < expires_at => Some(value),
            _ => None,
        })
    }

    async fn put_expiring(
        &self,
        key: String,
        value: &[u8],
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.run(
            scripts::PUT_EXPIRING
                .key(key)
                .arg(value)
                .arg(expires_at)
                .arg(expires_at.saturating_add(CLEANUP_MARGIN_SECS)),
        )
        .await?;
        Ok(())
    }

    /// The requests `ids` of `user` that exist, in the given order.
    async fn approvals_by_id(
        &self,
        user: &UserId,
        ids: Vec<Vec<u8>>,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        let records = try_join_all(ids.iter().map(|id| async move {
            let id = std::str::from_utf8(id).map_err(unavailable)?;
            let id = ApprovalId::parse(id).map_err(unavailable)?;
            self.approval(&id).await
        }))
        .await?;
        Ok(records
            .into_iter()
            .flatten()
            .filter(|approval| approval.user == *user)
            .collect())
    }

    /// The ids of the requests of `user` pending at `now` (`ids`), or how many (`count`).
    async fn pending_requests(
        &self,
        user: &UserId,
        now: i64,
        answer: &str,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let agents: Vec<String> = self
            .query(redis::cmd("SMEMBERS").arg(self.keys.agents_of(user)))
            .await?;
        let mut invocation = scripts::PENDING_REQUESTS.prepare_invoke();
        for agent in &agents {
            invocation.key(self.keys.agent_pending(user, agent));
        }
        let (outcome, rest) = self.run(invocation.arg(now).arg(answer)).await?;
        match outcome.as_str() {
            "ok" => Ok(rest),
            other => Err(unexpected(other)),
        }
    }
}

/// A script's answer: the outcome and the rest of the array.
fn script_outcome(mut answer: Vec<Vec<u8>>) -> Result<(String, Vec<Vec<u8>>), StoreError> {
    if answer.is_empty() {
        return Err(StoreError::Unavailable("redis: empty script answer".into()));
    }
    let outcome = String::from_utf8(answer.remove(0)).map_err(unavailable)?;
    Ok((outcome, answer))
}

/// A record's hash fields.
struct Fields(HashMap<String, Vec<u8>>);

impl Fields {
    /// From a script's answer after the outcome: `HGETALL`'s flat field/value list.
    fn from_flat(flat: Vec<Vec<u8>>) -> Result<Self, StoreError> {
        let mut map = HashMap::new();
        let mut items = flat.into_iter();
        while let (Some(name), Some(value)) = (items.next(), items.next()) {
            map.insert(String::from_utf8(name).map_err(unavailable)?, value);
        }
        Ok(Fields(map))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn text(&self, name: &str) -> Result<Option<&str>, StoreError> {
        self.0
            .get(name)
            .map(|bytes| std::str::from_utf8(bytes).map_err(unavailable))
            .transpose()
    }

    fn required(&self, name: &str) -> Result<&str, StoreError> {
        self.text(name)?
            .ok_or_else(|| StoreError::Unavailable(format!("redis: record without {name}")))
    }

    fn number(&self, name: &str) -> Result<Option<i64>, StoreError> {
        self.text(name)?
            .map(|text| text.parse().map_err(unavailable))
            .transpose()
    }

    /// `approval` as created, with the decision (or cancellation) and delivery recorded in
    /// these fields of its decision hash, if any.
    fn decided(&self, mut approval: ApprovalRecord) -> Result<ApprovalRecord, StoreError> {
        if let Some(state) = self.text("state")? {
            approval.state = from_json(state)?;
        }
        if let ApprovalState::Approved {
            token_delivered_at, ..
        } = &mut approval.state
        {
            *token_delivered_at = self.number("delivered_at")?;
        }
        Ok(approval)
    }

    fn agent(&self) -> Result<AgentRecord, StoreError> {
        let mut agent: AgentRecord = from_json(self.required("record")?)?;
        agent.status = parse_agent_status(self.required("status")?)?;
        Ok(agent)
    }
}

fn parse_agent_status(text: &str) -> Result<AgentStatus, StoreError> {
    from_json(&format!("\"{text}\""))
}

fn kind_name(kind: ApprovalKind) -> &'static str {
    match kind {
        ApprovalKind::Action => "action",
        ApprovalKind::Enrollment => "enrollment",
    }
}

fn unavailable(error: impl Display) -> StoreError {
    StoreError::Unavailable(format!("redis: {error}"))
}

fn to_json(record: &impl Serialize) -> Result<String, StoreError> {
    serde_json::to_string(record).map_err(unavailable)
}

fn from_json<T: DeserializeOwned>(json: &str) -> Result<T, StoreError> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::Unavailable(format!("redis: unreadable record: {e}")))
}

/// An outcome no script gives.
fn unexpected(outcome: &str) -> StoreError {
    StoreError::Unavailable(format!("redis: unexpected script outcome {outcome:?}"))
}

#[async_trait]
impl Store for RedisStore {
    async fn count_users(&self) -> Result<usize, StoreError> {
        self.query(redis::cmd("HLEN").arg(self.keys.users())).await
    }

    async fn user(&self, id: &UserId) -> Result<Option<UserRecord>, StoreError> {
        let json: Option<String> = self
            .query(redis::cmd("HGET").arg(self.keys.users()).arg(id.as_str()))
            .await?;
        json.as_deref().map(from_json).transpose()
    }

    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let all: Vec<String> = self
            .query(redis::cmd("HVALS").arg(self.keys.users()))
            .await?;
        let mut users = all
            .iter()
            .map(|json| from_json(json))
            .collect::<Result<Vec<UserRecord>, _>>()?;
        users.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(users)
    }

    async fn put_invitation(&self, invitation: &InvitationRecord) -> Result<(), StoreError> {
        let user = invitation.user.as_ref().map_or("", UserId::as_str);
        self.run(
            scripts::PUT_INVITATION
                .key(self.keys.invitation(&invitation.code_sha256))
                .arg(to_json(invitation)?)
                .arg(invitation.expires_at)
                .arg(invitation.expires_at.saturating_add(CLEANUP_MARGIN_SECS))
                .arg(user),
        )
        .await?;
        Ok(())
    }

    async fn invitation(
        &self,
        code_sha256: &str,
        now: i64,
    ) -> Result<Option<InvitationRecord>, StoreError> {
        let (record, expires_at): (Option<String>, Option<i64>) = self
            .query(
                redis::cmd("HMGET")
                    .arg(self.keys.invitation(code_sha256))
                    .arg("record")
                    .arg("expires_at"),
            )
            .await?;
        match (record, expires_at) {
            (Some(record), Some(expires_at)) if now < expires_at => from_json(&record).map(Some),
            _ => Ok(None),
        }
    }

    async fn redeem_invitation(
        &self,
        code_sha256: &str,
        user: &UserRecord,
        passkey: &PasskeyRecord,
        now: i64,
    ) -> Result<(), StoreError> {
        // The passkey must be the new user's.
        if passkey.user != user.id {
            return Err(StoreError::InvalidInvitation);
        }
        let (outcome, _) = self
            .run_once(
                scripts::REDEEM_INVITATION
                    .key(self.keys.invitation(code_sha256))
                    .key(self.keys.users())
                    .key(self.keys.passkey(&passkey.credential_id))
                    .key(self.keys.passkeys_of(&user.id))
                    .arg(now)
                    .arg(user.id.as_str())
                    .arg(to_json(user)?)
                    .arg(&passkey.credential_id)
                    .arg(to_json(passkey)?),
            )
            .await?;
        match outcome.as_str() {
            "ok" => Ok(()),
            "invalid" => Err(StoreError::InvalidInvitation),
            "user_exists" => Err(StoreError::AlreadyExists("user")),
            "passkey_exists" => Err(StoreError::AlreadyExists("passkey")),
            other => Err(unexpected(other)),
        }
    }

    async fn add_passkey(&self, passkey: &PasskeyRecord) -> Result<(), StoreError> {
        let (outcome, _) = self
            .run(
                scripts::ADD_PASSKEY
                    .key(self.keys.users())
                    .key(self.keys.passkey(&passkey.credential_id))
                    .key(self.keys.passkeys_of(&passkey.user))
                    .arg(passkey.user.as_str())
                    .arg(&passkey.credential_id)
                    .arg(to_json(passkey)?),
            )
            .await?;
        match outcome.as_str() {
            "ok" => Ok(()),
            "user_not_found" => Err(StoreError::NotFound("user")),
            "exists" => Err(StoreError::AlreadyExists("passkey")),
            other => Err(unexpected(other)),
        }
    }

    async fn set_admin(&self, user: &UserId, admin: bool) -> Result<UserRecord, StoreError> {
        let mut record = self.user(user).await?.ok_or(StoreError::NotFound("user"))?;
        record.admin = admin;
        let (outcome, _) = self
            .run(
                scripts::REPLACE_USER
                    .key(self.keys.users())
                    .arg(user.as_str())
                    .arg(to_json(&record)?),
            )
            .await?;
        match outcome.as_str() {
            "ok" => Ok(record),
            "not_found" => Err(StoreError::NotFound("user")),
            other => Err(unexpected(other)),
        }
    }

    async fn passkeys(&self, user: &UserId) -> Result<Vec<PasskeyRecord>, StoreError> {
        let mut ids: Vec<String> = self
            .query(redis::cmd("SMEMBERS").arg(self.keys.passkeys_of(user)))
            .await?;
        ids.sort();
        let records = try_join_all(ids.iter().map(|id| self.passkey(id))).await?;
        Ok(records.into_iter().flatten().collect())
    }

    async fn passkey(&self, credential_id: &str) -> Result<Option<PasskeyRecord>, StoreError> {
        let json: Option<String> = self
            .query(
                redis::cmd("HGET")
                    .arg(self.keys.passkey(credential_id))
                    .arg("record"),
            )
            .await?;
        json.as_deref().map(from_json).transpose()
    }

    async fn update_passkey(&self, passkey: &PasskeyRecord) -> Result<(), StoreError> {
        let (outcome, _) = self
            .run(
                scripts::UPDATE_PASSKEY
                    .key(self.keys.passkey(&passkey.credential_id))
                    .arg(passkey.user.as_str())
                    .arg(to_json(passkey)?),
            )
            .await?;
        match outcome.as_str() {
            "ok" => Ok(()),
            "not_found" => Err(StoreError::NotFound("passkey")),
            other => Err(unexpected(other)),
        }
    }

    async fn delete_passkey(&self, user: &UserId, credential_id: &str) -> Result<(), StoreError> {
        let (outcome, _) = self
            .run(
                scripts::DELETE_PASSKEY
                    .key(self.keys.passkey(credential_id))
                    .key(self.keys.passkeys_of(user))
                    .arg(user.as_str())
                    .arg(credential_id),
            )
            .await?;
        match outcome.as_str() {
            "ok" => Ok(()),
            "not_found" => Err(StoreError::NotFound("passkey")),
            other => Err(unexpected(other)),
        }
    }

    async fn add_push_subscription(
        &self,
        subscription: &PushSubscriptionRecord,
    ) -> Result<(), StoreError> {
        self.run(
            scripts::ADD_DEVICE
                .key(self.keys.devices(&subscription.user))
                .key(self.keys.device_endpoints(&subscription.user))
                .arg(&subscription.id)
                .arg(subscription.subscription.endpoint().as_str())
                .arg(to_json(subscription)?),
        )
        .await?;
        Ok(())
    }

    async fn push_subscriptions(
        &self,
        user: &UserId,
    ) -> Result<Vec<PushSubscriptionRecord>, StoreError> {
        let all: HashMap<String, String> = self
            .query(redis::cmd("HGETALL").arg(self.keys.devices(user)))
            .await?;
        let mut devices = all
            .values()
            .map(|json| from_json(json))
            .collect::<Result<Vec<PushSubscriptionRecord>, _>>()?;
        devices.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(devices)
    }

    async fn delete_push_subscription(&self, user: &UserId, id: &str) -> Result<(), StoreError> {
        let json: Option<String> = self
            .query(redis::cmd("HGET").arg(self.keys.devices(user)).arg(id))
            .await?;
        let device: PushSubscriptionRecord = match json {
            Some(json) => from_json(&json)?,
            None => return Err(StoreError::NotFound("device")),
        };
        let (outcome, _) = self
            .run(
                scripts::DELETE_DEVICE
                    .key(self.keys.devices(user))
                    .key(self.keys.device_endpoints(user))
                    .arg(id)
                    .arg(device.subscription.endpoint().as_str()),
            )
            .await?;
        match outcome.as_str() {
            "ok" => Ok(()),
            "not_found" => Err(StoreError::NotFound("device")),
            other => Err(unexpected(other)),
        }
    }

    async fn put_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        self.put_expiring(
            self.keys.session(&session.id_sha256),
            to_json(session)?.as_bytes(),
            session.expires_at,
        )
        .await
    }

    async fn session(
        &self,
        id_sha256: &str,
        now: i64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        match self.get_expiring(self.keys.session(id_sha256), now).await? {
            Some(json) => from_json(std::str::from_utf8(&json).map_err(unavailable)?).map(Some),
            None => Ok(None),
        }
    }

    async fn delete_session(&self, id_sha256: &str) -> Result<(), StoreError> {
        let _: i64 = self
            .query(redis::cmd("DEL").arg(self.keys.session(id_sha256)))
            .await?;
        Ok(())
    }

    async fn put_ceremony(
        &self,
        id: &str,
        state: &[u8],
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.put_expiring(self.keys.ceremony(id), state, expires_at)
            .await
    }

    async fn take_ceremony(&self, id: &str, now: i64) -> Result<Option<Vec<u8>>, StoreError> {
        let (outcome, mut rest) = self
            .run_once(scripts::TAKE_EXPIRING.key(self.keys.ceremony(id)).arg(now))
            .await?;
        match outcome.as_str() {
            "ok" => Ok(rest.pop()),
            "none" => Ok(None),
            other => Err(unexpected(other)),
        }
    }

    async fn add_agent(&self, agent: &AgentRecord) -> Result<(), StoreError> {
        self.claim_agent_id(agent).await?;
        let (outcome, _) = self
            .run(
                scripts::ADD_AGENT
                    .key(self.keys.agent(&agent.user, &agent.id))
                    .key(self.keys.agents_of(&agent.user))
                    .arg(&agent.id)
                    .arg(to_json(agent)?)
                    .arg(agent.status.as_str()),
            )
            .await?;
        match outcome.as_str() {
            "ok" => Ok(()),
            "exists" => Err(StoreError::AlreadyExists("agent")),
            other => Err(unexpected(other)),
        }
    }

    /// A key that once enrolled for one user cannot enroll for another: its id stays claimed
    /// for the first (see [`Self::add_agent`]).
    async fn add_enrolling_agent(
        &self,
        agent: &AgentRecord,
        max_enrolling: usize,
        now: i64,
    ) -> Result<(), StoreError> {
        let enrolling_until = agent.enrollment_expires_at.ok_or_else(|| {
            StoreError::Unavailable(
                "redis: an enrolling agent needs its enrollment's expiry".into(),
            )
        })?;
        self.claim_agent_id(agent).await?;
        let record = to_json(agent)?;
        let (outcome, _) = self
            .run_optimistic(|| async {
                // The user's agents, read first and named to the script, which checks they are
                // still all the user has.
                let others: Vec<String> = self
                    .query(redis::cmd("SMEMBERS").arg(self.keys.agents_of(&agent.user)))
                    .await?;
                let mut invocation = scripts::ADD_ENROLLING_AGENT.prepare_invoke();
                invocation
                    .key(self.keys.agent(&agent.user, &agent.id))
                    .key(self.keys.agents_of(&agent.user));
                for other in &others {
                    invocation.key(self.keys.agent(&agent.user, other));
                }
                invocation
                    .arg(&agent.id)
                    .arg(&record)
                    .arg(now)
                    .arg(max_enrolling)
                    .arg(enrolling_until)
                    .arg(&others);
                Ok(invocation)
            })
            .await?;
        match outcome.as_str() {
            "ok" => Ok(()),
            "exists" => Err(StoreError::AlreadyExists("agent")),
            "too_many" => Err(StoreError::TooManyEnrollments {
                limit: max_enrolling,
            }),
            other => Err(unexpected(other)),
        }
    }

    async fn agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        match self.owner(self.keys.agent_owner(id)).await? {
            Some(user) => self.agent_in(&user, id).await,
            None => Ok(None),
        }
    }

    /// Oldest first (then by id), so a listing does not reshuffle between calls.
    async fn agents(&self, user: Option<&UserId>) -> Result<Vec<AgentRecord>, StoreError> {
        let mut agents = match user {
            Some(user) => self.agents_of(user).await?,
            // Listed ids whose agent was never written (see `claim_agent_id`) are skipped.
            None => {
                let ids: Vec<String> = self
                    .query(redis::cmd("SMEMBERS").arg(self.keys.all_agents()))
                    .await?;
                try_join_all(ids.iter().map(|id| self.agent(id)))
                    .await?
                    .into_iter()
                    .flatten()
                    .collect()
            }
        };
        agents.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(agents)
    }

    async fn set_agent_status(
        &self,
        id: &str,
        status: AgentStatus,
        now: i64,
    ) -> Result<AgentRecord, StoreError> {
        let user = self
            .owner(self.keys.agent_owner(id))
            .await?
            .ok_or(StoreError::NotFound("agent"))?;
        let cancelled = ApprovalState::Cancelled {
            at: now,
            reason: "agent revoked".into(),
        };
        let cancelled = to_json(&cancelled)?;
        let agent = self.keys.agent(&user, id);
        let pending = self.keys.agent_pending(&user, id);
        let (outcome, rest) = self
            .run_optimistic(|| async {
                // A revocation cancels the requests pending now: read first, named to the
                // script, which checks they are still the ones pending.
                let live: Vec<String> = if status == AgentStatus::Revoked {
                    self.query(
                        redis::cmd("ZRANGE")
                            .arg(&pending)
                            .arg(format!("({now}"))
                            .arg("+inf")
                            .arg("BYSCORE"),
                    )
                    .await?
                } else {
                    Vec::new()
                };
                let mut invocation = scripts::SET_AGENT_STATUS.prepare_invoke();
                invocation.key(&agent).key(&pending);
                for request in &live {
                    let request = ApprovalId::parse(request).map_err(unavailable)?;
                    invocation.key(self.keys.decision(&user, &request));
                }
                invocation
                    .arg(status.as_str())
                    .arg(now)
                    .arg(&cancelled)
                    .arg(&live);
                Ok(invocation)
            })
            .await?;
        match outcome.as_str() {
            "ok" => Fields::from_flat(rest)?.agent(),
            "not_found" => Err(StoreError::NotFound("agent")),
            "revoked" => Err(StoreError::AgentInactive(AgentStatus::Revoked)),
            other => Err(unexpected(other)),
        }
    }

    async fn create_approval(
        &self,
        approval: &ApprovalRecord,
        max_pending: usize,
        now: i64,
    ) -> Result<(), StoreError> {
        if !matches!(approval.state, ApprovalState::Pending) {
            return Err(StoreError::Unavailable(
                "redis: a new request must be pending".into(),
            ));
        }
        // The request as created goes first, in the slot of its id; it exists once its user's
        // slot accepts it. A failure in between leaves a record no listing, count or lookup
        // sees, and a retry of the same request takes it over.
        let created = self.keys.approval(&approval.id);
        self.claim(&created, &request::to_json(approval)?, "approval")
            .await?;
        let (outcome, rest) = self
            .run(
                scripts::ACCEPT_REQUEST
                    .key(self.keys.history(&approval.user))
                    .key(self.keys.agent(&approval.user, &approval.agent))
                    .key(self.keys.agent_pending(&approval.user, &approval.agent))
                    .arg(now)
                    .arg(max_pending)
                    .arg(approval.id.as_str())
                    .arg(kind_name(approval.kind))
                    .arg(approval.created_at)
                    .arg(approval.expires_at),
            )
            .await?;
        let refused = match outcome.as_str() {
            "ok" => return Ok(()),
            // Accepted before (a retry after a lost answer): the record is that request's.
            "exists" => return Err(StoreError::AlreadyExists("approval")),
            "agent_not_found" => StoreError::NotFound("agent"),
            "agent_inactive" => {
                let status = rest
                    .first()
                    .map(|s| String::from_utf8_lossy(s).into_owned());
                StoreError::AgentInactive(parse_agent_status(&status.unwrap_or_default())?)
            }
            "too_many_pending" => StoreError::TooManyPending { limit: max_pending },
            other => return Err(unexpected(other)),
        };
        // Refused: the record as created names nothing; removing it only saves the space.
        if let Err(e) = self.query::<i64>(redis::cmd("DEL").arg(&created)).await {
            tracing::warn!(id = %approval.id, "a refused request's record stays behind: {e}");
        }
        Err(refused)
    }

    async fn approval(&self, id: &ApprovalId) -> Result<Option<ApprovalRecord>, StoreError> {
        let Some(created) = self.created(id).await? else {
            return Ok(None);
        };
        let (outcome, rest) = self
            .run(
                scripts::READ_DECISION
                    .key(self.keys.history(&created.user))
                    .key(self.keys.decision(&created.user, id))
                    .arg(id.as_str()),
            )
            .await?;
        match outcome.as_str() {
            "ok" => Fields::from_flat(rest)?.decided(created).map(Some),
            "unknown" => Ok(None),
            other => Err(unexpected(other)),
        }
    }

    async fn decide(
        &self,
        id: &ApprovalId,
        decision: Decision,
        now: i64,
    ) -> Result<ApprovalRecord, StoreError> {
        let (status, decided_at) = (decision.status(), decision.decided_at());
        let state = ApprovalState::from(decision);
        let created = self.existing(id).await?;
        let (outcome, rest) = self
            .run_once(
                scripts::DECIDE
                    .key(self.keys.decision(&created.user, id))
                    .key(self.keys.history(&created.user))
                    .key(self.keys.agent_pending(&created.user, &created.agent))
                    .key(self.keys.agent(&created.user, &created.agent))
                    .arg(now)
                    .arg(id.as_str())
                    .arg(kind_name(created.kind))
                    .arg(status.as_str())
                    .arg(to_json(&state)?)
                    .arg(decided_at),
            )
            .await?;
        match outcome.as_str() {
            "ok" => Fields::from_flat(rest)?.decided(created),
            "not_pending" => Err(StoreError::NotPending(
                Fields::from_flat(rest)?.decided(created)?.status(now),
            )),
            "not_found" => Err(StoreError::NotFound("approval")),
            "agent_not_found" => Err(StoreError::NotFound("agent")),
            other => Err(unexpected(other)),
        }
    }

    async fn cancel_approval(
        &self,
        id: &ApprovalId,
        agent: &str,
        reason: &str,
        now: i64,
    ) -> Result<ApprovalRecord, StoreError> {
        let created = self.existing(id).await?;
        if created.agent != agent {
            return Err(StoreError::NotFound("approval"));
        }
        let cancelled = ApprovalState::Cancelled {
            at: now,
            reason: reason.to_owned(),
        };
        let (outcome, rest) = self
            .run_once(
                scripts::CANCEL
                    .key(self.keys.decision(&created.user, id))
                    .key(self.keys.agent_pending(&created.user, &created.agent))
                    .arg(now)
                    .arg(id.as_str())
                    .arg(to_json(&cancelled)?),
            )
            .await?;
        match outcome.as_str() {
            "ok" => Fields::from_flat(rest)?.decided(created),
            "not_pending" => Err(StoreError::NotPending(
                Fields::from_flat(rest)?.decided(created)?.status(now),
            )),
            other => Err(unexpected(other)),
        }
    }

    async fn collect_token(&self, id: &ApprovalId, now: i64) -> Result<Collection, StoreError> {
        let created = self.existing(id).await?;
        let (outcome, rest) = self
            .run_once(
                scripts::COLLECT_TOKEN
                    .key(self.keys.decision(&created.user, id))
                    .key(self.keys.agent(&created.user, &created.agent))
                    .key(self.keys.history(&created.user))
                    .arg(now)
                    .arg(COLLECT_WITHIN_SECS)
                    .arg(id.as_str()),
            )
            .await?;
        if outcome == "not_found" {
            return Err(StoreError::NotFound("approval"));
        }
        if outcome == "agent_inactive" {
            let status = rest.first().map(|status| String::from_utf8_lossy(status));
            let status = status.as_deref().unwrap_or("revoked");
            return Err(StoreError::AgentInactive(parse_agent_status(status)?));
        }
        let approval = Fields::from_flat(rest)?.decided(created)?;
        match outcome.as_str() {
            "deliver" => Ok(Collection::Deliver(approval)),
            "unchanged" => Ok(Collection::Unchanged(approval)),
            other => Err(unexpected(other)),
        }
    }

    async fn approvals(
        &self,
        user: &UserId,
        filter: ApprovalFilter,
        now: i64,
        limit: usize,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let newest_first = |a: &ApprovalRecord, b: &ApprovalRecord| {
            (b.created_at, &b.id).cmp(&(a.created_at, &a.id))
        };
        match filter {
            ApprovalFilter::Pending => {
                // Few: each agent has at most its limit pending.
                let ids = self.pending_requests(user, now, "ids").await?;
                let mut pending: Vec<ApprovalRecord> = self
                    .approvals_by_id(user, ids)
                    .await?
                    .into_iter()
                    .filter(|a| a.status(now) == ApprovalStatus::Pending)
                    .collect();
                pending.sort_by(newest_first);
                pending.truncate(limit);
                Ok(pending)
            }
            ApprovalFilter::History => {
                let page = limit.max(16);
                let mut out = Vec::new();
                let mut start = 0;
                loop {
                    let ids: Vec<Vec<u8>> = self
                        .query(
                            redis::cmd("ZRANGE")
                                .arg(self.keys.history(user))
                                .arg(start)
                                .arg(start + page - 1)
                                .arg("REV"),
                        )
                        .await?;
                    let fetched = ids.len();
                    for approval in self.approvals_by_id(user, ids).await? {
                        if approval.status(now) != ApprovalStatus::Pending {
                            out.push(approval);
                        }
                    }
                    if out.len() >= limit || fetched < page {
                        out.truncate(limit);
                        return Ok(out);
                    }
                    start += page;
                }
            }
        }
    }

    /// The agents' pending sets hold exactly the requests accepted as pending and neither
    /// decided nor cancelled since (those steps remove them in the same script), scored by
    /// expiry: counting is `ZCOUNT` per agent, one script per user.
    async fn pending_count(&self, now: i64) -> Result<usize, StoreError> {
        let users: Vec<String> = self
            .query(redis::cmd("HKEYS").arg(self.keys.users()))
            .await?;
        let counts = try_join_all(users.iter().map(|name| async move {
            let user = UserId::parse(name).map_err(unavailable)?;
            let answer = self.pending_requests(&user, now, "count").await?;
            let count = answer.first().map(|count| String::from_utf8_lossy(count));
            count
                .and_then(|count| count.parse::<usize>().ok())
                .ok_or_else(|| unavailable("unreadable pending count"))
        }))
        .await?;
        Ok(counts.into_iter().sum())
    }

    async fn note_agent_waiting(
        &self,
        id: &ApprovalId,
        until: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let (outcome, _) = self
            .run(
                scripts::NOTE_AGENT_WAITING
                    .key(self.keys.agent_waiting(id))
                    .arg(until)
                    .arg(AGENT_WAITING_STEP_SECS)
                    .arg(expires_at.saturating_add(CLEANUP_MARGIN_SECS)),
            )
            .await?;
        match outcome.as_str() {
            "ok" | "unchanged" => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn agent_waiting_until(
        &self,
        id: &ApprovalId,
        _now: i64,
    ) -> Result<Option<i64>, StoreError> {
        self.query(redis::cmd("GET").arg(self.keys.agent_waiting(id)))
            .await
    }

    async fn remember_jti(&self, key: &str, expires_at: i64, now: i64) -> Result<bool, StoreError> {
        let (outcome, _) = self
            .run_once(
                scripts::REMEMBER_JTI
                    .key(self.keys.jti(key))
                    .arg(now)
                    .arg(expires_at)
                    .arg(expires_at.saturating_add(CLEANUP_MARGIN_SECS)),
            )
            .await?;
        match outcome.as_str() {
            "new" => Ok(true),
            "replay" => Ok(false),
            other => Err(unexpected(other)),
        }
    }

    async fn count_in_window(
        &self,
        key: &str,
        window_start: i64,
        window: i64,
    ) -> Result<u64, StoreError> {
        let cleanup_at = window_start
            .saturating_add(window)
            .saturating_add(CLEANUP_MARGIN_SECS);
        let (outcome, rest) = self
            .run(
                scripts::COUNT_IN_WINDOW
                    .key(self.keys.rate_window(key, window_start))
                    .arg(cleanup_at),
            )
            .await?;
        match (outcome.as_str(), rest.first()) {
            ("ok", Some(count)) => std::str::from_utf8(count)
                .map_err(unavailable)?
                .parse()
                .map_err(unavailable),
            (other, _) => Err(unexpected(other)),
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        let _: String = redis::cmd("PING")
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        // A cluster answers PING from a node even when some slots have no master.
        if let Connection::Cluster(_) = &self.connection {
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async(&mut connection)
                .await
                .map_err(unavailable)?;
            if !info.lines().any(|line| line.trim() == "cluster_state:ok") {
                return Err(StoreError::Unavailable(
                    "redis: the cluster is not ok".into(),
                ));
            }
        }
        Ok(())
    }
}

impl RedisStore {
    pub fn target(&self) -> &RedisTarget {
        &self.target
    }

    pub fn connection(&self) -> Connection {
        self.connection.clone()
    }
}
