//! The credential inside a registration's `attestationObject` (WebAuthn Level 3, sections 6.5
//! and 6.5.1).
//!
//! The gateway runs registration with webauthn-rs and records, from this parse, the credential
//! id and the credential public key's COSE bytes exactly as the authenticator wrote them: those
//! bytes go into every receipt, so an auditor checks signatures against what the authenticator
//! itself produced, not against a re-encoding. The attestation statement is not verified here.

use ciborium::Value;
use sha2::{Digest as _, Sha256};

use super::authenticator_data::AuthenticatorDataHead;
use super::authenticator_data::AuthenticatorFlags;
use super::cose::{CoseKeyError, CredentialPublicKey};

/// Longest credential id WebAuthn allows (section 6.5.1).
const MAX_CREDENTIAL_ID_LEN: usize = 1023;

/// CBOR nesting allowed in an attestation object (attStmt holds at most arrays of certificates).
const ATTESTATION_RECURSION_LIMIT: usize = 16;

/// Why an `attestationObject` does not yield a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestationError {
    /// Not well-formed CBOR.
    #[error("attestationObject is not well-formed CBOR: {0}")]
    NotCbor(String),
    /// Bytes after the attestation object's map.
    #[error("attestationObject has {count} trailing byte(s)")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// Not a CBOR map.
    #[error("attestationObject is not a CBOR map")]
    NotAMap,
    /// A key appears twice.
    #[error("attestationObject has the key {key} more than once")]
    DuplicateKey {
        /// The key, as CBOR diagnostic text.
        key: String,
    },
    /// `fmt`, `attStmt` or `authData` is absent.
    #[error("attestationObject lacks {field}")]
    MissingField {
        /// Which.
        field: &'static str,
    },
    /// `fmt` is not text, `attStmt` not a map, or `authData` not bytes.
    #[error("attestationObject field {field} must be {expected}")]
    WrongFieldType {
        /// Which.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// `authData` is shorter than its fixed 37-byte head.
    #[error(
        "authData is {len} bytes long, shorter than the 37 bytes of rpIdHash, flags and signCount"
    )]
    AuthenticatorDataTooShort {
        /// Its length.
        len: usize,
    },
    /// The AT flag is clear: there is no credential in it.
    #[error("authData has no attested credential data (AT flag clear)")]
    NoAttestedCredentialData,
    /// The attested credential data ends early.
    #[error("attested credential data is truncated")]
    Truncated,
    /// The credential id is longer than WebAuthn allows.
    #[error("credential id is {len} bytes long, more than the 1023 WebAuthn allows")]
    CredentialIdTooLong {
        /// Its length.
        len: usize,
    },
    /// The credential public key is not usable.
    #[error("credential public key: {0}")]
    CredentialPublicKey(#[from] CoseKeyError),
    /// The extensions after the key (ED flag) are not one CBOR map.
    #[error("authData extensions (ED flag set) are not a single CBOR map")]
    MalformedExtensions,
    /// Bytes after the credential public key although the ED flag is clear.
    #[error(
        "authData has {count} unexpected byte(s) after the credential public key (ED flag clear)"
    )]
    UnexpectedTrailingData {
        /// How many.
        count: usize,
    },
}

/// A newly registered credential, as read from an `attestationObject`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestedCredential {
    attestation_format: String,
    authenticator_data: Vec<u8>,
    rp_id_hash: [u8; 32],
    flags: AuthenticatorFlags,
    sign_count: u32,
    aaguid: [u8; 16],
    credential_id: Vec<u8>,
    public_key: CredentialPublicKey,
}

