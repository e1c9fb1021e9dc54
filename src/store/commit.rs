//! The committer: turns queued puts and deletes into sealed, durable
//! stripes (group commit), and pipelines its commits: while the writer
//! (`writer.rs`) appends one commit, the committer gathers and seals the
//! next.
//!
//! Protocol, per commit (docs/DURABILITY.md, "The plan and the
//! acknowledgement rule" and "Pipelined commits"; invariants D1, D3, D4):
//! 1. take the queued requests (until the stripe is full, a flush asks, or
//!    the oldest has waited `commit_interval` behind a commit being
//!    written, `commit_delay` (default 0) when none is);
//! 2. pack them into stripes; seal each stripe (entry tables, parity), plan
//!    a node for every column (home, or a site-safe handoff), and hand it
//!    to the writer, which appends the columns to exactly those nodes in
//!    parallel, one sync per node. At most two commits are outstanding: a
//!    commit is sealed against the effects of the one before it, which is
//!    not published yet;
//! 3. commits are published and answered in the order they were sealed,
//!    which is their stripe-id order. If an append fails, the node is
//!    marked; the writer writes nothing more until the committer has the
//!    answers of every outstanding commit; the failed commit is sealed
//!    again under new stripe ids (a retry; the earlier attempt is never
//!    acknowledged) and the commits behind it are sealed again after it. A
//!    commit that cannot be planned or runs out of time fails every request
//!    in it;
//! 4. only when every planned column of every stripe of a commit is durable
//!    and every earlier commit is published: publish its stripes and index
//!    updates, then acknowledge.
//!
//! Every delete writes a tombstone. A commit never changes generation after
//! its first stripe (a retry stays in the attempt's generation).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::Inner;
use super::index::{BlobLoc, PartLoc};
use super::pack::{OpenStripe, Placed};
use super::stripe_io::PlanRefused;
use super::submit::Ack;
use super::writer::{Buffers, JobResult, Outcome, SealedStripe, WriterCore, WriterMsg, Written};
use crate::format::{self, ColumnHeader, CommitStamp, Entry, EntryFlags};
use crate::layout::NodeId;
use crate::{Error, Result};

/// A request to the committer; `ack` receives the outcome once durable.
pub(crate) enum Request {
    Put {
        key: Box<[u8]>,
        value: Bytes,
        ack: Ack,
    },
    Delete {
        key: Box<[u8]>,
        ack: Ack,
    },
    Flush {
        ack: Ack,
    },
    /// Compaction: rewrite a live blob, but only if the index still points
    /// where the compactor read it (no newer put or delete raced it).
    Relocate {
        key: Box<[u8]>,
        value: Bytes,
        expected: BlobLoc,
        ack: Ack,
    },
    /// Compaction: carry a tombstone forward out of a generation being
    /// retired, if the key still has no value. `hides_generation` is the
    /// newest generation that may hold a value it hides.
    Tombstone {
        key: Box<[u8]>,
        hides_generation: u64,
        ack: Ack,
    },
    /// Compaction: durably mark generations as retired before their
    /// segments are removed.
    Retire {
        generations: Vec<u64>,
        ack: Ack,
    },
}

impl Request {
    fn weight(&self) -> usize {
        match self {
            Request::Put { key, value, .. } | Request::Relocate { key, value, .. } => {
                key.len() + value.len()
            }
            Request::Delete { key, .. } | Request::Tombstone { key, .. } => key.len(),
            Request::Retire { generations, .. } => generations.len() * 8,
            Request::Flush { .. } => 0,
        }
    }

    fn ack(&self) -> &Ack {
        match self {
            Request::Put { ack, .. }
            | Request::Delete { ack, .. }
            | Request::Flush { ack }
            | Request::Relocate { ack, .. }
            | Request::Tombstone { ack, .. }
            | Request::Retire { ack, .. } => ack,
        }
    }

