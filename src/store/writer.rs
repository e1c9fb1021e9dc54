//! The writer: appends the stripes of sealed commits, one commit after
//! another, while the committer gathers and seals the next commit (commit
//! pipelining; docs/DURABILITY.md, "Pipelined commits").
//!
//! The committer sends each stripe as soon as it is sealed, then the
//! commit's end. The writer appends them in the order sent and answers each
//! commit with what it wrote. After a commit failed, it writes nothing more
//! (every later commit is answered `Skipped`: it was sealed against the
//! effects of the failed one) until the committer, having collected every
//! answer, says [`WriterMsg::Resume`].
//!
//! The same [`WriterCore`] runs on its own thread (production) or inline,
//! one message at a time, in a stepped store (the simulator), which decides
//! when the messages are handled.

use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};

use super::Inner;
use super::commit::{Event, Failure};
use super::index::PartLoc;
use super::stripe_io::{Plan, WriteFailed};
use super::stripes::{ColumnInfo, StripeInfo};
use crate::format::ColumnHeader;
use crate::layout::NodeId;

/// A sealed stripe: its headers, payloads and plan, ready to append.
pub(crate) struct SealedStripe {
    pub stripe_id: u64,
    pub generation: u64,
    pub plan: Plan,
    /// One header per column (column index set).
    pub headers: Vec<ColumnHeader>,
    /// One payload per column; a column of length 0 has an empty one.
    pub payloads: Vec<Vec<u8>>,
    /// The layout's home node of every column.
    pub homes: Vec<NodeId>,
    /// (request, part index, where the part is; slot assigned at publish).
    pub parts: Vec<(usize, u32, PartLoc)>,
}

/// A sealed and written stripe, before it is published.
pub(crate) struct Written {
    pub info: StripeInfo,
    /// (request, part index, where the part is).
    pub parts: Vec<(usize, u32, PartLoc)>,
    /// Written without the promise's margin (docs/DURABILITY.md).
    pub degraded: bool,
}

/// What the committer tells the writer.
pub(crate) enum WriterMsg {
    /// A stripe of commit `job`, to append after everything sent before.
    Stripe { job: u64, stripe: SealedStripe },
    /// Commit `job` has no more stripes; `failure` when sealing it failed
    /// part way (the stripes sent before are appended all the same: the
    /// attempt's range is then discarded like any failed attempt's).
    End { job: u64, failure: Option<Failure> },
    /// Every commit since the last failure has been answered: write again.
    Resume,
}

/// How a commit's writes went.
pub(crate) enum Outcome {
    /// Every stripe is durable on every planned node.
    Written(Vec<Written>),
    /// A stripe failed to seal or to append; `wrote` when some append was
    /// attempted (the attempt may have left columns behind).
    Failed { failure: Failure, wrote: bool },
    /// Not written at all: an earlier commit failed.
    Skipped,
}

/// The writer's answer for one commit.
pub(crate) struct JobResult {
    pub job: u64,
    pub outcome: Outcome,
}

/// Payload sets (k + m column buffers) the writer gives back after each
/// stripe, for the committer to fill again: a commit of many stripes (a
/// 1 GiB put) holds a few sets at a time, not one per stripe.
#[derive(Default)]
pub(crate) struct Buffers(Mutex<Vec<Vec<Vec<u8>>>>);

/// Payload sets kept for reuse (a stripe being sealed, two waiting, one
/// being written).
const SPARE_MAX: usize = 4;

impl Buffers {
    pub fn take(&self) -> Option<Vec<Vec<u8>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).pop()
    }

    fn give_back(&self, set: Vec<Vec<u8>>) {
        let mut spare = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if spare.len() < SPARE_MAX {
            spare.push(set);
        }
    }
}

/// The commit being written.
struct Progress {
    job: u64,
    /// An earlier commit failed: nothing of this one is written.
    skipped: bool,
    written: Vec<Written>,
    failure: Option<Failure>,
    wrote: bool,
}

/// The writer's state; see the module docs.
pub(crate) struct WriterCore {
    inner: Arc<Inner>,
    buffers: Arc<Buffers>,
    halted: bool,
    current: Option<Progress>,
}

