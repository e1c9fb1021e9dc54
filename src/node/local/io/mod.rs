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
#[cfg(any(test, feature = "testing"))]
use std::sync::Arc;
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
pub(crate) enum WriteFailure {
    /// Writing the buffers failed.
    Write(io::Error),
    /// The buffers were written (wholly or in part) and the sync failed.
    Sync(io::Error),
}

/// Writes buffers back to back at an offset of a file and makes them
/// durable: what every engine does.
pub(crate) trait WriteAndSync {
    /// Returns only when the write and the sync are both done.
    ///
    /// # Errors
    /// Which of the two failed, with the OS error.
    fn write_and_sync(
        &self,
        file: &File,
        offset: u64,
        bufs: &[IoSlice<'_>],
    ) -> Result<(), WriteFailure>;
}

#[cfg(any(test, feature = "testing"))]
/// Stands between a node and its engine for the node's own appends (a
/// fault injector in tests): it may pass a write on to `engine`, or do
/// something else and say how the write ended. A node with a stand-in never
/// joins a shared submission, so every append goes through it.
pub(crate) trait WriteStandIn: Send + Sync + std::fmt::Debug {
    /// One append's write and sync.
    ///
    /// # Errors
    /// As [`WriteAndSync::write_and_sync`].
    fn write_and_sync(
        &self,
        engine: &dyn WriteAndSync,
        file: &File,
        offset: u64,
        bufs: &[IoSlice<'_>],
    ) -> Result<(), WriteFailure>;
}

/// The engine one node writes with.
pub(super) enum Engine {
    #[cfg(target_os = "linux")]
    Uring(Box<uring::UringEngine>),
    Pwrite,
    /// An engine whose appends go through a stand-in (the `testing`
    /// feature's fault injection).
    #[cfg(any(test, feature = "testing"))]
    StoodIn {
        engine: Box<Engine>,
        stand_in: Arc<dyn WriteStandIn>,
    },
}

static FALLBACK_LOGGED: AtomicBool = AtomicBool::new(false);

impl Engine {
    /// Builds the engine `kind` asks for.
    pub(super) fn open(kind: IoEngineKind) -> io::Result<Engine> {
        Self::open_with(kind, Self::uring)
    }

    /// [`open`](Self::open) with `uring` setting up io_uring (a test gives
    /// one that fails as a kernel without io_uring would).
    pub(super) fn open_with(
        kind: IoEngineKind,
        uring: impl Fn() -> io::Result<Engine>,
    ) -> io::Result<Engine> {
        match kind {
            IoEngineKind::Pwrite => Ok(Engine::Pwrite),
            IoEngineKind::Uring => uring(),
            IoEngineKind::Auto => match uring() {
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
            #[cfg(any(test, feature = "testing"))]
            Engine::StoodIn { engine, .. } => engine.kind(),
        }
    }

    /// Whether appends may bypass this engine for the process-wide shared
    /// submission: only a plain io_uring engine's.
    pub(super) fn shares_submission(&self) -> bool {
        #[cfg(target_os = "linux")]
        {
            matches!(self, Engine::Uring(_))
        }
        #[cfg(not(target_os = "linux"))]
        {
            false
        }
    }

    /// The process-wide io_uring engine for writes shared by many nodes.
    #[cfg(target_os = "linux")]
    pub(super) fn shared_uring() -> Option<&'static uring::UringEngine> {
        uring::UringEngine::shared()
    }
}

impl WriteAndSync for Engine {
    /// Writes `bufs` back to back at `offset` of `file`, then makes them
    /// durable with `fdatasync`. Returns only when both are done.
    fn write_and_sync(
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
            #[cfg(any(test, feature = "testing"))]
            Engine::StoodIn { engine, stand_in } => {
                stand_in.write_and_sync(&**engine, file, offset, bufs)
            }
        }
    }
}
