//! `Blob`: what `get` returns.
//!
//! A small blob lives whole inside one data column, so a healthy read is one
//! `Bytes` slice of a node's mmap'd segment: no copy. A large blob was cut into
//! parts across columns (and stripes); it comes back as a chain of such slices,
//! and only [`Blob::to_bytes`] on a split blob copies.

use std::io;

use bytes::{Buf, Bytes, BytesMut};

/// The value of a key, as one or more `Bytes` chunks that usually borrow the
/// store's memory-mapped segments.
///
/// `Blob` implements [`bytes::Buf`] and [`std::io::Read`], so it can be
/// consumed like any byte stream; reading advances it.
///
/// # Example
///
/// ```
/// use bytes::{Buf, Bytes};
/// use geoshard::Blob;
///
/// let blob = Blob::from_chunks(vec![Bytes::from_static(b"hello "), Bytes::from_static(b"world")]);
/// assert_eq!(blob.len(), 11);
/// assert_eq!(blob.chunks().len(), 2);
/// assert_eq!(&blob.to_bytes()[..], b"hello world");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Blob {
    /// The common case, a blob in one chunk, needs no allocation: `one`
    /// holds it and `chunks` stays empty.
    one: Option<Bytes>,
    chunks: Vec<Bytes>,
    /// Index of the first chunk not yet fully consumed through `Buf`/`Read`.
    head: usize,
    /// Bytes remaining across `chunks[head..]`.
    remaining: usize,
}

impl Blob {
    /// A blob made of the given chunks, in order. Empty chunks are dropped.
    pub fn from_chunks(chunks: Vec<Bytes>) -> Blob {
        let mut chunks: Vec<Bytes> = chunks.into_iter().filter(|c| !c.is_empty()).collect();
        if chunks.len() <= 1 {
            return Blob::from(chunks.pop().unwrap_or_default());
        }
        let remaining = chunks.iter().map(Bytes::len).sum();
        Blob {
            one: None,
            chunks,
            head: 0,
            remaining,
        }
    }

    /// Length in bytes of what is left to read (the whole blob until it is
    /// read through `Buf` or `Read`).
    pub fn len(&self) -> usize {
        self.remaining
    }

    /// True when no bytes are left.
    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }

    /// The remaining bytes as one `Bytes`. Free (no copy) when the blob is a
    /// single chunk; copies when it is split over several.
    pub fn to_bytes(&self) -> Bytes {
        match self.chunks() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let mut out = BytesMut::with_capacity(self.remaining);
                for chunk in many {
                    out.extend_from_slice(chunk);
                }
                out.freeze()
            }
        }
    }

    /// The remaining bytes as one `Bytes`, consuming the blob: as
    /// [`to_bytes`](Blob::to_bytes), and for a blob in one chunk (every
    /// healthy read of a whole blob) that chunk itself, without taking
    /// another reference to it.
    ///
    /// ```
    /// use bytes::{Buf, Bytes};
    /// use geoshard::Blob;
    ///
    /// let mut blob = Blob::from(Bytes::from_static(b"hello world"));
    /// blob.advance(6);
    /// assert_eq!(&blob.into_bytes()[..], b"world");
    /// let two = Blob::from_chunks(vec![Bytes::from_static(b"ab"), Bytes::from_static(b"cd")]);
    /// assert_eq!(Bytes::from(two), Bytes::from_static(b"abcd"));
    /// ```
    pub fn into_bytes(self) -> Bytes {
        if let Some(one) = self.one {
            return one;
        }
        let mut chunks = self.into_chunks();
        match chunks.len() {
            0 | 1 => chunks.pop().unwrap_or_default(),
            _ => {
                let mut out = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
                for chunk in &chunks {
                    out.extend_from_slice(chunk);
                }
                out.freeze()
            }
        }
    }

    /// The remaining chunks, in order.
    pub fn chunks(&self) -> &[Bytes] {
        match &self.one {
            Some(one) if !one.is_empty() => std::slice::from_ref(one),
            Some(_) => &[],
            None => &self.chunks[self.head..],
        }
    }

    /// Consumes the blob and returns its remaining chunks.
    pub fn into_chunks(mut self) -> Vec<Bytes> {
        if let Some(one) = self.one {
            return if one.is_empty() {
                Vec::new()
            } else {
                vec![one]
            };
        }
        self.chunks.drain(..self.head);
        self.chunks
    }
}

