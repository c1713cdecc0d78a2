//! `handsign hook claude-code` end to end: the real binary reads PreToolUse inputs in the shape
//! Claude Code documents (tests/hook/*.json: Bash, Write, an MCP tool, Read), asks a real
//! gateway in this process, where alice decides with a software passkey, and prints exactly the
//! hook protocol's answer on stdout.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use common::{Person, TestGateway, process::free_port};
use handsign::domain::{ApprovalId, ApprovalRecord, ApprovalState, UserId};
use handsign::store::ApprovalFilter;
use handsign_client::AgentKey;
use handsign_protocol::keys::SigningKey;
use handsign_redis_harness::RedisServer;
use serde_json::{Value, json};

const BASH: &str = include_str!("hook/bash.json");
const WRITE: &str = include_str!("hook/write.json");
const MCP: &str = include_str!("hook/mcp.json");
const READ: &str = include_str!("hook/read.json");

/// The tool set the tests use, as the README suggests it.
const TOOLS: &str = r#"
[tools.claude-code]
audience = "claude-code@dev-laptop"

[[tools.claude-code.rules]]
tool = "Read"
need = "pass"

[[tools.claude-code.rules]]
tool = "Bash"
argument = "command"
matches = "rm -rf *"
need = "deny"

[[tools.claude-code.rules]]
tool = "Bash"
need = "approve"

[[tools.claude-code.rules]]
tool = "Write"
need = "approve"

[[tools.claude-code.rules]]
tool = "mcp__*"
need = "approve"

[tools.codex]

[[tools.codex.rules]]
tool = "Bash"
need = "approve"
"#;

/// A gateway with alice, the hook's key enrolled as her agent, and a gate file for it.
struct Setup {
    gateway: TestGateway,
    alice: Person,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn start() -> Self {
        let gateway = TestGateway::start().await;
        let alice = gateway.register("alice").await;
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate().unwrap();
        gateway.add_agent(&key, "alice", "claude code hook").await;
        AgentKey::from_signing_key(key)
            .save_new(dir.path().join("hook.jwk"))
            .unwrap();
        let setup = Setup {
            gateway,
            alice,
            dir,
        };
        setup.write_gate_file("");
        setup
    }

    /// Writes the gate file, with `top` (TOML) before its sections.
    fn write_gate_file(&self, top: &str) {
        let text = format!(
            "{top}\n[handsign]\nurl = \"{}\"\nagent_key = \"hook.jwk\"\nuser = \"alice\"\n{TOOLS}",
            self.gateway.url
        );
        std::fs::write(self.config(), text).unwrap();
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("hook.toml")
    }

    /// The approval request the hook asked alice for, once it is asked (within 30 s).
    async fn asked(&self) -> ApprovalRecord {
        common::first_pending(&self.gateway, "alice").await
    }

    /// alice's approval requests that `filter` selects.
    async fn approvals(&self, filter: ApprovalFilter) -> Vec<ApprovalRecord> {
        let alice = UserId::parse("alice").unwrap();
        let now = handsign::clock::Clock::system().now();
        let store = &self.gateway.store;
        store.approvals(&alice, filter, now, 10).await.unwrap()
    }

    /// Runs the hook on `input` while alice decides what it asks with `decision`.
    async fn decided(&mut self, input: &str, extra: &[&str], decision: &str) -> (Output, Value) {
        let hook = hook(&self.config(), input, extra);
        let asked = self.asked().await;
        let (status, body) = self
            .gateway
            .decide(&mut self.alice, asked.id.as_str(), decision)
            .await;
        assert!(status.is_success(), "{status} {body}");
        let output = hook.await;
        let record = self
            .gateway
            .store
            .approval(&ApprovalId::parse(asked.id.as_str()).unwrap())
            .await
            .unwrap()
            .unwrap();
        let params: Value = serde_json::from_str(&record.params).unwrap();
        let asked = json!({"action": record.action, "audience": record.audience, "params": params});
        (output, asked)
    }
}

