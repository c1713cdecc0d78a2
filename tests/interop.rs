//! Interoperability: our tokens and DPoP proofs checked by independent JOSE implementations
//! (PyJWT and npm `jose`), and theirs checked by ours.
//!
//! The packages are installed by the README's test command (`scripts/test`) into
//! `tests/interop/node_modules` and the Python environment; without them these tests fail with a
//! message saying so, rather than passing without checking anything.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use handsign_protocol::canonical::Limits;
use handsign_protocol::dpop;
use handsign_protocol::keys::{Jwks, KeySet, SigningKey};
use handsign_protocol::params::CanonicalParams;
use handsign_protocol::token::{self, Actor, ApprovalClaims, Confirmation, Expected, TokenError};
use serde_json::Value;

const ISSUER: &str = "https://gw.example";
const AUDIENCE: &str = "https://travel.example";
const ACTION: &str = "flights.book";
const PARAMS: &[u8] = br#"{"from":"SFO","to":"NYC","date":"2026-12-01","passenger":"Alice"}"#;

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Runs an interop script; returns its stdout on success, its stderr as `Err` on refusal.
fn run(program: &str, script: &str, args: &[&str]) -> Result<String, String> {
    let dir = interop_dir();
    if program == "node" {
        assert!(
            dir.join("node_modules/jose").is_dir(),
            "npm package jose is missing: run scripts/test, which installs it"
        );
    }
    let program = match program {
        "python3" => std::env::var("HANDSIGN_TEST_PYTHON").unwrap_or_else(|_| "python3".into()),
        other => other.to_owned(),
    };
    let output = Command::new(&program)
        .arg(dir.join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}; run scripts/test"));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "PyJWT is missing: run scripts/test, which installs it\n{stderr}"
    );
    if output.status.success() {
        Ok(String::from_utf8(output.stdout).unwrap().trim().to_owned())
    } else {
        Err(stderr)
    }
}

fn python(args: &[&str]) -> Result<String, String> {
    run("python3", "pyjwt_check.py", args)
}