    /// The key of a user operation (put or delete).
    fn user_key(&self) -> Option<&[u8]> {
        match self {
            Request::Put { key, .. } | Request::Delete { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// The key of retire markers. Entries are told apart by their flags, so
/// this never collides with a user key.
pub(crate) const RETIRE_KEY: &[u8] = b"geoshard:retire";

/// Why a read-only store refuses writes.
pub(crate) const READ_ONLY: &str = "the store is read-only: it was opened with Options::salvage \
    and its manifest reached too few nodes for a later open to be sure to see this session; \
    repair to bring the nodes back, then open it again";

/// How often an idle committer checks that local node directories exist.
pub(crate) const NODE_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Why a commit attempt failed; rebuilt into an `Error` for every waiting
/// caller.
#[derive(Clone, Debug)]
pub(crate) enum Failure {
    /// The stripe could not be planned (no node, or the strict policy).
    Plan(PlanRefused),
    Superseded {
        node: String,
        reason: String,
    },
    /// Appends failed on these nodes (marked now): another attempt may
    /// succeed.
    Retry(Vec<String>),
    Internal(String),
}

impl Failure {
    pub(crate) fn to_error(&self) -> Error {
        match self {
            Failure::Plan(refused) => refused.to_error(),
            Failure::Superseded { node, reason } => Error::Superseded {
                node: node.clone(),
                reason: reason.clone(),
            },
            Failure::Retry(nodes) => Error::WriteRefused {
                reason: format!(
                    "appends to {} failed and no retry succeeded in time; the put did not \
                     happen (bring the nodes back, or see Store::health)",
                    nodes.join(", ")
                ),
            },
            Failure::Internal(reason) => Error::WriteRefused {
                reason: reason.clone(),
            },
        }
    }
}

/// What the committer's queue carries.
pub(crate) enum Event {
    /// A request from the store.
    Request(Request),
    /// The writer's answer for a commit.
    Written(JobResult),
    /// The store is closing: commit what is queued, then stop.
    Shutdown,
}

/// How much a step of a stepped committer leaves outstanding (the
/// simulator's choice; a threaded committer decides by itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(any(test, feature = "testing")), allow(dead_code))]
pub(crate) enum Overlap {
    /// The commit is written, published and answered within the step.
    None,
    /// The commit is written but left unpublished: the next step seals the
    /// next commit while it is outstanding.
    Written,
    /// The commit is sealed but not written yet: the next step writes it,
    /// then the next commit.
    Sealed,
}

/// Commits outstanding at most: one being written, one sealed behind it.
const DEPTH: usize = 2;

/// Stripes the committer may seal ahead of the writer.
const STRIPES_AHEAD: usize = 2;

/// Where the writer continues after open.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WriterStart {
    /// The first stripe id of the session: `session << 40 | 1`.
    pub next_stripe_id: u64,
}

/// Where the stripes the committer seals go.
enum Link {
    /// The writer thread (production); answers come back as events.
    Thread {
        tx: Option<SyncSender<WriterMsg>>,
        handle: Option<std::thread::JoinHandle<()>>,
    },
    /// Held here and handled when a step says (a stepped store).
    Inline {
        queue: VecDeque<WriterMsg>,
        core: WriterCore,
    },
}

/// A generation and the bytes written to it so far.
#[derive(Clone, Copy, Debug)]
struct GenerationState {
    generation: u64,
    bytes: u64,
}

/// A retry of a failed commit: it keeps its deadline, its count and its
/// generation.
#[derive(Clone, Copy, Debug)]
struct RetryOf {
    attempts: usize,
    deadline: Duration,
    generation: GenerationState,
}

/// A sealed commit, waiting for the writer's answer.
struct Outstanding {
    job: u64,
    batch: Vec<Request>,
    /// Per request: whether a delete found its key, whether a relocate or
    /// tombstone was written.
    answers: Vec<bool>,
    /// The attempt's stripe ids: `first..end`.
    first: u64,
    end: u64,
    /// The generation state before it was sealed (restored when it and the
    /// commits after it are sealed again) and the one it wrote in.
    before: GenerationState,
    generation: GenerationState,
    attempts: usize,
    deadline: Duration,
    result: Option<Outcome>,
    /// When it was sealed (for the commit latency metric).
    sealed_at: Instant,
}

/// Requests received and not yet sealed.
#[derive(Default)]
struct Gathering {
    requests: VecDeque<Request>,
    weight: usize,
    flushes: usize,
    /// When the oldest waiting request had arrived, at the latest (the
    /// wall clock: a gathering wait).
    since: Option<Instant>,
}

impl Gathering {
    fn push_back(&mut self, request: Request) {
        self.add(&request);
        self.requests.push_back(request);
    }

    fn add(&mut self, request: &Request) {
        self.weight += request.weight();
        self.flushes += usize::from(matches!(request, Request::Flush { .. }));
        self.since.get_or_insert_with(Instant::now);
    }

    /// Puts requests that were sealed once back in front, in order.
    fn push_front_all(&mut self, batch: Vec<Request>) {
        for request in batch.into_iter().rev() {
            self.add(&request);
            self.requests.push_front(request);
        }
    }

    fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// The next commit's requests: up to a stripe's worth of bytes, at most
    /// `max_requests`, ending at the first flush.
    fn take(&mut self, capacity: usize, max_requests: usize) -> Vec<Request> {
        let mut batch = Vec::new();
        let mut weight = 0;
        while batch.len() < max_requests && weight < capacity {
            let Some(request) = self.requests.pop_front() else {
                break;
            };
            let flush = matches!(request, Request::Flush { .. });
            weight += request.weight();
            self.weight -= request.weight();
            self.flushes -= usize::from(flush);
            batch.push(request);
            if flush {
                break;
            }
        }
        // What is left arrived after what was taken, and has waited no
        // longer than `since` says: it is sealed no later than the
        // interval after it.
        if self.requests.is_empty() {
            self.since = None;
        }
        batch
    }

    /// Every request, in order.
    fn drain(&mut self) -> Vec<Request> {
        self.weight = 0;
        self.flushes = 0;
        self.since = None;
        self.requests.drain(..).collect()
    }
}

pub(crate) struct Committer {
    inner: Arc<Inner>,
    rx: Receiver<Event>,
    open: OpenStripe,
    /// The column payloads of the stripe being sealed, k + m.
    payloads: Vec<Vec<u8>>,
    /// Payload sets the writer gave back, for reuse.
    spare: Arc<Buffers>,
    next_stripe_id: u64,
    generation: u64,
    generation_bytes: u64,
    /// When the nodes were last checked (by the store's clock).
    nodes_checked: Duration,
    /// The session this committer writes (every stripe id carries it).
    session: u64,
    link: Link,
    /// Sealed commits, oldest first, answered in this order.
    outstanding: VecDeque<Outstanding>,
    gathering: Gathering,
    next_job: u64,
    /// A shutdown was asked: seal what is gathered without waiting.
    closing: bool,
    /// The writer thread stopped (it panicked): nothing can be written.
    writer_gone: bool,
}

impl Committer {
    /// A committer whose writer runs on its own thread, answering through
    /// `events` (a sender of the committer's own queue).
    pub fn threaded(
        inner: Arc<Inner>,
        rx: Receiver<Event>,
        events: Sender<Event>,
        start: WriterStart,
    ) -> Result<Committer> {
        let (tx, writer_rx) = std::sync::mpsc::sync_channel(STRIPES_AHEAD);
        let spare = Arc::new(Buffers::default());
        let core = WriterCore::new(Arc::clone(&inner), Arc::clone(&spare));
        let handle = std::thread::Builder::new()
            .name("geoshard-writer".into())
            .spawn(move || super::writer::run(core, writer_rx, events))
            .map_err(|e| Error::io("starting the writer thread", e))?;
        let link = Link::Thread {
            tx: Some(tx),
            handle: Some(handle),
        };
        Ok(Committer::new(inner, rx, start, link, spare))
    }

    /// A committer whose writer runs inline, when a step says.
    pub fn stepped(inner: Arc<Inner>, rx: Receiver<Event>, start: WriterStart) -> Committer {
        let spare = Arc::new(Buffers::default());
        let core = WriterCore::new(Arc::clone(&inner), Arc::clone(&spare));
        let link = Link::Inline {
            queue: VecDeque::new(),
            core,
        };
        Committer::new(inner, rx, start, link, spare)
    }

    fn new(
        inner: Arc<Inner>,
        rx: Receiver<Event>,
        start: WriterStart,
        link: Link,
        spare: Arc<Buffers>,
    ) -> Committer {
        let nodes_checked = inner.clock.now();
        let code = inner.layout.code();
        let open = OpenStripe::new(
            code.data_count,
            inner.options.column_len_target,
            inner.options.split_len_min,
        );
        Committer {
            payloads: vec![Vec::new(); code.data_count + code.parity_count],
            spare,
            inner,
            rx,
            open,
            next_stripe_id: start.next_stripe_id,
            generation: 0,
            generation_bytes: 0,
            nodes_checked,
            session: super::open::session_of(start.next_stripe_id),
            link,
            outstanding: VecDeque::new(),
            gathering: Gathering::default(),
            next_job: 0,
            closing: false,
            writer_gone: false,
        }
    }

    fn stripe_capacity(&self) -> usize {
        self.inner.options.column_len_target * self.inner.layout.code().data_count
    }

    /// Runs until the store asks it to stop and everything queued is
    /// answered.
    pub fn run(mut self) {
        let interval = self.inner.options.commit_interval;
        let delay = self.inner.options.commit_delay;
        let capacity = self.stripe_capacity();
        loop {
            // Idle wake-ups double as the node watchdog: a directory deleted
            // under a running store is noticed within a second; under
            // steady load there is no idle moment, so check every interval
            // anyway.
            let now = self.inner.clock.now();
            if now.saturating_sub(self.nodes_checked) >= NODE_CHECK_INTERVAL {
                self.inner.lifecycle().check_nodes();
                self.inner
                    .metrics
                    .observe_nodes(&self.inner.nodes, self.inner.repair_queue_len());
                self.nodes_checked = now;
            }
            loop {
                match self.rx.try_recv() {
                    Ok(event) => self.on_event(event),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.closing = true;
                        break;
                    }
                }
            }
            if self.writer_stopped() {
                self.fail_everything();
            }
            if self.closing && self.gathering.is_empty() && self.outstanding.is_empty() {
                break;
            }
            // Behind a commit being written, gather for `commit_interval`
            // (it ends sooner when that commit is durable); with none,
            // for `commit_delay`.
            let waited = self.gathering.since.map(|since| since.elapsed());
            let gather_for = if self.outstanding.is_empty() {
                delay
            } else {
                interval
            };
            if self.may_seal() {
                let due = self.closing
                    || self.gathering.flushes > 0
                    || self.gathering.weight >= capacity
                    || waited.is_some_and(|w| w >= gather_for);
                if due {
                    let batch = self.gathering.take(capacity, usize::MAX);
                    self.seal_job(batch, None);
                    continue;
                }
            }
            // Wait for a request, or the writer's answer, or the end of the
            // gathering interval.
            let timeout = match waited {
                Some(w) if self.may_seal() => gather_for.saturating_sub(w),
                _ => NODE_CHECK_INTERVAL,
            }
            .min(NODE_CHECK_INTERVAL);
            match self.rx.recv_timeout(timeout) {
                Ok(event) => self.on_event(event),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // The writer holds a sender while it runs.
                    self.writer_gone |= !self.outstanding.is_empty();
                    self.closing = true;
                }
            }
        }
        if let Link::Thread { tx, handle } = &mut self.link {
            drop(tx.take());
            if let Some(handle) = handle.take()
                && handle.join().is_err()
            {
                tracing::error!("the writer thread panicked");
            }
        }
    }

    /// Whether another commit may be sealed now: fewer than [`DEPTH`]
    /// outstanding, and no failure waiting to be handled (a commit sealed
    /// behind it would be sealed again anyway).
    fn may_seal(&self) -> bool {
        !self.gathering.is_empty() && self.outstanding.len() < DEPTH && !self.failure_pending()
    }

    /// Whether an outstanding commit failed and is not handled yet.
    fn failure_pending(&self) -> bool {
        self.outstanding
            .iter()
            .any(|o| matches!(o.result, Some(Outcome::Failed { .. })))
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Request(request) => self.gathering.push_back(request),
            Event::Written(result) => {
                self.on_result(result);
                self.settle(0);
            }
            Event::Shutdown => self.closing = true,
        }
    }

