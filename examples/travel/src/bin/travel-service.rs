//! The travel service: `POST /bookings` books a flight only with a person's approval of exactly
//! that booking, once.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use handsign_example_travel::{ServiceConfig, service};
use handsign_verify::replicas::ReplicaArgs;
use handsign_verify::{Clock, MemoryReplayStore, RedisReplayStore, ReplayStore};

#[derive(Debug, Parser)]
#[command(about = "A flight-booking service guarded by Handsign approvals")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// The Handsign gateway's URL (its issuer).
    #[arg(long)]
    gateway: String,
    /// This service's audience, as agents name it.
    #[arg(long)]
    audience: String,
    /// The URL agents call this service at; defaults to http://<listen>.
    #[arg(long)]
    public_url: Option<String>,
    /// Share the used-token store with other instances through this Redis server.
    #[arg(long)]
    redis_url: Option<String>,
    /// With Redis replicas: how a token's first use waits for them.
    #[command(flatten)]
    replicas: ReplicaArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let replay: Arc<dyn ReplayStore> = match &args.redis_url {
        Some(url) => {
            let wait = args.replicas.wait()?;
            let store = RedisReplayStore::connect_waiting(url, wait)
                .await
                .with_context(|| format!("cannot use Redis at {url}"))?;
            Arc::new(store)
        }
        None => Arc::new(MemoryReplayStore::new()),
    };
    let config = ServiceConfig {
        gateway: args.gateway,
        audience: args.audience,
        public_url: args
            .public_url
            .unwrap_or_else(|| format!("http://{}", args.listen)),
        clock: Clock::system(),
    };
    let app = service(&config, replay)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!(
        "travel service listening on {}, audience {}, trusting {}",
        listener.local_addr()?,
        config.audience,
        config.gateway
    );
    axum::serve(listener, app).await?;
    Ok(())
}
