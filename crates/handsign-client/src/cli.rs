//! `handsign request`, `handsign call`, `handsign agent keygen` and `handsign agent enroll`: this
//! SDK as commands (feature `cli`), so that an agent written in any language can ask for an
//! approval by running a process. The `handsign` binary parses them and hands them here; each
//! returns the exit status it ends with.
//!
//! `request` prints where to approve and the match code on stderr, waits, and prints only the
//! token (and a newline) on stdout, so `TOKEN=$(handsign request ...)` works. Its exit status,
//! and that of `agent enroll`, tells the outcome:
//!
//! | status | meaning |
//! |---|---|
//! | 0 | approved (`request`: the token is on stdout) |
//! | 3 | denied |
//! | 4 | expired, or cancelled by the gateway |
//! | 5 | timed out (`--timeout` passed; `request` cancels the request, `agent enroll` leaves it pending) |
//! | 2 | could not run: bad input, the gateway refused, unreachable, token already collected |
//! | 130 | `request` interrupted (Ctrl-C); the request is cancelled |
//!
//! 1 is left to the verify commands, where it means "refused"; an error that stops a command is
//! returned as `Err`, for the binary to print, with status 2.
//!
//! `handsign call` sends one request to a service with a token, as an agent does: it attaches
//! `Authorization: Approval <token>` and a DPoP proof for that exact method and URL. It prints
//! the answer's body on stdout and its status on stderr, and exits 0 for a 2xx answer, 1 for any
//! other.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use handsign_protocol::canonical::Limits;
use handsign_protocol::params::CanonicalParams;

use crate::{AgentKey, ApprovalError, ApprovalRequest, Client};

/// Exit status: approved, or (`call`) a 2xx answer.
pub const EXIT_OK: u8 = 0;
/// Exit status of `call`: the service answered other than 2xx.
pub const EXIT_REFUSED: u8 = 1;
/// Exit status: the person denied.
pub const EXIT_DENIED: u8 = 3;
/// Exit status: nobody decided in time, or the gateway cancelled the request.
pub const EXIT_EXPIRED: u8 = 4;
/// Exit status: `--timeout` passed with no decision.
pub const EXIT_TIMED_OUT: u8 = 5;
/// Exit status: interrupted (SIGINT), as shells report it (128 + 2).
pub const EXIT_INTERRUPTED: u8 = 130;
/// The reason a request is cancelled with when `handsign request` is interrupted.
const INTERRUPTED_REASON: &str = "the agent was interrupted";

const EXIT_STATUSES: &str = "Exit status: 0 approved, 3 denied, 4 expired or cancelled, \
5 timed out (request: the request is cancelled; agent enroll: it stays pending), \
2 error (bad input, gateway refused, unreachable), 130 interrupted (the request is cancelled).";

/// Where the gateway is and which key the agent signs with.
#[derive(Debug, Clone, clap::Args)]
pub struct Agent {
    /// The gateway's public URL, e.g. https://handsign.example.com.
    #[arg(long, env = "HANDSIGN_GATEWAY")]
    gateway: String,
    /// The agent's private key file (a JWK, owner-only).
    #[arg(long, env = "HANDSIGN_AGENT_KEY")]
    key: PathBuf,
}

/// `handsign agent keygen` and `handsign agent enroll`: what the agent runs, beside the
/// operator's `handsign agent` commands.
#[derive(Debug, clap::Subcommand)]
pub enum AgentCommand {
    /// Make a new agent key file (owner-only); print the agent id and its public JWK.
    Keygen(KeygenArgs),
    /// Ask a user to approve this agent key with their passkey, and wait.
    Enroll(EnrollArgs),
}

/// Runs `handsign agent keygen|enroll`; the exit status.
pub async fn agent(command: AgentCommand) -> anyhow::Result<u8> {
    match command {
        AgentCommand::Keygen(args) => keygen(args).await,
        AgentCommand::Enroll(args) => enroll(args).await,
    }
}

#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Where to write the new private key (owner-only); an existing file is never overwritten.
    #[arg(long)]
    key: PathBuf,
}

#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_STATUSES)]
pub struct EnrollArgs {
    #[command(flatten)]
    agent: Agent,
    /// The agent's name, as the user will see it.
    #[arg(long)]
    name: String,
    /// The user the agent acts for.
    #[arg(long)]
    user: String,
    /// Give up after this many seconds (exit 5).
    #[arg(long)]
    timeout: Option<u64>,
    /// Also draw the approval link as a QR code (on stderr), to open it with a phone's camera.
    #[arg(long)]
    qr: bool,
}

