//! The node seam: where column records are stored.
//!
//! A [`Node`] is one place that stores columns: a local directory
//! ([`LocalNode`]) or an object-store prefix ([`ObjectNode`], feature
//! `object-store`). The store engine talks
//! only to this small trait, so tests can put a fault-injecting node under it
//! and remote backends fit behind it too:
//!
//! - [`Node::append`] writes a batch of records to a generation's segment and
//!   returns once they are durable (group commit: one sync per call). A remote
//!   node may buffer the segment and upload it as an object when the commit
//!   needs durability; the contract is only "durable when `Ok`".
//! - [`Node::read`] returns a byte range as [`Bytes`]; a local node hands out
//!   slices of its memory map (no copy), a remote node the body of a range
//!   request. A read may fail with a retryable error
//!   ([`Error::is_retryable`](crate::Error::is_retryable)).
//! - [`Node::scan`] lists the intact records of a generation, and the damage
//!   it found, so the store can rebuild its index from the columns alone.
//!
//! Conveniences live in [`NodeExt`] (checked reads), fan-out in
//! [`append_all`], fault injection in the [`FaultyNode`] wrapper.
//!
//! ```
//! use geoshard::format::ColumnHeader;
//! use geoshard::node::{LocalNode, LocalOptions, Node, NodeExt, RecordRef};
//!
//! let dir = tempfile::tempdir()?;
//! let node = LocalNode::open("a1", dir.path(), &LocalOptions::default())?;
//! let payload = b"column bytes";
//! let header = ColumnHeader {
//!     stripe_id: 1,
//!     generation: 0,
//!     data_count: 1,
//!     parity_count: 1,
//!     column_index: 1,
//!     column_lens: vec![payload.len() as u32; 2],
//!     column_checksums: vec![0, crc32fast::hash(payload)],
//!     placement: vec!["b1".into(), "a1".into()],
//!     entry_table_lens: vec![0],
//!     commit: geoshard::format::CommitStamp::default(),
//!     handoffs: Vec::new(),
//! };
//! let locations = node.append(0, &[RecordRef { header: &header, payload }])?;
//! let scan = node.scan(0)?;
//! assert_eq!(scan.records[0].location, locations[0]);
//! assert_eq!(&node.read_payload(&scan.records[0])?[..], payload);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::format::ColumnHeader;
use crate::{Error, Result};

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
mod factory;
mod faulty;
mod local;
#[cfg(feature = "object-store")]
pub mod object;

pub(crate) use factory::GivenNodes;
pub use factory::{DefaultNodeFactory, NodeFactory, OpenPurpose};
pub use faulty::FaultyNode;
pub use local::{IoEngineKind, LocalNode, LocalOptions};
pub(crate) use local::{MappedWatch, ReplacedMark, mark_replaced};
#[cfg(any(test, feature = "testing"))]
pub(crate) use local::{WriteAndSync, WriteFailure, WriteStandIn};
#[cfg(feature = "object-store")]
pub use object::{ObjectNode, ObjectOptions};

/// Where a record's payload is: its generation, the offset of the payload in
/// that generation's segment (or object), and the payload length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecordLocation {
    /// The generation (segment) holding the record.
    pub generation: u64,
    /// Offset of the payload (not the header) in the segment.
    pub offset: u64,
    /// Payload length.
    pub len: u32,
}

/// An intact record found by [`Node::scan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedRecord {
    /// The record's header (its checksum verified).
    pub header: ColumnHeader,
    /// Where its payload is (its checksum verified when scanned).
    pub location: RecordLocation,
}

/// Bytes of a segment that do not hold an intact record, reported by
/// [`Node::scan`] so the store can count and repair them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptRegion {
    /// The generation (segment).
    pub generation: u64,
    /// Offset of the first bad byte.
    pub offset: u64,
    /// Number of bad bytes.
    pub len: u64,
    /// What was wrong.
    pub reason: String,
}

/// The result of [`Node::scan`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Intact records in segment order.
    pub records: Vec<ScannedRecord>,
    /// Damaged regions (skipped records), in segment order. Never fatal.
    pub corrupt: Vec<CorruptRegion>,
    /// Bytes of an incomplete tail that recovery cut off this segment when
    /// the node was opened (a write torn by a crash: never acknowledged).
    pub truncated_tail_bytes: u64,
}

