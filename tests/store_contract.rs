//! The storage contract: what every [`Store`] must do, above all the operations that must happen
//! once (taking a ceremony, redeeming an invitation, deciding, delivering a token, remembering a
//! `jti`), also when many callers race.
//!
//! The suite in [`contract`] is written over `&dyn Store`, so each implementation runs the same
//! checks: [`embedded`] runs it against [`EmbeddedStore`] in a temporary directory, with the
//! checks only a file-backed store has (reopening, the file lock) beside it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use handsign::domain::{
    AGENT_WAITING_STEP_SECS, AgentRecord, AgentStatus, ApprovalId, ApprovalKind, ApprovalRecord,
    ApprovalState, ApprovalStatus, COLLECT_WITHIN_SECS, InvitationRecord, PasskeyRecord,
    SessionRecord, UserId, UserRecord,
};
use handsign::store::{self, ApprovalFilter, Collection, Store, StoreError};
use handsign_protocol::canonical::Limits;
use handsign_protocol::keys::SigningKey;
use handsign_protocol::params::CanonicalParams;
use handsign_protocol::receipt::{Credential, Evidence, RECEIPT_VERSION, ReceiptBody};
use handsign_protocol::statement::{Decision, STATEMENT_VERSION, Statement};
use webauthn_authenticator_rs::WebauthnAuthenticator as _;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::{Url, WebauthnBuilder};

const NOW: i64 = 1_800_000_000;
/// How many callers race in the concurrency checks, and how many times each race is run: one
/// race can come out right by luck, twenty in a row do not.
const RACERS: usize = 16;
const ROUNDS: usize = 20;

// Records.

fn user_id(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

fn user(name: &str) -> UserRecord {
    UserRecord {
        id: user_id(name),
        created_at: NOW,
        admin: false,
    }
}

/// A passkey from a real registration with a software authenticator, so the stored
/// `webauthn_rs` value is one the gateway would hold.
fn passkey(owner: &str) -> PasskeyRecord {
    let origin = Url::parse("http://localhost:8080").unwrap();
    let webauthn = WebauthnBuilder::new("localhost", &origin)
        .unwrap()
        .build()
        .unwrap();
    let (ccr, registration) = webauthn
        .start_passkey_registration(uuid::Uuid::new_v4(), owner, owner, None)
        .unwrap();
    let credential = SoftPasskey::new(true).do_registration(origin, ccr).unwrap();
    let passkey = webauthn
        .finish_passkey_registration(&credential, &registration)
        .unwrap();
    PasskeyRecord {
        credential_id: handsign_protocol::base64url::encode(passkey.cred_id()),
        user: user_id(owner),
        name: "phone".into(),
        passkey,
        public_key_cose: "pQECAyYgASFYIA".into(),
        created_at: NOW,
        last_used_at: None,
    }
}

fn invitation(code: &str, for_user: Option<&str>, expires_at: i64) -> InvitationRecord {
    InvitationRecord {
        code_sha256: code.into(),
        user: for_user.map(user_id),
        expires_at,
    }
}

fn agent(id: &str, owner: &str, created_at: i64) -> AgentRecord {
    AgentRecord {
        id: id.into(),
        name: format!("agent {id}"),
        user: user_id(owner),
        public_jwk: None,
        status: AgentStatus::Active,
        created_at,
        enrollment_expires_at: None,
    }
}

/// A pending request of `agent` for `owner`, created at `created_at`, waiting `ttl` seconds.
fn approval(agent: &str, owner: &str, created_at: i64, ttl: i64) -> ApprovalRecord {
    let params = CanonicalParams::parse(br#"{"to":"NYC"}"#, &Limits::default()).unwrap();
    ApprovalRecord {
        id: ApprovalId::generate().unwrap(),
        kind: ApprovalKind::Action,
        agent: agent.into(),
        agent_name: format!("agent {agent}"),
        user: user_id(owner),
        audience: "https://travel.example".into(),
        action: "flights.book".into(),
        params: params.as_str().into(),
        params_sha256: params.hash(),
        params_order: Default::default(),
        message: Some("book it".into()),
        code: "4711".into(),
        nonce: "bm9uY2U".into(),
        created_at,
        expires_at: created_at + ttl,
        state: ApprovalState::Pending,
    }
}

/// A pending enrollment request of the pending `agent` of `owner`.
fn enrollment(agent: &str, owner: &str, created_at: i64, ttl: i64) -> ApprovalRecord {
    ApprovalRecord {
        kind: ApprovalKind::Enrollment,
        action: "enroll".into(),
        ..approval(agent, owner, created_at, ttl)
    }
}

/// A decision with a signed receipt over dummy evidence (stores do not verify receipts).
fn decision(approval: &ApprovalRecord, decision: Decision, at: i64) -> store::Decision {
    let body = ReceiptBody {
        v: RECEIPT_VERSION.into(),
        statement: Statement {
            v: STATEMENT_VERSION.into(),
            id: approval.id.to_string(),
            iss: "http://localhost:8080".into(),
            sub: approval.user.to_string(),
            act: approval.agent.clone(),
            aud: approval.audience.clone(),
            action: approval.action.clone(),
            params_sha256: approval.params_sha256.clone(),
            decision,
            nonce: approval.nonce.clone(),
            iat: approval.created_at,
        },
        params: serde_json::from_str(&approval.params).unwrap(),
        evidence: Evidence {
            credential_id: "Y3JlZA".into(),
            authenticator_data: "YXV0aA".into(),
            client_data_json: "Y2xpZW50".into(),
            signature: "c2ln".into(),
            user_handle: None,
        },
        credential: Credential {
            public_key_cose: "pQECAyYgASFYIA".into(),
            public_key_jwk: serde_json::json!({"kty": "EC"}),
        },
        rp_id: "localhost".into(),
        origins: vec!["http://localhost:8080".into()],
    };
    let receipt = Box::new(body.sign(&SigningKey::from_seed(&[1; 32])).unwrap());
    match decision {
        Decision::Approve => store::Decision::Approved {
            decided_at: at,
            receipt,
        },
        Decision::Deny => store::Decision::Denied {
            decided_at: at,
            receipt,
        },
    }
}

/// Polls every future together on this task until all are done. The store's work runs
/// elsewhere (the embedded store's on blocking threads, a network store's on its server), so
/// the operations really overlap.
async fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => done = false,
                }
            }
        }
        if done { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}

/// A user `name` with one passkey, through an invitation.
async fn add_user(store: &dyn Store, name: &str) -> PasskeyRecord {
    let code = format!("invite-{name}");
    store
        .put_invitation(&invitation(&code, Some(name), NOW + 3600))
        .await
        .unwrap();
    let key = passkey(name);
    store
        .redeem_invitation(&code, &user(name), &key, NOW)
        .await
        .unwrap();
    key
}

/// Adds the agent `id` of `owner`, created at `NOW` in `status`, and returns its id.
async fn add_agent(store: &dyn Store, id: &str, owner: &str, status: AgentStatus) -> String {
    let record = AgentRecord {
        status,
        ..agent(id, owner, NOW)
    };
    store.add_agent(&record).await.unwrap();
    record.id
}

/// Adds the active agent `id` of `owner`, which may ask for actions, and returns its id.
async fn active_agent(store: &dyn Store, id: &str, owner: &str) -> String {
    add_agent(store, id, owner, AgentStatus::Active).await
}

fn ids(approvals: &[ApprovalRecord]) -> Vec<ApprovalId> {
    approvals.iter().map(|a| a.id.clone()).collect()
}

/// Every check, each an `async fn(&dyn Store)` on an empty store.
mod contract {
    use super::*;

    pub async fn ping_answers(store: &dyn Store) {
        store.ping().await.unwrap();
    }

    pub async fn setup_code_creates_the_first_user_once(store: &dyn Store) {
        assert_eq!(store.count_users().await.unwrap(), 0);
        store
            .put_invitation(&invitation("setup", None, NOW + 3600))
            .await
            .unwrap();
        assert_eq!(
            store.invitation("setup", NOW).await.unwrap(),
            Some(invitation("setup", None, NOW + 3600))
        );
        let key = passkey("alice");
        store
            .redeem_invitation("setup", &user("alice"), &key, NOW)
            .await
            .unwrap();

        assert_eq!(store.count_users().await.unwrap(), 1);
        assert_eq!(
            store.user(&user_id("alice")).await.unwrap(),
            Some(user("alice"))
        );
        assert_eq!(store.users().await.unwrap(), vec![user("alice")]);
        let stored = store.passkey(&key.credential_id).await.unwrap().unwrap();
        assert_eq!(stored.user, user_id("alice"));
        assert_eq!(stored.passkey.cred_id(), key.passkey.cred_id());

        // Single use: the code is gone, and a second redemption adds nobody.
        assert_eq!(store.invitation("setup", NOW).await.unwrap(), None);
        let again = store
            .redeem_invitation("setup", &user("bob"), &passkey("bob"), NOW)
            .await;
        assert!(
            matches!(again, Err(StoreError::InvalidInvitation)),
            "{again:?}"
        );
        assert_eq!(store.count_users().await.unwrap(), 1);
    }

    pub async fn invitations_expire_and_are_replaced(store: &dyn Store) {
        store
            .put_invitation(&invitation("code", Some("bob"), NOW + 60))
            .await
            .unwrap();
        assert!(store.invitation("code", NOW + 59).await.unwrap().is_some());
        assert_eq!(store.invitation("code", NOW + 60).await.unwrap(), None);
        assert_eq!(store.invitation("unknown", NOW).await.unwrap(), None);

        store
            .put_invitation(&invitation("code", Some("bob"), NOW + 600))
            .await
            .unwrap();
        assert_eq!(
            store.invitation("code", NOW + 60).await.unwrap(),
            Some(invitation("code", Some("bob"), NOW + 600))
        );
    }

