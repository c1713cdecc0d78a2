//! `GET /metrics` against the real server: after a scenario (requests, an approval, a denial, a
//! refused second decision, a collected token) the page counts exactly that, in a text that
//! parses as OpenMetrics throughout, and names nobody.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use common::{TestGateway, flight};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// The samples of a scrape, by name and sorted labels (`name{a="x",b="y"}`), after checking
/// that every line is valid: `# HELP`, `# TYPE` or `# UNIT` of the family that follows, samples
/// of the family last declared (with the suffixes its type allows), and `# EOF` last.
#[derive(Debug)]
struct Scrape {
    samples: BTreeMap<String, f64>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    fn parse(text: &str) -> Self {
        let mut samples = BTreeMap::new();
        let mut types = BTreeMap::new();
        let mut family: Option<(String, String)> = None;
        let mut lines = text.lines().peekable();
        assert!(text.ends_with("# EOF\n"), "no EOF at the end:\n{text}");
        while let Some(line) = lines.next() {
            if line == "# EOF" {
                assert!(lines.peek().is_none(), "lines after # EOF:\n{text}");
                break;
            }
            if let Some(comment) = line.strip_prefix("# ") {
                let mut parts = comment.splitn(3, ' ');
                let (keyword, name, rest) = (
                    parts.next().unwrap(),
                    parts
                        .next()
                        .unwrap_or_else(|| panic!("bad comment {line:?}")),
                    parts
                        .next()
                        .unwrap_or_else(|| panic!("bad comment {line:?}")),
                );
                assert!(valid_name(name), "bad metric name in {line:?}");
                match keyword {
                    "HELP" => assert!(!rest.is_empty(), "empty help in {line:?}"),
                    "UNIT" => assert!(
                        name.ends_with(&format!("_{rest}")),
                        "the name must end with its unit: {line:?}"
                    ),
                    "TYPE" => {
                        assert!(
                            ["counter", "gauge", "histogram"].contains(&rest),
                            "unexpected type in {line:?}"
                        );
                        assert!(
                            types.insert(name.to_owned(), rest.to_owned()).is_none(),
                            "family {name} declared twice"
                        );
                        family = Some((name.to_owned(), rest.to_owned()));
                    }
                    other => panic!("unknown comment {other:?} in {line:?}"),
                }
                continue;
            }
            let (name, labels, value) = parse_sample(line);
            let (family_name, family_type) = family
                .as_ref()
                .unwrap_or_else(|| panic!("sample before any # TYPE: {line:?}"));
            let suffix = name
                .strip_prefix(family_name.as_str())
                .unwrap_or_else(|| panic!("{line:?} is not of family {family_name}"));
            let allowed: &[&str] = match family_type.as_str() {
                "counter" => &["_total", "_created"],
                "gauge" => &[""],
                "histogram" => &["_bucket", "_count", "_sum", "_created"],
                _ => unreachable!(),
            };
            assert!(
                allowed.contains(&suffix),
                "{line:?} is not a sample a {family_type} has"
            );
            assert_eq!(
                labels.contains_key("le"),
                suffix == "_bucket",
                "le belongs to buckets only: {line:?}"
            );
            let key = format!(
                "{name}{{{}}}",
                labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{v}\""))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let key = key.strip_suffix("{}").unwrap_or(&key).to_owned();
            assert!(
                samples.insert(key, value).is_none(),
                "sample given twice: {line:?}"
            );
        }
        Scrape { samples, types }
    }

    /// The sample `key` (`name` or `name{label="value",...}` with labels sorted); panics when
    /// there is none.
    #[track_caller]
    fn get(&self, key: &str) -> f64 {
        *self
            .samples
            .get(key)
            .unwrap_or_else(|| panic!("no sample {key} in {:#?}", self.samples))
    }

    fn has(&self, key: &str) -> bool {
        self.samples.contains_key(key)
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `name{label="value",...} value`, with escaped label values; panics on anything else.
fn parse_sample(line: &str) -> (String, BTreeMap<String, String>, f64) {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("no value in {line:?}"));
    let name = &line[..name_end];
    assert!(valid_name(name), "bad sample name in {line:?}");
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut at = 0;
        loop {
            if let Some(after) = inner[at..].strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = inner[at..]
                .find("=\"")
                .unwrap_or_else(|| panic!("bad label in {line:?}"));
            let key = &inner[at..at + eq];
            assert!(
                valid_name(key) && !key.contains(':'),
                "bad label name in {line:?}"
            );
            at += eq + 2;
            let mut value = String::new();
            let mut chars = inner[at..].char_indices();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => panic!("bad escape {other:?} in {line:?}"),
                    },
                    Some((end, '"')) => {
                        at += end + 1;
                        break;
                    }
                    Some((_, c)) => value.push(c),
                    None => panic!("unterminated label value in {line:?}"),
                }
            }
            assert!(
                labels.insert(key.to_owned(), value).is_none(),
                "label {key} twice in {line:?}"
            );
            if inner[at..].starts_with(',') {
                at += 1;
            } else {
                assert!(
                    inner[at..].starts_with('}'),
                    "expected , or }} after a label in {line:?}"
                );
            }
        }
    }
    let value = rest
        .strip_prefix(' ')
        .unwrap_or_else(|| panic!("no space before the value in {line:?}"));
    assert!(
        !value.contains(' '),
        "timestamps are not expected: {line:?}"
    );
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}")),
    };
    (name.to_owned(), labels, value)
}

