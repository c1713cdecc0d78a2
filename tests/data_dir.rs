//! Where `handsign serve` and the operator commands keep and look for their data, and the public
//! URL `--listen` alone gives: the per-user data directory, printed at start, shared by both
//! whatever directory they run from; an operator command that finds no data says where it looked
//! and creates nothing; `--listen` on another port moves the public URL with it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod browser_support;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use browser_support::{Killed, free_port};

/// `handsign ARGS` with HOME at `home`, no data-directory or public-URL settings inherited, run
/// from `cwd`.
fn handsign(home: &Path, cwd: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_handsign"));
    command
        .current_dir(cwd)
        .env("HOME", home)
        .env_remove("XDG_DATA_HOME")
        .env_remove("HANDSIGN_DATA_DIR")
        .env_remove("HANDSIGN_PUBLIC_URL")
        .env_remove("HANDSIGN_LISTEN")
        .env("HANDSIGN_LOG", "warn");
    command
}

#[test]
fn an_operator_command_without_data_says_where_it_looked_and_creates_nothing() {
    let home = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let output = handsign(home.path(), cwd.path())
        .args(["user", "invite", "bob"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let looked = home.path().join(".local/share/handsign");
    assert!(!output.status.success(), "{output:?}");
    assert!(
        stderr.contains(&format!(
            "no gateway runs with data directory {} and it holds no Handsign data",
            looked.display()
        )),
        "{stderr}"
    );
    assert!(!looked.exists(), "an empty store was created");
    assert!(!cwd.path().join("handsign-data").exists());

    // XDG_DATA_HOME, when set, is where the data lives.
    let data_home = home.path().join("xdg");
    let output = handsign(home.path(), cwd.path())
        .env("XDG_DATA_HOME", &data_home)
        .args(["agent", "list"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&data_home.join("handsign").display().to_string()),
        "{stderr}"
    );
}

#[test]
fn serve_with_listen_alone_derives_its_public_url_and_operators_find_its_data_from_anywhere() {
    let home = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = handsign(home.path(), cwd.path())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _gateway = Killed(child);
    let mut printed = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let done = line.contains("listening on");
        printed.push(line);
        if done {
            break;
        }
    }
    let data = home.path().join(".local/share/handsign");
    let url = format!("http://localhost:{port}");
    assert_eq!(
        printed[0],
        format!("Data directory: {}", data.display()),
        "{printed:?}"
    );
    assert!(
        printed
            .iter()
            .any(|line| line.trim().starts_with(&format!("{url}/setup?code="))),
        "{printed:?}"
    );
    assert!(
        printed
            .last()
            .unwrap()
            .ends_with(&format!("public URL {url}")),
        "{printed:?}"
    );

    // From another directory, an operator command reaches the running gateway through its data
    // directory, and the link it prints is on the gateway's port.
    let elsewhere = tempfile::tempdir().unwrap();
    let output = handsign(home.path(), elsewhere.path())
        .args(["user", "invite", "bob"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains(&format!("{url}/setup?code=")), "{stdout}");
}