impl Scan {
    /// The scan of a segment's durable bytes (`durable_len` of them, read
    /// by [`scan_segment`](crate::format::scan_segment)) as a node reports
    /// it: durable bytes past the last intact record were acknowledged
    /// once, so they are damage (rot since open, or a file shortened behind
    /// the node's back), not a torn write; `truncated_tail_bytes` is the
    /// torn tail found when the node opened.
    pub(crate) fn of_durable_bytes(
        generation: u64,
        found: crate::format::SegmentScan,
        durable_len: u64,
        truncated_tail_bytes: u64,
    ) -> Scan {
        let records = found
            .records
            .into_iter()
            .map(|record| ScannedRecord {
                location: RecordLocation {
                    generation,
                    offset: record.payload_offset,
                    len: record.payload_len,
                },
                header: record.header,
            })
            .collect();
        let mut corrupt: Vec<CorruptRegion> = found
            .damaged
            .into_iter()
            .map(|damage| CorruptRegion {
                generation,
                offset: damage.offset,
                len: damage.len,
                reason: damage.reason,
            })
            .collect();
        if durable_len > found.intact_len {
            corrupt.push(CorruptRegion {
                generation,
                offset: found.intact_len,
                len: durable_len - found.intact_len,
                reason: found.tail_reason.unwrap_or_default(),
            });
        }
        Scan {
            records,
            corrupt,
            truncated_tail_bytes,
        }
    }
}

/// Space used and left on a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// Bytes of segments stored.
    pub used_bytes: u64,
    /// Bytes that can still be written (free space of the file system, or
    /// a quota).
    pub available_bytes: u64,
}

/// One record to append: a header and its payload.
///
/// The payload is one slice; a local node writes the encoded header and the
/// payload with one vectored write, so the payload is never copied.
#[derive(Clone, Copy, Debug)]
pub struct RecordRef<'a> {
    /// The header; `header.generation` must be the generation appended to,
    /// and `payload` must match `header.payload_len()` and
    /// `header.payload_checksum()`.
    pub header: &'a ColumnHeader,
    /// The column bytes.
    pub payload: &'a [u8],
}

impl RecordRef<'_> {
    /// Checks that the record can be appended to `generation`: a valid
    /// header of that generation, a payload of the length and checksum the
    /// header gives.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] or [`Error::LimitExceeded`] for the first
    /// rule broken.
    pub fn validate(&self, generation: u64) -> Result<()> {
        self.header.validate()?;
        if self.header.generation != generation {
            return Err(Error::invalid(format!(
                "record of generation {} appended to generation {generation}",
                self.header.generation
            )));
        }
        if self.payload.len() != self.header.payload_len() as usize {
            return Err(Error::invalid(format!(
                "payload is {} bytes, the header says {}",
                self.payload.len(),
                self.header.payload_len()
            )));
        }
        let checksum = crc32fast::hash(self.payload);
        if checksum != self.header.payload_checksum() {
            return Err(Error::invalid(format!(
                "payload checksum {checksum:#010x}, the header says {:#010x}",
                self.header.payload_checksum()
            )));
        }
        Ok(())
    }
}

/// One place that stores column records.
///
/// Implementations are shared between threads (`Send + Sync`); appends to
/// one generation are serialised by the node, reads run concurrently with
/// them. See the [module docs](self) for the contract and an example.
///
/// Capabilities beyond the contract are trait methods with a default
/// (e.g. [`Node::shared_submission`]), which wrappers pass on.
pub trait Node: Send + Sync + std::fmt::Debug {
    /// The node's stable name (what a stripe's placement names).
    fn name(&self) -> &str;

