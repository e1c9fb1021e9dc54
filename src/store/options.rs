//! The store's options and limits.

use crate::format::KEY_LEN_MAX;
use crate::node::LocalOptions;
#[cfg(feature = "object-store")]
use crate::node::ObjectOptions;
use std::time::Duration;

/// The largest value `put` accepts: 64 GiB.
pub const BLOB_LEN_MAX: u64 = 64 << 30;
/// The most parts one blob may be cut into (a 64 GiB blob in 64 KiB columns).
pub const PARTS_PER_BLOB_MAX: u64 = BLOB_LEN_MAX / COLUMN_LEN_TARGET_MIN as u64;
/// The smallest column target `Options` accepts.
pub const COLUMN_LEN_TARGET_MIN: usize = 64 << 10;

const _: () = assert!(KEY_LEN_MAX < COLUMN_LEN_TARGET_MIN);
const _: () = assert!(PARTS_PER_BLOB_MAX <= u32::MAX as u64);

/// What a put needs before it returns `Ok` while nodes or sites are down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WritePolicy {
    /// Keep accepting writes through an outage: a column whose node takes
    /// no writes goes to a handoff node chosen so the stripe keeps the
    /// promise given what has failed (within the home site when it can);
    /// the column is recorded as away from home for repair to move back.
    /// When the failures use the promise up (a whole site down), a stripe
    /// is still acknowledged once every column is on a surviving node (a
    /// degraded write, counted in [`Stats::degraded_writes`](super::Stats::degraded_writes)). A put fails
    /// only if no node takes writes, or it is not acknowledged within
    /// [`Options::put_timeout`].
    #[default]
    Available,
    /// Refuse (with [`Error::WriteRefused`](crate::Error::WriteRefused)) a put whose columns could not
    /// be placed so that the layout's whole promise holds.
    Strict,
}

/// How a store behaves. `Options::default()` suits most uses.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use geoshard::{Options, WritePolicy};
///
/// let options = Options {
///     commit_interval: Duration::from_millis(1),
///     write_policy: WritePolicy::Strict,
///     ..Options::default()
/// };
/// assert_eq!(options.column_len_target, 1 << 20);
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    /// Target length of a data column: a stripe is sealed when its columns
    /// reach it, and no blob part is longer. Default 1 MiB;
    /// at least [`COLUMN_LEN_TARGET_MIN`].
    pub column_len_target: usize,
    /// Blobs longer than this are cut into k equal parts, one per data
    /// column, so the columns of a stripe stay level (parity is as long as
    /// the longest data column). Shorter blobs stay whole in one column, so
    /// a healthy read of one is a single slice. Default 64 KiB.
    pub split_len_min: usize,
    /// How long the oldest waiting put may wait for others to share its
    /// commit while an earlier commit is being written (commits are
    /// pipelined: the next one gathers while the previous one syncs, and
    /// is sealed to follow it when this has passed, or when the earlier
    /// one is durable, whichever comes first). Default 2 ms.
    pub commit_interval: Duration,
    /// How long a put waits for others to share its commit when no commit
    /// is being written. Default 0: it is sealed at once, and the puts
    /// that arrive while it is written share the next commit. Raise it
    /// only to make bursts of puts from an idle store share one commit.
    pub commit_delay: Duration,
    /// What a put needs while nodes are down. Default
    /// [`WritePolicy::Available`].
    pub write_policy: WritePolicy,
    /// A new generation (segment file on every node) starts when the
    /// current one holds this many bytes per node. Default 256 MiB.
    pub segment_len_target: u64,
    /// Options for local directory nodes.
    pub local: LocalOptions,
    /// Options for object-store nodes (`s3://`, `gs://`, `az://`,
    /// `file://` locations): concurrency, timeouts, retries, the lease.
    #[cfg(feature = "object-store")]
    pub object: ObjectOptions,
    /// A healthy read from an object-store node that has not answered
    /// after this long is raced by a degraded read from k other columns,
    /// and the first correct answer wins: a slow site does not stall
    /// reads. Default 200 ms.
    pub read_hedge_after: Duration,
    /// The longest a put, delete or flush waits for its acknowledgement;
    /// then it fails with [`Error::TimedOut`](crate::Error::TimedOut) (the write may still land,
    /// whole). Default 30 s.
    pub put_timeout: Duration,
    /// Open a store even when more is missing than the promise covers
    /// (docs/DURABILITY.md, D2). Every `get`, `contains` or `len_of` whose
    /// answer the loss could change then fails with
    /// [`Error::PossiblyLost`](crate::Error::PossiblyLost) until [`Store::accept_loss`](super::Store::accept_loss);
    /// [`Store::open_report`](super::Store::open_report) lists the keys known to be lost. Default
    /// false.
    pub salvage: bool,
    /// Open starts from the newest checkpoint that decodes and scans only
    /// the records written after it (docs/DURABILITY.md, "Checkpoints").
    /// Off: open scans every record, as before checkpoints. Default true.
    pub checkpoints: bool,
    /// A checkpoint is written in the background once this many puts and
    /// deletes were made durable since the last one began; 0 writes them
    /// only when [`Store::checkpoint`](super::Store::checkpoint) is called.
    /// With it on, a checkpoint also starts at the end of a repair, or
    /// with the first write after an open, that finds a node that takes
    /// writes but lacks the newest checkpoint's columns (it was down when
    /// that one was written).
    /// Open's work past the checkpoint grows with this number; a
    /// checkpoint's with what changed since the last full one and the
    /// stripe table (a delta,
    /// [`Store::checkpoint`](super::Store::checkpoint)), a full one's
    /// with the store (docs/PERFORMANCE.md, "Index checkpoints").
    /// Checkpoints are a cost to puts: about 1.7-2.1 times the commits'
    /// column bytes written again, which took sustained 100 B puts on a
    /// 2 vCPU VM to 0.62-0.80x of their rate with this at 0. A larger
    /// value makes puts cheaper and the open after a failure slower
    /// (docs/PERFORMANCE.md, "The put target, decided").
    /// Default 1,000,000.
    pub checkpoint_every: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            column_len_target: 1 << 20,
            split_len_min: 64 << 10,
            commit_interval: Duration::from_millis(2),
            commit_delay: Duration::ZERO,
            write_policy: WritePolicy::Available,
            segment_len_target: 256 << 20,
            local: LocalOptions::default(),
            #[cfg(feature = "object-store")]
            object: ObjectOptions::default(),
            read_hedge_after: Duration::from_millis(200),
            put_timeout: Duration::from_secs(30),
            salvage: false,
            checkpoints: true,
            checkpoint_every: 1_000_000,
        }
    }
}
