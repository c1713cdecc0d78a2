//! The `handsign` command line.
//!
//! Exit status, for every command: 0 when the answer is yes (canonical output written, token
//! accepted, receipt valid), 1 when the input was examined and refused (the message says which
//! check failed), 2 when the command could not run (bad arguments, unreadable file, unreachable
//! JWKS). `handsign request` and `handsign agent enroll` also end with 3 (denied), 4 (expired or
//! cancelled) or 5 (timed out); see `handsign_client::cli`. `handsign health`, a container's
//! healthcheck, ends with 1 when the gateway is unreachable too (Docker reserves 2).
//!
//! The agent's commands (`request`, `call`, `agent keygen|enroll`) are the agent SDK's
//! (`handsign_client::cli`): the binary puts them beside these, so that the gateway does not
//! depend on the SDK. The one thing taken from there is how a file argument is read
//! (`read_input`), so that `-` means stdin in every command alike.

mod admin;
mod canonicalize;
mod health;
mod receipt;
mod serve;
mod token;

use std::process::ExitCode;

use clap::Subcommand;

pub use admin::AgentCommand;

/// Exit status when the input was examined and refused.
pub const EXIT_REFUSED: u8 = 1;
/// Exit status when the command could not run.
pub const EXIT_ERROR: u8 = 2;

/// The gateway's commands; `agent` is [`AgentCommand`], the operator's side of it.
#[derive(Debug, Subcommand)]
pub enum Command {
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
    /// Receipts: the evidence of a decision.
    #[command(subcommand)]
    Receipt(receipt::Command),
    /// Check a running gateway (a container's healthcheck): exit 0 when the URL answers 2xx, 1
    /// otherwise.
    Health(health::Args),
}

/// What a command concluded; errors that stopped it from concluding are `Err`.
pub enum Outcome {
    Accepted,
    Refused,
    /// An outcome with an exit status of the command's own, documented by that command.
    Exit(u8),
}

/// Runs one of the gateway's commands.
pub async fn run(command: Command) -> anyhow::Result<Outcome> {
    match command {
        Command::Serve(args) => serve::run(*args).await,
        Command::Canonicalize(args) => canonicalize::run(args).await,
        Command::Token(command) => token::run(command).await,
        Command::Receipt(command) => receipt::run(command).await,
        Command::User(command) => admin::user(command).await,
        Command::Health(args) => health::run(args).await,
    }
}

/// Runs the operator's `handsign agent ...` commands.
pub async fn agent(command: AgentCommand) -> anyhow::Result<Outcome> {
    admin::agent(command).await
}

/// Runs a parsed command on a new runtime and maps its outcome to the exit status.
pub fn exit_after(command: impl Future<Output = anyhow::Result<Outcome>>) -> ExitCode {
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
    match runtime.block_on(command) {
        Ok(Outcome::Accepted) => ExitCode::SUCCESS,
        Ok(Outcome::Refused) => ExitCode::from(EXIT_REFUSED),
        Ok(Outcome::Exit(status)) => ExitCode::from(status),
        Err(e) => {
            eprintln!("handsign: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
