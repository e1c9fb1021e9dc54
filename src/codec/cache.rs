//! A small LRU of decode matrices keyed by (used present columns, missing
//! columns), so a repeated degraded read does not invert a matrix each time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::ColumnSet;
use super::engine::MatrixTables;

struct Entry {
    used: ColumnSet,
    missing: ColumnSet,
    tables: Arc<MatrixTables>,
}

/// Most recently used first. Capacity is small (tens), so a linear scan is
/// faster than hashing, and the vector never grows past its first
/// allocation.
pub(crate) struct DecodeCache {
    entries: Mutex<Vec<Entry>>,
    capacity: usize,
    misses: AtomicU64,
}

impl DecodeCache {
    pub(crate) fn new(capacity: usize) -> DecodeCache {
        DecodeCache {
            entries: Mutex::new(Vec::with_capacity(capacity + 1)),
            capacity,
            misses: AtomicU64::new(0),
        }
    }

    /// The cached tables of (used, missing), built with `build` on a miss.
    /// `build` runs outside the lock: inverting a large matrix must not stall
    /// other readers.
    pub(crate) fn get_or_insert_with(
        &self,
        used: ColumnSet,
        missing: ColumnSet,
        build: impl FnOnce() -> MatrixTables,
    ) -> Arc<MatrixTables> {
        {
            // A panic while holding the lock cannot leave the list
            // inconsistent (every mutation is a single call), so a poisoned
            // lock is still usable.
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(position) = entries
                .iter()
                .position(|e| e.used == used && e.missing == missing)
            {
                entries[..=position].rotate_right(1);
                return Arc::clone(&entries[0].tables);
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let tables = Arc::new(build());
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if !entries
            .iter()
            .any(|e| e.used == used && e.missing == missing)
        {
            entries.insert(
                0,
                Entry {
                    used,
                    missing,
                    tables: Arc::clone(&tables),
                },
            );
            entries.truncate(self.capacity);
        }
        tables
    }

    /// How many lookups had to build a matrix (for tests and diagnostics).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn miss_count(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}
