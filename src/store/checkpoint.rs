//! Index checkpoints: the stripe table and the index as of one moment,
//! written Reed-Solomon coded across the nodes like a stripe, so that open
//! reads them instead of every entry table (docs/DURABILITY.md,
//! "Checkpoints"; the bytes: docs/FORMAT.md, "Checkpoint").
//!
//! A checkpoint is a cache of what a full scan would rebuild, never the
//! only copy of anything: open falls back to the full scan whenever a
//! checkpoint cannot be read, fails a check, or does not match the nodes.
//!
//! Where it lives: generation `SESSION_MAX << 40 | session << 16 | n` of
//! each node (a session no stripe id ever has), one record per column of
//! each chunk of the body, the chunk's columns placed as a stripe with the
//! chunk's number as its id would be.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::index::{Directory, IndexImage, PartLoc, SplitBlob};
use super::inner::Inner;
use super::open::{SESSION_MAX, SESSION_SHIFT, session_of};
use super::state::GenerationUsage;
use super::stripes::{ColumnInfo, StripeInfo, StripeTable};
use crate::format::wire::{Reader, put_u16, put_u32, put_u64};
use crate::format::{COLUMN_LEN_MAX, ColumnHeader, CommitStamp};
use crate::layout::{Layout, NodeId};
use crate::node::{RecordLocation, RecordRef};
use crate::{Error, Result};
use bytes::Bytes;

/// What [`Store::checkpoint`](super::Store::checkpoint) wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckpointReport {
    /// The generation the checkpoint's columns were written to.
    pub generation: u64,
    /// Blobs in the index it describes (a delta's base's included).
    pub blobs: u64,
    /// Index records it wrote: [`blobs`](Self::blobs) for a full
    /// checkpoint, those above its base for a delta.
    pub records: u64,
    /// The generation of the checkpoint this one is a delta over (its
    /// records are the index's above that one's: docs/DURABILITY.md, C8);
    /// `None` for a full checkpoint.
    pub delta_of: Option<u64>,
    /// Stripes in its stripe table.
    pub stripes: u64,
    /// Bytes of the checkpoint before coding.
    pub body_bytes: u64,
    /// Column bytes written to the nodes (data and parity).
    pub column_bytes: u64,
    /// Older checkpoints removed.
    pub removed: usize,
    /// Nodes whose columns it does not have: their homes took no writes
    /// (down, or unwritable). It was kept with k columns or more of
    /// each chunk (docs/DURABILITY.md, C2), so one more loss there leaves
    /// it undecodable and open scans every record instead; the first
    /// checkpoint after those nodes take writes again is full.
    pub nodes_skipped: Vec<String>,
    /// Milliseconds the store's state was locked for the copy (puts wait
    /// that long at most).
    pub locked_ms: u64,
    /// Whether the running index moved onto the checkpoint's records
    /// (read in place from the nodes, as an open from it would): its
    /// in-memory records of the keys written before are let go. It moves
    /// onto every full checkpoint (one written when it holds above the
    /// checkpoint it stands on at least a quarter as many records as
    /// that one, or it stands on none), never onto a delta. False
    /// otherwise, and when the checkpoint could not be read back
    /// (logged); the index then stays as it was, and the next checkpoint
    /// is full and moves it.
    pub rebased: bool,
    /// Milliseconds the store's state was locked to move the index onto
    /// the checkpoint (the changes of the last moments replayed, then the
    /// swap): 0 when it did not.
    pub rebase_locked_ms: u64,
}

/// The index moves onto a checkpoint ([`rebase`]) when it holds at least
/// 1/`REBASE_OVERLAY_SHARE` as many records in memory as in its base (a
/// store without a base moves at its first checkpoint).
const REBASE_OVERLAY_SHARE: usize = 4;

/// The most changes [`rebase`] replays under the state's write lock (at
/// about 1 µs each), unless writes never let up: see [`REPLAY_PASSES_MAX`].
const REPLAY_LOCKED_MAX: usize = 10_000;
/// Passes over the journal outside the lock before the last one under it.
const REPLAY_PASSES_MAX: usize = 8;

/// Deltas written over one full checkpoint at most, before the next
/// checkpoint is full (the base's columns are then written anew: a
/// checkpoint's columns are not repaired, and a delta does not read its
/// base back).
const DELTAS_PER_BASE_MAX: u32 = if cfg!(test) { 3 } else { 16 };

/// What a process wrote of checkpoints: what decides whether the next
/// one may be a delta over the full one the index stands on
/// (docs/DURABILITY.md, C8).
#[derive(Debug, Default)]
pub(crate) struct Chain {
    /// The newest full checkpoint this process wrote (the others were
    /// removed after it); `None` before its first: the index's bottom
    /// checkpoint, if any, is the one open read, still on the nodes.
    newest_full: Option<u64>,
    /// The full checkpoint this process wrote deltas over, and how many.
    over: Option<(u64, u32)>,
    /// A full checkpoint and the nodes its columns' placements name (as
    /// this process wrote it, or as open read it): the index's bottom
    /// one, once open or a move set it.
    homes: Option<(u64, BTreeSet<NodeId>)>,
    /// The checkpoints this process wrote without some homes' columns
    /// since its last whole one (C2): the only ones a checkpoint that is
    /// not whole removes, so that an older whole one stays, for an open
    /// that loses another site before the next whole one.
    degraded: BTreeSet<u64>,
    /// The newest checkpoint (as this process wrote it, or as open read
    /// it) and, if a delta, the full one under it, each with the nodes its
    /// columns' placements name: what [`lacks_columns`] asks the homes
    /// that take writes about.
    newest: Vec<(u64, BTreeSet<NodeId>)>,
}

impl Chain {
    /// Whether the next checkpoint, of `generation`, may be a delta over
    /// the full checkpoint `base` (the index's bottom one), whose columns
    /// `holders` hold now: this process did not remove it, the
    /// generation orders after it (the counter of a session's
    /// checkpoints wraps after 65,536), fewer than
    /// [`DELTAS_PER_BASE_MAX`] deltas stand on it, and every home of its
    /// columns that takes writes now and answered the listing
    /// (`writable`) holds its columns (a node holds all of its columns of
    /// a checkpoint or none: `write_columns`). A
    /// base written while a home was down (C2), or whose home was taken
    /// back empty since, is written anew by a full checkpoint once that
    /// home takes writes: a checkpoint's columns are not repaired.
    fn allows(
        &self,
        base: u64,
        generation: u64,
        holders: Option<&Vec<NodeId>>,
        writable: impl Fn(NodeId) -> bool,
    ) -> bool {
        if self.newest_full.is_some_and(|newest| newest != base) || generation <= base {
            return false;
        }
        let Some(holders) = holders else {
            return false;
        };
        let whole = matches!(&self.homes, Some((full, homes)) if *full == base
            && homes.iter().all(|&id| holders.contains(&id) || !writable(id)));
        whole
            && match self.over {
                Some((over, deltas)) if over == base => deltas < DELTAS_PER_BASE_MAX,
                _ => true,
            }
    }

    /// Open read the index's bottom checkpoint `base`, whose columns'
    /// placements name `homes`, and `newest` (the checkpoint it read and
    /// the full one under it if a delta, each with its homes).
    pub(crate) fn opened_over(
        &mut self,
        base: u64,
        homes: BTreeSet<NodeId>,
        newest: Vec<(u64, BTreeSet<NodeId>)>,
    ) {
        self.homes = Some((base, homes));
        self.newest = newest;
    }
}

/// Whether a member node that takes writes now, and that the newest
/// checkpoint's columns (or those of the full one under it) name as a
/// home, lacks them: it was down when the checkpoint was written (C2),
/// or came back empty since. Until the next checkpoint writes them, that
/// checkpoint has less than the layout's margin, and an open that loses
/// another site falls back to an older checkpoint or the full scan
/// (docs/DURABILITY.md, "What is not protected"); the policy then writes
/// the next checkpoint without waiting (`submit::checkpoint_if_lacking`),
/// full unless the node lacks only a delta's columns (C8). Lists the
/// generations of those homes only; false for a store that writes no
/// checkpoint now (read-only, closed, a loss pending), before any
/// checkpoint, or when a listing fails.
pub(crate) fn lacks_columns(inner: &Inner) -> bool {
    if inner.read_only.load(Ordering::Acquire)
        || inner.closed.load(Ordering::Acquire)
        || inner.loss.is_pending()
    {
        return false;
    }
    let newest = inner
        .checkpoint_chain
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .newest
        .clone();
    // Each home asked once, about the generations whose columns it is a
    // home of (a delta's chunks and its base's may have other homes).
    let mut asked: BTreeMap<NodeId, Vec<u64>> = BTreeMap::new();
    for (generation, homes) in newest {
        for id in homes {
            asked.entry(id).or_default().push(generation);
        }
    }
    asked.into_iter().any(|(id, generations)| {
        inner.manifests.is_member(id)
            && inner.nodes.is_writable(id)
            && inner.nodes.get(id).is_some_and(|node| {
                node.generations()
                    .is_ok_and(|held| generations.iter().any(|g| !held.contains(g)))
            })
    })
}

/// Stops the index's journal when a checkpoint's write ends, whichever
/// way (the journal is kept only to move the index onto the checkpoint).
struct JournalGuard<'a>(&'a Inner);

impl Drop for JournalGuard<'_> {
    fn drop(&mut self) {
        let journal = self.0.write_state().index.stop_journal();
        drop(journal);
    }
}

/// Chunks of the body are coded with columns of at most this many bytes.
const CHUNK_COLUMN_LEN: usize = if cfg!(test) { 4096 } else { 16 << 20 };
const _: () = assert!(CHUNK_COLUMN_LEN as u64 <= COLUMN_LEN_MAX);
/// Bodies at least this long are read by two threads.
const PARALLEL_BODY_MIN: usize = 64 << 20;

/// The body's last bytes: magic, version, then the fields of [`Trailer`],
/// then a crc32 of every byte of the body before it.
const TRAILER_MAGIC: [u8; 4] = *b"GSCK";
const TRAILER_VERSION: u16 = 3;
/// The version of a delta checkpoint's body (a full one is written as
/// version 3): version 3 with the trailer's flags and a last section.
const DELTA_VERSION: u16 = 4;
/// The trailer's flag of a delta checkpoint (version 4).
const FLAG_DELTA: u16 = 1;
const TRAILER_LEN: usize = 4 + 2 + 2 + 16 + 8 * 7 + 4;

/// "Not stored" in a column's node field.
const NOT_STORED: u16 = u16::MAX;

/// Whether `generation` holds a checkpoint (no stripe id is of the session
/// `SESSION_MAX`: open refuses to start it).
pub(crate) fn is_checkpoint_generation(generation: u64) -> bool {
    session_of(generation) == SESSION_MAX
}

/// The generation of checkpoint `n` of session `session`.
fn generation_of(session: u64, n: u16) -> u64 {
    (SESSION_MAX << SESSION_SHIFT) | ((session & ((1 << 24) - 1)) << 16) | u64::from(n)
}

