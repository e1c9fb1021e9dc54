//! The io_uring engine: the writes of a batch and its `fdatasync` go to the
//! kernel linked in one submission, so a batch costs one `io_uring_enter`
//! instead of a syscall per buffer plus one for the sync. Several batches
//! (of several nodes) can share one submission: each is its own linked
//! chain, and the kernel runs the chains, and their syncs, in parallel.

#![allow(
    unsafe_code,
    reason = "io_uring submission entries point at caller buffers"
)]

use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use io_uring::{IoUring, opcode, squeue, types};

use super::{IOV_MAX, WriteFailure, pwrite};

/// Submission queue size of a node's own ring: a batch of up to 63 vectored
/// writes (63 * 1,024 buffers) and its sync fit in one submission; larger
/// batches go in several rounds.
const NODE_RING_ENTRIES: u32 = 64;
/// Submission queue size of the ring shared by `append_all`.
const SHARED_RING_ENTRIES: u32 = 256;

/// One batch: buffers to write back to back at `offset` of `file`, then
/// sync.
pub(in crate::node::local) struct Job<'a> {
    pub(in crate::node::local) file: &'a File,
    pub(in crate::node::local) offset: u64,
    pub(in crate::node::local) bufs: &'a [IoSlice<'a>],
}

pub(in crate::node::local) struct UringEngine {
    ring: Mutex<IoUring>,
    capacity: usize,
}

impl UringEngine {
    pub(in crate::node::local) fn new() -> io::Result<Self> {
        Self::with_entries(NODE_RING_ENTRIES)
    }

    fn with_entries(entries: u32) -> io::Result<Self> {
        let ring = IoUring::new(entries)?;
        let capacity = ring.params().sq_entries() as usize;
        Ok(UringEngine {
            ring: Mutex::new(ring),
            capacity,
        })
    }

