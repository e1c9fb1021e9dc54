//! The entry table that opens every data column's payload: one entry per
//! blob (or blob part, or tombstone) stored in the column.

use super::wire::{
    MAGIC_LEN, Reader, U16_LEN, U32_LEN, U64_LEN, corrupt, put_u16, put_u32, put_u64,
};
use super::{
    COLUMN_LEN_MAX, ENTRIES_PER_COLUMN_MAX, ENTRY_TABLE_MAGIC, FORMAT_VERSION, KEY_LEN_MAX,
};
use crate::{Error, Result};

const WHAT: &str = "entry table";

/// Bytes before the first entry: magic, version, flags, entry count.
pub const ENTRY_TABLE_PREFIX_LEN: usize = MAGIC_LEN + U16_LEN + U16_LEN + U32_LEN;
/// Bytes after the last entry: the table's own checksum.
pub const ENTRY_TABLE_SUFFIX_LEN: usize = U32_LEN;
/// Fixed bytes of one entry; the key follows them.
pub const ENTRY_FIXED_LEN: usize = U16_LEN + U16_LEN + U32_LEN * 5 + U64_LEN;

/// Flags of an [`Entry`], a small bit set.
///
/// ```
/// use geoshard::format::EntryFlags;
/// assert!(EntryFlags::TOMBSTONE.contains(EntryFlags::TOMBSTONE));
/// assert!(!EntryFlags::NONE.contains(EntryFlags::TOMBSTONE));
/// assert_eq!(EntryFlags::from_bits(0x8000), None);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EntryFlags(u16);

impl EntryFlags {
    /// No flag: a live blob (or blob part).
    pub const NONE: EntryFlags = EntryFlags(0);
    /// The entry deletes its key; it carries no bytes.
    pub const TOMBSTONE: EntryFlags = EntryFlags(1);
    /// The entry is the store's own retire marker: its bytes list
    /// generations (little-endian u64s) that compaction retired. Not a user
    /// blob; its key is ignored.
    pub const RETIRE: EntryFlags = EntryFlags(2);
    const KNOWN: u16 = Self::TOMBSTONE.0 | Self::RETIRE.0;

    /// The raw bits as stored.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Flags from raw bits; `None` if an unknown bit is set.
    pub const fn from_bits(bits: u16) -> Option<EntryFlags> {
        if bits & !Self::KNOWN == 0 {
            Some(EntryFlags(bits))
        } else {
            None
        }
    }

    /// True if every flag of `other` is set in `self`.
    pub const fn contains(self, other: EntryFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// True for a tombstone entry.
    pub const fn is_tombstone(self) -> bool {
        self.contains(Self::TOMBSTONE)
    }
}

/// One blob, blob part or tombstone in a data column.
///
/// `offset` and `len` locate the bytes relative to the start of the column's
/// payload (the entry table itself is at offset 0, so blob bytes start at or
/// after the table's length). A blob cut into parts has one entry per part,
/// each with `part_index` in `0..part_count` and the whole `blob_len`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The user key (1 to [`KEY_LEN_MAX`] bytes).
    pub key: Vec<u8>,
    /// Tombstone or not.
    pub flags: EntryFlags,
    /// Offset of the bytes in the column payload.
    pub offset: u32,
    /// Number of bytes of this part.
    pub len: u32,
    /// `crc32fast` of this part's bytes.
    pub checksum: u32,
    /// Which part of the blob this is (`< part_count`).
    pub part_index: u32,
    /// How many parts the blob was cut into (>= 1).
    pub part_count: u32,
    /// The length of the whole blob.
    pub blob_len: u64,
}

impl Entry {
    fn encoded_len(&self) -> usize {
        ENTRY_FIXED_LEN + self.key.len()
    }

    fn check(&self) -> Result<(), String> {
        self.as_ref().check()
    }

    fn as_ref(&self) -> EntryRef<'_> {
        EntryRef {
            key: &self.key,
            flags: self.flags,
            offset: self.offset,
            len: self.len,
            checksum: self.checksum,
            part_index: self.part_index,
            part_count: self.part_count,
            blob_len: self.blob_len,
        }
    }
}

