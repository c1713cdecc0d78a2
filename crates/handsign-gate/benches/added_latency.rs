//! What the gate adds to a call on loopback, against calling the upstream directly, side by
//! side in one run with Caddy's `reverse_proxy` in front of the same upstream:
//!
//! - `direct`: the upstream itself;
//! - `caddy`: `caddy run` with `reverse_proxy` to the upstream (Debian's `caddy` package);
//! - `gate pass`: a `pass` route through the gate (credential added, nothing asked);
//! - `gate own token`: a bring-your-own-token call (`Authorization: Approval` and a DPoP proof,
//!   every check of `handsign-verify`, the token consumed in the in-memory replay store);
//! - the floor for the latter: token verification, params hash and DPoP proof verification in
//!   process, as in the verify layer's benchmark.
//!
//! One client sends requests one at a time over kept-alive connections, the targets taking turns
//! request by request so that all see the same machine load. Tokens and proofs are made before
//! each round is timed. The gate runs in this process on its own runtime (two worker threads),
//! the upstream on another (one thread).
//!
//! Run with `cargo bench -p handsign-gate --bench added_latency` (needs `caddy` on the PATH:
//! `apt-get install -y caddy`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use handsign_client::AgentKey;
use handsign_gate::{Gate, GateFile, Verification};
use handsign_protocol::canonical::Limits;
use handsign_protocol::dpop;
use handsign_protocol::keys::{Jwks, KeySet, SigningKey};
use handsign_protocol::params::CanonicalParams;
use handsign_protocol::token::{self, Actor, ApprovalClaims, Confirmation, Expected};
use handsign_verify::{Clock, MemoryReplayStore};
use serde_json::json;

