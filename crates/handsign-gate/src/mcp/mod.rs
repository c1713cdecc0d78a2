//! `handsign mcp`: a passkey in front of an MCP server's tools.
//!
//! The gate stands where the MCP server was in the client's configuration: it starts the real
//! server (`-- command ...`) or connects to it (`--upstream-url`), serves the client over stdio
//! or Streamable HTTP (`--listen`), and [relays](relay) everything as it is but `tools/call`, which the gate file's tool set
//! decides: `pass` goes through, `deny` and unmatched tools are answered by the gate, and
//! `approve` waits for a person's passkey ([`approve`]) and reaches the real server only once
//! its token was verified and consumed here.

pub mod approve;
pub mod relay;
pub mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use handsign_client::{AgentKey, Client};
use handsign_verify::{Keys, Verifier};
use rmcp::ServiceExt as _;
use rmcp::transport::StreamableHttpService;
use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use tokio::sync::Semaphore;

use crate::cli::EXIT_INVALID;
use crate::config::GateFile;
use crate::flights::Flights;
use crate::gate::Verification;
use crate::listener::{self, ListenerLimits};
use approve::Approvals;
use relay::{Relay, Shared};
use upstream::UpstreamSpec;

/// Most sessions with the real server open at once (each may be a child process).
const MAX_SESSIONS: usize = 64;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The gate file (TOML): `[handsign]` and the tool set of the wrapped server.
    #[arg(long, env = "HANDSIGN_GATE_CONFIG", default_value = "gate.toml")]
    config: PathBuf,
    /// The wrapped server's tool set in the gate file (`[tools.NAME]`); its name is the
    /// approvals' default audience and the middle of their actions (`mcp.NAME.TOOL`). Needed
    /// when the file has more than one.
    #[arg(long)]
    server: Option<String>,
    /// The real server's Streamable HTTP endpoint, instead of a command.
    #[arg(long, conflicts_with = "command")]
    upstream_url: Option<url::Url>,
    /// Serve the client over Streamable HTTP at this address (endpoint `/mcp`, loopback
    /// `Host` only) instead of stdio.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Seconds a forwarded request may go without an answer or progress (default 300).
    #[arg(long, default_value_t = 300)]
    request_timeout: u64,
    /// The real server's command and its arguments, after `--`.
    #[arg(last = true)]
    command: Vec<String>,
}

/// Runs the gate until the client leaves (stdio) or Ctrl-C/SIGTERM (`--listen`); the exit
/// status.
pub async fn run(args: Args) -> anyhow::Result<u8> {
    // The SDK logs every message at info; the gate's own warnings are what an operator needs
    // in the client's server log.
    crate::cli::init_logging("warn");
    let file = match GateFile::load(&args.config) {
        Ok(file) => file,
        Err(error) => {
            eprintln!("handsign mcp: {error}");
            return Ok(EXIT_INVALID);
        }
    };
    let upstream = match (&args.upstream_url, args.command.is_empty()) {
        (Some(url), _) => UpstreamSpec::Url(url.to_string()),
        (None, false) => UpstreamSpec::Command(args.command.clone()),
        (None, true) => {
            eprintln!(
                "handsign mcp: name the real server: `-- command ...` or `--upstream-url URL`"
            );
            return Ok(EXIT_INVALID);
        }
    };
    let timeout = Duration::from_secs(args.request_timeout.max(1));
    let shared = match shared(&file, args.server.as_deref(), upstream, timeout).await {
        Ok(shared) => shared,
        Err(message) => {
            eprintln!("handsign mcp: {message}");
            return Ok(EXIT_INVALID);
        }
    };
    match args.listen {
        None => {
            let running = Relay::new(shared)
                .serve(rmcp::transport::stdio())
                .await
                .map_err(|error| anyhow::anyhow!("the MCP client: {error}"))?;
            running.waiting().await?;
        }
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|error| anyhow::anyhow!("cannot listen on {addr}: {error}"))?;
            eprintln!(
                "handsign mcp: serving MCP at http://{}/mcp",
                listener.local_addr()?
            );
            listener::serve_router(
                listener,
                router(shared),
                ListenerLimits::of(&file),
                crate::cli::shutdown_signal(),
            )
            .await;
        }
    }
    Ok(0)
}

/// What the relays of `file`'s tool set `server` in front of `upstream` share; `Err` says what
/// is wrong with the file or the gate's key.
pub async fn shared(
    file: &GateFile,
    server: Option<&str>,
    upstream: UpstreamSpec,
    request_timeout: Duration,
) -> Result<Arc<Shared>, String> {
    Ok(Arc::new(Shared {
        upstream,
        approvals: approvals(file, server).await?,
        sessions: Arc::new(Semaphore::new(MAX_SESSIONS)),
        request_timeout,
        request_max: request_timeout * 12,
        connect_timeout: Duration::from_secs(60),
    }))
}

/// The Streamable HTTP endpoint `/mcp`: one relay, so one session with the real server, per
/// client session. The SDK's defaults accept loopback `Host` headers only (DNS rebinding).
pub fn router(shared: Arc<Shared>) -> axum::Router {
    let service = StreamableHttpService::new(
        move || Ok(Relay::new(shared.clone())),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    axum::Router::new().nest_service("/mcp", service)
}

/// The tool set `server` of `file` (the only one when not named), with what asks for and
/// checks approvals.
async fn approvals(file: &GateFile, server: Option<&str>) -> Result<Approvals, String> {
    let name = match server {
        Some(name) => name.to_owned(),
        None => {
            let mut names = file.tools.keys();
            match (names.next(), names.next()) {
                (Some(only), None) => only.as_str().to_owned(),
                (None, _) => return Err("the gate file has no [tools.NAME] section".into()),
                (Some(_), Some(_)) => {
                    return Err(
                        "the gate file has several tool sets: name one with --server".into(),
                    );
                }
            }
        }
    };
    let tools = file.tool_set(&name)?;
    let key = AgentKey::load(&file.handsign.agent_key).map_err(|e| {
        format!(
            "the gate's agent key {}: {e} (create and enroll it with `handsign gate enroll`)",
            file.handsign.agent_key.display()
        )
    })?;
    let gateway = file.handsign.url.as_str().trim_end_matches('/').to_owned();
    let client = Client::new(&gateway, key).map_err(|e| format!("handsign.url: {e}"))?;
    let audience = tools.audience.clone().unwrap_or_else(|| name.clone());
    let verification = Verification::of(file).await?;
    let verifier = Verifier::builder()
        .issuer(gateway.clone())
        .audience(audience.clone())
        .public_url(file.public_url())
        .keys(Keys::jwks_url(format!("{gateway}/.well-known/jwks.json")))
        .replay_store(Arc::new(crate::gate::OwnApprovals(verification.replay)))
        .clock(verification.clock)
        .build()
        .map_err(|e| format!("[tools.{name}]: {e}"))?;
    Ok(Approvals {
        server: name,
        tools: tools.clone(),
        audience,
        user: file.handsign.user.clone(),
        client,
        verifier,
        flights: Flights::new(file.max_pending_approvals.get()),
        hold: file.hold_seconds.secs(),
        ttl: file.approval_ttl_seconds.map(|ttl| ttl.0),
    })
}
