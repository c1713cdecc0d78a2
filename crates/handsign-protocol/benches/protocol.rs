//! Benchmarks of the protocol's hot paths. Run with
//! `cargo bench -p handsign-protocol --bench protocol -- <group>`.
//!
//! Each group is its own function so groups can be added without touching the others.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use handsign_protocol::canonical::{Limits, canonicalize, canonicalize_value};
use handsign_protocol::keys::{KeySet, SigningKey};
use handsign_protocol::params::CanonicalParams;
use handsign_protocol::token::{self, Actor, ApprovalClaims, Confirmation, Expected};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A deterministic, realistic ~1 KiB `params` object (`params_1k.json`, also read by the Redis
/// benchmark): a flight booking with a nested passenger, an itinerary array, unicode strings,
/// floats, integers, booleans and null.
fn params_1k() -> Value {
    serde_json::from_str(include_str!("params_1k.json")).unwrap()
}

/// JSON text of a value, compact, with every object's keys in reverse order: agents do not send
/// sorted keys, so the parser has to reorder every object.
fn text_reversed_keys(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().rev().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).unwrap());
                out.push(':');
                text_reversed_keys(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                text_reversed_keys(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn canonical(c: &mut Criterion) {
    let value = params_1k();
    let mut text = String::new();
    text_reversed_keys(&value, &mut text);
    let text = text.into_bytes();
    let limits = Limits::default();
    let canonical_len = canonicalize_value(&value, &limits).unwrap().len();
    assert!(
        (900..1400).contains(&canonical_len),
        "{canonical_len} bytes"
    );
    assert_eq!(
        canonicalize(&text, &limits).unwrap(),
        canonicalize_value(&value, &limits).unwrap()
    );

    let mut group = c.benchmark_group("canonical");
    group.bench_function("to_vec_sha256", |b| {
        b.iter(|| sha256(&serde_json::to_vec(black_box(&value)).unwrap()))
    });
    group.bench_function("canonicalize_value_sha256", |b| {
        b.iter(|| sha256(&canonicalize_value(black_box(&value), &limits).unwrap()))
    });
    // The existing crate the differential tests compare against, for reference.
    group.bench_function("serde_json_canonicalizer_sha256", |b| {
        b.iter(|| sha256(&serde_json_canonicalizer::to_vec(black_box(&value)).unwrap()))
    });
    group.bench_function("from_slice_to_vec_sha256", |b| {
        b.iter(|| {
            let parsed: Value = serde_json::from_slice(black_box(&text)).unwrap();
            sha256(&serde_json::to_vec(&parsed).unwrap())
        })
    });
    group.bench_function("canonicalize_bytes_sha256", |b| {
        b.iter(|| sha256(&canonicalize(black_box(&text), &limits).unwrap()))
    });
    group.finish();
}

/// Token verification as a service makes it on each request: canonicalize and hash the received
/// body, then every check of `token::verify`. The floor is what no verifier can skip: one
/// Ed25519 verification and one SHA-256 over the body.
fn token_verification(c: &mut Criterion) {
    let body = serde_json::to_vec(&params_1k()).unwrap();
    let limits = Limits::default();
    let gateway = SigningKey::from_seed(&[1; 32]);
    let agent = SigningKey::from_seed(&[2; 32]);
    let now = 1_800_000_000;
    let claims = ApprovalClaims {
        iss: "https://gateway.example".into(),
        sub: "alice".into(),
        aud: "https://travel.example".into(),
        act: Actor {
            sub: agent.kid().into(),
        },
        action: "flights.book".into(),
        params_sha256: CanonicalParams::parse(&body, &limits).unwrap().hash(),
        approval: "01JD5Q8W7Z3XKQ4M2N6P8R0T2V".into(),
        jti: "6f1c2f0e-3b8a-4d9e-9c47-2a5b1e7d3c90".into(),
        iat: now,
        nbf: now,
        exp: now + 30,
        cnf: Some(Confirmation {
            jkt: agent.kid().into(),
        }),
    };
    let minted = token::mint(&gateway, &claims).unwrap();
    let keys = KeySet::from_signing_keys([&gateway]);
    let verify_full = |token: &str, body: &[u8]| {
        let hash = CanonicalParams::parse(body, &limits).unwrap().hash();
        let expected = Expected {
            issuer: "https://gateway.example",
            audience: "https://travel.example",
            action: "flights.book",
            params_sha256: &hash,
            now,
            skew: 5,
        };
        token::verify(token, &keys, &expected).unwrap()
    };
    assert_eq!(verify_full(&minted, &body), claims);

    let (signing_input, signature_b64) = minted.rsplit_once('.').unwrap();
    let signature = ed25519_dalek::Signature::from_slice(
        &handsign_protocol::base64url::decode(signature_b64).unwrap(),
    )
    .unwrap();
    let verifying_key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key();

    let mut group = c.benchmark_group("token");
    group.bench_function("ed25519_verify_sha256", |b| {
        b.iter(|| {
            verifying_key
                .verify_strict(black_box(signing_input.as_bytes()), &signature)
                .unwrap();
            sha256(black_box(&body))
        })
    });
    group.bench_function("verify_full", |b| {
        b.iter(|| verify_full(black_box(&minted), black_box(&body)))
    });
    group.finish();
}

criterion_group!(benches, canonical, token_verification);
criterion_main!(benches);
