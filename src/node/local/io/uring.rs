//! The io_uring engine: the writes of a batch and its `fdatasync` go to the
//! kernel linked in one submission, so a batch costs one `io_uring_enter`
//! instead of a syscall per buffer plus one for the sync.

#![allow(
    unsafe_code,
    reason = "io_uring submission entries point at caller buffers"
)]

use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::sync::{Mutex, PoisonError};

use io_uring::{IoUring, opcode, squeue, types};

use super::{IOV_MAX, WriteFailure, pwrite};

/// Submission queue size: enough for a batch of up to 63 vectored writes
/// (63 * 1024 buffers) plus its sync in one submission; larger batches go
/// in several rounds.
const RING_ENTRIES: u32 = 64;
const SYNC_TAG: u64 = u64::MAX;

pub(in crate::node::local) struct UringEngine {
    ring: Mutex<IoUring>,
}

impl UringEngine {
    pub(in crate::node::local) fn new() -> io::Result<Self> {
        let ring = IoUring::new(RING_ENTRIES)?;
        Ok(UringEngine {
            ring: Mutex::new(ring),
        })
    }

    pub(in crate::node::local) fn write_and_sync(
        &self,
        file: &File,
        offset: u64,
        bufs: &[IoSlice<'_>],
    ) -> Result<(), WriteFailure> {
        // A poisoned ring panicked with entries in flight: never submit on
        // it again.
        let mut ring = self.ring.lock().map_err(|_: PoisonError<_>| {
            WriteFailure::Write(io::Error::other(
                "io_uring ring unusable after an earlier panic",
            ))
        })?;
        let fd = types::Fd(file.as_raw_fd());
        let chunks: Vec<&[IoSlice<'_>]> = bufs.chunks(IOV_MAX).collect();
        let per_round = RING_ENTRIES as usize - 1;
        let round_count = chunks.len().div_ceil(per_round).max(1);
        let mut position = offset;
        let mut write_failed = false;
        let mut expected: Vec<u64> = Vec::with_capacity(per_round.min(chunks.len()));
        for round_index in 0..round_count {
            let start = round_index * per_round;
            let round = chunks
                .get(start..(start + per_round).min(chunks.len()))
                .unwrap_or_default();
            let last_round = round_index + 1 == round_count;
            expected.clear();
            let mut pushed = 0usize;
            for (index, chunk) in round.iter().enumerate() {
                let len: u64 = chunk.iter().map(|b| b.len() as u64).sum();
                let link = last_round || index + 1 < round.len();
                let mut entry = opcode::Writev::new(
                    fd,
                    chunk.as_ptr().cast::<libc::iovec>(),
                    chunk.len() as u32,
                )
                .offset(position)
                .build()
                .user_data(index as u64);
                if link {
                    entry = entry.flags(squeue::Flags::IO_LINK);
                }
                // SAFETY: the entry points at `chunk`'s iovecs and their
                // buffers, borrowed from `bufs` for this whole call; we do not
                // return before every entry of this round has completed (the
                // loop below reaps them all), so the kernel never touches
                // freed memory.
                unsafe { push(&mut ring, &entry) };
                expected.push(len);
                position += len;
                pushed += 1;
            }
            if last_round {
                let entry = opcode::Fsync::new(fd)
                    .flags(types::FsyncFlags::DATASYNC)
                    .build()
                    .user_data(SYNC_TAG);
                // SAFETY: fsync references no memory.
                unsafe { push(&mut ring, &entry) };
                pushed += 1;
            }
            let mut sync_result: Option<i32> = None;
            let mut reaped = 0usize;
            while reaped < pushed {
                if let Err(error) = ring.submit_and_wait(pushed - reaped) {
                    let retry = error.kind() == io::ErrorKind::Interrupted
                        || matches!(error.raw_os_error(), Some(libc::EAGAIN | libc::EBUSY));
                    // Any other failure of io_uring_enter is a misuse of the
                    // ring (EBADF, EFAULT, EINVAL) and the entries may still
                    // point at our buffers: unwinding is the only safe exit
                    // (the poisoned ring is never submitted again).
                    assert!(
                        retry,
                        "io_uring_enter failed with entries in flight: {error}"
                    );
                }
                for completion in ring.completion() {
                    reaped += 1;
                    let tag = completion.user_data();
                    let result = completion.result();
                    if tag == SYNC_TAG {
                        sync_result = Some(result);
                    } else {
                        let want = expected.get(tag as usize).copied().unwrap_or(0);
                        if result < 0 || result as u64 != want {
                            write_failed = true;
                        }
                    }
                }
            }
            if write_failed {
                break;
            }
            if let Some(result) = sync_result
                && result < 0
            {
                return Err(WriteFailure::Sync(io::Error::from_raw_os_error(-result)));
            }
        }
        if write_failed {
            // A short or failed write broke the link chain (the sync was
            // cancelled). Rewrite the whole batch the plain way: it either
            // completes (a short write was transient) or returns the real
            // error (ENOSPC, EIO) for the caller to clean up.
            drop(ring);
            pwrite::write_all_at(file, offset, bufs).map_err(WriteFailure::Write)?;
            return file.sync_data().map_err(WriteFailure::Sync);
        }
        Ok(())
    }
}

/// Pushes one entry, submitting first if the queue is full.
///
/// # Safety
/// Whatever memory `entry` points at must stay valid until its completion
/// has been reaped.
unsafe fn push(ring: &mut IoUring, entry: &squeue::Entry) {
    loop {
        // SAFETY: forwarded from the caller.
        if unsafe { ring.submission().push(entry) }.is_ok() {
            return;
        }
        // A round never has more entries than the ring, so the queue is only
        // full if the kernel has not consumed earlier ones yet.
        if let Err(error) = ring.submit() {
            assert!(
                error.kind() == io::ErrorKind::Interrupted
                    || matches!(error.raw_os_error(), Some(libc::EAGAIN | libc::EBUSY)),
                "io_uring_enter failed: {error}"
            );
        }
    }
}
