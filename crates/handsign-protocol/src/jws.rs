//! Compact JWS (RFC 7515) signed with EdDSA (RFC 8037), the envelope of approval tokens, DPoP
//! proofs and receipt signatures.
//!
//! Only the envelope lives here: splitting, base64url, and the Ed25519 signature over the signing
//! input. Which header values and claims are acceptable is decided by the module that owns each
//! kind of JWS, so that the checks for one kind cannot be satisfied by another.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::base64url;
use crate::keys::{PublicKey, SigningKey};

/// Why a compact JWS could not be taken apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("not a compact JWS: expected three base64url parts separated by dots")]
    NotCompact,
    #[error("the {0} is not valid base64url")]
    Base64(&'static str),
    #[error("the {part} is not valid JSON of the expected shape: {reason}")]
    Json { part: &'static str, reason: String },
}

/// A compact JWS split into its parts, its signature not yet checked.
#[derive(Debug)]
pub struct CompactJws<'a> {
    signing_input: &'a str,
    payload_b64: &'a str,
    header: Vec<u8>,
    signature: Vec<u8>,
}

impl<'a> CompactJws<'a> {
    /// Splits `jws` into header, payload and signature. A detached payload (`header..signature`,
    /// RFC 7515 Appendix F) parses with an empty payload.
    pub fn parse(jws: &'a str) -> Result<Self, JwsError> {
        let (signing_input, signature_b64) = jws.rsplit_once('.').ok_or(JwsError::NotCompact)?;
        let (header_b64, payload_b64) =
            signing_input.split_once('.').ok_or(JwsError::NotCompact)?;
        if payload_b64.contains('.') {
            return Err(JwsError::NotCompact);
        }
        let header = base64url::decode(header_b64).map_err(|_| JwsError::Base64("header"))?;
        // The signature's length is left to `verify`, so that the header checks, which give the
        // clearer refusal (`alg: none`, HS256), come first.
        let signature =
            base64url::decode(signature_b64).map_err(|_| JwsError::Base64("signature"))?;
        Ok(CompactJws {
            signing_input,
            payload_b64,
            header,
            signature,
        })
    }

    /// The protected header, decoded into `T`.
    pub fn header<T: DeserializeOwned>(&self) -> Result<T, JwsError> {
        serde_json::from_slice(&self.header).map_err(|e| JwsError::Json {
            part: "header",
            reason: e.to_string(),
        })
    }

    /// The payload, decoded into `T`. Read it only after [`CompactJws::verify`] succeeded.
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, JwsError> {
        let bytes = base64url::decode(self.payload_b64).map_err(|_| JwsError::Base64("payload"))?;
        serde_json::from_slice(&bytes).map_err(|e| JwsError::Json {
            part: "payload",
            reason: e.to_string(),
        })
    }

    /// Whether the signature verifies under `key` over the attached payload.
    pub fn verify(&self, key: &PublicKey) -> bool {
        key.verify(self.signing_input.as_bytes(), &self.signature)
    }

    /// Whether the signature verifies under `key` with `payload` in place of the (detached,
    /// empty) payload of this JWS.
    pub fn verify_detached(&self, key: &PublicKey, payload: &[u8]) -> bool {
        if !self.payload_b64.is_empty() {
            return false;
        }
        let header_b64 = self.signing_input.trim_end_matches('.');
        let input = format!("{header_b64}.{}", base64url::encode(payload));
        key.verify(input.as_bytes(), &self.signature)
    }
}

/// Signs `payload` under the protected header `header`, both given as the exact bytes to encode.
pub fn sign_bytes(key: &SigningKey, header: &[u8], payload: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        base64url::encode(header),
        base64url::encode(payload)
    );
    let signature = base64url::encode(key.sign(signing_input.as_bytes()));
    format!("{signing_input}.{signature}")
}

/// Signs the JSON serializations of `header` and `payload`.
pub fn sign<H: Serialize, P: Serialize>(
    key: &SigningKey,
    header: &H,
    payload: &P,
) -> Result<String, serde_json::Error> {
    Ok(sign_bytes(
        key,
        &serde_json::to_vec(header)?,
        &serde_json::to_vec(payload)?,
    ))
}

/// Signs `payload` and leaves it out of the result (`header..signature`, RFC 7515 Appendix F):
/// the verifier already holds the payload and supplies it.
pub fn sign_detached<H: Serialize>(
    key: &SigningKey,
    header: &H,
    payload: &[u8],
) -> Result<String, serde_json::Error> {
    let attached = sign_bytes(key, &serde_json::to_vec(header)?, payload);
    let (header_b64, rest) = attached.split_once('.').unwrap_or((&attached, ""));
    let signature_b64 = rest.rsplit_once('.').map_or("", |(_, s)| s);
    Ok(format!("{header_b64}..{signature_b64}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detached_signature_verifies_only_with_its_payload() {
        let key = SigningKey::from_seed(&[9; 32]);
        let jws = sign_detached(&key, &serde_json::json!({"alg": "EdDSA"}), b"receipt").unwrap();
        let parsed = CompactJws::parse(&jws).unwrap();
        assert!(parsed.verify_detached(&key.public_key(), b"receipt"));
        assert!(!parsed.verify_detached(&key.public_key(), b"receipt!"));
        assert!(!parsed.verify(&key.public_key()));
    }

    #[test]
    fn malformed_envelopes_are_refused() {
        assert_eq!(CompactJws::parse("a.b").unwrap_err(), JwsError::NotCompact);
        assert_eq!(
            CompactJws::parse("a.b.c.d").unwrap_err(),
            JwsError::NotCompact
        );
        assert_eq!(
            CompactJws::parse("e30=.e30.AAAA").unwrap_err(),
            JwsError::Base64("header")
        );
    }
}
