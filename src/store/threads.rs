//! A fixed set of threads for a store whose operations block (the embedded store: redb does file
//! I/O and waits for its write lock).
//!
//! Tokio's blocking pool would do, but it starts a new thread whenever an operation arrives while
//! every thread it has is busy, up to 512, and keeps each for ten seconds: a burst of requests
//! (ten thousand agents starting their long polls, each recording its proof's `jti`, one commit at
//! a time) leaves hundreds of threads, each with its stack and allocator cache, and every later
//! operation runs on whichever of them waited longest, its caches cold. Here a burst waits in a
//! queue instead, and the threads stay few and warm. The queue holds at most one operation per
//! request or task in progress, each awaiting its answer, so the connection cap bounds it.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError, mpsc};

use tokio::sync::oneshot;

/// One queued operation.
type Job = Box<dyn FnOnce() + Send>;

/// The queue of a store's threads; they end once every clone of it is dropped and the queue is
/// empty.
#[derive(Debug, Clone)]
pub struct StoreThreads {
    queue: mpsc::Sender<Job>,
}

impl StoreThreads {
    /// Starts `count` threads named `name`.
    pub fn start(count: usize, name: &str) -> std::io::Result<Self> {
        let (queue, jobs) = mpsc::channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        for _ in 0..count {
            let jobs = Arc::clone(&jobs);
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(move || work(&jobs))?;
        }
        Ok(StoreThreads { queue })
    }

    /// Runs `op` on one of the threads once it is its turn; `None` if it could not run (it
    /// panicked). A caller that stops waiting does not stop it.
    pub async fn run<T: Send + 'static>(
        &self,
        op: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move || {
            // The caller may have stopped waiting.
            let _ = answer.send(op());
        });
        // Fails only when every thread has ended, which `work` prevents while a sender exists.
        self.queue.send(job).ok()?;
        answered.await.ok()
    }
}

/// Takes jobs from the queue until it is closed.
fn work(jobs: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        // The lock is held only while taking the next job; nothing panics while holding it.
        let job = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = job else { return };
        // A job that panics drops its answer (its caller sees that it failed); the thread stays.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Barrier;

    use super::*;

    #[tokio::test]
    async fn a_burst_waits_for_the_threads_it_has() {
        let threads = StoreThreads::start(2, "store-test").unwrap();
        // Two operations that hold both threads until a third party (the test) lets them go.
        let both = Arc::new(Barrier::new(3));
        let held: Vec<_> = (0..2)
            .map(|_| {
                let (threads, both) = (threads.clone(), both.clone());
                tokio::spawn(async move { threads.run(move || both.wait()).await })
            })
            .collect();
        // A burst behind them runs on the same two threads, not on new ones.
        let burst: Vec<_> = (0..50)
            .map(|_| {
                let threads = threads.clone();
                tokio::spawn(async move { threads.run(|| std::thread::current().id()).await })
            })
            .collect();
        tokio::task::spawn_blocking(move || both.wait())
            .await
            .unwrap();
        for held in held {
            held.await.unwrap().unwrap();
        }
        let mut ran_on = HashSet::new();
        for op in burst {
            ran_on.insert(op.await.unwrap().unwrap());
        }
        assert!(ran_on.len() <= 2, "{} threads", ran_on.len());
    }

    #[tokio::test]
    async fn a_panicking_operation_fails_alone() {
        let threads = StoreThreads::start(1, "store-test").unwrap();
        assert_eq!(threads.run(|| -> u8 { panic!("broken") }).await, None);
        assert_eq!(threads.run(|| 7).await, Some(7));
    }
}
