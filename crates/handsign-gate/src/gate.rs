//! The HTTP gate: every call is matched to a route of the gate file and then refused, passed,
//! or forwarded with a person's approval.
//!
//! Order of work for a call, so that nothing is asked or stored for a call that is refused
//! anyway: the caller (loopback only), the route, the body's size (before any approval is
//! asked), the params (refused when they cannot be shown exactly), and only then the approval.
//! An approved call goes through `handsign-verify`'s layer, as at any service: the token is
//! checked against the route's action and the call's params and consumed right before the call
//! is sent upstream. A call whose sending then fails (`502`) has used its approval.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use handsign_client::{AgentKey, Approval, ApprovalError, ApprovalRequest, Client};
use handsign_protocol::params::CanonicalParams;
use handsign_verify::{
    ApprovalClaims, ApprovalService, Clock, Keys, MemoryReplayStore, Params, RedisReplayStore,
    ReplayError, ReplayStore, Verifier,
};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use serde_json::json;
use tower::ServiceExt as _;
use tower::util::BoxCloneSyncService;

use crate::audit::{Decision, Record};
use crate::config::{GateFile, UpstreamName};
use crate::credential::Credential;
use crate::flights::{FlightKey, Flights, State as FlightState, Ticket};
use crate::params;
use crate::policy::{Need, PathVars, RouteSpec, is_plain_path};
use crate::refusal;
use crate::upstream::{Upstream, Upstreamed};

/// The header of a `202` naming the approval that a repeated call continues.
pub const APPROVAL_ID_HEADER: &str = "handsign-approval-id";
/// Seconds a `202` asks the caller to wait before repeating the call.
const RETRY_AFTER_SECS: u64 = 5;

/// A forwarding service behind the verify layer: the checked call, its body already read.
type Forward = BoxCloneSyncService<Request<Full<Bytes>>, Response, Infallible>;

/// What a forwarded call was approved by, passed from the verify layer's inner service to the
/// audit line.
#[derive(Debug, Clone)]
struct ApprovedBy {
    user: String,
    approval: String,
}

/// Where the gate records used tokens and what time it checks them at.
#[derive(Clone)]
pub struct Verification {
    pub replay: Arc<dyn ReplayStore>,
    pub clock: Clock,
}

impl Default for Verification {
    /// An in-memory record of used tokens, on the system clock. It refuses the brought tokens
    /// issued before the gate started (and in its first seconds), since whether they were used
    /// cannot be known; the gate's own approvals are good from its start (see `OwnApprovals`).
    fn default() -> Self {
        let clock = Clock::system();
        Verification {
            replay: Arc::new(MemoryReplayStore::with_clock(clock.clone())),
            clock,
        }
    }
}

impl Verification {
    /// The gate file's record of used tokens: in Redis when it names `redis_url` (every gate on
    /// that Redis shares it, and it outlives a restart), else [in memory](Self::default).
    /// `Err` when Redis cannot be reached: the gate does not start without its record.
    pub async fn of(file: &GateFile) -> Result<Self, String> {
        let Some(url) = &file.redis_url else {
            return Ok(Verification::default());
        };
        let store = RedisReplayStore::connect(url.as_str())
            .await
            .map_err(|e| format!("redis_url: {e}"))?;
        Ok(Verification {
            replay: Arc::new(store),
            clock: Clock::system(),
        })
    }
}

/// The gate, ready to serve: cheap to clone.
#[derive(Clone)]
pub struct Gate {
    inner: Arc<Inner>,
}

struct Inner {
    gate_file: String,
    /// Agent id (key thumbprint) to name, of the agents allowed to call; empty: loopback only.
    callers: HashMap<String, String>,
    verification: Verification,
    upstreams: HashMap<String, UpstreamRoutes>,
    flights: Flights,
    client: Client,
    user: String,
    hold: Duration,
    max_body: usize,
    ttl: Option<u64>,
    public_url: String,
}

struct UpstreamRoutes {
    name: UpstreamName,
    audience: String,
    upstream: Arc<Upstream>,
    routes: Vec<Route>,
}

