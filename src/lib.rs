//! geoshard: a storage engine that keeps blobs Reed-Solomon coded across
//! failure domains, so that any one site can burn down without losing a byte
//! and reads go on while it burns.
//!
//! The crate is built in layers (see `docs/` and the design notes):
//! - [`codec`]: systematic RS(k, m) over GF(2^8), SIMD engines picked at run
//!   time, bit-exact with `reed-solomon-erasure`.
//! - [`layout`]: sites, nodes, the promise ("any 1 site") and placement.
//! - [`format`](mod@format): the self-describing column record.
//! - [`node`]: the I/O seam and the local directory node.
//! - [`store`]: the [`Store`] services link: packed stripes, durable puts,
//!   zero-copy gets, degraded reads, failover open, compaction.

#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod codec;
mod error;
pub mod format;
pub mod layout;
pub mod node;
pub mod store;

pub use error::{Error, Result};
pub use store::{
    BLOB_LEN_MAX, Blob, CompactOptions, CompactReport, Health, NodeHealth, OpenReport, Options,
    Progress, ProgressFn, RepairOptions, RepairReport, ScrubOptions, ScrubReport, Stats, Store,
    WritePolicy,
};
