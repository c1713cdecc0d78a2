//! Gateway benchmarks, all in one run so the ratios compare like with like:
//!
//! - wake-up: from a decision being recorded to the waiting agent's long poll answering with its
//!   token, p50 and p99 over 1,000 requests on loopback;
//! - approvals per second end to end with a software passkey (create, options, assertion,
//!   decide, collect), sequentially;
//! - push latency: from an agent creating a request to the encrypted push message arriving at a
//!   local push service, p50 and p99 over 1,000 requests;
//! - the server-side work of deciding (webauthn-rs checking the assertion, then building and
//!   signing the receipt; storage excluded) against a bare P-256 ECDSA verification of the same
//!   assertion.
//!
//! Run with `cargo bench --bench gateway`. It prints a report; BENCHMARKS.md records one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{TestGateway, flight};
use handsign::domain::{ApprovalId, ApprovalRecord};
use handsign_protocol::base64url;
use handsign_protocol::keys::SigningKey;
use handsign_protocol::receipt::{Credential, Evidence, Receipt, ReceiptBody};
use handsign_protocol::statement::Decision;
use p256::ecdsa::signature::Verifier as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use webauthn_authenticator_rs::WebauthnAuthenticator as _;
use webauthn_rs::prelude::RequestChallengeResponse;

const WAKE_UPS: usize = 1000;
const PUSHES: usize = 1000;
const END_TO_END: usize = 200;
const VERIFICATIONS: u32 = 2000;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let gateway = TestGateway::start_with(|args| {
            args.limits.agent_requests_per_minute = 1_000_000;
            args.limits.max_pending_per_agent = 1_000_000;
            args.limits.user_prompts_per_minute = 1_000_000;
            args.limits.ceremonies_per_minute = 1_000_000;
            args.danger_allow_http_push_endpoints = true;
            args.danger_allow_private_push_endpoints = true;
        })
        .await;
        let mut alice = gateway.register("alice").await;
        println!("handsign gateway benchmarks (embedded store, loopback)\n");
        wake_up(&gateway).await;
        push_latency(&gateway).await;
        end_to_end(&gateway, &mut alice).await;
        decision_check(&gateway, &mut alice).await;
    });
}

/// A receipt for decisions recorded directly in the store: the store keeps it, nobody checks it.
fn placeholder_receipt(gateway: &TestGateway, approval: &ApprovalRecord) -> Receipt {
    ReceiptBody {
        v: "handsign-receipt/1".into(),
        statement: handsign::routes::approve::statement(
            &gateway.state,
            approval,
            Decision::Approve,
        ),
        params: flight(),
        evidence: Evidence {
            credential_id: "AA".into(),
            authenticator_data: "AA".into(),
            client_data_json: "AA".into(),
            signature: "AA".into(),
            user_handle: None,
        },
        credential: Credential {
            public_key_cose: "AA".into(),
            public_key_jwk: json!({}),
        },
        rp_id: "localhost".into(),
        origins: vec![gateway.url.clone()],
    }
    .sign(&SigningKey::from_seed(&[1; 32]))
    .unwrap()
}

async fn wake_up(gateway: &TestGateway) {
    let agent = gateway.agent("alice").await;
    let mut latencies = Vec::with_capacity(WAKE_UPS);
    for _ in 0..WAKE_UPS {
        let created = agent.request(flight()).await;
        let id = ApprovalId::parse(created["id"].as_str().unwrap()).unwrap();
        let approval = gateway.store.approval(&id).await.unwrap().unwrap();
        let receipt = placeholder_receipt(gateway, &approval);
        let parked = gateway.state.events.waiters();
        let waiter = {
            let agent = agent.clone();
            let id = id.to_string();
            tokio::spawn(async move {
                let answer = agent.read(&id, 60).await;
                (answer, Instant::now())
            })
        };
        // Decide only once the long poll is parked on the event channel.
        while gateway.state.events.waiters() <= parked {
            tokio::task::yield_now().await;
        }
        let now = handsign::clock::Clock::system().now();
        let decided = gateway
            .store
            .decide(
                &id,
                handsign::store::Decision::Approved {
                    decided_at: now,
                    receipt: Box::new(receipt),
                },
                now,
            )
            .await
            .unwrap();
        let recorded = Instant::now();
        gateway.state.events.publish(&decided.id, &decided.user);
        let ((status, answer), answered) = waiter.await.unwrap();
        assert!(
            status.is_success() && answer["token"].is_string(),
            "{answer}"
        );
        latencies.push(answered - recorded);
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "wake-up, decision recorded -> agent has its token ({WAKE_UPS} requests): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(at(0.50)),
        ms(at(0.99)),
        ms(*latencies.last().unwrap())
    );
}

