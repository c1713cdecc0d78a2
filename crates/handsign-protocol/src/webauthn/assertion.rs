//! Verifying an authentication assertion (WebAuthn Level 3, section 7.2) against a recorded key.
//!
//! Every check that needs no server state is made, each failing with its own [`AssertionError`]
//! so an auditor's report says which one failed. Not checked: the signature counter (it needs the
//! last value seen; the gateway checks it when the assertion arrives) and which user the credential
//! belongs to (the caller's records decide that).

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::authenticator_data::{AuthenticatorDataHead, AuthenticatorFlags};
use super::cose::{CoseAlgorithm, CredentialPublicKey, SignatureCheckError};
use crate::base64url;

/// An authentication assertion as the browser returned it (the `response` of an
/// `AuthenticationResponseJSON`, decoded from base64url).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    /// `authenticatorData`, exactly as signed.
    pub authenticator_data: Vec<u8>,
    /// `clientDataJSON`, exactly as signed (its SHA-256 is part of the signed message).
    pub client_data_json: Vec<u8>,
    /// `signature`: ASN.1 DER for ES256, 64 raw bytes for EdDSA, the modulus length for RS256.
    pub signature: Vec<u8>,
}

/// What the assertion must show.
#[derive(Debug, Clone, Copy)]
pub struct AssertionExpectations<'a> {
    /// The challenge the relying party issued (for Handsign, the approval statement's digest).
    pub challenge: &'a [u8],
    /// The RP ID: the authenticator must have signed SHA-256 of it.
    pub rp_id: &'a str,
    /// Origins allowed in `clientDataJSON`, e.g. `https://handsign.example.com`: scheme, host and
    /// port must match exactly. A single trailing `/` with no other path is tolerated on either
    /// side (webauthn-rs's software passkey sends `http://localhost:8080/`).
    pub allowed_origins: &'a [String],
    /// Whether the UV flag (PIN or biometric, not just a touch) is required.
    pub require_user_verified: bool,
}

/// What a verified assertion shows beyond "the key holder signed this challenge".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedAssertion {
    /// The authenticator's flags (UP, UV, BE, BS, ...).
    pub flags: AuthenticatorFlags,
    /// The signature counter (0 for authenticators without one); compare with the last one seen
    /// to detect cloned authenticators, where there is state to compare with.
    pub sign_count: u32,
    /// The algorithm that verified the signature.
    pub alg: CoseAlgorithm,
}

/// Why an assertion was refused; the message names the check that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    /// `clientDataJSON` is not a JSON object with string `type`, `challenge` and `origin`.
    #[error("clientDataJSON is not valid client data: {0}")]
    ClientDataNotJson(String),
    /// `type` is not `webauthn.get` (e.g. a registration's `webauthn.create`).
    #[error("clientDataJSON type is {found:?}, expected \"webauthn.get\"")]
    WrongCeremonyType {
        /// The type found.
        found: String,
    },
    /// `challenge` is not base64url without padding.
    #[error("clientDataJSON challenge is not base64url without padding")]
    MalformedChallenge,
    /// `challenge` is not the expected challenge.
    #[error("clientDataJSON challenge does not match the expected challenge")]
    ChallengeMismatch,
    /// `origin` is not among the allowed origins.
    #[error("clientDataJSON origin {origin:?} is not an allowed origin")]
    OriginNotAllowed {
        /// The origin found.
        origin: String,
    },
    /// `topOrigin` is present: the ceremony ran in an iframe embedded by another site.
    #[error("clientDataJSON has a topOrigin: cross-origin (embedded) ceremonies are refused")]
    TopOriginPresent,
    /// `crossOrigin` is true: the ceremony ran in a cross-origin iframe.
    #[error("clientDataJSON crossOrigin is true: cross-origin (embedded) ceremonies are refused")]
    CrossOrigin,
    /// `authenticatorData` is shorter than rpIdHash, flags and signCount.
    #[error(
        "authenticatorData is {len} bytes long, shorter than the 37 bytes of rpIdHash, flags and signCount"
    )]
    AuthenticatorDataTooShort {
        /// Its length.
        len: usize,
    },
    /// rpIdHash is not SHA-256 of the expected RP ID.
    #[error("authenticatorData rpIdHash is not SHA-256 of the RP ID {rp_id:?}")]
    RpIdHashMismatch {
        /// The expected RP ID.
        rp_id: String,
    },
    /// The UP flag is clear.
    #[error("authenticatorData user-present (UP) flag is not set")]
    UserNotPresent,
    /// The UV flag is clear although user verification is required.
    #[error(
        "authenticatorData user-verified (UV) flag is not set, and user verification is required"
    )]
    UserNotVerified,
    /// BS (backed up) is set without BE (backup eligible), which no valid authenticator does.
    #[error("authenticatorData backup state (BS) flag is set without backup eligibility (BE)")]
    InconsistentBackupFlags,
    /// The signature is not an encoding of a signature for the key's algorithm.
    #[error("signature is not a well-formed {alg} signature")]
    MalformedSignature {
        /// The key's algorithm.
        alg: CoseAlgorithm,
    },
    /// The signature does not verify over `authenticatorData || SHA-256(clientDataJSON)`.
    #[error("signature does not verify under the {alg} credential public key")]
    BadSignature {
        /// The key's algorithm.
        alg: CoseAlgorithm,
    },
}