struct Route {
    spec: RouteSpec,
    /// `upstream METHOD /template`, for messages, flights and the audit line.
    label: String,
    /// The verify layers around the forwarding, for `approve` routes.
    guard: Option<Guards>,
}

/// An `approve` route's verify layers: both check every claim and record the token's use in
/// the same record, and differ only in what they assume about uses before the gate started.
struct Guards {
    /// For the tokens callers bring.
    brought: ApprovalService<Forward>,
    /// For the tokens of approvals the gate asked for itself in this process.
    own: ApprovalService<Forward>,
}

/// The record of used tokens as the gate's own approvals see it: the same record, but it
/// vouches for every token. A token the gate asked for in this process was issued for an
/// approval this process created, so no earlier process can have used it; without this an
/// in-memory record would refuse it as `issued_before_start` when the person approves within
/// the gate's first seconds.
pub(crate) struct OwnApprovals(pub(crate) Arc<dyn ReplayStore>);

#[async_trait::async_trait]
impl ReplayStore for OwnApprovals {
    async fn consume(&self, jti: &str, expires_at: i64) -> Result<bool, ReplayError> {
        self.0.consume(jti, expires_at).await
    }

    fn records_since(&self) -> Option<i64> {
        None
    }
}

impl Gate {
    /// Builds the gate of `file` (read from `gate_file`, named in refusals): loads the agent key
    /// and the credentials, and makes each upstream's client and verifier.
    pub fn new(
        file: &GateFile,
        gate_file: &str,
        verification: Verification,
    ) -> Result<Self, String> {
        if file.upstreams.is_empty() {
            return Err(format!(
                "{gate_file} has no [upstreams.NAME] section: the HTTP gate forwards calls to \
                 the upstreams listed there (its [tools.NAME] sets serve `handsign mcp` and \
                 `handsign hook`)"
            ));
        }
        let key = AgentKey::load(&file.handsign.agent_key).map_err(|e| {
            format!(
                "the gate's agent key {}: {e} (create and enroll it with `handsign gate enroll`)",
                file.handsign.agent_key.display()
            )
        })?;
        let client = Client::new(file.handsign.url.as_str(), key)
            .map_err(|e| format!("handsign.url: {e}"))?;
        let public_url = file.public_url();
        let mut upstreams = HashMap::new();
        for (name, config) in &file.upstreams {
            let credential = config
                .credential
                .as_ref()
                .map(Credential::load)
                .transpose()?;
            let ca = match &config.ca_file {
                Some(path) => Some(
                    std::fs::read(path)
                        .map_err(|e| format!("upstreams.{name}.ca_file {}: {e}", path.display()))?,
                ),
                None => None,
            };
            let upstream = Arc::new(
                Upstream::new(
                    config.base_url.as_str(),
                    credential,
                    ca.as_deref(),
                    config.timeout_seconds.secs(),
                )
                .map_err(|e| format!("upstreams.{name}: {e}"))?,
            );
            let gateway = file.handsign.url.as_str();
            let verifier = |replay: Arc<dyn ReplayStore>| {
                Verifier::builder()
                    .issuer(gateway)
                    .audience(config.audience.clone())
                    .public_url(public_url.clone())
                    .keys(Keys::jwks_url(format!("{gateway}/.well-known/jwks.json")))
                    .replay_store(replay)
                    .clock(verification.clock.clone())
                    .body_limit(file.max_body_bytes.get())
                    .build()
                    .map_err(|e| format!("upstreams.{name}: {e}"))
            };
            let brought = verifier(verification.replay.clone())?;
            let own = verifier(Arc::new(OwnApprovals(verification.replay.clone())))?;
            let mut routes = Vec::new();
            for spec in &config.routes {
                let spec = spec.get_ref().clone();
                let guard = match (&spec.need, &spec.action) {
                    (Need::Approve, Some(action)) => Some(Guards {
                        brought: guard(&brought, action.as_str(), &spec, name, &upstream)?,
                        own: guard(&own, action.as_str(), &spec, name, &upstream)?,
                    }),
                    _ => None,
                };
                routes.push(Route {
                    label: format!("{name} {}", spec.route),
                    spec,
                    guard,
                });
            }
            upstreams.insert(
                name.as_str().to_owned(),
                UpstreamRoutes {
                    name: name.clone(),
                    audience: config.audience.clone(),
                    upstream,
                    routes,
                },
            );
        }
        Ok(Gate {
            inner: Arc::new(Inner {
                gate_file: gate_file.to_owned(),
                callers: file
                    .callers
                    .iter()
                    .map(|caller| (caller.key.clone(), caller.name.clone()))
                    .collect(),
                verification,
                upstreams,
                flights: Flights::new(file.max_pending_approvals.get()),
                client,
                user: file.handsign.user.clone(),
                hold: file.hold_seconds.secs(),
                max_body: file.max_body_bytes.get(),
                ttl: file.approval_ttl_seconds.map(|ttl| ttl.0),
                public_url,
            }),
        })
    }