impl WriterCore {
    pub fn new(inner: Arc<Inner>, buffers: Arc<Buffers>) -> WriterCore {
        WriterCore {
            inner,
            buffers,
            halted: false,
            current: None,
        }
    }

    /// Handles one message; returns a commit's answer at its end.
    pub fn handle(&mut self, msg: WriterMsg) -> Option<JobResult> {
        match msg {
            WriterMsg::Resume => {
                self.halted = false;
                None
            }
            WriterMsg::Stripe { job, stripe } => {
                let inner = Arc::clone(&self.inner);
                let buffers = Arc::clone(&self.buffers);
                let progress = self.progress(job);
                if progress.skipped || progress.failure.is_some() {
                    buffers.give_back(stripe.payloads);
                    return None;
                }
                progress.wrote = true;
                let (result, payloads) = write_stripe(&inner, stripe);
                buffers.give_back(payloads);
                match result {
                    Ok(written) => progress.written.push(written),
                    Err(failure) => progress.failure = Some(failure),
                }
                None
            }
            WriterMsg::End { job, failure } => {
                let progress = self.progress(job);
                if !progress.skipped && progress.failure.is_none() {
                    progress.failure = failure;
                }
                let progress = self.current.take()?;
                let outcome = if progress.skipped {
                    Outcome::Skipped
                } else if let Some(failure) = progress.failure {
                    self.halted = true;
                    Outcome::Failed {
                        failure,
                        wrote: progress.wrote,
                    }
                } else {
                    Outcome::Written(progress.written)
                };
                Some(JobResult {
                    job: progress.job,
                    outcome,
                })
            }
        }
    }

    /// The progress of commit `job`, started at its first message.
    fn progress(&mut self, job: u64) -> &mut Progress {
        let halted = self.halted;
        self.current.get_or_insert_with(|| Progress {
            job,
            skipped: halted,
            written: Vec::new(),
            failure: None,
            wrote: false,
        })
    }
}

/// The writer thread: handles messages until the committer drops its end,
/// sending each commit's answer back as an [`Event::Written`].
pub(crate) fn run(mut core: WriterCore, rx: Receiver<WriterMsg>, events: Sender<Event>) {
    while let Ok(msg) = rx.recv() {
        if let Some(result) = core.handle(msg)
            && events.send(Event::Written(result)).is_err()
        {
            break;
        }
    }
}

/// Appends one sealed stripe to exactly its plan; gives the payload
/// buffers back either way.
fn write_stripe(inner: &Inner, stripe: SealedStripe) -> (Result<Written, Failure>, Vec<Vec<u8>>) {
    let SealedStripe {
        stripe_id,
        generation,
        plan,
        mut headers,
        payloads,
        homes,
        parts,
    } = stripe;
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    let started = std::time::Instant::now();
    let stored = match inner
        .stripe_io()
        .write_planned(generation, &plan, &headers, &refs)
    {
        Ok(stored) => stored,
        Err(failed) => return (Err(write_failure(inner, failed)), payloads),
    };
    drop(refs);
    inner
        .metrics
        .stripe_append_seconds
        .record(started.elapsed().as_secs_f64());
    let header = headers.swap_remove(0);
    inner
        .stats
        .bytes_written
        .add(header.column_lens.iter().map(|l| u64::from(*l)).sum());
    let columns = (0..header.column_lens.len())
        .map(|c| ColumnInfo {
            len: header.column_lens[c],
            checksum: header.column_checksums[c],
            home: Some(homes[c]),
            stored: stored[c],
        })
        .collect();
    let written = Written {
        info: StripeInfo {
            stripe_id,
            generation,
            columns,
            header,
        },
        parts,
        degraded: plan.degraded,
    };
    (Ok(written), payloads)
}

/// Why an attempt's writes failed, as the commit sees it.
fn write_failure(inner: &Inner, failed: WriteFailed) -> Failure {
    match failed {
        WriteFailed::Superseded { node, reason } => Failure::Superseded { node, reason },
        WriteFailed::Nodes(nodes) => Failure::Retry(
            nodes
                .iter()
                .map(|&n| inner.layout.node(n).name.clone())
                .collect(),
        ),
    }
}
