//! A software authenticator written here (P-256 and Ed25519), registering credentials and making
//! assertions the way a browser and an authenticator would, checked with the offline verifier.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use handsign_protocol::base64url;
use handsign_protocol::webauthn::{
    AssertionError, AssertionExpectations, AttestedCredential, CoseAlgorithm, CredentialPublicKey,
    verify_assertion,
};
use support::{Key, ORIGIN, RP_ID, SoftAuthenticator, UP, UP_UV, client_data_json};

fn register(authenticator: &SoftAuthenticator) -> CredentialPublicKey {
    let credential =
        AttestedCredential::from_attestation_object(&authenticator.attestation_object()).unwrap();
    assert_eq!(
        credential.credential_id(),
        authenticator.credential_id.as_slice()
    );
    assert_eq!(
        credential.credential_public_key_cose(),
        authenticator.cose_key().as_slice()
    );
    assert!(credential.is_for_rp_id(RP_ID));
    credential.credential_public_key().clone()
}

const CHALLENGE: [u8; 32] = [0x5a; 32];

fn origins() -> Vec<String> {
    vec![ORIGIN.to_owned()]
}

fn expect<'a>(origins: &'a [String], require_user_verified: bool) -> AssertionExpectations<'a> {
    AssertionExpectations {
        challenge: &CHALLENGE,
        rp_id: RP_ID,
        allowed_origins: origins,
        require_user_verified,
    }
}

fn authenticators() -> Vec<(SoftAuthenticator, CoseAlgorithm)> {
    vec![
        (SoftAuthenticator::p256(7), CoseAlgorithm::Es256),
        (SoftAuthenticator::ed25519(7), CoseAlgorithm::EdDsa),
    ]
}

#[test]
fn user_verified_assertions_verify() {
    let origins = origins();
    for (mut authenticator, alg) in authenticators() {
        let key = register(&authenticator);
        assert_eq!(key.alg(), alg);
        let assertion = authenticator.assert(&CHALLENGE, ORIGIN, UP_UV);
        let verified = verify_assertion(&key, &assertion, &expect(&origins, true)).unwrap();
        assert!(verified.flags.user_present() && verified.flags.user_verified());
        assert_eq!(verified.sign_count, 1);
        assert_eq!(verified.alg, alg);

        let second = authenticator.assert(&CHALLENGE, ORIGIN, UP_UV);
        assert_eq!(
            verify_assertion(&key, &second, &expect(&origins, true))
                .unwrap()
                .sign_count,
            2
        );
        // An older assertion still verifies offline after the counter moved on: receipts must.
        assert!(verify_assertion(&key, &assertion, &expect(&origins, true)).is_ok());
    }
}

#[test]
fn missing_user_verification_is_refused_only_when_required() {
    let origins = origins();
    for (mut authenticator, _) in authenticators() {
        let key = register(&authenticator);
        let assertion = authenticator.assert(&CHALLENGE, ORIGIN, UP);
        assert_eq!(
            verify_assertion(&key, &assertion, &expect(&origins, true)),
            Err(AssertionError::UserNotVerified)
        );
        let verified = verify_assertion(&key, &assertion, &expect(&origins, false)).unwrap();
        assert!(!verified.flags.user_verified());

        let absent = authenticator.assert(&CHALLENGE, ORIGIN, 0x04);
        assert_eq!(
            verify_assertion(&key, &absent, &expect(&origins, false)),
            Err(AssertionError::UserNotPresent)
        );
    }
}

#[test]
fn a_key_of_another_credential_is_refused() {
    let origins = origins();
    for (mut authenticator, alg) in authenticators() {
        let other = match alg {
            CoseAlgorithm::Es256 => SoftAuthenticator::p256(8),
            _ => SoftAuthenticator::ed25519(8),
        };
        let other_key = register(&other);
        let assertion = authenticator.assert(&CHALLENGE, ORIGIN, UP_UV);
        assert_eq!(
            verify_assertion(&other_key, &assertion, &expect(&origins, true)),
            Err(AssertionError::BadSignature { alg })
        );
    }
    // And a key of the other algorithm cannot even parse the signature.
    let mut p256 = SoftAuthenticator::p256(9);
    let ed_key = register(&SoftAuthenticator::ed25519(9));
    let assertion = p256.assert(&CHALLENGE, ORIGIN, UP_UV);
    assert_eq!(
        verify_assertion(&ed_key, &assertion, &expect(&origins, true)),
        Err(AssertionError::MalformedSignature {
            alg: CoseAlgorithm::EdDsa
        })
    );
}

