//! The in-memory index: key -> where the blob's bytes are.
//!
//! Always rebuildable from the columns' entry tables (see `recover`). Built
//! for a small heap per blob, because there is one entry per blob and a
//! store holds hundreds of millions (docs/PERFORMANCE.md, "The lean
//! index"):
//!
//! - **Records in one arena.** Each key lives once, in a record appended to
//!   a byte arena: a 4-byte header (key length, kind, column index), the
//!   location (16 bytes), the key, padding to a multiple of 4. A record's id
//!   is its offset / 4, so 4-byte ids address 16 GiB of arena.
//! - **Point lookups** go through a hash table of record ids (hashbrown's
//!   `HashTable<u32>`: 4 bytes and one control byte per bucket, at most 7/8
//!   full), hashed with SipHash-1-3 (one pass over the key, as std's
//!   `HashMap` hashes but without its `Hasher` plumbing) under a random key
//!   per index, so keys a user chooses cannot flood one bucket chain.
//! - **Key order** (`keys_with_prefix`) is built only when asked for: sorted
//!   runs of ids, extended from the arena's tail at each query and merged
//!   so their sizes at least double from newest to oldest (O(log n) runs).
//!   A store that is never listed never pays for it.
//! - **Changes**: a replaced value is rewritten in its record; a removed
//!   key leaves a dead record, and once dead records are a quarter of the
//!   arena it is compacted in place (ids shift down; the table is remapped,
//!   the key order rebuilt at the next query).
//! - **A checkpoint's records in place** (`base`): opened from a version 2 or 3
//!   checkpoint, the index is the checkpoint's records where the body was
//!   read ([`BaseIndex`]) under the arena and table above as an overlay of
//!   what changed since. A lookup asks the overlay first; a key removed
//!   from the base is a record of kind [`KIND_GONE`] in the overlay, and a
//!   bitmap marks the base records the overlay hides (for `len`, `iter`
//!   and listings). The base is never written: the next checkpoint merges
//!   the two into one image.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use hashbrown::HashTable;

mod base;

pub(crate) use base::{BaseIndex, Directory, directory_of};

/// Where one part of a blob lives: a byte range of one column's payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PartLoc {
    /// The stripe's slot in the stripe table.
    pub slot: u32,
    /// Offset of the part's bytes from the start of the column payload.
    pub offset: u32,
    pub len: u32,
    /// crc32fast of the part's bytes.
    pub checksum: u32,
    pub column_index: u16,
}

/// A blob in the index: whole in one column, or cut into parts. Kept to 24
/// bytes (the common case inline, the rare split blob boxed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BlobLoc {
    Whole(PartLoc),
    Split(Box<SplitBlob>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SplitBlob {
    pub len: u64,
    pub parts: Box<[PartLoc]>,
}

const _: () = assert!(std::mem::size_of::<BlobLoc>() <= 24);

impl BlobLoc {
    pub fn split(len: u64, parts: Box<[PartLoc]>) -> BlobLoc {
        BlobLoc::Split(Box::new(SplitBlob { len, parts }))
    }

    pub fn len(&self) -> u64 {
        match self {
            BlobLoc::Whole(p) => u64::from(p.len),
            BlobLoc::Split(s) => s.len,
        }
    }

    pub fn parts(&self) -> &[PartLoc] {
        match self {
            BlobLoc::Whole(p) => std::slice::from_ref(p),
            BlobLoc::Split(s) => &s.parts,
        }
    }
}

/// Records are aligned to this many bytes; a record's id is its offset
/// divided by it.
const ALIGN: usize = 4;
/// Header and location: key length (u16), kind (u8), column index (u8),
/// then slot (or split number), offset, length, checksum (u32 each), all
/// little-endian.
const FIXED: usize = 20;
const KIND_WHOLE: u8 = 0;
const KIND_SPLIT: u8 = 1;
const KIND_DEAD: u8 = 2;
/// A record of the overlay that hides a key of the base (the key was
/// removed since the checkpoint): in the table, but not live.
const KIND_GONE: u8 = 3;
/// The arena's largest size: ids are u32 in units of [`ALIGN`] (less
/// where `usize` is narrower).
const ARENA_MAX: usize = {
    let ids = (u32::MAX as u64) * (ALIGN as u64);
    if ids < isize::MAX as u64 {
        ids as usize
    } else {
        isize::MAX as usize
    }
};
/// Above this the index refuses new keys ([`Index::full`]), leaving
/// room for the puts already admitted.
const ARENA_FULL: usize = ARENA_MAX - ARENA_MAX / 16;
/// Dead records are compacted away once they are at least this many
/// bytes and a quarter of the arena (less in unit tests, which compact
/// small indexes).
const DEAD_BYTES_MIN: usize = if cfg!(test) { 4096 } else { 1 << 20 };

fn record_len(key_len: usize) -> usize {
    (FIXED + key_len).next_multiple_of(ALIGN)
}

/// Records of more than this many bytes not in the key order yet are
/// sorted outside the store's lock ([`Index::order_backlog`]): sorting 10^7
/// keys in place took 3 s, with puts waiting behind the lock.
pub(crate) const ORDER_BACKLOG_MAX: usize = if cfg!(test) { 4096 } else { 4 << 20 };

/// A backlog's records are copied this many bytes at a time, each piece
/// under its own hold of the store's lock ([`Index::copy_backlog`]): at
/// 10^7 keys the arena is 400 MB, whose copy in one piece held puts back
/// for a quarter of a second (docs/PERFORMANCE.md).
const BACKLOG_PIECE: usize = if cfg!(test) { 100 } else { 4 << 20 };

/// The live records of `records` (the arena from byte `from` on), as ids
/// sorted by key.
///
/// Each id is sorted with its key's first 16 bytes (zero-padded, big
/// endian): most comparisons never read the arena, whose records are in
/// hash order after an open (a sort that read two keys at random per
/// comparison took 12 s for 10^7 keys; docs/PERFORMANCE.md). Padding keeps
/// the order (a key whose padded prefix is smaller is smaller); equal
/// prefixes compare the whole keys.
fn sorted_run(records: &[u8], from: usize) -> Vec<u32> {
    let base = (from / ALIGN) as u32;
    let mut at = 0;
    let ids = std::iter::from_fn(|| {
        while at < records.len() {
            let id = (at / ALIGN) as u32;
            let kind = records[at + 2];
            at += record_len(key_len_at(records, at));
            // A record hiding a base key stays in the order: a put of the
            // key makes it live again under the same id.
            if kind != KIND_DEAD {
                return Some(id);
            }
        }
        None
    });
    sort_by_key(ids, |id| key_at(records, id))
        .into_iter()
        .map(|id| id + base)
        .collect()
}

/// The base's record ids in key order (see [`sorted_run`]).
fn base_order(base: &BaseIndex) -> Vec<u32> {
    sort_by_key(base.ids(), |id| base.key(id))
}

/// `ids` sorted by `key` of each, with each key's first 16 bytes beside
/// its id (see [`sorted_run`]).
fn sort_by_key<'k>(ids: impl Iterator<Item = u32>, key: impl Fn(u32) -> &'k [u8]) -> Vec<u32> {
    let mut keyed: Vec<(u64, u64, u32)> = ids
        .map(|id| {
            let key = key(id);
            let mut prefix = [0u8; 16];
            let n = key.len().min(16);
            prefix[..n].copy_from_slice(&key[..n]);
            let (high, low) = prefix.split_at(8);
            (
                u64::from_be_bytes(high.try_into().unwrap_or_default()),
                u64::from_be_bytes(low.try_into().unwrap_or_default()),
                id,
            )
        })
        .collect();
    keyed.sort_unstable_by(|a, b| {
        (a.0, a.1)
            .cmp(&(b.0, b.1))
            .then_with(|| key(a.2).cmp(key(b.2)))
    });
    keyed.into_iter().map(|(_, _, id)| id).collect()
}

/// What a listing should do about the records not in the key order yet.
pub(crate) enum Backlog {
    /// Few enough to sort in place, under the lock.
    Small,
    /// Sort this copy outside the lock, then [`Index::add_sorted`].
    Sort(OrderBacklog),
    /// Another listing is sorting them: wait for it.
    Busy,
}

/// The right to sort the backlog, released when dropped (also when the
/// sort unwinds).
struct SortClaim(Arc<AtomicBool>);

impl Drop for SortClaim {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// A copy of the records the key order does not cover yet, and the base
/// when its key order is not built yet.
pub(crate) struct OrderBacklog {
    /// The records of the arena from `from` to `end`, copied up to
    /// `records.len()` so far.
    records: Vec<u8>,
    from: usize,
    end: usize,
    compactions: u64,
    /// The base (shared, never changed) whose order to build.
    base: Option<Arc<BaseIndex>>,
    claim: SortClaim,
}

impl OrderBacklog {
    /// True once every record is copied ([`Index::copy_backlog`]).
    pub fn is_whole(&self) -> bool {
        self.from + self.records.len() == self.end
    }

    /// Sorts the copy and the base (the slow part; no lock needed). A copy
    /// not whole (refused midway: a record may be cut short) gives an
    /// empty run and leaves the base's order to the next listing (after a
    /// move onto a checkpoint, the base is not the index's any more:
    /// seconds of sorting at 10^7 keys for nothing).
    pub fn sort(mut self) -> SortedBacklog {
        if !self.is_whole() {
            self.records.clear();
            self.base = None;
        }
        SortedBacklog {
            run: sorted_run(&self.records, self.from),
            from: self.from,
            to: self.from + self.records.len(),
            compactions: self.compactions,
            base: self.base.map(|base| {
                let order = base_order(&base);
                (base, order)
            }),
            _claim: self.claim,
        }
    }
}

/// A sorted run of the records of `from..to`, and the base's key order
/// when it was asked for, for [`Index::add_sorted`].
pub(crate) struct SortedBacklog {
    run: Vec<u32>,
    from: usize,
    to: usize,
    compactions: u64,
    base: Option<(Arc<BaseIndex>, Vec<u32>)>,
    _claim: SortClaim,
}

/// Key order, built on demand: runs of record ids, each sorted by key (dead
/// records included until a merge drops them), covering the records of
/// the arena's first `covered` bytes.
#[derive(Debug, Default)]
struct Order {
    runs: Vec<Vec<u32>>,
    covered: usize,
    /// The base's record ids in key order, built at the first listing.
    base: Option<Vec<u32>>,
}

/// A random 128-bit SipHash key (drawn from std's per-process random
/// keys).
#[derive(Clone, Copy)]
struct HashKey(u64, u64);

impl Default for HashKey {
    fn default() -> HashKey {
        let random = RandomState::new();
        HashKey(
            random.hash_one(0x6765_6f73u32),
            random.hash_one(0x6861_7264u32),
        )
    }
}

impl HashKey {
    #[inline]
    fn hash(self, key: &[u8]) -> u64 {
        siphash::<1, 3>(self.0, self.1, key)
    }
}

#[inline(always)]
fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

/// The last 0-7 bytes of a message as a little-endian word, in at most
/// three loads (a copy into a zeroed word calls `memcpy` for its variable
/// length: a tenth of a short key's hash).
#[inline(always)]
fn tail_word(tail: &[u8]) -> u64 {
    let n = tail.len();
    let mut word = 0u64;
    let mut at = 0;
    if n >= 4 {
        word = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
        at = 4;
    }
    if n - at >= 2 {
        word |= u64::from(u16::from_le_bytes([tail[at], tail[at + 1]])) << (8 * at);
        at += 2;
    }
    if at < n {
        word |= u64::from(tail[at]) << (8 * at);
    }
    word
}

/// SipHash-c-d of `bytes` under the key `(k0, k1)`, as the reference
/// defines it (the message length in the last block's top byte).
#[inline]
pub(crate) fn siphash<const C: usize, const D: usize>(k0: u64, k1: u64, bytes: &[u8]) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let m = u64::from_le_bytes(word);
        v[3] ^= m;
        for _ in 0..C {
            round(&mut v);
        }
        v[0] ^= m;
    }
    let m = tail_word(chunks.remainder()) | ((bytes.len() as u64) << 56);
    v[3] ^= m;
    for _ in 0..C {
        round(&mut v);
    }
    v[0] ^= m;
    v[2] ^= 0xff;
    for _ in 0..D {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// The live records of an [`Index`] in its arena format, with their split
/// blobs and hash key: what a checkpoint stores (docs/FORMAT.md,
/// "Checkpoint").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct IndexImage {
    /// Records back to back: key length (u16), kind (0 whole, 1 split),
    /// column index, then slot (or split number), offset, length and
    /// checksum (u32 each), the key, zeros to a multiple of 4.
    pub records: Vec<u8>,
    /// Split blobs, by the number their records name.
    pub splits: Vec<SplitBlob>,
    /// Records in `records`.
    pub count: u64,
    /// The SipHash key.
    pub hash_key: (u64, u64),
    /// The directory of bucket groups and their filters
    /// ([`directory`](Self::directory)), when the image was taken from an
    /// index; empty when decoded.
    pub directory: Directory,
}

impl IndexImage {
    /// The directory a [`BaseIndex`] over these records needs (the image's
    /// records are in bucket order: [`IndexCopy::image`]).
    #[cfg(test)]
    pub fn directory(&self) -> Directory {
        self.directory_over(&self.records)
    }

