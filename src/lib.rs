//! Handsign: a self-hosted approval gateway that puts a person's passkey in front of each
//! consequential action an AI agent takes.
//!
//! The protocol (canonical params, statements, tokens, DPoP, receipts) is in the
//! `handsign-protocol` crate; this crate is the gateway and the command line.

pub mod admin;
pub mod agent_auth;
pub mod approvals;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connections;
pub mod deliveries;
pub mod domain;
pub mod error;
pub mod events;
pub mod http_client;
pub mod invitations;
pub mod jwks_source;
pub mod keyring;
pub mod metrics;
pub mod notify;
pub mod pages;
pub mod params_order;
pub mod passkeys;
pub mod rate;
pub mod routes;
pub mod secret_file;
pub mod server;
pub mod session;
pub mod state;
pub mod storage;
pub mod store;
