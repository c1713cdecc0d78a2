//! The gateway's open connections: how long a client may take to send a request, and how many
//! connections may be open at once.
//!
//! A client that opens a connection and sends its request slowly, or not at all, holds a file
//! descriptor and buffers for as long as the gateway lets it; a few hundred such clients would
//! otherwise exhaust the descriptors and stop the gateway answering anyone. A client waiting for
//! an answer is different: long polls and event streams wait minutes for a person, by design. So
//! every connection is in one of two states:
//!
//! - **waiting for the client**, with a deadline: for its first request's line and headers
//!   (`header_read_timeout` from accept), for a request's body (`body_read_timeout` from the end
//!   of its headers), or, kept alive after an answer, for the whole head of its next request
//!   (`idle_timeout` from the end of the answer);
//! - **answering**: the gateway works on or sends an answer; no deadline.
//!
//! An answer counts as sent once the connection has taken its last bytes: a client that does not
//! read them is then waited for as for its next request, so only a streamed answer (an event
//! stream, which only an authenticated agent or person can open) stays answering while its
//! client does not read.
//!
//! One task sweeps the table a few times per shortest timeout and closes every connection past
//! its deadline, so there is no timer per connection (10,000 parked long polls cost their table
//! entries and nothing else).
//!
//! At most `max_connections` are open. When a new client connects while that many are, it takes
//! the place of the connection waiting for its client that is nearest its deadline (the one that
//! would be closed first anyway): slow and idle clients are shed in favour of new ones, so
//! `/healthz` keeps answering whoever asks, while connections that are being answered are never
//! cut. When every open connection is being answered, the client just accepted waits until one
//! ends or finishes its answer, and the gateway accepts no other meanwhile: new clients wait in
//! the listen backlog, which the kernel bounds. A per-address cap would not
//! do: behind a reverse proxy every client has the proxy's address.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::config::ConnectionLimits;

/// What an open connection waits for the client to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaited {
    /// The line and headers of the connection's first request.
    Headers,
    /// The rest of a request's body.
    Body,
    /// The next request, after an answer.
    NextRequest,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Not a connection: the entry is free for the next one.
    Free,
    /// Waiting for the client until `deadline`.
    Waiting { awaited: Awaited, deadline: Instant },
    /// Working on or sending an answer.
    Answering,
}

#[derive(Debug)]
struct Entry {
    /// Which connection holds the entry: entries are reused, numbers never.
    number: u64,
    phase: Phase,
    /// Closes the connection: its task is aborted, which drops the connection and its socket.
    task: Option<AbortHandle>,
}

#[derive(Debug, Default)]
struct Table {
    entries: Vec<Entry>,
    free: Vec<usize>,
    open: usize,
    answering: usize,
    next_number: u64,
}

impl Table {
    /// Frees `index` and closes its connection (a no-op on a connection that already ended).
    fn close(&mut self, index: usize) {
        let Some(entry) = self.entries.get_mut(index) else {
            return;
        };
        match entry.phase {
            Phase::Free => return,
            Phase::Answering => self.answering -= 1,
            Phase::Waiting { .. } => {}
        }
        entry.phase = Phase::Free;
        if let Some(task) = entry.task.take() {
            task.abort();
        }
        self.open -= 1;
        self.free.push(index);
    }

    /// The connection waiting for its client that is nearest its deadline.
    fn nearest_deadline(&self) -> Option<usize> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(index, entry)| match entry.phase {
                Phase::Waiting { deadline, .. } => Some(((deadline, entry.number), index)),
                _ => None,
            })
            .min()
            .map(|(_, index)| index)
    }
}

/// The open connections of one listener and their limits.
#[derive(Debug)]
pub struct Connections {
    header_read_timeout: Duration,
    body_read_timeout: Duration,
    idle_timeout: Duration,
    max: usize,
    table: Mutex<Table>,
    /// Signalled when a connection ends or stops answering: room for a waiting accept.
    room: Notify,
}

