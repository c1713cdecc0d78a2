//! Approval tokens: the RFC 8037 vectors, and every refusal `design.md` lists.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use handsign_protocol::base64url;
use handsign_protocol::canonical::Limits;
use handsign_protocol::jws;
use handsign_protocol::keys::{Jwk, Jwks, KeySet, SigningKey, thumbprint};
use handsign_protocol::params::{CanonicalParams, ParamsHash};
use handsign_protocol::token::{
    self, Actor, ApprovalClaims, Confirmation, Expected, TOKEN_TYP, TokenError,
};
use hmac::{KeyInit as _, Mac as _};
use serde_json::{Value, json};

const NOW: i64 = 1_800_000_000;
const ISSUER: &str = "https://gw.example";
const AUDIENCE: &str = "https://travel.example";
const ACTION: &str = "flights.book";

fn rfc8037() -> Value {
    serde_json::from_str(include_str!("vectors/jose/rfc8037_appendix_a.json")).unwrap()
}

fn params() -> CanonicalParams {
    CanonicalParams::parse(
        br#"{"from":"SFO","to":"NYC","date":"2026-12-01","passenger":"Alice"}"#,
        &Limits::default(),
    )
    .unwrap()
}

fn claims(key_holder: &SigningKey) -> ApprovalClaims {
    ApprovalClaims {
        iss: ISSUER.into(),
        sub: "alice".into(),
        aud: AUDIENCE.into(),
        act: Actor {
            sub: key_holder.kid().into(),
        },
        action: ACTION.into(),
        params_sha256: params().hash(),
        approval: "apr_1".into(),
        jti: "jti-1".into(),
        iat: NOW,
        nbf: NOW,
        exp: NOW + 30,
        cnf: Some(Confirmation {
            jkt: key_holder.kid().into(),
        }),
    }
}

fn verify_at(token: &str, keys: &KeySet, now: i64) -> Result<ApprovalClaims, TokenError> {
    let hash = params().hash();
    token::verify(
        token,
        keys,
        &Expected {
            issuer: ISSUER,
            audience: AUDIENCE,
            action: ACTION,
            params_sha256: &hash,
            now,
            skew: 5,
        },
    )
}

fn gateway() -> (SigningKey, KeySet) {
    let key = SigningKey::from_seed(&[42; 32]);
    let keys = KeySet::from_signing_keys([&key]);
    (key, keys)
}

/// Builds a compact JWS from raw header and payload JSON and raw signature bytes.
fn assemble(header: &Value, payload: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        base64url::encode(serde_json::to_vec(header).unwrap()),
        base64url::encode(serde_json::to_vec(payload).unwrap())
    );
    let signature = sign(input.as_bytes());
    format!("{input}.{}", base64url::encode(signature))
}

fn header(key: &SigningKey) -> Value {
    json!({"alg": "EdDSA", "typ": TOKEN_TYP, "kid": key.kid()})
}

#[test]
fn rfc8037_a1_to_a3_key_and_thumbprint() {
    let v = rfc8037();
    let private: Jwk = serde_json::from_value(v["A.1_ed25519_private_key_jwk"].clone()).unwrap();
    let key = SigningKey::from_jwk(&private).unwrap();
    let public: Jwk = serde_json::from_value(v["A.2_ed25519_public_key_jwk"].clone()).unwrap();
    assert_eq!(key.public_key().to_jwk(), public);
    let expected = v["A.3_jwk_thumbprint"]["thumbprint_b64url"]
        .as_str()
        .unwrap();
    assert_eq!(thumbprint(&public).unwrap(), expected);
    assert_eq!(key.kid(), expected);
}

