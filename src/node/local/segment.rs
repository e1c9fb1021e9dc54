//! One segment file: its durable length, its writer (append + sync), its
//! zero-copy reader and its scanner.

use std::fs::File;
use std::io::IoSlice;
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use super::io::{Engine, WriteAndSync, WriteFailure};
use super::map::MapCache;
use super::scan::{scan_file, scan_file_past};
use crate::format::{SEGMENT_HEADER_LEN, SegmentScan, encode_segment_header};
use crate::node::{RecordLocation, RecordRef};
use crate::{Error, Result};

/// File name of `generation`'s segment.
pub(super) fn file_name(generation: u64) -> String {
    format!("{generation:016x}.{SEGMENT_EXTENSION}")
}

pub(super) const SEGMENT_EXTENSION: &str = "segment";

/// The generation a file name belongs to, if it names a segment.
pub(super) fn parse_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(SEGMENT_EXTENSION)?.strip_suffix('.')?;
    if stem.len() != 16 {
        return None;
    }
    u64::from_str_radix(stem, 16).ok()
}

pub(super) struct Segment {
    pub(super) generation: u64,
    pub(super) path: PathBuf,
    file: File,
    /// Bytes that are durable and may be read, once `recovered`. Only
    /// grows while open.
    durable_len: AtomicU64,
    /// Bytes past the last intact record that recovery found (a torn tail),
    /// once `recovered`.
    truncated_tail_bytes: AtomicU64,
    /// Set once the segment's bytes were scanned: at the first use after
    /// the node opened (or from a checkpoint's horizon, see
    /// [`Segment::recover_past`]), or at creation.
    recovered: AtomicBool,
    /// What the deferred scan needs; taken (and the scan done) under this
    /// lock.
    deferred: Mutex<Option<Deferred>>,
    writer: Mutex<WriterState>,
    map: MapCache,
    /// The scan recovery made, handed to the first `scan` if nothing was
    /// appended since (saves the store a second pass over every payload).
    recovered_scan: Mutex<Option<SegmentScan>>,
}

/// A segment found when the node opened, not scanned yet.
struct Deferred {
    node_name: String,
    /// The file's length when the node opened.
    file_len: u64,
}

struct WriterState {
    /// End of the file as far as appends know: equal to `durable_len`
    /// between appends.
    len: u64,
    /// Encoded headers of the batch being written (reused).
    scratch: Vec<u8>,
    /// Where each record's header is in `scratch` (reused).
    header_ranges: Vec<Range<usize>>,
    /// Whether the directory entry of this file is known durable.
    entry_durable: bool,
}

/// What an append needs from its node besides the records.
pub(super) struct AppendContext<'a> {
    pub(super) engine: &'a Engine,
    pub(super) dir: &'a Path,
    pub(super) node_name: &'a str,
    /// Set when a failure fenced the node; checked under the writer lock so
    /// no append starts after a concurrent one fenced the node.
    pub(super) fenced: &'a std::sync::atomic::AtomicBool,
}

/// Why an append failed, and whether the node must be fenced.
pub(super) struct AppendFailure {
    pub(super) error: Error,
    pub(super) fence: bool,
}

impl Segment {
    /// A new segment, empty (`Prepared::finish` publishes what appends
    /// write).
    pub(super) fn new(generation: u64, path: PathBuf, file: File) -> Segment {
        Segment::with_state(generation, path, file, 0, None, false)
    }

    /// A segment of `file_len` bytes found when its node opened, scanned
    /// at its first use ([`Segment::recover`]). Appends go at the end of
    /// the file: a tail is never written over, so the next open still
    /// sees it, as damage.
    pub(super) fn deferred(
        generation: u64,
        path: PathBuf,
        file: File,
        file_len: u64,
        node_name: &str,
    ) -> Segment {
        let deferred = Deferred {
            node_name: node_name.to_string(),
            file_len,
        };
        Segment::with_state(generation, path, file, file_len, Some(deferred), true)
    }

