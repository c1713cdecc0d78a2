//! `tools/call` through the gate: the tool set's verdict, and for an `approve` tool the
//! person's approval before the real server sees the call.
//!
//! The approval is asked with the tool's arguments as params and shared by identical calls
//! ([`Flights`]), so a call repeated with the same arguments continues the same approval. How
//! the client learns where to approve: a client that declared URL-mode elicitation gets the
//! URL as the `-32042` error of the 2025-11-25 revision and a `notifications/elicitation/complete`
//! once the person decided; any other waits (with progress notifications when it gave a
//! progress token) and, if the person has not decided in time, gets an error result with the
//! URL, the match code and "call again with the same arguments". An approved call's token is
//! verified and consumed here, as the service would, and only then is the call forwarded.

use std::time::Duration;

use handsign_client::{ApprovalError, ApprovalRequest, Client};
use handsign_protocol::params::CanonicalParams;
use handsign_verify::{KeyBinding, Presented, Verifier};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, CustomNotification, ErrorCode, ErrorData,
    ProgressNotification, ProgressNotificationParam, ServerNotification, ServerResult, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::{Value, json};

use super::relay::{Relay, error_result};
use crate::flights::{Flight, FlightKey, Flights, State, Ticket};
use crate::params;
use crate::tools::{ToolSet, ToolVerdict};

/// The 2025-11-25 error asking the client to send its user to a URL and then retry.
pub const URL_ELICITATION_REQUIRED: i32 = -32042;
/// How often a waiting call tells the client it is still waiting (when it gave a token).
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// What decides the calls of one wrapped server.
pub struct Approvals {
    /// The wrapped server's name in the gate file: `mcp.<server>.<tool>` actions.
    pub server: String,
    pub tools: ToolSet,
    pub audience: String,
    pub user: String,
    pub client: Client,
    pub verifier: Verifier,
    pub flights: Flights,
    /// How long a call that cannot be told the URL is held while the person decides.
    pub hold: Duration,
    pub ttl: Option<u64>,
}

/// A call's outcome: forwarded (the real server's answer) or answered by the gate.
pub type Outcome = Result<ServerResult, CallToolResult>;

impl Approvals {
    /// `tool` as listed to the client: a gated tool's description says a person approves
    /// each call. Gated: a call of it without arguments needs approval (argument rules can
    /// only be judged per call).
    pub fn describe(&self, mut tool: Tool) -> Tool {
        let prefix = format!("mcp.{}", self.server);
        let called_plainly =
            self.tools
                .decide(&prefix, &tool.name, &Value::Object(Default::default()));
        if matches!(called_plainly, ToolVerdict::Approve { .. }) {
            let note = format!(
                "A person ({}) approves each call of this tool with a passkey, for its exact \
                 arguments; the call waits for the decision or answers with where to approve \
                 and to call again with the same arguments.",
                self.user
            );
            tool.description = Some(match tool.description {
                Some(description) => format!("{description}\n\n{note}").into(),
                None => note.into(),
            });
        }
        tool
    }