/// The `handsign hook claude-code` process given `input` on stdin; its output once it exits
/// (waited for on a blocking thread, so that the gateway in this process keeps serving).
fn hook(config: &Path, input: &str, extra: &[&str]) -> impl Future<Output = Output> + use<> {
    use std::io::Write as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_handsign"))
        .args(["hook", "claude-code", "--config"])
        .arg(config)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    let output = tokio::task::spawn_blocking(move || child.wait_with_output());
    async move {
        tokio::time::timeout(Duration::from_secs(60), output)
            .await
            .expect("the hook answers within 60 s")
            .unwrap()
            .unwrap()
    }
}

/// The hook's answer: exit status 0 and stdout exactly one line holding the protocol's JSON,
/// with no member the protocol does not define. Returns the decision and its reason.
fn answer(output: &Output) -> (String, String) {
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
    assert!(
        stdout.ends_with('\n') && stdout.matches('\n').count() == 1,
        "one line: {stdout:?}"
    );
    let value: Value = serde_json::from_str(&stdout).unwrap();
    let top: Vec<&String> = value.as_object().unwrap().keys().collect();
    assert_eq!(top, ["hookSpecificOutput"], "{value}");
    let specific = value["hookSpecificOutput"].as_object().unwrap();
    let mut keys: Vec<&String> = specific.keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "hookEventName",
            "permissionDecision",
            "permissionDecisionReason"
        ],
        "{value}"
    );
    assert_eq!(specific["hookEventName"], "PreToolUse");
    let decision = specific["permissionDecision"].as_str().unwrap().to_owned();
    assert!(decision == "allow" || decision == "deny", "{value}");
    let reason = specific["permissionDecisionReason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        stderr.contains(&reason),
        "the reason is on stderr too: {stderr}"
    );
    (decision, reason)
}

fn silent(output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
    assert!(output.stdout.is_empty(), "{:?}", output.stdout);
}

#[tokio::test]
async fn an_approved_bash_command_is_allowed_naming_who_approved_it() {
    let mut setup = Setup::start().await;
    let (output, asked) = setup.decided(BASH, &[], "approve").await;
    let (decision, reason) = answer(&output);
    assert_eq!(decision, "allow");
    assert!(
        reason.starts_with("alice approved claude-code.Bash with a passkey"),
        "{reason}"
    );
    // alice saw and approved exactly the tool's input and where it runs.
    assert_eq!(
        asked,
        json!({
            "action": "claude-code.Bash",
            "audience": "claude-code@dev-laptop",
            "params": {
                "command": "git push origin main",
                "description": "Push the release commit to origin",
                "cwd": "/home/dev/shop",
            }
        })
    );
}

#[tokio::test]
async fn a_denied_write_is_denied_naming_who_denied_it() {
    let mut setup = Setup::start().await;
    let (output, asked) = setup.decided(WRITE, &[], "deny").await;
    let (decision, reason) = answer(&output);
    assert_eq!(decision, "deny");
    assert!(
        reason.starts_with("alice denied claude-code.Write"),
        "{reason}"
    );
    assert_eq!(asked["action"], "claude-code.Write");
    assert_eq!(
        asked["params"]["file_path"],
        "/home/dev/shop/.github/workflows/deploy.yml"
    );
}

#[tokio::test]
async fn an_mcp_tool_is_approved_under_its_own_action() {
    let mut setup = Setup::start().await;
    let (output, asked) = setup.decided(MCP, &[], "approve").await;
    let (decision, reason) = answer(&output);
    assert_eq!(decision, "allow", "{reason}");
    assert_eq!(
        asked["action"],
        "claude-code.mcp__github__merge_pull_request"
    );
    assert_eq!(asked["params"]["pull_number"], 42);
}

#[tokio::test]
async fn codex_gets_a_deny_and_no_answer_for_an_approved_call() {
    let mut setup = Setup::start().await;
    let codex = ["--format", "codex"];
    let (output, asked) = setup.decided(BASH, &codex, "approve").await;
    silent(&output);
    assert_eq!(asked["action"], "codex.Bash");
    assert_eq!(asked["audience"], "codex");
    let (output, _) = setup.decided(BASH, &codex, "deny").await;
    let (decision, reason) = answer(&output);
    assert_eq!(decision, "deny");
    assert!(reason.starts_with("alice denied codex.Bash"), "{reason}");
}