    /// Runs one commit of what is queued now (at most `max_requests`
    /// requests, a stripe's worth of bytes, up to the first flush) as
    /// `overlap` says, or, with nothing queued, finishes every outstanding
    /// commit; returns how many requests it answered. The simulator's
    /// committer step.
    pub fn step(&mut self, max_requests: usize, overlap: Overlap) -> usize {
        let capacity = self.stripe_capacity();
        // Before the next commit is taken from the queue: a full pipeline
        // gives way, and a failure is handled (the commits behind it go
        // back to the front of the queue, ahead of what is taken next).
        let mut answered = 0;
        if self.outstanding.len() >= DEPTH || self.failure_pending() {
            answered += self.settle_inline(DEPTH - 1);
        }
        while self.gathering.requests.len() < max_requests
            && self.gathering.weight < capacity
            && self.gathering.flushes == 0
        {
            match self.rx.try_recv() {
                Ok(Event::Request(request)) => self.gathering.push_back(request),
                Ok(Event::Written(result)) => self.on_result(result),
                Ok(Event::Shutdown) => self.closing = true,
                Err(_) => break,
            }
        }
        let batch = self.gathering.take(capacity, max_requests);
        if batch.is_empty() {
            return answered + self.settle_inline(0);
        }
        self.seal_job(batch, None);
        match overlap {
            Overlap::None => answered + self.settle_inline(0),
            Overlap::Written => answered + self.settle_inline(1),
            Overlap::Sealed => {
                // Write every commit but the newest, and answer them.
                self.run_inline(true);
                answered + self.settle(1)
            }
        }
    }

