//! The gateway's background work: push messages, webhook deliveries and expiry watchers run on
//! spawned tasks so that they never delay a request or a decision, and each is tracked here so
//! that shutdown waits for the deliveries in flight (within a bound) instead of cutting them off
//! at an arbitrary point, and stops the watchers, which would otherwise wait until their
//! request expires.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long shutdown waits for deliveries in flight: a push or webhook request that has not
/// finished by then is cancelled (the notification is lost; the request itself is stored).
pub const DRAIN_BOUND: Duration = Duration::from_secs(10);

/// Tracked background tasks; clones share them.
#[derive(Debug, Clone, Default)]
pub struct Deliveries {
    tasks: TaskTracker,
    stopping: CancellationToken,
}

impl Deliveries {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `delivery` (a push or webhook request) on its own task; shutdown waits for it.
    /// Outside a Tokio runtime nothing is run.
    pub fn spawn(&self, delivery: impl Future<Output = ()> + Send + 'static) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no async runtime: delivery dropped");
            return;
        };
        self.tasks.spawn_on(delivery, &runtime);
    }

    /// Runs `watch` (waiting for something to happen, such as a request expiring) until it
    /// ends or shutdown begins, whichever comes first.
    pub fn watch(&self, watch: impl Future<Output = ()> + Send + 'static) {
        let stopping = self.stopping.clone();
        self.spawn(async move {
            tokio::select! {
                () = watch => {}
                () = stopping.cancelled() => {}
            }
        });
    }

    /// How many tasks are running.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Stops the watchers and waits up to `bound` for the deliveries in flight; whatever is
    /// still running then is abandoned (and ends with the runtime). Whether all finished.
    pub async fn drain(&self, bound: Duration) -> bool {
        self.stopping.cancel();
        self.tasks.close();
        let finished = tokio::time::timeout(bound, self.tasks.wait()).await.is_ok();
        if !finished {
            tracing::warn!(
                unfinished = self.tasks.len(),
                "shutdown: notifications still being delivered were cancelled"
            );
        }
        finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn draining_waits_for_deliveries_and_stops_watchers() {
        let deliveries = Deliveries::new();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let (done, mut delivered) = tokio::sync::oneshot::channel::<()>();
        deliveries.spawn(async move {
            let _ = released.await;
            let _ = done.send(());
        });
        // A watcher that would wait an hour.
        deliveries.watch(tokio::time::sleep(Duration::from_secs(3600)));
        assert_eq!(deliveries.len(), 2);

        let drain = tokio::spawn({
            let deliveries = deliveries.clone();
            async move { deliveries.drain(DRAIN_BOUND).await }
        });
        // The watcher ends at once; the delivery is still awaited.
        while deliveries.len() > 1 {
            tokio::task::yield_now().await;
        }
        assert!(!drain.is_finished());
        release.send(()).unwrap();
        assert!(drain.await.unwrap());
        assert!(delivered.try_recv().is_ok());
    }

    #[tokio::test]
    async fn a_delivery_that_never_ends_is_cut_off_at_the_bound() {
        let deliveries = Deliveries::new();
        deliveries.spawn(std::future::pending());
        let bound = Duration::from_millis(50);
        let started = tokio::time::Instant::now();
        assert!(!deliveries.drain(bound).await);
        let waited = started.elapsed();
        assert!(waited >= bound && waited < DRAIN_BOUND, "{waited:?}");
    }
}
