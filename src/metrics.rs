//! The gateway's metrics, served at `GET /metrics` in the OpenMetrics text format (which
//! Prometheus scrapes natively): requests asked for, decisions and refused decision attempts,
//! the time people take to decide, tokens issued, pending requests, and the store's errors and
//! latency per operation.
//!
//! Every label value comes from a fixed enumeration in this module or from the names of the
//! [`Store`](crate::store::Store) methods, never from a request: the page is public like
//! `/healthz`, and names no user, agent, action or parameter.

use handsign_protocol::api::ErrorCode;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use axum::http::{HeaderMap, header};
use sha2::{Digest as _, Sha256};

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::error::ApiError;

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric's name starts with this and `_`.
const PREFIX: &str = "handsign";

/// Upper bounds, in seconds, of the buckets of the time from request to decision: people take
/// seconds to an hour (the longest `ttl`).
const DECISION_BUCKETS: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// Upper bounds, in seconds, of the buckets of a store operation's duration: from a cached read
/// to a store that is about to time out.
const STORE_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// One label with a value from a fixed set.
type Label = [(&'static str, &'static str); 1];

/// Declares an enumeration of label values with its `ALL` and `as_str`.
macro_rules! label_values {
    (
        $(#[$doc:meta])*
        $name:ident {
            $($(#[$variant_doc:meta])* $variant:ident => $value:literal,)*
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$variant_doc])* $variant,)*
        }

        impl $name {
            /// Every value, in the order they are declared.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $value,)*
                }
            }
        }
    };
}

label_values! {
    /// How an agent's request to be approved (`POST /v1/approvals`, `POST /v1/agents/enroll`)
    /// ended. Calls refused by authentication (no or a bad DPoP proof, an unknown or revoked
    /// agent) never reach the request and are not counted.
    RequestOutcome {
        /// Stored and pending.
        Created => "created",
        /// Over the agent's requests per minute (`rate_limited`).
        RateLimited => "rate_limited",
        /// The agent has as many pending requests as it may (`too_many_pending`).
        TooManyPending => "too_many_pending",
        /// The agent may not ask now: pending enrollment, suspended or revoked.
        AgentInactive => "agent_inactive",
        /// The request itself was refused: its JSON, action, audience, params, ttl, message,
        /// user, or an enrollment for a key already enrolled.
        Invalid => "invalid",
        /// The store could not be reached (`storage_unavailable`).
        Unavailable => "unavailable",
        /// The gateway failed (`internal_error`).
        Error => "error",
    }
}

label_values! {
    /// A recorded decision.
    DecisionOutcome {
        Approved => "approved",
        Denied => "denied",
    }
}

label_values! {
    /// Why a decision (`POST /approve/{id}`) was not recorded.
    DecisionRefusal {
        /// The request was decided, expired or cancelled already (`not_pending`).
        NotPending => "not_pending",
        /// No passkey ceremony waits for this decision: used or expired (`no_ceremony`).
        NoCeremony => "no_ceremony",
        /// The passkey assertion was refused, or is not the request's user's
        /// (`passkey_refused`).
        PasskeyRefused => "passkey_refused",
        /// The call itself was refused: another origin, unreadable JSON, an unknown request.
        Invalid => "invalid",
        /// The store could not be reached (`storage_unavailable`).
        Unavailable => "unavailable",
        /// The gateway failed (`internal_error`).
        Error => "error",
    }
}

impl RequestOutcome {
    /// The outcome of a request refused with `error`.
    pub fn of_error(error: &ApiError) -> Self {
        match error.code {
            ErrorCode::RateLimited => RequestOutcome::RateLimited,
            ErrorCode::TooManyPending => RequestOutcome::TooManyPending,
            ErrorCode::AgentInactive
            | ErrorCode::AgentNotEnrolled
            | ErrorCode::AgentSuspended
            | ErrorCode::AgentRevoked => RequestOutcome::AgentInactive,
            ErrorCode::StorageUnavailable => RequestOutcome::Unavailable,
            _ if error.status.is_client_error() => RequestOutcome::Invalid,
            _ => RequestOutcome::Error,
        }
    }
}

