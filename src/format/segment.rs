//! The segment file: a segment header followed by column records, and the
//! scanner that walks one (used by recovery, by `Node::scan` and by any
//! backend that stores segments as bytes).

use super::header::HEADER_LEN_OFFSET;
use super::wire::{
    MAGIC_LEN, Reader, U16_LEN, U32_LEN, U64_LEN, corrupt, peek_u32, put_u16, put_u32, put_u64,
};
use super::{ColumnHeader, FORMAT_VERSION, HEADER_LEN_MAX, RECORD_MAGIC, SEGMENT_MAGIC};
use crate::{Error, Result};

const WHAT: &str = "segment header";

/// Length of the header that opens every segment file.
pub const SEGMENT_HEADER_LEN: usize = MAGIC_LEN + U16_LEN + U16_LEN + U64_LEN + U32_LEN + U32_LEN;

/// Encodes the segment header of `generation`.
///
/// ```
/// use geoshard::format::{decode_segment_header, encode_segment_header, SEGMENT_HEADER_LEN};
/// let header = encode_segment_header(42);
/// assert_eq!(header.len(), SEGMENT_HEADER_LEN);
/// assert_eq!(decode_segment_header(&header)?, 42);
/// # Ok::<(), geoshard::Error>(())
/// ```
pub fn encode_segment_header(generation: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut out = Vec::with_capacity(SEGMENT_HEADER_LEN);
    out.extend_from_slice(&SEGMENT_MAGIC);
    put_u16(&mut out, FORMAT_VERSION);
    put_u16(&mut out, 0); // flags
    put_u64(&mut out, generation);
    put_u32(&mut out, 0); // reserved
    let crc = crc32fast::hash(&out);
    put_u32(&mut out, crc);
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    header.copy_from_slice(&out);
    header
}

/// Decodes a segment header and returns its generation.
///
/// # Errors
/// [`Error::Corrupt`] or [`Error::ChecksumMismatch`] when the bytes are not a
/// segment header of this format version.
pub fn decode_segment_header(bytes: &[u8]) -> Result<u64> {
    let mut reader = Reader::new(bytes, WHAT);
    let magic = reader.array::<MAGIC_LEN>()?;
    if magic != SEGMENT_MAGIC {
        return Err(corrupt(WHAT, format!("bad magic {magic:02x?}")));
    }
    let version = reader.u16()?;
    let flags = reader.u16()?;
    let generation = reader.u64()?;
    let _reserved = reader.u32()?;
    let body_len = reader.position();
    let stored = reader.u32()?;
    let actual = bytes.get(..body_len).map(crc32fast::hash).unwrap_or(0);
    if stored != actual {
        return Err(Error::ChecksumMismatch {
            what: WHAT,
            expected: stored,
            actual,
        });
    }
    if version != FORMAT_VERSION || flags != 0 {
        return Err(corrupt(
            WHAT,
            format!("unsupported version {version} or flags {flags:#x}"),
        ));
    }
    Ok(generation)
}

/// An intact record found by [`scan_segment`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentRecord {
    /// The decoded header.
    pub header: ColumnHeader,
    /// Offset of the header in the segment.
    pub record_offset: u64,
    /// Offset of the payload in the segment.
    pub payload_offset: u64,
    /// Payload length.
    pub payload_len: u32,
}

/// A run of bad bytes found by [`scan_segment`] that is followed by an intact
/// record (so it is damage, not a torn tail).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentDamage {
    /// Offset of the first bad byte.
    pub offset: u64,
    /// Number of bad bytes.
    pub len: u64,
    /// What was wrong with the first bad record.
    pub reason: String,
}

/// What [`scan_segment`] found in a segment's bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentScan {
    /// Intact records (header and payload checksums verified), in order.
    pub records: Vec<SegmentRecord>,
    /// Damaged regions between intact parts, in order.
    pub damaged: Vec<SegmentDamage>,
    /// End of the last intact part (the segment header or a record). The
    /// bytes from here to the end are the tail: a torn write at recovery
    /// time, damage otherwise.
    pub intact_len: u64,
    /// Why the tail is bad, if there is a tail.
    pub tail_reason: Option<String>,
}