#[test]
fn rfc8037_a4_signature_is_reproduced_byte_for_byte() {
    let v = rfc8037();
    let private: Jwk = serde_json::from_value(v["A.1_ed25519_private_key_jwk"].clone()).unwrap();
    let key = SigningKey::from_jwk(&private).unwrap();
    let a4 = &v["A.4_ed25519_signing"];
    let jws = jws::sign_bytes(
        &key,
        a4["protected_header"].as_str().unwrap().as_bytes(),
        a4["payload_utf8"].as_str().unwrap().as_bytes(),
    );
    assert_eq!(jws, a4["jws_compact"].as_str().unwrap());
    // A.5: validation with the public key.
    let parsed = jws::CompactJws::parse(&jws).unwrap();
    assert!(parsed.verify(&key.public_key()));
}

#[test]
fn minted_token_verifies_and_returns_its_claims() {
    let (key, keys) = gateway();
    let agent = SigningKey::from_seed(&[1; 32]);
    let minted = token::mint(&key, &claims(&agent)).unwrap();
    assert_eq!(verify_at(&minted, &keys, NOW).unwrap(), claims(&agent));
    let parsed = jws::CompactJws::parse(&minted).unwrap();
    assert_eq!(
        parsed.header::<Value>().unwrap(),
        json!({"alg": "EdDSA", "typ": TOKEN_TYP, "kid": key.kid()})
    );
}

#[test]
fn time_window_edges() {
    let (key, keys) = gateway();
    let minted = token::mint(&key, &claims(&key)).unwrap();
    // nbf - skew <= now < exp + skew
    assert!(verify_at(&minted, &keys, NOW - 5).is_ok());
    assert!(matches!(
        verify_at(&minted, &keys, NOW - 6),
        Err(TokenError::NotYetValid { .. })
    ));
    assert!(verify_at(&minted, &keys, NOW + 34).is_ok());
    assert!(matches!(
        verify_at(&minted, &keys, NOW + 35),
        Err(TokenError::Expired { .. })
    ));
}

#[test]
fn skew_over_five_seconds_is_not_honoured() {
    let (key, keys) = gateway();
    let minted = token::mint(&key, &claims(&key)).unwrap();
    let hash = params().hash();
    let lenient = Expected {
        issuer: ISSUER,
        audience: AUDIENCE,
        action: ACTION,
        params_sha256: &hash,
        now: NOW + 40,
        skew: 3600,
    };
    assert!(matches!(
        token::verify(&minted, &keys, &lenient),
        Err(TokenError::Expired { skew: 5, .. })
    ));
}

#[test]
fn lifetime_over_thirty_seconds_is_refused() {
    let (key, keys) = gateway();
    let long = ApprovalClaims {
        exp: NOW + 31,
        ..claims(&key)
    };
    let minted = token::mint(&key, &long).unwrap();
    assert_eq!(
        verify_at(&minted, &keys, NOW),
        Err(TokenError::LifetimeTooLong { lifetime: 31 })
    );
    let early_nbf = ApprovalClaims {
        nbf: NOW - 100,
        ..claims(&key)
    };
    let minted = token::mint(&key, &early_nbf).unwrap();
    assert_eq!(
        verify_at(&minted, &keys, NOW),
        Err(TokenError::LifetimeTooLong { lifetime: 130 })
    );
}

