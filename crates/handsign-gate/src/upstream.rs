//! Forwarding a call to its upstream: the exact method, path, query and body bytes, the
//! caller's headers less the approval's and the hop-by-hop ones, plus the credential; the
//! upstream's answer streamed back as it comes.

use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, StatusCode, header};

use crate::credential::Credential;
use crate::refusal;

/// How long connecting to an upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Marks an answer as the upstream's (not the gate's own `502`/`504`), for the audit line.
#[derive(Debug, Clone, Copy)]
pub struct Upstreamed;

/// One upstream API as the gate reaches it.
#[derive(Debug, Clone)]
pub struct Upstream {
    base_url: String,
    http: reqwest::Client,
    credential: Option<Credential>,
}

impl Upstream {
    /// An upstream at `base_url` (no trailing slash), trusting `extra_ca` (PEM) besides the
    /// system's roots, with every call bounded by `timeout`.
    pub fn new(
        base_url: &str,
        credential: Option<Credential>,
        extra_ca: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Self, String> {
        // Fails only when a provider is installed already, which is what is wanted.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(timeout)
            // An answer is the upstream's to give: a redirect goes back to the caller as is.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = extra_ca {
            let certificate = reqwest::Certificate::from_pem(pem)
                .map_err(|e| format!("the CA file is not a PEM certificate: {e}"))?;
            builder = builder.add_root_certificate(certificate);
        }
        let http = builder
            .build()
            .map_err(|e| format!("cannot make the upstream's HTTP client: {e}"))?;
        Ok(Upstream {
            base_url: base_url.to_owned(),
            http,
            credential,
        })
    }

    /// Sends the call: `path_and_query` is the part after the upstream's prefix at the gate.
    /// A failure to connect or a timeout answers `502`/`504` with the reason.
    pub async fn forward(
        &self,
        method: http::Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response {
        let url = format!("{}{path_and_query}", self.base_url);
        let mut outgoing = forwarded_headers(headers);
        if let Some(credential) = &self.credential {
            outgoing.insert(credential.header().clone(), credential.value().clone());
        }
        let sent = self
            .http
            .request(method, url)
            .headers(outgoing)
            .body(body)
            .send()
            .await;
        let answer = match sent {
            Ok(answer) => answer,
            Err(error) => return unreachable(&error),
        };
        let mut answer: http::Response<reqwest::Body> = answer.into();
        strip_hop_by_hop(answer.headers_mut());
        answer.extensions_mut().insert(Upstreamed);
        answer.map(Body::new).into_response()
    }
}

/// The `502`/`504` for an upstream that could not be reached or did not answer in time. The
/// reason is reqwest's, which names the URL but never a header.
fn unreachable(error: &reqwest::Error) -> Response {
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    if error.is_timeout() {
        refusal::json(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            format!("the upstream did not answer in time: {reason}"),
        )
    } else {
        refusal::json(
            StatusCode::BAD_GATEWAY,
            "upstream_unreachable",
            format!("the upstream could not be reached: {reason}"),
        )
    }
}

/// The caller's headers as sent upstream: without the approval (`Authorization: Approval`,
/// `DPoP`), the hop-by-hop headers, `Host` (the client sets the upstream's) and
/// `Content-Length` (set from the body).
fn forwarded_headers(headers: &HeaderMap) -> HeaderMap {
    let mut outgoing = headers.clone();
    strip_hop_by_hop(&mut outgoing);
    outgoing.remove(header::HOST);
    outgoing.remove(header::CONTENT_LENGTH);
    outgoing.remove(HeaderName::from_static("dpop"));
    let approval = outgoing.get_all(header::AUTHORIZATION).iter().any(|value| {
        value
            .as_bytes()
            .get(..9)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"approval "))
    });
    if approval {
        outgoing.remove(header::AUTHORIZATION);
    }
    outgoing
}

/// Removes the headers that concern one connection only (RFC 9110 section 7.6.1), including
/// those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
}
