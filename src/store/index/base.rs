//! A checkpoint's index records read in place (docs/FORMAT.md,
//! "Checkpoint", versions 2 and 3): the records stay in the column pieces the
//! checkpoint's body was read into (mapped segment bytes on a local node,
//! fetched or rebuilt bytes otherwise), and a directory of bucket groups,
//! stored with them, finds a key's records without hashing any other key.
//!
//! The records are those of an [`IndexImage`](super::IndexImage), in the
//! order of the table buckets their keys hash to (`hash & mask`, the table
//! of `count` keys). `directory[g]` is the id (byte offset / 4) of the
//! first record of bucket group `g` (buckets `g << GROUP_BITS ..`), and the
//! last entry the end of the records. A lookup hashes its key once and
//! compares it with the records of its group only (about ten), unless the
//! group's filter (version 3) says the key is not among them.
//!
//! Open checks every record once (bounds, kind, key length, its parts
//! against the stripe table, split numbers used once) and the directory
//! (ascending, each entry a record's start): no byte of a hostile
//! checkpoint can make a lookup read out of bounds or panic. A record that
//! straddles two pieces is copied once, at open, into a small map. Which
//! group a record is in, and the filters, are not checked (that would hash
//! every key): like the keys themselves, the body's checksum covers them
//! (C3), and a wrong one can only make a lookup miss, never read out of
//! bounds.

use std::collections::HashMap;

use bytes::Bytes;

use super::{ALIGN, BlobLoc, FIXED, HashKey, KIND_SPLIT, PartLoc, SplitBlob, record_len};

/// Buckets per directory group: 2^4, about ten records of a full table.
pub(crate) const GROUP_BITS: u32 = 4;

/// The bits a key whose hash is `hash` sets in its group's filter:
/// two of 64, chosen by the hash's top 12 bits (its group by its low
/// bits). See [`Directory::filters`].
pub(crate) fn filter_bits(hash: u64) -> u64 {
    filter_bits_of_tag((hash >> 52) as u16)
}

/// [`filter_bits`] of a hash's top 12 bits (`hash >> 52`).
pub(crate) fn filter_bits_of_tag(tag: u16) -> u64 {
    (1u64 << ((tag >> 6) & 63)) | (1u64 << (tag & 63))
}

/// The key in a record's bytes (empty if they are cut short).
pub(super) fn key_of(r: &[u8]) -> &[u8] {
    let Some(header) = r.get(..2) else {
        return &[];
    };
    let len = usize::from(u16::from_le_bytes([header[0], header[1]]));
    r.get(FIXED..FIXED + len).unwrap_or(&[])
}

/// A base's directory of bucket groups.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Directory {
    /// For each group of `1 << GROUP_BITS` buckets of the table of the
    /// base's `count` keys, the id of its first record, then the end.
    pub starts: Vec<u32>,
    /// For each group, the OR of its keys' [`filter_bits`] (a filter of
    /// 7 to 14 keys, by where the count falls between powers of two: a key
    /// not in the group misses it 87-96 times in 100, and its lookup then
    /// reads no record). Empty: none (a version 2 checkpoint), every
    /// lookup reads its group's records.
    pub filters: Vec<u64>,
}

/// The directory of an image's records: for each group of `1 <<
/// GROUP_BITS` buckets of the table of `count` keys, the id of its first
/// record, then the end, and each group's filter. `hashes` gives each
/// record's key hash, in order.
pub(crate) fn directory_of(
    records: &[u8],
    hashes: impl IntoIterator<Item = u64>,
    count: usize,
) -> Directory {
    let buckets = super::buckets_for(count);
    let mask = buckets as u64 - 1;
    let groups = (buckets >> GROUP_BITS).max(1);
    let mut starts = Vec::with_capacity(groups + 1);
    let mut filters = vec![0u64; groups];
    let mut at = 0usize;
    let mut hashes = hashes.into_iter();
    while at < records.len() {
        let Some(hash) = hashes.next() else { break };
        let group = ((hash & mask) >> GROUP_BITS) as usize;
        while starts.len() <= group {
            starts.push((at / ALIGN) as u32);
        }
        if let Some(filter) = filters.get_mut(group) {
            *filter |= filter_bits(hash);
        }
        at += record_len(super::key_len_at(records, at));
    }
    while starts.len() <= groups {
        starts.push((at / ALIGN) as u32);
    }
    Directory { starts, filters }
}