/// An [`Entry`] whose key is borrowed from the table's bytes: open decodes
/// millions of entries, and an allocation per key was a third of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EntryRef<'a> {
    pub key: &'a [u8],
    pub flags: EntryFlags,
    pub offset: u32,
    pub len: u32,
    pub checksum: u32,
    pub part_index: u32,
    pub part_count: u32,
    pub blob_len: u64,
}

impl EntryRef<'_> {
    pub(crate) fn to_entry(self) -> Entry {
        Entry {
            key: self.key.to_vec(),
            flags: self.flags,
            offset: self.offset,
            len: self.len,
            checksum: self.checksum,
            part_index: self.part_index,
            part_count: self.part_count,
            blob_len: self.blob_len,
        }
    }

    fn check(&self) -> Result<(), String> {
        if self.key.is_empty() || self.key.len() > KEY_LEN_MAX {
            return Err(format!(
                "key length {} not in 1..={KEY_LEN_MAX}",
                self.key.len()
            ));
        }
        if self.part_count == 0 || self.part_index >= self.part_count {
            return Err(format!(
                "part {} of {} is out of range",
                self.part_index, self.part_count
            ));
        }
        if u64::from(self.len) > self.blob_len {
            return Err(format!(
                "part length {} over blob length {}",
                self.len, self.blob_len
            ));
        }
        let end = u64::from(self.offset) + u64::from(self.len);
        if end > COLUMN_LEN_MAX {
            return Err(format!("part ends at {end}, over the column length limit"));
        }
        Ok(())
    }
}

/// The encoded length of a table holding `entries`.
///
/// ```
/// use geoshard::format::{entry_table_len, encode_entry_table};
/// let mut out = Vec::new();
/// encode_entry_table(&[], &mut out)?;
/// assert_eq!(out.len(), entry_table_len(&[]));
/// # Ok::<(), geoshard::Error>(())
/// ```
pub fn entry_table_len(entries: &[Entry]) -> usize {
    ENTRY_TABLE_PREFIX_LEN
        + entries.iter().map(Entry::encoded_len).sum::<usize>()
        + ENTRY_TABLE_SUFFIX_LEN
}

/// Appends the encoded table of `entries` to `out`.
///
/// # Errors
/// [`Error::LimitExceeded`] for too many entries or a table longer than a
/// column may be; [`Error::InvalidArgument`] for an entry that breaks a rule
/// (empty or over-long key, part index out of range, part longer than the
/// blob, part past the column length limit). Nothing is appended on error.
pub fn encode_entry_table(entries: &[Entry], out: &mut Vec<u8>) -> Result<()> {
    if entries.len() > ENTRIES_PER_COLUMN_MAX {
        return Err(Error::LimitExceeded {
            what: "entries per column",
            limit: ENTRIES_PER_COLUMN_MAX as u64,
            actual: entries.len() as u64,
        });
    }
    for (index, entry) in entries.iter().enumerate() {
        entry
            .check()
            .map_err(|reason| Error::invalid(format!("entry {index}: {reason}")))?;
    }
    let table_len = entry_table_len(entries);
    if table_len as u64 > COLUMN_LEN_MAX {
        return Err(Error::LimitExceeded {
            what: "entry table length",
            limit: COLUMN_LEN_MAX,
            actual: table_len as u64,
        });
    }
    let start = out.len();
    out.reserve(table_len);
    out.extend_from_slice(&ENTRY_TABLE_MAGIC);
    put_u16(out, FORMAT_VERSION);
    put_u16(out, 0); // flags
    put_u32(out, entries.len() as u32);
    for entry in entries {
        put_u16(out, entry.key.len() as u16);
        put_u16(out, entry.flags.bits());
        put_u32(out, entry.offset);
        put_u32(out, entry.len);
        put_u32(out, entry.checksum);
        put_u32(out, entry.part_index);
        put_u32(out, entry.part_count);
        put_u64(out, entry.blob_len);
        out.extend_from_slice(&entry.key);
    }
    let crc = crc32fast::hash(&out[start..]);
    put_u32(out, crc);
    assert_eq!(
        out.len() - start,
        table_len,
        "entry_table_len disagrees with encode"
    );
    Ok(())
}

