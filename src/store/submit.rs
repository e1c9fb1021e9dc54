//! Writes as submissions: every put, delete and flush is a request queued
//! for the committer, answered later through a [`Pending`] completion the
//! committer fulfils. The blocking API submits and waits; the simulator
//! keeps many submissions in flight and runs the committer itself, one
//! step at a time ([`Scheduling::Stepped`]), so one seed fixes which
//! requests share a commit.

use std::sync::mpsc::{self, Receiver, TryRecvError};
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
#[derive(Debug)]
pub(crate) struct Pending {
    rx: Receiver<Result<bool>>,
}

impl Pending {
    /// A request and the completion that will answer it.
    pub(crate) fn channel() -> (mpsc::SyncSender<Result<bool>>, Pending) {
        let (ack, rx) = mpsc::sync_channel(1);
        (ack, Pending { rx })
    }

    /// The answer, if the committer has given it. `Some(Err(Closed))` when
    /// the request was dropped unanswered (the store closed or crashed).
    #[cfg_attr(not(any(test, feature = "testing")), allow(dead_code))]
    pub(crate) fn try_take(&self) -> Option<Result<bool>> {
        match self.rx.try_recv() {
            Ok(answer) => Some(answer),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(Err(Error::Closed)),
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
        match pending.rx.try_recv() {
            Ok(answer) => return Ok(answer),
            Err(TryRecvError::Disconnected) => return Err(Error::Closed),
            Err(TryRecvError::Empty) => {}
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
    match timeout {
        Some(after) => pending.rx.recv_timeout(after).map_err(|e| match e {
            mpsc::RecvTimeoutError::Timeout => Error::TimedOut { what, after },
            mpsc::RecvTimeoutError::Disconnected => Error::Closed,
        }),
        None => pending.rx.recv().map_err(|_| Error::Closed),
    }
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
