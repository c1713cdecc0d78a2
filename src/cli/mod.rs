//! The `handsign` command line.
//!
//! Exit status, for every command: 0 when the answer is yes (canonical output written, token
//! accepted, receipt valid), 1 when the input was examined and refused (the message says which
//! check failed), 2 when the command could not run (bad arguments, unreadable file, unreachable
//! JWKS). `handsign request` and `handsign agent enroll` also end with 3 (denied), 4 (expired or
//! cancelled) or 5 (timed out); see `agent_client.rs`. `handsign health`, a container's
//! healthcheck, ends with 1 when the gateway is unreachable too (Docker reserves 2).

mod admin;
mod agent_client;
mod canonicalize;
mod health;
mod receipt;
mod serve;
mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit status when the input was examined and refused.
pub const EXIT_REFUSED: u8 = 1;
/// Exit status when the command could not run.
pub const EXIT_ERROR: u8 = 2;

#[derive(Debug, Parser)]
#[command(name = "handsign", version, about = "Passkey approvals for AI agents")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(Box<crate::config::ServeArgs>),
    /// Read one JSON document on stdin and write its RFC 8785 canonical form (no trailing newline).
    Canonicalize(canonicalize::Args),
    /// Approval tokens.
    #[command(subcommand)]
    Token(token::Command),
    /// Users: invite a person to register a passkey.
    #[command(subcommand)]
    User(admin::UserCommand),
    /// Agents: keygen, enroll (run by the agent); add, list, suspend, resume, revoke.
    #[command(subcommand)]
    Agent(admin::AgentCommand),
    /// Receipts: the evidence of a decision.
    #[command(subcommand)]
    Receipt(receipt::Command),
    /// Ask a person to approve an action with exact params; print the approval token.
    Request(agent_client::RequestArgs),
    /// Call a service with a token, as an agent does: attaches the token and a DPoP proof.
    Call(agent_client::CallArgs),
    /// Check a running gateway (a container's healthcheck): exit 0 when the URL answers 2xx, 1
    /// otherwise.
    Health(health::Args),
    /// Put a passkey in front of an existing HTTP API: run the gate, `check` its file, or
    /// `enroll` its agent key (see the gate file's documentation in handsign-gate).
    Gate(handsign_gate::cli::Args),
}

/// What a command concluded; errors that stopped it from concluding are `Err`.
pub enum Outcome {
    Accepted,
    Refused,
    /// An outcome with an exit status of the command's own, documented by that command.
    Exit(u8),
}

/// Parses the arguments, runs the command and maps the outcome to an exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("handsign: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(*args).await,
            Command::Canonicalize(args) => canonicalize::run(args).await,
            Command::Token(command) => token::run(command).await,
            Command::Receipt(command) => receipt::run(command).await,
            Command::User(command) => admin::user(command).await,
            Command::Agent(command) => admin::agent(command).await,
            Command::Request(args) => agent_client::request(args).await,
            Command::Call(args) => agent_client::call(args).await,
            Command::Health(args) => health::run(args).await,
            Command::Gate(args) => handsign_gate::cli::run(args).await.map(Outcome::Exit),
        }
    });
    match result {
        Ok(Outcome::Accepted) => ExitCode::SUCCESS,
        Ok(Outcome::Refused) => ExitCode::from(EXIT_REFUSED),
        Ok(Outcome::Exit(status)) => ExitCode::from(status),
        Err(e) => {
            eprintln!("handsign: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Reads a file, or stdin when `path` is `-`.
async fn read_input(path: &str) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context as _;
    use tokio::io::AsyncReadExt as _;
    if path == "-" {
        let mut bytes = Vec::new();
        tokio::io::stdin()
            .read_to_end(&mut bytes)
            .await
            .context("cannot read stdin")?;
        Ok(bytes)
    } else {
        tokio::fs::read(path)
            .await
            .with_context(|| format!("cannot read {path}"))
    }
}
