//! `handsign receipt verify`: an auditor's offline check of a decision's evidence.

use handsign_protocol::receipt::{GatewaySignature, Receipt};

use super::{Outcome, read_input};
use crate::jwks_source;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Check a receipt with no network and no database: the params hash, the statement digest, the
    /// passkey assertion over it, and with --jwks the gateway's signature.
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The receipt (`GET /v1/approvals/{id}/receipt`), or `-` for stdin.
    file: String,
    /// The gateway's keys (a JWKS file, or its URL), to check the gateway's signature, which
    /// attests that the passkey was registered to the statement's user.
    #[arg(long)]
    jwks: Option<String>,
}

pub async fn run(command: Command) -> anyhow::Result<Outcome> {
    let Command::Verify(args) = command;
    let bytes = read_input(&args.file).await?;
    let keys = match &args.jwks {
        Some(source) => Some(jwks_source::load(source).await?),
        None => None,
    };
    let verdict = Receipt::parse(&bytes).and_then(|receipt| receipt.verify(keys.as_ref()));
    match verdict {
        Ok(receipt) => {
            println!(
                "valid: {} decided {} on {} with params_sha256 {} for agent {} and audience {}",
                receipt.user,
                receipt.decision.as_str(),
                receipt.action,
                receipt.params_sha256,
                receipt.agent,
                receipt.audience
            );
            match receipt.gateway_signature {
                GatewaySignature::Verified { kid } => {
                    println!("gateway signature: verified (kid {kid})");
                }
                GatewaySignature::NotChecked => println!(
                    "gateway signature: not checked (pass --jwks): the passkey signed these exact \
                     params, but that the passkey is {}'s rests on the gateway's signature",
                    receipt.user
                ),
            }
            Ok(Outcome::Accepted)
        }
        Err(e) => {
            println!("invalid: {e}");
            Ok(Outcome::Refused)
        }
    }
}
