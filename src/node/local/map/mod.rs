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
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use memmap2::Mmap;
#[cfg(target_os = "linux")]
use memmap2::MmapOptions;

#[cfg(target_os = "linux")]
mod registry;
#[cfg(target_os = "linux")]
mod sigbus;

#[cfg(target_os = "linux")]
pub(crate) use sigbus::{MappedWatch, ReplacedMark, mark, sigbus_pages_replaced};

/// Mapped bytes kept after a check (see the Linux one): no handler
/// replaces pages here, so none is ever lost that way.
#[cfg(not(target_os = "linux"))]
#[derive(Debug)]
pub(crate) struct MappedWatch;

/// Where a watch starts (nothing to count here).
#[cfg(not(target_os = "linux"))]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ReplacedMark;

/// Nothing is counted here.
#[cfg(not(target_os = "linux"))]
pub(crate) fn mark() -> ReplacedMark {
    ReplacedMark
}

#[cfg(not(target_os = "linux"))]
impl MappedWatch {
    /// A watch that never sees a loss.
    pub(crate) fn new(_mark: &ReplacedMark, _ranges: Vec<(usize, usize)>) -> Option<MappedWatch> {
        Some(MappedWatch)
    }

    /// Always true.
    pub(crate) fn intact(&self) -> bool {
        true
    }
}

/// Point reads of at least this many bytes use the mapping with the
/// default readahead (a large blob is read whole); smaller ones the one
/// advised random access.
const LARGE_READ_MIN: usize = 64 << 10;

pub(super) struct MapCache {
    /// Point reads under [`LARGE_READ_MIN`]: a mapping advised random
    /// access, made at the first such read.
    small: RwLock<Current>,
    /// Every other read: a mapping with the default readahead.
    large: RwLock<Current>,
}

/// One of a [`MapCache`]'s mappings: the `Bytes` reads slice, and the
/// mapping itself for advice (`None` while nothing is mapped).
#[derive(Default)]
struct Current {
    bytes: Bytes,
    map: Option<Arc<MappedSegment>>,
}

/// A shared mapping as the owner of a `Bytes`.
struct SharedSegment(Arc<MappedSegment>);

impl AsRef<[u8]> for SharedSegment {
    fn as_ref(&self) -> &[u8] {
        (*self.0).as_ref()
    }
}

impl MapCache {
    pub(super) fn new() -> Self {
        MapCache {
            small: RwLock::new(Current::default()),
            large: RwLock::new(Current::default()),
        }
    }