/// Everything a checkpoint holds (docs/FORMAT.md, "Checkpoint").
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Snapshot {
    pub store_id: [u8; 16],
    /// The session that wrote it.
    pub session: u64,
    /// The next stripe id at the moment the horizons were taken: every
    /// stripe below it is in the stripe table, or not part of the store.
    pub cut: u64,
    /// Names of the nodes the horizons and columns refer to, by number.
    pub nodes: Vec<String>,
    /// How many of `nodes`, from the first, were measured (their horizons
    /// are all their segments); the rest are named only by columns.
    pub measured: u16,
    /// Each measured node's `node_since` (manifest): a node rebuilt since
    /// has another, and its segments are not the ones measured.
    pub node_since: Vec<u64>,
    /// (node number, generation, bytes): each segment's durable length
    /// when the checkpoint was taken. A node left out was not measured.
    pub horizons: Vec<(u16, u64, u64)>,
    /// Retired generations whose removal was not confirmed everywhere.
    pub retired: Vec<u64>,
    pub generations: Vec<(u64, GenerationUsage)>,
    /// (slot, stripe) of every visible stripe.
    pub stripes: Vec<(u32, Arc<StripeInfo>)>,
    /// The index: its records here when written or read from a version 1
    /// body; in `base` when read from a version 2 or 3 body (the rest here).
    pub index: IndexImage,
    /// A version 2 or 3 body's index records, where they were read.
    pub base: Option<BasePieces>,
    /// A delta checkpoint's base, and which of its records the delta
    /// hides (version 4).
    pub delta: Option<DeltaOf>,
    /// A delta's base's records where they were read, once
    /// [`load_newest`] found it.
    pub below: Option<Below>,
    /// The crc32 of the body (the last field of its trailer).
    pub crc: u32,
    /// The generation it was read from (none when written).
    pub generation: Option<u64>,
    /// The nodes its chunks' placements name for a column with bytes (as
    /// read; empty when written).
    pub homes: BTreeSet<NodeId>,
    /// The pages the SIGBUS handler had replaced with zeros before its
    /// pieces were read (`node::mark_replaced`): a base read in place from
    /// them watches for replacements since (`BaseIndex::intact`, C9).
    pub replaced_before: crate::node::ReplacedMark,
}

/// What a delta checkpoint is a delta over.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct DeltaOf {
    /// The base checkpoint's generation and body crc.
    pub base: (u64, u32),
    /// Ids of the base's records the delta hides, ascending.
    pub hidden: Vec<u32>,
}

/// A delta's base checkpoint's index records, read in place
/// ([`load_below`] checked it is the body the delta names, of the same
/// hash key).
#[derive(Debug, PartialEq)]
pub(crate) struct Below {
    pub pieces: BasePieces,
    pub count: u64,
    pub splits: Vec<SplitBlob>,
    /// [`Snapshot::homes`] of the base.
    pub homes: BTreeSet<NodeId>,
}

/// A version 2 or 3 body's index records in the pieces they were read into
/// (mapped column bytes on a local node), and their bucket directory.
#[derive(Debug, Default)]
pub(crate) struct BasePieces {
    pub pieces: Vec<Bytes>,
    pub directory: Directory,
    /// Every column of the body the records were read from, with its
    /// crc32 (when the reader knew them): what `BaseIndex::verify` checks
    /// before a compaction or a checkpoint acts on the records (C9).
    pub columns: Vec<(Bytes, u32)>,
}

/// The same records and directory (how the reader knew the columns'
/// checksums is not the body's).
impl PartialEq for BasePieces {
    fn eq(&self, other: &Self) -> bool {
        self.pieces == other.pieces && self.directory == other.directory
    }
}

/// Bytes `from..to` of the body `pieces` hold, copied.
fn copy_range(pieces: &[Bytes], from: usize, to: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(to.saturating_sub(from));
    let mut start = 0;
    for piece in pieces {
        let end = start + piece.len();
        if end > from && start < to {
            let a = from.max(start) - start;
            let b = to.min(end) - start;
            out.extend_from_slice(&piece[a..b]);
        }
        start = end;
    }
    out
}

/// Bytes `from..to` of the body `pieces` hold, as slices of them.
fn slice_range(pieces: &[Bytes], from: usize, to: usize) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut start = 0;
    for piece in pieces {
        let end = start + piece.len();
        if end > from && start < to {
            out.push(piece.slice(from.max(start) - start..to.min(end) - start));
        }
        start = end;
    }
    out
}

impl Snapshot {
    /// The body: records, then the rest, then the trailer.
    #[cfg(test)]
    fn encode(&self, layout: &Layout) -> Result<Vec<u8>> {
        self.encode_version(layout, TRAILER_VERSION)
    }

    /// [`encode`](Self::encode) in format `version` (1: no directory; 2:
    /// no filters; for the tests that read older bodies).
    #[cfg(any(test, feature = "testing"))]
    fn encode_version(&self, layout: &Layout, version: u16) -> Result<Vec<u8>> {
        self.encode_onto(self.index.records.clone(), layout, version)
    }

    /// The body, in format `version`, whose records (`self.index.records`,
    /// which may have been taken out) are `out`: the rest is appended to
    /// them, not copied with them (at 10^7 blobs the records are hundreds
    /// of MiB, and fresh memory is slow to touch: docs/PERFORMANCE.md).
    fn encode_onto(&self, mut out: Vec<u8>, layout: &Layout, version: u16) -> Result<Vec<u8>> {
        let node_number = |id: NodeId| -> u16 {
            self.nodes
                .iter()
                .position(|n| *n == layout.node(id).name)
                .map_or(NOT_STORED, |i| i as u16)
        };
        out.reserve(self.stripes.len() * 512 + 4096);
        let meta_start = out.len();
        if version >= 2 {
            let directory = self.index.directory_over(&out);
            put_u32(&mut out, directory.starts.len() as u32);
            for entry in directory.starts {
                put_u32(&mut out, entry);
            }
            if version >= 3 {
                put_u32(&mut out, directory.filters.len() as u32);
                for filter in directory.filters {
                    put_u64(&mut out, filter);
                }
            }
        }
        put_u16(&mut out, self.nodes.len() as u16);
        for name in &self.nodes {
            out.push(name.len() as u8);
            out.extend_from_slice(name.as_bytes());
        }
        put_u16(&mut out, self.measured);
        for &since in &self.node_since {
            put_u64(&mut out, since);
        }
        put_u32(&mut out, self.horizons.len() as u32);
        for &(node, generation, len) in &self.horizons {
            put_u16(&mut out, node);
            put_u64(&mut out, generation);
            put_u64(&mut out, len);
        }
        put_u32(&mut out, self.retired.len() as u32);
        for &generation in &self.retired {
            put_u64(&mut out, generation);
        }
        put_u32(&mut out, self.generations.len() as u32);
        for (generation, usage) in &self.generations {
            put_u64(&mut out, *generation);
            for value in [
                usage.stripes,
                usage.column_bytes,
                usage.blob_bytes,
                usage.live_bytes,
                usage.stale_column_bytes,
            ] {
                put_u64(&mut out, value);
            }
        }
        put_u32(&mut out, self.stripes.len() as u32);
        for (slot, info) in &self.stripes {
            put_u32(&mut out, *slot);
            info.header.encode_into(&mut out)?;
            for column in &info.columns {
                put_u32(&mut out, column.len);
                put_u32(&mut out, column.checksum);
                let (node, loc) = match column.stored {
                    Some((node, loc)) => (node_number(node), loc),
                    None => (
                        NOT_STORED,
                        RecordLocation {
                            generation: 0,
                            offset: 0,
                            len: 0,
                        },
                    ),
                };
                put_u16(&mut out, node);
                put_u64(&mut out, loc.generation);
                put_u64(&mut out, loc.offset);
                put_u32(&mut out, loc.len);
            }
        }
        put_u32(&mut out, self.index.splits.len() as u32);
        for split in &self.index.splits {
            put_u64(&mut out, split.len);
            put_u32(&mut out, split.parts.len() as u32);
            for part in &split.parts {
                put_part(&mut out, part);
            }
        }
        let mut flags = 0;
        if let Some(delta) = &self.delta {
            if version < DELTA_VERSION {
                return Err(crate::format::wire::corrupt(
                    "checkpoint",
                    format!("a delta in version {version}"),
                ));
            }
            flags |= FLAG_DELTA;
            put_u64(&mut out, delta.base.0);
            put_u32(&mut out, delta.base.1);
            put_u32(&mut out, delta.hidden.len() as u32);
            for &id in &delta.hidden {
                put_u32(&mut out, id);
            }
        }
        let meta_len = out.len() - meta_start;
        out.extend_from_slice(&TRAILER_MAGIC);
        put_u16(&mut out, version);
        put_u16(&mut out, flags);
        out.extend_from_slice(&self.store_id);
        for value in [
            self.session,
            self.cut,
            self.index.hash_key.0,
            self.index.hash_key.1,
            meta_start as u64,
            self.index.count,
            meta_len as u64,
        ] {
            put_u64(&mut out, value);
        }
        let crc = crc32fast::hash(&out);
        put_u32(&mut out, crc);
        Ok(out)
    }

