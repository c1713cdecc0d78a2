//! Web Push delivery (RFC 8030): the encrypted, VAPID-signed message that wakes the person's phone.
//!
//! An approval request is only useful if the right person sees it quickly, so the gateway sends a
//! Web Push message to each device the person subscribed: the payload encrypted to the browser's
//! key ([`super::ece`]), the gateway identified by its VAPID token ([`super::vapid`]).
//!
//! The message never carries authority: it names the request and links to the approval page,
//! where the passkey decides. That is why the payload may be read by the person's device, and why
//! a lost or replayed push message costs nothing but a notification.

use super::ece::{EceError, encrypt};
use super::subscription::Subscription;
use super::vapid::{VapidError, VapidKey};

/// How soon the push service should deliver (RFC 8030 §5.3). Approval requests are `High`: the
/// person is waiting on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Urgency {
    VeryLow,
    Low,
    Normal,
    High,
}

impl Urgency {
    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::VeryLow => "very-low",
            Urgency::Low => "low",
            Urgency::Normal => "normal",
            Urgency::High => "high",
        }
    }
}

/// Why a push request could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Encryption(#[from] EceError),
    #[error(transparent)]
    Vapid(#[from] VapidError),
    #[error("cannot build the HTTP request: {0}")]
    Http(#[from] http::Error),
}

/// Who the gateway says it is to push services, and how its messages should be delivered.
#[derive(Clone, Copy, Debug)]
pub struct PushOptions<'a> {
    /// The operator's contact for the push service: `mailto:` or `https:` URL.
    pub subject: &'a str,
    /// Seconds the push service may keep an undelivered message (`TTL`).
    pub ttl_secs: u32,
    pub urgency: Urgency,
    /// Unix seconds, for the VAPID token's expiry.
    pub now: i64,
}

/// The push message for one subscription: `POST endpoint` with the encrypted payload, `TTL`,
/// `Urgency`, `Content-Encoding: aes128gcm` and the VAPID `Authorization`. Send it with any HTTP
/// client; a 201 means accepted, a 404 or 410 that the subscription is gone.
pub fn build_request(
    subscription: &Subscription,
    payload_json: &[u8],
    vapid: &VapidKey,
    options: &PushOptions<'_>,
) -> Result<http::Request<Vec<u8>>, PushError> {
    let body = encrypt(subscription.keys(), payload_json)?;
    let authorization =
        vapid.authorization(subscription.endpoint(), options.subject, options.now)?;
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri(subscription.endpoint().as_str())
        .header("TTL", options.ttl_secs.to_string())
        .header("Urgency", options.urgency.as_str())
        .header(http::header::CONTENT_ENCODING, "aes128gcm")
        .header(http::header::CONTENT_TYPE, "application/octet-stream")
        .header(http::header::CONTENT_LENGTH, body.len().to_string())
        .header(http::header::AUTHORIZATION, authorization)
        .body(body)?;
    Ok(request)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;
    use crate::notify::ece::{point_bytes, random_secret_key};

    #[test]
    fn build_request_sets_the_web_push_headers() {
        let ua = random_secret_key().unwrap();
        let keys_json = serde_json::json!({
            "endpoint": "https://push.example.net/p/1",
            "keys": {
                "p256dh": URL_SAFE_NO_PAD.encode(point_bytes(&ua.public_key())),
                "auth": URL_SAFE_NO_PAD.encode([2u8; 16]),
            }
        });
        let subscription =
            Subscription::from_json(keys_json.to_string().as_bytes(), false).unwrap();
        let vapid = VapidKey::generate().unwrap();
        let options = PushOptions {
            subject: "https://gw.example",
            ttl_secs: 60,
            urgency: Urgency::High,
            now: 1_700_000_000,
        };
        let request = build_request(&subscription, br#"{"a":1}"#, &vapid, &options).unwrap();
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(request.uri(), "https://push.example.net/p/1");
        let h = request.headers();
        assert_eq!(h["ttl"], "60");
        assert_eq!(h["urgency"], "high");
        assert_eq!(h["content-encoding"], "aes128gcm");
        assert_eq!(h["content-type"], "application/octet-stream");
        assert_eq!(h["content-length"], request.body().len().to_string());
        assert!(
            h["authorization"]
                .to_str()
                .unwrap()
                .starts_with("vapid t=ey")
        );
    }
}
