//! `handsign hook claude-code`: a coding agent's `PreToolUse` command hook. The agent runs it
//! before each tool call with the call as JSON on stdin; it applies a tool set of the gate file
//! ([`crate::tools`]), and for a call that needs approval asks the gate file's user, as the
//! gate's enrolled agent, to approve exactly this call with their passkey. It then collects the
//! token, checks and consumes it with `handsign-verify` as a service would, and answers on
//! stdout in the agent's hook protocol.
//!
//! Every way of not getting a checked approval ends in a refusal with its reason: denied,
//! expired or cancelled, the gateway unreachable or refusing, the wait ran out, a tool no rule
//! allows, a token that fails its check, input that cannot be read. The answer is always
//! printed with exit status 0, since an agent takes a crash or an unexpected exit status as
//! "no objection". Only the answer goes to stdout; what happened is also said on stderr.
//!
//! Claude Code: an approved call is answered `allow` (the person approved exactly it, so the
//! agent need not ask again); a `pass` call gets no answer, leaving the agent's own permission
//! rules to decide; a refused one `deny`. Codex (`--format codex`) takes the same `deny`, and
//! does not take `allow` from a `PreToolUse` hook: there an approved call gets no answer either.

use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use handsign_client::{AgentKey, ApprovalError, ApprovalRequest, Client, RetryPolicy};
use handsign_verify::{KeyBinding, Keys, Presented, Verifier};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::time::{Instant, timeout, timeout_at};

use crate::config::GateFile;
use crate::gate::{OwnApprovals, Verification, shortened};
use crate::tools::ToolVerdict;

/// Largest hook input read from stdin; a larger one is refused.
const MAX_INPUT_BYTES: usize = 1024 * 1024;
/// Time allowed after the wait for what follows a decision: cancelling an undecided request,
/// or collecting and checking the token (the gateway's keys may have to be fetched).
const AFTER_WAIT: Duration = Duration::from_secs(5);
/// Attempts to reach the gateway per step: a hook answers within its agent's time limit, so it
/// does not ride out a long outage.
const GATEWAY_ATTEMPTS: u32 = 3;

/// `handsign hook ...`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Claude Code's PreToolUse command hook (and Codex's, with --format codex): reads the tool
    /// call on stdin, asks for a passkey approval when the gate file's tool set says so, and
    /// prints the hook's decision.
    ClaudeCode(Args),
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The gate file (TOML): its [handsign] section and the tool set.
    #[arg(long, env = "HANDSIGN_GATE_CONFIG", default_value = "gate.toml")]
    config: PathBuf,
    /// The hook protocol spoken on stdout.
    #[arg(long, value_enum, default_value_t = Format::ClaudeCode)]
    format: Format,
    /// The gate file's tool set, `[tools.NAME]` (default: the format's name, `claude-code` or
    /// `codex`).
    #[arg(long)]
    tools: Option<String>,
    /// Seconds to wait for the person's decision; give the agent's hook `timeout` at least 15
    /// seconds more, so that the hook answers before the agent gives up on it.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=3600))]
    wait_seconds: u64,
}

/// Whose hook protocol the answer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    ClaudeCode,
    Codex,
}

impl Format {
    /// The prefix of default action names and the default tool set's name.
    fn name(self) -> &'static str {
        match self {
            Format::ClaudeCode => "claude-code",
            Format::Codex => "codex",
        }
    }
}

/// What the hook decided about one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A person approved exactly this call, and its token passed the check.
    Approved { reason: String },
    /// The tool set lets the call pass without asking.
    Passed { reason: String },
    /// Refused: by the tool set, the person, the clock, or a failure (fail closed).
    Refused { reason: String },
}

impl Outcome {
    fn refused(reason: impl Into<String>) -> Self {
        Outcome::Refused {
            reason: reason.into(),
        }
    }