    /// The gate's agent id (its key's thumbprint).
    pub fn agent_id(&self) -> &str {
        self.inner.client.agent_id()
    }

    /// How many approvals are in flight.
    pub fn approvals_in_flight(&self) -> usize {
        self.inner.flights.len()
    }

    /// How many calls are being held open, waiting for a person's decision.
    pub fn calls_held(&self) -> usize {
        self.inner.flights.calls_held()
    }

    /// The gate's routes as a service; [`crate::listener::serve`] serves it with the peer's
    /// address (a `ConnectInfo<SocketAddr>` extension).
    pub fn router(&self) -> Router {
        Router::new().fallback(handle).with_state(self.clone())
    }
}

/// The verify layer for an `approve` route, around forwarding to its upstream; its params are
/// derived from the call exactly as for an approval the gate asks itself.
fn guard(
    verifier: &Verifier,
    action: &str,
    spec: &RouteSpec,
    name: &UpstreamName,
    upstream: &Arc<Upstream>,
) -> Result<ApprovalService<Forward>, String> {
    let template = spec.route.clone();
    let parts = spec.parts().to_vec();
    let prefix_len = name.as_str().len() + 1;
    let layer = verifier
        .require(action)
        .map_err(|e| format!("upstreams.{name}: {e}"))?
        .params_from(move |head: &Parts, body: &Bytes| {
            let path = head.uri.path().get(prefix_len..).unwrap_or_default();
            let vars = template
                .matches(&head.method, path)
                .ok_or("the path does not match the route")?;
            params::derive(&parts, &vars, head.uri.query(), &head.headers, body).map(Params::Value)
        });
    let upstream = upstream.clone();
    let forward: Forward = BoxCloneSyncService::new(tower::service_fn(
        move |request: Request<Full<Bytes>>| {
            let upstream = upstream.clone();
            let request = request.map(Body::new);
            async move { Ok::<_, Infallible>(forward_approved(&upstream, prefix_len, request).await) }
        },
    ));
    Ok(tower::Layer::layer(&layer, forward))
}

/// The inner service of the verify layer: the call has a consumed approval; send it.
async fn forward_approved(
    upstream: &Upstream,
    prefix_len: usize,
    request: Request<Body>,
) -> Response {
    let (parts, body) = request.into_parts();
    let approved_by = parts
        .extensions
        .get::<ApprovalClaims>()
        .map(|claims| ApprovedBy {
            user: claims.sub.clone(),
            approval: claims.approval.clone(),
        });
    // The layer hands over the very bytes it hashed, already in memory.
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            return refusal::json(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                format!("the body could not be read: {error}"),
            );
        }
    };
    let target = upstream_target(&parts.uri, prefix_len);
    let mut response = upstream
        .forward(parts.method, &target, &parts.headers, body)
        .await;
    if let Some(approved_by) = approved_by {
        response.extensions_mut().insert(approved_by);
    }
    response
}

