//! The pages a person sees in a browser, and the static files they load.
//!
//! Pages are askama templates (`templates/`): every value is HTML-escaped by askama, and there
//! is no inline script or style anywhere, so the gateway can send a Content-Security-Policy
//! that allows only its own files (`script-src 'self'; style-src 'self'`). An injected
//! `<script>` in an agent's params would be escaped; if it ever were not, it still would not run.
//!
//! The static files (`static/`) are compiled into the binary: the gateway reads nothing from the
//! file system at run time, and what the page runs is what was reviewed and built.

pub mod approve;
pub mod dashboard;
pub mod error;
pub mod login;
pub mod params_view;
pub mod receipt;
pub mod setup;

use std::sync::LazyLock;

use axum::Router;
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest as _, Sha256};

/// A file under `/static/`.
struct StaticFile {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const STATIC_FILES: &[StaticFile] = &[
    StaticFile {
        name: "handsign.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../static/handsign.css"),
    },
    StaticFile {
        name: "approve.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../static/approve.js"),
    },
    StaticFile {
        name: "handsign.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../static/handsign.js"),
    },
    StaticFile {
        name: "setup.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../static/setup.js"),
    },
    StaticFile {
        name: "login.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../static/login.js"),
    },
    StaticFile {
        name: "dashboard.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../static/dashboard.js"),
    },
    StaticFile {
        name: "notifications.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../static/notifications.js"),
    },
    StaticFile {
        name: "manifest.webmanifest",
        content_type: "application/manifest+json",
        body: include_bytes!("../../static/manifest.webmanifest"),
    },
    StaticFile {
        name: "icon-192.png",
        content_type: "image/png",
        body: include_bytes!("../../static/icon-192.png"),
    },
    StaticFile {
        name: "icon-512.png",
        content_type: "image/png",
        body: include_bytes!("../../static/icon-512.png"),
    },
];

/// The service worker (`static/sw.js`). Not under `/static/`: a worker controls only the paths
/// below its own URL, and it must cover the dashboard and the approval pages, so it is served at
/// `/sw.js` (with `Service-Worker-Allowed: /` to say so explicitly).
const SERVICE_WORKER: &[u8] = include_bytes!("../../static/sw.js");

/// A short hash of every static file. Pages link `/static/FILE?v=<this>`, so a browser can keep
/// a file for a year and still never run an old script against a new page.
pub fn asset_version() -> &'static str {
    static VERSION: LazyLock<String> = LazyLock::new(|| {
        let mut hash = Sha256::new();
        for file in STATIC_FILES {
            hash.update(file.name.as_bytes());
            hash.update([0]);
            hash.update(file.body);
        }
        handsign_protocol::base64url::encode(hash.finalize())
            .chars()
            .take(12)
            .collect()
    });
    &VERSION
}

/// Serves the embedded static files at `/static/{file}` and the service worker at `/sw.js`.
/// Merge it into the gateway's router.
pub fn static_files<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/static/{file}", get(serve_static))
        .route("/sw.js", get(serve_service_worker))
}

/// `GET /sw.js`. Always revalidated, so a fixed worker reaches every device on its next visit.
async fn serve_service_worker() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                HeaderName::from_static("service-worker-allowed"),
                HeaderValue::from_static("/"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        SERVICE_WORKER,
    )
        .into_response()
}

async fn serve_static(Path(name): Path<String>, RawQuery(query): RawQuery) -> Response {
    let Some(file) = STATIC_FILES.iter().find(|f| f.name == name) else {
        return (StatusCode::NOT_FOUND, "no such static file").into_response();
    };
    // A link with the current version may be kept for good; anything else is revalidated.
    let current = query.as_deref() == Some(&format!("v={}", asset_version()));
    let cache = if current {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(file.content_type),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        file.body,
    )
        .into_response()
}