    /// Decodes a body from the `pieces` it was read into, in order. A
    /// version 2 or 3 body's index records stay in the pieces (`base`); a
    /// version 1 body's are copied into the index image. `layout` names
    /// the nodes and the code: a checkpoint of other nodes or another code
    /// is refused.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for any byte out of place.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn decode(pieces: Vec<Bytes>, layout: &Layout) -> Result<Snapshot> {
        Snapshot::decode_with_crcs(pieces, None, layout)
    }

    /// `decode` of pieces whose crc32s are known already
    /// (`crcs[i]` that of `pieces[i]`: the body's columns, each checked
    /// against its column checksum as it was read or rebuilt). The body's
    /// checksum is then combined from them instead of read over every
    /// byte again (a pass of 590 MiB at 14 M blobs, on one thread): the
    /// same value, the same check.
    pub(crate) fn decode_with_crcs(
        pieces: Vec<Bytes>,
        crcs: Option<&[u32]>,
        layout: &Layout,
    ) -> Result<Snapshot> {
        let bad = |reason: String| crate::format::wire::corrupt("checkpoint", reason);
        let total: usize = pieces.iter().map(Bytes::len).sum();
        if total < TRAILER_LEN {
            return Err(bad(format!("{total} bytes")));
        }
        let crc_at = total - 4;
        let crcs = crcs.filter(|c| c.len() == pieces.len());
        let mut hasher = crc32fast::Hasher::new();
        let mut left = crc_at;
        for (i, piece) in pieces.iter().enumerate() {
            let n = piece.len().min(left);
            match crcs.and_then(|c| c.get(i)) {
                Some(&crc) if n == piece.len() => {
                    hasher.combine(&crc32fast::Hasher::new_with_initial_len(crc, n as u64));
                }
                _ => hasher.update(&piece[..n]),
            }
            left -= n;
        }
        let trailer = copy_range(&pieces, total - TRAILER_LEN, total);
        let crc = u32::from_le_bytes([
            trailer[TRAILER_LEN - 4],
            trailer[TRAILER_LEN - 3],
            trailer[TRAILER_LEN - 2],
            trailer[TRAILER_LEN - 1],
        ]);
        if hasher.finalize() != crc {
            return Err(bad("checksum mismatch".into()));
        }
        let mut t = Reader::new(&trailer, "checkpoint trailer");
        if t.array::<4>()? != TRAILER_MAGIC {
            return Err(bad("no trailer magic".into()));
        }
        let version = t.u16()?;
        if !(1..=DELTA_VERSION).contains(&version) {
            return Err(bad(format!("version {version}")));
        }
        let flags = t.u16()?;
        let allowed = if version >= DELTA_VERSION {
            FLAG_DELTA
        } else {
            0
        };
        if flags & !allowed != 0 {
            return Err(bad(format!("flags {flags:#x} in version {version}")));
        }
        let store_id = t.array::<16>()?;
        let (session, cut, k0, k1) = (t.u64()?, t.u64()?, t.u64()?, t.u64()?);
        let (records_len, count, meta_len) = (t.u64()?, t.u64()?, t.u64()?);
        let meta_end = total - TRAILER_LEN;
        let records_len = usize::try_from(records_len).map_err(|_| bad("length".into()))?;
        if records_len.checked_add(usize::try_from(meta_len).unwrap_or(usize::MAX))
            != Some(meta_end)
        {
            return Err(bad("section lengths".into()));
        }
        let mut snapshot = Snapshot {
            store_id,
            session,
            cut,
            crc,
            ..Snapshot::default()
        };
        let meta = copy_range(&pieces, records_len, meta_end);
        let mut r = Reader::new(&meta, "checkpoint");
        let mut directory = Directory::default();
        if version >= 2 {
            let n = r.u32()? as usize;
            if n.saturating_mul(4) > r.remaining() {
                return Err(bad(format!("a directory of {n} entries")));
            }
            directory.starts.reserve_exact(n);
            for _ in 0..n {
                directory.starts.push(r.u32()?);
            }
        }
        if version >= 3 {
            let n = r.u32()? as usize;
            if n.saturating_add(1) != directory.starts.len() || n.saturating_mul(8) > r.remaining()
            {
                return Err(bad(format!(
                    "{n} filters for a directory of {} entries",
                    directory.starts.len()
                )));
            }
            directory.filters.reserve_exact(n);
            for _ in 0..n {
                directory.filters.push(r.u64()?);
            }
        }
        let node_count = usize::from(r.u16()?);
        for _ in 0..node_count {
            let len = usize::from(r.u8()?);
            let name = std::str::from_utf8(r.take(len)?).map_err(|_| bad("node name".into()))?;
            snapshot.nodes.push(name.to_string());
        }
        snapshot.measured = r.u16()?;
        if usize::from(snapshot.measured) > node_count {
            return Err(bad(format!(
                "{} nodes measured of {node_count}",
                snapshot.measured
            )));
        }
        for _ in 0..snapshot.measured {
            snapshot.node_since.push(r.u64()?);
        }
        let node_ids: Vec<Option<NodeId>> = snapshot
            .nodes
            .iter()
            .map(|n| layout.node_by_name(n))
            .collect();
        let count_of = |r: &mut Reader<'_>, item: usize| -> Result<usize> {
            let n = r.u32()? as usize;
            if n.saturating_mul(item) > r.remaining() {
                return Err(bad(format!("{n} items in {} bytes", r.remaining())));
            }
            Ok(n)
        };
        for _ in 0..count_of(&mut r, 18)? {
            let node = r.u16()?;
            if node >= snapshot.measured {
                return Err(bad(format!("horizon of node number {node}, not measured")));
            }
            snapshot.horizons.push((node, r.u64()?, r.u64()?));
        }
        for _ in 0..count_of(&mut r, 8)? {
            snapshot.retired.push(r.u64()?);
        }
        for _ in 0..count_of(&mut r, 48)? {
            let generation = r.u64()?;
            let usage = GenerationUsage {
                stripes: r.u64()?,
                column_bytes: r.u64()?,
                blob_bytes: r.u64()?,
                live_bytes: r.u64()?,
                stale_column_bytes: r.u64()?,
            };
            snapshot.generations.push((generation, usage));
        }
        let code = layout.code();
        for _ in 0..count_of(&mut r, 4 + crate::format::HEADER_FIXED_LEN)? {
            let slot = r.u32()?;
            let rest = &meta[r.position()..];
            let (header, header_len) = ColumnHeader::decode(rest)?;
            r.take(header_len)?;
            if usize::from(header.data_count) != code.data_count
                || usize::from(header.parity_count) != code.parity_count
            {
                return Err(bad(format!("stripe {} of another code", header.stripe_id)));
            }
            let mut columns = Vec::with_capacity(header.column_lens.len());
            for c in 0..header.column_lens.len() {
                let (len, checksum, node) = (r.u32()?, r.u32()?, r.u16()?);
                let loc = RecordLocation {
                    generation: r.u64()?,
                    offset: r.u64()?,
                    len: r.u32()?,
                };
                let stored = if node == NOT_STORED {
                    None
                } else {
                    let id = node_ids
                        .get(usize::from(node))
                        .copied()
                        .flatten()
                        .ok_or_else(|| bad(format!("node number {node}")))?;
                    Some((id, loc))
                };
                let home = header
                    .placement
                    .get(c)
                    .and_then(|name| layout.node_by_name(name));
                columns.push(ColumnInfo {
                    len,
                    checksum,
                    home,
                    stored,
                });
            }
            snapshot.stripes.push((
                slot,
                Arc::new(StripeInfo {
                    stripe_id: header.stripe_id,
                    generation: header.generation,
                    columns: columns.into(),
                    header,
                }),
            ));
        }
        let mut splits = Vec::new();
        for _ in 0..count_of(&mut r, 12)? {
            let len = r.u64()?;
            let parts = count_of(&mut r, 18)?;
            let parts: Vec<PartLoc> = (0..parts)
                .map(|_| get_part(&mut r))
                .collect::<Result<_>>()?;
            splits.push(SplitBlob {
                len,
                parts: parts.into(),
            });
        }
        if flags & FLAG_DELTA != 0 {
            let base = (r.u64()?, r.u32()?);
            let n = count_of(&mut r, 4)?;
            let hidden = (0..n).map(|_| r.u32()).collect::<Result<Vec<u32>>>()?;
            snapshot.delta = Some(DeltaOf { base, hidden });
        }
        if r.remaining() != 0 {
            return Err(bad(format!(
                "{} bytes after the last section",
                r.remaining()
            )));
        }
        let records = if version >= 2 {
            snapshot.base = Some(BasePieces {
                pieces: slice_range(&pieces, 0, records_len),
                directory,
                columns: crcs
                    .map(|crcs| pieces.iter().cloned().zip(crcs.iter().copied()).collect())
                    .unwrap_or_default(),
            });
            Vec::new()
        } else {
            copy_range(&pieces, 0, records_len)
        };
        snapshot.index = IndexImage {
            records,
            splits,
            count,
            hash_key: (k0, k1),
            directory: Directory::default(),
        };
        Ok(snapshot)
    }

    /// The stripe table and the index this snapshot holds, checked against
    /// each other (every part inside a column of a stripe in the table).
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming what does not fit.
    pub(crate) fn into_state(self, k: usize, room: usize) -> Result<(super::State, Vec<u64>, u64)> {
        let (mut state, retired, cut, index) = self.into_stripes(k)?;
        state.index = index.load(room)?;
        Ok((state, retired, cut))
    }

    /// [`into_state`](Self::into_state) in two steps: the state with the
    /// stripe table and generations, and an empty index under the
    /// checkpoint's hash key (changes can be gathered for it); then the
    /// index, still to be checked against the table ([`IndexLoad`]).
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming what does not fit.
    pub(crate) fn into_stripes(self, k: usize) -> Result<(super::State, Vec<u64>, u64, IndexLoad)> {
        let bad = |reason: String| crate::format::wire::corrupt("checkpoint", reason);
        let stripes = StripeTable::restore(
            self.stripes
                .into_iter()
                .map(|(slot, info)| (slot, Arc::unwrap_or_clone(info)))
                .collect(),
        )
        .map_err(bad)?;
        // Each data column's length by slot, flat (checked for every
        // record: one load instead of three dependent ones).
        let slots = stripes.slots().map(|(slot, _)| slot as usize + 1).max();
        let mut column_lens: Vec<Option<u32>> = vec![None; slots.unwrap_or(0) * k];
        for (slot, info) in stripes.slots() {
            for (c, column) in info.columns.iter().take(k).enumerate() {
                if let Some(len) = column_lens.get_mut(slot as usize * k + c) {
                    *len = Some(column.len);
                }
            }
        }
        let state = super::State {
            index: super::index::Index::with_hash_key(self.index.hash_key),
            stripes,
            generations: self.generations.into_iter().collect(),
        };
        let load = IndexLoad {
            image: self.index,
            base: self.base,
            origin: self.generation.map(|g| (g, self.crc)),
            replaced_before: self.replaced_before,
            delta: self.delta,
            below: self.below,
            column_lens,
            k,
        };
        Ok((state, self.retired, self.cut, load))
    }
}

/// A checkpoint's index, still to be checked against its stripe table and
/// made an [`Index`](super::index::Index): the records read in place (a
/// version 2 or 3 body) or copied (version 1).
pub(crate) struct IndexLoad {
    image: IndexImage,
    base: Option<BasePieces>,
    /// The checkpoint's generation and body crc.
    origin: Option<(u64, u32)>,
    /// [`Snapshot::replaced_before`].
    replaced_before: crate::node::ReplacedMark,
    /// A delta's base and the records of it the delta hides.
    delta: Option<DeltaOf>,
    below: Option<Below>,
    /// Each data column's length by slot (`slot * k + column`).
    column_lens: Vec<Option<u32>>,
    k: usize,
}

impl IndexLoad {
    /// Whether every part `p` names lies inside a data column of a
    /// stripe in the table.
    fn part_ok(column_lens: &[Option<u32>], k: usize, p: &PartLoc) -> bool {
        let c = usize::from(p.column_index);
        c < k
            && column_lens
                .get((p.slot as usize).saturating_mul(k).saturating_add(c))
                .copied()
                .flatten()
                .is_some_and(|len| u64::from(p.offset) + u64::from(p.len) <= u64::from(len))
    }

    /// The index, every record checked, with room for `room` more keys.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the first record or entry that does not
    /// fit.
    pub(crate) fn load(self, room: usize) -> Result<super::index::Index> {
        let bad = |reason: String| crate::format::wire::corrupt("checkpoint", reason);
        let (column_lens, k) = (self.column_lens, self.k);
        let part_ok = |p: &PartLoc| Self::part_ok(&column_lens, k, p);
        match self.base {
            Some(BasePieces {
                pieces,
                directory,
                columns,
            }) => {
                let image = self.image;
                let mut base = super::index::BaseIndex::new(
                    pieces,
                    directory,
                    image.count,
                    image.splits,
                    image.hash_key,
                    part_ok,
                    None,
                    &[],
                )
                .map_err(bad)?;
                if let Some((generation, crc)) = self.origin {
                    base.set_origin(generation, crc);
                }
                base.set_columns(columns);
                match (self.delta, self.below) {
                    (None, _) => {}
                    (Some(delta), Some(below)) => {
                        // Its records the delta hides may name stripes
                        // retired since: only the others' parts are
                        // checked (no lookup reads a hidden record).
                        let below_columns = below.pieces.columns;
                        let mut under = super::index::BaseIndex::new(
                            below.pieces.pieces,
                            below.pieces.directory,
                            below.count,
                            below.splits,
                            image.hash_key,
                            part_ok,
                            None,
                            &delta.hidden,
                        )
                        .map_err(|e| bad(format!("its base: {e}")))?;
                        under.set_origin(delta.base.0, delta.base.1);
                        under.set_columns(below_columns);
                        base = base.stack(under, &delta.hidden).map_err(bad)?;
                    }
                    (Some(_), None) => return Err(bad("a delta without its base".into())),
                }
                // Read in place from here on: a page lost under the store
                // is seen (C9); one lost since the read, already.
                if !base.watch(&self.replaced_before) {
                    return Err(bad(
                        "a page of its records was lost after they were read (a file cut \
                         short, or a media error)"
                            .into(),
                    ));
                }
                Ok(super::index::Index::from_base(base, room))
            }
            None => super::index::Index::from_image(self.image, room, part_ok).map_err(bad),
        }
    }

