//! Test machinery that is not a node or the simulator (feature `testing`):
//! what integration tests, benchmarks and other crates need to run the
//! store against real servers, and local nodes whose writes fail on
//! demand.

mod failing_writes;
pub mod s3;

pub use failing_writes::{FailingWrites, WriteFault};