#[test]
fn every_claim_the_service_checks_is_enforced() {
    let (key, keys) = gateway();
    let cases: Vec<(ApprovalClaims, &str)> = vec![
        (
            ApprovalClaims {
                iss: "https://evil.example".into(),
                ..claims(&key)
            },
            "wrong_issuer",
        ),
        (
            ApprovalClaims {
                aud: "https://bank.example".into(),
                ..claims(&key)
            },
            "wrong_audience",
        ),
        (
            ApprovalClaims {
                action: "flights.cancel".into(),
                ..claims(&key)
            },
            "action_mismatch",
        ),
        (
            ApprovalClaims {
                params_sha256: CanonicalParams::parse(br#"{"to":"LAX"}"#, &Limits::default())
                    .unwrap()
                    .hash(),
                ..claims(&key)
            },
            "params_mismatch",
        ),
    ];
    for (claims, code) in cases {
        let minted = token::mint(&key, &claims).unwrap();
        let error = verify_at(&minted, &keys, NOW).unwrap_err();
        assert_eq!(error.code().as_str(), code, "{error}");
    }
}

#[test]
fn any_changed_claim_breaks_the_signature() {
    let (key, keys) = gateway();
    let minted = token::mint(&key, &claims(&key)).unwrap();
    let original = serde_json::to_value(claims(&key)).unwrap();
    let changes = [
        ("sub", json!("mallory")),
        ("jti", json!("jti-2")),
        ("approval", json!("apr_2")),
        ("exp", json!(NOW + 20)),
        ("iat", json!(NOW + 1)),
        ("act", json!({"sub": "another-agent"})),
        ("cnf", json!({"jkt": "another-agent"})),
    ];
    let (header_b64, rest) = minted.split_once('.').unwrap();
    let signature_b64 = rest.rsplit_once('.').unwrap().1;
    for (name, value) in changes {
        let mut changed = original.clone();
        changed[name] = value;
        let payload_b64 = base64url::encode(serde_json::to_vec(&changed).unwrap());
        let tampered = format!("{header_b64}.{payload_b64}.{signature_b64}");
        assert!(
            matches!(
                verify_at(&tampered, &keys, NOW),
                Err(TokenError::BadSignature { .. })
            ),
            "changing {name} was not caught"
        );
    }
}

#[test]
fn flipped_signature_bits_are_refused() {
    let (key, keys) = gateway();
    let minted = token::mint(&key, &claims(&key)).unwrap();
    let (input, signature_b64) = minted.rsplit_once('.').unwrap();
    let signature = base64url::decode(signature_b64).unwrap();
    for bit in [0, 7, 100, 255, 256, 511] {
        let mut flipped = signature.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        let tampered = format!("{input}.{}", base64url::encode(&flipped));
        assert!(
            matches!(
                verify_at(&tampered, &keys, NOW),
                Err(TokenError::BadSignature { .. })
            ),
            "bit {bit}"
        );
    }
}

#[test]
fn alg_none_is_refused() {
    let (key, keys) = gateway();
    let payload = serde_json::to_value(claims(&key)).unwrap();
    let header = json!({"alg": "none", "typ": TOKEN_TYP, "kid": key.kid()});
    for signature in [Vec::new(), vec![0; 64]] {
        let unsigned = assemble(&header, &payload, |_| signature.clone());
        assert_eq!(
            verify_at(&unsigned, &keys, NOW),
            Err(TokenError::WrongAlg {
                found: "none".into()
            })
        );
    }
}

#[test]
fn hs256_keyed_with_the_public_key_is_refused() {
    let (key, keys) = gateway();
    let payload = serde_json::to_value(claims(&key)).unwrap();
    let header = json!({"alg": "HS256", "typ": TOKEN_TYP, "kid": key.kid()});
    // The classic confusion attack: HMAC keyed with the public key's bytes, and with its JWK text.
    let public_x = key.public_jwk().x.unwrap();
    let secrets = [
        base64url::decode(&public_x).unwrap(),
        serde_json::to_vec(&key.public_jwk()).unwrap(),
    ];
    for secret in secrets {
        let forged = assemble(&header, &payload, |input| {
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&secret).unwrap();
            mac.update(input);
            mac.finalize().into_bytes().to_vec()
        });
        assert_eq!(
            verify_at(&forged, &keys, NOW),
            Err(TokenError::WrongAlg {
                found: "HS256".into()
            })
        );
    }
}

#[test]
fn wrong_or_missing_typ_is_refused() {
    let (key, keys) = gateway();
    let payload = serde_json::to_value(claims(&key)).unwrap();
    for typ in [json!("JWT"), json!("dpop+jwt"), Value::Null] {
        let mut header = header(&key);
        if typ.is_null() {
            header.as_object_mut().unwrap().remove("typ");
        } else {
            header["typ"] = typ;
        }
        let minted = assemble(&header, &payload, |input| key.sign(input).to_vec());
        assert!(matches!(
            verify_at(&minted, &keys, NOW),
            Err(TokenError::WrongTyp { .. })
        ));
    }
}