    /// A stepped store: handles every message the writer holds and answers
    /// commits in order until at most `keep` are outstanding (retries and
    /// failures included).
    fn settle_inline(&mut self, keep: usize) -> usize {
        let mut answered = 0;
        loop {
            self.run_inline(false);
            let before = self.outstanding.len();
            answered += self.settle(keep);
            // Everything written: done once few enough are left, or when
            // nothing more can be answered.
            let unwritten = self.outstanding.iter().any(|o| o.result.is_none());
            let left = self.outstanding.len();
            if !unwritten && (left <= keep || left == before) {
                return answered;
            }
        }
    }

    /// A stepped store: handles the messages the writer holds (all of
    /// them, or all but the newest commit's).
    fn run_inline(&mut self, spare_newest: bool) {
        let newest = self.outstanding.back().map(|o| o.job);
        let mut results = Vec::new();
        if let Link::Inline { queue, core } = &mut self.link {
            while let Some(msg) = queue.front() {
                let job = match msg {
                    WriterMsg::Stripe { job, .. } | WriterMsg::End { job, .. } => Some(*job),
                    WriterMsg::Resume => None,
                };
                if spare_newest && job.is_some() && job == newest {
                    break;
                }
                let Some(msg) = queue.pop_front() else {
                    break;
                };
                results.extend(core.handle(msg));
            }
        }
        for result in results {
            self.on_result(result);
        }
    }

    fn send(&mut self, msg: WriterMsg) {
        match &mut self.link {
            Link::Thread { tx, .. } => {
                // The writer only stops when this end is dropped.
                if let Some(tx) = tx
                    && tx.send(msg).is_err()
                {
                    self.writer_gone = true;
                }
            }
            Link::Inline { queue, .. } => queue.push_back(msg),
        }
    }

    /// Whether the writer thread stopped (it panicked: its end of the
    /// queue is gone, or its thread finished while commits wait for it).
    fn writer_stopped(&mut self) -> bool {
        if let Link::Thread {
            handle: Some(handle),
            ..
        } = &self.link
            && !self.outstanding.is_empty()
            && handle.is_finished()
        {
            self.writer_gone = true;
        }
        self.writer_gone
    }

    /// With the writer gone, fails every outstanding and gathered request
    /// (unacknowledged writes: each landed whole or not at all, D4)
    /// instead of leaving its caller waiting for ever.
    fn fail_everything(&mut self) {
        let reason = "the store's writer thread stopped; the write was not acknowledged \
            (close the store and open it again)";
        let outstanding: Vec<Outstanding> = self.outstanding.drain(..).collect();
        let gathered = self.gathering.drain();
        let requests = outstanding
            .iter()
            .flat_map(|o| o.batch.iter())
            .chain(gathered.iter());
        for req in requests {
            self.inner.stats.write_failures.inc();
            req.ack().send(Err(Error::WriteRefused {
                reason: reason.into(),
            }));
        }
        if !self.closing {
            tracing::error!("the writer thread stopped: writes fail until the store is reopened");
        }
    }

    /// Takes the writer's answer for a commit.
    fn on_result(&mut self, result: JobResult) {
        if let Some(o) = self.outstanding.iter_mut().find(|o| o.job == result.job) {
            o.result = Some(result.outcome);
        }
    }

    /// Publishes and answers outstanding commits in order, while the oldest
    /// has its answer and more than `keep` are outstanding. A failed commit
    /// is handled (whatever `keep` says) once every commit behind it is
    /// answered (they were not written): its attempt discarded, itself
    /// sealed again or failed, the ones behind it put back to be sealed
    /// again. Returns how many requests were answered.
    fn settle(&mut self, keep: usize) -> usize {
        let mut answered = 0;
        while let Some(front) = self.outstanding.front() {
            match &front.result {
                None => break,
                Some(Outcome::Written(_)) => {
                    if self.outstanding.len() <= keep {
                        break;
                    }
                    let Some(done) = self.outstanding.pop_front() else {
                        break;
                    };
                    answered += self.finish_written(done);
                }
                Some(Outcome::Failed { .. } | Outcome::Skipped) => {
                    if self.outstanding.iter().any(|o| o.result.is_none()) {
                        break;
                    }
                    answered += self.handle_failure();
                }
            }
        }
        answered
    }

    fn finish_written(&mut self, done: Outstanding) -> usize {
        let Outstanding {
            batch,
            answers,
            result,
            sealed_at,
            job,
            first,
            ..
        } = done;
        let Some(Outcome::Written(written)) = result else {
            return 0;
        };
        let metrics = &self.inner.metrics;
        let bytes: u64 = written
            .iter()
            .flat_map(|w| &w.info.columns)
            .map(|c| u64::from(c.len))
            .sum();
        let handoffs: usize = written.iter().map(|w| w.info.header.handoffs.len()).sum();
        metrics
            .commit_seconds
            .record(super::metrics::seconds_since(sealed_at));
        metrics.commit_bytes.record(bytes as f64);
        metrics.commit_requests.record(batch.len() as f64);
        self.inner.stats.handoff_columns.add(handoffs as u64);
        tracing::debug!(
            job,
            first_stripe = first,
            stripes = written.len(),
            requests = batch.len(),
            bytes,
            handoffs,
            "commit durable"
        );
        self.publish(&batch, written);
        for (i, req) in batch.iter().enumerate() {
            let answer = match req {
                Request::Delete { .. } | Request::Relocate { .. } | Request::Tombstone { .. } => {
                    answers[i]
                }
                _ => true,
            };
            // Counted here, so the blocking and the async API count the
            // same: durable user writes.
            match req {
                Request::Put { .. } => self.inner.stats.puts.inc(),
                Request::Delete { .. } => self.inner.stats.deletes.inc(),
                _ => {}
            }
            if matches!(req, Request::Put { .. } | Request::Delete { .. }) {
                metrics
                    .write_seconds
                    .record(super::metrics::seconds_since(req.ack().submitted()));
            }
            // A caller that gave up waiting has dropped its end.
            req.ack().send(Ok(answer));
        }
        batch.len()
    }

