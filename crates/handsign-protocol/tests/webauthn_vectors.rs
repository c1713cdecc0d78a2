//! The offline WebAuthn verifier against published vectors: W3C WebAuthn Level 3 section 16 (W3C
//! Document License) and real-device pairs from webauthn-rs's tests (MPL-2.0). Copies of both are
//! in `tests/vectors/webauthn/` with their licences.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use handsign_protocol::base64url;
use handsign_protocol::webauthn::{
    Assertion, AssertionError, AssertionExpectations, AttestationError, AttestedCredential,
    CoseAlgorithm, CoseKeyError, CredentialPublicKey, verify_assertion,
};
use serde_json::Value;

const W3C: &str = include_str!("vectors/webauthn/w3c_webauthn_l3_test_vectors.json");
const REAL: &str = include_str!("vectors/webauthn/webauthn_rs_real_pairs.json");

fn hex(value: &Value) -> Vec<u8> {
    hex::decode(value.as_str().unwrap()).unwrap()
}

fn b64(value: &Value) -> Vec<u8> {
    base64url::decode(value.as_str().unwrap()).unwrap()
}

struct W3cPair {
    anchor: String,
    attestation_object: Vec<u8>,
    challenge: Vec<u8>,
    assertion: Assertion,
    derived: Value,
}

fn w3c() -> (Value, Vec<W3cPair>) {
    let document: Value = serde_json::from_str(W3C).unwrap();
    let pairs = document["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| W3cPair {
            anchor: pair["anchor"].as_str().unwrap().to_owned(),
            attestation_object: hex(&pair["registration"]["attestationObject"]),
            challenge: hex(&pair["authentication"]["challenge"]),
            assertion: Assertion {
                authenticator_data: hex(&pair["authentication"]["authenticatorData"]),
                client_data_json: hex(&pair["authentication"]["clientDataJSON"]),
                signature: hex(&pair["authentication"]["signature"]),
            },
            derived: pair["derived"].clone(),
        })
        .collect::<Vec<_>>();
    assert_eq!(pairs.len(), 15, "the W3C file has 15 pairs");
    (document, pairs)
}

/// What each W3C pair must give: the algorithm that verifies it, or why it is refused.
enum Outcome {
    Verifies(CoseAlgorithm),
    UnsupportedAlgorithm(i64),
    Refused(AssertionError),
}

fn expected_outcome(anchor: &str) -> Outcome {
    match anchor {
        "sctn-test-vectors-none-es256"
        | "sctn-test-vectors-packed-self-es256"
        | "sctn-test-vectors-none-es256-long-credential-id"
        | "sctn-test-vectors-packed-es256"
        | "sctn-test-vectors-tpm-es256"
        | "sctn-test-vectors-android-key-es256"
        | "sctn-test-vectors-apple-es256"
        | "sctn-test-vectors-fido-u2f-es256" => Outcome::Verifies(CoseAlgorithm::Es256),
        "sctn-test-vectors-packed-eddsa" => Outcome::Verifies(CoseAlgorithm::EdDsa),
        "sctn-test-vectors-packed-rs256" => Outcome::Verifies(CoseAlgorithm::Rs256),
        "sctn-test-vectors-packed-es384" => Outcome::UnsupportedAlgorithm(-35),
        "sctn-test-vectors-packed-es512" => Outcome::UnsupportedAlgorithm(-36),
        "sctn-test-vectors-packed-ed448" => Outcome::UnsupportedAlgorithm(-53),
        "sctn-test-vectors-none-es256-crossOrigin" => Outcome::Refused(AssertionError::CrossOrigin),
        "sctn-test-vectors-none-es256-topOrigin" => {
            Outcome::Refused(AssertionError::TopOriginPresent)
        }
        other => panic!("no expectation for W3C vector {other}"),
    }
}

