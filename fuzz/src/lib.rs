//! What the fuzz targets share: the fixed keys and expectations they verify against, and how
//! a target's input selects what it exercises.
//!
//! Inputs whose first byte selects a mode let one target reach past a signature check: in
//! "signed" modes the target signs the fuzzed bytes itself with a key it trusts, so the claims
//! checks behind the signature see arbitrary content too.

use handsign_protocol::keys::{KeySet, SigningKey};
use handsign_protocol::params::{CanonicalParams, ParamsHash};

/// The verifier's clock in every target: a fixed unix second, so runs are reproducible.
pub const NOW: i64 = 1_800_000_000;
pub const ISSUER: &str = "https://handsign.test";
pub const AUDIENCE: &str = "https://travel.test";
pub const ACTION: &str = "flights.book";
pub const PARAMS: &str = r#"{"from":"SFO","to":"NYC"}"#;
/// The URL DPoP proofs must name.
pub const URL: &str = "https://travel.test/bookings";

/// The gateway's signing key (fixed seed).
pub fn gateway() -> SigningKey {
    SigningKey::from_seed(&[7; 32])
}

/// The agent's key (fixed seed).
pub fn agent() -> SigningKey {
    SigningKey::from_seed(&[9; 32])
}

pub fn gateway_keys() -> KeySet {
    KeySet::from_signing_keys([&gateway()])
}

pub fn params_hash() -> ParamsHash {
    CanonicalParams::parse(PARAMS.as_bytes(), &Default::default())
        .expect("the fixed params are canonical")
        .hash()
}

/// Splits `data` into its first byte (the mode) and the rest.
pub fn mode(data: &[u8]) -> Option<(u8, &[u8])> {
    data.split_first().map(|(mode, rest)| (*mode, rest))
}

/// Splits `data` into `N` parts, each prefixed by its length as two bytes (big endian); the
/// last part takes whatever is left. `None` when a length runs past the end.
pub fn parts<const N: usize>(mut data: &[u8]) -> Option<[&[u8]; N]> {
    let mut out = [&[][..]; N];
    for (i, slot) in out.iter_mut().enumerate() {
        if i + 1 == N {
            *slot = data;
            break;
        }
        let (len, rest) = data.split_at_checked(2)?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let (part, rest) = rest.split_at_checked(len)?;
        *slot = part;
        data = rest;
    }
    Some(out)
}
