//! Approvals in flight, one per (route, params, caller): identical calls made while one is
//! being decided join it instead of asking the person again, and a call repeated after a `202`
//! finds it again.
//!
//! Each approval is followed by one task that asks the gateway, waits for the decision (never
//! past the approval's expiry) and publishes the outcome to every call waiting on it. An
//! approval yields one token, good for one call: the first waiting call to take it forwards,
//! the others are told the approval was used (`409`). The map holds at most a configured number
//! of approvals; an approved one leaves it when its token is taken or expires, a denied one
//! when the approval would have expired (so that repeating the call shows the denial), any
//! other at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use handsign_client::{Approval, ApprovalError, ApprovalRequest, Client, PendingApproval};
use tokio::sync::watch;
use tokio::time::Instant;

/// Longest wait for the gateway to take an approval request, before the hold starts.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(30);

/// Which calls share one approval.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlightKey {
    /// The route, e.g. `payments POST /v1/charges`.
    pub route: String,
    /// base64url SHA-256 of the params' canonical form.
    pub params_sha256: String,
    /// Who called.
    pub caller: String,
}

/// Where the person decides, as the gateway answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub id: String,
    pub approval_url: String,
    pub code: String,
    pub expires_at: i64,
}

impl Ticket {
    fn of(pending: &PendingApproval) -> Self {
        Ticket {
            id: pending.id().to_owned(),
            approval_url: pending.approval_url().to_owned(),
            code: pending.code().to_owned(),
            expires_at: pending.expires_at(),
        }
    }
}

/// Where an approval stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// The gateway is being asked.
    Asking,
    /// Waiting for the person.
    Pending(Ticket),
    /// Approved; the token waits for a call to take it.
    Approved(Ticket),
    /// The person denied it.
    Denied(Ticket),
    /// Expired or cancelled before a decision, or the token was collected elsewhere.
    Ended { ticket: Ticket, reason: String },
    /// The gateway refused to ask or could not be reached.
    Failed(ApprovalError),
}

impl State {
    fn is_settled(&self) -> bool {
        !matches!(self, State::Asking | State::Pending(_))
    }
}

/// One approval and the calls waiting on it.
#[derive(Debug)]
pub struct Flight {
    state: watch::Sender<State>,
    token: Mutex<Option<Approval>>,
}

impl Flight {
    /// Waits for the gateway to take the request (at most [`ASK_TIMEOUT`]), then up to `hold`
    /// for the person's decision; returns the state then (settled or not).
    pub async fn wait(&self, hold: Duration) -> State {
        let mut receiver = self.state.subscribe();
        let asked = |state: &State| !matches!(state, State::Asking);
        let _ = tokio::time::timeout(ASK_TIMEOUT, receiver.wait_for(asked)).await;
        let _ = tokio::time::timeout(hold, receiver.wait_for(State::is_settled)).await;
        receiver.borrow().clone()
    }

    /// The token, to the first caller that asks for it only.
    pub fn take_token(&self) -> Option<Approval> {
        self.token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// Why a call could not join or start an approval.
#[derive(Debug, thiserror::Error)]
#[error("{0} approvals are in flight already, the most this gate holds; try again later")]
pub struct Full(pub usize);

/// The approvals in flight.
#[derive(Debug, Clone)]
pub struct Flights {
    inner: Arc<Mutex<HashMap<FlightKey, Arc<Flight>>>>,
    max: usize,
}

impl Flights {
    pub fn new(max: usize) -> Self {
        Flights {
            inner: Arc::default(),
            max,
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<FlightKey, Arc<Flight>>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The approval for `key`: the one in flight, or a new one asked of the gateway with
    /// `request` by `client`.
    pub fn join(
        &self,
        key: FlightKey,
        client: &Client,
        request: ApprovalRequest,
    ) -> Result<Arc<Flight>, Full> {
        let mut map = self.map();
        if let Some(flight) = map.get(&key) {
            return Ok(flight.clone());
        }
        if map.len() >= self.max {
            return Err(Full(self.max));
        }
        let flight = Arc::new(Flight {
            state: watch::Sender::new(State::Asking),
            token: Mutex::new(None),
        });
        map.insert(key.clone(), flight.clone());
        drop(map);
        tokio::spawn(
            self.clone()
                .follow(key, flight.clone(), client.clone(), request),
        );
        Ok(flight)
    }

    /// Forgets `flight` under `key` (if it is still the one there).
    pub fn remove(&self, key: &FlightKey, flight: &Arc<Flight>) {
        let mut map = self.map();
        if map
            .get(key)
            .is_some_and(|current| Arc::ptr_eq(current, flight))
        {
            map.remove(key);
        }
    }

    /// How many approvals are in flight.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many calls wait on an approval right now.
    pub fn calls_held(&self) -> usize {
        self.map()
            .values()
            .map(|flight| flight.state.receiver_count())
            .sum()
    }

    /// Asks, waits and publishes; keeps the outcome in the map as long as it is useful.
    async fn follow(
        self,
        key: FlightKey,
        flight: Arc<Flight>,
        client: Client,
        request: ApprovalRequest,
    ) {
        let pending = match client.request_approval(request).await {
            Ok(pending) => pending,
            Err(error) => {
                self.remove(&key, &flight);
                flight.state.send_replace(State::Failed(error));
                return;
            }
        };
        let ticket = Ticket::of(&pending);
        flight.state.send_replace(State::Pending(ticket.clone()));
        // The gateway ends the request by its expiry; a second more covers the clocks.
        let deadline = instant_at(ticket.expires_at + 1);
        let (state, keep_until) = match pending.wait_until(deadline).await {
            Ok(approval) => {
                let exp = approval.exp();
                *flight.token.lock().unwrap_or_else(PoisonError::into_inner) = Some(approval);
                (State::Approved(ticket), Some(exp))
            }
            Err(ApprovalError::Denied) => {
                let until = ticket.expires_at;
                (State::Denied(ticket), Some(until))
            }
            Err(error) => (
                State::Ended {
                    ticket,
                    reason: error.to_string(),
                },
                None,
            ),
        };
        flight.state.send_replace(state);
        if let Some(until) = keep_until {
            tokio::time::sleep_until(instant_at(until)).await;
        }
        self.remove(&key, &flight);
    }
}

/// The monotonic instant at unix second `at` (now if it has passed).
fn instant_at(at: i64) -> Instant {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let ahead = (at as f64 - now).max(0.0);
    Instant::now() + Duration::from_secs_f64(ahead.min(86_400.0 * 2.0))
}