async fn scrape(gateway: &TestGateway) -> (String, Scrape) {
    let response = gateway
        .http
        .get(format!("{}/metrics", gateway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    let parsed = Scrape::parse(&text);
    (text, parsed)
}

fn requests(outcome: &str) -> String {
    format!("handsign_approval_requests_total{{outcome=\"{outcome}\"}}")
}

fn decisions(outcome: &str) -> String {
    format!("handsign_decisions_total{{outcome=\"{outcome}\"}}")
}

fn refusals(reason: &str) -> String {
    format!("handsign_decision_refusals_total{{reason=\"{reason}\"}}")
}

#[tokio::test]
async fn the_scenario_is_counted_exactly_and_names_nobody() {
    let gateway = TestGateway::start().await;
    let mut alice = gateway.register("alice").await;
    let agent = gateway.agent("alice").await;

    let (_, before) = scrape(&gateway).await;
    for (family, kind) in [
        ("handsign_approval_requests", "counter"),
        ("handsign_decisions", "counter"),
        ("handsign_decision_refusals", "counter"),
        ("handsign_time_to_decision_seconds", "histogram"),
        ("handsign_tokens_issued", "counter"),
        ("handsign_store_errors", "counter"),
        ("handsign_store_operation_duration_seconds", "histogram"),
        ("handsign_pending_requests", "gauge"),
    ] {
        assert_eq!(
            before.types.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }
    assert_eq!(before.get("handsign_pending_requests"), 0.0);
    assert_eq!(before.get(&requests("created")), 0.0);
    assert_eq!(before.get("handsign_time_to_decision_seconds_count"), 0.0);

    let approved = agent.request(flight()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let denied = agent.request(flight()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, asked) = scrape(&gateway).await;
    assert_eq!(asked.get("handsign_pending_requests"), 2.0);

    let credential = gateway.assert(&mut alice, &approved, "approve").await;
    let (status, body) = gateway.submit(&approved, "approve", &credential).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = gateway.submit(&approved, "approve", &credential).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "not_pending");
    let (status, body) = gateway.decide(&mut alice, &denied, "deny").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, collected) = agent.read(&approved, 0).await;
    assert_eq!(status, StatusCode::OK, "{collected}");
    assert!(collected["token"].is_string(), "{collected}");
    let (_, again) = agent.read(&approved, 0).await;
    assert!(again.get("token").is_none(), "{again}");

    let (text, after) = scrape(&gateway).await;
    assert_eq!(after.get(&requests("created")), 2.0);
    for refused in [
        "rate_limited",
        "too_many_pending",
        "agent_inactive",
        "invalid",
        "unavailable",
        "error",
    ] {
        assert_eq!(after.get(&requests(refused)), 0.0, "{refused}");
    }
    assert_eq!(after.get(&decisions("approved")), 1.0);
    assert_eq!(after.get(&decisions("denied")), 1.0);
    assert_eq!(after.get(&refusals("not_pending")), 1.0);
    for reason in [
        "no_ceremony",
        "passkey_refused",
        "invalid",
        "unavailable",
        "error",
    ] {
        assert_eq!(after.get(&refusals(reason)), 0.0, "{reason}");
    }
    assert_eq!(after.get("handsign_time_to_decision_seconds_count"), 2.0);
    assert_eq!(
        after.get("handsign_time_to_decision_seconds_bucket{le=\"+Inf\"}"),
        2.0
    );
    assert_eq!(after.get("handsign_tokens_issued_total"), 1.0);
    assert_eq!(after.get("handsign_pending_requests"), 0.0);
    // The store was used and timed, and never failed.
    assert!(
        after.get("handsign_store_operation_duration_seconds_count{operation=\"decide\"}") >= 2.0
    );
    assert_eq!(
        after.get("handsign_store_errors_total{operation=\"decide\"}"),
        0.0
    );
    assert_eq!(
        after.get("handsign_store_errors_total{operation=\"pending_count\"}"),
        0.0
    );
    // Nothing about who asked for what.
    for secret in [
        "alice",
        agent.id(),
        "flights.book",
        "travel.example",
        "NYC",
        approved.as_str(),
    ] {
        assert!(!text.contains(secret), "{secret:?} leaked:\n{text}");
    }

    agent.request(flight()).await;
    let (_, later) = scrape(&gateway).await;
    assert_eq!(later.get("handsign_pending_requests"), 1.0);
    assert_eq!(later.get(&requests("created")), 3.0);
}

#[tokio::test]
async fn refused_requests_are_counted_by_reason() {
    let gateway = TestGateway::start_with(|args| args.limits.max_pending_per_agent = 1).await;
    gateway.register("alice").await;
    let agent = gateway.agent("alice").await;
    agent.request(flight()).await;

    let ask = |action: &'static str| {
        let agent = agent.clone();
        async move {
            agent
                .call(
                    Method::POST,
                    "/v1/approvals",
                    Some(&json!({
                        "action": action,
                        "params": flight(),
                        "audience": "https://travel.example",
                    })),
                )
                .await
        }
    };
    let (status, body) = ask("flights.book").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "too_many_pending");
    let (status, body) = ask("handsign.agent.enroll").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (text, scraped) = scrape(&gateway).await;
    assert_eq!(scraped.get(&requests("created")), 1.0);
    assert_eq!(scraped.get(&requests("too_many_pending")), 1.0);
    assert_eq!(scraped.get(&requests("invalid")), 1.0);
    assert_eq!(scraped.get("handsign_pending_requests"), 1.0);
    assert!(!scraped.has("handsign_approval_requests_total{outcome=\"flights.book\"}"));
    assert!(!text.contains("handsign.agent.enroll"), "{text}");
}