/// The members of `CollectedClientData` this verifier reads. Deserializing into a struct refuses a
/// duplicated `type`, `challenge`, `origin`, `crossOrigin` or `topOrigin` instead of silently
/// taking one of them; other members (`extraData`, `clientExtensions`, ...) are ignored.
#[derive(Deserialize)]
struct CollectedClientData {
    #[serde(rename = "type")]
    ceremony_type: String,
    challenge: String,
    origin: String,
    #[serde(rename = "crossOrigin", default, deserialize_with = "strict_bool")]
    cross_origin: Option<bool>,
    #[serde(rename = "topOrigin", default, deserialize_with = "present")]
    top_origin_present: bool,
}

/// `crossOrigin`, when present, must be a boolean (not `null`, not a string).
fn strict_bool<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<bool>, D::Error> {
    bool::deserialize(deserializer).map(Some)
}

/// True whenever the member is present, whatever its value (even `null`).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(deserializer).map(|_| true)
}

/// An origin without a lone trailing `/` (`https://a.example/` -> `https://a.example`); origins
/// with any other path are left alone, and so never match a configured origin.
fn without_trailing_slash(origin: &str) -> &str {
    let Some(trimmed) = origin.strip_suffix('/') else {
        return origin;
    };
    let authority = trimmed
        .split_once("://")
        .map_or(trimmed, |(_, authority)| authority);
    if authority.is_empty() || authority.contains('/') {
        origin
    } else {
        trimmed
    }
}

fn origin_allowed(origin: &str, allowed: &[String]) -> bool {
    let origin = without_trailing_slash(origin);
    allowed
        .iter()
        .any(|candidate| without_trailing_slash(candidate) == origin)
}

