//! The HTTP side of the SDK: one [`Client`] per gateway and agent key, a fresh DPoP proof on
//! every call, and retries that can never ask twice.
//!
//! Retrying is safe for reads (a read of an approval request changes nothing but the one-time
//! token delivery, which the gateway does atomically), so reads are retried on any broken
//! connection and on 502/503/504. Creating a request is retried only when the connection could
//! not even be opened, since then the gateway cannot have seen it; anything else would risk a
//! second request for the person to approve.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use handsign_protocol::api::{ErrorBody, ErrorCode};
use handsign_protocol::dpop;
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ApprovalError, AuthorizeError, ClientError};
use crate::key::AgentKey;

/// How long to wait for a TCP (and TLS) connection to the gateway.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a call may take beyond the time the gateway was asked to hold it (long poll).
const ANSWER_SLACK: Duration = Duration::from_secs(30);

/// How hard to try when the gateway cannot be reached or the connection breaks: up to
/// `attempts` consecutive failures, waiting `first_backoff`, then twice as long each time, at
/// most `max_backoff` (or what the gateway's `Retry-After` says, whichever is longer, still at
/// most `max_backoff`). A successful answer starts the count again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// Ten attempts over about 40 seconds: long enough to ride out a gateway restart.
    fn default() -> Self {
        RetryPolicy {
            attempts: 10,
            first_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// No retries: the first failure is reported.
    pub fn none() -> Self {
        RetryPolicy {
            attempts: 1,
            ..Self::default()
        }
    }

    /// The pause after the `failures`-th consecutive failure (counting from 1).
    pub(crate) fn backoff(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        let doubled = self
            .first_backoff
            .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1)));
        doubled
            .max(retry_after.unwrap_or_default())
            .min(self.max_backoff)
    }
}

/// An agent's connection to one gateway. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// The gateway's public URL without a trailing slash; paths are appended to it, and DPoP
    /// proofs name the result, exactly as the gateway checks them.
    base: String,
    key: AgentKey,
    retry: RetryPolicy,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("gateway", &self.base)
            .field("agent", &self.key.id())
            .field("retry", &self.retry)
            .finish()
    }
}

/// A call that produced no usable answer.
#[derive(Debug)]
pub(crate) enum CallError {
    /// No answer: the connection failed or broke. `unsent` when the connection could not be
    /// opened, so the gateway cannot have seen the request.
    Transport {
        unsent: bool,
        message: String,
    },
    /// An error answer from the gateway.
    Refused {
        status: StatusCode,
        code: ErrorCode,
        message: String,
        retry_after: Option<Duration>,
    },
    BadAnswer(String),
    Proof(String),
}

impl CallError {
    /// Whether repeating a read could give a different result.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            CallError::Transport { .. } => true,
            CallError::Refused { status, .. } => matches!(
                *status,
                StatusCode::BAD_GATEWAY
                    | StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT
            ),
            CallError::BadAnswer(_) | CallError::Proof(_) => false,
        }
    }

    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            CallError::Refused { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            CallError::Transport { message, .. } => message.clone(),
            CallError::Refused {
                status,
                code,
                message,
                ..
            } => format!("{} {code}: {message}", status.as_u16()),
            CallError::BadAnswer(message) | CallError::Proof(message) => message.clone(),
        }
    }
}

impl From<CallError> for ApprovalError {
    fn from(error: CallError) -> Self {
        match error {
            CallError::Transport { message, .. } => ApprovalError::Unreachable(message),
            CallError::Refused {
                status,
                code,
                message,
                ..
            } => ApprovalError::Refused {
                status: status.as_u16(),
                code,
                message,
            },
            CallError::BadAnswer(message) => ApprovalError::BadAnswer(message),
            CallError::Proof(message) => ApprovalError::Proof(message),
        }
    }
}

