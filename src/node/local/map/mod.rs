//! Zero-copy reads: a segment's durable bytes mapped with `memmap2` and
//! handed out as [`Bytes`] slices of the mapping.
//!
//! The current mapping is kept as one `Bytes` (built once with
//! `Bytes::from_owner`), so a read is a bounds check and a reference-count
//! increment: no copy, no allocation. When the segment has grown past the
//! mapping, a new mapping of the durable length replaces it; `Bytes` handed
//! out earlier keep the old mapping alive until they drop.
//!
//! A get's read of a small blob (`Node::read_point`, under
//! [`LARGE_READ_MIN`]) goes through a mapping advised random access: the
//! default read-around on a page-cache miss reads up to the device's
//! readahead (8 MiB on the VMs of docs/PERFORMANCE.md, "Open at 10^8
//! blobs"), about 3 ms per cold get instead of 0.1 ms. Every other read
//! (large blobs, entry tables, checkpoint columns: reads that walk a file)
//! goes through a second mapping of the same file with the default
//! readahead: under random advice they fault page by page (a full-scan
//! open of 10^8 blobs took 3x as long). Asking for a large read's range
//! with `MADV_WILLNEED` instead would cost every warm read a walk of its
//! pages (17 µs per MiB here). Scans map the file on their own.
//!
//! A mapped page can still become unreadable: the file may be truncated
//! behind the node's back, or the medium may fail. A load from such a page
//! raises SIGBUS; [`sigbus`] turns that into a page of zeros for the
//! engine's own mappings (registered in [`registry`] for as long as they
//! live), so the reader's checksum fails and the store reads degraded
//! instead of the process dying. What stays unprotected, by design:
//! - bytes of a `Bytes` (or a `Blob`) handed out before the file shrank
//!   read as zeros afterwards, with no error, if nobody checks them again;
//! - a page that fails after its bytes were verified reads as zeros the
//!   same way.

#![allow(unsafe_code, reason = "memory-mapping a file is unsafe in memmap2")]

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{PoisonError, RwLock};

use bytes::Bytes;
use memmap2::Mmap;
#[cfg(target_os = "linux")]
use memmap2::MmapOptions;

#[cfg(target_os = "linux")]
mod registry;
#[cfg(target_os = "linux")]
mod sigbus;

#[cfg(target_os = "linux")]
pub(crate) use sigbus::sigbus_pages_replaced;

/// Point reads of at least this many bytes use the mapping with the
/// default readahead (a large blob is read whole); smaller ones the one
/// advised random access.
const LARGE_READ_MIN: usize = 64 << 10;

pub(super) struct MapCache {
    /// Point reads under [`LARGE_READ_MIN`]: a mapping advised random
    /// access, made at the first such read.
    small: RwLock<Bytes>,
    /// Every other read: a mapping with the default readahead.
    large: RwLock<Bytes>,
}

impl MapCache {
    pub(super) fn new() -> Self {
        MapCache {
            small: RwLock::new(Bytes::new()),
            large: RwLock::new(Bytes::new()),
        }
    }

    /// Returns bytes `start..end` of `file`, which the caller has checked lie
    /// within `durable_len`, the file's durable (never rewritten) prefix;
    /// `point`: a get's read ([`LARGE_READ_MIN`]).
    ///
    /// # Errors
    /// `UnexpectedEof` when the file has become shorter than `end` (it was
    /// truncated behind the node's back); any error of `fstat`, `mmap` or
    /// `pread`.
    pub(super) fn slice(
        &self,
        file: &File,
        durable_len: u64,
        start: u64,
        end: u64,
        point: bool,
    ) -> io::Result<Bytes> {
        debug_assert!(start <= end && end <= durable_len);
        if start == end {
            return Ok(Bytes::new());
        }
        let (start, end) = (to_usize(start)?, to_usize(end)?);
        let random = point && end - start < LARGE_READ_MIN;
        let cache = if random { &self.small } else { &self.large };
        {
            let current = cache.read().unwrap_or_else(PoisonError::into_inner);
            if end <= current.len() {
                return Ok(current.slice(start..end));
            }
        }
        let mut current = cache.write().unwrap_or_else(PoisonError::into_inner);
        if end > current.len() {
            // Never map past the real end of the file: those pages would
            // fault on the first load.
            let file_len = file.metadata()?.len();
            let len = to_usize(durable_len.min(file_len))?;
            if end > len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the segment file is {file_len} bytes, shorter than its {durable_len} \
                         durable bytes: it was truncated behind the node's back"
                    ),
                ));
            }
            match MappedSegment::map(file, len)? {
                Some(mapped) => {
                    if random {
                        // Advice only: a failure changes how fast pages
                        // arrive, not what is read.
                        let _ = mapped.map.advise(memmap2::Advice::Random);
                    }
                    *current = Bytes::from_owner(mapped);
                }
                None => return copy(file, start, end),
            }
        }
        Ok(current.slice(start..end))
    }
}

