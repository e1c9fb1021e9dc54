//! Writes as submissions: every put, delete and flush is a request queued
//! for the committer, answered later through a [`Pending`] completion the
//! committer fulfils. The blocking API submits and waits; the simulator
//! keeps many submissions in flight and runs the committer itself, one
//! step at a time ([`Scheduling::Stepped`]), so one seed fixes which
//! requests share a commit.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::Duration;

use super::Store;
use super::commit::{Committer, Request};
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
    /// Its own thread, which waits for requests and gathers a commit for up
    /// to `commit_interval` (production).
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
/// the answer when it is there.
#[derive(Debug)]
pub(crate) struct Pending {
    slot: Arc<Slot>,
}

/// The committer's end of a submission: answers it once. Dropped
/// unanswered (the store closed, or a simulated crash), it answers
/// [`Error::Closed`].
#[derive(Debug)]
pub(crate) struct Ack {
    slot: Arc<Slot>,
}

#[derive(Debug, Default)]
struct Slot {
    state: Mutex<SlotState>,
    answered: Condvar,
}

#[derive(Debug, Default)]
struct SlotState {
    answer: Option<Result<bool>>,
    /// The [`Ack`] is gone (answered or dropped).
    done: bool,
    /// The task awaiting the answer, if a future polls it.
    waker: Option<Waker>,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends the submission with `answer` (if not ended yet) and wakes
    /// whoever waits.
    fn finish(&self, answer: Option<Result<bool>>) {
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

impl Ack {
    /// Answers the submission.
    pub(crate) fn send(&self, answer: Result<bool>) {
        self.slot.finish(Some(answer));
    }
}

impl Drop for Ack {
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
    /// A request's acknowledgement and the completion it answers.
    pub(crate) fn channel() -> (Ack, Pending) {
        let slot = Arc::new(Slot::default());
        (
            Ack {
                slot: Arc::clone(&slot),
            },
            Pending { slot },
        )
    }

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

    /// The answer, or why there is none (`None`: not yet).
    fn take(&self) -> std::result::Result<Result<bool>, Option<Unanswered>> {
        let mut state = self.slot.lock();
        Self::take_from(&mut state)
    }

    fn take_from(state: &mut SlotState) -> std::result::Result<Result<bool>, Option<Unanswered>> {
        match state.answer.take() {
            Some(answer) => Ok(answer),
            None if state.done => Err(Some(Unanswered::Closed)),
            None => Err(None),
        }
    }

    /// Parks the calling thread until the answer comes, or `timeout`
    /// passes.
    fn wait(&self, timeout: Option<Duration>) -> std::result::Result<Result<bool>, Unanswered> {
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

    /// Polls for the answer from a future: ready once the committer
    /// answered (or the request was dropped: [`Error::Closed`]).
    pub(crate) fn poll_answer(&self, cx: &mut Context<'_>) -> Poll<Result<bool>> {
        let mut state = self.slot.lock();
        match Self::take_from(&mut state) {
            Ok(answer) => Poll::Ready(answer),
            Err(Some(_)) => Poll::Ready(Err(Error::Closed)),
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
    sender.send(request).map_err(|_| Error::Closed)
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
        match step_if_stepped(store, usize::MAX) {
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
pub(crate) fn step_if_stepped(store: &Store, max_requests: usize) -> Option<usize> {
    let mut runner = store.committer.lock().unwrap_or_else(|p| p.into_inner());
    match runner.as_mut() {
        Some(Runner::Stepped(committer)) => Some(committer.step(max_requests)),
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
    drop(sender);
    let runner = store
        .committer
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    let panicked = match runner {
        Some(Runner::Thread(handle)) => handle.join().is_err(),
        Some(Runner::Stepped(mut committer)) => {
            while drain && committer.step(usize::MAX) > 0 {}
            false
        }
        None => false,
    };
    if panicked {
        tracing::error!("the committer thread panicked");
    }
}

/// A write submitted through the async API ([`Store::put_async`],
/// [`Store::delete_async`], [`Store::flush_async`]): a future that
/// resolves once the committer has made the write durable, with what the
/// blocking call would return.
///
/// It waits on the same completion the committer answers for the blocking
/// API, without a thread: no runtime of its own, no timer, no dependency on
/// tokio, so it works on any executor. It holds no reference to the store
/// (it is `'static`, `Send` and `Unpin`), so it can be spawned; thousands
/// can be in flight on one thread, and the committer packs them into
/// commits together.
///
/// # Cancellation
///
/// The write was queued when the call returned; dropping the future does
/// not take it back. A dropped put or delete may still land, whole, or
/// fail: it is an unacknowledged write (docs/DURABILITY.md, D4): never
/// half applied, and a later read tells which. Await a
/// [`flush_async`](Store::flush_async) to know everything queued before it
/// was answered.
///
/// # Errors
///
/// As the blocking call, except [`Error::TimedOut`]: the future has no
/// timer, so [`Options::put_timeout`](crate::Options::put_timeout) bounds
/// only the committer's retries, not the wait. Wrap it in your runtime's
/// timeout for a deadline (the write may then still land, as above).
/// [`Error::Closed`] when the store is closed or dropped before the write
/// was answered.
#[must_use = "a completion does nothing unless awaited (the write is queued either way)"]
pub struct Completion<T> {
    state: CompletionState<T>,
}

enum CompletionState<T> {
    /// Refused before it was queued, or already answered and taken.
    Done(Option<Result<T>>),
    Waiting {
        pending: Pending,
        answer: fn(bool) -> T,
    },
}

impl<T> Completion<T> {
    /// A completion that waits for `pending` and maps the committer's
    /// answer with `answer`.
    pub(crate) fn waiting(pending: Pending, answer: fn(bool) -> T) -> Completion<T> {
        Completion {
            state: CompletionState::Waiting { pending, answer },
        }
    }

    /// A completion that is already answered (a write refused before it
    /// was queued).
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
            CompletionState::Waiting { pending, answer } => match pending.poll_answer(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(got) => got.map(*answer),
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
            CompletionState::Waiting { .. } => "waiting",
        };
        f.debug_struct("Completion").field("state", &state).finish()
    }
}
