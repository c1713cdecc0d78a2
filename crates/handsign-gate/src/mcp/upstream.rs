//! The real MCP server: a command the gate starts (stdio) or a Streamable HTTP URL.

use std::process::Stdio;

use rmcp::service::{RoleClient, RunningService, Service, ServiceExt as _};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};

/// Where the real server is.
#[derive(Debug, Clone)]
pub enum UpstreamSpec {
    /// A command and its arguments, started once per session, speaking MCP on its stdio; its
    /// stderr is the gate's.
    Command(Vec<String>),
    /// A Streamable HTTP endpoint.
    Url(String),
}

impl UpstreamSpec {
    /// Opens a session with the real server, `handler` answering what it asks of the client.
    pub async fn connect<S: Service<RoleClient>>(
        &self,
        handler: S,
    ) -> Result<RunningService<RoleClient, S>, String> {
        match self {
            UpstreamSpec::Command(argv) => {
                let (program, args) = argv
                    .split_first()
                    .ok_or_else(|| "no command to start".to_owned())?;
                let mut command = tokio::process::Command::new(program);
                command.args(args);
                let (child, _) = TokioChildProcess::builder(command)
                    .stderr(Stdio::inherit())
                    .spawn()
                    .map_err(|error| format!("cannot start {program}: {error}"))?;
                handler
                    .serve(child)
                    .await
                    .map_err(|error| format!("{program}: {error}"))
            }
            UpstreamSpec::Url(url) => handler
                .serve(StreamableHttpClientTransport::from_uri(url.as_str()))
                .await
                .map_err(|error| format!("{url}: {error}")),
        }
    }
}