const ROUNDS: usize = 6;
const PER_ROUND: usize = 500;
const AUDIENCE: &str = "https://pay.example";
const BODY: &str =
    r#"{"amount": 5000, "currency": "eur", "customer": "cus_42", "description": "Order 1001"}"#;

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let upstream = serve_on_own_runtime(1, |listener| {
        let app = Router::new()
            .route(
                "/v1/charges/{id}",
                get(|| async { axum::Json(json!({"id": "ch_1"})) }),
            )
            .route(
                "/v1/charges",
                post(|| async { axum::Json(json!({"id": "ch_2"})) }),
            );
        axum::serve(listener, app).into_future()
    });
    // The gateway's keys, served as its JWKS would be.
    let issuer_key = SigningKey::generate().unwrap();
    let jwks = Jwks::from_signing_keys([&issuer_key]);
    let issuer = serve_on_own_runtime(1, move |listener| {
        let app = Router::new().route(
            "/.well-known/jwks.json",
            get(move || {
                let jwks = jwks.clone();
                async move { axum::Json(jwks) }
            }),
        );
        axum::serve(listener, app).into_future()
    });
    let issuer_url = format!("http://{issuer}");

    let agent = SigningKey::generate().unwrap();
    AgentKey::from_signing_key(SigningKey::generate().unwrap())
        .save_new(dir.path().join("gate.jwk"))
        .unwrap();
    std::fs::write(dir.path().join("pay.key"), "sk_bench").unwrap();
    let gate_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gate_address = gate_listener.local_addr().unwrap();
    let gate_url = format!("http://{gate_address}");
    let text = format!(
        r#"
public_url = "{gate_url}"
[handsign]
url = "{issuer_url}"
agent_key = "gate.jwk"
user = "alice"

[upstreams.pay]
base_url = "http://{upstream}"
audience = "{AUDIENCE}"
credential = {{ header = "Authorization", value_file = "pay.key", prefix = "Bearer " }}

[[upstreams.pay.routes]]
route = "GET /v1/charges/{{id}}"
need = "pass"

[[upstreams.pay.routes]]
route = "POST /v1/charges"
action = "pay.charge"
need = "approve"
"#
    );
    std::fs::write(dir.path().join("gate.toml"), text).unwrap();
    let file = GateFile::load(&dir.path().join("gate.toml")).unwrap();
    let clock = Clock::system();
    let verification = Verification {
        // The issuer key was made by this run: no token of it was used before.
        replay: Arc::new(MemoryReplayStore::with_clock(clock.clone()).record_began_at(0)),
        clock,
    };
    let gate = Gate::new(&file, "gate.toml", verification).unwrap();
    serve_on_own_runtime(2, move |_| {
        gate_listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(gate_listener).unwrap();
        axum::serve(
            listener,
            gate.router()
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .into_future()
    });
    let caddy = Caddy::start(dir.path(), upstream);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = || {
            reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap()
        };
        let (direct, via_caddy, via_gate, own) = (client(), client(), client(), client());
        let get = |http: &reqwest::Client, base: String| {
            let request = http.get(format!("{base}/v1/charges/ch_1"));
            async move {
                let started = Instant::now();
                let response = request.send().await.unwrap();
                assert!(response.status().is_success(), "{}", response.status());
                response.bytes().await.unwrap();
                started.elapsed()
            }
        };
        let hash = CanonicalParams::from_value(
            &json!({"body": serde_json::from_str::<serde_json::Value>(BODY).unwrap()}),
            &Limits::default(),
        )
        .unwrap()
        .hash();
        let keys = KeySet::from_signing_keys([&issuer_key]);
        let charge_url = format!("{gate_url}/pay/v1/charges");
        let mut samples: [Vec<Duration>; 5] = Default::default();
        let caddy_url = format!("http://127.0.0.1:{}", caddy.port);
        caddy.wait_ready(&caddy_url).await;
        for round in 0..=ROUNDS {
            let presentations: Vec<(String, String)> = (0..PER_ROUND)
                .map(|_| present(&issuer_key, &issuer_url, &agent, &hash, &charge_url))
                .collect();
            let mut round_samples: [Vec<Duration>; 5] = Default::default();
            for (token, proof) in &presentations {
                round_samples[0].push(get(&direct, format!("http://{upstream}")).await);
                round_samples[1].push(get(&via_caddy, caddy_url.clone()).await);
                round_samples[2].push(get(&via_gate, format!("{gate_url}/pay")).await);
                let started = Instant::now();
                let response = own
                    .post(&charge_url)
                    .header("content-type", "application/json")
                    .header("authorization", format!("Approval {token}"))
                    .header("dpop", proof)
                    .body(BODY)
                    .send()
                    .await
                    .unwrap();
                assert!(response.status().is_success(), "{}", response.status());
                response.bytes().await.unwrap();
                round_samples[3].push(started.elapsed());
                round_samples[4].push(floor(&keys, &issuer_url, token, proof, &hash, &charge_url));
            }
            // Round 0 warms connections and caches up.
            if round > 0 {
                for (all, new) in samples.iter_mut().zip(round_samples) {
                    all.extend(new);
                }
            }
        }
        report(samples);
    });
    drop(caddy);
}

/// A token for the charge and a DPoP proof for it, as an agent of alice would present.
fn present(
    issuer: &SigningKey,
    issuer_url: &str,
    agent: &SigningKey,
    hash: &handsign_protocol::params::ParamsHash,
    url: &str,
) -> (String, String) {
    let now = Clock::system().now();
    let mut jti = [0u8; 16];
    getrandom::fill(&mut jti).unwrap();
    let claims = ApprovalClaims {
        iss: issuer_url.into(),
        sub: "alice".into(),
        aud: AUDIENCE.into(),
        act: Actor {
            sub: agent.kid().into(),
        },
        action: "pay.charge".into(),
        params_sha256: hash.clone(),
        approval: "apr_bench".into(),
        jti: handsign_protocol::base64url::encode(jti),
        iat: now,
        nbf: now,
        exp: now + 30,
        cnf: Some(Confirmation {
            jkt: agent.kid().into(),
        }),
    };
    let token = token::mint(issuer, &claims).unwrap();
    let proof = dpop::create(agent, "POST", url, now, Some(&token)).unwrap();
    (token, proof)
}

