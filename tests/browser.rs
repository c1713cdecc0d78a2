//! A person in a real browser: the `handsign serve` process, Debian's Chromium driven by
//! Playwright (`tests/browser/approve.mjs`) with Chrome's virtual authenticator as the passkey.
//! The person registers on the setup page, an agent asks for an action whose params try to
//! inject a script and hide characters, the person approves on the approval page at phone size,
//! and the agent's token and the receipt check out with PyJWT and `handsign receipt verify`.
//!
//! The script and this test take turns over the script's stdin and stdout, one JSON object a
//! line: the script says `registered`, this test adds the agent and creates the request, sends
//! the approval URL, and the script says `approved`. One browser, one page, one virtual
//! authenticator throughout: nothing is persisted between two runs of the browser.
//!
//! Chromium, `playwright-core` (`tests/browser/node_modules`) and PyJWT are installed by
//! `scripts/test`; without them this test fails saying so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod browser_support;
mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use browser_support::{Script, free_port, manifest_dir, spawn_gateway};

use common::TestAgent;
use handsign_protocol::keys::SigningKey;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A `handsign` command run against the gateway's data directory and public URL.
fn handsign(data_dir: &Path, url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_handsign"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--public-url", url])
        .output()
        .unwrap()
}

/// Alice's agent "travel bot", added by the operator, active at once.
fn travel_bot(data_dir: &Path, url: &str) -> TestAgent {
    let key = SigningKey::generate().unwrap();
    let jwk = serde_json::to_string(&key.public_key().to_jwk()).unwrap();
    let added = handsign(
        data_dir,
        url,
        &[
            "agent",
            "add",
            "--name",
            "travel bot",
            "--user",
            "alice",
            "--key",
            &jwk,
        ],
    );
    assert!(added.status.success(), "{added:?}");
    TestAgent::new(key, url)
}