#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_STATUSES)]
pub struct RequestArgs {
    #[command(flatten)]
    agent: Agent,
    /// The action, e.g. flights.book.
    #[arg(long)]
    action: String,
    /// The exact params: JSON text, or @FILE to read them from a file (@- for stdin).
    #[arg(long)]
    params: String,
    /// The service that will accept the token, e.g. https://travel.example.
    #[arg(long)]
    audience: String,
    /// The user to ask (not needed when the agent acts for one user).
    #[arg(long)]
    user: Option<String>,
    /// A summary shown to the person, marked as written by the agent.
    #[arg(long)]
    message: Option<String>,
    /// Seconds the request waits for a decision at the gateway (default 300).
    #[arg(long)]
    ttl: Option<u64>,
    /// Seconds this command waits before giving up (exit 5); by default until the request
    /// is decided or expires.
    #[arg(long)]
    timeout: Option<u64>,
    /// Also draw the approval link as a QR code (on stderr), to open it with a phone's camera.
    #[arg(long)]
    qr: bool,
}

/// `handsign agent keygen`: a new key file, and what the operator needs to add the agent.
async fn keygen(args: KeygenArgs) -> anyhow::Result<u8> {
    let key = AgentKey::create(&args.key)?;
    let jwk = serde_json::to_string(&key.public_jwk())?;
    println!("{}", key.id());
    println!("{jwk}");
    eprintln!(
        "Wrote {} (owner-only). Add the agent with:\n  handsign agent add --name NAME --user USER --key '{jwk}'\nor enroll it with `handsign agent enroll`.",
        args.key.display()
    );
    Ok(EXIT_OK)
}

/// `handsign agent enroll`: ask a user to approve this key as their agent, and wait.
async fn enroll(args: EnrollArgs) -> anyhow::Result<u8> {
    let client = client(&args.agent)?;
    let pending = client.enroll(&args.name, &args.user).await?;
    eprintln!(
        "Ask {} to approve agent {} ({}) at:\n  {}\nMatch code: {} (the page must show the same)",
        args.user,
        args.name,
        client.agent_id(),
        pending.approval_url(),
        pending.code()
    );
    show_qr(args.qr, pending.approval_url());
    let result = match args.timeout {
        Some(seconds) => pending.wait_timeout(Duration::from_secs(seconds)).await,
        None => pending.wait().await,
    };
    match result {
        Ok(()) => {
            eprintln!(
                "Enrolled: agent {} acts for {}.",
                client.agent_id(),
                args.user
            );
            Ok(EXIT_OK)
        }
        Err(error) => decided_otherwise(error),
    }
}

/// `handsign request`: ask, wait, print the token.
pub async fn request(args: RequestArgs) -> anyhow::Result<u8> {
    let params = read_params(&args.params).await?;
    let client = client(&args.agent)?;
    let mut request = ApprovalRequest::new(args.action, params, args.audience);
    request.user = args.user;
    request.message = args.message;
    request.ttl = args.ttl;
    let pending = client.request_approval(request).await?;
    eprintln!(
        "Approve at:\n  {}\nMatch code: {} (the page must show the same)",
        pending.approval_url(),
        pending.code()
    );
    show_qr(args.qr, pending.approval_url());
    // Nobody waits for the answer once the wait runs out or is interrupted: the request is
    // withdrawn then, so that the person is not asked about it.
    let waited = async {
        match args.timeout {
            Some(seconds) => pending.wait_or_cancel(Duration::from_secs(seconds)).await,
            None => pending.wait().await,
        }
    };
    let result = tokio::select! {
        result = waited => result,
        _ = tokio::signal::ctrl_c() => {
            match pending.cancel(Some(INTERRUPTED_REASON)).await {
                Ok(()) => eprintln!("handsign: interrupted; the request was cancelled"),
                Err(e) => eprintln!("handsign: interrupted; the request could not be cancelled: {e}"),
            }
            return Ok(EXIT_INTERRUPTED);
        }
    };
    match result {
        Ok(approval) => {
            println!("{}", approval.token());
            Ok(EXIT_OK)
        }
        Err(ApprovalError::TimedOut) => {
            eprintln!("handsign: no decision before the deadline; the request was cancelled");
            Ok(EXIT_TIMED_OUT)
        }
        Err(error) => decided_otherwise(error),
    }
}

