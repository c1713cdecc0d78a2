//! The agent SDK (`handsign-client`) and the `handsign request` / `handsign agent keygen|enroll`
//! commands against the real gateway: a person decides with a software passkey while the SDK
//! waits, and every outcome comes back typed (or as its exit status).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{GatewayClient, Person, TestGateway, flight, until};
use handsign::clock::{Clock, TestClock};
use handsign::domain::{AgentRecord, AgentStatus, ApprovalRecord, UserId};
use handsign::store::ApprovalFilter;
use handsign_client::{AgentKey, ApprovalError, ApprovalRequest, Client, ErrorCode, RetryPolicy};
use handsign_protocol::canonical::Limits;
use handsign_protocol::dpop;
use handsign_protocol::params::CanonicalParams;
use handsign_protocol::token::{self, Expected};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

const AUDIENCE: &str = "https://travel.example";

/// Retries quick enough for tests that provoke failures.
fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        attempts: 5,
        first_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
    }
}

/// Adds `key` as an active agent of `user`, as `handsign agent add` would.
async fn add_agent(gateway: &TestGateway, key: &AgentKey, user: &str) {
    gateway
        .store
        .add_agent(&AgentRecord {
            id: key.id().to_owned(),
            name: format!("sdk agent for {user}"),
            user: UserId::parse(user).unwrap(),
            public_jwk: Some(key.public_jwk()),
            status: AgentStatus::Active,
            created_at: handsign::clock::Clock::system().now(),
            enrollment_expires_at: None,
        })
        .await
        .unwrap();
}

/// A gateway, alice with a passkey, and an SDK client for an agent of hers.
async fn alice_and_agent() -> (TestGateway, Person, Client) {
    alice_and_agent_reading(Clock::system()).await
}

/// As [`alice_and_agent`], the gateway reading `clock`.
async fn alice_and_agent_reading(clock: Clock) -> (TestGateway, Person, Client) {
    let gateway = TestGateway::start_reading(clock, |_| {}).await;
    let alice = gateway.register("alice").await;
    let key = AgentKey::generate().unwrap();
    add_agent(&gateway, &key, "alice").await;
    let client = Client::new(&gateway.url, key).unwrap();
    (gateway, alice, client)
}

fn book(params: Value) -> ApprovalRequest {
    ApprovalRequest::new("flights.book", params, AUDIENCE).message("Book the flight we discussed")
}

/// Every request `agent` has at the gateway, whatever its state.
async fn requests_of(gateway: &TestGateway, user: &str, agent: &str) -> Vec<ApprovalRecord> {
    let user = UserId::parse(user).unwrap();
    let now = gateway.state.clock.now();
    let mut all = Vec::new();
    for filter in [ApprovalFilter::Pending, ApprovalFilter::History] {
        all.extend(
            gateway
                .store
                .approvals(&user, filter, now, 1000)
                .await
                .unwrap(),
        );
    }
    all.retain(|approval| approval.agent == agent);
    all
}

fn params_hash(params: &Value) -> handsign_protocol::params::ParamsHash {
    CanonicalParams::from_value(params, &Limits::default())
        .unwrap()
        .hash()
}

