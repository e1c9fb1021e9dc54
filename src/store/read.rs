//! The read path.
//!
//! Healthy: the part's byte range is one slice of one node's mmap'd segment,
//! checked against the part's checksum and returned without a copy.
//! Degraded (node down, read error, checksum mismatch): the same byte range
//! is read from k other columns of the stripe and only that range is
//! rebuilt. A read never returns bytes whose checksum failed.

use std::sync::mpsc;

use bytes::Bytes;

use super::health::Counters;
use super::index::PartLoc;
use super::nodes::NodeSet;
use super::stripes::StripeInfo;
use super::{Options, RepairQueue};
use crate::codec::Codec;
use crate::layout::Layout;
use crate::layout::NodeId;
use crate::node::RecordLocation;
use crate::{Error, Result};

/// The read path: what it reads from and what it tells. It reads the
/// nodes and decodes with the codec; it counts what it did and queues what
/// it found broken for repair; it changes nothing else.
pub(crate) struct Reads<'a> {
    pub layout: &'a Layout,
    pub options: &'a Options,
    pub codec: &'a Codec,
    pub nodes: &'a NodeSet,
    pub stats: &'a Counters,
    /// Columns found missing or bad, for the next repair.
    pub repairs: &'a RepairQueue,
    /// Ask the source columns of a degraded read in turn, not in parallel
    /// (a stepped store: see `Inner::sequential_io`).
    pub sequential_io: bool,
}

