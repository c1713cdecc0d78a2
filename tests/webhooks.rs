//! Webhooks end to end against a local receiver: Standard Webhooks signatures checked by the
//! independent Python `standardwebhooks` library, retries and what is not retried, the Slack and
//! ntfy formats, and agent-written text that tries to disguise a notification.
//!
//! The Python library is installed by `scripts/test` (into `HANDSIGN_TEST_PYTHON`'s
//! environment); without it the signature test fails saying so, rather than passing unchecked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use handsign::config::PublicUrl;
use handsign::domain::{
    AgentRecord, AgentStatus, ApprovalId, ApprovalKind, ApprovalRecord, ApprovalState, UserId,
};
use handsign::notify::webhooks::{
    DeliveryError, RetryPolicy, WebhookEvent, WebhookTarget, Webhooks, deliver_with,
};
use serde_json::Value;
use tokio::sync::mpsc;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const PARAMS_SHA256: &str = "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU";

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// An answer the receiver gives: status and `Retry-After`.
type Answer = (u16, Option<&'static str>);

#[derive(Clone)]
struct Receiver {
    /// The answers to give, in order (status, Retry-After); 200 once they run out.
    script: Arc<Mutex<VecDeque<Answer>>>,
    seen: mpsc::UnboundedSender<Received>,
}

async fn receive(
    State(receiver): State<Receiver>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _ = receiver.seen.send(Received {
        path: uri.path().to_owned(),
        headers,
        body,
    });
    let answer = receiver.script.lock().unwrap().pop_front();
    match answer {
        Some((status, retry_after)) => {
            let status = StatusCode::from_u16(status).unwrap();
            match retry_after {
                Some(value) => (status, [("retry-after", value)]).into_response(),
                None => status.into_response(),
            }
        }
        None => StatusCode::OK.into_response(),
    }
}

/// A receiver on 127.0.0.1:0 answering per `script`; returns its base URL and what it saw.
async fn receiver(script: &[Answer]) -> (String, mpsc::UnboundedReceiver<Received>) {
    let (seen, requests) = mpsc::unbounded_channel();
    let state = Receiver {
        script: Arc::new(Mutex::new(script.iter().copied().collect())),
        seen,
    };
    let app = axum::Router::new().fallback(receive).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), requests)
}

/// The next request, or a failure if none comes within 10 seconds.
async fn next(requests: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(Duration::from_secs(10), requests.recv())
        .await
        .expect("no webhook arrived within 10 s")
        .expect("receiver stopped")
}

/// Every request already received.
fn drain(requests: &mut mpsc::UnboundedReceiver<Received>) -> Vec<Received> {
    let mut all = Vec::new();
    while let Ok(r) = requests.try_recv() {
        all.push(r);
    }
    all
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        attempts: 5,
        initial_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(10),
        timeout: Duration::from_secs(5),
    }
}

fn public() -> PublicUrl {
    PublicUrl::parse(&"https://gw.example".parse().unwrap()).unwrap()
}

fn now() -> i64 {
    handsign::clock::Clock::system().now()
}

fn approval(agent_name: &str) -> ApprovalRecord {
    let now = now();
    ApprovalRecord {
        id: ApprovalId::generate().unwrap(),
        kind: ApprovalKind::Action,
        agent: "agent-thumbprint".into(),
        agent_name: agent_name.into(),
        user: UserId::parse("alice").unwrap(),
        audience: "https://travel.example".into(),
        action: "flights.book".into(),
        params: r#"{"card":"4111111111111111","to":"NYC"}"#.into(),
        params_sha256: PARAMS_SHA256.parse().unwrap(),
        params_order: Default::default(),
        message: Some("secret message".into()),
        code: "4821".into(),
        nonce: "nonce".into(),
        created_at: now,
        expires_at: now + 300,
        state: ApprovalState::Pending,
    }
}

fn target(spec: &str) -> WebhookTarget {
    spec.parse().unwrap()
}