/// Maps the first `len` bytes of `file` (fewer if the file is shorter) for
/// one scan, protected by the SIGBUS handler: a page that cannot be read
/// reads as zeros and counts in [`sigbus_pages_replaced`], so the caller
/// can tell a clean scan from one that saw such pages. `None` when nothing
/// is mapped (an empty file, or a mapping that cannot be protected).
///
/// The caller must drop the mapping before it truncates the file (recovery
/// cuts torn tails only after its scan).
///
/// # Errors
/// Any error of `fstat` or `mmap`.
#[cfg(target_os = "linux")]
pub(super) fn map_for_scan(file: &File, len: u64) -> io::Result<Option<impl AsRef<[u8]>>> {
    let len = to_usize(len.min(file.metadata()?.len()))?;
    if len == 0 {
        return Ok(None);
    }
    MappedSegment::map(file, len)
}

/// A mapping of a segment file that the SIGBUS handler repairs for as long
/// as it lives: the owner handed to `Bytes::from_owner`.
struct MappedSegment {
    // Field order is drop order: the range is unregistered before it is
    // unmapped, so the handler never claims an address that the kernel
    // may have reused for another mapping.
    #[cfg(target_os = "linux")]
    _registration: sigbus::Registration,
    map: Mmap,
}

impl MappedSegment {
    /// Maps the first `len` (> 0) bytes of `file`; `None` when the mapping
    /// cannot be protected (no handler, registry full).
    #[cfg(target_os = "linux")]
    fn map(file: &File, len: usize) -> io::Result<Option<MappedSegment>> {
        // Why this is sound: the mapping covers only the durable prefix of a
        // segment file, checked against the file's size just now. Within a
        // node's lifetime that prefix is never rewritten or truncated by the
        // engine (appends go past it; a failed append truncates only back to
        // it; removal unlinks the file, which keeps the mapped pages alive);
        // recovery's scan maps the whole file and drops the mapping before
        // it cuts a torn tail; the lock file keeps other geoshard processes
        // out. Only a foreign
        // truncation or a media error can make a page unreadable, and the
        // registered SIGBUS handler turns such a page into zeros (or the
        // mapping is dropped unused below if it cannot be registered).
        // SAFETY: the conditions above hold.
        let map = unsafe { MmapOptions::new().len(len).map(file)? };
        let Some(registration) = sigbus::register(map.as_ptr() as usize, map.len()) else {
            warn_unprotected();
            return Ok(None);
        };
        Ok(Some(MappedSegment {
            _registration: registration,
            map,
        }))
    }

    /// Without the SIGBUS handler (Linux only) a mapping is never safe to
    /// hand out: every read copies.
    #[cfg(not(target_os = "linux"))]
    fn map(_file: &File, _len: usize) -> io::Result<Option<MappedSegment>> {
        warn_unprotected();
        Ok(None)
    }
}

impl AsRef<[u8]> for MappedSegment {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

fn warn_unprotected() {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "a segment mapping cannot be protected from SIGBUS (no handler, or too many \
             mappings alive); such reads copy through pread instead"
        );
    }
}

/// Reads `start..end` of `file` into a new buffer: the way out when a
/// mapping cannot be protected.
fn copy(file: &File, start: usize, end: usize) -> io::Result<Bytes> {
    let mut bytes = vec![0u8; end - start];
    file.read_exact_at(&mut bytes, start as u64)?;
    Ok(Bytes::from(bytes))
}

/// Logs once per change when the SIGBUS handler replaced pages since the
/// last time this was called: a read is about to return data, and earlier
/// ones may have read zeros. One relaxed load when nothing changed.
pub(super) fn warn_if_pages_were_replaced() {
    #[cfg(target_os = "linux")]
    {
        static SEEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let replaced = sigbus_pages_replaced();
        if replaced != SEEN.load(Ordering::Relaxed) {
            let before = SEEN.swap(replaced, Ordering::Relaxed);
            if before < replaced {
                tracing::warn!(
                    pages = replaced - before,
                    total = replaced,
                    "mapped segment pages could no longer be read (file truncated or media \
                     error) and read as zeros; reads of them fail their checksum"
                );
            }
        }
    }
}

fn to_usize(value: u64) -> io::Result<usize> {
    usize::try_from(value)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment larger than memory"))
}