    fn reason(&self) -> &str {
        match self {
            Outcome::Approved { reason }
            | Outcome::Passed { reason }
            | Outcome::Refused { reason } => reason,
        }
    }

    /// The answer for stdout in `format`'s protocol: `None` prints nothing.
    pub fn answer(&self, format: Format) -> Option<Value> {
        let decision = |decision: &str, reason: &str| {
            json!({
                "hookSpecificOutput": {
                    "hookEventName": "PreToolUse",
                    "permissionDecision": decision,
                    "permissionDecisionReason": reason,
                }
            })
        };
        match (self, format) {
            (Outcome::Refused { reason }, _) => Some(decision("deny", reason)),
            (Outcome::Approved { reason }, Format::ClaudeCode) => Some(decision("allow", reason)),
            (Outcome::Approved { .. }, Format::Codex) | (Outcome::Passed { .. }, _) => None,
        }
    }
}

/// The members of a `PreToolUse` hook input that the hook reads; others are ignored.
#[derive(Debug, Deserialize)]
struct HookInput {
    hook_event_name: String,
    tool_name: String,
    #[serde(default)]
    tool_input: Option<Value>,
    cwd: String,
    #[serde(default)]
    session_id: Option<String>,
}

/// Runs the hook on this process's stdin; prints the answer and returns exit status 0.
pub async fn run(command: Command) -> anyhow::Result<u8> {
    let Command::ClaudeCode(args) = command;
    let outcome = match read_stdin() {
        Ok(input) => decide(&args, &input).await,
        Err(reason) => Outcome::refused(reason),
    };
    let label = match &outcome {
        Outcome::Approved { .. } => "approved",
        Outcome::Passed { .. } => "passed",
        Outcome::Refused { .. } => "refused",
    };
    eprintln!("handsign hook: {label}: {}", outcome.reason());
    if let Some(answer) = outcome.answer(args.format) {
        println!("{answer}");
    }
    Ok(0)
}

fn read_stdin() -> Result<Vec<u8>, String> {
    let mut input = Vec::new();
    std::io::stdin()
        .take(MAX_INPUT_BYTES as u64 + 1)
        .read_to_end(&mut input)
        .map_err(|error| format!("the hook input could not be read: {error}"))?;
    if input.len() > MAX_INPUT_BYTES {
        return Err(format!(
            "the hook input is larger than {MAX_INPUT_BYTES} bytes; refused unread"
        ));
    }
    Ok(input)
}

/// What the call in `input` (the hook's stdin) gets under `args`.
pub async fn decide(args: &Args, input: &[u8]) -> Outcome {
    let input: HookInput = match serde_json::from_slice(input) {
        Ok(input) => input,
        Err(error) => {
            return Outcome::refused(format!(
                "the hook input is not a PreToolUse event's JSON: {error}"
            ));
        }
    };
    if input.hook_event_name != "PreToolUse" {
        return Outcome::refused(format!(
            "handsign hook answers PreToolUse events, not {:?}: register it under PreToolUse",
            input.hook_event_name
        ));
    }
    let file = match GateFile::load(&args.config) {
        Ok(file) => file,
        Err(error) => return Outcome::refused(error.to_string()),
    };
    let set_name = args.tools.as_deref().unwrap_or(args.format.name());
    let set = match file.tool_set(set_name) {
        Ok(set) => set,
        Err(error) => {
            return Outcome::refused(format!("{}: {error}", args.config.display()));
        }
    };
    let tool_input = input
        .tool_input
        .clone()
        .unwrap_or(Value::Object(Map::new()));
    let action = match set.decide(args.format.name(), &input.tool_name, &tool_input) {
        ToolVerdict::Pass => {
            return Outcome::Passed {
                reason: format!(
                    "{} passes without approval by [tools.{set_name}]",
                    input.tool_name
                ),
            };
        }
        ToolVerdict::Deny { why } => return Outcome::refused(why),
        ToolVerdict::Approve { action } => action,
    };
    let params = match params_of(tool_input, &input.cwd) {
        Ok(params) => params,
        Err(reason) => return Outcome::refused(reason),
    };
    let audience = set
        .audience
        .clone()
        .unwrap_or_else(|| args.format.name().to_owned());
    let call = Call {
        action,
        params,
        audience,
        message: message(args.format, &input),
    };
    approve(&file, &call, Duration::from_secs(args.wait_seconds)).await
}

