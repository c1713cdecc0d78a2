//! The gateway's token-signing keys, kept in the data directory.
//!
//! The current key signs; the JWKS publishes it. The key file is created on first start,
//! readable by the owner only, and never leaves the data directory.

use std::path::Path;

use handsign_protocol::keys::{Jwk, Jwks, KeySet, SigningKey};

use crate::secret_file;

const KEY_FILE: &str = "signing-key.jwk";

/// The keys the gateway signs with and publishes.
#[derive(Debug, Clone)]
pub struct Keyring {
    current: SigningKey,
}

impl Keyring {
    /// Loads the signing key from `data_dir`, creating the directory (owner-only) and the key
    /// (owner-only file) on first start.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        let current = secret_file::load_or_create(
            data_dir,
            KEY_FILE,
            |bytes| {
                let jwk: Jwk = serde_json::from_slice(bytes)?;
                Ok(SigningKey::from_jwk(&jwk)?)
            },
            || {
                let key = SigningKey::generate()?;
                let contents = serde_json::to_vec_pretty(&key.to_private_jwk())?;
                Ok((key, contents))
            },
        )?;
        Ok(Keyring { current })
    }

    pub fn current(&self) -> &SigningKey {
        &self.current
    }

    /// The JWKS served at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> Jwks {
        Jwks::from_signing_keys([&self.current])
    }

    pub fn key_set(&self) -> KeySet {
        KeySet::from_signing_keys([&self.current])
    }
}
