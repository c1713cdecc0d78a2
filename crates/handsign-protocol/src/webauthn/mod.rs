//! Offline verification of WebAuthn authentication assertions.
//!
//! A Handsign approval is a WebAuthn assertion whose challenge is the digest of the approval
//! statement. Whoever holds the credential public key recorded at registration can check, with no
//! network and no database, that the person's authenticator signed exactly that challenge for this
//! relying party. `handsign receipt verify` and the gateway (when it builds a receipt) both use this
//! module.
//!
//! Why not webauthn-rs: the gateway runs the live ceremony with webauthn-rs, but webauthn-rs ties
//! verification to mutable server state. After a later login raises the stored signature counter it
//! refuses older assertions (`CredentialPossibleCompromise`), so last month's receipt would stop
//! verifying; and an auditor must not need the gateway's database at all. This module is an
//! independent implementation of the signature-relevant steps of WebAuthn Level 3, section 7.2:
//!
//! - [`CredentialPublicKey`]: a COSE_Key (RFC 9052/9053) parsed strictly: ES256 (P-256),
//!   EdDSA (Ed25519) and RS256 (RSASSA-PKCS1-v1_5 with SHA-256).
//! - [`AttestedCredential`]: the credential id and exact COSE key bytes out of a registration's
//!   `attestationObject`, which the gateway records. Attestation statements are not verified here.
//! - [`verify_assertion`]: every check an offline verifier can make on an assertion.
//!
//! What it deliberately does not do: signature-counter and replay checks (they need state; the
//! gateway does them when the assertion arrives), and binding the credential to a user (the
//! caller looks the user up from the credential id in its own records, never from `userHandle`).

mod assertion;
mod attestation;
mod authenticator_data;
mod cose;

pub use assertion::{
    Assertion, AssertionError, AssertionExpectations, VerifiedAssertion, verify_assertion,
};
pub use attestation::{AttestationError, AttestedCredential};
pub use authenticator_data::AuthenticatorFlags;
pub use cose::{CoseAlgorithm, CoseKeyError, CredentialPublicKey, cose_algorithm_name};
