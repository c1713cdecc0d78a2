//! The time every check reads: the system clock, unless the service (or a test) gives another
//! with [`VerifierBuilder::clock`](crate::VerifierBuilder::clock). The Handsign gateway reads the
//! same type, for its tokens, expiries and waits, so one [`TestClock`] sets the time for a
//! gateway and the services that check its tokens alike.
//!
//! Waits that end at a time of this clock ([`Clock::sleep_until`]) follow it: on a [`TestClock`]
//! they end when the test advances it past their deadline, not after real time passes.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// A source of the time; cheap to clone.
#[derive(Clone)]
pub struct Clock(Source);

#[derive(Clone)]
enum Source {
    /// A clock that moves on by itself (the system clock, or one derived from it): waits on it
    /// sleep in real time.
    Running(Arc<dyn Fn() -> Duration + Send + Sync>),
    /// A [`TestClock`]'s time, which moves only when the test moves it.
    Set(watch::Receiver<Duration>),
}

impl Clock {
    /// The system clock; a clock before 1970 reads as 0, which fails every time check (closed).
    pub fn system() -> Self {
        Clock(Source::Running(Arc::new(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
        })))
    }

    /// A clock that reads `now()` unix seconds and moves on by itself (for example the system
    /// clock plus an offset): waits on it sleep in real time until it reads their deadline.
    pub fn from_fn(now: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        Clock(Source::Running(Arc::new(move || {
            Duration::from_secs(u64::try_from(now()).unwrap_or(0))
        })))
    }

    /// Unix seconds now.
    pub fn now(&self) -> i64 {
        i64::try_from(self.since_epoch().as_secs()).unwrap_or(i64::MAX)
    }

    /// Now, finer than [`now`](Self::now): for deadlines a fraction of a second matters to.
    pub fn time(&self) -> SystemTime {
        UNIX_EPOCH + self.since_epoch()
    }

    fn since_epoch(&self) -> Duration {
        match &self.0 {
            Source::Running(read) => read(),
            Source::Set(time) => *time.borrow(),
        }
    }

    /// Returns once this clock reads `deadline` or later. On a running clock that is after the
    /// real time between now and `deadline` (measured now: a wall clock set back later does not
    /// lengthen the wait); on a [`TestClock`], when the test advances it that far.
    pub async fn sleep_until(&self, deadline: SystemTime) {
        let deadline = deadline.duration_since(UNIX_EPOCH).unwrap_or_default();
        match &self.0 {
            Source::Running(read) => loop {
                match deadline.checked_sub(read()) {
                    Some(left) if !left.is_zero() => tokio::time::sleep(left).await,
                    _ => return,
                }
            },
            Source::Set(time) => {
                let mut time = time.clone();
                // An error means the TestClock is gone: its time can no longer reach the
                // deadline, so the wait never ends; callers bound their waits by other means.
                if time.wait_for(|now| *now >= deadline).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }

    /// Like [`sleep_until`](Self::sleep_until) the start of the unix second `at`: the first
    /// moment [`now`](Self::now) reads `at`.
    pub async fn sleep_until_second(&self, at: i64) {
        self.sleep_until(Self::start_of_second(at)).await;
    }

    /// The first moment of the unix second `at` (seconds before 1970 read as 1970).
    pub fn start_of_second(at: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(u64::try_from(at).unwrap_or(0))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

/// A clock that stands still until the test moves it: expiry tests set the time instead of
/// waiting for it. Give [`clock`](Self::clock) to the parts under test; [`advance`](Self::advance)
/// wakes every wait whose deadline has then passed.
#[derive(Debug, Clone)]
pub struct TestClock(Arc<watch::Sender<Duration>>);

impl TestClock {
    /// A clock that reads `start` until it is moved.
    pub fn at(start: SystemTime) -> Self {
        let start = start.duration_since(UNIX_EPOCH).unwrap_or_default();
        TestClock(Arc::new(watch::Sender::new(start)))
    }

    /// A clock that reads the system clock's now until it is moved.
    pub fn starting_now() -> Self {
        Self::at(SystemTime::now())
    }

    /// The clock to give to the gateway, the stores and the services under test.
    pub fn clock(&self) -> Clock {
        Clock(Source::Set(self.0.subscribe()))
    }

    /// Moves the time on by `by`, and wakes the waits whose deadline has now passed.
    pub fn advance(&self, by: Duration) {
        self.0.send_modify(|now| *now = now.saturating_add(by));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_running_clock_sleeps_until_it_reads_the_deadline() {
        let clock = Clock::system();
        let deadline = clock.time() + Duration::from_millis(50);
        clock.sleep_until(deadline).await;
        assert!(clock.time() >= deadline);
    }

    #[tokio::test]
    async fn advancing_a_test_clock_wakes_the_waits_it_passes_and_only_those() {
        let test = TestClock::at(UNIX_EPOCH + Duration::from_secs(1_000));
        let clock = test.clock();
        assert_eq!(clock.now(), 1_000);
        let soon = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until_second(1_010).await }
        });
        let later = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until_second(1_030).await }
        });
        test.advance(Duration::from_secs(9));
        tokio::task::yield_now().await;
        assert!(!soon.is_finished());
        test.advance(Duration::from_secs(1));
        soon.await.unwrap();
        assert_eq!(clock.now(), 1_010);
        assert!(!later.is_finished());
        test.advance(Duration::from_secs(20));
        later.await.unwrap();
    }

    #[tokio::test]
    async fn a_deadline_already_reached_does_not_wait() {
        let test = TestClock::at(UNIX_EPOCH + Duration::from_secs(50));
        test.clock().sleep_until_second(50).await;
        Clock::system().sleep_until(SystemTime::now()).await;
    }
}
