//! The README's quickstart refusals, run as written: the code block that shows them is read from
//! README.md, each of its commands runs in one bash session with the real `handsign` binary
//! against a real gateway and the travel example service, and what each prints (stderr, stdout)
//! and its exit status are compared with what the README shows under it. Editing the commands
//! or the outputs in the README changes what runs here and what is expected.
//!
//! Two things differ from a reader's run, both on purpose:
//! - the addresses: the gateway and the service listen on free ports, so the README's
//!   `http://localhost:8080` and `http://127.0.0.1:9000` are replaced by theirs (in the commands
//!   and in the outputs alike);
//! - time: the gateway and the service read one test clock, and the block's `sleep N` moves
//!   that clock on by N seconds instead of sleeping, so the expiry example runs in no time.
//!   Where the README says "approve it on the page", alice approves with her passkey.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead as _, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{TestGateway, until};
use handsign::clock::TestClock;
use handsign::domain::UserId;
use handsign::store::ApprovalFilter;
use handsign_client::AgentKey;
use handsign_example_travel::{ServiceConfig, service};
use handsign_verify::MemoryReplayStore;
use tokio::sync::mpsc;

const README: &str = include_str!("../README.md");
/// The addresses the README's commands use.
const README_GATEWAY: &str = "http://localhost:8080";
const README_SERVICE: &str = "http://127.0.0.1:9000";
/// What stands, in a shown output, for text that differs on every run (ids, codes, times).
const ANY: char = '…';
/// Ends every command's output in the session: its exit status on stdout, a mark on stderr.
const DONE: &str = "@@readme-step-done";

/// One command of the block and what the README shows under it.
#[derive(Debug, Default)]
struct Step {
    command: String,
    stderr: Vec<String>,
    stdout: Vec<String>,
    exit: Option<i32>,
}

/// The quickstart's code block with `handsign call` in it: the refusal examples.
fn refusal_examples() -> &'static str {
    let quickstart = README
        .split("\n## ")
        .find(|section| section.starts_with("Quickstart"))
        .expect("README.md has a Quickstart section");
    quickstart
        .split("```sh\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("\n```").map(|(block, _)| block))
        .find(|block| block.contains("handsign call"))
        .expect("the Quickstart has a sh block with handsign call")
}

/// The block's commands, each with the `#   stderr: `, `#   stdout: ` and `#   exit: ` lines
/// under it; other comment lines are the reader's instructions.
fn steps(block: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    for line in block.lines() {
        let shown = line.strip_prefix("#   ");
        let current = steps.last_mut();
        match (shown, current) {
            (Some(shown), Some(step)) => {
                if let Some(text) = shown.strip_prefix("stderr: ") {
                    step.stderr.push(text.to_owned());
                } else if let Some(text) = shown.strip_prefix("stdout: ") {
                    step.stdout.push(text.to_owned());
                } else if let Some(text) = shown.strip_prefix("exit: ") {
                    let code = text.split_whitespace().next().unwrap();
                    step.exit = Some(code.parse().unwrap());
                }
            }
            _ if line.starts_with('#') || line.trim().is_empty() => {}
            _ => steps.push(Step {
                command: line.to_owned(),
                ..Step::default()
            }),
        }
    }
    steps
}

/// Whether `actual` is `shown`, where each [`ANY`] in `shown` stands for any text.
fn matches(shown: &str, actual: &str) -> bool {
    let mut parts = shown.split(ANY);
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = actual.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

fn assert_shown(command: &str, stream: &str, shown: &[String], actual: &[String]) {
    let same = shown.len() == actual.len()
        && shown
            .iter()
            .zip(actual)
            .all(|(shown, actual)| matches(shown, actual));
    assert!(
        same,
        "`{command}` printed on {stream}:\n{}\nbut the README shows:\n{}",
        actual.join("\n"),
        shown.join("\n")
    );
}

/// A bash session the steps run in, one after another, so that variables carry over.
struct Session {
    stdin: ChildStdin,
    stdout: mpsc::UnboundedReceiver<String>,
    stderr: mpsc::UnboundedReceiver<String>,
    bash: Child,
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.bash.kill();
        let _ = self.bash.wait();
    }
}

/// The lines `read` gives, as they come (read on a thread of their own).
fn lines_of(read: impl std::io::Read + Send + 'static) -> mpsc::UnboundedReceiver<String> {
    let (lines, received) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(read).lines() {
            if line.ok().and_then(|line| lines.send(line).ok()).is_none() {
                return;
            }
        }
    });
    received
}

/// What one command printed, and its exit status.
struct Printed {
    stderr: Vec<String>,
    stdout: Vec<String>,
    exit: i32,
}

