//! The embedded store: everything in one redb file in the data directory, so `handsign serve`
//! needs nothing else installed.
//!
//! Records are JSON values in tables keyed by their ids, with index tables for the listings.
//! Every operation of [`Store`] is one redb transaction, and every operation that changes
//! anything is one *write* transaction: redb runs write transactions one at a time, which is what
//! makes taking a ceremony, redeeming an invitation, deciding, delivering a token and remembering
//! a `jti` happen once. Commits use redb's default durability, so whatever a method reported as
//! done survives a crash or `SIGKILL`.
//!
//! This module must never read in one transaction and write what it decided in another, and never
//! panic: every failure of the file or its contents is [`StoreError::Unavailable`], on which the
//! gateway fails closed.
//!
//! Short-lived entries (invitations, sessions, ceremonies, `jti`s, rate windows) carry an expiry
//! index; each write to one of those tables also deletes a bounded number of expired entries, so
//! they do not grow forever and no background thread is needed. Expiry is always checked on read,
//! so correctness never depends on that clean-up.

use std::fmt::Display;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;
use redb::{
    Database, DatabaseError, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, Table, TableDefinition, WriteTransaction,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::threads::StoreThreads;
use super::{ApprovalFilter, Collection, Decision, Store, StoreError};
use crate::domain::{
    AGENT_WAITING_STEP_SECS, AgentRecord, AgentStatus, ApprovalId, ApprovalKind, ApprovalRecord,
    ApprovalState, ApprovalStatus, InvitationRecord, PasskeyRecord, PushSubscriptionRecord,
    SessionRecord, UserId, UserRecord,
};

/// The layout version written into a new file; a file with another version is refused rather
/// than misread.
const SCHEMA_VERSION: u64 = 1;
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Records as JSON, keyed by id.
const USERS: TableDefinition<&str, &str> = TableDefinition::new("users");
const PASSKEYS: TableDefinition<&str, &str> = TableDefinition::new("passkeys");
const AGENTS: TableDefinition<&str, &str> = TableDefinition::new("agents");
const APPROVALS: TableDefinition<&str, &str> = TableDefinition::new("approvals");
/// Push subscriptions by id.
const DEVICES: TableDefinition<&str, &str> = TableDefinition::new("devices");
/// `(user, device id)`.
const DEVICES_BY_USER: TableDefinition<(&str, &str), ()> = TableDefinition::new("devices_by_user");

/// `(user, credential id)`.
const PASSKEYS_BY_USER: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("passkeys_by_user");
/// `(user, agent id)`.
const AGENTS_BY_USER: TableDefinition<(&str, &str), ()> = TableDefinition::new("agents_by_user");
/// `(user, created_at, approval id)`: every request, for the history listing.
const APPROVALS_BY_USER: TableDefinition<(&str, i64, &str), ()> =
    TableDefinition::new("approvals_by_user");
/// `(user, created_at, approval id)` of requests whose stored state is pending, so listing what
/// waits for a person does not scan their whole history. Entries of requests that expired stay
/// until the agent's next request or revocation removes them; listings check the clock anyway.
const PENDING_BY_USER: TableDefinition<(&str, i64, &str), ()> =
    TableDefinition::new("pending_by_user");
/// `(agent id, approval id)` of requests whose stored state is pending: the per-agent limit and
/// revocation read these.
const PENDING_BY_AGENT: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("pending_by_agent");

const INVITATIONS: Expiring = Expiring::new("invitations", "invitations_by_expiry");
const SESSIONS: Expiring = Expiring::new("sessions", "sessions_by_expiry");
const CEREMONIES: Expiring = Expiring::new("ceremonies", "ceremonies_by_expiry");
const JTIS: Expiring = Expiring::new("jtis", "jtis_by_expiry");
/// Until when each pending request's agent was last known to wait (big-endian seconds), kept
/// until the request expires.
const AGENT_WAITING: Expiring = Expiring::new("agent_waiting", "agent_waiting_by_expiry");

/// `(key, window_start)` to the count of events in that window.
const RATE_WINDOWS: TableDefinition<(&str, i64), u64> = TableDefinition::new("rate_windows");
/// `(window end, key, window_start)`: the expiry index of [`RATE_WINDOWS`].
const RATE_WINDOWS_BY_END: TableDefinition<(i64, &str, i64), ()> =
    TableDefinition::new("rate_windows_by_end");

/// How many expired entries one write deletes at most, so that clean-up never makes one request
/// slow; each write adds at most one entry, so the backlog still shrinks.
const PRUNE_BATCH: usize = 32;

/// Threads that run store operations (see [`StoreThreads`]): redb commits one write at a time,
/// so more would only wait for its lock; reads run beside a commit.
const THREADS: usize = 4;

/// The gateway's storage in a single redb file. Cheap to clone: clones share the open database.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
    threads: StoreThreads,
}

struct Inner {
    db: Database,
    /// The latest `now` any caller has passed. The `put_*` methods are not given the time, so
    /// their clean-up deletes what had expired by then; the store itself never reads a clock.
    latest_now: AtomicI64,
}

impl EmbeddedStore {
    /// Opens the store at `path`, creating the file if it does not exist. redb locks the file, so
    /// a second gateway (or `handsign` command) on the same data directory is refused here
    /// instead of corrupting it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
                StoreError::Unavailable(format!(
                    "{} is in use by another process (is the gateway running?)",
                    path.display()
                ))
            }
            other => StoreError::Unavailable(format!("cannot open {}: {other}", path.display())),
        })?;
        let inner = Inner {
            db,
            latest_now: AtomicI64::new(i64::MIN),
        };
        inner.create_tables()?;
        Ok(EmbeddedStore {
            inner: Arc::new(inner),
            threads: StoreThreads::start(THREADS, "handsign-store")
                .map_err(|e| StoreError::Unavailable(format!("cannot start store threads: {e}")))?,
        })
    }

    /// Runs `op` on one of the store's threads: redb does file I/O and waits for the write lock.
    async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        self.threads
            .run(move || op(&inner))
            .await
            .unwrap_or_else(|| Err(StoreError::Unavailable("storage task failed".into())))
    }

    /// Like [`Self::run`] for an operation told the time: remembers `now` for clean-up first.
    async fn run_at<T, F>(&self, now: i64, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        self.inner.latest_now.fetch_max(now, Ordering::Relaxed);
        self.run(op).await
    }

    /// Stores `bytes` under `key` in `table` until `expires_at`, pruning some expired entries.
    async fn put_expiring(
        &self,
        table: Expiring,
        key: &str,
        expires_at: i64,
        bytes: Vec<u8>,
    ) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.run(move |inner| {
            let now = inner.latest_now();
            inner.write(|txn| {
                let mut entries = table.open(txn)?;
                entries.put(&key, expires_at, &bytes)?;
                entries.prune(now)?;
                Ok(Outcome::Changed(()))
            })
        })
        .await
    }

    /// The record under `key` in `table` if it is live at `now`.
    async fn get_live<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        table: Expiring,
        key: &str,
        now: i64,
    ) -> Result<Option<T>, StoreError> {
        let key = key.to_owned();
        self.run_at(now, move |inner| {
            inner.read(|txn| match table.get_live(txn, &key, now)? {
                Some(json) => from_json_bytes(&json).map(Some),
                None => Ok(None),
            })
        })
        .await
    }
}

