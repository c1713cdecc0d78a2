//! Who a person is and what their session may do: invitations only ever create new users, setup
//! codes stop working once someone is set up, only admins invite, and every change that widens
//! what a stolen session could do needs a fresh passkey assertion (step-up).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{GatewayClient, Person, TestGateway};
use handsign::domain::UserId;
use reqwest::StatusCode;
use serde_json::{Value, json};
use webauthn_authenticator_rs::WebauthnAuthenticator as _;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::CreationChallengeResponse;

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

async fn invitation(gateway: &TestGateway, name: Option<&str>) -> String {
    handsign::invitations::issue(
        gateway.store.as_ref(),
        name.map(user),
        gateway.state.clock.now(),
    )
    .await
    .unwrap()
}

/// The first half of a registration: the options for `name` with `code` (status and answer).
async fn start_registration(client: &GatewayClient, code: &str, name: &str) -> (StatusCode, Value) {
    client
        .browser_post(
            "/webauthn/register/options",
            &json!({"code": code, "user": name}),
        )
        .await
}

/// The second half: a new software passkey answers `options`; returns the status and answer.
async fn finish_registration(client: &GatewayClient, options: &Value) -> (StatusCode, Value) {
    let ccr: CreationChallengeResponse =
        serde_json::from_value(json!({"publicKey": options["publicKey"]})).unwrap();
    let credential = SoftPasskey::new(true)
        .do_registration(client.origin(), ccr)
        .unwrap();
    client
        .browser_post(
            "/webauthn/register/finish",
            &json!({"ceremony": options["ceremony"], "credential": credential}),
        )
        .await
}

async fn passkey_count(gateway: &TestGateway, name: &str) -> usize {
    gateway.store.passkeys(&user(name)).await.unwrap().len()
}

#[tokio::test]
async fn an_invitation_never_adds_a_passkey_to_an_existing_account() {
    let gateway = TestGateway::start().await;
    gateway.register("alice").await;
    // Two invitations for the same new name; the attacker holds the second and starts
    // registering before bob exists.
    let bobs = invitation(&gateway, Some("bob")).await;
    let attackers = invitation(&gateway, Some("bob")).await;
    let (status, early) = start_registration(&gateway.client, &attackers, "bob").await;
    assert_eq!(status, StatusCode::OK, "{early}");

    gateway.client.register_with(&bobs, "bob").await;

    // Finishing the registration started earlier adds nothing to the account bob now has.
    let (status, answer) = finish_registration(&gateway.client, &early).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"], "already_exists");
    // And the other invitation for the name is dead.
    let (status, answer) = start_registration(&gateway.client, &attackers, "bob").await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(passkey_count(&gateway, "bob").await, 1);

    // An invitation made for a name that exists is refused outright.
    let late = invitation(&gateway, Some("bob")).await;
    let (status, _) = start_registration(&gateway.client, &late, "bob").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(passkey_count(&gateway, "bob").await, 1);
}

#[tokio::test]
async fn no_setup_code_works_once_a_user_exists() {
    let gateway = TestGateway::start().await;
    // Codes printed by two earlier starts of the gateway.
    let first = invitation(&gateway, None).await;
    let stale = invitation(&gateway, None).await;
    let (status, early) = start_registration(&gateway.client, &stale, "mallory").await;
    assert_eq!(status, StatusCode::OK, "{early}");

    gateway.client.register_with(&first, "alice").await;

    let (status, answer) = finish_registration(&gateway.client, &early).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["error"], "invalid_invitation");
    let (status, answer) = start_registration(&gateway.client, &stale, "eve").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(gateway.store.count_users().await.unwrap(), 1);
    let (_, page) = (
        (),
        gateway
            .http
            .get(format!("{}/setup?code={stale}", gateway.url))
            .send()
            .await
            .unwrap(),
    );
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
}

/// `person` logged in at `gateway`: their session cookie.
async fn session(gateway: &TestGateway, person: &mut Person) -> String {
    gateway.login(person).await
}

