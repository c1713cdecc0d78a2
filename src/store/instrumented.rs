//! A [`Store`] that measures another: each operation's duration, and its failures when the store
//! is unavailable, recorded in the gateway's [`Metrics`] under the operation's method name.
//!
//! Only [`StoreError::Unavailable`] counts as an error. The other errors are the store's answers
//! (a request no longer pending, a name taken) and say nothing about its health.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::{ApprovalFilter, Collection, Decision, Store, StoreError};
use crate::domain::{
    AgentRecord, AgentStatus, ApprovalId, ApprovalRecord, InvitationRecord, PasskeyRecord,
    PushSubscriptionRecord, SessionRecord, UserId, UserRecord,
};
use crate::metrics::Metrics;

/// Delegates every operation to `inner` and records it in `metrics`.
#[derive(Clone)]
pub struct InstrumentedStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl InstrumentedStore {
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        InstrumentedStore { inner, metrics }
    }
}

/// Implements [`Store`] for [`InstrumentedStore`] from the list of its methods, and
/// [`OPERATIONS`] from their names. A method missing from the list does not compile.
macro_rules! instrumented {
    ($(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ok:ty;)*) => {
        /// The names of the store's operations, as the metrics label them.
        pub const OPERATIONS: &[&str] = &[$(stringify!($name),)*];

        #[async_trait]
        impl Store for InstrumentedStore {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> Result<$ok, StoreError> {
                    let started = Instant::now();
                    let result = self.inner.$name($($arg),*).await;
                    self.metrics.store_operation(
                        stringify!($name),
                        started.elapsed(),
                        matches!(result, Err(StoreError::Unavailable(_))),
                    );
                    result
                }
            )*
        }
    };
}