#[tokio::test]
async fn approved_while_waiting_gives_a_token_bound_to_the_agent_key() {
    let (gateway, mut alice, client) = alice_and_agent().await;
    let pending = client.request_approval(book(flight())).await.unwrap();
    assert_eq!(pending.params_sha256(), params_hash(&flight()).as_str());
    assert_eq!(
        pending.approval_url(),
        format!("{}/approve/{}", gateway.url, pending.id())
    );
    assert_eq!(pending.code().len(), 7);
    assert!(pending.expires_at() > handsign::clock::Clock::system().now());

    let parked = gateway.state.events.waiters();
    let waiting = tokio::spawn({
        let pending = pending.clone();
        async move { pending.wait().await }
    });
    until("the SDK's long poll is parked", || {
        gateway.state.events.waiters() > parked
    })
    .await;
    let (status, answer) = gateway.decide(&mut alice, pending.id(), "approve").await;
    assert!(status.is_success(), "{answer}");
    let approval = waiting.await.unwrap().unwrap();

    let hash = params_hash(&flight());
    let claims = token::verify(
        approval.token(),
        &gateway.keys().await,
        &Expected {
            issuer: &gateway.state.public.issuer,
            audience: AUDIENCE,
            action: "flights.book",
            params_sha256: &hash,
            now: handsign::clock::Clock::system().now(),
            skew: 5,
        },
    )
    .unwrap();
    assert_eq!(claims.cnf.unwrap().jkt, client.agent_id());
    assert_eq!(claims.act.sub, client.agent_id());
    assert_eq!(approval.approval_id(), pending.id());
    assert_eq!(approval.exp(), claims.exp);
    assert!(!format!("{approval:?}").contains(approval.token()));

    // The token is handed out once: a second wait says so rather than asking again.
    assert_eq!(
        pending.wait().await.unwrap_err(),
        ApprovalError::TokenAlreadyCollected
    );

    // Calling the service: the headers its middleware checks.
    let url = "https://travel.example/bookings?confirm=1";
    let mut request = reqwest::Request::new(reqwest::Method::POST, url.parse().unwrap());
    client.authorize(&mut request, approval.token()).unwrap();
    assert_eq!(
        request.headers()["authorization"],
        format!("Approval {}", approval.token()).as_str()
    );
    let proof = dpop::verify(
        request.headers()["dpop"].to_str().unwrap(),
        &dpop::Expected {
            method: "POST",
            url,
            now: handsign::clock::Clock::system().now(),
            access_token: Some(approval.token()),
        },
    )
    .unwrap();
    assert_eq!(proof.jkt, client.agent_id());
    // The proof names this token: it cannot accompany another.
    assert!(
        dpop::verify(
            request.headers()["dpop"].to_str().unwrap(),
            &dpop::Expected {
                method: "POST",
                url,
                now: handsign::clock::Clock::system().now(),
                access_token: Some("another.token.value"),
            },
        )
        .is_err()
    );
}

#[tokio::test]
async fn denied_while_waiting_is_denied() {
    let (gateway, mut alice, client) = alice_and_agent().await;
    let pending = client.request_approval(book(flight())).await.unwrap();
    let parked = gateway.state.events.waiters();
    let waiting = tokio::spawn({
        let pending = pending.clone();
        async move { pending.wait().await }
    });
    until("the SDK's long poll is parked", || {
        gateway.state.events.waiters() > parked
    })
    .await;
    let (status, answer) = gateway.decide(&mut alice, pending.id(), "deny").await;
    assert!(status.is_success(), "{answer}");
    assert_eq!(waiting.await.unwrap().unwrap_err(), ApprovalError::Denied);
}

#[tokio::test]
async fn a_request_nobody_decides_expires() {
    // The gateway's time is the test's: the request expires when the test moves the clock
    // past its ttl, and the waiting long poll ends then, without ten seconds passing.
    let time = TestClock::starting_now();
    let (gateway, _alice, client) = alice_and_agent_reading(time.clock()).await;
    // The shortest ttl the gateway allows; the long poll ends when the gateway reports expiry.
    let pending = client
        .request_approval(book(flight()).ttl(10))
        .await
        .unwrap();
    let id = pending.id().to_owned();
    let waiting = tokio::spawn(async move { pending.wait().await });
    until("the long poll is parked", || {
        gateway.state.events.waiters() > 0
    })
    .await;
    time.advance(Duration::from_secs(9));
    let request = requests_of(&gateway, "alice", client.agent_id()).await;
    assert_eq!(request[0].id.as_str(), id);
    assert_eq!(
        request[0].status(gateway.state.clock.now()),
        handsign::domain::ApprovalStatus::Pending
    );
    assert!(!waiting.is_finished());
    time.advance(Duration::from_secs(1));
    let waited = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the long poll ends when the clock passes the expiry");
    assert_eq!(waited.unwrap().unwrap_err(), ApprovalError::Expired);
}

