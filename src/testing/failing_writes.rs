//! Write failures a real disk gives rarely, on demand: a [`LocalNode`]
//! whose next append writes part of its bytes and then fails the write
//! (ENOSPC, EIO) or the sync, as the kernel would. It stands between the
//! node and its write engine, so the node's own failure handling (cutting
//! a failed write off, fencing on a failed sync) runs unchanged.

use std::fs::File;
use std::io::IoSlice;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use crate::Result;
use crate::node::{LocalNode, LocalOptions, WriteAndSync, WriteFailure, WriteStandIn};

/// How the next append fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteFault {
    /// `written` bytes of the batch are written, then the write fails with
    /// `errno` (ENOSPC, EIO).
    Write {
        /// Bytes that land before the failure.
        written: u64,
        /// The error the write reports.
        errno: i32,
    },
    /// `written` bytes of the batch are written without a sync, then the
    /// sync fails with EIO (the node fences).
    Sync {
        /// Bytes that land before the failure.
        written: u64,
    },
}

/// The switch of one node's write failures (see [`FailingWrites::open`]).
#[derive(Debug, Default)]
pub struct FailingWrites {
    next: Mutex<Option<WriteFault>>,
}

impl FailingWrites {
    /// Opens a local node (as [`LocalNode::open`]) whose appends go
    /// through the returned switch.
    ///
    /// # Errors
    /// As [`LocalNode::open`].
    pub fn open(
        name: impl Into<String>,
        dir: impl AsRef<Path>,
        options: &LocalOptions,
    ) -> Result<(LocalNode, Arc<FailingWrites>)> {
        let switch = Arc::new(FailingWrites::default());
        let node = LocalNode::open_with_stand_in(name, dir, options, switch.clone())?;
        Ok((node, switch))
    }

    /// Makes the node's next append fail as `fault` says; later appends
    /// work again.
    pub fn fail_next(&self, fault: WriteFault) {
        *self.next.lock().unwrap_or_else(PoisonError::into_inner) = Some(fault);
    }
}

impl WriteStandIn for FailingWrites {
    fn write_and_sync(
        &self,
        engine: &dyn WriteAndSync,
        file: &File,
        offset: u64,
        bufs: &[IoSlice<'_>],
    ) -> std::result::Result<(), WriteFailure> {
        let fault = self
            .next
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let (written, failure) = match fault {
            None => return engine.write_and_sync(file, offset, bufs),
            Some(WriteFault::Write { written, errno }) => (
                written,
                WriteFailure::Write(std::io::Error::from_raw_os_error(errno)),
            ),
            Some(WriteFault::Sync { written }) => (
                written,
                WriteFailure::Sync(std::io::Error::from_raw_os_error(libc::EIO)),
            ),
        };
        let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        let cut = all
            .len()
            .min(usize::try_from(written).unwrap_or(usize::MAX));
        file.write_all_at(&all[..cut], offset)
            .map_err(WriteFailure::Write)?;
        Err(failure)
    }
}