    /// Decides and, when allowed, forwards one `tools/call`. `Err` only for a protocol error
    /// the client must see as such (the URL elicitation).
    pub async fn call(
        &self,
        relay: &Relay,
        params: CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<Outcome, ErrorData> {
        let name = params.name.to_string();
        let arguments = Value::Object(params.arguments.clone().unwrap_or_default());
        let prefix = format!("mcp.{}", self.server);
        match self.tools.decide(&prefix, &name, &arguments) {
            ToolVerdict::Pass => relay.call_tool(params, context).await.map(Ok),
            ToolVerdict::Deny { why } => {
                Ok(Err(error_result(format!("the gate refuses {name}: {why}"))))
            }
            ToolVerdict::Approve { action } => {
                self.approve(relay, params, &name, &action, arguments, context)
                    .await
            }
        }
    }

    async fn approve(
        &self,
        relay: &Relay,
        params: CallToolRequestParams,
        name: &str,
        action: &str,
        arguments: Value,
        context: &RequestContext<RoleServer>,
    ) -> Result<Outcome, ErrorData> {
        let hash = match CanonicalParams::from_value(&arguments, &params::limits()) {
            Ok(canonical) => canonical.hash().as_str().to_owned(),
            Err(error) => {
                return Ok(Err(error_result(format!(
                    "the gate cannot ask to approve {name} with these arguments: {error}"
                ))));
            }
        };
        let key = FlightKey {
            route: format!("mcp {} {name}", self.server),
            params_sha256: hash,
            caller: "mcp".into(),
        };
        let mut request = ApprovalRequest::new(action, arguments.clone(), self.audience.clone())
            .user(self.user.clone())
            .message(format!(
                "MCP tool {name} of {}, called through the gate",
                self.server
            ));
        if let Some(ttl) = self.ttl {
            request = request.ttl(ttl);
        }
        let flight = match self.flights.join(key.clone(), &self.client, request) {
            Ok(flight) => flight,
            Err(full) => return Ok(Err(error_result(full.to_string()))),
        };
        let by_url = declared_url_elicitation(context);
        let state = if by_url {
            flight.wait(Duration::ZERO).await
        } else {
            self.wait_telling(&flight, context).await
        };
        match state {
            State::Asking => Ok(Err(error_result(
                "the Handsign gateway did not answer the approval request in time; call again \
                 with the same arguments"
                    .into(),
            ))),
            State::Pending(ticket) if by_url => {
                if relay.follows_first(&ticket.id) {
                    self.complete_later(flight, &ticket, context);
                }
                Err(url_elicitation_required(name, &ticket, &self.user))
            }
            State::Pending(ticket) => Ok(Err(error_result(format!(
                "{user} has not yet approved {name} with these arguments. Approve at {url} \
                 (match code {code}), then call again with the same arguments: the call \
                 continues this approval (good until unix time {expires}).",
                user = self.user,
                url = ticket.approval_url,
                code = ticket.code,
                expires = ticket.expires_at,
            )))),
            State::Approved(ticket) => {
                let Some(approval) = flight.take_token() else {
                    return Ok(Err(error_result(format!(
                        "approval {} was used by an identical call, which was forwarded once; \
                         an approval allows one call: call again to ask again",
                        ticket.id
                    ))));
                };
                self.flights.remove(&key, &flight);
                let presented = Presented {
                    token: approval.token(),
                    binding: KeyBinding::Holder {
                        jkt: self.client.agent_id(),
                    },
                    action,
                    params: &arguments,
                };
                if let Err(refused) = self.verifier.verify_token(&presented).await {
                    return Ok(Err(error_result(format!(
                        "the gate did not accept the token of approval {}: {refused}; the call \
                         was not sent",
                        ticket.id
                    ))));
                }
                relay.call_tool(params, context).await.map(Ok)
            }
            State::Denied(ticket) => Ok(Err(error_result(format!(
                "{} denied {name} with these arguments (approval {}); the call was not sent",
                self.user, ticket.id
            )))),
            State::Ended { ticket, reason } => Ok(Err(error_result(format!(
                "approval {} ended: {reason}; the call was not sent. Call again to ask again.",
                ticket.id
            )))),
            State::Failed(error) => Ok(Err(error_result(gateway_failed(&error)))),
        }
    }

    /// Waits up to the hold for the decision, telling the client where to approve as soon as
    /// the gateway took the request, and every few seconds after, by progress notifications
    /// when it gave a progress token. A cancelled call stops waiting (the approval stays in
    /// flight for an identical retry).
    async fn wait_telling(&self, flight: &Flight, context: &RequestContext<RoleServer>) -> State {
        let cancelled = context.ct.cancelled();
        tokio::pin!(cancelled);
        let Some(token) = context.meta.get_progress_token() else {
            return tokio::select! {
                state = flight.wait(self.hold) => state,
                () = &mut cancelled => State::Asking,
            };
        };
        let ticket = tokio::select! {
            state = flight.wait(Duration::ZERO) => match state {
                State::Pending(ticket) => ticket,
                settled => return settled,
            },
            () = &mut cancelled => return State::Asking,
        };
        let message = format!(
            "waiting for {} to approve at {} (match code {})",
            self.user, ticket.approval_url, ticket.code
        );
        let waited = flight.wait(self.hold);
        tokio::pin!(waited);
        let mut ticks = tokio::time::interval(PROGRESS_EVERY);
        let mut step = 0.0;
        loop {
            tokio::select! {
                state = &mut waited => return state,
                () = &mut cancelled => return State::Asking,
                _ = ticks.tick() => {
                    step += 1.0;
                    let mut progress = ProgressNotificationParam::new(token.clone(), step);
                    progress.message = Some(message.clone());
                    let _ = context
                        .peer
                        .send_notification(ServerNotification::ProgressNotification(
                            ProgressNotification::new(progress),
                        ))
                        .await;
                }
            }
        }
    }

    /// Tells the client (`notifications/elicitation/complete`) once the person decided, so that
    /// it retries; bounded by the approval's expiry. Once per approval and session.
    fn complete_later(
        &self,
        flight: std::sync::Arc<Flight>,
        ticket: &Ticket,
        context: &RequestContext<RoleServer>,
    ) {
        let peer = context.peer.clone();
        let id = ticket.id.clone();
        let until =
            Duration::from_secs(u64::try_from(ticket.expires_at - unix_now()).unwrap_or(0) + 1);
        tokio::spawn(async move {
            let state = flight.wait(until).await;
            if matches!(state, State::Pending(_) | State::Asking) {
                return;
            }
            let complete = CustomNotification::new(
                "notifications/elicitation/complete",
                Some(json!({ "elicitationId": id })),
            );
            let _ = peer
                .send_notification(ServerNotification::CustomNotification(complete))
                .await;
        });
    }
}

/// Whether the client declared URL-mode elicitation (in `initialize` or the request's metadata).
fn declared_url_elicitation(context: &RequestContext<RoleServer>) -> bool {
    let capabilities = match context.peer.peer_info() {
        Some(info) => Some(info.capabilities.clone()),
        None => context.meta.client_capabilities(),
    };
    capabilities
        .and_then(|capabilities| capabilities.elicitation)
        .is_some_and(|elicitation| elicitation.url.is_some())
}

/// The `-32042` error naming the approval page as a URL elicitation.
fn url_elicitation_required(name: &str, ticket: &Ticket, user: &str) -> ErrorData {
    let message = format!(
        "{user} approves {name} with these arguments at this page (match code {}); the call \
         continues once approved when made again with the same arguments",
        ticket.code
    );
    ErrorData::new(
        ErrorCode(URL_ELICITATION_REQUIRED),
        format!("a person must approve this call of {name}"),
        Some(json!({
            "elicitations": [{
                "mode": "url",
                "elicitationId": ticket.id,
                "url": ticket.approval_url,
                "message": message,
            }]
        })),
    )
}

fn gateway_failed(error: &ApprovalError) -> String {
    format!("the gate could not ask for approval: {error}; the call was not sent")
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