/// The floor of a bring-your-own-token call: the params hash, the token's and the proof's
/// verification, in process.
fn floor(
    keys: &KeySet,
    issuer_url: &str,
    token: &str,
    proof: &str,
    hash: &handsign_protocol::params::ParamsHash,
    url: &str,
) -> Duration {
    let started = Instant::now();
    let body: serde_json::Value = serde_json::from_str(BODY).unwrap();
    let computed = CanonicalParams::from_value(&json!({"body": body}), &Limits::default())
        .unwrap()
        .hash();
    assert_eq!(&computed, hash);
    let now = Clock::system().now();
    token::verify(
        token,
        keys,
        &Expected {
            issuer: issuer_url,
            audience: AUDIENCE,
            action: "pay.charge",
            params_sha256: &computed,
            now,
            skew: 5,
        },
    )
    .unwrap();
    dpop::verify(
        proof,
        &dpop::Expected {
            method: "POST",
            url,
            now,
            access_token: Some(token),
        },
    )
    .unwrap();
    started.elapsed()
}

fn report(mut samples: [Vec<Duration>; 5]) {
    let percentile = |sorted: &[Duration], p: f64| {
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[index].as_secs_f64() * 1e6
    };
    for set in &mut samples {
        set.sort();
    }
    let [direct, caddy, pass, own, floor] = &samples;
    let (d50, d99) = (percentile(direct, 0.5), percentile(direct, 0.99));
    println!(
        "{} requests per target ({ROUNDS} rounds of {PER_ROUND}, after a warm-up round)\n",
        direct.len()
    );
    println!("| target | p50 | p99 | added p50 | added p99 |");
    println!("|---|---|---|---|---|");
    println!("| direct to the upstream | {d50:.1} µs | {d99:.1} µs | | |");
    let mut added = Vec::new();
    for (name, set) in [
        ("Caddy `reverse_proxy`", caddy),
        ("gate, `pass` route", pass),
        ("gate, own token (POST, verified and consumed)", own),
    ] {
        let (p50, p99) = (percentile(set, 0.5), percentile(set, 0.99));
        added.push((p50 - d50, p99 - d99));
        println!(
            "| {name} | {p50:.1} µs | {p99:.1} µs | {:.1} µs | {:.1} µs |",
            p50 - d50,
            p99 - d99
        );
    }
    let floor50 = percentile(floor, 0.5);
    println!(
        "| floor: params hash + token + DPoP verification (in process) | {floor50:.1} µs | {:.1} µs | | |",
        percentile(floor, 0.99)
    );
    let (caddy_added, pass_added, own_added) = (added[0], added[1], added[2]);
    println!(
        "\ngate pass added / Caddy added: p50 {:.2}x, p99 {:.2}x",
        pass_added.0 / caddy_added.0,
        pass_added.1 / caddy_added.1
    );
    println!(
        "gate own token added / (Caddy added + floor): p50 {:.2}x",
        own_added.0 / (caddy_added.0 + floor50)
    );
}

/// Runs the server `make` builds on a listener of its own, on a runtime of its own with
/// `threads` worker threads; returns its address.
fn serve_on_own_runtime<F, Fut>(threads: usize, make: F) -> SocketAddr
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            sender.send(listener.local_addr().unwrap()).unwrap();
            make(listener).await.unwrap();
        });
    });
    receiver.recv().unwrap()
}

/// A `caddy run` with `reverse_proxy` to the upstream, stopped on drop.
struct Caddy {
    child: std::process::Child,
    port: u16,
}

impl Caddy {
    fn start(dir: &std::path::Path, upstream: SocketAddr) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let caddyfile = dir.join("Caddyfile");
        std::fs::write(
            &caddyfile,
            format!(
                "{{\n\tadmin off\n\tauto_https off\n}}\n\nhttp://127.0.0.1:{port} {{\n\treverse_proxy {upstream}\n}}\n"
            ),
        )
        .unwrap();
        let child = std::process::Command::new("caddy")
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&caddyfile)
            .env("HOME", dir)
            .env("XDG_DATA_HOME", dir)
            .env("XDG_CONFIG_HOME", dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("caddy is not installed: apt-get install -y caddy");
        Caddy { child, port }
    }

    /// Waits until Caddy answers through to the upstream.
    async fn wait_ready(&self, url: &str) {
        let http = reqwest::Client::new();
        for _ in 0..500 {
            if let Ok(response) = http.get(format!("{url}/v1/charges/ch_1")).send().await
                && response.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("caddy did not start");
    }
}

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
