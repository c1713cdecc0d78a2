//! The time every check reads: the system clock, unless the service (or a test) gives another
//! with [`VerifierBuilder::clock`](crate::VerifierBuilder::clock). The Handsign gateway reads the
//! same type, for its tokens, expiries and waits, so one [`TestClock`] sets the time for a
//! gateway and the services that check its tokens alike.
//!
//! Waits that end at a [`Deadline`] of this clock ([`Clock::sleep_until`]) follow it: on a
//! [`TestClock`] they end when the test advances it past their deadline, not after real time
//! passes.

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
    /// clock plus an offset): waits on it take real time.
    pub fn from_fn(now: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        Clock(Source::Running(Arc::new(move || {
            Duration::from_secs(u64::try_from(now()).unwrap_or(0))
        })))
    }

    /// Unix seconds now.
    pub fn now(&self) -> i64 {
        i64::try_from(self.since_epoch().as_secs()).unwrap_or(i64::MAX)
    }

    fn since_epoch(&self) -> Duration {
        match &self.0 {
            Source::Running(read) => read(),
            Source::Set(time) => *time.borrow(),
        }
    }

    /// The moment `wait` from now.
    pub fn after(&self, wait: Duration) -> Deadline {
        match &self.0 {
            Source::Running(_) => Deadline::Monotonic(tokio::time::Instant::now() + wait),
            Source::Set(time) => Deadline::Set(time.borrow().saturating_add(wait)),
        }
    }

    /// The first moment [`now`](Self::now) reads the unix second `at` (or now, if it already
    /// does).
    pub fn at_second(&self, at: i64) -> Deadline {
        let at = Duration::from_secs(u64::try_from(at).unwrap_or(0));
        match &self.0 {
            Source::Running(read) => self.after(at.saturating_sub(read())),
            Source::Set(_) => Deadline::Set(at),
        }
    }

    /// Returns once [`now`](Self::now) reads the unix second `at`.
    pub async fn sleep_until_second(&self, at: i64) {
        self.sleep_until(self.at_second(at)).await;
    }

    /// Whether `deadline` (made by this clock) has come.
    pub fn has_passed(&self, deadline: Deadline) -> bool {
        match deadline {
            Deadline::Monotonic(at) => tokio::time::Instant::now() >= at,
            Deadline::Set(at) => self.since_epoch() >= at,
        }
    }

    /// Returns once `deadline` (made by this clock) has come: on a running clock after that
    /// much real time, on a [`TestClock`] once the test advances it that far.
    pub async fn sleep_until(&self, deadline: Deadline) {
        match (deadline, &self.0) {
            (Deadline::Monotonic(at), _) => tokio::time::sleep_until(at).await,
            (Deadline::Set(at), Source::Set(time)) => {
                let mut time = time.clone();
                // An error means the TestClock is gone: its time can no longer reach the
                // deadline, so the wait never ends; callers bound their waits by other means.
                if time.wait_for(|now| *now >= at).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            // A deadline of a test's clock given to a running one: that much real time.
            (Deadline::Set(at), Source::Running(read)) => {
                tokio::time::sleep(at.saturating_sub(read())).await;
            }
        }
    }
}

/// A moment a wait ends at. On a running clock it is measured on the monotonic clock from when
/// it was made, so a wall clock set back meanwhile does not lengthen the wait; on a
/// [`TestClock`] it is a time of the test's clock. Compare deadlines of one clock only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Deadline {
    /// Of a running clock: an instant of the monotonic clock.
    Monotonic(tokio::time::Instant),
    /// Of a [`TestClock`]: its time since the unix epoch.
    Set(Duration),
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
    async fn a_running_clock_waits_that_much_real_time() {
        let clock = Clock::system();
        let started = tokio::time::Instant::now();
        let deadline = clock.after(Duration::from_millis(50));
        assert!(!clock.has_passed(deadline));
        clock.sleep_until(deadline).await;
        assert!(clock.has_passed(deadline));
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[tokio::test]
    async fn a_wall_clock_set_back_does_not_lengthen_a_wait() {
        let wall = Arc::new(std::sync::atomic::AtomicI64::new(10_000));
        let clock = Clock::from_fn({
            let wall = wall.clone();
            move || wall.load(std::sync::atomic::Ordering::SeqCst)
        });
        let deadline = clock.after(Duration::from_millis(50));
        let expiry = clock.at_second(10_001);
        wall.store(10_000 - 3600, std::sync::atomic::Ordering::SeqCst);
        let waited = tokio::time::timeout(Duration::from_secs(5), async {
            clock.sleep_until(deadline).await;
            clock.sleep_until(expiry).await;
        });
        assert!(
            waited.await.is_ok(),
            "the waits followed the wall clock back"
        );
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
            let (clock, deadline) = (clock.clone(), clock.after(Duration::from_secs(30)));
            async move { clock.sleep_until(deadline).await }
        });
        test.advance(Duration::from_secs(9));
        tokio::task::yield_now().await;
        assert!(!soon.is_finished());
        test.advance(Duration::from_secs(1));
        soon.await.unwrap();
        assert_eq!(clock.now(), 1_010);
        assert!(!later.is_finished());
        assert!(!clock.has_passed(clock.at_second(1_030)));
        test.advance(Duration::from_secs(20));
        later.await.unwrap();
        assert!(clock.has_passed(clock.at_second(1_030)));
    }

    #[tokio::test]
    async fn a_deadline_already_reached_does_not_wait() {
        let test = TestClock::at(UNIX_EPOCH + Duration::from_secs(50));
        test.clock().sleep_until(test.clock().at_second(50)).await;
        let system = Clock::system();
        system.sleep_until(system.at_second(system.now())).await;
    }
}
