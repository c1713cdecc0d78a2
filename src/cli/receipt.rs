//! `handsign receipt verify`: an auditor's offline check of a decision's evidence.
//!
//! A receipt's own contents prove only that it is self-consistent: anyone can make one from
//! scratch with their own passkey, RP ID and origin. So the command says `valid` (exit 0) only
//! against a trust anchor the auditor brings: the gateway's keys, or a credential key known to
//! be the user's with its RP ID and origin. Without one it says `unverified` and exits 1.

use anyhow::Context as _;
use handsign_client::cli::read_input;
use handsign_protocol::receipt::{Anchored, PinnedCredential, Receipt, TrustAnchor};

use super::Outcome;
use crate::jwks_source;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Check a receipt with no network and no database: the params hash, the statement digest,
    /// the passkey assertion over it, and a trust anchor: the gateway's signature (--jwks), or a
    /// pinned credential (--credential-key, --rp-id, --origin). Exits 0 only when the receipt
    /// holds against the anchor; without an anchor a self-consistent receipt exits 1.
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The receipt (`GET /v1/approvals/{id}/receipt`), or `-` for stdin.
    file: String,
    /// The gateway's keys (a JWKS file, or its URL): its signature attests that the passkey was
    /// registered to the statement's user, at the receipt's RP ID and origins.
    #[arg(long, conflicts_with = "credential_key")]
    jwks: Option<String>,
    /// A passkey public key you know to be the user's, as a JWK (inline JSON, or a file holding
    /// it): the receipt's passkey must be this key. Needs --rp-id and --origin.
    #[arg(long, value_name = "FILE_OR_JWK", requires_all = ["rp_id", "origin"])]
    credential_key: Option<String>,
    /// The RP ID the pinned credential is registered for, e.g. handsign.example.com.
    #[arg(long, value_name = "ID", requires = "credential_key")]
    rp_id: Option<String>,
    /// The origin the pinned credential's assertion must come from, e.g.
    /// https://handsign.example.com.
    #[arg(long, value_name = "URL", requires = "credential_key")]
    origin: Option<String>,
}

pub async fn run(command: Command) -> anyhow::Result<Outcome> {
    let Command::Verify(args) = command;
    let bytes = read_input(&args.file).await?;
    let keys = match &args.jwks {
        Some(source) => Some(jwks_source::load(source).await?),
        None => None,
    };
    let pinned = match (&args.credential_key, &args.rp_id, &args.origin) {
        (Some(key), Some(rp_id), Some(origin)) => Some(PinnedCredential {
            public_key_jwk: read_jwk(key).await?,
            rp_id: rp_id.clone(),
            origin: origin.clone(),
        }),
        _ => None,
    };
    let anchor = match (&keys, &pinned) {
        (Some(keys), _) => TrustAnchor::Gateway(keys),
        (None, Some(pinned)) => TrustAnchor::Credential(pinned),
        (None, None) => TrustAnchor::None,
    };
    let receipt = match Receipt::parse(&bytes).and_then(|receipt| receipt.verify(anchor)) {
        Ok(receipt) => receipt,
        Err(e) => {
            println!("invalid: {e}");
            return Ok(Outcome::Refused);
        }
    };
    let decision = format!(
        "{} decided {} on {} with params_sha256 {} for agent {} and audience {}",
        receipt.user,
        receipt.decision.as_str(),
        receipt.action,
        receipt.params_sha256,
        receipt.agent,
        receipt.audience
    );
    match receipt.anchored {
        Anchored::Unverified => {
            println!("unverified: the receipt is self-consistent: {decision}");
            println!(
                "not verified: who made it. Anyone can make a self-consistent receipt with their \
                 own passkey, RP ID and origin; check it against the gateway's keys (--jwks) or \
                 a credential key known to be {}'s (--credential-key with --rp-id and --origin)",
                receipt.user
            );
            Ok(Outcome::Refused)
        }
        Anchored::GatewaySignature { kid } => {
            println!("valid: {decision}");
            println!(
                "verified: the passkey in the receipt signed exactly this statement and these \
                 params, and the gateway's signature (kid {kid}) attests that this passkey is \
                 registered to {} at the receipt's RP ID and origins",
                receipt.user
            );
            Ok(Outcome::Accepted)
        }
        Anchored::PinnedCredential { rp_id, origin } => {
            println!("valid: {decision}");
            println!(
                "verified: the pinned credential key signed exactly this statement and these \
                 params, for RP ID {rp_id} at origin {origin}; that this key is {}'s rests on \
                 where you got it (the gateway's signature was not checked)",
                receipt.user
            );
            Ok(Outcome::Accepted)
        }
    }
}

/// The JWK given inline (text starting with `{`) or in a file.
async fn read_jwk(source: &str) -> anyhow::Result<serde_json::Value> {
    let text = if source.trim_start().starts_with('{') {
        source.as_bytes().to_vec()
    } else {
        tokio::fs::read(source)
            .await
            .with_context(|| format!("--credential-key: cannot read {source}"))?
    };
    let jwk: serde_json::Value =
        serde_json::from_slice(&text).context("--credential-key: not a JSON JWK")?;
    if !jwk.get("kty").is_some_and(serde_json::Value::is_string) {
        anyhow::bail!("--credential-key: a JWK is a JSON object with a \"kty\" member");
    }
    Ok(jwk)
}