impl Session {
    fn start(dir: &std::path::Path) -> Self {
        let binary = std::path::Path::new(env!("CARGO_BIN_EXE_handsign"));
        let path = format!(
            "{}:{}",
            binary.parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = Command::new("bash");
        command
            .args(["--noprofile", "--norc"])
            .current_dir(dir)
            .env("PATH", path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, _) in std::env::vars() {
            if name.starts_with("HANDSIGN_") {
                command.env_remove(name);
            }
        }
        let mut bash = command.spawn().expect("bash runs the README's commands");
        Session {
            stdin: bash.stdin.take().unwrap(),
            stdout: lines_of(bash.stdout.take().unwrap()),
            stderr: lines_of(bash.stderr.take().unwrap()),
            bash,
        }
    }

    /// Runs `command` and collects what it printed, up to the marks that follow it.
    async fn run(&mut self, command: &str) -> Printed {
        let script = format!(
            "{command}\nstatus=$?; printf '\\n{DONE} %s\\n' \"$status\"; printf '\\n{DONE}\\n' >&2\n"
        );
        self.stdin.write_all(script.as_bytes()).unwrap();
        self.stdin.flush().unwrap();
        let (stdout, exit) = until_done(&mut self.stdout).await;
        let (stderr, _) = until_done(&mut self.stderr).await;
        Printed {
            stderr,
            stdout,
            exit: exit.unwrap().parse().unwrap(),
        }
    }
}

/// The lines before the [`DONE`] mark, without the empty line the mark's `\n` adds, and what
/// follows the mark.
async fn until_done(lines: &mut mpsc::UnboundedReceiver<String>) -> (Vec<String>, Option<String>) {
    let mut printed = Vec::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.recv())
            .await
            .expect("a README command ends within a minute")
            .expect("bash ended early");
        if let Some(after) = line.strip_prefix(DONE) {
            // The mark's leading `\n` ended the command's last line, or added an empty one.
            if printed.last().is_some_and(String::is_empty) {
                printed.pop();
            }
            return (
                printed,
                Some(after.trim().to_owned()).filter(|s| !s.is_empty()),
            );
        }
        printed.push(line);
    }
}

/// The README's refusal examples, against a gateway and the travel service on one test clock.
#[tokio::test]
async fn the_quickstart_refusals_print_what_the_readme_shows() {
    let steps = steps(refusal_examples());
    assert!(
        steps
            .iter()
            .filter(|s| s.command.contains("handsign call"))
            .count()
            >= 4,
        "the refusal examples lost their calls: {steps:?}"
    );

    let time = TestClock::starting_now();
    let gateway = TestGateway::start_reading(time.clock(), |_| {}).await;
    let mut alice = gateway.register("alice").await;
    let agent = gateway.agent("alice").await;
    let dir = tempfile::tempdir().unwrap();
    AgentKey::from_signing_key(agent.key.clone())
        .save_new(dir.path().join("agent.jwk"))
        .unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let travel = format!("http://{}", listener.local_addr().unwrap());
    let config = ServiceConfig {
        gateway: gateway.url.clone(),
        audience: "https://travel.example".into(),
        public_url: travel.clone(),
        clock: time.clock(),
    };
    // This gateway's keys are the test's own: no earlier process accepted their tokens, so the
    // service's record of used tokens may begin at 0.
    let replay = MemoryReplayStore::with_clock(time.clock()).record_began_at(0);
    let app = service(&config, Arc::new(replay)).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let here = |text: &str| {
        text.replace(README_GATEWAY, &gateway.url)
            .replace(README_SERVICE, &travel)
    };
    let mut session = Session::start(dir.path());
    for step in &steps {
        let command = here(&step.command);
        if let Some(seconds) = command.strip_prefix("sleep ") {
            // Instead of waiting: the gateway's and the service's clock move on.
            let seconds = seconds.split_whitespace().next().unwrap();
            time.advance(Duration::from_secs(seconds.parse().unwrap()));
            continue;
        }
        let printed = if command.contains("handsign request") {
            let asked = session.run(&command);
            let approve = async {
                // "approve it on the page": alice approves the request now waiting.
                until("handsign request waits", || {
                    gateway.state.events.waiters() > 0
                })
                .await;
                let pending = gateway
                    .store
                    .approvals(
                        &UserId::parse("alice").unwrap(),
                        ApprovalFilter::Pending,
                        gateway.state.clock.now(),
                        10,
                    )
                    .await
                    .unwrap();
                let [request] = pending.as_slice() else {
                    panic!("one request waits for alice, not {pending:?}");
                };
                let (status, answer) = gateway
                    .decide(&mut alice, request.id.as_str(), "approve")
                    .await;
                assert!(status.is_success(), "{answer}");
            };
            tokio::join!(asked, approve).0
        } else {
            session.run(&command).await
        };
        let shown = |lines: &[String]| lines.iter().map(|line| here(line)).collect::<Vec<_>>();
        assert_shown(&command, "stderr", &shown(&step.stderr), &printed.stderr);
        assert_shown(&command, "stdout", &shown(&step.stdout), &printed.stdout);
        assert_eq!(
            printed.exit,
            step.exit.unwrap_or(0),
            "`{command}` exited {}, the README says {:?}",
            printed.exit,
            step.exit
        );
    }
}

#[test]
fn a_shown_output_stands_for_exactly_what_was_printed() {
    assert!(matches("201 Created", "201 Created"));
    assert!(!matches("201 Created", "201 Created!"));
    assert!(matches(
        r#"{"booking":"…","from":"SFO"}"#,
        r#"{"booking":"3F2A","from":"SFO"}"#
    ));
    assert!(!matches(
        r#"{"booking":"…","from":"SFO"}"#,
        r#"{"booking":"3F2A","from":"LAX"}"#
    ));
    assert!(matches(
        "Match code: … (the page",
        "Match code: 12-34 (the page"
    ));
    assert!(matches("a…", "a"));
    assert!(!matches("…b", "a"));
}