impl DecisionRefusal {
    /// The reason of a decision refused with `error`.
    pub fn of_error(error: &ApiError) -> Self {
        match error.code {
            ErrorCode::NotPending => DecisionRefusal::NotPending,
            ErrorCode::NoCeremony => DecisionRefusal::NoCeremony,
            ErrorCode::PasskeyRefused => DecisionRefusal::PasskeyRefused,
            ErrorCode::StorageUnavailable => DecisionRefusal::Unavailable,
            _ if error.status.is_client_error() => DecisionRefusal::Invalid,
            _ => DecisionRefusal::Error,
        }
    }
}

/// Where and to whom `/metrics` is served (`--metrics-listen`, `--metrics-token-file`).
#[derive(Debug, Clone, Default)]
pub struct MetricsAccess {
    /// Served on its own listener, not on the gateway's.
    pub own_listener: bool,
    /// The SHA-256 of the bearer token every request must carry, if one is required.
    token_sha256: Option<[u8; 32]>,
}

impl MetricsAccess {
    /// The shortest token accepted: a guessable token is no protection.
    const MIN_TOKEN_CHARS: usize = 16;

    /// The access `args` configure, reading the token file if there is one.
    pub fn from_args(args: &crate::config::MetricsArgs) -> anyhow::Result<Self> {
        let token_sha256 = match &args.metrics_token_file {
            Some(path) => Some(Self::read_token(path)?),
            None => None,
        };
        Ok(MetricsAccess {
            own_listener: args.metrics_listen.is_some(),
            token_sha256,
        })
    }

    fn read_token(path: &Path) -> anyhow::Result<[u8; 32]> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the metrics token file {}", path.display()))?;
        let token = text.trim();
        if token.chars().count() < Self::MIN_TOKEN_CHARS || token.contains(char::is_whitespace) {
            anyhow::bail!(
                "the metrics token in {} must be one word of at least {} characters",
                path.display(),
                Self::MIN_TOKEN_CHARS
            );
        }
        Ok(Sha256::digest(token.as_bytes()).into())
    }

    /// Whether a request with `headers` may read the metrics. Digests are compared, so the
    /// comparison's time says nothing about the token.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.token_sha256 else {
            return true;
        };
        headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .is_some_and(|token| {
                <[u8; 32]>::from(Sha256::digest(token.trim().as_bytes())) == *expected
            })
    }
}

/// A histogram of one store operation's durations.
fn store_histogram() -> Histogram {
    Histogram::new(STORE_BUCKETS)
}