    /// [`directory`](Self::directory) of the image whose records are
    /// `records` (its own, or taken out of it).
    pub fn directory_over(&self, records: &[u8]) -> Directory {
        if !self.directory.starts.is_empty() {
            return self.directory.clone();
        }
        let hasher = HashKey(self.hash_key.0, self.hash_key.1);
        let count = usize::try_from(self.count).unwrap_or(usize::MAX);
        directory_of(
            records,
            std::iter::from_fn(record_hashes(records, hasher)),
            count,
        )
    }
}

/// A delta checkpoint's index ([`IndexCopy::delta_image`]).
#[derive(Debug)]
pub(crate) struct DeltaImage {
    /// The records above the base.
    pub image: IndexImage,
    /// The base's generation and body crc.
    pub base: (u64, u32),
    /// The base's records hidden, ascending ids.
    pub hidden: Vec<u32>,
}

/// An index's arena and split blobs, copied under the store's lock, to be
/// made an [`IndexImage`] without it.
pub(crate) struct IndexCopy {
    arena: Vec<u8>,
    splits: Vec<Option<Box<SplitBlob>>>,
    count: usize,
    hash_key: HashKey,
    /// The base, and which of its records the overlay hides.
    base: Option<(Arc<BaseIndex>, Vec<u64>)>,
}

/// Buckets hashbrown's table gets for `count` entries (`with_capacity`):
/// records stored in bucket order load into the table front to back.
/// Only speed depends on it matching hashbrown's rule.
/// Images of at least this many records are loaded with their keys
/// hashed ahead by a second thread, in blocks of `HASH_BLOCK`.
const HASH_AHEAD_MIN: usize = 1 << 16;
const HASH_BLOCK: usize = 1 << 14;

/// The hashes of the keys of `arena`'s records in order, as
/// [`Index::load_records`] walks them: it stops where that walk finds a
/// record it refuses (which then fails the load).
fn record_hashes(arena: &[u8], hasher: HashKey) -> impl FnMut() -> Option<u64> + '_ {
    let mut at = 0;
    move || {
        let header = arena.get(at..at + FIXED)?;
        let key_len = usize::from(u16::from_le_bytes([header[0], header[1]]));
        if key_len == 0 || key_len > crate::format::KEY_LEN_MAX {
            return None;
        }
        let key = arena.get(at + FIXED..at + FIXED + key_len)?;
        at += record_len(key_len);
        Some(hasher.hash(key))
    }
}

fn buckets_for(count: usize) -> usize {
    if count < 8 {
        return 8;
    }
    (count.saturating_mul(8) / 7).next_power_of_two()
}

impl IndexCopy {
    /// The live records, dead ones left out, split blobs renumbered from 0,
    /// in the order of the table buckets their keys hash to: loading them
    /// then fills the table front to back instead of at random (3.8 s
    /// against a fraction of it for 10^7 keys, docs/PERFORMANCE.md).
    pub fn image(self) -> IndexImage {
        self.image_below(u32::MAX)
    }

    /// The image of a delta checkpoint over the bottom base of the index
    /// copied (docs/FORMAT.md, "Checkpoint", version 4): the overlay's
    /// live records and those of the delta the index stands on (if it
    /// does) that the overlay does not hide, as [`image`](Self::image)
    /// orders them; and which of the bottom base's records they hide.
    ///
    /// # Errors
    /// The copy back when the index stood on no checkpoint.
    pub fn delta_image(mut self) -> Result<DeltaImage, IndexCopy> {
        let Some((base, shadowed)) = self.base.as_ref() else {
            return Err(self);
        };
        let Some(base_generation) = base.bottom_origin() else {
            return Err(self);
        };
        let (mut hidden, bottom_count) = base.bottom_hidden(shadowed, false);
        let end = base.delta_end();
        // The bottom base's records left visible are not the delta's.
        self.count = self
            .count
            .saturating_sub(bottom_count.saturating_sub(hidden.len()));
        if crate::mutation::enabled(crate::mutation::Mutation::DeltaForgetsOlderHidden) {
            // Its count as above (open's count check passes), its list
            // without what the delta under the overlay hid.
            hidden = base.bottom_hidden(shadowed, true).0;
        }
        Ok(DeltaImage {
            image: self.image_below(end),
            base: base_generation,
            hidden,
        })
    }

    /// [`image`](Self::image) of the overlay's records and the base's
    /// whose ids are below `end`.
    fn image_below(mut self, end: u32) -> IndexImage {
        // The base's records the overlay does not hide join the overlay's
        // (off the store's lock), read in place and written straight into
        // the image: as if appended to the arena (their ids must fit it
        // then too), in the base's order.
        let base = self.base.take();
        /// The base's records below `end` the overlay does not hide, in
        /// order.
        fn kept<'b>(
            base: &'b BaseIndex,
            shadowed: &'b [u64],
            end: u32,
        ) -> impl Iterator<Item = (u32, &'b [u8])> + 'b {
            base.records()
                .take_while(move |&(id, _)| id < end)
                .filter(move |&(id, _)| {
                    shadowed
                        .get(id as usize / 64)
                        .is_none_or(|w| w & (1 << (id % 64)) == 0)
                })
        }
        let arena = &self.arena[..];
        let mask = (buckets_for(self.count) - 1) as u64;
        let shift = (64 - mask.leading_zeros()).saturating_sub(IMAGE_PARTITION_BITS);
        let partition = |bucket: u32| (u64::from(bucket) >> shift) as usize;
        // Each live record's bucket and filter tag (its hash's top bits,
        // base::filter_bits), in arena order then the base's, and each
        // partition's records and bytes (a partition: the buckets of the
        // same top bits).
        let mut buckets: Vec<(u32, u16)> = Vec::with_capacity(self.count);
        let mut sizes = vec![(0usize, 0usize); 1 << IMAGE_PARTITION_BITS];
        let mut note = |key: &[u8], len: usize| {
            let hash = self.hash_key.hash(key);
            let bucket = (hash & mask) as u32;
            buckets.push((bucket, (hash >> 52) as u16));
            let size = &mut sizes[partition(bucket)];
            size.0 += 1;
            size.1 += len;
        };
        let mut at = 0;
        while at < arena.len() {
            let len = record_len(key_len_at(arena, at));
            if !matches!(kind_at(arena, (at / ALIGN) as u32), KIND_DEAD | KIND_GONE) {
                note(key_at(arena, (at / ALIGN) as u32), len);
            }
            at += len;
        }
        let (mut used, mut base_taken) = (arena.len(), 0usize);
        if let Some((base, shadowed)) = &base {
            for (_, r) in kept(base, shadowed, end) {
                let key = base::key_of(r);
                let len = record_len(key.len());
                if used + len > ARENA_MAX {
                    // Unreachable while `full` refuses puts: the image then
                    // holds fewer records than its count, and open refuses
                    // it (the full scan instead), never a key short.
                    tracing::error!("checkpoint image full: records left out");
                    break;
                }
                used += len;
                base_taken += 1;
                note(key, len);
            }
        }
        // The records (and their buckets) moved to their partition's part
        // of the image, reading the arena and the base in order.
        let mut starts: Vec<(usize, usize)> = Vec::with_capacity(sizes.len() + 1);
        let (mut count, mut bytes) = (0, 0);
        for &(records, len) in &sizes {
            starts.push((count, bytes));
            count += records;
            bytes += len;
        }
        starts.push((count, bytes));
        let bounds = starts.clone();
        let mut records = vec![0u8; bytes];
        let mut moved_buckets = vec![(0u32, 0u16); count];
        let (mut at, mut live) = (0, buckets.iter());
        while at < arena.len() {
            let len = record_len(key_len_at(arena, at));
            if !matches!(kind_at(arena, (at / ALIGN) as u32), KIND_DEAD | KIND_GONE)
                && let Some(&(bucket, tag)) = live.next()
            {
                let (index, offset) = &mut starts[partition(bucket)];
                records[*offset..*offset + len].copy_from_slice(&arena[at..at + len]);
                moved_buckets[*index] = (bucket, tag);
                *offset += len;
                *index += 1;
            }
            at += len;
        }
        if let Some((base, shadowed)) = &base {
            for ((id, r), &(bucket, tag)) in kept(base, shadowed, end).take(base_taken).zip(live) {
                let key = base::key_of(r);
                let len = record_len(key.len());
                let (index, offset) = &mut starts[partition(bucket)];
                let record = &mut records[*offset..*offset + len];
                record[..2].copy_from_slice(&(key.len() as u16).to_le_bytes());
                record[FIXED..FIXED + key.len()].copy_from_slice(key);
                match base.loc_at(id, r) {
                    BlobLoc::Whole(p) => {
                        record[2] = KIND_WHOLE;
                        record[3] = p.column_index as u8;
                        for (i, field) in [p.slot, p.offset, p.len, p.checksum].iter().enumerate() {
                            record[4 + 4 * i..8 + 4 * i].copy_from_slice(&field.to_le_bytes());
                        }
                    }
                    BlobLoc::Split(split) => {
                        // Numbered after the overlay's, in the base's order.
                        let number = self.splits.len() as u32;
                        self.splits.push(Some(split));
                        record[2] = KIND_SPLIT;
                        record[4..8].copy_from_slice(&number.to_le_bytes());
                    }
                }
                moved_buckets[*index] = (bucket, tag);
                *offset += len;
                *index += 1;
            }
        }
        drop(buckets);
        // Each partition sorted by bucket through a copy small enough for
        // the caches (a sort of the whole index read every record at
        // random: 2.5 s of a checkpoint of 10^7 keys); split blobs
        // renumbered in the image's order.
        let (mut scratch, mut order): (Vec<u8>, Vec<(u32, u32, u16)>) = (Vec::new(), Vec::new());
        let mut splits = Vec::new();
        let groups = (buckets_for(self.count) >> base::GROUP_BITS).max(1);
        let mut directory: Vec<u32> = Vec::with_capacity(groups + 1);
        let mut filters = vec![0u64; groups];
        for window in bounds.windows(2) {
            let ((first, from), (_, to)) = (window[0], window[1]);
            scratch.clear();
            scratch.extend_from_slice(&records[from..to]);
            order.clear();
            let mut offset = 0;
            for &(bucket, tag) in &moved_buckets[first..] {
                if offset >= scratch.len() {
                    break;
                }
                order.push((bucket, offset as u32, tag));
                offset += record_len(key_len_at(&scratch, offset));
            }
            order.sort_unstable();
            let mut write = from;
            for &(bucket, offset, tag) in &order {
                let group = (bucket >> base::GROUP_BITS) as usize;
                while directory.len() <= group {
                    directory.push((write / ALIGN) as u32);
                }
                if let Some(filter) = filters.get_mut(group) {
                    *filter |= base::filter_bits_of_tag(tag);
                }
                let offset = offset as usize;
                let len = record_len(key_len_at(&scratch, offset));
                let record = &mut records[write..write + len];
                record.copy_from_slice(&scratch[offset..offset + len]);
                if record[2] == KIND_SPLIT {
                    let number = splits.len() as u32;
                    let split = self
                        .splits
                        .get(u32_at(record, 4) as usize)
                        .and_then(Option::as_ref);
                    splits.push(match split {
                        Some(split) => SplitBlob::clone(split),
                        // Unreachable: a split record's number is live.
                        None => SplitBlob {
                            len: 0,
                            parts: Box::new([]),
                        },
                    });
                    record[4..8].copy_from_slice(&number.to_le_bytes());
                }
                write += len;
            }
        }
        while directory.len() <= groups {
            directory.push((records.len() / ALIGN) as u32);
        }
        IndexImage {
            records,
            splits,
            count: self.count as u64,
            hash_key: (self.hash_key.0, self.hash_key.1),
            directory: Directory {
                starts: directory,
                filters,
            },
        }
    }
}

/// Partitions of [`IndexCopy::image`]: 2^8, a few MiB each at 10^7 keys.
const IMAGE_PARTITION_BITS: u32 = 8;

#[derive(Default)]
pub(crate) struct Index {
    arena: Vec<u8>,
    table: HashTable<u32>,
    hasher: HashKey,
    splits: Vec<Option<Box<SplitBlob>>>,
    free_splits: Vec<u32>,
    dead_bytes: usize,
    /// Arena compactions so far (they change ids).
    compactions: u64,
    order: Mutex<Order>,
    /// Set while a listing sorts a backlog outside the lock.
    sorting: Arc<AtomicBool>,
    /// Set when a key was not indexed because the arena was full.
    overflowed: bool,
    /// A checkpoint's records read in place, under the arena's records
    /// (the overlay): a key the overlay holds, live or [`KIND_GONE`],
    /// hides the base's record of it.
    base: Option<Arc<BaseIndex>>,
    /// One bit per base record id: set when the overlay hides it.
    shadowed: Vec<u64>,
    /// Base records the overlay hides.
    shadow_count: usize,
    /// Overlay records of kind [`KIND_GONE`].
    gone_count: usize,
    /// Every change since a checkpoint's copy was taken, while one is
    /// written ([`start_journal`](Index::start_journal)): replayed over the
    /// checkpoint's records when the index moves onto them
    /// ([`rebase`](Index::rebase)).
    journal: Mutex<Option<Journal>>,
}

