//! `handsign token verify`: would a service accept this token, and if not, which check fails?

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use handsign_client::cli::read_input;
use handsign_protocol::canonical::Limits;
use handsign_protocol::params::CanonicalParams;
use handsign_protocol::token::{self, Expected, MAX_SKEW_SECS};

use super::Outcome;
use crate::jwks_source;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Check a token as a service's verify middleware would (all but the DPoP proof and the
    /// once-only consumption of its jti, which need the live request).
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The token (the part after `Authorization: Approval `).
    token: String,
    /// The gateway's keys: a JWKS file, or its URL (`<gateway>/.well-known/jwks.json`).
    #[arg(long)]
    jwks: String,
    /// The gateway's issuer URL.
    #[arg(long)]
    issuer: String,
    /// This service's audience.
    #[arg(long)]
    audience: String,
    /// The action the route performs.
    #[arg(long)]
    action: String,
    /// A file with the params the request carries (its JSON body), or `-` for stdin.
    #[arg(long)]
    params: String,
    /// Allowed clock skew in seconds (at most 5).
    #[arg(long, default_value_t = MAX_SKEW_SECS, value_parser = clap::value_parser!(i64).range(0..=MAX_SKEW_SECS))]
    skew: i64,
    /// Check as of this unix time instead of now.
    #[arg(long)]
    now: Option<i64>,
}

pub async fn run(command: Command) -> anyhow::Result<Outcome> {
    let Command::Verify(args) = command;
    let params_bytes = read_input(&args.params).await?;
    let params = match CanonicalParams::parse(&params_bytes, &Limits::default()) {
        Ok(params) => params,
        Err(e) => {
            println!(
                "refused: params_unrepresentable: the params are refused before any hash: {e}"
            );
            return Ok(Outcome::Refused);
        }
    };
    let keys = jwks_source::load(&args.jwks).await?;
    let now = match args.now {
        Some(now) => now,
        None => i64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .context("the system clock is before 1970")?
                .as_secs(),
        )?,
    };
    let hash = params.hash();
    let expected = Expected {
        issuer: &args.issuer,
        audience: &args.audience,
        action: &args.action,
        params_sha256: &hash,
        now,
        skew: args.skew,
    };
    match token::verify(args.token.trim(), &keys, &expected) {
        Ok(claims) => {
            println!(
                "accepted: {} approved {} for agent {} (approval {}, jti {}, expires at {})",
                claims.sub, claims.action, claims.act.sub, claims.approval, claims.jti, claims.exp
            );
            if let Some(cnf) = claims.cnf {
                println!(
                    "note: the token is bound to the agent key {}; the service also requires a DPoP proof made with it",
                    cnf.jkt
                );
            }
            println!("note: a service accepts each token once; this check does not consume it");
            Ok(Outcome::Accepted)
        }
        Err(e) => {
            println!("refused: {}: {e}", e.code());
            Ok(Outcome::Refused)
        }
    }
}
