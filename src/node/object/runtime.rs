//! Where the requests of object-store nodes run: the [`Executor`] behind
//! the synchronous [`Node`](crate::node::Node) calls.
//!
//! `object_store` is async; geoshard's API is synchronous. In production
//! the engine owns one multi-threaded tokio runtime for the whole process
//! ([`SharedRuntime`]), started on first use, whose threads (`geoshard-io`)
//! run every request. A node call spawns its future there and waits on a
//! plain channel, never with `Runtime::block_on`, so it works from any
//! thread:
//!
//! - from an ordinary thread (the store's committer, a caller's thread);
//! - from inside a caller's own tokio runtime, without panicking or
//!   deadlocking, because the I/O runs on geoshard's threads, not the
//!   caller's. The call does block the calling thread for the request's
//!   duration, so async code should call the store through
//!   `tokio::task::spawn_blocking`, as with any blocking I/O.
//!
//! Owning the runtime (rather than borrowing the caller's handle) keeps the
//! store usable from synchronous services and keeps a busy caller runtime
//! from starving the store's I/O, at the cost of a few idle threads.
//!
//! The node's own timers (the lease check's timeout) come from the same
//! executor, so the simulator (`testing` feature) can run a node on an
//! executor it drives: requests polled on the calling thread, timers on
//! simulated time, a request that never answers ended by the node's own
//! timeout rather than by a real clock.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::runtime::{Handle, Runtime};

use crate::{Error, Result};

/// A boxed task or timer of an [`Executor`].
pub(crate) type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Runs an object node's requests and keeps its timers.
pub(crate) trait Executor: Send + Sync + fmt::Debug {
    /// Runs `task` to its end, blocking the calling thread until then.
    ///
    /// # Errors
    /// [`Error::Io`] when the task cannot run or cannot finish (the
    /// runtime cannot start, drops the task, or nothing will ever wake it).
    fn run(&self, task: Task) -> Result<()>;

    /// A future that ends once `duration` has passed on this executor's
    /// clock.
    fn sleep(&self, duration: Duration) -> Task;
}

/// Runs `future` on `executor` and returns its output on the calling
/// thread.
///
/// # Errors
/// As [`Executor::run`].
pub(crate) fn block_on<T: Send + 'static>(
    executor: &dyn Executor,
    future: impl Future<Output = T> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    executor.run(Box::pin(async move {
        // The caller may have stopped waiting; nothing to do then.
        let _ = tx.send(future.await);
    }))?;
    rx.try_recv().map_err(|_| dropped())
}

fn dropped() -> Error {
    Error::io(
        "waiting for an object-store request",
        io::Error::other("the request task was dropped"),
    )
}

static RUNTIME: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();

/// The shared runtime's handle, starting the runtime on first use.
pub(crate) fn handle() -> Result<Handle> {
    let runtime = RUNTIME.get_or_init(|| {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(2, 8);
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("geoshard-io")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    });
    match runtime {
        Ok(runtime) => Ok(runtime.handle().clone()),
        Err(reason) => Err(Error::io(
            "starting the object-store runtime",
            io::Error::other(reason.clone()),
        )),
    }
}

/// The engine's own tokio runtime, shared by every object node of the
/// process: the production [`Executor`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SharedRuntime;

impl Executor for SharedRuntime {
    fn run(&self, task: Task) -> Result<()> {
        let handle = handle()?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        handle.spawn(async move {
            task.await;
            let _ = tx.send(());
        });
        rx.recv().map_err(|_| dropped())
    }

    fn sleep(&self, duration: Duration) -> Task {
        // Made at its first poll, on the runtime (a tokio timer needs one).
        Box::pin(async move { tokio::time::sleep(duration).await })
    }
}
