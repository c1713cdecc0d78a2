//! The relay: the gate is the MCP client's server and the real server's client, and passes
//! every message across unchanged, except `tools/call` (which the [`Approvals`] decide) and
//! `tools/list` (whose gated tools say that a person approves each call).
//!
//! Each downstream session has its own upstream session, opened when the client initializes
//! (with the client's own capabilities and identity, so the real server sees what the client
//! can do) and closed with it. Requests are forwarded with their cancellation and progress:
//! the SDK gives every forwarded request a progress token of its own, so the relay maps it back
//! to the one the sender gave; progress for a token it did not forward is dropped.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rmcp::ServerHandler;
// Logging's setLevel is deprecated in the SDK (SEP-2577) but is part of the 2025-11-25 revision
// the gate relays.
#[allow(deprecated)]
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, ClientConfig,
    ClientNotification, ClientRequest, ClientResult, CompleteRequestParams, CompleteResult,
    CustomNotification, CustomRequest, CustomResult, ErrorData, GetPromptRequestParams,
    GetPromptResponse, GetTaskParams, GetTaskResult, InitializeRequestParams, InitializeResult,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    PaginatedRequestParams, ProgressNotificationParam, ProgressToken, ProtocolVersion,
    ReadResourceRequestParams, ReadResourceResponse, Request, RequestMetaObject,
    RequestOptionalParam, ServerConfig, ServerNotification, ServerRequest, ServerResult,
    SetLevelRequestParams, SubscribeRequestParams, UnsubscribeRequestParams, UpdateTaskParams,
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
    /// The approvals whose completion this session's client is told of (URL elicitation).
    followed: Mutex<HashSet<String>>,
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
            followed: Mutex::default(),
        }
    }

    /// Whether approval `id` is not followed for this session's client yet (and now is).
    pub fn follows_first(&self, id: &str) -> bool {
        self.followed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_owned())
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

