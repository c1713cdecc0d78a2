//! Ed25519 keys as the protocol names them: JWKs (RFC 7517, RFC 8037), RFC 7638 thumbprints, and
//! key sets (JWKS).
//!
//! One key type serves the gateway (which signs tokens and receipts) and agents (which sign DPoP
//! proofs): both are Ed25519, and both are named by their RFC 7638 thumbprint. A gateway key's `kid`
//! is its thumbprint, and an agent's id is its thumbprint, so a name can never point at another key.

use std::collections::BTreeMap;
use std::fmt;

use ed25519_dalek::Signer as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::base64url;

/// A JSON Web Key as it travels: public keys in a JWKS or a DPoP header, and private keys in a key
/// file. Only the members the protocol uses are kept; others are ignored when reading.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Jwk {
    pub kty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// The private part; never present in a JWKS or a DPoP header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
}

impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwk")
            .field("kty", &self.kty)
            .field("crv", &self.crv)
            .field("x", &self.x)
            .field("y", &self.y)
            .field("d", &self.d.as_ref().map(|_| "<redacted>"))
            .field("kid", &self.kid)
            .finish()
    }
}

/// Why a JWK could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("unsupported key type {kty:?}/{crv:?}: only OKP Ed25519 keys are accepted here")]
    Unsupported { kty: String, crv: Option<String> },
    #[error("key member \"{0}\" is missing")]
    Missing(&'static str),
    #[error("key member \"{0}\" is not base64url of the right length")]
    Malformed(&'static str),
    #[error("the Ed25519 public key is not a valid curve point")]
    InvalidPoint,
    #[error("the private key does not match the public key \"x\"")]
    Mismatch,
    #[error("a public key was expected but the JWK holds a private key (\"d\")")]
    PrivateKeyPresent,
    #[error("no randomness available from the operating system: {0}")]
    Randomness(String),
}

/// The RFC 7638 thumbprint of a JWK: base64url of SHA-256 over its required members in
/// lexicographic order. Defined for OKP and EC keys, the two kinds the protocol meets.
pub fn thumbprint(jwk: &Jwk) -> Result<String, KeyError> {
    fn member<'a>(value: &'a Option<String>, name: &'static str) -> Result<&'a str, KeyError> {
        value.as_deref().ok_or(KeyError::Missing(name))
    }
    // serde_json::to_string escapes the values, so a crafted member cannot change the structure.
    let json = |value: &str| serde_json::Value::String(value.to_owned()).to_string();
    let canonical = match jwk.kty.as_str() {
        "OKP" => format!(
            r#"{{"crv":{},"kty":"OKP","x":{}}}"#,
            json(member(&jwk.crv, "crv")?),
            json(member(&jwk.x, "x")?)
        ),
        "EC" => format!(
            r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
            json(member(&jwk.crv, "crv")?),
            json(member(&jwk.x, "x")?),
            json(member(&jwk.y, "y")?)
        ),
        _ => {
            return Err(KeyError::Unsupported {
                kty: jwk.kty.clone(),
                crv: jwk.crv.clone(),
            });
        }
    };
    Ok(base64url::encode(Sha256::digest(canonical.as_bytes())))
}

/// An Ed25519 public key, read from a JWK and checked to be a valid point.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PublicKey {
    /// Reads an OKP Ed25519 public JWK; a JWK carrying `d` is refused, since publishing one would
    /// leak the private key.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        if jwk.kty != "OKP" || jwk.crv.as_deref() != Some("Ed25519") {
            return Err(KeyError::Unsupported {
                kty: jwk.kty.clone(),
                crv: jwk.crv.clone(),
            });
        }
        if jwk.d.is_some() {
            return Err(KeyError::PrivateKeyPresent);
        }
        let x = decode_32(jwk.x.as_deref(), "x")?;
        ed25519_dalek::VerifyingKey::from_bytes(&x)
            .map(PublicKey)
            .map_err(|_| KeyError::InvalidPoint)
    }

    /// The public JWK, members `kty`, `crv`, `x` only.
    pub fn to_jwk(&self) -> Jwk {
        Jwk {
            kty: "OKP".into(),
            crv: Some("Ed25519".into()),
            x: Some(base64url::encode(self.0.as_bytes())),
            y: None,
            d: None,
            kid: None,
            use_: None,
            alg: None,
        }
    }

    /// The RFC 7638 thumbprint: a gateway key's `kid`, an agent's id.
    pub fn thumbprint(&self) -> String {
        let x = base64url::encode(self.0.as_bytes());
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        base64url::encode(Sha256::digest(canonical.as_bytes()))
    }

    /// Verifies an Ed25519 signature, refusing non-canonical encodings and small-order keys
    /// (`verify_strict`), so that no second valid signature can be derived from a first.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(bytes) = <[u8; 64]>::try_from(signature) else {
            return false;
        };
        let signature = ed25519_dalek::Signature::from_bytes(&bytes);
        self.0.verify_strict(message, &signature).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.thumbprint())
    }
}