/// Walks `bytes` (a whole segment file, or its durable prefix) as the
/// segment of `generation`.
///
/// Every returned record has a header and payload whose checksums verify
/// and whose generation is `generation`. A bad record in the middle is
/// skipped and reported in `damaged`; the scanner then resynchronises on
/// the next record magic. Never panics, whatever the bytes.
///
/// ```
/// use geoshard::format::{encode_segment_header, scan_segment};
/// let mut bytes = encode_segment_header(1).to_vec();
/// bytes.extend_from_slice(b"torn");
/// let scan = scan_segment(&bytes, 1);
/// assert!(scan.records.is_empty());
/// assert_eq!(scan.intact_len as usize, bytes.len() - 4);
/// ```
pub fn scan_segment(bytes: &[u8], generation: u64) -> SegmentScan {
    let mut source = bytes;
    match scan_segment_from(&mut source, generation) {
        Ok(scan) => scan,
        Err(never) => match never {},
    }
}

/// Where [`scan_segment_from`] reads a segment's bytes: a slice, or a file
/// read through a small reusable window (recovery and `Node::scan` of local
/// nodes), so a scan never holds a whole segment in memory.
pub(crate) trait ScanSource {
    /// What a read can fail with.
    type Error;

    /// The number of bytes the segment holds. May shrink while scanning
    /// (a file that turns out shorter than it was said to be).
    fn len(&self) -> usize;

    /// Bytes `start..end`, or fewer where the segment ends first (empty
    /// when `start` is at or past the end). Never more than `end - start`.
    ///
    /// # Errors
    /// A read error of the underlying file.
    fn get(&mut self, start: usize, end: usize) -> std::result::Result<&[u8], Self::Error>;
}

impl ScanSource for &[u8] {
    type Error = std::convert::Infallible;

    fn len(&self) -> usize {
        <[u8]>::len(self)
    }

    fn get(&mut self, start: usize, end: usize) -> std::result::Result<&[u8], Self::Error> {
        let bytes: &[u8] = self;
        let end = end.min(bytes.len());
        Ok(bytes.get(start..end).unwrap_or_default())
    }
}

/// Bytes asked of a [`ScanSource`] at once when streaming a checksum or
/// searching for a magic.
const SCAN_STEP_LEN: usize = 1 << 20;

/// [`scan_segment`] over any [`ScanSource`].
///
/// # Errors
/// The source's read errors; the scan stops at the first one.
pub(crate) fn scan_segment_from<S: ScanSource>(
    source: &mut S,
    generation: u64,
) -> std::result::Result<SegmentScan, S::Error> {
    let mut scan = SegmentScan::default();
    let mut pending: Option<(usize, String)> = None;
    match decode_segment_header(source.get(0, SEGMENT_HEADER_LEN)?) {
        Ok(found) if found == generation => scan.intact_len = SEGMENT_HEADER_LEN as u64,
        Ok(found) => pending = Some((0, format!("segment header names generation {found}"))),
        Err(error) => pending = Some((0, error.to_string())),
    }
    scan_records(source, generation, SEGMENT_HEADER_LEN, scan, pending)
}

/// [`scan_segment_from`] from byte `start` on, where a record of a segment
/// the caller trusts up to there ended (a checkpoint's horizon): the bytes
/// before it are not read. `None` when `start` is past the end, or no
/// intact record starts there (and it is not the end): no record boundary
/// the caller could trust.
///
/// # Errors
/// The source's read errors; the scan stops at the first one.
pub(crate) fn scan_segment_past<S: ScanSource>(
    source: &mut S,
    generation: u64,
    start: usize,
) -> std::result::Result<Option<SegmentScan>, S::Error> {
    if start < SEGMENT_HEADER_LEN || start > source.len() {
        return Ok(None);
    }
    if start < source.len() && check_record(source, start, generation)?.is_err() {
        return Ok(None);
    }
    let scan = SegmentScan {
        intact_len: start as u64,
        ..SegmentScan::default()
    };
    scan_records(source, generation, start, scan, None).map(Some)
}