#[test]
fn unknown_or_missing_kid_is_refused() {
    let (_, keys) = gateway();
    let stranger = SigningKey::from_seed(&[43; 32]);
    let minted = token::mint(&stranger, &claims(&stranger)).unwrap();
    assert_eq!(
        verify_at(&minted, &keys, NOW),
        Err(TokenError::UnknownKid {
            kid: stranger.kid().into()
        })
    );
    let mut header = header(&stranger);
    header.as_object_mut().unwrap().remove("kid");
    let payload = serde_json::to_value(claims(&stranger)).unwrap();
    let no_kid = assemble(&header, &payload, |input| stranger.sign(input).to_vec());
    assert_eq!(verify_at(&no_kid, &keys, NOW), Err(TokenError::MissingKid));
}

#[test]
fn another_keys_signature_under_a_known_kid_is_refused() {
    let (key, keys) = gateway();
    let stranger = SigningKey::from_seed(&[43; 32]);
    let payload = serde_json::to_value(claims(&key)).unwrap();
    let forged = assemble(&header(&key), &payload, |input| {
        stranger.sign(input).to_vec()
    });
    assert!(matches!(
        verify_at(&forged, &keys, NOW),
        Err(TokenError::BadSignature { .. })
    ));
}

#[test]
fn rotation_old_tokens_verify_while_the_old_key_is_published() {
    let old = SigningKey::from_seed(&[50; 32]);
    let new = SigningKey::from_seed(&[51; 32]);
    let old_token = token::mint(&old, &claims(&old)).unwrap();
    let new_token = token::mint(&new, &claims(&new)).unwrap();

    let both: Jwks = serde_json::from_str(
        &serde_json::to_string(&Jwks::from_signing_keys([&new, &old])).unwrap(),
    )
    .unwrap();
    let keys = KeySet::from_jwks(&both).unwrap();
    assert!(verify_at(&old_token, &keys, NOW).is_ok());
    assert!(verify_at(&new_token, &keys, NOW).is_ok());

    let retired = KeySet::from_jwks(&Jwks::from_signing_keys([&new])).unwrap();
    assert!(matches!(
        verify_at(&old_token, &retired, NOW),
        Err(TokenError::UnknownKid { .. })
    ));
}

#[test]
fn malformed_claims_are_named() {
    let (key, keys) = gateway();
    let mut payload = serde_json::to_value(claims(&key)).unwrap();
    payload["params_sha256"] = json!("not-a-hash");
    let minted = assemble(&header(&key), &payload, |input| key.sign(input).to_vec());
    let error = verify_at(&minted, &keys, NOW).unwrap_err();
    assert!(matches!(error, TokenError::MalformedClaims(_)), "{error}");
    assert!(error.to_string().contains("params_sha256"), "{error}");

    payload = serde_json::to_value(claims(&key)).unwrap();
    payload.as_object_mut().unwrap().remove("exp");
    let minted = assemble(&header(&key), &payload, |input| key.sign(input).to_vec());
    let error = verify_at(&minted, &keys, NOW).unwrap_err();
    assert!(error.to_string().contains("exp"), "{error}");
}

#[test]
fn params_hash_equals_sha256_of_canonical_params() {
    let hash: ParamsHash = params().hash();
    assert_eq!(
        params().as_str(),
        r#"{"date":"2026-12-01","from":"SFO","passenger":"Alice","to":"NYC"}"#
    );
    // Computed independently with Python's hashlib over the canonical text above.
    assert_eq!(hash.as_str(), "7WikshacYJc2yZ1GpGWbdwiflA6fBiUWJ3UoVN2T2Y4");
}