/// The pairs whose assertions verify, with their keys.
fn verifying_pairs() -> Vec<(W3cPair, CredentialPublicKey, CoseAlgorithm)> {
    let (_, pairs) = w3c();
    pairs
        .into_iter()
        .filter_map(|pair| match expected_outcome(&pair.anchor) {
            Outcome::Verifies(alg) => {
                let credential =
                    AttestedCredential::from_attestation_object(&pair.attestation_object).unwrap();
                let key = credential.credential_public_key().clone();
                Some((pair, key, alg))
            }
            _ => None,
        })
        .collect()
}

fn w3c_origins() -> Vec<String> {
    vec!["https://example.org".to_owned()]
}

fn w3c_expectations<'a>(pair: &'a W3cPair, origins: &'a [String]) -> AssertionExpectations<'a> {
    AssertionExpectations {
        challenge: &pair.challenge,
        rp_id: "example.org",
        allowed_origins: origins,
        require_user_verified: false,
    }
}

#[test]
fn every_w3c_pair_verifies_or_is_refused_for_the_stated_reason() {
    let (document, pairs) = w3c();
    assert_eq!(document["rp_id"], "example.org");
    let origins = vec![document["origin"].as_str().unwrap().to_owned()];
    let mut verified = 0;
    for pair in &pairs {
        let anchor = &pair.anchor;
        let parsed = AttestedCredential::from_attestation_object(&pair.attestation_object);
        match expected_outcome(anchor) {
            Outcome::UnsupportedAlgorithm(alg) => {
                assert_eq!(
                    parsed,
                    Err(AttestationError::CredentialPublicKey(
                        CoseKeyError::UnsupportedAlgorithm { alg }
                    )),
                    "{anchor}"
                );
                let cose = hex(&pair.derived["credential_public_key_cose_hex"]);
                assert_eq!(
                    CredentialPublicKey::from_cose(&cose),
                    Err(CoseKeyError::UnsupportedAlgorithm { alg }),
                    "{anchor}"
                );
            }
            outcome => {
                let credential = parsed.unwrap_or_else(|error| panic!("{anchor}: {error}"));
                // What was parsed is what cbor2 found in the same bytes.
                assert_eq!(
                    credential.credential_public_key_cose(),
                    hex(&pair.derived["credential_public_key_cose_hex"]),
                    "{anchor}"
                );
                assert_eq!(
                    credential.credential_id(),
                    b64(&pair.derived["credential_id_b64url"]),
                    "{anchor}"
                );
                assert_eq!(
                    credential.attestation_format(),
                    pair.derived["fmt"],
                    "{anchor}"
                );
                assert_eq!(
                    format!("{:#04x}", credential.flags().bits()),
                    pair.derived["registration_flags"],
                    "{anchor}"
                );
                assert!(credential.is_for_rp_id("example.org"), "{anchor}");
                let key = credential.credential_public_key();
                assert_eq!(key.alg().number(), pair.derived["cose_alg"], "{anchor}");

                let result =
                    verify_assertion(key, &pair.assertion, &w3c_expectations(pair, &origins));
                match outcome {
                    Outcome::Verifies(alg) => {
                        let ok = result.unwrap_or_else(|error| panic!("{anchor}: {error}"));
                        assert_eq!(key.alg(), alg, "{anchor}");
                        assert_eq!(ok.alg, alg, "{anchor}");
                        assert_eq!(
                            format!("{:#04x}", ok.flags.bits()),
                            pair.derived["authentication_flags"],
                            "{anchor}"
                        );
                        assert_eq!(
                            ok.sign_count, pair.derived["authentication_sign_count"],
                            "{anchor}"
                        );
                        verified += 1;
                    }
                    Outcome::Refused(error) => assert_eq!(result, Err(error), "{anchor}"),
                    Outcome::UnsupportedAlgorithm(_) => unreachable!(),
                }
            }
        }
    }
    assert_eq!(verified, 10);
}

/// Flips one bit.
fn flipped(bytes: &[u8], index: usize, bit: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[index] ^= 1 << bit;
    out
}