    /// [`load`](Self::load) on another thread, for records read in place
    /// (their check reads every record: open reads the tail meanwhile);
    /// `Err(self)` for a version 1 body, whose load needs its room. A
    /// thread that cannot be started is a refusal (open scans every
    /// record).
    pub(crate) fn spawn(self) -> std::result::Result<PendingIndex, Box<IndexLoad>> {
        if self.base.is_none() {
            return Err(Box::new(self));
        }
        let started = std::thread::Builder::new()
            .name("geoshard-checkpoint-check".into())
            .spawn(move || self.load(0));
        Ok(PendingIndex(started.ok()))
    }
}

/// A checkpoint's index being checked on another thread
/// ([`IndexLoad::spawn`]).
/// Dropped unfinished (open gave the checkpoint up, or failed), it waits
/// for the check to end: no thread is left reading the body beside what
/// open does next.
pub(crate) struct PendingIndex(Option<std::thread::JoinHandle<Result<super::index::Index>>>);

impl Drop for PendingIndex {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            // Its verdict is not wanted; a panic in it is not this
            // thread's to raise while dropping.
            let _ = handle.join();
        }
    }
}

impl PendingIndex {
    /// The index, once checked, with room for `room` more keys.
    ///
    /// # Errors
    /// As [`IndexLoad::load`].
    pub(crate) fn finish(mut self, room: usize) -> Result<super::index::Index> {
        let Some(handle) = self.0.take() else {
            return Err(crate::format::wire::corrupt(
                "checkpoint",
                "no thread could be started to check its records",
            ));
        };
        let mut index = handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        index.reserve(room);
        Ok(index)
    }
}

fn put_part(out: &mut Vec<u8>, part: &PartLoc) {
    put_u32(out, part.slot);
    put_u32(out, part.offset);
    put_u32(out, part.len);
    put_u32(out, part.checksum);
    put_u16(out, part.column_index);
}

fn get_part(r: &mut Reader<'_>) -> Result<PartLoc> {
    Ok(PartLoc {
        slot: r.u32()?,
        offset: r.u32()?,
        len: r.u32()?,
        checksum: r.u32()?,
        column_index: r.u16()?,
    })
}

/// An empty buffer of `capacity` bytes whose pages were all written (with
/// a byte that is not zero, which an allocation of zeroed memory could
/// otherwise stand for, its pages still untouched).
fn touched_buffer(capacity: usize) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(capacity);
    buffer.resize(capacity, 0xa5u8);
    std::hint::black_box(&mut buffer);
    buffer.clear();
    buffer
}

/// Takes and writes a checkpoint (docs/DURABILITY.md, "Checkpoints", C1-C3):
///
/// 1. with maintenance held (no compaction, repair or scrub writes
///    meanwhile), each reachable node's segment lengths: the horizons;
/// 2. the next stripe id (`cut`), then `settle`: every commit that took an
///    id below `cut` is published or failed (its discard recorded) when it
///    returns, so every record below a horizon belongs to a stripe in the
///    copy, or to one open discards;
/// 3. the copy, under the state's read lock;
/// 4. off the lock: the body, coded and written as one record per column
///    of each chunk (a home that takes no writes skipped, while k of
///    each chunk's do). Kept only if every column sent was written; the
///    older checkpoints are removed after.
///
/// # Errors
/// [`Error::Closed`], [`Error::WriteRefused`] (a read-only store, a loss
/// not accepted, a failed commit's discard not recorded yet),
/// [`Error::Unavailable`] or an I/O error when a column could not be
/// written (the partial checkpoint is removed), or what `settle` returns.
pub(crate) fn write(
    inner: &Inner,
    settle: impl FnOnce() -> Result<()>,
) -> Result<CheckpointReport> {
    let written = write_checkpoint(inner, settle);
    let stats = &inner.stats;
    match &written {
        Ok(report) => {
            stats.checkpoints.add(1);
            if report.delta_of.is_some() {
                stats.checkpoint_deltas.add(1);
            }
            if !report.nodes_skipped.is_empty() {
                stats.checkpoints_degraded.add(1);
            }
            stats.checkpoint_bytes.add(report.column_bytes);
        }
        Err(_) => stats.checkpoint_failures.add(1),
    }
    written
}