    fn with_state(
        generation: u64,
        path: PathBuf,
        file: File,
        append_at: u64,
        deferred: Option<Deferred>,
        entry_durable: bool,
    ) -> Segment {
        Segment {
            generation,
            path,
            file,
            durable_len: AtomicU64::new(0),
            truncated_tail_bytes: AtomicU64::new(0),
            recovered: AtomicBool::new(deferred.is_none()),
            deferred: Mutex::new(deferred),
            writer: Mutex::new(WriterState {
                len: append_at,
                scratch: Vec::new(),
                header_ranges: Vec::new(),
                entry_durable,
            }),
            map: MapCache::new(),
            recovered_scan: Mutex::new(None),
        }
    }

    /// Scans a segment found at open, once (docs/DURABILITY.md, D5): what
    /// follows the last intact record is a torn tail (or a record that
    /// rotted), reported and left on disk, outside the durable bytes. The
    /// scan is kept for the first [`scan`](Segment::scan).
    ///
    /// # Errors
    /// A read error (an unreadable sector is never taken for a torn tail:
    /// cutting it off would throw away acknowledged records); the segment
    /// stays unscanned, and its next use tries again.
    pub(super) fn recover(&self) -> std::io::Result<()> {
        if self.recovered.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut deferred = self.deferred.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(found) = deferred.as_ref() else {
            return Ok(());
        };
        let mut buf = Vec::new();
        // A file that reads shorter than its length (cut by another process
        // under the lock) scans as the bytes it holds; the rest is a tail.
        let (scan, _read_len) = scan_file(&self.file, found.file_len, self.generation, &mut buf)?;
        self.recovered_from(found, &scan)?;
        self.cache_scan(scan);
        *deferred = None;
        self.recovered.store(true, Ordering::Release);
        Ok(())
    }

    /// [`recover`](Segment::recover) from byte `from` on, where the caller
    /// knows an intact record ended (a checkpoint's horizon, C4): the bytes
    /// before it are trusted and not read. Returns the records from `from`
    /// on; `None` (and the segment still unscanned) when it was scanned
    /// already, or holds no record boundary at `from`.
    ///
    /// # Errors
    /// As `recover`.
    pub(super) fn recover_past(&self, from: u64) -> std::io::Result<Option<SegmentScan>> {
        if self.recovered.load(Ordering::Acquire) {
            return Ok(None);
        }
        let mut deferred = self.deferred.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(found) = deferred.as_ref() else {
            return Ok(None);
        };
        let mut buf = Vec::new();
        let (scan, _read_len) =
            scan_file_past(&self.file, found.file_len, self.generation, from, &mut buf)?;
        let Some(scan) = scan else {
            return Ok(None);
        };
        self.recovered_from(found, &scan)?;
        *deferred = None;
        self.recovered.store(true, Ordering::Release);
        Ok(Some(scan))
    }

    /// Publishes what recovery's `scan` of the segment `found` found.
    fn recovered_from(&self, found: &Deferred, scan: &SegmentScan) -> std::io::Result<()> {
        let (node_name, file_len, generation) = (&found.node_name, found.file_len, self.generation);
        for damage in &scan.damaged {
            tracing::warn!(
                node = %node_name,
                generation,
                offset = damage.offset,
                len = damage.len,
                reason = %damage.reason,
                "damaged bytes in a segment; skipped and reported for repair"
            );
        }
        // The tail stays on disk: cutting it would destroy the evidence of
        // how long it was: an open that crashed after the cut would leave
        // the next open seeing a node with no tail, and a record-sized cut
        // (which is no evidence, docs/DURABILITY.md, D5) taken for a
        // column that was never written. A segment with bytes but no
        // intact record is kept the same way.
        if file_len > scan.intact_len {
            if crate::mutation::enabled(crate::mutation::Mutation::CutTornTails) {
                self.file.set_len(scan.intact_len)?;
                self.file.sync_all()?;
                self.writer
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .len = scan.intact_len;
            }
            tracing::warn!(
                node = %node_name,
                generation,
                tail = file_len - scan.intact_len,
                reason = scan.tail_reason.as_deref().unwrap_or(""),
                "a torn tail after the last intact record of a segment; left in place, outside the durable bytes"
            );
        }
        self.truncated_tail_bytes
            .store(file_len.saturating_sub(scan.intact_len), Ordering::Release);
        self.durable_len.store(scan.intact_len, Ordering::Release);
        Ok(())
    }

