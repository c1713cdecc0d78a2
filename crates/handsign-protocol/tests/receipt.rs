//! Receipts made with real passkey material (a software authenticator), checked offline, and every
//! alteration an auditor must catch.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use handsign_protocol::base64url;
use handsign_protocol::canonical::Limits;
use handsign_protocol::keys::{KeySet, SigningKey};
use handsign_protocol::params::CanonicalParams;
use handsign_protocol::receipt::{Anchored, PinnedCredential, Receipt, ReceiptError, TrustAnchor};
use handsign_protocol::statement::{Decision, STATEMENT_VERSION, Statement};
use handsign_protocol::webauthn::{AssertionError, AttestedCredential};
use serde_json::{Value, json};
use support::{ORIGIN, RP_ID, SoftAuthenticator, UP, UP_UV, issue_receipt};

fn params() -> Value {
    json!({"from": "SFO", "to": "NYC", "date": "2026-12-01", "passenger": {"name": "Alice Ng"}})
}

fn statement(decision: Decision) -> Statement {
    Statement {
        v: STATEMENT_VERSION.into(),
        id: "apr_7".into(),
        iss: "http://localhost:8080".into(),
        sub: "alice".into(),
        act: SigningKey::from_seed(&[3; 32]).kid().into(),
        aud: "https://travel.example".into(),
        action: "flights.book".into(),
        params_sha256: CanonicalParams::from_value(&params(), &Limits::default())
            .unwrap()
            .hash(),
        decision,
        nonce: base64url::encode([9u8; 32]),
        iat: 1_800_000_000,
    }
}

fn issue(
    authenticator: &mut SoftAuthenticator,
    decision: Decision,
    flags: u8,
    gateway: &SigningKey,
) -> Receipt {
    issue_receipt(authenticator, statement(decision), params(), flags, gateway)
}

fn gateway() -> SigningKey {
    SigningKey::from_seed(&[77; 32])
}

/// Serializes, changes the JSON with `edit`, and verifies the result as an auditor would.
fn verify_edited(
    receipt: &Receipt,
    edit: impl FnOnce(&mut Value),
) -> Result<handsign_protocol::receipt::VerifiedReceipt, ReceiptError> {
    let mut value = serde_json::to_value(receipt).unwrap();
    edit(&mut value);
    let keys = KeySet::from_signing_keys([&gateway()]);
    Receipt::parse(&serde_json::to_vec(&value).unwrap())?.verify(TrustAnchor::Gateway(&keys))
}

#[test]
fn receipts_from_p256_and_ed25519_passkeys_verify_offline() {
    for mut authenticator in [SoftAuthenticator::p256(5), SoftAuthenticator::ed25519(5)] {
        for decision in [Decision::Approve, Decision::Deny] {
            let receipt = issue(&mut authenticator, decision, UP_UV, &gateway());
            let verified = verify_edited(&receipt, |_| {}).unwrap();
            assert_eq!(verified.decision, decision);
            assert_eq!(verified.user, "alice");
            assert_eq!(verified.action, "flights.book");
            assert_eq!(
                verified.anchored,
                Anchored::GatewaySignature {
                    kid: gateway().kid().into()
                }
            );
            let unchecked = Receipt::parse(&serde_json::to_vec(&receipt).unwrap())
                .unwrap()
                .verify(TrustAnchor::None)
                .unwrap();
            assert_eq!(unchecked.anchored, Anchored::Unverified);
        }
    }
}

#[test]
fn changed_params_are_caught_by_the_hash() {
    let receipt = issue(
        &mut SoftAuthenticator::p256(5),
        Decision::Approve,
        UP_UV,
        &gateway(),
    );
    let error = verify_edited(&receipt, |r| r["params"]["to"] = json!("LAX")).unwrap_err();
    assert!(
        matches!(error, ReceiptError::ParamsHashMismatch { .. }),
        "{error}"
    );
}