fn node(args: &[&str]) -> Result<String, String> {
    run("node", "jose_check.mjs", args)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

struct Fixture {
    dir: tempfile::TempDir,
    gateway: SigningKey,
    agent: SigningKey,
    claims: ApprovalClaims,
}

impl Fixture {
    fn new() -> Self {
        let gateway = SigningKey::generate().unwrap();
        let agent = SigningKey::generate().unwrap();
        let now = now();
        let claims = ApprovalClaims {
            iss: ISSUER.into(),
            sub: "alice".into(),
            aud: AUDIENCE.into(),
            act: Actor {
                sub: agent.kid().into(),
            },
            action: ACTION.into(),
            params_sha256: params_hash(),
            approval: "apr_interop".into(),
            jti: format!("jti-{now}"),
            iat: now,
            nbf: now,
            exp: now + 30,
            cnf: Some(Confirmation {
                jkt: agent.kid().into(),
            }),
        };
        let fixture = Fixture {
            dir: tempfile::tempdir().unwrap(),
            gateway,
            agent,
            claims,
        };
        fixture.write("jwks.json", &Jwks::from_signing_keys([&fixture.gateway]));
        fixture.write("private.json", &fixture.gateway.to_private_jwk());
        fixture.write("public.json", &fixture.gateway.public_jwk());
        fixture.write("claims.json", &fixture.claims);
        fixture
    }

    fn write(&self, name: &str, value: &impl serde::Serialize) {
        std::fs::write(self.path(name), serde_json::to_vec(value).unwrap()).unwrap();
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    fn ours(&self, token: &str) -> Result<ApprovalClaims, TokenError> {
        let hash = params_hash();
        token::verify(
            token,
            &KeySet::from_signing_keys([&self.gateway]),
            &Expected {
                issuer: ISSUER,
                audience: AUDIENCE,
                action: ACTION,
                params_sha256: &hash,
                now: now(),
                skew: 5,
            },
        )
    }
}

fn params_hash() -> handsign_protocol::params::ParamsHash {
    CanonicalParams::parse(PARAMS, &Limits::default())
        .unwrap()
        .hash()
}

#[test]
fn our_token_verifies_with_pyjwt_and_jose_against_our_jwks() {
    let f = Fixture::new();
    let minted = token::mint(&f.gateway, &f.claims).unwrap();
    let expected = serde_json::to_value(&f.claims).unwrap();
    let jwks = f.path("jwks.json");
    for verified in [
        python(&["verify", &jwks, &minted, ISSUER, AUDIENCE]),
        node(&["verify", &jwks, &minted, ISSUER, AUDIENCE]),
    ] {
        let claims: Value = serde_json::from_str(&verified.unwrap()).unwrap();
        assert_eq!(claims, expected);
    }
}

#[test]
fn pyjwt_and_jose_refuse_our_token_for_another_audience_or_a_flipped_bit() {
    let f = Fixture::new();
    let minted = token::mint(&f.gateway, &f.claims).unwrap();
    let jwks = f.path("jwks.json");
    assert!(python(&["verify", &jwks, &minted, ISSUER, "https://bank.example"]).is_err());
    assert!(node(&["verify", &jwks, &minted, ISSUER, "https://bank.example"]).is_err());
    let (input, signature) = minted.rsplit_once('.').unwrap();
    let flipped_char = if signature.starts_with('A') { 'B' } else { 'A' };
    let tampered = format!("{input}.{flipped_char}{}", &signature[1..]);
    assert!(python(&["verify", &jwks, &tampered, ISSUER, AUDIENCE]).is_err());
    assert!(node(&["verify", &jwks, &tampered, ISSUER, AUDIENCE]).is_err());
}

#[test]
fn tokens_pyjwt_and_jose_mint_with_our_key_verify_with_ours() {
    let f = Fixture::new();
    let private = f.path("private.json");
    let claims = f.path("claims.json");
    for minted in [
        python(&["mint", &private, &claims]).unwrap(),
        node(&["mint", &private, &claims]).unwrap(),
    ] {
        assert_eq!(f.ours(&minted).unwrap(), f.claims, "{minted}");
    }
}

#[test]
fn tokens_other_libraries_mint_with_other_keys_or_algs_are_refused() {
    let f = Fixture::new();
    let kid = f.gateway.kid().to_owned();
    let none = python(&["forge-none", &f.path("claims.json"), &kid]).unwrap();
    assert_eq!(
        f.ours(&none),
        Err(TokenError::WrongAlg {
            found: "none".into()
        })
    );

    let hs256 = python(&[
        "forge-hs256",
        &f.path("public.json"),
        &f.path("claims.json"),
    ])
    .unwrap();
    assert_eq!(
        f.ours(&hs256),
        Err(TokenError::WrongAlg {
            found: "HS256".into()
        })
    );

    let stranger = SigningKey::generate().unwrap();
    f.write("stranger.json", &stranger.to_private_jwk());
    let foreign = node(&["mint", &f.path("stranger.json"), &f.path("claims.json")]).unwrap();
    assert!(matches!(
        f.ours(&foreign),
        Err(TokenError::UnknownKid { .. })
    ));
}

#[test]
fn agent_id_is_the_rfc7638_thumbprint_jose_computes() {
    let f = Fixture::new();
    f.write("agent.json", &f.agent.public_key().to_jwk());
    assert_eq!(
        node(&["thumbprint", &f.path("agent.json")]).unwrap(),
        f.agent.kid()
    );
}

#[test]
fn our_dpop_proof_verifies_with_pyjwt_and_jose() {
    let f = Fixture::new();
    let url = "https://travel.example/bookings";
    let minted = token::mint(&f.gateway, &f.claims).unwrap();
    let proof = dpop::create(&f.agent, "POST", url, now(), Some(&minted)).unwrap();

    let py: Value = serde_json::from_str(&python(&["dpop-verify", &proof]).unwrap()).unwrap();
    assert_eq!(py["htm"], "POST");
    assert_eq!(py["htu"], url);
    assert_eq!(py["ath"], dpop::access_token_hash(&minted));

    let js: Value = serde_json::from_str(&node(&["dpop-verify", &proof]).unwrap()).unwrap();
    assert_eq!(js["jkt"], f.agent.kid());
    assert_eq!(js["claims"]["htu"], url);
    assert_eq!(js["header"]["typ"], "dpop+jwt");
}