/// Runs `webhook_check.py`: Ok(event type) when `standardwebhooks` verifies, Err(reason) if not.
fn python_verify(secret: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<String, String> {
    let python = std::env::var("HANDSIGN_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/webhook_check.py");
    let dir = tempfile::tempdir().unwrap();
    let body_file = dir.path().join("body");
    std::fs::write(&body_file, body).unwrap();
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
        .collect();
    let output = Command::new(&python)
        .arg(&script)
        .arg(secret)
        .arg(Value::Object(headers).to_string())
        .arg(&body_file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}; run scripts/test"));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "the Python standardwebhooks library is missing: run scripts/test, which installs it\n{stderr}"
    );
    if output.status.success() {
        Ok(String::from_utf8(output.stdout).unwrap().trim().to_owned())
    } else {
        Err(stderr)
    }
}

fn signed_headers(r: &Received) -> Vec<(&'static str, String)> {
    ["webhook-id", "webhook-timestamp", "webhook-signature"]
        .into_iter()
        .map(|name| (name, r.header(name).to_owned()))
        .collect()
}

fn verify(
    r: &Received,
    tweak: impl FnOnce(&mut Vec<(&'static str, String)>, &mut Vec<u8>),
) -> Result<String, String> {
    let mut headers = signed_headers(r);
    let mut body = r.body.to_vec();
    tweak(&mut headers, &mut body);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    python_verify(SECRET, &headers, &body)
}

#[tokio::test]
async fn standard_webhooks_verify_with_the_python_library_and_tampering_is_refused() {
    let (base, mut requests) = receiver(&[]).await;
    let client = handsign::http_client::new().unwrap();
    let target = target(&format!("standard={base}/hook,secret={SECRET}"));
    let record = approval("travel-bot");
    let event = WebhookEvent::approval_created(&public(), &record, now());

    let done = deliver_with(&client, &target, &event, &fast())
        .await
        .unwrap();
    assert_eq!((done.attempts, done.status), (1, 200));
    let r = next(&mut requests).await;
    assert_eq!(r.path, "/hook");
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.header("webhook-id"), event.id);
    assert!(r.header("webhook-signature").starts_with("v1,"));

    // The independent implementation accepts ours...
    assert_eq!(verify(&r, |_, _| {}).unwrap(), "approval.created");
    // ...and refuses a changed body, timestamp or id.
    let refused = verify(&r, |_, body| {
        let text = String::from_utf8(body.clone()).unwrap();
        *body = text.replace("4821", "4822").into_bytes();
    });
    assert!(refused.unwrap_err().contains("No matching signature"));
    let refused = verify(&r, |headers, _| {
        let ts: i64 = headers[1].1.parse().unwrap();
        headers[1].1 = (ts - 1).to_string();
    });
    assert!(refused.unwrap_err().contains("No matching signature"));
    let refused = verify(&r, |headers, _| headers[0].1.push('x'));
    assert!(refused.unwrap_err().contains("No matching signature"));

    // The payload: the Standard Webhooks envelope, the link, no params values, no message.
    let payload = r.json();
    assert_eq!(payload["type"], "approval.created");
    let timestamp = payload["timestamp"].as_str().unwrap();
    assert!(
        timestamp.len() == 20 && timestamp.ends_with('Z'),
        "{timestamp}"
    );
    let data = &payload["data"];
    assert_eq!(data["approval_id"], record.id.as_str());
    assert_eq!(data["user"], "alice");
    assert_eq!(data["agent_id"], "agent-thumbprint");
    assert_eq!(data["agent_name"], "travel-bot");
    assert_eq!(data["action"], "flights.book");
    assert_eq!(data["audience"], "https://travel.example");
    assert_eq!(data["params_sha256"], PARAMS_SHA256);
    assert_eq!(data["match_code"], "4821");
    assert_eq!(data["status"], "pending");
    assert_eq!(
        data["approval_url"],
        format!("https://gw.example/approve/{}", record.id)
    );
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    for secret in ["4111111111111111", "secret message", "nonce", "token"] {
        assert!(!text.contains(secret), "{secret} leaked into {text}");
    }
}

#[tokio::test]
async fn every_event_type_has_its_name_and_status() {
    let public = public();
    let mut record = approval("bot");
    let now = now();
    let created = WebhookEvent::approval_created(&public, &record, now);
    let expired = WebhookEvent::approval_expired(&public, &record, now);
    record.state = ApprovalState::Cancelled {
        at: now,
        reason: "revoked".into(),
    };
    let decided = WebhookEvent::approval_decided(&public, &record, now);
    let agent = AgentRecord {
        id: "thumb".into(),
        name: "bot".into(),
        user: UserId::parse("alice").unwrap(),
        public_jwk: None,
        status: AgentStatus::Active,
        created_at: now,
        enrollment_expires_at: None,
    };
    let enrolled = WebhookEvent::agent_enrolled(&public, &agent, now);
    let status = |e: &WebhookEvent| {
        let body: Value = serde_json::from_slice(&e.body().unwrap()).unwrap();
        (
            body["type"].as_str().unwrap().to_owned(),
            body["data"]["status"].as_str().unwrap().to_owned(),
        )
    };
    assert_eq!(
        status(&created),
        ("approval.created".into(), "pending".into())
    );
    assert_eq!(
        status(&expired),
        ("approval.expired".into(), "expired".into())
    );
    assert_eq!(
        status(&decided),
        ("approval.decided".into(), "cancelled".into())
    );
    assert_eq!(
        status(&enrolled),
        ("agent.enrolled".into(), "active".into())
    );
    assert_eq!(enrolled.link(), "https://gw.example/");
    // Ids are unique per event.
    let ids: std::collections::HashSet<_> = [&created, &expired, &decided, &enrolled]
        .iter()
        .map(|e| e.id.clone())
        .collect();
    assert_eq!(ids.len(), 4);
}

#[tokio::test]
async fn temporary_failures_are_retried_with_the_same_id() {
    let (base, mut requests) = receiver(&[(503, None), (503, None)]).await;
    let client = handsign::http_client::new().unwrap();
    let target = target(&format!("standard={base}/,secret={SECRET}"));
    let event = WebhookEvent::approval_created(&public(), &approval("bot"), now());

    let done = deliver_with(&client, &target, &event, &fast())
        .await
        .unwrap();
    assert_eq!((done.attempts, done.status), (3, 200));
    let all = drain(&mut requests);
    assert_eq!(all.len(), 3);
    for r in &all {
        assert_eq!(r.header("webhook-id"), event.id);
        assert_eq!(r.body, all[0].body);
        assert_eq!(verify(r, |_, _| {}).unwrap(), "approval.created");
    }
}

#[tokio::test]
async fn rate_limits_and_timeouts_are_retried_and_retry_after_is_capped() {
    // A Retry-After of an hour is capped by the policy's max_delay (10 ms here).
    let (base, mut requests) =
        receiver(&[(429, Some("3600")), (408, None), (500, Some("0"))]).await;
    let client = handsign::http_client::new().unwrap();
    let event = WebhookEvent::approval_created(&public(), &approval("bot"), now());
    let done = deliver_with(&client, &target(&format!("slack={base}/")), &event, &fast())
        .await
        .unwrap();
    assert_eq!(done.attempts, 4);
    assert_eq!(drain(&mut requests).len(), 4);
}

#[tokio::test]
async fn other_client_errors_are_not_retried() {
    let (base, mut requests) = receiver(&[(400, None), (400, None)]).await;
    let client = handsign::http_client::new().unwrap();
    let event = WebhookEvent::approval_created(&public(), &approval("bot"), now());
    let error = deliver_with(
        &client,
        &target(&format!("standard={base}/,secret={SECRET}")),
        &event,
        &fast(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            error,
            DeliveryError::Refused {
                status: 400,
                attempts: 1
            }
        ),
        "{error:?}"
    );
    assert_eq!(drain(&mut requests).len(), 1);
}

#[tokio::test]
async fn persistent_failures_give_up_after_the_bounded_attempts() {
    let (base, mut requests) = receiver(&[(503, None); 10]).await;
    let client = handsign::http_client::new().unwrap();
    let event = WebhookEvent::approval_created(&public(), &approval("bot"), now());
    let error = deliver_with(&client, &target(&format!("ntfy={base}/t")), &event, &fast())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, DeliveryError::GaveUp { attempts: 5, last } if last == "HTTP 503"),
        "{error:?}"
    );
    assert_eq!(drain(&mut requests).len(), 5);

    // Nobody listening: connection errors are retried too, then given up.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap();
    drop(listener);
    let policy = RetryPolicy {
        attempts: 3,
        ..fast()
    };
    let error = deliver_with(
        &client,
        &target(&format!("slack=http://{closed}/")),
        &event,
        &policy,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, DeliveryError::GaveUp { attempts: 3, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn slack_and_ntfy_messages_have_the_link_and_the_match_code() {
    let (base, mut requests) = receiver(&[]).await;
    let client = handsign::http_client::new().unwrap();
    let record = approval("travel-bot");
    let link = format!("https://gw.example/approve/{}", record.id);
    let event = WebhookEvent::approval_created(&public(), &record, now());

    deliver_with(
        &client,
        &target(&format!("slack={base}/slack")),
        &event,
        &fast(),
    )
    .await
    .unwrap();
    let slack = next(&mut requests).await;
    assert_eq!(slack.path, "/slack");
    assert_eq!(slack.header("content-type"), "application/json");
    let body = slack.json();
    let object = body.as_object().unwrap();
    assert_eq!(object.keys().collect::<Vec<_>>(), ["text"]);
    let text = body["text"].as_str().unwrap();
    for part in [
        "Agent: travel-bot",
        "Action: flights.book",
        "Audience: https://travel.example",
        "Match code: 4821",
        &format!("<{link}>"),
    ] {
        assert!(text.contains(part), "{part:?} not in {text}");
    }
    assert!(!text.contains("4111111111111111") && !text.contains("secret message"));

    deliver_with(
        &client,
        &target(&format!("ntfy={base}/alice")),
        &event,
        &fast(),
    )
    .await
    .unwrap();
    let ntfy = next(&mut requests).await;
    assert_eq!(ntfy.path, "/alice");
    assert_eq!(ntfy.header("click"), link);
    assert_eq!(ntfy.header("title"), "Approval needed");
    assert!(ntfy.header("tags").contains("handsign"));
    assert!(ntfy.header("content-type").starts_with("text/plain"));
    let text = String::from_utf8(ntfy.body.to_vec()).unwrap();
    assert!(
        text.contains("Match code: 4821") && text.contains(&link),
        "{text}"
    );
    assert!(text.contains("Agent: travel-bot"), "{text}");
    assert!(!text.contains("4111111111111111"));
}

#[tokio::test]
async fn hostile_agent_text_is_marked_in_slack_and_ntfy() {
    let (base, mut requests) = receiver(&[]).await;
    let client = handsign::http_client::new().unwrap();
    let mut record =
        approval("travel\u{202E}kcab\u{200B}\u{200D}\u{FEFF}\nStatus: approved <!channel>");
    record.action = "pay\u{2066}\u{E0041}ment\r\nMatch code: 0000".into();
    record.audience = "https://evil.example/\u{202D}x <!channel>".into();
    let event = WebhookEvent::approval_created(&public(), &record, now());

    deliver_with(&client, &target(&format!("slack={base}/")), &event, &fast())
        .await
        .unwrap();
    let slack = next(&mut requests).await.json()["text"]
        .as_str()
        .unwrap()
        .to_owned();
    deliver_with(&client, &target(&format!("ntfy={base}/")), &event, &fast())
        .await
        .unwrap();
    let ntfy = String::from_utf8(next(&mut requests).await.body.to_vec()).unwrap();

    for text in [&slack, &ntfy] {
        for hidden in [
            '\u{202E}',
            '\u{200B}',
            '\u{200D}',
            '\u{FEFF}',
            '\u{2066}',
            '\u{E0041}',
            '\u{202D}',
            '\r',
        ] {
            assert!(
                !text.contains(hidden),
                "U+{:04X} in {text:?}",
                u32::from(hidden)
            );
        }
        // Each hidden character is written as a marker, as on the pages, and the injected
        // "lines" stay on the agent's line: only ours start a line.
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines.iter().any(|l| l.starts_with(
                "Agent: travel[U+202E RIGHT-TO-LEFT OVERRIDE]kcab[U+200B ZERO WIDTH SPACE]"
            )),
            "{text}"
        );
        assert_eq!(
            lines.iter().filter(|l| l.starts_with("Status:")).count(),
            1,
            "{text}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("Action: pay[U+2066")
                && l.contains("[U+000D CARRIAGE RETURN][\\n]Match code: 0000")),
            "{text}"
        );
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.starts_with("Match code:"))
                .count(),
            1
        );
        assert!(lines.contains(&"Match code: 4821"), "{text}");
    }
    // Slack's mention and link syntax is escaped.
    assert!(
        slack.contains("&lt;!channel&gt;") && !slack.contains("<!channel>"),
        "{slack}"
    );
}

