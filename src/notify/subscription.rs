//! Push subscriptions: the browser's `PushSubscription.toJSON()`, checked once when the person
//! subscribes and kept parsed, so a push never re-reads strings.
//!
//! A subscription is where to send (a push service URL, which is a capability: whoever knows it can
//! push) and whom to encrypt to (the browser's P-256 key and authentication secret).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::PublicKey;
use serde::{Deserialize, Serialize};

use super::ece::{AUTH_SECRET_LEN, P256_POINT_LEN, point_bytes};

/// Why a browser's push subscription was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubscriptionError {
    #[error("the push subscription is not valid JSON of the PushSubscription.toJSON() shape: {0}")]
    Json(String),
    #[error("the push subscription's endpoint is not a URL: {0}")]
    EndpointNotUrl(String),
    #[error(
        "the push subscription's endpoint must be https (got {0}:); plain http is allowed only \
         with danger_allow_http_push_endpoints"
    )]
    EndpointNotHttps(String),
    #[error("the push subscription's endpoint has no host")]
    EndpointWithoutHost,
    #[error("keys.{field} is not base64url")]
    NotBase64Url { field: &'static str },
    #[error("keys.{field} is {found} octets long, expected {expected}")]
    WrongLength {
        field: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("keys.p256dh is not an uncompressed point on P-256")]
    NotP256Point,
}

/// The browser's keys for one subscription: where the message is encrypted to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionKeys {
    /// The user agent's public key (`p256dh`), an uncompressed P-256 point.
    p256dh: PublicKey,
    /// The authentication secret (`auth`), 16 octets.
    auth: [u8; AUTH_SECRET_LEN],
}

impl SubscriptionKeys {
    /// Keys from their base64url forms, as in `PushSubscription.toJSON().keys`.
    pub fn from_base64url(p256dh: &str, auth: &str) -> Result<Self, SubscriptionError> {
        let p256dh_bytes = decode_b64url(p256dh, "p256dh")?;
        let auth_bytes = decode_b64url(auth, "auth")?;
        Self::from_bytes(&p256dh_bytes, &auth_bytes)
    }

    /// Keys from raw octets: a 65-octet uncompressed P-256 point and a 16-octet secret.
    pub fn from_bytes(p256dh: &[u8], auth: &[u8]) -> Result<Self, SubscriptionError> {
        if p256dh.len() != P256_POINT_LEN {
            return Err(SubscriptionError::WrongLength {
                field: "p256dh",
                expected: P256_POINT_LEN,
                found: p256dh.len(),
            });
        }
        if p256dh.first() != Some(&0x04) {
            return Err(SubscriptionError::NotP256Point);
        }
        let p256dh =
            PublicKey::from_sec1_bytes(p256dh).map_err(|_| SubscriptionError::NotP256Point)?;
        let auth: [u8; AUTH_SECRET_LEN] =
            auth.try_into()
                .map_err(|_| SubscriptionError::WrongLength {
                    field: "auth",
                    expected: AUTH_SECRET_LEN,
                    found: auth.len(),
                })?;
        Ok(Self { p256dh, auth })
    }

    /// The user agent's public key, what the message is encrypted to.
    pub fn p256dh(&self) -> &PublicKey {
        &self.p256dh
    }

    /// The user agent's public key, uncompressed.
    pub fn p256dh_bytes(&self) -> [u8; P256_POINT_LEN] {
        point_bytes(&self.p256dh)
    }

    pub fn auth(&self) -> &[u8; AUTH_SECRET_LEN] {
        &self.auth
    }
}

/// A push subscription: where to send (`endpoint`) and whom to encrypt to (`keys`). Stored as
/// its endpoint and keys in base64url, parsed once when read back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Stored", into = "Stored")]
pub struct Subscription {
    endpoint: url::Url,
    /// Milliseconds since the epoch after which the browser drops the subscription, if it said.
    expiration_time: Option<i64>,
    keys: SubscriptionKeys,
}

/// `PushSubscription.toJSON()` as the browser sends it (and as we store it).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionJson {
    pub endpoint: String,
    #[serde(default)]
    pub expiration_time: Option<serde_json::Number>,
    pub keys: SubscriptionJsonKeys,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SubscriptionJsonKeys {
    pub p256dh: String,
    pub auth: String,
}