    /// The oldest outstanding commit failed, and every commit behind it
    /// has been answered (skipped).
    fn handle_failure(&mut self) -> usize {
        let Some(failed) = self.outstanding.pop_front() else {
            return 0;
        };
        let behind: Vec<Outstanding> = self.outstanding.drain(..).collect();
        // Everything sealed from the failed commit on is undone: its
        // generation state too (a retry stays in the attempt's generation).
        self.generation = failed.before.generation;
        self.generation_bytes = failed.before.bytes;
        for later in behind.into_iter().rev() {
            self.gathering.push_front_all(later.batch);
        }
        self.send(WriterMsg::Resume);
        let (failure, wrote) = match failed.result {
            Some(Outcome::Failed { failure, wrote }) => (failure, wrote),
            // Cannot come first; sealed again like the ones behind.
            _ => {
                self.gathering.push_front_all(failed.batch);
                return 0;
            }
        };
        if wrote {
            self.discard_attempt(failed.first, failed.end);
        }
        let attempts_max = self.inner.nodes.len() + 1;
        let retry = matches!(failure, Failure::Retry(_))
            && failed.attempts < attempts_max
            && self.inner.clock.now() < failed.deadline;
        if retry {
            if let Failure::Retry(nodes) = &failure {
                tracing::warn!(nodes = ?nodes, attempts = failed.attempts,
                    "commit attempt failed; sealing again");
            }
            self.inner.stats.commit_retries.inc();
            self.seal_job(
                failed.batch,
                Some(RetryOf {
                    attempts: failed.attempts + 1,
                    deadline: failed.deadline,
                    generation: failed.generation,
                }),
            );
            0
        } else {
            // The generation it started (if it did) may hold its columns:
            // later commits go on in it, so it is tracked (and compacted)
            // like any other.
            self.generation = failed.generation.generation;
            self.generation_bytes = failed.generation.bytes;
            self.inner.stats.write_failures.inc();
            for req in &failed.batch {
                req.ack().send(Err(failure.to_error()));
            }
            failed.batch.len()
        }
    }

    /// Seals `batch` as one commit (or as a retry of one) and hands its
    /// stripes to the writer; it is then outstanding.
    fn seal_job(&mut self, batch: Vec<Request>, retry: Option<RetryOf>) {
        let before = GenerationState {
            generation: self.generation,
            bytes: self.generation_bytes,
        };
        let (attempts, deadline) = match retry {
            Some(r) => {
                self.generation = r.generation.generation;
                self.generation_bytes = r.generation.bytes;
                (r.attempts, r.deadline)
            }
            None => {
                // A commit stays in one generation, retries included: a new
                // one starts only with a new commit.
                if self.generation == 0
                    || self.generation_bytes >= self.inner.options.segment_len_target
                {
                    self.generation = self.next_stripe_id;
                    self.generation_bytes = 0;
                }
                // The store's clock, not the wall: whether a retry still
                // fits must come out the same on every run of a simulated
                // seed.
                (1, self.inner.clock.now() + self.inner.options.put_timeout)
            }
        };
        let generation = GenerationState {
            generation: self.generation,
            bytes: self.generation_bytes,
        };
        let job = self.next_job;
        self.next_job += 1;
        let first = self.next_stripe_id;
        let sealed_at = Instant::now();
        let _span = tracing::debug_span!(
            "commit_seal",
            job,
            requests = batch.len(),
            first_stripe = first
        )
        .entered();
        let mut answers = vec![false; batch.len()];
        // The commit before this one is not published yet: what it does
        // to the index is taken from its batch.
        let (prev_batch, prev_answers) = match self.outstanding.back_mut() {
            Some(prev) => (
                std::mem::take(&mut prev.batch),
                std::mem::take(&mut prev.answers),
            ),
            None => (Vec::new(), Vec::new()),
        };
        let before_keys = effects(&prev_batch, &prev_answers);
        let sealed = self.pack_and_send(job, &batch, &mut answers, before_keys);
        if let Some(prev) = self.outstanding.back_mut() {
            prev.batch = prev_batch;
            prev.answers = prev_answers;
        }
        self.open.clear();
        self.send(WriterMsg::End {
            job,
            failure: sealed.err(),
        });
        self.outstanding.push_back(Outstanding {
            job,
            batch,
            answers,
            first,
            end: self.next_stripe_id,
            before,
            generation,
            attempts,
            deadline,
            result: None,
            sealed_at,
        });
    }

    /// Records the stripe ids `first..end` of a failed commit attempt as
    /// discarded in the manifest (docs/DURABILITY.md, D4). Its columns may
    /// be durable on some nodes; the nodes that would show it was never
    /// acknowledged (the ones that failed) may be rebuilt or adopted before
    /// the next open, and without this record that open would take what is
    /// left of the attempt for a stripe it must show, and refuse to open
    /// when it cannot be decoded. If the manifest cannot be written now,
    /// the evidence rule still decides at the next open, as before. Only an
    /// attempt that appended something needs it: one refused before (a
    /// plan refused, a read-only or superseded store) left no column
    /// anywhere.
    fn discard_attempt(&mut self, first: u64, end: u64) {
        if end <= first || crate::mutation::enabled(crate::mutation::Mutation::KeepFailedAttempts) {
            return;
        }
        let recorded = self.inner.update_manifest(|m| {
            crate::format::add_range(&mut m.shared.discarded, first, end - 1);
        });
        if let Err(e) = recorded {
            tracing::warn!(first, last = end - 1, error = %e,
                "could not record a failed commit attempt as discarded yet; the next manifest \
                 update that reaches a quorum will");
            self.inner.manifests.defer_discard(first, end - 1);
        }
    }

