//! `handsign gate`: run the gate (`--config gate.toml`), check a gate file (`check`), or enroll
//! the gate's agent key with a person's passkey (`enroll`).
//!
//! Exit status: 0 done; 1 the gate file is invalid; 2 could not run; for `enroll` as for
//! `handsign agent enroll`: 3 denied, 4 expired or cancelled, 5 timed out.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use handsign_client::{AgentKey, ApprovalError, Client};

use crate::config::{CredentialSource, GateFile};
use crate::gate::{Gate, Verification};
use crate::listener::{self, ListenerLimits};

pub const EXIT_INVALID: u8 = 1;
pub const EXIT_DENIED: u8 = 3;
pub const EXIT_EXPIRED: u8 = 4;
pub const EXIT_TIMED_OUT: u8 = 5;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = false)]
pub struct Args {
    /// The gate file (TOML).
    #[arg(
        long,
        global = true,
        env = "HANDSIGN_GATE_CONFIG",
        default_value = "gate.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Check the gate file and print its route table.
    Check,
    /// Ask the gate file's user to approve the gate's agent key (created if missing).
    Enroll {
        /// Give up after this many seconds (exit 5).
        #[arg(long)]
        timeout: Option<u64>,
        /// Also draw the approval link as a QR code (on stderr).
        #[arg(long)]
        qr: bool,
    },
}

/// Runs the command; the exit status.
pub async fn run(args: Args) -> anyhow::Result<u8> {
    let file = match GateFile::load(&args.config) {
        Ok(file) => file,
        Err(error) => {
            eprintln!("handsign gate: {error}");
            return Ok(EXIT_INVALID);
        }
    };
    match args.command {
        None => serve(&file, &args.config).await,
        Some(Command::Check) => {
            print!("{}", route_table(&file));
            Ok(0)
        }
        Some(Command::Enroll { timeout, qr }) => enroll(&file, timeout, qr).await,
    }
}

/// Serves the gate until Ctrl-C or SIGTERM.
async fn serve(file: &GateFile, path: &std::path::Path) -> anyhow::Result<u8> {
    init_logging("info");
    let verification = Verification::of(file)
        .await
        .map_err(|message| anyhow::anyhow!(message))?;
    let gate = Gate::new(file, &path.display().to_string(), verification)
        .map_err(|message| anyhow::anyhow!(message))?;
    let listener = tokio::net::TcpListener::bind(file.listen)
        .await
        .with_context(|| format!("cannot listen on {}", file.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        agent = gate.agent_id(),
        "handsign gate ready"
    );
    listener::serve(listener, &gate, ListenerLimits::of(file), shutdown_signal()).await;
    Ok(0)
}

/// Logs to stderr, filtered by `RUST_LOG`, else by `default` (an `EnvFilter` directive).
pub(crate) fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The gate file as a table: where calls go and what each needs, and its tool sets.
pub fn route_table(file: &GateFile) -> String {
    let mut out = format!(
        "gate {} -> Handsign {} (approvals by {}, agent key {})\n",
        file.public_url(),
        file.handsign.url.as_str(),
        file.handsign.user,
        file.handsign.agent_key.display()
    );
    for (name, upstream) in &file.upstreams {
        let credential = match &upstream.credential {
            Some(spec) => match &spec.source {
                CredentialSource::Env(var) => format!("{} from ${var}", spec.header),
                CredentialSource::File(path) => {
                    format!("{} from {}", spec.header, path.display())
                }
            },
            None => "none".into(),
        };
        out.push_str(&format!(
            "\n/{name}/ -> {} (audience {}, credential {credential})\n",
            upstream.base_url.as_str(),
            upstream.audience
        ));
        for route in &upstream.routes {
            let spec = route.get_ref();
            let params = spec
                .parts()
                .iter()
                .map(|part| part.as_str())
                .collect::<Vec<_>>()
                .join(",");
            out.push_str(&format!(
                "  {:<8} {:<40} {:<7} {}\n",
                spec.need.as_str(),
                format!("{}", spec.route),
                spec.action.as_ref().map_or("-", |action| action.as_str()),
                if spec.need == crate::policy::Need::Approve {
                    format!("params: {params}")
                } else {
                    String::new()
                }
            ));
        }
    }
    if !file.upstreams.is_empty() {
        out.push_str("\nany other route: refused (unlisted)\n");
    }
    for set in file.tools.values() {
        out.push_str(&set.table());
    }
    out
}

/// `handsign gate enroll`: the gate's key (created owner-only if missing) asks the user to
/// approve it as their agent, as `handsign agent enroll` does.
async fn enroll(file: &GateFile, timeout: Option<u64>, qr: bool) -> anyhow::Result<u8> {
    let key = AgentKey::load_or_create(&file.handsign.agent_key)?;
    let client = Client::new(file.handsign.url.as_str(), key)?;
    let user = &file.handsign.user;
    let name = &file.handsign.agent_name;
    let pending = client.enroll(name, user).await?;
    eprintln!(
        "Ask {user} to approve agent {name} ({}) at:\n  {}\nMatch code: {} (the page must show the same)",
        client.agent_id(),
        pending.approval_url(),
        pending.code()
    );
    if qr {
        match handsign_client::terminal_qr(pending.approval_url()) {
            Some(code) => eprintln!("{code}"),
            None => eprintln!("(the link is too long for a QR code)"),
        }
    }
    let result = match timeout {
        Some(seconds) => pending.wait_timeout(Duration::from_secs(seconds)).await,
        None => pending.wait().await,
    };
    let status = match result {
        Ok(()) => {
            eprintln!(
                "Enrolled: the gate ({}) acts for {user}.",
                client.agent_id()
            );
            return Ok(0);
        }
        Err(ApprovalError::Denied) => EXIT_DENIED,
        Err(ApprovalError::Expired | ApprovalError::Cancelled { .. }) => EXIT_EXPIRED,
        Err(ApprovalError::TimedOut) => EXIT_TIMED_OUT,
        Err(other) => return Err(other.into()),
    };
    eprintln!("handsign gate: the enrollment was not approved ({status})");
    Ok(status)
}
