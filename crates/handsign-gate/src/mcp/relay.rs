//! The relay: the gate is the MCP client's server and the real server's client, and passes
//! every message across unchanged, except `tools/call` (which the [`Approvals`] decide) and
//! `tools/list` (whose gated tools say that a person approves each call).
//!
//! Each downstream session has its own upstream session, opened when the client initializes
//! (with the client's own capabilities and identity, so the real server sees what the client
//! can do) and closed with it. Requests are forwarded with their cancellation and progress:
//! the SDK gives every forwarded request a progress token of its own, so the relay maps it back
//! to the one the sender gave; progress for a token it did not forward is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientConfig, ClientNotification, ClientRequest,
    ClientResult, ErrorData, ProgressNotificationParam, ProgressToken, RequestMetaObject,
    ServerConfig, ServerNotification, ServerRequest, ServerResult,
};
use rmcp::service::{
    NotificationContext, Peer, PeerRequestOptions, RequestContext, RoleClient, RoleServer,
    RunningService, Service, ServiceError, ServiceRole,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::approve::Approvals;
use super::upstream::UpstreamSpec;

/// What the relays of one gate process share.
pub struct Shared {
    pub upstream: UpstreamSpec,
    pub approvals: Approvals,
    /// One permit per open upstream session: each may be a child process.
    pub sessions: Arc<Semaphore>,
    /// Longest a forwarded request may take without progress.
    pub request_timeout: Duration,
    /// Longest a forwarded request may take, progress or not.
    pub request_max: Duration,
    /// Longest the real server may take to initialize.
    pub connect_timeout: Duration,
}

/// One downstream session's relay.
pub struct Relay {
    shared: Arc<Shared>,
    upstream: tokio::sync::OnceCell<Upstream>,
    /// Upstream progress tokens of the requests forwarded upstream, to the client's.
    up_tokens: Tokens,
}

struct Upstream {
    service: RunningService<RoleClient, ToDownstream>,
    _permit: OwnedSemaphorePermit,
}

/// Progress tokens of forwarded requests: the one the forwarding side chose, to the sender's.
#[derive(Clone, Default)]
struct Tokens(Arc<Mutex<HashMap<ProgressToken, ProgressToken>>>);

impl Tokens {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<ProgressToken, ProgressToken>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The progress notification with the sender's token, if it belongs to a forwarded request.
    fn translate(
        &self,
        mut progress: ProgressNotificationParam,
    ) -> Option<ProgressNotificationParam> {
        let original = self.map().get(&progress.progress_token)?.clone();
        progress.progress_token = original;
        Some(progress)
    }
}

impl Relay {
    pub fn new(shared: Arc<Shared>) -> Self {
        Relay {
            shared,
            upstream: tokio::sync::OnceCell::new(),
            up_tokens: Tokens::default(),
        }
    }

    /// The upstream session, opened on first use with `info` as the client's.
    async fn upstream(
        &self,
        info: ClientConfig,
        downstream: &Peer<RoleServer>,
    ) -> Result<&Upstream, ErrorData> {
        self.upstream
            .get_or_try_init(|| async {
                let permit = self
                    .shared
                    .sessions
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| {
                        ErrorData::internal_error(
                            "the gate has as many sessions with the real server open as it allows; \
                         try again when one has closed",
                            None,
                        )
                    })?;
                let handler = ToDownstream {
                    downstream: downstream.clone(),
                    info,
                    down_tokens: Tokens::default(),
                    shared: self.shared.clone(),
                    up_tokens: self.up_tokens.clone(),
                };
                let service = tokio::time::timeout(
                    self.shared.connect_timeout,
                    self.shared.upstream.connect(handler),
                )
                .await
                .map_err(|_| {
                    ErrorData::internal_error(
                        format!(
                            "the real MCP server did not initialize within {} seconds",
                            self.shared.connect_timeout.as_secs()
                        ),
                        None,
                    )
                })?
                .map_err(|error| {
                    ErrorData::internal_error(
                        format!("the gate could not reach the real MCP server: {error}"),
                        None,
                    )
                })?;
                Ok(Upstream {
                    service,
                    _permit: permit,
                })
            })
            .await
    }

    /// Sends `request` to the real server as the client's, with its cancellation and progress.
    pub async fn forward(
        &self,
        request: ClientRequest,
        context: &RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        let upstream = self
            .upstream(client_info_of(context), &context.peer)
            .await?;
        forward(
            upstream.service.peer(),
            request,
            context.meta.clone(),
            &context.ct,
            &self.up_tokens,
            &self.shared,
        )
        .await
    }

    /// Forwards a `tools/call` the gate let through.
    pub async fn call_tool(
        &self,
        params: CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        let request = ClientRequest::CallToolRequest(rmcp::model::CallToolRequest::new(params));
        self.forward(request, context).await
    }

    /// The real server's tools, each gated one saying so in its description.
    async fn list_tools(
        &self,
        request: ClientRequest,
        context: &RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        match self.forward(request, context).await? {
            ServerResult::ListToolsResult(mut list) => {
                list.tools = list
                    .tools
                    .into_iter()
                    .map(|tool| self.shared.approvals.describe(tool))
                    .collect();
                Ok(ServerResult::ListToolsResult(list))
            }
            other => Ok(other),
        }
    }
}

/// The client's identity and capabilities: from `initialize`, or (in revisions without it)
/// from the request's own metadata.
fn client_info_of(context: &RequestContext<RoleServer>) -> ClientConfig {
    match context.peer.peer_info() {
        Some(info) => (*info).clone(),
        None => {
            let mut info = ClientConfig::default();
            if let Some(version) = context.meta.protocol_version() {
                info.protocol_version = version;
            }
            if let Some(client) = context.meta.client_info() {
                info.client_info = client;
            }
            if let Some(capabilities) = context.meta.client_capabilities() {
                info.capabilities = capabilities;
            }
            info
        }
    }
}