#[test]
fn a_flipped_signature_bit_is_refused() {
    let origins = w3c_origins();
    for (pair, key, alg) in verifying_pairs() {
        let expected = w3c_expectations(&pair, &origins);
        let signature = &pair.assertion.signature;
        // The last byte is inside S (DER), S (Ed25519) or the RSA signature value.
        let mut tampered = pair.assertion.clone();
        tampered.signature = flipped(signature, signature.len() - 1, 0);
        assert_eq!(
            verify_assertion(&key, &tampered, &expected),
            Err(AssertionError::BadSignature { alg }),
            "{}",
            pair.anchor
        );

        // The first byte: the DER SEQUENCE tag for ES256; for the others still a bad signature.
        tampered.signature = flipped(signature, 0, 0);
        let error = match alg {
            CoseAlgorithm::Es256 => AssertionError::MalformedSignature { alg },
            _ => AssertionError::BadSignature { alg },
        };
        assert_eq!(
            verify_assertion(&key, &tampered, &expected),
            Err(error),
            "{}",
            pair.anchor
        );

        tampered.signature = signature[..signature.len() - 1].to_vec();
        assert!(
            matches!(
                verify_assertion(&key, &tampered, &expected),
                Err(AssertionError::MalformedSignature { .. } | AssertionError::BadSignature { .. })
            ),
            "{}",
            pair.anchor
        );
    }
}

#[test]
fn a_flipped_authenticator_data_bit_is_refused() {
    let origins = w3c_origins();
    for (pair, key, alg) in verifying_pairs() {
        let expected = w3c_expectations(&pair, &origins);
        let data = &pair.assertion.authenticator_data;
        let with = |authenticator_data: Vec<u8>| {
            let assertion = Assertion {
                authenticator_data,
                ..pair.assertion.clone()
            };
            verify_assertion(&key, &assertion, &expected)
        };
        // In the signature counter: only the signature notices.
        assert_eq!(
            with(flipped(data, 36, 0)),
            Err(AssertionError::BadSignature { alg }),
            "{}",
            pair.anchor
        );
        // In rpIdHash.
        assert_eq!(
            with(flipped(data, 0, 7)),
            Err(AssertionError::RpIdHashMismatch {
                rp_id: "example.org".into()
            }),
            "{}",
            pair.anchor
        );
        // UP cleared.
        assert_eq!(
            with(flipped(data, 32, 0)),
            Err(AssertionError::UserNotPresent),
            "{}",
            pair.anchor
        );
        // UV set although the authenticator did not verify the user (or cleared where it did).
        assert_eq!(
            with(flipped(data, 32, 2)),
            Err(AssertionError::BadSignature { alg }),
            "{}",
            pair.anchor
        );
        assert_eq!(
            with(data[..36].to_vec()),
            Err(AssertionError::AuthenticatorDataTooShort { len: 36 })
        );
    }
}

/// Flips the low bit of the last character of a member name, so the member is no longer one the
/// verifier reads: only the signature can notice.
fn rename_member(client_data: &[u8], member: &str) -> Option<Vec<u8>> {
    let needle = format!("\"{member}\":");
    let text = std::str::from_utf8(client_data).unwrap();
    let at = text.find(&needle)? + member.len();
    Some(flipped(client_data, at, 0))
}

