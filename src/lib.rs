//! geoshard: a storage engine that keeps blobs Reed-Solomon coded across
//! failure domains, so that any one site can burn down without losing a byte
//! and reads go on while it burns.
//!
//! The crate is built in layers (see `docs/` and the design notes):
//! - [`codec`]: systematic RS(k, m) over GF(2^8), SIMD engines picked at run
//!   time, bit-exact with `reed-solomon-erasure`.
//! - [`layout`]: sites, nodes, the promise ("any 1 site") and placement.
//! - [`format`](mod@format): the self-describing column record.
//! - [`node`]: the I/O seam, the local directory node and the object-store
//!   node (S3 and compatible stores, GCS, Azure; sites in other regions).
//! - [`store`]: the [`Store`] services link: packed stripes, durable puts,
//!   zero-copy gets, degraded reads, failover open, compaction.
//!
//! # Cargo features
//!
//! - `object-store` (default): nodes at `s3://`, `gs://`, `az://` and
//!   `file://` URLs, through the `object_store` crate, on a tokio runtime
//!   the engine owns (the API stays synchronous; see
//!   [`node::object`]). `aws` (default), `gcp` and
//!   `azure` pick the backends.
//! - `testing`: exposes [`node::conformance`](crate::node) for other crates.
//! - `bench-isal`: links ISA-L for the codec benchmark.
//!
//! # Example
//!
//! A store over three sites (here: three directories) with RS(2, 1): any one
//! site can be lost.
//!
//! ```
//! use geoshard::layout::Layout;
//! use geoshard::{Options, Store};
//!
//! let dir = tempfile::tempdir()?;
//! let layout = Layout::builder()
//!     .code(2, 1)
//!     .site("seoul", |s| s.node("s1", dir.path().join("s1").as_path()))
//!     .site("busan", |s| s.node("b1", dir.path().join("b1").as_path()))
//!     .site("daejeon", |s| s.node("d1", dir.path().join("d1").as_path()))
//!     .build()?;
//! let store = Store::create(layout, Options::default())?; // a new store; Store::open opens it later
//! store.put(b"chat/1", &b"hello"[..])?; // durable on all three sites
//! let blob = store.get(b"chat/1")?.expect("just written");
//! assert_eq!(&blob.to_bytes()[..], b"hello"); // a slice of an mmap'd segment
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## The codec alone
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
#[cfg(any(test, feature = "testing"))]
pub mod mutation;
#[cfg(not(any(test, feature = "testing")))]
pub(crate) mod mutation;
pub mod node;
#[cfg(any(test, feature = "testing"))]
pub mod sim;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use error::{Error, Result};
pub use store::{
    BLOB_LEN_MAX, Blob, CheckpointReport, CompactOptions, CompactReport, Completion, Health,
    NodeHealth, OpenReport, Options, Progress, ProgressFn, RepairOptions, RepairReport,
    ScrubOptions, ScrubReport, Stats, Store, WritePolicy,
};
