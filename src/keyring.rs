//! The gateway's token-signing keys, kept where its state is (the data directory or Redis).
//!
//! The current key signs; the JWKS publishes it. The key is created on first start; as a file
//! it is readable by the owner only. With Redis every instance signs with the same key, so a
//! token or receipt from any instance verifies against any instance's JWKS.

use handsign_protocol::keys::{Jwk, Jwks, KeySet, SigningKey};

use crate::storage::Storage;

const KEY_FILE: &str = "signing-key.jwk";

/// The keys the gateway signs with and publishes.
#[derive(Debug, Clone)]
pub struct Keyring {
    current: SigningKey,
}

impl Keyring {
    /// Loads the signing key kept in `storage` (an owner-only file in the data directory, or
    /// in Redis, shared by every instance), creating it on first start.
    pub async fn load_or_create(storage: &Storage) -> anyhow::Result<Self> {
        let current = storage
            .load_or_create_secret(
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
            )
            .await?;
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