#[test]
fn a_flipped_client_data_bit_is_refused() {
    let origins = w3c_origins();
    for (pair, key, alg) in verifying_pairs() {
        let expected = w3c_expectations(&pair, &origins);
        let with = |client_data_json: Vec<u8>| {
            let assertion = Assertion {
                client_data_json,
                ..pair.assertion.clone()
            };
            verify_assertion(&key, &assertion, &expected)
        };
        let client_data = &pair.assertion.client_data_json;
        let renamed = rename_member(client_data, "crossOrigin").unwrap();
        assert_eq!(
            with(renamed),
            Err(AssertionError::BadSignature { alg }),
            "{}",
            pair.anchor
        );

        let text = std::str::from_utf8(client_data).unwrap();
        let in_type = text.find("webauthn.get").unwrap() + 9; // the "g"
        assert_eq!(
            with(flipped(client_data, in_type, 0)),
            Err(AssertionError::WrongCeremonyType {
                found: "webauthn.fet".into()
            }),
            "{}",
            pair.anchor
        );
        let in_origin = text.find("example.org").unwrap();
        assert!(
            matches!(
                with(flipped(client_data, in_origin, 0)),
                Err(AssertionError::OriginNotAllowed { .. })
            ),
            "{}",
            pair.anchor
        );
        let in_challenge = text.find("\"challenge\":\"").unwrap() + 13;
        assert!(
            matches!(
                with(flipped(client_data, in_challenge, 0)),
                Err(AssertionError::ChallengeMismatch | AssertionError::MalformedChallenge)
            ),
            "{}",
            pair.anchor
        );
    }
}

#[test]
fn every_single_bit_flip_of_one_assertion_is_refused() {
    let origins = w3c_origins();
    for (pair, key, _) in verifying_pairs() {
        if pair.anchor != "sctn-test-vectors-none-es256"
            && pair.anchor != "sctn-test-vectors-packed-eddsa"
        {
            continue;
        }
        let expected = w3c_expectations(&pair, &origins);
        assert!(verify_assertion(&key, &pair.assertion, &expected).is_ok());
        let fields = |assertion: &Assertion| {
            [
                assertion.authenticator_data.len(),
                assertion.client_data_json.len(),
                assertion.signature.len(),
            ]
        };
        for (field, len) in fields(&pair.assertion).into_iter().enumerate() {
            for index in 0..len {
                for bit in 0..8 {
                    let mut tampered = pair.assertion.clone();
                    let bytes = match field {
                        0 => &mut tampered.authenticator_data,
                        1 => &mut tampered.client_data_json,
                        _ => &mut tampered.signature,
                    };
                    bytes[index] ^= 1 << bit;
                    assert!(
                        verify_assertion(&key, &tampered, &expected).is_err(),
                        "{}: flipping bit {bit} of byte {index} of field {field} was accepted",
                        pair.anchor
                    );
                }
            }
        }
    }
}

#[test]
fn another_challenge_rp_id_or_origin_is_refused() {
    for (pair, key, _) in verifying_pairs() {
        let origins = w3c_origins();
        let expected = w3c_expectations(&pair, &origins);
        assert!(verify_assertion(&key, &pair.assertion, &expected).is_ok());

        let mut other_challenge = pair.challenge.clone();
        other_challenge[0] ^= 1;
        assert_eq!(
            verify_assertion(
                &key,
                &pair.assertion,
                &AssertionExpectations {
                    challenge: &other_challenge,
                    ..expected
                }
            ),
            Err(AssertionError::ChallengeMismatch),
            "{}",
            pair.anchor
        );
        assert_eq!(
            verify_assertion(
                &key,
                &pair.assertion,
                &AssertionExpectations {
                    rp_id: "example.com",
                    ..expected
                }
            ),
            Err(AssertionError::RpIdHashMismatch {
                rp_id: "example.com".into()
            }),
            "{}",
            pair.anchor
        );
        for origin in [
            "https://example.com",
            "http://example.org",
            "https://example.org:8443",
            "https://www.example.org",
        ] {
            let other = vec![origin.to_owned()];
            assert_eq!(
                verify_assertion(
                    &key,
                    &pair.assertion,
                    &AssertionExpectations {
                        allowed_origins: &other,
                        ..expected
                    }
                ),
                Err(AssertionError::OriginNotAllowed {
                    origin: "https://example.org".into()
                }),
                "{}",
                pair.anchor
            );
        }
        // The origin is allowed if any configured one matches, with or without a trailing slash.
        let several = vec![
            "https://example.com".to_owned(),
            "https://example.org/".to_owned(),
        ];
        assert!(
            verify_assertion(
                &key,
                &pair.assertion,
                &AssertionExpectations {
                    allowed_origins: &several,
                    ..expected
                }
            )
            .is_ok()
        );
    }
}

