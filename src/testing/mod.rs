//! Test machinery that is not a node or the simulator (feature `testing`):
//! what integration tests, benchmarks and other crates need to run the
//! store against real servers, and local nodes whose writes fail on
//! demand.

mod failing_writes;
pub mod s3;

pub use failing_writes::{FailingWrites, WriteFault};

/// Decodes a sample index checkpoint edited by `edits` (a flag byte whose
/// bit 0 fixes the checksum up after the edits, then (offset u16, xor)
/// triples, then an optional cut length u16): whether it loaded. For the
/// `checkpoint_decode` fuzz target: it must never panic.
pub fn checkpoint_decode(edits: &[u8]) -> bool {
    crate::store::checkpoint_decode_edited(edits)
}

/// The views of node segments `store`'s gets slice small blobs from
/// (docs/PERFORMANCE.md, "The healthy get"): per view, the node's name, the
/// generation, and the length of the mapping once a get has set it
/// (`None` while unset), sorted.
pub fn segment_views(store: &crate::Store) -> Vec<(String, u64, Option<usize>)> {
    crate::store::segment_views(store)
}

/// How `store`'s index holds its keys: (records of a checkpoint read in
/// place, records in memory). After a checkpoint that moved the index
/// onto it (`CheckpointReport::rebased`), only the keys written since are
/// in memory.
pub fn index_shape(store: &crate::Store) -> (usize, usize) {
    crate::store::index_shape(store)
}

/// Writes, as a newer checkpoint of `store`, its newest one with the kind
/// byte of the first index record XORed with `xor` and every checksum made
/// to match: with a non-zero `xor`, a checkpoint that decodes but whose
/// records fail open's check (which runs on another thread while open
/// reads the tail); with 0, a copy. Returns the new checkpoint's
/// generation.
///
/// # Errors
/// The store has no checkpoint, or a read or write failed.
pub fn forge_checkpoint(store: &crate::Store, xor: u8) -> crate::Result<u64> {
    crate::store::forge_checkpoint(store, xor)
}
