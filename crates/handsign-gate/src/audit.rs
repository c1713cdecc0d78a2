//! One structured line per call, on the `handsign_gate::audit` tracing target: who called,
//! for which user, under which approval, which route, what the gate decided, what the upstream
//! answered and how long it all took. It never holds the credential, the token or the params.

use std::time::Instant;

/// What the gate decided for a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Forwarded without approval (`pass` route).
    Passed,
    /// Forwarded with a person's approval (asked by the gate or brought by the caller).
    Approved,
    /// The person denied it.
    Denied,
    /// Still pending when the hold ended: answered `202`.
    Pending,
    /// Refused by the gate file (`deny` route, unlisted route).
    Refused,
    /// Refused for the call itself: bad params, too large, a token that did not verify, a
    /// caller not allowed.
    Invalid,
    /// The approval expired or was cancelled, or its token was used by an identical call.
    Ended,
    /// The gateway or the upstream could not be reached or answered wrongly.
    Failed,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Passed => "passed",
            Decision::Approved => "approved",
            Decision::Denied => "denied",
            Decision::Pending => "pending",
            Decision::Refused => "refused",
            Decision::Invalid => "invalid",
            Decision::Ended => "ended",
            Decision::Failed => "failed",
        }
    }
}

/// The audit record of one call, filled in as the call proceeds and written once.
#[derive(Debug)]
pub struct Record {
    started: Instant,
    pub caller: String,
    pub route: String,
    pub user: Option<String>,
    pub approval: Option<String>,
    pub decision: Decision,
    pub upstream_status: Option<u16>,
}

impl Record {
    pub fn new(caller: String, route: String) -> Self {
        Record {
            started: Instant::now(),
            caller,
            route,
            user: None,
            approval: None,
            decision: Decision::Invalid,
            upstream_status: None,
        }
    }

    /// Writes the line.
    pub fn write(&self) {
        tracing::info!(
            target: "handsign_gate::audit",
            caller = %self.caller,
            user = self.user.as_deref().unwrap_or("-"),
            approval = self.approval.as_deref().unwrap_or("-"),
            route = %self.route,
            decision = self.decision.as_str(),
            upstream_status = self.upstream_status.unwrap_or(0),
            latency_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            "call"
        );
    }
}
