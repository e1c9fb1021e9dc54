//! Little-endian field access for the decoders and encoders of this module.
//!
//! The reader never indexes raw input: every read goes through `get()` and
//! fails with a typed error when the bytes run out, so hostile input cannot
//! make a decoder panic.

use crate::{Error, Result};

/// Size in bytes of each fixed-width field kind, so record layouts are built
/// from named sizes rather than bare numbers.
pub(crate) const U8_LEN: usize = 1;
pub(crate) const U16_LEN: usize = 2;
pub(crate) const U32_LEN: usize = 4;
pub(crate) const U64_LEN: usize = 8;
pub(crate) const MAGIC_LEN: usize = 4;

/// A bounds-checked cursor over untrusted bytes.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Reader {
            bytes,
            pos: 0,
            what,
        }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(len)
            .ok_or_else(|| corrupt(self.what, "length overflows"))?;
        let slice = self.bytes.get(self.pos..end).ok_or_else(|| {
            corrupt(
                self.what,
                format!(
                    "truncated: needs {len} bytes at {}, has {}",
                    self.pos,
                    self.remaining()
                ),
            )
        })?;
        self.pos = end;
        Ok(slice)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let slice = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<U8_LEN>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array::<U16_LEN>()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array::<U32_LEN>()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array::<U64_LEN>()?))
    }
}

/// Reads a little-endian u32 at `pos` without a cursor (for peeking at a
/// length field before the whole record is known to be there).
pub(crate) fn peek_u32(bytes: &[u8], pos: usize) -> Option<u32> {
    let end = pos.checked_add(U32_LEN)?;
    let slice = bytes.get(pos..end)?;
    let mut out = [0u8; U32_LEN];
    out.copy_from_slice(slice);
    Some(u32::from_le_bytes(out))
}

pub(crate) fn corrupt(what: &'static str, reason: impl Into<String>) -> Error {
    Error::Corrupt {
        location: what.to_string(),
        reason: reason.into(),
    }
}

pub(crate) fn put_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_le_bytes());
}

pub(crate) fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

pub(crate) fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reports_truncation_instead_of_panicking() {
        let bytes = [1u8, 2, 3];
        let mut reader = Reader::new(&bytes, "test");
        assert_eq!(reader.u16().ok(), Some(0x0201));
        assert!(matches!(reader.u32(), Err(Error::Corrupt { .. })));
        assert_eq!(reader.u8().ok(), Some(3));
        assert!(reader.u8().is_err());
        assert_eq!(peek_u32(&bytes, 0), None);
        assert_eq!(peek_u32(&[1, 0, 0, 0], 0), Some(1));
        assert_eq!(peek_u32(&bytes, usize::MAX), None);
    }
}