#[derive(Debug, clap::Args)]
pub struct CallArgs {
    #[command(flatten)]
    agent: Agent,
    /// The token (`TOKEN=$(handsign request ...)`).
    #[arg(long, env = "HANDSIGN_TOKEN")]
    token: String,
    /// The HTTP method.
    #[arg(long, default_value = "POST")]
    method: String,
    /// The JSON body: inline, or `@FILE`, or `@-` for stdin.
    #[arg(long)]
    data: Option<String>,
    /// The service URL to call.
    url: String,
}

pub async fn call(args: CallArgs) -> anyhow::Result<u8> {
    let client = client(&args.agent)?;
    let method = reqwest::Method::from_bytes(args.method.to_uppercase().as_bytes())
        .with_context(|| format!("invalid method {}", args.method))?;
    // The SDK's client installed the TLS provider this client uses.
    let http = reqwest::Client::new();
    let mut request = http.request(method, &args.url);
    if let Some(data) = &args.data {
        let body = match data.strip_prefix('@') {
            Some(path) => read_input(path).await?,
            None => data.clone().into_bytes(),
        };
        request = request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
    }
    let mut request = request.build()?;
    client.authorize(&mut request, args.token.trim())?;
    let response = http
        .execute(request)
        .await
        .with_context(|| format!("cannot reach {}", args.url))?;
    let status = response.status();
    eprintln!("{status}");
    println!("{}", response.text().await?);
    Ok(if status.is_success() {
        EXIT_OK
    } else {
        EXIT_REFUSED
    })
}

/// Draws `url` as a QR code on stderr when asked (stdout carries only the token).
fn show_qr(asked: bool, url: &str) {
    if !asked {
        return;
    }
    match crate::terminal_qr(url) {
        Some(qr) => eprintln!("{qr}"),
        None => eprintln!("(the link is too long for a QR code)"),
    }
}

fn client(agent: &Agent) -> anyhow::Result<Client> {
    let key = AgentKey::load(&agent.key)?;
    Ok(Client::new(&agent.gateway, key)?)
}

/// The exit status for an outcome other than approval; errors that are not outcomes stay
/// errors (status 2).
fn decided_otherwise(error: ApprovalError) -> anyhow::Result<u8> {
    let status = match error {
        ApprovalError::Denied => EXIT_DENIED,
        ApprovalError::Expired | ApprovalError::Cancelled { .. } => EXIT_EXPIRED,
        ApprovalError::TimedOut => EXIT_TIMED_OUT,
        other => return Err(other.into()),
    };
    eprintln!("handsign: {error}");
    Ok(status)
}

/// Reads `--params`: JSON text, or `@FILE` / `@-`. The text is checked as the gateway will
/// check it (duplicate keys, numbers a double cannot hold exactly), since parsing it into a
/// value would otherwise drop a duplicate key or round a number without a word.
async fn read_params(arg: &str) -> anyhow::Result<serde_json::Value> {
    let text = match arg.strip_prefix('@') {
        Some(path) => read_input(path).await?,
        None => arg.as_bytes().to_vec(),
    };
    let limits = Limits {
        max_bytes: usize::MAX,
        max_depth: 128,
    };
    let exact = CanonicalParams::parse(&text, &limits).context("--params refused")?;
    let value: serde_json::Value = serde_json::from_slice(&text).context("--params refused")?;
    let sent = CanonicalParams::from_value(&value, &limits).context("--params refused")?;
    if sent != exact {
        bail!("--params cannot be sent exactly as written; write big numbers as strings");
    }
    Ok(value)
}

/// Reads a file, or stdin when `path` is `-`: how every `handsign` command takes a file
/// argument (the gateway's offline commands use it too).
pub async fn read_input(path: &str) -> anyhow::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt as _;
    if path == "-" {
        let mut bytes = Vec::new();
        tokio::io::stdin()
            .read_to_end(&mut bytes)
            .await
            .context("cannot read stdin")?;
        Ok(bytes)
    } else {
        tokio::fs::read(path)
            .await
            .with_context(|| format!("cannot read {path}"))
    }
}