/// The Python of the environment `scripts/test` creates, with PyJWT.
fn python() -> PathBuf {
    let python = std::env::var_os("HANDSIGN_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("target/test-env/python/bin/python"));
    assert!(
        python.is_file(),
        "no Python environment with PyJWT at {}: run scripts/test, which creates it",
        python.display()
    );
    python
}

/// Params an agent could send to mislead: an injected script, a right-to-left override and a
/// zero-width space inside strings, nested objects and arrays.
fn tricky_params() -> Value {
    json!({
        "from": "SFO",
        "to": "NYC",
        "date": "2026-12-01",
        "passenger": "Alice Ng",
        "notes": "<script>alert(1)</script>",
        "fare_basis": "YOW\u{202E}PUDK",
        "payee": "travel\u{200B}.example",
        "legs": [
            {"flight": "UA 15", "seat": "12A", "meal": null},
            {"flight": "B6 2", "seat": "3C", "extras": {"bags": 2, "lounge": false}},
        ],
        "price": {"amount": "412.30", "currency": "USD"},
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_registers_and_approves_in_chromium_and_the_token_and_receipt_check_out() {
    let python = python();
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://localhost:{port}");
    let (_gateway, setup_link) = spawn_gateway(data.path(), port);

    let output_dir = manifest_dir().join("target/test-output");
    std::fs::create_dir_all(&output_dir).unwrap();
    let mut script = Script::start("approve.mjs", &[&setup_link, output_dir.to_str().unwrap()]);
    script.expect("registered");

    // alice exists now: the operator adds her agent while the gateway runs.
    let agent = travel_bot(data.path(), &url);
    let params = tricky_params();
    let created = agent.request(params.clone()).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let approval_url = created["approval_url"].as_str().unwrap();
    assert_eq!(approval_url, format!("{url}/approve/{id}"), "{created}");

    script.send(&json!({ "approval_url": approval_url }));
    let approved = script.expect("approved");
    script.finish();
    assert_eq!(approved["id"], id.as_str(), "{approved}");

    // The agent collects its token; PyJWT checks it against the live JWKS.
    let (status, answer) = agent.read(&id, 0).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "approved", "{answer}");
    let token = answer["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"));

    let mut canonicalize = Command::new(env!("CARGO_BIN_EXE_handsign"))
        .args(["canonicalize", "--sha256"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    canonicalize
        .stdin
        .take()
        .unwrap()
        .write_all(&serde_json::to_vec(&params).unwrap())
        .unwrap();
    let hashed = canonicalize.wait_with_output().unwrap();
    assert!(hashed.status.success(), "{hashed:?}");
    let params_sha256 = String::from_utf8(hashed.stdout).unwrap().trim().to_owned();
    assert_eq!(
        created["params_sha256"],
        params_sha256.as_str(),
        "{created}"
    );

    let checked = Command::new(&python)
        .arg(manifest_dir().join("tests/browser/pyjwt_verify.py"))
        .arg(format!("{url}/.well-known/jwks.json"))
        .args([token, &url, "https://travel.example", &params_sha256, "30"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "PyJWT is missing: run scripts/test, which installs it\n{stderr}"
    );
    assert!(checked.status.success(), "PyJWT: {stderr}");
    let claims: Value = serde_json::from_slice(&checked.stdout).unwrap();
    assert_eq!(claims["sub"], "alice", "{claims}");
    assert_eq!(claims["action"], "flights.book", "{claims}");
    assert_eq!(claims["approval"], id.as_str(), "{claims}");
    assert_eq!(claims["act"]["sub"], agent.id(), "{claims}");

    // The receipt proves the approval offline.
    let (status, receipt) = agent
        .call(Method::GET, &format!("/v1/approvals/{id}/receipt"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    let file = data.path().join("receipt.json");
    std::fs::write(&file, serde_json::to_vec(&receipt).unwrap()).unwrap();
    let verified = Command::new(env!("CARGO_BIN_EXE_handsign"))
        .args(["receipt", "verify"])
        .arg(&file)
        .args(["--jwks", &format!("{url}/.well-known/jwks.json")])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success(), "{verified:?}");
    assert!(said.contains("valid: alice decided approve"), "{said}");
}

/// Long params written in an order of their own: first the trip, then many more fields.
fn long_params_in_agent_order() -> (String, Vec<String>) {
    let mut members = vec![
        ("from".to_owned(), json!("SFO")),
        ("to".to_owned(), json!("NYC")),
        ("date".to_owned(), json!("2026-12-01")),
        ("passenger".to_owned(), json!("Alice Ng")),
    ];
    for i in (1..=24).rev() {
        members.push((
            format!("field_{i:02}"),
            json!(format!("value {i} ").repeat(i)),
        ));
    }
    members.push((
        "legs".to_owned(),
        json!([{"seat": "12A", "flight": "UA 15"}, {"seat": "3C", "flight": "B6 2"}]),
    ));
    members.push((
        "note".to_owned(),
        json!("the last parameter, at the very end"),
    ));
    let text = members
        .iter()
        .map(|(key, value)| format!("{}:{value}", json!(key)))
        .collect::<Vec<_>>()
        .join(",");
    let keys = members.into_iter().map(|(key, _)| key).collect();
    (format!("{{{text}}}"), keys)
}

/// A phone whose browser lacks WebAuthn's JSON helpers registers and approves a long request
/// shown in the agent's order, with the buttons on the first screen and no parameter ever under
/// them, while a tab opened earlier learns of the decision by itself; it denies another and
/// watches a third expire. axe-core finds no serious or critical violation on any page.
#[tokio::test(flavor = "multi_thread")]
async fn a_phone_without_the_json_helpers_approves_a_long_request_in_the_agents_order() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://localhost:{port}");
    let (_gateway, setup_link) = spawn_gateway(data.path(), port);
    let output_dir = manifest_dir().join("target/test-output");
    std::fs::create_dir_all(&output_dir).unwrap();
    let mut script = Script::start("phone.mjs", &[&setup_link, output_dir.to_str().unwrap()]);
    script.expect("registered");

    let agent = travel_bot(data.path(), &url);
    let (params, keys) = long_params_in_agent_order();
    let created = agent.request_text(&params).await;
    let id = created["id"].as_str().unwrap().to_owned();
    // The hash is that of the canonical form, whatever the order shown.
    let sorted: Value = serde_json::from_str(&params).unwrap();
    let canonical = handsign_protocol::params::CanonicalParams::parse(
        serde_json::to_string(&sorted).unwrap().as_bytes(),
        &Default::default(),
    )
    .unwrap();
    assert_eq!(
        created["params_sha256"],
        canonical.hash().as_str(),
        "{created}"
    );

    let denied = agent.request(json!({"to": "LAX"})).await;
    let (status, expiring) = agent
        .call(
            Method::POST,
            "/v1/approvals",
            Some(&json!({
                "action": "flights.book",
                "params": {"to": "SEA"},
                "audience": "https://travel.example",
                "ttl": 10,
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{expiring}");
    script.send(&json!({
        "approval_url": created["approval_url"],
        "keys": keys,
        "deny_url": denied["approval_url"],
        "expiring_url": expiring["approval_url"],
    }));
    let approved = script.expect("approved");
    script.finish();
    assert_eq!(approved["shown"], json!(keys), "{approved}");
    let (status, answer) = agent.read(&id, 0).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "approved", "{answer}");
    assert!(answer["token"].is_string(), "{answer}");
}

/// An agent that polled once for a second and stopped: the dashboard and the approval page say,
/// once that poll's time is over and without a reload, that nobody waits for the decision any
/// more, and hide nothing; once the agent asks again, they no longer say so. (The gateway
/// counts an agent as waiting for a short gap after its poll ends: real time passes here until
/// the notice appears, bounded by the script's wait.) Once approved, every open page shows the
/// token collected as soon as the agent collects it.
#[tokio::test(flavor = "multi_thread")]
async fn the_pages_follow_whether_the_agent_waits_and_collects_its_token() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://localhost:{port}");
    let (_gateway, setup_link) = spawn_gateway(data.path(), port);
    let output_dir = manifest_dir().join("target/test-output");
    std::fs::create_dir_all(&output_dir).unwrap();
    let mut script = Script::start("waiting.mjs", &[&setup_link, output_dir.to_str().unwrap()]);
    script.expect("registered");

    let agent = travel_bot(data.path(), &url);
    let created = agent.request(json!({"to": "LIS"})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, answer) = agent.read(&id, 1).await;
    assert_eq!(
        (status, &answer["status"]),
        (StatusCode::OK, &json!("pending"))
    );
    script.send(&json!({"approval_url": created["approval_url"]}));
    script.expect("gone");

    let (status, answer) = agent.read(&id, 0).await;
    assert_eq!(
        (status, &answer["status"]),
        (StatusCode::OK, &json!("pending"))
    );
    script.send(&json!({"asked_again": true}));
    script.expect("waiting");

    script.expect("approved");
    let (status, answer) = agent.read(&id, 0).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer["token"].is_string(), "{answer}");
    script.send(&json!({"collected": true}));
    script.expect("collected");
    script.finish();
}