/// Decodes an entry table: exactly `bytes`, as sliced from the start of a
/// data column's payload by that column's `entry_table_lens` value. An empty
/// slice (a data column without a table) decodes to no entries.
///
/// Never panics; allocates in proportion to `bytes.len()` and never more
/// than the `*_MAX` limits allow.
///
/// # Errors
/// [`Error::Corrupt`] for short or trailing bytes, a bad magic, version or
/// flag, a field that breaks a rule or limit;
/// [`Error::ChecksumMismatch`] when the table's checksum fails.
pub fn decode_entry_table(bytes: &[u8]) -> Result<Vec<Entry>> {
    Ok(decode_entry_table_refs(bytes)?
        .into_iter()
        .map(EntryRef::to_entry)
        .collect())
}

/// [`decode_entry_table`], the keys borrowed from `bytes`.
///
/// # Errors
/// As `decode_entry_table`.
pub(crate) fn decode_entry_table_refs(bytes: &[u8]) -> Result<Vec<EntryRef<'_>>> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let body_len = bytes
        .len()
        .checked_sub(ENTRY_TABLE_SUFFIX_LEN)
        .filter(|&len| len >= ENTRY_TABLE_PREFIX_LEN)
        .ok_or_else(|| {
            corrupt(
                WHAT,
                format!("{} bytes is too short for a table", bytes.len()),
            )
        })?;
    let (body, suffix) = bytes.split_at(body_len);
    let mut reader = Reader::new(body, WHAT);
    let magic = reader.array::<MAGIC_LEN>()?;
    if magic != ENTRY_TABLE_MAGIC {
        return Err(corrupt(WHAT, format!("bad magic {magic:02x?}")));
    }
    let version = reader.u16()?;
    if version != FORMAT_VERSION {
        return Err(corrupt(
            WHAT,
            format!("unsupported format version {version}"),
        ));
    }
    let stored_crc = Reader::new(suffix, WHAT).u32()?;
    let actual_crc = crc32fast::hash(body);
    if stored_crc != actual_crc {
        return Err(Error::ChecksumMismatch {
            what: WHAT,
            expected: stored_crc,
            actual: actual_crc,
        });
    }
    let flags = reader.u16()?;
    if flags != 0 {
        return Err(corrupt(WHAT, format!("unknown flags {flags:#06x}")));
    }
    let entry_count = reader.u32()? as usize;
    if entry_count > ENTRIES_PER_COLUMN_MAX {
        return Err(corrupt(
            WHAT,
            format!("{entry_count} entries, over {ENTRIES_PER_COLUMN_MAX}"),
        ));
    }
    // Every entry needs at least ENTRY_FIXED_LEN + 1 bytes, so a count the
    // bytes cannot hold is refused before it sizes the vector.
    if entry_count.saturating_mul(ENTRY_FIXED_LEN + 1) > reader.remaining() {
        return Err(corrupt(
            WHAT,
            format!("{entry_count} entries cannot fit in {} bytes", bytes.len()),
        ));
    }
    let mut entries = Vec::with_capacity(entry_count);
    for index in 0..entry_count {
        let key_len = usize::from(reader.u16()?);
        let flag_bits = reader.u16()?;
        let flags = EntryFlags::from_bits(flag_bits).ok_or_else(|| {
            corrupt(
                WHAT,
                format!("entry {index}: unknown flags {flag_bits:#06x}"),
            )
        })?;
        let offset = reader.u32()?;
        let len = reader.u32()?;
        let checksum = reader.u32()?;
        let part_index = reader.u32()?;
        let part_count = reader.u32()?;
        let blob_len = reader.u64()?;
        if key_len == 0 || key_len > KEY_LEN_MAX {
            return Err(corrupt(
                WHAT,
                format!("entry {index}: key length {key_len}"),
            ));
        }
        let key = reader.take(key_len)?;
        let entry = EntryRef {
            key,
            flags,
            offset,
            len,
            checksum,
            part_index,
            part_count,
            blob_len,
        };
        entry
            .check()
            .map_err(|reason| corrupt(WHAT, format!("entry {index}: {reason}")))?;
        entries.push(entry);
    }
    if reader.remaining() != 0 {
        return Err(corrupt(
            WHAT,
            format!("{} unused bytes after the entries", reader.remaining()),
        ));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<Entry> {
        vec![
            Entry {
                key: b"chat/1".to_vec(),
                flags: EntryFlags::NONE,
                offset: 200,
                len: 5,
                checksum: crc32fast::hash(b"hello"),
                part_index: 0,
                part_count: 1,
                blob_len: 5,
            },
            Entry {
                key: vec![0; KEY_LEN_MAX],
                flags: EntryFlags::TOMBSTONE,
                offset: 0,
                len: 0,
                checksum: 0,
                part_index: 0,
                part_count: 1,
                blob_len: 0,
            },
            Entry {
                key: vec![0xFF],
                flags: EntryFlags::NONE,
                offset: 205,
                len: 1000,
                checksum: 7,
                part_index: 2,
                part_count: 3,
                blob_len: 1 << 40,
            },
        ]
    }

    #[test]
    fn round_trip() {
        let entries = entries();
        let mut out = Vec::new();
        encode_entry_table(&entries, &mut out).unwrap();
        assert_eq!(out.len(), entry_table_len(&entries));
        assert_eq!(decode_entry_table(&out).unwrap(), entries);
        assert_eq!(decode_entry_table(&[]).unwrap(), Vec::new());
        let mut empty = Vec::new();
        encode_entry_table(&[], &mut empty).unwrap();
        assert_eq!(decode_entry_table(&empty).unwrap(), Vec::new());
    }

    #[test]
    fn hostile_bytes_are_typed_errors() {
        let mut out = Vec::new();
        encode_entry_table(&entries()[..1], &mut out).unwrap();
        for len in 1..out.len() {
            assert!(decode_entry_table(&out[..len]).is_err(), "cut at {len}");
        }
        for bit in 0..out.len() * 8 {
            let mut flipped = out.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_entry_table(&flipped).is_err(), "bit {bit}");
        }
        let mut trailing = out.clone();
        trailing.push(0);
        assert!(decode_entry_table(&trailing).is_err());
    }

    #[test]
    fn a_huge_count_with_a_valid_checksum_does_not_allocate() {
        let mut out = Vec::new();
        out.extend_from_slice(&ENTRY_TABLE_MAGIC);
        put_u16(&mut out, FORMAT_VERSION);
        put_u16(&mut out, 0);
        put_u32(&mut out, ENTRIES_PER_COLUMN_MAX as u32);
        let crc = crc32fast::hash(&out);
        put_u32(&mut out, crc);
        assert!(matches!(
            decode_entry_table(&out),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn encode_refuses_bad_entries() {
        let good = entries()[0].clone();
        let bad: Vec<Entry> = vec![
            Entry {
                key: Vec::new(),
                ..good.clone()
            },
            Entry {
                key: vec![1; KEY_LEN_MAX + 1],
                ..good.clone()
            },
            Entry {
                part_count: 0,
                part_index: 0,
                ..good.clone()
            },
            Entry {
                part_count: 2,
                part_index: 2,
                ..good.clone()
            },
            Entry {
                len: 6,
                blob_len: 5,
                ..good.clone()
            },
            Entry {
                offset: COLUMN_LEN_MAX as u32,
                len: 1,
                blob_len: 1,
                ..good.clone()
            },
        ];
        for entry in bad {
            let mut out = Vec::new();
            assert!(
                encode_entry_table(std::slice::from_ref(&entry), &mut out).is_err(),
                "{entry:?}"
            );
            assert!(out.is_empty());
        }
    }
}