/// The path and query the upstream gets: the call's, less the upstream's prefix.
fn upstream_target(uri: &http::Uri, prefix_len: usize) -> String {
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let rest = path_and_query.get(prefix_len..).unwrap_or_default();
    if rest.is_empty() || rest.starts_with('?') {
        format!("/{rest}")
    } else {
        rest.to_owned()
    }
}

/// Every call.
async fn handle(
    State(gate): State<Gate>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request<Body>,
) -> Response {
    let path = request.uri().path().to_owned();
    let mut record = Record::new(
        peer.ip().to_string(),
        format!("{} {path}", request.method()),
    );
    let identified = gate
        .identify(peer, request.method(), &path, request.headers())
        .await;
    let response = match identified {
        Ok(caller) => {
            record.caller = caller.clone();
            gate.call(&caller, request, &mut record).await
        }
        Err(refused) => {
            record.decision = Decision::Refused;
            refused
        }
    };
    record.upstream_status = response
        .extensions()
        .get::<Upstreamed>()
        .map(|_| response.status().as_u16());
    if let Some(approved_by) = response.extensions().get::<ApprovedBy>() {
        record.user = Some(approved_by.user.clone());
        record.approval = Some(approved_by.approval.clone());
        if record.decision == Decision::Invalid {
            record.decision = Decision::Approved;
        }
    }
    record.write();
    response
}