#[test]
fn a_changed_statement_no_longer_matches_the_passkey_challenge() {
    let receipt = issue(
        &mut SoftAuthenticator::p256(5),
        Decision::Deny,
        UP_UV,
        &gateway(),
    );
    let edits: [(&str, Value); 4] = [
        ("decision", json!("approve")),
        ("sub", json!("bob")),
        ("aud", json!("https://bank.example")),
        ("id", json!("apr_8")),
    ];
    for (member, value) in edits {
        let error = verify_edited(&receipt, |r| r["statement"][member] = value).unwrap_err();
        assert!(
            matches!(
                error,
                ReceiptError::Assertion(AssertionError::ChallengeMismatch)
            ),
            "{member}: {error}"
        );
    }
}

#[test]
fn a_flipped_passkey_signature_bit_is_refused() {
    let receipt = issue(
        &mut SoftAuthenticator::ed25519(5),
        Decision::Approve,
        UP_UV,
        &gateway(),
    );
    let mut signature = base64url::decode(&receipt.body.evidence.signature).unwrap();
    signature[10] ^= 0x01;
    let error = verify_edited(&receipt, |r| {
        r["evidence"]["signature"] = json!(base64url::encode(&signature));
    })
    .unwrap_err();
    assert!(
        matches!(
            error,
            ReceiptError::Assertion(AssertionError::BadSignature { .. })
        ),
        "{error}"
    );
}

#[test]
fn another_passkeys_public_key_does_not_verify_the_assertion() {
    let receipt = issue(
        &mut SoftAuthenticator::p256(5),
        Decision::Approve,
        UP_UV,
        &gateway(),
    );
    let other = AttestedCredential::from_attestation_object(
        &SoftAuthenticator::p256(6).attestation_object(),
    )
    .unwrap();
    let error = verify_edited(&receipt, |r| {
        r["credential"] = json!({
            "public_key_cose": base64url::encode(other.credential_public_key_cose()),
            "public_key_jwk": other.credential_public_key().to_jwk(),
        });
    })
    .unwrap_err();
    assert!(
        matches!(
            error,
            ReceiptError::Assertion(AssertionError::BadSignature { .. })
        ),
        "{error}"
    );

    let mismatch = verify_edited(&receipt, |r| {
        r["credential"]["public_key_jwk"] = other.credential_public_key().to_jwk();
    })
    .unwrap_err();
    assert!(matches!(mismatch, ReceiptError::JwkMismatch), "{mismatch}");
}

#[test]
fn rp_id_origin_and_user_verification_are_checked() {
    let receipt = issue(
        &mut SoftAuthenticator::p256(5),
        Decision::Approve,
        UP_UV,
        &gateway(),
    );
    let error = verify_edited(&receipt, |r| r["rp_id"] = json!("example.org")).unwrap_err();
    assert!(
        matches!(
            error,
            ReceiptError::Assertion(AssertionError::RpIdHashMismatch { .. })
        ),
        "{error}"
    );
    let error =
        verify_edited(&receipt, |r| r["origins"] = json!(["https://evil.example"])).unwrap_err();
    assert!(
        matches!(
            error,
            ReceiptError::Assertion(AssertionError::OriginNotAllowed { .. })
        ),
        "{error}"
    );

    let presence_only = issue(
        &mut SoftAuthenticator::p256(5),
        Decision::Approve,
        UP,
        &gateway(),
    );
    let error = verify_edited(&presence_only, |_| {}).unwrap_err();
    assert!(
        matches!(
            error,
            ReceiptError::Assertion(AssertionError::UserNotVerified)
        ),
        "{error}"
    );
}

