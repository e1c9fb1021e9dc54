//! Writes as submissions: every put, delete and flush is a request queued
//! for the committer, answered later through a [`Pending`] completion the
//! committer fulfils. The blocking API submits and waits; the simulator
//! keeps many submissions in flight and runs the committer itself, one
//! step at a time ([`Scheduling::Stepped`]), so one seed fixes which
//! requests share a commit.

use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::Duration;

use super::Store;
use super::commit::{Committer, Event, Overlap, Request};
use crate::{Error, Result};

/// How a store starts, beyond its layout and options.
#[derive(Clone, Debug, Default)]
pub(crate) struct Start {
    pub scheduling: Scheduling,
    /// The identity a created store gets, instead of a random one.
    pub store_id: Option<[u8; 16]>,
    /// The clock deadlines and intervals read (the system's if `None`).
    pub clock: Option<std::sync::Arc<dyn super::clock::Clock>>,
}

/// Who runs the committer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Scheduling {
    /// Its own thread, which gathers requests into commits and seals the
    /// next while a writer thread appends the previous one (production).
    #[default]
    Thread,
    /// Whoever waits: `Store::step_if_stepped` runs one commit of what is queued,
    /// and a blocking call runs commits until its own is answered. Nothing
    /// runs in the background (the simulator).
    #[cfg_attr(not(any(test, feature = "testing")), allow(dead_code))]
    Stepped,
}

/// The committer, as it runs.
pub(crate) enum Runner {
    Thread(JoinHandle<()>),
    Stepped(Box<Committer>),
}

/// A submitted write: answered once the committer made it durable (or
/// failed it). Dropping it does not cancel the write.
///
/// One completion serves every way of waiting: the blocking API parks its
/// thread on it, a future polls it (the async API), the simulator takes
/// the answer when it is there. `T` is the answer (a write's: whether it
/// found the key; an async read's: the blob).
#[derive(Debug)]
pub(crate) struct Pending<T = Result<bool>> {
    slot: Arc<Slot<T>>,
}

/// The answering end of a [`Pending`]: answers it once. Dropped
/// unanswered (the store closed, or a simulated crash), it answers
/// [`Error::Closed`].
#[derive(Debug)]
pub(crate) struct Ack<T = Result<bool>> {
    slot: Arc<Slot<T>>,
}

#[derive(Debug)]
struct Slot<T> {
    state: Mutex<SlotState<T>>,
    answered: Condvar,
    /// When it was submitted (for the write latency metric).
    submitted: std::time::Instant,
}

#[derive(Debug)]
struct SlotState<T> {
    answer: Option<T>,
    /// The [`Ack`] is gone (answered or dropped).
    done: bool,
    /// The task awaiting the answer, if a future polls it.
    waker: Option<Waker>,
}

