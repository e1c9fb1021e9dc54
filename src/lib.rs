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
//!
//! # Example
//!
//! Code four data columns into RS(4, 2), lose two columns (data column 1
//! and parity column 4), and rebuild them from the other four:
//!
//! ```
//! use geoshard::codec::Codec;
//!
//! let codec = Codec::new(4, 2)?; // the fastest SIMD engine this CPU has
//! let data: Vec<Vec<u8>> = ["alpha", "bravo", "charl", "delta"]
//!     .iter()
//!     .map(|s| s.as_bytes().to_vec())
//!     .collect();
//! let mut parity = vec![vec![0u8; 5]; 2];
//! {
//!     let data: Vec<&[u8]> = data.iter().map(|c| c.as_slice()).collect();
//!     let mut parity: Vec<&mut [u8]> = parity.iter_mut().map(|c| c.as_mut_slice()).collect();
//!     codec.encode(&data, &mut parity)?;
//! }
//!
//! // Columns 0..4 are data, 4..6 parity. Columns 1 and 4 are lost.
//! let present = [
//!     (0, data[0].as_slice()),
//!     (2, data[2].as_slice()),
//!     (3, data[3].as_slice()),
//!     (5, parity[1].as_slice()),
//! ];
//! let (mut column_1, mut column_4) = ([0u8; 5], [0u8; 5]);
//! codec.reconstruct(&present, &mut [(1, &mut column_1), (4, &mut column_4)])?;
//! assert_eq!(&column_1, b"bravo");
//! assert_eq!(column_4.as_slice(), parity[0].as_slice());
//! # Ok::<(), geoshard::Error>(())
//! ```

#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod codec;
mod error;
pub mod format;
pub mod layout;
pub mod node;

pub use error::{Error, Result};
