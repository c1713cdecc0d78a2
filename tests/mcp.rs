//! `handsign mcp` end to end: the official Python and TypeScript MCP clients (tests/mcp/) start
//! the gate binary over stdio, the gate starts the reference server from npm
//! (`@modelcontextprotocol/server-everything`), and a real gateway with a software passkey
//! decides. The server's stdin is recorded (`tee`), so each test can tell what reached it.
//!
//! Needs the MCP packages (`npm ci --prefix tests/mcp`, `pip install -r
//! tests/mcp/requirements.txt` into HANDSIGN_TEST_PYTHON); scripts/test installs them and
//! runs these tests after.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::process::free_port;
use common::{Person, TestGateway};
use handsign::domain::{ApprovalRecord, UserId};
use handsign::store::ApprovalFilter;
use handsign_client::AgentKey;
use handsign_protocol::keys::SigningKey;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// Longest a client may take to answer one command.
const ANSWER_WITHIN: Duration = Duration::from_secs(90);

fn mcp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp")
}

fn server_everything() -> PathBuf {
    mcp_dir().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js")
}

fn python() -> String {
    std::env::var("HANDSIGN_TEST_PYTHON").unwrap_or_else(|_| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/test-env/python/bin/python")
            .display()
            .to_string()
    })
}

/// Which official SDK drives the client.
#[derive(Clone, Copy, Debug)]
enum Sdk {
    Python,
    TypeScript,
}

/// A gateway with alice, the gate's key enrolled as her agent, a gate file and the server's
/// recorded stdin.
struct Setup {
    gateway: TestGateway,
    alice: Person,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn start(hold_seconds: u64) -> Self {
        let gateway = TestGateway::start().await;
        let alice = gateway.register("alice").await;
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate().unwrap();
        gateway.add_agent(&key, "alice", "mcp gate").await;
        AgentKey::from_signing_key(key)
            .save_new(dir.path().join("gate.jwk"))
            .unwrap();
        let text = format!(
            r#"
hold_seconds = {hold_seconds}

[handsign]
url = "{url}"
agent_key = "gate.jwk"
user = "alice"

[tools.everything]

[[tools.everything.rules]]
tool = "echo"
need = "pass"

[[tools.everything.rules]]
tool = "trigger-long-running-operation"
need = "pass"

[[tools.everything.rules]]
tool = "get-env"
need = "deny"

[[tools.everything.rules]]
tool = "get-sum"
need = "approve"
"#,
            url = gateway.url
        );
        std::fs::write(dir.path().join("gate.toml"), text).unwrap();
        Setup {
            gateway,
            alice,
            dir,
        }
    }

    /// The command that starts the gate in front of the reference server, recording what the
    /// server reads.
    fn gate_command(&self) -> Vec<String> {
        let record = self.dir.path().join("server-stdin.jsonl");
        vec![
            env!("CARGO_BIN_EXE_handsign").into(),
            "mcp".into(),
            "--config".into(),
            self.dir.path().join("gate.toml").display().to_string(),
            "--".into(),
            "sh".into(),
            "-c".into(),
            format!(
                "tee -a '{}' | exec node '{}'",
                record.display(),
                server_everything().display()
            ),
        ]
    }

    /// The `tools/call`s the real server has read so far, by tool name.
    fn calls_received(&self) -> Vec<(String, Value)> {
        let record = self.dir.path().join("server-stdin.jsonl");
        std::fs::read_to_string(record)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|message| message["method"] == "tools/call")
            .map(|message| {
                (
                    message["params"]["name"].as_str().unwrap().to_owned(),
                    message["params"]["arguments"].clone(),
                )
            })
            .collect()
    }

    async fn client(&self, sdk: Sdk, elicitation: bool) -> McpClient {
        McpClient::start(sdk, elicitation, "stdio", &self.gate_command()).await
    }

    /// The gate over Streamable HTTP on both sides: the reference server in its HTTP mode, and
    /// `handsign mcp --listen` in front of it; the gate's endpoint.
    async fn over_http(&self) -> (String, Vec<Child>) {
        let server_port = free_port();
        let server = tokio::process::Command::new("node")
            .arg(server_everything())
            .arg("streamableHttp")
            .env("PORT", server_port.to_string())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let upstream = format!("http://127.0.0.1:{server_port}/mcp");
        until_listening(server_port).await;
        let gate_port = free_port();
        let gate = tokio::process::Command::new(env!("CARGO_BIN_EXE_handsign"))
            .args(["mcp", "--config"])
            .arg(self.dir.path().join("gate.toml"))
            .args(["--upstream-url", &upstream, "--listen"])
            .arg(format!("127.0.0.1:{gate_port}"))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        until_listening(gate_port).await;
        (
            format!("http://127.0.0.1:{gate_port}/mcp"),
            vec![server, gate],
        )
    }

    /// The approval request the gate asked of alice, once it has.
    async fn asked(&self) -> ApprovalRecord {
        common::first_pending(&self.gateway, "alice").await
    }

    async fn decide(&mut self, id: &str, decision: &str) {
        let (status, body) = self.gateway.decide(&mut self.alice, id, decision).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    async fn approvals_of_alice(&self) -> usize {
        let alice = UserId::parse("alice").unwrap();
        let now = self.gateway.state.clock.now();
        let mut count = 0;
        for filter in [ApprovalFilter::Pending, ApprovalFilter::History] {
            count += self
                .gateway
                .store
                .approvals(&alice, filter, now, 100)
                .await
                .unwrap()
                .len();
        }
        count
    }
}