    /// Whether the segment is listed by `generations`: it has durable bytes
    /// or a torn tail (a segment not scanned yet: any bytes).
    pub(super) fn listed(&self) -> bool {
        if let Some(found) = self
            .deferred
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            return found.file_len > 0;
        }
        self.durable_len.load(Ordering::Acquire) > 0
            || self.truncated_tail_bytes.load(Ordering::Acquire) > 0
    }

    /// Bytes the segment holds: its durable bytes, or the file's length
    /// when it was not scanned yet.
    pub(super) fn len_hint(&self) -> u64 {
        self.deferred
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or_else(|| self.durable_len.load(Ordering::Acquire), |d| d.file_len)
    }

    /// Bytes of a torn tail recovery found (see [`Segment::recover`]).
    ///
    /// # Errors
    /// As `recover`.
    pub(super) fn truncated_tail_bytes(&self) -> std::io::Result<u64> {
        self.recover()?;
        Ok(self.truncated_tail_bytes.load(Ordering::Acquire))
    }

    fn cache_scan(&self, scan: SegmentScan) {
        *self
            .recovered_scan
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(scan);
    }

    /// Scans the durable bytes (or returns recovery's scan, once), through
    /// [`super::scan`]: a file that was truncated behind the node's back
    /// reads short, and its missing durable bytes are the damaged tail
    /// (returned length minus `intact_len`) with a reason that says so.
    pub(super) fn scan(&self) -> std::io::Result<(SegmentScan, u64)> {
        let durable_len = self.durable_len()?;
        let cached = self
            .recovered_scan
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(scan) = cached
            && scan.intact_len == durable_len
        {
            return Ok((scan, durable_len));
        }
        let mut window = Vec::new();
        let (mut scan, read_len) =
            scan_file(&self.file, durable_len, self.generation, &mut window)?;
        if read_len < durable_len {
            let shortfall = format!(
                "the segment file ends at byte {read_len}, short of its {durable_len} durable \
                 bytes (truncated behind the node's back)"
            );
            scan.tail_reason = Some(match scan.tail_reason.take() {
                Some(reason) => format!("{shortfall}; {reason}"),
                None => shortfall,
            });
        }
        Ok((scan, durable_len))
    }

    /// The durable bytes (the segment is scanned first if it was not).
    ///
    /// # Errors
    /// As [`recover`](Segment::recover).
    pub(super) fn durable_len(&self) -> std::io::Result<u64> {
        self.recover()?;
        Ok(self.durable_len.load(Ordering::Acquire))
    }

    /// Reads `start..end` of the durable bytes (the caller checked bounds);
    /// `point`: a get's read (see `MapCache::slice`).
    pub(super) fn read(&self, start: u64, end: u64, point: bool) -> std::io::Result<Bytes> {
        self.map
            .slice(&self.file, self.durable_len()?, start, end, point)
    }

    /// The durable bytes as one mapped `Bytes` (see `MapCache::whole_point`);
    /// `None` before the segment's deferred scan ran (it reads the whole
    /// file: never here) or when nothing can be mapped.
    pub(super) fn mapped(&self) -> Option<Bytes> {
        if !self.recovered.load(Ordering::Acquire) {
            return None;
        }
        let durable_len = self.durable_len.load(Ordering::Acquire);
        self.map.whole_point(&self.file, durable_len).ok().flatten()
    }

    /// Starts reading `start..end` of the durable bytes (the caller checked
    /// bounds) if a point read of it would miss the page cache; true when
    /// it did (see `MapCache::prefetch`).
    pub(super) fn prefetch(&self, start: u64, end: u64) -> bool {
        self.durable_len()
            .is_ok_and(|durable_len| self.map.prefetch(&self.file, durable_len, start, end))
    }

    /// Appends already validated records and syncs them with `engine`.
    pub(super) fn append(
        &self,
        context: &AppendContext<'_>,
        records: &[RecordRef<'_>],
    ) -> Result<Vec<RecordLocation>, AppendFailure> {
        let prepared = self.prepare(context, records)?;
        let bufs = prepared.bufs();
        let result = context
            .engine
            .write_and_sync(&self.file, prepared.start, &bufs);
        drop(bufs);
        prepared.finish(context, result)
    }

    /// First half of an append: takes the writer lock, encodes the headers
    /// and works out where every record goes. The writes happen in between
    /// (here or in a submission shared with other segments), then
    /// [`Prepared::finish`].
    pub(super) fn prepare<'s, 'r>(
        &'s self,
        context: &AppendContext<'_>,
        records: &'r [RecordRef<'r>],
    ) -> Result<Prepared<'s, 'r>, AppendFailure> {
        // Scanned before the first append: its tail is found (and zeroed
        // below) before records go after it.
        self.recover().map_err(|source| AppendFailure {
            error: Error::io(
                format!(
                    "scanning node {} segment {} before appending",
                    context.node_name,
                    self.path.display()
                ),
                source,
            ),
            fence: false,
        })?;
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if context.fenced.load(Ordering::Acquire) {
            return Err(AppendFailure {
                error: Error::NodeFenced {
                    node: context.node_name.to_string(),
                },
                fence: false,
            });
        }
        self.zero_torn_tail(context, writer.len)?;
        let start = writer.len;
        let writes_segment_header = start == 0;
        let WriterState {
            scratch,
            header_ranges,
            ..
        } = &mut *writer;
        scratch.clear();
        header_ranges.clear();
        if writes_segment_header {
            scratch.extend_from_slice(&encode_segment_header(self.generation));
        }
        let mut locations = Vec::with_capacity(records.len());
        let mut position = start + scratch.len() as u64;
        for record in records {
            let header_start = scratch.len();
            record
                .header
                .encode_into(scratch)
                .map_err(|error| AppendFailure {
                    error,
                    fence: false,
                })?;
            position += (scratch.len() - header_start) as u64;
            header_ranges.push(header_start..scratch.len());
            locations.push(RecordLocation {
                generation: self.generation,
                offset: position,
                len: record.payload.len() as u32,
            });
            position += record.payload.len() as u64;
        }
        Ok(Prepared {
            segment: self,
            writer,
            records,
            locations,
            writes_segment_header,
            start,
            end: position,
        })
    }

    /// Before the first append after a torn tail: zeros over the tail (up
    /// to `append_at`, where the append goes), synced with the append. The
    /// next open then finds damage of the tail's length followed by the new
    /// records: still no evidence for the columns the tail may have held
    /// (docs/DURABILITY.md, "Evidence"), and no header in the tail whose
    /// declared length could make the scanner skip the new records.
    fn zero_torn_tail(
        &self,
        context: &AppendContext<'_>,
        append_at: u64,
    ) -> Result<(), AppendFailure> {
        use std::os::unix::fs::FileExt;
        // Recovered by `prepare` before the writer lock was taken.
        let durable_len = self.durable_len.load(Ordering::Acquire);
        if append_at <= durable_len {
            return Ok(());
        }
        let zeros = vec![0u8; (append_at - durable_len).min(1 << 20) as usize];
        let mut at = durable_len;
        while at < append_at {
            let len = (append_at - at).min(zeros.len() as u64) as usize;
            self.file
                .write_all_at(&zeros[..len], at)
                .map_err(|source| AppendFailure {
                    error: Error::io(
                        format!(
                            "zeroing the torn tail of node {} segment {}",
                            context.node_name,
                            self.path.display()
                        ),
                        source,
                    ),
                    fence: true,
                })?;
            at += len as u64;
        }
        Ok(())
    }

    pub(super) fn file(&self) -> &File {
        &self.file
    }

    /// Fails (and fences) when the file has no name any more: a node
    /// directory deleted under a running node leaves its open segments
    /// taking writes and syncs into unlinked files that vanish on close, so
    /// nothing synced there may count as durable. One `fstat` per append.
    fn check_linked(&self, context: &AppendContext<'_>) -> Result<(), AppendFailure> {
        let metadata = self.file.metadata().map_err(|source| AppendFailure {
            error: Error::io(
                format!(
                    "checking segment {} of node {} after an append",
                    self.path.display(),
                    context.node_name
                ),
                source,
            ),
            fence: true,
        })?;
        if metadata.nlink() == 0 {
            return Err(AppendFailure {
                error: Error::Unavailable {
                    node: context.node_name.to_string(),
                    reason: format!(
                        "segment file {} was removed (the node directory is gone)",
                        self.path.display()
                    ),
                },
                fence: true,
            });
        }
        Ok(())
    }
}

