//! The Handsign agent SDK: ask a person to approve one exact action, wait for their passkey
//! decision, and call the service with the single-use token that results.
//!
//! An agent holds an Ed25519 key ([`AgentKey`]); its RFC 7638 thumbprint is the agent's id, and
//! every call to the gateway carries a fresh DPoP proof made with it, so there is no shared
//! secret to leak. A token the gateway issues is bound to that key: a service accepts it only
//! with a DPoP proof from the same key for the exact request ([`Client::authorize`]).
//!
//! ```no_run
//! use handsign_client::{AgentKey, ApprovalError, ApprovalRequest, Client};
//! use serde_json::json;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // The key file is created owner-only on first use; its id is what the operator adds
//! // (`handsign agent add --key <id or public JWK>`) or what `client.enroll` asks to approve.
//! let key = AgentKey::load_or_create("agent-key.jwk")?;
//! let client = Client::new("https://handsign.example.com", key)?;
//!
//! let params = json!({"from": "SFO", "to": "NYC", "date": "2026-12-01"});
//! let pending = client
//!     .request_approval(
//!         ApprovalRequest::new("flights.book", params.clone(), "https://travel.example")
//!             .message("Book the flight we discussed"),
//!     )
//!     .await?;
//! eprintln!("Approve at {} (code {})", pending.approval_url(), pending.code());
//!
//! let approval = match pending.wait().await {
//!     Ok(approval) => approval,
//!     Err(ApprovalError::Denied) => return Ok(()), // the person said no
//!     Err(other) => return Err(other.into()),
//! };
//!
//! // Within 30 seconds, once: the service checks the token against exactly these params.
//! let http = reqwest::Client::new();
//! let mut request = http
//!     .post("https://travel.example/bookings")
//!     .json(&params)
//!     .build()?;
//! client.authorize(&mut request, approval.token())?;
//! let response = http.execute(request).await?;
//! # let _ = response;
//! # Ok(())
//! # }
//! ```
//!
//! Waiting uses the gateway's long poll and survives dropped connections and gateway restarts
//! (see [`RetryPolicy`]) without ever asking the person twice. The outcomes are typed
//! ([`ApprovalError`]): denied, expired, cancelled, timed out, refused by the gateway,
//! unreachable, or approved with the token already collected elsewhere.
//!
//! This crate never panics on bad input or bad answers; every failure is an error value.

mod approval;
#[cfg(feature = "cli")]
pub mod cli;
mod client;
mod error;
mod key;
mod qr;

pub use approval::{Approval, ApprovalRequest, PendingApproval, PendingEnrollment};
pub use client::{Client, RetryPolicy};
pub use error::{ApprovalError, AuthorizeError, ClientError};
pub use key::{AgentKey, KeyFileError};
pub use qr::terminal_qr;

/// The protocol types an agent meets: JWKs, the token's claims and the gateway's error codes.
pub use handsign_protocol::api::ErrorCode;
pub use handsign_protocol::keys::Jwk;
pub use handsign_protocol::token::ApprovalClaims;
