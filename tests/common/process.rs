//! The gateway as an operator runs it: a `handsign serve` process.

use std::ffi::OsStr;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

/// A `handsign serve` process, killed (SIGKILL) on drop.
pub struct GatewayProcess {
    child: Child,
    /// What it printed up to and including the line saying it listens.
    pub printed: Vec<String>,
}

impl GatewayProcess {
    /// Starts `binary serve` on loopback `port` with `args`, and returns once it listens. The
    /// binary is the test's `env!("CARGO_BIN_EXE_handsign")`.
    pub fn start<S: AsRef<OsStr>>(binary: &str, port: u16, args: &[S]) -> Self {
        let mut child = Command::new(binary)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .env("HANDSIGN_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The setup link, when there is one, comes first; "listening" is always the last line.
        let mut printed = Vec::new();
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            let done = line.contains("listening on");
            printed.push(line);
            if done {
                break;
            }
        }
        assert!(
            printed
                .last()
                .is_some_and(|line| line.contains("listening on")),
            "the gateway did not start: {printed:?}"
        );
        GatewayProcess { child, printed }
    }

    /// The code of the setup link it printed, if any.
    pub fn setup_code(&self) -> Option<String> {
        self.printed
            .iter()
            .find_map(|line| line.split("/setup?code=").nth(1))
            .map(|code| code.trim().to_owned())
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to flush or finish anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for it to exit by itself.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
