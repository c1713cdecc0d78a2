//! The command line as a service author uses it: `handsign canonicalize` and
//! `handsign token verify`, their verdicts and exit statuses; and `handsign health`, a
//! container's healthcheck.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../crates/handsign-protocol/tests/support/mod.rs"]
mod support;

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};

use handsign_protocol::canonical::Limits;
use handsign_protocol::keys::{Jwks, SigningKey};
use handsign_protocol::params::CanonicalParams;
use handsign_protocol::token::{self, Actor, ApprovalClaims};

const NOW: i64 = 1_800_000_000;
const PARAMS: &str = r#"{"to": "NYC", "from": "SFO", "date": "2026-12-01", "passenger": "Alice"}"#;

fn handsign(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_handsign"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[test]
fn canonicalize_writes_canonical_bytes_without_newline() {
    let output = handsign(
        &["canonicalize"],
        "{ \"b\": 1e2, \"a\": [1.0, \"\\u00e9\"] }\n",
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "{\"a\":[1,\"é\"],\"b\":100}");
}

#[test]
fn canonicalize_sha256_prints_params_sha256() {
    let output = handsign(&["canonicalize", "--sha256"], r#"{"b":2,"a":1}"#);
    assert!(output.status.success(), "{}", stderr(&output));
    // base64url SHA-256 of {"a":1,"b":2}, computed with Python's hashlib.
    assert_eq!(
        stdout(&output),
        "QyWM_3g_5wNtikMDP4MK38YOwDc4JHNUisdCuIgpJ3c\n"
    );
}

#[test]
fn canonicalize_refuses_what_it_cannot_represent_and_says_where() {
    let cases = [
        ("{\n  \"a\": 1,\n  \"a\": 2\n}", "duplicate key"),
        (r#"{"n": 9007199254740993}"#, "9007199254740993"),
        (r#"["\ud800"]"#, "surrogate"),
        ("[1, 2", "line 1"),
    ];
    for (input, needle) in cases {
        let output = handsign(&["canonicalize"], input);
        assert_eq!(output.status.code(), Some(1), "{input}");
        assert!(stdout(&output).is_empty(), "{input}");
        let message = stderr(&output);
        assert!(message.contains(needle), "{input}: {message}");
    }
    let duplicate = handsign(&["canonicalize"], "{\n  \"a\": 1,\n  \"a\": 2\n}");
    assert!(
        stderr(&duplicate).contains("line 3"),
        "{}",
        stderr(&duplicate)
    );
}

#[test]
fn canonicalize_depth_limit_is_configurable() {
    let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
    assert_eq!(handsign(&["canonicalize"], &deep).status.code(), Some(1));
    let output = handsign(&["canonicalize", "--max-depth", "40"], &deep);
    assert!(output.status.success(), "{}", stderr(&output));
}

/// A gateway key, its JWKS written to a file, a params file, and a token for those params.
struct Setup {
    dir: tempfile::TempDir,
    key: SigningKey,
    claims: ApprovalClaims,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_seed(&[11; 32]);
        std::fs::write(
            dir.path().join("jwks.json"),
            serde_json::to_vec(&Jwks::from_signing_keys([&key])).unwrap(),
        )
        .unwrap();
        std::fs::write(dir.path().join("params.json"), PARAMS).unwrap();
        let claims = ApprovalClaims {
            iss: "https://gw.example".into(),
            sub: "alice".into(),
            aud: "https://travel.example".into(),
            act: Actor {
                sub: "agent-1".into(),
            },
            action: "flights.book".into(),
            params_sha256: CanonicalParams::parse(PARAMS.as_bytes(), &Limits::default())
                .unwrap()
                .hash(),
            approval: "apr_1".into(),
            jti: "jti-1".into(),
            iat: NOW,
            nbf: NOW,
            exp: NOW + 30,
            cnf: None,
        };
        Setup { dir, key, claims }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    fn verify(&self, token: &str, jwks: &str, extra: &[&str]) -> Output {
        let params = self.path("params.json");
        let mut args = vec![
            "token",
            "verify",
            token,
            "--jwks",
            jwks,
            "--issuer",
            "https://gw.example",
            "--audience",
            "https://travel.example",
            "--action",
            "flights.book",
            "--params",
            &params,
            "--now",
        ];
        let now = (NOW + 10).to_string();
        args.push(&now);
        args.extend_from_slice(extra);
        handsign(&args, "")
    }
}

#[test]
fn token_verify_accepts_a_good_token() {
    let setup = Setup::new();
    let minted = token::mint(&setup.key, &setup.claims).unwrap();
    let output = setup.verify(&minted, &setup.path("jwks.json"), &[]);
    assert!(output.status.success(), "{}", stdout(&output));
    assert!(stdout(&output).starts_with("accepted: alice approved flights.book"));
}

#[test]
fn token_verify_names_the_failed_check() {
    let setup = Setup::new();
    let other_params = ApprovalClaims {
        params_sha256: CanonicalParams::parse(br#"{"to":"LAX"}"#, &Limits::default())
            .unwrap()
            .hash(),
        ..setup.claims.clone()
    };
    let other_action = ApprovalClaims {
        action: "flights.cancel".into(),
        ..setup.claims.clone()
    };
    let expired = ApprovalClaims {
        iat: NOW - 60,
        nbf: NOW - 60,
        exp: NOW - 30,
        ..setup.claims.clone()
    };
    let stranger = SigningKey::from_seed(&[12; 32]);
    let cases = [
        (
            token::mint(&setup.key, &other_params).unwrap(),
            "params_mismatch",
        ),
        (
            token::mint(&setup.key, &other_action).unwrap(),
            "action_mismatch",
        ),
        (token::mint(&setup.key, &expired).unwrap(), "expired"),
        (
            token::mint(&stranger, &setup.claims).unwrap(),
            "unknown_kid",
        ),
    ];
    for (minted, code) in cases {
        let output = setup.verify(&minted, &setup.path("jwks.json"), &[]);
        assert_eq!(output.status.code(), Some(1), "{code}");
        assert!(
            stdout(&output).starts_with(&format!("refused: {code}: ")),
            "{code}: {}",
            stdout(&output)
        );
    }
}

#[test]
fn token_verify_refuses_a_skew_over_five_seconds() {
    let setup = Setup::new();
    let minted = token::mint(&setup.key, &setup.claims).unwrap();
    let output = setup.verify(&minted, &setup.path("jwks.json"), &["--skew", "60"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--skew"), "{}", stderr(&output));
}

#[test]
fn token_verify_fetches_the_jwks_from_a_url() {
    let setup = Setup::new();
    let jwks = std::fs::read(setup.path("jwks.json")).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 4096];
        let read = stream.read(&mut request).unwrap();
        let head = String::from_utf8_lossy(&request[..read]).into_owned();
        write!(
            stream,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            jwks.len()
        )
        .unwrap();
        stream.write_all(&jwks).unwrap();
        head
    });
    let minted = token::mint(&setup.key, &setup.claims).unwrap();
    let output = setup.verify(&minted, &url, &[]);
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(
        server
            .join()
            .unwrap()
            .starts_with("GET /.well-known/jwks.json ")
    );
}

#[test]
fn token_verify_reports_an_unreachable_jwks_as_an_error_not_a_verdict() {
    let setup = Setup::new();
    let minted = token::mint(&setup.key, &setup.claims).unwrap();
    // Bind and drop a listener to get a loopback port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = setup.verify(&minted, &format!("http://127.0.0.1:{port}/jwks.json"), &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("cannot fetch JWKS"),
        "{}",
        stderr(&output)
    );
    let missing = setup.verify(&minted, &setup.path("nope.json"), &[]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("cannot read JWKS file"));
}

#[tokio::test(flavor = "multi_thread")]
async fn health_exits_0_when_the_gateway_is_ready_and_1_otherwise() {
    let gateway = common::TestGateway::start().await;
    // Bind and drop a listener to get a loopback port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let urls = [
        format!("{}/readyz", gateway.url),
        format!("{}/no-such-page", gateway.url),
        format!("http://127.0.0.1:{closed}/readyz"),
    ];
    // The gateway runs on this runtime's workers; the commands wait off them.
    let [ready, missing, unreachable] = tokio::task::spawn_blocking(move || {
        urls.map(|url| handsign(&["health", "--url", &url], ""))
    })
    .await
    .unwrap();

    assert_eq!(ready.status.code(), Some(0), "{}", stderr(&ready));
    assert_eq!(stdout(&ready).lines().count(), 1, "{}", stdout(&ready));
    assert!(
        stdout(&ready).starts_with("healthy: ") && stdout(&ready).contains("200 OK: ready"),
        "{}",
        stdout(&ready)
    );

    assert_eq!(missing.status.code(), Some(1), "{}", stdout(&missing));
    assert!(
        stderr(&missing).contains("answered 404 Not Found"),
        "{}",
        stderr(&missing)
    );

    assert_eq!(
        unreachable.status.code(),
        Some(1),
        "{}",
        stdout(&unreachable)
    );
    assert!(stdout(&unreachable).is_empty());
    assert_eq!(stderr(&unreachable).lines().count(), 1);
    assert!(
        stderr(&unreachable).starts_with(&format!(
            "handsign health: unhealthy: cannot reach http://127.0.0.1:{closed}/readyz: "
        )),
        "{}",
        stderr(&unreachable)
    );
}

/// A receipt as a gateway issues it, made with the protocol crate's software authenticator.
mod receipts {
    use handsign_protocol::base64url;
    use handsign_protocol::keys::{Jwks, SigningKey};
    use handsign_protocol::params::CanonicalParams;
    use handsign_protocol::receipt::{Credential, Evidence, ReceiptBody};
    use handsign_protocol::statement::{Decision, STATEMENT_VERSION, Statement};
    use handsign_protocol::webauthn::CredentialPublicKey;
    use serde_json::json;

    use super::support::{
        ORIGIN, RP_ID, SoftAuthenticator, UP_UV, client_data_json, issue_receipt,
    };
    use super::{handsign, stdout};

    fn write_receipt(dir: &std::path::Path, gateway: &SigningKey) -> String {
        let params = json!({"from": "SFO", "to": "NYC"});
        let statement = Statement {
            v: STATEMENT_VERSION.into(),
            id: "apr_cli".into(),
            iss: ORIGIN.into(),
            sub: "alice".into(),
            act: "agent-1".into(),
            aud: "https://travel.example".into(),
            action: "flights.book".into(),
            params_sha256: CanonicalParams::from_value(&params, &Default::default())
                .unwrap()
                .hash(),
            decision: Decision::Approve,
            nonce: base64url::encode([1u8; 32]),
            iat: 1_800_000_000,
        };
        let mut authenticator = SoftAuthenticator::p256(21);
        let receipt = issue_receipt(&mut authenticator, statement, params, UP_UV, gateway);
        let path = dir.join("receipt.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&receipt).unwrap()).unwrap();
        path.to_str().unwrap().to_owned()
    }

    #[test]
    fn receipt_verify_reports_the_decision_and_the_gateway_signature() {
        let dir = tempfile::tempdir().unwrap();
        let gateway = SigningKey::from_seed(&[31; 32]);
        let receipt = write_receipt(dir.path(), &gateway);
        let jwks = dir.path().join("jwks.json");
        std::fs::write(
            &jwks,
            serde_json::to_vec(&Jwks::from_signing_keys([&gateway])).unwrap(),
        )
        .unwrap();

        // Without a trust anchor: self-consistent, but not evidence of anything.
        let output = handsign(&["receipt", "verify", &receipt], "");
        assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
        assert!(
            stdout(&output).starts_with(
                "unverified: the receipt is self-consistent: alice decided approve on flights.book"
            ),
            "{}",
            stdout(&output)
        );

        let output = handsign(
            &[
                "receipt",
                "verify",
                &receipt,
                "--jwks",
                jwks.to_str().unwrap(),
            ],
            "",
        );
        assert!(output.status.success(), "{}", stdout(&output));
        assert!(stdout(&output).starts_with("valid: alice decided approve on flights.book"));
        assert!(stdout(&output).contains(&format!(
            "and the gateway's signature (kid {}) attests that this passkey is registered to alice",
            gateway.kid()
        )));
    }

    /// alice's passkey public key as a JWK, as an auditor would have it pinned.
    fn alice_key() -> String {
        let cose = SoftAuthenticator::p256(21).cose_key();
        CredentialPublicKey::from_cose(&cose)
            .unwrap()
            .to_jwk()
            .to_string()
    }

    #[test]
    fn receipt_verify_with_a_pinned_credential_says_what_it_verified() {
        let dir = tempfile::tempdir().unwrap();
        let receipt = write_receipt(dir.path(), &SigningKey::from_seed(&[31; 32]));
        let key_file = dir.path().join("alice.jwk");
        std::fs::write(&key_file, alice_key()).unwrap();
        for key in [alice_key(), key_file.to_str().unwrap().to_owned()] {
            let output = handsign(
                &[
                    "receipt",
                    "verify",
                    &receipt,
                    "--credential-key",
                    &key,
                    "--rp-id",
                    RP_ID,
                    "--origin",
                    ORIGIN,
                ],
                "",
            );
            assert!(output.status.success(), "{}", stdout(&output));
            assert!(stdout(&output).starts_with("valid: alice decided approve"));
            assert!(stdout(&output).contains(&format!(
                "verified: the pinned credential key signed exactly this statement and these \
                 params, for RP ID {RP_ID} at origin {ORIGIN}"
            )));
        }
        let output = handsign(
            &[
                "receipt",
                "verify",
                &receipt,
                "--credential-key",
                &alice_key(),
            ],
            "",
        );
        assert_eq!(
            output.status.code(),
            Some(2),
            "--rp-id and --origin are required"
        );
    }

    /// A receipt made from scratch by an attacker: their own passkey, RP ID, origin and
    /// "gateway" key, over a statement saying alice approved.
    fn write_forged_receipt(dir: &std::path::Path) -> String {
        let params = json!({"from": "SFO", "to": "NYC"});
        let statement = Statement {
            v: STATEMENT_VERSION.into(),
            id: "apr_forged".into(),
            iss: "https://evil.example".into(),
            sub: "alice".into(),
            act: "agent-1".into(),
            aud: "https://travel.example".into(),
            action: "flights.book".into(),
            params_sha256: CanonicalParams::from_value(&params, &Default::default())
                .unwrap()
                .hash(),
            decision: Decision::Approve,
            nonce: base64url::encode([2u8; 32]),
            iat: 1_800_000_000,
        };
        let (rp_id, origin) = ("evil.example", "https://evil.example");
        let mut attacker = SoftAuthenticator::p256(66);
        let cose = attacker.cose_key();
        let authenticator_data = attacker.authenticator_data_head(rp_id, UP_UV);
        let client_data =
            client_data_json("webauthn.get", &statement.digest().unwrap(), origin, "");
        let assertion = attacker.assert_raw(authenticator_data, client_data);
        let receipt = ReceiptBody {
            v: "handsign-receipt/1".into(),
            statement,
            params,
            evidence: Evidence {
                credential_id: base64url::encode(&attacker.credential_id),
                authenticator_data: base64url::encode(&assertion.authenticator_data),
                client_data_json: base64url::encode(&assertion.client_data_json),
                signature: base64url::encode(&assertion.signature),
                user_handle: None,
            },
            credential: Credential {
                public_key_cose: base64url::encode(&cose),
                public_key_jwk: CredentialPublicKey::from_cose(&cose).unwrap().to_jwk(),
            },
            rp_id: rp_id.into(),
            origins: vec![origin.into()],
        }
        .sign(&SigningKey::from_seed(&[66; 32]))
        .unwrap();
        let path = dir.join("forged.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&receipt).unwrap()).unwrap();
        path.to_str().unwrap().to_owned()
    }

    #[test]
    fn a_receipt_made_from_scratch_is_never_valid() {
        let dir = tempfile::tempdir().unwrap();
        let forged = write_forged_receipt(dir.path());
        let gateway = SigningKey::from_seed(&[31; 32]);
        let jwks = dir.path().join("jwks.json");
        std::fs::write(
            &jwks,
            serde_json::to_vec(&Jwks::from_signing_keys([&gateway])).unwrap(),
        )
        .unwrap();
        let anchors: [&[&str]; 3] = [
            &[],
            &["--jwks", jwks.to_str().unwrap()],
            &[
                "--credential-key",
                &alice_key(),
                "--rp-id",
                RP_ID,
                "--origin",
                ORIGIN,
            ],
        ];
        for anchor in anchors {
            let mut args = vec!["receipt", "verify", &forged];
            args.extend_from_slice(anchor);
            let output = handsign(&args, "");
            let text = stdout(&output);
            assert_eq!(output.status.code(), Some(1), "{anchor:?}: {text}");
            assert!(!text.starts_with("valid"), "{anchor:?}: {text}");
        }
        // Without an anchor it says why it cannot tell.
        let output = handsign(&["receipt", "verify", &forged], "");
        assert!(stdout(&output).contains("not verified: who made it"));
    }

    #[test]
    fn receipt_verify_names_the_failed_check() {
        let dir = tempfile::tempdir().unwrap();
        let receipt = write_receipt(dir.path(), &SigningKey::from_seed(&[31; 32]));
        let text = std::fs::read_to_string(&receipt).unwrap();
        let tampered = text.replace("\"NYC\"", "\"LAX\"");
        assert_ne!(tampered, text);
        std::fs::write(&receipt, tampered).unwrap();
        let output = handsign(&["receipt", "verify", &receipt], "");
        assert_eq!(output.status.code(), Some(1));
        assert!(
            stdout(&output).starts_with("invalid: params hash differs"),
            "{}",
            stdout(&output)
        );
    }
}