    fn pack_and_send(
        &mut self,
        job: u64,
        batch: &[Request],
        answers: &mut [bool],
        before: HashMap<&[u8], bool>,
    ) -> Result<(), Failure> {
        self.check_writable(batch)?;
        self.open.clear();
        let commit_first = self.next_stripe_id;
        // Only the last operation on a key in a commit is written: no one can
        // have observed an earlier one, since none is acknowledged before the
        // whole commit is durable. So a commit holds at most one entry (or
        // one set of parts) per key, which is what recovery relies on.
        let mut keys = BatchKeys {
            last_op: last_ops(batch),
            exists: HashMap::new(),
            carried: HashMap::new(),
            before,
        };
        keys.carried = carried_tombstones(batch, &keys.last_op);
        for (i, req) in batch.iter().enumerate() {
            let (key, value, flags, hides) = match self.entry_for(i, req, &keys, answers) {
                Packed::Skip => continue,
                Packed::Retire(payload) => {
                    self.place_all(
                        job,
                        commit_first,
                        i,
                        RETIRE_KEY,
                        Some(&payload),
                        EntryFlags::RETIRE,
                        0,
                    )?;
                    continue;
                }
                Packed::Place {
                    key,
                    value,
                    flags,
                    hides,
                } => (key, value, flags, hides),
            };
            if req.user_key().is_some() {
                keys.exists.insert(key, value.is_some());
                if keys.last_op.get(key) != Some(&i) {
                    continue;
                }
            }
            self.place_all(job, commit_first, i, key, value, flags, hides)?;
        }
        if !self.open.is_empty() {
            self.seal_and_send(job, commit_first)?;
        }
        Ok(())
    }

    /// Places every part of one entry, sealing stripes as they fill. A
    /// tombstone records `hides` (the newest generation that may hold a
    /// value it hides) in its `blob_len`.
    #[allow(clippy::too_many_arguments)]
    fn place_all(
        &mut self,
        job: u64,
        commit_first: u64,
        request: usize,
        key: &[u8],
        value: Option<&[u8]>,
        flags: EntryFlags,
        hides: u64,
    ) -> Result<(), Failure> {
        let mut part = 0;
        while let Placed::StripeFull { resume_part } =
            self.open.place(request, key, value, flags, part)
        {
            self.seal_and_send(job, commit_first)?;
            part = resume_part;
        }
        if flags.contains(EntryFlags::TOMBSTONE) {
            self.open.set_last_blob_len(hides);
        }
        Ok(())
    }

    /// Seals the open stripe (entry tables, parity, checksums), plans it,
    /// and hands it to the writer.
    fn seal_and_send(&mut self, job: u64, commit_first: u64) -> Result<(), Failure> {
        // What the batch read of the index so far (whether a deleted key
        // existed, a relocated value's location, a carried tombstone's key,
        // and what a compaction that retires a generation found live) is
        // trusted only if no page of its base was lost meanwhile (C9): else
        // nothing more of the commit is written, and it fails. Asked before
        // each stripe goes out, so no stripe that read a lost page is ever
        // written (one a crash left would be visible at open).
        if !self.inner.index_intact() {
            return Err(Failure::Internal(super::inner::INDEX_LOST.into()));
        }
        let code = self.inner.layout.code();
        let (k, m) = (code.data_count, code.parity_count);
        let stripe_id = self.take_stripe_id()?;
        let table_lens = self.fill_data_columns(k)?;
        let (column_lens, column_checksums, stripe_len) = self.encode_parity(k, m)?;

        let inner = Arc::clone(&self.inner);
        let io = inner.stripe_io();
        let homes: Vec<NodeId> = inner.layout.placement(stripe_id).columns().to_vec();
        let plan = io
            .plan_stripe(stripe_id, &column_lens)
            .map_err(Failure::Plan)?;
        let header = ColumnHeader {
            stripe_id,
            generation: self.generation,
            data_count: k as u16,
            parity_count: m as u16,
            column_index: 0,
            column_lens,
            column_checksums,
            placement: homes
                .iter()
                .map(|id| self.inner.layout.node(*id).name.clone())
                .collect(),
            entry_table_lens: table_lens,
            commit: CommitStamp {
                commit_first_stripe_id: commit_first,
            },
            handoffs: io.handoffs_of(stripe_id, &plan),
        };
        let headers: Vec<ColumnHeader> = (0..k + m)
            .map(|c| ColumnHeader {
                column_index: c as u16,
                ..header.clone()
            })
            .collect();
        self.generation_bytes += stripe_len as u64;
        let parts = self.placed_parts();
        self.open.clear();
        // The filled payloads go to the writer; the next stripe fills a
        // set it gave back.
        let spare = self.spare.take().unwrap_or_else(|| vec![Vec::new(); k + m]);
        let payloads = std::mem::replace(&mut self.payloads, spare);
        self.send(WriterMsg::Stripe {
            job,
            stripe: SealedStripe {
                stripe_id,
                generation: self.generation,
                plan,
                headers,
                payloads,
                homes,
                parts,
            },
        });
        Ok(())
    }

    /// The next stripe id of this session (published for readers of
    /// `next_stripe_id`).
    fn take_stripe_id(&mut self) -> Result<u64, Failure> {
        let stripe_id = self.next_stripe_id;
        if super::open::session_of(stripe_id) != self.session {
            return Err(Failure::Internal(
                "this session used all of its stripe ids (2^40); reopen the store".into(),
            ));
        }
        self.next_stripe_id += 1;
        self.inner
            .next_stripe_id
            .store(self.next_stripe_id, std::sync::atomic::Ordering::Release);
        Ok(stripe_id)
    }