/// What a write transaction did: only changes are committed, so a refused or idle operation
/// (a replayed `jti`, a poll of a pending request) costs no disk sync.
enum Outcome<T> {
    Changed(T),
    Unchanged(T),
}

impl Inner {
    fn create_tables(&self) -> Result<(), StoreError> {
        self.write(|txn| {
            let mut meta = txn.open_table(META).map_err(unavailable)?;
            let version = meta.get("schema").map_err(unavailable)?.map(|v| v.value());
            match version {
                Some(SCHEMA_VERSION) => {}
                Some(other) => {
                    return Err(StoreError::Unavailable(format!(
                        "the data file has layout version {other}, this handsign reads version \
                         {SCHEMA_VERSION}"
                    )));
                }
                None => {
                    meta.insert("schema", SCHEMA_VERSION).map_err(unavailable)?;
                }
            }
            for table in [USERS, PASSKEYS, AGENTS, APPROVALS, DEVICES] {
                txn.open_table(table).map_err(unavailable)?;
            }
            for table in [
                PASSKEYS_BY_USER,
                AGENTS_BY_USER,
                PENDING_BY_AGENT,
                DEVICES_BY_USER,
            ] {
                txn.open_table(table).map_err(unavailable)?;
            }
            for table in [APPROVALS_BY_USER, PENDING_BY_USER] {
                txn.open_table(table).map_err(unavailable)?;
            }
            for expiring in [INVITATIONS, SESSIONS, CEREMONIES, JTIS, AGENT_WAITING] {
                expiring.open(txn)?;
            }
            txn.open_table(RATE_WINDOWS).map_err(unavailable)?;
            txn.open_table(RATE_WINDOWS_BY_END).map_err(unavailable)?;
            // Committed even when nothing was created: the open proves the file is writable.
            Ok(Outcome::Changed(()))
        })
    }

    fn read<T>(
        &self,
        op: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        op(&txn)
    }

    /// One write transaction: committed if `op` changed something, aborted if it did not or
    /// failed (dropping an uncommitted redb transaction aborts it).
    fn write<T>(
        &self,
        op: impl FnOnce(&WriteTransaction) -> Result<Outcome<T>, StoreError>,
    ) -> Result<T, StoreError> {
        let txn = self.db.begin_write().map_err(unavailable)?;
        match op(&txn)? {
            Outcome::Changed(value) => {
                txn.commit().map_err(unavailable)?;
                Ok(value)
            }
            Outcome::Unchanged(value) => {
                txn.abort().map_err(unavailable)?;
                Ok(value)
            }
        }
    }

    fn latest_now(&self) -> i64 {
        self.latest_now.load(Ordering::Relaxed)
    }
}

fn unavailable(error: impl Display) -> StoreError {
    StoreError::Unavailable(format!("embedded store: {error}"))
}

fn to_json(record: &impl Serialize) -> Result<String, StoreError> {
    serde_json::to_string(record).map_err(unavailable)
}

fn from_json<T: DeserializeOwned>(json: &str) -> Result<T, StoreError> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::Unavailable(format!("embedded store: unreadable record: {e}")))
}

fn from_json_bytes<T: DeserializeOwned>(json: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(json)
        .map_err(|e| StoreError::Unavailable(format!("embedded store: unreadable record: {e}")))
}

/// The record stored under `key`, if any.
fn get_record<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static str>,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match table.get(key).map_err(unavailable)? {
        Some(json) => from_json(json.value()).map(Some),
        None => Ok(None),
    }
}

fn contains(
    table: &impl ReadableTable<&'static str, &'static str>,
    key: &str,
) -> Result<bool, StoreError> {
    Ok(table.get(key).map_err(unavailable)?.is_some())
}

/// The exclusive upper bound, as a tuple key's first member, of the keys whose first member is
/// exactly `prefix`: those keys lie in `[(prefix, min, ..), (prefix_end(prefix), min, ..))`, and
/// no other first member falls between. Exact because ids never contain NUL.
fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\0")
}

/// The second members of the `(first, second)` keys whose first member is `first`, in order.
fn second_members(
    table: &impl ReadableTable<(&'static str, &'static str), ()>,
    first: &str,
) -> Result<Vec<String>, StoreError> {
    let end = prefix_end(first);
    let mut out = Vec::new();
    for item in table
        .range((first, "")..(end.as_str(), ""))
        .map_err(unavailable)?
    {
        let (key, _) = item.map_err(unavailable)?;
        out.push(key.value().1.to_owned());
    }
    Ok(out)
}

/// A table of records by id, its `(owner, id)` index, and what a record is called in errors.
type OwnedTables = (
    TableDefinition<'static, &'static str, &'static str>,
    TableDefinition<'static, (&'static str, &'static str), ()>,
    &'static str,
);

/// Stores a new record `json` under `id`, listed under `owner`; `AlreadyExists` if `id` is
/// taken.
fn insert_owned(
    txn: &WriteTransaction,
    (records, index, what): OwnedTables,
    owner: &str,
    id: &str,
    json: &str,
) -> Result<(), StoreError> {
    let mut records = txn.open_table(records).map_err(unavailable)?;
    if contains(&records, id)? {
        return Err(StoreError::AlreadyExists(what));
    }
    records.insert(id, json).map_err(unavailable)?;
    let mut index = txn.open_table(index).map_err(unavailable)?;
    index.insert((owner, id), ()).map_err(unavailable)?;
    Ok(())
}