/// A subscription as the store keeps it. The endpoint's scheme and host were checked when the
/// person subscribed; reading it back checks that it is still a URL and that the keys are keys.
#[derive(Serialize, Deserialize)]
struct Stored {
    endpoint: String,
    p256dh: String,
    auth: String,
}

impl TryFrom<Stored> for Subscription {
    type Error = SubscriptionError;

    fn try_from(stored: Stored) -> Result<Self, SubscriptionError> {
        Ok(Self {
            endpoint: url::Url::parse(&stored.endpoint)
                .map_err(|e| SubscriptionError::EndpointNotUrl(e.to_string()))?,
            expiration_time: None,
            keys: SubscriptionKeys::from_base64url(&stored.p256dh, &stored.auth)?,
        })
    }
}

impl From<Subscription> for Stored {
    fn from(subscription: Subscription) -> Self {
        Stored {
            endpoint: subscription.endpoint.to_string(),
            p256dh: URL_SAFE_NO_PAD.encode(subscription.keys.p256dh_bytes()),
            auth: URL_SAFE_NO_PAD.encode(subscription.keys.auth),
        }
    }
}

impl Subscription {
    /// Parses the JSON body of `POST /v1/push/subscriptions`. The endpoint must be https unless
    /// `danger_allow_http_push_endpoints` is set (loopback receivers in tests).
    pub fn from_json(
        json: &[u8],
        danger_allow_http_push_endpoints: bool,
    ) -> Result<Self, SubscriptionError> {
        let parsed: SubscriptionJson =
            serde_json::from_slice(json).map_err(|e| SubscriptionError::Json(e.to_string()))?;
        Self::from_parts(&parsed, danger_allow_http_push_endpoints)
    }

    /// Checks an already-deserialized subscription.
    pub fn from_parts(
        json: &SubscriptionJson,
        danger_allow_http_push_endpoints: bool,
    ) -> Result<Self, SubscriptionError> {
        let endpoint = url::Url::parse(&json.endpoint)
            .map_err(|e| SubscriptionError::EndpointNotUrl(e.to_string()))?;
        match endpoint.scheme() {
            "https" => {}
            "http" if danger_allow_http_push_endpoints => {}
            other => return Err(SubscriptionError::EndpointNotHttps(other.to_owned())),
        }
        if endpoint.host_str().is_none_or(str::is_empty) {
            return Err(SubscriptionError::EndpointWithoutHost);
        }
        let keys = SubscriptionKeys::from_base64url(&json.keys.p256dh, &json.keys.auth)?;
        // Browsers send an integer (or null); a fractional value is rounded down.
        let expiration_time = json.expiration_time.as_ref().and_then(|n| {
            n.as_i64()
                .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
        });
        Ok(Self {
            endpoint,
            expiration_time,
            keys,
        })
    }

    pub fn endpoint(&self) -> &url::Url {
        &self.endpoint
    }

    pub fn expiration_time(&self) -> Option<i64> {
        self.expiration_time
    }

    pub fn keys(&self) -> &SubscriptionKeys {
        &self.keys
    }

    /// The subscription in `PushSubscription.toJSON()` form, for storage.
    pub fn to_json(&self) -> SubscriptionJson {
        SubscriptionJson {
            endpoint: self.endpoint.to_string(),
            expiration_time: self.expiration_time.map(serde_json::Number::from),
            keys: SubscriptionJsonKeys {
                p256dh: URL_SAFE_NO_PAD.encode(self.keys.p256dh_bytes()),
                auth: URL_SAFE_NO_PAD.encode(self.keys.auth),
            },
        }
    }
}