    pub async fn redeem_refuses_an_expired_code(store: &dyn Store) {
        store
            .put_invitation(&invitation("code", None, NOW + 60))
            .await
            .unwrap();
        let result = store
            .redeem_invitation("code", &user("alice"), &passkey("alice"), NOW + 60)
            .await;
        assert!(
            matches!(result, Err(StoreError::InvalidInvitation)),
            "{result:?}"
        );
        let unknown = store
            .redeem_invitation("other", &user("alice"), &passkey("alice"), NOW)
            .await;
        assert!(
            matches!(unknown, Err(StoreError::InvalidInvitation)),
            "{unknown:?}"
        );
        assert_eq!(store.count_users().await.unwrap(), 0);
    }

    pub async fn an_invitation_is_for_its_user_only(store: &dyn Store) {
        store
            .put_invitation(&invitation("code", Some("bob"), NOW + 3600))
            .await
            .unwrap();
        let result = store
            .redeem_invitation("code", &user("carol"), &passkey("carol"), NOW)
            .await;
        assert!(
            matches!(result, Err(StoreError::InvalidInvitation)),
            "{result:?}"
        );
        // A passkey of someone else, under the invited name, is refused too.
        let result = store
            .redeem_invitation("code", &user("bob"), &passkey("carol"), NOW)
            .await;
        assert!(
            matches!(result, Err(StoreError::InvalidInvitation)),
            "{result:?}"
        );
        assert_eq!(store.user(&user_id("carol")).await.unwrap(), None);

        // The refusals did not use it up.
        store
            .redeem_invitation("code", &user("bob"), &passkey("bob"), NOW)
            .await
            .unwrap();
        assert!(store.user(&user_id("bob")).await.unwrap().is_some());
    }

    pub async fn an_invitation_never_adds_a_passkey_to_an_existing_user(store: &dyn Store) {
        let first = add_user(store, "bob").await;
        store
            .put_invitation(&invitation("again", Some("bob"), NOW + 3600))
            .await
            .unwrap();
        let second = passkey("bob");
        let result = store
            .redeem_invitation("again", &user("bob"), &second, NOW)
            .await;
        assert!(
            matches!(result, Err(StoreError::AlreadyExists("user"))),
            "{result:?}"
        );
        let listed: Vec<String> = store
            .passkeys(&user_id("bob"))
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.credential_id)
            .collect();
        assert_eq!(listed, [first.credential_id]);
        assert!(
            store
                .passkey(&second.credential_id)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(store.count_users().await.unwrap(), 1);
    }

    pub async fn no_setup_code_works_once_a_user_exists(store: &dyn Store) {
        add_user(store, "alice").await;
        store
            .put_invitation(&invitation("setup", None, NOW + 3600))
            .await
            .unwrap();
        for name in ["alice", "bob"] {
            let intruder = passkey(name);
            let result = store
                .redeem_invitation("setup", &user(name), &intruder, NOW)
                .await;
            assert!(
                matches!(result, Err(StoreError::InvalidInvitation)),
                "{name}: {result:?}"
            );
            assert!(
                store
                    .passkey(&intruder.credential_id)
                    .await
                    .unwrap()
                    .is_none()
            );
        }
        assert_eq!(store.passkeys(&user_id("alice")).await.unwrap().len(), 1);
        assert_eq!(store.count_users().await.unwrap(), 1);
    }

    pub async fn users_are_made_admins_and_back(store: &dyn Store) {
        add_user(store, "carol").await;
        assert!(!store.user(&user_id("carol")).await.unwrap().unwrap().admin);
        let made = store.set_admin(&user_id("carol"), true).await.unwrap();
        assert!(made.admin);
        assert!(store.user(&user_id("carol")).await.unwrap().unwrap().admin);
        store.set_admin(&user_id("carol"), false).await.unwrap();
        assert!(!store.user(&user_id("carol")).await.unwrap().unwrap().admin);
        let missing = store.set_admin(&user_id("nobody"), true).await;
        assert!(
            matches!(missing, Err(StoreError::NotFound("user"))),
            "{missing:?}"
        );
    }

    pub async fn concurrent_redemptions_of_one_code_succeed_once(store: &dyn Store) {
        for round in 0..ROUNDS {
            let code = format!("invite-{round}");
            let name = format!("u{round}");
            store
                .put_invitation(&invitation(&code, Some(&name), NOW + 3600))
                .await
                .unwrap();
            let people: Vec<(UserRecord, PasskeyRecord)> =
                (0..RACERS).map(|_| (user(&name), passkey(&name))).collect();
            let results = join_all(
                people
                    .iter()
                    .map(|(u, key)| store.redeem_invitation(&code, u, key, NOW)),
            )
            .await;
            let ok = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(ok, 1, "round {round}: {results:?}");
            assert!(
                results.iter().all(|r| matches!(
                    r,
                    Ok(()) | Err(StoreError::InvalidInvitation | StoreError::AlreadyExists("user"))
                )),
                "{results:?}"
            );
            assert_eq!(store.passkeys(&user_id(&name)).await.unwrap().len(), 1);
        }
        assert_eq!(store.count_users().await.unwrap(), ROUNDS);
    }

    pub async fn passkeys_belong_to_one_user(store: &dyn Store) {
        let alice_key = add_user(store, "alice").await;
        let bob_key = add_user(store, "bob").await;

        let orphan = store.add_passkey(&passkey("nobody")).await;
        assert!(
            matches!(orphan, Err(StoreError::NotFound("user"))),
            "{orphan:?}"
        );
        let twice = store.add_passkey(&alice_key).await;
        assert!(
            matches!(twice, Err(StoreError::AlreadyExists("passkey"))),
            "{twice:?}"
        );

        let laptop = passkey("alice");
        store.add_passkey(&laptop).await.unwrap();
        let mut listed: Vec<String> = store
            .passkeys(&user_id("alice"))
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.credential_id)
            .collect();
        listed.sort();
        let mut expected = vec![
            alice_key.credential_id.clone(),
            laptop.credential_id.clone(),
        ];
        expected.sort();
        assert_eq!(listed, expected);
        assert_eq!(store.passkeys(&user_id("carol")).await.unwrap().len(), 0);

        let mut used = laptop.clone();
        used.last_used_at = Some(NOW + 5);
        store.update_passkey(&used).await.unwrap();
        assert_eq!(
            store
                .passkey(&laptop.credential_id)
                .await
                .unwrap()
                .unwrap()
                .last_used_at,
            Some(NOW + 5)
        );
        let unknown = store.update_passkey(&passkey("alice")).await;
        assert!(
            matches!(unknown, Err(StoreError::NotFound("passkey"))),
            "{unknown:?}"
        );

