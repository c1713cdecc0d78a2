//! A service for one test: a real axum app guarded by the middleware, served on 127.0.0.1:0,
//! whose handlers count their runs and record what they were given; a gateway key that mints
//! tokens; agents that sign DPoP proofs; and a client that reads refusals.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};
use handsign_protocol::dpop;
use handsign_protocol::keys::{KeySet, SigningKey};
use handsign_protocol::params::CanonicalParams;
use handsign_protocol::token::{self, Actor, ApprovalClaims, Confirmation};
use handsign_verify::{Approved, Keys, MemoryReplayStore, Verifier, VerifierBuilder};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::net::TcpListener;

pub const ISSUER: &str = "https://handsign.test";
pub const AUDIENCE: &str = "https://travel.test";
pub const BOOK: &str = "flights.book";
pub const SEARCH: &str = "flights.search";
pub const FLIGHT: &str = r#"{ "to": "NYC",  "from": "SFO", "date": "2026-12-01", "seats": 2 }"#;

/// What a handler of `/typed` reads: [`FLIGHT`] is one.
#[derive(serde::Deserialize)]
pub struct Flight {
    from: String,
    to: String,
    date: String,
    seats: u32,
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn params_hash(json: &str) -> handsign_protocol::params::ParamsHash {
    CanonicalParams::parse(json.as_bytes(), &Default::default())
        .unwrap()
        .hash()
}

/// Claims as the gateway issues them now: bound to `agent`, good for 30 s.
pub fn claims(agent: &SigningKey, action: &str, params_json: &str) -> ApprovalClaims {
    let iat = now();
    ApprovalClaims {
        iss: ISSUER.into(),
        sub: "alice".into(),
        aud: AUDIENCE.into(),
        act: Actor {
            sub: agent.kid().into(),
        },
        action: action.into(),
        params_sha256: params_hash(params_json),
        approval: "apr_test".into(),
        jti: random_id(),
        iat,
        nbf: iat,
        exp: iat + 30,
        cnf: Some(Confirmation {
            jkt: agent.kid().into(),
        }),
    }
}

pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn mint(gateway: &SigningKey, claims: &ApprovalClaims) -> String {
    token::mint(gateway, claims).unwrap()
}

pub fn proof(agent: &SigningKey, method: &str, url: &str, token: Option<&str>) -> String {
    dpop::create(agent, method, url, now(), token).unwrap()
}

/// What the handlers saw.
#[derive(Default)]
pub struct Seen {
    runs: AtomicUsize,
    last: Mutex<Option<(ApprovalClaims, Bytes)>>,
}

impl Seen {
    pub fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }

    pub fn last(&self) -> Option<(ApprovalClaims, Bytes)> {
        self.last.lock().unwrap().clone()
    }

    fn record(&self, claims: ApprovalClaims, body: Bytes) {
        self.runs.fetch_add(1, Ordering::SeqCst);
        *self.last.lock().unwrap() = Some((claims, body));
    }
}

