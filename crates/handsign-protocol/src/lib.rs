//! The Handsign protocol: everything the gateway, the agent SDK, the service middleware and an
//! auditor must agree on, byte for byte.
//!
//! - [`api`]: the gateway's HTTP API: requests, answers and error codes.
//! - [`canonical`]: RFC 8785 canonical JSON, strict about input it cannot represent exactly.
//! - [`params`]: the canonical parameters of an action and their `params_sha256`.
//! - [`statement`]: the approval statement a person signs with a passkey.
//! - [`keys`]: Ed25519 signing keys, JWKs, RFC 7638 thumbprints and key sets (JWKS).
//! - [`token`]: the approval token (an EdDSA JWT) and every check a service makes on it.
//! - [`dpop`]: DPoP proofs (RFC 9449) that bind requests to an agent's key.
//! - [`webauthn`]: offline verification of a WebAuthn assertion against a registered public key.
//! - [`receipt`]: the evidence of an approval, checkable offline.
//!
//! This crate does no I/O: no network, no filesystem, no clock. Callers pass the current time in.

pub mod api;
pub mod base64url;
pub mod canonical;
pub mod dpop;
pub mod jws;
pub mod keys;
pub mod params;
pub mod receipt;
pub mod statement;
pub mod token;
pub mod webauthn;
