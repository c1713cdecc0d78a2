//! What the browser tests share: the real `handsign serve` process on a free port, and a Node
//! script driving Debian's Chromium that reports one JSON object a line on stdout and takes the
//! test's answers one JSON object a line on stdin.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// How long the script may take for one step before the test gives up on it; its own waits
/// give up sooner, with a message saying what it waited for.
pub const STEP: Duration = Duration::from_secs(90);

pub fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A child process that is killed when the test ends, however it ends.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `handsign serve` on `port` with public URL `http://localhost:{port}`, once it listens;
/// returns it with the setup link it printed.
pub fn spawn_gateway(data_dir: &Path, port: u16) -> (Killed, String) {
    let url = format!("http://localhost:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_handsign"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--public-url", &url])
        .arg("--data-dir")
        .arg(data_dir)
        .env("HANDSIGN_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let gateway = Killed(child);
    // The setup link comes first; "listening on" is always the last line printed at start.
    let mut printed = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let done = line.contains("listening on");
        printed.push(line);
        if done {
            let setup = printed
                .iter()
                .map(|line| line.trim())
                .find(|line| line.starts_with(&format!("{url}/setup?code=")))
                .unwrap_or_else(|| panic!("no setup link in {printed:?}"))
                .to_owned();
            return (gateway, setup);
        }
    }
    panic!("the gateway exited before listening; it printed {printed:?}");
}

/// A script of `tests/browser` running in Node: its stdout lines arrive on a channel (so a
/// wait can end), its stderr is kept for failure messages. Killing Node ends Chromium too.
pub struct Script {
    child: Killed,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    /// Chromium's fresh profile; removed after the script is gone (fields drop in order).
    _profile: tempfile::TempDir,
}

impl Script {
    /// Runs `node tests/browser/{script} ARGS... PROFILE_DIR`.
    pub fn start(script: &str, args: &[&str]) -> Self {
        let dir = manifest_dir().join("tests/browser");
        let chromium =
            std::env::var("HANDSIGN_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        assert!(
            Path::new(&chromium).is_file(),
            "Chromium is missing at {chromium}: run scripts/test, which installs Debian's \
             chromium (or set HANDSIGN_CHROMIUM)"
        );
        assert!(
            dir.join("node_modules/playwright-core/package.json")
                .is_file(),
            "npm package playwright-core is missing from tests/browser/node_modules: run \
             scripts/test, which installs it"
        );
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new("node")
            .arg(dir.join(script))
            .args(args)
            .arg(profile.path())
            .env("HANDSIGN_CHROMIUM", &chromium)
            .env("FORCE_COLOR", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run node: {e}; run scripts/test, which installs it")
            });
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let kept = stderr.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = err.read(&mut chunk) {
                kept.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        Script {
            child: Killed(child),
            stdin,
            lines,
            stderr,
            _profile: profile,
        }
    }

    /// Waits for the script to report `event`; returns the report.
    pub fn expect(&mut self, event: &str) -> Value {
        let line = tokio::task::block_in_place(|| self.lines.recv_timeout(STEP));
        let line = match line {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!(
                "the browser script did not report {event} within {STEP:?}; it wrote:\n{}",
                self.stderr()
            ),
            Err(RecvTimeoutError::Disconnected) => {
                let status = tokio::task::block_in_place(|| self.child.0.wait());
                panic!(
                    "the browser script ended ({status:?}) before reporting {event}; it wrote:\n{}",
                    self.stderr()
                )
            }
        };
        let report: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the browser script printed {line:?} ({e})"));
        assert_eq!(report["event"], event, "{report}\n{}", self.stderr());
        report
    }

    /// Sends the script one message (a line of JSON on its stdin).
    pub fn send(&mut self, message: &Value) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{message}").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for the script to exit (its stdin closed first); it must succeed.
    pub fn finish(mut self) {
        drop(self.stdin.take());
        let status = tokio::task::block_in_place(|| self.child.0.wait()).unwrap();
        assert!(
            status.success(),
            "the browser script: {status}\n{}",
            self.stderr()
        );
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}