        // Nobody deletes another user's passkey.
        let foreign = store
            .delete_passkey(&user_id("bob"), &laptop.credential_id)
            .await;
        assert!(
            matches!(foreign, Err(StoreError::NotFound("passkey"))),
            "{foreign:?}"
        );
        store
            .delete_passkey(&user_id("alice"), &laptop.credential_id)
            .await
            .unwrap();
        assert!(
            store
                .passkey(&laptop.credential_id)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            ids_of_keys(store.passkeys(&user_id("alice")).await.unwrap()),
            vec![alice_key.credential_id]
        );
        assert_eq!(
            ids_of_keys(store.passkeys(&user_id("bob")).await.unwrap()),
            vec![bob_key.credential_id]
        );
    }

    fn ids_of_keys(keys: Vec<PasskeyRecord>) -> Vec<String> {
        keys.into_iter().map(|k| k.credential_id).collect()
    }

    pub async fn devices_belong_to_one_user_and_resubscribing_replaces(store: &dyn Store) {
        let alice = UserId::parse("alice").unwrap();
        let bob = UserId::parse("bob").unwrap();
        // The browser's keys from RFC 8291's example; only the endpoint tells devices apart.
        let device = |id: &str, user: &UserId, endpoint: &str| {
            handsign::domain::PushSubscriptionRecord {
                id: id.into(),
                user: user.clone(),
                name: format!("{id} phone"),
                subscription: serde_json::from_value(serde_json::json!({
                    "endpoint": endpoint,
                    "p256dh": "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
                    "auth": "BTBZMqHH6r4Tts7J_aSIgg",
                }))
                .unwrap(),
                created_at: 1,
            }
        };
        store
            .add_push_subscription(&device("a1", &alice, "https://push.example/1"))
            .await
            .unwrap();
        store
            .add_push_subscription(&device("a2", &alice, "https://push.example/2"))
            .await
            .unwrap();
        store
            .add_push_subscription(&device("b1", &bob, "https://push.example/3"))
            .await
            .unwrap();
        let ids = |devices: Vec<handsign::domain::PushSubscriptionRecord>| {
            let mut ids: Vec<String> = devices.into_iter().map(|d| d.id).collect();
            ids.sort();
            ids
        };
        assert_eq!(
            ids(store.push_subscriptions(&alice).await.unwrap()),
            ["a1", "a2"]
        );

        // The same browser subscribing again replaces its old subscription.
        store
            .add_push_subscription(&device("a3", &alice, "https://push.example/1"))
            .await
            .unwrap();
        assert_eq!(
            ids(store.push_subscriptions(&alice).await.unwrap()),
            ["a2", "a3"]
        );

        // Nobody removes another user's device.
        assert!(matches!(
            store.delete_push_subscription(&bob, "a2").await,
            Err(StoreError::NotFound("device"))
        ));
        store.delete_push_subscription(&alice, "a2").await.unwrap();
        assert_eq!(ids(store.push_subscriptions(&alice).await.unwrap()), ["a3"]);
        assert_eq!(ids(store.push_subscriptions(&bob).await.unwrap()), ["b1"]);
    }

    pub async fn sessions_expire_and_can_be_deleted(store: &dyn Store) {
        let session = SessionRecord {
            id_sha256: "s1".into(),
            user: user_id("alice"),
            expires_at: NOW + 100,
        };
        store.put_session(&session).await.unwrap();
        assert_eq!(
            store.session("s1", NOW + 99).await.unwrap(),
            Some(session.clone())
        );
        assert_eq!(store.session("s1", NOW + 100).await.unwrap(), None);
        assert_eq!(store.session("s2", NOW).await.unwrap(), None);

        store.delete_session("s1").await.unwrap();
        assert_eq!(store.session("s1", NOW).await.unwrap(), None);
        store.delete_session("s1").await.unwrap();
    }

    pub async fn a_ceremony_is_taken_once(store: &dyn Store) {
        store.put_ceremony("c1", b"state", NOW + 300).await.unwrap();
        assert_eq!(
            store.take_ceremony("c1", NOW).await.unwrap(),
            Some(b"state".to_vec())
        );
        assert_eq!(store.take_ceremony("c1", NOW).await.unwrap(), None);
        assert_eq!(store.take_ceremony("unknown", NOW).await.unwrap(), None);

        store.put_ceremony("c2", b"old", NOW + 300).await.unwrap();
        assert_eq!(store.take_ceremony("c2", NOW + 300).await.unwrap(), None);
        // An expired one is not handed out later either.
        assert_eq!(store.take_ceremony("c2", NOW).await.unwrap(), None);
    }

    pub async fn concurrent_takers_get_a_ceremony_once(store: &dyn Store) {
        for round in 0..ROUNDS {
            let id = format!("c{round}");
            store.put_ceremony(&id, b"state", NOW + 300).await.unwrap();
            let results = join_all((0..RACERS).map(|_| store.take_ceremony(&id, NOW))).await;
            let taken = results
                .iter()
                .filter(|r| matches!(r, Ok(Some(state)) if state == b"state"))
                .count();
            assert_eq!(taken, 1, "round {round}: {results:?}");
            assert!(results.iter().all(Result::is_ok), "{results:?}");
        }
    }

    pub async fn agents_are_listed_by_user(store: &dyn Store) {
        store.add_agent(&agent("a1", "alice", NOW)).await.unwrap();
        store.add_agent(&agent("b1", "bob", NOW + 1)).await.unwrap();
        store
            .add_agent(&agent("a2", "alice", NOW + 2))
            .await
            .unwrap();
        let twice = store.add_agent(&agent("a1", "bob", NOW)).await;
        assert!(
            matches!(twice, Err(StoreError::AlreadyExists("agent"))),
            "{twice:?}"
        );

        assert_eq!(
            store.agent("a1").await.unwrap(),
            Some(agent("a1", "alice", NOW))
        );
        assert_eq!(store.agent("zz").await.unwrap(), None);
        let alice: Vec<String> = store
            .agents(Some(&user_id("alice")))
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.id)
            .collect();
        assert_eq!(alice, ["a1", "a2"]);
        assert_eq!(store.agents(None).await.unwrap().len(), 3);
        assert!(
            store
                .agents(Some(&user_id("carol")))
                .await
                .unwrap()
                .is_empty()
        );

        let suspended = store
            .set_agent_status("a2", AgentStatus::Suspended, NOW)
            .await
            .unwrap();
        assert_eq!(suspended.status, AgentStatus::Suspended);
        assert_eq!(
            store.agent("a2").await.unwrap().unwrap().status,
            AgentStatus::Suspended
        );
        let unknown = store.set_agent_status("zz", AgentStatus::Active, NOW).await;
        assert!(
            matches!(unknown, Err(StoreError::NotFound("agent"))),
            "{unknown:?}"
        );
    }

    pub async fn revoking_an_agent_cancels_its_pending_requests_only(store: &dyn Store) {
        let a = active_agent(store, "a", "alice").await;
        let b = active_agent(store, "b", "alice").await;
        let pending = approval(&a, "alice", NOW, 300);
        let approved = approval(&a, "alice", NOW, 300);
        let expired = approval(&a, "alice", NOW - 1000, 300);
        let other = approval(&b, "alice", NOW, 300);
        for a in [&pending, &approved, &expired, &other] {
            store.create_approval(a, 10, NOW - 1000).await.unwrap();
        }
        store
            .decide(
                &approved.id,
                decision(&approved, Decision::Approve, NOW),
                NOW,
            )
            .await
            .unwrap();

        let revoked = store
            .set_agent_status(&a, AgentStatus::Revoked, NOW + 1)
            .await
            .unwrap();
        assert_eq!(revoked.status, AgentStatus::Revoked);

        let cancelled = store.approval(&pending.id).await.unwrap().unwrap();
        match &cancelled.state {
            ApprovalState::Cancelled { at, reason } => {
                assert_eq!(*at, NOW + 1);
                assert_eq!(reason, "agent revoked");
            }
            state => panic!("{state:?}"),
        }
        let still = store.approval(&approved.id).await.unwrap().unwrap();
        assert_eq!(still.status(NOW + 1), ApprovalStatus::Approved);
        let gone = store.approval(&expired.id).await.unwrap().unwrap();
        assert_eq!(gone.status(NOW + 1), ApprovalStatus::Expired);
        let untouched = store.approval(&other.id).await.unwrap().unwrap();
        assert_eq!(untouched.status(NOW + 1), ApprovalStatus::Pending);

        let pending_now = store
            .approvals(&user_id("alice"), ApprovalFilter::Pending, NOW + 1, 10)
            .await
            .unwrap();
        assert_eq!(ids(&pending_now), vec![other.id]);
    }

    pub async fn an_agent_may_have_max_pending_requests(store: &dyn Store) {
        let a = active_agent(store, "a", "alice").await;
        let b = active_agent(store, "b", "alice").await;
        let short = approval(&a, "alice", NOW, 10);
        store.create_approval(&short, 3, NOW).await.unwrap();
        let decided = approval(&a, "alice", NOW, 300);
        store.create_approval(&decided, 3, NOW).await.unwrap();
        store
            .create_approval(&approval(&a, "alice", NOW, 300), 3, NOW)
            .await
            .unwrap();

        let fourth = approval(&a, "alice", NOW, 300);
        let refused = store.create_approval(&fourth, 3, NOW).await;
        assert!(
            matches!(refused, Err(StoreError::TooManyPending { limit: 3 })),
            "{refused:?}"
        );
        assert!(store.approval(&fourth.id).await.unwrap().is_none());
        // Another agent has its own allowance.
        store
            .create_approval(&approval(&b, "alice", NOW, 300), 3, NOW)
            .await
            .unwrap();
        // A decided request no longer counts...
        store
            .decide(
                &decided.id,
                decision(&decided, Decision::Deny, NOW + 1),
                NOW + 1,
            )
            .await
            .unwrap();
        store.create_approval(&fourth, 3, NOW + 1).await.unwrap();
        let refused = store
            .create_approval(&approval(&a, "alice", NOW + 1, 300), 3, NOW + 1)
            .await;
        assert!(
            matches!(refused, Err(StoreError::TooManyPending { limit: 3 })),
            "{refused:?}"
        );
        // ...nor does an expired one.
        store
            .create_approval(&approval(&a, "alice", NOW + 10, 300), 3, NOW + 10)
            .await
            .unwrap();

        let twice = store.create_approval(&fourth, 100, NOW + 10).await;
        assert!(
            matches!(twice, Err(StoreError::AlreadyExists("approval"))),
            "{twice:?}"
        );
    }

    pub async fn concurrent_creations_respect_the_limit(store: &dyn Store) {
        for round in 0..ROUNDS {
            let agent = active_agent(store, &format!("agent-{round}"), "alice").await;
            let requests: Vec<ApprovalRecord> = (0..RACERS)
                .map(|_| approval(&agent, "alice", NOW, 300))
                .collect();
            let results = join_all(requests.iter().map(|a| store.create_approval(a, 3, NOW))).await;
            let ok = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(ok, 3, "round {round}: {results:?}");
        }
    }

    pub async fn only_an_agent_that_may_ask_creates_requests(store: &dyn Store) {
        let active = active_agent(store, "active", "alice").await;
        let pending = add_agent(store, "pending", "alice", AgentStatus::Pending).await;
        let suspended = active_agent(store, "suspended", "alice").await;
        store
            .set_agent_status(&suspended, AgentStatus::Suspended, NOW)
            .await
            .unwrap();
        let revoked = active_agent(store, "revoked", "alice").await;
        store
            .set_agent_status(&revoked, AgentStatus::Revoked, NOW)
            .await
            .unwrap();

        // An action needs an active agent, an enrollment a pending one.
        let refused = [
            (approval(&pending, "alice", NOW, 300), AgentStatus::Pending),
            (
                approval(&suspended, "alice", NOW, 300),
                AgentStatus::Suspended,
            ),
            (approval(&revoked, "alice", NOW, 300), AgentStatus::Revoked),
            (enrollment(&active, "alice", NOW, 300), AgentStatus::Active),
            (
                enrollment(&suspended, "alice", NOW, 300),
                AgentStatus::Suspended,
            ),
            (
                enrollment(&revoked, "alice", NOW, 300),
                AgentStatus::Revoked,
            ),
        ];
        for (request, status) in &refused {
            let result = store.create_approval(request, 10, NOW).await;
            assert!(
                matches!(result, Err(StoreError::AgentInactive(s)) if s == *status),
                "{:?} of a {} agent: {result:?}",
                request.kind,
                status.as_str()
            );
            assert!(store.approval(&request.id).await.unwrap().is_none());
        }
        for request in [
            approval("nobody", "alice", NOW, 300),
            enrollment("nobody", "alice", NOW, 300),
        ] {
            let result = store.create_approval(&request, 10, NOW).await;
            assert!(
                matches!(result, Err(StoreError::NotFound("agent"))),
                "{result:?}"
            );
            assert!(store.approval(&request.id).await.unwrap().is_none());
        }

        let action = approval(&active, "alice", NOW, 300);
        store.create_approval(&action, 10, NOW).await.unwrap();
        let enrolling = enrollment(&pending, "alice", NOW, 300);
        store.create_approval(&enrolling, 10, NOW).await.unwrap();
        // Resumed, the suspended agent may ask again.
        store
            .set_agent_status(&suspended, AgentStatus::Active, NOW + 1)
            .await
            .unwrap();
        let resumed = approval(&suspended, "alice", NOW + 1, 300);
        store.create_approval(&resumed, 10, NOW + 1).await.unwrap();
        let mut listed = ids(&store
            .approvals(&user_id("alice"), ApprovalFilter::Pending, NOW + 1, 10)
            .await
            .unwrap());
        listed.sort();
        let mut expected = ids(&[action, enrolling, resumed]);
        expected.sort();
        assert_eq!(listed, expected);
    }

    pub async fn concurrent_creations_cannot_slip_past_a_revocation(store: &dyn Store) {
        for round in 0..ROUNDS {
            let agent = active_agent(store, &format!("agent-{round}"), "alice").await;
            let requests: Vec<ApprovalRecord> = (0..RACERS)
                .map(|_| approval(&agent, "alice", NOW, 300))
                .collect();
            // The revocation starts amid the creations, so some may see the agent active.
            let (early, late) = requests.split_at(RACERS / 2);
            let create = |a| store.create_approval(a, RACERS, NOW);
            let (created_early, revoked, created_late) = tokio::join!(
                join_all(early.iter().map(create)),
                store.set_agent_status(&agent, AgentStatus::Revoked, NOW),
                join_all(late.iter().map(create)),
            );
            let created: Vec<_> = created_early.into_iter().chain(created_late).collect();
            revoked.unwrap();
            // Each request was either refused, or created before the revocation and cancelled
            // by it: none is left pending for a revoked agent.
            for (request, result) in requests.iter().zip(&created) {
                let stored = store.approval(&request.id).await.unwrap();
                match result {
                    Ok(()) => match stored.unwrap().state {
                        ApprovalState::Cancelled { reason, .. } => {
                            assert_eq!(reason, "agent revoked");
                        }
                        state => panic!("round {round}: created after the revocation: {state:?}"),
                    },
                    Err(StoreError::AgentInactive(AgentStatus::Revoked)) => {
                        assert!(stored.is_none(), "round {round}: {stored:?}");
                    }
                    Err(e) => panic!("round {round}: {e:?}"),
                }
            }
            let pending = store
                .approvals(&user_id("alice"), ApprovalFilter::Pending, NOW, 100)
                .await
                .unwrap();
            assert!(pending.is_empty(), "round {round}: {pending:?}");
        }
    }

    pub async fn a_revoked_agent_stays_revoked(store: &dyn Store) {
        let a = active_agent(store, "a", "alice").await;
        // Suspending is not for good...
        store
            .set_agent_status(&a, AgentStatus::Suspended, NOW)
            .await
            .unwrap();
        store
            .set_agent_status(&a, AgentStatus::Active, NOW)
            .await
            .unwrap();
        // ...revoking is.
        store
            .set_agent_status(&a, AgentStatus::Revoked, NOW + 1)
            .await
            .unwrap();
        for status in [AgentStatus::Active, AgentStatus::Suspended] {
            let result = store.set_agent_status(&a, status, NOW + 2).await;
            assert!(
                matches!(result, Err(StoreError::AgentInactive(AgentStatus::Revoked))),
                "{status:?}: {result:?}"
            );
        }
        assert_eq!(
            store.agent(&a).await.unwrap().unwrap().status,
            AgentStatus::Revoked
        );
    }

    pub async fn deciding_an_enrollment_activates_or_revokes_its_agent(store: &dyn Store) {
        let welcome = add_agent(store, "welcome", "alice", AgentStatus::Pending).await;
        let stranger = add_agent(store, "stranger", "alice", AgentStatus::Pending).await;
        let welcome_enrollment = enrollment(&welcome, "alice", NOW, 300);
        let stranger_enrollment = enrollment(&stranger, "alice", NOW, 300);
        for request in [&welcome_enrollment, &stranger_enrollment] {
            store.create_approval(request, 10, NOW).await.unwrap();
        }

        let approved = store
            .decide(
                &welcome_enrollment.id,
                decision(&welcome_enrollment, Decision::Approve, NOW + 1),
                NOW + 1,
            )
            .await
            .unwrap();
        assert_eq!(approved.status(NOW + 1), ApprovalStatus::Approved);
        assert_eq!(
            store.agent(&welcome).await.unwrap().unwrap().status,
            AgentStatus::Active
        );
        assert_eq!(
            store.agent(&stranger).await.unwrap().unwrap().status,
            AgentStatus::Pending
        );
        // Enrolled, it asks for actions, and a decision on one leaves it as it is.
        let action = approval(&welcome, "alice", NOW + 1, 300);
        store.create_approval(&action, 10, NOW + 1).await.unwrap();
        store
            .decide(
                &action.id,
                decision(&action, Decision::Deny, NOW + 2),
                NOW + 2,
            )
            .await
            .unwrap();
        assert_eq!(
            store.agent(&welcome).await.unwrap().unwrap().status,
            AgentStatus::Active
        );

        let denied = store
            .decide(
                &stranger_enrollment.id,
                decision(&stranger_enrollment, Decision::Deny, NOW + 2),
                NOW + 2,
            )
            .await
            .unwrap();
        assert_eq!(denied.status(NOW + 2), ApprovalStatus::Denied);
        assert_eq!(
            store.agent(&stranger).await.unwrap().unwrap().status,
            AgentStatus::Revoked
        );
        let again = store
            .create_approval(&enrollment(&stranger, "alice", NOW + 2, 300), 10, NOW + 2)
            .await;
        assert!(
            matches!(again, Err(StoreError::AgentInactive(AgentStatus::Revoked))),
            "{again:?}"
        );
    }

    pub async fn an_enrollment_approved_while_its_agent_is_revoked_leaves_it_revoked(
        store: &dyn Store,
    ) {
        for round in 0..ROUNDS {
            let mut requests = Vec::new();
            for i in 0..RACERS {
                let id = format!("enrolling-{round}-{i}");
                let agent = add_agent(store, &id, "alice", AgentStatus::Pending).await;
                let request = enrollment(&agent, "alice", NOW, 300);
                store.create_approval(&request, 10, NOW).await.unwrap();
                requests.push(request);
            }
            // Each agent's enrollment is approved while the agent is revoked, all at once.
            let raced = join_all(requests.iter().map(|r| async move {
                tokio::join!(
                    store.decide(&r.id, decision(r, Decision::Approve, NOW), NOW),
                    store.set_agent_status(&r.agent, AgentStatus::Revoked, NOW),
                )
            }))
            .await;
            // Either the approval came first, activating the agent the revocation then revoked,
            // or the revocation cancelled the enrollment; the agent ends revoked either way.
            for (request, (decided, revoked)) in requests.iter().zip(&raced) {
                assert!(revoked.is_ok(), "round {round}: {revoked:?}");
                let stored = store.approval(&request.id).await.unwrap().unwrap();
                let expected = match decided {
                    Ok(_) => ApprovalStatus::Approved,
                    Err(StoreError::NotPending(ApprovalStatus::Cancelled)) => {
                        ApprovalStatus::Cancelled
                    }
                    Err(e) => panic!("round {round}: {e:?}"),
                };
                assert_eq!(stored.status(NOW), expected, "round {round}");
                assert_eq!(
                    store.agent(&request.agent).await.unwrap().unwrap().status,
                    AgentStatus::Revoked,
                    "round {round}: the enrollment is {}",
                    stored.status(NOW)
                );
            }
        }
    }

    pub async fn a_request_round_trips(store: &dyn Store) {
        let a = active_agent(store, "a", "alice").await;
        let request = approval(&a, "alice", NOW, 300);
        store.create_approval(&request, 10, NOW).await.unwrap();
        let stored = store.approval(&request.id).await.unwrap().unwrap();
        assert_eq!(
            serde_json::to_value(&stored).unwrap(),
            serde_json::to_value(&request).unwrap()
        );
        let unknown = ApprovalId::generate().unwrap();
        assert!(store.approval(&unknown).await.unwrap().is_none());
    }

    /// Until when a request's agent waits is only raised, by at least the step at once (so an
    /// agent polling in a loop writes at most once per step), and is the request's own.
    pub async fn an_agents_waiting_time_is_raised_by_steps_only(store: &dyn Store) {
        let a = active_agent(store, "a", "alice").await;
        let request = approval(&a, "alice", NOW, 300);
        let other = approval(&a, "alice", NOW, 300);
        for created in [&request, &other] {
            store.create_approval(created, 10, NOW).await.unwrap();
        }
        let (id, expires_at) = (&request.id, request.expires_at);
        let waiting = || store.agent_waiting_until(id, NOW);
        assert_eq!(waiting().await.unwrap(), None, "never polled");

        store
            .note_agent_waiting(id, NOW + 70, expires_at)
            .await
            .unwrap();
        assert_eq!(waiting().await.unwrap(), Some(NOW + 70));
        // Less than a step later: not written.
        let short = NOW + 70 + AGENT_WAITING_STEP_SECS - 1;
        store
            .note_agent_waiting(id, short, expires_at)
            .await
            .unwrap();
        assert_eq!(waiting().await.unwrap(), Some(NOW + 70));
        // Never lowered.
        store
            .note_agent_waiting(id, NOW + 10, expires_at)
            .await
            .unwrap();
        assert_eq!(waiting().await.unwrap(), Some(NOW + 70));
        // A step or more: written.
        let later = NOW + 70 + AGENT_WAITING_STEP_SECS;
        store
            .note_agent_waiting(id, later, expires_at)
            .await
            .unwrap();
        assert_eq!(waiting().await.unwrap(), Some(later));
        // Another request's agent is not affected.
        assert_eq!(
            store.agent_waiting_until(&other.id, NOW).await.unwrap(),
            None
        );
    }

    pub async fn a_request_is_decided_once(store: &dyn Store) {
        let a = active_agent(store, "a", "alice").await;
        let request = approval(&a, "alice", NOW, 300);
        store.create_approval(&request, 10, NOW).await.unwrap();
        let approve = decision(&request, Decision::Approve, NOW + 5);
        let decided = store
            .decide(&request.id, approve.clone(), NOW + 5)
            .await
            .unwrap();
        assert_eq!(decided.status(NOW + 5), ApprovalStatus::Approved);
        let receipt = decided.receipt().unwrap();
        assert_eq!(receipt.body.statement.decision, Decision::Approve);
        let stored = store.approval(&request.id).await.unwrap().unwrap();
        assert_eq!(
            serde_json::to_value(&stored).unwrap(),
            serde_json::to_value(&decided).unwrap()
        );

        let deny = decision(&request, Decision::Deny, NOW + 6);
        let second = store.decide(&request.id, deny.clone(), NOW + 6).await;
        assert!(
            matches!(
                second,
                Err(StoreError::NotPending(ApprovalStatus::Approved))
            ),
            "{second:?}"
        );

        let denied = approval(&a, "alice", NOW, 300);
        store.create_approval(&denied, 10, NOW).await.unwrap();
        store
            .decide(&denied.id, decision(&denied, Decision::Deny, NOW), NOW)
            .await
            .unwrap();
        let again = store.decide(&denied.id, approve, NOW).await;
        assert!(
            matches!(again, Err(StoreError::NotPending(ApprovalStatus::Denied))),
            "{again:?}"
        );

        let unknown = ApprovalId::generate().unwrap();
        let missing = store.decide(&unknown, deny, NOW).await;
        assert!(
            matches!(missing, Err(StoreError::NotFound("approval"))),
            "{missing:?}"
        );
    }

    pub async fn expired_and_cancelled_requests_cannot_be_decided(store: &dyn Store) {
        let a = active_agent(store, "a", "alice").await;
        let request = approval(&a, "alice", NOW, 300);
        store.create_approval(&request, 10, NOW).await.unwrap();
        let late = store
            .decide(
                &request.id,
                decision(&request, Decision::Approve, NOW + 300),
                NOW + 300,
            )
            .await;
        assert!(
            matches!(late, Err(StoreError::NotPending(ApprovalStatus::Expired))),
            "{late:?}"
        );

        let b = active_agent(store, "b", "alice").await;
        let cancelled = approval(&b, "alice", NOW, 300);
        store.create_approval(&cancelled, 10, NOW).await.unwrap();
        store
            .set_agent_status(&b, AgentStatus::Revoked, NOW)
            .await
            .unwrap();
        let result = store
            .decide(
                &cancelled.id,
                decision(&cancelled, Decision::Approve, NOW),
                NOW,
            )
            .await;
        assert!(
            matches!(
                result,
                Err(StoreError::NotPending(ApprovalStatus::Cancelled))
            ),
            "{result:?}"
        );
    }

    pub async fn concurrent_decisions_succeed_once(store: &dyn Store) {
        let a = active_agent(store, "a", "alice").await;
        for round in 0..ROUNDS {
            let request = approval(&a, "alice", NOW, 300);
            store.create_approval(&request, 1000, NOW).await.unwrap();
            let decisions: Vec<store::Decision> = (0..RACERS)
                .map(|i| {
                    let choice = if i % 2 == 0 {
                        Decision::Approve
                    } else {
                        Decision::Deny
                    };
                    decision(&request, choice, NOW)
                })
                .collect();
            let results = join_all(
                decisions
                    .into_iter()
                    .map(|d| store.decide(&request.id, d, NOW)),
            )
            .await;
            let winners: Vec<&ApprovalRecord> = results.iter().flatten().collect();
            assert_eq!(winners.len(), 1, "round {round}: {results:?}");
            let status = winners[0].status(NOW);
            for result in &results {
                match result {
                    Ok(_) => {}
                    Err(StoreError::NotPending(seen)) => assert_eq!(*seen, status),
                    Err(e) => panic!("{e:?}"),
                }
            }
            let stored = store.approval(&request.id).await.unwrap().unwrap();
            assert_eq!(stored.status(NOW), status);
        }
    }

    pub async fn a_token_is_delivered_once(store: &dyn Store) {
        let a = active_agent(store, "a", "alice").await;
        let request = approval(&a, "alice", NOW, 300);
        store.create_approval(&request, 10, NOW).await.unwrap();
        match store.collect_token(&request.id, NOW).await.unwrap() {
            Collection::Unchanged(r) => assert_eq!(r.status(NOW), ApprovalStatus::Pending),
            other => panic!("{other:?}"),
        }
        store
            .decide(
                &request.id,
                decision(&request, Decision::Approve, NOW + 10),
                NOW + 10,
            )
            .await
            .unwrap();
        match store.collect_token(&request.id, NOW + 11).await.unwrap() {
            Collection::Deliver(r) => match r.state {
                ApprovalState::Approved {
                    token_delivered_at, ..
                } => assert_eq!(token_delivered_at, Some(NOW + 11)),
                state => panic!("{state:?}"),
            },
            other => panic!("{other:?}"),
        }
        match store.collect_token(&request.id, NOW + 12).await.unwrap() {
            Collection::Unchanged(r) => match r.state {
                ApprovalState::Approved {
                    token_delivered_at, ..
                } => assert_eq!(token_delivered_at, Some(NOW + 11)),
                state => panic!("{state:?}"),
            },
            other => panic!("{other:?}"),
        }
        // Delivered, it stays approved past the collection deadline.
        let stored = store.approval(&request.id).await.unwrap().unwrap();
        assert_eq!(
            stored.status(NOW + 10 + COLLECT_WITHIN_SECS),
            ApprovalStatus::Approved
        );

        let denied = approval(&a, "alice", NOW, 300);
        store.create_approval(&denied, 10, NOW).await.unwrap();
        store
            .decide(&denied.id, decision(&denied, Decision::Deny, NOW), NOW)
            .await
            .unwrap();
        assert!(matches!(
            store.collect_token(&denied.id, NOW).await.unwrap(),
            Collection::Unchanged(r) if r.status(NOW) == ApprovalStatus::Denied
        ));

        let unknown = ApprovalId::generate().unwrap();
        let missing = store.collect_token(&unknown, NOW).await;
        assert!(
            matches!(missing, Err(StoreError::NotFound("approval"))),
            "{missing:?}"
        );
    }

    pub async fn a_token_is_delivered_to_an_active_agent_only(store: &dyn Store) {
        let a = active_agent(store, "a", "alice").await;
        let request = approval(&a, "alice", NOW, 300);
        store.create_approval(&request, 10, NOW).await.unwrap();
        store
            .decide(&request.id, decision(&request, Decision::Approve, NOW), NOW)
            .await
            .unwrap();
        for status in [AgentStatus::Suspended, AgentStatus::Revoked] {
            store.set_agent_status(&a, status, NOW).await.unwrap();
            let refused = store.collect_token(&request.id, NOW + 1).await;
            assert!(
                matches!(refused, Err(StoreError::AgentInactive(s)) if s == status),
                "{refused:?}"
            );
        }
        let stored = store.approval(&request.id).await.unwrap().unwrap();
        assert!(
            matches!(
                stored.state,
                ApprovalState::Approved {
                    token_delivered_at: None,
                    ..
                }
            ),
            "{stored:?}"
        );
    }

    /// An agent asking to enroll for `owner` until `expires_at`.
    fn enrolling(id: &str, owner: &str, expires_at: i64) -> AgentRecord {
        AgentRecord {
            status: AgentStatus::Pending,
            enrollment_expires_at: Some(expires_at),
            ..agent(id, owner, NOW)
        }
    }

    pub async fn enrolling_agents_are_capped_and_leave_nothing_when_undecided(store: &dyn Store) {
        add_user(store, "alice").await;
        store
            .add_enrolling_agent(&enrolling("e1", "alice", NOW + 10), 2, NOW)
            .await
            .unwrap();
        store
            .add_enrolling_agent(&enrolling("e2", "alice", NOW + 20), 2, NOW)
            .await
            .unwrap();
        let third = store
            .add_enrolling_agent(&enrolling("e3", "alice", NOW + 30), 2, NOW)
            .await;
        assert!(
            matches!(third, Err(StoreError::TooManyEnrollments { limit: 2 })),
            "{third:?}"
        );
        // Active agents do not count, and a key waiting for its enrollment cannot ask twice.
        active_agent(store, "a", "alice").await;
        let twice = store
            .add_enrolling_agent(&enrolling("e1", "alice", NOW + 10), 5, NOW)
            .await;
        assert!(
            matches!(twice, Err(StoreError::AlreadyExists("agent"))),
            "{twice:?}"
        );

        // Once e1's enrollment expired undecided, e1 is gone, and a new one fits.
        store
            .add_enrolling_agent(&enrolling("e3", "alice", NOW + 40), 2, NOW + 10)
            .await
            .unwrap();
        assert!(store.agent("e1").await.unwrap().is_none());
        let mut listed: Vec<String> = store
            .agents(Some(&user_id("alice")))
            .await
            .unwrap()
            .into_iter()
            .map(|agent| agent.id)
            .collect();
        listed.sort();
        assert_eq!(listed, ["a", "e2", "e3"]);
        // The same key may ask again after its enrollment expired.
        store
            .add_enrolling_agent(&enrolling("e2", "alice", NOW + 60), 2, NOW + 20)
            .await
            .unwrap();
        assert_eq!(
            store
                .agent("e2")
                .await
                .unwrap()
                .unwrap()
                .enrollment_expires_at,
            Some(NOW + 60)
        );
    }

    pub async fn an_uncollected_token_expires(store: &dyn Store) {
        let a = active_agent(store, "a", "alice").await;
        let decided_at = NOW + 10;
        let late = approval(&a, "alice", NOW, 300);
        let in_time = approval(&a, "alice", NOW, 300);
        for request in [&late, &in_time] {
            store.create_approval(request, 10, NOW).await.unwrap();
            store
                .decide(
                    &request.id,
                    decision(request, Decision::Approve, decided_at),
                    decided_at,
                )
                .await
                .unwrap();
        }
        let deadline = decided_at + COLLECT_WITHIN_SECS;
        match store.collect_token(&late.id, deadline).await.unwrap() {
            Collection::Unchanged(r) => {
                assert_eq!(r.status(deadline), ApprovalStatus::Expired);
            }
            other => panic!("{other:?}"),
        }
        // Not delivered later either, whatever clock the next caller has.
        assert!(matches!(
            store.collect_token(&late.id, deadline + 1).await.unwrap(),
            Collection::Unchanged(_)
        ));
        assert!(matches!(
            store
                .collect_token(&in_time.id, deadline - 1)
                .await
                .unwrap(),
            Collection::Deliver(_)
        ));
    }

    pub async fn concurrent_collections_deliver_once(store: &dyn Store) {
        let a = active_agent(store, "a", "alice").await;
        for round in 0..ROUNDS {
            let request = approval(&a, "alice", NOW, 300);
            store.create_approval(&request, 1000, NOW).await.unwrap();
            store
                .decide(&request.id, decision(&request, Decision::Approve, NOW), NOW)
                .await
                .unwrap();
            let results =
                join_all((0..RACERS).map(|_| store.collect_token(&request.id, NOW + 1))).await;
            let delivered = results
                .iter()
                .filter(|r| matches!(r, Ok(Collection::Deliver(_))))
                .count();
            assert_eq!(delivered, 1, "round {round}: {results:?}");
            assert!(results.iter().all(Result::is_ok), "{results:?}");
        }
    }

    pub async fn pending_requests_are_counted(store: &dyn Store) {
        add_user(store, "alice").await;
        add_user(store, "bob").await;
        let a = active_agent(store, "a", "alice").await;
        let b = active_agent(store, "b", "bob").await;
        let short = approval(&a, "alice", NOW, 10);
        let decided = approval(&a, "alice", NOW, 300);
        let cancelled = approval(&b, "bob", NOW, 300);
        let waiting = approval(&a, "alice", NOW, 300);
        for request in [&short, &decided, &cancelled, &waiting] {
            store.create_approval(request, 10, NOW).await.unwrap();
        }
        assert_eq!(store.pending_count(NOW).await.unwrap(), 4);
        store
            .decide(&decided.id, decision(&decided, Decision::Deny, NOW), NOW)
            .await
            .unwrap();
        store
            .set_agent_status(&b, AgentStatus::Revoked, NOW)
            .await
            .unwrap();
        assert_eq!(store.pending_count(NOW).await.unwrap(), 2);
        // `short` has expired by then.
        assert_eq!(store.pending_count(NOW + 10).await.unwrap(), 1);
        assert_eq!(store.pending_count(NOW + 300).await.unwrap(), 0);
    }

    pub async fn listings_split_pending_from_history_newest_first(store: &dyn Store) {
        let a = active_agent(store, "a", "alice").await;
        let b = active_agent(store, "b", "alice").await;
        let c = active_agent(store, "c", "bob").await;
        let oldest = approval(&a, "alice", NOW, 10); // expired by NOW + 100
        let denied = approval(&a, "alice", NOW + 1, 300);
        let approved = approval(&b, "alice", NOW + 2, 300);
        let pending_old = approval(&a, "alice", NOW + 3, 300);
        let pending_new = approval(&b, "alice", NOW + 4, 300);
        let bobs = approval(&c, "bob", NOW + 5, 300);
        for a in [
            &oldest,
            &denied,
            &approved,
            &pending_old,
            &pending_new,
            &bobs,
        ] {
            store.create_approval(a, 10, NOW).await.unwrap();
        }
        store
            .decide(
                &denied.id,
                decision(&denied, Decision::Deny, NOW + 5),
                NOW + 5,
            )
            .await
            .unwrap();
        store
            .decide(
                &approved.id,
                decision(&approved, Decision::Approve, NOW + 6),
                NOW + 6,
            )
            .await
            .unwrap();

        let at = NOW + 100;
        let alice = user_id("alice");
        let pending = store
            .approvals(&alice, ApprovalFilter::Pending, at, 10)
            .await
            .unwrap();
        assert_eq!(
            ids(&pending),
            vec![pending_new.id.clone(), pending_old.id.clone()]
        );
        let history = store
            .approvals(&alice, ApprovalFilter::History, at, 10)
            .await
            .unwrap();
        assert_eq!(
            ids(&history),
            vec![approved.id.clone(), denied.id.clone(), oldest.id.clone()]
        );
        let first = store
            .approvals(&alice, ApprovalFilter::History, at, 2)
            .await
            .unwrap();
        assert_eq!(ids(&first), vec![approved.id.clone(), denied.id.clone()]);
        let one = store
            .approvals(&alice, ApprovalFilter::Pending, at, 1)
            .await
            .unwrap();
        assert_eq!(ids(&one), vec![pending_new.id.clone()]);
        assert!(
            store
                .approvals(&alice, ApprovalFilter::History, at, 0)
                .await
                .unwrap()
                .is_empty()
        );
        let bob = store
            .approvals(&user_id("bob"), ApprovalFilter::Pending, at, 10)
            .await
            .unwrap();
        assert_eq!(ids(&bob), vec![bobs.id.clone()]);

        // Once their time is up, pending requests move to the history.
        let later = NOW + 1000;
        assert!(
            store
                .approvals(&alice, ApprovalFilter::Pending, later, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store
                .approvals(&alice, ApprovalFilter::History, later, 10)
                .await
                .unwrap()
                .len(),
            5
        );
    }

    pub async fn a_jti_is_remembered_until_it_expires(store: &dyn Store) {
        assert!(store.remember_jti("k:j1", NOW + 60, NOW).await.unwrap());
        assert!(!store.remember_jti("k:j1", NOW + 60, NOW + 1).await.unwrap());
        assert!(
            !store
                .remember_jti("k:j1", NOW + 120, NOW + 59)
                .await
                .unwrap()
        );
        assert!(store.remember_jti("k:j2", NOW + 60, NOW + 1).await.unwrap());
        assert!(
            store
                .remember_jti("k:j1", NOW + 120, NOW + 60)
                .await
                .unwrap()
        );
        assert!(
            !store
                .remember_jti("k:j1", NOW + 180, NOW + 119)
                .await
                .unwrap()
        );
    }

    pub async fn concurrent_jtis_are_accepted_once(store: &dyn Store) {
        for round in 0..ROUNDS {
            let key = format!("k:{round}");
            let results =
                join_all((0..RACERS).map(|_| store.remember_jti(&key, NOW + 60, NOW))).await;
            let fresh = results.iter().filter(|r| matches!(r, Ok(true))).count();
            assert_eq!(fresh, 1, "round {round}: {results:?}");
        }
    }

    pub async fn windows_count_and_restart(store: &dyn Store) {
        for expected in 1..=3 {
            assert_eq!(
                store.count_in_window("agent:a", NOW, 60).await.unwrap(),
                expected
            );
        }
        assert_eq!(store.count_in_window("agent:b", NOW, 60).await.unwrap(), 1);
        assert_eq!(
            store
                .count_in_window("agent:a", NOW + 60, 60)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            store
                .count_in_window("agent:a", NOW + 60, 60)
                .await
                .unwrap(),
            2
        );
    }

    pub async fn concurrent_counts_are_all_counted(store: &dyn Store) {
        let results = join_all((0..RACERS).map(|_| store.count_in_window("k", NOW, 60))).await;
        let mut counts: Vec<u64> = results.into_iter().map(Result::unwrap).collect();
        counts.sort_unstable();
        assert_eq!(counts, (1..=RACERS as u64).collect::<Vec<_>>());
    }
}

