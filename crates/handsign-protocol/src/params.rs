//! The parameters of an action in canonical form, and `params_sha256`, the hash that binds a
//! statement, a token and a service request to the same bytes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::base64url;
use crate::canonical::{self, CanonicalError, Limits};

/// Parameters in RFC 8785 canonical form. Holding one means the input was representable exactly
/// and within the limits it was parsed with.
#[derive(Clone, PartialEq, Eq)]
pub struct CanonicalParams(Vec<u8>);

impl CanonicalParams {
    /// Canonicalizes a JSON text, refusing what RFC 8785 cannot represent exactly.
    pub fn parse(json: &[u8], limits: &Limits) -> Result<Self, CanonicalError> {
        canonical::canonicalize(json, limits).map(CanonicalParams)
    }

    /// Canonicalizes an already parsed value (for callers that build params in code).
    pub fn from_value(value: &serde_json::Value, limits: &Limits) -> Result<Self, CanonicalError> {
        canonical::canonicalize_value(value, limits).map(CanonicalParams)
    }

    /// The canonical bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The canonical bytes as text (canonical JSON is always UTF-8).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    pub fn hash(&self) -> ParamsHash {
        ParamsHash::of_canonical(&self.0)
    }
}

impl fmt::Debug for CanonicalParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CanonicalParams({})", self.as_str())
    }
}

/// `params_sha256`: base64url (no padding) of SHA-256 over the canonical params.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ParamsHash(String);

/// A `params_sha256` that is not base64url of 32 bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("params_sha256 must be base64url (no padding) of a 32-byte SHA-256 digest, got {0:?}")]
pub struct InvalidParamsHash(pub String);

impl ParamsHash {
    /// The hash of params already in canonical form, such as a gateway stored them after
    /// [`CanonicalParams::parse`]. Other bytes give a hash that no statement or request matches.
    pub fn of_canonical(canonical: &[u8]) -> Self {
        ParamsHash(base64url::encode(Sha256::digest(canonical)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ParamsHash {
    type Err = InvalidParamsHash;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match base64url::decode(s) {
            // Re-encoding refuses non-canonical trailing bits, so one digest has one spelling.
            Ok(bytes) if bytes.len() == 32 && base64url::encode(&bytes) == s => {
                Ok(ParamsHash(s.to_owned()))
            }
            _ => Err(InvalidParamsHash(s.to_owned())),
        }
    }
}

impl TryFrom<String> for ParamsHash {
    type Error = InvalidParamsHash;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ParamsHash> for String {
    fn from(hash: ParamsHash) -> String {
        hash.0
    }
}

impl fmt::Display for ParamsHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_base64url_sha256_of_the_canonical_bytes() {
        let params =
            CanonicalParams::parse(br#"{ "b": 2, "a": 1.0 }"#, &Limits::default()).unwrap();
        assert_eq!(params.as_str(), r#"{"a":1,"b":2}"#);
        // SHA-256 of {"a":1,"b":2}, computed independently with Python's hashlib.
        assert_eq!(
            params.hash().as_str(),
            "QyWM_3g_5wNtikMDP4MK38YOwDc4JHNUisdCuIgpJ3c"
        );
        assert_eq!(params.hash().as_str().len(), 43);
    }

    #[test]
    fn params_hash_parse_refuses_other_spellings() {
        let good = CanonicalParams::parse(b"1", &Limits::default())
            .unwrap()
            .hash();
        assert_eq!(good.as_str().parse::<ParamsHash>().unwrap(), good);
        assert!("".parse::<ParamsHash>().is_err());
        assert!(format!("{}=", good.as_str()).parse::<ParamsHash>().is_err());
        assert!(good.as_str()[..42].parse::<ParamsHash>().is_err());
    }
}