/// A POST from the gateway's page with session `cookie`.
async fn post(
    gateway: &TestGateway,
    cookie: &str,
    path: &str,
    body: &Value,
) -> (StatusCode, Value) {
    let response = gateway
        .http
        .post(format!("{}{path}", gateway.url))
        .header("origin", &gateway.public)
        .header("cookie", cookie)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn invite(
    gateway: &TestGateway,
    person: &mut Person,
    cookie: &str,
    name: &str,
) -> (StatusCode, Value) {
    let purpose = json!({"action": "invite", "user": name});
    let step_up = gateway.step_up(person, cookie, purpose).await;
    post(
        gateway,
        cookie,
        "/dashboard/invitations",
        &json!({"user": name, "step_up": step_up}),
    )
    .await
}

#[tokio::test]
async fn only_admins_invite_and_each_invitation_takes_a_fresh_passkey_assertion() {
    let gateway = TestGateway::start().await;
    let mut alice = gateway.register("alice").await;
    let alice_session = session(&gateway, &mut alice).await;
    assert!(
        gateway
            .store
            .user(&user("alice"))
            .await
            .unwrap()
            .unwrap()
            .admin
    );

    // The session cookie alone invites nobody.
    let (status, answer) = post(
        &gateway,
        &alice_session,
        "/dashboard/invitations",
        &json!({"user": "carol"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["error"], "step_up_required");
    // An assertion made to invite carol does not invite dave, and is used up by trying.
    let for_carol = gateway
        .step_up(
            &mut alice,
            &alice_session,
            json!({"action": "invite", "user": "carol"}),
        )
        .await;
    let (status, answer) = post(
        &gateway,
        &alice_session,
        "/dashboard/invitations",
        &json!({"user": "dave", "step_up": for_carol}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let (status, _) = post(
        &gateway,
        &alice_session,
        "/dashboard/invitations",
        &json!({"user": "carol", "step_up": for_carol}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, answer) = invite(&gateway, &mut alice, &alice_session, "carol").await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let url = answer["url"].as_str().unwrap();
    let code = url.split("code=").nth(1).unwrap();
    let mut carol = gateway.client.register_with(code, "carol").await;
    assert!(
        !gateway
            .store
            .user(&user("carol"))
            .await
            .unwrap()
            .unwrap()
            .admin
    );

    // An ordinary user invites nobody, not even a name that does not exist yet.
    let carol_session = session(&gateway, &mut carol).await;
    let (status, answer) = invite(&gateway, &mut carol, &carol_session, "mallory").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["error"], "admin_required");

    // Until the operator makes her an admin.
    let command = handsign::admin::Command::SetAdmin {
        user: "carol".into(),
        admin: true,
    };
    let answer = handsign::admin::execute(
        gateway.store.as_ref(),
        &gateway.state.public,
        command,
        gateway.state.clock.now(),
    )
    .await;
    assert!(
        matches!(answer, handsign::admin::Answer::User { admin: true, .. }),
        "{answer:?}"
    );
    let (status, answer) = invite(&gateway, &mut carol, &carol_session, "dave").await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

#[tokio::test]
async fn adding_a_passkey_to_an_account_needs_that_accounts_fresh_assertion() {
    let gateway = TestGateway::start().await;
    let mut alice = gateway.register("alice").await;
    let cookie = session(&gateway, &mut alice).await;

    let (status, answer) = post(&gateway, &cookie, "/webauthn/register/options", &json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["error"], "step_up_required");
    let wrong = gateway
        .step_up(
            &mut alice,
            &cookie,
            json!({"action": "invite", "user": "bob"}),
        )
        .await;
    let (status, _) = post(
        &gateway,
        &cookie,
        "/webauthn/register/options",
        &json!({"step_up": wrong}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(passkey_count(&gateway, "alice").await, 1);

    let step_up = gateway
        .step_up(&mut alice, &cookie, json!({"action": "add_passkey"}))
        .await;
    let (status, options) = post(
        &gateway,
        &cookie,
        "/webauthn/register/options",
        &json!({"step_up": step_up}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{options}");
    let (status, answer) = finish_registration(&gateway.client, &options).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(passkey_count(&gateway, "alice").await, 2);
}

#[tokio::test]
async fn another_persons_passkey_cannot_step_up_a_session() {
    let gateway = TestGateway::start().await;
    let mut alice = gateway.register("alice").await;
    let mut bob = gateway.register("bob").await;
    let alice_session = session(&gateway, &mut alice).await;
    let _bob_session = session(&gateway, &mut bob).await;

    // The step-up options for alice's session allow only alice's credentials.
    let response = gateway
        .http
        .post(format!("{}/webauthn/step-up/options", gateway.url))
        .header("origin", &gateway.public)
        .header("cookie", &alice_session)
        .json(&json!({"purpose": {"action": "add_passkey"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let options: Value = response.json().await.unwrap();
    let rcr: webauthn_rs::prelude::RequestChallengeResponse =
        serde_json::from_value(json!({"publicKey": options["publicKey"]})).unwrap();
    assert!(
        bob.passkey
            .do_authentication(gateway.origin(), rcr)
            .is_err()
    );
}

#[tokio::test]
async fn login_without_a_name_reveals_nothing_about_which_names_exist() {
    let gateway = TestGateway::start().await;
    gateway.register("alice").await;
    let (status, first) = gateway
        .browser_post("/webauthn/login/options", &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    // No account is named, so the answer is the same shape for everyone: no credentials listed.
    let allowed = &first["publicKey"]["allowCredentials"];
    assert!(
        allowed.is_null() || allowed.as_array().is_some_and(Vec::is_empty),
        "{first}"
    );
    assert_eq!(first["publicKey"]["userVerification"], "required");
    // The setup page's registration asks for a credential the person can log in with by itself.
    let code = invitation(&gateway, Some("bob")).await;
    let (_, options) = start_registration(&gateway.client, &code, "bob").await;
    assert_eq!(
        options["publicKey"]["authenticatorSelection"]["residentKey"],
        "preferred"
    );
}