    /// Fills the data columns' payloads: entry table, then blob bytes (an
    /// empty data column has no payload at all and is never stored).
    /// Returns each data column's entry table length.
    fn fill_data_columns(&mut self, k: usize) -> Result<Vec<u32>, Failure> {
        let mut table_lens = vec![0u32; k];
        let mut entries: Vec<Entry> = Vec::new();
        for (c, col) in self.open.columns.iter().enumerate() {
            let buf = &mut self.payloads[c];
            buf.clear();
            if col.entries.is_empty() {
                continue;
            }
            entries.clear();
            entries.extend(col.entries.iter().map(|placed| {
                let mut e = placed.entry.clone();
                e.offset += col.table_len as u32;
                e
            }));
            format::encode_entry_table(&entries, buf)
                .map_err(|e| Failure::Internal(format!("encoding an entry table: {e}")))?;
            assert_eq!(buf.len(), col.table_len, "entry table length is additive");
            buf.extend_from_slice(&col.blobs);
            table_lens[c] = col.table_len as u32;
        }
        Ok(table_lens)
    }

    /// Computes the parity columns over the data columns taken as
    /// zero-padded to the stripe length (the padding is never stored, nor
    /// written out). Returns every column's
    /// length and checksum, and the stripe length.
    fn encode_parity(
        &mut self,
        k: usize,
        m: usize,
    ) -> Result<(Vec<u32>, Vec<u32>, usize), Failure> {
        let lens: Vec<u32> = (0..k + m)
            .map(|c| {
                if c < k {
                    self.payloads[c].len() as u32
                } else {
                    0
                }
            })
            .collect();
        let stripe_len = lens.iter().copied().max().unwrap_or(0) as usize;

        // Parity over the data columns as they are: the codec takes the
        // short ones as zero-padded to the stripe length.
        for buf in self.payloads.iter_mut().skip(k) {
            buf.resize(stripe_len, 0);
        }
        {
            let (data, parity) = self.payloads.split_at_mut(k);
            let data_refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
            let mut parity_refs: Vec<&mut [u8]> =
                parity.iter_mut().map(Vec::as_mut_slice).collect();
            self.inner
                .codec
                .encode(&data_refs, &mut parity_refs)
                .map_err(|e| Failure::Internal(format!("encoding parity: {e}")))?;
        }
        let mut column_lens = lens;
        for len in column_lens.iter_mut().skip(k) {
            *len = stripe_len as u32;
        }
        let column_checksums: Vec<u32> = self.payloads.iter().map(|b| crc32fast::hash(b)).collect();
        Ok((column_lens, column_checksums, stripe_len))
    }

    /// Where each value part of the open stripe lies: (request, part index,
    /// location); the slot is assigned when the stripe is published.
    fn placed_parts(&self) -> Vec<(usize, u32, PartLoc)> {
        let mut parts = Vec::new();
        for (c, col) in self.open.columns.iter().enumerate() {
            for placed in &col.entries {
                if placed.entry.flags != EntryFlags::NONE {
                    continue;
                }
                parts.push((
                    placed.request,
                    placed.entry.part_index,
                    PartLoc {
                        // Assigned when the stripe is published.
                        slot: u32::MAX,
                        offset: placed.entry.offset + col.table_len as u32,
                        len: placed.entry.len,
                        checksum: placed.entry.checksum,
                        column_index: c as u16,
                    },
                ));
            }
        }
        parts
    }

