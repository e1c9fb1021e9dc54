//! Where the store takes time from when time decides something: the
//! deadline of a put's retries (`Options::put_timeout`), when the nodes
//! are due a check. Production reads the monotonic clock; the simulator
//! gives a clock it advances itself (simulated time per node call), so that
//! these decisions come out the same on every run of a seed, however
//! loaded the machine is.
//!
//! Blocking waits (the committer thread gathering a commit, a caller
//! waiting for its put, a hedged read) still wait in real time: they are
//! the threaded runtime around the store, which a stepped store (the
//! simulator's) does not use.

use std::time::{Duration, Instant};

/// A monotonic clock: the time since a fixed start.
pub(crate) trait Clock: Send + Sync + std::fmt::Debug {
    /// Time since this clock's start; never goes back.
    fn now(&self) -> Duration;
}

/// The monotonic clock of the operating system.
#[derive(Debug)]
pub(crate) struct SystemClock {
    start: Instant,
}

impl SystemClock {
    pub(crate) fn new() -> SystemClock {
        SystemClock {
            start: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}
