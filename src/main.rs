//! The `handsign` command: the gateway and its tools, and the agent's tools beside them.
//! Everything lives in the libraries (the gateway's `handsign::cli`, the agent SDK's
//! `handsign_client::cli`); this only parses the arguments and hands them over.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use handsign::cli::Outcome;

/// jemalloc rather than glibc's malloc, for the memory that waiting connections hold. hyper gives
/// every connection 16 KiB of buffers, of which a waiting long poll writes a few hundred bytes,
/// and how much of the rest takes real memory depends on the allocator. With 10,000 agents
/// long-polling one gateway (BENCHMARKS.md): 7.8 KiB per waiting poll and a peak of 130 MB with
/// jemalloc, 15.1 KiB and 172 MB with glibc's malloc; mimalloc took more than glibc's malloc.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(name = "handsign", version, about = "Passkey approvals for AI agents")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Gateway(handsign::cli::Command),
    /// Agents: keygen, enroll (run by the agent); add, list, suspend, resume, revoke.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Ask a person to approve an action with exact params; print the approval token.
    Request(handsign_client::cli::RequestArgs),
    /// Call a service with a token, as an agent does: attaches the token and a DPoP proof.
    Call(handsign_client::cli::CallArgs),
    /// Put a passkey in front of an existing HTTP API: run the gate, `check` its file, or
    /// `enroll` its agent key (see the gate file's documentation in handsign-gate).
    Gate(handsign_gate::cli::Args),
    /// A coding agent's hook: a passkey approval before the tool calls the gate file's tool
    /// set names (`claude-code`: Claude Code's PreToolUse; `--format codex` for Codex).
    #[command(subcommand)]
    Hook(handsign_gate::hook::Command),
    /// Put a passkey in front of an MCP server's tools: serve the MCP client in the server's
    /// place (`handsign mcp --config gate.toml -- COMMAND...`).
    Mcp(handsign_gate::mcp::Args),
}

/// `handsign agent ...`: the operator's commands and the agent's own.
#[derive(Debug, Subcommand)]
enum AgentCommand {
    #[command(flatten)]
    Operator(handsign::cli::AgentCommand),
    #[command(flatten)]
    Agent(handsign_client::cli::AgentCommand),
}

fn main() -> ExitCode {
    let command = Cli::parse().command;
    handsign::cli::exit_after(async move {
        match command {
            Command::Gateway(command) => handsign::cli::run(command).await,
            Command::Agent(AgentCommand::Operator(command)) => handsign::cli::agent(command).await,
            Command::Agent(AgentCommand::Agent(command)) => handsign_client::cli::agent(command)
                .await
                .map(Outcome::Exit),
            Command::Request(args) => handsign_client::cli::request(args).await.map(Outcome::Exit),
            Command::Call(args) => handsign_client::cli::call(args).await.map(Outcome::Exit),
            Command::Gate(args) => handsign_gate::cli::run(args).await.map(Outcome::Exit),
            Command::Hook(command) => handsign_gate::hook::run(command).await.map(Outcome::Exit),
            Command::Mcp(args) => handsign_gate::mcp::run(args).await.map(Outcome::Exit),
        }
    })
}