    /// Starts reading `start..end` of `file` (within `durable_len`, checked
    /// by the caller) into the page cache without waiting
    /// (`MADV_WILLNEED` on the mapping point reads use), when a point read
    /// of it would go through that mapping and a page of it is not in
    /// memory (`mincore`): the reads a degraded get makes of its source
    /// columns, hinted first, then wait for the device about once
    /// (docs/PERFORMANCE.md, "Cold degraded gets"). True when it hinted;
    /// false when the range was in memory already, or is not a point
    /// read's. A hint only: a failure is left to the read that follows.
    pub(super) fn prefetch(&self, file: &File, durable_len: u64, start: u64, end: u64) -> bool {
        let (Ok(start), Ok(end)) = (to_usize(start), to_usize(end)) else {
            return false;
        };
        if start >= end || end - start >= LARGE_READ_MIN {
            return false;
        }
        let map = {
            let current = self.small.read().unwrap_or_else(PoisonError::into_inner);
            if end <= current.bytes.len() {
                current.map.clone()
            } else {
                drop(current);
                match self.remap(&self.small, file, durable_len, end, true) {
                    Ok(Some(map)) => Some(map),
                    _ => None,
                }
            }
        };
        let Some(map) = map else {
            return false;
        };
        if map.resident(start, end) {
            return false;
        }
        let _ = map
            .map
            .advise_range(memmap2::Advice::WillNeed, start, end - start);
        true
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
            if end <= current.bytes.len() {
                return Ok(current.bytes.slice(start..end));
            }
        }
        if self.remap(cache, file, durable_len, end, random)?.is_none() {
            return copy(file, start, end);
        }
        let current = cache.read().unwrap_or_else(PoisonError::into_inner);
        Ok(current.bytes.slice(start..end))
    }

    /// The mapping point reads use (advised random access), as one slice of
    /// at most the first `durable_len` bytes of `file`: what
    /// `Node::mapped` hands a get to slice small blobs from. It may end
    /// before `durable_len` (point reads map the file again when they reach
    /// past it; this never does, so handing it out adds no mapping); the
    /// file is mapped here only when nothing is. `None` when nothing is
    /// durable or the file cannot be mapped (never a copy).
    ///
    /// # Errors
    /// As [`slice`](MapCache::slice).
    pub(super) fn whole_point(&self, file: &File, durable_len: u64) -> io::Result<Option<Bytes>> {
        let end = to_usize(durable_len)?;
        if end == 0 {
            return Ok(None);
        }
        {
            let current = self.small.read().unwrap_or_else(PoisonError::into_inner);
            if !current.bytes.is_empty() {
                return Ok(Some(current.bytes.slice(..end.min(current.bytes.len()))));
            }
        }
        if self
            .remap(&self.small, file, durable_len, end, true)?
            .is_none()
        {
            return Ok(None);
        }
        let current = self.small.read().unwrap_or_else(PoisonError::into_inner);
        Ok(
            (!current.bytes.is_empty())
                .then(|| current.bytes.slice(..end.min(current.bytes.len()))),
        )
    }

    /// Maps `file` again into `cache` (advised random access when `random`)
    /// if its mapping ends before `end`; the mapping that covers `end`, or
    /// `None` when the file cannot be mapped (reads then copy).
    ///
    /// # Errors
    /// As [`slice`](MapCache::slice).
    fn remap(
        &self,
        cache: &RwLock<Current>,
        file: &File,
        durable_len: u64,
        end: usize,
        random: bool,
    ) -> io::Result<Option<Arc<MappedSegment>>> {
        let mut current = cache.write().unwrap_or_else(PoisonError::into_inner);
        if end > current.bytes.len() {
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
                    let mapped = Arc::new(mapped);
                    *current = Current {
                        bytes: Bytes::from_owner(SharedSegment(Arc::clone(&mapped))),
                        map: Some(mapped),
                    };
                }
                None => return Ok(None),
            }
        }
        Ok(current.map.clone())
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

    /// Whether every page of bytes `start..end` (`start < end`, at most
    /// [`LARGE_READ_MIN`] bytes) is in memory now; false when that cannot
    /// be told.
    #[cfg(target_os = "linux")]
    fn resident(&self, start: usize, end: usize) -> bool {
        const PAGES_MAX: usize = 32;
        let page = sigbus::page_len();
        if page == 0 || start >= end || end > self.map.len() {
            return false;
        }
        let base = self.map.as_ptr() as usize;
        let first = (base + start) / page;
        let last = (base + end).div_ceil(page);
        let pages = last - first;
        let mut resident = [0u8; PAGES_MAX];
        if pages > PAGES_MAX {
            return false;
        }
        // The pages `first..last` overlap this mapping, alive for the call
        // (`&self`), whose start is page-aligned (mmap) and whose length
        // the kernel rounds up to whole pages.
        // SAFETY: mincore only reads page tables over that live range and
        // writes `pages` bytes into `resident`, which has room (checked).
        let rc = unsafe {
            libc::mincore(
                (first * page) as *mut libc::c_void,
                pages * page,
                resident.as_mut_ptr(),
            )
        };
        rc == 0 && resident[..pages].iter().all(|r| r & 1 == 1)
    }

    #[cfg(not(target_os = "linux"))]
    fn resident(&self, _start: usize, _end: usize) -> bool {
        false
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
