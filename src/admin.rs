//! Operator commands (`handsign user invite`, `handsign agent ...`), which work whether or not the
//! gateway runs.
//!
//! The embedded store is locked by the running gateway, so a running gateway listens on a Unix
//! socket in its data directory (owner-only, like the directory) and carries the commands out
//! itself; when no gateway answers there, the command opens the store directly. Either way the
//! same functions below do the work.

use std::path::{Path, PathBuf};

use handsign_protocol::keys::{Jwk, PublicKey, thumbprint};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::clock::Clock;
use crate::config::PublicUrl;
use crate::domain::{AgentName, AgentRecord, AgentStatus, UserId};
use crate::invitations;
use crate::store::{Store, StoreError};

const SOCKET: &str = "admin.sock";

/// The socket a running gateway listens on for operator commands.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET)
}

/// An operator command.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    InviteUser {
        user: String,
    },
    /// Makes a user an admin (who may invite people), or no longer one.
    SetAdmin {
        user: String,
        admin: bool,
    },
    AddAgent {
        name: String,
        user: String,
        /// The agent's public JWK (JSON) or its thumbprint.
        key: String,
    },
    ListAgents,
    SetAgentStatus {
        agent: String,
        status: AgentStatus,
    },
}

/// What a command answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Answer {
    Invitation {
        user: String,
        url: String,
    },
    User {
        user: String,
        admin: bool,
    },
    Agent {
        agent: Box<AgentRecord>,
    },
    Agents {
        agents: Vec<AgentRecord>,
    },
    /// The command is refused (a name taken, an agent revoked): the message says why.
    Refused {
        message: String,
    },
    /// The store could not be reached: nothing was done, and the command may be tried again.
    Unavailable {
        message: String,
    },
}

/// Why a command was not carried out.
enum Failure {
    Refused(String),
    Unavailable(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::Refused(message)
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(detail) => Failure::Unavailable(detail),
            other => Failure::Refused(other.to_string()),
        }
    }
}

/// Carries out `command` on `store` at `now`.
pub async fn execute(store: &dyn Store, public: &PublicUrl, command: Command, now: i64) -> Answer {
    match run(store, public, command, now).await {
        Ok(answer) => answer,
        Err(Failure::Refused(message)) => Answer::Refused { message },
        Err(Failure::Unavailable(detail)) => {
            tracing::error!(%detail, "operator command: storage unavailable");
            Answer::Unavailable {
                message: format!("storage unavailable, nothing was done: {detail}"),
            }
        }
    }
}

async fn run(
    store: &dyn Store,
    public: &PublicUrl,
    command: Command,
    now: i64,
) -> Result<Answer, Failure> {
    let store_error = Failure::from;
    match command {
        Command::InviteUser { user } => {
            let user = UserId::parse(&user).map_err(|e| e.to_string())?;
            if store.user(&user).await.map_err(store_error)?.is_some() {
                return Err(Failure::Refused(format!(
                    "{user} already exists; they can add passkeys from the dashboard"
                )));
            }
            let code = invitations::issue(store, Some(user.clone()), now)
                .await
                .map_err(store_error)?;
            Ok(Answer::Invitation {
                user: user.to_string(),
                url: public.join(&format!("/setup?code={code}")),
            })
        }
        Command::SetAdmin { user, admin } => {
            let user = UserId::parse(&user).map_err(|e| e.to_string())?;
            let record = store.set_admin(&user, admin).await.map_err(|e| match e {
                StoreError::NotFound(_) => Failure::Refused(format!("no user {user}")),
                other => other.into(),
            })?;
            Ok(Answer::User {
                user: record.id.to_string(),
                admin: record.admin,
            })
        }
        Command::AddAgent { name, user, key } => {
            let user = UserId::parse(&user).map_err(|e| e.to_string())?;
            if store.user(&user).await.map_err(store_error)?.is_none() {
                return Err(Failure::Refused(format!(
                    "no user {user}; invite them first"
                )));
            }
            let name = AgentName::parse(&name).map_err(|e| e.to_string())?;
            let (id, public_jwk) = agent_key(&key)?;
            let agent = AgentRecord {
                id,
                name: name.into(),
                user,
                public_jwk,
                status: AgentStatus::Active,
                created_at: now,
                enrollment_expires_at: None,
            };
            store.add_agent(&agent).await.map_err(store_error)?;
            Ok(Answer::Agent {
                agent: Box::new(agent),
            })
        }
        Command::ListAgents => {
            let mut agents = store.agents(None).await.map_err(store_error)?;
            agents.retain(|agent| agent.exists_at(now));
            Ok(Answer::Agents { agents })
        }
        Command::SetAgentStatus { agent, status } => {
            if status == AgentStatus::Pending {
                return Err(Failure::Refused(
                    "an agent cannot be set back to pending".into(),
                ));
            }
            let current = store
                .agent(&agent)
                .await
                .map_err(store_error)?
                .ok_or_else(|| format!("no agent {agent}"))?;
            if current.status == AgentStatus::Revoked {
                return Err(Failure::Refused(format!(
                    "agent {agent} is revoked for good"
                )));
            }
            let agent = store
                .set_agent_status(&agent, status, now)
                .await
                .map_err(store_error)?;
            Ok(Answer::Agent {
                agent: Box::new(agent),
            })
        }
    }
}

