//! Errors as a person's browser shows them: a page saying what went wrong and where to go, with
//! the same status and message as the JSON an API client gets for the same request.
//!
//! Which one is sent follows the request's `Accept` header: a browser navigating to a link asks
//! for `text/html`; API clients and the pages' own scripts (`fetch` sends `*/*`) keep JSON.

use askama::Template;
use askama_web::WebTemplate;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use handsign_protocol::api::ErrorCode;

use crate::error::ApiError;

/// An error page.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub title: String,
    pub message: String,
}

/// Whether the request is a browser's navigation, which wants a page rather than JSON.
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|kind| {
            kind.split(';')
                .next()
                .is_some_and(|m| m.trim() == "text/html")
        })
}

/// `error` as a page for a browser's navigation, as JSON for anyone else.
pub fn negotiated(headers: &HeaderMap, error: ApiError) -> Response {
    if !wants_html(headers) {
        return error.into_response();
    }
    let title = match error.status.canonical_reason() {
        Some(reason) => format!("{} {reason}", error.status.as_u16()),
        None => error.status.as_u16().to_string(),
    };
    let mut sentence = error.message;
    if let Some(first) = sentence.get(..1) {
        let upper = first.to_uppercase();
        sentence.replace_range(..1, &upper);
    }
    if !sentence.ends_with('.') {
        sentence.push('.');
    }
    (
        error.status,
        ErrorPage {
            title,
            message: sentence,
        },
    )
        .into_response()
}

/// The answer for a path the gateway does not have.
pub async fn not_found(uri: Uri, headers: HeaderMap) -> Response {
    let message = format!("there is no page at {}", uri.path());
    negotiated(
        &headers,
        ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn browsers_navigating_want_html_and_scripts_do_not() {
        assert!(wants_html(&accept(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        )));
        assert!(!wants_html(&accept("*/*")));
        assert!(!wants_html(&accept("application/json")));
        assert!(!wants_html(&HeaderMap::new()));
    }
}