/// Changes of the index in the order they were made (keys packed in one
/// buffer): what [`Index::rebase`] replays over a checkpoint's records to
/// reach the index they were copied from plus everything after.
#[derive(Debug, Default)]
pub(crate) struct Journal {
    keys: Vec<u8>,
    /// (end of the key in `keys`, the new location or `None`: removed).
    items: Vec<(usize, Option<BlobLoc>)>,
}

impl Journal {
    fn push(&mut self, key: &[u8], loc: Option<BlobLoc>) {
        self.keys.extend_from_slice(key);
        self.items.push((self.keys.len(), loc));
    }

    /// Changes in the journal.
    pub fn len(&self) -> usize {
        self.items.len()
    }
}

impl fmt::Debug for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Index")
            .field("len", &self.len())
            .field("arena_bytes", &self.arena.len())
            .field("dead_bytes", &self.dead_bytes)
            .finish_non_exhaustive()
    }
}

/// Reads a little-endian u32 at `at` (the arena's records are written by
/// this module only, so the bounds hold; `get` keeps it panic-free anyway).
fn u32_at(arena: &[u8], at: usize) -> u32 {
    arena
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn key_len_at(arena: &[u8], offset: usize) -> usize {
    usize::from(u16::from_le_bytes([arena[offset], arena[offset + 1]]))
}

fn key_at(arena: &[u8], id: u32) -> &[u8] {
    let offset = id as usize * ALIGN;
    let len = key_len_at(arena, offset);
    &arena[offset + FIXED..offset + FIXED + len]
}

fn kind_at(arena: &[u8], id: u32) -> u8 {
    arena[id as usize * ALIGN + 2]
}

/// Appends a record of `key` (location zero) to `arena`; its id, or
/// `None` (logged) when the arena is full.
fn push_record(arena: &mut Vec<u8>, key: &[u8]) -> Option<u32> {
    let offset = arena.len();
    let len = record_len(key.len());
    // `full` keeps puts away from the limit; a key past it is
    // dropped loudly rather than given an id that aliases another.
    if offset + len > ARENA_MAX || key.len() > usize::from(u16::MAX) {
        tracing::error!(offset, "index arena full: entry not indexed");
        return None;
    }
    if arena.capacity() < offset + len {
        // Grow by an eighth, not the doubling a Vec does by itself:
        // after open's shrink the first put would double the arena
        // (30 B per key at 10^7 keys). Large blocks grow in place
        // (the allocator remaps them), so the smaller steps cost little.
        let step = (arena.capacity() / 8).max(len).max(4096);
        arena.reserve_exact(step);
    }
    arena.resize(offset + len, 0);
    arena[offset..offset + 2].copy_from_slice(&(key.len() as u16).to_le_bytes());
    arena[offset + FIXED..offset + FIXED + key.len()].copy_from_slice(key);
    Some((offset / ALIGN) as u32)
}

/// Checks the record whose first [`FIXED`] bytes are `header` (at byte
/// `at`, for the messages): key length, kind, its parts (`part_ok`), its
/// split number (one of `splits`, not `used` yet: marked). Returns the
/// record's length.
fn check_record<'s>(
    header: &[u8],
    at: usize,
    split: impl Fn(usize) -> Option<&'s SplitBlob>,
    used: &mut [bool],
    part_ok: &mut impl FnMut(&PartLoc) -> bool,
) -> std::result::Result<usize, String> {
    let key_len = usize::from(u16::from_le_bytes([header[0], header[1]]));
    if key_len == 0 || key_len > crate::format::KEY_LEN_MAX {
        return Err(format!("a key of {key_len} bytes at byte {at}"));
    }
    let field = |i: usize| u32_at(header, 4 + 4 * i);
    match header[2] {
        KIND_WHOLE => {
            let part = PartLoc {
                slot: field(0),
                offset: field(1),
                len: field(2),
                checksum: field(3),
                column_index: u16::from(header[3]),
            };
            if !part_ok(&part) {
                return Err(format!("the record at byte {at} points outside its stripe"));
            }
        }
        KIND_SPLIT => {
            let number = field(0) as usize;
            let split = split(number)
                .filter(|_| used.get(number) == Some(&false))
                .ok_or_else(|| format!("split number {number} at byte {at}"))?;
            used[number] = true;
            if split.parts.is_empty() || !split.parts.iter().all(&mut *part_ok) {
                return Err(format!("split blob {number} at byte {at}"));
            }
        }
        kind => return Err(format!("record kind {kind} at byte {at}")),
    }
    Ok(record_len(key_len))
}

/// The entry of `key` (whose hash is `hash`) in `table`, over `arena`.
fn table_entry<'t>(
    table: &'t mut HashTable<u32>,
    arena: &[u8],
    hasher: HashKey,
    hash: u64,
    key: &[u8],
) -> hashbrown::hash_table::Entry<'t, u32> {
    table.entry(
        hash,
        |&id| key_at(arena, id) == key,
        |&id| hasher.hash(key_at(arena, id)),
    )
}