#[tokio::test]
async fn a_short_timeout_times_out_and_the_same_request_can_still_be_collected() {
    let (gateway, mut alice, client) = alice_and_agent().await;
    let pending = client.request_approval(book(flight())).await.unwrap();
    let started = Instant::now();
    assert_eq!(
        pending
            .wait_timeout(Duration::from_secs(1))
            .await
            .unwrap_err(),
        ApprovalError::TimedOut
    );
    assert!(started.elapsed() <= Duration::from_secs(3));
    assert_eq!(
        pending.wait_timeout(Duration::ZERO).await.unwrap_err(),
        ApprovalError::TimedOut
    );

    let (status, answer) = gateway.decide(&mut alice, pending.id(), "approve").await;
    assert!(status.is_success(), "{answer}");
    let approval = pending.wait_timeout(Duration::from_secs(5)).await.unwrap();
    assert_eq!(approval.approval_id(), pending.id());
    assert_eq!(
        requests_of(&gateway, "alice", client.agent_id())
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn the_gateway_refusal_comes_back_with_its_code() {
    let (gateway, _alice, client) = alice_and_agent().await;
    let error = client
        .request_approval(ApprovalRequest::new("book a flight!", flight(), AUDIENCE))
        .await
        .unwrap_err();
    match error {
        ApprovalError::Refused {
            status,
            code,
            message,
        } => {
            assert_eq!(status, 400);
            assert_eq!(code, ErrorCode::InvalidAction);
            assert!(message.contains("action"), "{message}");
        }
        other => panic!("expected Refused, got {other:?}"),
    }

    // An agent the gateway does not know is refused too, with the gateway's code.
    let stranger = Client::new(&gateway.url, AgentKey::generate().unwrap()).unwrap();
    let error = stranger.request_approval(book(flight())).await.unwrap_err();
    assert!(
        matches!(&error, ApprovalError::Refused { status: 401, code, .. } if *code == ErrorCode::UnknownAgent),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let client = Client::new(
        &format!("http://127.0.0.1:{port}"),
        AgentKey::generate().unwrap(),
    )
    .unwrap()
    .with_retry(quick_retries());
    let error = client.request_approval(book(flight())).await.unwrap_err();
    match error {
        ApprovalError::Unreachable(message) => {
            assert!(message.contains("after 5 attempts"), "{message}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

/// A TCP proxy in front of the gateway that can cut every open connection, and reports the
/// request lines it forwarded.
struct CuttingProxy {
    url: String,
    target: Arc<OnceLock<SocketAddr>>,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    requests: watch::Receiver<Vec<String>>,
}

impl CuttingProxy {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://localhost:{}", listener.local_addr().unwrap().port());
        let target = Arc::new(OnceLock::<SocketAddr>::new());
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (seen, requests) = watch::channel(Vec::<String>::new());
        let seen = Arc::new(seen);
        tokio::spawn({
            let target = target.clone();
            let connections = connections.clone();
            async move {
                loop {
                    let (inbound, _) = listener.accept().await.unwrap();
                    let target = *target.get().unwrap();
                    let seen = seen.clone();
                    let task = tokio::spawn(async move {
                        let Ok(upstream) = TcpStream::connect(target).await else {
                            return;
                        };
                        let (mut client_read, mut client_write) = inbound.into_split();
                        let (mut upstream_read, mut upstream_write) = upstream.into_split();
                        let up = async {
                            let mut buffer = vec![0u8; 16 * 1024];
                            loop {
                                let n = client_read.read(&mut buffer).await.unwrap_or(0);
                                if n == 0 {
                                    let _ = upstream_write.shutdown().await;
                                    break;
                                }
                                let chunk = String::from_utf8_lossy(&buffer[..n]);
                                if let Some(line) = chunk.lines().next()
                                    && (line.starts_with("GET ") || line.starts_with("POST "))
                                {
                                    seen.send_modify(|lines| lines.push(line.to_owned()));
                                }
                                if upstream_write.write_all(&buffer[..n]).await.is_err() {
                                    break;
                                }
                            }
                        };
                        let down = tokio::io::copy(&mut upstream_read, &mut client_write);
                        let _ = tokio::join!(up, down);
                    });
                    connections.lock().unwrap().push(task.abort_handle());
                }
            }
        });
        CuttingProxy {
            url,
            target,
            connections,
            requests,
        }
    }

    fn forward_to(&self, gateway_url: &str) {
        let port: u16 = gateway_url.rsplit(':').next().unwrap().parse().unwrap();
        self.target
            .set(SocketAddr::from(([127, 0, 0, 1], port)))
            .unwrap();
    }

    /// Closes every connection open now, in both directions, mid-request or not.
    fn cut(&self) {
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    /// Waits until `count` request lines containing `needle` have gone through.
    async fn seen(&self, needle: &str, count: usize) {
        let mut requests = self.requests.clone();
        tokio::time::timeout(
            Duration::from_secs(30),
            requests.wait_for(|lines| lines.iter().filter(|l| l.contains(needle)).count() >= count),
        )
        .await
        .expect("the proxy saw the request in time")
        .unwrap();
    }

    fn count(&self, needle: &str) -> usize {
        self.requests
            .borrow()
            .iter()
            .filter(|line| line.contains(needle))
            .count()
    }
}

#[tokio::test]
async fn a_dropped_connection_mid_wait_resumes_the_same_request() {
    // The gateway's public URL is the proxy's, so DPoP proofs and passkey origins name it.
    let proxy = CuttingProxy::start().await;
    let gateway = TestGateway::start_with(|args| {
        args.public_url = Some(proxy.url.parse().unwrap());
    })
    .await;
    proxy.forward_to(&gateway.url);
    let browser = GatewayClient::new(&proxy.url);
    let code =
        handsign::invitations::issue(gateway.store.as_ref(), None, gateway.state.clock.now())
            .await
            .unwrap();
    let mut alice = common::register(&browser.http, &proxy.url, &code, "alice").await;
    let key = AgentKey::generate().unwrap();
    add_agent(&gateway, &key, "alice").await;
    let client = Client::new(&proxy.url, key)
        .unwrap()
        .with_retry(quick_retries());

    let pending = client.request_approval(book(flight())).await.unwrap();
    let poll = format!("GET /v1/approvals/{}?wait=", pending.id());
    let parked = gateway.state.events.waiters();
    let waiting = tokio::spawn({
        let pending = pending.clone();
        async move { pending.wait().await }
    });
    proxy.seen(&poll, 1).await;
    until("the first long poll is parked", || {
        gateway.state.events.waiters() > parked
    })
    .await;

    proxy.cut();
    // The gateway drops the abandoned long poll, and the SDK polls again on a new connection.
    proxy.seen(&poll, 2).await;
    until("the second long poll is parked", || {
        gateway.state.events.waiters() > parked
    })
    .await;

    let (status, answer) = browser.decide(&mut alice, pending.id(), "approve").await;
    assert!(status.is_success(), "{answer}");
    let approval = waiting.await.unwrap().unwrap();
    assert_eq!(approval.approval_id(), pending.id());

    // One request, asked once, read more than once.
    assert_eq!(proxy.count("POST /v1/approvals "), 1);
    assert!(proxy.count(&poll) >= 2);
    let requests = requests_of(&gateway, "alice", client.agent_id()).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].id.as_str(), pending.id());
}

#[tokio::test]
async fn a_wait_against_a_vanished_gateway_ends_unreachable() {
    let proxy = CuttingProxy::start().await;
    let gateway = TestGateway::start_with(|args| {
        args.public_url = Some(proxy.url.parse().unwrap());
    })
    .await;
    proxy.forward_to(&gateway.url);
    let key = AgentKey::generate().unwrap();
    add_agent(&gateway, &key, "alice").await;
    let client = Client::new(&proxy.url, key)
        .unwrap()
        .with_retry(quick_retries());
    let pending = client.request_approval(book(flight())).await.unwrap();
    drop(gateway);
    proxy.cut();
    let error = pending.wait().await.unwrap_err();
    assert!(matches!(error, ApprovalError::Unreachable(_)), "{error:?}");
}

#[tokio::test]
async fn enrollment_is_approved_by_the_user_and_the_agent_can_then_ask() {
    let gateway = TestGateway::start().await;
    let mut alice = gateway.register("alice").await;
    let client = Client::new(&gateway.url, AgentKey::generate().unwrap()).unwrap();

    let enrollment = client.enroll("travel bot", "alice").await.unwrap();
    assert!(enrollment.approval_url().ends_with(enrollment.id()));
    // Not active yet: asking for an approval is refused.
    let early = client.request_approval(book(flight())).await.unwrap_err();
    assert!(
        matches!(&early, ApprovalError::Refused { code, .. } if *code == ErrorCode::AgentNotEnrolled),
        "{early:?}"
    );
    let waiting = tokio::spawn({
        let enrollment = enrollment.clone();
        async move { enrollment.wait().await }
    });
    let (status, answer) = gateway.decide(&mut alice, enrollment.id(), "approve").await;
    assert!(status.is_success(), "{answer}");
    waiting.await.unwrap().unwrap();

    client.request_approval(book(flight())).await.unwrap();
}

#[tokio::test]
async fn a_denied_enrollment_is_denied() {
    let gateway = TestGateway::start().await;
    let mut alice = gateway.register("alice").await;
    let client = Client::new(&gateway.url, AgentKey::generate().unwrap()).unwrap();
    let enrollment = client.enroll("travel bot", "alice").await.unwrap();
    let (status, answer) = gateway.decide(&mut alice, enrollment.id(), "deny").await;
    assert!(status.is_success(), "{answer}");
    // The key is revoked with the denial; the wait still reports the denial.
    assert_eq!(enrollment.wait().await.unwrap_err(), ApprovalError::Denied);
}

#[tokio::test]
async fn load_or_create_writes_an_owner_only_key_and_reloads_the_same_id() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.jwk");
    let key = AgentKey::load_or_create(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(AgentKey::load_or_create(&path).unwrap().id(), key.id());
}

/// A `handsign` agent command (`request`, `agent enroll`) as a child process: its stderr lines
/// arrive on a channel while it runs.
struct AgentCommand {
    child: std::process::Child,
    stderr: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl AgentCommand {
    /// `handsign request` for a flight, with `extra` arguments.
    fn request(gateway: &TestGateway, key_file: &std::path::Path, extra: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_handsign"));
        command
            .arg("request")
            .args(["--gateway", &gateway.url])
            .arg("--key")
            .arg(key_file)
            .args(["--action", "flights.book"])
            .args(["--params", r#"{"to": "NYC", "from": "SFO", "seats": 1.0}"#])
            .args(["--audience", AUDIENCE])
            .args(extra);
        Self::spawn(command)
    }

    fn spawn(mut command: Command) -> Self {
        let mut child = command
            .env_remove("HANDSIGN_GATEWAY")
            .env_remove("HANDSIGN_AGENT_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (lines, stderr) = tokio::sync::mpsc::unbounded_channel();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        AgentCommand { child, stderr }
    }

    /// The request id, from the approval URL printed on stderr.
    async fn approval_id(&mut self) -> String {
        let mut seen = Vec::new();
        loop {
            let line = tokio::time::timeout(Duration::from_secs(30), self.stderr.recv())
                .await
                .expect("the command printed the approval URL in time");
            let Some(line) = line else {
                panic!("stderr ended before the approval URL: {seen:?}");
            };
            if let Some((_, id)) = line.split_once("/approve/") {
                return id.trim().to_owned();
            }
            seen.push(line);
        }
    }

    async fn finish(self) -> std::process::Output {
        tokio::task::spawn_blocking(move || self.child.wait_with_output().unwrap())
            .await
            .unwrap()
    }
}

async fn cli_agent(gateway: &TestGateway) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("agent.jwk");
    let key = AgentKey::create(&key_file).unwrap();
    add_agent(gateway, &key, "alice").await;
    (dir, key_file)
}

#[tokio::test]
async fn cli_request_prints_only_the_token_and_exits_0_when_approved() {
    let gateway = TestGateway::start().await;
    let mut alice = gateway.register("alice").await;
    let (_dir, key_file) = cli_agent(&gateway).await;

    let mut command = AgentCommand::request(&gateway, &key_file, &["--message", "Book it"]);
    let id = command.approval_id().await;
    let (status, answer) = gateway.decide(&mut alice, &id, "approve").await;
    assert!(status.is_success(), "{answer}");
    let output = command.finish().await;
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let minted = stdout.strip_suffix('\n').unwrap();
    assert!(!minted.contains(char::is_whitespace), "{stdout:?}");

    let params = json!({"to": "NYC", "from": "SFO", "seats": 1});
    let hash = params_hash(&params);
    let claims = token::verify(
        minted,
        &gateway.keys().await,
        &Expected {
            issuer: &gateway.state.public.issuer,
            audience: AUDIENCE,
            action: "flights.book",
            params_sha256: &hash,
            now: handsign::clock::Clock::system().now(),
            skew: 5,
        },
    )
    .unwrap();
    assert_eq!(claims.approval, id);
    let key = AgentKey::load(&key_file).unwrap();
    assert_eq!(claims.cnf.unwrap().jkt, key.id());
}

#[tokio::test]
async fn cli_request_draws_the_link_as_a_qr_code_on_stderr_when_asked() {
    let gateway = TestGateway::start().await;
    let mut alice = gateway.register("alice").await;
    let (_dir, key_file) = cli_agent(&gateway).await;

    let mut command = AgentCommand::request(&gateway, &key_file, &["--qr"]);
    let id = command.approval_id().await;
    let url = format!("{}/approve/{id}", gateway.url);
    let expected = handsign_client::terminal_qr(&url).unwrap();
    let mut printed = String::new();
    while !printed.contains(&expected) {
        let line = tokio::time::timeout(Duration::from_secs(30), command.stderr.recv())
            .await
            .expect("the QR code arrived in time")
            .expect("stderr ended before the QR code");
        printed.push_str(&line);
        printed.push('\n');
    }
    gateway.decide(&mut alice, &id, "approve").await;
    let output = command.finish().await;
    assert_eq!(output.status.code(), Some(0));
    // stdout still carries only the token.
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
}

#[tokio::test]
async fn cli_request_exits_3_when_denied_and_5_when_timed_out() {
    let gateway = TestGateway::start().await;
    let mut alice = gateway.register("alice").await;
    let (_dir, key_file) = cli_agent(&gateway).await;

    let mut command = AgentCommand::request(&gateway, &key_file, &[]);
    let id = command.approval_id().await;
    let (status, answer) = gateway.decide(&mut alice, &id, "deny").await;
    assert!(status.is_success(), "{answer}");
    let output = command.finish().await;
    assert_eq!(output.status.code(), Some(3));
    assert!(output.stdout.is_empty());

    let command = AgentCommand::request(&gateway, &key_file, &["--timeout", "1"]);
    let output = command.finish().await;
    assert_eq!(output.status.code(), Some(5));
    assert!(output.stdout.is_empty());
}

#[tokio::test]
async fn cli_request_exits_2_on_params_it_cannot_send_exactly_and_on_refusals() {
    let gateway = TestGateway::start().await;
    let (_dir, key_file) = cli_agent(&gateway).await;
    let run = |params: &'static str, action: &'static str| {
        let (url, key_file) = (gateway.url.clone(), key_file.clone());
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_handsign"))
                .args(["request", "--gateway", &url])
                .arg("--key")
                .arg(&key_file)
                .args([
                    "--action",
                    action,
                    "--params",
                    params,
                    "--audience",
                    AUDIENCE,
                ])
                .output()
                .unwrap()
        })
    };
    let duplicate = run(r#"{"a": 1, "a": 2}"#, "flights.book").await.unwrap();
    assert_eq!(duplicate.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&duplicate.stderr);
    assert!(stderr.contains("duplicate"), "{stderr}");
    let refused = run("{}", "handsign.reserved").await.unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("invalid_action"), "{stderr}");
}

#[test]
fn cli_keygen_writes_an_owner_only_key_and_refuses_to_overwrite() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.jwk");
    let keygen = || {
        Command::new(env!("CARGO_BIN_EXE_handsign"))
            .args(["agent", "keygen", "--key"])
            .arg(&path)
            .output()
            .unwrap()
    };
    let output = keygen();
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let mut lines = stdout.lines();
    let id = lines.next().unwrap();
    let jwk: handsign_client::Jwk = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert!(jwk.d.is_none());
    assert_eq!(handsign_protocol::keys::thumbprint(&jwk).unwrap(), id);
    assert_eq!(AgentKey::load(&path).unwrap().id(), id);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let again = keygen();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert_eq!(AgentKey::load(&path).unwrap().id(), id);
}

#[tokio::test]
async fn cli_enroll_waits_for_the_user_and_exits_0_when_approved() {
    let gateway = TestGateway::start().await;
    let mut alice = gateway.register("alice").await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("agent.jwk");
    let key = AgentKey::create(&key_file).unwrap();

    let mut command = Command::new(env!("CARGO_BIN_EXE_handsign"));
    command
        .args(["agent", "enroll", "--gateway", &gateway.url, "--key"])
        .arg(&key_file)
        .args(["--name", "travel bot", "--user", "alice"]);
    let mut command = AgentCommand::spawn(command);
    let id = command.approval_id().await;
    let (status, answer) = gateway.decide(&mut alice, &id, "approve").await;
    assert!(status.is_success(), "{answer}");
    let output = command.finish().await;
    assert_eq!(output.status.code(), Some(0));
    assert!(output.stdout.is_empty());
    let agent = gateway.store.agent(key.id()).await.unwrap().unwrap();
    assert_eq!(agent.status, AgentStatus::Active);
}

/// `handsign request` pointed at something that is not a Handsign gateway (here a server that
/// answers every path with an empty 404, as another service on a wrong port would) says which
/// URL answered and what to check, rather than printing an empty message.
#[tokio::test]
async fn cli_request_at_a_wrong_gateway_url_says_which_url_answered() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, axum::Router::new()).await.unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("agent.jwk");
    AgentKey::create(&key_file).unwrap();
    let url_arg = url.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_handsign"))
            .args(["request", "--gateway", &url_arg])
            .arg("--key")
            .arg(&key_file)
            .args(["--action", "flights.book", "--params", "{}"])
            .args(["--audience", AUDIENCE])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{url}/v1/approvals gave an empty answer, not a Handsign gateway's error: check \
             the gateway URL (--gateway, HANDSIGN_GATEWAY)"
        )),
        "{stderr}"
    );
}