/// Sends `request` through `peer`, cancelling it when `cancelled` fires, and maps the progress
/// token the SDK gives it back to the sender's (in `tokens`) while it runs.
async fn forward<R: ServiceRole>(
    peer: &Peer<R>,
    request: R::Req,
    mut meta: RequestMetaObject,
    cancelled: &CancellationToken,
    tokens: &Tokens,
    shared: &Shared,
) -> Result<R::PeerResp, ErrorData> {
    let sender_token = meta.get_progress_token();
    meta.0.0.remove("progressToken");
    let mut options = PeerRequestOptions::with_timeout(shared.request_timeout);
    options.reset_timeout_on_progress = true;
    options.max_total_timeout = Some(shared.request_max);
    options.meta = Some(meta);
    let handle = peer
        .send_cancellable_request(request, options)
        .await
        .map_err(service_error)?;
    let own_token = handle.progress_token.clone();
    if let Some(token) = sender_token {
        tokens.map().insert(own_token.clone(), token);
    }
    let result = tokio::select! {
        result = handle.await_response() => result.map_err(service_error),
        () = cancelled.cancelled() => Err(ErrorData::internal_error("cancelled by the client", None)),
    };
    tokens.map().remove(&own_token);
    result
}

fn service_error(error: ServiceError) -> ErrorData {
    match error {
        ServiceError::McpError(error) => error,
        other => ErrorData::internal_error(format!("the real MCP server: {other}"), None),
    }
}

impl Service<RoleServer> for Relay {
    async fn handle_request(
        &self,
        request: ClientRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        match request {
            ClientRequest::InitializeRequest(initialize) => {
                let upstream = self.upstream(initialize.params, &context.peer).await?;
                match upstream.service.peer().peer_info() {
                    Some(info) => Ok(ServerResult::InitializeResult(initialize_result(&info))),
                    None => Err(ErrorData::internal_error(
                        "the real MCP server did not say what it is",
                        None,
                    )),
                }
            }
            ClientRequest::PingRequest(_) => Ok(ServerResult::empty(())),
            ClientRequest::ListToolsRequest(_) => self.list_tools(request, &context).await,
            ClientRequest::CallToolRequest(call) => {
                let outcome = self
                    .shared
                    .approvals
                    .call(self, call.params, &context)
                    .await?;
                Ok(outcome.unwrap_or_else(ServerResult::CallToolResult))
            }
            other => self.forward(other, &context).await,
        }
    }

    async fn handle_notification(
        &self,
        notification: ClientNotification,
        context: NotificationContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let Some(upstream) = self.upstream.get() else {
            return Ok(());
        };
        let notification = match notification {
            // The SDK turns a cancellation into the cancelled request's token firing; the
            // forwarding cancels upstream with the upstream's request id.
            ClientNotification::CancelledNotification(_) => return Ok(()),
            ClientNotification::ProgressNotification(progress) => {
                let to_downstream = upstream.service.service();
                match to_downstream.down_tokens.translate(progress.params) {
                    Some(params) => ClientNotification::ProgressNotification(
                        rmcp::model::ProgressNotification::new(params),
                    ),
                    None => return Ok(()),
                }
            }
            other => other,
        };
        let _ = context;
        let _ = upstream
            .service
            .peer()
            .send_notification(notification)
            .await;
        Ok(())
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::default()
    }
}

/// The upstream session's client side: what the real server asks of the client goes to the
/// client, as it is.
struct ToDownstream {
    downstream: Peer<RoleServer>,
    info: ClientConfig,
    /// Downstream progress tokens of the requests forwarded to the client, to the server's.
    down_tokens: Tokens,
    /// The relay's map, to translate the real server's progress for the client.
    up_tokens: Tokens,
    shared: Arc<Shared>,
}

impl Service<RoleClient> for ToDownstream {
    async fn handle_request(
        &self,
        request: ServerRequest,
        context: RequestContext<RoleClient>,
    ) -> Result<ClientResult, ErrorData> {
        if let ServerRequest::PingRequest(_) = request {
            return Ok(ClientResult::empty(()));
        }
        forward(
            &self.downstream,
            request,
            context.meta.clone(),
            &context.ct,
            &self.down_tokens,
            &self.shared,
        )
        .await
    }

    async fn handle_notification(
        &self,
        notification: ServerNotification,
        _context: NotificationContext<RoleClient>,
    ) -> Result<(), ErrorData> {
        let notification = match notification {
            ServerNotification::CancelledNotification(_) => return Ok(()),
            ServerNotification::ProgressNotification(progress) => {
                match self.up_tokens.translate(progress.params) {
                    Some(params) => ServerNotification::ProgressNotification(
                        rmcp::model::ProgressNotification::new(params),
                    ),
                    None => return Ok(()),
                }
            }
            other => other,
        };
        let _ = self.downstream.send_notification(notification).await;
        Ok(())
    }

    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }
}

/// A tool result with `isError` and one text: the gate's answer to a call it did not forward.
pub fn error_result(text: String) -> CallToolResult {
    CallToolResult::error(vec![rmcp::model::ContentBlock::text(text)])
}

/// The real server's answer to `initialize`, as the client's.
fn initialize_result(info: &rmcp::model::ServerPeerInfo) -> rmcp::model::InitializeResult {
    let mut result = rmcp::model::InitializeResult::new(info.capabilities.clone());
    result.protocol_version = info.protocol_version.clone();
    if let Some(server) = &info.server_info {
        result.server_info = server.clone();
    }
    result.instructions = info.instructions.clone();
    result.meta = info.meta.clone();
    result
}
