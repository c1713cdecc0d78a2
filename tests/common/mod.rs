//! A gateway for one test: the real server on port 0 with its own data directory, a software
//! passkey for the person, and agents that sign DPoP proofs, so a test reads like the scenario
//! it checks.
#![allow(dead_code)]

pub mod process;

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use handsign::clock::Clock;
use handsign::config::{LogFormat, RequestLimits, ServeArgs};
use handsign::domain::{AgentRecord, AgentStatus, UserId};
use handsign::server;
use handsign::storage::Storage;
use handsign::store::Store;
use handsign_protocol::dpop;
use handsign_protocol::keys::{Jwks, KeySet, SigningKey};
pub use handsign_redis_harness::RedisServer;
use p256::SecretKey;
use p256::elliptic_curve::sec1::ToSec1Point as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use webauthn_authenticator_rs::WebauthnAuthenticator as _;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};

/// The defaults of `handsign serve`, with the test's listen address and public URL.
pub fn serve_args(data_dir: &std::path::Path, public_url: &str) -> ServeArgs {
    ServeArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        public_url: Some(Url::parse(public_url).unwrap()),
        data_dir: data_dir.to_owned(),
        token_lifetime: 30,
        limits: RequestLimits {
            max_body_bytes: 256 * 1024,
            max_params_bytes: 64 * 1024,
            max_params_depth: 32,
            max_ttl: 3600,
            max_pending_per_agent: 20,
            agent_requests_per_minute: 1000,
            user_prompts_per_minute: 100_000,
            max_pending_enrollments: 5,
            enrollments_per_minute: 1000,
            ceremonies_per_minute: 10_000,
            client_address_header: None,
        },
        connections: Default::default(),
        metrics: Default::default(),
        redis_url: None,
        redis_replicas: Default::default(),
        log_format: LogFormat::Text,
        webhooks: Default::default(),
        push_subject: None,
        danger_allow_http_push_endpoints: false,
        danger_allow_private_push_endpoints: false,
        max_devices_per_user: 10,
    }
}

/// The environment variable that runs the gateway tests on Redis: `HANDSIGN_TEST_STORE=redis`
/// (the test command runs the gateway suites once per store).
pub const STORE_VARIABLE: &str = "HANDSIGN_TEST_STORE";

/// A gateway started in this process, with direct access to its store.
pub struct TestGateway {
    pub client: GatewayClient,
    pub store: Arc<dyn Store>,
    /// The server's shared state, for tests and benchmarks that act as one of its parts.
    pub state: handsign::state::AppState,
    /// The gateway's own `redis-server` when it runs on Redis.
    pub redis: Option<RedisServer>,
    _data: tempfile::TempDir,
    _shutdown: oneshot::Sender<()>,
}

impl std::ops::Deref for TestGateway {
    type Target = GatewayClient;
    fn deref(&self) -> &GatewayClient {
        &self.client
    }
}

/// What a browser and a person do at a gateway's URL.
#[derive(Clone)]
pub struct GatewayClient {
    /// Where requests go.
    pub url: String,
    /// The gateway's public URL: the origin browsers send. The same as `url` unless the client
    /// talks to one of several instances that share a public URL.
    pub public: String,
    pub http: reqwest::Client,
}

impl TestGateway {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a gateway whose configuration `configure` may change, on the store
    /// [`STORE_VARIABLE`] names (the embedded one by default).
    pub async fn start_with(configure: impl FnOnce(&mut ServeArgs)) -> Self {
        Self::start_reading(Clock::system(), configure).await
    }