#[test]
fn cose_round_trip_matches_the_key() {
    let p256 = SoftAuthenticator::p256(11);
    let Key::P256(signing) = &p256.key else {
        unreachable!()
    };
    let point = signing.verifying_key().to_sec1_point(false);
    let key = CredentialPublicKey::from_cose(&p256.cose_key()).unwrap();
    assert_eq!(key.alg(), CoseAlgorithm::Es256);
    assert_eq!((key.alg().number(), key.alg().name()), (-7, "ES256"));
    assert_eq!(key.cose_bytes(), p256.cose_key().as_slice());
    assert_eq!(
        key.to_jwk(),
        serde_json::json!({
            "kty": "EC",
            "crv": "P-256",
            "x": base64url::encode(&point.as_bytes()[1..33]),
            "y": base64url::encode(&point.as_bytes()[33..65]),
        })
    );
    assert_eq!(key, register(&p256));
    assert_ne!(key, register(&SoftAuthenticator::p256(12)));

    let ed = SoftAuthenticator::ed25519(11);
    let Key::Ed25519(signing) = &ed.key else {
        unreachable!()
    };
    let key = CredentialPublicKey::from_cose(&ed.cose_key()).unwrap();
    assert_eq!((key.alg().number(), key.alg().name()), (-8, "EdDSA"));
    assert_eq!(
        key.to_jwk(),
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": base64url::encode(signing.verifying_key().as_bytes()),
        })
    );
}

/// n, the order of the P-256 group.
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// n - s, big-endian.
fn negate_mod_order(s: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut digit = i16::from(P256_ORDER[i]) - i16::from(s[i]) - borrow;
        borrow = 0;
        if digit < 0 {
            digit += 256;
            borrow = 1;
        }
        out[i] = u8::try_from(digit).unwrap();
    }
    out
}

#[test]
fn es256_accepts_both_low_s_and_high_s() {
    let origins = origins();
    let mut authenticator = SoftAuthenticator::p256(13);
    let key = register(&authenticator);
    for challenge_byte in 0..8u8 {
        let challenge = [challenge_byte; 32];
        let expected = AssertionExpectations {
            challenge: &challenge,
            ..expect(&origins, true)
        };
        let mut assertion = authenticator.assert(&challenge, ORIGIN, UP_UV);
        let signature = p256::ecdsa::Signature::from_der(&assertion.signature).unwrap();
        let (r, s) = signature.split_bytes();
        let flipped = p256::ecdsa::Signature::from_scalars(r, negate_mod_order(&s)).unwrap();
        assert_ne!(flipped, signature);
        assert!(verify_assertion(&key, &assertion, &expected).is_ok());
        assertion.signature = flipped.to_der().as_bytes().to_vec();
        assert!(
            verify_assertion(&key, &assertion, &expected).is_ok(),
            "the other S form must verify too"
        );
    }
}