/// The params the person approves: the tool's input and the directory it runs in.
fn params_of(tool_input: Value, cwd: &str) -> Result<Value, String> {
    let Value::Object(mut params) = tool_input else {
        return Err("the tool input is not a JSON object".into());
    };
    if params.contains_key("cwd") {
        // The approval page would show one `cwd`; the tool's own must not hide the session's.
        return Err(
            "the tool's input has an argument named cwd, which the approval would confuse \
             with the directory the agent runs in; refused"
                .into(),
        );
    }
    params.insert("cwd".into(), Value::String(cwd.to_owned()));
    Ok(Value::Object(params))
}

/// What the person reads above the params.
fn message(format: Format, input: &HookInput) -> String {
    let agent = match format {
        Format::ClaudeCode => "Claude Code",
        Format::Codex => "Codex",
    };
    let session = input
        .session_id
        .as_deref()
        .map(|id| format!(" (session {})", shortened(id, 40)))
        .unwrap_or_default();
    shortened(
        &format!(
            "{agent} wants to use {} in {}{session}",
            input.tool_name, input.cwd
        ),
        200,
    )
}

/// A call that needs approval.
struct Call {
    action: String,
    params: Value,
    audience: String,
    message: String,
}

/// Asks for the approval of `call`, waits at most `wait` for it, and checks the token.
async fn approve(file: &GateFile, call: &Call, wait: Duration) -> Outcome {
    let key = match AgentKey::load(&file.handsign.agent_key) {
        Ok(key) => key,
        Err(error) => {
            return Outcome::refused(format!(
                "the gate's agent key {}: {error} (create and enroll it with `handsign gate \
                 enroll`)",
                file.handsign.agent_key.display()
            ));
        }
    };
    let gateway = file.handsign.url.as_str();
    let client = match Client::new(gateway, key) {
        Ok(client) => client.with_retry(RetryPolicy {
            attempts: GATEWAY_ATTEMPTS,
            ..RetryPolicy::default()
        }),
        Err(error) => return Outcome::refused(format!("handsign.url: {error}")),
    };
    let verifier = match verifier(file, &call.audience).await {
        Ok(verifier) => verifier,
        Err(reason) => return Outcome::refused(reason),
    };

    let mut request = ApprovalRequest::new(
        call.action.clone(),
        call.params.clone(),
        call.audience.clone(),
    )
    .user(file.handsign.user.clone())
    .message(call.message.clone());
    if let Some(ttl) = file.approval_ttl_seconds {
        request = request.ttl(ttl.0);
    }
    let deadline = Instant::now() + wait;
    let pending = match timeout_at(deadline, client.request_approval(request)).await {
        Ok(Ok(pending)) => pending,
        Ok(Err(error)) => return not_approved(&error, file, call, wait),
        Err(_) => return not_approved(&ApprovalError::TimedOut, file, call, wait),
    };
    eprintln!(
        "handsign hook: asked {} to approve {} at {} (match code {})",
        file.handsign.user,
        call.action,
        pending.approval_url(),
        pending.code()
    );
    let left = deadline.saturating_duration_since(Instant::now());
    let approval = match timeout(left + AFTER_WAIT, pending.wait_or_cancel(left)).await {
        Ok(Ok(approval)) => approval,
        Ok(Err(error)) => return not_approved(&error, file, call, wait),
        Err(_) => return not_approved(&ApprovalError::TimedOut, file, call, wait),
    };
    let presented = Presented {
        token: approval.token(),
        binding: KeyBinding::Holder {
            jkt: client.agent_id(),
        },
        action: &call.action,
        params: &call.params,
    };
    match timeout(AFTER_WAIT, verifier.verify_token(&presented)).await {
        Ok(Ok(claims)) => Outcome::Approved {
            reason: format!(
                "{} approved {} with a passkey (approval {})",
                claims.sub, call.action, claims.approval
            ),
        },
        Ok(Err(refused)) => Outcome::refused(format!(
            "the approval's token failed its check ({}): {}; refused",
            refused.code, refused.message
        )),
        Err(_) => Outcome::refused(
            "the approval's token could not be checked in time (the gateway's keys did not \
             arrive); refused",
        ),
    }
}