/// The records of `records` that the `(owner, id)` index `index` lists for `owner`.
fn records_of<T: DeserializeOwned>(
    txn: &ReadTransaction,
    index: TableDefinition<'static, (&'static str, &'static str), ()>,
    records: TableDefinition<'static, &'static str, &'static str>,
    owner: &str,
) -> Result<Vec<T>, StoreError> {
    let index = txn.open_table(index).map_err(unavailable)?;
    let records = txn.open_table(records).map_err(unavailable)?;
    let mut out = Vec::new();
    for id in second_members(&index, owner)? {
        if let Some(record) = get_record(&records, &id)? {
            out.push(record);
        }
    }
    Ok(out)
}

/// The approval ids of the `(user, created_at, id)` keys of `user`, newest first, passed to
/// `visit` until it returns `false`.
fn newest_first(
    table: &impl ReadableTable<(&'static str, i64, &'static str), ()>,
    user: &str,
    mut visit: impl FnMut(String) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let end = prefix_end(user);
    let range = table
        .range((user, i64::MIN, "")..(end.as_str(), i64::MIN, ""))
        .map_err(unavailable)?;
    for item in range.rev() {
        let (key, _) = item.map_err(unavailable)?;
        if !visit(key.value().2.to_owned())? {
            break;
        }
    }
    Ok(())
}

/// Seconds stored as 8 big-endian bytes.
fn seconds(bytes: &[u8]) -> Option<i64> {
    bytes.try_into().ok().map(i64::from_be_bytes)
}

/// A table of entries that expire, `key -> (expires_at, bytes)`, with its expiry index
/// `(expires_at, key)`. An entry is live while `now < expires_at`.
#[derive(Clone, Copy)]
struct Expiring {
    entries: TableDefinition<'static, &'static str, (i64, &'static [u8])>,
    by_expiry: TableDefinition<'static, (i64, &'static str), ()>,
}

impl Expiring {
    const fn new(entries: &'static str, by_expiry: &'static str) -> Self {
        Expiring {
            entries: TableDefinition::new(entries),
            by_expiry: TableDefinition::new(by_expiry),
        }
    }

    /// The bytes under `key` if live at `now`.
    fn get_live(
        &self,
        txn: &ReadTransaction,
        key: &str,
        now: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let entries = txn.open_table(self.entries).map_err(unavailable)?;
        let entry = entries.get(key).map_err(unavailable)?;
        Ok(entry.and_then(|guard| {
            let (expires_at, bytes) = guard.value();
            (now < expires_at).then(|| bytes.to_vec())
        }))
    }

    fn open<'txn>(&self, txn: &'txn WriteTransaction) -> Result<ExpiringTables<'txn>, StoreError> {
        Ok(ExpiringTables {
            entries: txn.open_table(self.entries).map_err(unavailable)?,
            by_expiry: txn.open_table(self.by_expiry).map_err(unavailable)?,
        })
    }
}

struct ExpiringTables<'txn> {
    entries: Table<'txn, &'static str, (i64, &'static [u8])>,
    by_expiry: Table<'txn, (i64, &'static str), ()>,
}

impl ExpiringTables<'_> {
    fn get(&self, key: &str) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
        let entry = self.entries.get(key).map_err(unavailable)?;
        Ok(entry.map(|guard| {
            let (expires_at, bytes) = guard.value();
            (expires_at, bytes.to_vec())
        }))
    }

    /// Stores or replaces `key`, keeping the index exact: one index entry per stored entry.
    fn put(&mut self, key: &str, expires_at: i64, bytes: &[u8]) -> Result<(), StoreError> {
        self.remove(key)?;
        self.entries
            .insert(key, (expires_at, bytes))
            .map_err(unavailable)?;
        self.by_expiry
            .insert((expires_at, key), ())
            .map_err(unavailable)?;
        Ok(())
    }

    fn remove(&mut self, key: &str) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
        let old = self.get(key)?;
        if let Some((expires_at, _)) = &old {
            self.entries.remove(key).map_err(unavailable)?;
            self.by_expiry
                .remove((*expires_at, key))
                .map_err(unavailable)?;
        }
        Ok(old)
    }

    /// Deletes up to [`PRUNE_BATCH`] entries expired at `now`; returns how many.
    fn prune(&mut self, now: i64) -> Result<usize, StoreError> {
        let mut expired = Vec::new();
        let range = self
            .by_expiry
            .range(..(now.saturating_add(1), ""))
            .map_err(unavailable)?;
        for item in range.take(PRUNE_BATCH) {
            let (key, _) = item.map_err(unavailable)?;
            let (expires_at, key) = key.value();
            expired.push((expires_at, key.to_owned()));
        }
        for (expires_at, key) in &expired {
            self.by_expiry
                .remove((*expires_at, key.as_str()))
                .map_err(unavailable)?;
            // The index is exact by construction; checked anyway, since deleting a live `jti`
            // would let a proof be replayed.
            let live = self.get(key)?.is_some_and(|(at, _)| now < at);
            if !live {
                self.entries.remove(key.as_str()).map_err(unavailable)?;
            }
        }
        Ok(expired.len())
    }
}

/// The approval tables of one write transaction.
struct ApprovalTables<'txn> {
    approvals: Table<'txn, &'static str, &'static str>,
    by_user: Table<'txn, (&'static str, i64, &'static str), ()>,
    pending_by_user: Table<'txn, (&'static str, i64, &'static str), ()>,
    pending_by_agent: Table<'txn, (&'static str, &'static str), ()>,
}

