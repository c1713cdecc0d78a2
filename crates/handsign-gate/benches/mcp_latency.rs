//! What the MCP gate adds to a `tools/call` of a `pass` tool, against calling the same server
//! directly, over stdio and over Streamable HTTP, side by side in one run.
//!
//! The server is npm's `@modelcontextprotocol/server-everything` (its `echo` tool), installed in
//! `tests/mcp/node_modules` (`npm ci --prefix tests/mcp`). The client is `rmcp`'s:
//!
//! - `stdio direct`: the client starts the server as its child and talks to its stdio;
//! - `stdio gate`: the client talks to the gate's relay (in this process, over an in-memory
//!   pipe, as over the gate's stdin/stdout), which starts the server as its child;
//! - `http direct`: the server in its Streamable HTTP mode;
//! - `http gate`: the gate's `/mcp` endpoint (`--listen`) in front of that server
//!   (`--upstream-url`).
//!
//! One call at a time, the four taking turns call by call so that all see the same machine load.
//! Run with `cargo bench -p handsign-gate --bench mcp_latency`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use handsign_client::AgentKey;
use handsign_gate::GateFile;
use handsign_gate::mcp::relay::Relay;
use handsign_gate::mcp::upstream::UpstreamSpec;
use handsign_protocol::keys::SigningKey;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService, ServiceExt as _};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use serde_json::json;

const ROUNDS: usize = 4;
const PER_ROUND: usize = 500;

type Connected = RunningService<RoleClient, ()>;

fn server_everything() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn until_listening(port: u16) {
    let give_up = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < give_up, "nothing listens on {port}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn call_echo(client: &Connected) {
    let mut params = CallToolRequestParams::new("echo");
    params.arguments = json!({"message": "bench"}).as_object().cloned();
    let result = client.call_tool(params).await.unwrap();
    assert_ne!(result.is_error, Some(true), "{result:?}");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    assert!(
        server_everything().exists(),
        "install the server first: npm ci --prefix tests/mcp"
    );
    let dir = tempfile::tempdir().unwrap();
    AgentKey::from_signing_key(SigningKey::generate().unwrap())
        .save_new(dir.path().join("gate.jwk"))
        .unwrap();
    std::fs::write(
        dir.path().join("gate.toml"),
        r#"
[handsign]
url = "http://127.0.0.1:9"
agent_key = "gate.jwk"
user = "alice"

[tools.everything]

[[tools.everything.rules]]
tool = "echo"
need = "pass"
"#,
    )
    .unwrap();
    let file = GateFile::load(&dir.path().join("gate.toml")).unwrap();
    let node = |args: &[&str]| {
        let mut command = tokio::process::Command::new("node");
        command.arg(server_everything()).args(args);
        command
    };

    // stdio
    let (direct_child, _) = TokioChildProcess::builder(node(&[]))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdio_direct = ().serve(direct_child).await.unwrap();
    let script = format!("exec node '{}' 2>/dev/null", server_everything().display());
    let shared = handsign_gate::mcp::shared(
        &file,
        None,
        UpstreamSpec::Command(vec!["sh".into(), "-c".into(), script]),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let (client_side, gate_side) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let running = Relay::new(shared).serve(gate_side).await.unwrap();
        let _ = running.waiting().await;
    });
    let stdio_gate = ().serve(client_side).await.unwrap();

    // Streamable HTTP
    let server_port = free_port();
    let _server = node(&["streamableHttp"])
        .env("PORT", server_port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    until_listening(server_port).await;
    let upstream = format!("http://127.0.0.1:{server_port}/mcp");
    let http_direct =
        ().serve(StreamableHttpClientTransport::from_uri(upstream.as_str()))
            .await
            .unwrap();
    let shared = handsign_gate::mcp::shared(
        &file,
        None,
        UpstreamSpec::Url(upstream.clone()),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gate_port = listener.local_addr().unwrap().port();
    let router = handsign_gate::mcp::router(shared);
    tokio::spawn(async move { axum::serve(listener, router).await });
    let http_gate = ()
        .serve(StreamableHttpClientTransport::from_uri(format!(
            "http://127.0.0.1:{gate_port}/mcp"
        )))
        .await
        .unwrap();

    let targets = [
        ("stdio direct", &stdio_direct),
        ("stdio gate", &stdio_gate),
        ("http direct", &http_direct),
        ("http gate", &http_gate),
    ];
    for (_, client) in &targets {
        for _ in 0..50 {
            call_echo(client).await;
        }
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); targets.len()];
    for _ in 0..ROUNDS {
        for _ in 0..PER_ROUND {
            for (index, (_, client)) in targets.iter().enumerate() {
                let start = Instant::now();
                call_echo(client).await;
                samples[index].push(start.elapsed());
            }
        }
    }
    println!(
        "tools/call of a pass tool (echo), {} calls each, one at a time",
        ROUNDS * PER_ROUND
    );
    println!("{:<14} {:>10} {:>10}", "target", "p50", "p99");
    let mut table = Vec::new();
    for ((name, _), mut times) in targets.iter().zip(samples) {
        times.sort();
        let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
        println!("{name:<14} {p50:>10.1?} {p99:>10.1?}");
        table.push((p50, p99));
    }
    for (label, direct, gate) in [("stdio", 0, 1), ("http", 2, 3)] {
        println!(
            "{label}: the gate adds {:.0}% at p50, {:.0}% at p99",
            (table[gate].0.as_secs_f64() / table[direct].0.as_secs_f64() - 1.0) * 100.0,
            (table[gate].1.as_secs_f64() / table[direct].1.as_secs_f64() - 1.0) * 100.0
        );
    }
}