/// [`write`], not counted.
fn write_checkpoint(
    inner: &Inner,
    settle: impl FnOnce() -> Result<()>,
) -> Result<CheckpointReport> {
    let _only_one = inner.maintenance.lock().unwrap_or_else(|p| p.into_inner());
    if inner.closed.load(Ordering::Acquire) {
        return Err(Error::Closed);
    }
    let refuse = |reason: &str| {
        Err(Error::WriteRefused {
            reason: format!("no checkpoint: {reason}"),
        })
    };
    if inner.read_only.load(Ordering::Acquire) {
        return refuse("the store is read-only");
    }
    if inner.loss.is_pending() {
        return refuse("a loss beyond the promise is pending (Store::accept_loss)");
    }
    let layout = &inner.layout;
    let since_now = inner.manifests.state().node_since;
    let mut nodes: Vec<String> = Vec::new();
    let mut node_since: Vec<u64> = Vec::new();
    let mut horizons = Vec::new();
    // The member nodes holding each checkpoint's columns now.
    let mut held: BTreeMap<u64, Vec<NodeId>> = BTreeMap::new();
    // The member nodes whose listing answered: only those can be said to
    // lack a base's columns.
    let mut listed: BTreeSet<NodeId> = BTreeSet::new();
    for id in inner.nodes.ids() {
        let Some(node) = inner
            .nodes
            .get(id)
            .filter(|_| inner.manifests.is_member(id))
        else {
            continue;
        };
        let Ok(generations) = node.generations() else {
            continue;
        };
        listed.insert(id);
        // The same listing says which checkpoints' columns the node holds
        // (whether the next may be a delta, `Chain::allows`).
        for &g in generations.iter().filter(|&&g| is_checkpoint_generation(g)) {
            held.entry(g).or_default().push(id);
        }
        let number = nodes.len() as u16;
        let measured: Result<Vec<(u16, u64, u64)>> = generations
            .into_iter()
            .filter(|&g| !is_checkpoint_generation(g))
            .map(|g| Ok((number, g, node.segment_len(g)?)))
            .collect();
        // A node not measured is scanned whole by the open that loads
        // this checkpoint.
        if let Ok(measured) = measured {
            nodes.push(layout.node(id).name.clone());
            node_since.push(since_now.get(id.index()).copied().unwrap_or(0));
            horizons.extend(measured);
        }
    }
    // What the policy counts from here on is past this checkpoint (also
    // when it fails: the next try waits as long).
    let counted = inner.entries_since_checkpoint.load(Ordering::Relaxed);
    inner
        .entries_since_checkpoint
        .fetch_sub(counted, Ordering::Relaxed);
    inner.checkpoint_wanted.store(false, Ordering::Relaxed);
    // Read after the horizons: a record below one was written by a stripe
    // whose id was taken before.
    let cut = inner.next_stripe_id.load(Ordering::Acquire);
    let generation = generation_of(
        session_of(cut),
        inner.checkpoints_taken.fetch_add(1, Ordering::AcqRel) as u16,
    );
    settle()?;
    if inner.manifests.has_pending_discards() {
        return refuse("a failed commit's discard is not recorded in the manifest yet");
    }
    let retired: Vec<u64> = inner
        .retired_pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .copied()
        .collect();
    // The copy's buffer, its pages touched before the lock (a first
    // write of fresh memory is several times slower than a copy into
    // touched memory: the lock would be held that much longer), with
    // room for what the index grows by until the lock is taken.
    let arena_len = inner.read_state().index.arena_len();
    let buffer = touched_buffer(arena_len + arena_len / 64 + (4 << 20));
    let locked = Instant::now();
    let (copy, stripes, generations, moving, blobs) = {
        let state = inner.read_state();
        // The index moves onto this checkpoint (`rebase`) once what it
        // holds above its bottom checkpoint (in memory, and a delta's
        // records it was opened from) is a share of what that checkpoint
        // holds: the move costs a read-back of the checkpoint, and a
        // listing then sorts all of its keys anew (docs/PERFORMANCE.md).
        // Until then each checkpoint is a delta over the bottom one: it
        // writes only the records above it (C8). A bottom checkpoint
        // this process removed (a full one written since, the move onto
        // it failed) takes a full checkpoint, and the move.
        let (bottom, above) = state.index.layers();
        let over = state.index.bottom_origin().is_some_and(|(base, _)| {
            inner
                .checkpoint_chain
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .allows(base, generation, held.get(&base), |id| {
                    listed.contains(&id) && inner.nodes.is_writable(id)
                })
        });
        let moving = !over || above.saturating_mul(REBASE_OVERLAY_SHARE) >= bottom;
        // Every change of the index from this copy on is recorded, to be
        // replayed over the checkpoint's records.
        if moving {
            state.index.start_journal();
        }
        (
            state.index.copy_into(buffer),
            state
                .stripes
                .slots()
                .map(|(slot, info)| (slot, Arc::clone(info)))
                .collect::<Vec<_>>(),
            state.generations.clone(),
            moving,
            state.index.len() as u64,
        )
    };
    let locked_ms = locked.elapsed().as_millis() as u64;
    let _journal = moving.then(|| JournalGuard(inner));
    let measured = nodes.len() as u16;
    // Every node a stored column names is in the table.
    for (_, info) in &stripes {
        for column in &info.columns {
            if let Some((id, _)) = column.stored {
                let name = &layout.node(id).name;
                if !nodes.contains(name) {
                    nodes.push(name.clone());
                }
            }
        }
    }
    let manifest = inner.manifests.state();
    let mut snapshot = Snapshot {
        store_id: manifest.shared.store_id,
        session: session_of(cut),
        cut,
        nodes,
        measured,
        node_since,
        horizons,
        retired,
        generations: generations.into_iter().collect(),
        stripes,
        index: IndexImage::default(),
        base: None,
        delta: None,
        below: None,
        crc: 0,
        generation: None,
        homes: BTreeSet::new(),
        replaced_before: crate::node::ReplacedMark::default(),
    };
    if moving {
        snapshot.index = copy.image();
    } else {
        match copy.delta_image() {
            Ok(delta) => {
                snapshot.index = delta.image;
                snapshot.delta = Some(DeltaOf {
                    base: delta.base,
                    hidden: delta.hidden,
                });
            }
            // Unreachable: the index stood on a checkpoint at the copy.
            Err(copy) => snapshot.index = copy.image(),
        }
    }
    let delta_of = snapshot.delta.as_ref().map(|d| d.base.0);
    let version = if delta_of.is_some() {
        DELTA_VERSION
    } else {
        TRAILER_VERSION
    };
    let records = std::mem::take(&mut snapshot.index.records);
    let body = snapshot.encode_onto(records, layout, version)?;
    let mut report = CheckpointReport {
        generation,
        delta_of,
        blobs,
        records: snapshot.index.count,
        stripes: snapshot.stripes.len() as u64,
        body_bytes: body.len() as u64,
        locked_ms,
        ..CheckpointReport::default()
    };
    let written = (snapshot.store_id, snapshot.session, snapshot.cut);
    let crc = body.last_chunk::<4>().map_or(0, |b| u32::from_le_bytes(*b));
    drop(snapshot);
    // The image read the base's records in place: a page of them lost or
    // changed meanwhile would write a checkpoint without keys the store
    // holds, and remove the older ones (C9). Nothing is written then.
    if !inner.index_verified() {
        return Err(super::Inner::index_lost_error());
    }
    let columns = match write_columns(inner, generation, &body) {
        Ok(columns) => columns,
        Err(e) => {
            remove_checkpoints(inner, |g| g == generation);
            return Err(e);
        }
    };
    report.column_bytes = columns.bytes;
    report.nodes_skipped = columns
        .skipped
        .iter()
        .map(|&id| layout.node(id).name.clone())
        .collect();
    if !report.nodes_skipped.is_empty() {
        tracing::warn!(
            generation,
            nodes = ?report.nodes_skipped,
            "checkpoint written without the columns of nodes that take no writes: \
             one more loss leaves it undecodable (open then scans every record)"
        );
    }
    // Every other one is older (its number may be higher: the count of a
    // session wraps after 65,536), and a delta's base stays under it. A
    // checkpoint written while homes took no writes has no margin: it
    // removes only the checkpoints this process wrote as it was, so the
    // whole one before them stays until another whole one is written
    // (C2). Whole-ness is known only of what this process wrote: open
    // cannot tell a checkpoint a down node lacks from one it holds.
    let degraded = {
        let mut chain = inner
            .checkpoint_chain
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match delta_of {
            Some(base) => {
                match &mut chain.over {
                    Some((over, deltas)) if *over == base => *deltas += 1,
                    over => *over = Some((base, 1)),
                }
                let bottom = chain.homes.clone().filter(|(g, _)| *g == base);
                chain.newest = std::iter::once((generation, columns.homes))
                    .chain(bottom)
                    .collect();
            }
            None => {
                chain.newest_full = Some(generation);
                chain.over = None;
                chain.newest = vec![(generation, columns.homes.clone())];
                chain.homes = Some((generation, columns.homes));
            }
        }
        let mut own = std::mem::take(&mut chain.degraded);
        if columns.skipped.is_empty() {
            None
        } else {
            // This one, and its base if this process wrote that one as
            // it was too (it goes with the next of them that is full).
            chain.degraded.insert(generation);
            if let Some(base) = delta_of.filter(|base| own.remove(base)) {
                chain.degraded.insert(base);
            }
            Some(own)
        }
    };
    report.removed = remove_checkpoints(inner, |g| {
        g != generation
            && Some(g) != delta_of
            && degraded.as_ref().is_none_or(|own| own.contains(&g))
    });
    drop(body);
    let moved = if moving {
        rebase(inner, generation, written, crc)
    } else {
        Ok(None)
    };
    match moved {
        Ok(Some(locked)) => {
            report.rebased = true;
            report.rebase_locked_ms = locked;
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(
            generation,
            error = %e,
            "the index stays off the checkpoint just written (it could not be read back)"
        ),
    }
    tracing::info!(
        generation,
        blobs = report.blobs,
        body_bytes = report.body_bytes,
        locked_ms,
        rebased = report.rebased,
        "checkpoint written"
    );
    Ok(report)
}

/// Moves the running index onto checkpoint `generation`, just written:
/// its records are read back as an open from it reads them (in place on a
/// local node, rebuilt where a column is missing), the changes the journal
/// recorded since the checkpoint's copy are replayed over them (most
/// outside the state lock, the last under it), and the result replaces
/// the index. Its keys and locations are then the index's exactly: the
/// checkpoint is the index as of the copy, and the journal every change
/// after it, in order (docs/DURABILITY.md, "Checkpoints", C7). Returns the
/// milliseconds the state was locked; `None` when the index stays as it
/// was (a version 1 body, or the journal was stopped).
///
/// # Errors
/// The checkpoint cannot be read back or does not decode.
fn rebase(
    inner: &Inner,
    generation: u64,
    written: ([u8; 16], u64, u64),
    crc: u32,
) -> Result<Option<u64>> {
    let holders = checkpoint_holders(&inner.nodes)
        .remove(&generation)
        .unwrap_or_default();
    let replaced_before = crate::node::mark_replaced();
    let (pieces, crcs) = read_back(inner, generation, &holders)?;
    // The body read back is the one written: its crc (checked against
    // its bytes by the decode) and what it was cut at.
    let total: usize = pieces.iter().map(Bytes::len).sum();
    let trailer_crc = copy_range(&pieces, total.saturating_sub(4), total);
    if trailer_crc != crc.to_le_bytes() {
        return Err(crate::format::wire::corrupt(
            "checkpoint",
            "the body read back is not the one written".to_string(),
        ));
    }
    let mut snapshot = Snapshot::decode_with_crcs(pieces, Some(&crcs), &inner.layout)?;
    if snapshot.base.is_none() || snapshot.delta.is_some() {
        return Ok(None);
    }
    snapshot.generation = Some(generation);
    snapshot.replaced_before = replaced_before;
    if (snapshot.store_id, snapshot.session, snapshot.cut) != written {
        return Err(crate::format::wire::corrupt(
            "checkpoint",
            "the body read back is of another cut".to_string(),
        ));
    }
    let k = inner.layout.code().data_count;
    let (loaded, _, _) = snapshot.into_state(k, 0)?;
    let mut fresh = loaded.index;
    let same_key = fresh.same_hash_key(&inner.read_state().index);
    if !fresh.is_bare_base() || !same_key {
        return Ok(None);
    }
    // The journal is replayed outside the lock, recording going on, until
    // what a pass found was few changes (the next, under the lock, is then
    // about as few), or after a few passes under writes that never let up.
    for _ in 0..REPLAY_PASSES_MAX {
        let part = inner.write_state().index.drain_journal();
        let Some(part) = part else {
            return Ok(None);
        };
        let few = part.len() <= REPLAY_LOCKED_MAX;
        if !fresh.replay(part) {
            return Ok(None);
        }
        if few {
            break;
        }
    }
    let locked = Instant::now();
    let old = {
        let mut state = inner.write_state();
        let Some(rest) = state.index.stop_journal() else {
            return Ok(None);
        };
        if !fresh.replay(rest) {
            return Ok(None);
        }
        // The replay looked keys up in the records read back in place: a
        // page of them lost meanwhile leaves the index as it was (C9).
        if !fresh.base_intact() {
            tracing::warn!(
                generation,
                "a page of the checkpoint read back was lost; the index stays"
            );
            return Ok(None);
        }
        // Nor does a store whose index lost a page move off it: what was
        // read of it before the move (a delete's answer) is judged by it.
        if !inner.index_intact_in(&state.index) {
            return Ok(None);
        }
        // The checkpoint plus the journal is the index: the count is a
        // cheap check of it (and every location, in debug builds).
        if fresh.len() != state.index.len() {
            tracing::warn!(
                generation,
                checkpoint = fresh.len(),
                index = state.index.len(),
                "the checkpoint and the changes since do not add up to the index; it stays"
            );
            return Ok(None);
        }
        debug_assert!(
            state
                .index
                .iter()
                .all(|(key, loc)| fresh.get(key).as_ref() == Some(&loc)),
            "a key's location differs after the rebase"
        );
        state.index.rebase(fresh)
    };
    let locked_ms = locked.elapsed().as_millis() as u64;
    drop(old);
    Ok(Some(locked_ms))
}

/// Writes, as a newer checkpoint, the newest one with its first index
/// record's kind byte XORed with `xor`, the body's crc fixed up (its
/// columns get their own checksums as any checkpoint's do): with a
/// non-zero `xor`, a body every checksum passes whose records fail open's
/// check. Returns the new generation.
///
/// # Errors
/// No checkpoint to copy, or a read or write failed.
#[cfg(any(test, feature = "testing"))]
pub(crate) fn write_forged_newest(inner: &Inner, xor: u8) -> Result<u64> {
    let _only_one = inner.maintenance.lock().unwrap_or_else(|p| p.into_inner());
    let mut found = checkpoint_holders(&inner.nodes);
    let Some((generation, holders)) = found.pop_last() else {
        return Err(crate::format::wire::corrupt("checkpoint", "none to copy"));
    };
    let (pieces, _) = read_back(inner, generation, &holders)?;
    let total: usize = pieces.iter().map(Bytes::len).sum();
    let mut body = copy_range(&pieces, 0, total);
    if total < TRAILER_LEN + FIXED_RECORD_KIND + 1 {
        return Err(crate::format::wire::corrupt("checkpoint", "no record"));
    }
    body[FIXED_RECORD_KIND] ^= xor;
    let crc = crc32fast::hash(&body[..total - 4]);
    body[total - 4..].copy_from_slice(&crc.to_le_bytes());
    // The last number of this session's checkpoints, which its own reach
    // only after 65,535 of them: newer than any other checkpoint now.
    let session = session_of(inner.next_stripe_id.load(Ordering::Acquire));
    let forged = generation_of(session, u16::MAX);
    if forged <= generation {
        return Err(crate::format::wire::corrupt(
            "checkpoint",
            "this session forged one already",
        ));
    }
    write_columns(inner, forged, &body)?;
    Ok(forged)
}

/// Where a record's kind byte is (docs/FORMAT.md, "Checkpoint").
#[cfg(any(test, feature = "testing"))]
const FIXED_RECORD_KIND: usize = 2;

/// [`read_body`] of checkpoint `generation` from `holders`, the running
/// store's nodes.
fn read_back(inner: &Inner, generation: u64, holders: &[NodeId]) -> Result<(Vec<Bytes>, Vec<u32>)> {
    let (pieces, crcs, _) = read_body(
        &inner.nodes,
        &inner.layout,
        &inner.codec,
        generation,
        holders,
        inner.sequential_io,
    )?;
    Ok((pieces, crcs))
}

/// Codes `body` chunk by chunk and appends each column to its home node,
/// or skips it when that home takes no writes (at least k of each chunk's
/// do). Returns the bytes written, the homes, and the homes skipped.
fn write_columns(inner: &Inner, generation: u64, body: &[u8]) -> Result<Written> {
    let layout = &inner.layout;
    let code = layout.code();
    let (k, m) = (code.data_count, code.parity_count);
    // One zeroed allocation per column, not `vec![column; m]`: cloning a
    // zeroed column reads it, which maps the shared zero page, and every
    // later write to such a page is a copy-on-write fault with a TLB
    // shootdown across the process's threads.
    let column_len = body.len().div_ceil(k).min(CHUNK_COLUMN_LEN);
    let mut parity: Vec<Vec<u8>> = (0..m).map(|_| vec![0u8; column_len]).collect();
    // Each column goes home, or nowhere when its home takes no writes
    // (down, unwritable, or no longer a member): a checkpoint is kept
    // with any k columns of each chunk (C2), so a site burning does not
    // stop checkpoints; it only leaves them without its margin. Which
    // homes take writes is decided once, for every chunk, before any is
    // written: a node holds all its columns of a checkpoint or none (what
    // `Chain::allows` reads from its listing), and a checkpoint refused
    // writes nothing.
    type Home = (NodeId, Option<Arc<dyn crate::node::Node>>);
    let mut taking: BTreeMap<NodeId, Option<Arc<dyn crate::node::Node>>> = BTreeMap::new();
    let mut plans: Vec<(Vec<String>, Vec<Home>)> = Vec::new();
    for chunk in 0..body.len().div_ceil(k * CHUNK_COLUMN_LEN) {
        let placement = layout.placement(chunk as u64);
        let names: Vec<String> = layout
            .placement_names(&placement)
            .into_iter()
            .map(str::to_string)
            .collect();
        let homes: Vec<Home> = names
            .iter()
            .map(|name| {
                let id = layout
                    .node_by_name(name)
                    .ok_or_else(|| Error::Unavailable {
                        node: name.clone(),
                        reason: "not in the layout".into(),
                    })?;
                let node = taking.entry(id).or_insert_with(|| {
                    Some(id)
                        .filter(|&id| inner.manifests.is_member(id))
                        .and_then(|id| inner.nodes.get_writable(id))
                });
                Ok((id, node.clone()))
            })
            .collect::<Result<_>>()?;
        let takers = homes.iter().filter(|(_, node)| node.is_some()).count();
        if takers < k {
            let down: Vec<&str> = names
                .iter()
                .zip(&homes)
                .filter(|(_, (_, node))| node.is_none())
                .map(|(name, _)| name.as_str())
                .collect();
            return Err(Error::Unavailable {
                node: down
                    .first()
                    .map_or_else(String::new, |name| (*name).to_string()),
                reason: format!(
                    "it takes no writes, and chunk {chunk} of a checkpoint needs {k} of \
                     its {} columns' homes to take theirs: only {takers} do (down or \
                     unwritable: {}); nothing of the checkpoint was written",
                    k + m,
                    down.join(", ")
                ),
            });
        }
        plans.push((names, homes));
    }
    let mut written = Written::default();
    for ((chunk, data), (names, homes)) in body.chunks(k * CHUNK_COLUMN_LEN).enumerate().zip(plans)
    {
        let stripe_len = data.len().div_ceil(k);
        let columns: Vec<&[u8]> = (0..k)
            .map(|c| {
                &data[(c * stripe_len).min(data.len())..((c + 1) * stripe_len).min(data.len())]
            })
            .collect();
        let mut out: Vec<&mut [u8]> = parity.iter_mut().map(|p| &mut p[..stripe_len]).collect();
        inner.codec.encode(&columns, &mut out)?;
        let all: Vec<&[u8]> = columns
            .iter()
            .copied()
            .chain(parity.iter().map(|p| &p[..stripe_len]))
            .collect();
        let mut header = ColumnHeader {
            stripe_id: chunk as u64,
            generation,
            data_count: k as u16,
            parity_count: m as u16,
            column_index: 0,
            column_lens: all.iter().map(|c| c.len() as u32).collect(),
            column_checksums: all.iter().map(|c| crc32fast::hash(c)).collect(),
            placement: names.clone(),
            entry_table_lens: vec![0; k],
            commit: CommitStamp::default(),
            handoffs: Vec::new(),
        };
        for (c, (payload, (id, node))) in all.iter().zip(&homes).enumerate() {
            if payload.is_empty() {
                continue;
            }
            written.homes.insert(*id);
            let Some(node) = node else {
                written.skipped.insert(*id);
                continue;
            };
            header.column_index = c as u16;
            node.append(
                generation,
                &[RecordRef {
                    header: &header,
                    payload,
                }],
            )?;
            written.bytes += payload.len() as u64;
        }
    }
    Ok(written)
}

/// What [`write_columns`] wrote.
#[derive(Debug, Default)]
struct Written {
    /// Column bytes written.
    bytes: u64,
    /// The nodes the chunks' placements name for a column with bytes.
    homes: BTreeSet<NodeId>,
    /// Homes that took no writes: their columns were not written.
    skipped: BTreeSet<NodeId>,
}

/// Removes the checkpoint generations `which` picks from every reachable
/// node; returns how many distinct generations were removed somewhere.
fn remove_checkpoints(inner: &Inner, which: impl Fn(u64) -> bool) -> usize {
    let mut removed = BTreeSet::new();
    for id in inner.nodes.ids() {
        let Some(node) = inner.nodes.get(id) else {
            continue;
        };
        let Ok(generations) = node.generations() else {
            continue;
        };
        for g in generations
            .into_iter()
            .filter(|&g| is_checkpoint_generation(g) && which(g))
        {
            match node.remove_generation(g) {
                Ok(()) => {
                    removed.insert(g);
                }
                Err(e) => tracing::warn!(node = %node.name(), generation = g, error = %e,
                    "could not remove an old checkpoint; the next checkpoint retries"),
            }
        }
    }
    removed.len()
}

/// The newest checkpoint that decodes from the reachable nodes, with its
/// generation; `None` when there is none (or none decodes: each failure
/// is logged). `sequential`: a stepped store's (`Inner::sequential_io`),
/// whose nodes are asked one after another.
pub(crate) fn load_newest(
    inner_nodes: &super::nodes::NodeSet,
    layout: &Layout,
    codec: &crate::codec::Codec,
    sequential: bool,
) -> Option<(u64, Snapshot)> {
    let held = checkpoint_holders(inner_nodes);
    let read = |generation: u64, holders: &[NodeId]| -> Result<Snapshot> {
        let replaced_before = crate::node::mark_replaced();
        let (pieces, crcs, homes) =
            read_body(inner_nodes, layout, codec, generation, holders, sequential)?;
        let mut snapshot = Snapshot::decode_with_crcs(pieces, Some(&crcs), layout)?;
        snapshot.generation = Some(generation);
        snapshot.homes = homes;
        snapshot.replaced_before = replaced_before.clone();
        Ok(snapshot)
    };
    for (&generation, holders) in held.iter().rev() {
        let loaded = read(generation, holders).and_then(|mut snapshot| {
            if let Some(delta) = &snapshot.delta {
                snapshot.below = Some(load_below(delta, &snapshot, &held, &read)?);
            }
            Ok(snapshot)
        });
        match loaded {
            Ok(snapshot) => return Some((generation, snapshot)),
            Err(e) => {
                tracing::warn!(generation, error = %e, "checkpoint not usable; trying an older one");
            }
        }
    }
    None
}

/// The records of the base `delta` names, read from the nodes `held` lists
/// (by `read`): it must be the body the delta was written over (its crc),
/// a full checkpoint of the same store, its records read in place.
///
/// # Errors
/// [`Error::Corrupt`] when the base is gone, does not decode or is not the
/// one named.
fn load_below(
    delta: &DeltaOf,
    over: &Snapshot,
    held: &BTreeMap<u64, Vec<NodeId>>,
    read: &impl Fn(u64, &[NodeId]) -> Result<Snapshot>,
) -> Result<Below> {
    let bad =
        |reason: &str| crate::format::wire::corrupt("checkpoint", format!("its base: {reason}"));
    let (generation, crc) = delta.base;
    let holders = held.get(&generation).ok_or_else(|| bad("gone"))?;
    let base = read(generation, holders)?;
    if base.crc != crc {
        return Err(bad("another body than the one named"));
    }
    if base.store_id != over.store_id || base.index.hash_key != over.index.hash_key {
        return Err(bad("of another store or hash key"));
    }
    if base.delta.is_some() {
        return Err(bad("a delta"));
    }
    let pieces = base
        .base
        .ok_or_else(|| bad("records not read in place (version 1)"))?;
    Ok(Below {
        pieces,
        count: base.index.count,
        splits: base.index.splits,
        homes: base.homes,
    })
}

/// The reachable nodes holding columns of each checkpoint generation.
fn checkpoint_holders(nodes: &super::nodes::NodeSet) -> BTreeMap<u64, Vec<NodeId>> {
    let mut found: BTreeMap<u64, Vec<NodeId>> = BTreeMap::new();
    for id in nodes.ids() {
        let Some(node) = nodes.get(id) else {
            continue;
        };
        let Ok(generations) = node.generations() else {
            continue;
        };
        for g in generations
            .into_iter()
            .filter(|&g| is_checkpoint_generation(g))
        {
            found.entry(g).or_default().push(id);
        }
    }
    found
}

/// Where each column of a chunk was found.
type ColumnsAt = HashMap<usize, (NodeId, RecordLocation)>;

/// A chunk to read: its number, header, columns, and where its data
/// columns go.
type ChunkOut<'a> = (u64, ColumnHeader, ColumnsAt, &'a mut Vec<(Bytes, u32)>);