    /// Refuses to write for a store another writer took over, and a batch
    /// with writes in a read-only store.
    fn check_writable(&self, batch: &[Request]) -> Result<(), Failure> {
        if let Some((node, reason)) = self.inner.nodes.superseded_by() {
            return Err(Failure::Superseded { node, reason });
        }
        let writes = batch.iter().any(|r| !matches!(r, Request::Flush { .. }));
        if writes
            && self
                .inner
                .read_only
                .load(std::sync::atomic::Ordering::Acquire)
        {
            return Err(Failure::Internal(READ_ONLY.into()));
        }
        if writes
            && self
                .inner
                .index_lost
                .load(std::sync::atomic::Ordering::Acquire)
        {
            return Err(Failure::Internal(super::inner::INDEX_LOST.into()));
        }
        Ok(())
    }
    /// What request `i` of the batch writes, if anything, setting its
    /// answer (whether a delete found its key, whether a relocate or
    /// tombstone was written).
    fn entry_for<'a>(
        &self,
        i: usize,
        req: &'a Request,
        keys: &BatchKeys<'a>,
        answers: &mut [bool],
    ) -> Packed<'a> {
        match req {
            Request::Put { key, value, .. } => Packed::place(key, Some(value), EntryFlags::NONE, 0),
            Request::Delete { key, .. } => {
                answers[i] = match keys.exists.get(&key[..]) {
                    Some(e) => *e,
                    None => keys
                        .before
                        .get(&key[..])
                        .copied()
                        .unwrap_or_else(|| self.inner.index_contains(key)),
                };
                if !answers[i] && crate::mutation::enabled(crate::mutation::Mutation::TombstoneRace)
                {
                    return Packed::Skip;
                }
                // Every value it hides has a lower stripe id, so lies in
                // this generation or an older one (a value of a failed
                // commit the index never saw included).
                let hides = self
                    .generation
                    .max(keys.carried.get(&key[..]).copied().unwrap_or(0));
                Packed::place(key, None, EntryFlags::TOMBSTONE, hides)
            }
            Request::Relocate {
                key,
                value,
                expected,
                ..
            } => {
                // A user operation on the key in this batch, or in the
                // commit before it (not published yet), is newer; so is a
                // relocation there.
                if keys.last_op.contains_key(&key[..])
                    || keys.before.contains_key(&key[..])
                    || self.inner.read_state().index.get(key).as_ref() != Some(expected)
                {
                    return Packed::Skip;
                }
                answers[i] = true;
                Packed::place(key, Some(value), EntryFlags::NONE, 0)
            }
            Request::Tombstone {
                key,
                hides_generation,
                ..
            } => {
                // A user put in this batch hides everything older by
                // itself, a user delete took this one's place above, and
                // a value in the index is newer than the tombstone.
                if keys.last_op.contains_key(&key[..]) {
                    answers[i] = keys.carried.contains_key(&key[..]);
                    return Packed::Skip;
                }
                let exists = keys
                    .before
                    .get(&key[..])
                    .copied()
                    .unwrap_or_else(|| self.inner.index_contains(key));
                if exists {
                    return Packed::Skip;
                }
                answers[i] = true;
                Packed::place(key, None, EntryFlags::TOMBSTONE, *hides_generation)
            }
            Request::Retire { generations, .. } => {
                Packed::Retire(generations.iter().flat_map(|g| g.to_le_bytes()).collect())
            }
            Request::Flush { .. } => Packed::Skip,
        }
    }
    /// Makes a durable commit visible: stripes first, then the index.
    fn publish(&self, batch: &[Request], written: Vec<Written>) {
        let mut parts_by_request: HashMap<usize, Vec<(u32, PartLoc)>> = HashMap::new();
        let last_ops = last_ops(batch);
        let mut state = self.inner.write_state();
        for w in written {
            if w.degraded {
                // Acknowledged without the promise's margin: repair moves
                // its columns where they keep the promise again.
                self.inner.stats.degraded_writes.inc();
                for (c, col) in w.info.columns.iter().enumerate() {
                    if col.is_stored_len() {
                        self.inner.queue_repair(w.info.stripe_id, c as u16);
                    }
                }
            }
            let slot = state.add_stripe(w.info);
            for (request, part_index, mut loc) in w.parts {
                loc.slot = slot;
                parts_by_request
                    .entry(request)
                    .or_default()
                    .push((part_index, loc));
            }
        }
        for (i, req) in batch.iter().enumerate() {
            match req {
                // Puts that were not the last on their key, and relocations
                // that lost a race, wrote no parts.
                Request::Relocate { key, value, .. } | Request::Put { key, value, .. } => {
                    let Some(mut parts) = parts_by_request.remove(&i) else {
                        continue;
                    };
                    parts.sort_by_key(|(p, _)| *p);
                    let loc = if parts.len() == 1 {
                        BlobLoc::Whole(parts[0].1)
                    } else {
                        BlobLoc::split(
                            value.len() as u64,
                            parts.into_iter().map(|(_, l)| l).collect(),
                        )
                    };
                    state.insert_blob(key, loc);
                }
                Request::Delete { key, .. } if last_ops.get(&key[..]) == Some(&i) => {
                    state.remove_blob(key);
                }
                _ => {}
            }
        }
        self.inner.index_full.store(
            state.index.full().is_some(),
            std::sync::atomic::Ordering::Relaxed,
        );
        self.inner
            .entries_since_checkpoint
            .fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What a commit knows of the keys of its batch.
struct BatchKeys<'a> {
    /// The index of the last user operation on each key.
    last_op: HashMap<&'a [u8], usize>,
    /// Whether each key exists as of this point of the batch.
    exists: HashMap<&'a [u8], bool>,
    /// Tombstones compaction carries for keys whose last operation in this
    /// batch is a user delete: that delete's tombstone takes over what they
    /// hide (the newest generation they hide).
    carried: HashMap<&'a [u8], u64>,
    /// Whether each key the commit before this one writes exists once it
    /// is published (it is not yet: see [`effects`]).
    before: HashMap<&'a [u8], bool>,
}

/// What one request of a batch writes.
enum Packed<'a> {
    /// Nothing.
    Skip,
    /// A retire marker listing these generations.
    Retire(Vec<u8>),
    /// An entry: a value, or a tombstone hiding generations up to `hides`.
    Place {
        key: &'a [u8],
        value: Option<&'a [u8]>,
        flags: EntryFlags,
        hides: u64,
    },
}

impl<'a> Packed<'a> {
    fn place(key: &'a [u8], value: Option<&'a [u8]>, flags: EntryFlags, hides: u64) -> Packed<'a> {
        Packed::Place {
            key,
            value,
            flags,
            hides,
        }
    }
}

/// The tombstones compaction carries (see [`BatchKeys::carried`]).
fn carried_tombstones<'a>(
    batch: &'a [Request],
    last_op: &HashMap<&'a [u8], usize>,
) -> HashMap<&'a [u8], u64> {
    let mut carried: HashMap<&[u8], u64> = HashMap::new();
    for req in batch {
        if let Request::Tombstone {
            key,
            hides_generation,
            ..
        } = req
            && let Some(&i) = last_op.get(&key[..])
            && matches!(batch[i], Request::Delete { .. })
            && !crate::mutation::enabled(crate::mutation::Mutation::TombstoneRace)
        {
            let h = carried.entry(&key[..]).or_default();
            *h = (*h).max(*hides_generation);
        }
    }
    carried
}

/// For every key in the batch, the index of its last put or delete.
fn last_ops(batch: &[Request]) -> HashMap<&[u8], usize> {
    let mut last = HashMap::new();
    for (i, req) in batch.iter().enumerate() {
        if let Request::Put { key, .. } | Request::Delete { key, .. } = req {
            last.insert(&key[..], i);
        }
    }
    last
}

/// What publishing a commit will do to the index: per key it writes,
/// whether the key then exists. A commit sealed while this one is
/// outstanding decides against it (docs/DURABILITY.md, "Pipelined
/// commits"), exactly as it would once this one is published.
fn effects<'a>(batch: &'a [Request], answers: &[bool]) -> HashMap<&'a [u8], bool> {
    let mut effects = HashMap::new();
    if batch.is_empty() {
        return effects;
    }
    let last = last_ops(batch);
    for (i, req) in batch.iter().enumerate() {
        match req {
            Request::Put { key, .. } if last.get(&key[..]) == Some(&i) => {
                effects.insert(&key[..], true);
            }
            Request::Delete { key, .. } if last.get(&key[..]) == Some(&i) => {
                effects.insert(&key[..], false);
            }
            Request::Relocate { key, .. } if answers.get(i) == Some(&true) => {
                effects.insert(&key[..], true);
            }
            _ => {}
        }
    }
    effects
}
