//! `handsign canonicalize`: what a service author runs to find out why their hash differs.

use handsign_client::cli::read_input;
use handsign_protocol::canonical::Limits;
use handsign_protocol::params::CanonicalParams;
use tokio::io::AsyncWriteExt as _;

use super::Outcome;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print `params_sha256` (base64url SHA-256 of the canonical bytes) instead of the bytes.
    #[arg(long)]
    sha256: bool,
    /// Largest canonical output accepted, in bytes (the gateway's default is the same).
    #[arg(long, default_value_t = Limits::default().max_bytes)]
    max_bytes: usize,
    /// Deepest nesting accepted (the gateway's default is the same).
    #[arg(long, default_value_t = Limits::default().max_depth)]
    max_depth: usize,
}

pub async fn run(args: Args) -> anyhow::Result<Outcome> {
    let input = read_input("-").await?;
    let limits = Limits {
        max_bytes: args.max_bytes,
        max_depth: args.max_depth,
    };
    let params = match CanonicalParams::parse(&input, &limits) {
        Ok(params) => params,
        Err(e) => {
            eprintln!("handsign canonicalize: refused: {e}");
            return Ok(Outcome::Refused);
        }
    };
    let mut stdout = tokio::io::stdout();
    if args.sha256 {
        stdout
            .write_all(format!("{}\n", params.hash()).as_bytes())
            .await?;
    } else {
        stdout.write_all(params.as_bytes()).await?;
    }
    stdout.flush().await?;
    Ok(Outcome::Accepted)
}
