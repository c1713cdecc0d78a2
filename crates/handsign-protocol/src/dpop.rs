//! DPoP proofs (RFC 9449), EdDSA only: how an agent proves, on every request, that it holds the
//! private key its id names.
//!
//! A proof binds one HTTP method and URL at one moment; when it accompanies an approval token it
//! also binds that token (`ath`), so a proof captured with one request cannot be replayed with
//! another token or to another URL. Remembering proof `jti`s for the acceptance window is the
//! caller's job, since it needs state: [`verify`] returns the `jti` and `iat` to record.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::base64url;
use crate::jws::{self, CompactJws, JwsError};
use crate::keys::{Jwk, PublicKey, SigningKey};

/// The `typ` of a DPoP proof.
pub const DPOP_TYP: &str = "dpop+jwt";
/// How far a proof's `iat` may be from the verifier's clock, either way.
pub const MAX_PROOF_AGE_SECS: i64 = 60;

#[derive(Debug, Serialize, Deserialize)]
struct ProofHeader {
    typ: Option<String>,
    alg: String,
    jwk: Option<Jwk>,
}

/// The claims of a DPoP proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofClaims {
    pub jti: String,
    pub htm: String,
    pub htu: String,
    pub iat: i64,
    /// base64url SHA-256 of the access token the proof accompanies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ath: Option<String>,
}

/// Makes a proof for `method` and `url` at `iat` (unix seconds). Pass the approval token as
/// `access_token` when calling a service with it.
pub fn create(
    key: &SigningKey,
    method: &str,
    url: &str,
    iat: i64,
    access_token: Option<&str>,
) -> Result<String, DpopError> {
    let mut jti = [0u8; 16];
    getrandom::fill(&mut jti).map_err(|e| DpopError::Randomness(e.to_string()))?;
    let header = ProofHeader {
        typ: Some(DPOP_TYP.into()),
        alg: "EdDSA".into(),
        jwk: Some(key.public_key().to_jwk()),
    };
    let claims = ProofClaims {
        jti: base64url::encode(jti),
        htm: method.into(),
        htu: strip_query_and_fragment(url).unwrap_or_else(|| url.into()),
        iat,
        ath: access_token.map(access_token_hash),
    };
    jws::sign(key, &header, &claims).map_err(|e| DpopError::Malformed(e.to_string()))
}

/// What the verifier expects of a proof.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The request's method, e.g. `POST`.
    pub method: &'a str,
    /// The request's URL as the client addressed it (the public URL, not a proxy's view).
    pub url: &'a str,
    /// Unix seconds now.
    pub now: i64,
    /// The token the request carries, whose hash the proof must name in `ath`; `None` for calls
    /// that carry no token.
    pub access_token: Option<&'a str>,
}

/// A proof that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// RFC 7638 thumbprint of the proof's key: the agent id, and the token's `cnf.jkt`.
    pub jkt: String,
    /// To be remembered until [`VerifiedProof::fresh_until`], and refused if seen again.
    pub jti: String,
    pub iat: i64,
}

impl VerifiedProof {
    /// The first second at which no verifier accepts this proof any more: a verifier accepts it
    /// while `now <= iat + MAX_PROOF_AGE_SECS`. Remembering its `jti` until then, and no less,
    /// refuses every replay.
    pub fn fresh_until(&self) -> i64 {
        self.iat.saturating_add(MAX_PROOF_AGE_SECS + 1)
    }
}

/// Why a proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    #[error("malformed DPoP proof: {0}")]
    Malformed(String),
    #[error("DPoP proof typ must be \"{DPOP_TYP}\", got {0:?}")]
    WrongTyp(Option<String>),
    #[error("DPoP proof alg must be EdDSA, got {0:?}")]
    WrongAlg(String),
    #[error("DPoP proof key unusable: {0}")]
    BadKey(String),
    #[error("DPoP proof signature does not verify under its jwk")]
    BadSignature,
    #[error("DPoP proof is for method {found:?}, the request is {expected:?}")]
    WrongMethod { expected: String, found: String },
    #[error("DPoP proof is for URL {found:?}, the request is {expected:?}")]
    WrongUrl { expected: String, found: String },
    #[error("DPoP proof iat {iat} is more than {MAX_PROOF_AGE_SECS} s from now ({now})")]
    Stale { iat: i64, now: i64 },
    #[error("DPoP proof ath does not match the token sent with it")]
    WrongTokenHash,
    #[error("no randomness available from the operating system: {0}")]
    Randomness(String),
}