async fn push_latency(gateway: &TestGateway) {
    let (push_origin, mut inbox) = common::push_service().await;
    let browser = common::PushBrowser::new();
    let subscription = handsign::notify::subscription::Subscription::from_json(
        browser
            .subscription_json(&format!("{push_origin}/wpush/bench"))
            .as_bytes(),
        true,
    )
    .unwrap();
    let user = handsign::domain::UserId::parse("alice").unwrap();
    gateway
        .store
        .add_push_subscription(&handsign::domain::PushSubscriptionRecord {
            id: "bench-device".into(),
            user: user.clone(),
            name: "bench".into(),
            subscription,
            created_at: handsign::clock::Clock::system().now(),
        })
        .await
        .unwrap();
    let agent = gateway.agent("alice").await;
    let mut latencies = Vec::with_capacity(PUSHES);
    for _ in 0..PUSHES {
        let started = Instant::now();
        agent.request(flight()).await;
        let received = inbox.recv().await.unwrap();
        latencies.push(started.elapsed());
        // One encrypted record per request (tests/webpush.rs decrypts it with http_ece).
        assert_eq!(received.headers["content-encoding"], "aes128gcm");
    }
    gateway
        .store
        .delete_push_subscription(&user, "bench-device")
        .await
        .unwrap();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "push, request created -> encrypted message at the push service ({PUSHES} requests): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(at(0.50)),
        ms(at(0.99)),
        ms(*latencies.last().unwrap())
    );
}

async fn end_to_end(gateway: &TestGateway, alice: &mut common::Person) {
    let agent = gateway.agent("alice").await;
    let started = Instant::now();
    for _ in 0..END_TO_END {
        let id = agent.request(flight()).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (status, _) = gateway.decide(alice, &id, "approve").await;
        assert!(status.is_success());
        let (_, answer) = agent.read(&id, 0).await;
        assert!(answer["token"].is_string());
    }
    let elapsed = started.elapsed();
    println!(
        "end to end, create + options + assertion + decide + collect, sequential ({END_TO_END}): {:.0} approvals/s ({:.2} ms each)",
        END_TO_END as f64 / elapsed.as_secs_f64(),
        ms(elapsed) / END_TO_END as f64
    );
}

async fn decision_check(gateway: &TestGateway, alice: &mut common::Person) {
    let agent = gateway.agent("alice").await;
    let id = agent.request(flight()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let approval = gateway
        .store
        .approval(&ApprovalId::parse(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    let digest = handsign::routes::approve::statement(&gateway.state, &approval, Decision::Approve)
        .digest()
        .unwrap();
    let passkeys: Vec<_> = gateway
        .store
        .passkeys(&approval.user)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let (options, ceremony) = gateway
        .state
        .passkeys
        .start_approval(
            &passkeys
                .iter()
                .map(|p| p.passkey.clone())
                .collect::<Vec<_>>(),
            &digest,
        )
        .unwrap();
    let options: RequestChallengeResponse =
        serde_json::from_value(json!({"publicKey": options.public_key})).unwrap();
    let credential = alice
        .passkey
        .do_authentication(gateway.origin(), options)
        .unwrap();

    // The same assertion as the public key and message a bare ECDSA check sees.
    let cose = base64url::decode(&passkeys[0].public_key_cose).unwrap();
    let jwk: Value = handsign_protocol::webauthn::CredentialPublicKey::from_cose(&cose)
        .unwrap()
        .to_jwk();
    let point = [
        vec![4u8],
        base64url::decode(jwk["x"].as_str().unwrap()).unwrap(),
        base64url::decode(jwk["y"].as_str().unwrap()).unwrap(),
    ]
    .concat();
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
    let response = &credential.response;
    let message = [
        response.authenticator_data.clone(),
        Sha256::digest(&response.client_data_json).to_vec(),
    ]
    .concat();
    let signature = p256::ecdsa::Signature::from_der(&response.signature).unwrap();

    // Interleaved rounds, so that both see the same machine load.
    let (mut bare, mut full) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..10 {
        let started = Instant::now();
        for _ in 0..VERIFICATIONS / 10 {
            key.verify(std::hint::black_box(&message), &signature)
                .unwrap();
        }
        bare += started.elapsed();
        let started = Instant::now();
        for _ in 0..VERIFICATIONS / 10 {
            gateway
                .state
                .passkeys
                .finish_authentication(std::hint::black_box(&credential), &ceremony)
                .unwrap();
            handsign::routes::approve::receipt(
                &gateway.state,
                &approval,
                Decision::Approve,
                &credential,
                &passkeys[0],
            )
            .unwrap();
        }
        full += started.elapsed();
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(VERIFICATIONS);
    println!(
        "deciding, server-side work without storage: bare P-256 verify {:.1} us, assertion check + receipt {:.1} us, ratio {:.2}",
        per(bare),
        per(full),
        per(full) / per(bare)
    );
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}
