//! Test machinery that is not a node or the simulator (feature `testing`):
//! what integration tests, benchmarks and other crates need to run the
//! store against real servers.

pub mod s3;
