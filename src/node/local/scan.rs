//! Segment scans for recovery and `Node::scan`.
//!
//! A scan first reads the segment through a mapping protected by the SIGBUS
//! handler (no copy: the page cache is read in place). If any page read as
//! zeros during that pass (the file was cut by another process, or the
//! medium failed), the scan is thrown away and done again with positional
//! reads (`pread`), which fail politely where a mapping faults: a file
//! shorter than expected reads short (end of file), a failing sector
//! returns EIO, so recovery never takes an unreadable sector for a torn
//! tail.
//!
//! The `pread` scan goes through a small window in a caller's reusable
//! buffer: reading a whole segment into one buffer costs a first touch of
//! every page (slow on these VMs, see docs/PERFORMANCE.md), per node.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::format::{ScanSource, SegmentScan, scan_segment, scan_segment_from, scan_segment_past};

/// Bytes read into the window at once (more when one request is longer).
const WINDOW_LEN: usize = 4 << 20;

/// Scans the first `len` bytes of `file` as the segment of `generation`,
/// reading through `buf` (its allocation is reused). Returns the scan and
/// the number of bytes the file really held up to `len` (less than `len`
/// when it ends first).
///
/// # Errors
/// Any read error but an interruption (which is retried), e.g. EIO.
pub(super) fn scan_file(
    file: &File,
    len: u64,
    generation: u64,
    buf: &mut Vec<u8>,
) -> io::Result<(SegmentScan, u64)> {
    scan_file_with(file, len, generation, buf, || {})
}

/// [`scan_file`], calling `after_map` once the mapping is made (tests cut
/// the file there).
fn scan_file_with(
    file: &File,
    len: u64,
    generation: u64,
    buf: &mut Vec<u8>,
    after_map: impl FnOnce(),
) -> io::Result<(SegmentScan, u64)> {
    #[cfg(not(target_os = "linux"))]
    drop(after_map);
    // A file that cannot be mapped (a file system without mmap) is read
    // with pread, which reports any real error.
    #[cfg(target_os = "linux")]
    if let Ok(Some(mapped)) = super::map::map_for_scan(file, len) {
        after_map();
        let replaced = super::map::sigbus_pages_replaced();
        let bytes = mapped.as_ref();
        let scan = scan_segment(bytes, generation);
        // The handler counts for the whole process: a fault elsewhere only
        // costs a second, careful pass here.
        if super::map::sigbus_pages_replaced() == replaced {
            return Ok((scan, bytes.len() as u64));
        }
    }
    scan_file_pread(file, len, generation, buf)
}

/// [`scan_file`] through `pread` only.
///
/// # Errors
/// Any read error but an interruption (which is retried), e.g. EIO.
fn scan_file_pread(
    file: &File,
    len: u64,
    generation: u64,
    buf: &mut Vec<u8>,
) -> io::Result<(SegmentScan, u64)> {
    let len = usize::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment larger than memory"))?;
    let mut window = Window::new(file, len, buf);
    let scan = scan_segment_from(&mut window, generation)?;
    Ok((scan, window.len as u64))
}

/// [`scan_file`] from byte `start` on, the bytes before it trusted (see
/// [`scan_segment_past`]), read with `pread` through `buf`. `None` when
/// no intact record starts at `start` (nor does the file end there).
///
/// # Errors
/// Any read error but an interruption (which is retried), e.g. EIO.
pub(super) fn scan_file_past(
    file: &File,
    len: u64,
    generation: u64,
    start: u64,
    buf: &mut Vec<u8>,
) -> io::Result<(Option<SegmentScan>, u64)> {
    let (Ok(len), Ok(start)) = (usize::try_from(len), usize::try_from(start)) else {
        return Ok((None, len));
    };
    let mut window = Window::new(file, len, buf);
    let scan = scan_segment_past(&mut window, generation, start)?;
    Ok((scan, window.len as u64))
}

/// A [`ScanSource`] over a file: `buf[..filled]` holds the file's bytes
/// from `start`.
struct Window<'a> {
    file: &'a File,
    /// The file's length as far as the scan knows: the length asked for,
    /// cut where a read found the end of the file.
    len: usize,
    buf: &'a mut Vec<u8>,
    start: usize,
    filled: usize,
}

