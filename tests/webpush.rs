//! Web Push end to end against independent implementations: a local push-service receiver takes
//! our request over HTTP; PyJWT checks its VAPID header and Python `http_ece` decrypts its body
//! with the subscription's private key, as a browser would.
//!
//! The Python packages are installed by `scripts/test` into `target/test-env/python`
//! (`HANDSIGN_TEST_PYTHON`); without them these tests fail saying so, never pass unchecked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{PushBrowser as Browser, push_service, webpush_check as python};
use handsign::notify::subscription::{Subscription, SubscriptionError};
use handsign::notify::vapid::VapidKey;
use handsign::notify::webpush::{self, PushOptions, Urgency};
use serde_json::{Value, json};

const SUBJECT: &str = "mailto:ops@gw.example";

fn vectors(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors/webpush")
        .join(name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn b64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).unwrap()
}

fn write_temp(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[tokio::test]
async fn push_message_is_accepted_verified_and_decrypted_by_independent_code() {
    let (origin, mut inbox) = push_service().await;
    let dir = tempfile::tempdir().unwrap();
    let vapid = VapidKey::generate().unwrap();
    let browser = Browser::new();
    let endpoint = format!("{origin}/wpush/dev-1");
    let json = browser.subscription_json(&endpoint);

    // Plain http is refused unless the danger_ option allows it.
    assert!(matches!(
        Subscription::from_json(json.as_bytes(), false),
        Err(SubscriptionError::EndpointNotHttps(_))
    ));
    let subscription = Subscription::from_json(json.as_bytes(), true).unwrap();

    let payload = json!({
        "type": "approval.created",
        "agent": "travel-bot",
        "action": "flights.book",
        "match_code": "K7-42",
        "url": "https://gw.example/approve/0f3c",
        "note": "Zoë's flight — SFO → NYC",
    });
    let payload_bytes = serde_json::to_vec(&payload).unwrap();
    let now = handsign::clock::Clock::system().now();
    let options = PushOptions {
        subject: SUBJECT,
        ttl_secs: 300,
        urgency: Urgency::High,
        now,
    };
    let request = webpush::build_request(&subscription, &payload_bytes, &vapid, &options).unwrap();

    let client = handsign::http_client::new().unwrap();
    let response = client
        .execute(reqwest::Request::try_from(request).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::CREATED);

    let received = inbox.recv().await.unwrap();
    assert_eq!(received.path, "/wpush/dev-1");
    let h = &received.headers;
    assert_eq!(h["ttl"], "300");
    assert_eq!(h["urgency"], "high");
    assert_eq!(h["content-encoding"], "aes128gcm");
    assert_eq!(h["content-type"], "application/octet-stream");
    assert_eq!(h["content-length"], received.body.len().to_string());

    // VAPID, checked by PyJWT as a push service would: ES256 under k, aud = the origin.
    let authorization = h["authorization"].to_str().unwrap();
    assert!(authorization.ends_with(&format!(", k={}", vapid.public_key_b64url())));
    let claims: Value =
        serde_json::from_slice(&python(&["vapid", authorization, &origin]).unwrap()).unwrap();
    assert_eq!(claims["aud"], origin.as_str());
    assert_eq!(claims["sub"], SUBJECT);
    let exp = claims["exp"].as_i64().unwrap();
    assert!(exp > now && exp <= now + 12 * 3600, "exp {exp}, now {now}");
    // ... and refused for another push service's origin.
    let other = python(&["vapid", authorization, "https://push.example.net"]).unwrap_err();
    assert!(other.contains("InvalidAudienceError"), "{other}");

    // The body, decrypted by http_ece with the browser's keys: the JSON we sent.
    assert_eq!(&received.body[16..21], &[0, 0, 0x10, 0, 65]);
    let body_file = write_temp(dir.path(), "body.bin", &received.body);
    let auth = URL_SAFE_NO_PAD.encode(browser.auth);
    let plain = python(&["decrypt", body_file.to_str().unwrap(), &browser.d(), &auth]).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&plain).unwrap(), payload);
    assert_eq!(plain, payload_bytes);

    // Another subscription's keys cannot read it.
    let stranger = Browser::new();
    let refused = python(&["decrypt", body_file.to_str().unwrap(), &stranger.d(), &auth]);
    assert!(refused.is_err());
}