impl From<JwsError> for DpopError {
    fn from(e: JwsError) -> Self {
        DpopError::Malformed(e.to_string())
    }
}

/// Checks a proof's signature, key, method, URL, age and token hash.
pub fn verify(proof: &str, expected: &Expected<'_>) -> Result<VerifiedProof, DpopError> {
    let jws = CompactJws::parse(proof)?;
    let header: ProofHeader = jws.header()?;
    if header.typ.as_deref() != Some(DPOP_TYP) {
        return Err(DpopError::WrongTyp(header.typ));
    }
    if header.alg != "EdDSA" {
        return Err(DpopError::WrongAlg(header.alg));
    }
    let jwk = header
        .jwk
        .ok_or_else(|| DpopError::BadKey("the header has no jwk".into()))?;
    let key = PublicKey::from_jwk(&jwk).map_err(|e| DpopError::BadKey(e.to_string()))?;
    if !jws.verify(&key) {
        return Err(DpopError::BadSignature);
    }
    let claims: ProofClaims = jws.payload()?;
    if claims.htm != expected.method {
        return Err(DpopError::WrongMethod {
            expected: expected.method.into(),
            found: claims.htm,
        });
    }
    let wanted = strip_query_and_fragment(expected.url);
    if wanted.is_none() || strip_query_and_fragment(&claims.htu) != wanted {
        return Err(DpopError::WrongUrl {
            expected: expected.url.into(),
            found: claims.htu,
        });
    }
    // `abs_diff`: any `iat` is representable, and `iat - now` or its absolute value would
    // overflow for extreme ones (a panic in debug builds, a wrapped "fresh" in release builds).
    if claims.iat.abs_diff(expected.now) > MAX_PROOF_AGE_SECS.unsigned_abs() {
        return Err(DpopError::Stale {
            iat: claims.iat,
            now: expected.now,
        });
    }
    if let Some(token) = expected.access_token
        && claims.ath.as_deref() != Some(access_token_hash(token).as_str())
    {
        return Err(DpopError::WrongTokenHash);
    }
    Ok(VerifiedProof {
        jkt: key.thumbprint(),
        jti: claims.jti,
        iat: claims.iat,
    })
}

/// `ath`: base64url SHA-256 of the token's ASCII bytes (RFC 9449 section 4.2).
pub fn access_token_hash(token: &str) -> String {
    base64url::encode(Sha256::digest(token.as_bytes()))
}

