//! The HTTP gate end to end: a real gateway with a software passkey, the gate in this process
//! (and the `handsign gate` binary for its file check and its logs), and a local upstream over
//! http and https (a test CA made here) that records every call it receives.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::future::pending;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request};
use common::{Person, TestGateway, process::free_port};
use handsign::domain::{ApprovalRecord, UserId};
use handsign::store::ApprovalFilter;
use handsign_client::{AgentKey, ApprovalRequest, Client};
use handsign_gate::listener::{self, ListenerLimits};
use handsign_gate::{APPROVAL_ID_HEADER, Gate, GateFile, Verification};
use handsign_protocol::keys::SigningKey;
use handsign_redis_harness::RedisServer;
use handsign_verify::{Clock, MemoryReplayStore};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The upstream credential: it must reach the upstream and nothing else.
const SECRET: &str = "sk_live_gate_test_5ecret_7f3a";

/// Everything the gate and its dependencies log in this test binary (debug level).
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

fn capture_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        struct Writer;
        impl std::io::Write for Writer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                LOGS.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_writer(|| Writer)
            .with_ansi(false)
            .init();
    });
}

fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}

/// One call as the upstream received it.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    uri: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A local upstream that records what it receives and answers `201` with a JSON body.
struct Upstream {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
    /// The test CA's certificate (PEM) when it serves https.
    ca_pem: Option<String>,
}

impl Upstream {
    async fn start(tls: bool) -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let record = received.clone();
        let app = Router::new().fallback(move |request: Request<Body>| {
            let record = record.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
                record.lock().unwrap().push(Received {
                    method: parts.method.to_string(),
                    uri: parts.uri.to_string(),
                    headers: parts.headers,
                    body,
                });
                (
                    StatusCode::CREATED,
                    [("x-upstream", "recorder")],
                    axum::Json(json!({"id": "ch_1", "status": "succeeded"})),
                )
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        if !tls {
            tokio::spawn(async move { axum::serve(listener, app).await });
            return Upstream {
                url: format!("http://127.0.0.1:{port}"),
                received,
                ca_pem: None,
            };
        }
        let (ca_pem, config) = test_ca_server_config();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Upstream {
            url: format!("https://localhost:{port}"),
            received,
            ca_pem: Some(ca_pem),
        }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// A CA made for this test, and a server configuration with a certificate it signed for
/// `localhost`.
fn test_ca_server_config() -> (String, rustls::ServerConfig) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
    )
    .unwrap();
    (ca_cert.pem(), config)
}

/// A gateway with alice, the gate enrolled as her agent, and an upstream behind the gate.
struct Setup {
    gateway: TestGateway,
    alice: Person,
    upstream: Upstream,
    gate: Gate,
    gate_url: String,
    http: reqwest::Client,
    /// The gate file as written in `dir`.
    gate_toml: String,
    dir: tempfile::TempDir,
}

struct Options {
    tls: bool,
    hold_seconds: u64,
    /// Seconds the gate's clock is ahead of the real one.
    clock_ahead: i64,
    upstream_down: bool,
    /// The gate file's `callers` (TOML), if any.
    callers: Option<String>,
    max_pending_approvals: u64,
    max_connections: u64,
    header_read_timeout_seconds: u64,
    body_read_timeout_seconds: u64,
    /// The gate file's `redis_url`: the gate then records used tokens as the file says.
    redis_url: Option<String>,
    /// When the gate's in-memory record of used tokens began, in seconds from now (default: at
    /// the epoch, as the gateway started in this test).
    record_began_in: Option<i64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tls: false,
            hold_seconds: 60,
            clock_ahead: 0,
            upstream_down: false,
            callers: None,
            max_pending_approvals: 64,
            max_connections: 64,
            header_read_timeout_seconds: 10,
            body_read_timeout_seconds: 10,
            redis_url: None,
            record_began_in: None,
        }
    }
}