impl Gate {
    /// Who calls: with no callers listed, any process on this machine (named by its address);
    /// otherwise the listed agent whose key made the call's DPoP proof. A proof that comes
    /// without a token is consumed here, so it cannot be replayed; one that comes with a token
    /// is the token's, consumed by the verify layer.
    async fn identify(
        &self,
        peer: SocketAddr,
        method: &http::Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<String, Response> {
        let gate = &self.inner;
        if gate.callers.is_empty() {
            if peer.ip().is_loopback() {
                return Ok(peer.ip().to_string());
            }
            return Err(refusal::json(
                StatusCode::FORBIDDEN,
                "caller_not_allowed",
                "the gate takes calls from this machine (loopback) only",
            ));
        }
        let unauthorized =
            |code: &str, message: String| refusal::json(StatusCode::UNAUTHORIZED, code, message);
        let mut proofs = headers.get_all("dpop").iter();
        let proof = match (proofs.next().map(HeaderValue::to_str), proofs.next()) {
            (Some(Ok(proof)), None) => proof,
            _ => {
                return Err(unauthorized(
                    "caller_proof_required",
                    "this gate takes calls from listed agents only: send one DPoP header, a \
                     proof made with your agent key for this method and URL"
                        .into(),
                ));
            }
        };
        let token = approval_token(headers);
        let url = format!("{}{path}", gate.public_url);
        let now = gate.verification.clock.now();
        let verified = handsign_protocol::dpop::verify(
            proof,
            &handsign_protocol::dpop::Expected {
                method: method.as_str(),
                url: &url,
                now,
                access_token: token,
            },
        )
        .map_err(|error| unauthorized("invalid_dpop", error.to_string()))?;
        let Some(name) = gate.callers.get(&verified.jkt) else {
            return Err(refusal::json(
                StatusCode::FORBIDDEN,
                "caller_not_allowed",
                format!(
                    "agent {} is not among the callers of the gate file {}",
                    verified.jkt, gate.gate_file
                ),
            ));
        };
        if token.is_none() {
            let record = format!("gate-caller:{}:{}", verified.jkt, verified.jti);
            match gate
                .verification
                .replay
                .consume(&record, verified.fresh_until())
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    return Err(unauthorized(
                        "dpop_replayed",
                        "this DPoP proof was used already: make a new proof for every call".into(),
                    ));
                }
                Err(error) => {
                    tracing::warn!(%error, "the replay store cannot be reached");
                    return Err(refusal::json(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "replay_store_unavailable",
                        "the gate cannot record the proof's use right now; try again",
                    ));
                }
            }
        }
        Ok(name.clone())
    }

    async fn call(&self, caller: &str, request: Request<Body>, record: &mut Record) -> Response {
        let gate = &self.inner;
        let path = request.uri().path();
        let (upstream_name, rest) = match path.get(1..).and_then(|p| p.split_once('/')) {
            Some((name, rest)) => (name, format!("/{rest}")),
            None => (path.get(1..).unwrap_or_default(), "/".to_owned()),
        };
        let Some(upstream) = gate.upstreams.get(upstream_name) else {
            record.decision = Decision::Refused;
            return refusal::json(
                StatusCode::NOT_FOUND,
                "unlisted_route",
                format!(
                    "no upstream {upstream_name:?} in the gate file {}: calls go to \
                     /UPSTREAM/PATH for an upstream listed there",
                    gate.gate_file
                ),
            );
        };
        if !is_plain_path(&rest) {
            record.decision = Decision::Refused;
            return refusal::json(
                StatusCode::BAD_REQUEST,
                "invalid_path",
                "the path has an empty, `.` or `..` segment, or an encoded slash: the upstream \
                 might read it as another route than the one checked",
            );
        }
        let method = request.method().clone();
        let Some((route, vars)) = upstream
            .routes
            .iter()
            .find_map(|route| route.spec.route.matches(&method, &rest).map(|v| (route, v)))
        else {
            record.decision = Decision::Refused;
            return refusal::json(
                StatusCode::NOT_FOUND,
                "unlisted_route",
                format!(
                    "{method} {rest} is not a route of upstream {} in the gate file {}: add it \
                     to [[upstreams.{}.routes]] to allow it",
                    upstream.name, gate.gate_file, upstream.name
                ),
            );
        };
        record.route = route.label.clone();
        if route.spec.need == Need::Deny {
            record.decision = Decision::Refused;
            return refusal::json(
                StatusCode::FORBIDDEN,
                "route_denied",
                format!(
                    "{} is denied by the gate file {}",
                    route.label, gate.gate_file
                ),
            );
        }
        let (parts, body) = request.into_parts();
        let body = match read_body(&parts.headers, body, gate.max_body).await {
            Ok(body) => body,
            Err(response) => {
                record.decision = Decision::Invalid;
                return response;
            }
        };
        match &route.guard {
            None => {
                record.decision = Decision::Passed;
                let target = upstream_target(&parts.uri, upstream.name.as_str().len() + 1);
                upstream
                    .upstream
                    .forward(parts.method, &target, &parts.headers, body)
                    .await
            }
            Some(guards) if approval_token(&parts.headers).is_some() => {
                // Bring your own token: every check of the verify layer, then forward.
                let request = Request::from_parts(parts, Body::from(body));
                let response = verified(&guards.brought, request).await;
                if response.extensions().get::<ApprovedBy>().is_none() {
                    record.decision = Decision::Invalid;
                }
                response
            }
            Some(guards) => {
                self.approve_on_call(
                    caller,
                    upstream,
                    route,
                    &vars,
                    parts,
                    body,
                    &guards.own,
                    record,
                )
                .await
            }
        }
    }

    /// Asks the person (or joins the approval an identical call asked for), holds the call
    /// while they decide, and forwards it once approved.
    #[allow(clippy::too_many_arguments)]
    async fn approve_on_call(
        &self,
        caller: &str,
        upstream: &UpstreamRoutes,
        route: &Route,
        vars: &PathVars,
        parts: Parts,
        body: Bytes,
        guard: &ApprovalService<Forward>,
        record: &mut Record,
    ) -> Response {
        let gate = &self.inner;
        let params = match params::derive(
            route.spec.parts(),
            vars,
            parts.uri.query(),
            &parts.headers,
            &body,
        ) {
            Ok(params) => params,
            Err(message) => {
                record.decision = Decision::Invalid;
                return refusal::json(StatusCode::BAD_REQUEST, "invalid_params", message);
            }
        };
        let hash = match CanonicalParams::from_value(&params, &params::limits()) {
            Ok(canonical) => canonical.hash().as_str().to_owned(),
            Err(error) => {
                record.decision = Decision::Invalid;
                return refusal::json(StatusCode::BAD_REQUEST, "invalid_params", error.to_string());
            }
        };
        let action = route
            .spec
            .action
            .as_ref()
            .map_or("", |action| action.as_str())
            .to_owned();
        let key = FlightKey {
            route: route.label.clone(),
            params_sha256: hash,
            caller: caller.to_owned(),
        };
        let mut request =
            ApprovalRequest::new(action.clone(), params.clone(), upstream.audience.clone())
                .user(gate.user.clone())
                .message(format!(
                    "{} {} called by {caller} through the gate",
                    parts.method,
                    shortened(parts.uri.path(), 200)
                ));
        if let Some(ttl) = gate.ttl {
            request = request.ttl(ttl);
        }
        let flight = match gate.flights.join(key.clone(), &gate.client, request) {
            Ok(flight) => flight,
            Err(full) => {
                record.decision = Decision::Failed;
                return refusal::json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too_many_pending",
                    full.to_string(),
                );
            }
        };
        let state = flight.wait(gate.hold).await;
        if let Some(ticket) = ticket_of(&state) {
            record.approval = Some(ticket.id.clone());
        }
        record.user = Some(gate.user.clone());
        match state {
            FlightState::Asking => {
                record.decision = Decision::Failed;
                refusal::json(
                    StatusCode::GATEWAY_TIMEOUT,
                    "gateway_slow",
                    "the Handsign gateway did not answer the approval request in time; repeat the call",
                )
            }
            FlightState::Pending(ticket) => {
                record.decision = Decision::Pending;
                still_pending(&ticket)
            }
            FlightState::Approved(ticket) => {
                let Some(approval) = flight.take_token() else {
                    record.decision = Decision::Ended;
                    return refusal::json(
                        StatusCode::CONFLICT,
                        "approval_used",
                        format!(
                            "approval {} was used by an identical call, which was forwarded \
                             once; an approval allows one call: repeat the call to ask again",
                            ticket.id
                        ),
                    );
                };
                gate.flights.remove(&key, &flight);
                record.decision = Decision::Approved;
                self.forward_with(guard, parts, body, &approval).await
            }
            FlightState::Denied(ticket) => {
                record.decision = Decision::Denied;
                (
                    StatusCode::FORBIDDEN,
                    axum::Json(json!({
                        "error": "denied",
                        "message": format!("{} denied {action} with these params", gate.user),
                        "user": gate.user,
                        "action": action,
                        "params": params,
                        "approval_id": ticket.id,
                    })),
                )
                    .into_response()
            }
            FlightState::Ended { ticket, reason } => {
                record.decision = Decision::Ended;
                refusal::json(
                    StatusCode::GONE,
                    "approval_ended",
                    format!(
                        "approval {} ended: {reason}; repeat the call to ask again",
                        ticket.id
                    ),
                )
            }
            FlightState::Failed(error) => {
                record.decision = Decision::Failed;
                gateway_failed(&error)
            }
        }
    }

    /// Sends the call with the gate's own token and proof through the route's verify layer.
    async fn forward_with(
        &self,
        guard: &ApprovalService<Forward>,
        mut parts: Parts,
        body: Bytes,
        approval: &Approval,
    ) -> Response {
        let url = format!("{}{}", self.inner.public_url, parts.uri.path());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let proof = handsign_protocol::dpop::create(
            self.inner.client.key().signing_key(),
            parts.method.as_str(),
            &url,
            now,
            Some(approval.token()),
        );
        let headers = match (
            proof.ok().and_then(|p| HeaderValue::from_str(&p).ok()),
            HeaderValue::from_str(&format!("Approval {}", approval.token())).ok(),
        ) {
            (Some(proof), Some(token)) => (proof, token),
            _ => {
                return refusal::json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "proof_failed",
                    "the gate could not make a DPoP proof for its token",
                );
            }
        };
        parts
            .headers
            .insert(HeaderName::from_static("dpop"), headers.0);
        parts.headers.insert(header::AUTHORIZATION, headers.1);
        verified(guard, Request::from_parts(parts, Body::from(body))).await
    }
}