/// The state of request `id` as stored.
async fn stored(gateway: &TestGateway, id: &str) -> ApprovalRecord {
    let id = handsign::domain::ApprovalId::parse(id).unwrap();
    gateway.store.approval(&id).await.unwrap().unwrap()
}

fn cancel_reason(record: &ApprovalRecord) -> Option<&str> {
    match &record.state {
        handsign::domain::ApprovalState::Cancelled { reason, .. } => Some(reason),
        _ => None,
    }
}

#[tokio::test]
async fn a_cancelled_request_ends_the_wait_with_its_reason() {
    let (gateway, _alice, client) = alice_and_agent().await;
    let pending = client.request_approval(book(flight())).await.unwrap();
    pending.cancel(Some("plans changed")).await.unwrap();
    assert_eq!(
        pending.wait().await.unwrap_err(),
        ApprovalError::Cancelled {
            reason: Some("plans changed".into())
        }
    );
    let (status, answer) = gateway.options(pending.id(), "approve").await;
    assert_eq!(status, reqwest::StatusCode::CONFLICT, "{answer}");
    // Cancelling twice is refused with the gateway's typed code.
    assert!(matches!(
        pending.cancel(None).await.unwrap_err(),
        ApprovalError::Refused {
            status: 409,
            code: ErrorCode::NotPending,
            ..
        }
    ));
}

