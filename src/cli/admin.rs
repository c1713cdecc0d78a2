//! `handsign user ...` and `handsign agent ...`: operator commands, sent to the running gateway
//! or, when none runs, carried out on its data directory directly; with `--redis-url`, carried
//! out on the Redis the gateways share.

use std::path::PathBuf;

use url::Url;

use super::Outcome;
use crate::admin::{self, Answer, Command};
use crate::clock::Clock;
use crate::config::{PublicUrl, default_data_dir};
use crate::domain::{AgentRecord, AgentStatus};
use crate::notify::webhooks::marked_line;
use crate::storage::Storage;

/// Where the gateway keeps its data, and how it is reached (for the links it prints).
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The gateway's data directory (`handsign serve` prints it at start). Default:
    /// `$XDG_DATA_HOME/handsign`, else `~/.local/share/handsign`.
    #[arg(long, env = "HANDSIGN_DATA_DIR", default_value_os_t = default_data_dir())]
    data_dir: PathBuf,
    /// The Redis the gateways share (`handsign serve --redis-url`); the command then works on
    /// it directly.
    #[arg(long, env = "HANDSIGN_REDIS_URL")]
    redis_url: Option<String>,
    #[arg(
        long,
        env = "HANDSIGN_PUBLIC_URL",
        default_value = "http://localhost:8080"
    )]
    public_url: Url,
}

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Print a one-time link (valid one hour) with which NAME, a new user, registers their
    /// first passkey.
    Invite {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Make NAME an admin, who may invite people from the dashboard (the first user is one).
    Admin {
        name: String,
        /// Take the role away instead.
        #[arg(long)]
        revoke: bool,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum AgentCommand {
    /// Add an agent by its public key, active at once.
    Add {
        #[arg(long)]
        name: String,
        #[arg(long)]
        user: String,
        /// The agent's public JWK (JSON) or its RFC 7638 thumbprint.
        #[arg(long)]
        key: String,
        #[command(flatten)]
        target: Target,
    },
    /// List agents.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Stop an agent from creating requests and collecting tokens until resumed.
    Suspend {
        agent: String,
        #[command(flatten)]
        target: Target,
    },
    /// Let a suspended agent act again.
    Resume {
        agent: String,
        #[command(flatten)]
        target: Target,
    },
    /// Remove an agent for good and cancel its pending requests.
    Revoke {
        agent: String,
        #[command(flatten)]
        target: Target,
    },
}

pub async fn user(command: UserCommand) -> anyhow::Result<Outcome> {
    match command {
        UserCommand::Invite { name, target } => {
            run(&target, Command::InviteUser { user: name }).await
        }
        UserCommand::Admin {
            name,
            revoke,
            target,
        } => {
            let command = Command::SetAdmin {
                user: name,
                admin: !revoke,
            };
            run(&target, command).await
        }
    }
}

pub async fn agent(command: AgentCommand) -> anyhow::Result<Outcome> {
    let status = |agent: String, status| Command::SetAgentStatus { agent, status };
    let (target, command) = match command {
        AgentCommand::Add {
            name,
            user,
            key,
            target,
        } => (target, Command::AddAgent { name, user, key }),
        AgentCommand::List { target } => (target, Command::ListAgents),
        AgentCommand::Suspend { agent, target } => (target, status(agent, AgentStatus::Suspended)),
        AgentCommand::Resume { agent, target } => (target, status(agent, AgentStatus::Active)),
        AgentCommand::Revoke { agent, target } => (target, status(agent, AgentStatus::Revoked)),
    };
    run(&target, command).await
}

async fn run(target: &Target, command: Command) -> anyhow::Result<Outcome> {
    let local = match &target.redis_url {
        Some(_) => None,
        None => admin::send(&target.data_dir, &command).await?,
    };
    let answer = match local {
        Some(answer) => answer,
        None => {
            let public = PublicUrl::parse(&target.public_url).map_err(anyhow::Error::msg)?;
            // An operator command never starts a store of its own: a name looked up in an
            // empty one would only read as "no such user".
            if target.redis_url.is_none() && !Storage::embedded_file(&target.data_dir).exists() {
                anyhow::bail!(
                    "no gateway runs with data directory {} and it holds no Handsign data: pass \
                     the directory `handsign serve` printed at start with --data-dir (or \
                     HANDSIGN_DATA_DIR)",
                    target.data_dir.display()
                );
            }
            let storage = Storage::open(&target.data_dir, target.redis_url.as_deref()).await?;
            admin::execute(
                storage.store.as_ref(),
                &public,
                command,
                Clock::system().now(),
            )
            .await
        }
    };
    match answer {
        Answer::Invitation { user, url } => {
            println!("Invitation for {user} (valid one hour, usable once):\n  {url}");
        }
        Answer::User { user, admin } => {
            let role = if admin { "an admin" } else { "not an admin" };
            println!("{user} is {role}");
        }
        Answer::Agent { agent } => print_agent(&agent),
        Answer::Agents { agents } => agents.iter().for_each(print_agent),
        Answer::Refused { message } => {
            eprintln!("handsign: refused: {message}");
            return Ok(Outcome::Refused);
        }
        Answer::Unavailable { message } => anyhow::bail!(message),
    }
    Ok(Outcome::Accepted)
}

/// One line per agent. An enrolling agent picks its own name, so the name is shown marked (no
/// escape sequence or bidirectional override reaches the operator's terminal raw).
fn print_agent(agent: &AgentRecord) {
    println!(
        "{}\t{}\t{}\t{}",
        agent.id,
        agent.status.as_str(),
        agent.user,
        marked_line(&agent.name, usize::MAX)
    );
}
