//! The installable app in a real browser: the `handsign serve` process and Debian's Chromium
//! driven by Playwright (`tests/browser/pwa.mjs`). The person registers on the setup page, then
//! on the dashboard the web app manifest is valid, its icons load, the service worker registers
//! at `/sw.js` with scope `/` and turns a push message into a notification that links only to the
//! gateway, and turning on notifications ends in a plain error (this machine has no route to a
//! push service) without posting a subscription. A device added with hidden characters in its
//! name is listed with them marked.
//!
//! The headers that make the app installable are checked here too, with a plain HTTP client:
//! a browser hides some of them (`Service-Worker-Allowed`) from the page.
//!
//! Chromium and `playwright-core` (`tests/browser/node_modules`) are installed by
//! `scripts/test`; without them this test fails saying so. Helpers: `tests/browser_support`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod browser_support;

use browser_support::{Script, free_port, manifest_dir, spawn_gateway};
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_is_an_installable_app_with_a_service_worker_in_chromium() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://localhost:{port}");
    let (_gateway, setup_link) = spawn_gateway(data.path(), port);

    // The worker is served at the root with the headers a browser needs to accept it there.
    let http = handsign::http_client::new().unwrap();
    let worker = http.get(format!("{url}/sw.js")).send().await.unwrap();
    assert_eq!(worker.status(), StatusCode::OK);
    let headers = worker.headers();
    assert_eq!(headers["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(headers["service-worker-allowed"], "/");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    let manifest = http
        .get(format!("{url}/static/manifest.webmanifest"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        manifest.headers()["content-type"],
        "application/manifest+json"
    );
    let manifest: Value = manifest.json().await.unwrap();
    assert_eq!(manifest["start_url"], "/", "{manifest}");

    let output_dir = manifest_dir().join("target/test-output");
    std::fs::create_dir_all(&output_dir).unwrap();
    let mut script = Script::start("pwa.mjs", &[&setup_link, output_dir.to_str().unwrap()]);
    let facts = script.expect("checked");
    script.finish();

    // The script has checked each of these; they are repeated here so a failure reads plainly.
    assert_eq!(facts["worker"]["scope"], format!("{url}/"), "{facts}");
    assert_eq!(facts["worker"]["state"], "activated", "{facts}");
    assert_eq!(
        facts["worker"]["controller"],
        format!("{url}/sw.js"),
        "{facts}"
    );
    assert_eq!(
        facts["installabilityErrors"],
        serde_json::json!([]),
        "{facts}"
    );
    assert_eq!(facts["icons"].as_array().unwrap().len(), 2, "{facts}");
    assert_eq!(
        facts["pushed"][0]["url"],
        format!("{url}/approve/abc"),
        "{facts}"
    );
    assert_eq!(facts["pushed"][1]["url"], format!("{url}/"), "{facts}");

    // No push service answers here: the page says so plainly and gives the button back.
    assert_eq!(facts["notify"]["kind"], "error", "{facts}");
    let said = facts["notify"]["text"].as_str().unwrap();
    assert!(said.contains("cannot reach its push service"), "{said}");
    assert_eq!(facts["notify"]["buttonEnabled"], true, "{facts}");
    assert_eq!(
        facts["postedSubscriptions"],
        serde_json::json!([]),
        "{facts}"
    );

    // The devices list came from the gateway's push API: alice has none yet.
    assert_eq!(
        facts["devices"]["items"],
        serde_json::json!(["No devices yet."]),
        "{facts}"
    );
    // A device's name is shown with its hidden characters marked, as on the gateway's pages.
    let head = facts["namedDevices"]["head"].as_str().unwrap();
    assert!(
        head.contains(
            "phone<span class=\"mk\">U+202E RIGHT-TO-LEFT OVERRIDE</span>enohp\
             <span class=\"mk\">U+200B ZERO WIDTH SPACE</span>"
        ),
        "{facts}"
    );
}
