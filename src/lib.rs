//! Handsign: a self-hosted approval gateway that puts a person's passkey in front of each
//! consequential action an AI agent takes.
//!
//! The protocol (canonical params, statements, tokens, DPoP, receipts) is in the
//! `handsign-protocol` crate; this crate holds the command line and everything that does I/O.

pub mod cli;
pub mod jwks_source;