/// The URL without query and fragment, normalized (scheme and host lower case, default port
/// dropped), as RFC 9449 section 4.3 compares `htu`. `None` when `url` is not an absolute URL.
fn strip_query_and_fragment(url: &str) -> Option<String> {
    let mut url = url::Url::parse(url).ok()?;
    url.set_query(None);
    url.set_fragment(None);
    Some(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://gw.example/v1/approvals";

    fn expected(now: i64) -> Expected<'static> {
        Expected {
            method: "POST",
            url: URL,
            now,
            access_token: None,
        }
    }

    #[test]
    fn proof_names_the_key_thumbprint() {
        let key = SigningKey::from_seed(&[5; 32]);
        let proof = create(&key, "POST", URL, 1000, None).unwrap();
        let verified = verify(&proof, &expected(1010)).unwrap();
        assert_eq!(verified.jkt, key.kid());
        assert_eq!(verified.iat, 1000);
    }

    #[test]
    fn a_proof_is_never_fresh_at_or_after_fresh_until() {
        let key = SigningKey::from_seed(&[5; 32]);
        // Proofs dated anywhere in the window around the moment they are first seen, t0: every
        // later moment a verifier still accepts one must come before its jti may be forgotten.
        let t0 = 10_000;
        for offset in -MAX_PROOF_AGE_SECS - 1..=MAX_PROOF_AGE_SECS + 1 {
            let proof = create(&key, "POST", URL, t0 + offset, None).unwrap();
            let Ok(first) = verify(&proof, &expected(t0)) else {
                continue;
            };
            for now in t0..t0 + 4 * MAX_PROOF_AGE_SECS {
                if verify(&proof, &expected(now)).is_ok() {
                    assert!(
                        now < first.fresh_until(),
                        "offset {offset}, accepted at {now}"
                    );
                }
            }
        }
    }

    #[test]
    fn an_extreme_iat_is_stale_not_an_overflow() {
        let key = SigningKey::from_seed(&[5; 32]);
        let now = 1_800_000_000;
        // i64::MIN + now makes `iat - now` exactly i64::MIN, whose absolute value overflows.
        for iat in [i64::MIN, i64::MIN + now, i64::MAX, -now] {
            let proof = create(&key, "POST", URL, iat, None).unwrap();
            assert!(
                matches!(verify(&proof, &expected(now)), Err(DpopError::Stale { .. })),
                "iat {iat}"
            );
        }
    }

    #[test]
    fn each_proof_has_its_own_jti() {
        let key = SigningKey::from_seed(&[5; 32]);
        let a = verify(
            &create(&key, "POST", URL, 1000, None).unwrap(),
            &expected(1000),
        )
        .unwrap();
        let b = verify(
            &create(&key, "POST", URL, 1000, None).unwrap(),
            &expected(1000),
        )
        .unwrap();
        assert_ne!(a.jti, b.jti);
    }

    #[test]
    fn url_comparison_ignores_query_fragment_and_default_port() {
        let key = SigningKey::from_seed(&[5; 32]);
        let proof = create(
            &key,
            "POST",
            "HTTPS://GW.example:443/v1/approvals?x=1#f",
            1000,
            None,
        )
        .unwrap();
        assert!(verify(&proof, &expected(1000)).is_ok());
    }

    #[test]
    fn refuses_other_method_url_time_and_token() {
        let key = SigningKey::from_seed(&[5; 32]);
        let proof = create(&key, "POST", URL, 1000, Some("token-a")).unwrap();
        let get = Expected {
            method: "GET",
            ..expected(1000)
        };
        assert!(matches!(
            verify(&proof, &get),
            Err(DpopError::WrongMethod { .. })
        ));
        let other = Expected {
            url: "https://gw.example/v1/agents/enroll",
            ..expected(1000)
        };
        assert!(matches!(
            verify(&proof, &other),
            Err(DpopError::WrongUrl { .. })
        ));
        let host = Expected {
            url: "https://evil.example/v1/approvals",
            ..expected(1000)
        };
        assert!(matches!(
            verify(&proof, &host),
            Err(DpopError::WrongUrl { .. })
        ));
        assert!(matches!(
            verify(&proof, &expected(1061)),
            Err(DpopError::Stale { .. })
        ));
        assert!(matches!(
            verify(&proof, &expected(939)),
            Err(DpopError::Stale { .. })
        ));
        let token_b = Expected {
            access_token: Some("token-b"),
            ..expected(1000)
        };
        assert_eq!(verify(&proof, &token_b), Err(DpopError::WrongTokenHash));
        let token_a = Expected {
            access_token: Some("token-a"),
            ..expected(1000)
        };
        assert!(verify(&proof, &token_a).is_ok());
    }

    #[test]
    fn proof_without_ath_is_refused_when_a_token_is_sent() {
        let key = SigningKey::from_seed(&[5; 32]);
        let proof = create(&key, "POST", URL, 1000, None).unwrap();
        let with_token = Expected {
            access_token: Some("t"),
            ..expected(1000)
        };
        assert_eq!(verify(&proof, &with_token), Err(DpopError::WrongTokenHash));
    }

    #[test]
    fn proof_signed_by_another_key_than_its_jwk_is_refused() {
        let key = SigningKey::from_seed(&[5; 32]);
        let other = SigningKey::from_seed(&[6; 32]);
        let header = ProofHeader {
            typ: Some(DPOP_TYP.into()),
            alg: "EdDSA".into(),
            jwk: Some(key.public_key().to_jwk()),
        };
        let claims = ProofClaims {
            jti: "j".into(),
            htm: "POST".into(),
            htu: URL.into(),
            iat: 1000,
            ath: None,
        };
        let forged = jws::sign(&other, &header, &claims).unwrap();
        assert_eq!(
            verify(&forged, &expected(1000)),
            Err(DpopError::BadSignature)
        );
    }
}