#[tokio::test]
async fn a_pass_tool_gets_no_answer_and_nobody_is_asked() {
    let setup = Setup::start().await;
    silent(&hook(&setup.config(), READ, &[]).await);
    assert!(setup.approvals(ApprovalFilter::Pending).await.is_empty());
    assert!(setup.approvals(ApprovalFilter::History).await.is_empty());
}

#[tokio::test]
async fn a_denied_or_unmatched_tool_is_denied_without_asking() {
    let setup = Setup::start().await;
    let rm = BASH.replace("git push origin main", "rm -rf /home/dev");
    let (decision, reason) = answer(&hook(&setup.config(), &rm, &[]).await);
    assert_eq!(decision, "deny");
    assert_eq!(
        reason,
        "Bash is denied by rule 2 of [tools.claude-code] (line 14)"
    );
    let fetch = READ.replace("\"Read\"", "\"WebFetch\"");
    let (decision, reason) = answer(&hook(&setup.config(), &fetch, &[]).await);
    assert_eq!(decision, "deny");
    assert!(
        reason.contains("no rule of [tools.claude-code]"),
        "{reason}"
    );
    assert!(setup.approvals(ApprovalFilter::Pending).await.is_empty());
    assert!(setup.approvals(ApprovalFilter::History).await.is_empty());
}

#[tokio::test]
async fn an_unreachable_gateway_is_a_deny() {
    let dir = tempfile::tempdir().unwrap();
    AgentKey::from_signing_key(SigningKey::generate().unwrap())
        .save_new(dir.path().join("hook.jwk"))
        .unwrap();
    let config = dir.path().join("hook.toml");
    std::fs::write(
        &config,
        format!(
            "[handsign]\nurl = \"http://127.0.0.1:{}\"\nagent_key = \"hook.jwk\"\n\
             user = \"alice\"\n{TOOLS}",
            free_port()
        ),
    )
    .unwrap();
    let (decision, reason) = answer(&hook(&config, BASH, &[]).await);
    assert_eq!(decision, "deny");
    assert!(reason.contains("could not be reached"), "{reason}");
}

/// The hook's own one-second limit passes in real time here: it is the hook process's deadline,
/// which the test cannot move.
#[tokio::test]
async fn when_the_wait_runs_out_the_call_is_denied_and_the_request_withdrawn() {
    let setup = Setup::start().await;
    let output = hook(&setup.config(), BASH, &["--wait-seconds", "1"]);
    let asked = setup.asked().await;
    let (decision, reason) = answer(&output.await);
    assert_eq!(decision, "deny");
    assert!(
        reason.starts_with("no decision on claude-code.Bash within 1 seconds"),
        "{reason}"
    );
    let record = setup
        .gateway
        .store
        .approval(&ApprovalId::parse(asked.id.as_str()).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(record.state, ApprovalState::Cancelled { .. }),
        "{:?}",
        record.state
    );
}

/// The used-token record (the gate file's Redis) goes away while alice decides: the token
/// cannot be recorded as used, so it is not accepted.
#[tokio::test]
async fn a_token_that_cannot_be_checked_is_a_deny() {
    let mut setup = Setup::start().await;
    let mut redis = RedisServer::start().await;
    setup.write_gate_file(&format!("redis_url = \"{}\"", redis.url()));
    let output = hook(&setup.config(), BASH, &[]);
    let asked = setup.asked().await;
    redis.stop();
    let (status, body) = setup
        .gateway
        .decide(&mut setup.alice, asked.id.as_str(), "approve")
        .await;
    assert!(status.is_success(), "{status} {body}");
    let (decision, reason) = answer(&output.await);
    assert_eq!(decision, "deny");
    assert!(
        reason.starts_with("the approval's token failed its check (replay_store_unavailable)"),
        "{reason}"
    );
}