impl AttestedCredential {
    /// Parses a CBOR `attestationObject` (`{"fmt", "attStmt", "authData"}`) and the attested
    /// credential data in its `authData`. The credential public key must be of a supported
    /// algorithm: a credential whose assertions cannot be checked offline yields no receipts.
    pub fn from_attestation_object(bytes: &[u8]) -> Result<Self, AttestationError> {
        let mut rest = bytes;
        let value: Value =
            ciborium::de::from_reader_with_recursion_limit(&mut rest, ATTESTATION_RECURSION_LIMIT)
                .map_err(|error| AttestationError::NotCbor(error.to_string()))?;
        if !rest.is_empty() {
            return Err(AttestationError::TrailingBytes { count: rest.len() });
        }
        let Value::Map(entries) = value else {
            return Err(AttestationError::NotAMap);
        };
        for (index, (key, _)) in entries.iter().enumerate() {
            let earlier = entries.get(..index).unwrap_or_default();
            if earlier.iter().any(|(other, _)| other == key) {
                return Err(AttestationError::DuplicateKey {
                    key: format!("{key:?}"),
                });
            }
        }
        let field = |name: &'static str| {
            entries
                .iter()
                .find(|(key, _)| matches!(key, Value::Text(text) if text == name))
                .map(|(_, value)| value)
                .ok_or(AttestationError::MissingField { field: name })
        };
        let Value::Text(fmt) = field("fmt")? else {
            return Err(AttestationError::WrongFieldType {
                field: "fmt",
                expected: "a text string",
            });
        };
        let Value::Map(_) = field("attStmt")? else {
            return Err(AttestationError::WrongFieldType {
                field: "attStmt",
                expected: "a map",
            });
        };
        let Value::Bytes(auth_data) = field("authData")? else {
            return Err(AttestationError::WrongFieldType {
                field: "authData",
                expected: "a byte string",
            });
        };
        Self::from_authenticator_data(fmt.clone(), auth_data)
    }

    fn from_authenticator_data(
        attestation_format: String,
        auth_data: &[u8],
    ) -> Result<Self, AttestationError> {
        let head = AuthenticatorDataHead::parse(auth_data).ok_or(
            AttestationError::AuthenticatorDataTooShort {
                len: auth_data.len(),
            },
        )?;
        if !head.flags.attested_credential_data() {
            return Err(AttestationError::NoAttestedCredentialData);
        }
        let (aaguid, rest) = head
            .rest
            .split_first_chunk::<16>()
            .ok_or(AttestationError::Truncated)?;
        let (id_len, rest) = rest
            .split_first_chunk::<2>()
            .ok_or(AttestationError::Truncated)?;
        let id_len = usize::from(u16::from_be_bytes(*id_len));
        if id_len > MAX_CREDENTIAL_ID_LEN {
            return Err(AttestationError::CredentialIdTooLong { len: id_len });
        }
        let (credential_id, rest) = rest
            .split_at_checked(id_len)
            .ok_or(AttestationError::Truncated)?;

        // The COSE key is one CBOR item of unstated length: decode it to find where it ends, then
        // keep exactly those bytes.
        let mut after_key = rest;
        let _: Value = ciborium::de::from_reader_with_recursion_limit(
            &mut after_key,
            ATTESTATION_RECURSION_LIMIT,
        )
        .map_err(|error| CoseKeyError::NotCbor(error.to_string()))?;
        let key_len = rest.len().saturating_sub(after_key.len());
        let cose = rest.get(..key_len).ok_or(AttestationError::Truncated)?;
        let public_key = CredentialPublicKey::from_cose(cose)?;

        if head.flags.extension_data() {
            let mut after_extensions = after_key;
            let extensions: Value = ciborium::de::from_reader_with_recursion_limit(
                &mut after_extensions,
                ATTESTATION_RECURSION_LIMIT,
            )
            .map_err(|_| AttestationError::MalformedExtensions)?;
            if !matches!(extensions, Value::Map(_)) || !after_extensions.is_empty() {
                return Err(AttestationError::MalformedExtensions);
            }
        } else if !after_key.is_empty() {
            return Err(AttestationError::UnexpectedTrailingData {
                count: after_key.len(),
            });
        }

        Ok(Self {
            attestation_format,
            authenticator_data: auth_data.to_vec(),
            rp_id_hash: head.rp_id_hash,
            flags: head.flags,
            sign_count: head.sign_count,
            aaguid: *aaguid,
            credential_id: credential_id.to_vec(),
            public_key,
        })
    }

    /// The attestation statement format (`none`, `packed`, `tpm`, ...), not verified here.
    pub fn attestation_format(&self) -> &str {
        &self.attestation_format
    }

    /// The registration's `authenticatorData`, whole.
    pub fn authenticator_data(&self) -> &[u8] {
        &self.authenticator_data
    }

    /// SHA-256 of the RP ID the credential was created for.
    pub fn rp_id_hash(&self) -> &[u8; 32] {
        &self.rp_id_hash
    }

    /// Whether the credential was created for `rp_id`.
    pub fn is_for_rp_id(&self, rp_id: &str) -> bool {
        Sha256::digest(rp_id.as_bytes()).as_slice() == self.rp_id_hash.as_slice()
    }

    /// The flags at registration (UP, UV, BE, BS, AT, ED).
    pub fn flags(&self) -> AuthenticatorFlags {
        self.flags
    }

    /// The signature counter at registration (0 for authenticators without one).
    pub fn sign_count(&self) -> u32 {
        self.sign_count
    }

    /// The authenticator model's AAGUID (all zero with `none` attestation on many platforms).
    pub fn aaguid(&self) -> &[u8; 16] {
        &self.aaguid
    }

    /// The credential id.
    pub fn credential_id(&self) -> &[u8] {
        &self.credential_id
    }

    /// The credential public key's COSE bytes, exactly as in `authData`: record these.
    pub fn credential_public_key_cose(&self) -> &[u8] {
        self.public_key.cose_bytes()
    }

    /// The parsed credential public key.
    pub fn credential_public_key(&self) -> &CredentialPublicKey {
        &self.public_key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth_data(flags: u8, id: &[u8], key_and_extensions: &[u8]) -> Vec<u8> {
        let mut out = Sha256::digest(b"example.org").to_vec();
        out.push(flags);
        out.extend_from_slice(&[0, 0, 0, 9]);
        out.extend_from_slice(&[0xab; 16]);
        out.extend_from_slice(&u16::try_from(id.len()).unwrap().to_be_bytes());
        out.extend_from_slice(id);
        out.extend_from_slice(key_and_extensions);
        out
    }

    fn ed25519_cose() -> Vec<u8> {
        let key = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]).verifying_key();
        let value = Value::Map(vec![
            (Value::Integer(1.into()), Value::Integer(1.into())),
            (Value::Integer(3.into()), Value::Integer((-8).into())),
            (Value::Integer((-1).into()), Value::Integer(6.into())),
            (
                Value::Integer((-2).into()),
                Value::Bytes(key.as_bytes().to_vec()),
            ),
        ]);
        let mut out = Vec::new();
        ciborium::ser::into_writer(&value, &mut out).unwrap();
        out
    }

    fn object(auth_data: Vec<u8>) -> Vec<u8> {
        let value = Value::Map(vec![
            (Value::Text("fmt".into()), Value::Text("none".into())),
            (Value::Text("attStmt".into()), Value::Map(vec![])),
            (Value::Text("authData".into()), Value::Bytes(auth_data)),
        ]);
        let mut out = Vec::new();
        ciborium::ser::into_writer(&value, &mut out).unwrap();
        out
    }

    #[test]
    fn reads_the_credential_and_keeps_the_exact_key_bytes() {
        let cose = ed25519_cose();
        let credential =
            AttestedCredential::from_attestation_object(&object(auth_data(0x45, b"cred", &cose)))
                .unwrap();
        assert_eq!(credential.attestation_format(), "none");
        assert_eq!(credential.credential_id(), b"cred");
        assert_eq!(credential.credential_public_key_cose(), cose.as_slice());
        assert_eq!(credential.sign_count(), 9);
        assert_eq!(credential.aaguid(), &[0xab; 16]);
        assert!(credential.is_for_rp_id("example.org"));
        assert!(!credential.is_for_rp_id("example.com"));
        assert!(credential.flags().user_verified());
    }

    #[test]
    fn extensions_must_be_one_map_and_only_with_ed() {
        let cose = ed25519_cose();
        let mut with_extensions = cose.clone();
        with_extensions.extend_from_slice(&[0xa1, 0x61, 0x78, 0xf5]); // {"x": true}
        assert!(
            AttestedCredential::from_attestation_object(&object(auth_data(
                0xc5,
                b"id",
                &with_extensions
            )))
            .is_ok()
        );
        assert_eq!(
            AttestedCredential::from_attestation_object(&object(auth_data(
                0x45,
                b"id",
                &with_extensions
            ))),
            Err(AttestationError::UnexpectedTrailingData { count: 4 })
        );
        assert_eq!(
            AttestedCredential::from_attestation_object(&object(auth_data(0xc5, b"id", &cose))),
            Err(AttestationError::MalformedExtensions)
        );
    }

    #[test]
    fn refuses_truncated_and_credential_less_data() {
        let cose = ed25519_cose();
        assert_eq!(
            AttestedCredential::from_attestation_object(&object(auth_data(0x05, b"id", &cose))),
            Err(AttestationError::NoAttestedCredentialData)
        );
        let full = auth_data(0x45, b"id", &cose);
        assert_eq!(
            AttestedCredential::from_attestation_object(&object(full[..40].to_vec())),
            Err(AttestationError::Truncated)
        );
        assert_eq!(
            AttestedCredential::from_attestation_object(&object(full[..20].to_vec())),
            Err(AttestationError::AuthenticatorDataTooShort { len: 20 })
        );
        assert!(matches!(
            AttestedCredential::from_attestation_object(&object(full[..full.len() - 1].to_vec())),
            Err(AttestationError::CredentialPublicKey(
                CoseKeyError::NotCbor(_)
            ))
        ));
        let mut long_id = auth_data(0x45, &[], &cose);
        long_id[53] = 0x04; // id length 0x0400 = 1024
        assert_eq!(
            AttestedCredential::from_attestation_object(&object(long_id)),
            Err(AttestationError::CredentialIdTooLong { len: 1024 })
        );
    }

    #[test]
    fn refuses_malformed_objects() {
        assert!(matches!(
            AttestedCredential::from_attestation_object(&[0xa0, 0x00]),
            Err(AttestationError::TrailingBytes { count: 1 })
        ));
        assert_eq!(
            AttestedCredential::from_attestation_object(&[0x80]),
            Err(AttestationError::NotAMap)
        );
        assert_eq!(
            AttestedCredential::from_attestation_object(&[0xa0]),
            Err(AttestationError::MissingField { field: "fmt" })
        );
    }
}