/// Declares one test per contract check for an implementation, given an expression that opens
/// an empty store in the directory `$dir` and returns it with whatever must live as long (a
/// server).
macro_rules! contract_tests {
    ($dir:ident => $open:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let $dir = tempfile::tempdir().unwrap();
                let (_alive, store) = $open;
                crate::contract::$check(&store).await;
            }
        )*
    };
}

/// Hands the name of every check to the macro `$apply`, after its own arguments.
macro_rules! every_check {
    ($apply:ident! { $($args:tt)* }) => {
        $apply! {
            $($args)*;
            ping_answers,
            devices_belong_to_one_user_and_resubscribing_replaces,
            setup_code_creates_the_first_user_once,
            invitations_expire_and_are_replaced,
            redeem_refuses_an_expired_code,
            an_invitation_is_for_its_user_only,
            an_invitation_never_adds_a_passkey_to_an_existing_user,
            no_setup_code_works_once_a_user_exists,
            users_are_made_admins_and_back,
            concurrent_redemptions_of_one_code_succeed_once,
            passkeys_belong_to_one_user,
            sessions_expire_and_can_be_deleted,
            a_ceremony_is_taken_once,
            concurrent_takers_get_a_ceremony_once,
            agents_are_listed_by_user,
            revoking_an_agent_cancels_its_pending_requests_only,
            an_agent_may_have_max_pending_requests,
            concurrent_creations_respect_the_limit,
            only_an_agent_that_may_ask_creates_requests,
            concurrent_creations_cannot_slip_past_a_revocation,
            a_revoked_agent_stays_revoked,
            a_request_round_trips,
            an_agents_waiting_time_is_raised_by_steps_only,
            a_request_is_decided_once,
            expired_and_cancelled_requests_cannot_be_decided,
            concurrent_decisions_succeed_once,
            deciding_an_enrollment_activates_or_revokes_its_agent,
            an_enrollment_approved_while_its_agent_is_revoked_leaves_it_revoked,
            a_token_is_delivered_once,
            a_token_is_delivered_to_an_active_agent_only,
            enrolling_agents_are_capped_and_leave_nothing_when_undecided,
            an_uncollected_token_expires,
            concurrent_collections_deliver_once,
            listings_split_pending_from_history_newest_first,
            pending_requests_are_counted,
            a_jti_is_remembered_until_it_expires,
            concurrent_jtis_are_accepted_once,
            windows_count_and_restart,
            concurrent_counts_are_all_counted,
        }
    };
}