#[tokio::test]
async fn a_revocation_during_the_wait_says_why() {
    let (gateway, _alice, client) = alice_and_agent().await;
    let pending = client.request_approval(book(flight())).await.unwrap();
    let parked_before = gateway.state.events.waiters();
    let waiting = {
        let pending = pending.clone();
        tokio::spawn(async move { pending.wait().await })
    };
    // Revoked once the long poll is parked; a revoked agent's later reads are refused.
    let id = handsign::domain::ApprovalId::parse(pending.id()).unwrap();
    until("the wait is parked", || {
        gateway.state.events.waiters() > parked_before
    })
    .await;
    let revoked = gateway
        .store
        .set_agent_status(
            client.agent_id(),
            AgentStatus::Revoked,
            handsign::clock::Clock::system().now(),
        )
        .await
        .unwrap();
    gateway.state.events.publish(&id, &revoked.user);
    assert_eq!(
        waiting.await.unwrap().unwrap_err(),
        ApprovalError::Cancelled {
            reason: Some("agent revoked".into())
        }
    );
}

#[tokio::test]
async fn wait_or_cancel_withdraws_the_request_when_the_time_runs_out() {
    let (gateway, _alice, client) = alice_and_agent().await;
    let pending = client.request_approval(book(flight())).await.unwrap();
    assert_eq!(
        pending
            .wait_or_cancel(Duration::from_secs(1))
            .await
            .unwrap_err(),
        ApprovalError::TimedOut
    );
    let record = stored(&gateway, pending.id()).await;
    assert_eq!(
        cancel_reason(&record),
        Some("the agent stopped waiting for a decision")
    );
}