/// Verifies an assertion against a credential's recorded public key.
///
/// Checks, in order: `clientDataJSON` is client data with `type` `webauthn.get`, the expected
/// challenge and an allowed origin, not from an embedded cross-origin context; `authenticatorData`
/// has the RP ID's hash, UP (and UV when required) and consistent backup flags; the signature
/// verifies over `authenticatorData || SHA-256(clientDataJSON)`.
pub fn verify_assertion(
    key: &CredentialPublicKey,
    assertion: &Assertion,
    expected: &AssertionExpectations<'_>,
) -> Result<VerifiedAssertion, AssertionError> {
    let client_data: CollectedClientData = serde_json::from_slice(&assertion.client_data_json)
        .map_err(|error| AssertionError::ClientDataNotJson(error.to_string()))?;
    if client_data.ceremony_type != "webauthn.get" {
        return Err(AssertionError::WrongCeremonyType {
            found: client_data.ceremony_type,
        });
    }
    let challenge = base64url::decode(&client_data.challenge)
        .map_err(|_| AssertionError::MalformedChallenge)?;
    if challenge != expected.challenge {
        return Err(AssertionError::ChallengeMismatch);
    }
    if !origin_allowed(&client_data.origin, expected.allowed_origins) {
        return Err(AssertionError::OriginNotAllowed {
            origin: client_data.origin,
        });
    }
    if client_data.top_origin_present {
        return Err(AssertionError::TopOriginPresent);
    }
    if client_data.cross_origin == Some(true) {
        return Err(AssertionError::CrossOrigin);
    }

    let head = AuthenticatorDataHead::parse(&assertion.authenticator_data).ok_or(
        AssertionError::AuthenticatorDataTooShort {
            len: assertion.authenticator_data.len(),
        },
    )?;
    if Sha256::digest(expected.rp_id.as_bytes()).as_slice() != head.rp_id_hash.as_slice() {
        return Err(AssertionError::RpIdHashMismatch {
            rp_id: expected.rp_id.to_owned(),
        });
    }
    if !head.flags.user_present() {
        return Err(AssertionError::UserNotPresent);
    }
    if expected.require_user_verified && !head.flags.user_verified() {
        return Err(AssertionError::UserNotVerified);
    }
    if head.flags.backed_up() && !head.flags.backup_eligible() {
        return Err(AssertionError::InconsistentBackupFlags);
    }

    let mut message = Vec::with_capacity(assertion.authenticator_data.len() + 32);
    message.extend_from_slice(&assertion.authenticator_data);
    message.extend_from_slice(&Sha256::digest(&assertion.client_data_json));
    let alg = key.alg();
    key.verify_signature(&message, &assertion.signature)
        .map_err(|error| match error {
            SignatureCheckError::Malformed => AssertionError::MalformedSignature { alg },
            SignatureCheckError::Invalid => AssertionError::BadSignature { alg },
        })?;

    Ok(VerifiedAssertion {
        flags: head.flags,
        sign_count: head.sign_count,
        alg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(origins: &[&str]) -> Vec<String> {
        origins.iter().map(|origin| (*origin).to_owned()).collect()
    }

    #[test]
    fn origins_match_exactly_up_to_one_trailing_slash() {
        let list = allowed(&["https://example.org", "http://localhost:8080/"]);
        assert!(origin_allowed("https://example.org", &list));
        assert!(origin_allowed("https://example.org/", &list));
        assert!(origin_allowed("http://localhost:8080", &list));
        assert!(origin_allowed("http://localhost:8080/", &list));
        for refused in [
            "https://example.org//",
            "https://example.org/x",
            "https://example.org/x/",
            "http://example.org",
            "https://example.org:443",
            "https://sub.example.org",
            "https://Example.org",
            "http://localhost:8081/",
            "http://localhost",
            "",
            "/",
        ] {
            assert!(!origin_allowed(refused, &list), "{refused} must be refused");
        }
        assert!(!origin_allowed("https://example.org", &[]));
    }

    #[test]
    fn client_data_members_are_read_strictly() {
        let parse = |text: &str| serde_json::from_str::<CollectedClientData>(text);
        let ok = parse(r#"{"type":"webauthn.get","challenge":"AA","origin":"o","extraData":1}"#)
            .unwrap();
        assert_eq!(ok.cross_origin, None);
        assert!(!ok.top_origin_present);
        let top =
            parse(r#"{"type":"webauthn.get","challenge":"AA","origin":"o","topOrigin":null}"#)
                .unwrap();
        assert!(top.top_origin_present);
        assert!(
            parse(r#"{"type":"webauthn.get","challenge":"AA","origin":"o","crossOrigin":null}"#)
                .is_err()
        );
        assert!(
            parse(r#"{"type":"webauthn.get","challenge":"AA","origin":"o","crossOrigin":"false"}"#)
                .is_err()
        );
        assert!(
            parse(
                r#"{"type":"webauthn.create","type":"webauthn.get","challenge":"AA","origin":"o"}"#
            )
            .is_err()
        );
        assert!(parse(r#"{"type":"webauthn.get","challenge":"AA"}"#).is_err());
    }
}