impl Setup {
    async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    async fn start_with(options: Options) -> Self {
        capture_logs();
        let gateway = TestGateway::start().await;
        let alice = gateway.register("alice").await;
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate().unwrap();
        gateway.add_agent(&key, "alice", "payments gate").await;
        AgentKey::from_signing_key(key)
            .save_new(dir.path().join("gate.jwk"))
            .unwrap();
        std::fs::write(dir.path().join("pay.key"), format!("{SECRET}\n")).unwrap();
        let upstream = Upstream::start(options.tls).await;
        let base_url = if options.upstream_down {
            format!("http://127.0.0.1:{}", free_port())
        } else {
            upstream.url.clone()
        };
        let ca = match &upstream.ca_pem {
            Some(pem) => {
                std::fs::write(dir.path().join("ca.pem"), pem).unwrap();
                "ca_file = \"ca.pem\""
            }
            None => "",
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gate_url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let text = format!(
            r#"
public_url = "{gate_url}"
hold_seconds = {hold}
max_body_bytes = 4096
max_pending_approvals = {max_pending}
max_connections = {max_connections}
header_read_timeout_seconds = {header_read}
body_read_timeout_seconds = {body_read}
{redis_url}
{callers}

[handsign]
url = "{gateway_url}"
agent_key = "gate.jwk"
user = "alice"

[upstreams.pay]
base_url = "{base_url}"
audience = "https://pay.example"
credential = {{ header = "Authorization", value_file = "pay.key", prefix = "Bearer " }}
{ca}

[[upstreams.pay.routes]]
route = "POST /v1/charges"
action = "pay.charge"
need = "approve"

[[upstreams.pay.routes]]
route = "GET /v1/charges/{{id}}"
need = "pass"

[[upstreams.pay.routes]]
route = "POST /v1/refunds"
action = "pay.refund"
need = "approve"

[[upstreams.pay.routes]]
route = "DELETE /v1/charges/{{id}}"
need = "deny"
"#,
            hold = options.hold_seconds,
            gateway_url = gateway.url,
            callers = options.callers.as_deref().unwrap_or_default(),
            max_pending = options.max_pending_approvals,
            max_connections = options.max_connections,
            header_read = options.header_read_timeout_seconds,
            body_read = options.body_read_timeout_seconds,
            redis_url = options
                .redis_url
                .as_ref()
                .map(|url| format!("redis_url = \"{url}\""))
                .unwrap_or_default(),
        );
        std::fs::write(dir.path().join("gate.toml"), &text).unwrap();
        let file = GateFile::load(&dir.path().join("gate.toml")).unwrap();
        let ahead = options.clock_ahead;
        let clock = Clock::from_fn(move || handsign::clock::Clock::system().now() + ahead);
        // The gateway started in this test: no token of its keys was used before.
        let began = options.record_began_in.map_or(0, |seconds| {
            handsign::clock::Clock::system().now() + seconds
        });
        let replay = MemoryReplayStore::with_clock(clock.clone()).record_began_at(began);
        let verification = match options.redis_url {
            Some(_) => Verification::of(&file).await.unwrap(),
            None => Verification {
                replay: Arc::new(replay),
                clock,
            },
        };
        let gate = Gate::new(&file, "gate.toml", verification).unwrap();
        let served = gate.clone();
        let limits = ListenerLimits::of(&file);
        tokio::spawn(async move { listener::serve(listener, &served, limits, pending()).await });
        Setup {
            http: handsign::http_client::new().unwrap(),
            gateway,
            alice,
            upstream,
            gate,
            gate_url,
            gate_toml: text,
            dir,
        }
    }

    /// Another gate started from the same gate file (as after a restart, or a second
    /// instance), on its own address; its URL.
    async fn another_gate(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let text = self.gate_toml.replace(&self.gate_url, &url);
        let file = GateFile::parse(&text, self.dir.path()).unwrap();
        let verification = Verification::of(&file).await.unwrap();
        let gate = Gate::new(&file, "gate.toml", verification).unwrap();
        let limits = ListenerLimits::of(&file);
        tokio::spawn(async move { listener::serve(listener, &gate, limits, pending()).await });
        url
    }

    fn charge(&self) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/pay/v1/charges", self.gate_url))
            .header("content-type", "application/json")
            .body(r#"{"amount": 5000, "currency": "eur"}"#)
    }

    /// Every approval request alice has, pending or not.
    async fn approvals(&self) -> Vec<ApprovalRecord> {
        let alice = UserId::parse("alice").unwrap();
        let now = handsign::clock::Clock::system().now();
        let mut all = Vec::new();
        for filter in [ApprovalFilter::Pending, ApprovalFilter::History] {
            all.extend(
                self.gateway
                    .store
                    .approvals(&alice, filter, now, 100)
                    .await
                    .unwrap(),
            );
        }
        all
    }

    /// The one approval request pending for alice, once the gate has asked for it.
    async fn pending(&self) -> ApprovalRecord {
        asked_of_alice(&self.gateway).await
    }

    /// An agent of alice that speaks the protocol, holding an approval of `action` with
    /// `params` for the gate's upstream.
    async fn own_token(&mut self, action: &str, params: Value) -> (Client, String) {
        let key = SigningKey::generate().unwrap();
        self.gateway.add_agent(&key, "alice", "billing agent").await;
        let client = Client::new(&self.gateway.url, AgentKey::from_signing_key(key)).unwrap();
        let pending = client
            .request_approval(ApprovalRequest::new(action, params, "https://pay.example"))
            .await
            .unwrap();
        let (status, body) = self
            .gateway
            .decide(&mut self.alice, pending.id(), "approve")
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let approval = pending.wait().await.unwrap();
        (client, approval.into_token())
    }

    /// Sends `request` with `token` and a DPoP proof from `client`'s key.
    async fn send_with(
        &self,
        client: &Client,
        token: &str,
        request: reqwest::RequestBuilder,
    ) -> reqwest::Response {
        let mut request = request.build().unwrap();
        client.authorize(&mut request, token).unwrap();
        self.http.execute(request).await.unwrap()
    }
}

/// An answer, read whole, with the credential checked absent from it.
async fn read(response: reqwest::Response) -> (StatusCode, HeaderMap, String) {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap();
    for (name, value) in &headers {
        assert!(
            !value
                .as_bytes()
                .windows(SECRET.len())
                .any(|w| w == SECRET.as_bytes()),
            "the credential is in the answer's {name} header"
        );
    }
    assert!(
        !body.contains(SECRET),
        "the credential is in the answer: {body}"
    );
    (status, headers, body)
}

fn assert_forwarded_clean(received: &Received) {
    let authorization: Vec<_> = received.headers.get_all("authorization").iter().collect();
    assert_eq!(
        authorization,
        [&format!("Bearer {SECRET}")],
        "the upstream gets exactly the gate's credential"
    );
    assert!(
        received.headers.get("dpop").is_none(),
        "no DPoP proof upstream"
    );
}

#[tokio::test]
async fn pass_routes_reach_the_upstream_with_the_credential_over_http_and_https() {
    for tls in [false, true] {
        let setup = Setup::start_with(Options {
            tls,
            ..Options::default()
        })
        .await;
        let response = setup
            .http
            .get(format!(
                "{}/pay/v1/charges/ch_1?expand=customer",
                setup.gate_url
            ))
            .header("authorization", "Bearer caller-chosen")
            .header("x-request-id", "r-1")
            .send()
            .await
            .unwrap();
        let (status, headers, body) = read(response).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(headers["x-upstream"], "recorder");
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["id"], "ch_1");
        let received = setup.upstream.received();
        assert_eq!(received.len(), 1, "tls {tls}");
        assert_eq!(received[0].method, "GET");
        assert_eq!(received[0].uri, "/v1/charges/ch_1?expand=customer");
        assert_eq!(received[0].headers["x-request-id"], "r-1");
        assert_forwarded_clean(&received[0]);
        assert!(setup.approvals().await.is_empty(), "nothing was asked");
    }
}

