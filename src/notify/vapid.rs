//! VAPID (RFC 8292): the gateway's application-server key, and the token that identifies the
//! gateway to push services.
//!
//! Browsers bind each subscription to the public key, and push services accept messages only with
//! tokens it signed; the key is kept in the data directory (or Redis) and made on first start.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::SecretKey;
use serde::{Deserialize, Serialize};

use super::ece::{P256_POINT_LEN, point_bytes, random_secret_key};
use crate::storage::Storage;

/// VAPID tokens live at most this long: RFC 8292 caps them at 24 h; half of that leaves room for
/// a push service whose clock runs ahead of ours.
pub const VAPID_TOKEN_LIFETIME_SECS: i64 = 12 * 60 * 60;
const VAPID_KEY_FILE: &str = "vapid-key.json";

/// Why a VAPID header could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VapidError {
    #[error("the VAPID subject must be a mailto: or https: URL, got {0:?}")]
    Subject(String),
    #[error("the push endpoint has no origin to use as the token's audience")]
    NoOrigin,
    #[error("cannot serialize the VAPID token: {0}")]
    Json(String),
}

/// The gateway's application-server key (VAPID): browsers bind each subscription to its public
/// key, and push services accept messages only with tokens it signed.
#[derive(Clone)]
pub struct VapidKey {
    signing: p256::ecdsa::SigningKey,
    public: [u8; P256_POINT_LEN],
}

impl std::fmt::Debug for VapidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapidKey")
            .field("public", &self.public_key_b64url())
            .finish_non_exhaustive()
    }
}

/// The key file: a private JWK (`kty`, `crv`, `x`, `y`, `d`).
#[derive(Serialize, Deserialize)]
struct VapidKeyFile {
    kty: String,
    crv: String,
    x: String,
    y: String,
    d: String,
}

impl VapidKey {
    /// A new random key.
    pub fn generate() -> anyhow::Result<Self> {
        let secret = random_secret_key().map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        Ok(Self::from_secret(&secret))
    }

    /// The key with the given 32-octet private scalar.
    pub fn from_private_bytes(d: &[u8]) -> anyhow::Result<Self> {
        let secret = SecretKey::from_slice(d)
            .map_err(|_| anyhow::anyhow!("not a P-256 private key (32 octets, in range)"))?;
        Ok(Self::from_secret(&secret))
    }

    fn from_secret(secret: &SecretKey) -> Self {
        Self {
            signing: p256::ecdsa::SigningKey::from(secret),
            public: point_bytes(&secret.public_key()),
        }
    }

    /// Loads the key kept in `storage` (`vapid-key.json` in the data directory, or in Redis),
    /// creating it on first start. Changing this key invalidates every subscription.
    pub async fn load_or_create(storage: &Storage) -> anyhow::Result<Self> {
        storage
            .load_or_create_secret(VAPID_KEY_FILE, Self::from_key_file, || {
                let key = Self::generate()?;
                let contents = serde_json::to_vec_pretty(&key.key_file())?;
                Ok((key, contents))
            })
            .await
    }

    fn key_file(&self) -> VapidKeyFile {
        VapidKeyFile {
            kty: "EC".into(),
            crv: "P-256".into(),
            x: URL_SAFE_NO_PAD.encode(&self.public[1..33]),
            y: URL_SAFE_NO_PAD.encode(&self.public[33..]),
            d: URL_SAFE_NO_PAD.encode(self.signing.to_bytes()),
        }
    }

    fn from_key_file(bytes: &[u8]) -> anyhow::Result<Self> {
        let file: VapidKeyFile = serde_json::from_slice(bytes)?;
        anyhow::ensure!(
            file.kty == "EC" && file.crv == "P-256",
            "not a P-256 key (kty {:?}, crv {:?})",
            file.kty,
            file.crv
        );
        let d = URL_SAFE_NO_PAD
            .decode(&file.d)
            .map_err(|_| anyhow::anyhow!("d is not base64url"))?;
        let key = Self::from_private_bytes(&d)?;
        let stored = (
            URL_SAFE_NO_PAD.decode(&file.x).ok(),
            URL_SAFE_NO_PAD.decode(&file.y).ok(),
        );
        anyhow::ensure!(
            stored.0.as_deref() == Some(&key.public[1..33])
                && stored.1.as_deref() == Some(&key.public[33..]),
            "the public key (x, y) does not match the private key (d)"
        );
        Ok(key)
    }