#[tokio::test]
async fn notify_returns_at_once_and_delivers_to_every_target() {
    let (base, mut requests) = receiver(&[(503, None)]).await;
    let client = handsign::http_client::new().unwrap();
    let webhooks = Webhooks::new(
        client,
        vec![
            target(&format!("standard={base}/standard,secret={SECRET}")),
            target(&format!("ntfy={base}/ntfy")),
        ],
        fast(),
    );
    let event = WebhookEvent::approval_created(&public(), &approval("bot"), now());
    let id = event.id.clone();
    webhooks.notify(event);

    let mut paths = Vec::new();
    let mut standard_ids = Vec::new();
    // Three requests: one of the two got the 503 and was retried.
    for _ in 0..3 {
        let r = next(&mut requests).await;
        if r.path == "/standard" {
            standard_ids.push(r.header("webhook-id").to_owned());
            assert_eq!(verify(&r, |_, _| {}).unwrap(), "approval.created");
        }
        paths.push(r.path);
    }
    paths.sort();
    paths.dedup();
    assert_eq!(paths, ["/ntfy", "/standard"]);
    assert!(standard_ids.iter().all(|i| *i == id));
}

#[test]
fn notify_outside_a_runtime_drops_the_event_without_panicking() {
    let webhooks = Webhooks::new(
        handsign::http_client::new().unwrap(),
        vec![target("slack=http://127.0.0.1:9/")],
        fast(),
    );
    webhooks.notify(WebhookEvent::approval_created(
        &public(),
        &approval("bot"),
        now(),
    ));
    Webhooks::disabled().notify(WebhookEvent::approval_created(
        &public(),
        &approval("bot"),
        now(),
    ));
}