/// The Redis store on its own `redis-server`, a single server or a three-master cluster, and
/// with replicas that every once-only step waits for.
mod redis {
    use std::time::Duration;

    use handsign::store::redis::{DEFAULT_PREFIX, RedisStore, RedisTarget};
    use handsign_redis_harness::{RedisCluster, RedisServer, ReplicatedRedis};
    use handsign_verify::ReplicaWait;

    use crate::{NOW, Store as _, StoreError};

    async fn on_server() -> (RedisServer, RedisStore) {
        let server = RedisServer::start().await;
        let target = RedisTarget::parse(server.url()).unwrap();
        let store = RedisStore::connect(&target, DEFAULT_PREFIX).await.unwrap();
        (server, store)
    }

    /// The longest allowed: a loaded machine can take a while to schedule the replica's
    /// acknowledgement, and only the refusals for want of a replica wait it out.
    const REPLICA_TIMEOUT: Duration = handsign_verify::replicas::MAX_REPLICA_TIMEOUT;

    fn one_replica() -> ReplicaWait {
        ReplicaWait::new(1, REPLICA_TIMEOUT).unwrap()
    }

    /// The store on the server at `url` (keys under the default prefix), waiting as `wait` says.
    async fn store_on(url: &str, wait: ReplicaWait) -> RedisStore {
        let target = RedisTarget::parse(url).unwrap();
        RedisStore::connect(&target, DEFAULT_PREFIX)
            .await
            .unwrap()
            .wait_for_replicas(wait)
            .await
            .unwrap()
    }