#[test]
fn user_verification_required_is_refused_when_the_flags_lack_uv() {
    let origins = w3c_origins();
    let mut without_uv = 0;
    for (pair, key, _) in verifying_pairs() {
        let expected = AssertionExpectations {
            require_user_verified: true,
            ..w3c_expectations(&pair, &origins)
        };
        let result = verify_assertion(&key, &pair.assertion, &expected);
        let flags = pair.assertion.authenticator_data[32];
        if flags & 0x04 == 0 {
            assert_eq!(
                result,
                Err(AssertionError::UserNotVerified),
                "{}",
                pair.anchor
            );
            without_uv += 1;
        } else {
            assert!(result.unwrap().flags.user_verified(), "{}", pair.anchor);
        }
    }
    assert!(without_uv >= 5, "the vectors have assertions without UV");
}

#[test]
fn a_registration_is_not_an_assertion() {
    let (document, pairs) = w3c();
    let origins = w3c_origins();
    let pair = &pairs[0];
    let credential = AttestedCredential::from_attestation_object(&pair.attestation_object).unwrap();
    let registration = &document["pairs"][0]["registration"];
    // The registration's clientDataJSON says webauthn.create: it must not pass as an approval.
    let assertion = Assertion {
        authenticator_data: credential.authenticator_data().to_vec(),
        client_data_json: hex(&registration["clientDataJSON"]),
        signature: pair.assertion.signature.clone(),
    };
    let challenge = hex(&registration["challenge"]);
    let expected = AssertionExpectations {
        challenge: &challenge,
        ..w3c_expectations(pair, &origins)
    };
    assert_eq!(
        verify_assertion(credential.credential_public_key(), &assertion, &expected),
        Err(AssertionError::WrongCeremonyType {
            found: "webauthn.create".into()
        })
    );
}

// --- Real devices (webauthn-rs test data) ---

fn real() -> Value {
    serde_json::from_str(REAL).unwrap()
}

