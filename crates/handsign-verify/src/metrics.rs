//! What the approval layers of one [`Verifier`](crate::Verifier) decided: how many requests
//! they let through (each consuming a token) and how many they refused, by the `error` code of
//! the answer. Counting is one relaxed atomic add per request; reading takes a
//! [`VerifierMetrics`] snapshot, which renders itself in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use handsign_protocol::api::ErrorCode;

/// Every code the layer refuses with, as [`VerifierMetrics::refused`] lists them: the token
/// checks' codes, the middleware's own, and last [`OTHER`].
pub const REFUSAL_CODES: [&str; 27] = [
    ErrorCode::MissingToken.as_str(),
    ErrorCode::MalformedToken.as_str(),
    ErrorCode::WrongAlg.as_str(),
    ErrorCode::WrongTyp.as_str(),
    ErrorCode::UnknownKid.as_str(),
    ErrorCode::BadSignature.as_str(),
    ErrorCode::MalformedClaims.as_str(),
    ErrorCode::WrongIssuer.as_str(),
    ErrorCode::WrongAudience.as_str(),
    ErrorCode::Expired.as_str(),
    ErrorCode::NotYetValid.as_str(),
    ErrorCode::LifetimeTooLong.as_str(),
    ErrorCode::ActionMismatch.as_str(),
    ErrorCode::ParamsMismatch.as_str(),
    ErrorCode::InvalidParams.as_str(),
    ErrorCode::DpopRequired.as_str(),
    ErrorCode::InvalidDpop.as_str(),
    ErrorCode::DpopKeyMismatch.as_str(),
    ErrorCode::DpopReplayed.as_str(),
    ErrorCode::IssuedBeforeStart.as_str(),
    ErrorCode::TokenReplayed.as_str(),
    ErrorCode::UnsupportedMediaType.as_str(),
    ErrorCode::BodyTooLarge.as_str(),
    ErrorCode::InvalidBody.as_str(),
    ErrorCode::KeysUnavailable.as_str(),
    ErrorCode::ReplayStoreUnavailable.as_str(),
    OTHER,
];

/// Where a refusal with a code not in [`REFUSAL_CODES`] is counted (a code added by a newer
/// `handsign-protocol`), so that label values stay a fixed set.
pub const OTHER: &str = "other";

/// The content type of [`VerifierMetrics::to_prometheus`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The live counters, shared by every layer of a verifier.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    accepted: AtomicU64,
    refused: [AtomicU64; REFUSAL_CODES.len()],
}

impl Counters {
    pub(crate) fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn refused(&self, code: ErrorCode) {
        let index = REFUSAL_CODES
            .iter()
            .position(|known| *known == code.as_str())
            .unwrap_or(REFUSAL_CODES.len() - 1);
        self.refused[index].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> VerifierMetrics {
        VerifierMetrics {
            accepted: self.accepted.load(Ordering::Relaxed),
            refused: REFUSAL_CODES
                .iter()
                .zip(&self.refused)
                .map(|(code, count)| (*code, count.load(Ordering::Relaxed)))
                .collect(),
        }
    }
}

/// The counts of a [`Verifier`](crate::Verifier)'s layers since it was built, from
/// [`Verifier::metrics`](crate::Verifier::metrics). Counters only grow; each field is read
/// atomically, the snapshot as a whole is not one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierMetrics {
    /// Requests let through to the handler: every check held and the token was consumed.
    pub accepted: u64,
    /// Requests refused, for every code of [`REFUSAL_CODES`] in that order, zeros included.
    pub refused: Vec<(&'static str, u64)>,
}

impl VerifierMetrics {
    /// Requests refused with `code` (0 for a code never used or unknown).
    pub fn refused(&self, code: &str) -> u64 {
        self.refused
            .iter()
            .find(|(known, _)| *known == code)
            .map_or(0, |(_, count)| *count)
    }

    /// Requests refused, whatever the code.
    pub fn refused_total(&self) -> u64 {
        self.refused.iter().map(|(_, count)| count).sum()
    }

    /// The counts in the Prometheus text exposition format (version 0.0.4, [`CONTENT_TYPE`]),
    /// with `# HELP` and `# TYPE` lines:
    ///
    /// - `handsign_verify_tokens_accepted_total`: requests let through, each consuming a token;
    /// - `handsign_verify_requests_refused_total{code="..."}`: requests refused, by the `error`
    ///   code of the answer (every code of [`REFUSAL_CODES`], zeros included).
    ///
    /// Serve it alone, or append it to other text in the same format.
    pub fn to_prometheus(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(
            text,
            "# HELP handsign_verify_tokens_accepted_total Requests the approval layer let \
             through, each consuming an approval token.\n\
             # TYPE handsign_verify_tokens_accepted_total counter\n\
             handsign_verify_tokens_accepted_total {}\n\
             # HELP handsign_verify_requests_refused_total Requests the approval layer refused, \
             by the error code of its answer.\n\
             # TYPE handsign_verify_requests_refused_total counter",
            self.accepted
        );
        for (code, count) in &self.refused {
            // Codes are fixed identifiers ([a-z_]), never escaped.
            let _ = writeln!(
                text,
                "handsign_verify_requests_refused_total{{code=\"{code}\"}} {count}"
            );
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_of_the_middleware_is_a_label_and_unknown_codes_are_other() {
        for code in [
            ErrorCode::MissingToken,
            ErrorCode::InvalidParams,
            ErrorCode::DpopRequired,
            ErrorCode::InvalidDpop,
            ErrorCode::DpopKeyMismatch,
            ErrorCode::TokenReplayed,
            ErrorCode::BodyTooLarge,
            ErrorCode::InvalidBody,
            ErrorCode::KeysUnavailable,
            ErrorCode::ReplayStoreUnavailable,
        ] {
            assert!(REFUSAL_CODES.contains(&code.as_str()), "{code}");
        }
        let mut unique = REFUSAL_CODES.to_vec();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), REFUSAL_CODES.len());
        assert!(
            REFUSAL_CODES
                .iter()
                .all(|c| c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        );

        let counters = Counters::default();
        counters.accepted();
        counters.refused(ErrorCode::Expired);
        counters.refused(ErrorCode::Expired);
        counters.refused(ErrorCode::Unknown);
        let metrics = counters.snapshot();
        assert_eq!(metrics.accepted, 1);
        assert_eq!(metrics.refused("expired"), 2);
        assert_eq!(metrics.refused(OTHER), 1);
        assert_eq!(metrics.refused(ErrorCode::Unknown.as_str()), 0);
        assert_eq!(metrics.refused_total(), 3);
        assert_eq!(metrics.refused.len(), REFUSAL_CODES.len());
    }

    #[test]
    fn renders_every_series_after_its_type() {
        let counters = Counters::default();
        counters.refused(ErrorCode::TokenReplayed);
        let text = counters.snapshot().to_prometheus();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4 + 1 + REFUSAL_CODES.len(), "{text}");
        assert_eq!(
            lines[1],
            "# TYPE handsign_verify_tokens_accepted_total counter"
        );
        assert_eq!(lines[2], "handsign_verify_tokens_accepted_total 0");
        assert_eq!(
            lines[4],
            "# TYPE handsign_verify_requests_refused_total counter"
        );
        assert!(
            lines.contains(&"handsign_verify_requests_refused_total{code=\"token_replayed\"} 1")
        );
        assert!(text.ends_with('\n'));
    }
}