/// An append between [`Segment::prepare`] and [`Prepared::finish`]: holds
/// the segment's writer lock, so nothing else writes to the segment.
pub(super) struct Prepared<'s, 'r> {
    segment: &'s Segment,
    writer: MutexGuard<'s, WriterState>,
    records: &'r [RecordRef<'r>],
    locations: Vec<RecordLocation>,
    writes_segment_header: bool,
    /// Where the batch starts: the durable end of the segment.
    pub(super) start: u64,
    end: u64,
}

impl Prepared<'_, '_> {
    pub(super) fn segment(&self) -> &Segment {
        self.segment
    }

    /// The buffers to write back to back at `start`: segment header (for a
    /// new file), then each record's header and payload.
    pub(super) fn bufs(&self) -> Vec<IoSlice<'_>> {
        let scratch = &self.writer.scratch;
        let mut bufs: Vec<IoSlice<'_>> = Vec::with_capacity(1 + self.records.len() * 2);
        if self.writes_segment_header {
            bufs.push(IoSlice::new(
                scratch.get(..SEGMENT_HEADER_LEN).unwrap_or_default(),
            ));
        }
        for (record, range) in self.records.iter().zip(&self.writer.header_ranges) {
            bufs.push(IoSlice::new(scratch.get(range.clone()).unwrap_or_default()));
            if !record.payload.is_empty() {
                bufs.push(IoSlice::new(record.payload));
            }
        }
        bufs
    }

    /// Second half of an append: cleans up after a failed write (or says
    /// to fence), or checks that the file still has a name and publishes
    /// the new durable length.
    pub(super) fn finish(
        mut self,
        context: &AppendContext<'_>,
        result: Result<(), WriteFailure>,
    ) -> Result<Vec<RecordLocation>, AppendFailure> {
        let segment = self.segment;
        let context_text = || {
            format!(
                "appending {} records to node {} segment {}",
                self.records.len(),
                context.node_name,
                segment.path.display()
            )
        };
        match result {
            Ok(()) => {}
            Err(WriteFailure::Write(source)) => {
                // Cut the partial batch off so the next append starts at the
                // durable end; if even that fails the file's tail is unknown
                // and the node must stop writing.
                let fence = segment.file.set_len(self.start).is_err();
                return Err(AppendFailure {
                    error: Error::io(context_text(), source),
                    fence,
                });
            }
            Err(WriteFailure::Sync(source)) => {
                // After a failed fdatasync the kernel may have dropped the
                // dirty pages: what is on disk is unknown until the next
                // open scans it.
                return Err(AppendFailure {
                    error: Error::io(context_text(), source),
                    fence: true,
                });
            }
        }
        segment.check_linked(context)?;
        if !self.writer.entry_durable {
            super::fs::sync_dir(context.dir).map_err(|source| AppendFailure {
                error: Error::io(context_text(), source),
                fence: true,
            })?;
            self.writer.entry_durable = true;
        }
        self.writer.len = self.end;
        segment.durable_len.store(self.end, Ordering::Release);
        Ok(std::mem::take(&mut self.locations))
    }
}