impl<'a> Window<'a> {
    /// An empty window on the first `len` bytes of `file`.
    fn new(file: &'a File, len: usize, buf: &'a mut Vec<u8>) -> Window<'a> {
        Window {
            file,
            len,
            buf,
            start: 0,
            filled: 0,
        }
    }

    /// Reads from `start` up to `want` bytes into the window.
    fn fill(&mut self, start: usize, want: usize) -> io::Result<()> {
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        self.start = start;
        self.filled = 0;
        while self.filled < want {
            let Some(chunk) = self.buf.get_mut(self.filled..want) else {
                break;
            };
            match self.file.read_at(chunk, (start + self.filled) as u64) {
                Ok(0) => {
                    // The file ends here: what lies beyond is not there.
                    self.len = start + self.filled;
                    break;
                }
                Ok(read) => self.filled += read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

impl ScanSource for Window<'_> {
    type Error = io::Error;

    fn len(&self) -> usize {
        self.len
    }

    fn get(&mut self, start: usize, end: usize) -> io::Result<&[u8]> {
        let end = end.min(self.len);
        if start >= end {
            return Ok(&[]);
        }
        let inside = start >= self.start && end <= self.start + self.filled;
        if !inside {
            let want = (end - start).max(WINDOW_LEN).min(self.len - start);
            self.fill(start, want)?;
        }
        let from = start - self.start;
        let to = end.min(self.start + self.filled) - self.start;
        Ok(self.buf.get(from..to).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{ColumnHeader, CommitStamp, encode_segment_header};
    use std::io::Write;

    fn segment(records: usize, payload_len: usize) -> Vec<u8> {
        let mut bytes = encode_segment_header(3).to_vec();
        for id in 0..records {
            let payload: Vec<u8> = (0..payload_len).map(|i| (i * 31 + id) as u8).collect();
            let header = ColumnHeader {
                stripe_id: id as u64,
                generation: 3,
                data_count: 1,
                parity_count: 1,
                column_index: 0,
                column_lens: vec![payload_len as u32; 2],
                column_checksums: vec![crc32fast::hash(&payload), 0],
                placement: vec!["a".into(), "b".into()],
                entry_table_lens: vec![0],
                commit: CommitStamp::default(),
                handoffs: Vec::new(),
            };
            header.encode_into(&mut bytes).unwrap();
            bytes.extend_from_slice(&payload);
        }
        bytes
    }

    fn file_of(bytes: &[u8]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
        let file = File::open(&path).unwrap();
        (dir, file)
    }

    /// The windowed scan finds what the whole-slice scan finds, across
    /// window boundaries, in records longer than the window, in damage
    /// and in a torn tail.
    #[test]
    fn a_windowed_file_scan_equals_the_slice_scan() {
        let mut cases = vec![
            segment(0, 0),
            segment(700, 9_000),
            segment(3, WINDOW_LEN + 12_345),
        ];
        let mut damaged = segment(1_000, 9_000);
        damaged[WINDOW_LEN - 2] ^= 0x40;
        damaged[2 * WINDOW_LEN + 77] ^= 0x01;
        damaged.truncate(damaged.len() - 5_000);
        cases.push(damaged);
        let mut garbage = segment(10, 1_000);
        garbage.extend((0..3 * WINDOW_LEN / 2).map(|i| (i as u8).wrapping_mul(97)));
        garbage.extend(segment(200, 100).split_off(crate::format::SEGMENT_HEADER_LEN));
        cases.push(garbage);
        // Seeded byte flips, record magics planted across window and step
        // boundaries.
        let base = segment(1_000, 9_000);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..4 {
            let mut bytes = base.clone();
            for _ in 0..6 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed % bytes.len() as u64) as usize;
                bytes[at] ^= 1 << (seed >> 61);
            }
            for boundary in [1 << 20, WINDOW_LEN, 2 * WINDOW_LEN] {
                let at = boundary - 2 - (seed % 3) as usize;
                bytes[at..at + 4].copy_from_slice(&crate::format::RECORD_MAGIC);
            }
            cases.push(bytes);
        }
        let mut buf = Vec::new();
        for bytes in &cases {
            let (_dir, file) = file_of(bytes);
            let (scan, read) = scan_file_pread(&file, bytes.len() as u64, 3, &mut buf).unwrap();
            assert_eq!(read, bytes.len() as u64);
            assert_eq!(scan, scan_segment(bytes, 3));
            let (mapped, read) = scan_file(&file, bytes.len() as u64, 3, &mut buf).unwrap();
            assert_eq!(read, bytes.len() as u64);
            assert_eq!(mapped, scan);
        }
        assert!(buf.len() <= WINDOW_LEN + 12_345 + crate::format::HEADER_LEN_MAX);
    }

    /// A file cut by another process after it was mapped: the mapped pass
    /// reads zeros past the cut, and the scan is done again with `pread`,
    /// which sees the file's real end (a tail, never zeros as damage).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_cut_under_the_mapped_scan_is_scanned_again_with_pread() {
        let bytes = segment(400, 9_000);
        let (dir, file) = file_of(&bytes);
        let cut = bytes.len() / 2;
        let mut buf = Vec::new();
        let replaced = super::super::map::sigbus_pages_replaced();
        let (scan, read) = scan_file_with(&file, bytes.len() as u64, 3, &mut buf, || {
            std::fs::OpenOptions::new()
                .write(true)
                .open(dir.path().join("segment"))
                .unwrap()
                .set_len(cut as u64)
                .unwrap();
        })
        .unwrap();
        assert!(super::super::map::sigbus_pages_replaced() > replaced);
        assert_eq!(read, cut as u64);
        assert_eq!(scan, scan_segment(&bytes[..cut], 3));
        assert!(scan.damaged.is_empty());
    }

    /// A file shorter than the length asked for scans as its real bytes,
    /// and says how many there were.
    #[test]
    fn a_file_shorter_than_asked_scans_what_it_holds() {
        let bytes = segment(50, 2_000);
        let (_dir, file) = file_of(&bytes);
        let mut buf = Vec::new();
        let asked = bytes.len() as u64 + 10_000;
        for scan_with in [scan_file, scan_file_pread] {
            let (scan, read) = scan_with(&file, asked, 3, &mut buf).unwrap();
            assert_eq!(read, bytes.len() as u64);
            assert_eq!(scan, scan_segment(&bytes, 3));
        }
    }
}