    /// Appends `records` to `generation`'s segment (creating it if needed)
    /// and makes them durable with one sync. Returns where each payload is,
    /// in order. An empty batch is a no-op.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if a record fails
    /// [`RecordRef::validate`] (nothing is written); [`Error::Io`] if a write
    /// or the sync fails (no record of the batch is acknowledged; earlier
    /// durable records stay readable); [`Error::NodeFenced`] after a failure
    /// that left the node in an unknown state; [`Error::Unavailable`] for a
    /// node that cannot be reached now; [`Error::WriteRefused`] for a node
    /// that answers but must take no writes now (an object-store node whose
    /// lease cannot be confirmed): the store stops writing to it and goes on
    /// reading it.
    fn append(&self, generation: u64, records: &[RecordRef<'_>]) -> Result<Vec<RecordLocation>>;

    /// Reads `len` bytes at `offset` of `generation`'s segment. The bytes
    /// are not checked; see [`NodeExt::read_checked`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the generation does not exist or the
    /// range is not inside its durable bytes; [`Error::Io`] or
    /// [`Error::Unavailable`] when the bytes cannot be read now.
    fn read(&self, generation: u64, offset: u64, len: u32) -> Result<Bytes>;

    /// [`read`](Node::read) of a blob a get wants, one of many read at
    /// random: a local node reads a page-cache miss of a small one alone
    /// instead of the device's whole readahead around it (3 ms instead of
    /// 0.1 ms per cold get on the VMs of docs/PERFORMANCE.md), where scans
    /// and entry tables keep the readahead. The default is `read`.
    ///
    /// # Errors
    /// As [`read`](Node::read).
    fn read_point(&self, generation: u64, offset: u64, len: u32) -> Result<Bytes> {
        self.read(generation, offset, len)
    }

    /// A hint that [`read_point`](Node::read_point) of this range follows
    /// soon: a local node starts reading a page-cache miss of a small
    /// range now and returns without waiting, so that the several reads a
    /// degraded get makes (one per source column, on as many nodes) wait
    /// for the device about once instead of once each. True when it
    /// started a read; false when the range is in memory already or the
    /// node gives no hints (the default, which does nothing). It changes
    /// how fast bytes arrive, never which.
    fn prefetch_point(&self, generation: u64, offset: u64, len: u32) -> bool {
        let _ = (generation, offset, len);
        false
    }

    /// The durable bytes of `generation`'s segment as one `Bytes` the node
    /// keeps mapped, if it keeps such a mapping (a local node's, advised for
    /// reads at random like [`read_point`](Node::read_point)'s): a get may
    /// slice a small blob out of it instead of calling `read_point`, which
    /// spares it the node's own lookups (docs/PERFORMANCE.md, "The healthy
    /// get"). The bytes are those `read_point` would return, unchecked like
    /// them; they stay readable for as long as they are held, so a caller
    /// must stop using them when the node is taken out of service.
    ///
    /// `None` (the default) when the node keeps no mapping (remote nodes,
    /// fault-injecting wrappers, whose faults must reach every read), when
    /// the generation does not exist or has no durable bytes, or when the
    /// mapping cannot be made now; every read then goes through `read` or
    /// `read_point`. Never copies and never waits for the device.
    fn mapped(&self, generation: u64) -> Option<Bytes> {
        let _ = generation;
        None
    }

    /// Lists the intact records of `generation` and reports damaged bytes.
    /// A generation that does not exist scans as empty.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Unavailable`] when the segment cannot be
    /// read; damage inside it is reported in the [`Scan`], never an error.
    fn scan(&self, generation: u64) -> Result<Scan>;

    /// Bytes of `generation`'s segment that are durable: every record a
    /// later [`scan`](Node::scan) lists ends at or before it, until more
    /// are appended. 0 for a generation that does not exist. A checkpoint
    /// records it per segment, and the open that loads the checkpoint scans
    /// only past it (docs/DURABILITY.md, "Checkpoints").
    ///
    /// The default scans the segment and returns the end of its last
    /// intact record; nodes that know the length without a scan say so.
    ///
    /// # Errors
    /// As [`scan`](Node::scan).
    fn segment_len(&self, generation: u64) -> Result<u64> {
        let scan = self.scan(generation)?;
        Ok(scan
            .records
            .iter()
            .map(|r| r.location.offset + u64::from(r.location.len))
            .max()
            .unwrap_or(0))
    }

    /// The records of `generation` from byte `from` on, where the caller
    /// knows an intact record ended (a checkpoint's horizon): the bytes
    /// before it are trusted, not read (docs/DURABILITY.md, C4), so a node
    /// whose open defers the scan of its segments reads only what was
    /// written after. `Ok(None)` when the node has no cheaper way than
    /// [`scan`](Node::scan), or when the segment holds no record
    /// boundary at `from` (shorter, or other bytes there): the caller
    /// then scans it whole.
    ///
    /// The default returns `Ok(None)`.
    ///
    /// # Errors
    /// As [`scan`](Node::scan).
    fn scan_from(&self, generation: u64, from: u64) -> Result<Option<Scan>> {
        let _ = (generation, from);
        Ok(None)
    }

    /// The generations that hold at least one durable record, ascending.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Unavailable`] when the node cannot list.
    fn generations(&self) -> Result<Vec<u64>>;

    /// Removes `generation`'s segment (idempotent). [`Bytes`] already read
    /// from it stay valid. The caller must not append to a generation while
    /// it removes it (the store only removes sealed generations).
    ///
    /// # Errors
    /// [`Error::Io`] when removal fails; [`Error::NodeFenced`] on a fenced
    /// node.
    fn remove_generation(&self, generation: u64) -> Result<()>;

    /// Space used and left.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Unavailable`] when it cannot be measured.
    fn capacity(&self) -> Result<Capacity>;

    /// The node's manifest (docs/FORMAT.md, "Manifest"): the store's
    /// identity and the history decisions open made, as opaque bytes the
    /// store encodes. `None` when the node has none (a new or wiped node).
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Unavailable`] when it cannot be read;
    /// [`Error::Corrupt`] when one exists but no intact copy is left.
    fn read_manifest(&self) -> Result<Option<Bytes>>;

    /// Replaces the manifest, durably and atomically: after a crash,
    /// [`read_manifest`](Node::read_manifest) returns the old bytes or the
    /// new ones, never a mix. Works on a full disk once a manifest exists
    /// (a local node rewrites space it already holds).
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Unavailable`] when the write or its sync
    /// fails; [`Error::LimitExceeded`] over [`MANIFEST_LEN_MAX`](crate::format::MANIFEST_LEN_MAX) bytes.
    fn write_manifest(&self, manifest: &[u8]) -> Result<()>;

    /// Whether an earlier failure fenced the node (a failed sync: what is
    /// on disk is unknown until the node is reopened). Default: never.
    fn is_fenced(&self) -> bool {
        false
    }

    /// Whether the node was wiped (with its site, or new) and no manifest
    /// was written to it since, as found when it was opened: an
    /// object-store prefix that held no lease, or whose previous lease
    /// says `wiped` and which holds no manifest. Segments in such a prefix
    /// can only be appends that landed after the wipe, none acknowledged
    /// (their lease checks found no lease or no clear answer;
    /// docs/DURABILITY.md, S11 and S14), so repair may adopt it with them.
    /// Default: never.
    fn came_back_wiped(&self) -> bool {
        false
    }

    /// Checks that the node is still there and still this writer's: an
    /// object-store node re-reads its lease. The store calls it about once
    /// a second while idle. Default: nothing to check.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the node cannot be reached or lost its
    /// contents; [`Error::Superseded`] when another writer holds it;
    /// [`Error::WriteRefused`] when it answers but must take no writes now
    /// (its lease cannot be confirmed): it stays readable.
    fn check(&self) -> Result<()> {
        Ok(())
    }

    /// The shared kernel submission this node's appends can join, so that
    /// [`append_all`] puts the writes of many nodes in one io_uring
    /// submission: a [`LocalNode`] on the io_uring engine has one. A wrapper
    /// that leaves appends as they are passes on its inner node's; one that
    /// changes them (injects a fault, adds latency) returns `None` while it
    /// does, so that its appends go through [`Node::append`]. Default: none.
    fn shared_submission(&self) -> Option<SharedSubmission<'_>> {
        None
    }
}

