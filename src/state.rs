//! What every handler shares: cheap, clonable handles.

use std::sync::Arc;

use crate::approvals::Approvals;
use crate::clock::Clock;
use crate::config::{ConnectionLimits, PublicUrl, RequestLimits};
use crate::deliveries::Deliveries;
use crate::events::Events;
use crate::keyring::Keyring;
use crate::metrics::{Metrics, MetricsAccess};
use crate::notify::Notifier;
use crate::passkeys::Passkeys;
use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub keyring: Arc<Keyring>,
    pub passkeys: Arc<Passkeys>,
    pub public: Arc<PublicUrl>,
    pub limits: Arc<RequestLimits>,
    /// How long clients may take to send requests, and how many connections may be open.
    pub connection_limits: Arc<ConnectionLimits>,
    /// Seconds an approval token is valid (at most 30).
    pub token_lifetime: i64,
    /// The time every check and every timed wait reads (a test may set it).
    pub clock: Clock,
    pub events: Events,
    pub notifier: Notifier,
    /// A request's life: create, decide, deliver, cancel (over store, events and notifier).
    pub approvals: Approvals,
    /// The notifier's background tasks, which shutdown drains.
    pub deliveries: Deliveries,
    /// What `GET /metrics` reports; `store` records its operations here too.
    pub metrics: Arc<Metrics>,
    /// Where and to whom `GET /metrics` is served.
    pub metrics_access: Arc<MetricsAccess>,
}
