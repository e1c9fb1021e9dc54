//! The in-memory index: key -> where the blob's bytes are.
//!
//! Always rebuildable from the columns' entry tables (see `recover.rs`); kept
//! in a `BTreeMap` so `keys_with_prefix` is an ordered range scan.

use std::collections::BTreeMap;
use std::ops::Bound;

/// Where one part of a blob lives: a byte range of one column's payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PartLoc {
    /// The stripe's slot in the stripe table.
    pub slot: u32,
    /// Offset of the part's bytes from the start of the column payload.
    pub offset: u32,
    pub len: u32,
    /// crc32fast of the part's bytes.
    pub checksum: u32,
    pub column_index: u16,
}

/// A blob in the index: whole in one column, or cut into parts. Kept to 24
/// bytes (the common case inline, the rare split blob boxed) because there
/// is one per key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BlobLoc {
    Whole(PartLoc),
    Split(Box<SplitBlob>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SplitBlob {
    pub len: u64,
    pub parts: Box<[PartLoc]>,
}

const _: () = assert!(std::mem::size_of::<BlobLoc>() <= 24);

impl BlobLoc {
    pub fn split(len: u64, parts: Box<[PartLoc]>) -> BlobLoc {
        BlobLoc::Split(Box::new(SplitBlob { len, parts }))
    }

    pub fn len(&self) -> u64 {
        match self {
            BlobLoc::Whole(p) => u64::from(p.len),
            BlobLoc::Split(s) => s.len,
        }
    }

    pub fn parts(&self) -> &[PartLoc] {
        match self {
            BlobLoc::Whole(p) => std::slice::from_ref(p),
            BlobLoc::Split(s) => &s.parts,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Index {
    map: BTreeMap<Box<[u8]>, BlobLoc>,
}

impl Index {
    pub fn get(&self, key: &[u8]) -> Option<&BlobLoc> {
        self.map.get(key)
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        self.map.contains_key(key)
    }

    /// Inserts or replaces; returns the previous location.
    pub fn insert(&mut self, key: &[u8], loc: BlobLoc) -> Option<BlobLoc> {
        if let Some(slot) = self.map.get_mut(key) {
            return Some(std::mem::replace(slot, loc));
        }
        self.map.insert(key.into(), loc);
        None
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<BlobLoc> {
        self.map.remove(key)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Up to `limit` keys starting with `prefix`, strictly after `after`
    /// (for resumable iteration without holding the lock).
    pub fn keys_with_prefix(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Vec<Box<[u8]>> {
        let lower: Bound<&[u8]> = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        self.map
            .range::<[u8], _>((lower, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, _)| k.clone())
            .collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &BlobLoc)> {
        self.map.iter().map(|(k, v)| (&k[..], v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(n: u32) -> BlobLoc {
        BlobLoc::Whole(PartLoc {
            slot: 1,
            offset: n,
            len: n,
            checksum: 0,
            column_index: 0,
        })
    }

    #[test]
    fn prefix_scan_is_ordered_and_resumable() {
        let mut ix = Index::default();
        for k in ["a", "b1", "b2", "b3", "c"] {
            ix.insert(k.as_bytes(), loc(1));
        }
        let first = ix.keys_with_prefix(b"b", None, 2);
        assert_eq!(first, vec![b"b1"[..].into(), b"b2"[..].into()]);
        let rest = ix.keys_with_prefix(b"b", Some(b"b2"), 10);
        assert_eq!(rest, vec![Box::<[u8]>::from(&b"b3"[..])]);
        assert_eq!(ix.keys_with_prefix(b"", None, 10).len(), 5);
        assert_eq!(ix.insert(b"a", loc(2)), Some(loc(1)));
        assert_eq!(ix.remove(b"a"), Some(loc(2)));
        assert!(!ix.contains(b"a"));
    }
}