/// A shared handle is a node: a wrapper such as [`FaultyNode`] can wrap the
/// `Arc<dyn Node>` a [`NodeFactory`] opened, whatever its type.
impl<N: Node + ?Sized> Node for Arc<N> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn append(&self, generation: u64, records: &[RecordRef<'_>]) -> Result<Vec<RecordLocation>> {
        (**self).append(generation, records)
    }

    fn read(&self, generation: u64, offset: u64, len: u32) -> Result<Bytes> {
        (**self).read(generation, offset, len)
    }

    fn read_point(&self, generation: u64, offset: u64, len: u32) -> Result<Bytes> {
        (**self).read_point(generation, offset, len)
    }

    fn prefetch_point(&self, generation: u64, offset: u64, len: u32) -> bool {
        (**self).prefetch_point(generation, offset, len)
    }

    fn mapped(&self, generation: u64) -> Option<Bytes> {
        (**self).mapped(generation)
    }

    fn scan(&self, generation: u64) -> Result<Scan> {
        (**self).scan(generation)
    }

    fn generations(&self) -> Result<Vec<u64>> {
        (**self).generations()
    }

    fn segment_len(&self, generation: u64) -> Result<u64> {
        (**self).segment_len(generation)
    }

    fn scan_from(&self, generation: u64, from: u64) -> Result<Option<Scan>> {
        (**self).scan_from(generation, from)
    }

    fn remove_generation(&self, generation: u64) -> Result<()> {
        (**self).remove_generation(generation)
    }

    fn capacity(&self) -> Result<Capacity> {
        (**self).capacity()
    }

    fn read_manifest(&self) -> Result<Option<Bytes>> {
        (**self).read_manifest()
    }

    fn write_manifest(&self, manifest: &[u8]) -> Result<()> {
        (**self).write_manifest(manifest)
    }

    fn is_fenced(&self) -> bool {
        (**self).is_fenced()
    }

    fn came_back_wiped(&self) -> bool {
        (**self).came_back_wiped()
    }

    fn check(&self) -> Result<()> {
        (**self).check()
    }

    fn shared_submission(&self) -> Option<SharedSubmission<'_>> {
        (**self).shared_submission()
    }
}

