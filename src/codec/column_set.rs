//! A set of column indices of one stripe (0..256) as a 256-bit bitmap: copy,
//! no allocation, cheap to hash and compare (it keys the decode cache).

use std::fmt;

/// A set of column indices (each below 256, the most columns a stripe has).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ColumnSet {
    bits: [u64; 4],
}

impl ColumnSet {
    /// The empty set.
    pub const fn new() -> ColumnSet {
        ColumnSet { bits: [0; 4] }
    }

    /// Adds `column_index`; returns false if it was already there.
    ///
    /// # Panics
    /// If `column_index >= 256`.
    pub fn insert(&mut self, column_index: usize) -> bool {
        assert!(
            column_index < 256,
            "column index {column_index} out of range"
        );
        let (word, bit) = (column_index / 64, 1u64 << (column_index % 64));
        let was_absent = self.bits[word] & bit == 0;
        self.bits[word] |= bit;
        was_absent
    }

    /// Whether `column_index` is in the set (false for indices >= 256).
    pub fn contains(&self, column_index: usize) -> bool {
        column_index < 256 && self.bits[column_index / 64] & (1u64 << (column_index % 64)) != 0
    }

    /// How many columns are in the set.
    pub fn len(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.bits == [0; 4]
    }

    /// The members in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.bits
            .iter()
            .enumerate()
            .flat_map(|(word_index, &word)| {
                let mut rest = word;
                std::iter::from_fn(move || {
                    if rest == 0 {
                        return None;
                    }
                    let bit = rest.trailing_zeros() as usize;
                    rest &= rest - 1;
                    Some(word_index * 64 + bit)
                })
            })
    }

    /// How many members are smaller than `column_index` (its position in
    /// ascending order when it is a member).
    pub(crate) fn rank(&self, column_index: usize) -> usize {
        let (word, bit) = (column_index / 64, column_index % 64);
        let below: usize = self.bits[..word]
            .iter()
            .map(|w| w.count_ones() as usize)
            .sum();
        below + (self.bits[word] & ((1u64 << bit) - 1)).count_ones() as usize
    }

    /// The union of two sets.
    pub fn union(&self, other: &ColumnSet) -> ColumnSet {
        let mut bits = self.bits;
        for (b, o) in bits.iter_mut().zip(other.bits) {
            *b |= o;
        }
        ColumnSet { bits }
    }
}

impl fmt::Debug for ColumnSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl FromIterator<usize> for ColumnSet {
    /// # Panics
    /// If an index is >= 256.
    fn from_iter<I: IntoIterator<Item = usize>>(iter: I) -> ColumnSet {
        let mut set = ColumnSet::new();
        for i in iter {
            set.insert(i);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_contains_iter_rank() {
        let members = [0usize, 1, 63, 64, 100, 127, 128, 200, 255];
        let mut set = ColumnSet::new();
        for &m in &members {
            assert!(set.insert(m));
            assert!(!set.insert(m));
        }
        assert_eq!(set.len(), members.len());
        assert_eq!(set.iter().collect::<Vec<_>>(), members);
        for (rank, &m) in members.iter().enumerate() {
            assert!(set.contains(m));
            assert_eq!(set.rank(m), rank);
        }
        assert!(!set.contains(2));
        assert!(!set.contains(256));
        assert!(ColumnSet::new().is_empty());
        let other: ColumnSet = [2usize, 3].into_iter().collect();
        assert_eq!(set.union(&other).len(), members.len() + 2);
    }
}