#[tokio::test]
async fn wait_or_cancel_returns_a_decision_that_came_first() {
    let (gateway, mut alice, client) = alice_and_agent().await;
    let pending = client.request_approval(book(flight())).await.unwrap();
    let (status, answer) = gateway.decide(&mut alice, pending.id(), "approve").await;
    assert!(status.is_success(), "{answer}");
    let approval = pending.wait_or_cancel(Duration::ZERO).await.unwrap();
    assert_eq!(approval.approval_id(), pending.id());
}

#[tokio::test]
async fn cli_request_cancels_the_request_when_its_timeout_passes() {
    let gateway = TestGateway::start().await;
    let _alice = gateway.register("alice").await;
    let (_dir, key_file) = cli_agent(&gateway).await;

    let mut command = AgentCommand::request(&gateway, &key_file, &["--timeout", "1"]);
    let id = command.approval_id().await;
    let output = command.finish().await;
    assert_eq!(output.status.code(), Some(5));
    let record = stored(&gateway, &id).await;
    assert_eq!(
        cancel_reason(&record),
        Some("the agent stopped waiting for a decision")
    );
}

#[tokio::test]
async fn cli_request_cancels_the_request_on_ctrl_c() {
    let gateway = TestGateway::start().await;
    let _alice = gateway.register("alice").await;
    let (_dir, key_file) = cli_agent(&gateway).await;

    let mut command = AgentCommand::request(&gateway, &key_file, &[]);
    let id = command.approval_id().await;
    let interrupted = Command::new("kill")
        .args(["-INT", &command.child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let output = command.finish().await;
    assert_eq!(output.status.code(), Some(130));
    assert!(output.stdout.is_empty());
    let record = stored(&gateway, &id).await;
    assert_eq!(cancel_reason(&record), Some("the agent was interrupted"));
}
