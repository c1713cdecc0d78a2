//! Where a verifier gets the gateway's public keys: a JWKS file, or the gateway's
//! `/.well-known/jwks.json` over HTTP(S).

use std::path::Path;

use handsign_protocol::keys::{Jwks, KeySet};

/// Why a key set could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot read JWKS file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot fetch JWKS from {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("{origin} is not a JWKS document ({{\"keys\": [...]}}): {reason}")]
    Parse { origin: String, reason: String },
    #[error("{origin} holds an unusable key: {reason}")]
    Key { origin: String, reason: String },
}

/// Loads a key set from `source`: an `http://` or `https://` URL is fetched, anything else is
/// read as a file.
pub async fn load(source: &str) -> Result<KeySet, JwksError> {
    let bytes = if source.starts_with("https://") || source.starts_with("http://") {
        fetch(source).await?
    } else {
        tokio::fs::read(Path::new(source))
            .await
            .map_err(|source_error| JwksError::Read {
                path: source.into(),
                source: source_error,
            })?
    };
    let jwks: Jwks = serde_json::from_slice(&bytes).map_err(|e| JwksError::Parse {
        origin: source.into(),
        reason: e.to_string(),
    })?;
    KeySet::from_jwks(&jwks).map_err(|e| JwksError::Key {
        origin: source.into(),
        reason: e.to_string(),
    })
}

async fn fetch(url: &str) -> Result<Vec<u8>, JwksError> {
    let failed = |reason: String| JwksError::Fetch {
        url: url.into(),
        reason,
    };
    let client = crate::http_client::new().map_err(|e| failed(e.to_string()))?;
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    if !response.status().is_success() {
        return Err(failed(format!("HTTP status {}", response.status())));
    }
    let body = response.bytes().await.map_err(|e| failed(e.to_string()))?;
    Ok(body.to_vec())
}