impl<T> Slot<T> {
    fn lock(&self) -> MutexGuard<'_, SlotState<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends the submission with `answer` (if not ended yet) and wakes
    /// whoever waits.
    fn finish(&self, answer: Option<T>) {
        let waker = {
            let mut state = self.lock();
            if !state.done {
                state.done = true;
                state.answer = answer;
            }
            state.waker.take()
        };
        self.answered.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Ack<T> {
    /// When the submission was made.
    pub(crate) fn submitted(&self) -> std::time::Instant {
        self.slot.submitted
    }

    /// Answers the submission.
    pub(crate) fn send(&self, answer: T) {
        self.slot.finish(Some(answer));
    }
}

impl<T> Drop for Ack<T> {
    fn drop(&mut self) {
        self.slot.finish(None);
    }
}

/// How waiting for a submission ended without its answer.
enum Unanswered {
    /// Dropped unanswered: the store closed or crashed.
    Closed,
    /// The wait's time ran out first.
    TimedOut,
}

impl Pending {
    /// The answer, if the committer has given it. `Some(Err(Closed))` when
    /// the request was dropped unanswered (the store closed or crashed).
    #[cfg_attr(not(any(test, feature = "testing")), allow(dead_code))]
    pub(crate) fn try_take(&self) -> Option<Result<bool>> {
        match self.take() {
            Ok(answer) => Some(answer),
            Err(Some(Unanswered::Closed)) => Some(Err(Error::Closed)),
            Err(_) => None,
        }
    }
}

impl<T> Pending<T> {
    /// A request's acknowledgement and the completion it answers.
    pub(crate) fn channel() -> (Ack<T>, Pending<T>) {
        let slot = Arc::new(Slot {
            state: Mutex::new(SlotState {
                answer: None,
                done: false,
                waker: None,
            }),
            answered: Condvar::new(),
            submitted: std::time::Instant::now(),
        });
        (
            Ack {
                slot: Arc::clone(&slot),
            },
            Pending { slot },
        )
    }

    /// The answer, or why there is none (`None`: not yet).
    fn take(&self) -> std::result::Result<T, Option<Unanswered>> {
        let mut state = self.slot.lock();
        Self::take_from(&mut state)
    }

    fn take_from(state: &mut SlotState<T>) -> std::result::Result<T, Option<Unanswered>> {
        match state.answer.take() {
            Some(answer) => Ok(answer),
            None if state.done => Err(Some(Unanswered::Closed)),
            None => Err(None),
        }
    }

    /// Parks the calling thread until the answer comes, or `timeout`
    /// passes.
    fn wait(&self, timeout: Option<Duration>) -> std::result::Result<T, Unanswered> {
        let deadline = timeout.map(|after| std::time::Instant::now() + after);
        let mut state = self.slot.lock();
        loop {
            match Self::take_from(&mut state) {
                Ok(answer) => return Ok(answer),
                Err(Some(why)) => return Err(why),
                Err(None) => {}
            }
            state = match deadline {
                None => self
                    .slot
                    .answered
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Err(Unanswered::TimedOut);
                    }
                    self.slot
                        .answered
                        .wait_timeout(state, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }

    /// Polls for the answer from a future: ready once answered, with
    /// `None` when the answering end was dropped unanswered.
    pub(crate) fn poll_answer(&self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.slot.lock();
        match Self::take_from(&mut state) {
            Ok(answer) => Poll::Ready(Some(answer)),
            Err(Some(_)) => Poll::Ready(None),
            Err(None) => {
                match &mut state.waker {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    slot => *slot = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

/// The body of [`Store::submit`].
pub(crate) fn submit(store: &Store, request: Request) -> Result<()> {
    let guard = store.sender.read().unwrap_or_else(|p| p.into_inner());
    let sender = guard.as_ref().ok_or(Error::Closed)?;
    sender
        .send(Event::Request(request))
        .map_err(|_| Error::Closed)?;
    let inner = &store.inner;
    let due = inner.entries_since_checkpoint.load(Ordering::Relaxed)
        >= inner.options.checkpoint_every
        || inner.checkpoint_wanted.load(Ordering::Relaxed);
    if due && policy_on(store) && !inner.checkpoint_running.swap(true, Ordering::AcqRel) {
        start_checkpoint(Arc::clone(inner), sender.clone());
    }
    Ok(())
}

/// Whether the checkpoint policy (`Options::checkpoint_every`) starts
/// checkpoints in the background: a store's own threads only (a stepped
/// store checkpoints when its driver says).
fn policy_on(store: &Store) -> bool {
    store.inner.options.checkpoint_every > 0 && store.scheduling == Scheduling::Thread
}

/// When a node that takes writes lacks the newest checkpoint's columns
/// (`checkpoint::lacks_columns`), has the policy write the next checkpoint
/// without waiting for `checkpoint_every` writes: now, in the background
/// (`now`: after a repair brought nodes back), or with the next write
/// (after an open, so that a process that only reads, such as the CLI's
/// `get`, starts none), or, if one is running, with the next write after
/// it. That checkpoint writes every home's columns (DURABILITY.md, C2
/// and C8: full, unless the node lacks only a delta's), which ends the
/// window in which the newest checkpoint has less than the layout's
/// margin. One that fails is tried again by the next repair, open or
/// `checkpoint_every` writes. Nothing when the policy is off.
pub(crate) fn checkpoint_if_lacking(store: &Store, now: bool) {
    let inner = &store.inner;
    if !policy_on(store) || !super::checkpoint::lacks_columns(inner) {
        return;
    }
    tracing::info!("a node that takes writes lacks the newest checkpoint's columns: checkpointing");
    inner.checkpoint_wanted.store(true, Ordering::Relaxed);
    if !now || inner.checkpoint_running.swap(true, Ordering::AcqRel) {
        return;
    }
    let guard = store.sender.read().unwrap_or_else(|p| p.into_inner());
    match guard.as_ref() {
        Some(sender) => start_checkpoint(Arc::clone(inner), sender.clone()),
        None => inner.checkpoint_running.store(false, Ordering::Release),
    }
}

/// Clears the background checkpoint's flag when dropped.
struct Running(Arc<std::sync::atomic::AtomicBool>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Writes a checkpoint on a thread of its own (the policy of
/// `Options::checkpoint_every`); its commits settle through a flush sent
/// like any request.
fn start_checkpoint(inner: Arc<super::inner::Inner>, sender: Sender<Event>) {
    let running = Arc::clone(&inner.checkpoint_running);
    let flag = Arc::clone(&running);
    let work = move || {
        // Cleared however the write ends (a panic too), so the policy
        // goes on starting checkpoints.
        let _running = Running(running);
        let timeout = inner.options.put_timeout;
        let settle = || {
            let (ack, pending) = Pending::channel();
            sender
                .send(Event::Request(Request::Flush { ack }))
                .map_err(|_| Error::Closed)?;
            match pending.wait(Some(timeout)) {
                Ok(answer) => answer.map(|_| ()),
                Err(Unanswered::Closed) => Err(Error::Closed),
                Err(Unanswered::TimedOut) => Err(Error::TimedOut {
                    what: "checkpoint",
                    after: timeout,
                }),
            }
        };
        if let Err(e) = super::checkpoint::write(&inner, settle) {
            tracing::warn!(error = %e, "background checkpoint not written; the next one retries");
        }
    };
    let spawned = std::thread::Builder::new()
        .name("geoshard-checkpoint".into())
        .spawn(work);
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start a checkpoint thread");
        flag.store(false, Ordering::Release);
    }
}

/// The body of [`Store::wait`].
pub(crate) fn wait(
    store: &Store,
    pending: &Pending,
    what: &'static str,
    timeout: Option<Duration>,
) -> Result<Result<bool>> {
    loop {
        match pending.take() {
            Ok(answer) => return Ok(answer),
            Err(Some(_)) => return Err(Error::Closed),
            Err(None) => {}
        }
        if store.scheduling == Scheduling::Thread {
            break;
        }
        match step_if_stepped(store, usize::MAX, Overlap::None) {
            Some(0) => return Err(Error::Closed),
            Some(_) => continue,
            None => break,
        }
    }
    pending.wait(timeout).map_err(|why| match why {
        Unanswered::Closed => Error::Closed,
        Unanswered::TimedOut => Error::TimedOut {
            what,
            after: timeout.unwrap_or_default(),
        },
    })
}

/// The body of [`Store::is_stepped`].
pub(crate) fn is_stepped(store: &Store) -> bool {
    store.scheduling == Scheduling::Stepped
}

/// The body of [`Store::step_if_stepped`].
pub(crate) fn step_if_stepped(
    store: &Store,
    max_requests: usize,
    overlap: Overlap,
) -> Option<usize> {
    let mut runner = store.committer.lock().unwrap_or_else(|p| p.into_inner());
    match runner.as_mut() {
        Some(Runner::Stepped(committer)) => Some(committer.step(max_requests, overlap)),
        Some(Runner::Thread(_)) => None,
        None => Some(0),
    }
}

/// The body of [`Store::stop_committer`].
pub(crate) fn stop_committer(store: &Store, drain: bool) {
    let sender = store
        .sender
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    // A threaded committer stops once it has answered everything queued
    // before this (its writer holds a sender too, so the queue never
    // disconnects).
    if let Some(sender) = &sender {
        let _ = sender.send(Event::Shutdown);
    }
    drop(sender);
    let runner = store
        .committer
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    let panicked = match runner {
        Some(Runner::Thread(handle)) => handle.join().is_err(),
        Some(Runner::Stepped(mut committer)) => {
            while drain && committer.step(usize::MAX, Overlap::None) > 0 {}
            false
        }
        None => false,
    };
    if panicked {
        tracing::error!("the committer thread panicked");
    }
}

/// A call through the async API ([`Store::put_async`],
/// [`Store::delete_async`], [`Store::flush_async`], [`Store::get_async`]):
/// a future that resolves to what the blocking call would return. A write
/// resolves once the committer has made it durable; a read once its bytes
/// are read and checked.
///
/// It waits on the same completion the committer answers for the blocking
/// API, without a thread: no runtime of its own, no timer, no dependency on
/// tokio, so it works on any executor. It holds no reference to the store
/// (it is `'static`, `Send` and `Unpin`), so it can be spawned; thousands
/// can be in flight on one thread, and the committer packs the writes into
/// commits together.
///
/// # Cancellation
///
/// A write was queued when the call returned; dropping the future does
/// not take it back. A dropped put or delete may still land, whole, or
/// fail: it is an unacknowledged write (docs/DURABILITY.md, D4): never
/// half applied, and a later read tells which. Await a
/// [`flush_async`](Store::flush_async) to know everything queued before it
/// was answered. A dropped read may still run to its end on a pooled
/// thread; it changes nothing.
///
/// # Errors
///
/// As the blocking call, except [`Error::TimedOut`]: the future has no
/// timer, so [`Options::put_timeout`](crate::Options::put_timeout) bounds
/// only the committer's retries, not the wait. Wrap it in your runtime's
/// timeout for a deadline (a write may then still land, as above).
/// [`Error::Closed`] when the store is closed or dropped before a write
/// was answered.
#[must_use = "a completion does nothing unless awaited (a write is queued either way)"]
pub struct Completion<T> {
    state: CompletionState<T>,
}

enum CompletionState<T> {
    /// Answered at once (refused, or a read served inline), or answered
    /// and taken.
    Done(Option<Result<T>>),
    /// A write: the committer's answer, mapped by `answer`.
    Write {
        pending: Pending,
        answer: fn(bool) -> T,
    },
    /// A read on a pooled thread.
    Read(Pending<Result<T>>),
}

impl<T> Completion<T> {
    /// A write's completion: waits for `pending` and maps the committer's
    /// answer with `answer`.
    pub(crate) fn waiting(pending: Pending, answer: fn(bool) -> T) -> Completion<T> {
        Completion {
            state: CompletionState::Write { pending, answer },
        }
    }

    /// A completion answered by whoever holds the other end of `pending`
    /// (a read on another thread).
    pub(crate) fn answered_by(pending: Pending<Result<T>>) -> Completion<T> {
        Completion {
            state: CompletionState::Read(pending),
        }
    }

    /// A completion that is already answered.
    pub(crate) fn ready(result: Result<T>) -> Completion<T> {
        Completion {
            state: CompletionState::Done(Some(result)),
        }
    }
}

// Nothing in a completion is pinned: it is moved freely whatever `T` is.
impl<T> Unpin for Completion<T> {}

impl<T> std::future::Future for Completion<T> {
    type Output = Result<T>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let answered = match &mut self.state {
            CompletionState::Done(result) => {
                return Poll::Ready(result.take().unwrap_or(Err(Error::invalid(
                    "a write's completion was polled after it had answered",
                ))));
            }
            CompletionState::Write { pending, answer } => match pending.poll_answer(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(got) => got.unwrap_or(Err(Error::Closed)).map(*answer),
            },
            CompletionState::Read(pending) => match pending.poll_answer(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(got) => got.unwrap_or(Err(Error::Closed)),
            },
        };
        self.state = CompletionState::Done(None);
        Poll::Ready(answered)
    }
}

impl<T> std::fmt::Debug for Completion<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            CompletionState::Done(Some(_)) => "refused",
            CompletionState::Done(None) => "answered",
            CompletionState::Write { .. } | CompletionState::Read(_) => "waiting",
        };
        f.debug_struct("Completion").field("state", &state).finish()
    }
}