impl Connections {
    pub fn new(limits: &ConnectionLimits) -> Arc<Self> {
        Arc::new(Connections {
            header_read_timeout: Duration::from_secs(limits.header_read_timeout),
            body_read_timeout: Duration::from_secs(limits.body_read_timeout),
            idle_timeout: Duration::from_secs(limits.idle_timeout),
            max: limits.max_connections(),
            table: Mutex::new(Table::default()),
            room: Notify::new(),
        })
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // The table is consistent after every statement that can panic (none do): a poisoned
        // lock still holds a usable table.
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A place for a just-accepted connection. At the cap, the connection waiting for its
    /// client that is nearest its deadline is closed to make room; when every open connection is
    /// being answered, this waits until one ends or finishes its answer (the gateway accepts no
    /// other connection meanwhile: new clients wait in the listen backlog).
    pub async fn admit(self: &Arc<Self>) -> Slot {
        loop {
            // Registered before looking, so that room made in between is not missed.
            let room = self.room.notified();
            if let Some(slot) = self.try_admit() {
                return slot;
            }
            room.await;
        }
    }

    /// A place for a just-accepted connection if there is one or one can be made now.
    fn try_admit(self: &Arc<Self>) -> Option<Slot> {
        let mut table = self.table();
        if table.open >= self.max {
            let shed = table.nearest_deadline()?;
            tracing::debug!("connection cap reached: closing the slowest client's connection");
            table.close(shed);
        }
        let number = table.next_number;
        table.next_number += 1;
        let entry = Entry {
            number,
            phase: Phase::Waiting {
                awaited: Awaited::Headers,
                deadline: Instant::now() + self.header_read_timeout,
            },
            task: None,
        };
        let index = match table.free.pop() {
            Some(index) => {
                table.entries[index] = entry;
                index
            }
            None => {
                table.entries.push(entry);
                table.entries.len() - 1
            }
        };
        table.open += 1;
        Some(Slot {
            connections: self.clone(),
            index,
            number,
        })
    }

    /// Closes every connection past its deadline, a few times per shortest timeout, until the
    /// task is aborted.
    pub async fn sweep(self: Arc<Self>) {
        let shortest = self
            .header_read_timeout
            .min(self.body_read_timeout)
            .min(self.idle_timeout);
        let mut ticks = tokio::time::interval((shortest / 4).min(Duration::from_secs(1)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let now = Instant::now();
            let mut table = self.table();
            let late: Vec<(usize, Awaited)> = table
                .entries
                .iter()
                .enumerate()
                .filter_map(|(index, entry)| match entry.phase {
                    Phase::Waiting { awaited, deadline } if deadline <= now => {
                        Some((index, awaited))
                    }
                    _ => None,
                })
                .collect();
            for &(index, awaited) in &late {
                tracing::debug!(?awaited, "closing a connection that sent nothing in time");
                table.close(index);
            }
            drop(table);
            if !late.is_empty() {
                self.room.notify_waiters();
            }
        }
    }
}

/// One connection's entry. Cheap to clone: the connection's service, request body and answer
/// each hold one.
#[derive(Debug, Clone)]
pub struct Slot {
    connections: Arc<Connections>,
    index: usize,
    number: u64,
}

impl Slot {
    /// Changes this connection's phase to `phase` if its current one satisfies `from`, unless
    /// it was closed meanwhile.
    fn enter(&self, from: fn(&Phase) -> bool, phase: Phase) {
        let connections = &self.connections;
        let mut table = connections.table();
        let table = &mut *table;
        let Some(entry) = table.entries.get_mut(self.index) else {
            return;
        };
        if entry.number != self.number || matches!(entry.phase, Phase::Free) || !from(&entry.phase)
        {
            return;
        }
        let was_answering = matches!(entry.phase, Phase::Answering);
        let answering = matches!(phase, Phase::Answering);
        entry.phase = phase;
        match (was_answering, answering) {
            (false, true) => table.answering += 1,
            (true, false) => {
                table.answering -= 1;
                connections.room.notify_waiters();
            }
            _ => {}
        }
    }

    fn waiting(&self, awaited: Awaited, timeout: Duration) -> Phase {
        Phase::Waiting {
            awaited,
            deadline: Instant::now() + timeout,
        }
    }

    /// Records the task serving the connection, which closing the connection aborts.
    pub fn serving(&self, task: AbortHandle) {
        let mut table = self.connections.table();
        match table.entries.get_mut(self.index) {
            Some(entry) if entry.number == self.number && !matches!(entry.phase, Phase::Free) => {
                entry.task = Some(task);
            }
            // Closed already (shed before its task was recorded): end the task too.
            _ => task.abort(),
        }
    }

    /// A request's head arrived; its body, if any, is still to be read.
    pub fn request_started(&self, body_complete: bool) {
        self.enter(
            |_| true,
            if body_complete {
                Phase::Answering
            } else {
                self.waiting(Awaited::Body, self.connections.body_read_timeout)
            },
        );
    }

    /// The request's body was read, or the gateway stopped reading it.
    fn body_read(&self) {
        let reading_body = |phase: &Phase| {
            matches!(
                phase,
                Phase::Waiting {
                    awaited: Awaited::Body,
                    ..
                }
            )
        };
        self.enter(reading_body, Phase::Answering);
    }

    /// The answer was sent: the connection waits for its next request.
    fn answered(&self) {
        let phase = self.waiting(Awaited::NextRequest, self.connections.idle_timeout);
        self.enter(|_| true, phase);
    }

    /// Frees the entry when dropped: held by the connection's task.
    pub fn guard(&self) -> SlotGuard {
        SlotGuard(self.clone())
    }
}

/// Frees its connection's entry when the connection ends (or its task is aborted).
#[derive(Debug)]
pub struct SlotGuard(Slot);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let connections = &self.0.connections;
        let mut table = connections.table();
        let owned = table
            .entries
            .get(self.0.index)
            .is_some_and(|entry| entry.number == self.0.number);
        if owned {
            table.close(self.0.index);
            drop(table);
            connections.room.notify_waiters();
        }
    }
}

/// A request's body, which tells its connection when it has been read.
#[derive(Debug)]
pub struct RequestBody<B> {
    inner: B,
    /// Until the body has been read; `None` for a body that was complete on arrival.
    slot: Option<Slot>,
}

impl<B> RequestBody<B> {
    pub fn new(inner: B, slot: Option<Slot>) -> Self {
        RequestBody { inner, slot }
    }

    fn read(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.body_read();
        }
    }
}

impl<B: Body + Unpin> Body for RequestBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(frame, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.read();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for RequestBody<B> {
    /// A handler that answers without reading the whole body is answering, not waiting.
    fn drop(&mut self) {
        self.read();
    }
}

/// An answer's body, which tells its connection when it has been sent.
#[derive(Debug)]
pub struct AnswerBody<B> {
    inner: B,
    slot: Slot,
}

impl<B> AnswerBody<B> {
    pub fn new(inner: B, slot: Slot) -> Self {
        AnswerBody { inner, slot }
    }
}

impl<B: Body + Unpin> Body for AnswerBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for AnswerBody<B> {
    /// The connection drops the body once it has sent it (or when it closes).
    fn drop(&mut self) {
        self.slot.answered();
    }
}