impl<'txn> ApprovalTables<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(ApprovalTables {
            approvals: txn.open_table(APPROVALS).map_err(unavailable)?,
            by_user: txn.open_table(APPROVALS_BY_USER).map_err(unavailable)?,
            pending_by_user: txn.open_table(PENDING_BY_USER).map_err(unavailable)?,
            pending_by_agent: txn.open_table(PENDING_BY_AGENT).map_err(unavailable)?,
        })
    }

    fn get(&self, id: &str) -> Result<Option<ApprovalRecord>, StoreError> {
        get_record(&self.approvals, id)
    }

    /// Writes a request that already exists, and drops it from the pending indexes once its
    /// stored state is no longer pending.
    fn replace(&mut self, approval: &ApprovalRecord) -> Result<(), StoreError> {
        let id = approval.id.as_str();
        self.approvals
            .insert(id, to_json(approval)?.as_str())
            .map_err(unavailable)?;
        if !matches!(approval.state, ApprovalState::Pending) {
            self.forget_pending(approval)?;
        }
        Ok(())
    }

    fn forget_pending(&mut self, approval: &ApprovalRecord) -> Result<(), StoreError> {
        let id = approval.id.as_str();
        self.pending_by_user
            .remove((approval.user.as_str(), approval.created_at, id))
            .map_err(unavailable)?;
        self.pending_by_agent
            .remove((approval.agent.as_str(), id))
            .map_err(unavailable)?;
        Ok(())
    }

    /// The agent's requests whose stored state is pending.
    fn stored_pending_of(&self, agent: &str) -> Result<Vec<ApprovalRecord>, StoreError> {
        let mut out = Vec::new();
        for id in second_members(&self.pending_by_agent, agent)? {
            match self.get(&id)? {
                Some(approval) => out.push(approval),
                None => {
                    return Err(StoreError::Unavailable(format!(
                        "embedded store: pending index names missing request {id}"
                    )));
                }
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn count_users(&self) -> Result<usize, StoreError> {
        self.run(|inner| {
            inner.read(|txn| {
                let users = txn.open_table(USERS).map_err(unavailable)?;
                let count = users.len().map_err(unavailable)?;
                usize::try_from(count).map_err(unavailable)
            })
        })
        .await
    }

    async fn user(&self, id: &UserId) -> Result<Option<UserRecord>, StoreError> {
        let id = id.clone();
        self.run(move |inner| {
            inner.read(|txn| {
                let users = txn.open_table(USERS).map_err(unavailable)?;
                get_record(&users, id.as_str())
            })
        })
        .await
    }

    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.run(|inner| {
            inner.read(|txn| {
                let users = txn.open_table(USERS).map_err(unavailable)?;
                let mut out = Vec::new();
                for item in users.iter().map_err(unavailable)? {
                    let (_, json) = item.map_err(unavailable)?;
                    out.push(from_json(json.value())?);
                }
                Ok(out)
            })
        })
        .await
    }

    async fn put_invitation(&self, invitation: &InvitationRecord) -> Result<(), StoreError> {
        let json = to_json(invitation)?;
        self.put_expiring(
            INVITATIONS,
            &invitation.code_sha256,
            invitation.expires_at,
            json.into_bytes(),
        )
        .await
    }

    async fn invitation(
        &self,
        code_sha256: &str,
        now: i64,
    ) -> Result<Option<InvitationRecord>, StoreError> {
        self.get_live(INVITATIONS, code_sha256, now).await
    }

    async fn redeem_invitation(
        &self,
        code_sha256: &str,
        user: &UserRecord,
        passkey: &PasskeyRecord,
        now: i64,
    ) -> Result<(), StoreError> {
        let key = code_sha256.to_owned();
        let user_id = user.id.clone();
        let user_json = to_json(user)?;
        let credential_id = passkey.credential_id.clone();
        let passkey_user = passkey.user.clone();
        let passkey_json = to_json(passkey)?;
        self.run_at(now, move |inner| {
            inner.write(|txn| {
                let mut invitations = INVITATIONS.open(txn)?;
                let invitation: InvitationRecord = match invitations.get(&key)? {
                    Some((expires_at, json)) if now < expires_at => from_json_bytes(&json)?,
                    _ => return Err(StoreError::InvalidInvitation),
                };
                // An invitation is for one user, and the passkey must be that user's.
                if invitation.user.as_ref().is_some_and(|u| *u != user_id)
                    || passkey_user != user_id
                {
                    return Err(StoreError::InvalidInvitation);
                }
                let mut users = txn.open_table(USERS).map_err(unavailable)?;
                // A setup code works only while there is no user at all.
                if invitation.user.is_none() && !users.is_empty().map_err(unavailable)? {
                    return Err(StoreError::InvalidInvitation);
                }
                // An invitation creates a user; it never adds a passkey to an existing one.
                if contains(&users, user_id.as_str())? {
                    return Err(StoreError::AlreadyExists("user"));
                }
                // Refused here, the whole transaction is dropped: the invitation stays unused.
                insert_owned(
                    txn,
                    (PASSKEYS, PASSKEYS_BY_USER, "passkey"),
                    user_id.as_str(),
                    &credential_id,
                    &passkey_json,
                )?;
                invitations.remove(&key)?;
                invitations.prune(now)?;
                users
                    .insert(user_id.as_str(), user_json.as_str())
                    .map_err(unavailable)?;
                Ok(Outcome::Changed(()))
            })
        })
        .await
    }

    async fn add_passkey(&self, passkey: &PasskeyRecord) -> Result<(), StoreError> {
        let user = passkey.user.clone();
        let credential_id = passkey.credential_id.clone();
        let json = to_json(passkey)?;
        self.run(move |inner| {
            inner.write(|txn| {
                let users = txn.open_table(USERS).map_err(unavailable)?;
                if !contains(&users, user.as_str())? {
                    return Err(StoreError::NotFound("user"));
                }
                insert_owned(
                    txn,
                    (PASSKEYS, PASSKEYS_BY_USER, "passkey"),
                    user.as_str(),
                    &credential_id,
                    &json,
                )?;
                Ok(Outcome::Changed(()))
            })
        })
        .await
    }

    async fn set_admin(&self, user: &UserId, admin: bool) -> Result<UserRecord, StoreError> {
        let user = user.clone();
        self.run(move |inner| {
            inner.write(|txn| {
                let mut users = txn.open_table(USERS).map_err(unavailable)?;
                let mut record: UserRecord =
                    get_record(&users, user.as_str())?.ok_or(StoreError::NotFound("user"))?;
                record.admin = admin;
                users
                    .insert(user.as_str(), to_json(&record)?.as_str())
                    .map_err(unavailable)?;
                Ok(Outcome::Changed(record))
            })
        })
        .await
    }

    async fn passkeys(&self, user: &UserId) -> Result<Vec<PasskeyRecord>, StoreError> {
        let user = user.clone();
        self.run(move |inner| {
            inner.read(|txn| records_of(txn, PASSKEYS_BY_USER, PASSKEYS, user.as_str()))
        })
        .await
    }

    async fn passkey(&self, credential_id: &str) -> Result<Option<PasskeyRecord>, StoreError> {
        let credential_id = credential_id.to_owned();
        self.run(move |inner| {
            inner.read(|txn| {
                let passkeys = txn.open_table(PASSKEYS).map_err(unavailable)?;
                get_record(&passkeys, &credential_id)
            })
        })
        .await
    }

    /// `NotFound("passkey")` unless the credential is stored for the same user: an update never
    /// moves a passkey to another user.
    async fn update_passkey(&self, passkey: &PasskeyRecord) -> Result<(), StoreError> {
        let user = passkey.user.clone();
        let credential_id = passkey.credential_id.clone();
        let json = to_json(passkey)?;
        self.run(move |inner| {
            inner.write(|txn| {
                let mut passkeys = txn.open_table(PASSKEYS).map_err(unavailable)?;
                let stored: Option<PasskeyRecord> = get_record(&passkeys, &credential_id)?;
                if stored.is_none_or(|stored| stored.user != user) {
                    return Err(StoreError::NotFound("passkey"));
                }
                passkeys
                    .insert(credential_id.as_str(), json.as_str())
                    .map_err(unavailable)?;
                Ok(Outcome::Changed(()))
            })
        })
        .await
    }

    /// `NotFound("passkey")` unless `user` has that credential.
    async fn delete_passkey(&self, user: &UserId, credential_id: &str) -> Result<(), StoreError> {
        let user = user.clone();
        let credential_id = credential_id.to_owned();
        self.run(move |inner| {
            inner.write(|txn| {
                let mut passkeys = txn.open_table(PASSKEYS).map_err(unavailable)?;
                let stored: Option<PasskeyRecord> = get_record(&passkeys, &credential_id)?;
                if stored.is_none_or(|stored| stored.user != user) {
                    return Err(StoreError::NotFound("passkey"));
                }
                passkeys
                    .remove(credential_id.as_str())
                    .map_err(unavailable)?;
                let mut by_user = txn.open_table(PASSKEYS_BY_USER).map_err(unavailable)?;
                by_user
                    .remove((user.as_str(), credential_id.as_str()))
                    .map_err(unavailable)?;
                Ok(Outcome::Changed(()))
            })
        })
        .await
    }

    async fn add_push_subscription(
        &self,
        subscription: &PushSubscriptionRecord,
    ) -> Result<(), StoreError> {
        let subscription = subscription.clone();
        let json = to_json(&subscription)?;
        self.run(move |inner| {
            inner.write(|txn| {
                let mut devices = txn.open_table(DEVICES).map_err(unavailable)?;
                let mut by_user = txn.open_table(DEVICES_BY_USER).map_err(unavailable)?;
                let user = subscription.user.as_str();
                for id in second_members(&by_user, user)? {
                    let stored: Option<PushSubscriptionRecord> = get_record(&devices, &id)?;
                    if stored.is_some_and(|s| {
                        s.subscription.endpoint() == subscription.subscription.endpoint()
                    }) {
                        devices.remove(id.as_str()).map_err(unavailable)?;
                        by_user.remove((user, id.as_str())).map_err(unavailable)?;
                    }
                }
                devices
                    .insert(subscription.id.as_str(), json.as_str())
                    .map_err(unavailable)?;
                by_user
                    .insert((user, subscription.id.as_str()), ())
                    .map_err(unavailable)?;
                Ok(Outcome::Changed(()))
            })
        })
        .await
    }

    async fn push_subscriptions(
        &self,
        user: &UserId,
    ) -> Result<Vec<PushSubscriptionRecord>, StoreError> {
        let user = user.clone();
        self.run(move |inner| {
            inner.read(|txn| records_of(txn, DEVICES_BY_USER, DEVICES, user.as_str()))
        })
        .await
    }

    async fn delete_push_subscription(&self, user: &UserId, id: &str) -> Result<(), StoreError> {
        let user = user.clone();
        let id = id.to_owned();
        self.run(move |inner| {
            inner.write(|txn| {
                let mut devices = txn.open_table(DEVICES).map_err(unavailable)?;
                let stored: Option<PushSubscriptionRecord> = get_record(&devices, &id)?;
                if stored.is_none_or(|stored| stored.user != user) {
                    return Err(StoreError::NotFound("device"));
                }
                devices.remove(id.as_str()).map_err(unavailable)?;
                let mut by_user = txn.open_table(DEVICES_BY_USER).map_err(unavailable)?;
                by_user
                    .remove((user.as_str(), id.as_str()))
                    .map_err(unavailable)?;
                Ok(Outcome::Changed(()))
            })
        })
        .await
    }

    async fn put_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        let json = to_json(session)?;
        self.put_expiring(
            SESSIONS,
            &session.id_sha256,
            session.expires_at,
            json.into_bytes(),
        )
        .await
    }

    async fn session(
        &self,
        id_sha256: &str,
        now: i64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.get_live(SESSIONS, id_sha256, now).await
    }

    async fn delete_session(&self, id_sha256: &str) -> Result<(), StoreError> {
        let key = id_sha256.to_owned();
        self.run(move |inner| {
            inner.write(|txn| {
                let mut sessions = SESSIONS.open(txn)?;
                Ok(match sessions.remove(&key)? {
                    Some(_) => Outcome::Changed(()),
                    None => Outcome::Unchanged(()),
                })
            })
        })
        .await
    }

    async fn put_ceremony(
        &self,
        id: &str,
        state: &[u8],
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.put_expiring(CEREMONIES, id, expires_at, state.to_vec())
            .await
    }

    async fn take_ceremony(&self, id: &str, now: i64) -> Result<Option<Vec<u8>>, StoreError> {
        let key = id.to_owned();
        self.run_at(now, move |inner| {
            inner.write(|txn| {
                let mut ceremonies = CEREMONIES.open(txn)?;
                let taken = ceremonies.remove(&key)?;
                let pruned = ceremonies.prune(now)?;
                Ok(match taken {
                    Some((expires_at, state)) if now < expires_at => Outcome::Changed(Some(state)),
                    Some(_) => Outcome::Changed(None),
                    None if pruned > 0 => Outcome::Changed(None),
                    None => Outcome::Unchanged(None),
                })
            })
        })
        .await
    }

    async fn add_agent(&self, agent: &AgentRecord) -> Result<(), StoreError> {
        let id = agent.id.clone();
        let user = agent.user.clone();
        let json = to_json(agent)?;
        self.run(move |inner| {
            inner.write(|txn| {
                insert_owned(
                    txn,
                    (AGENTS, AGENTS_BY_USER, "agent"),
                    user.as_str(),
                    &id,
                    &json,
                )?;
                Ok(Outcome::Changed(()))
            })
        })
        .await
    }

    async fn add_enrolling_agent(
        &self,
        agent: &AgentRecord,
        max_enrolling: usize,
        now: i64,
    ) -> Result<(), StoreError> {
        let agent = agent.clone();
        let json = to_json(&agent)?;
        self.run_at(now, move |inner| {
            inner.write(|txn| {
                let mut agents = txn.open_table(AGENTS).map_err(unavailable)?;
                let mut by_user = txn.open_table(AGENTS_BY_USER).map_err(unavailable)?;
                let existing: Option<AgentRecord> = get_record(&agents, &agent.id)?;
                if existing.as_ref().is_some_and(|a| a.exists_at(now)) {
                    return Err(StoreError::AlreadyExists("agent"));
                }
                let user = agent.user.as_str();
                let mut enrolling = 0;
                let mut expired = Vec::new();
                for id in second_members(&by_user, user)? {
                    let Some(other) = get_record::<AgentRecord>(&agents, &id)? else {
                        continue;
                    };
                    if !other.exists_at(now) {
                        expired.push(other);
                    } else if other.status == AgentStatus::Pending {
                        enrolling += 1;
                    }
                }
                if enrolling >= max_enrolling {
                    return Err(StoreError::TooManyEnrollments {
                        limit: max_enrolling,
                    });
                }
                // Also the earlier record of this very key, if its enrollment expired: its
                // owner's index entry goes with it, whoever that was.
                expired.extend(existing);
                for gone in &expired {
                    agents.remove(gone.id.as_str()).map_err(unavailable)?;
                    by_user
                        .remove((gone.user.as_str(), gone.id.as_str()))
                        .map_err(unavailable)?;
                }
                agents
                    .insert(agent.id.as_str(), json.as_str())
                    .map_err(unavailable)?;
                by_user
                    .insert((user, agent.id.as_str()), ())
                    .map_err(unavailable)?;
                Ok(Outcome::Changed(()))
            })
        })
        .await
    }

    async fn agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        let id = id.to_owned();
        self.run(move |inner| {
            inner.read(|txn| {
                let agents = txn.open_table(AGENTS).map_err(unavailable)?;
                get_record(&agents, &id)
            })
        })
        .await
    }

    /// Oldest first (then by id), so a listing does not reshuffle between calls.
    async fn agents(&self, user: Option<&UserId>) -> Result<Vec<AgentRecord>, StoreError> {
        let user = user.cloned();
        self.run(move |inner| {
            inner.read(|txn| {
                let mut out: Vec<AgentRecord> = match &user {
                    Some(user) => records_of(txn, AGENTS_BY_USER, AGENTS, user.as_str())?,
                    None => {
                        let agents = txn.open_table(AGENTS).map_err(unavailable)?;
                        let mut all = Vec::new();
                        for item in agents.iter().map_err(unavailable)? {
                            let (_, json) = item.map_err(unavailable)?;
                            all.push(from_json(json.value())?);
                        }
                        all
                    }
                };
                out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
                Ok(out)
            })
        })
        .await
    }

    async fn set_agent_status(
        &self,
        id: &str,
        status: AgentStatus,
        now: i64,
    ) -> Result<AgentRecord, StoreError> {
        let id = id.to_owned();
        self.run_at(now, move |inner| {
            inner.write(|txn| {
                let mut agents = txn.open_table(AGENTS).map_err(unavailable)?;
                let mut agent: AgentRecord =
                    get_record(&agents, &id)?.ok_or(StoreError::NotFound("agent"))?;
                if agent.status == AgentStatus::Revoked && status != AgentStatus::Revoked {
                    return Err(StoreError::AgentInactive(AgentStatus::Revoked));
                }
                agent.status = status;
                agents
                    .insert(id.as_str(), to_json(&agent)?.as_str())
                    .map_err(unavailable)?;
                if status == AgentStatus::Revoked {
                    let mut approvals = ApprovalTables::open(txn)?;
                    for mut approval in approvals.stored_pending_of(&id)? {
                        if approval.status(now) == ApprovalStatus::Pending {
                            approval.state = ApprovalState::Cancelled {
                                at: now,
                                reason: "agent revoked".into(),
                            };
                            approvals.replace(&approval)?;
                        } else {
                            // Expired: it stays expired, and leaves the pending indexes.
                            approvals.forget_pending(&approval)?;
                        }
                    }
                }
                Ok(Outcome::Changed(agent))
            })
        })
        .await
    }

    /// `AlreadyExists("approval")` for an id already stored. Requests of the agent that have
    /// expired leave the pending indexes here.
    async fn create_approval(
        &self,
        approval: &ApprovalRecord,
        max_pending: usize,
        now: i64,
    ) -> Result<(), StoreError> {
        let approval = approval.clone();
        let json = to_json(&approval)?;
        self.run_at(now, move |inner| {
            inner.write(|txn| {
                let agents = txn.open_table(AGENTS).map_err(unavailable)?;
                let agent: AgentRecord =
                    get_record(&agents, &approval.agent)?.ok_or(StoreError::NotFound("agent"))?;
                let may_ask = match approval.kind {
                    ApprovalKind::Action => AgentStatus::Active,
                    ApprovalKind::Enrollment => AgentStatus::Pending,
                };
                if agent.status != may_ask {
                    return Err(StoreError::AgentInactive(agent.status));
                }
                drop(agents);
                let mut approvals = ApprovalTables::open(txn)?;
                let id = approval.id.as_str();
                if contains(&approvals.approvals, id)? {
                    return Err(StoreError::AlreadyExists("approval"));
                }
                let mut pending = 0;
                for stored in approvals.stored_pending_of(&approval.agent)? {
                    if stored.status(now) == ApprovalStatus::Pending {
                        pending += 1;
                    } else {
                        approvals.forget_pending(&stored)?;
                    }
                }
                if pending >= max_pending {
                    return Err(StoreError::TooManyPending { limit: max_pending });
                }
                let user = approval.user.as_str();
                approvals
                    .approvals
                    .insert(id, json.as_str())
                    .map_err(unavailable)?;
                approvals
                    .by_user
                    .insert((user, approval.created_at, id), ())
                    .map_err(unavailable)?;
                if matches!(approval.state, ApprovalState::Pending) {
                    approvals
                        .pending_by_user
                        .insert((user, approval.created_at, id), ())
                        .map_err(unavailable)?;
                    approvals
                        .pending_by_agent
                        .insert((approval.agent.as_str(), id), ())
                        .map_err(unavailable)?;
                }
                Ok(Outcome::Changed(()))
            })
        })
        .await
    }

    async fn approval(&self, id: &ApprovalId) -> Result<Option<ApprovalRecord>, StoreError> {
        let id = id.clone();
        self.run(move |inner| {
            inner.read(|txn| {
                let approvals = txn.open_table(APPROVALS).map_err(unavailable)?;
                get_record(&approvals, id.as_str())
            })
        })
        .await
    }

    /// `NotFound("approval")` for an unknown id. A decision other than `Approved` or `Denied` is
    /// a caller's bug and refused as `Unavailable`; an `Approved` decision is stored with no
    /// token delivered, whatever it says, so that [`Store::collect_token`] can deliver it.
    async fn decide(
        &self,
        id: &ApprovalId,
        decision: Decision,
        now: i64,
    ) -> Result<ApprovalRecord, StoreError> {
        let id = id.clone();
        self.run_at(now, move |inner| {
            inner.write(|txn| {
                let mut approvals = ApprovalTables::open(txn)?;
                let mut approval = approvals
                    .get(id.as_str())?
                    .ok_or(StoreError::NotFound("approval"))?;
                match approval.status(now) {
                    ApprovalStatus::Pending => {}
                    other => return Err(StoreError::NotPending(other)),
                }
                let approved = decision.status() == ApprovalStatus::Approved;
                approval.state = decision.into();
                approvals.replace(&approval)?;
                drop(approvals);
                if approval.kind == ApprovalKind::Enrollment {
                    let mut agents = txn.open_table(AGENTS).map_err(unavailable)?;
                    let mut agent: AgentRecord = get_record(&agents, &approval.agent)?
                        .ok_or(StoreError::NotFound("agent"))?;
                    // Only a still pending agent becomes active: an operator's suspension or
                    // revocation in the meantime stands.
                    agent.status = match (approved, agent.status) {
                        (true, AgentStatus::Pending) => AgentStatus::Active,
                        (true, status) => status,
                        (false, _) => AgentStatus::Revoked,
                    };
                    agents
                        .insert(agent.id.as_str(), to_json(&agent)?.as_str())
                        .map_err(unavailable)?;
                }
                Ok(Outcome::Changed(approval))
            })
        })
        .await
    }

    async fn cancel_approval(
        &self,
        id: &ApprovalId,
        agent: &str,
        reason: &str,
        now: i64,
    ) -> Result<ApprovalRecord, StoreError> {
        let (id, agent, reason) = (id.clone(), agent.to_owned(), reason.to_owned());
        self.run_at(now, move |inner| {
            inner.write(|txn| {
                let mut approvals = ApprovalTables::open(txn)?;
                let mut approval = approvals
                    .get(id.as_str())?
                    .filter(|approval| approval.agent == agent)
                    .ok_or(StoreError::NotFound("approval"))?;
                match approval.status(now) {
                    ApprovalStatus::Pending => {}
                    other => return Err(StoreError::NotPending(other)),
                }
                approval.state = ApprovalState::Cancelled { at: now, reason };
                approvals.replace(&approval)?;
                Ok(Outcome::Changed(approval))
            })
        })
        .await
    }

    async fn note_agent_waiting(
        &self,
        id: &ApprovalId,
        until: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let id = id.clone();
        self.run(move |inner| {
            let now = inner.latest_now();
            inner.write(|txn| {
                let mut entries = AGENT_WAITING.open(txn)?;
                let recorded = entries
                    .get(id.as_str())?
                    .and_then(|(_, bytes)| seconds(&bytes));
                if recorded.is_some_and(|recorded| until < recorded + AGENT_WAITING_STEP_SECS) {
                    return Ok(Outcome::Unchanged(()));
                }
                entries.put(id.as_str(), expires_at, &until.to_be_bytes())?;
                entries.prune(now)?;
                Ok(Outcome::Changed(()))
            })
        })
        .await
    }

    async fn agent_waiting_until(
        &self,
        id: &ApprovalId,
        now: i64,
    ) -> Result<Option<i64>, StoreError> {
        let id = id.clone();
        self.run_at(now, move |inner| {
            inner.read(|txn| {
                Ok(AGENT_WAITING
                    .get_live(txn, id.as_str(), now)?
                    .and_then(|b| seconds(&b)))
            })
        })
        .await
    }

    /// `NotFound("approval")` for an unknown id.
    async fn collect_token(&self, id: &ApprovalId, now: i64) -> Result<Collection, StoreError> {
        let id = id.clone();
        self.run_at(now, move |inner| {
            inner.write(|txn| {
                let mut approvals = ApprovalTables::open(txn)?;
                let mut approval = approvals
                    .get(id.as_str())?
                    .ok_or(StoreError::NotFound("approval"))?;
                let deliverable = approval.status(now) == ApprovalStatus::Approved;
                match &mut approval.state {
                    ApprovalState::Approved {
                        token_delivered_at: delivered @ None,
                        ..
                    } if deliverable => {
                        let agents = txn.open_table(AGENTS).map_err(unavailable)?;
                        let status = get_record::<AgentRecord>(&agents, &approval.agent)?
                            .map_or(AgentStatus::Revoked, |agent| agent.status);
                        if status != AgentStatus::Active {
                            return Err(StoreError::AgentInactive(status));
                        }
                        *delivered = Some(now);
                    }
                    _ => return Ok(Outcome::Unchanged(Collection::Unchanged(approval))),
                }
                approvals.replace(&approval)?;
                Ok(Outcome::Changed(Collection::Deliver(approval)))
            })
        })
        .await
    }

    /// Reads the pending index: every request stored as pending, checked against the clock
    /// (entries of requests that expired stay in the index until their agent's next request).
    async fn pending_count(&self, now: i64) -> Result<usize, StoreError> {
        self.run_at(now, move |inner| {
            inner.read(|txn| {
                let approvals = txn.open_table(APPROVALS).map_err(unavailable)?;
                let index = txn.open_table(PENDING_BY_AGENT).map_err(unavailable)?;
                let mut count = 0;
                for item in index.iter().map_err(unavailable)? {
                    let (key, _) = item.map_err(unavailable)?;
                    let (_, id) = key.value();
                    let approval = get_record::<ApprovalRecord>(&approvals, id)?;
                    if approval.is_some_and(|a| a.status(now) == ApprovalStatus::Pending) {
                        count += 1;
                    }
                }
                Ok(count)
            })
        })
        .await
    }

    async fn approvals(
        &self,
        user: &UserId,
        filter: ApprovalFilter,
        now: i64,
        limit: usize,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        let user = user.clone();
        self.run_at(now, move |inner| {
            inner.read(|txn| {
                let approvals = txn.open_table(APPROVALS).map_err(unavailable)?;
                let index = match filter {
                    ApprovalFilter::Pending => PENDING_BY_USER,
                    ApprovalFilter::History => APPROVALS_BY_USER,
                };
                let index = txn.open_table(index).map_err(unavailable)?;
                let mut out = Vec::new();
                if limit == 0 {
                    return Ok(out);
                }
                newest_first(&index, user.as_str(), |id| {
                    let Some(approval) = get_record::<ApprovalRecord>(&approvals, &id)? else {
                        return Ok(true);
                    };
                    let pending = approval.status(now) == ApprovalStatus::Pending;
                    if pending == (filter == ApprovalFilter::Pending) {
                        out.push(approval);
                    }
                    Ok(out.len() < limit)
                })?;
                Ok(out)
            })
        })
        .await
    }

    async fn remember_jti(&self, key: &str, expires_at: i64, now: i64) -> Result<bool, StoreError> {
        let key = key.to_owned();
        self.run_at(now, move |inner| {
            inner.write(|txn| {
                let mut jtis = JTIS.open(txn)?;
                if jtis.get(&key)?.is_some_and(|(at, _)| now < at) {
                    return Ok(Outcome::Unchanged(false));
                }
                jtis.put(&key, expires_at, &[])?;
                // Pruned with this call's own `now`, never a later one seen elsewhere: deleting
                // a `jti` early would accept a replay.
                jtis.prune(now)?;
                Ok(Outcome::Changed(true))
            })
        })
        .await
    }

    async fn count_in_window(
        &self,
        key: &str,
        window_start: i64,
        window: i64,
    ) -> Result<u64, StoreError> {
        let key = key.to_owned();
        self.run(move |inner| {
            inner.write(|txn| {
                let mut windows = txn.open_table(RATE_WINDOWS).map_err(unavailable)?;
                let mut by_end = txn.open_table(RATE_WINDOWS_BY_END).map_err(unavailable)?;
                let before = windows
                    .get((key.as_str(), window_start))
                    .map_err(unavailable)?
                    .map(|count| count.value());
                let count = before.unwrap_or(0).saturating_add(1);
                windows
                    .insert((key.as_str(), window_start), count)
                    .map_err(unavailable)?;
                if before.is_none() {
                    by_end
                        .insert(
                            (
                                window_start.saturating_add(window),
                                key.as_str(),
                                window_start,
                            ),
                            (),
                        )
                        .map_err(unavailable)?;
                }
                // Windows that ended by the start of this one are over whatever their length.
                let mut ended = Vec::new();
                for item in by_end
                    .range(..(window_start.saturating_add(1), "", i64::MIN))
                    .map_err(unavailable)?
                    .take(PRUNE_BATCH)
                {
                    let (entry, _) = item.map_err(unavailable)?;
                    let (end, key, start) = entry.value();
                    ended.push((end, key.to_owned(), start));
                }
                for (end, key, start) in &ended {
                    by_end
                        .remove((*end, key.as_str(), *start))
                        .map_err(unavailable)?;
                    windows
                        .remove((key.as_str(), *start))
                        .map_err(unavailable)?;
                }
                Ok(Outcome::Changed(count))
            })
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|inner| {
            inner.read(|txn| {
                let meta = txn.open_table(META).map_err(unavailable)?;
                meta.get("schema").map_err(unavailable)?;
                Ok(())
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, EmbeddedStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("handsign.redb")).unwrap();
        (dir, store)
    }

    fn entries(store: &EmbeddedStore, expiring: Expiring) -> (u64, u64) {
        store
            .inner
            .read(|txn| {
                let entries = txn.open_table(expiring.entries).map_err(unavailable)?;
                let by_expiry = txn.open_table(expiring.by_expiry).map_err(unavailable)?;
                Ok((
                    entries.len().map_err(unavailable)?,
                    by_expiry.len().map_err(unavailable)?,
                ))
            })
            .unwrap()
    }

    const T: i64 = 1_800_000_000;

    #[tokio::test]
    async fn expired_ceremonies_sessions_and_jtis_are_cleaned_up() {
        let (_dir, store) = open();
        for i in 0..100 {
            store
                .put_ceremony(&format!("c{i}"), b"s", T + 10)
                .await
                .unwrap();
            let session = SessionRecord {
                id_sha256: format!("s{i}"),
                user: UserId::parse("alice").unwrap(),
                expires_at: T + 10,
            };
            store.put_session(&session).await.unwrap();
            assert!(
                store
                    .remember_jti(&format!("j{i}"), T + 10, T)
                    .await
                    .unwrap()
            );
        }
        assert_eq!(entries(&store, CEREMONIES), (100, 100));
        assert_eq!(entries(&store, SESSIONS), (100, 100));
        assert_eq!(entries(&store, JTIS), (100, 100));

        // Each write after expiry removes a batch; the live entry it adds stays.
        for i in 0..4 {
            store.take_ceremony("none", T + 10).await.unwrap();
            let live = format!("live{i}");
            assert!(store.remember_jti(&live, T + 100, T + 10).await.unwrap());
        }
        store.put_ceremony("live", b"s", T + 100).await.unwrap();
        for i in 0..4 {
            let session = SessionRecord {
                id_sha256: format!("live{i}"),
                user: UserId::parse("alice").unwrap(),
                expires_at: T + 100,
            };
            store.put_session(&session).await.unwrap();
        }
        assert_eq!(entries(&store, CEREMONIES), (1, 1));
        assert_eq!(entries(&store, SESSIONS), (4, 4));
        assert_eq!(entries(&store, JTIS), (4, 4));
        assert!(!store.remember_jti("live0", T + 100, T + 11).await.unwrap());
    }

    #[tokio::test]
    async fn ended_rate_windows_are_cleaned_up() {
        let (_dir, store) = open();
        for i in 0..100 {
            store
                .count_in_window(&format!("k{i}"), T, 60)
                .await
                .unwrap();
        }
        for _ in 0..4 {
            store.count_in_window("k", T + 60, 60).await.unwrap();
        }
        let (windows, ends) = store
            .inner
            .read(|txn| {
                let windows = txn.open_table(RATE_WINDOWS).map_err(unavailable)?;
                let ends = txn.open_table(RATE_WINDOWS_BY_END).map_err(unavailable)?;
                Ok((
                    windows.len().map_err(unavailable)?,
                    ends.len().map_err(unavailable)?,
                ))
            })
            .unwrap();
        assert_eq!((windows, ends), (1, 1));
    }
}