    /// Like [`start_with`](Self::start_with), the gateway reading `clock` (a test sets the time
    /// with a [`TestClock`](handsign::clock::TestClock) instead of waiting for it).
    pub async fn start_reading(clock: Clock, configure: impl FnOnce(&mut ServeArgs)) -> Self {
        let redis = match std::env::var(STORE_VARIABLE).as_deref() {
            Ok("redis") => Some(RedisServer::start().await),
            Ok("embedded") | Err(_) => None,
            Ok(other) => panic!("{STORE_VARIABLE}={other}: use redis or embedded"),
        };
        let data = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://localhost:{}", listener.local_addr().unwrap().port());
        let mut args = serve_args(data.path(), &url);
        args.redis_url = redis.as_ref().map(|redis| redis.url().to_owned());
        configure(&mut args);
        let replicas = args.redis_replicas.wait().unwrap();
        let storage = Storage::open_waiting(&args.data_dir, args.redis_url.as_deref(), replicas)
            .await
            .unwrap();
        let store = storage.store.clone();
        let state = server::open(&args, &storage, clock).await.unwrap();
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(server::run(listener, state.clone(), async {
            let _ = stopped.await;
        }));
        TestGateway {
            client: GatewayClient {
                url,
                public: args
                    .public_url()
                    .unwrap()
                    .as_str()
                    .trim_end_matches('/')
                    .to_owned(),
                http: handsign::http_client::new().unwrap(),
            },
            store,
            state,
            redis,
            _data: data,
            _shutdown: shutdown,
        }
    }

    /// Registers `name` with a new software passkey: the first user from a setup code, the
    /// others from an invitation, as an operator would.
    pub async fn register(&self, name: &str) -> Person {
        let first = self.store.count_users().await.unwrap() == 0;
        let invited = (!first).then(|| UserId::parse(name).unwrap());
        let code =
            handsign::invitations::issue(self.store.as_ref(), invited, self.state.clock.now())
                .await
                .unwrap();
        self.client.register_with(&code, name).await
    }

    /// An active agent acting for `user`, added as `handsign agent add` would.
    pub async fn agent(&self, user: &str) -> TestAgent {
        let key = SigningKey::generate().unwrap();
        self.add_agent(&key, user, &format!("test agent for {user}"))
            .await;
        TestAgent::new(key, &self.public).via(&self.url)
    }

    /// Adds `key` as the active agent `name` of `user`, as `handsign agent add` would.
    pub async fn add_agent(&self, key: &SigningKey, user: &str, name: &str) {
        self.store
            .add_agent(&AgentRecord {
                id: key.kid().to_owned(),
                name: name.to_owned(),
                user: UserId::parse(user).unwrap(),
                public_jwk: Some(key.public_key().to_jwk()),
                status: AgentStatus::Active,
                created_at: handsign::clock::Clock::system().now(),
                enrollment_expires_at: None,
            })
            .await
            .unwrap();
    }
}

impl GatewayClient {
    pub fn new(url: &str) -> Self {
        GatewayClient {
            url: url.to_owned(),
            public: url.to_owned(),
            http: handsign::http_client::new().unwrap(),
        }
    }

    /// The same browser talking to the instance at `url` of the same gateway.
    pub fn via(&self, url: &str) -> Self {
        GatewayClient {
            url: url.to_owned(),
            ..self.clone()
        }
    }

    pub fn origin(&self) -> Url {
        Url::parse(&self.public).unwrap()
    }

