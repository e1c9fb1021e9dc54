//! The committer: one thread that turns queued puts and deletes into sealed,
//! durable stripes (group commit).
//!
//! Protocol, per commit:
//! 1. take the queued requests (until the stripe is full, the oldest has
//!    waited `commit_interval`, or a flush asks);
//! 2. pack them into stripes; seal each stripe (entry tables, parity) and
//!    append its column records to their nodes in parallel, one sync per node;
//!    a column whose node fails goes to a handoff node, with the same header;
//! 3. only when every stripe of the commit is durable as the write policy
//!    requires: publish the stripes and index updates, then acknowledge.
//!
//! Every column header also names the stripe-id range of the previous
//! acknowledged commit. On open, that is how a stripe that was acknowledged
//! (and must be readable) is told apart from one a crash cut short.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::Instant;

use bytes::Bytes;

use super::Inner;
use super::WritePolicy;
use super::index::{BlobLoc, PartLoc};
use super::pack::{OpenStripe, Placed};
use super::stripes::{ColumnInfo, StripeInfo};
use crate::format::{self, ColumnHeader, CommitStamp, Entry, EntryFlags};
use crate::layout::NodeId;
use crate::node::{AppendBatch, Node, RecordLocation, RecordRef, append_all};
use crate::{Error, Result};