/// Records of at least this many bytes are checked by two threads.
const PARALLEL_CHECK_MIN: usize = 32 << 20;

/// What one walk of [`BaseIndex::check`] found.
#[derive(Default)]
struct Walked {
    records: usize,
    /// The directory entry after the last one the walk met.
    next_entry: usize,
    splits_used: Vec<usize>,
    straddlers: Vec<(u32, Box<[u8]>)>,
}

/// A checkpoint's records, read in place.
pub(crate) struct BaseIndex {
    /// The records' bytes, cut where the body's columns were.
    pieces: Vec<Bytes>,
    /// Where each piece starts in the records, then their end.
    starts: Vec<usize>,
    /// Records that cross from one piece into the next, by id.
    straddlers: HashMap<u32, Box<[u8]>>,
    directory: Vec<u32>,
    /// Each group's filter ([`Directory::filters`]); empty: none.
    filters: Vec<u64>,
    mask: u64,
    count: usize,
    splits: Vec<SplitBlob>,
    pub(super) hasher: HashKey,
    /// The checkpoint the records were read from: its generation and its
    /// body's crc (what a delta over it names). `None` in unit tests.
    origin: Option<(u64, u32)>,
    /// A delta checkpoint's base under its records (docs/FORMAT.md,
    /// "Checkpoint", version 4): ids from `Below::offset` on are the
    /// base's, shifted.
    below: Option<Box<Below>>,
    /// Whether a page of the pieces (this layer's and the base's under
    /// it) read as zeros since they were checked ([`intact`](Self::intact));
    /// `None` until [`watch`](Self::watch) (unit tests: never).
    watch: Option<crate::node::MappedWatch>,
    /// The columns of the body the pieces were read from, with their
    /// crc32s ([`verify`](Self::verify)); empty when not known.
    columns: Vec<(Bytes, u32)>,
}

/// The base under a delta's records ([`BaseIndex::stack`]).
struct Below {
    base: BaseIndex,
    /// One bit per base record id: set when the delta hides it (its key
    /// was written or removed after the base).
    hidden: Vec<u64>,
    hidden_count: usize,
    /// The delta's `id_end`: a base record's id above the delta's.
    offset: u32,
}

impl Below {
    fn is_hidden(&self, id: u32) -> bool {
        self.hidden
            .get(id as usize / 64)
            .is_some_and(|w| w & (1 << (id % 64)) != 0)
    }
}

impl std::fmt::Debug for BaseIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaseIndex")
            .field("count", &self.count)
            .field("bytes", &self.len_bytes())
            .field("pieces", &self.pieces.len())
            .finish_non_exhaustive()
    }
}

