//! The self-describing column record: what a node stores.
//!
//! A *record* is a [`ColumnHeader`] followed by the column's payload. A data
//! column's payload opens with its entry table ([`encode_entry_table`]),
//! followed by blob bytes; a parity column's payload is parity bytes. Records
//! are appended to *segment* files that open with a segment header
//! ([`encode_segment_header`]). Everything is little-endian, every record
//! carries a magic and [`FORMAT_VERSION`], and every part carries a
//! `crc32fast` checksum. `docs/FORMAT.md` gives the byte tables.
//!
//! Every decoder here takes untrusted bytes: it never panics, and it checks
//! each length against a named `*_MAX` limit before that length sizes an
//! allocation.
//!
//! ```
//! use geoshard::format::{decode_entry_table, encode_entry_table, Entry, EntryFlags};
//!
//! let blob = b"hello";
//! let mut entries = vec![Entry {
//!     key: b"greeting".to_vec(),
//!     flags: EntryFlags::NONE,
//!     offset: 0,
//!     len: blob.len() as u32,
//!     checksum: crc32fast::hash(blob),
//!     part_index: 0,
//!     part_count: 1,
//!     blob_len: blob.len() as u64,
//! }];
//! // Blob bytes follow the table, so offsets are known once its length is.
//! entries[0].offset = geoshard::format::entry_table_len(&entries) as u32;
//! let mut payload = Vec::new();
//! encode_entry_table(&entries, &mut payload)?;
//! payload.extend_from_slice(blob);
//! let table_len = geoshard::format::entry_table_len(&entries);
//! assert_eq!(decode_entry_table(&payload[..table_len])?, entries);
//! # Ok::<(), geoshard::Error>(())
//! ```

mod entry;
mod header;
mod manifest;
mod segment;
pub(crate) mod wire;

pub use entry::{
    ENTRY_FIXED_LEN, ENTRY_TABLE_PREFIX_LEN, ENTRY_TABLE_SUFFIX_LEN, Entry, EntryFlags,
    decode_entry_table, encode_entry_table, entry_table_len,
};
pub(crate) use entry::{EntryRef, decode_entry_table_refs};
pub use header::{ColumnHeader, CommitStamp};
pub use manifest::{DISCARDED_RANGES_MAX, MANIFEST_LEN_MAX, MANIFEST_MAGIC, Manifest, add_range};
pub use segment::{
    SEGMENT_HEADER_LEN, SegmentDamage, SegmentRecord, SegmentScan, decode_segment_header,
    encode_segment_header, scan_segment,
};
pub(crate) use segment::{ScanSource, scan_segment_from, scan_segment_past};

use wire::{MAGIC_LEN, U8_LEN, U16_LEN, U32_LEN, U64_LEN};

/// The format version written in every record, entry table and segment
/// header. Decoders refuse any other version.
pub const FORMAT_VERSION: u16 = 2;

/// Magic that opens every column record.
pub const RECORD_MAGIC: [u8; 4] = *b"GSCR";
/// Magic that opens every entry table.
pub const ENTRY_TABLE_MAGIC: [u8; 4] = *b"GSET";
/// Magic that opens every segment file.
pub const SEGMENT_MAGIC: [u8; 4] = *b"GSSG";

/// Longest key, in bytes.
pub const KEY_LEN_MAX: usize = 1024;
/// Most columns (k + m) a stripe may have.
pub const COLUMN_COUNT_MAX: usize = 256;
/// Longest column (record payload), in bytes.
pub const COLUMN_LEN_MAX: u64 = 64 * 1024 * 1024;
/// Most entries one data column's entry table may hold.
pub const ENTRIES_PER_COLUMN_MAX: usize = 1 << 20;
/// Longest node name, in bytes.
pub const NODE_NAME_LEN_MAX: usize = 255;

/// Fixed part of a record header, before the per-column arrays.
pub const HEADER_FIXED_LEN: usize =
    MAGIC_LEN + U16_LEN * 2 + U32_LEN + U16_LEN * 2 + U64_LEN * 3 + U16_LEN * 2;
/// Longest possible record header: [`COLUMN_COUNT_MAX`] columns, all data
/// (m may be 0), each with a length, a checksum, an entry-table length, a
/// name of [`NODE_NAME_LEN_MAX`] bytes and a handoff (column index and
/// name), plus the header checksum.
pub const HEADER_LEN_MAX: usize = HEADER_FIXED_LEN
    + COLUMN_COUNT_MAX * (U32_LEN * 3 + U8_LEN + NODE_NAME_LEN_MAX)
    + COLUMN_COUNT_MAX * (U16_LEN + U8_LEN + NODE_NAME_LEN_MAX)
    + U32_LEN;
/// Longest possible record: header plus payload.
pub const RECORD_LEN_MAX: u64 = HEADER_LEN_MAX as u64 + COLUMN_LEN_MAX;

// How the limits relate: every length fits the field that stores it, and the
// largest entry table fits in a column.
const _: () = assert!(KEY_LEN_MAX <= u16::MAX as usize);
const _: () = assert!(NODE_NAME_LEN_MAX <= u8::MAX as usize);
const _: () = assert!(COLUMN_COUNT_MAX <= u16::MAX as usize);
const _: () = assert!(COLUMN_LEN_MAX <= u32::MAX as u64);
const _: () = assert!(HEADER_LEN_MAX <= u32::MAX as usize);
const _: () = assert!(ENTRIES_PER_COLUMN_MAX <= u32::MAX as usize);
const _: () = assert!(
    (ENTRY_TABLE_PREFIX_LEN
        + ENTRIES_PER_COLUMN_MAX * (ENTRY_FIXED_LEN + 1)
        + ENTRY_TABLE_SUFFIX_LEN) as u64
        <= COLUMN_LEN_MAX
);
const _: () = assert!(HEADER_FIXED_LEN == 44);
const _: () = assert!(HEADER_LEN_MAX == 134_704);
const _: () = assert!(ENTRY_FIXED_LEN == 32);
