//! The stand-in payments API: `PAYMENTS_API_KEY=... payments-api --listen 127.0.0.1:9200`.

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "A stand-in payments API that takes an API key and nothing else")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9200")]
    listen: SocketAddr,
    /// The API key callers must send as `Authorization: Bearer <key>`.
    #[arg(long, env = "PAYMENTS_API_KEY", hide_env_values = true)]
    api_key: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    eprintln!("payments API on http://{}", args.listen);
    axum::serve(listener, handsign_example_payments::app(&args.api_key)).await?;
    Ok(())
}