/// Reads and decodes the body of checkpoint `generation` from the nodes
/// in `holders`: each chunk from its data columns where they are intact,
/// else rebuilt from any k intact columns. Returns the pieces, in order,
/// the crc32 of each (its column's checksum, which it matched), and the
/// nodes the chunks' placements name for a column with bytes (its homes:
/// a home that holds no column of it lost it, or was down at its write).
fn read_body(
    nodes: &super::nodes::NodeSet,
    layout: &Layout,
    codec: &crate::codec::Codec,
    generation: u64,
    holders: &[NodeId],
    sequential: bool,
) -> Result<(Vec<Bytes>, Vec<u32>, BTreeSet<NodeId>)> {
    let bad = |reason: String| crate::format::wire::corrupt("checkpoint", reason);
    let code = layout.code();
    let (k, m) = (code.data_count, code.parity_count);
    // Per chunk: the header and where each column's record is.
    let mut chunks: BTreeMap<u64, (ColumnHeader, ColumnsAt)> = BTreeMap::new();
    let scan = |id: NodeId| nodes.get(id).and_then(|node| node.scan(generation).ok());
    // A local node's first scan of a segment reads and checks all of it
    // (recovery): the holders are scanned together, so the device reads
    // their files at once (at 10^8 blobs, 6.3 GB read by one thread in
    // turn took 5.2 s cold). A stepped store (the simulator's, whose nodes
    // log the order of calls) scans them in turn. Either way the scans are
    // merged in the holders' order.
    let scans: Vec<(NodeId, Option<crate::node::Scan>)> = if sequential || holders.len() < 2 {
        holders.iter().map(|&id| (id, scan(id))).collect()
    } else {
        super::nodes::parallel_map(holders, |&id| (id, scan(id)))
    };
    for (id, scan) in scans {
        let Some(scan) = scan else {
            continue;
        };
        for record in scan.records {
            let h = &record.header;
            if usize::from(h.data_count) != k || usize::from(h.parity_count) != m {
                continue;
            }
            let entry = chunks
                .entry(h.stripe_id)
                .or_insert_with(|| (h.clone(), HashMap::new()));
            if entry.0.column_lens == h.column_lens
                && entry.0.column_checksums == h.column_checksums
            {
                entry
                    .1
                    .entry(usize::from(h.column_index))
                    .or_insert((id, record.location));
            }
        }
    }
    // Each chunk's data columns, in place where a node maps them (a local
    // node's segment), else as read or rebuilt.
    let mut outs: Vec<Vec<(Bytes, u32)>> = (0..chunks.len()).map(|_| Vec::new()).collect();
    let mut parts: Vec<ChunkOut<'_>> = Vec::new();
    let mut total = 0usize;
    let mut homes = BTreeSet::new();
    for ((n, (chunk, (header, columns))), out) in
        chunks.into_iter().enumerate().zip(outs.iter_mut())
    {
        if chunk != n as u64 {
            return Err(bad(format!("chunk {n} missing")));
        }
        homes.extend(
            header
                .placement
                .iter()
                .zip(&header.column_lens)
                .filter(|&(_, &len)| len > 0)
                .filter_map(|(name, _)| layout.node_by_name(name)),
        );
        total = header.column_lens[..k]
            .iter()
            .fold(total, |t, &l| t.saturating_add(l as usize));
        parts.push((chunk, header, columns, out));
    }
    // Small bodies (every test's and the simulator's, whose nodes log the
    // order of reads) are read by this thread alone.
    let threads = if total >= PARALLEL_BODY_MIN { 2 } else { 1 };
    let mut shares: Vec<Vec<ChunkOut<'_>>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, part) in parts.into_iter().enumerate() {
        shares[i % threads].push(part);
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|share| {
                s.spawn(move || {
                    for (chunk, header, columns, out) in share {
                        read_chunk(
                            nodes, codec, generation, k, m, chunk, &header, &columns, out,
                        )?;
                    }
                    Ok::<(), Error>(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    })?;
    let (pieces, crcs) = outs.into_iter().flatten().unzip();
    Ok((pieces, crcs, homes))
}

/// Reads chunk `chunk` of checkpoint `generation` into `out` (its data
/// columns, in order): from its data columns where they are intact, else
/// rebuilt from any k intact columns.
#[allow(clippy::too_many_arguments, reason = "one chunk's whole context")]
fn read_chunk(
    nodes: &super::nodes::NodeSet,
    codec: &crate::codec::Codec,
    generation: u64,
    k: usize,
    m: usize,
    chunk: u64,
    header: &ColumnHeader,
    columns: &ColumnsAt,
    out: &mut Vec<(Bytes, u32)>,
) -> Result<()> {
    let bad = |reason: String| crate::format::wire::corrupt("checkpoint", reason);
    let read = |c: usize| -> Option<bytes::Bytes> {
        let (id, loc) = columns.get(&c)?;
        let bytes = nodes.get(*id)?.read(generation, loc.offset, loc.len).ok()?;
        (bytes.len() == header.column_lens[c] as usize
            && crc32fast::hash(&bytes) == header.column_checksums[c])
            .then_some(bytes)
    };
    let mut data: Vec<Option<bytes::Bytes>> = (0..k)
        .map(|c| {
            if header.column_lens[c] == 0 {
                Some(bytes::Bytes::new())
            } else {
                read(c)
            }
        })
        .collect();
    if data.iter().any(Option::is_none) {
        let stripe_len = header.column_lens.iter().copied().max().unwrap_or(0) as usize;
        let mut present: Vec<(usize, bytes::Bytes)> = Vec::new();
        let intact = data
            .iter()
            .enumerate()
            .filter_map(|(c, d)| Some((c, d.clone()?)))
            .chain((k..k + m).filter_map(|c| Some((c, read(c)?))));
        present.extend(intact.take(k));
        let missing_at: Vec<usize> = (0..k).filter(|&c| data[c].is_none()).collect();
        // Each column its own zeroed allocation (see `write_columns`: a
        // clone of a zeroed column would map the zero page, and each
        // page's first write would be a copy-on-write fault with a TLB
        // shootdown; 20% of an open with a site gone at 10^7 blobs).
        let mut rebuilt: Vec<Vec<u8>> = (0..missing_at.len())
            .map(|_| vec![0u8; stripe_len])
            .collect();
        {
            let present_refs: Vec<(usize, &[u8])> =
                present.iter().map(|(c, b)| (*c, &b[..])).collect();
            let mut missing: Vec<(usize, &mut [u8])> = missing_at
                .iter()
                .copied()
                .zip(rebuilt.iter_mut().map(|b| &mut b[..]))
                .collect();
            codec.reconstruct(&present_refs, &mut missing)?;
        }
        for (c, mut bytes) in missing_at.into_iter().zip(rebuilt) {
            bytes.truncate(header.column_lens[c] as usize);
            if crc32fast::hash(&bytes) != header.column_checksums[c] {
                return Err(bad(format!("chunk {chunk} column {c} rebuilt wrong")));
            }
            data[c] = Some(bytes.into());
        }
    }
    // Each column with its crc32, checked above against the column's
    // checksum (read or rebuilt): the body's checksum is combined from
    // them.
    out.extend(
        data.into_iter()
            .zip(&header.column_checksums)
            .filter_map(|(c, &crc)| Some((c?, crc)))
            .filter(|(c, _)| !c.is_empty()),
    );
    Ok(())
}

/// A sample checkpoint for tests and the fuzzer.
#[cfg(any(test, feature = "testing"))]
pub(crate) mod fuzzing {
    use super::*;
    use crate::store::index::{BlobLoc, Index};

    pub(crate) fn layout() -> Layout {
        let dir = std::path::Path::new("/nonexistent-checkpoint-test");
        Layout::builder()
            .code(2, 1)
            .site("a", |s| s.node("a1", dir.join("a1").as_path()))
            .site("b", |s| s.node("b1", dir.join("b1").as_path()))
            .site("c", |s| s.node("c1", dir.join("c1").as_path()))
            .build()
            .expect("layout")
    }

    /// A snapshot of 3 stripes and 200 blobs (some split), as a running
    /// store would take it.
    pub(crate) fn sample(layout: &Layout) -> Snapshot {
        let names: Vec<String> = ["a1", "b1", "c1"].map(String::from).to_vec();
        let stripes: Vec<(u32, Arc<StripeInfo>)> = (0..3u32)
            .map(|slot| {
                let header = ColumnHeader {
                    stripe_id: (1 << 40) | u64::from(slot + 1),
                    generation: (1 << 40) | 1,
                    data_count: 2,
                    parity_count: 1,
                    column_index: 0,
                    column_lens: vec![4000, 3000, 4000],
                    column_checksums: vec![7, 8, 9],
                    placement: names.clone(),
                    entry_table_lens: vec![100, 0],
                    commit: CommitStamp::default(),
                    handoffs: Vec::new(),
                };
                let columns = (0..3)
                    .map(|c| ColumnInfo {
                        len: header.column_lens[c],
                        checksum: header.column_checksums[c],
                        home: layout.node_by_name(&names[c]),
                        stored: (c != 1 || slot != 2).then(|| {
                            (
                                NodeId(c as u16),
                                RecordLocation {
                                    generation: header.generation,
                                    offset: 64 + u64::from(slot) * 5000,
                                    len: header.column_lens[c],
                                },
                            )
                        }),
                    })
                    .collect();
                let info = StripeInfo {
                    stripe_id: header.stripe_id,
                    generation: header.generation,
                    columns,
                    header,
                };
                (slot * 2, Arc::new(info))
            })
            .collect();
        let mut index = Index::default();
        for n in 0..200u32 {
            let part = |i: u32| PartLoc {
                slot: (n % 3) * 2,
                offset: 100 + i * 10,
                len: 10,
                checksum: n,
                column_index: (i % 2) as u16,
            };
            let loc = if n % 9 == 0 {
                BlobLoc::split(20, vec![part(0), part(1)].into())
            } else {
                BlobLoc::Whole(part(n % 50))
            };
            index.insert(format!("room-{}/msg-{n}", n % 7).as_bytes(), loc);
        }
        Snapshot {
            store_id: [3; 16],
            session: 1,
            cut: (1 << 40) | 4,
            nodes: names,
            measured: 3,
            node_since: vec![0, 0, 7],
            horizons: vec![(0, (1 << 40) | 1, 20_000), (2, (1 << 40) | 1, 19_000)],
            retired: vec![5],
            generations: vec![((1 << 40) | 1, GenerationUsage::default())],
            stripes,
            index: index.copy().image(),
            ..Snapshot::default()
        }
    }

    /// `body` cut into three pieces, as columns of a checkpoint would be.
    pub(crate) fn pieces_of(body: Vec<u8>) -> Vec<Bytes> {
        let body = Bytes::from(body);
        let third = body.len() / 3;
        vec![
            body.slice(..third),
            body.slice(third..2 * third),
            body.slice(2 * third..),
        ]
    }

    /// Decodes the sample body edited by `edits` (a cut length, then
    /// (offset, xor) pairs, then whether to fix the checksum up): returns
    /// whether it loaded. Never panics, whatever the edits.
    pub(crate) fn decode_edited(edits: &[u8]) -> bool {
        let layout = layout();
        let Some((&fix, edits)) = edits.split_first() else {
            return false;
        };
        // A delta's body too (its last section), every other input.
        let mut snapshot = sample(&layout);
        let version = if fix & 2 == 2 {
            snapshot.delta = Some(DeltaOf {
                base: (7, 0x5eed),
                hidden: vec![0, 9, 40],
            });
            DELTA_VERSION
        } else {
            TRAILER_VERSION
        };
        let Ok(mut body) = snapshot.encode_version(&layout, version) else {
            return false;
        };
        let mut pairs = edits.chunks_exact(3);
        for pair in &mut pairs {
            let at = usize::from(u16::from_le_bytes([pair[0], pair[1]])) * 7 % body.len().max(1);
            if let Some(byte) = body.get_mut(at) {
                *byte ^= pair[2];
            }
        }
        if let [a, b] = pairs.remainder() {
            let cut = usize::from(u16::from_le_bytes([*a, *b])) * 7;
            body.truncate(cut);
        }
        if fix & 1 == 1 && body.len() >= 4 {
            let end = body.len() - 4;
            let crc = crc32fast::hash(&body[..end]);
            body[end..].copy_from_slice(&crc.to_le_bytes());
        }
        let Ok((state, _, _)) =
            Snapshot::decode(pieces_of(body), &layout).and_then(|s| s.into_state(2, 0))
        else {
            return false;
        };
        // What loaded answers lookups, listings and a walk without a
        // panic, whatever bytes the checks let through.
        for n in 0..200u32 {
            let _ = state
                .index
                .get(format!("room-{}/msg-{n}", n % 7).as_bytes());
        }
        let _ = state.index.keys_with_prefix(b"room-3", None, 50);
        let _ = state.index.iter().count();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::fuzzing::{layout, pieces_of, sample};
    use super::*;

    /// A delta is written only over a base this process did not remove,
    /// with a generation after it, at most `DELTAS_PER_BASE_MAX` times,
    /// while every home of the base's columns that takes writes holds one.
    #[test]
    fn a_delta_stands_only_on_a_base_kept_whole_and_ordered_before_it() {
        let (a, b, c) = (NodeId(0), NodeId(1), NodeId(2));
        let all = |_: NodeId| true;
        let base = generation_of(5, 10);
        let mut chain = Chain::default();
        // Homes not known: full.
        assert!(!chain.allows(base, generation_of(6, 0), Some(&vec![a, b, c]), all));
        // Opened from it: nothing removed yet.
        let homes: BTreeSet<NodeId> = [a, b, c].into_iter().collect();
        chain.opened_over(base, homes.clone(), vec![(base, homes)]);
        assert!(chain.allows(base, generation_of(6, 0), Some(&vec![a, b, c]), all));
        // Not held at all, or a generation that wrapped to it or below.
        assert!(!chain.allows(base, generation_of(6, 0), None, all));
        assert!(!chain.allows(base, base, Some(&vec![a, b, c]), all));
        assert!(!chain.allows(base, generation_of(5, 3), Some(&vec![a, b, c]), all));
        // A home without its column: while it takes no writes (down, or
        // down when the base was written), a delta; once it does, full.
        assert!(!chain.allows(base, generation_of(6, 0), Some(&vec![a, c]), all));
        assert!(chain.allows(base, generation_of(6, 0), Some(&vec![c, a]), |id| id != b));
        // Deltas over it, counted.
        chain.over = Some((base, DELTAS_PER_BASE_MAX - 1));
        assert!(chain.allows(base, generation_of(6, 1), Some(&vec![c, b, a]), all));
        chain.over = Some((base, DELTAS_PER_BASE_MAX));
        assert!(!chain.allows(base, generation_of(6, 1), Some(&vec![a, b, c]), all));
        // A full one written since: the base was removed.
        chain = Chain {
            newest_full: Some(generation_of(6, 2)),
            over: None,
            homes: Some((generation_of(6, 2), [a].into_iter().collect())),
            degraded: BTreeSet::new(),
            newest: Vec::new(),
        };
        assert!(!chain.allows(base, generation_of(6, 3), Some(&vec![a, b, c]), all));
        assert!(chain.allows(
            generation_of(6, 2),
            generation_of(6, 3),
            Some(&vec![a]),
            all
        ));
    }

    /// A home that takes no writes is skipped while k of each chunk's
    /// homes take theirs (C2); with fewer, nothing is written and the
    /// call fails, counted.
    #[test]
    fn a_checkpoint_skips_homes_that_take_no_writes_while_k_take_theirs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = |name: &str| dir.path().join(name);
        let layout = Layout::builder()
            .code(2, 1)
            .site("a", |s| s.node("a1", node("a1").as_path()))
            .site("b", |s| s.node("b1", node("b1").as_path()))
            .site("c", |s| s.node("c1", node("c1").as_path()))
            .build()
            .expect("layout");
        let options = crate::Options {
            checkpoint_every: 0,
            ..crate::Options::default()
        };
        let store = crate::Store::create(layout, options).expect("create");
        for n in 0..400 {
            store
                .put(format!("chat/{n}").as_bytes(), &b"hello"[..])
                .expect("put");
        }
        let nodes = &store.inner.nodes;
        let checkpoints_on = |id: NodeId| {
            nodes
                .get(id)
                .expect("up")
                .generations()
                .expect("listed")
                .into_iter()
                .filter(|&g| is_checkpoint_generation(g))
                .count()
        };
        nodes.mark_unwritable(NodeId(2), "test");
        let report = store.checkpoint().expect("two of three columns written");
        assert!(
            report.body_bytes > 2 * 2 * CHUNK_COLUMN_LEN as u64,
            "several chunks"
        );
        assert_eq!(report.nodes_skipped, ["c1"]);
        assert_eq!(checkpoints_on(NodeId(2)), 0);
        nodes.mark_unwritable(NodeId(1), "test");
        let e = store.checkpoint().expect_err("one of three columns");
        assert!(
            matches!(&e, Error::Unavailable { node, reason }
                if node == "b1" && reason.contains("only 1 do (down or unwritable: b1, c1)")),
            "{e}"
        );
        assert_eq!(checkpoints_on(NodeId(0)), 1, "only the first kept");
        let stats = store.stats();
        assert_eq!(
            (
                stats.checkpoints,
                stats.checkpoints_degraded,
                stats.checkpoint_failures
            ),
            (1, 1, 1)
        );
    }

    #[test]
    fn a_delta_body_names_its_base_and_the_records_it_hides() {
        let layout = layout();
        let mut snapshot = sample(&layout);
        snapshot.delta = Some(DeltaOf {
            base: ((0xffffff << 40) | 3, 0xdead_beef),
            hidden: vec![0, 5, 9, 1000],
        });
        // Only version 4 holds a delta.
        assert!(snapshot.encode_version(&layout, TRAILER_VERSION).is_err());
        let body = snapshot
            .encode_version(&layout, DELTA_VERSION)
            .expect("encode");
        let decoded = Snapshot::decode(pieces_of(body.clone()), &layout).expect("decode");
        assert_eq!(decoded.delta, snapshot.delta);
        assert_eq!(decoded.index.count, snapshot.index.count);
        // Its base is needed to load it.
        let Err(e) = decoded.into_state(2, 0) else {
            panic!("a delta loaded without its base");
        };
        assert!(e.to_string().contains("without its base"), "{e}");
        // The delta flag in a version 3 trailer, or an unknown flag, is
        // refused (the crc fixed up).
        let flags_at = body.len() - TRAILER_LEN + 6;
        for (version, flags) in [(TRAILER_VERSION, FLAG_DELTA), (DELTA_VERSION, 2)] {
            let mut edited = body.clone();
            let version_at = body.len() - TRAILER_LEN + 4;
            edited[version_at..version_at + 2].copy_from_slice(&version.to_le_bytes());
            edited[flags_at..flags_at + 2].copy_from_slice(&flags.to_le_bytes());
            let end = edited.len() - 4;
            let crc = crc32fast::hash(&edited[..end]);
            edited[end..].copy_from_slice(&crc.to_le_bytes());
            let e = Snapshot::decode(pieces_of(edited), &layout).expect_err("flags refused");
            assert!(e.to_string().contains("flags"), "{e}");
        }
        // Without the flag, version 4 is a full body.
        let mut full = snapshot;
        full.delta = None;
        let body = full.encode_version(&layout, DELTA_VERSION).expect("encode");
        let decoded = Snapshot::decode(pieces_of(body), &layout).expect("decode");
        assert_eq!(decoded.delta, None);
        let (state, _, _) = decoded.into_state(2, 0).expect("state");
        assert_eq!(state.index.len(), 200);
    }

    #[test]
    fn a_body_decodes_to_the_snapshot_it_encodes() {
        let layout = layout();
        let snapshot = sample(&layout);
        for version in [1, 2, TRAILER_VERSION] {
            let body = snapshot.encode_version(&layout, version).expect("encode");
            let mut decoded = Snapshot::decode(pieces_of(body), &layout).expect("decode");
            let base = decoded.base.take();
            assert_eq!(
                base.is_some(),
                version >= 2,
                "records in place from version 2"
            );
            if let Some(base) = &base {
                let len = base.pieces.iter().map(Bytes::len).sum();
                decoded.index.records = copy_range(&base.pieces, 0, len);
                let want = snapshot.index.directory();
                assert_eq!(base.directory.starts, want.starts);
                // Filters from version 3 on (version 2 lookups read every
                // group's records).
                if version >= 3 {
                    assert_eq!(base.directory.filters, want.filters);
                    assert!(want.filters.iter().any(|&f| f != 0));
                } else {
                    assert!(base.directory.filters.is_empty());
                }
            }
            // A decoded image carries no directory (versions 2 and 3 keep
            // it with the pieces, checked above).
            decoded
                .index
                .directory
                .clone_from(&snapshot.index.directory);
            let crc = std::mem::take(&mut decoded.crc);
            assert_ne!(crc, 0, "the trailer's crc");
            assert_eq!(decoded, snapshot);
            decoded.base = base;
            let (state, retired, cut) = decoded.into_state(2, 0).expect("state");
            assert_eq!((retired, cut), (vec![5], (1 << 40) | 4));
            assert_eq!(state.index.len(), 200);
            assert_eq!(state.stripes.len(), 3);
            assert!(state.stripes.get(1).is_none(), "slots keep their numbers");
            for n in 0..200u32 {
                let key = format!("room-{}/msg-{n}", n % 7);
                assert!(
                    state.index.contains(key.as_bytes()),
                    "version {version}: {key}"
                );
            }
        }
    }

    /// With the pieces' crc32s known (a body read column by column), the
    /// body's checksum is combined from them: the same snapshot where they
    /// are right, a refusal where one is wrong, and a count that does not
    /// match the pieces falls back to reading every byte.
    #[test]
    fn a_body_checksum_combined_from_its_pieces_is_the_same_check() {
        let layout = layout();
        let snapshot = sample(&layout);
        let body = snapshot.encode(&layout).expect("encode");
        let pieces = pieces_of(body);
        assert!(pieces.len() > 2, "the test cuts the body into pieces");
        let crcs: Vec<u32> = pieces.iter().map(|p| crc32fast::hash(p)).collect();
        let plain = Snapshot::decode(pieces.clone(), &layout).expect("decode");
        let combined =
            Snapshot::decode_with_crcs(pieces.clone(), Some(&crcs), &layout).expect("decode");
        assert_eq!(combined, plain);
        for i in 0..crcs.len() - 1 {
            let mut wrong = crcs.clone();
            wrong[i] ^= 1;
            assert!(
                Snapshot::decode_with_crcs(pieces.clone(), Some(&wrong), &layout).is_err(),
                "a wrong crc of piece {i} is refused"
            );
        }
        let fewer = &crcs[..crcs.len() - 1];
        assert_eq!(
            Snapshot::decode_with_crcs(pieces, Some(fewer), &layout).expect("decode"),
            plain
        );
    }

    /// Damaged bodies are refused, never panic: bits flipped, cut short,
    /// and (so the damage gets past the checksum into the parser) the same
    /// with the checksum fixed up.
    #[test]
    fn a_damaged_body_is_refused_and_never_panics() {
        let layout = layout();
        let good = sample(&layout).encode(&layout).expect("encode");
        let mut next = crate::store::index::tests::xorshift(0x9e37_79b9_7f4a_7c15);
        let mut loaded = 0;
        for round in 0..3000 {
            let mut body = good.clone();
            let r = next();
            let at = (r >> 16) as usize % body.len();
            match r % 3 {
                0 => body.truncate(at),
                _ => body[at] ^= 1 << (r >> 8 & 7),
            }
            let fixed = round % 2 == 0;
            if fixed && body.len() >= 4 {
                let end = body.len() - 4;
                let crc = crc32fast::hash(&body[..end]);
                body[end..].copy_from_slice(&crc.to_le_bytes());
            }
            let result =
                Snapshot::decode(pieces_of(body), &layout).and_then(|s| s.into_state(2, 0));
            if !fixed {
                assert!(
                    result.is_err(),
                    "round {round}: damage got past the checksum"
                );
            }
            loaded += usize::from(result.is_ok());
        }
        // Some flips land in key bytes or counts that still make sense.
        assert!(loaded < 1500, "{loaded}");
        assert!(super::fuzzing::decode_edited(&[0]), "no edits: loads");
        assert!(
            !super::fuzzing::decode_edited(&[0, 9, 0, 1]),
            "a flip, no fix-up"
        );
    }
}
