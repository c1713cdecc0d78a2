//! The person's own pages against the real server: setup links, login and logout, and the
//! dashboard's JSON, which must act for the session's user only, refuse other origins, and tell
//! an open dashboard about every change to the user's requests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{TestAgent, TestGateway, flight};
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

/// A browser at the gateway: its session cookie (if logged in), never following redirects so a
/// test sees them.
struct Browser {
    url: String,
    http: reqwest::Client,
    cookie: Option<String>,
}

impl Browser {
    fn new(gateway: &TestGateway, cookie: Option<String>) -> Browser {
        Browser {
            url: gateway.url.clone(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                // A guard, not a wait: every test reads only what the gateway sends at once.
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .unwrap(),
            cookie,
        }
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.url));
        match &self.cookie {
            Some(cookie) => request.header(header::COOKIE, cookie),
            None => request,
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.request(Method::GET, path).send().await.unwrap()
    }

    async fn page(&self, path: &str) -> (StatusCode, String) {
        let response = self.get(path).await;
        (response.status(), response.text().await.unwrap())
    }

    async fn json(&self, path: &str) -> (StatusCode, Value) {
        let response = self.get(path).await;
        (
            response.status(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    /// A POST from the gateway's own page.
    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let origin = self.url.clone();
        self.post_from(Some(&origin), path, body).await
    }

    /// A POST with the given `Origin` header (or none).
    async fn post_from(
        &self,
        origin: Option<&str>,
        path: &str,
        body: &Value,
    ) -> (StatusCode, Value) {
        let mut request = self.request(Method::POST, path).json(body);
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A new software passkey named `name` answers registration `options`, as the page does:
    /// the finishing answer's status and body, and the passkey.
    async fn finish_registration(
        &self,
        gateway: &TestGateway,
        options: &Value,
        name: &str,
    ) -> (
        StatusCode,
        Value,
        webauthn_authenticator_rs::softpasskey::SoftPasskey,
    ) {
        let ccr: webauthn_rs::prelude::CreationChallengeResponse =
            serde_json::from_value(json!({"publicKey": options["publicKey"]})).unwrap();
        let mut passkey = webauthn_authenticator_rs::softpasskey::SoftPasskey::new(true);
        let credential = webauthn_authenticator_rs::WebauthnAuthenticator::do_registration(
            &mut passkey,
            gateway.origin(),
            ccr,
        )
        .unwrap();
        let (status, answer) = self
            .post(
                "/webauthn/register/finish",
                &json!({"ceremony": options["ceremony"], "credential": credential, "name": name}),
            )
            .await;
        (status, answer, passkey)
    }

    /// `person`'s fresh passkey assertion in this browser for `purpose`.
    async fn step_up(&self, person: &mut common::Person, purpose: Value) -> Value {
        let client = common::GatewayClient::new(&self.url);
        let cookie = self.cookie.as_deref().unwrap();
        client.step_up(person, cookie, purpose).await
    }

    /// Sets an agent's status as the dashboard does: `person` confirms with their passkey.
    async fn set_status(
        &self,
        person: &mut common::Person,
        agent: &str,
        status: &str,
    ) -> (StatusCode, Value) {
        let purpose = json!({"action": "set_agent_status", "agent": agent, "status": status});
        let step_up = self.step_up(person, purpose).await;
        self.post(
            &format!("/dashboard/agents/{agent}/status"),
            &json!({"status": status, "step_up": step_up}),
        )
        .await
    }

    /// Invites `user` as the dashboard does: `person` confirms with their passkey.
    async fn invite(&self, person: &mut common::Person, user: &str) -> (StatusCode, Value) {
        let step_up = self
            .step_up(person, json!({"action": "invite", "user": user}))
            .await;
        self.post(
            "/dashboard/invitations",
            &json!({"user": user, "step_up": step_up}),
        )
        .await
    }
}

/// A gateway with `name` registered and logged in: the person, and their browser.
async fn logged_in(gateway: &TestGateway, name: &str) -> (common::Person, Browser) {
    let mut person = gateway.register(name).await;
    let cookie = gateway.login(&mut person).await;
    (person, Browser::new(gateway, Some(cookie)))
}

/// An agent's request that may be refused: the status and answer.
async fn try_request(agent: &TestAgent) -> (StatusCode, Value) {
    agent
        .call(
            Method::POST,
            "/v1/approvals",
            Some(&json!({
                "action": "flights.book",
                "params": flight(),
                "audience": "https://travel.example",
            })),
        )
        .await
}

fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn the_setup_page_shows_the_form_that_fits_the_code() {
    let gateway = TestGateway::start().await;
    let browser = Browser::new(&gateway, None);

    let setup =
        handsign::invitations::issue(gateway.store.as_ref(), None, gateway.state.clock.now())
            .await
            .unwrap();
    let response = browser.get(&format!("/setup?code={setup}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let csp = response.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let html = response.text().await.unwrap();
    for needle in [
        r#"<form id="setup""#,
        r#"<input id="user""#,
        r#"id="passkey-name""#,
        r#"value="phone""#,
        r#"<button id="register""#,
    ] {
        assert!(html.contains(needle), "{needle} missing in {html}");
    }
    assert!(!html.contains("readonly"));

    let invitation = handsign::invitations::issue(
        gateway.store.as_ref(),
        Some("bob".parse_user()),
        gateway.state.clock.now(),
    )
    .await
    .unwrap();
    let (status, html) = browser.page(&format!("/setup?code={invitation}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(r#"value="bob" readonly"#), "{html}");

    for bad in ["/setup?code=not-a-code", "/setup", "/setup?code="] {
        let (status, html) = browser.page(bad).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}");
        assert!(!html.contains("<form"), "{bad}: {html}");
        assert!(html.contains("unknown, already used or expired"), "{bad}");
    }

    // A redeemed code is used up.
    common::register(&gateway.http, &gateway.url, &setup, "alice").await;
    let (status, html) = browser.page(&format!("/setup?code={setup}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!html.contains("<form"));
}

trait ParseUser {
    fn parse_user(self) -> handsign::domain::UserId;
}

impl ParseUser for &str {
    fn parse_user(self) -> handsign::domain::UserId {
        handsign::domain::UserId::parse(self).unwrap()
    }
}

#[tokio::test]
async fn the_dashboard_needs_a_session_and_logout_ends_it() {
    let gateway = TestGateway::start().await;
    let anonymous = Browser::new(&gateway, None);
    let response = anonymous.get("/").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/login");
    let (status, html) = anonymous.page("/login").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(r#"<form id="login""#));
    for path in ["/dashboard/approvals", "/dashboard/events"] {
        let (status, answer) = anonymous.json(path).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(answer["error"], "login_required");
    }

    let (_alice, browser) = logged_in(&gateway, "alice").await;
    let (status, html) = browser.page("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Logged in as <b>alice</b>"), "{html}");
    assert!(html.contains("<h2 id=\"passkeys-title\">"));
    assert!(html.contains("test"), "the passkey's name");
    let (_, html) = browser.page("/login").await;
    assert!(html.contains("already logged in as <b>alice</b>"));

    // Logging out from another site's page is refused.
    let (status, _) = browser
        .post_from(Some("https://evil.example"), "/logout", &json!({}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(browser.get("/").await.status(), StatusCode::OK);

    let response = browser
        .request(Method::POST, "/logout")
        .header(header::ORIGIN, &gateway.url)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cleared = response.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cleared.starts_with("handsign_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    // The old cookie is worth nothing now.
    assert_eq!(browser.get("/").await.status(), StatusCode::SEE_OTHER);
    let (status, _) = browser.json("/dashboard/approvals").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn requests_move_from_pending_to_history_with_a_receipt() {
    let gateway = TestGateway::start().await;
    let (mut alice, browser) = logged_in(&gateway, "alice").await;
    let agent = gateway.agent("alice").await;

    let (status, empty) = browser.json("/dashboard/approvals").await;
    assert_eq!(status, StatusCode::OK);
    assert!(ids(&empty["pending"]).is_empty() && ids(&empty["history"]).is_empty());
    assert!(
        empty["html"]["pending"]
            .as_str()
            .unwrap()
            .contains("Nothing is waiting for you.")
    );

    let created = agent.request(flight()).await;
    let id = created["id"].as_str().unwrap();
    let (_, listed) = browser.json("/dashboard/approvals").await;
    assert_eq!(ids(&listed["pending"]), [id]);
    let item = &listed["pending"][0];
    assert_eq!(item["status"], "pending");
    assert_eq!(item["action"], "flights.book");
    assert_eq!(item["audience"], "https://travel.example");
    assert_eq!(item["agent"]["id"], agent.id());
    assert_eq!(item["agent"]["name"], "test agent for alice");
    assert_eq!(item["code"], created["code"]);
    assert!(item["seconds_left"].as_i64().unwrap() > 0);
    assert_eq!(item["approval_url"], created["approval_url"]);
    assert!(item.get("receipt_url").is_none());
    let fragment = listed["html"]["pending"].as_str().unwrap();
    assert!(
        fragment.contains(&format!(r#"href="/approve/{id}""#)),
        "{fragment}"
    );
    assert!(fragment.contains(created["code"].as_str().unwrap()));
    assert!(ids(&listed["history"]).is_empty());
    // The page shows the same.
    let (_, html) = browser.page("/").await;
    assert!(html.contains(&format!(r#"href="/approve/{id}""#)));

    // No receipt before a decision.
    let (status, answer) = browser
        .json(&format!("/dashboard/approvals/{id}/receipt"))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");

    let (status, decided) = gateway.decide(&mut alice, id, "deny").await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    let (_, listed) = browser.json("/dashboard/approvals").await;
    assert!(ids(&listed["pending"]).is_empty());
    assert_eq!(ids(&listed["history"]), [id]);
    let item = &listed["history"][0];
    assert_eq!(item["status"], "denied");
    assert!(item["decided_at"].as_i64().is_some());
    let receipt_url = format!("{}/dashboard/approvals/{id}/receipt", gateway.url);
    assert_eq!(item["receipt_url"], receipt_url.as_str());
    let fragment = listed["html"]["history"].as_str().unwrap();
    assert!(fragment.contains(&format!(r#"href="/dashboard/approvals/{id}/receipt""#)));

    let (status, receipt) = browser
        .json(&format!("/dashboard/approvals/{id}/receipt"))
        .await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["statement"]["id"], id);
    assert_eq!(receipt["statement"]["decision"], "deny");
    assert_eq!(receipt["statement"]["sub"], "alice");

    // Newest first (requests made in the same second may come in either order).
    let second = agent.request(flight()).await;
    let second = second["id"].as_str().unwrap();
    gateway.decide(&mut alice, second, "approve").await;
    let (_, listed) = browser.json("/dashboard/approvals").await;
    let mut history = ids(&listed["history"]);
    let created: Vec<i64> = listed["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["created_at"].as_i64().unwrap())
        .collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "{created:?}");
    history.sort_unstable();
    let mut expected = [second, id];
    expected.sort_unstable();
    assert_eq!(history, expected);
}

#[tokio::test]
async fn agents_are_suspended_resumed_and_revoked_from_the_dashboard() {
    let gateway = TestGateway::start().await;
    let (mut alice, browser) = logged_in(&gateway, "alice").await;
    let agent = gateway.agent("alice").await;

    let (_, html) = browser.page("/").await;
    assert!(html.contains(&format!(r#"data-agent-id="{}""#, agent.id())));

    let (status, answer) = browser
        .set_status(&mut alice, agent.id(), "suspended")
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "suspended");
    let (status, refused) = try_request(&agent).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert_eq!(refused["error"], "agent_suspended");

    let (status, answer) = browser.set_status(&mut alice, agent.id(), "active").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "active");
    let pending = agent.request(flight()).await;
    let pending = pending["id"].as_str().unwrap();

    // "pending" is not something the dashboard can set.
    let (status, _) = browser.set_status(&mut alice, agent.id(), "pending").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, answer) = browser.set_status(&mut alice, agent.id(), "revoked").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "revoked");
    let (_, listed) = browser.json("/dashboard/approvals").await;
    assert!(ids(&listed["pending"]).is_empty());
    assert_eq!(ids(&listed["history"]), [pending]);
    assert_eq!(listed["history"][0]["status"], "cancelled");
    let (status, read) = agent.read(pending, 0).await;
    assert!(
        status == StatusCode::FORBIDDEN || read["status"] == "cancelled",
        "{status} {read}"
    );

    // Revoking is final.
    let (status, answer) = browser.set_status(&mut alice, agent.id(), "active").await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    let (status, _) = try_request(&agent).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_enrolling_agent_can_only_be_revoked_from_the_dashboard() {
    let gateway = TestGateway::start().await;
    let (mut alice, browser) = logged_in(&gateway, "alice").await;
    let key = handsign_protocol::keys::SigningKey::generate().unwrap();
    let enrolling = TestAgent::new(key, &gateway.url);
    let (status, enrollment) = enrolling
        .call(
            Method::POST,
            "/v1/agents/enroll",
            Some(&json!({"name": "new bot", "user": "alice"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{enrollment}");

    // Suspending and then resuming would activate it without the person's passkey.
    for wanted in ["suspended", "active"] {
        let (status, answer) = browser.set_status(&mut alice, enrolling.id(), wanted).await;
        assert_eq!(status, StatusCode::CONFLICT, "{wanted}: {answer}");
        assert_eq!(answer["error"], "enrollment_pending");
    }
    let (status, answer) = browser
        .set_status(&mut alice, enrolling.id(), "revoked")
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (_, listed) = browser.json("/dashboard/approvals").await;
    assert_eq!(
        ids(&listed["history"]),
        [enrollment["id"].as_str().unwrap()]
    );
    assert_eq!(listed["history"][0]["status"], "cancelled");
}

#[tokio::test]
async fn another_users_session_sees_none_of_it() {
    let gateway = TestGateway::start().await;
    let (mut alice, alice_browser) = logged_in(&gateway, "alice").await;
    let (mut bob, bob_browser) = logged_in(&gateway, "bob").await;
    let agent = gateway.agent("alice").await;
    let created = agent.request(flight()).await;
    let id = created["id"].as_str().unwrap();
    gateway.decide(&mut alice, id, "approve").await;

    let receipt = format!("/dashboard/approvals/{id}/receipt");
    let (status, _) = alice_browser.json(&receipt).await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = bob_browser.json(&receipt).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    // Exactly like an id that does not exist.
    let (status, unknown) = bob_browser
        .json("/dashboard/approvals/apr_AAAAAAAAAAAAAAAAAAAAAA/receipt")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer, unknown);

    for wanted in ["suspended", "revoked"] {
        let (status, answer) = bob_browser.set_status(&mut bob, agent.id(), wanted).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    }
    let (status, answer) = bob_browser
        .set_status(&mut bob, "no-such-agent", "suspended")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(
        gateway
            .store
            .agent(agent.id())
            .await
            .unwrap()
            .unwrap()
            .status,
        handsign::domain::AgentStatus::Active
    );

    let (_, listed) = bob_browser.json("/dashboard/approvals").await;
    assert!(ids(&listed["pending"]).is_empty() && ids(&listed["history"]).is_empty());
    let (_, html) = bob_browser.page("/").await;
    assert!(!html.contains(agent.id()) && !html.contains(id));
}

#[tokio::test]
async fn state_changes_need_the_gateways_origin() {
    let gateway = TestGateway::start().await;
    let (_alice, browser) = logged_in(&gateway, "alice").await;
    let agent = gateway.agent("alice").await;
    let status_path = format!("/dashboard/agents/{}/status", agent.id());
    let changes = [
        (status_path.as_str(), json!({"status": "revoked"})),
        ("/dashboard/invitations", json!({"user": "carol"})),
        ("/logout", json!({})),
    ];
    for (path, body) in &changes {
        for origin in [None, Some("https://evil.example"), Some("null")] {
            let (status, answer) = browser.post_from(origin, path, body).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path} from {origin:?}");
            assert_eq!(answer["error"], "bad_origin");
        }
    }
    assert_eq!(
        gateway
            .store
            .agent(agent.id())
            .await
            .unwrap()
            .unwrap()
            .status,
        handsign::domain::AgentStatus::Active
    );
    assert!(
        gateway
            .store
            .user(&"carol".parse_user())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(browser.get("/").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn invitations_from_the_dashboard() {
    let gateway = TestGateway::start().await;
    let (mut alice, browser) = logged_in(&gateway, "alice").await;

    let (status, answer) = browser.invite(&mut alice, "carol").await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["user"], "carol");
    let url = answer["url"].as_str().unwrap();
    let path = url.strip_prefix(&gateway.url).unwrap();
    assert!(path.starts_with("/setup?code="), "{url}");
    let (status, html) = browser.page(path).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(r#"value="carol" readonly"#));

    let code = path.strip_prefix("/setup?code=").unwrap();
    common::register(&gateway.http, &gateway.url, code, "carol").await;

    let (status, answer) = browser.invite(&mut alice, "alice").await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    let (status, answer) = browser
        .post("/dashboard/invitations", &json!({"user": "Not Valid"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"], "invalid_user");
    let (status, _) = Browser::new(&gateway, None)
        .post("/dashboard/invitations", &json!({"user": "dave"}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_logged_in_person_adds_a_passkey_without_a_code() {
    let gateway = TestGateway::start().await;
    let (mut alice, browser) = logged_in(&gateway, "alice").await;
    let step_up = browser
        .step_up(&mut alice, json!({"action": "add_passkey"}))
        .await;
    let (status, options) = browser
        .post("/webauthn/register/options", &json!({"step_up": step_up}))
        .await;
    assert_eq!(status, StatusCode::OK, "{options}");
    let (status, answer, _) = browser
        .finish_registration(&gateway, &options, "laptop")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (_, html) = browser.page("/").await;
    assert!(html.contains("laptop"), "{html}");
    assert_eq!(
        gateway
            .store
            .passkeys(&"alice".parse_user())
            .await
            .unwrap()
            .len(),
        2
    );
}

/// Reads the event stream until an event named `name` arrives; returns its data.
async fn next_event(stream: &mut reqwest::Response, buffer: &mut String, name: &str) -> String {
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut event = "message";
            let mut data = String::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    event = value.trim();
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim());
                }
            }
            if event == name {
                return data;
            }
        }
        let chunk = stream
            .chunk()
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("the stream ended before a {name} event"));
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[tokio::test]
async fn the_event_stream_reports_the_users_new_requests() {
    let gateway = TestGateway::start().await;
    let (mut alice, browser) = logged_in(&gateway, "alice").await;
    let _bob = gateway.register("bob").await;
    let alices_agent = gateway.agent("alice").await;
    let bobs_agent = gateway.agent("bob").await;

    let mut stream = browser.get("/dashboard/events").await;
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(
        stream.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut buffer = String::new();
    // Once "ready" arrived the stream is subscribed: nothing after it can be missed.
    assert_eq!(next_event(&mut stream, &mut buffer, "ready").await, "ready");

    // Bob's request is not alice's business: the first change she hears of is her own.
    bobs_agent.request(flight()).await;
    let created = alices_agent.request(flight()).await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(next_event(&mut stream, &mut buffer, "changed").await, id);

    gateway.decide(&mut alice, id, "approve").await;
    assert_eq!(next_event(&mut stream, &mut buffer, "changed").await, id);
}

/// Starts registering `user` with `code` and finishes with a new software passkey named
/// `passkey_name`: the finishing answer's status and body, and the person.
async fn register_passkey_named(
    gateway: &TestGateway,
    code: &str,
    user: &str,
    passkey_name: &str,
) -> (StatusCode, Value, common::Person) {
    let browser = Browser::new(gateway, None);
    let (status, options) = browser
        .post(
            "/webauthn/register/options",
            &json!({"code": code, "user": user}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{options}");
    let (status, answer, passkey) = browser
        .finish_registration(gateway, &options, passkey_name)
        .await;
    let person = common::Person {
        name: user.to_owned(),
        passkey,
    };
    (status, answer, person)
}

#[tokio::test]
async fn passkey_names_are_shown_marked_and_control_characters_refused() {
    let gateway = TestGateway::start().await;
    let code =
        || handsign::invitations::issue(gateway.store.as_ref(), None, gateway.state.clock.now());
    let (status, answer, _) =
        register_passkey_named(&gateway, &code().await.unwrap(), "alice", "phone\0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"], "invalid_name");

    let hostile = "my\u{202E}enohp\u{200B}";
    let (status, answer, mut alice) =
        register_passkey_named(&gateway, &code().await.unwrap(), "alice", hostile).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let cookie = gateway.login(&mut alice).await;
    let (status, html) = Browser::new(&gateway, Some(cookie)).page("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !html.contains(hostile) && !html.contains('\u{202E}'),
        "{html}"
    );
    assert!(
        html.contains(
            "my<span class=\"mk\">U+202E RIGHT-TO-LEFT OVERRIDE</span>enohp<span class=\"mk\">U+200B ZERO WIDTH SPACE</span>"
        ),
        "{html}"
    );
}

/// An open approval page learns that nobody waits any more: revoking the agent cancels its
/// request, and the page's event stream says `cancelled` and ends. A request already decided
/// says so at once.
#[tokio::test]
async fn an_open_approval_page_hears_that_its_request_was_cancelled() {
    let gateway = TestGateway::start().await;
    let (mut alice, browser) = logged_in(&gateway, "alice").await;
    let agent = gateway.agent("alice").await;
    let created = agent.request(flight()).await;
    let id = created["id"].as_str().unwrap();
    let url = format!("{}/approve/{id}/events", gateway.client.url);

    let mut stream = gateway.client.http.get(&url).send().await.unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let (status, answer) = browser.set_status(&mut alice, agent.id(), "revoked").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let mut said = String::new();
    while let Some(chunk) = stream.chunk().await.unwrap() {
        said.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(said.contains("event: status\ndata: cancelled\n"), "{said}");

    let again = gateway.client.http.get(&url).send().await.unwrap();
    assert!(again.text().await.unwrap().contains("data: cancelled"));
    let unknown = format!(
        "{}/approve/apr_AAAAAAAAAAAAAAAAAAAAAA/events",
        gateway.client.url
    );
    let missing = gateway.client.http.get(&unknown).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

impl Browser {
    /// A navigation: what a browser's address bar asks for.
    async fn navigate(&self, path: &str) -> (StatusCode, String, String) {
        let response = self
            .request(Method::GET, path)
            .header(header::ACCEPT, "text/html,application/xhtml+xml,*/*;q=0.8")
            .send()
            .await
            .unwrap();
        let kind = response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        (response.status(), kind, response.text().await.unwrap())
    }
}

/// A browser following a dead link gets a page saying so; an API client gets JSON, as before.
#[tokio::test]
async fn errors_are_pages_for_browsers_and_json_for_api_clients() {
    let gateway = TestGateway::start().await;
    let browser = Browser::new(&gateway, None);
    for (path, said) in [
        ("/no/such/page", "There is no page at /no/such/page."),
        (
            "/approve/apr_AAAAAAAAAAAAAAAAAAAAAA",
            "Approval request not found.",
        ),
        ("/approve/not-an-id", "Approval request not found."),
    ] {
        let (status, kind, html) = browser.navigate(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(kind.starts_with("text/html"), "{path}: {kind}");
        assert!(html.contains("<h1>404 Not Found</h1>"), "{html}");
        assert!(html.contains(said), "{html}");
        let (status, json) = browser.json(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(json["error"], "not_found", "{path}: {json}");
    }
}

/// The receipt link opens a page that says what was decided and how to check it, with the file
/// to download under the request's name; API clients still get the JSON.
#[tokio::test]
async fn a_receipt_is_a_readable_page_with_its_file_and_the_command_that_checks_it() {
    let gateway = TestGateway::start().await;
    let (mut alice, browser) = logged_in(&gateway, "alice").await;
    let agent = gateway.agent("alice").await;
    let created = agent.request(flight()).await;
    let id = created["id"].as_str().unwrap();
    let (status, answer) = gateway.decide(&mut alice, id, "approve").await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    let path = format!("/dashboard/approvals/{id}/receipt");
    let (status, kind, html) = browser.navigate(&path).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(kind.starts_with("text/html"), "{kind}");
    let jwks = format!("{}/.well-known/jwks.json", gateway.url);
    for needle in [
        "<h1>Receipt: approved</h1>".to_owned(),
        format!(r#"download="{id}.receipt.json""#),
        format!("handsign receipt verify {id}.receipt.json --jwks {jwks}"),
    ] {
        assert!(html.contains(&needle), "{needle} missing from {html}");
    }

    let (status, json) = browser.json(&path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["statement"]["id"], id, "{json}");
    let download = browser.get(&format!("{path}.json")).await;
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(
        download.headers()[header::CONTENT_DISPOSITION],
        format!("attachment; filename=\"{id}.receipt.json\"").as_str()
    );
    let file: Value = download.json().await.unwrap();
    assert_eq!(file, json);
}