#[test]
fn http_ece_decrypts_the_rfc8291_example_as_we_produce_it() {
    // The vector our unit test reproduces byte for byte, opened by the independent code.
    let v = vectors("rfc8291_webpush_example.json");
    let dir = tempfile::tempdir().unwrap();
    let body = write_temp(
        dir.path(),
        "body.bin",
        &b64(v["body_b64url"].as_str().unwrap()),
    );
    let plain = python(&[
        "decrypt",
        body.to_str().unwrap(),
        v["ua_private"].as_str().unwrap(),
        v["auth_secret"].as_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(plain, v["plaintext_utf8"].as_str().unwrap().as_bytes());
}

/// A push service's check of a VAPID header, written here rather than in the library (the gateway
/// only signs): ES256 under `k`, the audience, and expiry against `now`.
fn verify_vapid(authorization: &str, audience: &str, now: i64) -> Result<Value, String> {
    use p256::ecdsa::signature::Verifier as _;
    let rest = authorization
        .strip_prefix("vapid t=")
        .ok_or("no vapid scheme")?;
    let (token, k) = rest.split_once(", k=").ok_or("no k parameter")?;
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&b64(k)).map_err(|e| e.to_string())?;
    let (signed, signature) = token.rsplit_once('.').ok_or("not a JWT")?;
    let (header, claims) = signed.split_once('.').ok_or("not a JWT")?;
    let header: Value = serde_json::from_slice(&b64(header)).map_err(|e| e.to_string())?;
    if header["alg"] != "ES256" {
        return Err(format!("alg {}", header["alg"]));
    }
    let signature =
        p256::ecdsa::Signature::from_slice(&b64(signature)).map_err(|e| e.to_string())?;
    key.verify(signed.as_bytes(), &signature)
        .map_err(|_| "bad signature".to_owned())?;
    let claims: Value = serde_json::from_slice(&b64(claims)).map_err(|e| e.to_string())?;
    if claims["aud"] != audience {
        return Err(format!("audience {}", claims["aud"]));
    }
    let exp = claims["exp"].as_i64().ok_or("no exp")?;
    if exp <= now {
        return Err(format!("expired at {exp}, now {now}"));
    }
    if exp > now + 24 * 3600 {
        return Err(format!("exp {exp} more than 24 h ahead"));
    }
    Ok(claims)
}

#[test]
fn rfc8292_example_verifies_at_its_time_and_is_expired_now() {
    let v = vectors("rfc8292_vapid_example.json");
    let header = v["authorization_header"].as_str().unwrap();
    let aud = v["jwt_claims"]["aud"].as_str().unwrap();
    let exp = v["jwt_claims"]["exp"].as_i64().unwrap();
    assert_eq!(
        format!(
            "vapid t={}, k={}",
            v["t"].as_str().unwrap(),
            v["k"].as_str().unwrap()
        ),
        header
    );
    // Our verifier: valid at a time inside its life, expired by the real clock.
    let claims = verify_vapid(header, aud, exp - 60).unwrap();
    assert_eq!(claims, v["jwt_claims"]);
    let expired = verify_vapid(header, aud, handsign::clock::Clock::system().now()).unwrap_err();
    assert!(expired.starts_with("expired"), "{expired}");
    assert!(verify_vapid(header, "https://other.example", exp - 60).is_err());
    // PyJWT agrees on both.
    let claims: Value =
        serde_json::from_slice(&python(&["vapid", header, aud, &(exp - 60).to_string()]).unwrap())
            .unwrap();
    assert_eq!(claims, v["jwt_claims"]);
    let expired = python(&["vapid", header, aud]).unwrap_err();
    assert!(expired.contains("ExpiredSignatureError"), "{expired}");
}

#[test]
fn our_vapid_header_passes_the_in_test_verifier_and_pyjwt() {
    let vapid = VapidKey::generate().unwrap();
    let endpoint = url::Url::parse("https://fcm.googleapis.com/fcm/send/abc:def").unwrap();
    let now = handsign::clock::Clock::system().now();
    let header = vapid
        .authorization(&endpoint, "https://gw.example/contact", now)
        .unwrap();
    let claims = verify_vapid(&header, "https://fcm.googleapis.com", now).unwrap();
    assert_eq!(claims["sub"], "https://gw.example/contact");
    assert_eq!(claims["exp"], now + 12 * 3600);
    // A token made 13 hours ago is expired.
    let old = vapid
        .authorization(&endpoint, SUBJECT, now - 13 * 3600)
        .unwrap();
    assert!(verify_vapid(&old, "https://fcm.googleapis.com", now).is_err());
    let refused = python(&["vapid", &old, "https://fcm.googleapis.com"]).unwrap_err();
    assert!(refused.contains("ExpiredSignatureError"), "{refused}");
    let claims: Value =
        serde_json::from_slice(&python(&["vapid", &header, "https://fcm.googleapis.com"]).unwrap())
            .unwrap();
    assert_eq!(claims["aud"], "https://fcm.googleapis.com");
}
