//! Write engines: how a batch of buffers reaches the disk and is synced.
//!
//! Two engines do the same thing — write the buffers at an offset, then
//! `fdatasync` — and differ in how: [`uring`] submits the writes and the sync
//! linked in one io_uring submission; [`pwrite`] makes `pwritev` and
//! `fdatasync` calls. `Auto` picks io_uring and falls back to pwrite when the
//! kernel refuses io_uring (ENOSYS, EPERM under seccomp, ENOMEM for locked
//! memory on old kernels), saying so once through `tracing`.

use std::fs::File;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, Ordering};

use super::IoEngineKind;

pub(super) mod pwrite;
#[cfg(target_os = "linux")]
pub(super) mod uring;

/// Most buffers one vectored write takes (Linux `UIO_MAXIOV`).
pub(super) const IOV_MAX: usize = 1024;

/// Which step of a write-and-sync failed. The difference matters: a failed
/// write leaves the durable prefix untouched (the tail can be cut off), a
/// failed sync leaves the file in an unknown state (the node is fenced).
#[derive(Debug)]
pub(super) enum WriteFailure {
    Write(io::Error),
    Sync(io::Error),
}

/// The engine one node writes with.
pub(super) enum Engine {
    #[cfg(target_os = "linux")]
    Uring(Box<uring::UringEngine>),
    Pwrite,
}

static FALLBACK_LOGGED: AtomicBool = AtomicBool::new(false);

#[cfg(test)]
thread_local! {
    /// Makes io_uring setup fail with ENOSYS on this thread, as a kernel
    /// without io_uring (or a seccomp filter) would.
    pub(super) static REFUSE_URING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Engine {
    /// Builds the engine `kind` asks for.
    pub(super) fn open(kind: IoEngineKind) -> io::Result<Engine> {
        match kind {
            IoEngineKind::Pwrite => Ok(Engine::Pwrite),
            IoEngineKind::Uring => Self::uring(),
            IoEngineKind::Auto => match Self::uring() {
                Ok(engine) => Ok(engine),
                Err(error) => {
                    if !FALLBACK_LOGGED.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            %error,
                            "io_uring is unavailable; local nodes write with pwrite + fdatasync"
                        );
                    }
                    Ok(Engine::Pwrite)
                }
            },
        }
    }

    #[cfg(target_os = "linux")]
    fn uring() -> io::Result<Engine> {
        #[cfg(test)]
        if REFUSE_URING.with(std::cell::Cell::get) {
            return Err(io::Error::from_raw_os_error(libc::ENOSYS));
        }
        uring::UringEngine::new().map(|engine| Engine::Uring(Box::new(engine)))
    }

    #[cfg(not(target_os = "linux"))]
    fn uring() -> io::Result<Engine> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "io_uring exists only on Linux",
        ))
    }

    /// The engine actually in use (never `Auto`).
    pub(super) fn kind(&self) -> IoEngineKind {
        match self {
            #[cfg(target_os = "linux")]
            Engine::Uring(_) => IoEngineKind::Uring,
            Engine::Pwrite => IoEngineKind::Pwrite,
        }
    }

    /// The process-wide io_uring engine for writes shared by many nodes.
    #[cfg(target_os = "linux")]
    pub(super) fn shared_uring() -> Option<&'static uring::UringEngine> {
        uring::UringEngine::shared()
    }

    /// Writes `bufs` back to back at `offset` of `file`, then makes them
    /// durable with `fdatasync`. Returns only when both are done.
    pub(super) fn write_and_sync(
        &self,
        file: &File,
        offset: u64,
        bufs: &[IoSlice<'_>],
    ) -> Result<(), WriteFailure> {
        match self {
            #[cfg(target_os = "linux")]
            Engine::Uring(engine) => engine.write_and_sync(file, offset, bufs),
            Engine::Pwrite => {
                pwrite::write_all_at(file, offset, bufs).map_err(WriteFailure::Write)?;
                file.sync_data().map_err(WriteFailure::Sync)
            }
        }
    }
}