    /// The process-wide ring that `append_all` submits the batches of many
    /// local nodes to, or `None` if io_uring cannot be set up.
    pub(in crate::node::local) fn shared() -> Option<&'static UringEngine> {
        static SHARED: OnceLock<Option<UringEngine>> = OnceLock::new();
        SHARED
            .get_or_init(|| UringEngine::with_entries(SHARED_RING_ENTRIES).ok())
            .as_ref()
    }

    pub(in crate::node::local) fn write_and_sync(
        &self,
        file: &File,
        offset: u64,
        bufs: &[IoSlice<'_>],
    ) -> Result<(), WriteFailure> {
        let job = Job { file, offset, bufs };
        self.run(std::slice::from_ref(&job), false)
            .pop()
            .map_or(Ok(()), |(result, _)| result)
    }

    /// Writes and syncs every job; returns each job's result in order and,
    /// when `timed`, when it was done (its last entry reaped, or its
    /// failure known). Timing wakes the caller about once per job instead
    /// of once per round, which costs a few percent of a large append
    /// (docs/PERFORMANCE.md): callers time a sample.
    pub(in crate::node::local) fn run(
        &self,
        jobs: &[Job<'_>],
        timed: bool,
    ) -> Vec<(Result<(), WriteFailure>, Option<Instant>)> {
        let mut results: Vec<Result<(), WriteFailure>> = jobs.iter().map(|_| Ok(())).collect();
        let mut done: Vec<Option<Instant>> = jobs.iter().map(|_| None).collect();
        // A panic with entries in flight aborts the process (`InFlight`), so
        // a poisoned ring panicked between rounds, with nothing queued.
        // Still, its state is unknown: never submit on it again.
        let Ok(mut ring) = self.ring.lock() else {
            let now = Instant::now();
            return results
                .into_iter()
                .map(|_| {
                    let failure = WriteFailure::Write(io::Error::other(
                        "io_uring ring unusable after an earlier panic",
                    ));
                    (Err(failure), timed.then_some(now))
                })
                .collect();
        };
        let ops = plan(jobs);
        let mut write_failed = vec![false; jobs.len()];
        let mut round_start = 0;
        while round_start < ops.len() {
            let round_end = (round_start + self.capacity).min(ops.len());
            let round = &ops[round_start..round_end];
            // From the first push until every completion of the round is
            // reaped, the kernel may read the jobs' buffers: no unwinding
            // past this point.
            let in_flight = InFlight;
            let mut pushed = 0usize;
            // This round's entries of each job not reaped yet.
            let mut left = vec![0usize; jobs.len()];
            for (index, op) in round.iter().enumerate() {
                if write_failed[op.job] {
                    continue;
                }
                // Chain each op to the next one of the same job in this
                // round, so a job's sync runs only after its writes succeed.
                let link = round.get(index + 1).is_some_and(|next| next.job == op.job);
                let fd = types::Fd(jobs[op.job].file.as_raw_fd());
                let mut entry = match op.chunk {
                    Some(chunk) => opcode::Writev::new(
                        fd,
                        chunk.as_ptr().cast::<libc::iovec>(),
                        chunk.len() as u32,
                    )
                    .offset(op.offset)
                    .build(),
                    None => opcode::Fsync::new(fd)
                        .flags(types::FsyncFlags::DATASYNC)
                        .build(),
                };
                entry = entry.user_data(index as u64);
                if link {
                    entry = entry.flags(squeue::Flags::IO_LINK);
                }
                // Why this is sound: a write entry points at iovecs and buffers borrowed
                // from `jobs` for this whole call, a sync entry at nothing;
                // the loop below reaps every entry of this round before the
                // next round or the return, so the kernel never touches
                // freed memory: a failure of io_uring_enter that could leave
                // entries queued aborts the process, and so does a panic
                // before the round is reaped (`in_flight`). A round never
                // exceeds the queue's capacity.
                // SAFETY: the conditions above hold.
                unsafe { push(&mut ring, &entry) };
                pushed += 1;
                left[op.job] += 1;
            }
            let mut reaped = 0usize;
            while reaped < pushed {
                // Untimed: woken once, at the round's last completion.
                // Timed: woken when the next job can be complete, so that
                // each job's time is (nearly) its own: every unfinished job
                // has at least one entry left, so no job completes before
                // this many more completions. A job's writes usually
                // complete before any sync, so this wakes about once per
                // job, not once per entry (which cost 12-15% of a 1 MiB x
                // 8-node append in wake-ups).
                let want = if timed {
                    let unfinished = left.iter().filter(|&&n| n > 0).count();
                    (pushed - reaped).saturating_sub(unfinished) + 1
                } else {
                    pushed - reaped
                };
                if let Err(error) = ring.submit_and_wait(want) {
                    // Any failure but these is a misuse of the ring (EBADF,
                    // EFAULT, EINVAL) with entries that may still point at
                    // our callers' buffers: returning or unwinding would let
                    // them be freed while the kernel may still read them.
                    if !is_transient(&error) {
                        abort_with_entries_in_flight("io_uring_enter (submit and wait)", &error);
                    }
                }
                let now = Instant::now();
                for completion in ring.completion() {
                    reaped += 1;
                    let Some(op) = round.get(completion.user_data() as usize) else {
                        continue;
                    };
                    let result = completion.result();
                    left[op.job] = left[op.job].saturating_sub(1);
                    if left[op.job] == 0 {
                        done[op.job] = Some(now);
                    }
                    match op.chunk {
                        Some(_) if result < 0 || result as u64 != op.len => {
                            write_failed[op.job] = true;
                        }
                        Some(_) => {}
                        None if result == -libc::ECANCELED => write_failed[op.job] = true,
                        None if result < 0 => {
                            results[op.job] =
                                Err(WriteFailure::Sync(io::Error::from_raw_os_error(-result)));
                        }
                        None => {}
                    }
                }
            }
            drop(in_flight);
            round_start = round_end;
        }
        drop(ring);
        let mut answers = Vec::with_capacity(jobs.len());
        for ((job, result), (failed, done)) in jobs
            .iter()
            .zip(results)
            .zip(write_failed.into_iter().zip(done))
        {
            if failed {
                // A short or failed write broke the chain (the sync was
                // cancelled). Rewrite the batch the plain way: it either
                // completes (a short write was transient) or returns the real
                // error (ENOSPC, EIO) for the caller to clean up.
                let result = pwrite::write_all_at(job.file, job.offset, job.bufs)
                    .map_err(WriteFailure::Write)
                    .and_then(|()| job.file.sync_data().map_err(WriteFailure::Sync));
                answers.push((result, timed.then(Instant::now)));
            } else {
                answers.push((result, timed.then(|| done.unwrap_or_else(Instant::now))));
            }
        }
        answers
    }
}

/// One submission entry to be: a vectored write of `chunk` at `offset`, or
/// (`chunk` = None) the sync of job `job`.
struct Op<'a> {
    job: usize,
    chunk: Option<&'a [IoSlice<'a>]>,
    offset: u64,
    len: u64,
}

/// Every job's writes (1,024 buffers each) followed by its sync, in order.
fn plan<'a>(jobs: &'a [Job<'a>]) -> Vec<Op<'a>> {
    let mut ops = Vec::new();
    for (job_index, job) in jobs.iter().enumerate() {
        let mut offset = job.offset;
        for chunk in job.bufs.chunks(IOV_MAX) {
            let len: u64 = chunk.iter().map(|buf| buf.len() as u64).sum();
            ops.push(Op {
                job: job_index,
                chunk: Some(chunk),
                offset,
                len,
            });
            offset += len;
        }
        ops.push(Op {
            job: job_index,
            chunk: None,
            offset,
            len: 0,
        });
    }
    ops
}

/// Held while submission entries may point at caller memory: if a panic
/// unwinds through it, the process aborts rather than free buffers the
/// kernel may still read.
struct InFlight;

impl Drop for InFlight {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!("a panic unwound through an io_uring round with entries in flight");
            std::process::abort();
        }
    }
}

/// The only safe exit when `io_uring_enter` fails for good while entries
/// that point at caller buffers may still be queued in the kernel.
fn abort_with_entries_in_flight(call: &str, error: &io::Error) -> ! {
    tracing::error!(%error, call, "io_uring_enter failed with entries in flight; aborting");
    std::process::abort()
}

fn is_transient(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::Interrupted
        || matches!(error.raw_os_error(), Some(libc::EAGAIN | libc::EBUSY))
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
        // A round never has more entries than the queue, so it is only full
        // while the kernel has not consumed earlier ones yet, which may
        // point at caller buffers.
        if let Err(error) = ring.submit()
            && !is_transient(&error)
        {
            abort_with_entries_in_flight("io_uring_enter (submit)", &error);
        }
    }
}