#[test]
fn the_gateway_signature_covers_what_the_passkey_does_not() {
    let receipt = issue(
        &mut SoftAuthenticator::p256(5),
        Decision::Approve,
        UP_UV,
        &gateway(),
    );
    // The passkey signature holds either way; only the gateway's signature binds these members.
    let edits: [(&str, Value); 3] = [
        ("origins", json!([ORIGIN, "https://evil.example"])),
        ("evidence", {
            let mut evidence = serde_json::to_value(&receipt.body.evidence).unwrap();
            evidence["user_handle"] = json!(base64url::encode(b"bob"));
            evidence
        }),
        ("evidence", {
            let mut evidence = serde_json::to_value(&receipt.body.evidence).unwrap();
            evidence["credential_id"] = json!(base64url::encode(b"another"));
            evidence
        }),
    ];
    for (member, value) in edits {
        let error = verify_edited(&receipt, |r| r[member] = value).unwrap_err();
        assert!(
            matches!(error, ReceiptError::BadGatewaySignature),
            "{member}: {error}"
        );
    }

    let stranger = SigningKey::from_seed(&[78; 32]);
    let foreign = issue(
        &mut SoftAuthenticator::p256(5),
        Decision::Approve,
        UP_UV,
        &stranger,
    );
    let error = verify_edited(&foreign, |_| {}).unwrap_err();
    assert!(
        matches!(error, ReceiptError::UnknownGatewayKid(_)),
        "{error}"
    );
}

#[test]
fn receipts_are_read_strictly() {
    let receipt = issue(
        &mut SoftAuthenticator::p256(5),
        Decision::Approve,
        UP_UV,
        &gateway(),
    );
    let error = verify_edited(&receipt, |r| r["note"] = json!("added")).unwrap_err();
    assert!(matches!(error, ReceiptError::Malformed(_)), "{error}");
    let error = verify_edited(&receipt, |r| {
        r.as_object_mut().unwrap().remove("signature");
    })
    .unwrap_err();
    assert!(matches!(error, ReceiptError::Malformed(_)), "{error}");

    // A duplicate member cannot be resolved silently either way.
    let text = serde_json::to_string(&receipt).unwrap();
    let duplicated = text.replacen(
        "{\"credential\"",
        "{\"rp_id\":\"example.org\",\"credential\"",
        1,
    );
    assert_ne!(duplicated, text);
    let error = Receipt::parse(duplicated.as_bytes()).unwrap_err();
    assert!(error.to_string().contains("duplicate"), "{error}");
}

#[test]
fn a_pinned_credential_anchors_only_its_own_key_rp_id_and_origin() {
    let mut alice = SoftAuthenticator::p256(5);
    let receipt = issue(&mut alice, Decision::Approve, UP_UV, &gateway());
    let mut jwk = receipt.body.credential.public_key_jwk.clone();
    jwk["kid"] = json!("alice's laptop");
    let pinned = PinnedCredential {
        public_key_jwk: jwk,
        rp_id: RP_ID.into(),
        origin: ORIGIN.into(),
    };
    let verified = receipt.verify(TrustAnchor::Credential(&pinned)).unwrap();
    assert_eq!(
        verified.anchored,
        Anchored::PinnedCredential {
            rp_id: RP_ID.into(),
            origin: ORIGIN.into()
        }
    );

    // A receipt made from scratch with another passkey (and another gateway key) is
    // self-consistent, and nothing more.
    let forged = issue(
        &mut SoftAuthenticator::p256(6),
        Decision::Approve,
        UP_UV,
        &SigningKey::from_seed(&[66; 32]),
    );
    assert_eq!(
        forged.verify(TrustAnchor::None).unwrap().anchored,
        Anchored::Unverified
    );
    let error = forged.verify(TrustAnchor::Credential(&pinned)).unwrap_err();
    assert!(matches!(error, ReceiptError::NotPinnedKey), "{error}");

    let elsewhere = PinnedCredential {
        rp_id: "handsign.example.com".into(),
        ..pinned.clone()
    };
    let error = receipt
        .verify(TrustAnchor::Credential(&elsewhere))
        .unwrap_err();
    assert!(
        matches!(error, ReceiptError::NotPinnedRpId { .. }),
        "{error}"
    );
    let other_origin = PinnedCredential {
        origin: "https://evil.example".into(),
        ..pinned
    };
    let error = receipt
        .verify(TrustAnchor::Credential(&other_origin))
        .unwrap_err();
    assert!(
        matches!(
            error,
            ReceiptError::Assertion(AssertionError::OriginNotAllowed { .. })
        ),
        "{error}"
    );
}