/// One official MCP client, driven line by line (see tests/mcp/client.py).
struct McpClient {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    /// What the client said it initialized with.
    initialized: Value,
    /// The notifications it printed so far (elicitation completions).
    notifications: Vec<Value>,
}

impl McpClient {
    /// A client of `server`: a command (`kind` `stdio`) or an endpoint (`http`).
    async fn start(sdk: Sdk, elicitation: bool, kind: &str, server: &[String]) -> Self {
        let mut command = match sdk {
            Sdk::Python => {
                let mut command = tokio::process::Command::new(python());
                command.arg(mcp_dir().join("client.py"));
                if elicitation {
                    command.arg("--elicitation");
                }
                command
            }
            Sdk::TypeScript => {
                assert!(!elicitation, "the TypeScript client is driven without it");
                let mut command = tokio::process::Command::new("node");
                command.arg(mcp_dir().join("client.mjs"));
                command
            }
        };
        let mut child = command
            .arg(kind)
            .args(server)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the {sdk:?} MCP client: {e}"));
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = next_line(&mut stdout).await;
        let initialized = first["initialized"].clone();
        assert!(
            initialized.is_object(),
            "{sdk:?} did not initialize: {first}"
        );
        McpClient {
            child,
            stdin,
            stdout,
            initialized,
            notifications: Vec::new(),
        }
    }

    /// Sends `command`; the progress lines and then the answer.
    async fn send(&mut self, command: Value) -> (Vec<Value>, Value) {
        let line = format!("{command}\n");
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
        self.answer().await
    }

    async fn call(&mut self, name: &str, arguments: Value) -> Value {
        self.send(json!({"op": "call", "name": name, "arguments": arguments}))
            .await
            .1
    }

    /// Starts a call and leaves its answer to [`Self::answer`].
    async fn start_call(&mut self, name: &str, arguments: Value, progress: bool) {
        let command =
            json!({"op": "call", "name": name, "arguments": arguments, "progress": progress});
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }

    async fn answer(&mut self) -> (Vec<Value>, Value) {
        let mut progress = Vec::new();
        loop {
            let answer = next_line(&mut self.stdout).await;
            if let Some(step) = answer.get("progress") {
                progress.push(step.clone());
            } else if let Some(notification) = answer.get("notification") {
                self.notifications.push(notification.clone());
            } else {
                return (progress, answer);
            }
        }
    }

    /// The first notification the client printed (waiting for it if none came yet).
    async fn notification(&mut self) -> Value {
        while self.notifications.is_empty() {
            let line = next_line(&mut self.stdout).await;
            let notification = line.get("notification").unwrap_or_else(|| panic!("{line}"));
            self.notifications.push(notification.clone());
        }
        self.notifications.remove(0)
    }

    async fn close(mut self) {
        drop(self.stdin);
        let _ = tokio::time::timeout(ANSWER_WITHIN, self.child.wait()).await;
    }
}

