//! Recovery when a node opens: find every segment, drop segment files
//! that are empty. Each segment's scan for a torn tail (reported; the tail
//! stays on disk) is deferred to its first use ([`Segment::recover`]), or
//! done from a checkpoint's horizon on ([`Segment::recover_past`]): an open
//! that loads a checkpoint reads only what was written after it.
//!
//! Every segment is checked, not only the newest: the store may append to
//! more than one generation (compaction writes a new one while the active
//! one grows), so any of them can end in a torn write after a crash.
//!
//! Segments are read by [`super::scan`]: a file that shrinks while it is
//! read (only a foreign process could do that, the node holds its lock)
//! reads short instead of faulting, and what is missing is a tail like any
//! other; an unreadable sector fails the scan (and the use that needed it).

use std::fs::OpenOptions;
use std::path::Path;

use super::segment::{self, Segment};
use crate::{Error, Result};

/// Opens `generation`'s segment at `path`, its scan deferred; `None` if the
/// file was empty and was removed.
pub(super) fn recover(node_name: &str, dir: &Path, generation: u64) -> Result<Option<Segment>> {
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
    if file_len == 0 {
        // Created, never written: nothing to keep or report.
        drop(file);
        std::fs::remove_file(&path).map_err(|e| Error::io(context("removing empty"), e))?;
        return Ok(None);
    }
    Ok(Some(Segment::deferred(
        generation, path, file, file_len, node_name,
    )))
}