impl Client {
    /// A client for the gateway at `gateway_url` (its public URL, e.g.
    /// `https://handsign.example.com`), acting as the agent whose key is `key`.
    pub fn new(gateway_url: &str, key: AgentKey) -> Result<Self, ClientError> {
        let invalid = |reason: &str| ClientError::InvalidGatewayUrl {
            url: gateway_url.to_owned(),
            reason: reason.to_owned(),
        };
        let url = url::Url::parse(gateway_url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("a gateway URL has no query or fragment"));
        }
        // Installing fails only when a provider is installed already, which is what we want.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| ClientError::Http(error_chain(&e)))?;
        Ok(Client {
            http,
            base: url.as_str().trim_end_matches('/').to_owned(),
            key,
            retry: RetryPolicy::default(),
        })
    }

    /// Replaces the retry policy for unreachable gateways and broken connections.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Uses `http` for the calls (for custom trust roots or proxies). Give it no overall
    /// timeout shorter than a long poll (60 s plus the network's delay).
    pub fn with_http_client(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    /// The agent's key.
    pub fn key(&self) -> &AgentKey {
        &self.key
    }

    /// The agent id (the key's RFC 7638 thumbprint).
    pub fn agent_id(&self) -> &str {
        self.key.id()
    }

    /// The gateway's URL, without a trailing slash.
    pub fn gateway_url(&self) -> &str {
        &self.base
    }

    pub(crate) fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Adds what a service's verify middleware needs to `request`: `Authorization: Approval
    /// <token>` and a `DPoP` proof made with the agent's key for this request's exact method
    /// and URL, carrying `ath` (the token's hash) so the proof cannot accompany another token.
    /// Make the request final (method and URL) before calling this, and send it within a
    /// minute.
    pub fn authorize(
        &self,
        request: &mut reqwest::Request,
        token: &str,
    ) -> Result<(), AuthorizeError> {
        let mut authorization = HeaderValue::from_str(&format!("Approval {token}"))
            .map_err(|_| AuthorizeError::InvalidToken)?;
        authorization.set_sensitive(true);
        let proof = dpop::create(
            self.key.signing_key(),
            request.method().as_str(),
            request.url().as_str(),
            unix_now(),
            Some(token),
        )
        .map_err(|e| AuthorizeError::Proof(e.to_string()))?;
        let proof =
            HeaderValue::from_str(&proof).map_err(|e| AuthorizeError::Proof(e.to_string()))?;
        let headers = request.headers_mut();
        headers.insert(AUTHORIZATION, authorization);
        headers.insert(HeaderName::from_static("dpop"), proof);
        Ok(())
    }

    /// One call to the gateway: `path` (starting with `/`) plus `query`, with a fresh DPoP
    /// proof for the URL without the query. Returns the 2xx answer, read as `T`.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &str,
        body: Option<&(impl Serialize + Sync)>,
        hold: Duration,
    ) -> Result<T, CallError> {
        let url = format!("{}{path}", self.base);
        let proof = dpop::create(
            self.key.signing_key(),
            method.as_str(),
            &url,
            unix_now(),
            None,
        )
        .map_err(|e| CallError::Proof(e.to_string()))?;
        let mut request = self
            .http
            .request(method, format!("{url}{query}"))
            .header("dpop", proof)
            .timeout(hold + ANSWER_SLACK);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response.bytes().await.map_err(transport)?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| {
                CallError::BadAnswer(format!(
                    "a {status} answer that is not the expected JSON: {e}"
                ))
            });
        }
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(answer) => (answer.error, answer.message),
            // Not the gateway's own error format: a proxy in front of it, or no Handsign
            // gateway at this URL at all (another service, a wrong port): say which URL.
            Err(_) => {
                let body: String = String::from_utf8_lossy(&bytes).chars().take(200).collect();
                let said = if body.trim().is_empty() {
                    "an empty answer".to_owned()
                } else {
                    format!("\"{}\"", body.trim())
                };
                (
                    ErrorCode::Unknown,
                    format!(
                        "{url} gave {said}, not a Handsign gateway's error: check the \
                         gateway URL (--gateway, HANDSIGN_GATEWAY), which is the gateway's \
                         public URL"
                    ),
                )
            }
        };
        Err(CallError::Refused {
            status,
            code,
            message,
            retry_after,
        })
    }

    /// Creates or changes something at the gateway (`POST`), retrying only when the
    /// connection could not be opened: the gateway has then certainly not seen the request, so
    /// no second one can result.
    pub(crate) async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &(impl Serialize + Sync),
    ) -> Result<T, ApprovalError> {
        let mut failures = 0;
        loop {
            match self
                .call(Method::POST, path, "", Some(body), Duration::ZERO)
                .await
            {
                Ok(answer) => return Ok(answer),
                Err(CallError::Transport {
                    unsent: true,
                    message,
                }) => {
                    failures += 1;
                    if failures >= self.retry.attempts {
                        return Err(ApprovalError::Unreachable(format!(
                            "{message} (after {failures} attempts)"
                        )));
                    }
                    tokio::time::sleep(self.retry.backoff(failures, None)).await;
                }
                Err(other) => return Err(other.into()),
            }
        }
    }
}

fn transport(error: reqwest::Error) -> CallError {
    CallError::Transport {
        unsent: error.is_connect(),
        message: error_chain(&error),
    }
}

/// An error with its causes, since reqwest's own message ("error sending request") hides why.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Unix seconds now, for DPoP `iat`. A clock before 1970 reads 0, which every gateway refuses
/// as stale: failing closed.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_honours_retry_after() {
        let policy = RetryPolicy {
            attempts: 5,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        assert_eq!(policy.backoff(1, None), Duration::from_millis(100));
        assert_eq!(policy.backoff(3, None), Duration::from_millis(400));
        assert_eq!(policy.backoff(30, None), Duration::from_secs(1));
        assert_eq!(
            policy.backoff(1, Some(Duration::from_millis(700))),
            Duration::from_millis(700)
        );
        assert_eq!(
            policy.backoff(1, Some(Duration::from_secs(60))),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn gateway_urls_are_checked_and_normalized() {
        let key = AgentKey::generate().unwrap();
        let client = Client::new("https://gw.example/", key.clone()).unwrap();
        assert_eq!(client.gateway_url(), "https://gw.example");
        let client = Client::new("http://localhost:8080/handsign", key.clone()).unwrap();
        assert_eq!(client.gateway_url(), "http://localhost:8080/handsign");
        for bad in ["gw.example", "ftp://gw.example", "https://gw.example/?x=1"] {
            assert!(
                matches!(
                    Client::new(bad, key.clone()),
                    Err(ClientError::InvalidGatewayUrl { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn authorize_adds_the_token_and_a_proof_bound_to_it() {
        let key = AgentKey::generate().unwrap();
        let client = Client::new("https://gw.example", key.clone()).unwrap();
        let url = "https://travel.example/bookings?x=1";
        let mut request = reqwest::Request::new(Method::POST, url.parse().unwrap());
        client.authorize(&mut request, "a.b.c").unwrap();
        let headers = request.headers();
        assert_eq!(headers[AUTHORIZATION], "Approval a.b.c");
        let proof = headers["dpop"].to_str().unwrap();
        let verified = dpop::verify(
            proof,
            &dpop::Expected {
                method: "POST",
                url,
                now: unix_now(),
                access_token: Some("a.b.c"),
            },
        )
        .unwrap();
        assert_eq!(verified.jkt, key.id());
        assert!(matches!(
            client.authorize(&mut request, "bad\ntoken"),
            Err(AuthorizeError::InvalidToken)
        ));
    }
}
