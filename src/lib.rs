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

#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod codec;
mod error;
pub mod format;
pub mod layout;
pub mod node;

pub use error::{Error, Result};