#[test]
fn client_data_is_checked_member_by_member() {
    let origins = origins();
    for (mut authenticator, alg) in authenticators() {
        let key = register(&authenticator);
        let head = authenticator.authenticator_data_head(RP_ID, UP_UV);
        let mut case = |client_data: String| {
            let assertion = authenticator.assert_raw(head.clone(), client_data);
            verify_assertion(&key, &assertion, &expect(&origins, true))
        };

        // webauthn-rs's software passkey writes the origin with a trailing slash.
        assert!(
            case(client_data_json(
                "webauthn.get",
                &CHALLENGE,
                "http://localhost:8080/",
                ""
            ))
            .is_ok()
        );
        // Unknown members are ignored (and signed over).
        assert!(
            case(client_data_json(
                "webauthn.get",
                &CHALLENGE,
                ORIGIN,
                r#","extraData":"x""#
            ))
            .is_ok()
        );

        assert_eq!(
            case(client_data_json("webauthn.create", &CHALLENGE, ORIGIN, "")),
            Err(AssertionError::WrongCeremonyType {
                found: "webauthn.create".into()
            })
        );
        assert_eq!(
            case(client_data_json("webauthn.get", &[1; 32], ORIGIN, "")),
            Err(AssertionError::ChallengeMismatch)
        );
        assert_eq!(
            case(client_data_json(
                "webauthn.get",
                &CHALLENGE,
                "http://localhost:8080/approve",
                ""
            )),
            Err(AssertionError::OriginNotAllowed {
                origin: "http://localhost:8080/approve".into()
            })
        );
        assert_eq!(
            case(client_data_json(
                "webauthn.get",
                &CHALLENGE,
                "http://localhost:8081",
                ""
            )),
            Err(AssertionError::OriginNotAllowed {
                origin: "http://localhost:8081".into()
            })
        );
        assert_eq!(
            case(client_data_json(
                "webauthn.get",
                &CHALLENGE,
                ORIGIN,
                r#","topOrigin":"http://evil.example""#
            )),
            Err(AssertionError::TopOriginPresent)
        );
        let cross = format!(
            r#"{{"type":"webauthn.get","challenge":"{}","origin":"{ORIGIN}","crossOrigin":true}}"#,
            base64url::encode(CHALLENGE)
        );
        assert_eq!(case(cross), Err(AssertionError::CrossOrigin));
        let padded = format!(
            r#"{{"type":"webauthn.get","challenge":"{}=","origin":"{ORIGIN}"}}"#,
            base64url::encode(CHALLENGE)
        );
        assert_eq!(case(padded), Err(AssertionError::MalformedChallenge));
        let duplicated = format!(
            r#"{{"type":"webauthn.get","challenge":"{0}","challenge":"{0}","origin":"{ORIGIN}"}}"#,
            base64url::encode(CHALLENGE)
        );
        assert!(matches!(
            case(duplicated),
            Err(AssertionError::ClientDataNotJson(_))
        ));
        assert!(matches!(
            case("not json".into()),
            Err(AssertionError::ClientDataNotJson(_))
        ));

        // The client data is bound by the signature: an edit after signing is caught.
        let mut assertion = authenticator.assert(&CHALLENGE, ORIGIN, UP_UV);
        assertion.client_data_json =
            client_data_json("webauthn.get", &CHALLENGE, ORIGIN, r#","extraData":"y""#)
                .into_bytes();
        assert_eq!(
            verify_assertion(&key, &assertion, &expect(&origins, true)),
            Err(AssertionError::BadSignature { alg })
        );
    }
}

#[test]
fn authenticator_data_is_checked() {
    let origins = origins();
    for (mut authenticator, alg) in authenticators() {
        let key = register(&authenticator);
        let client_data = client_data_json("webauthn.get", &CHALLENGE, ORIGIN, "");

        let other_rp = authenticator.authenticator_data_head("example.org", UP_UV);
        assert_eq!(
            verify_assertion(
                &key,
                &authenticator.assert_raw(other_rp, client_data.clone()),
                &expect(&origins, true)
            ),
            Err(AssertionError::RpIdHashMismatch {
                rp_id: RP_ID.into()
            })
        );

        let backed_up_not_eligible = authenticator.authenticator_data_head(RP_ID, UP_UV | 0x10);
        assert_eq!(
            verify_assertion(
                &key,
                &authenticator.assert_raw(backed_up_not_eligible, client_data.clone()),
                &expect(&origins, true)
            ),
            Err(AssertionError::InconsistentBackupFlags)
        );
        let synced = authenticator.authenticator_data_head(RP_ID, UP_UV | 0x18);
        let verified = verify_assertion(
            &key,
            &authenticator.assert_raw(synced, client_data.clone()),
            &expect(&origins, true),
        )
        .unwrap();
        assert!(verified.flags.backup_eligible() && verified.flags.backed_up());

        // Extensions (ED flag) after the head are signed over like the rest.
        let mut with_extensions = authenticator.authenticator_data_head(RP_ID, UP_UV | 0x80);
        with_extensions.extend_from_slice(&[0xa1, 0x63, b'c', b'r', b'b', 0xf5]);
        let assertion = authenticator.assert_raw(with_extensions, client_data.clone());
        assert!(verify_assertion(&key, &assertion, &expect(&origins, true)).is_ok());

        let mut short = authenticator.assert(&CHALLENGE, ORIGIN, UP_UV);
        short.authenticator_data.truncate(36);
        assert_eq!(
            verify_assertion(&key, &short, &expect(&origins, true)),
            Err(AssertionError::AuthenticatorDataTooShort { len: 36 })
        );

        // Raising the counter after signing breaks the signature.
        let mut replayed = authenticator.assert(&CHALLENGE, ORIGIN, UP_UV);
        if let Some(last) = replayed.authenticator_data.last_mut() {
            *last = last.wrapping_add(1);
        }
        assert_eq!(
            verify_assertion(&key, &replayed, &expect(&origins, true)),
            Err(AssertionError::BadSignature { alg })
        );
    }
}

#[test]
fn errors_name_the_check_that_failed() {
    assert_eq!(
        AssertionError::UserNotVerified.to_string(),
        "authenticatorData user-verified (UV) flag is not set, and user verification is required"
    );
    assert_eq!(
        AssertionError::BadSignature {
            alg: CoseAlgorithm::Es256
        }
        .to_string(),
        "signature does not verify under the ES256 (-7) credential public key"
    );
    assert_eq!(
        AssertionError::OriginNotAllowed {
            origin: "https://x.example".into()
        }
        .to_string(),
        "clientDataJSON origin \"https://x.example\" is not an allowed origin"
    );
}