/// A node's place in a shared io_uring submission (see
/// [`Node::shared_submission`]); only the crate's local nodes make one.
#[derive(Clone, Copy, Debug)]
pub struct SharedSubmission<'a> {
    local: &'a LocalNode,
}

impl<'a> SharedSubmission<'a> {
    /// `local`'s place, when its appends can join a shared submission.
    pub(crate) fn of(local: &'a LocalNode) -> Option<Self> {
        local
            .joins_shared_submission()
            .then_some(SharedSubmission { local })
    }
}

/// Runs `work` on a pooled thread that may block: the object-store
/// runtime's blocking pool when built with `object-store` (threads are
/// reused, so a hedged read costs no thread start), else a new thread.
/// Returns false when no thread could be had.
pub(crate) fn spawn_blocking(work: impl FnOnce() + Send + 'static) -> bool {
    #[cfg(feature = "object-store")]
    if let Ok(handle) = object::runtime::handle() {
        drop(handle.spawn_blocking(work));
        return true;
    }
    std::thread::Builder::new()
        .name("geoshard-read".into())
        .spawn(work)
        .is_ok()
}

/// Conveniences over any [`Node`], implemented for all of them.
pub trait NodeExt: Node {
    /// Reads a range and verifies it against `checksum` (`crc32fast` of the
    /// range: a payload's checksum, or a blob's checksum from an entry).
    ///
    /// # Errors
    /// As [`Node::read`], plus [`Error::ChecksumMismatch`] when the bytes
    /// do not match.
    fn read_checked(&self, generation: u64, offset: u64, len: u32, checksum: u32) -> Result<Bytes> {
        let bytes = self.read(generation, offset, len)?;
        let actual = crc32fast::hash(&bytes);
        if actual != checksum {
            return Err(Error::ChecksumMismatch {
                what: "node read",
                expected: checksum,
                actual,
            });
        }
        Ok(bytes)
    }

    /// Reads a scanned record's whole payload and verifies its checksum.
    ///
    /// # Errors
    /// As [`read_checked`](Self::read_checked).
    fn read_payload(&self, record: &ScannedRecord) -> Result<Bytes> {
        let location = record.location;
        self.read_checked(
            location.generation,
            location.offset,
            location.len,
            record.header.payload_checksum(),
        )
    }
}

impl<N: Node + ?Sized> NodeExt for N {}

