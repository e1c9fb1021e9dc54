//! The committer: one thread that turns queued puts and deletes into sealed,
//! durable stripes (group commit).
//!
//! Protocol, per commit (docs/DURABILITY.md, "The plan and the
//! acknowledgement rule"; invariants D1, D3, D4):
//! 1. take the queued requests (until the stripe is full, the oldest has
//!    waited `commit_interval`, or a flush asks);
//! 2. pack them into stripes; seal each stripe (entry tables, parity), plan
//!    a node for every column (home, or a site-safe handoff), and append the
//!    columns to exactly those nodes in parallel, one sync per node;
//! 3. if an append fails, the node is marked and the whole commit is sealed
//!    again under new stripe ids (a retry; the earlier attempt is never
//!    acknowledged); a commit that cannot be planned or runs out of time
//!    fails every request in it;
//! 4. only when every planned column of every stripe is durable: publish the
//!    stripes and index updates, then acknowledge.
//!
//! Every delete writes a tombstone. A commit never changes generation after
//! its first stripe (a retry stays in the attempt's generation).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::Inner;
use super::index::{BlobLoc, PartLoc};
use super::pack::{OpenStripe, Placed};
use super::stripe_io::{PlanRefused, WriteFailed};
use super::stripes::{ColumnInfo, StripeInfo};
use super::submit::Ack;
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
enum Failure {
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
    fn to_error(&self) -> Error {
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

/// Where the writer continues after open.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WriterStart {
    /// The first stripe id of the session: `session << 40 | 1`.
    pub next_stripe_id: u64,
}

pub(crate) struct Committer {
    inner: Arc<Inner>,
    rx: Receiver<Request>,
    open: OpenStripe,
    /// Reused column payload buffers, k + m.
    payloads: Vec<Vec<u8>>,
    next_stripe_id: u64,
    generation: u64,
    generation_bytes: u64,
    /// First stripe id of the commit attempt being written.
    commit_first: u64,
    /// Whether the attempt being written appended anything (only then can
    /// it leave columns behind that need discarding).
    attempt_wrote: bool,
    /// When the nodes were last checked (by the store's clock).
    nodes_checked: Duration,
    /// The session this committer writes (every stripe id carries it).
    session: u64,
}

/// A sealed and written stripe, before it is published.
struct Written {
    info: StripeInfo,
    /// (request, part index, where the part is).
    parts: Vec<(usize, u32, PartLoc)>,
    /// Written without the promise's margin (docs/DURABILITY.md).
    degraded: bool,
}

impl Committer {
    pub fn new(inner: Arc<Inner>, rx: Receiver<Request>, start: WriterStart) -> Committer {
        let nodes_checked = inner.clock.now();
        let code = inner.layout.code();
        let open = OpenStripe::new(
            code.data_count,
            inner.options.column_len_target,
            inner.options.split_len_min,
        );
        Committer {
            payloads: vec![Vec::new(); code.data_count + code.parity_count],
            inner,
            rx,
            open,
            next_stripe_id: start.next_stripe_id,
            generation: 0,
            generation_bytes: 0,
            commit_first: 0,
            attempt_wrote: false,
            nodes_checked,
            session: super::open::session_of(start.next_stripe_id),
        }
    }