/// The record walk of [`scan_segment_from`], from `pos` on, adding to
/// `scan` (`pending`: damage that started before `pos`).
fn scan_records<S: ScanSource>(
    source: &mut S,
    generation: u64,
    mut pos: usize,
    mut scan: SegmentScan,
    mut pending: Option<(usize, String)>,
) -> std::result::Result<SegmentScan, S::Error> {
    while pos < source.len() {
        match check_record(source, pos, generation)? {
            Ok((record, end)) => {
                if let Some((start, reason)) = pending.take() {
                    scan.damaged.push(SegmentDamage {
                        offset: start as u64,
                        len: (pos - start) as u64,
                        reason,
                    });
                }
                scan.records.push(record);
                scan.intact_len = end as u64;
                pos = end;
            }
            Err(fault) => {
                if pending.is_none() {
                    pending = Some((pos, fault.reason));
                }
                pos = match fault.next {
                    Some(next) => next,
                    None => next_magic(source, pos + 1)?,
                };
            }
        }
    }
    if source.len() as u64 > scan.intact_len {
        scan.tail_reason =
            Some(pending.map_or_else(|| "incomplete segment header".into(), |p| p.1));
    }
    Ok(scan)
}

struct Fault {
    reason: String,
    /// Where the next record starts when the header was intact.
    next: Option<usize>,
}

type Checked = std::result::Result<(SegmentRecord, usize), Fault>;

fn check_record<S: ScanSource>(
    source: &mut S,
    pos: usize,
    generation: u64,
) -> std::result::Result<Checked, S::Error> {
    let fault = |reason: String| Fault { reason, next: None };
    // A header is never longer than HEADER_LEN_MAX: that much is all the
    // decoder may look at.
    let rest = source.get(pos, pos.saturating_add(HEADER_LEN_MAX))?;
    // Peek at the claimed header length first so a torn header is reported
    // as incomplete rather than as a checksum failure.
    if let Some(header_len) = peek_u32(rest, HEADER_LEN_OFFSET)
        && rest.starts_with(&RECORD_MAGIC)
        && (header_len as usize) <= HEADER_LEN_MAX
        && header_len as usize > rest.len()
    {
        return Ok(Err(fault(format!("incomplete record header at {pos}"))));
    }
    let (header, header_len) = match ColumnHeader::decode(rest) {
        Ok(decoded) => decoded,
        Err(e) => return Ok(Err(fault(format!("record at {pos}: {e}")))),
    };
    let payload_offset = pos + header_len;
    let payload_len = header.payload_len();
    let end = payload_offset.saturating_add(payload_len as usize);
    if header.generation != generation {
        return Ok(Err(Fault {
            reason: format!("record at {pos} names generation {}", header.generation),
            next: (end <= source.len()).then_some(end),
        }));
    }
    if end > source.len() {
        return Ok(Err(fault(format!("incomplete record payload at {pos}"))));
    }
    let mut hasher = crc32fast::Hasher::new();
    let mut at = payload_offset;
    while at < end {
        let chunk = source.get(at, end.min(at.saturating_add(SCAN_STEP_LEN)))?;
        if chunk.is_empty() {
            // The source shrank under the scan.
            return Ok(Err(fault(format!("incomplete record payload at {pos}"))));
        }
        hasher.update(chunk);
        at += chunk.len();
    }
    let actual = hasher.finalize();
    if actual != header.payload_checksum() {
        return Ok(Err(Fault {
            reason: format!(
                "record at {pos}: payload checksum {actual:#010x}, header says {:#010x}",
                header.payload_checksum()
            ),
            next: Some(end),
        }));
    }
    let record = SegmentRecord {
        header,
        record_offset: pos as u64,
        payload_offset: payload_offset as u64,
        payload_len,
    };
    Ok(Ok((record, end)))
}