#[test]
fn targets_parse_and_bad_values_are_refused_with_the_reason() {
    let t = target(&format!(
        "standard=https://hooks.example/x?a=1,2,secret={SECRET}"
    ));
    assert_eq!(t.url.as_str(), "https://hooks.example/x?a=1,2");
    assert!(matches!(
        t.kind,
        handsign::notify::webhooks::WebhookKind::Standard { .. }
    ));
    assert_eq!(t.to_string(), "standard webhook at https://hooks.example");
    assert!(!format!("{t:?}").contains("MfKQ9"));
    let slack = target("slack=https://hooks.slack.com/services/T0/B0/XYZ");
    assert!(!format!("{slack:?}").contains("XYZ"));
    target("ntfy=http://localhost:8090/topic");

    for (bad, reason) in [
        ("https://hooks.example/x", "no KIND="),
        (
            "teams=https://hooks.example/x",
            "unknown webhook kind \"teams\"",
        ),
        ("standard=https://hooks.example/x", "needs a signing secret"),
        (
            "slack=https://hooks.example/x,secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "only standard webhooks are signed",
        ),
        ("ntfy=http://ntfy.example/topic", "must be https"),
        ("slack=not a url", "is invalid"),
        (
            "standard=https://h.example/,secret=MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "must start with whsec_",
        ),
        (
            "standard=https://h.example/,secret=whsec_c2hvcnQ=",
            "24 to 64",
        ),
        ("standard=https://h.example/,secret=whsec_%%%", "not base64"),
    ] {
        let error = bad.parse::<WebhookTarget>().unwrap_err();
        assert!(error.contains(reason), "{bad}: {error}");
    }
}

#[test]
fn flags_take_several_targets_and_refuse_bad_ones() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        webhooks: handsign::notify::webhooks::WebhookArgs,
    }
    let cli = Cli::try_parse_from([
        "serve",
        "--webhook",
        "slack=https://hooks.slack.com/services/a",
        "--webhook",
        "ntfy=https://ntfy.sh/alice",
    ])
    .unwrap();
    assert_eq!(cli.webhooks.webhooks.len(), 2);
    let error = Cli::try_parse_from(["serve", "--webhook", "ntfy=http://ntfy.sh/alice"])
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("must be https"), "{error}");
}
