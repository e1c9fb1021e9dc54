//! The read path.
//!
//! Healthy: the part's byte range is one slice of one node's mmap'd segment,
//! checked against the part's checksum and returned without a copy.
//! Degraded (node down, read error, checksum mismatch): the same byte range
//! is read from k other columns of the stripe and only that range is
//! rebuilt. A read never returns bytes whose checksum failed.

use bytes::Bytes;

use super::Inner;
use super::index::PartLoc;
use super::stripes::StripeInfo;
use crate::layout::NodeId;
use crate::node::RecordLocation;
use crate::{Error, Result};

impl Inner {
    /// Reads one part of a blob: from its own column if that works and the
    /// bytes pass their checksum, else degraded.
    pub(crate) fn read_part(&self, stripe: &StripeInfo, part: &PartLoc) -> Result<Bytes> {
        let column = usize::from(part.column_index);
        let bytes = self.read_column_range(stripe, column, part.offset, part.len);
        if let Some(bytes) = self.checked(stripe.stripe_id, part, bytes) {
            return Ok(bytes);
        }
        self.read_degraded(stripe, part)
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
        let column = usize::from(part.column_index);
        self.queue_repair(stripe.stripe_id, part.column_index);
        let bytes = self.rebuild_range(stripe, column, part.offset, part.len, &[])?;
        let mut actual = crc32fast::hash(&bytes);
        if actual == part.checksum {
            self.stats.degraded_reads.inc();
            return Ok(bytes);
        }
        // A source column was bad too. Find the bad ones by their whole
        // checksums, and rebuild from the others if k of them are left.
        let bad = self.bad_columns(stripe, column);
        if !bad.is_empty() {
            let bytes = self.rebuild_range(stripe, column, part.offset, part.len, &bad)?;
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
                self.queue_repair(stripe.stripe_id, c as u16);
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
        self.read_stored(stripe.stripe_id, node_id, loc, offset, len)
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
    ) -> Option<Bytes> {
        let end = u64::from(offset) + u64::from(len);
        if end > u64::from(loc.len) {
            return None;
        }
        let read = self.nodes.with_node(node_id, |node| {
            node.read(loc.generation, loc.offset + u64::from(offset), len)
        })?;
        match read {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                self.stats.read_errors.inc();
                if !matches!(e, Error::ChecksumMismatch { .. } | Error::Corrupt { .. }) {
                    self.nodes
                        .mark_down(node_id, format!("read of stripe {stripe_id} failed: {e}"));
                }
                None
            }
        }
    }

    /// Rebuilds bytes `[offset, offset + len)` of `column` from the same
    /// range of k other columns.
    ///
    /// Columns shorter than the range are zero-padded (padding is never
    /// stored); empty columns cost no I/O. If the first k sources give bytes
    /// that fail the caller's check, the caller sees a checksum error; whole
    /// columns are verified by scrub, not here.
    pub(crate) fn rebuild_range(
        &self,
        stripe: &StripeInfo,
        column: usize,
        offset: u32,
        len: u32,
        exclude: &[usize],
    ) -> Result<Bytes> {
        let code = self.layout.code();
        let k = code.data_count;
        let len_usize = len as usize;
        let end = u64::from(offset) + u64::from(len);
        // Sources: (column index, bytes of the range, zero padded).
        let mut sources: Vec<(usize, Vec<u8>)> = Vec::with_capacity(k);
        // Columns that are all padding in this range are free: try them
        // first; columns on the failed column's own node last.
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
        for c in order {
            if sources.len() == k {
                break;
            }
            let info = &stripe.columns[c];
            let stored_len = u64::from(info.len);
            if stored_len <= u64::from(offset) {
                sources.push((c, vec![0u8; len_usize]));
                continue;
            }
            let avail = (stored_len.min(end) - u64::from(offset)) as u32;
            if let Some(bytes) = self.read_column_range(stripe, c, offset, avail) {
                let mut buf = Vec::with_capacity(len_usize);
                buf.extend_from_slice(&bytes);
                buf.resize(len_usize, 0);
                sources.push((c, buf));
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
}