    /// The public key as an uncompressed point.
    pub fn public_key_bytes(&self) -> [u8; P256_POINT_LEN] {
        self.public
    }

    /// The public key in base64url: the `applicationServerKey` for `pushManager.subscribe` and
    /// the `k` parameter of the header.
    pub fn public_key_b64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.public)
    }

    /// The signed ES256 JWT for one push service: `aud` is the endpoint's origin, `exp` is
    /// `now` + 12 h, `sub` the operator's contact (`mailto:` or `https:` URL).
    pub fn token(
        &self,
        endpoint: &url::Url,
        subject: &str,
        now: i64,
    ) -> Result<String, VapidError> {
        use p256::ecdsa::signature::Signer as _;
        check_subject(subject)?;
        let origin = endpoint.origin();
        if !origin.is_tuple() {
            return Err(VapidError::NoOrigin);
        }
        let claims = serde_json::json!({
            "aud": origin.ascii_serialization(),
            "exp": now.saturating_add(VAPID_TOKEN_LIFETIME_SECS),
            "sub": subject,
        });
        let claims = serde_json::to_vec(&claims).map_err(|e| VapidError::Json(e.to_string()))?;
        let mut jwt = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(claims));
        let signature: p256::ecdsa::Signature = self.signing.sign(jwt.as_bytes());
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(signature.to_bytes()));
        Ok(jwt)
    }

    /// The `Authorization` header value: `vapid t=<JWT>, k=<public key>` (RFC 8292 §3).
    pub fn authorization(
        &self,
        endpoint: &url::Url,
        subject: &str,
        now: i64,
    ) -> Result<String, VapidError> {
        Ok(format!(
            "vapid t={}, k={}",
            self.token(endpoint, subject, now)?,
            self.public_key_b64url()
        ))
    }
}

/// RFC 8292 §2.1: the contact is a `mailto:` or `https:` URI.
fn check_subject(subject: &str) -> Result<(), VapidError> {
    let ok = match url::Url::parse(subject) {
        Ok(url) if url.scheme() == "mailto" => url.path().contains('@'),
        Ok(url) if url.scheme() == "https" => url.host_str().is_some_and(|h| !h.is_empty()),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(VapidError::Subject(subject.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use serde_json::Value;

    use super::*;

    #[tokio::test]
    async fn vapid_key_is_created_owner_only_and_reloaded() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let key = {
            let storage = Storage::embedded(&data).unwrap();
            VapidKey::load_or_create(&storage).await.unwrap()
        };
        let path = data.join(VAPID_KEY_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(&data).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let storage = Storage::embedded(&data).unwrap();
        let again = VapidKey::load_or_create(&storage).await.unwrap();
        assert_eq!(again.public_key_bytes(), key.public_key_bytes());
        assert_eq!(key.public_key_b64url().len(), 87);
        // No temporary files left behind.
        let hidden = std::fs::read_dir(&data)
            .unwrap()
            .filter(|entry| {
                entry
                    .as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count();
        assert_eq!(hidden, 0);
        // A key file whose public half does not match is refused.
        let mut file: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        file["x"] = Value::String(URL_SAFE_NO_PAD.encode([0u8; 32]));
        std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
        let err = VapidKey::load_or_create(&storage).await.unwrap_err();
        assert!(format!("{err:#}").contains("does not match"), "{err:#}");
    }

    #[test]
    fn vapid_subject_and_claims() {
        let key = VapidKey::generate().unwrap();
        let endpoint = url::Url::parse("https://push.example.net:8443/wpush/v2/abc?x=1").unwrap();
        for bad in [
            "push@example.com",
            "http://example.com",
            "mailto:",
            "https://",
        ] {
            assert_eq!(
                key.authorization(&endpoint, bad, 0),
                Err(VapidError::Subject(bad.into())),
                "{bad}"
            );
        }
        let header = key
            .authorization(&endpoint, "mailto:ops@example.com", 1_000)
            .unwrap();
        let (t, k) = header
            .strip_prefix("vapid t=")
            .unwrap()
            .split_once(", k=")
            .unwrap();
        assert_eq!(k, key.public_key_b64url());
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(
            claims,
            serde_json::json!({"aud": "https://push.example.net:8443", "exp": 1_000 + 43_200,
                               "sub": "mailto:ops@example.com"})
        );
    }
}