/// The call through the verify layer; the answer is the upstream's when it was forwarded.
async fn verified(guard: &ApprovalService<Forward>, request: Request<Body>) -> Response {
    match guard.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// `text` cut to at most `max` characters, marked with an ellipsis when cut: the gateway
/// bounds an approval's message.
fn shortened(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", text.get(..end).unwrap_or_default()),
        None => text.to_owned(),
    }
}

/// The token of an `Authorization: Approval <token>` header, if the call has one.
fn approval_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("approval")
                .then(|| token.trim_matches(' '))
        })
}

fn ticket_of(state: &FlightState) -> Option<&Ticket> {
    match state {
        FlightState::Pending(ticket)
        | FlightState::Approved(ticket)
        | FlightState::Denied(ticket)
        | FlightState::Ended { ticket, .. } => Some(ticket),
        FlightState::Asking | FlightState::Failed(_) => None,
    }
}

/// `202`: the person has not decided yet; repeat the identical call to continue.
fn still_pending(ticket: &Ticket) -> Response {
    let mut response = (
        StatusCode::ACCEPTED,
        axum::Json(json!({
            "status": "pending",
            "message": "a person is asked to approve this call; repeat the identical call to \
                        continue waiting (it joins the same approval)",
            "approval_id": ticket.id,
            "approval_url": ticket.approval_url,
            "code": ticket.code,
            "expires_at": ticket.expires_at,
        })),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    if let Ok(id) = HeaderValue::from_str(&ticket.id) {
        headers.insert(HeaderName::from_static(APPROVAL_ID_HEADER), id);
    }
    response
}

/// The gateway refused to ask, or could not be reached.
fn gateway_failed(error: &ApprovalError) -> Response {
    match error {
        ApprovalError::Refused { code, message, .. } => refusal::json(
            StatusCode::BAD_GATEWAY,
            "gateway_refused",
            format!("the Handsign gateway refused to ask for approval ({code}): {message}"),
        ),
        other => refusal::json(
            StatusCode::BAD_GATEWAY,
            "gateway_unreachable",
            format!("the approval could not be asked: {other}"),
        ),
    }
}

/// The whole body, refused with `413` once over `limit` (announced or sent).
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Response> {
    let too_large = || {
        refusal::json(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is larger than the gate's limit of {limit} bytes"),
        )
    };
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(too_large()),
        Err(error) => Err(refusal::json(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("the body could not be read: {error}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_with_tool_sets_only_is_no_http_gate() {
        let file = GateFile::parse(
            "[handsign]\nurl = \"https://handsign.example\"\nagent_key = \"gate.jwk\"\n\
             user = \"alice\"\n[tools.all]\nunmatched = \"approve\"\n",
            std::path::Path::new("/etc/gate"),
        )
        .unwrap();
        let Err(message) = Gate::new(&file, "gate.toml", Verification::default()) else {
            panic!("a gate without upstreams was built");
        };
        assert!(message.contains("no [upstreams.NAME]"), "{message}");
    }

    #[test]
    fn long_paths_are_shortened_in_the_approval_message() {
        assert_eq!(shortened("/v1/charges", 200), "/v1/charges");
        assert_eq!(shortened("/ééé", 3), "/éé…");
        assert_eq!(shortened(&"/a".repeat(1000), 200).chars().count(), 201);
    }

    #[test]
    fn the_upstream_gets_the_path_and_query_after_its_prefix() {
        let uri = |text: &str| text.parse::<http::Uri>().unwrap();
        assert_eq!(
            upstream_target(&uri("/pay/v1/charges?x=1"), 4),
            "/v1/charges?x=1"
        );
        assert_eq!(upstream_target(&uri("/pay"), 4), "/");
        assert_eq!(upstream_target(&uri("/pay?x=1"), 4), "/?x=1");
    }
}