    /// A browser-side POST: JSON with the gateway's Origin.
    pub async fn browser_post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .header("origin", &self.public)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The gateway's keys, from its JWKS.
    pub async fn keys(&self) -> KeySet {
        let jwks: Jwks = self
            .http
            .get(format!("{}/.well-known/jwks.json", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        KeySet::from_jwks(&jwks).unwrap()
    }

    /// Asks for the ceremony options of `decision` on request `id`.
    pub async fn options(&self, id: &str, decision: &str) -> (StatusCode, Value) {
        self.browser_post(
            &format!("/approve/{id}/options"),
            &json!({"decision": decision}),
        )
        .await
    }

    /// Runs `person`'s passkey over the options for `decision` on `id`; returns the assertion:
    /// `{"ceremony", "credential"}`, what the page sends back.
    pub async fn assert(&self, person: &mut Person, id: &str, decision: &str) -> Value {
        let (status, options) = self.options(id, decision).await;
        assert_eq!(status, StatusCode::OK, "{options}");
        self.answer(person, &options)
    }

    /// `person`'s passkey answers ceremony `options` (`{"ceremony", "publicKey"}`): the
    /// `{"ceremony", "credential"}` the page sends back.
    pub fn answer(&self, person: &mut Person, options: &Value) -> Value {
        let rcr: RequestChallengeResponse =
            serde_json::from_value(json!({"publicKey": options["publicKey"]})).unwrap();
        let credential = person
            .passkey
            .do_authentication(self.origin(), rcr)
            .unwrap();
        json!({"ceremony": options["ceremony"], "credential": credential})
    }

    /// Sends a decision with `assertion` (see [`Self::assert`]).
    pub async fn submit(&self, id: &str, decision: &str, assertion: &Value) -> (StatusCode, Value) {
        self.browser_post(
            &format!("/approve/{id}"),
            &json!({
                "decision": decision,
                "ceremony": assertion["ceremony"],
                "credential": assertion["credential"],
            }),
        )
        .await
    }

    /// `person`'s fresh assertion for the sensitive action `purpose`, from the browser with
    /// session `cookie`: the `step_up` that action's request carries.
    pub async fn step_up(&self, person: &mut Person, cookie: &str, purpose: Value) -> Value {
        let response = self
            .http
            .post(format!("{}/webauthn/step-up/options", self.url))
            .header("origin", &self.public)
            .header("cookie", cookie)
            .json(&json!({"purpose": purpose}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let options: Value = response.json().await.unwrap();
        self.answer(person, &options)
    }

    /// `person` decides request `id` with their passkey, as the approval page does.
    pub async fn decide(
        &self,
        person: &mut Person,
        id: &str,
        decision: &str,
    ) -> (StatusCode, Value) {
        let credential = self.assert(person, id, decision).await;
        self.submit(id, decision, &credential).await
    }
}

/// Registers `name` at the gateway at `url` with `code`, as the setup page does, with a new
/// software passkey.
pub async fn register(http: &reqwest::Client, url: &str, code: &str, name: &str) -> Person {
    let client = GatewayClient {
        http: http.clone(),
        ..GatewayClient::new(url)
    };
    client.register_with(code, name).await
}

impl GatewayClient {
    /// Registers `name` with `code`, as the setup page does, with a new software passkey.
    pub async fn register_with(&self, code: &str, name: &str) -> Person {
        let (url, public, http) = (&self.url, &self.public, &self.http);
        let post = |path: &str, body: Value| {
            http.post(format!("{url}{path}"))
                .header("origin", public)
                .json(&body)
                .send()
        };
        let response = post(
            "/webauthn/register/options",
            json!({"code": code, "user": name}),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let options: Value = response.json().await.unwrap();
        let ccr: CreationChallengeResponse =
            serde_json::from_value(json!({"publicKey": options["publicKey"]})).unwrap();
        let mut passkey = SoftPasskey::new(true);
        let credential = passkey.do_registration(self.origin(), ccr).unwrap();
        let response = post(
            "/webauthn/register/finish",
            json!({"ceremony": options["ceremony"], "credential": credential, "name": "test"}),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        Person {
            name: name.to_owned(),
            passkey,
        }
    }
}

/// A person with a software passkey.
pub struct Person {
    pub name: String,
    pub passkey: SoftPasskey,
}

/// An agent: its key, and HTTP calls with a fresh DPoP proof each.
#[derive(Clone)]
pub struct TestAgent {
    pub key: SigningKey,
    /// Where requests go, and the gateway's public URL that proofs name (see [`GatewayClient`]).
    url: String,
    public: String,
    http: reqwest::Client,
}

impl TestAgent {
    pub fn new(key: SigningKey, url: &str) -> Self {
        TestAgent {
            key,
            url: url.to_owned(),
            public: url.to_owned(),
            http: handsign::http_client::new().unwrap(),
        }
    }

    /// The same agent talking to the instance at `url` of the same gateway.
    pub fn via(&self, url: &str) -> Self {
        TestAgent {
            url: url.to_owned(),
            ..self.clone()
        }
    }

    pub fn id(&self) -> &str {
        self.key.kid()
    }

    pub fn proof(&self, method: &Method, path: &str) -> String {
        let url = format!("{}{}", self.public, path.split('?').next().unwrap_or(path));
        dpop::create(
            &self.key,
            method.as_str(),
            &url,
            handsign::clock::Clock::system().now(),
            None,
        )
        .unwrap()
    }

    /// A `/v1` call with a fresh proof.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let proof = self.proof(&method, path);
        self.call_with_proof(method, path, body, &proof).await
    }

    pub async fn call_with_proof(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        proof: &str,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("dpop", proof);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Creates a request for `flights.book` with `params`; returns the created answer.
    pub async fn request(&self, params: Value) -> Value {
        let (status, body) = self
            .call(
                Method::POST,
                "/v1/approvals",
                Some(&json!({
                    "action": "flights.book",
                    "params": params,
                    "audience": "https://travel.example",
                    "message": "Book the flight we discussed",
                })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    /// Creates a request for `flights.book` with params written exactly as `params_json` (so
    /// with its keys in its own order); returns the created answer.
    pub async fn request_text(&self, params_json: &str) -> Value {
        let body = format!(
            r#"{{"action":"flights.book","audience":"https://travel.example","params":{params_json}}}"#
        );
        let proof = self.proof(&Method::POST, "/v1/approvals");
        let response = self
            .http
            .post(format!("{}/v1/approvals", self.url))
            .header("dpop", proof)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    /// Streams request `id`'s states (server-sent events) to the end of the stream, running
    /// `once_pending` when the first pending state has arrived; returns every state.
    pub async fn stream_states(&self, id: &str, once_pending: impl AsyncFnOnce()) -> Vec<Value> {
        let path = format!("/v1/approvals/{id}/events");
        let mut stream = self
            .http
            .get(format!("{}{path}", self.url))
            .header("dpop", self.proof(&Method::GET, &path))
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), StatusCode::OK);
        let mut text = String::new();
        let mut once_pending = Some(once_pending);
        while let Some(chunk) = stream.chunk().await.unwrap() {
            text.push_str(std::str::from_utf8(&chunk).unwrap());
            if text.contains("\"status\":\"pending\"")
                && let Some(act) = once_pending.take()
            {
                act().await;
            }
        }
        text.lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .map(|data| serde_json::from_str(data).unwrap())
            .collect()
    }

    /// Reads request `id`, waiting up to `wait` seconds.
    pub async fn read(&self, id: &str, wait: u64) -> (StatusCode, Value) {
        self.call(
            Method::GET,
            &format!("/v1/approvals/{id}?wait={wait}"),
            None,
        )
        .await
    }
}

/// A gateway, alice with a software passkey, her agent, and the agent's pending request for a
/// flight.
pub async fn alice_asked() -> (TestGateway, Person, TestAgent, String) {
    let gateway = TestGateway::start().await;
    let alice = gateway.register("alice").await;
    let agent = gateway.agent("alice").await;
    let id = agent.request(flight()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (gateway, alice, agent, id)
}

pub fn flight() -> Value {
    json!({"from": "SFO", "to": "NYC", "date": "2026-12-01", "passenger": "Alice Ng"})
}

impl GatewayClient {
    /// Logs `person` in with their passkey, as the login page does; returns the session cookie
    /// (`handsign_session=...`) to send in a `Cookie` header.
    pub async fn login(&self, person: &mut Person) -> String {
        let (status, options) = self
            .browser_post("/webauthn/login/options", &json!({"user": person.name}))
            .await;
        assert_eq!(status, StatusCode::OK, "{options}");
        let rcr: RequestChallengeResponse =
            serde_json::from_value(json!({"publicKey": options["publicKey"]})).unwrap();
        let credential = person
            .passkey
            .do_authentication(self.origin(), rcr)
            .unwrap();
        let response = self
            .http
            .post(format!("{}/webauthn/login/finish", self.url))
            .header("origin", &self.public)
            .json(&json!({"ceremony": options["ceremony"], "credential": credential}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let set_cookie = response.headers()["set-cookie"].to_str().unwrap();
        set_cookie.split(';').next().unwrap().to_owned()
    }
}

pub fn random_secret_key() -> SecretKey {
    loop {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).unwrap();
        if let Ok(key) = SecretKey::from_slice(&bytes) {
            return key;
        }
    }
}

/// A browser's side of a subscription: its private key and auth secret.
pub struct PushBrowser {
    pub private: SecretKey,
    pub auth: [u8; 16],
}

impl PushBrowser {
    pub fn new() -> Self {
        let mut auth = [0u8; 16];
        getrandom::fill(&mut auth).unwrap();
        PushBrowser {
            private: random_secret_key(),
            auth,
        }
    }

    pub fn p256dh(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.private.public_key().to_sec1_point(false).as_bytes())
    }

    pub fn d(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.private.to_bytes())
    }

    /// `PushSubscription.toJSON()` for `endpoint`.
    pub fn subscription_json(&self, endpoint: &str) -> String {
        json!({
            "endpoint": endpoint,
            "expirationTime": null,
            "keys": {"p256dh": self.p256dh(), "auth": URL_SAFE_NO_PAD.encode(self.auth)},
        })
        .to_string()
    }
}

/// What the local push service received.
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A push-service stand-in on 127.0.0.1: hands every message to the test and accepts it with
/// 201, except under `/wpush/gone-...`, which it answers 410 Gone as for an unsubscribed browser.
pub async fn push_service() -> (String, mpsc::UnboundedReceiver<Received>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/wpush/{id}",
        axum::routing::post(
            move |axum::extract::Path(id): axum::extract::Path<String>,
                  headers: HeaderMap,
                  body: Bytes| {
                let tx = tx.clone();
                async move {
                    let gone = id.starts_with("gone-");
                    let _ = tx.send(Received {
                        path: format!("/wpush/{id}"),
                        headers,
                        body,
                    });
                    if gone {
                        StatusCode::GONE
                    } else {
                        StatusCode::CREATED
                    }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (origin, rx)
}

/// Runs `tests/interop/webpush_check.py` (PyJWT and http_ece); stdout on success, stderr as
/// `Err` on refusal.
pub fn webpush_check(args: &[&str]) -> Result<Vec<u8>, String> {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/webpush_check.py");
    let program = std::env::var("HANDSIGN_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = std::process::Command::new(&program)
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}; run scripts/test"));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "the Python packages http_ece / PyJWT are missing: run scripts/test, which installs them \
         into target/test-env/python and sets HANDSIGN_TEST_PYTHON\n{stderr}"
    );
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(stderr)
    }
}

/// Waits until `condition` holds, checking it each time the runtime lets this task run (for
/// state that has no notification of its own, such as the number of parked long polls).
pub async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !condition() {
        assert!(
            std::time::Instant::now() < give_up,
            "gave up waiting until {what}"
        );
        tokio::task::yield_now().await;
    }
}

/// The first approval request pending for `user`, once one is asked for (within 30 s).
pub async fn first_pending(gateway: &TestGateway, user: &str) -> handsign::domain::ApprovalRecord {
    let user = UserId::parse(user).unwrap();
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let pending = gateway
            .store
            .approvals(
                &user,
                handsign::store::ApprovalFilter::Pending,
                gateway.state.clock.now(),
                1,
            )
            .await
            .unwrap();
        if let Some(first) = pending.into_iter().next() {
            return first;
        }
        assert!(std::time::Instant::now() < give_up, "no approval was asked");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