#[tokio::test]
async fn unreadable_input_or_a_bad_gate_file_is_a_deny() {
    let setup = Setup::start().await;
    for input in ["not json", "{}", &BASH.replace("PreToolUse", "PostToolUse")] {
        let (decision, reason) = answer(&hook(&setup.config(), input, &[]).await);
        assert_eq!(decision, "deny", "{input}: {reason}");
    }
    std::fs::write(setup.config(), "[handsign]\nurl = 1\n").unwrap();
    let (decision, reason) = answer(&hook(&setup.config(), BASH, &[]).await);
    assert_eq!(decision, "deny");
    assert!(reason.contains("hook.toml is invalid"), "{reason}");
    let missing = setup.dir.path().join("missing.toml");
    let (decision, reason) = answer(&hook(&missing, BASH, &[]).await);
    assert_eq!(decision, "deny");
    assert!(reason.contains("cannot read the gate file"), "{reason}");
}

/// The README shows the example gate file as it is, and it decides as its comments say.
#[test]
fn the_readme_shows_the_example_gate_file_and_it_decides_as_it_says() {
    use handsign_gate::GateFile;
    use handsign_gate::tools::ToolVerdict;

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hooks/hook.toml");
    let example = std::fs::read_to_string(&path).unwrap();
    let readme = include_str!("../README.md");
    let section = readme.split("## Coding agents' hooks").nth(1).unwrap();
    let shown = section
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap();
    assert_eq!(shown, example);

    // The settings snippet is JSON, and the hook's wait ends well before Claude Code's timeout.
    let settings: Value = section
        .split("```json\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .map(|text| serde_json::from_str(text).unwrap())
        .unwrap();
    let entry = &settings["hooks"]["PreToolUse"][0]["hooks"][0];
    assert_eq!(entry["type"], "command");
    assert_eq!(entry["onFailure"], "block");
    let command = entry["command"].as_str().unwrap();
    assert!(
        command.starts_with("handsign hook claude-code --config "),
        "{command}"
    );
    let wait: u64 = command
        .split("--wait-seconds ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait + 15 <= entry["timeout"].as_u64().unwrap());

    let file = GateFile::load(&path).unwrap();
    let set = file.tool_set("claude-code").unwrap();
    let decide = |tool: &str, input: Value| set.decide("claude-code", tool, &input);
    let approve = |action: &str| ToolVerdict::Approve {
        action: action.into(),
    };
    assert_eq!(
        decide("Read", json!({"file_path": "/etc/hosts"})),
        ToolVerdict::Pass
    );
    assert_eq!(
        decide("Bash", json!({"command": "git status"})),
        ToolVerdict::Pass
    );
    assert_eq!(
        decide("Bash", json!({"command": "git status; curl x | sh"})),
        approve("claude-code.Bash")
    );
    assert!(matches!(
        decide("Bash", json!({"command": "git push --force origin main"})),
        ToolVerdict::Deny { .. }
    ));
    assert_eq!(
        decide("mcp__github__merge_pull_request", json!({})),
        approve("claude-code.mcp__github__merge_pull_request")
    );
    assert!(matches!(
        decide("WebFetch", json!({})),
        ToolVerdict::Deny { .. }
    ));

    // `handsign gate check` shows the set's rules in order.
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_handsign"))
        .args(["gate", "check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{check:?}");
    assert!(
        table.contains("[tools.claude-code] (audience claude-code@laptop)"),
        "{table}"
    );
    let rules: Vec<&str> = table
        .lines()
        .filter_map(|line| line.strip_prefix("  "))
        .map(|rule| rule.split("  ").next().unwrap_or_default())
        .collect();
    assert_eq!(
        rules,
        [
            "pass",
            "pass",
            "pass",
            "pass",
            "deny",
            "approve",
            "approve",
            "approve",
            "approve",
            "any other tool: deny"
        ],
        "{table}"
    );
    assert!(table.contains("Bash command = \"git status\""), "{table}");
    assert!(!table.contains("any other route"), "{table}");
}
