//! The `handsign serve` process as an operator runs it: first start prints the setup link, the
//! operator commands work while it runs, and after SIGKILL a pending request can still be
//! approved and collected.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;

use common::process::{GatewayProcess, free_port};
use common::{GatewayClient, TestAgent, flight, register};
use handsign_protocol::keys::SigningKey;
use reqwest::StatusCode;

/// A gateway process on `port` with its data in `data_dir`, once it listens.
fn spawn(data_dir: &Path, port: u16) -> GatewayProcess {
    let public = format!("http://localhost:{port}");
    let data_dir = data_dir.as_os_str();
    GatewayProcess::start(
        env!("CARGO_BIN_EXE_handsign"),
        port,
        &[
            "--public-url".as_ref(),
            public.as_ref(),
            "--data-dir".as_ref(),
            data_dir,
        ],
    )
}

fn handsign(data_dir: &Path, port: u16, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_handsign"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--public-url", &format!("http://localhost:{port}")])
        .output()
        .unwrap()
}

/// `handsign agent add` of `key` as alice's agent `name`.
fn add_agent(data_dir: &Path, port: u16, name: &str, key: &SigningKey) -> std::process::Output {
    let jwk = serde_json::to_string(&key.public_key().to_jwk()).unwrap();
    let args = [
        "agent", "add", "--name", name, "--user", "alice", "--key", &jwk,
    ];
    handsign(data_dir, port, &args)
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_commands_work_while_the_gateway_runs_and_pending_requests_survive_sigkill() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://localhost:{port}");
    let gateway = spawn(data.path(), port);
    let setup = gateway
        .setup_code()
        .unwrap_or_else(|| panic!("no setup link in {:?}", gateway.printed));
    let client = GatewayClient::new(&url);
    let mut alice = register(&client.http, &url, &setup, "alice").await;

    // The setup link is single use.
    let (status, _) = client
        .browser_post(
            "/webauthn/register/options",
            &serde_json::json!({"code": setup, "user": "mallory"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // While it runs: invite a user, add an agent.
    let invite = handsign(data.path(), port, &["user", "invite", "bob"]);
    assert!(invite.status.success(), "{invite:?}");
    let invite = String::from_utf8(invite.stdout).unwrap();
    let bob_code = invite
        .split(&format!("{url}/setup?code="))
        .nth(1)
        .unwrap()
        .trim()
        .to_owned();
    register(&client.http, &url, &bob_code, "bob").await;

    let key = SigningKey::generate().unwrap();
    let added = add_agent(data.path(), port, "travel bot", &key);
    assert!(added.status.success(), "{added:?}");
    let listed = handsign(data.path(), port, &["agent", "list"]);
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(
        listed.contains(key.kid()) && listed.contains("active"),
        "{listed}"
    );
    // A name an agent chose reaches the operator's terminal marked, never as a raw override.
    let sneaky = SigningKey::generate().unwrap();
    let added = add_agent(data.path(), port, "gpj.\u{202E}exe", &sneaky);
    assert!(added.status.success(), "{added:?}");
    let listed = handsign(data.path(), port, &["agent", "list"]);
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(
        !listed.contains('\u{202E}') && listed.contains("U+202E"),
        "{listed}"
    );

    let agent = TestAgent::new(key, &url);
    let id = agent.request(flight()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // SIGKILL: no chance to flush anything that was not committed.
    drop(gateway);
    let gateway = spawn(data.path(), port);
    assert!(
        gateway.setup_code().is_none(),
        "users were lost: {:?}",
        gateway.printed
    );

    let (status, answer) = agent.read(&id, 0).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "pending");
    let (status, decided) = client.decide(&mut alice, &id, "approve").await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    let (_, collected) = agent.read(&id, 0).await;
    assert!(collected["token"].is_string(), "{collected}");

    // Revoking while it runs cancels the agent's other pending requests.
    let other = agent.request(flight()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoked = handsign(data.path(), port, &["agent", "revoke", agent.id()]);
    assert!(revoked.status.success(), "{revoked:?}");
    let (status, _) = client.options(&other, "approve").await;
    assert_eq!(status, StatusCode::CONFLICT);
    drop(gateway);
}

#[test]
fn sigterm_stops_the_gateway_cleanly() {
    let data = tempfile::tempdir().unwrap();
    let mut gateway = spawn(data.path(), free_port());
    let pid = gateway.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let exit = gateway.wait();
    assert!(exit.success(), "{exit:?}");
    assert!(!handsign::admin::socket_path(data.path()).exists());
}

#[test]
fn logs_written_to_a_file_carry_no_colour_codes() {
    use std::io::{BufRead as _, BufReader};
    let data = tempfile::tempdir().unwrap();
    let log_path = data.path().join("gateway.log");
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_handsign"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--public-url", &format!("http://localhost:{port}")])
        .arg("--data-dir")
        .arg(data.path().join("data"))
        .env("HANDSIGN_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    for line in stdout.lines() {
        if line.unwrap().contains("listening on") {
            break;
        }
    }
    // SIGTERM: the gateway logs that it shuts down, and exits.
    Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("gateway listening"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file: {log:?}"
    );
}