/// The verifier of the tokens this hook asks for: the gateway's keys, the audience asked for,
/// and the gate file's record of used tokens. Each token was issued for a request this process
/// made, so no earlier process can have used it ([`OwnApprovals`]).
async fn verifier(file: &GateFile, audience: &str) -> Result<Verifier, String> {
    let verification = Verification::of(file).await?;
    let gateway = file.handsign.url.as_str();
    Verifier::builder()
        .issuer(gateway)
        .audience(audience)
        .keys(Keys::jwks_url(format!("{gateway}/.well-known/jwks.json")))
        .replay_store(Arc::new(OwnApprovals(verification.replay)))
        .clock(verification.clock)
        .build()
        .map_err(|error| format!("cannot check tokens from {gateway}: {error}"))
}

/// The refusal for a request that yielded no token.
fn not_approved(error: &ApprovalError, file: &GateFile, call: &Call, wait: Duration) -> Outcome {
    let action = &call.action;
    let gateway = file.handsign.url.as_str();
    Outcome::refused(match error {
        ApprovalError::Denied => {
            format!(
                "{} denied {action} with these arguments",
                file.handsign.user
            )
        }
        ApprovalError::Expired => {
            format!("the request to approve {action} expired before anyone decided")
        }
        ApprovalError::Cancelled { reason } => format!(
            "the request to approve {action} was cancelled{}",
            reason
                .as_deref()
                .map(|reason| format!(": {reason}"))
                .unwrap_or_default()
        ),
        ApprovalError::TimedOut => format!(
            "no decision on {action} within {} seconds; the request was withdrawn: try again \
             when the person can approve",
            wait.as_secs()
        ),
        ApprovalError::Unreachable(why) => {
            format!("the Handsign gateway at {gateway} could not be reached ({why})")
        }
        ApprovalError::Refused { code, message, .. } => {
            format!("the Handsign gateway refused to ask for approval ({code}): {message}")
        }
        other => format!("no approval for {action}: {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_follow_each_protocol() {
        let approved = Outcome::Approved {
            reason: "alice approved it".into(),
        };
        assert_eq!(
            approved.answer(Format::ClaudeCode),
            Some(json!({"hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": "allow",
                "permissionDecisionReason": "alice approved it",
            }}))
        );
        assert_eq!(approved.answer(Format::Codex), None);
        let refused = Outcome::refused("denied");
        for format in [Format::ClaudeCode, Format::Codex] {
            assert_eq!(
                refused.answer(format).unwrap()["hookSpecificOutput"]["permissionDecision"],
                "deny"
            );
            let passed = Outcome::Passed {
                reason: "ok".into(),
            };
            assert_eq!(passed.answer(format), None);
        }
    }

    #[test]
    fn params_are_the_tool_input_and_the_directory() {
        assert_eq!(
            params_of(json!({"command": "ls"}), "/src").unwrap(),
            json!({"command": "ls", "cwd": "/src"})
        );
        assert!(params_of(json!({"cwd": "/elsewhere"}), "/src").is_err());
        assert!(params_of(json!("ls"), "/src").is_err());
    }
}
