//! The Handsign gate: a passkey in front of an existing API, whose credential the gate holds
//! so that the agent never does.
//!
//! An agent calls the gate (`http://127.0.0.1:7000/payments/v1/charges`) instead of the API.
//! For each call the gate file's [`policy`] says what the route needs: a person's approval
//! (`approve`), nothing (`pass`) or a refusal (`deny`); unlisted routes are refused. For an
//! `approve` route the gate asks the person itself, as an enrolled agent of theirs
//! (`handsign-client`), with the call's [`params`]; identical calls share one approval
//! ([`flights`]). A caller that speaks the protocol may bring its own token instead. Either
//! way the token is checked and consumed by `handsign-verify`, exactly as a service would, and
//! only then is the call forwarded ([`upstream`]) with the [`credential`] added. Each call
//! leaves one [`audit`] line. The gate's [`listener`] bounds its connections.
//!
//! Gates that see tool calls instead of HTTP routes (an MCP server's, a coding agent's) take
//! their rules from the same file's [`tools`] sets and check tokens with
//! `handsign_verify::Verifier::verify_token`; the coding agents' [`hook`] is one.

pub mod audit;
pub mod cli;
pub mod config;
pub mod credential;
pub mod flights;
pub mod gate;
pub mod hook;
pub mod listener;
pub mod mcp;
pub mod params;
pub mod policy;
mod refusal;
pub mod tools;
pub mod upstream;

pub use config::GateFile;
pub use gate::{APPROVAL_ID_HEADER, Gate, Verification};