instrumented! {
    fn count_users(&self) -> usize;
    fn user(&self, id: &UserId) -> Option<UserRecord>;
    fn users(&self) -> Vec<UserRecord>;
    fn put_invitation(&self, invitation: &InvitationRecord) -> ();
    fn invitation(&self, code_sha256: &str, now: i64) -> Option<InvitationRecord>;
    fn redeem_invitation(
        &self,
        code_sha256: &str,
        user: &UserRecord,
        passkey: &PasskeyRecord,
        now: i64
    ) -> ();
    fn add_passkey(&self, passkey: &PasskeyRecord) -> ();
    fn set_admin(&self, user: &UserId, admin: bool) -> UserRecord;
    fn passkeys(&self, user: &UserId) -> Vec<PasskeyRecord>;
    fn passkey(&self, credential_id: &str) -> Option<PasskeyRecord>;
    fn update_passkey(&self, passkey: &PasskeyRecord) -> ();
    fn delete_passkey(&self, user: &UserId, credential_id: &str) -> ();
    fn add_push_subscription(&self, subscription: &PushSubscriptionRecord) -> ();
    fn push_subscriptions(&self, user: &UserId) -> Vec<PushSubscriptionRecord>;
    fn delete_push_subscription(&self, user: &UserId, id: &str) -> ();
    fn put_session(&self, session: &SessionRecord) -> ();
    fn session(&self, id_sha256: &str, now: i64) -> Option<SessionRecord>;
    fn delete_session(&self, id_sha256: &str) -> ();
    fn put_ceremony(&self, id: &str, state: &[u8], expires_at: i64) -> ();
    fn take_ceremony(&self, id: &str, now: i64) -> Option<Vec<u8>>;
    fn add_agent(&self, agent: &AgentRecord) -> ();
    fn add_enrolling_agent(&self, agent: &AgentRecord, max_enrolling: usize, now: i64) -> ();
    fn agent(&self, id: &str) -> Option<AgentRecord>;
    fn agents(&self, user: Option<&UserId>) -> Vec<AgentRecord>;
    fn set_agent_status(&self, id: &str, status: AgentStatus, now: i64) -> AgentRecord;
    fn create_approval(&self, approval: &ApprovalRecord, max_pending: usize, now: i64) -> ();
    fn approval(&self, id: &ApprovalId) -> Option<ApprovalRecord>;
    fn decide(&self, id: &ApprovalId, decision: Decision, now: i64) -> ApprovalRecord;
    fn cancel_approval(&self, id: &ApprovalId, agent: &str, reason: &str, now: i64) -> ApprovalRecord;
    fn note_agent_waiting(&self, id: &ApprovalId, until: i64, expires_at: i64) -> ();
    fn agent_waiting_until(&self, id: &ApprovalId, now: i64) -> Option<i64>;
    fn collect_token(&self, id: &ApprovalId, now: i64) -> Collection;
    fn pending_count(&self, now: i64) -> usize;
    fn approvals(
        &self,
        user: &UserId,
        filter: ApprovalFilter,
        now: i64,
        limit: usize
    ) -> Vec<ApprovalRecord>;
    fn remember_jti(&self, key: &str, expires_at: i64, now: i64) -> bool;
    fn count_in_window(&self, key: &str, window_start: i64, window: i64) -> u64;
    fn ping(&self) -> ();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;

    fn instrumented(inner: impl Store) -> (InstrumentedStore, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new(OPERATIONS));
        (
            InstrumentedStore::new(Arc::new(inner), metrics.clone()),
            metrics,
        )
    }

    /// The value of the sample `name` exactly (with its labels) in `text`.
    fn sample(text: &str, name: &str) -> Option<f64> {
        text.lines().find_map(|line| {
            let value = line.strip_prefix(name)?.strip_prefix(' ')?;
            value.parse().ok()
        })
    }

    #[tokio::test]
    async fn an_unavailable_store_counts_an_error_for_that_operation_only() {
        let mut redis = handsign_redis_harness::RedisServer::start().await;
        let target = crate::store::redis::RedisTarget::parse(redis.url()).unwrap();
        let redis_store = crate::store::redis::RedisStore::connect(&target, "test")
            .await
            .unwrap();
        let (store, metrics) = instrumented(redis_store);
        let id = ApprovalId::generate().unwrap();

        // A refusal is an answer, not a failure; a healthy ping is no error either.
        let refused = store.collect_token(&id, 0).await;
        assert!(
            matches!(refused, Err(StoreError::NotFound(_))),
            "{refused:?}"
        );
        store.ping().await.unwrap();

        redis.stop();
        let result = store.approval(&id).await;
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "{result:?}"
        );
        assert!(store.remember_jti("k", 10, 0).await.is_err());
        assert!(store.remember_jti("k", 10, 0).await.is_err());

        let text = metrics.encode(None).unwrap();
        let errors = |operation: &str| {
            sample(
                &text,
                &format!("handsign_store_errors_total{{operation=\"{operation}\"}}"),
            )
        };
        assert_eq!(errors("approval"), Some(1.0), "{text}");
        assert_eq!(errors("remember_jti"), Some(2.0), "{text}");
        assert_eq!(errors("collect_token"), Some(0.0), "{text}");
        assert_eq!(errors("ping"), Some(0.0), "{text}");
        assert_eq!(errors("count_users"), Some(0.0), "{text}");
        // Every call is timed, failed or not.
        let calls = |operation: &str| {
            sample(
                &text,
                &format!(
                    "handsign_store_operation_duration_seconds_count{{operation=\"{operation}\"}}"
                ),
            )
        };
        assert_eq!(calls("remember_jti"), Some(2.0), "{text}");
        assert_eq!(calls("collect_token"), Some(1.0), "{text}");
        assert_eq!(calls("ping"), Some(1.0), "{text}");
        assert_eq!(calls("count_users"), None, "never called: {text}");
    }

    #[tokio::test]
    async fn answers_pass_through_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let (store, metrics) =
            instrumented(EmbeddedStore::open(&dir.path().join("handsign.redb")).unwrap());
        assert_eq!(store.count_users().await.unwrap(), 0);
        assert!(store.remember_jti("k", 10, 0).await.unwrap());
        assert!(!store.remember_jti("k", 10, 1).await.unwrap());
        assert_eq!(store.pending_count(0).await.unwrap(), 0);
        let text = metrics.encode(None).unwrap();
        assert_eq!(
            sample(
                &text,
                "handsign_store_operation_duration_seconds_count{operation=\"remember_jti\"}"
            ),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                "handsign_store_errors_total{operation=\"remember_jti\"}"
            ),
            Some(0.0)
        );
    }

    #[test]
    fn every_operation_is_named_once() {
        let mut names = OPERATIONS.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), OPERATIONS.len());
        assert!(OPERATIONS.contains(&"pending_count"));
    }
}