    mod single {
        every_check!(contract_tests! { _dir => super::on_server().await });
    }

    /// Runs the checks one after another on one deployment, each under its own key prefix:
    /// starting a cluster takes seconds.
    macro_rules! in_sequence {
        ($target:expr, $wait:expr; $($check:ident),* $(,)?) => {
            $(
                let prefix = concat!("check:", stringify!($check));
                let store = RedisStore::connect($target, prefix)
                    .await
                    .unwrap()
                    .wait_for_replicas($wait)
                    .await
                    .unwrap();
                crate::contract::$check(&store).await;
            )*
        };
    }

    /// Scripts that touch keys of more than one slot fail on a cluster: every check passing
    /// here shows each runs on one slot.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_check_holds_on_a_three_master_cluster() {
        let cluster = RedisCluster::start(3).await;
        let target = RedisTarget::parse(&cluster.urls().join(",")).unwrap();
        every_check!(in_sequence! { &target, ReplicaWait::NONE });
    }

    /// Every once-only step followed by its wait, in one pipeline, still does what it did.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_check_holds_waiting_for_a_replica() {
        let redis = ReplicatedRedis::start().await;
        let target = RedisTarget::parse(redis.primary.url()).unwrap();
        every_check!(in_sequence! { &target, one_replica() });
    }

    /// On a cluster the wait goes to the shard that took the write: with one replica per
    /// master, every check holds; with the replica of one shard stopped, once-only steps on
    /// that shard fail closed while the others' still succeed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_a_cluster_the_wait_is_the_owning_shards() {
        let mut cluster = RedisCluster::start_with_replicas(3, 1).await;
        let target = RedisTarget::parse(&cluster.urls().join(",")).unwrap();
        every_check!(in_sequence! { &target, one_replica() });

        let store = RedisStore::connect(&target, DEFAULT_PREFIX)
            .await
            .unwrap()
            .wait_for_replicas(one_replica())
            .await
            .unwrap();
        // Ceremony keys are `<prefix>:ceremony:<id>`; ids that hash to different shards.
        let ids: Vec<String> = (0..64).map(|i| format!("c{i}")).collect();
        for id in &ids {
            store.put_ceremony(id, b"state", NOW + 300).await.unwrap();
        }
        let stopped = store.keys().ceremony("c0");
        cluster.stop_replicas_of_owner(&stopped).await;
        let mut refused = 0;
        let mut taken = 0;
        for id in &ids {
            match store.take_ceremony(id, NOW).await {
                Ok(Some(_)) => taken += 1,
                Err(StoreError::Unavailable(_)) => refused += 1,
                other => panic!("{other:?}"),
            }
        }
        assert!(
            matches!(
                store.take_ceremony("c0", NOW).await,
                Err(StoreError::Unavailable(_))
            ),
            "the shard without its replica refuses"
        );
        assert!(
            refused > 0 && taken > 0,
            "{taken} taken on the shards with a replica, {refused} refused on the one without"
        );
    }

    /// A step that takes several commands, cut after each of them in turn (a gateway that dies,
    /// a connection that drops): what it adds exists whole (found, listed and counted) or not
    /// at all, and doing it again then works.
    mod cut_connection {
        use handsign_redis_harness::CuttingProxy;

        use super::*;
        use crate::*;

        /// Runs `step` with a store whose connection is cut after 0, 1, 2, ... commands (each
        /// time under a key prefix of its own, after `setup` on a store straight on the server)
        /// until it succeeds. After each run, what `step` adds `exists` whole or not at all;
        /// doing it again then succeeds if it does not, and is `AlreadyExists` if it does.
        async fn added_whole_or_not_at_all(
            setup: impl AsyncFn(&RedisStore),
            step: impl AsyncFn(&RedisStore) -> Result<(), StoreError>,
            exists: impl AsyncFn(&RedisStore) -> bool,
        ) {
            let server = RedisServer::start().await;
            let mut cut_part_way = 0;
            for commands in 0..64 {
                let proxy = CuttingProxy::start(server.port(), commands).await;
                let prefix = format!("cut{commands}");
                let target = RedisTarget::parse(&proxy.url()).unwrap();
                let Ok(cut) = RedisStore::connect(&target, &prefix).await else {
                    continue; // cut while connecting
                };
                let direct = RedisTarget::parse(server.url()).unwrap();
                let direct = RedisStore::connect(&direct, &prefix).await.unwrap();
                setup(&direct).await;
                let done = step(&cut).await.is_ok();
                let found = exists(&direct).await;
                assert!(
                    found || !done,
                    "done, yet not there after {commands} commands"
                );
                let again = step(&direct).await;
                if found {
                    assert!(
                        matches!(again, Err(StoreError::AlreadyExists(_))),
                        "{again:?}"
                    );
                } else {
                    again.unwrap();
                    assert!(exists(&direct).await);
                }
                if done {
                    assert!(cut_part_way > 0, "no run was cut part way");
                    return;
                }
                assert!(proxy.cut(), "failed without a cut");
                cut_part_way += 1;
            }
            panic!("never done in 64 commands");
        }

        /// Whether agent `a` is found, listed as alice's and listed among all agents; all or
        /// none.
        async fn agent_exists(store: &RedisStore) -> bool {
            let found = store.agent("a").await.unwrap().is_some();
            let of_alice = store.agents(Some(&user_id("alice"))).await.unwrap();
            let all = store.agents(None).await.unwrap();
            let listed = |agents: &[AgentRecord]| agents.iter().any(|a| a.id == "a");
            assert_eq!(
                (listed(&of_alice), listed(&all)),
                (found, found),
                "found {found}, listed {of_alice:?}, among all {all:?}"
            );
            found
        }

        async fn alice(store: &RedisStore) {
            add_user(store, "alice").await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn an_agent_is_added_whole_or_not_at_all() {
            let record = agent("a", "alice", NOW);
            added_whole_or_not_at_all(
                alice,
                async |store: &RedisStore| store.add_agent(&record).await,
                agent_exists,
            )
            .await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn an_enrolling_agent_is_added_whole_or_not_at_all() {
            let record = AgentRecord {
                status: AgentStatus::Pending,
                enrollment_expires_at: Some(NOW + 300),
                ..agent("a", "alice", NOW)
            };
            added_whole_or_not_at_all(
                alice,
                async |store: &RedisStore| store.add_enrolling_agent(&record, 5, NOW).await,
                agent_exists,
            )
            .await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_request_is_created_whole_or_not_at_all() {
            let request = approval("a", "alice", NOW, 300);
            // Found, listed and counted as pending; all or none.
            let exists = async |store: &RedisStore| {
                let found = store.approval(&request.id).await.unwrap().is_some();
                let listed = store
                    .approvals(&user_id("alice"), ApprovalFilter::Pending, NOW, 10)
                    .await
                    .unwrap();
                let counted = store.pending_count(NOW).await.unwrap();
                let expected = if found {
                    vec![request.id.clone()]
                } else {
                    vec![]
                };
                assert_eq!((ids(&listed), counted), (expected, usize::from(found)));
                found
            };
            added_whole_or_not_at_all(
                async |store: &RedisStore| {
                    add_user(store, "alice").await;
                    active_agent(store, "a", "alice").await;
                },
                async |store: &RedisStore| store.create_approval(&request, 1, NOW).await,
                exists,
            )
            .await;
        }
    }

    /// Decisions and token deliveries across a failover: a primary and a replica replicating
    /// through a forwarder the test freezes; killing the primary and the link loses what the
    /// replica had not received, and the replica is promoted.
    mod failover {
        use handsign_redis_harness::wait_for_replica;

        use super::*;
        use crate::*;

        /// A request of an active agent, created and (with `approve`) approved on `store`.
        async fn request(store: &RedisStore, approve: bool) -> ApprovalRecord {
            let agent = active_agent(store, "a", "alice").await;
            let request = approval(&agent, "alice", NOW, 300);
            store.create_approval(&request, 10, NOW).await.unwrap();
            if approve {
                store
                    .decide(&request.id, decision(&request, Decision::Approve, NOW), NOW)
                    .await
                    .unwrap();
            }
            request
        }

        /// Fails over and gives the promoted replica a replica of its own, so that writes on
        /// it can be acknowledged; returns the new replica, to keep it running.
        async fn fail_over_to_a_replicated_primary(redis: &mut ReplicatedRedis) -> RedisServer {
            redis.fail_over().await;
            let replica = RedisServer::start_replica_of(redis.replica.port()).await;
            wait_for_replica(&redis.replica).await;
            replica
        }

        fn delivered(collection: &Collection) -> bool {
            matches!(collection, Collection::Deliver(_))
        }

        /// The failure the wait exists for, kept as a demonstration: without it, a delivery
        /// the replica had not received is forgotten, and the token is delivered again.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn without_waiting_a_failover_delivers_a_token_twice() {
            let mut redis = ReplicatedRedis::start().await;
            let primary = store_on(redis.primary.url(), ReplicaWait::NONE).await;
            let request = request(&primary, true).await;
            redis.sync().await;

            redis.link.freeze();
            let first = primary.collect_token(&request.id, NOW + 1).await.unwrap();
            redis.fail_over().await;
            let promoted = store_on(redis.replica.url(), ReplicaWait::NONE).await;
            let second = promoted.collect_token(&request.id, NOW + 2).await.unwrap();
            assert!(
                delivered(&first) && delivered(&second),
                "{first:?} {second:?}"
            );
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn waiting_a_token_is_delivered_at_most_once_across_a_failover() {
            let mut redis = ReplicatedRedis::start().await;
            let primary = store_on(redis.primary.url(), one_replica()).await;
            let request = request(&primary, true).await;

            redis.link.freeze();
            let first = primary.collect_token(&request.id, NOW + 1).await;
            assert!(
                matches!(first, Err(StoreError::Unavailable(_))),
                "{first:?}"
            );
            let _replica = fail_over_to_a_replicated_primary(&mut redis).await;
            let promoted = store_on(redis.replica.url(), one_replica()).await;
            let second = promoted.collect_token(&request.id, NOW + 2).await.unwrap();
            let third = promoted.collect_token(&request.id, NOW + 3).await.unwrap();
            assert!(delivered(&second), "{second:?}");
            assert!(!delivered(&third), "{third:?}");
        }

        /// Control: a delivery the replica acknowledged survives the failover.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn an_acknowledged_delivery_survives_a_failover() {
            let mut redis = ReplicatedRedis::start().await;
            let primary = store_on(redis.primary.url(), one_replica()).await;
            let request = request(&primary, true).await;
            let first = primary.collect_token(&request.id, NOW + 1).await.unwrap();
            assert!(delivered(&first), "{first:?}");

            redis.link.freeze();
            redis.fail_over().await;
            let promoted = store_on(redis.replica.url(), ReplicaWait::NONE).await;
            let second = promoted.collect_token(&request.id, NOW + 2).await.unwrap();
            assert!(!delivered(&second), "{second:?}");
        }

        /// Demonstration: without the wait, a request approved on the primary is denied on
        /// the promoted replica, which never had the approval.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn without_waiting_a_failover_decides_a_request_twice() {
            let mut redis = ReplicatedRedis::start().await;
            let primary = store_on(redis.primary.url(), ReplicaWait::NONE).await;
            let request = request(&primary, false).await;
            redis.sync().await;

            redis.link.freeze();
            let approve = decision(&request, Decision::Approve, NOW + 1);
            primary.decide(&request.id, approve, NOW + 1).await.unwrap();
            redis.fail_over().await;
            let promoted = store_on(redis.replica.url(), ReplicaWait::NONE).await;
            let deny = decision(&request, Decision::Deny, NOW + 2);
            let second = promoted.decide(&request.id, deny, NOW + 2).await;
            assert!(second.is_ok(), "decided a second time: {second:?}");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn waiting_a_request_is_decided_once_across_a_failover() {
            let mut redis = ReplicatedRedis::start().await;
            let primary = store_on(redis.primary.url(), one_replica()).await;
            let request = request(&primary, false).await;
            // Creating a request is no once-only write: nothing waited for the replica yet.
            redis.sync().await;

            redis.link.freeze();
            let approve = decision(&request, Decision::Approve, NOW + 1);
            let first = primary.decide(&request.id, approve, NOW + 1).await;
            assert!(
                matches!(first, Err(StoreError::Unavailable(_))),
                "{first:?}"
            );
            let _replica = fail_over_to_a_replicated_primary(&mut redis).await;
            let promoted = store_on(redis.replica.url(), one_replica()).await;
            let deny = decision(&request, Decision::Deny, NOW + 2);
            promoted.decide(&request.id, deny, NOW + 2).await.unwrap();
            let approve = decision(&request, Decision::Approve, NOW + 3);
            let third = promoted.decide(&request.id, approve, NOW + 3).await;
            assert!(
                matches!(third, Err(StoreError::NotPending(ApprovalStatus::Denied))),
                "{third:?}"
            );
        }

        /// Control: a decision the replica acknowledged survives the failover.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn an_acknowledged_decision_survives_a_failover() {
            let mut redis = ReplicatedRedis::start().await;
            let primary = store_on(redis.primary.url(), one_replica()).await;
            let request = request(&primary, true).await;

            redis.link.freeze();
            redis.fail_over().await;
            let promoted = store_on(redis.replica.url(), ReplicaWait::NONE).await;
            let deny = decision(&request, Decision::Deny, NOW + 2);
            let second = promoted.decide(&request.id, deny, NOW + 2).await;
            assert!(
                matches!(
                    second,
                    Err(StoreError::NotPending(ApprovalStatus::Approved))
                ),
                "{second:?}"
            );
        }
    }
}