/// Reads an agent's key: a public OKP Ed25519 JWK, or a bare RFC 7638 thumbprint.
fn agent_key(key: &str) -> Result<(String, Option<Jwk>), String> {
    let key = key.trim();
    if key.starts_with('{') {
        let jwk: Jwk = serde_json::from_str(key).map_err(|e| format!("not a JWK: {e}"))?;
        PublicKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
        let id = thumbprint(&jwk).map_err(|e| e.to_string())?;
        return Ok((id, Some(jwk)));
    }
    let valid = key.len() == 43
        && handsign_protocol::base64url::decode(key).is_ok_and(|bytes| bytes.len() == 32);
    if valid {
        Ok((key.to_owned(), None))
    } else {
        Err("the key must be the agent's public JWK or its RFC 7638 thumbprint (43 base64url characters)".into())
    }
}

/// Binds the data directory's operator socket, owner-only.
pub async fn bind(data_dir: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = socket_path(data_dir);
    // A socket left by a gateway that was killed: nothing listens on it any more. (A live one
    // cannot be here: the store's lock keeps a second gateway from starting on this directory.)
    if path.exists() {
        std::fs::remove_file(&path)?;
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves operator commands on `listener` until the gateway stops, at the time of `clock`.
pub async fn serve(
    listener: UnixListener,
    store: std::sync::Arc<dyn Store>,
    public: std::sync::Arc<PublicUrl>,
    clock: Clock,
) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let store = store.clone();
        let public = public.clone();
        let now = clock.now();
        tokio::spawn(async move {
            if let Err(e) = answer_one(stream, store.as_ref(), &public, now).await {
                tracing::warn!(error = %e, "operator command failed");
            }
        });
    }
}

async fn answer_one(
    stream: UnixStream,
    store: &dyn Store,
    public: &PublicUrl,
    now: i64,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    let answer = match serde_json::from_str::<Command>(&line) {
        Ok(command) => execute(store, public, command, now).await,
        Err(e) => Answer::Refused {
            message: format!("not a command: {e}"),
        },
    };
    let mut text = serde_json::to_string(&answer).map_err(std::io::Error::other)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await
}

/// Sends `command` to the gateway running on `data_dir`; `None` when no gateway listens there.
pub async fn send(data_dir: &Path, command: &Command) -> std::io::Result<Option<Answer>> {
    let Ok(stream) = UnixStream::connect(socket_path(data_dir)).await else {
        return Ok(None);
    };
    let (read, mut write) = stream.into_split();
    let mut text = serde_json::to_string(command).map_err(std::io::Error::other)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    serde_json::from_str(&line)
        .map(Some)
        .map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::redis::{RedisStore, RedisTarget};

    #[tokio::test]
    async fn a_store_that_cannot_be_reached_is_not_a_refusal() {
        let mut redis = handsign_redis_harness::RedisServer::start().await;
        let target = RedisTarget::parse(redis.url()).unwrap();
        let store = RedisStore::connect(&target, "test").await.unwrap();
        let public = PublicUrl::parse(&url::Url::parse("http://localhost:8080").unwrap()).unwrap();
        redis.stop();
        let commands = [
            Command::InviteUser { user: "bob".into() },
            Command::ListAgents,
            Command::SetAgentStatus {
                agent: "a".into(),
                status: AgentStatus::Revoked,
            },
        ];
        for command in commands {
            let answer = execute(&store, &public, command, Clock::system().now()).await;
            assert!(matches!(answer, Answer::Unavailable { .. }), "{answer:?}");
        }
    }
}
