//! The gateway's token-signing keys, kept in the data directory.
//!
//! The current key signs; the JWKS publishes it. The key file is created on first start,
//! readable by the owner only, and never leaves the data directory.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::Path;

use handsign_protocol::keys::{Jwk, Jwks, KeySet, SigningKey};

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
        use anyhow::Context as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
        let path = data_dir.join(KEY_FILE);
        let current = match std::fs::read(&path) {
            Ok(bytes) => {
                let jwk: Jwk = serde_json::from_slice(&bytes)
                    .with_context(|| format!("{} is not a JWK", path.display()))?;
                SigningKey::from_jwk(&jwk)
                    .with_context(|| format!("{} holds an unusable key", path.display()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = SigningKey::generate()?;
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                file.write_all(&serde_json::to_vec_pretty(&key.to_private_jwk())?)?;
                file.sync_all()?;
                key
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
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