#[tokio::test]
async fn metrics_can_have_a_listener_of_their_own() {
    let data = tempfile::tempdir().unwrap();
    let (port, metrics_port) = (common::process::free_port(), common::process::free_port());
    let _gateway = common::process::GatewayProcess::start(
        env!("CARGO_BIN_EXE_handsign"),
        port,
        &[
            "--data-dir".to_owned(),
            data.path().display().to_string(),
            "--public-url".to_owned(),
            format!("http://localhost:{port}"),
            "--metrics-listen".to_owned(),
            format!("127.0.0.1:{metrics_port}"),
        ],
    );
    let http = reqwest::Client::new();
    let get = |port: u16, path: &str| http.get(format!("http://127.0.0.1:{port}{path}")).send();
    // The main listener serves everything but the metrics.
    assert_eq!(
        get(port, "/metrics").await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(port, "/healthz").await.unwrap().status(),
        StatusCode::OK
    );
    // The metrics listener serves the metrics and nothing else.
    let response = get(metrics_port, "/metrics").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    Scrape::parse(&response.text().await.unwrap());
    assert_eq!(
        get(metrics_port, "/healthz").await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_metrics_token_is_required_when_configured() {
    const TOKEN: &str = "scrape-9f2c41d07ab3e865";
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("metrics-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let gateway = TestGateway::start_with(|args| {
        args.metrics.metrics_token_file = Some(token_file.clone());
    })
    .await;
    let metrics = |token: Option<&str>| {
        let request = gateway.http.get(format!("{}/metrics", gateway.url));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
        .send()
    };
    for token in [None, Some("scrape-wrong-token-1234"), Some("")] {
        let response = metrics(token).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let answer: serde_json::Value = response.json().await.unwrap();
        assert_eq!(answer["error"], "metrics_token_required");
    }
    let response = metrics(Some(TOKEN)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    Scrape::parse(&response.text().await.unwrap());
}