/// Base64url with or without padding (browsers omit it; some libraries add it).
fn decode_b64url(text: &str, field: &'static str) -> Result<Vec<u8>, SubscriptionError> {
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| SubscriptionError::NotBase64Url { field })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use p256::elliptic_curve::sec1::ToSec1Point as _;

    use super::*;
    use crate::notify::ece::random_secret_key;

    #[test]
    fn subscription_json_is_checked() {
        let ua = random_secret_key().unwrap();
        let p256dh = URL_SAFE_NO_PAD.encode(point_bytes(&ua.public_key()));
        let auth = URL_SAFE_NO_PAD.encode([5u8; 16]);
        let json = |endpoint: &str, p256dh: &str, auth: &str| {
            serde_json::json!({
                "endpoint": endpoint, "expirationTime": null,
                "keys": {"p256dh": p256dh, "auth": auth}
            })
            .to_string()
        };
        let ok = Subscription::from_json(
            json("https://push.example.net/p/abc", &p256dh, &auth).as_bytes(),
            false,
        )
        .unwrap();
        assert_eq!(ok.endpoint().as_str(), "https://push.example.net/p/abc");
        assert_eq!(ok.expiration_time(), None);
        assert_eq!(ok.keys().auth(), &[5u8; 16]);
        let round = serde_json::to_vec(&ok.to_json()).unwrap();
        assert_eq!(Subscription::from_json(&round, false).unwrap(), ok);
        // Stored as endpoint and keys, and read back as the same parsed subscription.
        let stored = serde_json::to_value(&ok).unwrap();
        assert_eq!(
            stored,
            serde_json::json!({"endpoint": "https://push.example.net/p/abc", "p256dh": p256dh,
                               "auth": auth})
        );
        assert_eq!(serde_json::from_value::<Subscription>(stored).unwrap(), ok);
        let damaged = serde_json::json!({"endpoint": "https://p.example/x", "p256dh": "AAAA",
                                         "auth": auth});
        assert!(serde_json::from_value::<Subscription>(damaged).is_err());
        // Padded base64url is accepted too.
        let padded = format!("{auth}==");
        assert!(
            Subscription::from_json(
                json("https://p.example/x", &p256dh, &padded).as_bytes(),
                false
            )
            .is_ok()
        );

        let http = json("http://127.0.0.1:9/x", &p256dh, &auth);
        assert_eq!(
            Subscription::from_json(http.as_bytes(), false),
            Err(SubscriptionError::EndpointNotHttps("http".into()))
        );
        assert!(Subscription::from_json(http.as_bytes(), true).is_ok());
        assert_eq!(
            Subscription::from_json(json("ftp://x.example/", &p256dh, &auth).as_bytes(), true),
            Err(SubscriptionError::EndpointNotHttps("ftp".into()))
        );
        assert!(matches!(
            Subscription::from_json(json("not a url", &p256dh, &auth).as_bytes(), false),
            Err(SubscriptionError::EndpointNotUrl(_))
        ));
        assert_eq!(
            Subscription::from_json(
                json(
                    "https://p.example/x",
                    &p256dh,
                    &URL_SAFE_NO_PAD.encode([1u8; 15])
                )
                .as_bytes(),
                false
            ),
            Err(SubscriptionError::WrongLength {
                field: "auth",
                expected: 16,
                found: 15
            })
        );
        let compressed = URL_SAFE_NO_PAD.encode(ua.public_key().to_sec1_point(true).as_bytes());
        assert_eq!(
            Subscription::from_json(
                json("https://p.example/x", &compressed, &auth).as_bytes(),
                false
            ),
            Err(SubscriptionError::WrongLength {
                field: "p256dh",
                expected: 65,
                found: 33
            })
        );
        let mut off_curve = point_bytes(&ua.public_key());
        off_curve[64] ^= 1;
        assert_eq!(
            Subscription::from_json(
                json(
                    "https://p.example/x",
                    &URL_SAFE_NO_PAD.encode(off_curve),
                    &auth
                )
                .as_bytes(),
                false
            ),
            Err(SubscriptionError::NotP256Point)
        );
        assert_eq!(
            Subscription::from_json(json("https://p.example/x", "***", &auth).as_bytes(), false),
            Err(SubscriptionError::NotBase64Url { field: "p256dh" })
        );
        assert!(matches!(
            Subscription::from_json(br#"{"endpoint":"https://p.example/x"}"#, false),
            Err(SubscriptionError::Json(_))
        ));
    }
}
