//! The portable engine: `pwritev` until every byte is written, then
//! `fdatasync` (by the caller).

#![allow(unsafe_code, reason = "pwritev has no safe wrapper in std")]

use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;

use super::IOV_MAX;

/// Writes all of `bufs` back to back at `offset`, retrying short writes and
/// interruptions.
pub(in crate::node::local) fn write_all_at(
    file: &File,
    mut offset: u64,
    bufs: &[IoSlice<'_>],
) -> io::Result<()> {
    let mut storage: Vec<IoSlice<'_>> = bufs.to_vec();
    let mut slices: &mut [IoSlice<'_>] = &mut storage;
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        let count = slices.len().min(IOV_MAX);
        let file_offset = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        // Why this is sound: `IoSlice` is ABI-compatible with `iovec` on Unix (std
        // guarantees it); the first `count` slices are initialised and borrow
        // buffers that outlive this call; the kernel only reads them.
        // SAFETY: the conditions above hold.
        let written = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                slices.as_ptr().cast::<libc::iovec>(),
                count as libc::c_int,
                file_offset,
            )
        };
        if written < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        offset += written as u64;
        IoSlice::advance_slices(&mut slices, written as usize);
    }
    Ok(())
}