/// An Ed25519 private key with its thumbprint, used as `kid` by the gateway and as agent id by an
/// agent. Its `Debug` never shows the private part.
#[derive(Clone)]
pub struct SigningKey {
    key: ed25519_dalek::SigningKey,
    kid: String,
}

impl SigningKey {
    /// A new key from the operating system's random number generator.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Randomness(e.to_string()))?;
        Ok(Self::from_seed(&seed))
    }

    /// The key whose 32-byte seed (RFC 8032's private key) is `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        let kid = PublicKey(key.verifying_key()).thumbprint();
        SigningKey { key, kid }
    }

    /// Reads a private OKP Ed25519 JWK and checks that `x` belongs to `d`.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        if jwk.kty != "OKP" || jwk.crv.as_deref() != Some("Ed25519") {
            return Err(KeyError::Unsupported {
                kty: jwk.kty.clone(),
                crv: jwk.crv.clone(),
            });
        }
        let key = Self::from_seed(&decode_32(jwk.d.as_deref(), "d")?);
        if let Some(x) = &jwk.x
            && *x != base64url::encode(key.key.verifying_key().as_bytes())
        {
            return Err(KeyError::Mismatch);
        }
        Ok(key)
    }

    /// The private JWK (with `d`), for a key file written owner-only.
    pub fn to_private_jwk(&self) -> Jwk {
        Jwk {
            d: Some(base64url::encode(self.key.to_bytes())),
            kid: Some(self.kid.clone()),
            ..self.public_key().to_jwk()
        }
    }

    /// The public JWK as a JWKS publishes it: with `kid`, `use: sig` and `alg: EdDSA`.
    pub fn public_jwk(&self) -> Jwk {
        Jwk {
            kid: Some(self.kid.clone()),
            use_: Some("sig".into()),
            alg: Some("EdDSA".into()),
            ..self.public_key().to_jwk()
        }
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.key.verifying_key())
    }

    /// The RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// An Ed25519 signature (RFC 8032; deterministic).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.kid)
    }
}

/// A JWK Set (RFC 7517 section 5), the document a gateway serves at `/.well-known/jwks.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

impl Jwks {
    /// The public keys of `keys`, in order: the current signing key first, then the retired keys
    /// whose tokens may still be live.
    pub fn from_signing_keys<'a>(keys: impl IntoIterator<Item = &'a SigningKey>) -> Self {
        Jwks {
            keys: keys.into_iter().map(SigningKey::public_jwk).collect(),
        }
    }
}

/// The keys a verifier trusts, by `kid`. Built from a JWKS: keys that cannot sign tokens (other
/// key types, `use` other than `sig`, `alg` other than `EdDSA`, no `kid`) are left out rather
/// than refused, since a JWKS may serve other purposes too; an Ed25519 key that is malformed, or
/// whose `kid` is not its thumbprint, is refused.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: BTreeMap<String, PublicKey>,
}