#[tokio::test]
async fn denied_unlisted_and_ambiguous_routes_never_reach_the_upstream() {
    let setup = Setup::start().await;
    let cases = [
        (
            Method::DELETE,
            "/pay/v1/charges/ch_1",
            StatusCode::FORBIDDEN,
            "route_denied",
        ),
        (
            Method::GET,
            "/pay/v1/customers",
            StatusCode::NOT_FOUND,
            "unlisted_route",
        ),
        (
            Method::PUT,
            "/pay/v1/charges",
            StatusCode::NOT_FOUND,
            "unlisted_route",
        ),
        (
            Method::GET,
            "/other/v1/charges",
            StatusCode::NOT_FOUND,
            "unlisted_route",
        ),
        (
            Method::GET,
            "/pay/v1/charges/ch_1%2f..%2frefunds",
            StatusCode::BAD_REQUEST,
            "invalid_path",
        ),
        (
            Method::GET,
            "/pay/v1//charges",
            StatusCode::BAD_REQUEST,
            "invalid_path",
        ),
    ];
    for (method, path, expected, code) in cases {
        let response = setup
            .http
            .request(method.clone(), format!("{}{path}", setup.gate_url))
            .send()
            .await
            .unwrap();
        let (status, _, body) = read(response).await;
        assert_eq!(status, expected, "{method} {path}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"], code, "{method} {path}");
        if code == "unlisted_route" {
            assert!(
                body["message"].as_str().unwrap().contains("gate.toml"),
                "the refusal names the gate file: {body}"
            );
        }
    }
    assert!(setup.upstream.received().is_empty());
    assert!(setup.approvals().await.is_empty());
}

#[tokio::test]
async fn a_brought_token_is_checked_consumed_and_stripped_and_then_useless() {
    let mut setup = Setup::start_with(Options {
        tls: true,
        ..Options::default()
    })
    .await;
    let charge = json!({"body": {"amount": 5000, "currency": "eur"}});
    let (client, token) = setup.own_token("pay.charge", charge.clone()).await;

    // Another route, other params: refused, and the token is still good afterwards.
    let refund = setup
        .http
        .post(format!("{}/pay/v1/refunds", setup.gate_url))
        .header("content-type", "application/json")
        .body(r#"{"amount": 5000, "currency": "eur"}"#);
    let (status, headers, _) = read(setup.send_with(&client, &token, refund).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("action_mismatch")
    );
    let other_params = setup
        .http
        .post(format!("{}/pay/v1/charges", setup.gate_url))
        .header("content-type", "application/json")
        .body(r#"{"amount": 500000, "currency": "eur"}"#);
    let (status, headers, _) = read(setup.send_with(&client, &token, other_params).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("params_mismatch")
    );
    assert!(setup.upstream.received().is_empty());

    let (status, _, body) = read(setup.send_with(&client, &token, setup.charge()).await).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let received = setup.upstream.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].uri, "/v1/charges");
    assert_eq!(
        &received[0].body[..],
        br#"{"amount": 5000, "currency": "eur"}"#
    );
    assert_forwarded_clean(&received[0]);

    // Used: once only.
    let (status, headers, _) = read(setup.send_with(&client, &token, setup.charge()).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("token_replayed")
    );
    assert_eq!(setup.upstream.received().len(), 1);
    assert_eq!(
        setup.approvals().await.len(),
        1,
        "the gate asked nothing itself"
    );
}

/// The gate's own approval whose token cannot be recorded as used (its Redis went away while
/// alice decided) is not forwarded: `503` with the reason, and the upstream never sees the call.
#[tokio::test]
async fn an_own_approval_that_cannot_be_recorded_is_not_forwarded() {
    let mut redis = RedisServer::start().await;
    let mut setup = Setup::start_with(Options {
        redis_url: Some(redis.url().to_owned()),
        ..Options::default()
    })
    .await;
    let call = tokio::spawn(setup.charge().send());
    let asked = setup.pending().await;
    redis.stop();
    let (status, body) = setup
        .gateway
        .decide(&mut setup.alice, asked.id.as_str(), "approve")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = read(call.await.unwrap().unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "replay_store_unavailable");
    assert!(setup.upstream.received().is_empty());
}