fn real_pair(test: &str) -> Value {
    real()["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|pair| pair["test"] == test)
        .unwrap()
        .clone()
}

fn real_assertion(response: &Value) -> Assertion {
    Assertion {
        authenticator_data: b64(&response["authenticatorData"]),
        client_data_json: b64(&response["clientDataJSON"]),
        signature: b64(&response["signature"]),
    }
}

#[test]
fn windows_hello_rs256_verifies() {
    let pair = real_pair("test_win_hello_attest_none");
    let registration = &pair["registration"]["credential"]["response"];
    let credential =
        AttestedCredential::from_attestation_object(&b64(&registration["attestationObject"]))
            .unwrap();
    assert_eq!(
        credential.credential_id(),
        b64(&pair["registration"]["credential"]["rawId"])
    );
    let key = credential.credential_public_key();
    assert_eq!(key.alg(), CoseAlgorithm::Rs256);
    let jwk = key.to_jwk();
    assert_eq!(jwk["kty"], "RSA");
    assert_eq!(jwk["e"], "AQAB");
    assert_eq!(
        base64url::decode(jwk["n"].as_str().unwrap()).unwrap().len(),
        256
    );

    let authentication = &pair["authentication"];
    let assertion = real_assertion(&authentication["credential"]["response"]);
    let challenge = b64(&authentication["expected_challenge_b64url"]);
    let origins = vec![pair["rp_origin"].as_str().unwrap().to_owned()];
    let expected = AssertionExpectations {
        challenge: &challenge,
        rp_id: pair["rp_id"].as_str().unwrap(),
        allowed_origins: &origins,
        require_user_verified: true,
    };
    let verified = verify_assertion(key, &assertion, &expected).unwrap();
    assert_eq!(verified.alg, CoseAlgorithm::Rs256);
    assert!(verified.flags.user_verified());
    assert_eq!(verified.sign_count, 1);

    let mut tampered = assertion.clone();
    tampered.signature = flipped(&assertion.signature, 100, 3);
    assert_eq!(
        verify_assertion(key, &tampered, &expected),
        Err(AssertionError::BadSignature {
            alg: CoseAlgorithm::Rs256
        })
    );
}

#[test]
fn an_assertion_from_a_subdomain_origin_is_refused() {
    let pair = real_pair("test_subdomain_origin");
    let registration = &pair["registration"]["credential"]["response"];
    let credential =
        AttestedCredential::from_attestation_object(&b64(&registration["attestationObject"]))
            .unwrap();
    assert_eq!(credential.attestation_format(), "fido-u2f");
    let key = credential.credential_public_key();
    assert_eq!(key.alg(), CoseAlgorithm::Es256);

    let authentication = &pair["authentication"];
    let assertion = real_assertion(&authentication["credential"]["response"]);
    let challenge = b64(&authentication["expected_challenge_b64url"]);
    let rp_id = pair["rp_id"].as_str().unwrap();
    let registered_origin = vec![pair["rp_origin"].as_str().unwrap().to_owned()];
    let expected = AssertionExpectations {
        challenge: &challenge,
        rp_id,
        allowed_origins: &registered_origin,
        require_user_verified: false,
    };
    assert_eq!(
        verify_assertion(key, &assertion, &expected),
        Err(AssertionError::OriginNotAllowed {
            origin: "https://sub.idm.example.com:8080".into()
        })
    );
    // Exact matching is the only thing that refuses it: with the subdomain listed, everything else holds.
    let subdomain = vec!["https://sub.idm.example.com:8080".to_owned()];
    assert!(
        verify_assertion(
            key,
            &assertion,
            &AssertionExpectations {
                allowed_origins: &subdomain,
                ..expected
            }
        )
        .is_ok()
    );
}

#[test]
fn a_yubikey_assertion_verifies() {
    let document = real();
    let yubikey = &document["assertion_only"][0];
    assert_eq!(yubikey["test"], "test_authentication");
    let key = CredentialPublicKey::from_cose(&b64(&yubikey["credential_public_key_cose_b64url"]))
        .unwrap();
    assert_eq!(key.alg(), CoseAlgorithm::Es256);
    let assertion = real_assertion(&yubikey["credential"]["response"]);
    let challenge = b64(&yubikey["expected_challenge_b64url"]);
    let origins = vec![yubikey["rp_origin"].as_str().unwrap().to_owned()];
    let expected = AssertionExpectations {
        challenge: &challenge,
        rp_id: yubikey["rp_id"].as_str().unwrap(),
        allowed_origins: &origins,
        require_user_verified: false,
    };
    let verified = verify_assertion(&key, &assertion, &expected).unwrap();
    assert!(verified.flags.user_present());
    assert!(
        !verified.flags.user_verified(),
        "this YubiKey assertion was made without a PIN"
    );
    // The counter is reported for the stateful check (the gateway's); this offline verifier
    // cannot tell a replay from the original.
    assert_eq!(verified.sign_count, 20);
    assert!(u64::from(verified.sign_count) > yubikey["prior_sign_count"].as_u64().unwrap());

    assert_eq!(
        verify_assertion(
            &key,
            &assertion,
            &AssertionExpectations {
                require_user_verified: true,
                ..expected
            }
        ),
        Err(AssertionError::UserNotVerified)
    );
    let https = vec!["https://localhost:8080".to_owned()];
    assert!(matches!(
        verify_assertion(
            &key,
            &assertion,
            &AssertionExpectations {
                allowed_origins: &https,
                ..expected
            }
        ),
        Err(AssertionError::OriginNotAllowed { .. })
    ));
}