impl KeySet {
    pub fn from_jwks(jwks: &Jwks) -> Result<Self, KeyError> {
        let mut keys = BTreeMap::new();
        for jwk in &jwks.keys {
            let signs_eddsa = jwk.kty == "OKP"
                && jwk.crv.as_deref() == Some("Ed25519")
                && jwk.use_.as_deref().is_none_or(|u| u == "sig")
                && jwk.alg.as_deref().is_none_or(|a| a == "EdDSA");
            let Some(kid) = jwk.kid.as_ref().filter(|_| signs_eddsa) else {
                continue;
            };
            let key = PublicKey::from_jwk(jwk)?;
            if key.thumbprint() != *kid {
                return Err(KeyError::Malformed("kid"));
            }
            keys.insert(kid.clone(), key);
        }
        Ok(KeySet { keys })
    }

    /// A set holding the public halves of `keys`.
    pub fn from_signing_keys<'a>(keys: impl IntoIterator<Item = &'a SigningKey>) -> Self {
        KeySet {
            keys: keys
                .into_iter()
                .map(|k| (k.kid.clone(), k.public_key()))
                .collect(),
        }
    }

    pub fn get(&self, kid: &str) -> Option<&PublicKey> {
        self.keys.get(kid)
    }

    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }
}

fn decode_32(value: Option<&str>, name: &'static str) -> Result<[u8; 32], KeyError> {
    let text = value.ok_or(KeyError::Missing(name))?;
    base64url::decode(text)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or(KeyError::Malformed(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kid_is_the_thumbprint_and_round_trips_through_jwk() {
        let key = SigningKey::from_seed(&[7; 32]);
        let jwk = key.public_jwk();
        assert_eq!(thumbprint(&jwk).unwrap(), key.kid());
        let again = SigningKey::from_jwk(&key.to_private_jwk()).unwrap();
        assert_eq!(again.kid(), key.kid());
        assert_eq!(PublicKey::from_jwk(&jwk).unwrap(), key.public_key());
    }

    #[test]
    fn private_jwk_with_foreign_x_is_refused() {
        let mut jwk = SigningKey::from_seed(&[1; 32]).to_private_jwk();
        jwk.x = SigningKey::from_seed(&[2; 32]).public_jwk().x;
        assert_eq!(SigningKey::from_jwk(&jwk).unwrap_err(), KeyError::Mismatch);
    }

    #[test]
    fn public_key_with_d_is_refused() {
        let jwk = SigningKey::from_seed(&[1; 32]).to_private_jwk();
        assert_eq!(
            PublicKey::from_jwk(&jwk).unwrap_err(),
            KeyError::PrivateKeyPresent
        );
    }

    #[test]
    fn key_set_skips_foreign_keys_and_refuses_a_lying_kid() {
        let key = SigningKey::from_seed(&[3; 32]);
        let ec = Jwk {
            kty: "EC".into(),
            crv: Some("P-256".into()),
            kid: Some("ec".into()),
            ..key.public_jwk()
        };
        let set = KeySet::from_jwks(&Jwks {
            keys: vec![ec, key.public_jwk()],
        })
        .unwrap();
        assert_eq!(set.kids().collect::<Vec<_>>(), vec![key.kid()]);

        let mut lying = key.public_jwk();
        lying.kid = Some("another-kid".into());
        assert_eq!(
            KeySet::from_jwks(&Jwks { keys: vec![lying] }).unwrap_err(),
            KeyError::Malformed("kid")
        );
    }

    #[test]
    fn verify_refuses_other_message_and_short_signature() {
        let key = SigningKey::from_seed(&[4; 32]);
        let sig = key.sign(b"a");
        assert!(key.public_key().verify(b"a", &sig));
        assert!(!key.public_key().verify(b"b", &sig));
        assert!(!key.public_key().verify(b"a", &sig[..63]));
    }
}