async fn next_line(stdout: &mut Lines<BufReader<ChildStdout>>) -> Value {
    let line = tokio::time::timeout(ANSWER_WITHIN, stdout.next_line())
        .await
        .expect("the MCP client did not answer in time")
        .unwrap()
        .expect("the MCP client ended");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// Waits until something listens on `port` on loopback.
async fn until_listening(port: u16) {
    let give_up = std::time::Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < give_up,
            "nothing listens on {port}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The text of a tool result's first content block.
fn text(result: &Value) -> &str {
    result["ok"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {result}"))
}

fn is_error(result: &Value) -> bool {
    result["ok"]["isError"] == true
}

/// The same command straight to the reference server, for comparison.
fn direct_command() -> Vec<String> {
    vec!["node".into(), server_everything().display().to_string()]
}

#[tokio::test]
async fn pass_tools_answer_exactly_as_the_server_and_denied_or_unmatched_never_reach_it() {
    let setup = Setup::start(60).await;
    for sdk in [Sdk::Python, Sdk::TypeScript] {
        let mut gated = setup.client(sdk, false).await;
        let mut direct = McpClient::start(sdk, false, "stdio", &direct_command()).await;
        assert_eq!(
            gated.initialized["serverInfo"], direct.initialized["serverInfo"],
            "{sdk:?}: the client sees the real server"
        );
        let echo = json!({"message": "through the gate"});
        assert_eq!(
            gated.call("echo", echo.clone()).await,
            direct.call("echo", echo).await,
            "{sdk:?}"
        );
        let prompts = json!({"op": "list_prompts"});
        assert_eq!(
            gated.send(prompts.clone()).await,
            direct.send(prompts).await,
            "{sdk:?}: everything but tools/call is relayed"
        );

        let denied = gated.call("get-env", json!({})).await;
        assert!(is_error(&denied), "{denied}");
        assert!(text(&denied).contains("denied by rule 3"), "{denied}");
        let unmatched = gated.call("get-tiny-image", json!({})).await;
        assert!(is_error(&unmatched), "{unmatched}");
        assert!(text(&unmatched).contains("no rule"), "{unmatched}");
        gated.close().await;
        direct.close().await;
    }
    let received: Vec<String> = setup
        .calls_received()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(
        received,
        ["echo", "echo"],
        "only the pass tool reached the server"
    );
}

#[tokio::test]
async fn progress_of_a_pass_tool_reaches_the_client_with_its_own_token() {
    let setup = Setup::start(60).await;
    for sdk in [Sdk::Python, Sdk::TypeScript] {
        let mut client = setup.client(sdk, false).await;
        client
            .start_call(
                "trigger-long-running-operation",
                json!({"duration": 1, "steps": 2}),
                true,
            )
            .await;
        let (progress, result) = client.answer().await;
        assert!(!is_error(&result), "{result}");
        // The relay forwards notifications and results on separate tasks, so the last step's
        // notification may reach the client after the result, which then drops it: at least
        // the first step arrives, under the client's own token (else the client drops it too).
        assert!((1..=2).contains(&progress.len()), "{sdk:?}: {progress:?}");
        assert_eq!(progress[0]["progress"], 1.0, "{sdk:?}: {progress:?}");
        assert!(
            progress.iter().all(|step| step["total"] == 2.0),
            "{progress:?}"
        );
        client.close().await;
    }
}

#[tokio::test]
async fn tools_list_says_which_tools_a_person_approves() {
    let setup = Setup::start(60).await;
    let mut client = setup.client(Sdk::Python, false).await;
    let (_, list) = client.send(json!({"op": "list_tools"})).await;
    let description = |name: &str| {
        list["ok"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|tool| tool["name"] == name)
            .unwrap()["description"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(description("get-sum").starts_with("Returns the sum of two numbers"));
    assert!(
        description("get-sum").contains("A person (alice) approves each call"),
        "{}",
        description("get-sum")
    );
    assert!(!description("echo").contains("approves"));
    client.close().await;
}

#[tokio::test]
async fn an_approve_tool_reaches_the_server_only_after_the_passkey_approved_those_arguments() {
    let mut setup = Setup::start(60).await;
    let mut client = setup.client(Sdk::TypeScript, false).await;
    client
        .start_call("get-sum", json!({"a": 2, "b": 40}), true)
        .await;
    let asked = setup.asked().await;
    assert_eq!(asked.action, "mcp.everything.get-sum");
    assert_eq!(asked.params, r#"{"a":2,"b":40}"#);
    assert!(
        setup.calls_received().is_empty(),
        "nothing before the decision"
    );
    setup.decide(asked.id.as_str(), "approve").await;
    let (progress, result) = client.answer().await;
    assert!(!is_error(&result), "{result}");
    assert!(text(&result).contains("42"), "{result}");
    assert!(
        progress.iter().any(|step| step["message"]
            .as_str()
            .is_some_and(|m| m.contains(asked.id.as_str()))),
        "the progress names where to approve: {progress:?}"
    );
    assert_eq!(
        setup.calls_received(),
        [("get-sum".to_owned(), json!({"a": 2, "b": 40}))]
    );

    // An approval is good for one call: the same call again asks again.
    client
        .start_call("get-sum", json!({"a": 2, "b": 40}), false)
        .await;
    let again = setup.asked().await;
    assert_ne!(again.id, asked.id);
    setup.decide(again.id.as_str(), "deny").await;
    let (_, denied) = client.answer().await;
    assert!(is_error(&denied), "{denied}");
    assert!(text(&denied).contains("alice denied get-sum"), "{denied}");
    assert_eq!(
        setup.calls_received().len(),
        1,
        "the denied call never reached it"
    );
    client.close().await;
}

#[tokio::test]
async fn an_undecided_call_says_where_to_approve_and_the_identical_retry_continues_it() {
    let mut setup = Setup::start(1).await;
    let mut client = setup.client(Sdk::Python, false).await;
    let first = client.call("get-sum", json!({"a": 1, "b": 2})).await;
    assert!(is_error(&first), "{first}");
    let asked = setup.asked().await;
    let message = text(&first);
    assert!(message.contains(asked.id.as_str()), "the URL: {message}");
    assert!(message.contains("match code"), "{message}");
    assert!(
        message.contains("call again with the same arguments"),
        "{message}"
    );

    // Other arguments are another approval; the same arguments continue this one.
    let other = client.call("get-sum", json!({"a": 1, "b": 3})).await;
    assert!(is_error(&other));
    assert_eq!(setup.approvals_of_alice().await, 2);
    setup.decide(asked.id.as_str(), "approve").await;
    let retried = client.call("get-sum", json!({"a": 1, "b": 2})).await;
    assert!(!is_error(&retried), "{retried}");
    assert!(text(&retried).contains('3'), "{retried}");
    assert_eq!(
        setup.approvals_of_alice().await,
        2,
        "the retry asked nothing new"
    );
    assert_eq!(
        setup.calls_received(),
        [("get-sum".to_owned(), json!({"a": 1, "b": 2}))]
    );
    client.close().await;
}

#[tokio::test]
async fn a_client_that_declared_url_elicitation_gets_the_approval_page_as_one() {
    let mut setup = Setup::start(60).await;
    let mut client = setup.client(Sdk::Python, true).await;
    let first = client.call("get-sum", json!({"a": 5, "b": 6})).await;
    let asked = setup.asked().await;
    assert_eq!(first["error"]["code"], -32042, "{first}");
    let elicitation = &first["error"]["data"]["elicitations"][0];
    assert_eq!(elicitation["mode"], "url");
    assert_eq!(elicitation["elicitationId"], asked.id.as_str());
    assert!(
        elicitation["url"]
            .as_str()
            .unwrap()
            .contains(asked.id.as_str())
    );
    assert!(setup.calls_received().is_empty());
    // Calling again before the decision gets the same page, and one completion later.
    let again = client.call("get-sum", json!({"a": 5, "b": 6})).await;
    assert_eq!(
        again["error"]["data"]["elicitations"][0]["elicitationId"],
        asked.id.as_str()
    );
    setup.decide(asked.id.as_str(), "approve").await;
    let complete = client.notification().await;
    assert_eq!(complete["method"], "notifications/elicitation/complete");
    assert_eq!(complete["params"]["elicitationId"], asked.id.as_str());
    let retried = client.call("get-sum", json!({"a": 5, "b": 6})).await;
    assert!(text(&retried).contains("11"), "{retried}");
    assert!(
        client.notifications.is_empty(),
        "one completion per approval and session"
    );
    assert_eq!(setup.calls_received().len(), 1);
    client.close().await;
}

#[tokio::test]
async fn over_streamable_http_both_ways_calls_pass_are_refused_and_are_approved() {
    let mut setup = Setup::start(60).await;
    let (endpoint, _processes) = setup.over_http().await;
    for sdk in [Sdk::Python, Sdk::TypeScript] {
        let mut client =
            McpClient::start(sdk, false, "http", std::slice::from_ref(&endpoint)).await;
        assert_eq!(
            client.initialized["serverInfo"]["name"], "mcp-servers/everything",
            "{sdk:?}"
        );
        let echo = client.call("echo", json!({"message": "over http"})).await;
        assert_eq!(text(&echo), "Echo: over http", "{sdk:?}");
        let denied = client.call("get-env", json!({})).await;
        assert!(is_error(&denied), "{sdk:?}: {denied}");

        client
            .start_call("get-sum", json!({"a": 20, "b": 22}), true)
            .await;
        let asked = setup.asked().await;
        assert_eq!(asked.params, r#"{"a":20,"b":22}"#);
        setup.decide(asked.id.as_str(), "approve").await;
        let (_, result) = client.answer().await;
        assert!(text(&result).contains("42"), "{sdk:?}: {result}");
        client.close().await;
    }
}

#[tokio::test]
async fn a_2026_07_28_request_is_told_the_revisions_the_gate_speaks() {
    let setup = Setup::start(60).await;
    let command = setup.gate_command();
    let mut gate = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = gate.stdin.take().unwrap();
    let mut stdout = BufReader::new(gate.stdout.take().unwrap()).lines();
    let request = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {
            "name": "echo", "arguments": {"message": "stateless"},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
                "io.modelcontextprotocol/clientCapabilities": {}
            }
        }
    });
    stdin
        .write_all(format!("{request}\n").as_bytes())
        .await
        .unwrap();
    stdin.flush().await.unwrap();
    let answer = next_line(&mut stdout).await;
    let error = answer["error"].to_string();
    assert!(error.contains("2025-11-25"), "{answer}");
    assert!(!error.contains("2026-07-28\"]"), "{answer}");
    assert!(setup.calls_received().is_empty());
}
