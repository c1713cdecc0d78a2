//! Notifications end to end: a person's device subscribes, an agent asks, the device's push
//! service receives an encrypted message naming the request and linking to its approval page,
//! and signed webhooks report the request and its decision. Independent implementations check
//! the message: Python http_ece decrypts it and PyJWT verifies its VAPID header (installed by
//! `scripts/test`). Dead devices are removed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use base64::Engine as _;
use common::{PushBrowser, Received, TestGateway, flight, push_service, until, webpush_check};
use handsign::clock::TestClock;
use handsign::notify::webhooks::{WebhookSecret, WebhookTarget};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::mpsc;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A webhook receiver on 127.0.0.1 that hands every delivery to the test.
async fn webhook_receiver() -> (String, mpsc::UnboundedReceiver<(HeaderMap, Bytes)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((headers, body));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://127.0.0.1:{}/hook",
        listener.local_addr().unwrap().port()
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

async fn next<T>(inbox: &mut mpsc::UnboundedReceiver<T>, what: &str) -> T {
    tokio::time::timeout(Duration::from_secs(30), inbox.recv())
        .await
        .unwrap_or_else(|_| panic!("no {what} arrived"))
        .unwrap()
}

/// The event type of a signed webhook delivery, after checking its signature.
fn verified_event(headers: &HeaderMap, body: &[u8]) -> Value {
    let secret: WebhookSecret = SECRET.parse().unwrap();
    let id = headers["webhook-id"].to_str().unwrap();
    let timestamp: i64 = headers["webhook-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        headers["webhook-signature"].to_str().unwrap(),
        secret.sign(id, timestamp, body)
    );
    serde_json::from_slice(body).unwrap()
}

#[tokio::test]
async fn a_request_reaches_the_persons_device_and_the_webhooks() {
    let (push_origin, mut pushes) = push_service().await;
    let (hook, mut hooks) = webhook_receiver().await;
    let target: WebhookTarget = format!("standard={hook},secret={SECRET}").parse().unwrap();
    let gateway = TestGateway::start_with(|args| {
        args.danger_allow_http_push_endpoints = true;
        args.danger_allow_private_push_endpoints = true;
        args.webhooks.webhooks = vec![target];
    })
    .await;
    let mut alice = gateway.register("alice").await;
    let cookie = gateway.login(&mut alice).await;

    // Two devices: a phone, and a browser whose subscription the push service has dropped.
    let phone = PushBrowser::new();
    let dropped = PushBrowser::new();
    for (browser, path, name) in [
        (&phone, "/wpush/phone", "phone"),
        (&dropped, "/wpush/gone-laptop", "laptop"),
    ] {
        let response = gateway
            .http
            .post(format!("{}/v1/push/subscriptions?name={name}", gateway.url))
            .header("origin", &gateway.url)
            .header("cookie", &cookie)
            .header("content-type", "application/json")
            .body(browser.subscription_json(&format!("{push_origin}{path}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }

    let agent = gateway.agent("alice").await;
    let created = agent.request(flight()).await;
    let id = created["id"].as_str().unwrap();

    // Both devices get a message; the phone's decrypts to a link to this request.
    let mut received: Vec<Received> = vec![
        next(&mut pushes, "push").await,
        next(&mut pushes, "push").await,
    ];
    received.sort_by(|a, b| a.path.cmp(&b.path));
    let to_phone = received.iter().find(|r| r.path == "/wpush/phone").unwrap();
    assert!(
        to_phone.headers["authorization"]
            .to_str()
            .unwrap()
            .starts_with("vapid t=")
    );
    assert_eq!(to_phone.headers["content-encoding"], "aes128gcm");
    // Decrypted by an independent implementation (Python http_ece), as the browser would.
    let dir = tempfile::tempdir().unwrap();
    let body_file = dir.path().join("push.bin");
    std::fs::write(&body_file, &to_phone.body).unwrap();
    let auth = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(phone.auth);
    let message =
        webpush_check(&["decrypt", body_file.to_str().unwrap(), &phone.d(), &auth]).unwrap();
    let message: Value = serde_json::from_slice(&message).unwrap();
    // And its VAPID header verifies with PyJWT for the push service's origin.
    webpush_check(&[
        "vapid",
        to_phone.headers["authorization"].to_str().unwrap(),
        &push_origin,
    ])
    .unwrap();
    assert_eq!(message["url"], format!("{}/approve/{id}", gateway.url));
    assert_eq!(message["tag"], id);
    assert!(
        message["body"]
            .as_str()
            .unwrap()
            .contains(created["code"].as_str().unwrap())
    );

    // The webhook says a request was created, signed.
    let (headers, body) = next(&mut hooks, "webhook").await;
    let event = verified_event(&headers, &body);
    assert_eq!(event["type"], "approval.created");
    assert_eq!(event["data"]["approval_id"], id);

    // The person decides: the webhook says so.
    let (status, _) = gateway.decide(&mut alice, id, "approve").await;
    assert_eq!(status, StatusCode::OK);
    let (headers, body) = next(&mut hooks, "webhook").await;
    let event = verified_event(&headers, &body);
    assert_eq!(event["type"], "approval.decided");
    assert_eq!(event["data"]["status"], "approved");

    // The dropped subscription answered 410 and is gone; the phone stays.
    let listed = wait_for_devices(&gateway, &cookie, 1).await;
    assert_eq!(listed[0]["name"], "phone");
    assert_eq!(listed[0]["endpoint_host"], "127.0.0.1");
}

/// The user's devices, once there are `count` of them.
async fn wait_for_devices(gateway: &TestGateway, cookie: &str, count: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let listed: Vec<Value> = gateway
            .http
            .get(format!("{}/v1/push/subscriptions", gateway.url))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if listed.len() == count {
            return listed;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "devices: {listed:?}"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn devices_are_the_users_own_and_subscriptions_are_checked() {
    let gateway = TestGateway::start().await;
    let mut alice = gateway.register("alice").await;
    let mut bob = gateway.register("bob").await;
    let alice_cookie = gateway.login(&mut alice).await;
    let bob_cookie = gateway.login(&mut bob).await;
    let post = |cookie: &str, body: String| {
        gateway
            .http
            .post(format!("{}/v1/push/subscriptions", gateway.url))
            .header("origin", &gateway.url)
            .header("cookie", cookie)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    // https only (this gateway does not allow plain-http push services), real keys only.
    let browser = PushBrowser::new();
    let response = post(
        &alice_cookie,
        browser.subscription_json("http://push.example/x"),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"], "invalid_subscription");
    let broken = browser
        .subscription_json("https://push.example/x")
        .replace(&browser.p256dh(), "AAAA");
    assert_eq!(
        post(&alice_cookie, broken).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );

    let response = post(
        &alice_cookie,
        browser.subscription_json("https://push.example/x"),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Bob can neither see nor remove it; without a session nothing is listed.
    let remove = |cookie: &str| {
        gateway
            .http
            .delete(format!("{}/v1/push/subscriptions/{id}", gateway.url))
            .header("origin", &gateway.url)
            .header("cookie", cookie)
            .send()
    };
    assert_eq!(
        remove(&bob_cookie).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let anonymous = gateway
        .http
        .get(format!("{}/v1/push/subscriptions", gateway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        remove(&alice_cookie).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert!(
        wait_for_devices(&gateway, &alice_cookie, 0)
            .await
            .is_empty()
    );

    let key: Value = gateway
        .http
        .get(format!("{}/v1/push/vapid-key", gateway.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        key["publicKey"].as_str().unwrap().len(),
        87,
        "65 octets in base64url"
    );
}

#[tokio::test]
async fn a_request_nobody_decides_is_reported_expired() {
    let (hook, mut hooks) = webhook_receiver().await;
    let target: WebhookTarget = format!("standard={hook},secret={SECRET}").parse().unwrap();
    // The gateway's time is the test's: the expiry is reported when the test moves the clock
    // past it, without ten seconds passing.
    let time = TestClock::starting_now();
    let gateway = TestGateway::start_reading(time.clock(), |args| {
        args.webhooks.webhooks = vec![target];
    })
    .await;
    let _alice = gateway.register("alice").await;
    let agent = gateway.agent("alice").await;
    let (status, created) = agent
        .call(
            reqwest::Method::POST,
            "/v1/approvals",
            Some(&serde_json::json!({
                "action": "flights.book",
                "params": flight(),
                "audience": "https://travel.example",
                "ttl": 10,
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (headers, body) = next(&mut hooks, "webhook").await;
    assert_eq!(verified_event(&headers, &body)["type"], "approval.created");
    // Nothing is decided: once the clock passes the ttl the expiry is reported, once, with
    // the time of the gateway's clock.
    until("the expiry report waits", || {
        gateway.state.events.waiters() > 0
    })
    .await;
    time.advance(Duration::from_secs(10));
    // Well under the ttl of real time: the report follows the clock.
    let (headers, body) = tokio::time::timeout(Duration::from_secs(5), hooks.recv())
        .await
        .expect("the expiry is reported once the clock passes it")
        .unwrap();
    let event = verified_event(&headers, &body);
    assert_eq!(event["type"], "approval.expired");
    assert_eq!(event["data"]["approval_id"], created["id"]);
    assert_eq!(event["data"]["status"], "expired");
}

/// Adds a push subscription for `endpoint` with device name `name`; the answer's status and
/// body.
async fn subscribe(
    gateway: &TestGateway,
    cookie: &str,
    endpoint: &str,
    name: &str,
) -> (StatusCode, Value) {
    let mut url = url::Url::parse(&format!("{}/v1/push/subscriptions", gateway.url)).unwrap();
    url.query_pairs_mut().append_pair("name", name);
    let response = gateway
        .http
        .post(url)
        .header("origin", &gateway.url)
        .header("cookie", cookie)
        .header("content-type", "application/json")
        .body(PushBrowser::new().subscription_json(endpoint))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn push_endpoints_on_the_gateways_own_network_are_refused() {
    // Plain http is allowed here, so that only the address decides.
    let gateway =
        TestGateway::start_with(|args| args.danger_allow_http_push_endpoints = true).await;
    let mut alice = gateway.register("alice").await;
    let cookie = gateway.login(&mut alice).await;
    for endpoint in [
        "http://127.0.0.1:9/wpush/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.7/wpush/x",
        "http://192.168.1.1/wpush/x",
        "http://100.64.0.1/wpush/x",
        "http://[::1]:9/wpush/x",
        "http://[::ffff:127.0.0.1]:9/wpush/x",
        "http://[fd00::1]/wpush/x",
        "http://0.0.0.0:9/wpush/x",
        // A name is judged by what it resolves to.
        "http://localhost:9/wpush/x",
    ] {
        let (status, answer) = subscribe(&gateway, &cookie, endpoint, "phone").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{endpoint}: {answer}");
        assert_eq!(answer["error"], "invalid_subscription", "{endpoint}");
        assert!(
            answer["message"]
                .as_str()
                .unwrap()
                .contains("not a public address"),
            "{answer}"
        );
    }
    assert!(wait_for_devices(&gateway, &cookie, 0).await.is_empty());
}

#[tokio::test]
async fn the_push_client_connects_to_public_addresses_only() {
    let (push_origin, mut pushes) = push_service().await;
    let by_name = push_origin.replace("127.0.0.1", "localhost");
    // The address a name resolves to is checked when connecting: a subscription that was
    // accepted while its name pointed elsewhere reaches no private address.
    let guarded = handsign::http_client::for_push(false).unwrap();
    let error = guarded
        .post(format!("{by_name}/wpush/rebound"))
        .send()
        .await
        .unwrap_err();
    let mut chain = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        chain.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    assert!(chain.contains("not a public address"), "{chain}");
    assert!(pushes.try_recv().is_err(), "the refused message arrived");
    // The same client with private addresses allowed reaches it.
    let open = handsign::http_client::for_push(true).unwrap();
    let response = open
        .post(format!("{by_name}/wpush/allowed"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(next(&mut pushes, "push").await.path, "/wpush/allowed");
}

#[tokio::test]
async fn outgoing_calls_never_follow_redirects() {
    // A push service or webhook that answers a POST with a redirect to a loopback admin URL.
    let (admin_tx, mut admin_calls) = mpsc::unbounded_channel::<String>();
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(|| async {
                (
                    StatusCode::FOUND,
                    [("location", "/admin/delete-everything")],
                )
            }),
        )
        .route(
            "/admin/delete-everything",
            axum::routing::any(move |method: axum::http::Method| {
                let admin_tx = admin_tx.clone();
                async move {
                    let _ = admin_tx.send(method.to_string());
                    StatusCode::OK
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    for client in [
        handsign::http_client::new().unwrap(),
        handsign::http_client::for_push(true).unwrap(),
    ] {
        let response = client.post(&url).body("message").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FOUND);
    }
    assert!(admin_calls.try_recv().is_err(), "a redirect was followed");
}

#[tokio::test]
async fn a_user_has_at_most_the_configured_number_of_devices() {
    let gateway = TestGateway::start_with(|args| args.max_devices_per_user = 2).await;
    let mut alice = gateway.register("alice").await;
    let cookie = gateway.login(&mut alice).await;
    let endpoint = |device: &str| format!("https://8.8.8.8/wpush/{device}");
    for name in ["phone", "laptop"] {
        let (status, answer) = subscribe(&gateway, &cookie, &endpoint(name), name).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
    let (status, answer) = subscribe(&gateway, &cookie, &endpoint("tablet"), "tablet").await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"], "too_many_devices");
    assert!(answer["message"].as_str().unwrap().contains("remove one"));
    // A device subscribing again replaces itself: no room needed.
    let (status, answer) = subscribe(&gateway, &cookie, &endpoint("phone"), "phone").await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(wait_for_devices(&gateway, &cookie, 2).await.len(), 2);
    // Removing one makes room again.
    let listed = wait_for_devices(&gateway, &cookie, 2).await;
    let removed = gateway
        .http
        .delete(format!(
            "{}/v1/push/subscriptions/{}",
            gateway.url,
            listed[0]["id"].as_str().unwrap()
        ))
        .header("origin", &gateway.url)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    let (status, answer) = subscribe(&gateway, &cookie, &endpoint("tablet"), "tablet").await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

#[tokio::test]
async fn device_names_are_shown_marked_and_control_characters_refused() {
    let gateway = TestGateway::start().await;
    let mut alice = gateway.register("alice").await;
    let cookie = gateway.login(&mut alice).await;
    let endpoint = "https://8.8.8.8/wpush/x";
    let (status, answer) = subscribe(&gateway, &cookie, endpoint, "phone\0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"], "invalid_name");
    assert!(answer["message"].as_str().unwrap().contains("U+0000"));

    let (status, answer) = subscribe(&gateway, &cookie, endpoint, "pho\u{202E}en\u{200B}x").await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let listed = wait_for_devices(&gateway, &cookie, 1).await;
    let html = listed[0]["name_html"].as_str().unwrap();
    assert!(html.contains("U+202E RIGHT-TO-LEFT OVERRIDE"), "{html}");
    assert!(html.contains("U+200B ZERO WIDTH SPACE"), "{html}");
    assert!(
        !html.contains('\u{202E}') && !html.contains('\u{200B}'),
        "{html}"
    );
}