/// `2025-03-01 14:05:09 UTC`: times on pages are absolute and in UTC, so they read the same on
/// every device (the page also says how long is left).
pub fn format_utc(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// `4 min 32 s`, `1 h 5 min`, `0 s`: a duration as the page shows it (the script counts down
/// in the same form).
pub fn format_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        3600.. => format!("{} h {} min", s / 3600, s % 3600 / 60),
        60.. => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{s} s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_utc(1_740_837_909), "2025-03-01 14:05:09 UTC");
        assert_eq!(format_utc(-1), "1969-12-31 23:59:59 UTC");
    }

    #[test]
    fn durations() {
        assert_eq!(format_duration(-5), "0 s");
        assert_eq!(format_duration(59), "59 s");
        assert_eq!(format_duration(272), "4 min 32 s");
        assert_eq!(format_duration(3900), "1 h 5 min");
    }

    async fn get(uri: &str) -> Response {
        let (path, query) = match uri.split_once('?') {
            Some((path, query)) => (path, Some(query.to_owned())),
            None => (uri, None),
        };
        let name = path.trim_start_matches("/static/").to_owned();
        serve_static(Path(name), RawQuery(query)).await
    }

    #[tokio::test]
    async fn static_files_are_served_from_the_binary() {
        let versioned = get(&format!("/static/approve.js?v={}", asset_version())).await;
        assert_eq!(versioned.status(), StatusCode::OK);
        assert_eq!(
            versioned.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            versioned.headers()[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
        assert_eq!(
            versioned.headers()[header::X_CONTENT_TYPE_OPTIONS],
            "nosniff"
        );

        let css = get("/static/handsign.css").await;
        assert_eq!(css.status(), StatusCode::OK);
        assert_eq!(
            css.headers()[header::CONTENT_TYPE],
            "text/css; charset=utf-8"
        );
        assert_eq!(css.headers()[header::CACHE_CONTROL], "no-cache");

        let manifest = get("/static/manifest.webmanifest").await;
        assert_eq!(
            manifest.headers()[header::CONTENT_TYPE],
            "application/manifest+json"
        );

        let worker = serve_service_worker().await;
        assert_eq!(worker.status(), StatusCode::OK);
        assert_eq!(
            worker.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(worker.headers()["service-worker-allowed"], "/");

        assert_eq!(get("/static/nope.js").await.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            get("/static/../Cargo.toml").await.status(),
            StatusCode::NOT_FOUND
        );
    }
}

/// What the pages' tests share.
#[cfg(test)]
pub(crate) mod test_support {
    use handsign_protocol::receipt::{Credential, Evidence, RECEIPT_VERSION, Receipt, ReceiptBody};
    use handsign_protocol::statement::{Decision, STATEMENT_VERSION, Statement};

    use crate::domain::{ApprovalRecord, ApprovalState};

    /// `approval` decided at `decided_at`, with a receipt over dummy evidence (pages show and
    /// link receipts; they do not verify them).
    pub fn decided(
        approval: &ApprovalRecord,
        decision: Decision,
        decided_at: i64,
        token_delivered_at: Option<i64>,
    ) -> ApprovalState {
        let body = ReceiptBody {
            v: RECEIPT_VERSION.into(),
            statement: Statement {
                v: STATEMENT_VERSION.into(),
                id: approval.id.to_string(),
                iss: "https://gw.example".into(),
                sub: approval.user.to_string(),
                act: approval.agent.clone(),
                aud: approval.audience.clone(),
                action: approval.action.clone(),
                params_sha256: approval.params_sha256.clone(),
                decision,
                nonce: approval.nonce.clone(),
                iat: approval.created_at,
            },
            params: serde_json::from_str(&approval.params).unwrap(),
            evidence: Evidence {
                credential_id: "Y3JlZA".into(),
                authenticator_data: "YXV0aA".into(),
                client_data_json: "Y2xpZW50".into(),
                signature: "c2ln".into(),
                user_handle: None,
            },
            credential: Credential {
                public_key_cose: "pQECAyYgASFYIA".into(),
                public_key_jwk: serde_json::json!({"kty": "EC"}),
            },
            rp_id: "gw.example".into(),
            origins: vec!["https://gw.example".into()],
        };
        let receipt = Box::new(Receipt {
            body,
            signature: "unsigned".into(),
        });
        match decision {
            Decision::Approve => ApprovalState::Approved {
                decided_at,
                receipt,
                token_delivered_at,
            },
            Decision::Deny => ApprovalState::Denied {
                decided_at,
                receipt,
            },
        }
    }
}
