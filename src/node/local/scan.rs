//! Whole-segment reads for scans and recovery: positional reads (`pread`)
//! into a caller's reusable buffer, not the memory map.
//!
//! These passes read every byte of a segment once, so a copy costs little
//! next to the checksums, and `pread` fails politely where a mapping would
//! fault: a file shorter than expected reads short (end of file), a failing
//! sector returns EIO.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Bytes asked of the kernel per `pread`.
const READ_CHUNK_LEN: usize = 1 << 20;

/// Reads the first `len` bytes of `file` into `buf` (cleared first; its
/// allocation is reused). Stops early where the file ends: `buf.len()` is
/// then what the file really held, less than `len`.
///
/// # Errors
/// Any read error but an interruption (which is retried), e.g. EIO.
pub(super) fn read_prefix(file: &File, len: u64, buf: &mut Vec<u8>) -> io::Result<()> {
    let len = usize::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment larger than memory"))?;
    buf.clear();
    buf.resize(len, 0);
    let mut filled = 0;
    while filled < len {
        let chunk_end = len.min(filled.saturating_add(READ_CHUNK_LEN));
        let Some(chunk) = buf.get_mut(filled..chunk_end) else {
            break;
        };
        match file.read_at(chunk, filled as u64) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    buf.truncate(filled);
    Ok(())
}