    /// Runs until every `Sender` is dropped and the queue is drained.
    pub fn run(mut self) {
        let interval = self.inner.options.commit_interval;
        let code = self.inner.layout.code();
        let stripe_capacity = self.inner.options.column_len_target * code.data_count;
        loop {
            // Idle wake-ups double as the node watchdog: a directory deleted
            // under a running store is noticed within a second.
            let first = match self.rx.recv_timeout(NODE_CHECK_INTERVAL) {
                Ok(first) => first,
                Err(RecvTimeoutError::Timeout) => {
                    self.inner.lifecycle().check_nodes();
                    self.nodes_checked = self.inner.clock.now();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            // Under steady load there is no idle moment: check the nodes
            // every interval anyway, so a vanished directory is noticed.
            let now = self.inner.clock.now();
            if now.saturating_sub(self.nodes_checked) >= NODE_CHECK_INTERVAL {
                self.inner.lifecycle().check_nodes();
                self.nodes_checked = now;
            }
            let deadline = Instant::now() + interval;
            let mut flush = matches!(first, Request::Flush { .. });
            let mut weight = first.weight();
            let mut batch = vec![first];
            while !flush && weight < stripe_capacity {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match self.rx.recv_timeout(left) {
                    Ok(req) => {
                        flush |= matches!(req, Request::Flush { .. });
                        weight += req.weight();
                        batch.push(req);
                    }
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
            self.commit(batch);
        }
    }

    /// Runs one commit of what is queued now (at most `max_requests`
    /// requests, a stripe's worth of bytes, up to the first flush), as the
    /// thread of [`run`](Self::run) would; returns how many requests it
    /// answered. The simulator's committer step.
    pub fn step(&mut self, max_requests: usize) -> usize {
        let code = self.inner.layout.code();
        let stripe_capacity = self.inner.options.column_len_target * code.data_count;
        let mut batch = Vec::new();
        let mut weight = 0;
        while batch.len() < max_requests && weight < stripe_capacity {
            let Ok(request) = self.rx.try_recv() else {
                break;
            };
            let flush = matches!(request, Request::Flush { .. });
            weight += request.weight();
            batch.push(request);
            if flush {
                break;
            }
        }
        let answered = batch.len();
        if answered > 0 {
            self.commit(batch);
        }
        answered
    }

    fn commit(&mut self, batch: Vec<Request>) {
        // The store's clock, not the wall: whether a retry still fits must
        // come out the same on every run of a simulated seed.
        let deadline = self.inner.clock.now() + self.inner.options.put_timeout;
        // A commit stays in one generation, retries included: a new one
        // starts only with a new commit.
        if self.generation == 0 || self.generation_bytes >= self.inner.options.segment_len_target {
            self.generation = self.next_stripe_id;
            self.generation_bytes = 0;
        }
        // A retry per node at most: each failed attempt marks a node.
        let attempts_max = self.inner.nodes.len() + 1;
        let mut attempts = 0;
        let outcome = loop {
            let mut written: Vec<Written> = Vec::new();
            // Per request: whether a delete found its key, whether a relocate
            // or tombstone was written.
            let mut answers = vec![false; batch.len()];
            attempts += 1;
            // The attempt's stripe ids start here, whatever it gets to.
            self.commit_first = self.next_stripe_id;
            self.attempt_wrote = false;
            let result = self.pack_and_write(&batch, &mut written, &mut answers);
            if result.is_err() {
                self.discard_attempt();
            }
            match result {
                Ok(()) => break Ok((written, answers)),
                Err(Failure::Retry(nodes))
                    if attempts < attempts_max && self.inner.clock.now() < deadline =>
                {
                    tracing::warn!(nodes = ?nodes, attempts, "commit attempt failed; sealing again");
                    self.inner.stats.commit_retries.inc();
                }
                Err(failure) => break Err(failure),
            }
        };
        self.open.clear();
        match outcome {
            Ok((written, answers)) => {
                self.publish(&batch, written);
                for (i, req) in batch.iter().enumerate() {
                    let answer = match req {
                        Request::Delete { .. }
                        | Request::Relocate { .. }
                        | Request::Tombstone { .. } => answers[i],
                        _ => true,
                    };
                    // Counted here, so the blocking and the async API
                    // count the same: durable user writes.
                    match req {
                        Request::Put { .. } => self.inner.stats.puts.inc(),
                        Request::Delete { .. } => self.inner.stats.deletes.inc(),
                        _ => {}
                    }
                    // A caller that gave up waiting has dropped its end.
                    req.ack().send(Ok(answer));
                }
            }
            Err(failure) => {
                self.inner.stats.write_failures.inc();
                for req in &batch {
                    req.ack().send(Err(failure.to_error()));
                }
            }
        }
    }

    /// Records the stripe ids of a failed commit attempt as discarded in
    /// the manifest (docs/DURABILITY.md, D4). Its columns may be durable on
    /// some nodes; the nodes that would show it was never acknowledged (the
    /// ones that failed) may be rebuilt or adopted before the next open,
    /// and without this record that open would take what is left of the
    /// attempt for a stripe it must show, and refuse to open when it
    /// cannot be decoded. If the manifest cannot be written now, the
    /// evidence rule still decides at the next open, as before.
    fn discard_attempt(&mut self) {
        // An attempt that appended nothing (a plan refused, a read-only or
        // superseded store) left no column anywhere: nothing to record, and
        // no manifest write for every refused put of a strict store.
        if !self.attempt_wrote
            || crate::mutation::enabled(crate::mutation::Mutation::KeepFailedAttempts)
        {
            return;
        }
        let (first, end) = (self.commit_first, self.next_stripe_id);
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

    fn pack_and_write(
        &mut self,
        batch: &[Request],
        written: &mut Vec<Written>,
        answers: &mut [bool],
    ) -> Result<(), Failure> {
        self.check_writable(batch)?;
        self.open.clear();
        self.commit_first = self.next_stripe_id;
        // Only the last operation on a key in a commit is written: no one can
        // have observed an earlier one, since none is acknowledged before the
        // whole commit is durable. So a commit holds at most one entry (or
        // one set of parts) per key, which is what recovery relies on.
        let mut keys = BatchKeys {
            last_op: last_ops(batch),
            exists: HashMap::new(),
            carried: HashMap::new(),
        };
        keys.carried = carried_tombstones(batch, &keys.last_op);
        for (i, req) in batch.iter().enumerate() {
            let (key, value, flags, hides) = match self.entry_for(i, req, &keys, answers) {
                Packed::Skip => continue,
                Packed::Retire(payload) => {
                    self.place_all(
                        i,
                        RETIRE_KEY,
                        Some(&payload),
                        EntryFlags::RETIRE,
                        0,
                        written,
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
            self.place_all(i, key, value, flags, hides, written)?;
        }
        if !self.open.is_empty() {
            written.push(self.seal_and_write()?);
        }
        Ok(())
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
                    None => self.inner.index_contains(key),
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
                // A user operation on the key in this batch is newer.
                if keys.last_op.contains_key(&key[..])
                    || self.inner.read_state().index.get(key) != Some(expected)
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
                if self.inner.index_contains(key) {
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

    /// Places every part of one entry, sealing stripes as they fill. A
    /// tombstone records `hides` (the newest generation that may hold a
    /// value it hides) in its `blob_len`.
    fn place_all(
        &mut self,
        request: usize,
        key: &[u8],
        value: Option<&[u8]>,
        flags: EntryFlags,
        hides: u64,
        written: &mut Vec<Written>,
    ) -> Result<(), Failure> {
        let mut part = 0;
        while let Placed::StripeFull { resume_part } =
            self.open.place(request, key, value, flags, part)
        {
            written.push(self.seal_and_write()?);
            part = resume_part;
        }
        if flags.contains(EntryFlags::TOMBSTONE) {
            self.open.set_last_blob_len(hides);
        }
        Ok(())
    }

    /// Seals the open stripe (entry tables, parity, checksums) and appends
    /// its column records.
    fn seal_and_write(&mut self) -> Result<Written, Failure> {
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
            column_lens: column_lens.clone(),
            column_checksums: column_checksums.clone(),
            placement: homes
                .iter()
                .map(|id| self.inner.layout.node(*id).name.clone())
                .collect(),
            entry_table_lens: table_lens,
            commit: CommitStamp {
                commit_first_stripe_id: self.commit_first,
            },
            handoffs: io.handoffs_of(stripe_id, &plan),
        };
        let headers: Vec<ColumnHeader> = (0..k + m)
            .map(|c| ColumnHeader {
                column_index: c as u16,
                ..header.clone()
            })
            .collect();
        let payloads: Vec<&[u8]> = self.payloads.iter().map(Vec::as_slice).collect();
        self.attempt_wrote = true;
        let stored = io
            .write_planned(self.generation, &plan, &headers, &payloads)
            .map_err(|failed| self.write_failure(failed))?;
        self.generation_bytes += stripe_len as u64;
        self.inner
            .stats
            .bytes_written
            .add(column_lens.iter().map(|l| u64::from(*l)).sum());

        let parts = self.placed_parts();
        self.open.clear();
        let columns = (0..k + m)
            .map(|c| ColumnInfo {
                len: column_lens[c],
                checksum: column_checksums[c],
                home: Some(homes[c]),
                stored: stored[c],
            })
            .collect();
        Ok(Written {
            info: StripeInfo {
                stripe_id,
                generation: self.generation,
                columns,
                header,
            },
            parts,
            degraded: plan.degraded,
        })
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

    /// Why an attempt's writes failed, as the commit sees it.
    fn write_failure(&self, failed: WriteFailed) -> Failure {
        match failed {
            WriteFailed::Superseded { node, reason } => Failure::Superseded { node, reason },
            WriteFailed::Nodes(nodes) => Failure::Retry(
                nodes
                    .iter()
                    .map(|&n| self.inner.layout.node(n).name.clone())
                    .collect(),
            ),
        }
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
