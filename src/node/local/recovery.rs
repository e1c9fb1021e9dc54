//! Recovery when a node opens: scan every segment, find torn tails (and
//! report them; they stay on disk), drop segment files that are empty.
//!
//! Every segment is checked, not only the newest: the store may append to
//! more than one generation (compaction writes a new one while the active
//! one grows), so any of them can end in a torn write after a crash.
//!
//! Segments are read by [`super::scan`]: a file that shrinks while it is
//! read (only a foreign process could do that, the node holds its lock)
//! reads short instead of faulting, and what is missing is a tail like any
//! other; an unreadable sector fails the open.

use std::fs::OpenOptions;
use std::path::Path;

use super::scan::scan_file;
use super::segment::{self, Segment};
use crate::{Error, Result};

/// Opens and recovers `generation`'s segment at `path`; `None` if the file
/// was empty and was removed. `buf` is scratch space, reused
/// across the segments of a node.
pub(super) fn recover(
    node_name: &str,
    dir: &Path,
    generation: u64,
    buf: &mut Vec<u8>,
) -> Result<Option<Segment>> {
    let path = dir.join(segment::file_name(generation));
    let context = |what: &str| format!("{what} segment {} of node {node_name}", path.display());
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(context("opening"), e))?;
    let file_len = file
        .metadata()
        .map_err(|e| Error::io(context("measuring"), e))?
        .len();
    // An unreadable sector fails the open rather than being taken for a
    // torn tail: cutting it off would throw away acknowledged records.
    // A file that reads shorter than its length (cut by another process
    // under the lock) scans as the bytes it holds; the rest is a tail.
    let (scan, _read_len) = scan_file(&file, file_len, generation, buf)
        .map_err(|e| Error::io(context("reading"), e))?;
    for damage in &scan.damaged {
        tracing::warn!(
            node = node_name,
            generation,
            offset = damage.offset,
            len = damage.len,
            reason = %damage.reason,
            "damaged bytes in a segment; skipped and reported for repair"
        );
    }
    if file_len == 0 {
        // Created, never written: nothing to keep or report.
        drop(file);
        std::fs::remove_file(&path).map_err(|e| Error::io(context("removing empty"), e))?;
        return Ok(None);
    }
    // What follows the last intact record is a torn tail (or a record that
    // rotted): it stays on disk, outside the durable bytes, and every open
    // reports it until the segment is removed or appends overwrite it.
    // Cutting it would destroy the evidence of how long it was: an open
    // that crashed after the cut would leave the next open seeing a node
    // with no tail, and a record-sized cut (which is no evidence,
    // docs/DURABILITY.md, D5) taken for a column that was never written.
    // A segment with bytes but no intact record is kept the same way.
    let mut truncated = 0;
    if file_len > scan.intact_len
        && crate::mutation::enabled(crate::mutation::Mutation::CutTornTails)
    {
        file.set_len(scan.intact_len)
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io(context("truncating the torn tail of"), e))?;
    }
    if file_len > scan.intact_len {
        truncated = file_len - scan.intact_len;
        tracing::warn!(
            node = node_name,
            generation,
            tail = truncated,
            reason = scan.tail_reason.as_deref().unwrap_or(""),
            "a torn tail after the last intact record of a segment; left in place, outside the durable bytes"
        );
    }
    // Appends go after the tail (never over it: the next open must still
    // find it, now as damage followed by intact records).
    let append_at = if crate::mutation::enabled(crate::mutation::Mutation::CutTornTails) {
        scan.intact_len
    } else {
        file_len
    };
    let segment = Segment::new(
        generation,
        path,
        file,
        scan.intact_len,
        truncated,
        append_at,
        true,
    );
    segment.cache_scan(scan);
    Ok(Some(segment))
}