/// The token of the gate's own approval passes the same checks as a brought one: with the
/// gate's clock two minutes ahead it has expired on arrival, and the call is not forwarded.
#[tokio::test]
async fn an_own_approval_whose_token_fails_its_check_is_not_forwarded() {
    let mut setup = Setup::start_with(Options {
        clock_ahead: 120,
        ..Options::default()
    })
    .await;
    let call = tokio::spawn(setup.charge().send());
    let asked = setup.pending().await;
    let (status, body) = setup
        .gateway
        .decide(&mut setup.alice, asked.id.as_str(), "approve")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = read(call.await.unwrap().unwrap()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "approval_check_failed");
    assert!(
        body["message"].as_str().unwrap().contains("(expired)"),
        "{body}"
    );
    assert!(setup.upstream.received().is_empty());
}

#[tokio::test]
async fn with_redis_a_token_used_at_one_gate_is_refused_by_another_and_survives_restarts() {
    let redis = RedisServer::start().await;
    let mut setup = Setup::start_with(Options {
        redis_url: Some(redis.url().to_owned()),
        ..Options::default()
    })
    .await;
    let charge = json!({"body": {"amount": 5000, "currency": "eur"}});
    let (client, used) = setup.own_token("pay.charge", charge.clone()).await;
    let (other, unused) = setup.own_token("pay.charge", charge).await;
    let (status, _, body) = read(setup.send_with(&client, &used, setup.charge()).await).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // A second gate (or this one restarted) on the same Redis, started after both tokens were
    // issued: it knows the first was used, and that the second was not.
    let second = setup.another_gate().await;
    let charge_at_second = || {
        setup
            .http
            .post(format!("{second}/pay/v1/charges"))
            .header("content-type", "application/json")
            .body(r#"{"amount": 5000, "currency": "eur"}"#)
    };
    let (status, headers, _) =
        read(setup.send_with(&client, &used, charge_at_second()).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("token_replayed"), "{challenge}");
    assert_eq!(setup.upstream.received().len(), 1);
    let (status, _, body) = read(setup.send_with(&other, &unused, charge_at_second()).await).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(setup.upstream.received().len(), 2);
}

#[tokio::test]
async fn an_expired_token_never_reaches_the_upstream() {
    let mut setup = Setup::start_with(Options {
        clock_ahead: 120,
        ..Options::default()
    })
    .await;
    let (client, token) = setup
        .own_token(
            "pay.charge",
            json!({"body": {"amount": 5000, "currency": "eur"}}),
        )
        .await;
    let (status, headers, _) = read(setup.send_with(&client, &token, setup.charge()).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"expired\"")
    );
    assert!(setup.upstream.received().is_empty());
}

