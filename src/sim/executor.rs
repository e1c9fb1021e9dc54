//! The executor the simulator drives for the real
//! [`ObjectNode`](crate::node::ObjectNode): each request runs on the thread
//! that called the node, polled until it ends, and the node's timers run on
//! simulated time.
//!
//! A request that cannot go on (every future pending, nothing woken) is
//! stuck until a timer fires: the executor fires the earliest one (the
//! order of registration breaks ties), moving the world's clock on by the
//! time until it. So a request that never answers (a hung lease read) is
//! ended by the node's own timeout, in simulated time, exactly as a real
//! one would be; and a request that no timer bounds is reported as a hang
//! of the store (the world keeps the first one; the simulator fails the
//! run on it) instead of blocking the test.
//!
//! Time here is per request: a timer's deadline is counted from the start
//! of the request that armed it, so requests running at once on several
//! threads (a commit's nodes) add their waits to the world's clock the same
//! way whichever thread runs first.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use super::world::World;
use crate::node::object::runtime::{Executor, Task};
use crate::{Error, Result};

/// Runs object-node requests for one simulated world.
#[derive(Debug)]
pub(crate) struct SimExecutor {
    pub world: Arc<World>,
}

/// A timer armed by a request.
#[derive(Debug)]
struct Timer {
    /// Microseconds from the start of the request.
    deadline_us: u64,
    shared: Arc<TimerShared>,
}

#[derive(Debug, Default)]
struct TimerShared {
    fired: AtomicBool,
    /// The sleep was dropped before it fired: nothing waits for it.
    dropped: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

/// The timers and elapsed time of the request running on this thread.
#[derive(Debug, Default)]
struct Request {
    elapsed_us: u64,
    timers: Vec<Timer>,
}

thread_local! {
    static CURRENT: RefCell<Option<Request>> = const { RefCell::new(None) };
}

/// A waker that notes it was called.
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
}

impl Executor for SimExecutor {
    fn run(&self, mut task: Task) -> Result<()> {
        let outer = CURRENT.with(|current| current.borrow_mut().replace(Request::default()));
        let result = self.drive(&mut task);
        CURRENT.with(|current| *current.borrow_mut() = outer);
        result
    }

    fn sleep(&self, duration: Duration) -> Task {
        Box::pin(SimSleep {
            duration_us: u64::try_from(duration.as_micros()).unwrap_or(u64::MAX),
            shared: None,
        })
    }
}

impl SimExecutor {
    /// Polls `task` until it ends, firing timers whenever it is stuck.
    fn drive(&self, task: &mut Task) -> Result<()> {
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(Arc::clone(&flag));
        let mut cx = Context::from_waker(&waker);
        loop {
            flag.0.store(false, Ordering::Release);
            if task.as_mut().poll(&mut cx).is_ready() {
                return Ok(());
            }
            if flag.0.load(Ordering::Acquire) {
                continue;
            }
            if !self.fire_next() {
                let why = "an object-store request waits for an answer that never comes, \
                           and no timeout bounds it";
                self.world.note_hang(why);
                return Err(Error::io(
                    "running a simulated object-store request",
                    std::io::Error::other(why),
                ));
            }
        }
    }

    /// Fires the earliest live timer of this thread's request, moving the
    /// world's clock on to it. False when there is none.
    fn fire_next(&self) -> bool {
        CURRENT.with(|current| {
            let mut current = current.borrow_mut();
            let Some(request) = current.as_mut() else {
                return false;
            };
            request
                .timers
                .retain(|t| !t.shared.dropped.load(Ordering::Acquire));
            let Some(next) =
                (0..request.timers.len()).min_by_key(|&i| request.timers[i].deadline_us)
            else {
                return false;
            };
            let timer = request.timers.remove(next);
            let wait = timer.deadline_us.saturating_sub(request.elapsed_us);
            request.elapsed_us = request.elapsed_us.max(timer.deadline_us);
            self.world.advance(wait);
            timer.shared.fired.store(true, Ordering::Release);
            let waker = timer
                .shared
                .waker
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(waker) = waker {
                waker.wake();
            }
            true
        })
    }
}

/// A sleep on simulated time: armed at its first poll, as part of the
/// request polling it.
struct SimSleep {
    duration_us: u64,
    shared: Option<Arc<TimerShared>>,
}

impl Future for SimSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(shared) = &self.shared {
            if shared.fired.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            *shared.waker.lock().unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let shared = Arc::new(TimerShared::default());
        *shared.waker.lock().unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
        let armed = CURRENT.with(|current| {
            let mut current = current.borrow_mut();
            let request = current.as_mut()?;
            let deadline_us = request.elapsed_us.saturating_add(self.duration_us);
            request.timers.push(Timer {
                deadline_us,
                shared: Arc::clone(&shared),
            });
            Some(())
        });
        if armed.is_none() {
            // Polled outside a simulated request (no clock to wait on):
            // the time is up at once.
            return Poll::Ready(());
        }
        self.shared = Some(shared);
        Poll::Pending
    }
}

impl Drop for SimSleep {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            shared.dropped.store(true, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::object::runtime::block_on;

    fn executor() -> SimExecutor {
        let layout = super::super::sim_layout(3, 1, 2, 1);
        SimExecutor {
            world: World::new(1, &layout, true),
        }
    }

    #[test]
    fn a_ready_request_takes_no_simulated_time() {
        let exec = executor();
        assert_eq!(block_on(&exec, async { 7 }).ok(), Some(7));
        assert_eq!(exec.world.now_us(), 0);
    }

    #[test]
    fn a_hung_request_ends_at_its_timeout_in_simulated_time() {
        let exec = executor();
        let timer = exec.sleep(Duration::from_secs(2));
        let late = exec.sleep(Duration::from_secs(9));
        let out = block_on(&exec, async move {
            let hung = std::future::pending::<u8>();
            let raced = futures_util::future::select(Box::pin(hung), timer).await;
            drop(late);
            matches!(raced, futures_util::future::Either::Right(_))
        });
        assert_eq!(out.ok(), Some(true));
        assert_eq!(exec.world.now_us(), 2_000_000);
        assert!(exec.world.take_hang().is_none());
    }

    #[test]
    fn a_request_nothing_bounds_is_a_hang() {
        let exec = executor();
        let out = block_on(&exec, std::future::pending::<()>());
        assert!(out.is_err());
        assert!(exec.world.take_hang().is_some());
    }
}