/// The gateway's metrics: one per process, shared by every handler through
/// [`AppState`](crate::state::AppState). Recording takes a shared read lock on a label set and
/// an atomic add.
pub struct Metrics {
    registry: Registry,
    approval_requests: Family<Label, Counter>,
    decisions: Family<Label, Counter>,
    decision_refusals: Family<Label, Counter>,
    time_to_decision: Histogram,
    tokens_issued: Counter,
    store_errors: Family<Label, Counter>,
    store_duration: Family<Label, Histogram, fn() -> Histogram>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// The metrics with every counter of a fixed label value at zero, so that each series
    /// exists from the first scrape. `store_operations` are the names the store's errors are
    /// counted under.
    pub fn new(store_operations: &[&'static str]) -> Self {
        let metrics = Metrics {
            registry: Registry::with_prefix(PREFIX),
            approval_requests: Family::default(),
            decisions: Family::default(),
            decision_refusals: Family::default(),
            time_to_decision: Histogram::new(DECISION_BUCKETS),
            tokens_issued: Counter::default(),
            store_errors: Family::default(),
            store_duration: Family::new_with_constructor(store_histogram),
        };
        for outcome in RequestOutcome::ALL {
            metrics
                .approval_requests
                .get_or_create(&label("outcome", outcome.as_str()))
                .inc_by(0);
        }
        for outcome in DecisionOutcome::ALL {
            metrics
                .decisions
                .get_or_create(&label("outcome", outcome.as_str()))
                .inc_by(0);
        }
        for reason in DecisionRefusal::ALL {
            metrics
                .decision_refusals
                .get_or_create(&label("reason", reason.as_str()))
                .inc_by(0);
        }
        for operation in store_operations {
            metrics
                .store_errors
                .get_or_create(&label("operation", operation))
                .inc_by(0);
        }
        metrics.registered()
    }

    /// Registers every metric (the registry holds clones of the same atomics).
    fn registered(mut self) -> Self {
        let registry = &mut self.registry;
        registry.register(
            "approval_requests",
            "Agents' requests to be approved (actions and enrollments), by outcome: created, or \
             why they were refused",
            self.approval_requests.clone(),
        );
        registry.register(
            "decisions",
            "Decisions recorded, by outcome: approved or denied",
            self.decisions.clone(),
        );
        registry.register(
            "decision_refusals",
            "Decision attempts that were refused, by reason",
            self.decision_refusals.clone(),
        );
        registry.register_with_unit(
            "time_to_decision",
            "Time from a request's creation to its decision",
            Unit::Seconds,
            self.time_to_decision.clone(),
        );
        registry.register(
            "tokens_issued",
            "Approval tokens issued to agents (at collection, once per approved request)",
            self.tokens_issued.clone(),
        );
        registry.register(
            "store_errors",
            "Store operations that failed because the store was unavailable, by operation",
            self.store_errors.clone(),
        );
        registry.register_with_unit(
            "store_operation_duration",
            "Duration of store operations, by operation",
            Unit::Seconds,
            self.store_duration.clone(),
        );
        self
    }

    /// An agent's request ended with `outcome`.
    pub fn approval_request(&self, outcome: RequestOutcome) {
        self.approval_requests
            .get_or_create(&label("outcome", outcome.as_str()))
            .inc();
    }

    /// A decision was recorded `waited` seconds after its request was created.
    pub fn decided(&self, outcome: DecisionOutcome, waited: i64) {
        self.decisions
            .get_or_create(&label("outcome", outcome.as_str()))
            .inc();
        // Whole seconds: the gateway's records keep Unix seconds.
        self.time_to_decision.observe(waited.max(0) as f64);
    }

    /// A decision attempt was refused.
    pub fn decision_refused(&self, reason: DecisionRefusal) {
        self.decision_refusals
            .get_or_create(&label("reason", reason.as_str()))
            .inc();
    }

    /// An agent collected an approval token.
    pub fn token_issued(&self) {
        self.tokens_issued.inc();
    }

    /// A store operation took `elapsed`; `unavailable` when it failed with
    /// [`StoreError::Unavailable`](crate::store::StoreError::Unavailable).
    pub fn store_operation(&self, operation: &'static str, elapsed: Duration, unavailable: bool) {
        let operation = label("operation", operation);
        self.store_duration
            .get_or_create(&operation)
            .observe(elapsed.as_secs_f64());
        if unavailable {
            self.store_errors.get_or_create(&operation).inc();
        }
    }

    /// The metrics as OpenMetrics text ([`CONTENT_TYPE`]), with `handsign_pending_requests`
    /// when `pending` is known (it is left out when the store could not count).
    pub fn encode(&self, pending: Option<usize>) -> Result<String, fmt::Error> {
        let mut text = String::new();
        encode_registry(&mut text, &self.registry)?;
        if let Some(pending) = pending {
            // Read from the store at each scrape, so a registry of its own for this answer.
            let mut scrape = Registry::with_prefix(PREFIX);
            let gauge: Gauge = Gauge::default();
            gauge.set(i64::try_from(pending).unwrap_or(i64::MAX));
            scrape.register(
                "pending_requests",
                "Requests waiting for a decision now, counted in the store (the same on every \
                 instance that shares it)",
                gauge,
            );
            encode_registry(&mut text, &scrape)?;
        }
        encode_eof(&mut text)?;
        Ok(text)
    }
}

fn label(name: &'static str, value: &'static str) -> Label {
    [(name, value)]
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    #[test]
    fn a_metrics_token_must_be_one_long_word_and_is_matched_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let with_token = |text: &str| {
            let file = dir.path().join("token");
            std::fs::write(&file, text).unwrap();
            MetricsAccess::from_args(&crate::config::MetricsArgs {
                metrics_listen: None,
                metrics_token_file: Some(file),
            })
        };
        for refused in ["", "short", "two words of a token\n"] {
            let error = with_token(refused).unwrap_err().to_string();
            assert!(
                error.contains("at least 16 characters"),
                "{refused:?}: {error}"
            );
        }
        let missing = MetricsAccess::from_args(&crate::config::MetricsArgs {
            metrics_listen: None,
            metrics_token_file: Some(dir.path().join("absent")),
        });
        assert!(missing.unwrap_err().to_string().contains("cannot read"));

        let access = with_token("0123456789abcdef-token\n").unwrap();
        let headers = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            headers
        };
        assert!(access.allows(&headers("Bearer 0123456789abcdef-token")));
        assert!(!access.allows(&headers("Bearer 0123456789abcdef-toke")));
        assert!(!access.allows(&headers("Basic 0123456789abcdef-token")));
        assert!(!access.allows(&HeaderMap::new()));
        assert!(MetricsAccess::default().allows(&HeaderMap::new()));
    }

    #[test]
    fn refusals_map_to_fixed_outcomes() {
        let error = |status, code| ApiError::new(status, code, "x");
        let cases = [
            (
                error(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited),
                RequestOutcome::RateLimited,
            ),
            (
                error(StatusCode::TOO_MANY_REQUESTS, ErrorCode::TooManyPending),
                RequestOutcome::TooManyPending,
            ),
            (
                error(StatusCode::FORBIDDEN, ErrorCode::AgentSuspended),
                RequestOutcome::AgentInactive,
            ),
            (
                error(StatusCode::FORBIDDEN, ErrorCode::AgentInactive),
                RequestOutcome::AgentInactive,
            ),
            (
                error(StatusCode::BAD_REQUEST, ErrorCode::InvalidAction),
                RequestOutcome::Invalid,
            ),
            (
                error(StatusCode::CONFLICT, ErrorCode::AlreadyEnrolled),
                RequestOutcome::Invalid,
            ),
            (
                error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::StorageUnavailable,
                ),
                RequestOutcome::Unavailable,
            ),
            (
                error(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::InternalError),
                RequestOutcome::Error,
            ),
        ];
        for (error, outcome) in cases {
            assert_eq!(RequestOutcome::of_error(&error), outcome, "{error:?}");
        }
        assert_eq!(
            DecisionRefusal::of_error(&error(StatusCode::FORBIDDEN, ErrorCode::BadOrigin)),
            DecisionRefusal::Invalid
        );
        assert_eq!(
            DecisionRefusal::of_error(&error(StatusCode::CONFLICT, ErrorCode::NotPending)),
            DecisionRefusal::NotPending
        );
    }

    #[test]
    fn fixed_series_exist_from_the_start_and_the_text_ends_with_eof() {
        let metrics = Metrics::new(&["ping"]);
        let text = metrics.encode(Some(3)).unwrap();
        for line in [
            "# TYPE handsign_approval_requests counter",
            "handsign_approval_requests_total{outcome=\"too_many_pending\"} 0",
            "handsign_decisions_total{outcome=\"denied\"} 0",
            "handsign_decision_refusals_total{reason=\"no_ceremony\"} 0",
            "handsign_store_errors_total{operation=\"ping\"} 0",
            "handsign_tokens_issued_total 0",
            "# UNIT handsign_time_to_decision_seconds seconds",
            "handsign_time_to_decision_seconds_count 0",
            "handsign_pending_requests 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
        let without = metrics.encode(None).unwrap();
        assert!(!without.contains("pending_requests"), "{without}");
    }
}