#[tokio::test]
async fn with_callers_listed_only_their_fresh_proofs_get_in_and_approvals_name_them() {
    let listed = SigningKey::generate().unwrap();
    let setup = Setup::start_with(Options {
        hold_seconds: 1,
        callers: Some(format!(
            r#"callers = [{{ name = "billing-bot", key = "{}" }}]"#,
            listed.kid()
        )),
        ..Options::default()
    })
    .await;
    let url = format!("{}/pay/v1/charges", setup.gate_url);
    let with_proof = |key: &SigningKey| {
        let now = handsign::clock::Clock::system().now();
        let proof = handsign_protocol::dpop::create(key, "POST", &url, now, None).unwrap();
        (setup.charge().header("dpop", proof.clone()), proof)
    };

    let (status, _, body) = read(setup.charge().send().await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("caller_proof_required"), "{body}");
    let stranger = SigningKey::generate().unwrap();
    let (call, _) = with_proof(&stranger);
    let (status, _, body) = read(call.send().await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("caller_not_allowed"), "{body}");
    assert!(
        setup.approvals().await.is_empty(),
        "nothing asked for strangers"
    );

    let (call, proof) = with_proof(&listed);
    let (status, _, body) = read(call.send().await.unwrap()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let asked = setup.approvals().await;
    assert_eq!(asked.len(), 1);
    assert!(
        asked[0].message.as_deref().unwrap().contains("billing-bot"),
        "{:?}",
        asked[0].message
    );
    let replayed = setup.charge().header("dpop", proof);
    let (status, _, body) = read(replayed.send().await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("dpop_replayed"), "{body}");

    let read_url = format!("{}/pay/v1/charges/ch_1", setup.gate_url);
    let proof = handsign_protocol::dpop::create(
        &listed,
        "GET",
        &read_url,
        handsign::clock::Clock::system().now(),
        None,
    )
    .unwrap();
    let response = setup
        .http
        .get(&read_url)
        .header("dpop", proof)
        .send()
        .await
        .unwrap();
    let (status, _, _) = read(response).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_forwarded_clean(&setup.upstream.received()[0]);
}

#[tokio::test]
async fn approve_on_call_holds_the_call_while_the_person_decides() {
    let mut setup = Setup::start().await;
    let call = tokio::spawn(setup.charge().send());
    let asked = setup.pending().await;
    assert_eq!(asked.action, "pay.charge");
    assert_eq!(asked.params, r#"{"body":{"amount":5000,"currency":"eur"}}"#);
    assert!(
        asked.message.as_deref().unwrap().contains("127.0.0.1"),
        "names the caller"
    );
    assert!(
        setup.upstream.received().is_empty(),
        "nothing before the decision"
    );
    let (status, body) = setup
        .gateway
        .decide(&mut setup.alice, asked.id.as_str(), "approve")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, headers, body) = read(call.await.unwrap().unwrap()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(headers["x-upstream"], "recorder");
    let received = setup.upstream.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        &received[0].body[..],
        br#"{"amount": 5000, "currency": "eur"}"#
    );
    assert_forwarded_clean(&received[0]);
    assert_eq!(setup.gate.approvals_in_flight(), 0);

    // A new identical call is a new approval.
    let again = tokio::spawn(setup.charge().send());
    until_approvals(&setup, 2).await;
    assert_eq!(setup.upstream.received().len(), 1);
    again.abort();
}

#[tokio::test]
async fn the_gates_own_approvals_are_good_in_its_first_seconds_and_brought_ones_are_not() {
    // As if the gate had started 20 seconds from now: every token of this test is issued
    // within its first seconds, when an in-memory record cannot vouch for brought tokens.
    let mut setup = Setup::start_with(Options {
        record_began_in: Some(20),
        ..Options::default()
    })
    .await;
    let call = tokio::spawn(setup.charge().send());
    let asked = setup.pending().await;
    let (status, body) = setup
        .gateway
        .decide(&mut setup.alice, asked.id.as_str(), "approve")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = read(call.await.unwrap().unwrap()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(setup.upstream.received().len(), 1);

    let charge = json!({"body": {"amount": 5000, "currency": "eur"}});
    let (client, token) = setup.own_token("pay.charge", charge).await;
    let (status, headers, _) = read(setup.send_with(&client, &token, setup.charge()).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("issued_before_start"), "{challenge}");
    assert_eq!(setup.upstream.received().len(), 1);
}

#[tokio::test]
async fn a_denied_call_gets_403_naming_who_denied_what_and_never_reaches_the_upstream() {
    let mut setup = Setup::start().await;
    let call = tokio::spawn(setup.charge().send());
    let asked = setup.pending().await;
    let (status, _) = setup
        .gateway
        .decide(&mut setup.alice, asked.id.as_str(), "deny")
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = read(call.await.unwrap().unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "denied");
    assert_eq!(body["user"], "alice");
    assert_eq!(body["action"], "pay.charge");
    assert_eq!(
        body["params"],
        json!({"body": {"amount": 5000, "currency": "eur"}})
    );
    // Repeating the call shows the same denial; it does not ask again.
    let (status, _, _) = read(setup.charge().send().await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(setup.approvals().await.len(), 1);
    assert!(setup.upstream.received().is_empty());
}

#[tokio::test]
async fn a_call_not_decided_in_time_gets_202_and_its_retry_continues_the_same_approval() {
    let mut setup = Setup::start_with(Options {
        hold_seconds: 1,
        ..Options::default()
    })
    .await;
    let (status, headers, body) = read(setup.charge().send().await.unwrap()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let id = headers[APPROVAL_ID_HEADER].to_str().unwrap().to_owned();
    assert_eq!(body["approval_id"], id.as_str());
    assert!(body["approval_url"].as_str().unwrap().contains(&id));
    assert!(body["code"].as_str().is_some());
    assert_eq!(headers["retry-after"], "5");
    assert!(
        setup.upstream.received().is_empty(),
        "unapproved: not forwarded"
    );

    // Still pending: the retry joins the same approval.
    let (status, headers, _) = read(setup.charge().send().await.unwrap()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(headers[APPROVAL_ID_HEADER], id.as_str());

    let (status, _) = setup.gateway.decide(&mut setup.alice, &id, "approve").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = read(setup.charge().send().await.unwrap()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(setup.upstream.received().len(), 1);
    assert_eq!(
        setup.approvals().await.len(),
        1,
        "one approval for all three calls"
    );
}

#[tokio::test]
async fn sixteen_identical_concurrent_calls_make_one_approval_and_one_upstream_call() {
    let mut setup = Setup::start().await;
    let calls: Vec<_> = (0..16)
        .map(|_| tokio::spawn(setup.charge().send()))
        .collect();
    let gate = setup.gate.clone();
    common::until("all 16 calls are held", || gate.calls_held() == 16).await;
    let asked = setup.pending().await;
    let (status, _) = setup
        .gateway
        .decide(&mut setup.alice, asked.id.as_str(), "approve")
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut statuses = Vec::new();
    for call in calls {
        let (status, _, body) = read(call.await.unwrap().unwrap()).await;
        if status == StatusCode::CONFLICT {
            assert!(body.contains("approval_used"), "{body}");
        }
        statuses.push(status);
    }
    let forwarded = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let used = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((forwarded, used), (1, 15), "{statuses:?}");
    assert_eq!(setup.upstream.received().len(), 1);
    assert_eq!(setup.approvals().await.len(), 1);
}

#[tokio::test]
async fn what_cannot_be_approved_exactly_or_is_too_large_is_refused_before_asking() {
    let setup = Setup::start().await;
    let post = |body: String| {
        setup
            .http
            .post(format!("{}/pay/v1/charges", setup.gate_url))
            .header("content-type", "application/json")
            .body(body)
    };
    let cases = [
        (
            r#"{"amount": 1, "amount": 2}"#.to_owned(),
            StatusCode::BAD_REQUEST,
            "invalid_params",
        ),
        (
            r#"{"amount": 9007199254740993}"#.to_owned(),
            StatusCode::BAD_REQUEST,
            "invalid_params",
        ),
        (
            format!(r#"{{"memo": "{}"}}"#, "x".repeat(5000)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
    ];
    for (body, expected, code) in cases {
        let (status, _, answer) = read(post(body).send().await.unwrap()).await;
        assert_eq!(status, expected, "{answer}");
        assert!(answer.contains(code), "{answer}");
    }
    // Without Content-Length too (chunked).
    let address = setup.gate_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut request = format!(
        "POST /pay/v1/charges HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..5 {
        request.extend_from_slice(b"3e8\r\n");
        request.extend_from_slice(&[b' '; 1000]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    // The gate may answer and close before it has read everything.
    let _ = stream.write_all(&request).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(setup.approvals().await.is_empty(), "no approval was asked");
    assert!(setup.upstream.received().is_empty());
}

#[tokio::test]
async fn an_upstream_that_is_down_answers_502_with_the_reason() {
    let setup = Setup::start_with(Options {
        upstream_down: true,
        ..Options::default()
    })
    .await;
    let (status, _, body) = read(
        setup
            .http
            .get(format!("{}/pay/v1/charges/ch_1", setup.gate_url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "upstream_unreachable");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("could not be reached")
    );
}

#[tokio::test]
async fn approvals_in_flight_are_bounded() {
    let setup = Setup::start_with(Options {
        hold_seconds: 1,
        max_pending_approvals: 1,
        ..Options::default()
    })
    .await;
    let (status, _, _) = read(setup.charge().send().await.unwrap()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let other = setup
        .http
        .post(format!("{}/pay/v1/charges", setup.gate_url))
        .header("content-type", "application/json")
        .body(r#"{"amount": 1, "currency": "eur"}"#);
    let (status, _, body) = read(other.send().await.unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("too_many_pending"), "{body}");
    // The call in flight is still joined.
    let (status, _, _) = read(setup.charge().send().await.unwrap()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(setup.approvals().await.len(), 1);
    assert!(setup.upstream.received().is_empty());
}

/// Reads `stream` until the gate closes it; everything it sent. Fails after `within`.
async fn until_closed(stream: &mut tokio::net::TcpStream, within: Duration) -> String {
    let mut received = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut received))
        .await
        .expect("the gate kept the connection open")
        .ok();
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test]
async fn a_caller_that_sends_half_a_header_or_body_is_cut_off_after_the_timeout() {
    let setup = Setup::start_with(Options {
        header_read_timeout_seconds: 1,
        body_read_timeout_seconds: 1,
        ..Options::default()
    })
    .await;
    let address = setup.gate_url.trim_start_matches("http://");
    let mut half_header = tokio::net::TcpStream::connect(address).await.unwrap();
    half_header
        .write_all(b"GET /pay/v1/charges/ch_1 HTTP/1.1\r\nHost: gate\r\n")
        .await
        .unwrap();
    // Closed after about a second, well before the 10 seconds this waits at most.
    until_closed(&mut half_header, Duration::from_secs(10)).await;

    let mut half_body = tokio::net::TcpStream::connect(address).await.unwrap();
    half_body
        .write_all(
            b"POST /pay/v1/charges HTTP/1.1\r\nHost: gate\r\ncontent-type: application/json\r\n\
              content-length: 40\r\n\r\n{\"amount\":",
        )
        .await
        .unwrap();
    let answer = until_closed(&mut half_body, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("the body did not arrive within 1 seconds"),
        "{answer}"
    );
    assert!(setup.approvals().await.is_empty());
    assert!(setup.upstream.received().is_empty());
}

#[tokio::test]
async fn callers_beyond_the_connection_cap_wait_until_a_connection_closes() {
    let setup = Setup::start_with(Options {
        max_connections: 2,
        ..Options::default()
    })
    .await;
    let address = setup.gate_url.trim_start_matches("http://");
    // Two connections that send nothing hold the gate's two places.
    let first = tokio::net::TcpStream::connect(address).await.unwrap();
    let _second = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut third = tokio::net::TcpStream::connect(address).await.unwrap();
    third
        .write_all(b"GET /pay/v1/charges/ch_1 HTTP/1.1\r\nHost: gate\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // Not answered while the cap is held (an answer would come in milliseconds).
    let mut early = Vec::new();
    let waited =
        tokio::time::timeout(Duration::from_millis(500), third.read_to_end(&mut early)).await;
    assert!(waited.is_err(), "answered beyond the connection cap");
    assert!(early.is_empty());
    drop(first);
    let answer = until_closed(&mut third, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert_eq!(setup.upstream.received().len(), 1);
}

#[tokio::test]
async fn an_approved_call_whose_sending_fails_has_spent_its_token() {
    let mut setup = Setup::start_with(Options {
        upstream_down: true,
        ..Options::default()
    })
    .await;
    let (client, token) = setup
        .own_token(
            "pay.charge",
            json!({"body": {"amount": 5000, "currency": "eur"}}),
        )
        .await;
    let (status, _, body) = read(setup.send_with(&client, &token, setup.charge()).await).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("upstream_unreachable"), "{body}");
    // The upstream may have acted before the connection failed: the approval is not reused.
    let (status, headers, _) = read(setup.send_with(&client, &token, setup.charge()).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("token_replayed")
    );
}

#[tokio::test]
async fn the_credential_never_appears_in_the_logs_and_each_call_leaves_an_audit_line() {
    let mut setup = Setup::start().await;
    let call = tokio::spawn(setup.charge().send());
    let asked = setup.pending().await;
    setup
        .gateway
        .decide(&mut setup.alice, asked.id.as_str(), "approve")
        .await;
    let (status, _, _) = read(call.await.unwrap().unwrap()).await;
    assert_eq!(status, StatusCode::CREATED);
    let logs = logs();
    assert!(!logs.contains(SECRET), "the credential is in the logs");
    let audit = logs
        .lines()
        .find(|line| line.contains("handsign_gate::audit") && line.contains(asked.id.as_str()))
        .unwrap_or_else(|| panic!("no audit line for {}:\n{logs}", asked.id.as_str()));
    for field in [
        "caller=127.0.0.1",
        "user=\"alice\"",
        "route=pay POST /v1/charges",
        "decision=\"approved\"",
        "upstream_status=201",
        "latency_ms=",
    ] {
        assert!(audit.contains(field), "{field} missing in {audit}");
    }
}

#[test]
fn the_check_command_prints_the_route_table_and_refuses_bad_files_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gate.toml");
    let good = r#"
[handsign]
url = "https://handsign.example"
agent_key = "gate.jwk"
user = "alice"

[upstreams.pay]
base_url = "https://api.pay.example"
audience = "https://api.pay.example"
credential = { header = "Authorization", value_env = "PAY_KEY", prefix = "Bearer " }

[[upstreams.pay.routes]]
route = "POST /v1/charges"
action = "pay.charge"
need = "approve"
"#;
    std::fs::write(&path, good).unwrap();
    let check = |path: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_handsign"))
            .args(["gate", "check", "--config"])
            .arg(path)
            .output()
            .unwrap()
    };
    let output = check(&path);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout.contains("/pay/ -> https://api.pay.example"),
        "{stdout}"
    );
    assert!(stdout.contains("approve  POST /v1/charges"), "{stdout}");
    assert!(stdout.contains("authorization from $PAY_KEY"), "{stdout}");

    std::fs::write(
        &path,
        good.replace("need = \"approve\"", "need = \"allow\""),
    )
    .unwrap();
    let output = check(&path);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("line 15") && stderr.contains("allow"),
        "{stderr}"
    );
}

/// The first approval request pending for alice, once one is asked for (within 30 s).
async fn asked_of_alice(gateway: &TestGateway) -> ApprovalRecord {
    common::first_pending(gateway, "alice").await
}

/// Waits until alice has `count` approval requests.
async fn until_approvals(setup: &Setup, count: usize) {
    let give_up = std::time::Instant::now() + Duration::from_secs(30);
    while setup.approvals().await.len() < count {
        assert!(
            std::time::Instant::now() < give_up,
            "gave up waiting for {count} approvals"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn the_gate_process_logs_an_audit_line_and_never_the_credential() {
    use std::io::BufRead as _;
    let upstream = Upstream::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    AgentKey::generate()
        .unwrap()
        .save_new(dir.path().join("gate.jwk"))
        .unwrap();
    let port = free_port();
    let text = format!(
        r#"
listen = "127.0.0.1:{port}"

[handsign]
url = "http://localhost:1"
agent_key = "gate.jwk"
user = "alice"

[upstreams.pay]
base_url = "{}"
audience = "https://pay.example"
credential = {{ header = "x-api-key", value_env = "GATE_TEST_PAY_KEY" }}

[[upstreams.pay.routes]]
route = "GET /v1/charges/{{id}}"
need = "pass"
"#,
        upstream.url
    );
    std::fs::write(dir.path().join("gate.toml"), text).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_handsign"))
        .args(["gate", "--config"])
        .arg(dir.path().join("gate.toml"))
        .env("GATE_TEST_PAY_KEY", SECRET)
        .env("RUST_LOG", "trace")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, receive) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let mut output = Vec::new();
    loop {
        let line = receive.recv_timeout(Duration::from_secs(30)).unwrap();
        let ready = line.contains("handsign gate ready");
        output.push(line);
        if ready {
            break;
        }
    }
    let response = handsign::http_client::new()
        .unwrap()
        .get(format!("http://127.0.0.1:{port}/pay/v1/charges/ch_1"))
        .send()
        .await
        .unwrap();
    let (status, _, _) = read(response).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(upstream.received()[0].headers["x-api-key"], SECRET);
    loop {
        let line = receive.recv_timeout(Duration::from_secs(30)).unwrap();
        let audit = line.contains("handsign_gate::audit");
        output.push(line);
        if audit {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    output.extend(receive.try_iter());
    let output = output.join("\n");
    assert!(
        !output.contains(SECRET),
        "the credential is in the gate's log"
    );
    assert!(output.contains("decision=\"passed\""), "{output}");
    assert!(output.contains("upstream_status=201"), "{output}");
}

#[tokio::test]
async fn gate_enroll_creates_the_key_and_the_person_approves_it_as_their_agent() {
    use std::io::BufRead as _;
    let gateway = TestGateway::start().await;
    let mut alice = gateway.register("alice").await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[handsign]
url = "{}"
agent_key = "keys/gate.jwk"
user = "alice"
agent_name = "payments gate"

[upstreams.pay]
base_url = "http://127.0.0.1:1"
audience = "https://pay.example"

[[upstreams.pay.routes]]
route = "GET /v1/charges/{{id}}"
need = "pass"
"#,
        gateway.url
    );
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    std::fs::write(dir.path().join("gate.toml"), text).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_handsign"))
        .args(["gate", "enroll", "--timeout", "60", "--config"])
        .arg(dir.path().join("gate.toml"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    // Read to the end on a thread of its own: the gateway runs on this test's runtime.
    let prefix = format!("{}/", gateway.url);
    let (found, url) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut found = Some(found);
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if let Some(url) = line.trim().strip_prefix(&prefix)
                && let Some(found) = found.take()
            {
                let _ = found.send(url.to_owned());
            }
        }
    });
    let url = url.await.unwrap();
    let id = url.rsplit('/').next().unwrap().to_owned();
    let (status, body) = gateway.decide(&mut alice, &id, "approve").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    let key = AgentKey::load(dir.path().join("keys/gate.jwk")).unwrap();
    let agent = gateway.store.agent(key.id()).await.unwrap().unwrap();
    assert_eq!(agent.name, "payments gate");
    assert_eq!(agent.user.as_str(), "alice");
    assert_eq!(agent.status, handsign::domain::AgentStatus::Active);
}

/// The README's gate file is `examples/payments/gate.toml`, and what the README says of it holds
/// against the example payments API (the URLs and the key's source made local to the test).
#[tokio::test]
async fn the_readme_example_works_against_the_payments_example() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = std::fs::read_to_string(root.join("examples/payments/gate.toml")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.contains(&format!(
            "`examples/payments/gate.toml`:\n\n```toml\n{example}```"
        )),
        "the README shows examples/payments/gate.toml as it is"
    );

    capture_logs();
    let gateway = TestGateway::start().await;
    let mut alice = gateway.register("alice").await;
    let payments = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let payments_url = format!("http://{}", payments.local_addr().unwrap());
    tokio::spawn(
        axum::serve(payments, handsign_example_payments::app("sk_test_4242")).into_future(),
    );
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate().unwrap();
    gateway.add_agent(&key, "alice", "payments gate").await;
    AgentKey::from_signing_key(key)
        .save_new(dir.path().join("gate-agent.jwk"))
        .unwrap();
    std::fs::write(dir.path().join("api.key"), "sk_test_4242").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gate_url = format!("http://{}", listener.local_addr().unwrap());
    let text = format!("public_url = \"{gate_url}\"\n{example}")
        .replace("http://localhost:8080", &gateway.url)
        .replace("http://127.0.0.1:9200", &payments_url)
        .replace(
            "value_env = \"PAYMENTS_API_KEY\"",
            "value_file = \"api.key\"",
        );
    let file = GateFile::parse(&text, dir.path()).unwrap();
    let verification = Verification {
        replay: Arc::new(MemoryReplayStore::new().record_began_at(0)),
        clock: Clock::system(),
    };
    let gate = Gate::new(&file, "gate.toml", verification).unwrap();
    let limits = ListenerLimits::of(&file);
    tokio::spawn(async move { listener::serve(listener, &gate, limits, pending()).await });
    let http = handsign::http_client::new().unwrap();
    let base = format!("{gate_url}/payments");

    let (status, _, body) =
        read(http.get(format!("{base}/v1/charges")).send().await.unwrap()).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, r#"{"data":[]}"#));

    let charge = http
        .post(format!("{base}/v1/charges"))
        .header("content-type", "application/json")
        .body(r#"{"amount": 5000, "currency": "eur", "customer": "cus_42"}"#)
        .send();
    let charge = tokio::spawn(charge);
    let asked = asked_of_alice(&gateway).await;
    assert_eq!(asked.action, "payments.charge");
    assert_eq!(
        asked.params,
        r#"{"body":{"amount":5000,"currency":"eur","customer":"cus_42"}}"#
    );
    gateway
        .decide(&mut alice, asked.id.as_str(), "approve")
        .await;
    let (status, _, body) = read(charge.await.unwrap().unwrap()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["id"], "ch_1");

    let refund = http
        .post(format!("{base}/v1/refunds"))
        .header("content-type", "application/json")
        .body(r#"{"charge": "ch_1"}"#);
    let (status, _, body) = read(refund.send().await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("route_denied"), "{body}");
    let (status, _, body) = read(
        http.get(format!("{base}/v1/customers"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body.contains("unlisted_route") && body.contains("gate.toml"),
        "{body}"
    );

    // Bring your own token, as `handsign request` + `handsign call` do.
    let agent = SigningKey::generate().unwrap();
    gateway.add_agent(&agent, "alice", "travel bot").await;
    let client = Client::new(&gateway.url, AgentKey::from_signing_key(agent)).unwrap();
    let pending = client
        .request_approval(ApprovalRequest::new(
            "payments.charge",
            json!({"body": {"amount": 900, "currency": "eur"}}),
            "https://payments.example",
        ))
        .await
        .unwrap();
    gateway.decide(&mut alice, pending.id(), "approve").await;
    let token = pending.wait().await.unwrap().into_token();
    let mut call = http
        .post(format!("{base}/v1/charges"))
        .header("content-type", "application/json")
        .body(r#"{"amount": 900, "currency": "eur"}"#)
        .build()
        .unwrap();
    client.authorize(&mut call, &token).unwrap();
    let (status, _, body) = read(http.execute(call).await.unwrap()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["id"], "ch_2");
}