/// A request to the committer; `ack` receives the outcome once durable.
pub(crate) enum Request {
    Put {
        key: Box<[u8]>,
        value: Bytes,
        ack: SyncSender<Result<bool>>,
    },
    Delete {
        key: Box<[u8]>,
        ack: SyncSender<Result<bool>>,
    },
    Flush {
        ack: SyncSender<Result<bool>>,
    },
    /// Compaction: rewrite a live blob, but only if the index still points
    /// where the compactor read it (no newer put or delete raced it).
    Relocate {
        key: Box<[u8]>,
        value: Bytes,
        expected: BlobLoc,
        ack: SyncSender<Result<bool>>,
    },
    /// Compaction: carry a tombstone forward out of a generation being
    /// retired, if the key still has no value.
    Tombstone {
        key: Box<[u8]>,
        ack: SyncSender<Result<bool>>,
    },
    /// Compaction: durably mark generations as retired before their
    /// segments are removed.
    Retire {
        generations: Vec<u64>,
        ack: SyncSender<Result<bool>>,
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

    fn ack(&self) -> &SyncSender<Result<bool>> {
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

/// How often an idle committer checks that local node directories exist.
pub(crate) const NODE_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Why a commit failed; rebuilt into an `Error` for every waiting caller.
#[derive(Clone, Debug)]
enum Failure {
    NotEnoughColumns { needed: usize, available: usize },
    Superseded { node: String, reason: String },
    Refused(String),
    Internal(String),
}

impl Failure {
    fn to_error(&self) -> Error {
        match self {
            Failure::NotEnoughColumns { needed, available } => Error::NotEnoughColumns {
                needed: *needed,
                available: *available,
            },
            Failure::Superseded { node, reason } => Error::Superseded {
                node: node.clone(),
                reason: reason.clone(),
            },
            Failure::Refused(reason) => Error::WriteRefused {
                reason: reason.clone(),
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
    pub next_stripe_id: u64,
    pub acked: Option<(u64, u64)>,
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
    /// Stripe ids of the last acknowledged commit.
    acked: Option<(u64, u64)>,
    /// First stripe id of the commit being written.
    commit_first: u64,
}

/// A sealed and written stripe, before it is published.
struct Written {
    info: StripeInfo,
    /// (request, part index, where the part is).
    parts: Vec<(usize, u32, PartLoc)>,
}

impl Committer {
    pub fn new(inner: Arc<Inner>, rx: Receiver<Request>, start: WriterStart) -> Committer {
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
            acked: start.acked,
            commit_first: 0,
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
                    self.inner.check_nodes();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
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

    fn commit(&mut self, batch: Vec<Request>) {
        let mut written: Vec<Written> = Vec::new();
        // Per request: whether a delete found its key, whether a relocate or
        // tombstone was written.
        let mut answers = vec![false; batch.len()];
        let outcome = self.pack_and_write(&batch, &mut written, &mut answers);
        match outcome {
            Ok(()) => {
                if let (Some(first), Some(last)) = (written.first(), written.last()) {
                    self.acked = Some((first.info.stripe_id, last.info.stripe_id));
                }
                self.publish(&batch, written);
                for (i, req) in batch.iter().enumerate() {
                    let answer = match req {
                        Request::Delete { .. }
                        | Request::Relocate { .. }
                        | Request::Tombstone { .. } => answers[i],
                        _ => true,
                    };
                    // A caller that gave up waiting has dropped its receiver.
                    let _ = req.ack().send(Ok(answer));
                }
            }
            Err(failure) => {
                self.inner.stats.write_failures.inc();
                self.open.clear();
                for req in &batch {
                    let _ = req.ack().send(Err(failure.to_error()));
                }
            }
        }
    }

    fn pack_and_write(
        &mut self,
        batch: &[Request],
        written: &mut Vec<Written>,
        answers: &mut [bool],
    ) -> Result<(), Failure> {
        if let Some((node, reason)) = self.inner.superseded_by() {
            return Err(Failure::Superseded { node, reason });
        }
        self.open.clear();
        self.commit_first = self.next_stripe_id;
        // Only the last operation on a key in a commit is written: no one can
        // have observed an earlier one, since none is acknowledged before the
        // whole commit is durable. So a commit holds at most one entry (or
        // one set of parts) per key, which is what recovery relies on.
        let last_op = last_ops(batch);
        // Whether each key exists as of this point of the batch.
        let mut exists: HashMap<&[u8], bool> = HashMap::new();
        for (i, req) in batch.iter().enumerate() {
            let (key, value, flags): (&[u8], Option<&[u8]>, EntryFlags) = match req {
                Request::Put { key, value, .. } => (key, Some(value), EntryFlags::NONE),
                Request::Delete { key, .. } => {
                    answers[i] = match exists.get(&key[..]) {
                        Some(e) => *e,
                        None => self.inner.index_contains(key),
                    };
                    (key, None, EntryFlags::TOMBSTONE)
                }
                Request::Relocate {
                    key,
                    value,
                    expected,
                    ..
                } => {
                    // A user operation on the key in this batch is newer.
                    if last_op.contains_key(&key[..])
                        || self.inner.read_state().index.get(key) != Some(expected)
                    {
                        continue;
                    }
                    answers[i] = true;
                    (key, Some(value), EntryFlags::NONE)
                }
                Request::Tombstone { key, .. } => {
                    if last_op.contains_key(&key[..]) || self.inner.index_contains(key) {
                        continue;
                    }
                    answers[i] = true;
                    (key, None, EntryFlags::TOMBSTONE)
                }
                Request::Retire { generations, .. } => {
                    let payload: Vec<u8> =
                        generations.iter().flat_map(|g| g.to_le_bytes()).collect();
                    self.place_all(i, RETIRE_KEY, Some(&payload), EntryFlags::RETIRE, written)?;
                    continue;
                }
                Request::Flush { .. } => continue,
            };
            if req.user_key().is_some() {
                exists.insert(key, value.is_some());
                if last_op.get(key) != Some(&i) {
                    continue;
                }
                // A tombstone is needed only if the key is visible before
                // this commit; otherwise there is nothing to hide.
                if value.is_none() && !self.inner.index_contains(key) {
                    continue;
                }
            }
            self.place_all(i, key, value, flags, written)?;
        }
        if !self.open.is_empty() {
            written.push(self.seal_and_write()?);
        }
        Ok(())
    }

    /// Places every part of one entry, sealing stripes as they fill.
    fn place_all(
        &mut self,
        request: usize,
        key: &[u8],
        value: Option<&[u8]>,
        flags: EntryFlags,
        written: &mut Vec<Written>,
    ) -> Result<(), Failure> {
        let mut part = 0;
        while let Placed::StripeFull { resume_part } =
            self.open.place(request, key, value, flags, part)
        {
            written.push(self.seal_and_write()?);
            part = resume_part;
        }
        Ok(())
    }

    /// Seals the open stripe (entry tables, parity, checksums) and appends
    /// its column records.
    fn seal_and_write(&mut self) -> Result<Written, Failure> {
        let code = self.inner.layout.code();
        let (k, m) = (code.data_count, code.parity_count);
        let stripe_id = self.next_stripe_id;
        self.next_stripe_id += 1;
        if self.generation == 0 || self.generation_bytes >= self.inner.options.segment_len_target {
            self.generation = stripe_id;
            self.generation_bytes = 0;
        }

        // Data column payloads: entry table, then blob bytes. An empty data
        // column has no payload at all and is never stored.
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

        // Parity over the data columns zero-padded to the stripe length.
        for buf in &mut self.payloads {
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
        for (c, buf) in self.payloads.iter_mut().enumerate().take(k) {
            buf.truncate(column_lens[c] as usize);
        }
        let column_checksums: Vec<u32> = self.payloads.iter().map(|b| crc32fast::hash(b)).collect();

        let placement = self.inner.layout.placement(stripe_id);
        let homes: Vec<NodeId> = placement.columns().to_vec();
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
                acked_first_stripe_id: self.acked.map_or(0, |a| a.0),
                acked_last_stripe_id: self.acked.map_or(0, |a| a.1),
            },
        };
        let stored = self.write_columns(stripe_id, &header, &homes, &column_lens)?;
        self.generation_bytes += stripe_len as u64;
        self.inner
            .stats
            .bytes_written
            .add(column_lens.iter().map(|l| u64::from(*l)).sum());

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
        })
    }

    /// Appends every stored column to its node (or a handoff), in parallel,
    /// until each is durable somewhere or no node is left to take it.
    fn write_columns(
        &self,
        stripe_id: u64,
        header: &ColumnHeader,
        homes: &[NodeId],
        column_lens: &[u32],
    ) -> Result<Vec<Option<(NodeId, RecordLocation)>>, Failure> {
        let inner = &self.inner;
        let code = inner.layout.code();
        let m = code.parity_count;
        let column_count = homes.len();
        let stored_columns: Vec<usize> =
            (0..column_count).filter(|&c| column_lens[c] > 0).collect();
        let required = stored_columns.len().saturating_sub(m - 1).max(1);

        let mut result: Vec<Option<(NodeId, RecordLocation)>> = vec![None; column_count];
        // Nodes this stripe already uses (a column of a stripe per node).
        let mut used: Vec<NodeId> = Vec::with_capacity(column_count);
        let mut pending: Vec<(usize, NodeId)> = Vec::with_capacity(column_count);
        for &c in &stored_columns {
            if let Some(n) = self.pick_node(stripe_id, homes, c, &used) {
                used.push(n);
                pending.push((c, n));
            }
        }
        if inner.options.write_policy == WritePolicy::Strict {
            self.check_strict(homes, &pending, &stored_columns)?;
        }

        let headers: Vec<ColumnHeader> = (0..column_count)
            .map(|c| {
                let mut h = header.clone();
                h.column_index = c as u16;
                h
            })
            .collect();
        let generation = header.generation;
        let mut rounds = 0;
        while !pending.is_empty() && rounds <= inner.nodes.len() {
            rounds += 1;
            // One append (one sync) per node.
            let mut by_node: Vec<(NodeId, Vec<usize>)> = Vec::new();
            for &(c, n) in &pending {
                match by_node.iter_mut().find(|(id, _)| *id == n) {
                    Some((_, cols)) => cols.push(c),
                    None => by_node.push((n, vec![c])),
                }
            }
            // A node marked down since it was picked is retried elsewhere.
            let mut outcomes: Vec<(NodeId, Vec<usize>, Result<Vec<RecordLocation>>)> = Vec::new();
            let mut live: Vec<(NodeId, Vec<usize>, Arc<dyn Node>)> = Vec::new();
            for (n, cols) in by_node {
                match inner.nodes.get_writable(n) {
                    Some(node) => live.push((n, cols, node)),
                    None => outcomes.push((
                        n,
                        cols,
                        Err(Error::Unavailable {
                            node: inner.nodes.slot(n).name.clone(),
                            reason: "marked down".into(),
                        }),
                    )),
                }
            }
            let records: Vec<Vec<RecordRef<'_>>> = live
                .iter()
                .map(|(_, cols, _)| {
                    cols.iter()
                        .map(|&c| RecordRef {
                            header: &headers[c],
                            payload: &self.payloads[c],
                        })
                        .collect()
                })
                .collect();
            let batches: Vec<AppendBatch<'_>> = live
                .iter()
                .zip(&records)
                .map(|((_, _, node), recs)| (&**node, generation, &recs[..]))
                .collect();
            let results = append_all(&batches);
            outcomes.extend(
                live.into_iter()
                    .zip(results)
                    .map(|((n, cols, _), r)| (n, cols, r)),
            );
            pending.clear();
            for (n, cols, out) in outcomes {
                match out {
                    Ok(locations) if locations.len() == cols.len() => {
                        for (c, loc) in cols.into_iter().zip(locations) {
                            result[c] = Some((n, loc));
                        }
                    }
                    Ok(locations) => {
                        inner.nodes.mark_unwritable(
                            n,
                            format!(
                                "append returned {} locations for {}",
                                locations.len(),
                                cols.len()
                            ),
                        );
                        self.retry_elsewhere(stripe_id, homes, &cols, &mut used, &mut pending);
                    }
                    Err(Error::Superseded { node, reason }) => {
                        // Another writer took over: writing anywhere else
                        // would fork the store. Stop for good.
                        inner.supersede(node, reason);
                        if let Some((node, reason)) = inner.superseded_by() {
                            return Err(Failure::Superseded { node, reason });
                        }
                    }
                    Err(e) => {
                        let reason = format!("append of stripe {stripe_id} failed: {e}");
                        if matches!(e, Error::Unavailable { .. }) {
                            inner.nodes.mark_down(n, reason);
                        } else {
                            // A full disk or an I/O error: its earlier
                            // records are durable, so keep reading them.
                            inner.nodes.mark_unwritable(n, reason);
                        }
                        self.retry_elsewhere(stripe_id, homes, &cols, &mut used, &mut pending);
                    }
                }
            }
        }

        let written = stored_columns
            .iter()
            .filter(|&&c| result[c].is_some())
            .count();
        if written < required {
            return Err(Failure::NotEnoughColumns {
                needed: required,
                available: written,
            });
        }
        if inner.options.write_policy == WritePolicy::Strict {
            let actual: Vec<(usize, NodeId)> = stored_columns
                .iter()
                .filter_map(|&c| result[c].map(|(n, _)| (c, n)))
                .collect();
            self.check_strict(homes, &actual, &stored_columns)?;
        }
        if written < stored_columns.len() {
            inner
                .stats
                .columns_unwritten
                .add((stored_columns.len() - written) as u64);
        }
        Ok(result)
    }

    fn retry_elsewhere(
        &self,
        stripe_id: u64,
        homes: &[NodeId],
        cols: &[usize],
        used: &mut Vec<NodeId>,
        pending: &mut Vec<(usize, NodeId)>,
    ) {
        for &c in cols {
            if let Some(n) = self.pick_node(stripe_id, homes, c, used) {
                used.push(n);
                pending.push((c, n));
            }
        }
    }

    /// The node column `c` goes to: its home if up, else a handoff the layout
    /// ranks first among up nodes the stripe does not use yet, else (only
    /// when every up node is taken) the up node holding the fewest columns.
    fn pick_node(
        &self,
        stripe_id: u64,
        homes: &[NodeId],
        c: usize,
        used: &[NodeId],
    ) -> Option<NodeId> {
        let nodes = &self.inner.nodes;
        let home = homes[c];
        if nodes.is_writable(home) && !used.contains(&home) {
            return Some(home);
        }
        let placement = self.inner.layout.placement(stripe_id);
        let free = self
            .inner
            .layout
            .handoff_candidates(&placement, c, &|n| {
                !nodes.is_writable(n) || used.contains(&n)
            })
            .first()
            .copied();
        if free.is_some() || self.inner.options.write_policy == WritePolicy::Strict {
            return free;
        }
        nodes
            .ids()
            .filter(|&n| nodes.is_writable(n))
            .min_by_key(|n| used.iter().filter(|u| *u == n).count())
    }

    /// Strict policy: the columns' actual nodes must keep the layout's promise.
    fn check_strict(
        &self,
        homes: &[NodeId],
        actual: &[(usize, NodeId)],
        stored_columns: &[usize],
    ) -> Result<(), Failure> {
        let layout = &self.inner.layout;
        if actual.len() < stored_columns.len() {
            let missing: Vec<String> = stored_columns
                .iter()
                .filter(|c| !actual.iter().any(|(a, _)| a == *c))
                .map(|&c| layout.node(homes[c]).name.clone())
                .collect();
            return Err(Failure::Refused(format!(
                "strict write policy: no node can take the columns homed on {} without \
                 breaking the layout's promise; bring the nodes back or use WritePolicy::Available",
                missing.join(", ")
            )));
        }
        let mut columns = homes.to_vec();
        for &(c, n) in actual {
            columns[c] = n;
        }
        if !layout.placement_keeps_promise(&columns) {
            return Err(Failure::Refused(
                "strict write policy: with the nodes that are down, the stripe's columns \
                 would not survive the layout's promise; bring the nodes back or use \
                 WritePolicy::Available"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Makes a durable commit visible: stripes first, then the index.
    fn publish(&self, batch: &[Request], written: Vec<Written>) {
        let mut parts_by_request: HashMap<usize, Vec<(u32, PartLoc)>> = HashMap::new();
        let last_ops = last_ops(batch);
        let mut state = self.inner.write_state();
        for w in written {
            for (c, col) in w.info.columns.iter().enumerate() {
                if col.is_stored_len() && col.stored.is_none() {
                    self.inner.queue_repair(w.info.stripe_id, c as u16);
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
