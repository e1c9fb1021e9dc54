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
