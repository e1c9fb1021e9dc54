//! Zero-copy reads: a segment's durable bytes mapped with `memmap2` and
//! handed out as [`Bytes`] slices of the mapping.
//!
//! The current mapping is kept as one `Bytes` (built once with
//! `Bytes::from_owner`), so a read is a bounds check and a reference-count
//! increment: no copy, no allocation. When the segment has grown past the
//! mapping, a new mapping of the durable length replaces it; `Bytes` handed
//! out earlier keep the old mapping alive until they drop.

#![allow(unsafe_code, reason = "memory-mapping a file is unsafe in memmap2")]

use std::fs::File;
use std::io;
use std::sync::{PoisonError, RwLock};

use bytes::Bytes;
use memmap2::MmapOptions;

pub(super) struct MapCache {
    current: RwLock<Bytes>,
}

impl MapCache {
    pub(super) fn new() -> Self {
        MapCache {
            current: RwLock::new(Bytes::new()),
        }
    }

    /// Returns bytes `start..end` of `file`, which the caller has checked lie
    /// within `durable_len`, the file's durable (never rewritten) prefix.
    pub(super) fn slice(
        &self,
        file: &File,
        durable_len: u64,
        start: u64,
        end: u64,
    ) -> io::Result<Bytes> {
        debug_assert!(start <= end && end <= durable_len);
        if start == end {
            return Ok(Bytes::new());
        }
        let (start, end) = (to_usize(start)?, to_usize(end)?);
        {
            let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
            if end <= current.len() {
                return Ok(current.slice(start..end));
            }
        }
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if end > current.len() {
            let len = to_usize(durable_len)?;
            // Why this is sound: the mapping covers only the durable prefix of a segment
            // file. Within a node's lifetime that prefix is never rewritten or
            // truncated (appends go past it; a failed append truncates only
            // back to it; removal unlinks the file, which keeps the mapped
            // pages alive). The node's lock file keeps other geoshard
            // processes out; a foreign process truncating the file would be
            // the only way to fault (SIGBUS), as for any mmap-based store.
            // SAFETY: the conditions above hold.
            let map = unsafe { MmapOptions::new().len(len).map(file)? };
            *current = Bytes::from_owner(map);
        }
        Ok(current.slice(start..end))
    }
}

fn to_usize(value: u64) -> io::Result<usize> {
    usize::try_from(value)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment larger than memory"))
}