/// The offset of the first record magic at or after `from`, or the end.
fn next_magic<S: ScanSource>(source: &mut S, from: usize) -> std::result::Result<usize, S::Error> {
    let mut at = from;
    loop {
        // Overlap consecutive steps by one magic less a byte, so a magic
        // straddling two steps is found.
        let window = source.get(at, at.saturating_add(SCAN_STEP_LEN))?;
        let window_len = window.len();
        if let Some(found) = window
            .windows(RECORD_MAGIC.len())
            .position(|w| w == RECORD_MAGIC)
        {
            return Ok(at + found);
        }
        if window_len < RECORD_MAGIC.len() || at + window_len >= source.len() {
            return Ok(source.len());
        }
        at += window_len + 1 - RECORD_MAGIC.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(stripe_id: u64, generation: u64, payload: &[u8]) -> Vec<u8> {
        let header = ColumnHeader {
            stripe_id,
            generation,
            data_count: 1,
            parity_count: 1,
            column_index: 0,
            column_lens: vec![payload.len() as u32; 2],
            column_checksums: vec![crc32fast::hash(payload), 0],
            placement: vec!["a".into(), "b".into()],
            entry_table_lens: vec![0],
            commit: crate::format::CommitStamp::default(),
            handoffs: Vec::new(),
        };
        let mut out = Vec::new();
        header.encode_into(&mut out).unwrap();
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn middle_damage_is_reported_and_the_rest_is_kept() {
        let mut bytes = encode_segment_header(5).to_vec();
        let mut starts = Vec::new();
        for id in 0..4u64 {
            starts.push(bytes.len());
            bytes.extend(record(id, 5, &[id as u8; 50]));
        }
        let clean = scan_segment(&bytes, 5);
        assert_eq!(clean.records.len(), 4);
        assert!(clean.damaged.is_empty());
        assert_eq!(clean.intact_len, bytes.len() as u64);
        assert_eq!(clean.tail_reason, None);

        // A payload flip in record 1 and a header flip in record 2.
        let mut bad = bytes.clone();
        bad[starts[2] - 3] ^= 0x10;
        bad[starts[2] + 10] ^= 0x01;
        let scan = scan_segment(&bad, 5);
        let ids: Vec<u64> = scan.records.iter().map(|r| r.header.stripe_id).collect();
        assert_eq!(ids, [0, 3]);
        assert_eq!(scan.damaged.len(), 1);
        assert_eq!(scan.damaged[0].offset, starts[1] as u64);
        assert_eq!(scan.damaged[0].len, (starts[3] - starts[1]) as u64);
        assert_eq!(scan.intact_len, bytes.len() as u64);

        // The wrong generation is damage too.
        let other = scan_segment(&bytes, 6);
        assert!(other.records.is_empty());
        assert_eq!(other.intact_len, 0);
        assert!(other.tail_reason.is_some());
    }

    #[test]
    fn short_and_empty_inputs() {
        assert_eq!(scan_segment(&[], 0), SegmentScan::default());
        let header = encode_segment_header(9);
        for len in 1..SEGMENT_HEADER_LEN {
            let scan = scan_segment(&header[..len], 9);
            assert_eq!(scan.intact_len, 0);
            assert!(scan.tail_reason.is_some());
        }
    }

    /// Review item 17: garbage dense with record magics that claim long
    /// headers is rejected by walking each candidate's structure, not by a
    /// checksum over up to `HEADER_LEN_MAX` bytes per magic.
    #[test]
    fn magic_dense_garbage_is_scanned_as_damage() {
        let mut bytes = encode_segment_header(1).to_vec();
        let mut junk = 0x9e37_79b9u32;
        while bytes.len() < 4 << 20 {
            bytes.extend_from_slice(&RECORD_MAGIC);
            bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
            bytes.extend_from_slice(&0u16.to_le_bytes());
            bytes.extend_from_slice(&60_000u32.to_le_bytes());
            junk = junk.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            bytes.extend_from_slice(&junk.to_le_bytes());
        }
        let started = std::time::Instant::now();
        let scan = scan_segment(&bytes, 1);
        println!(
            "4 MiB of magic-dense garbage scanned in {:?}",
            started.elapsed()
        );
        assert!(scan.records.is_empty());
        assert_eq!(scan.intact_len, SEGMENT_HEADER_LEN as u64);
    }
}