/// One batch for [`append_all`]: a node, a generation, and the records to
/// append there.
pub type AppendBatch<'a> = (&'a (dyn Node + 'static), u64, &'a [RecordRef<'a>]);

/// Appends several batches, usually one per node of a stripe, in parallel,
/// and returns each batch's result in order.
///
/// - Batches for [`LocalNode`]s that write with io_uring go into **one
///   shared io_uring submission**: each batch is a linked chain (its writes,
///   then its `fdatasync`), and the kernel runs the chains and their syncs
///   in parallel. One `io_uring_enter` for the whole commit, no thread.
/// - Every other batch (other engines, other node kinds, wrappers such as
///   [`FaultyNode`], a second batch for the same node and generation) runs
///   on its own scoped thread, so syncs of different nodes overlap.
///
/// A commit of k + m columns thus costs about one sync, not k + m. A failed
/// batch does not stop the others; the caller decides what the successes
/// are worth. Each batch keeps the [`Node::append`] contract (durable when
/// `Ok`, one sync per batch).
///
/// ```
/// use geoshard::format::ColumnHeader;
/// use geoshard::node::{append_all, LocalNode, LocalOptions, Node, RecordRef};
///
/// let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
/// let nodes = [
///     LocalNode::open("a", dirs[0].path(), &LocalOptions::default())?,
///     LocalNode::open("b", dirs[1].path(), &LocalOptions::default())?,
/// ];
/// let payload = b"parity";
/// let header = ColumnHeader {
///     stripe_id: 1,
///     generation: 0,
///     data_count: 1,
///     parity_count: 1,
///     column_index: 0,
///     column_lens: vec![6, 6],
///     column_checksums: vec![crc32fast::hash(payload); 2],
///     placement: vec!["a".into(), "b".into()],
///     entry_table_lens: vec![0],
///     commit: geoshard::format::CommitStamp::default(),
///     handoffs: Vec::new(),
/// };
/// let data = [RecordRef { header: &header, payload }];
/// let mut parity_header = header.clone();
/// parity_header.column_index = 1;
/// let parity = [RecordRef { header: &parity_header, payload }];
/// let results = append_all(&[(&nodes[0], 0, &data), (&nodes[1], 0, &parity)]);
/// assert!(results.iter().all(|result| result.is_ok()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn append_all(batches: &[AppendBatch<'_>]) -> Vec<Result<Vec<RecordLocation>>> {
    append_all_timed(batches, false)
        .into_iter()
        .map(|(result, _)| result)
        .collect()
}

/// A batch's answer and, when measured, its time.
pub(crate) type TimedAppend = (Result<Vec<RecordLocation>>, Option<Duration>);

/// As [`append_all`], with each batch's time when it was measured: from the
/// call to that batch's records being durable (or its failure known). The
/// store's per-node append times. Batches on threads of their own are
/// always timed; those that share the io_uring submission only when
/// `timed` (timing them wakes the caller about once per batch
/// instead of once: see `UringEngine::run`). A batch that finishes while
/// the caller waits for another is stamped when the caller wakes, so a
/// fast node's time can read as long as a slower one's.
pub(crate) fn append_all_timed(batches: &[AppendBatch<'_>], timed: bool) -> Vec<TimedAppend> {
    let started = Instant::now();
    let mut results: Vec<Option<TimedAppend>> = batches.iter().map(|_| None).collect();
    let mut shared: Vec<(usize, &LocalNode, u64, &[RecordRef<'_>])> = Vec::new();
    let mut threaded: Vec<usize> = Vec::new();
    let mut seen: HashSet<(*const LocalNode, u64)> = HashSet::new();
    for (index, &(node, generation, records)) in batches.iter().enumerate() {
        match node.shared_submission() {
            Some(SharedSubmission { local }) if seen.insert((local as *const _, generation)) => {
                shared.push((index, local, generation, records));
            }
            _ => threaded.push(index),
        }
    }
    std::thread::scope(|scope| {
        // With nothing to submit, the calling thread takes a batch itself.
        let inline = if shared.is_empty() {
            threaded.pop()
        } else {
            None
        };
        let handles: Vec<_> = threaded
            .iter()
            .map(|&index| {
                let (node, generation, records) = batches[index];
                let handle = scope.spawn(move || {
                    let result = node.append(generation, records);
                    (result, Some(started.elapsed()))
                });
                (index, handle)
            })
            .collect();
        if let Some(index) = inline {
            let (node, generation, records) = batches[index];
            let result = node.append(generation, records);
            results[index] = Some((result, Some(started.elapsed())));
        }
        if !shared.is_empty() {
            let local: Vec<(&LocalNode, u64, &[RecordRef<'_>])> = shared
                .iter()
                .map(|&(_, node, generation, records)| (node, generation, records))
                .collect();
            for ((index, ..), (result, done)) in shared.iter().zip(append_shared(&local, timed)) {
                let elapsed = done.map(|done| done.saturating_duration_since(started));
                results[*index] = Some((result, elapsed));
            }
        }
        for (index, handle) in handles {
            let result = handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            results[index] = Some(result);
        }
    });
    results
        .into_iter()
        .map(|result| {
            result.unwrap_or_else(|| (Err(Error::invalid("batch was not appended")), None))
        })
        .collect()
}

#[cfg(target_os = "linux")]
fn append_shared(
    batches: &[(&LocalNode, u64, &[RecordRef<'_>])],
    timed: bool,
) -> Vec<local::DoneAppend> {
    LocalNode::append_shared(batches, timed)
}

#[cfg(not(target_os = "linux"))]
fn append_shared(
    batches: &[(&LocalNode, u64, &[RecordRef<'_>])],
    timed: bool,
) -> Vec<local::DoneAppend> {
    batches
        .iter()
        .map(|(node, generation, records)| {
            (node.append(*generation, records), timed.then(Instant::now))
        })
        .collect()
}