impl Reads<'_> {
    /// Whole column bytes from wherever the column is stored, if they pass
    /// their checksum.
    pub(crate) fn intact_column(&self, stripe: &StripeInfo, column: usize) -> Option<Bytes> {
        let info = stripe.columns.get(column)?;
        let bytes = self.read_column_range(stripe, column, 0, info.len)?;
        (crc32fast::hash(&bytes) == info.checksum).then_some(bytes)
    }

    /// Reads one part of a blob: from its own column if that works and the
    /// bytes pass their checksum, else degraded.
    pub(crate) fn read_part(&self, stripe: &StripeInfo, part: &PartLoc) -> Result<Bytes> {
        let column = usize::from(part.column_index);
        if let Some((node_id, loc)) = stripe.columns.get(column).and_then(|c| c.stored)
            && self.nodes.is_remote(node_id)
        {
            return self.read_part_hedged(stripe, part, node_id, loc);
        }
        let bytes = self.read_column_range(stripe, column, part.offset, part.len);
        if let Some(bytes) = self.checked(stripe.stripe_id, part, bytes) {
            return Ok(bytes);
        }
        self.read_degraded(stripe, part)
    }

    /// [`read_part`](Self::read_part) from a remote node: if the node has
    /// not answered after [`Options::read_hedge_after`](super::Options),
    /// the part is rebuilt from k other columns meanwhile, and the first
    /// correct answer wins. A slow site costs a read the hedge delay, not
    /// its own latency.
    fn read_part_hedged(
        &self,
        stripe: &StripeInfo,
        part: &PartLoc,
        node_id: NodeId,
        loc: RecordLocation,
    ) -> Result<Bytes> {
        let column = usize::from(part.column_index);
        let end = u64::from(part.offset) + u64::from(part.len);
        let node = match self.nodes.get(node_id) {
            Some(node) if end <= u64::from(loc.len) => node,
            _ => return self.read_degraded(stripe, part),
        };
        let (tx, rx) = mpsc::channel();
        let (offset, len) = (loc.offset + u64::from(part.offset), part.len);
        let spawned = crate::node::spawn_blocking(move || {
            let _ = tx.send(node.read(loc.generation, offset, len));
        });
        if !spawned {
            let bytes = self.read_column_range(stripe, column, part.offset, part.len);
            return match self.checked(stripe.stripe_id, part, bytes) {
                Some(bytes) => Ok(bytes),
                None => self.read_degraded(stripe, part),
            };
        }
        let first = match rx.recv_timeout(self.options.read_hedge_after) {
            Ok(result) => Some(result),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => return self.read_degraded(stripe, part),
        };
        let result = match first {
            Some(result) => result,
            None => {
                self.stats.hedged_reads.inc();
                let rebuilt = self
                    .rebuild_range(stripe, column, part.offset, part.len, &[], false)
                    .ok()
                    .filter(|bytes| crc32fast::hash(bytes) == part.checksum);
                if let Some(bytes) = rebuilt {
                    self.stats.degraded_reads.inc();
                    return Ok(bytes);
                }
                match rx.recv() {
                    Ok(result) => result,
                    Err(_) => return self.read_degraded(stripe, part),
                }
            }
        };
        match result {
            Ok(bytes) => match self.checked(stripe.stripe_id, part, Some(bytes)) {
                Some(bytes) => Ok(bytes),
                None => self.read_degraded(stripe, part),
            },
            Err(e) => {
                self.note_read_error(stripe.stripe_id, node_id, &e);
                self.read_degraded(stripe, part)
            }
        }
    }

    /// Counts a failed read and marks the node down if the failure says it
    /// is unhealthy: not for bad bytes (scrub and repair fix them), nor for
    /// a record the node does not have (a wiped or replaced node that is
    /// itself fine; repair fills it).
    fn note_read_error(&self, stripe_id: u64, node_id: NodeId, e: &Error) {
        self.stats.read_errors.inc();
        if !matches!(
            e,
            Error::ChecksumMismatch { .. } | Error::Corrupt { .. } | Error::InvalidArgument { .. }
        ) {
            self.nodes
                .mark_down(node_id, format!("read of stripe {stripe_id} failed: {e}"));
        }
    }

    /// `bytes` if they pass the part's checksum; counts a mismatch.
    pub(crate) fn checked(
        &self,
        stripe_id: u64,
        part: &PartLoc,
        bytes: Option<Bytes>,
    ) -> Option<Bytes> {
        let bytes = bytes?;
        if crc32fast::hash(&bytes) == part.checksum {
            return Some(bytes);
        }
        self.stats.checksum_failures.inc();
        tracing::warn!(
            stripe = stripe_id,
            column = part.column_index,
            "blob checksum mismatch; reading degraded"
        );
        None
    }

    /// Rebuilds one part of a blob from other columns of its stripe (its own
    /// column is down or failed its checksum) and queues that column for
    /// repair.
    pub(crate) fn read_degraded(&self, stripe: &StripeInfo, part: &PartLoc) -> Result<Bytes> {
        self.read_degraded_as(stripe, part, false)
    }

    /// [`read_degraded`](Self::read_degraded) for a get: its sources are
    /// read as point reads ([`Node::read_point`](crate::node::Node)),
    /// hinted first ([`Node::prefetch_point`](crate::node::Node)) until
    /// one is found in memory, so a cold degraded get waits for the device
    /// about once instead of once per source, and never for a readahead
    /// around each (docs/PERFORMANCE.md, "Cold degraded gets").
    pub(crate) fn read_degraded_point(&self, stripe: &StripeInfo, part: &PartLoc) -> Result<Bytes> {
        self.read_degraded_as(stripe, part, true)
    }

    fn read_degraded_as(&self, stripe: &StripeInfo, part: &PartLoc, point: bool) -> Result<Bytes> {
        let column = usize::from(part.column_index);
        self.repairs.push(stripe.stripe_id, part.column_index);
        let bytes = self.rebuild_range(stripe, column, part.offset, part.len, &[], point)?;
        let mut actual = crc32fast::hash(&bytes);
        if actual == part.checksum {
            self.stats.degraded_reads.inc();
            return Ok(bytes);
        }
        // A source column was bad too. Find the bad ones by their whole
        // checksums, and rebuild from the others if k of them are left.
        let bad = self.bad_columns(stripe, column);
        if !bad.is_empty() {
            let bytes = self.rebuild_range(stripe, column, part.offset, part.len, &bad, point)?;
            actual = crc32fast::hash(&bytes);
            if actual == part.checksum {
                self.stats.degraded_reads.inc();
                return Ok(bytes);
            }
        }
        Err(Error::ChecksumMismatch {
            what: "blob rebuilt from other columns",
            expected: part.checksum,
            actual,
        })
    }

    /// Stored columns of `stripe` other than `skip` whose whole bytes fail
    /// their checksum or cannot be read; queued for repair.
    fn bad_columns(&self, stripe: &StripeInfo, skip: usize) -> Vec<usize> {
        let mut bad = Vec::new();
        for (c, info) in stripe.columns.iter().enumerate() {
            if c == skip || info.len == 0 {
                continue;
            }
            let intact = self
                .read_column_range(stripe, c, 0, info.len)
                .is_some_and(|bytes| crc32fast::hash(&bytes) == info.checksum);
            if !intact {
                self.stats.checksum_failures.inc();
                self.repairs.push(stripe.stripe_id, c as u16);
                bad.push(c);
            }
        }
        bad
    }

    /// Bytes `[offset, offset + len)` of a column's payload from the node
    /// that holds it, or `None` when that node is down or the read fails
    /// (the node is then marked down if the failure says it is unhealthy).
    pub(crate) fn read_column_range(
        &self,
        stripe: &StripeInfo,
        column: usize,
        offset: u32,
        len: u32,
    ) -> Option<Bytes> {
        let info = stripe.columns.get(column)?;
        let (node_id, loc) = info.stored?;
        self.read_stored(stripe.stripe_id, node_id, loc, offset, len, false)
    }

    /// Bytes `[offset, offset + len)` of the column record at `loc` on
    /// `node_id`, or `None` (the node is then marked down if the failure
    /// says it is unhealthy).
    pub(crate) fn read_stored(
        &self,
        stripe_id: u64,
        node_id: NodeId,
        loc: RecordLocation,
        offset: u32,
        len: u32,
        point: bool,
    ) -> Option<Bytes> {
        let end = u64::from(offset) + u64::from(len);
        if end > u64::from(loc.len) {
            return None;
        }
        let read = self.nodes.with_node(node_id, |node| {
            let at = loc.offset + u64::from(offset);
            if point {
                node.read_point(loc.generation, at, len)
            } else {
                node.read(loc.generation, at, len)
            }
        })?;
        match read {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                self.note_read_error(stripe_id, node_id, &e);
                None
            }
        }
    }

    /// Reads `[offset, offset + avail)` of candidate columns in parallel:
    /// asks `wanted + 1` of them, starts another whenever one fails or
    /// none answers for `read_hedge_after`, and returns as soon as `wanted`
    /// have answered (fewer if too many fail). A slow column is simply not
    /// waited for; its read finishes unheard.
    fn fetch_first(
        &self,
        stripe: &StripeInfo,
        candidates: &[(usize, u32)],
        offset: u32,
        wanted: usize,
    ) -> Vec<(usize, Bytes)> {
        let (tx, rx) = mpsc::channel::<(usize, NodeId, Result<Bytes>)>();
        let mut next = candidates.iter();
        let mut in_flight = 0usize;
        let mut got: Vec<(usize, Bytes)> = Vec::with_capacity(wanted);
        let launch = |c: usize, avail: u32| -> bool {
            let Some((node_id, loc)) = stripe.columns[c].stored else {
                return false;
            };
            let Some(node) = self.nodes.get(node_id) else {
                return false;
            };
            let tx = tx.clone();
            crate::node::spawn_blocking(move || {
                let read = node.read(loc.generation, loc.offset + u64::from(offset), avail);
                let _ = tx.send((c, node_id, read));
            })
        };
        let mut extra = 0usize;
        while got.len() < wanted {
            while in_flight + got.len() <= wanted + extra {
                match next.next() {
                    Some(&(c, avail)) => {
                        if launch(c, avail) {
                            in_flight += 1;
                        }
                    }
                    None => break,
                }
            }
            if in_flight == 0 {
                break;
            }
            let (c, node_id, read) = match rx.recv_timeout(self.options.read_hedge_after) {
                Ok(answer) => answer,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // Slow sources: ask one more column.
                    extra += 1;
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            in_flight -= 1;
            match read {
                Ok(bytes) => got.push((c, bytes)),
                Err(e) => self.note_read_error(stripe.stripe_id, node_id, &e),
            }
        }
        got
    }

    /// Rebuilds bytes `[offset, offset + len)` of `column` from the same
    /// range of k other columns.
    ///
    /// Columns shorter than the range give what they store, and the codec
    /// takes the rest as zeros (padding is never stored, nor copied); empty
    /// columns cost no I/O. If the first k sources give bytes
    /// that fail the caller's check, the caller sees a checksum error; whole
    /// columns are verified by scrub, not here.
    ///
    /// `point`: a get's, whose local sources are hinted and read as point
    /// reads ([`read_degraded_point`](Self::read_degraded_point)).
    pub(crate) fn rebuild_range(
        &self,
        stripe: &StripeInfo,
        column: usize,
        offset: u32,
        len: u32,
        exclude: &[usize],
        point: bool,
    ) -> Result<Bytes> {
        let code = self.layout.code();
        let k = code.data_count;
        let len_usize = len as usize;
        let end = u64::from(offset) + u64::from(len);
        // Sources: (column index, the bytes of the range it stores). A
        // column that ends inside the range gives what it has, one that ends
        // before it nothing: the codec takes the rest as the zeros a stripe
        // never stores.
        let mut sources: Vec<(usize, Bytes)> = Vec::with_capacity(k);
        let order = source_order(stripe, column, offset, exclude);
        let mut io: Vec<(usize, u32)> = Vec::new();
        for c in order {
            let stored_len = u64::from(stripe.columns[c].len);
            if stored_len <= u64::from(offset) {
                if sources.len() < k {
                    sources.push((c, Bytes::new()));
                }
                continue;
            }
            io.push((c, (stored_len.min(end) - u64::from(offset)) as u32));
        }
        let remote = io.iter().any(|&(c, _)| {
            stripe.columns[c]
                .stored
                .is_some_and(|(n, _)| self.nodes.is_remote(n))
        });
        // Remote sources race (the first k answers win); a stepped store
        // (the simulator's, see `Inner::sequential_io`) asks them in turn
        // like local ones, so which answer first does not follow threads.
        if remote && !self.sequential_io && sources.len() < k {
            for (c, bytes) in self.fetch_first(stripe, &io, offset, k - sources.len()) {
                sources.push((c, bytes));
            }
        } else {
            if point {
                // The sources read first are asked for at once: their
                // page-cache misses are then read by the device together,
                // and the loop below waits about once. The first source
                // found in memory ends the hints (a warm store pays one
                // check per degraded get, not k).
                let mut hinted = sources.len();
                for &(c, avail) in &io {
                    if hinted == k {
                        break;
                    }
                    let Some((node_id, loc)) = stripe.columns[c].stored else {
                        continue;
                    };
                    if u64::from(offset) + u64::from(avail) > u64::from(loc.len) {
                        continue;
                    }
                    let at = loc.offset + u64::from(offset);
                    match self.nodes.with_node(node_id, |node| {
                        node.prefetch_point(loc.generation, at, avail)
                    }) {
                        Some(true) => hinted += 1,
                        Some(false) => break,
                        None => {}
                    }
                }
            }
            for (c, avail) in io {
                if sources.len() == k {
                    break;
                }
                let read = stripe.columns[c].stored.and_then(|(node_id, loc)| {
                    self.read_stored(stripe.stripe_id, node_id, loc, offset, avail, point)
                });
                if let Some(bytes) = read {
                    sources.push((c, bytes));
                }
            }
        }
        if sources.len() < k {
            return Err(Error::NotEnoughColumns {
                needed: k,
                available: sources.len(),
            });
        }
        let present: Vec<(usize, &[u8])> = sources.iter().map(|(c, b)| (*c, &b[..])).collect();
        let mut out = vec![0u8; len_usize];
        self.codec
            .reconstruct(&present, &mut [(column, &mut out[..])])?;
        Ok(Bytes::from(out))
    }

    /// The generations a retire marker lists.
    pub(crate) fn retired_generations(&self, info: &StripeInfo, loc: &PartLoc) -> Result<Vec<u64>> {
        let bytes = self.read_part(info, loc)?;
        if bytes.len() % 8 != 0 {
            return Err(Error::Corrupt {
                location: format!("stripe {} column {}", info.stripe_id, loc.column_index),
                reason: format!(
                    "retire marker of {} bytes is not a list of u64",
                    bytes.len()
                ),
            });
        }
        Ok(bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect())
    }

    /// A data column's entry table: from its node, or rebuilt from k others
    /// when the node is down or the table does not decode (then `true`).
    pub(crate) fn entry_table(
        &self,
        info: &StripeInfo,
        column: usize,
        table_len: u32,
    ) -> Result<(Vec<crate::format::Entry>, bool)> {
        self.with_entry_table(info, column, table_len, |entries| {
            entries.iter().map(|e| e.to_entry()).collect()
        })
    }

    /// [`entry_table`](Self::entry_table), handing the entries to `use_`
    /// with their keys borrowed (open's bulk read: no allocation per key).
    ///
    /// # Errors
    /// As `entry_table`.
    pub(crate) fn with_entry_table<R>(
        &self,
        info: &StripeInfo,
        column: usize,
        table_len: u32,
        use_: impl FnOnce(&[crate::format::EntryRef<'_>]) -> R,
    ) -> Result<(R, bool)> {
        if let Some(bytes) = self.read_column_range(info, column, 0, table_len) {
            match crate::format::decode_entry_table_refs(&bytes) {
                Ok(entries) => return Ok((use_(&entries), false)),
                Err(e) => {
                    self.stats.checksum_failures.inc();
                    tracing::warn!(stripe = info.stripe_id, column, error = %e,
                        "entry table damaged; rebuilding it from other columns");
                }
            }
        }
        self.repairs.push(info.stripe_id, column as u16);
        let bytes = self.rebuild_range(info, column, 0, table_len, &[], false)?;
        let entries = crate::format::decode_entry_table_refs(&bytes)?;
        Ok((use_(&entries), true))
    }
}

/// The columns to rebuild `column` from, best first: columns that are all
/// padding from `offset` on are free, so they come first; columns on the
/// failed column's own node come last.
fn source_order(stripe: &StripeInfo, column: usize, offset: u32, exclude: &[usize]) -> Vec<usize> {
    let failed_node = stripe
        .columns
        .get(column)
        .and_then(|c| c.stored)
        .map(|(n, _)| n);
    let mut order: Vec<usize> = (0..stripe.columns.len())
        .filter(|&c| c != column && !exclude.contains(&c))
        .collect();
    order.sort_by_key(|&c| {
        let info = &stripe.columns[c];
        let costs_io = u64::from(info.len) > u64::from(offset);
        let same_node = failed_node.is_some() && info.stored.map(|(n, _)| n) == failed_node;
        (costs_io, same_node)
    });
    order
}