/// A `ServerHandler` method that forwards its request and expects one kind of result.
macro_rules! relayed {
    ($(#[$attr:meta])* $method:ident($params:ty) -> $out:ty: $request:expr, $pick:pat => $value:expr) => {
        $(#[$attr])*
        async fn $method(
            &self,
            params: $params,
            context: RequestContext<RoleServer>,
        ) -> Result<$out, ErrorData> {
            match self.forward($request(params), &context).await? {
                $pick => Ok($value),
                other => Err(unexpected(&other)),
            }
        }
    };
}

/// The real server answered a request with another kind of result.
fn unexpected(result: &ServerResult) -> ErrorData {
    ErrorData::internal_error(
        format!(
            "the real MCP server answered with an unexpected result: {}",
            serde_json::to_string(result).unwrap_or_default()
        ),
        None,
    )
}

fn optional<M: Default, P>(params: Option<P>) -> RequestOptionalParam<M, P> {
    RequestOptionalParam {
        method: M::default(),
        params,
        extensions: Default::default(),
    }
}

/// The SDK's server side dispatches each request to these methods (and checks and shapes the
/// results for the negotiated revision); each forwards as it is, but `tools/call` and
/// `tools/list`, and the lifecycle the gate keeps itself (`initialize`, `ping`, the
/// `initialized` and `cancelled` notifications).
impl ServerHandler for Relay {
    /// Up to 2025-11-25. In 2026-07-28 every request stands alone (over HTTP the SDK makes a
    /// relay, so a session with the real server, per request) and an approval would be an
    /// input-required result, which the gate does not give yet: such a client is told the
    /// versions it may use instead.
    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::V_2025_11_25))
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        context.peer.set_peer_info(request.clone());
        let upstream = self.upstream(request, &context.peer).await?;
        match upstream.service.peer().peer_info() {
            Some(info) => Ok(initialize_result(&info)),
            None => Err(ErrorData::internal_error(
                "the real MCP server did not say what it is",
                None,
            )),
        }
    }

    async fn call_tool(
        &self,
        params: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        match self.shared.approvals.call(self, params, &context).await? {
            Err(refused) => Ok(CallToolResponse::Complete(refused)),
            Ok(ServerResult::CallToolResult(result)) => Ok(CallToolResponse::Complete(result)),
            Ok(ServerResult::InputRequiredResult(result)) => {
                Ok(CallToolResponse::InputRequired(result))
            }
            Ok(ServerResult::CreateTaskResult(result)) => Ok(CallToolResponse::Task(result)),
            Ok(other) => Err(unexpected(&other)),
        }
    }

    async fn list_tools(
        &self,
        params: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let request = ClientRequest::ListToolsRequest(optional(params));
        match self.forward(request, &context).await? {
            ServerResult::ListToolsResult(mut list) => {
                list.tools = list
                    .tools
                    .into_iter()
                    .map(|tool| self.shared.approvals.describe(tool))
                    .collect();
                Ok(list)
            }
            other => Err(unexpected(&other)),
        }
    }

    relayed!(complete(CompleteRequestParams) -> CompleteResult:
        |p| ClientRequest::CompleteRequest(Request::new(p)),
        ServerResult::CompleteResult(r) => r);
    relayed!(#[allow(deprecated)] set_level(SetLevelRequestParams) -> ():
        |p| ClientRequest::SetLevelRequest(Request::new(p)),
        ServerResult::EmptyResult(_) => ());
    relayed!(get_prompt(GetPromptRequestParams) -> GetPromptResponse:
        |p| ClientRequest::GetPromptRequest(Request::new(p)),
        ServerResult::GetPromptResult(r) => GetPromptResponse::from(r));
    relayed!(list_prompts(Option<PaginatedRequestParams>) -> ListPromptsResult:
        |p| ClientRequest::ListPromptsRequest(optional(p)),
        ServerResult::ListPromptsResult(r) => r);
    relayed!(list_resources(Option<PaginatedRequestParams>) -> ListResourcesResult:
        |p| ClientRequest::ListResourcesRequest(optional(p)),
        ServerResult::ListResourcesResult(r) => r);
    relayed!(list_resource_templates(Option<PaginatedRequestParams>) -> ListResourceTemplatesResult:
        |p| ClientRequest::ListResourceTemplatesRequest(optional(p)),
        ServerResult::ListResourceTemplatesResult(r) => r);
    relayed!(read_resource(ReadResourceRequestParams) -> ReadResourceResponse:
        |p| ClientRequest::ReadResourceRequest(Request::new(p)),
        ServerResult::ReadResourceResult(r) => ReadResourceResponse::from(r));
    relayed!(#[allow(deprecated)] subscribe(SubscribeRequestParams) -> ():
        |p| ClientRequest::SubscribeRequest(Request::new(p)),
        ServerResult::EmptyResult(_) => ());
    relayed!(#[allow(deprecated)] unsubscribe(UnsubscribeRequestParams) -> ():
        |p| ClientRequest::UnsubscribeRequest(Request::new(p)),
        ServerResult::EmptyResult(_) => ());
    relayed!(get_task(GetTaskParams) -> GetTaskResult:
        |p| ClientRequest::GetTaskRequest(Request::new(p)),
        ServerResult::GetTaskResult(r) => r);
    relayed!(update_task(UpdateTaskParams) -> ():
        |p| ClientRequest::UpdateTaskRequest(Request::new(p)),
        ServerResult::TaskAckResult(_) | ServerResult::EmptyResult(_) => ());
    relayed!(cancel_task(CancelTaskParams) -> ():
        |p| ClientRequest::CancelTaskRequest(Request::new(p)),
        ServerResult::TaskAckResult(_) | ServerResult::EmptyResult(_) => ());

    async fn on_custom_request(
        &self,
        request: CustomRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, ErrorData> {
        match self
            .forward(ClientRequest::CustomRequest(request), &context)
            .await?
        {
            ServerResult::CustomResult(result) => Ok(result),
            other => Err(unexpected(&other)),
        }
    }

    async fn on_progress(
        &self,
        progress: ProgressNotificationParam,
        _context: NotificationContext<RoleServer>,
    ) {
        let Some(upstream) = self.upstream.get() else {
            return;
        };
        // Progress of a request the real server sent the client, with the server's token.
        if let Some(params) = upstream.service.service().down_tokens.translate(progress) {
            let notification = ClientNotification::ProgressNotification(
                rmcp::model::ProgressNotification::new(params),
            );
            let _ = upstream
                .service
                .peer()
                .send_notification(notification)
                .await;
        }
    }

    async fn on_roots_list_changed(&self, _context: NotificationContext<RoleServer>) {
        if let Some(upstream) = self.upstream.get() {
            let _ = upstream.service.peer().notify_roots_list_changed().await;
        }
    }

    async fn on_custom_notification(
        &self,
        notification: CustomNotification,
        _context: NotificationContext<RoleServer>,
    ) {
        if let Some(upstream) = self.upstream.get() {
            let notification = ClientNotification::CustomNotification(notification);
            let _ = upstream
                .service
                .peer()
                .send_notification(notification)
                .await;
        }
    }

    /// The real server's, once connected: the SDK checks capabilities against it.
    fn get_info(&self) -> ServerConfig {
        match self
            .upstream
            .get()
            .and_then(|upstream| upstream.service.peer().peer_info())
        {
            Some(info) => initialize_result(&info),
            None => ServerConfig::default(),
        }
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