/// A service on its own port.
pub struct Service {
    /// Its public URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    pub seen: Arc<Seen>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Service {
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

/// A verifier for `url` trusting `gateway`, for `configure` to adjust.
///
/// Its replay store's record goes back an hour: `gateway` is the test's own key, so no earlier
/// process can have accepted its tokens, and tokens minted right after the start are accepted.
pub fn verifier_builder(url: &str, gateway: &SigningKey) -> VerifierBuilder {
    Verifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .public_url(url)
        .keys(Keys::fixed(KeySet::from_signing_keys([gateway])))
        .replay_store(Arc::new(
            MemoryReplayStore::new().record_began_at(now() - 3600),
        ))
}

/// Starts a service trusting `gateway`, with the builder adjusted by `configure`.
///
/// Routes: `POST /bookings` (`flights.book`, params the JSON body), `POST /v2/bookings` (the
/// same in a nested router), `POST /small` (`flights.book`, body limit 64 bytes), `POST /typed`
/// (`flights.book`, the body must read as a [`Flight`]),
/// `GET /flights` (`flights.search`, params the query string as an object of strings), and
/// `POST /unguarded` (a handler asking for `Approved` without the layer).
pub async fn spawn_service(
    gateway: &SigningKey,
    configure: impl FnOnce(VerifierBuilder) -> VerifierBuilder,
) -> Service {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let verifier = configure(verifier_builder(&url, gateway)).build().unwrap();
    serve(listener, url, &verifier)
}

/// Serves the test routes guarded by `verifier` on `listener`.
pub fn serve(listener: TcpListener, url: String, verifier: &Verifier) -> Service {
    let seen = Arc::new(Seen::default());
    let handler = {
        let seen = seen.clone();
        move |Approved(claims): Approved, body: Bytes| {
            let seen = seen.clone();
            async move {
                seen.record(claims, body);
                "done"
            }
        }
    };
    let app = Router::new()
        .route(
            "/bookings",
            post(handler.clone()).layer(verifier.require(BOOK).unwrap()),
        )
        .nest(
            "/v2",
            Router::new().route(
                "/bookings",
                post(handler.clone()).layer(verifier.require(BOOK).unwrap()),
            ),
        )
        .route(
            "/small",
            post(handler.clone()).layer(verifier.require(BOOK).unwrap().body_limit(64)),
        )
        .route(
            "/typed",
            post(handler.clone()).layer(verifier.require(BOOK).unwrap().body_parses_as::<Flight>()),
        )
        .route(
            "/flights",
            get(handler.clone()).layer(
                verifier
                    .require(SEARCH)
                    .unwrap()
                    .params_from(|parts, _body| query_params(parts.uri.query())),
            ),
        )
        .route("/unguarded", post(handler));
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Service { url, seen, server }
}

/// The query string as a JSON object of strings; a key given twice is refused, since a
/// handler reading the query into a map would see only one of the values.
fn query_params(query: Option<&str>) -> Result<Value, String> {
    let mut params = serde_json::Map::new();
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if params
            .insert(key.clone().into_owned(), Value::String(value.into_owned()))
            .is_some()
        {
            return Err(format!("query parameter {key:?} is given twice"));
        }
    }
    Ok(Value::Object(params))
}

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// An answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    pub fn www_authenticate(&self) -> String {
        self.headers
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    /// Asserts a `401` naming `code` in `WWW-Authenticate` and in the JSON body.
    #[track_caller]
    pub fn assert_refused(&self, code: &str) {
        assert_eq!(self.status, StatusCode::UNAUTHORIZED, "{self:?}");
        let challenge = self.www_authenticate();
        assert!(
            challenge.starts_with(&format!("Approval error=\"{code}\", error_description=\"")),
            "WWW-Authenticate {challenge:?} does not name {code}"
        );
        assert_eq!(self.json()["error"], code, "{self:?}");
        assert!(
            self.json()["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
}

/// A request as an agent sends it.
pub struct Call<'a> {
    pub method: Method,
    pub url: String,
    pub token: Option<&'a str>,
    pub proof: Option<String>,
    pub body: Option<String>,
}

impl Call<'_> {
    pub async fn send(self, client: &reqwest::Client) -> Answer {
        let mut request = client.request(self.method, &self.url);
        if let Some(token) = self.token {
            request = request.header("authorization", format!("Approval {token}"));
        }
        if let Some(proof) = self.proof {
            request = request.header("dpop", proof);
        }
        if let Some(body) = self.body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.unwrap();
        Answer {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.text().await.unwrap(),
        }
    }
}

/// `POST url` with `body`, the token and a proof by `agent` for exactly this request.
pub async fn post_approved(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    agent: &SigningKey,
    body: &str,
) -> Answer {
    Call {
        method: Method::POST,
        url: url.into(),
        token: Some(token),
        proof: Some(proof(agent, "POST", url, Some(token))),
        body: Some(body.into()),
    }
    .send(client)
    .await
}

/// A replay store that cannot be reached.
pub struct DownStore;

#[async_trait::async_trait]
impl handsign_verify::ReplayStore for DownStore {
    async fn consume(
        &self,
        _jti: &str,
        _expires_at: i64,
    ) -> Result<bool, handsign_verify::ReplayError> {
        Err(handsign_verify::ReplayError::Unavailable(
            "connection refused".into(),
        ))
    }
}
