//! The async runtime behind the synchronous [`Node`](crate::node::Node)
//! calls of object-store nodes.
//!
//! `object_store` is async; geoshard's API is synchronous. The engine owns
//! one multi-threaded tokio runtime for the whole process, started on first
//! use, whose threads (`geoshard-io`) run every request. A node call spawns
//! its future there and waits on a plain channel, never with
//! `Runtime::block_on`, so it works from any thread:
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

use std::future::Future;
use std::io;
use std::sync::OnceLock;

use tokio::runtime::{Handle, Runtime};

use crate::{Error, Result};

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

/// Runs `future` on the shared runtime and waits for its output on the
/// calling thread.
///
/// # Errors
/// [`Error::Io`] when the runtime cannot start or drops the task.
pub(crate) fn block_on<T: Send + 'static>(
    future: impl Future<Output = T> + Send + 'static,
) -> Result<T> {
    let handle = handle()?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        // The caller may have stopped waiting; nothing to do then.
        let _ = tx.send(future.await);
    });
    rx.recv().map_err(|_| {
        Error::io(
            "waiting for an object-store request",
            io::Error::other("the request task was dropped"),
        )
    })
}
