//! The travel agent: asks its person to approve one booking, waits, and books exactly that.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use handsign_client::{AgentKey, Client};
use handsign_example_travel::{Booking, ask, call_service};

#[derive(Debug, Parser)]
#[command(about = "An agent that books a flight once its person approves it")]
struct Args {
    /// The Handsign gateway's URL.
    #[arg(long)]
    gateway: String,
    /// The agent's private key file (created on first use; add its public key with
    /// `handsign agent add`).
    #[arg(long, default_value = "agent.jwk")]
    key: PathBuf,
    /// The travel service's URL.
    #[arg(long, default_value = "http://127.0.0.1:9000")]
    service: String,
    /// The travel service's audience.
    #[arg(long)]
    audience: String,
    #[arg(long, default_value = "SFO")]
    from: String,
    #[arg(long, default_value = "NYC")]
    to: String,
    #[arg(long, default_value = "2026-12-01")]
    date: String,
    #[arg(long, default_value = "Alice Ng")]
    passenger: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let key = AgentKey::load_or_create(&args.key)
        .with_context(|| format!("cannot use the key file {}", args.key.display()))?;
    let client = Client::new(&args.gateway, key)?;
    let booking = Booking {
        from: args.from,
        to: args.to,
        date: args.date,
        passenger: args.passenger,
    };
    let pending = ask(&client, &args.audience, &booking).await?;
    eprintln!(
        "Asked for approval. Open {} and check the code {}.",
        pending.approval_url(),
        pending.code()
    );
    let approval = pending.wait().await?;
    eprintln!("Approved by {}; booking.", approval.claims().sub);
    let (status, answer) = call_service(&client, &args.service, approval.token(), &booking).await?;
    println!("{status} {answer}");
    anyhow::ensure!(status.is_success(), "the service refused the booking");
    Ok(())
}