impl Buf for Blob {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        match &self.one {
            Some(one) => one,
            None => self.chunks.get(self.head).map_or(&[], |c| &c[..]),
        }
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(
            cnt <= self.remaining,
            "advance past the end of a Blob ({cnt} > {})",
            self.remaining
        );
        self.remaining -= cnt;
        if let Some(one) = &mut self.one {
            one.advance(cnt);
            return;
        }
        while cnt > 0 {
            let chunk = &mut self.chunks[self.head];
            if cnt < chunk.len() {
                chunk.advance(cnt);
                return;
            }
            cnt -= chunk.len();
            self.head += 1;
        }
    }
}

impl io::Read for Blob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut written = 0;
        while written < buf.len() && self.has_remaining() {
            let chunk = self.chunk();
            let n = chunk.len().min(buf.len() - written);
            buf[written..written + n].copy_from_slice(&chunk[..n]);
            self.advance(n);
            written += n;
        }
        Ok(written)
    }
}

impl From<Blob> for Bytes {
    /// [`Blob::into_bytes`].
    fn from(blob: Blob) -> Bytes {
        blob.into_bytes()
    }
}

impl From<Bytes> for Blob {
    fn from(bytes: Bytes) -> Blob {
        Blob {
            remaining: bytes.len(),
            one: Some(bytes),
            chunks: Vec::new(),
            head: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn buf_and_read_walk_every_chunk() {
        let blob = Blob::from_chunks(vec![
            Bytes::from_static(b"ab"),
            Bytes::new(),
            Bytes::from_static(b"cde"),
            Bytes::from_static(b"f"),
        ]);
        assert_eq!(blob.chunks().len(), 3);
        let mut b = blob.clone();
        b.advance(3);
        assert_eq!(b.len(), 3);
        assert_eq!(b.chunk(), b"de");
        assert_eq!(&b.to_bytes()[..], b"def");

        let mut r = blob;
        let mut out = Vec::new();
        let mut small = [0u8; 4];
        loop {
            let n = r.read(&mut small).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&small[..n]);
        }
        assert_eq!(out, b"abcdef");
        assert!(r.is_empty());
    }

    #[test]
    fn single_chunk_to_bytes_does_not_copy() {
        let data = Bytes::from(vec![7u8; 100]);
        let blob = Blob::from(data.clone());
        assert_eq!(blob.to_bytes().as_ptr(), data.as_ptr());
        assert_eq!(blob.into_bytes().as_ptr(), data.as_ptr());
    }

    #[test]
    fn into_bytes_is_what_remains() {
        let chunks = vec![
            Bytes::from_static(b"ab"),
            Bytes::from_static(b"cde"),
            Bytes::from_static(b"f"),
        ];
        for skip in 0..=6 {
            let mut blob = Blob::from_chunks(chunks.clone());
            blob.advance(skip);
            let expected = blob.to_bytes();
            assert_eq!(&expected[..], &b"abcdef"[skip..]);
            assert_eq!(blob.clone().into_bytes(), expected);
            assert_eq!(Bytes::from(blob), expected);
        }
        // The last chunk alone remains: it is returned, not copied.
        let mut blob = Blob::from_chunks(chunks.clone());
        blob.advance(5);
        assert_eq!(blob.into_bytes().as_ptr(), chunks[2].as_ptr());
        assert!(Blob::default().into_bytes().is_empty());
    }
}