impl BaseIndex {
    /// The base the records in `pieces` (in order) and `directory`
    /// describe, after checking every record and the directory. `walks`:
    /// the check cut into that many walks (1 or 2) at a directory entry,
    /// run together (the same checks, the same verdict); `None`: two from
    /// [`PARALLEL_CHECK_MIN`] bytes of records, else one. `hidden`: a
    /// delta's base's records the delta hides (ascending ids, each a
    /// record's start, else refused; empty for any other base), checked as
    /// every record is but for their parts, which may name stripes retired
    /// since the base was written (no lookup reads a hidden record).
    ///
    /// # Errors
    /// What is wrong with the first bad record, directory entry or hidden
    /// id.
    #[allow(
        clippy::too_many_arguments,
        reason = "the parts of a base being checked"
    )]
    pub(crate) fn new(
        pieces: Vec<Bytes>,
        directory: Directory,
        count: u64,
        splits: Vec<SplitBlob>,
        hash_key: (u64, u64),
        part_ok: impl Fn(&PartLoc) -> bool + Sync,
        walks: Option<usize>,
        hidden: &[u32],
    ) -> std::result::Result<BaseIndex, String> {
        let mut starts = Vec::with_capacity(pieces.len() + 1);
        let mut total = 0usize;
        for piece in &pieces {
            starts.push(total);
            total += piece.len();
        }
        starts.push(total);
        if total > super::ARENA_FULL || !total.is_multiple_of(ALIGN) {
            return Err(format!("{total} bytes of records"));
        }
        let count = usize::try_from(count).map_err(|_| "record count".to_string())?;
        let buckets = super::buckets_for(count);
        let groups = (buckets >> GROUP_BITS).max(1);
        // The first group starts at the first record: no record before it
        // that no lookup would reach.
        let Directory {
            starts: directory,
            filters,
        } = directory;
        if directory.len() != groups + 1 || directory.first() != Some(&0) {
            return Err(format!(
                "a directory of {} entries for {groups} groups",
                directory.len()
            ));
        }
        if !filters.is_empty() && filters.len() != groups {
            return Err(format!("{} filters for {groups} groups", filters.len()));
        }
        let mut base = BaseIndex {
            pieces,
            starts,
            straddlers: HashMap::new(),
            directory,
            filters,
            mask: buckets as u64 - 1,
            count,
            splits,
            hasher: HashKey(hash_key.0, hash_key.1),
            origin: None,
            below: None,
            watch: None,
            columns: Vec::new(),
        };
        let walks = walks.unwrap_or(if total >= PARALLEL_CHECK_MIN { 2 } else { 1 });
        base.check(&part_ok, walks, hidden)?;
        Ok(base)
    }

    /// Open's check of every record (see the module's documentation): one
    /// walk over all records, or two, cut at the record a directory entry
    /// in the middle names, whose findings are then put together.
    fn check(
        &mut self,
        part_ok: &(impl Fn(&PartLoc) -> bool + Sync),
        walks: usize,
        hidden: &[u32],
    ) -> Result<(), String> {
        let total = self.len_bytes();
        let end_entry = self.directory.len();
        // The second walk starts at the first entry of the value the
        // middle entry holds (entries of empty groups repeat a value).
        let middle = end_entry / 2;
        let cut = self.directory[middle] as usize * ALIGN;
        let second_entry =
            self.directory[..middle].partition_point(|&e| e < self.directory[middle]);
        let this = &*self;
        if !hidden.is_sorted_by(|a, b| a < b) {
            return Err("hidden records out of order".into());
        }
        let split = hidden.partition_point(|&id| (id as usize) * ALIGN < cut);
        let found: Vec<Result<Walked, String>> = if walks >= 2 && cut > 0 && cut < total {
            let (first, second) = std::thread::scope(|s| {
                let second =
                    s.spawn(|| this.walk(cut, total, second_entry, part_ok, &hidden[split..]));
                let first = this.walk(0, cut, 0, part_ok, &hidden[..split]);
                (
                    first,
                    second
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                )
            });
            // The first walk must end at the entry the second began with:
            // every entry was checked by one walk or the other, in order.
            let first = first.and_then(|w| {
                if w.next_entry == second_entry {
                    Ok(w)
                } else {
                    Err(format!("directory entry {} out of order", w.next_entry))
                }
            });
            vec![first, second]
        } else {
            vec![this.walk(0, total, 0, part_ok, hidden)]
        };
        let mut used = vec![false; self.splits.len()];
        let (mut records, mut next_entry) = (0usize, 0usize);
        let mut straddlers = Vec::new();
        for walked in found {
            let walked = walked?;
            records += walked.records;
            next_entry = walked.next_entry;
            for number in walked.splits_used {
                match used.get_mut(number) {
                    Some(u) if !*u => *u = true,
                    _ => return Err(format!("split number {number} used twice")),
                }
            }
            straddlers.extend(walked.straddlers);
        }
        let end = (total / ALIGN) as u32;
        while self.directory.get(next_entry) == Some(&end) {
            next_entry += 1;
        }
        if next_entry != end_entry {
            return Err(format!("directory entry {next_entry} out of order"));
        }
        if records != self.count || used.iter().any(|u| !u) {
            return Err(format!(
                "{records} records, {} announced; {} splits unused",
                self.count,
                used.iter().filter(|u| !**u).count()
            ));
        }
        self.straddlers.extend(straddlers);
        Ok(())
    }

    /// Walks the records from byte `from` (a record's start) to byte `to`,
    /// checking each and the directory entries from `first_entry` that
    /// name them; it must end at `to` exactly.
    fn walk(
        &self,
        from: usize,
        to: usize,
        first_entry: usize,
        part_ok: &(impl Fn(&PartLoc) -> bool + Sync),
        hidden: &[u32],
    ) -> Result<Walked, String> {
        let total = self.len_bytes();
        let mut used = vec![false; self.splits.len()];
        let mut walked = Walked {
            next_entry: first_entry,
            ..Walked::default()
        };
        // Whether the record being checked is hidden (its parts are not
        // checked), and the next hidden id to meet.
        let hiding = std::cell::Cell::new(false);
        let mut hidden = hidden.iter().peekable();
        let mut part_ok = |p: &PartLoc| hiding.get() || part_ok(p);
        let mut at = from;
        // The piece `at` is in, followed along (no search per record).
        let mut piece = self.piece_of(at);
        while at < to {
            while self.starts[piece + 1] <= at {
                piece += 1;
            }
            let id = (at / ALIGN) as u32;
            // Directory entries at this record (several groups may start
            // here, the empty ones before it).
            while self.directory.get(walked.next_entry) == Some(&id) {
                walked.next_entry += 1;
            }
            if let Some(&entry) = self.directory.get(walked.next_entry)
                && (entry as usize) * ALIGN < at
            {
                return Err(format!(
                    "directory entry {} inside a record",
                    walked.next_entry
                ));
            }
            let mut header = [0u8; FIXED];
            let within = at - self.starts[piece];
            match self.pieces[piece].get(within..within + FIXED) {
                Some(bytes) => header.copy_from_slice(bytes),
                None => {
                    if !self.copy_out(at, &mut header) {
                        return Err(format!("a record cut short at byte {at}"));
                    }
                }
            }
            hiding.set(hidden.next_if_eq(&&id).is_some());
            if let Some(&&h) = hidden.peek()
                && h < id
            {
                return Err(format!("hidden record id {h} is not a record's"));
            }
            let splits = &self.splits;
            let len = super::check_record(&header, at, |n| splits.get(n), &mut used, &mut part_ok)?;
            if at + len > total {
                return Err(format!("a record cut short at byte {at}"));
            }
            if at + len > to {
                return Err(format!("a record across directory entry at byte {to}"));
            }
            if at + len > self.starts[piece + 1] {
                let mut bytes = vec![0u8; len];
                self.copy_out(at, &mut bytes);
                walked.straddlers.push((id, bytes.into_boxed_slice()));
            }
            walked.records += 1;
            at += len;
        }
        if let Some(id) = hidden.next() {
            return Err(format!("hidden record id {id} is not a record's"));
        }
        walked.splits_used = (0..used.len()).filter(|&n| used[n]).collect();
        Ok(walked)
    }

    fn len_bytes(&self) -> usize {
        self.starts.last().copied().unwrap_or(0)
    }

    /// The piece holding byte `at` of the records.
    fn piece_of(&self, at: usize) -> usize {
        self.starts.partition_point(|&s| s <= at).saturating_sub(1)
    }

    /// Copies the records' bytes from `at` into `out`, across pieces;
    /// false if they end first.
    fn copy_out(&self, mut at: usize, out: &mut [u8]) -> bool {
        let mut done = 0;
        while done < out.len() {
            let piece = self.piece_of(at);
            let Some(bytes) = self.pieces.get(piece) else {
                return false;
            };
            let within = at - self.starts[piece];
            let Some(rest) = bytes.get(within..) else {
                return false;
            };
            if rest.is_empty() {
                return false;
            }
            let n = rest.len().min(out.len() - done);
            out[done..done + n].copy_from_slice(&rest[..n]);
            done += n;
            at += n;
        }
        true
    }

    /// Record `id`'s bytes (header, location, key), or `None` past the
    /// end. Every record was checked at open.
    fn record(&self, id: u32) -> Option<&[u8]> {
        match &self.below {
            Some(b) if id >= b.offset => b.base.record(id - b.offset),
            _ => self.own_record(id),
        }
    }

    /// [`record`](Self::record) of this layer's own records.
    fn own_record(&self, id: u32) -> Option<&[u8]> {
        let at = id as usize * ALIGN;
        let piece = self.piece_of(at);
        let bytes = self.pieces.get(piece)?;
        let within = at - self.starts.get(piece)?;
        let whole = bytes.get(within..within + 2).and_then(|header| {
            let len = record_len(usize::from(u16::from_le_bytes([header[0], header[1]])));
            bytes.get(within..within + len)
        });
        match whole {
            Some(record) => Some(record),
            None => self.straddlers.get(&id).map(|b| &b[..]),
        }
    }

    /// Every record in order, its id and bytes, read along the pieces (no
    /// search per record, as [`record`](Self::record) makes): a
    /// checkpoint's image copies them all. Stops early only at a record
    /// the check at open would have refused.
    pub(super) fn records(&self) -> impl Iterator<Item = (u32, &[u8])> + '_ {
        let below = self.below.iter().flat_map(|b| {
            b.base
                .own_records()
                .filter(|&(id, _)| !b.is_hidden(id))
                .map(|(id, r)| (id + b.offset, r))
        });
        self.own_records().chain(below)
    }

    /// [`records`](Self::records) of this layer's own records.
    fn own_records(&self) -> impl Iterator<Item = (u32, &[u8])> + '_ {
        let total = self.len_bytes();
        let (mut at, mut piece) = (0usize, 0usize);
        std::iter::from_fn(move || {
            if at >= total {
                return None;
            }
            while self.starts.get(piece + 1).is_some_and(|&s| s <= at) {
                piece += 1;
            }
            let id = (at / ALIGN) as u32;
            let bytes = self.pieces.get(piece)?;
            let within = at - self.starts.get(piece)?;
            let whole = bytes.get(within..within + 2).and_then(|header| {
                let len = record_len(usize::from(u16::from_le_bytes([header[0], header[1]])));
                bytes.get(within..within + len)
            });
            let record = match whole {
                Some(record) => record,
                None => self.straddlers.get(&id).map(|b| &b[..])?,
            };
            at += record.len().max(ALIGN);
            Some((id, record))
        })
    }

    /// The key of record `id`.
    pub(super) fn key(&self, id: u32) -> &[u8] {
        self.record(id).map_or(&[], key_of)
    }

    /// Where record `id`'s blob is.
    pub(super) fn loc(&self, id: u32) -> BlobLoc {
        match self.record(id) {
            Some(r) => self.loc_at(id, r),
            None => BlobLoc::split(0, Box::new([])),
        }
    }

    /// Where the blob of record `id`, whose bytes are `r` (as
    /// [`records`](Self::records) gives them), is.
    pub(super) fn loc_at(&self, id: u32, r: &[u8]) -> BlobLoc {
        match &self.below {
            Some(b) if id >= b.offset => b.base.loc_of(r),
            _ => self.loc_of(r),
        }
    }

    /// Where the blob of `r` (one of this layer's own records) is.
    fn loc_of(&self, r: &[u8]) -> BlobLoc {
        if r.len() < FIXED {
            return BlobLoc::split(0, Box::new([]));
        }
        let field = |i: usize| super::u32_at(r, 4 + 4 * i);
        if r[2] == KIND_SPLIT {
            return match self.splits.get(field(0) as usize) {
                Some(s) => BlobLoc::Split(Box::new(s.clone())),
                None => BlobLoc::split(0, Box::new([])),
            };
        }
        BlobLoc::Whole(PartLoc {
            slot: field(0),
            offset: field(1),
            len: field(2),
            checksum: field(3),
            column_index: u16::from(r[3]),
        })
    }

    /// The id of `key`'s record (whose hash is `hash`), if it has one:
    /// a delta's record, else its base's unless the delta hides it.
    pub(super) fn find(&self, hash: u64, key: &[u8]) -> Option<u32> {
        if let Some(id) = self.own_find(hash, key) {
            return Some(id);
        }
        let b = self.below.as_ref()?;
        let id = b.base.own_find(hash, key)?;
        (!b.is_hidden(id)).then_some(id + b.offset)
    }

    /// [`find`](Self::find) among this layer's own records.
    fn own_find(&self, hash: u64, key: &[u8]) -> Option<u32> {
        let group = ((hash & self.mask) >> GROUP_BITS) as usize;
        // A key its group's filter lacks is not in the group: no record
        // read (most lookups of new keys, a tail's at open).
        let bits = filter_bits(hash);
        if self.filters.get(group).is_some_and(|&f| f & bits != bits) {
            return None;
        }
        let (first, end) = (*self.directory.get(group)?, *self.directory.get(group + 1)?);
        // Most groups lie inside one piece: walk its bytes directly.
        let (from, to) = (first as usize * ALIGN, end as usize * ALIGN);
        let piece = self.piece_of(from);
        if let (Some(bytes), Some(&start)) = (self.pieces.get(piece), self.starts.get(piece))
            && let Some(group) = bytes.get(from - start..to.saturating_sub(start))
        {
            let mut at = 0;
            while let Some(header) = group.get(at..at + FIXED) {
                let len = usize::from(u16::from_le_bytes([header[0], header[1]]));
                if len == key.len() && group.get(at + FIXED..at + FIXED + len) == Some(key) {
                    return Some(first + (at / ALIGN) as u32);
                }
                at += record_len(len);
            }
            return None;
        }
        let mut id = first;
        while id < end {
            let record = self.record(id)?;
            let len = usize::from(u16::from_le_bytes([record[0], record[1]]));
            if len == key.len() && record.get(FIXED..FIXED + len) == Some(key) {
                return Some(id);
            }
            id += (record_len(len) / ALIGN) as u32;
        }
        None
    }

    /// Records in the base (a delta's, and its base's it does not hide).
    pub(super) fn count(&self) -> usize {
        self.count
            + self
                .below
                .as_ref()
                .map_or(0, |b| b.base.count - b.hidden_count)
    }

    /// One past the largest record id.
    pub(super) fn id_end(&self) -> u32 {
        let own = (self.len_bytes() / ALIGN) as u32;
        self.below
            .as_ref()
            .map_or(own, |b| b.offset + b.base.id_end())
    }

    /// Records of the bottom base a lookup can find (a delta's base's
    /// it does not hide, or all of a base that is no delta's).
    pub(super) fn bottom_live(&self) -> usize {
        match &self.below {
            Some(b) => b.base.count - b.hidden_count,
            None => self.count,
        }
    }

    /// The ids below which records are a delta's own (its base's are
    /// above): 0 for a base that is no delta's.
    pub(super) fn delta_end(&self) -> u32 {
        self.below.as_ref().map_or(0, |b| b.offset)
    }

    /// The checkpoint under every other (a delta's base, or this one):
    /// its generation and body crc, where it was read from one.
    pub(crate) fn bottom_origin(&self) -> Option<(u64, u32)> {
        match &self.below {
            Some(b) => b.base.origin,
            None => self.origin,
        }
    }

    /// Records where it was read from checkpoint `generation`, whose
    /// body's crc is `crc` ([`bottom_origin`](Self::bottom_origin)).
    pub(crate) fn set_origin(&mut self, generation: u64, crc: u32) {
        self.origin = Some((generation, crc));
    }

    /// The bottom base's records hidden, given `shadowed` (the overlay's
    /// bits over [`id_end`](Self::id_end)'s ids): the delta's and the
    /// overlay's, as ascending ids of the bottom base, and how many
    /// records the bottom base holds. What a new delta over the bottom
    /// base says it hides.
    /// `forget_older` leaves a delta's own hidden records out (only for
    /// the mutation `DeltaForgetsOlderHidden`).
    pub(super) fn bottom_hidden(&self, shadowed: &[u64], forget_older: bool) -> (Vec<u32>, usize) {
        let bits = |words: &[u64], from: u32| -> Vec<u32> {
            let mut out = Vec::new();
            for (i, &w) in words.iter().enumerate() {
                let mut w = w;
                while w != 0 {
                    let id = (i * 64) as u32 + w.trailing_zeros();
                    if id >= from {
                        out.push(id - from);
                    }
                    w &= w - 1;
                }
            }
            out
        };
        match &self.below {
            None => (bits(shadowed, 0), self.count),
            Some(b) => {
                // Disjoint: the overlay hides only records a lookup
                // found, and a lookup never finds a hidden one.
                let mut ids = if forget_older {
                    Vec::new()
                } else {
                    bits(&b.hidden, 0)
                };
                ids.extend(bits(shadowed, b.offset));
                ids.sort_unstable();
                ids.dedup();
                (ids, b.base.count)
            }
        }
    }

    /// This delta's records over `base` (the checkpoint it names), which
    /// hides the records whose ids are `hidden` (checked by
    /// [`new`](Self::new)).
    ///
    /// # Errors
    /// The two hash keys differ, or their ids do not fit together.
    pub(crate) fn stack(mut self, base: BaseIndex, hidden: &[u32]) -> Result<BaseIndex, String> {
        if (self.hasher.0, self.hasher.1) != (base.hasher.0, base.hasher.1) {
            return Err("a delta and its base of other hash keys".into());
        }
        if self.below.is_some() || base.below.is_some() {
            return Err("a delta over a delta".into());
        }
        let offset = self.id_end();
        let end = u64::from(offset) + u64::from(base.id_end());
        if end * ALIGN as u64 > super::ARENA_FULL as u64 {
            return Err(format!("{end} record ids in a delta and its base"));
        }
        let mut bitmap = vec![0u64; (base.id_end() as usize).div_ceil(64)];
        for &id in hidden {
            if let Some(w) = bitmap.get_mut(id as usize / 64) {
                *w |= 1 << (id % 64);
            }
        }
        self.below = Some(Box::new(Below {
            base,
            hidden: bitmap,
            hidden_count: hidden.len(),
            offset,
        }));
        Ok(self)
    }

    /// Watches the pieces (this layer's and, under a delta, its base's,
    /// so call it on the stack) from here on: they were read and checked
    /// after `mark` (`node::mark_replaced`, taken before the reads). False
    /// when a page replaced since may have been one of them: what was
    /// checked may not be what is there now.
    pub(crate) fn watch(&mut self, mark: &crate::node::ReplacedMark) -> bool {
        let mut ranges = Vec::new();
        self.ranges(&mut ranges);
        self.watch = crate::node::MappedWatch::new(mark, ranges);
        self.watch.is_some()
    }

    /// False once a page of the pieces (mapped segment bytes) read as
    /// zeros because the file under it was cut short or its medium failed
    /// (the SIGBUS handler's replacement), and ever after: a lookup may
    /// then miss a key the checkpoint holds or read a wrong location, so
    /// no answer that read the base can be trusted (docs/DURABILITY.md,
    /// C9). Asked after the reads it vouches for; a fence and a few atomic
    /// loads while no page was replaced anywhere since the last ask.
    pub(crate) fn intact(&self) -> bool {
        self.watch
            .as_ref()
            .is_none_or(crate::node::MappedWatch::intact)
    }

    /// Keeps the columns of the body the pieces were read from, with
    /// their crc32s, for [`verify`](Self::verify).
    pub(crate) fn set_columns(&mut self, columns: Vec<(Bytes, u32)>) {
        self.columns = columns;
    }

    /// Whether every column the pieces were read from (this layer's and
    /// the base's under it) still has its crc32: read whole, so a page
    /// that reads as zeros without a fault (a file cut inside a page, a
    /// hole punched), or bytes rewritten in place, are seen, which
    /// [`intact`](Self::intact) cannot (a page lost to a fault reads as
    /// zeros here too). What a compaction or a checkpoint asks, after
    /// `intact`, before it acts on what it read of the records (C9).
    pub(crate) fn verify(&self) -> bool {
        self.columns
            .iter()
            .all(|(bytes, crc)| crc32fast::hash(bytes) == *crc)
            && self.below.as_ref().is_none_or(|b| b.base.verify())
    }

    /// The address ranges of every piece, this layer's and the base's
    /// under it.
    fn ranges(&self, out: &mut Vec<(usize, usize)>) {
        out.extend(self.pieces.iter().map(|p| {
            let start = p.as_ptr() as usize;
            (start, start + p.len())
        }));
        if let Some(b) = &self.below {
            b.base.ranges(out);
        }
    }

    /// Every record's id, in order.
    pub(super) fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.records().map(|(id, _)| id)
    }

    /// Heap bytes the base holds (pieces not counted: mapped, or counted
    /// by whoever rebuilt them).
    #[cfg(test)]
    pub(super) fn heap_bytes(&self) -> usize {
        self.directory.capacity() * 4
            + self.filters.capacity() * 8
            + self
                .straddlers
                .values()
                .map(|b| b.len() + 16)
                .sum::<usize>()
            + self.splits.capacity() * std::mem::size_of::<SplitBlob>()
            + self.pieces.capacity() * std::mem::size_of::<Bytes>()
            + self.starts.capacity() * std::mem::size_of::<usize>()
            + self
                .below
                .as_ref()
                .map_or(0, |b| b.base.heap_bytes() + b.hidden.capacity() * 8)
    }
}