mod embedded {
    use handsign::store::embedded::EmbeddedStore;

    use super::*;

    fn open(dir: &std::path::Path) -> EmbeddedStore {
        EmbeddedStore::open(&dir.join("handsign.redb")).unwrap()
    }

    every_check!(contract_tests! { dir => ((), open(dir.path())) });

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn everything_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (key, request) = {
            let store = open(dir.path());
            let key = add_user(&store, "alice").await;
            store.add_agent(&agent("a", "alice", NOW)).await.unwrap();
            let request = approval("a", "alice", NOW, 300);
            store.create_approval(&request, 10, NOW).await.unwrap();
            store
                .decide(&request.id, decision(&request, Decision::Approve, NOW), NOW)
                .await
                .unwrap();
            store
                .put_session(&SessionRecord {
                    id_sha256: "s".into(),
                    user: user_id("alice"),
                    expires_at: NOW + 100,
                })
                .await
                .unwrap();
            store.put_ceremony("c", b"state", NOW + 100).await.unwrap();
            assert!(store.remember_jti("j", NOW + 60, NOW).await.unwrap());
            assert_eq!(store.count_in_window("w", NOW, 60).await.unwrap(), 1);
            (key, request)
        };

        let store = open(dir.path());
        assert_eq!(store.users().await.unwrap(), vec![user("alice")]);
        assert_eq!(
            ids_of(store.passkeys(&user_id("alice")).await.unwrap()),
            vec![key.credential_id]
        );
        assert_eq!(
            store.agent("a").await.unwrap(),
            Some(agent("a", "alice", NOW))
        );
        let stored = store.approval(&request.id).await.unwrap().unwrap();
        assert_eq!(stored.status(NOW), ApprovalStatus::Approved);
        assert!(store.session("s", NOW).await.unwrap().is_some());
        assert_eq!(
            store.take_ceremony("c", NOW).await.unwrap(),
            Some(b"state".to_vec())
        );
        assert!(!store.remember_jti("j", NOW + 60, NOW + 1).await.unwrap());
        assert_eq!(store.count_in_window("w", NOW, 60).await.unwrap(), 2);
        assert!(matches!(
            store.collect_token(&request.id, NOW + 1).await.unwrap(),
            Collection::Deliver(_)
        ));
        assert_eq!(
            ids(&store
                .approvals(&user_id("alice"), ApprovalFilter::History, NOW + 1, 10)
                .await
                .unwrap()),
            vec![request.id]
        );
    }

    fn ids_of(keys: Vec<PasskeyRecord>) -> Vec<String> {
        keys.into_iter().map(|k| k.credential_id).collect()
    }

    #[tokio::test]
    async fn a_second_open_of_the_same_file_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("handsign.redb");
        let first = EmbeddedStore::open(&path).unwrap();
        let Err(StoreError::Unavailable(message)) = EmbeddedStore::open(&path) else {
            panic!("a second open succeeded");
        };
        assert!(
            message.contains("is in use by another process (is the gateway running?)"),
            "{message}"
        );
        assert!(message.contains(&path.display().to_string()), "{message}");
        first.ping().await.unwrap();

        drop(first);
        EmbeddedStore::open(&path).unwrap().ping().await.unwrap();
    }

    /// The environment variable that turns [`writer_for_the_kill_test`] into the writer.
    const KILL_TEST_PATH: &str = "HANDSIGN_STORE_KILL_TEST_PATH";

    /// Not a check by itself: run by [`commits_survive_sigkill`] as a child process, it writes
    /// until killed, printing a line after each commit returns.
    #[test]
    fn writer_for_the_kill_test() {
        let Ok(path) = std::env::var(KILL_TEST_PATH) else {
            return;
        };
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let store = EmbeddedStore::open(std::path::Path::new(&path)).unwrap();
            for i in 0.. {
                assert!(
                    store
                        .remember_jti(&format!("j{i}"), NOW + 60, NOW)
                        .await
                        .unwrap()
                );
                println!("committed {i}");
            }
        });
    }

    #[test]
    fn commits_survive_sigkill() {
        use std::io::BufRead as _;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("handsign.redb");
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "embedded::writer_for_the_kill_test",
                "--nocapture",
            ])
            .env(KILL_TEST_PATH, &path)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut committed = 0;
        for line in stdout.lines() {
            if let Some(i) = line.unwrap().strip_prefix("committed ") {
                committed = i.parse::<usize>().unwrap() + 1;
                if committed == 50 {
                    break;
                }
            }
        }
        assert_eq!(committed, 50, "the writer stopped early");
        child.kill().unwrap(); // SIGKILL: no destructor, no clean close
        child.wait().unwrap();

        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let store = open(dir.path());
            for i in 0..committed {
                let fresh = store
                    .remember_jti(&format!("j{i}"), NOW + 60, NOW)
                    .await
                    .unwrap();
                assert!(!fresh, "commit {i} was lost");
            }
        });
    }

    #[test]
    fn an_unopenable_path_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let result = EmbeddedStore::open(&dir.path().join("missing/handsign.redb"));
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "opened a file in a missing directory"
        );
    }
}