impl Index {
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash(key)
    }

    fn find(&self, hash: u64, key: &[u8]) -> Option<u32> {
        let arena = &self.arena;
        self.table
            .find(hash, |&id| key_at(arena, id) == key)
            .copied()
    }

    /// Whether the overlay hides base record `id`.
    fn is_shadowed(&self, id: u32) -> bool {
        self.shadowed
            .get(id as usize / 64)
            .is_some_and(|w| w & (1 << (id % 64)) != 0)
    }

    /// Marks base record `id` hidden by the overlay.
    fn shadow(&mut self, id: u32) {
        if let Some(word) = self.shadowed.get_mut(id as usize / 64) {
            let bit = 1 << (id % 64);
            if *word & bit == 0 {
                *word |= bit;
                self.shadow_count += 1;
            }
        }
    }

    /// The base's location of `key`, and its record id: looked up here
    /// (`found` is `None`) or already (`found`, what
    /// [`base_id`](Self::base_id) gave).
    fn base_found(
        &self,
        found: Option<Option<u32>>,
        hash: u64,
        key: &[u8],
    ) -> Option<(u32, BlobLoc)> {
        let base = self.base.as_ref()?;
        if let Some(found) = found {
            debug_assert_eq!(found, base.find(hash, key), "looked up ahead");
        }
        let id = found.unwrap_or_else(|| base.find(hash, key))?;
        Some((id, base.loc(id)))
    }

    /// False once a page of the base's records read in place was lost
    /// under the running store ([`BaseIndex::intact`]): answers that
    /// read the base may be wrong. True without a base.
    pub(crate) fn base_intact(&self) -> bool {
        self.base.as_ref().is_none_or(|b| b.intact())
    }

    /// The base (a checkpoint's records read in place), to verify
    /// outside the state's lock ([`BaseIndex::verify`]).
    pub(crate) fn base_handle(&self) -> Option<Arc<BaseIndex>> {
        self.base.clone()
    }

    /// True when the index has a base (a checkpoint's records read in
    /// place) under its overlay.
    pub(crate) fn has_base(&self) -> bool {
        self.base.is_some()
    }

    /// The id of `key`'s record in the base (whose hash is `hash`), for
    /// [`insert_found`](Self::insert_found) and
    /// [`remove_found`](Self::remove_found): a batch looks its keys up
    /// ahead, on two threads (the base never changes under the index).
    pub(crate) fn base_id(&self, hash: u64, key: &[u8]) -> Option<u32> {
        self.base.as_ref()?.find(hash, key)
    }

    fn loc_of(&self, id: u32) -> BlobLoc {
        let at = id as usize * ALIGN;
        let arena = &self.arena;
        match arena[at + 2] {
            KIND_SPLIT => {
                let split = self
                    .splits
                    .get(u32_at(arena, at + 4) as usize)
                    .and_then(Option::as_ref);
                match split {
                    Some(s) => BlobLoc::Split(s.clone()),
                    // Unreachable: a split record's number is live until
                    // the record changes kind.
                    None => BlobLoc::split(0, Box::new([])),
                }
            }
            _ => BlobLoc::Whole(PartLoc {
                slot: u32_at(arena, at + 4),
                offset: u32_at(arena, at + 8),
                len: u32_at(arena, at + 12),
                checksum: u32_at(arena, at + 16),
                column_index: u16::from(arena[at + 3]),
            }),
        }
    }

    /// Frees the split of record `id`, if it has one.
    fn free_split(&mut self, id: u32) {
        let at = id as usize * ALIGN;
        if self.arena[at + 2] == KIND_SPLIT {
            let number = u32_at(&self.arena, at + 4);
            if let Some(slot) = self.splits.get_mut(number as usize) {
                *slot = None;
                self.free_splits.push(number);
            }
        }
    }

    /// Writes `loc` into record `id` (whose split, if any, is freed).
    fn set_loc(&mut self, id: u32, loc: BlobLoc) {
        let at = id as usize * ALIGN;
        let (kind, column, fields) = match loc {
            BlobLoc::Whole(p) => {
                // At most 256 columns (GF(2^8)): the index fits a byte.
                debug_assert!(p.column_index <= u16::from(u8::MAX));
                (
                    KIND_WHOLE,
                    p.column_index as u8,
                    [p.slot, p.offset, p.len, p.checksum],
                )
            }
            BlobLoc::Split(split) => {
                let number = match self.free_splits.pop() {
                    Some(n) => {
                        self.splits[n as usize] = Some(split);
                        n
                    }
                    None => {
                        self.splits.push(Some(split));
                        (self.splits.len() - 1) as u32
                    }
                };
                (KIND_SPLIT, 0, [number, 0, 0, 0])
            }
        };
        let record = &mut self.arena[at..at + FIXED];
        record[2] = kind;
        record[3] = column;
        for (i, field) in fields.iter().enumerate() {
            record[4 + 4 * i..8 + 4 * i].copy_from_slice(&field.to_le_bytes());
        }
    }

    pub fn get(&self, key: &[u8]) -> Option<BlobLoc> {
        let hash = self.hash(key);
        match self.find(hash, key) {
            Some(id) if kind_at(&self.arena, id) == KIND_GONE => None,
            Some(id) => Some(self.loc_of(id)),
            None => self.base_found(None, hash, key).map(|(_, loc)| loc),
        }
    }

    /// The length of `key`'s value ([`get`](Self::get)`(key)?.len()`,
    /// without building its location).
    pub fn len_of(&self, key: &[u8]) -> Option<u64> {
        let hash = self.hash(key);
        match self.find(hash, key) {
            Some(id) => {
                let at = id as usize * ALIGN;
                match self.arena[at + 2] {
                    KIND_GONE => None,
                    KIND_SPLIT => Some(self.loc_of(id).len()),
                    _ => Some(u64::from(u32_at(&self.arena, at + 12))),
                }
            }
            None => self.base_found(None, hash, key).map(|(_, loc)| loc.len()),
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        let hash = self.hash(key);
        match self.find(hash, key) {
            Some(id) => kind_at(&self.arena, id) != KIND_GONE,
            None => self
                .base
                .as_ref()
                .is_some_and(|base| base.find(hash, key).is_some()),
        }
    }

    /// `Some((limit, used))` when the arena is near the most its 4-byte ids
    /// address (16 GiB, about 400 million keys of 20 bytes): puts are then
    /// refused (`Error::LimitExceeded`) rather than risk an id that does
    /// not fit.
    pub fn full(&self) -> Option<(usize, usize)> {
        // A checkpoint merges the base's records with the arena's: the two
        // together must fit one arena.
        let used = self.arena.len()
            + self
                .base
                .as_ref()
                .map_or(0, |b| b.id_end() as usize * ALIGN);
        (used >= ARENA_FULL).then_some((ARENA_FULL, used))
    }

    /// Inserts or replaces; returns the previous location.
    pub fn insert(&mut self, key: &[u8], loc: BlobLoc) -> Option<BlobLoc> {
        self.insert_hashed(self.hash(key), key, loc)
    }

    /// The hash `key` is filed under ([`insert_hashed`](Self::insert_hashed),
    /// [`remove_hashed`](Self::remove_hashed)).
    pub fn hash_of(&self, key: &[u8]) -> u64 {
        self.hash(key)
    }

    /// The mask of the bucket a hash starts its probe at, in the table
    /// once it holds `len` keys (or as it is, when that is larger):
    /// inserting in bucket order walks the table front to back instead of
    /// at random (each random probe of a large table misses the caches
    /// and the TLB).
    pub fn bucket_mask(&self, len: usize) -> u64 {
        buckets_for(len.max(self.table.capacity())) as u64 - 1
    }

    /// [`insert`](Self::insert) of a key whose hash is `hash`, as
    /// [`hash_and_bucket`](Self::hash_and_bucket) gave it.
    pub fn insert_hashed(&mut self, hash: u64, key: &[u8], loc: BlobLoc) -> Option<BlobLoc> {
        self.insert_found(hash, key, loc, None)
    }

    /// [`insert_hashed`](Self::insert_hashed) with the key's record in the
    /// base looked up already (`found`: what [`base_id`](Self::base_id)
    /// gave), or looked up here (`None`).
    pub(crate) fn insert_found(
        &mut self,
        hash: u64,
        key: &[u8],
        loc: BlobLoc,
        found: Option<Option<u32>>,
    ) -> Option<BlobLoc> {
        debug_assert_eq!(hash, self.hash(key));
        if let Some(journal) = self
            .journal
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
        {
            journal.push(key, Some(loc.clone()));
        }
        // One probe: the entry either holds the key's record or is the
        // bucket a new one goes to.
        let entry = table_entry(&mut self.table, &self.arena, self.hasher, hash, key);
        let vacant = match entry {
            hashbrown::hash_table::Entry::Occupied(found) => {
                let id = *found.get();
                if kind_at(&self.arena, id) == KIND_GONE {
                    // Removed from the base since the checkpoint.
                    self.gone_count -= 1;
                    self.set_loc(id, loc);
                    return None;
                }
                let old = self.loc_of(id);
                self.free_split(id);
                self.set_loc(id, loc);
                return Some(old);
            }
            hashbrown::hash_table::Entry::Vacant(vacant) => vacant,
        };
        let Some(id) = push_record(&mut self.arena, key) else {
            self.overflowed = true;
            return None;
        };
        vacant.insert(id);
        self.set_loc(id, loc);
        let (base_id, old) = self.base_found(found, hash, key).unzip();
        if let Some(base_id) = base_id {
            self.shadow(base_id);
        }
        old
    }

    /// True once a key could not be indexed (the arena was full): open
    /// fails rather than serve a store with keys missing.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Makes room for `additional` more keys in the point table (open's
    /// bulk insert reserves once instead of rehashing at every doubling).
    pub fn reserve(&mut self, additional: usize) {
        let (arena, hasher) = (&self.arena, self.hasher);
        self.table
            .reserve(additional, |&id| hasher.hash(key_at(arena, id)));
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<BlobLoc> {
        self.remove_hashed(self.hash(key), key)
    }

    /// [`remove`](Self::remove) of a key whose hash is `hash`, as
    /// [`hash_and_bucket`](Self::hash_and_bucket) gave it.
    pub fn remove_hashed(&mut self, hash: u64, key: &[u8]) -> Option<BlobLoc> {
        self.remove_found(hash, key, None)
    }

    /// [`remove_hashed`](Self::remove_hashed) with the key's record in the
    /// base looked up already, as in [`insert_found`](Self::insert_found).
    pub(crate) fn remove_found(
        &mut self,
        hash: u64,
        key: &[u8],
        found: Option<Option<u32>>,
    ) -> Option<BlobLoc> {
        debug_assert_eq!(hash, self.hash(key));
        if let Some(journal) = self
            .journal
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
        {
            journal.push(key, None);
        }
        let in_base = self.base_found(found, hash, key);
        let entry = table_entry(&mut self.table, &self.arena, self.hasher, hash, key);
        let entry = match entry {
            hashbrown::hash_table::Entry::Occupied(entry) => entry,
            hashbrown::hash_table::Entry::Vacant(vacant) => {
                // Only the base holds it: the overlay hides it from now on.
                let (base_id, old) = in_base?;
                let Some(id) = push_record(&mut self.arena, key) else {
                    self.overflowed = true;
                    return Some(old);
                };
                vacant.insert(id);
                self.arena[id as usize * ALIGN + 2] = KIND_GONE;
                self.gone_count += 1;
                self.shadow(base_id);
                return Some(old);
            }
        };
        let id = *entry.get();
        if kind_at(&self.arena, id) == KIND_GONE {
            return None;
        }
        if in_base.is_some() {
            // The base still holds an older value: keep hiding it.
            let old = self.loc_of(id);
            self.free_split(id);
            self.arena[id as usize * ALIGN + 2] = KIND_GONE;
            self.arena[id as usize * ALIGN + 4..id as usize * ALIGN + FIXED].fill(0);
            self.gone_count += 1;
            return Some(old);
        }
        let (id, _) = entry.remove();
        let old = self.loc_of(id);
        self.free_split(id);
        self.arena[id as usize * ALIGN + 2] = KIND_DEAD;
        self.dead_bytes += record_len(key.len());
        if self.dead_bytes >= DEAD_BYTES_MIN && self.dead_bytes * 4 >= self.arena.len() {
            self.compact();
        }
        Some(old)
    }

    pub fn len(&self) -> usize {
        let base = self.base.as_ref().map_or(0, |b| b.count());
        self.table.len() - self.gone_count + base - self.shadow_count
    }

    /// Drops the dead records: live ones slide down over them, in order,
    /// and the table's ids are shifted to match. The key order is rebuilt
    /// at the next query.
    fn compact(&mut self) {
        // (first old id after a gap, dead units before it), ascending.
        let mut shifts: Vec<(u32, u32)> = Vec::new();
        let (mut read, mut write) = (0usize, 0usize);
        let end = self.arena.len();
        while read < end {
            let len = record_len(key_len_at(&self.arena, read));
            if self.arena[read + 2] == KIND_DEAD {
                read += len;
                continue;
            }
            if read != write {
                let shift = ((read - write) / ALIGN) as u32;
                if shifts.last().is_none_or(|&(_, s)| s != shift) {
                    shifts.push(((read / ALIGN) as u32, shift));
                }
                self.arena.copy_within(read..read + len, write);
            }
            read += len;
            write += len;
        }
        self.arena.truncate(write);
        self.arena.shrink_to(write + write / 4);
        for id in self.table.iter_mut() {
            let at = shifts.partition_point(|&(from, _)| from <= *id);
            if at > 0 {
                *id -= shifts[at - 1].1;
            }
        }
        self.dead_bytes = 0;
        self.compactions += 1;
        let order = self.order.get_mut().unwrap_or_else(PoisonError::into_inner);
        *order = Order {
            base: order.base.take(),
            ..Order::default()
        };
    }

    /// Makes room in the arena for `bytes` more bytes of records at once,
    /// if the allocator grants it (open's bulk inserts, bounded by the
    /// entry tables' bytes: grown an eighth at a time, the arena was
    /// copied at each step while below the allocator's mapping threshold,
    /// a sixth of the inserts' time at an open from a checkpoint).
    /// [`shrink_to_fit`](Self::shrink_to_fit) gives back what was not
    /// used. The room is address space, not memory, until records fill it;
    /// under a strict overcommit policy (`vm.overcommit_memory = 2`) it
    /// counts against the commit limit until open ends, and a refusal only
    /// brings back the growth an eighth at a time.
    pub fn reserve_arena(&mut self, bytes: usize) {
        let room = bytes.min(ARENA_MAX.saturating_sub(self.arena.len()));
        let _ = self.arena.try_reserve_exact(room);
    }

    /// Gives back the spare capacity the arena, its table and the split
    /// blobs grew (after open's bulk insert, which reserves ahead).
    pub fn shrink_to_fit(&mut self) {
        self.arena.shrink_to_fit();
        self.splits.shrink_to_fit();
        let (arena, hasher) = (&self.arena, &self.hasher);
        self.table
            .shrink_to_fit(|&id| hasher.hash(key_at(arena, id)));
    }

    /// Brings the key order up to date with the arena: the records added
    /// since the last query become a sorted run, and runs merge while the
    /// older of the last two is at most twice the newer's size.
    fn refresh_order(&self, order: &mut Order) {
        if order.base.is_none()
            && let Some(base) = &self.base
        {
            order.base = Some(base_order(base));
        }
        if order.covered < self.arena.len() {
            let run = sorted_run(&self.arena[order.covered..], order.covered);
            order.covered = self.arena.len();
            self.add_run(order, run);
        }
    }

    /// Adds a sorted run of ids to the key order and merges runs while the
    /// older of the last two is at most twice the newer's size.
    fn add_run(&self, order: &mut Order, run: Vec<u32>) {
        if !run.is_empty() {
            order.runs.push(run);
        }
        let arena = &self.arena[..];
        while let [.., older, newer] = &order.runs[..]
            && older.len() <= 2 * newer.len()
        {
            let mut merged = Vec::with_capacity(older.len() + newer.len());
            let (mut i, mut j) = (0, 0);
            // Records hiding a base key stay (a put revives them).
            let live = |id: u32| kind_at(arena, id) != KIND_DEAD;
            while i < older.len() && j < newer.len() {
                let (a, b) = (older[i], newer[j]);
                if key_at(arena, a) <= key_at(arena, b) {
                    if live(a) {
                        merged.push(a);
                    }
                    i += 1;
                } else {
                    if live(b) {
                        merged.push(b);
                    }
                    j += 1;
                }
            }
            merged.extend(older[i..].iter().copied().filter(|&id| live(id)));
            merged.extend(newer[j..].iter().copied().filter(|&id| live(id)));
            order.runs.pop();
            order.runs.pop();
            order.runs.push(merged);
        }
    }

    /// A copy of the records the key order does not cover yet, when they
    /// are more than [`ORDER_BACKLOG_MAX`] bytes, and the base when its
    /// key order is not built yet (a checkpoint's keys, shared): the
    /// caller sorts them (`OrderBacklog::sort`) without holding the
    /// store's lock and hands the run back (`add_sorted`).
    /// [`Backlog::Small`] when neither is needed: the listing sorts the
    /// few records in place.
    ///
    /// One listing sorts at a time: others get [`Backlog::Busy`] and wait
    /// for it (a copy each would cost 30 B per key apiece).
    pub fn order_backlog(&self) -> Backlog {
        let order = self.order.lock().unwrap_or_else(PoisonError::into_inner);
        let large = self.arena.len() - order.covered > ORDER_BACKLOG_MAX;
        // The base's order (all of a checkpoint's keys: seconds at 10^7)
        // is built outside the lock too.
        let base = self.base.as_ref().filter(|_| order.base.is_none());
        if !large && base.is_none() {
            return Backlog::Small;
        }
        if self.sorting.swap(true, Ordering::AcqRel) {
            return Backlog::Busy;
        }
        // A small backlog stays for the listing to sort in place: an
        // empty copy (its run covers nothing).
        let from = if large {
            order.covered
        } else {
            self.arena.len()
        };
        let mut backlog = OrderBacklog {
            records: Vec::new(),
            from,
            end: self.arena.len(),
            compactions: self.compactions,
            base: base.cloned(),
            claim: SortClaim(Arc::clone(&self.sorting)),
        };
        drop(order);
        self.copy_backlog(&mut backlog);
        Backlog::Sort(backlog)
    }

    /// Copies the next [`BACKLOG_PIECE`] bytes of `backlog`'s records;
    /// false when its ids are no longer this index's (an arena compaction
    /// or a move onto a checkpoint since it was taken): the caller drops
    /// it. Pieces copied under different holds of the lock make one copy
    /// of the records: a key and its length never change under an id, and
    /// a record that is dead stays dead (until a compaction), so the run
    /// sorted from the pieces is one a copy at some moment could give.
    pub fn copy_backlog(&self, backlog: &mut OrderBacklog) -> bool {
        if backlog.compactions != self.compactions || backlog.end > self.arena.len() {
            return false;
        }
        let at = backlog.from + backlog.records.len();
        let to = backlog.end.min(at + BACKLOG_PIECE);
        if backlog.records.capacity() == 0 {
            backlog.records.reserve_exact(backlog.end - backlog.from);
        }
        backlog.records.extend_from_slice(&self.arena[at..to]);
        true
    }

    /// Adds a run sorted from an [`order_backlog`](Index::order_backlog)
    /// copy, unless the order moved on meanwhile (another listing added
    /// it first, or the arena was compacted and the ids changed).
    pub fn add_sorted(&self, sorted: SortedBacklog) {
        let mut order = self.order.lock().unwrap_or_else(PoisonError::into_inner);
        if let (Some((base, base_order)), Some(ours)) = (sorted.base, &self.base)
            && order.base.is_none()
            && Arc::ptr_eq(&base, ours)
        {
            order.base = Some(base_order);
        }
        if sorted.compactions == self.compactions
            && sorted.from == order.covered
            && sorted.to <= self.arena.len()
        {
            order.covered = sorted.to;
            self.add_run(&mut order, sorted.run);
        }
    }

    /// Up to `limit` keys starting with `prefix`, strictly after `after`
    /// (for resumable iteration without holding the lock), in key order.
    pub fn keys_with_prefix(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Vec<Box<[u8]>> {
        let mut order = self.order.lock().unwrap_or_else(PoisonError::into_inner);
        self.refresh_order(&mut order);
        let arena = &self.arena[..];
        let (lower, exclusive) = match after {
            Some(a) if a >= prefix => (a, true),
            _ => (prefix, false),
        };
        let mut found: Vec<&[u8]> = Vec::new();
        for run in &order.runs {
            let start = run.partition_point(|&id| {
                let key = key_at(arena, id);
                if exclusive { key <= lower } else { key < lower }
            });
            let mut taken = 0;
            for &id in &run[start..] {
                let key = key_at(arena, id);
                if taken == limit || !key.starts_with(prefix) {
                    break;
                }
                if !matches!(kind_at(arena, id), KIND_DEAD | KIND_GONE) {
                    found.push(key);
                    taken += 1;
                }
            }
        }
        if let (Some(base), Some(ids)) = (&self.base, &order.base) {
            let start = ids.partition_point(|&id| {
                let key = base.key(id);
                if exclusive { key <= lower } else { key < lower }
            });
            let mut taken = 0;
            for &id in &ids[start..] {
                let key = base.key(id);
                if taken == limit || !key.starts_with(prefix) {
                    break;
                }
                if !self.is_shadowed(id) {
                    found.push(key);
                    taken += 1;
                }
            }
        }
        found.sort_unstable();
        found.truncate(limit);
        found.into_iter().map(Box::from).collect()
    }

    /// An empty index hashing under `key` instead of a random key (the
    /// simulator's stores: one seed, one trace, checkpoints included).
    pub fn with_hash_key(key: (u64, u64)) -> Index {
        Index {
            hasher: HashKey(key.0, key.1),
            ..Index::default()
        }
    }

    /// Starts recording every change from now on (a checkpoint's copy is
    /// being taken under the same lock), for [`rebase`](Self::rebase).
    /// Restarts an empty journal if one was running.
    pub fn start_journal(&self) {
        *self.journal.lock().unwrap_or_else(PoisonError::into_inner) = Some(Journal::default());
    }

    /// Stops recording changes; returns what was recorded since
    /// [`start_journal`](Self::start_journal) or the last
    /// [`drain_journal`](Self::drain_journal) (`None`: not recording).
    pub fn stop_journal(&mut self) -> Option<Journal> {
        self.journal
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// What was recorded so far, recording going on into an empty journal
    /// (`None`: not recording).
    pub fn drain_journal(&mut self) -> Option<Journal> {
        self.journal
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
            .map(std::mem::take)
    }

    /// Whether `self` has a base of a checkpoint's records (and no
    /// overlay yet): what [`rebase`](Self::rebase) moves an index onto.
    pub(crate) fn is_bare_base(&self) -> bool {
        self.base.is_some() && self.arena.is_empty()
    }

    /// Applies `journal`'s changes, in order (a checkpoint's index being
    /// brought up to the running one's, [`rebase`](Self::rebase)). False
    /// when a key could not be indexed (the arena is full).
    pub fn replay(&mut self, journal: Journal) -> bool {
        self.reserve(journal.len());
        let mut start = 0;
        for (end, loc) in journal.items {
            let key = journal.keys.get(start..end).unwrap_or_default();
            start = end;
            match loc {
                Some(loc) => {
                    self.insert(key, loc);
                }
                None => {
                    self.remove(key);
                }
            }
        }
        !self.overflowed
    }

    /// Moves onto `fresh` (a checkpoint's records, with the changes made
    /// since its copy was taken replayed over them): the index becomes
    /// `fresh`, whose keys and locations must be this index's, and this
    /// overlay's records go. What listings depend on carries over: a run a
    /// listing sorts from this index's records is refused (the arena's ids
    /// change, like a compaction's), and one listing still sorts at a
    /// time. Returns the index let go (dropped by the caller outside its
    /// lock).
    pub fn rebase(&mut self, mut fresh: Index) -> Index {
        fresh.compactions += self.compactions + 1;
        fresh.sorting = Arc::clone(&self.sorting);
        std::mem::replace(self, fresh)
    }

    /// (records of the bottom base the index shows, records above it:
    /// a delta's and the overlay's): what decides whether the next
    /// checkpoint is a delta over the bottom base.
    pub(crate) fn layers(&self) -> (usize, usize) {
        match &self.base {
            Some(base) => {
                let bottom = base.bottom_live();
                (bottom, base.count() - bottom + self.table.len())
            }
            None => (0, self.table.len()),
        }
    }

    /// The checkpoint the index stands on at the bottom (a delta's base,
    /// or the one checkpoint): its generation and body crc.
    pub(crate) fn bottom_origin(&self) -> Option<(u64, u32)> {
        self.base.as_ref()?.bottom_origin()
    }

    /// (records of the base, records of the overlay): the keys a
    /// checkpoint's records hold in place, and those in memory (live or
    /// hiding a base record).
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn shape(&self) -> (usize, usize) {
        (
            self.base.as_ref().map_or(0, |b| b.count()),
            self.table.len(),
        )
    }

    /// Whether `other` hashes keys as this index does (a checkpoint of
    /// this store does: its hash key is the store's).
    pub(crate) fn same_hash_key(&self, other: &Index) -> bool {
        (self.hasher.0, self.hasher.1) == (other.hasher.0, other.hasher.1)
    }

    /// A copy of the arena and the split blobs: the part of taking an
    /// [`IndexImage`] that needs the caller's lock (one copy of the
    /// arena). [`IndexCopy::image`] does the rest without it.
    #[cfg(any(test, feature = "testing"))]
    pub fn copy(&self) -> IndexCopy {
        self.copy_into(Vec::new())
    }

    /// Bytes of the arena (live records, and dead ones not reclaimed
    /// yet): what [`copy_into`](Self::copy_into) copies.
    pub fn arena_len(&self) -> usize {
        self.arena.len()
    }

    /// A copy of the arena and the split blobs, the arena copied into
    /// `arena` (emptied first). A buffer whose pages were touched before
    /// the caller took its lock makes the copy a memcpy: freshly allocated
    /// memory is several times slower to write the first time (a full
    /// checkpoint of 10^8 records after a full-scan open held the state
    /// lock 2.8 s copying into fresh memory; docs/PERFORMANCE.md).
    pub fn copy_into(&self, mut arena: Vec<u8>) -> IndexCopy {
        arena.clear();
        arena.extend_from_slice(&self.arena);
        IndexCopy {
            arena,
            splits: self.splits.clone(),
            count: self.len(),
            hash_key: self.hasher,
            base: self
                .base
                .as_ref()
                .map(|b| (Arc::clone(b), self.shadowed.clone())),
        }
    }

    /// The live records in the arena's format (see [`IndexImage`]).
    #[cfg(test)]
    pub fn image(&self) -> IndexImage {
        self.copy().image()
    }

    /// The index an [`image`](Index::image) describes, hashed under its
    /// key. The bytes may come from a damaged or hostile checkpoint: every
    /// record is checked (bounds, kind, key length, each part by
    /// `part_ok`), split numbers must be used once each and keys must be
    /// distinct. The records become the arena without a copy. The table
    /// has room for `room` more keys (an open's tail: growing it past a
    /// power of two later rehashes every key).
    ///
    /// # Errors
    /// What is wrong with the first bad record.
    pub fn from_image(
        image: IndexImage,
        room: usize,
        mut part_ok: impl FnMut(&PartLoc) -> bool,
    ) -> std::result::Result<Index, String> {
        let IndexImage {
            records,
            splits,
            count,
            hash_key,
            ..
        } = image;
        if records.len() > ARENA_FULL {
            return Err(format!("{} bytes of records", records.len()));
        }
        let count = usize::try_from(count).map_err(|_| "record count".to_string())?;
        if count > records.len() / FIXED.next_multiple_of(ALIGN) {
            return Err(format!("{count} records in {} bytes", records.len()));
        }
        let mut index = Index {
            arena: records,
            hasher: HashKey(hash_key.0, hash_key.1),
            ..Index::default()
        };
        let mut used = vec![false; splits.len()];
        index.splits = splits.into_iter().map(|s| Some(Box::new(s))).collect();
        index.table = HashTable::with_capacity(count.saturating_add(room));
        let (arena, hasher) = (&index.arena, index.hasher);
        let mut load = |hashes: &mut dyn Iterator<Item = u64>| {
            Index::load_records(
                arena,
                hasher,
                &mut index.table,
                &index.splits,
                &mut used,
                &mut part_ok,
                hashes,
            )
        };
        if count < HASH_AHEAD_MIN {
            load(&mut std::iter::from_fn(record_hashes(arena, hasher)))?;
        } else {
            // Another thread hashes the keys ahead (half the work), in
            // blocks handed over and back.
            std::thread::scope(|s| {
                let (ahead, hashed) = std::sync::mpsc::sync_channel::<Vec<u64>>(4);
                let (give_back, returned) = std::sync::mpsc::channel::<Vec<u64>>();
                s.spawn(move || {
                    let mut next = record_hashes(arena, hasher);
                    loop {
                        let mut block = returned.try_recv().unwrap_or_default();
                        block.clear();
                        block.extend(std::iter::from_fn(&mut next).take(HASH_BLOCK));
                        let last = block.len() < HASH_BLOCK;
                        if ahead.send(block).is_err() || last {
                            return;
                        }
                    }
                });
                let (mut block, mut next) = (Vec::new(), 0);
                load(&mut std::iter::from_fn(|| {
                    loop {
                        if let Some(&hash) = block.get(next) {
                            next += 1;
                            return Some(hash);
                        }
                        if next > 0 && block.len() < HASH_BLOCK {
                            return None;
                        }
                        let _ = give_back.send(std::mem::take(&mut block));
                        block = hashed.recv().ok()?;
                        next = 0;
                        if block.is_empty() {
                            return None;
                        }
                    }
                }))
            })?;
        }
        if index.table.len() != count || used.iter().any(|u| !u) {
            return Err(format!(
                "{} records, {count} announced; {} splits unused",
                index.table.len(),
                used.iter().filter(|u| !**u).count()
            ));
        }
        Ok(index)
    }

    /// An index over `base` (a checkpoint's records read in place), with
    /// an empty overlay that has room for `room` keys (an open's tail).
    pub fn from_base(base: BaseIndex, room: usize) -> Index {
        let words = (base.id_end() as usize).div_ceil(64);
        Index {
            hasher: base.hasher,
            table: HashTable::with_capacity(room),
            shadowed: vec![0; words],
            base: Some(Arc::new(base)),
            ..Index::default()
        }
    }

    /// [`from_image`](Self::from_image)'s walk: checks every record of
    /// `arena` and files it in `table` under the next of `hashes` (the
    /// hash of its key, from [`record_hashes`]).
    #[allow(
        clippy::too_many_arguments,
        reason = "the parts of an index being built"
    )]
    fn load_records(
        arena: &[u8],
        hasher: HashKey,
        table: &mut HashTable<u32>,
        splits: &[Option<Box<SplitBlob>>],
        used: &mut [bool],
        part_ok: &mut impl FnMut(&PartLoc) -> bool,
        hashes: &mut dyn Iterator<Item = u64>,
    ) -> std::result::Result<(), String> {
        let mut at = 0;
        while at < arena.len() {
            let header = arena
                .get(at..at + FIXED)
                .ok_or_else(|| format!("a record cut short at byte {at}"))?;
            let split = |n: usize| splits.get(n).and_then(Option::as_deref);
            let len = check_record(header, at, split, used, part_ok)?;
            if at + len > arena.len() {
                return Err(format!("a record cut short at byte {at}"));
            }
            let key_len = key_len_at(arena, at);
            let key = &arena[at + FIXED..at + FIXED + key_len];
            let hash = hashes
                .next()
                .ok_or_else(|| format!("no hash for the record at byte {at}"))?;
            debug_assert_eq!(hash, hasher.hash(key));
            let id = (at / ALIGN) as u32;
            match table.entry(
                hash,
                |&other| key_at(arena, other) == key,
                |&other| hasher.hash(key_at(arena, other)),
            ) {
                hashbrown::hash_table::Entry::Occupied(_) => {
                    return Err(format!("a key twice (byte {at})"));
                }
                hashbrown::hash_table::Entry::Vacant(vacant) => {
                    vacant.insert(id);
                }
            }
            at += len;
        }
        Ok(())
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], BlobLoc)> {
        let arena = &self.arena[..];
        let mut at = 0;
        let overlay = std::iter::from_fn(move || {
            while at < arena.len() {
                let id = (at / ALIGN) as u32;
                at += record_len(key_len_at(arena, at));
                if !matches!(kind_at(arena, id), KIND_DEAD | KIND_GONE) {
                    return Some((key_at(arena, id), self.loc_of(id)));
                }
            }
            None
        });
        let base = self.base.iter().flat_map(move |base| {
            base.ids()
                .filter(move |&id| !self.is_shadowed(id))
                .map(move |id| (base.key(id), base.loc(id)))
        });
        overlay.chain(base)
    }

    /// Heap bytes the index holds (arena, table, splits, key order).
    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        let order = self.order.lock().unwrap_or_else(PoisonError::into_inner);
        self.arena.capacity()
            + self.table.allocation_size()
            + self.splits.capacity() * std::mem::size_of::<Option<Box<SplitBlob>>>()
            + self
                .splits
                .iter()
                .flatten()
                .map(|s| std::mem::size_of::<SplitBlob>() + std::mem::size_of_val(&*s.parts))
                .sum::<usize>()
            + self.free_splits.capacity() * 4
            + order.runs.iter().map(|r| r.capacity() * 4).sum::<usize>()
            + order.base.as_ref().map_or(0, |o| o.capacity() * 4)
            + self.shadowed.capacity() * 8
            + self.base.as_ref().map_or(0, |b| b.heap_bytes())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A seeded xorshift64 generator for the tests of the store's parts.
    pub(crate) fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    fn loc(n: u32) -> BlobLoc {
        BlobLoc::Whole(PartLoc {
            slot: n ^ 0x5a5a,
            offset: n,
            len: n.wrapping_mul(3),
            checksum: n.rotate_left(7),
            column_index: (n % 256) as u16,
        })
    }

    fn split_loc(n: u32) -> BlobLoc {
        BlobLoc::split(
            u64::from(n) << 20,
            (0..3)
                .map(|i| match loc(n + i) {
                    BlobLoc::Whole(p) => p,
                    BlobLoc::Split(_) => unreachable!(),
                })
                .collect(),
        )
    }

    /// The one-shot SipHash is the reference one: its 2-4 variant against
    /// std's (deprecated but stable) SipHash-2-4, every length to 64.
    #[test]
    #[allow(deprecated)]
    fn siphash_matches_the_reference() {
        use std::hash::Hasher;
        let bytes: Vec<u8> = (0..64u8).map(|b| b.wrapping_mul(37)).collect();
        for len in 0..=bytes.len() {
            let (k0, k1) = (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908 ^ len as u64);
            let mut std = std::hash::SipHasher::new_with_keys(k0, k1);
            std.write(&bytes[..len]);
            assert_eq!(
                siphash::<2, 4>(k0, k1, &bytes[..len]),
                std.finish(),
                "{len}"
            );
        }
        // The reference's test vector: key 00..0f, message 00..0e.
        let message: Vec<u8> = (0..15).collect();
        assert_eq!(
            siphash::<2, 4>(0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908, &message),
            0xa129_ca61_49be_45e5
        );
    }

    /// An index after churn (replacements, split blobs, removals, an
    /// arena compaction) and the one loaded from its image hold the same
    /// entries, list the same keys, and go on taking changes.
    #[test]
    fn an_image_loads_back_to_the_same_index() {
        // Below and above HASH_AHEAD_MIN (keys hashed by a second thread).
        for records in [20_000, 3 * HASH_AHEAD_MIN as u32] {
            image_round_trip(records);
        }
    }

    /// A large image damaged in the middle (a key length of 0, or cut in a
    /// record) is refused while the second thread hashes ahead.
    #[test]
    fn a_large_damaged_image_is_refused() {
        let mut ix = Index::default();
        for n in 0..2 * HASH_AHEAD_MIN as u32 {
            ix.insert(format!("room-{}/msg-{n}", n % 97).as_bytes(), loc(n));
        }
        let image = ix.image();
        let mut zero = image.clone();
        let middle = record_start_near(&zero.records, zero.records.len() / 2);
        zero.records[middle..middle + 2].copy_from_slice(&0u16.to_le_bytes());
        assert!(Index::from_image(zero, 0, |_| true).is_err());
        let mut cut = image.clone();
        cut.records.truncate(middle + 3);
        assert!(Index::from_image(cut, 0, |_| true).is_err());
        assert!(Index::from_image(image, 0, |_| true).is_ok());
    }

    /// The start of the first record at or after byte `near` of `records`.
    fn record_start_near(records: &[u8], near: usize) -> usize {
        let mut at = 0;
        while at < near {
            at += record_len(key_len_at(records, at));
        }
        at
    }

    /// The key order of a run is the keys' byte order, whatever their
    /// 16-byte prefixes: zero bytes, keys that are prefixes of others,
    /// equal prefixes of longer keys.
    #[test]
    fn a_sorted_run_is_in_key_order() {
        let mut ix = Index::default();
        let mut rng = xorshift(7);
        let mut keys: Vec<Vec<u8>> = vec![
            b"a".to_vec(),
            b"a\0".to_vec(),
            b"a\0\0".to_vec(),
            b"a\x01".to_vec(),
            vec![0],
            vec![0, 0],
            vec![0xff; 20],
            vec![0xff; 16],
            b"room-123/msg-456789".to_vec(),
            b"room-123/msg-456788".to_vec(),
            b"room-123/msg-4567".to_vec(),
        ];
        for _ in 0..3000 {
            let len = 1 + (rng() % 24) as usize;
            keys.push(
                (0..len)
                    .map(|_| [0u8, 1, b'a', b'b', 0xff][(rng() % 5) as usize])
                    .collect(),
            );
        }
        for (n, key) in keys.iter().enumerate() {
            ix.insert(key, loc(n as u32));
        }
        let run = sorted_run(&ix.arena, 0);
        let got: Vec<&[u8]> = run.iter().map(|&id| key_at(&ix.arena, id)).collect();
        let mut want: Vec<&[u8]> = ix.iter().map(|(k, _)| k).collect();
        want.sort();
        assert_eq!(got, want);
    }

    fn image_round_trip(records: u32) {
        let mut ix = Index::default();
        for n in 0..records {
            let key = format!("room-{}/msg-{n}", n % 97);
            let value = if n % 31 == 0 { split_loc(n) } else { loc(n) };
            ix.insert(key.as_bytes(), value);
            if n % 3 == 0 {
                ix.remove(format!("room-{}/msg-{}", (n / 2) % 97, n / 2).as_bytes());
            }
        }
        assert!(ix.compactions > 0 && ix.dead_bytes > 0);
        let image = ix.image();
        assert_eq!(image.count, ix.len() as u64);
        let mut loaded = Index::from_image(image, 0, |_| true).expect("loads");
        let entries = |ix: &Index| {
            let mut all: Vec<(Vec<u8>, BlobLoc)> =
                ix.iter().map(|(k, l)| (k.to_vec(), l)).collect();
            all.sort_by(|a, b| a.0.cmp(&b.0));
            all
        };
        assert_eq!(entries(&loaded), entries(&ix));
        for (key, value) in entries(&ix) {
            assert_eq!(loaded.get(&key), Some(value));
        }
        assert_eq!(
            loaded.keys_with_prefix(b"room-5", None, 1000),
            ix.keys_with_prefix(b"room-5", None, 1000)
        );
        assert_eq!(
            loaded.image(),
            ix.image(),
            "an image of the loaded index is the same"
        );
        loaded.insert(b"new", split_loc(7));
        assert_eq!(loaded.remove(b"room-1/msg-1"), ix.remove(b"room-1/msg-1"));
        assert_eq!(loaded.get(b"new"), Some(split_loc(7)));
        assert_eq!(loaded.len(), ix.len() + 1);
    }

    /// Images with damaged bytes load as some index or are refused; none
    /// panics. Keys twice, unknown kinds, parts a stripe does not have and
    /// wrong counts are refused.
    #[test]
    fn a_damaged_image_is_refused_and_never_panics() {
        let mut ix = Index::default();
        for n in 0..300u32 {
            let value = if n % 7 == 0 { split_loc(n) } else { loc(n) };
            ix.insert(format!("key-{n}").as_bytes(), value);
        }
        let good = ix.image();
        let mut next = xorshift(0x2545_f491_4f6c_dd1du64);
        for _ in 0..5_000 {
            let mut bad = IndexImage {
                records: good.records.clone(),
                splits: good.splits.clone(),
                count: good.count,
                hash_key: good.hash_key,
                directory: Directory::default(),
            };
            let r = next();
            let at = (r >> 16) as usize % bad.records.len();
            match r % 4 {
                0 => bad.records[at] ^= 1 << (r >> 8 & 7),
                1 => bad.records.truncate(at),
                2 => bad.count = r >> 32,
                _ => {
                    let n = (r >> 40) as usize % bad.splits.len();
                    bad.splits.remove(n);
                }
            }
            let _ = Index::from_image(bad, 0, |p| p.column_index < 250);
        }
        let mut whole = Index::default();
        for n in 0..3u32 {
            whole.insert(format!("key-{n}").as_bytes(), loc(n));
        }
        let mut twice = whole.image();
        let first = twice.records[..record_len(key_len_at(&twice.records, 0))].to_vec();
        twice.records.extend_from_slice(&first);
        twice.count += 1;
        assert!(
            Index::from_image(twice, 0, |_| true)
                .unwrap_err()
                .contains("twice")
        );
        // loc(5)'s part, refused by the stripe table.
        assert!(
            Index::from_image(ix.image(), 0, |p| p.slot != 5 ^ 0x5a5a)
                .unwrap_err()
                .contains("outside")
        );
        let mut kind = ix.image();
        kind.records[2] = 9;
        assert!(
            Index::from_image(kind, 0, |_| true)
                .unwrap_err()
                .contains("kind")
        );
    }

    /// Loading a checkpoint's image of 10^7 chat keys (run by hand:
    /// `cargo test --release -- --ignored image_load_time --nocapture`).
    #[test]
    #[ignore = "a timing probe, run by hand"]
    fn image_load_time() {
        let n = 10_000_000u32;
        let mut ix = Index::default();
        ix.reserve(n as usize);
        for i in 0..n {
            ix.insert(format!("room-{}/msg-{i}", i % 10_000).as_bytes(), loc(i));
        }
        let started = std::time::Instant::now();
        let copy = ix.copy();
        let copied = started.elapsed();
        let started = std::time::Instant::now();
        let image = copy.image();
        let imaged = started.elapsed();
        drop(ix);
        let started = std::time::Instant::now();
        let loaded = Index::from_image(image, 0, |_| true).expect("loads");
        eprintln!(
            "copy {:.3} s, image {:.3} s, load {:.3} s, {} keys",
            copied.as_secs_f64(),
            imaged.as_secs_f64(),
            started.elapsed().as_secs_f64(),
            loaded.len()
        );
    }

    #[test]
    fn prefix_scan_is_ordered_and_resumable() {
        let mut ix = Index::default();
        for k in ["a", "b1", "b2", "b3", "c"] {
            ix.insert(k.as_bytes(), loc(1));
        }
        let first = ix.keys_with_prefix(b"b", None, 2);
        assert_eq!(first, vec![b"b1"[..].into(), b"b2"[..].into()]);
        let rest = ix.keys_with_prefix(b"b", Some(b"b2"), 10);
        assert_eq!(rest, vec![Box::<[u8]>::from(&b"b3"[..])]);
        assert_eq!(ix.keys_with_prefix(b"", None, 10).len(), 5);
        assert_eq!(ix.insert(b"a", loc(2)), Some(loc(1)));
        assert_eq!(ix.remove(b"a"), Some(loc(2)));
        assert!(!ix.contains(b"a"));
        assert_eq!(ix.keys_with_prefix(b"", None, 10).len(), 4);
        // Re-inserted after removal: listed once, with its new value.
        ix.insert(b"a", loc(3));
        assert_eq!(ix.keys_with_prefix(b"", None, 10).len(), 5);
        assert_eq!(ix.get(b"a"), Some(loc(3)));
    }

    /// Random inserts, replacements (whole and split), removals and
    /// listings, against a `BTreeMap` model; enough removals to compact
    /// the arena several times.
    #[test]
    fn matches_an_ordered_map_through_churn_and_compaction() {
        let mut ix = Index::default();
        let mut model: BTreeMap<Vec<u8>, BlobLoc> = BTreeMap::new();
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15u64);
        let mut compactions = 0;
        for step in 0..200_000u32 {
            let r = next();
            // Keys of 0 to 40 bytes, from a space small enough to collide.
            let n = (r >> 8) % 20_000;
            let key: Vec<u8> = format!("k{n:05}/{}", "x".repeat((n % 34) as usize)).into_bytes()
                [..((n % 41) as usize).min(7 + (n % 34) as usize)]
                .to_vec();
            match r % 10 {
                0..=4 => {
                    let value = if r.is_multiple_of(97) {
                        split_loc(step)
                    } else {
                        loc(step)
                    };
                    assert_eq!(
                        ix.insert(&key, value.clone()),
                        model.insert(key.clone(), value)
                    );
                }
                5..=8 => {
                    let dead_before = ix.dead_bytes;
                    assert_eq!(ix.remove(&key), model.remove(&key));
                    if ix.dead_bytes < dead_before {
                        compactions += 1;
                    }
                }
                _ => {
                    let prefix = &key[..key.len().min(3)];
                    let after = r.is_multiple_of(3).then_some(key.as_slice());
                    let limit = (r >> 40) as usize % 50;
                    let want = listed(&model, prefix, after, limit);
                    assert_eq!(
                        ix.keys_with_prefix(prefix, after, limit),
                        want,
                        "step {step}"
                    );
                }
            }
            assert_eq!(ix.get(&key), model.get(&key).cloned());
            assert_eq!(ix.len_of(&key), model.get(&key).map(BlobLoc::len));
            assert_eq!(ix.len(), model.len());
        }
        assert!(compactions >= 2, "only {compactions} compactions");
        let mut all: Vec<(Vec<u8>, BlobLoc)> = ix.iter().map(|(k, l)| (k.to_vec(), l)).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(all, model.into_iter().collect::<Vec<_>>());
    }

    /// A backlog, copied whole now (its pieces one after another).
    fn sort_claim(ix: &Index) -> OrderBacklog {
        match ix.order_backlog() {
            Backlog::Sort(mut backlog) => {
                while !backlog.is_whole() {
                    assert!(ix.copy_backlog(&mut backlog));
                }
                backlog
            }
            Backlog::Small => panic!("no backlog"),
            Backlog::Busy => panic!("busy"),
        }
    }

    /// A backlog copied a piece at a time (as a listing copies it, each
    /// piece under its own hold of the store's lock), with puts, removals
    /// and re-puts between the pieces, sorts to a run that lists what the
    /// index holds; a compaction between two pieces makes the copy sort
    /// to an empty run, which changes nothing.
    #[test]
    fn a_backlog_copied_in_pieces_between_changes_joins_the_order() {
        let mut ix = Index::default();
        let mut model: BTreeMap<Vec<u8>, BlobLoc> = BTreeMap::new();
        let key = |n: u32| format!("room-{}/msg-{n}", n % 13).into_bytes();
        for n in 0..2000 {
            ix.insert(&key(n), loc(n));
            model.insert(key(n), loc(n));
        }
        let Backlog::Sort(mut backlog) = ix.order_backlog() else {
            panic!("a backlog")
        };
        let (mut n, mut pieces) = (2000, 1);
        while !backlog.is_whole() {
            ix.insert(&key(n), loc(n));
            model.insert(key(n), loc(n));
            if n % 4 == 0 {
                let gone = key(n / 3);
                ix.remove(&gone);
                model.remove(&gone);
                let back = key(n / 5);
                ix.insert(&back, loc(n + 1));
                model.insert(back, loc(n + 1));
            }
            n += 1;
            assert!(ix.copy_backlog(&mut backlog));
            pieces += 1;
        }
        assert!(pieces > 100, "{pieces} pieces");
        assert_eq!(ix.compactions, 0);
        ix.add_sorted(backlog.sort());
        assert!(ix.order.lock().unwrap().covered > 0, "the run joined");
        let want: Vec<Vec<u8>> = model.keys().cloned().collect();
        let listed = |ix: &Index| -> Vec<Vec<u8>> {
            ix.keys_with_prefix(b"", None, usize::MAX)
                .into_iter()
                .map(Vec::from)
                .collect()
        };
        assert_eq!(listed(&ix), want);
        for (k, v) in &model {
            assert_eq!(ix.get(k).as_ref(), Some(v));
        }

        // More records than a listing sorts in place, then a compaction
        // between two pieces of their copy.
        for n in 10_000..10_300 {
            ix.insert(&key(n), loc(n));
            model.insert(key(n), loc(n));
        }
        let Backlog::Sort(mut backlog) = ix.order_backlog() else {
            panic!("a backlog")
        };
        assert!(!backlog.is_whole());
        let doomed: Vec<Vec<u8>> = model.keys().take(model.len() / 2).cloned().collect();
        for k in doomed {
            ix.remove(&k);
            model.remove(&k);
        }
        assert!(ix.compactions > 0);
        // The arena as long again as when the copy began: only the
        // compaction count tells the copy its ids are gone.
        let mut n = 20_000;
        while ix.arena.len() < backlog.end {
            ix.insert(&key(n), loc(n));
            model.insert(key(n), loc(n));
            n += 1;
        }
        assert!(!ix.copy_backlog(&mut backlog));
        let covered = ix.order.lock().unwrap().covered;
        ix.add_sorted(backlog.sort());
        assert_eq!(ix.order.lock().unwrap().covered, covered);
        let want: Vec<Vec<u8>> = model.keys().cloned().collect();
        assert_eq!(listed(&ix), want);
    }

    /// The base's key order is built outside the lock too: an index on a
    /// base hands it out with the first backlog (even with few records of
    /// its own), and the order it returns serves the listings.
    #[test]
    fn the_base_order_is_sorted_outside_the_lock() {
        let mut next = xorshift(91);
        let mut model: BTreeMap<Vec<u8>, BlobLoc> = BTreeMap::new();
        let mut ix = Index::default();
        for n in 0..3000u32 {
            let key = format!("room-{}/msg-{n}", n % 13).into_bytes();
            ix.insert(&key, loc(n));
            model.insert(key, loc(n));
        }
        let mut ix = Index::from_base(base_of(&ix, &mut next), 0);
        for n in (0..3000u32).step_by(100) {
            let key = format!("room-{}/msg-{n}", n % 13).into_bytes();
            ix.remove(&key);
            model.remove(&key);
        }
        for n in 5000..5020u32 {
            let key = format!("room-{}/msg-{n}", n % 13).into_bytes();
            ix.insert(&key, loc(n));
            model.insert(key, loc(n));
        }
        let backlog = sort_claim(&ix);
        assert!(backlog.base.is_some(), "the base's order is asked for");
        assert!(backlog.records.is_empty(), "few records: sorted in place");
        assert!(matches!(ix.order_backlog(), Backlog::Busy));
        ix.add_sorted(backlog.sort());
        assert!(ix.order.lock().unwrap().base.is_some());
        assert!(matches!(ix.order_backlog(), Backlog::Small));
        let want: Vec<Box<[u8]>> = model.keys().map(|k| k.as_slice().into()).collect();
        assert_eq!(ix.keys_with_prefix(b"", None, usize::MAX), want);
        // A listing without a backlog (none asked for) builds it in place.
        let mut other = Index::from_base(base_of(&ix, &mut next), 0);
        other.insert(b"zz", loc(1));
        let mut want: Vec<Box<[u8]>> = model.keys().map(|k| k.as_slice().into()).collect();
        want.push((*b"zz").into());
        assert_eq!(other.keys_with_prefix(b"", None, usize::MAX), want);
    }

    /// One listing sorts a backlog at a time; a run refused because an
    /// in-place refresh covered the records first changes nothing; keys
    /// removed and put again (split or whole) meanwhile are listed once.
    #[test]
    fn one_backlog_sort_at_a_time_and_a_late_run_is_refused() {
        let mut ix = Index::default();
        let key = |n: u32| format!("k{:05}", n % 4000).into_bytes();
        for n in 0..4000 {
            ix.insert(&key(n), loc(n));
        }
        let backlog = sort_claim(&ix);
        assert!(matches!(ix.order_backlog(), Backlog::Busy));
        // Meanwhile: removals and re-puts (a split one among them), and a
        // listing that sorts in place (the backlog is now over the
        // threshold, but the test calls the in-place path directly).
        for n in (0..4000).step_by(7) {
            ix.remove(&key(n));
            let value = if n % 2 == 0 { split_loc(n) } else { loc(n + 1) };
            ix.insert(&key(n), value);
        }
        assert_eq!(ix.compactions, 0);
        let listed = ix.keys_with_prefix(b"k", None, usize::MAX);
        assert_eq!(listed.len(), 4000);
        assert!(
            listed.windows(2).all(|w| w[0] < w[1]),
            "ordered, no duplicates"
        );
        ix.add_sorted(backlog.sort());
        assert_eq!(ix.keys_with_prefix(b"k", None, usize::MAX), listed);
        assert_eq!(ix.get(&key(0)), Some(split_loc(0)));
        assert_eq!(ix.get(&key(7)), Some(loc(8)));
        // The claim was released with the refused run.
        ix.insert(b"z-new-key-over-the-threshold-0", loc(1));
        for n in 0..300 {
            ix.insert(
                format!("z{n:04}-padding-padding-padding").as_bytes(),
                loc(n),
            );
        }
        assert!(matches!(ix.order_backlog(), Backlog::Sort(_)));
    }

    /// A backlog sorted outside the lock joins the key order whatever
    /// happened meanwhile: more inserts and removals (joins), or an arena
    /// compaction (refused; the order is then sorted in place).
    #[test]
    fn a_backlog_sorted_outside_the_lock_joins_the_order() {
        let mut ix = Index::default();
        let mut model: BTreeMap<Vec<u8>, BlobLoc> = BTreeMap::new();
        let put = |ix: &mut Index, model: &mut BTreeMap<Vec<u8>, BlobLoc>, n: u32| {
            let key = format!("room-{}/msg-{n}", n % 13).into_bytes();
            ix.insert(&key, loc(n));
            model.insert(key, loc(n));
        };
        for n in 0..2000 {
            put(&mut ix, &mut model, n);
        }
        let backlog = sort_claim(&ix);
        for n in 2000..2100 {
            put(&mut ix, &mut model, n);
        }
        for n in (0..2100).step_by(7) {
            let key = format!("room-{}/msg-{n}", n % 13).into_bytes();
            ix.remove(&key);
            model.remove(&key);
        }
        let compactions = ix.compactions;
        ix.add_sorted(backlog.sort());
        let all = |ix: &Index| ix.keys_with_prefix(b"", None, usize::MAX);
        let want: Vec<Box<[u8]>> = model.keys().map(|k| k.as_slice().into()).collect();
        assert_eq!(all(&ix), want);
        assert_eq!(
            ix.compactions, compactions,
            "no compaction in the first half"
        );
        // Joined: the run covers the copy, so the refresh sorted only the
        // 100 records added after it.
        assert_eq!(ix.order.lock().unwrap().runs.len(), 2);

        // Now a compaction between the copy and its return, on a fresh
        // index (the first listing's backlog starts at byte 0, as the
        // order does again after a compaction), with the arena grown back
        // past the copy's end.
        let mut ix = Index::default();
        let mut model = BTreeMap::new();
        for n in 0..3000 {
            put(&mut ix, &mut model, n);
        }
        let backlog = sort_claim(&ix);
        for n in 0..2000 {
            let key = format!("room-{}/msg-{n}", n % 13).into_bytes();
            ix.remove(&key);
            model.remove(&key);
        }
        assert!(ix.compactions > 0, "the removals compacted the arena");
        for n in 10_000..14_000 {
            put(&mut ix, &mut model, n);
        }
        ix.add_sorted(backlog.sort());
        let want: Vec<Box<[u8]>> = model.keys().map(|k| k.as_slice().into()).collect();
        assert_eq!(all(&ix), want);
    }

    /// Each group's filter holds the bits of every key in the group, and
    /// turns most absent keys away before a record is read: a base finds
    /// every key it holds and none it does not, with or without filters.
    #[test]
    fn group_filters_keep_every_key_and_turn_most_absent_ones_away() {
        let mut ix = Index::default();
        for n in 0..20_000u32 {
            ix.insert(format!("room-{}/msg-{n}", n % 97).as_bytes(), loc(n));
        }
        let image = ix.image();
        let directory = image.directory();
        let mask = (buckets_for(image.count as usize) - 1) as u64;
        let group = |hash: u64| ((hash & mask) >> base::GROUP_BITS) as usize;
        let passes = |hash: u64| {
            let bits = base::filter_bits(hash);
            directory.filters[group(hash)] & bits == bits
        };
        let hasher = HashKey(image.hash_key.0, image.hash_key.1);
        for n in 0..20_000u32 {
            let hash = hasher.hash(format!("room-{}/msg-{n}", n % 97).as_bytes());
            assert!(passes(hash), "key {n} is in its group's filter");
        }
        let absent: Vec<Vec<u8>> = (0..20_000u32)
            .map(|n| format!("room-{}/msg-{}", n % 97, n + 1_000_000).into_bytes())
            .collect();
        let passed = absent.iter().filter(|k| passes(hasher.hash(k))).count();
        // About 9 keys per group here, two bits each of 64: about 1 in 15.
        assert!(passed < absent.len() / 8, "{passed} absent keys pass");
        let mut next = xorshift(0xf117e5);
        let with = Index::from_base(base_of(&ix, &mut next), 0);
        let mut image = ix.image();
        let mut without = image.directory();
        without.filters.clear();
        image.directory = Directory::default();
        let pieces = vec![bytes::Bytes::from(image.records)];
        let without = Index::from_base(
            BaseIndex::new(
                pieces,
                without,
                image.count,
                image.splits,
                image.hash_key,
                |_| true,
                None,
                &[],
            )
            .expect("a base without filters"),
            0,
        );
        for ix in [&with, &without] {
            for n in 0..20_000u32 {
                let key = format!("room-{}/msg-{n}", n % 97);
                assert_eq!(ix.get(key.as_bytes()), Some(loc(n)), "{key}");
            }
            assert!(absent.iter().all(|k| ix.get(k).is_none()));
        }
    }

    /// The base of `ix`'s image, its records cut into pieces of sizes
    /// drawn from `next` (so some records straddle two pieces).
    /// A base over `image`'s records cut into pieces of random sizes,
    /// hiding the records whose ids are `hidden`.
    fn base_from_image(
        image: &IndexImage,
        next: &mut impl FnMut() -> u64,
        hidden: &[u32],
    ) -> std::result::Result<BaseIndex, String> {
        let mut pieces = Vec::new();
        let mut rest = &image.records[..];
        while !rest.is_empty() {
            let n = ((next() % 300) as usize + 1).min(rest.len());
            pieces.push(bytes::Bytes::copy_from_slice(&rest[..n]));
            rest = &rest[n..];
        }
        let walks = 1 + (next() % 2) as usize;
        BaseIndex::new(
            pieces,
            image.directory.clone(),
            image.count,
            image.splits.clone(),
            image.hash_key,
            |_| true,
            Some(walks),
            hidden,
        )
    }

    /// What `keys_with_prefix(prefix, after, limit)` should answer over
    /// `model`.
    fn listed(
        model: &BTreeMap<Vec<u8>, BlobLoc>,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Vec<Box<[u8]>> {
        model
            .keys()
            .filter(|k| k.starts_with(prefix) && after.is_none_or(|a| k.as_slice() > a))
            .take(limit)
            .map(|k| k.as_slice().into())
            .collect()
    }

    /// `steps` random inserts, removes and listings on `ix`, each checked
    /// against `model`.
    fn churn(
        ix: &mut Index,
        model: &mut BTreeMap<Vec<u8>, BlobLoc>,
        next: &mut impl FnMut() -> u64,
        steps: u32,
        round: u32,
    ) {
        let key_of = |n: u64| format!("k{n:05}/{}", "y".repeat((n % 29) as usize)).into_bytes();
        for step in 0..steps {
            let r = next();
            let key = key_of((r >> 8) % 10_000);
            match r % 10 {
                0..=4 => {
                    let n = step + 100_000 * (round + 1);
                    let value = if r.is_multiple_of(61) {
                        split_loc(n)
                    } else {
                        loc(n)
                    };
                    assert_eq!(
                        ix.insert(&key, value.clone()),
                        model.insert(key.clone(), value),
                        "round {round} step {step}"
                    );
                }
                5..=8 => {
                    assert_eq!(
                        ix.remove(&key),
                        model.remove(&key),
                        "round {round} step {step}"
                    );
                }
                _ => {
                    let prefix = &key[..key.len().min(4)];
                    let after = r.is_multiple_of(3).then_some(key.as_slice());
                    let limit = (r >> 40) as usize % 40;
                    let want = listed(model, prefix, after, limit);
                    assert_eq!(ix.keys_with_prefix(prefix, after, limit), want);
                }
            }
            assert_eq!(ix.get(&key), model.get(&key).cloned());
            assert_eq!(ix.contains(&key), model.contains_key(&key));
            assert_eq!(ix.len_of(&key), model.get(&key).map(BlobLoc::len));
            assert_eq!(ix.len(), model.len(), "round {round} step {step}");
        }
        let mut all: Vec<(Vec<u8>, BlobLoc)> = ix.iter().map(|(k, l)| (k.to_vec(), l)).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(all, model.clone().into_iter().collect::<Vec<_>>());
    }

    /// A delta image over a base, stacked on it, is the index it was taken
    /// from (DURABILITY.md C8): lookups, counts, listings, walks; a delta
    /// of that stack over the same base again; the full image of the
    /// stack. Hidden ids that are not a base record's are refused.
    #[test]
    fn a_delta_over_its_base_matches_an_ordered_map() {
        let mut next = xorshift(0x0dd_ba5e_cafe_f00d);
        let mut model: BTreeMap<Vec<u8>, BlobLoc> = BTreeMap::new();
        let mut ix = Index::default();
        churn(&mut ix, &mut model, &mut next, 8_000, 0);
        let base_image = ix.image();
        let mut base = base_from_image(&base_image, &mut next, &[]).expect("base");
        base.set_origin(7, 77);
        let mut ix = Index::from_base(base, 16);
        assert!(ix.copy().delta_image().is_ok());
        for round in 1..4u32 {
            // A few changes over the bottom base, as the policy leaves.
            churn(&mut ix, &mut model, &mut next, 1_500, round);
            let (bottom, above) = ix.layers();
            assert_eq!(
                bottom + above - ix.gone_count - ix.shadow_count,
                model.len()
            );
            let Ok(delta) = ix.copy().delta_image() else {
                panic!("the index stands on a checkpoint");
            };
            assert_eq!(delta.base, (7, 77));
            assert!(delta.hidden.is_sorted_by(|a, b| a < b));
            let top = base_from_image(&delta.image, &mut next, &[]).expect("the delta's records");
            let mut under =
                base_from_image(&base_image, &mut next, &delta.hidden).expect("the base hiding");
            under.set_origin(7, 77);
            let stacked = top.stack(under, &delta.hidden).expect("stack");
            assert_eq!(stacked.count(), model.len(), "round {round}");
            ix = Index::from_base(stacked, 16);
            assert_eq!(ix.bottom_origin(), Some((7, 77)));
            churn(&mut ix, &mut model, &mut next, 300, round + 10);
        }
        // The full image of a stack loads back whole.
        let back = Index::from_image(ix.image(), 0, |_| true).expect("the image loads");
        assert_eq!(back.len(), model.len());
        for (key, value) in &model {
            assert_eq!(back.get(key).as_ref(), Some(value));
        }
        // Hidden ids out of order, or inside a record, are refused.
        let second = base_image.records.len() as u32 / 4;
        for hidden in [vec![5u32, 0], vec![1], vec![0, second]] {
            assert!(
                base_from_image(&base_image, &mut next, &hidden).is_err(),
                "{hidden:?}"
            );
        }
    }

    pub(crate) fn base_of(ix: &Index, next: &mut impl FnMut() -> u64) -> BaseIndex {
        let mut image = ix.image();
        let directory = std::mem::take(&mut image.directory);
        assert_eq!(
            directory,
            image.directory(),
            "the image's directory, by hashing"
        );
        image.directory = directory;
        // Checked in one walk or two, as a large base is (each test's
        // bases are smaller than the size from which `new` uses two).
        base_from_image(&image, next, &[]).expect("a base of a good image")
    }

    /// A checkpoint's records with the journal of the changes since its
    /// copy replayed over them (part before, part under the lock) are the
    /// index; after the rebase a listing's run or base order sorted from
    /// the index let go is refused, and one listing still sorts at a time.
    #[test]
    fn a_rebase_replays_the_journal_and_refuses_stale_runs() {
        let mut next = xorshift(0x005e_ed0f_5eed);
        let mut model: BTreeMap<Vec<u8>, BlobLoc> = BTreeMap::new();
        let key_of = |n: u64| format!("k{n:05}").into_bytes();
        let mut ix = Index::default();
        for n in 0..3_000u32 {
            let value = if n % 41 == 0 { split_loc(n) } else { loc(n) };
            ix.insert(&key_of(u64::from(n)), value.clone());
            model.insert(key_of(u64::from(n)), value);
        }
        let mut ix = Index::from_base(base_of(&ix, &mut next), 0);
        for n in 0..500u32 {
            ix.insert(&key_of(u64::from(n) * 7), loc(n + 10_000));
            model.insert(key_of(u64::from(n) * 7), loc(n + 10_000));
        }
        // Changes made before the journal starts are in the copy only.
        let mut churn = |ix: &mut Index, model: &mut BTreeMap<Vec<u8>, BlobLoc>, round: u32| {
            for step in 0..2_000u32 {
                let r = next();
                let key = key_of((r >> 8) % 4_000);
                if r.is_multiple_of(3) {
                    assert_eq!(ix.remove(&key), model.remove(&key));
                } else {
                    let n = 100_000 * round + step;
                    let value = if r.is_multiple_of(37) {
                        split_loc(n)
                    } else {
                        loc(n)
                    };
                    ix.insert(&key, value.clone());
                    model.insert(key, value);
                }
            }
        };
        ix.start_journal();
        let mut fresh = Index::from_base(base_of(&ix, &mut xorshift(5)), 0);
        let stale = sort_claim(&ix);
        churn(&mut ix, &mut model, 1);
        let first = ix.drain_journal().expect("recording");
        assert_eq!(first.len(), 2_000);
        assert!(fresh.replay(first));
        churn(&mut ix, &mut model, 2);
        let rest = ix.stop_journal().expect("recording");
        assert_eq!(rest.len(), 2_000);
        assert!(ix.stop_journal().is_none(), "stopped");
        assert!(fresh.replay(rest));
        assert!(fresh.same_hash_key(&ix));
        assert_eq!(fresh.len(), ix.len());
        let old = ix.rebase(fresh);
        assert_eq!(old.len(), model.len());
        let mut all: Vec<(Vec<u8>, BlobLoc)> = ix.iter().map(|(k, l)| (k.to_vec(), l)).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(all, model.clone().into_iter().collect::<Vec<_>>());
        // The listing that claimed its sort before the rebase still holds
        // the claim; its run (ids of the old arena) is refused.
        assert!(matches!(ix.order_backlog(), Backlog::Busy));
        ix.add_sorted(stale.sort());
        assert!(
            ix.order.lock().unwrap().base.is_none(),
            "the old base's order"
        );
        assert_eq!(ix.order.lock().unwrap().covered, 0, "the old arena's run");
        let want: Vec<Box<[u8]>> = model.keys().map(|k| k.as_slice().into()).collect();
        assert_eq!(ix.keys_with_prefix(b"", None, usize::MAX), want);
        // No journal runs now: changes go on as usual.
        churn(&mut ix, &mut model, 3);
        assert!(ix.journal.lock().unwrap().is_none());
        for (key, value) in &model {
            assert_eq!(ix.get(key).as_ref(), Some(value));
        }
        assert_eq!(ix.len(), model.len());
    }

    #[test]
    fn a_base_with_an_overlay_matches_an_ordered_map() {
        let mut next = xorshift(0x1234_5678_9abc_def1);
        let mut model: BTreeMap<Vec<u8>, BlobLoc> = BTreeMap::new();
        let key_of = |n: u64| format!("k{n:05}/{}", "y".repeat((n % 29) as usize)).into_bytes();
        let mut ix = Index::default();
        for step in 0..6_000u32 {
            let key = key_of(next() % 8_000);
            let value = if step % 53 == 0 {
                split_loc(step)
            } else {
                loc(step)
            };
            ix.insert(&key, value.clone());
            model.insert(key, value);
        }
        // Two generations of checkpoints: a base, churn, a base of that.
        for round in 0..2u32 {
            let base = base_of(&ix, &mut next);
            assert_eq!(base.count(), model.len());
            ix = Index::from_base(base, 16);
            assert_eq!(ix.len(), model.len());
            churn(&mut ix, &mut model, &mut next, 40_000, round);
        }
        // And the image of base plus overlay loads back whole.
        let back = Index::from_image(ix.image(), 0, |_| true).expect("the image loads");
        assert_eq!(back.len(), model.len());
        for (key, value) in &model {
            assert_eq!(back.get(key).as_ref(), Some(value));
        }
    }

    #[test]
    fn a_damaged_base_is_refused_and_never_panics() {
        let mut next = xorshift(77);
        let mut ix = Index::default();
        for n in 0..500u32 {
            let value = if n % 41 == 0 { split_loc(n) } else { loc(n) };
            ix.insert(format!("key-{n}").as_bytes(), value);
        }
        let image = ix.image();
        let directory = image.directory();
        for trial in 0..3_000u64 {
            let mut records = image.records.clone();
            let mut dir = directory.clone();
            let r = next();
            if trial % 3 == 0 {
                let at = (r % dir.starts.len() as u64) as usize;
                dir.starts[at] = dir.starts[at]
                    .wrapping_add((r >> 32) as u32 % 9)
                    .wrapping_sub(4);
            } else if trial % 5 == 1 {
                // A filter lacking a key's bit, or one too few.
                let at = (r % dir.filters.len() as u64) as usize;
                if r >> 63 == 0 {
                    dir.filters[at] &= !(1 << ((r >> 32) % 64));
                } else {
                    dir.filters.truncate(at);
                }
            } else {
                let at = (r % records.len() as u64) as usize;
                records[at] ^= ((r >> 32) as u8) | 1;
            }
            let pieces: Vec<bytes::Bytes> = records
                .chunks(((r >> 20) % 500 + 1) as usize)
                .map(bytes::Bytes::copy_from_slice)
                .collect();
            // One walk and two (cut at a directory entry) reach the same
            // verdict.
            let [one, bad] = [1, 2].map(|walks| {
                BaseIndex::new(
                    pieces.clone(),
                    dir.clone(),
                    image.count,
                    image.splits.clone(),
                    image.hash_key,
                    |p| p.slot != 0xffff_ffff,
                    Some(walks),
                    &[],
                )
            });
            assert_eq!(
                one.is_ok(),
                bad.is_ok(),
                "trial {trial}: one walk {:?}, two {:?}",
                one.err(),
                bad.as_ref().err()
            );
            // Flipped key bytes and filter bits are not caught (a
            // checkpoint's columns carry crcs); whatever loads must answer
            // without panicking.
            if let Ok(base) = bad {
                let ix = Index::from_base(base, 0);
                for n in 0..500u32 {
                    let _ = ix.get(format!("key-{n}").as_bytes());
                }
                let _ = ix.keys_with_prefix(b"key-1", None, 10);
                let _ = ix.iter().count();
            }
        }
    }

    /// The heap per entry the lean index exists for: 20 bytes of record
    /// plus padding, and at most 5 / (7/16) bytes of table per entry.
    #[test]
    fn heap_per_entry_stays_small() {
        let mut ix = Index::default();
        let count = 100_000u32;
        let mut key_bytes = 0;
        for n in 0..count {
            let key = format!("room-{}/msg-{}", n % 977, n);
            key_bytes += key.len();
            ix.insert(key.as_bytes(), loc(n));
        }
        ix.shrink_to_fit();
        let per = (ix.heap_bytes() - key_bytes) as f64 / f64::from(count);
        assert!(
            per <= 20.0 + 3.0 + 11.5,
            "{per:.1} B per entry beyond the keys"
        );
        ix.keys_with_prefix(b"", None, 1);
        let listed = (ix.heap_bytes() - key_bytes) as f64 / f64::from(count);
        assert!(listed <= per + 4.5, "{listed:.1} B per entry once listed");
    }
}
