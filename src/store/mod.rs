//! The store engine: packed stripes, durable puts, zero-copy gets, degraded
//! reads, failover open.
//!
//! A [`Store`] ties the [codec](crate::codec), the [layout](crate::layout)
//! and the [nodes](crate::node) together:
//! - `put` queues the blob for the committer thread, which packs many blobs
//!   into one stripe (a small blob whole into one data column), computes
//!   parity and appends the k+m column records to their nodes in parallel
//!   (group commit). `put` returns once the stripe is durable as the
//!   [`WritePolicy`] requires.
//! - `get` reads the blob's byte range from one node's mmap'd segment without
//!   copying; when that node is down or the bytes fail their checksum, it
//!   rebuilds just that range from k other columns.
//! - `open` rebuilds the index from whatever nodes are reachable, as long as
//!   every acknowledged stripe still has k columns.
//!
//! This file is the face: [`Store`] and its methods, each a short call into
//! the module that does the work. Below it, each concept has one home and
//! calls go downward:
//!
//! | file | what it owns |
//! | --- | --- |
//! | `options.rs`, `state.rs` | the options; the stripe table, index and repair queue |
//! | `inner.rs` | what the handle and the committer share, and the components it hands out |
//! | `submit.rs`, `commit.rs` | writes as submissions; the committer (threaded or stepped) |
//! | `stripe_io.rs` (`StripeIo`) | where a stripe's columns go (plan, handoffs, acknowledgement rule) and writing them |
//! | `read.rs` (`Reads`) | reading a part, degraded reads, rebuilding a byte range, entry tables |
//! | `lifecycle.rs` (`NodeLifecycle`) | checking, reviving, reopening and adopting nodes through the factory |
//! | `nodes.rs` (`NodeSet`) | each node's handle, up/writable state, and "superseded" |
//! | `manifest.rs` (`Manifests`) | the manifest as last written and the membership |
//! | `open.rs` (`Identify`), `recover/` | identity at open; recovery, one file per phase |
//! | `repair.rs`, `compact.rs`, `salvage.rs`, `health.rs` | repair and scrub, compaction, a pending loss, the health report |

mod blob;
mod checkpoint;
mod clock;
mod commit;
mod compact;
mod get;
mod health;
mod index;
mod inner;
mod lifecycle;
mod manifest;
mod metrics;
mod nodes;
mod open;
mod options;
mod pack;
mod read;
mod recover;
mod repair;
mod salvage;
mod state;
mod stripe_io;
mod stripes;
mod submit;
#[cfg(any(test, feature = "testing"))]
mod testing;
mod writer;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

pub use blob::Blob;
pub use checkpoint::CheckpointReport;
#[cfg(any(test, feature = "testing"))]
pub(crate) use checkpoint::fuzzing::decode_edited as checkpoint_decode_edited;
pub use compact::{CompactOptions, CompactReport};
pub use health::{Health, NodeHealth, Stats};
pub use recover::OpenReport;
pub use repair::{Progress, ProgressFn, RepairOptions, RepairReport, ScrubOptions, ScrubReport};
pub use submit::Completion;
#[cfg(any(test, feature = "testing"))]
pub(crate) use testing::{forge_checkpoint, index_shape, segment_views};

#[cfg(any(test, feature = "testing"))]
pub(crate) use self::clock::Clock;
#[cfg(any(test, feature = "testing"))]
pub(crate) use self::commit::Overlap;
pub(crate) use self::commit::Request;
use self::commit::{Committer, Event, WriterStart};
use self::open::Mode;
pub(crate) use self::submit::Pending;
use self::submit::{Runner, Scheduling, Start};
use crate::codec::Codec;
use crate::format::KEY_LEN_MAX;
use crate::layout::Layout;
use crate::node::{DefaultNodeFactory, GivenNodes, Node, NodeFactory};
use crate::{Error, Result};

pub(crate) use inner::Inner;
pub use options::{BLOB_LEN_MAX, COLUMN_LEN_TARGET_MIN, Options, PARTS_PER_BLOB_MAX, WritePolicy};
pub(crate) use state::{RepairQueue, State};

/// A geoshard store: blobs under keys, Reed-Solomon coded across the sites
/// and nodes of a [`Layout`].
///
/// `Store` is `Send + Sync`; share it between threads in an `Arc`. Dropping
/// it closes it (see [`Store::close`]).
///
/// # Example
///
/// ```
/// use geoshard::layout::Layout;
/// use geoshard::{Options, Store};
///
/// let dir = tempfile::tempdir()?;
/// let root = dir.path();
/// let layout = Layout::from_toml_str(&format!(
///     r#"
///     code = {{ data_count = 2, parity_count = 1 }}
///     [[sites]]
///     name = "seoul"
///     nodes = [{{ name = "s1", path = "{0}/s1" }}]
///     [[sites]]
///     name = "busan"
///     nodes = [{{ name = "b1", path = "{0}/b1" }}]
///     [[sites]]
///     name = "daejeon"
///     nodes = [{{ name = "d1", path = "{0}/d1" }}]
///     "#,
///     root.display()
/// ))?;
/// let store = Store::create(layout, Options::default())?;
/// store.put(b"chat/1", &b"hello"[..])?;
/// let blob = store.get(b"chat/1")?.expect("just written");
/// assert_eq!(&blob.to_bytes()[..], b"hello");
/// assert!(store.delete(b"chat/1")?);
/// assert!(store.get(b"chat/1")?.is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Store {
    inner: Arc<Inner>,
    sender: RwLock<Option<Sender<Event>>>,
    committer: Mutex<Option<Runner>>,
    /// Who runs the committer (fixed at open: a wait need not lock it to
    /// know).
    scheduling: Scheduling,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("code", &self.inner.layout.code())
            .field("nodes", &self.inner.nodes)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Creates a new store over the layout: every node must be reachable
    /// and empty (local directories are created). Writes the store's
    /// identity to every node and opens it.
    ///
    /// # Example
    ///
    /// ```
    /// use geoshard::layout::Layout;
    /// use geoshard::{Error, Options, Store};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let layout = Layout::builder()
    ///     .code(2, 1)
    ///     .site("seoul", |s| s.node("s1", dir.path().join("s1").as_path()))
    ///     .site("busan", |s| s.node("b1", dir.path().join("b1").as_path()))
    ///     .site("daejeon", |s| s.node("d1", dir.path().join("d1").as_path()))
    ///     .build()?;
    /// // Open never creates a store.
    /// assert!(matches!(Store::open(layout.clone(), Options::default()), Err(Error::NoStore { .. })));
    /// let store = Store::create(layout.clone(), Options::default())?;
    /// store.put(b"chat/1", &b"hello"[..])?;
    /// drop(store);
    /// assert!(matches!(Store::create(layout.clone(), Options::default()), Err(Error::StoreExists { .. })));
    /// let store = Store::open(layout, Options::default())?;
    /// assert!(store.contains(b"chat/1")?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// - [`Error::StoreExists`] when a node already holds a store;
    /// - [`Error::Unavailable`] when a node cannot be reached;
    /// - [`Error::Locked`] when another process has a node open;
    /// - [`Error::InvalidLayout`] / [`Error::InvalidArgument`] as for
    ///   [`Store::open`].
    pub fn create(layout: Layout, options: Options) -> Result<Store> {
        let factory = Arc::new(DefaultNodeFactory::new(&options));
        Store::create_with_factory(layout, options, factory)
    }

    /// Creates a store over nodes the caller opened (as
    /// [`Store::open_with_nodes`]); every node must be reachable and empty.
    ///
    /// # Errors
    ///
    /// As [`Store::create`].
    pub fn create_with_nodes(
        layout: Layout,
        options: Options,
        nodes: Vec<std::result::Result<Arc<dyn Node>, String>>,
    ) -> Result<Store> {
        Store::create_with_factory(layout, options, Arc::new(GivenNodes::new(nodes)))
    }

    /// Creates a store whose nodes `factory` opens (and reopens, when
    /// repair brings one back): the seam for custom [`Node`]
    /// implementations, fault injection and simulation.
    ///
    /// # Errors
    ///
    /// As [`Store::create`].
    pub fn create_with_factory(
        layout: Layout,
        options: Options,
        factory: Arc<dyn NodeFactory>,
    ) -> Result<Store> {
        Store::start(layout, options, factory, Mode::Create, Start::default())
    }

    /// Opens the existing store the layout describes. It never creates one
    /// (see [`Store::create`]).
    ///
    /// A node whose directory is missing or empty (a disk that is not
    /// mounted, a replaced disk, a burned site) is left down, reported by
    /// [`Store::health`], and adopted and rebuilt by repair, as long as the
    /// layout's promise covers what is missing. Object-store nodes
    /// (`s3://`, `gs://`, `az://`, `file://` URLs; README, "Remote sites")
    /// are opened in parallel: each lists its prefix and takes the writer
    /// lease; one that cannot be reached is left down the same way.
    /// docs/DURABILITY.md says what open decides and why.
    ///
    /// # Errors
    ///
    /// - [`Error::NoStore`] when no reachable node holds the store's
    ///   identity (never created, disks not mounted, wrong paths);
    /// - [`Error::TooManyNodesDown`] when more nodes are missing than the
    ///   promise tolerates (checked first; [`Options::salvage`] opens
    ///   anyway). Nodes that came back empty count as missing until a
    ///   repair (or [`Store::accept_loss`]) found every stripe keeping
    ///   the promise again: a stripe whose every record burned leaves
    ///   nothing a scan can find;
    /// - [`Error::StripesUnrecoverable`] when some stripe that must be
    ///   visible has fewer than k reachable columns (salvage opens anyway);
    /// - [`Error::Locked`] when another process has the store open;
    /// - [`Error::Superseded`] when another process opened the same
    ///   object-store nodes while this open ran and took their leases (of
    ///   two racing openers at most one gets a store; open again once the
    ///   other is closed);
    /// - [`Error::InvalidLayout`] when the nodes hold another store, data
    ///   coded differently from what the layout says, or another node's
    ///   data (swapped paths), a node location is not supported, or an
    ///   object store's settings cannot work;
    /// - [`Error::InvalidArgument`] for options out of range.
    pub fn open(layout: Layout, options: Options) -> Result<Store> {
        let factory = Arc::new(DefaultNodeFactory::new(&options));
        Store::open_with_factory(layout, options, factory)
    }

    /// Opens a store over nodes the caller opened: `nodes[i]` serves
    /// `layout.nodes()[i]`, or says why it could not be opened. Repair
    /// cannot reopen such a node; it brings one back only if its handle
    /// answers again. [`Store::open_with_factory`] lifts that limit.
    ///
    /// # Errors
    ///
    /// As [`Store::open`].
    pub fn open_with_nodes(
        layout: Layout,
        options: Options,
        nodes: Vec<std::result::Result<Arc<dyn Node>, String>>,
    ) -> Result<Store> {
        Store::open_with_factory(layout, options, Arc::new(GivenNodes::new(nodes)))
    }

    /// Opens a store whose nodes `factory` opens, and reopens when repair
    /// brings one back (a recreated directory, a fenced node): the seam for
    /// custom [`Node`] implementations, fault injection and simulation.
    ///
    /// # Errors
    ///
    /// As [`Store::open`].
    pub fn open_with_factory(
        layout: Layout,
        options: Options,
        factory: Arc<dyn NodeFactory>,
    ) -> Result<Store> {
        Store::start(layout, options, factory, Mode::Open, Start::default())
    }

    pub(crate) fn start(
        layout: Layout,
        options: Options,
        factory: Arc<dyn NodeFactory>,
        mode: Mode,
        start: Start,
    ) -> Result<Store> {
        check_options(&options)?;
        let _span = tracing::info_span!(
            "open",
            mode = ?mode,
            nodes = layout.nodes().len(),
            sites = layout.sites().len(),
            code = %layout.code()
        )
        .entered();
        let nodes = open::open_handles(&*factory, &layout, mode)?;
        let code = layout.code();
        let codec = Codec::new(code.data_count, code.parity_count)?;
        let started = Instant::now();
        let inner = Arc::new(Inner::new(layout, options, factory, nodes, codec, &start));
        let (first_stripe_id, below_margin) = inner.open_session(mode, started)?;
        let (tx, rx) = mpsc::channel();
        let writer_start = WriterStart {
            next_stripe_id: first_stripe_id,
        };
        let runner = match start.scheduling {
            Scheduling::Thread => {
                let committer =
                    Committer::threaded(Arc::clone(&inner), rx, tx.clone(), writer_start)?;
                Runner::Thread(
                    std::thread::Builder::new()
                        .name("geoshard-committer".into())
                        .spawn(move || committer.run())
                        .map_err(|e| Error::io("starting the committer thread", e))?,
                )
            }
            Scheduling::Stepped => Runner::Stepped(Box::new(Committer::stepped(
                Arc::clone(&inner),
                rx,
                writer_start,
            ))),
        };
        let store = Store {
            inner,
            sender: RwLock::new(Some(tx)),
            committer: Mutex::new(Some(runner)),
            scheduling: start.scheduling,
        };
        store.rebuild_below_margin(&below_margin);
        submit::checkpoint_if_lacking(&store, false);
        Ok(store)
    }

    /// Rebuilds, before open returns, the visible stripes recovery found
    /// missing a column on a node that is up: a commit a crash cut short
    /// can be shown (docs/DURABILITY.md, D5) with less than the promise's
    /// margin, and a failure within the promise must not take it (D4), nor
    /// the acknowledged value a compaction was moving when the crash came.
    fn rebuild_below_margin(&self, stripe_ids: &[u64]) {
        if stripe_ids.is_empty()
            || self.inner.read_only.load(Ordering::Acquire)
            || crate::mutation::enabled(crate::mutation::Mutation::NoRebuildAtOpen)
        {
            return;
        }
        let only: BTreeSet<u64> = stripe_ids.iter().copied().collect();
        match self.repair_stripes(&RepairOptions::default(), Some(&only)) {
            Ok(report) => {
                tracing::info!(
                    stripes = only.len(),
                    rebuilt = report.stripes_repaired,
                    "rebuilt stripes open found below the promise's margin"
                );
                if let Ok(mut r) = self.inner.open_report.lock() {
                    r.stripes_rebuilt_at_open = report.stripes_repaired as usize;
                }
            }
            Err(e) => tracing::warn!(error = %e, stripes = only.len(),
                "could not rebuild stripes open found below the promise's margin; repair will"),
        }
    }

    /// The layout this store was opened with.
    pub fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    /// Stores `value` under `key`, replacing any earlier value. Returns once
    /// the blob is durable as the write policy requires.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidArgument`] for an empty key;
    /// - [`Error::LimitExceeded`] for a key over [`KEY_LEN_MAX`] bytes or a
    ///   value over [`BLOB_LEN_MAX`], or when the in-memory index is full
    ///   (15 GiB of keys and locations, about 350 million 20-byte keys;
    ///   removed keys count until the index compacts them);
    /// - [`Error::NotEnoughColumns`] when no node takes writes, or
    ///   [`Error::WriteRefused`] (under [`WritePolicy::Strict`], or when
    ///   every retry failed): the put did not happen (a failed put may
    ///   still appear after a crash and reopen, but only whole); also
    ///   refused once the index lost a page of the checkpoint records it
    ///   reads in place, until the store is opened again (C9);
    /// - [`Error::TimedOut`] after [`Options::put_timeout`] (the put may
    ///   still land, whole);
    /// - [`Error::Superseded`] once another writer took over;
    /// - [`Error::Closed`] after [`Store::close`].
    pub fn put(&self, key: &[u8], value: impl Into<Bytes>) -> Result<()> {
        let pending = self.submit_put(key, value.into())?;
        self.wait(&pending, "put", Some(self.inner.options.put_timeout))?
            .map(|_| ())
    }

    /// [`put`](Store::put) for async callers: queues the put now and
    /// returns a future that resolves when it is durable, without blocking
    /// a thread meanwhile. Many puts in flight share commits, so an async
    /// service gets group commit without a thread per waiting put. The
    /// future is `'static` and runtime-agnostic; see [`Completion`] for
    /// what dropping it means.
    ///
    /// ```
    /// # use geoshard::{layout::Layout, Options, Store};
    /// # let dir = tempfile::tempdir()?;
    /// # let layout = Layout::builder().code(2, 1)
    /// #     .site("a", |s| s.node("a1", dir.path().join("a1")))
    /// #     .site("b", |s| s.node("b1", dir.path().join("b1")))
    /// #     .site("c", |s| s.node("c1", dir.path().join("c1")))
    /// #     .build()?;
    /// let store = Store::create(layout, Options::default())?;
    /// let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    /// runtime.block_on(async {
    ///     // A thousand puts in flight on this one thread, in a few commits.
    ///     let puts: Vec<_> = (0..1000)
    ///         .map(|i| store.put_async(format!("room-1/msg-{i:06}").as_bytes(), vec![b'x'; 100]))
    ///         .collect();
    ///     for put in puts {
    ///         put.await?;
    ///     }
    ///     Ok::<(), geoshard::Error>(())
    /// })?;
    /// assert_eq!(store.len(), 1000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`put`](Store::put) (the future resolves to them; a bad key or an
    /// oversized value at once), except [`Error::TimedOut`]: see
    /// [`Completion`].
    pub fn put_async(&self, key: &[u8], value: impl Into<Bytes>) -> Completion<()> {
        match self.submit_put(key, value.into()) {
            Ok(pending) => Completion::waiting(pending, |_| ()),
            Err(e) => Completion::ready(Err(e)),
        }
    }

    /// Checks a put and queues it for the committer.
    fn submit_put(&self, key: &[u8], value: Bytes) -> Result<Pending> {
        check_key(key)?;
        if value.len() as u64 > BLOB_LEN_MAX {
            return Err(Error::LimitExceeded {
                what: "value length",
                limit: BLOB_LEN_MAX,
                actual: value.len() as u64,
            });
        }
        if self.inner.index_full.load(Ordering::Relaxed)
            && let Some((limit, used)) = self.inner.read_state().index.full()
        {
            return Err(Error::LimitExceeded {
                what: "index arena bytes",
                limit: limit as u64,
                actual: used as u64,
            });
        }
        let (ack, pending) = Pending::channel();
        self.submit(Request::Put {
            key: key.into(),
            value,
            ack,
        })?;
        Ok(pending)
    }

    /// The value under `key`, or `None`.
    ///
    /// A healthy read returns slices of the nodes' memory-mapped segments
    /// (no copy), checksum-verified. If a node is down or its bytes fail
    /// their checksum, the blob's range is rebuilt from k other columns.
    ///
    /// # Errors
    ///
    /// - [`Error::NotEnoughColumns`] when fewer than k columns of a stripe
    ///   the blob lives in can be read;
    /// - [`Error::ChecksumMismatch`] when even the rebuilt bytes fail their
    ///   checksum (more damage than the code can correct);
    /// - [`Error::Corrupt`] once a page of the checkpoint records the index
    ///   reads in place could not be read under the running store (a
    ///   checkpoint file cut short, a media error): from then on until the
    ///   store is opened again, rather than answer from an index that may
    ///   miss the key (docs/DURABILITY.md, C9);
    /// - [`Error::InvalidArgument`] / [`Error::LimitExceeded`] for a bad key;
    /// - [`Error::Closed`] after [`close`](Store::close).
    pub fn get(&self, key: &[u8]) -> Result<Option<Blob>> {
        check_key(key)?;
        if let Some(answer) = get::get_if_local(&self.inner, key, true) {
            return answer;
        }
        get::get(&self.inner, key)
    }

    /// [`get`](Store::get) for async callers: never blocks the caller's
    /// thread on I/O it may wait for. A healthy read of a whole blob on a
    /// reachable local node is answered at once (a checked slice of a
    /// mapped segment, as `get` returns it); an absent key too. A read of a
    /// remote node, a degraded read, a split blob or a read while a salvage
    /// loss is pending runs on one of geoshard's read threads (16, shared by
    /// the process; more reads in flight queue), and the future resolves
    /// when it is done. See [`Completion`].
    ///
    /// # Errors
    ///
    /// As [`get`](Store::get).
    pub fn get_async(&self, key: &[u8]) -> Completion<Option<Blob>> {
        if let Err(e) = check_key(key) {
            return Completion::ready(Err(e));
        }
        if let Some(answer) = get::get_if_local(&self.inner, key, false) {
            return Completion::ready(answer);
        }
        let (ack, pending) = Pending::channel();
        let inner = Arc::clone(&self.inner);
        let owned = key.to_vec();
        if get::spawn_read(move || ack.send(get::get(&inner, &owned))) {
            Completion::answered_by(pending)
        } else {
            // No thread to be had: answer here rather than not at all.
            Completion::ready(get::get(&self.inner, key))
        }
    }

    /// Length of the value under `key`, without reading it.
    ///
    /// # Errors
    ///
    /// As [`Store::get`] for a bad key, and once the index lost a page
    /// ([`Error::Corrupt`]); [`Error::PossiblyLost`] while a salvage
    /// open's loss could change the answer.
    pub fn len_of(&self, key: &[u8]) -> Result<Option<u64>> {
        check_key(key)?;
        // A loss is set at open, before the store is handed out: checked
        // once here, it cannot start pending during the lookup.
        if !self.inner.loss.is_pending() {
            let state = self.inner.read_state();
            let len = state.index.len_of(key);
            if !self.inner.index_intact_in(&state.index) {
                return Err(Inner::index_lost_error());
            }
            return Ok(len);
        }
        let (len, stripe) = {
            let state = self.inner.read_state();
            let found = state.index.get(key);
            if !self.inner.index_intact_in(&state.index) {
                return Err(Inner::index_lost_error());
            }
            match found {
                Some(loc) => (Some(loc.len()), state.stripe_id_of(&loc)),
                None => (None, None),
            }
        };
        self.inner.loss.check(key, stripe)?;
        Ok(len)
    }

    /// Removes `key`. The tombstone is durable, like a put, when this
    /// returns. Returns whether the key existed.
    ///
    /// # Errors
    ///
    /// As [`Store::put`].
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        let pending = self.submit_delete(key)?;
        self.wait(&pending, "delete", Some(self.inner.options.put_timeout))?
    }

    /// [`delete`](Store::delete) for async callers: queues the delete now
    /// and returns a future that resolves, with whether the key existed,
    /// once the tombstone is durable. See [`put_async`](Store::put_async)
    /// and [`Completion`].
    ///
    /// # Errors
    ///
    /// As [`delete`](Store::delete), except [`Error::TimedOut`]: see
    /// [`Completion`].
    pub fn delete_async(&self, key: &[u8]) -> Completion<bool> {
        match self.submit_delete(key) {
            Ok(pending) => Completion::waiting(pending, |existed| existed),
            Err(e) => Completion::ready(Err(e)),
        }
    }

    /// Checks a delete and queues it for the committer.
    fn submit_delete(&self, key: &[u8]) -> Result<Pending> {
        check_key(key)?;
        let (ack, pending) = Pending::channel();
        self.submit(Request::Delete {
            key: key.into(),
            ack,
        })?;
        Ok(pending)
    }

    /// True when `key` has a value.
    ///
    /// # Errors
    ///
    /// As [`Store::len_of`].
    pub fn contains(&self, key: &[u8]) -> Result<bool> {
        Ok(self.len_of(key)?.is_some())
    }

    /// The keys that start with `prefix`, in byte order. The iterator reads
    /// the index in batches, so it sees a consistent prefix of each batch
    /// but not one snapshot of the whole store.
    ///
    /// The index keeps no key order until the first listing after open,
    /// which sorts every key (about 3 s for 10^7 keys on a 2-vCPU VM) and
    /// adds 4 bytes per key; later listings sort only the keys added
    /// since. A large backlog is sorted from a copy of those index
    /// records (about 30 bytes per key, freed after the sort) without the
    /// store's lock, so puts and gets go on meanwhile.
    ///
    /// A listing that cannot go on ends early, and
    /// [`KeysWithPrefix::error`] then says why: today only when a page of
    /// the checkpoint records the index reads in place was lost under the
    /// running store (docs/DURABILITY.md, C9), when gets fail too.
    pub fn keys_with_prefix(&self, prefix: &[u8]) -> KeysWithPrefix<'_> {
        KeysWithPrefix {
            store: self,
            prefix: prefix.to_vec(),
            batch: Vec::new().into_iter(),
            last: None,
            done: false,
            lost: false,
        }
    }

    /// Number of keys with a value.
    pub fn len(&self) -> usize {
        self.inner.read_state().index.len()
    }

    /// True when the store holds no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes everything queued so far durable now, without waiting for the
    /// commit interval.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after close; otherwise the error of the commit that
    /// carried the flush.
    pub fn flush(&self) -> Result<()> {
        let (ack, pending) = Pending::channel();
        self.submit(Request::Flush { ack })?;
        self.wait(&pending, "flush", Some(self.inner.options.put_timeout))?
            .map(|_| ())
    }

    /// [`flush`](Store::flush) for async callers: resolves once everything
    /// queued before it is durable (or failed). See [`Completion`].
    ///
    /// # Errors
    ///
    /// As [`flush`](Store::flush), except [`Error::TimedOut`]: see
    /// [`Completion`].
    pub fn flush_async(&self) -> Completion<()> {
        let (ack, pending) = Pending::channel();
        match self.submit(Request::Flush { ack }) {
            Ok(()) => Completion::waiting(pending, |_| ()),
            Err(e) => Completion::ready(Err(e)),
        }
    }

    /// Writes a checkpoint now: the index and the stripe table as of this
    /// moment, Reed-Solomon coded across the nodes like a stripe, so that
    /// the next open reads it and scans only the records written after it
    /// (docs/DURABILITY.md, "Checkpoints"). Writes from other threads go
    /// on meanwhile, but for one copy of the index under the state's lock
    /// ([`CheckpointReport::locked_ms`]). The store also writes one in the
    /// background every [`Options::checkpoint_every`] writes.
    ///
    /// A checkpoint is kept only when every one of its columns sent to a
    /// node was written; the older ones are removed after it. A node that
    /// takes no writes (a site on fire) is skipped as long as k columns
    /// of each chunk can be written: the checkpoint then has no margin
    /// left there ([`CheckpointReport::nodes_skipped`]; the whole
    /// checkpoint before it is kept, and one more loss there makes open
    /// fall back to it, or to the full scan), and the first checkpoint
    /// after those nodes take writes again is full and whole. So checkpoints, and the bound they put on open's work and
    /// on the index's heap, go on while a site is gone.
    ///
    /// While the index holds above the checkpoint it stands on less than
    /// a quarter as many records as that one, the new checkpoint is a
    /// **delta** over it ([`CheckpointReport::delta_of`]): it writes only
    /// the keys written since that checkpoint, which of its records they
    /// hide, and the stripe table, so its cost grows with what changed,
    /// not with the store; open reads the two together, and the older
    /// deltas are removed, not their base (docs/DURABILITY.md, C8).
    ///
    /// Otherwise the checkpoint is full, and the index moves onto it
    /// ([`CheckpointReport::rebased`]): the
    /// checkpoint is read back as an open would read it (in place from
    /// local nodes), the writes made meanwhile are replayed over it, and
    /// the keys it holds leave the heap. So a long-running store's heap
    /// holds at most about a quarter of its keys' records
    /// (docs/DURABILITY.md, C7). If it cannot be read back the index stays
    /// as it was (logged).
    ///
    /// # Example
    ///
    /// ```
    /// # use geoshard::layout::Layout;
    /// # use geoshard::{Options, Store};
    /// # let dir = tempfile::tempdir()?;
    /// # let layout = Layout::builder()
    /// #     .code(2, 1)
    /// #     .site("seoul", |s| s.node("s1", dir.path().join("s1").as_path()))
    /// #     .site("busan", |s| s.node("b1", dir.path().join("b1").as_path()))
    /// #     .site("daejeon", |s| s.node("d1", dir.path().join("d1").as_path()))
    /// #     .build()?;
    /// let store = Store::create(layout.clone(), Options::default())?;
    /// store.put(b"chat/1", &b"hello"[..])?;
    /// let report = store.checkpoint()?;
    /// assert_eq!(report.blobs, 1);
    /// store.put(b"chat/2", &b"after it"[..])?;
    /// drop(store);
    /// let store = Store::open(layout, Options::default())?;
    /// assert_eq!(store.open_report().checkpoint, Some(report.generation));
    /// assert!(store.contains(b"chat/1")? && store.contains(b"chat/2")?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// - [`Error::Closed`] after close;
    /// - [`Error::WriteRefused`] on a read-only store, with a loss not
    ///   accepted, or while a failed commit's discard is not recorded;
    /// - [`Error::Unavailable`] when fewer than k nodes of a chunk's
    ///   placement take writes, or the node's error when one that does
    ///   failed to take its column: nothing of this checkpoint is kept;
    /// - the error of the flush that settles the commits before it.
    pub fn checkpoint(&self) -> Result<CheckpointReport> {
        checkpoint::write(&self.inner, || self.flush())
    }

    /// Counters since open.
    pub fn stats(&self) -> Stats {
        let state = self.inner.read_state();
        self.inner.stats.snapshot(
            state.index.len(),
            state.stripes.len(),
            self.inner.repair_queue_len(),
        )
    }

    /// What open found (stripes visible and discarded, corrupt regions,
    /// entry tables rebuilt).
    pub fn open_report(&self) -> OpenReport {
        self.inner
            .open_report
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Per node: reachable or not, columns and bytes held, columns missing
    /// or away; whether the store survives losing any one more site now.
    pub fn health(&self) -> Health {
        self.inner.lifecycle().check_nodes();
        self.inner.health()
    }

    /// Stops accepting writes, makes everything queued durable, stops the
    /// committer and releases the nodes (local directory locks, remote
    /// clients), so the store can be opened again at once, in this process
    /// or another. A checkpoint the policy (`Options::checkpoint_every`)
    /// started in the background is waited for first (at 10^8 blobs a
    /// full one takes about half a minute). Dropping the store does the
    /// same. Later puts, deletes,
    /// gets and repairs fail with [`Error::Closed`].
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for reporting a failed final
    /// commit.
    pub fn close(&self) -> Result<()> {
        // A checkpoint the policy started in the background ends first:
        // its commits settle through the committer, which stops below.
        while self.inner.checkpoint_running.load(Ordering::Acquire) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        self.stop_committer(true);
        // Wait for a running repair, scrub or compaction, then let go of
        // the nodes.
        let _maintenance = self
            .inner
            .maintenance
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        self.inner
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        self.inner.nodes.close_all();
        // The gets' views of the nodes' segments go with the nodes (and a
        // get racing the close cannot set one after: the epoch moved).
        self.inner.write_state().stripes.clear_views(None);
        Ok(())
    }

    /// Rebuilds every missing or damaged column onto the node the
    /// placement names, and moves columns written to handoff nodes during
    /// an outage back home. Burned local nodes get their directories
    /// recreated. Runs while the store serves reads and writes. When a
    /// node it brought back lacks the newest checkpoint's columns, the
    /// checkpoint policy (`Options::checkpoint_every`) starts the next
    /// checkpoint in the background at once.
    ///
    /// Idempotent and resumable: what a repair finished is in the columns
    /// themselves, so running it again (also after a crash) does only what
    /// is left.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after close. A stripe that cannot be repaired now
    /// is counted in [`RepairReport::stripes_unrepairable`], not an error.
    pub fn repair(&self, options: &RepairOptions) -> Result<RepairReport> {
        let report = repair::repair(self, options)?;
        // A node brought back lacks the columns of the checkpoints written
        // while it was away: the policy writes them now.
        submit::checkpoint_if_lacking(self, true);
        Ok(report)
    }

    /// [`repair`](Self::repair), of every stripe, or only of the stripes
    /// `only` names without reviving nodes (open's rebuild of stripes
    /// below the promise's margin).
    pub(crate) fn repair_stripes(
        &self,
        options: &RepairOptions,
        only: Option<&BTreeSet<u64>>,
    ) -> Result<RepairReport> {
        repair::repair_stripes(self, options, only)
    }

    /// Reads every column of every stripe, checks checksums and parity, and
    /// (unless `options.repair` is false) repairs what it found.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after close; errors of the repair that follows.
    pub fn scrub(&self, options: &ScrubOptions) -> Result<ScrubReport> {
        repair::scrub(self, options)
    }

    /// Rewrites the live blobs of mostly-dead generations and removes those
    /// generations from every node. Runs alongside reads and writes.
    ///
    /// # Errors
    ///
    /// A read or commit error stops compaction before the generation being
    /// compacted is retired; nothing is lost and a later call resumes.
    pub fn compact(&self, options: &CompactOptions) -> Result<CompactReport> {
        compact::compact(self, options)
    }

    /// Accepts the loss a salvage open found: deletes the keys known to
    /// have lost their newest value (so no older value of theirs shows
    /// again), records the lost stripes as discarded so later opens do not
    /// fail on them, and ends the errors reads gave meanwhile. Nodes that
    /// came back empty count whole again at once if every stripe left
    /// keeps the promise, else after the repair that brings it back (a
    /// restart before then is refused again). Returns how
    /// many keys were deleted. Does nothing if no loss is pending.
    ///
    /// # Errors
    /// A delete or the manifest write failing; the loss stays pending and
    /// the call can be repeated. [`Error::WriteRefused`] on a read-only
    /// salvage open (its manifest reached too few nodes): repair, then
    /// open again.
    pub fn accept_loss(&self) -> Result<usize> {
        salvage::accept_loss(self)
    }

    /// Queues a request for the committer.
    pub(crate) fn submit(&self, request: Request) -> Result<()> {
        submit::submit(self, request)
    }

    /// Waits for a submission's answer: at most `timeout` when the
    /// committer has its own thread; with a stepped committer, runs
    /// commits until it is answered.
    ///
    /// # Errors
    /// [`Error::TimedOut`] after `timeout` (naming `what`);
    /// [`Error::Closed`] when the request was dropped unanswered.
    pub(crate) fn wait(
        &self,
        pending: &Pending,
        what: &'static str,
        timeout: Option<Duration>,
    ) -> Result<Result<bool>> {
        submit::wait(self, pending, what, timeout)
    }

    /// Whether the committer is stepped (the simulator): background work
    /// then runs one step at a time, in an order one seed fixes.
    pub(crate) fn is_stepped(&self) -> bool {
        submit::is_stepped(self)
    }

    #[cfg(any(test, feature = "testing"))]
    /// Runs one commit of at most `max_requests` queued requests on a
    /// stepped committer; returns how many it answered. `None` when the
    /// committer has its own thread.
    pub(crate) fn step_if_stepped(&self, max_requests: usize) -> Option<usize> {
        submit::step_if_stepped(self, max_requests, Overlap::None)
    }

    #[cfg(any(test, feature = "testing"))]
    /// Like [`step_if_stepped`](Self::step_if_stepped), leaving the commit
    /// outstanding as `overlap` says (pipelined commits).
    pub(crate) fn step_overlapping(&self, max_requests: usize, overlap: Overlap) -> Option<usize> {
        submit::step_if_stepped(self, max_requests, overlap)
    }

    /// Stops the committer: a thread finishes what is queued and exits; a
    /// stepped committer runs what is queued when `drain`, and otherwise
    /// drops it unanswered (a simulated crash).
    pub(crate) fn stop_committer(&self, drain: bool) {
        submit::stop_committer(self, drain)
    }

    #[cfg(any(test, feature = "testing"))]
    /// Creates (`store_id` given) or opens a store whose committer the
    /// caller steps and whose time is `clock`: the simulator's store.
    pub(crate) fn start_simulated(
        layout: crate::layout::Layout,
        options: crate::Options,
        factory: std::sync::Arc<dyn crate::node::NodeFactory>,
        clock: std::sync::Arc<dyn clock::Clock>,
        store_id: Option<[u8; 16]>,
    ) -> Result<Store> {
        testing::start_simulated(layout, options, factory, clock, store_id)
    }

    #[cfg(any(test, feature = "testing"))]
    /// Opens a store with a stepped committer and `clock`.
    pub(crate) fn open_simulated(
        layout: crate::layout::Layout,
        options: crate::Options,
        factory: std::sync::Arc<dyn crate::node::NodeFactory>,
        clock: std::sync::Arc<dyn clock::Clock>,
    ) -> Result<Store> {
        testing::open_simulated(layout, options, factory, clock)
    }

    #[cfg(any(test, feature = "testing"))]
    /// The process dies: what is queued is dropped unanswered and the
    /// nodes are let go, with nothing flushed.
    pub(crate) fn crash(self) {
        testing::crash(self)
    }

    #[cfg(any(test, feature = "testing"))]
    /// Where `key`'s parts are: per part, its stripe and where every column
    /// of that stripe is (the simulator's failure reports).
    pub(crate) fn describe_key(&self, key: &[u8]) -> String {
        testing::describe_key(self, key)
    }

    #[cfg(any(test, feature = "testing"))]
    /// Where the store thinks the columns of `stripe_id` are.
    pub(crate) fn describe_stripe(&self, stripe_id: u64) -> String {
        testing::describe_stripe(self, stripe_id)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// How long a listing that copies a large backlog of keys for its sort
/// (a piece per hold of the state lock) waits between two pieces.
const BACKLOG_PIECE_PAUSE: std::time::Duration = std::time::Duration::from_micros(20);

/// Iterator over the keys with a prefix; see [`Store::keys_with_prefix`].
#[derive(Debug)]
pub struct KeysWithPrefix<'a> {
    store: &'a Store,
    prefix: Vec<u8>,
    batch: std::vec::IntoIter<Box<[u8]>>,
    last: Option<Box<[u8]>>,
    done: bool,
    /// Ended early: the index lost a page (C9).
    lost: bool,
}

impl KeysWithPrefix<'_> {
    /// Why the listing ended early, if it did: the keys it gave are then
    /// a prefix of the keys, not all of them. `None` when it gave every
    /// key (or has not ended yet).
    pub fn error(&self) -> Option<Error> {
        self.lost.then(Inner::index_lost_error)
    }
}

impl Iterator for KeysWithPrefix<'_> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        const BATCH: usize = 1024;
        if let Some(k) = self.batch.next() {
            self.last = Some(k.clone());
            return Some(k.into_vec());
        }
        if self.done {
            return None;
        }
        // A large backlog of keys not in the key order yet (the first
        // listing after open, or after the index moved onto a checkpoint:
        // all of them) is sorted from a copy, without the state lock, so
        // puts and gets go on meanwhile. The keys are listed under the
        // same read guard that found the backlog small, so an index that
        // moved onto a checkpoint meanwhile (its order not built) is never
        // sorted under the lock: the loop asks again.
        let keys = loop {
            let state = self.store.inner.read_state();
            match state.index.order_backlog() {
                index::Backlog::Small => {
                    let keys =
                        state
                            .index
                            .keys_with_prefix(&self.prefix, self.last.as_deref(), BATCH);
                    // Keys read from a base that lost a page may be
                    // missing or wrong (C9): none is given.
                    if !self.store.inner.index_intact_in(&state.index) {
                        self.done = true;
                        self.lost = true;
                        self.batch = Vec::new().into_iter();
                        return None;
                    }
                    break keys;
                }
                index::Backlog::Sort(mut backlog) => {
                    drop(state);
                    // The rest of the copy a piece per hold of the lock.
                    while !backlog.is_whole() {
                        // A pause between two holds: a writer woken when
                        // one ends must get the lock before the next
                        // (without it, the next read took the lock first
                        // every time, and a put waited for the whole copy:
                        // a quarter of a second at 10^7 keys).
                        std::thread::sleep(BACKLOG_PIECE_PAUSE);
                        if !self
                            .store
                            .inner
                            .read_state()
                            .index
                            .copy_backlog(&mut backlog)
                        {
                            break;
                        }
                    }
                    // A copy the index let go of sorts to an empty run;
                    // the loop asks again.
                    let sorted = backlog.sort();
                    self.store.inner.read_state().index.add_sorted(sorted);
                }
                // Another listing is sorting: its run serves this one too.
                index::Backlog::Busy => {
                    drop(state);
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        };
        self.done = keys.len() < BATCH;
        self.batch = keys.into_iter();
        let k = self.batch.next()?;
        self.last = Some(k.clone());
        Some(k.into_vec())
    }
}

fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid(
            "keys are 1 to 1024 bytes; this one is empty",
        ));
    }
    if key.len() > KEY_LEN_MAX {
        return Err(Error::LimitExceeded {
            what: "key length",
            limit: KEY_LEN_MAX as u64,
            actual: key.len() as u64,
        });
    }
    Ok(())
}

fn check_options(options: &Options) -> Result<()> {
    if options.split_len_min > options.column_len_target {
        return Err(Error::invalid(format!(
            "split_len_min ({}) must not exceed column_len_target ({})",
            options.split_len_min, options.column_len_target
        )));
    }
    if options.column_len_target < COLUMN_LEN_TARGET_MIN
        || options.column_len_target as u64 > crate::format::COLUMN_LEN_MAX / 2
    {
        return Err(Error::invalid(format!(
            "column_len_target is {}; it must be between {} and {}",
            options.column_len_target,
            COLUMN_LEN_TARGET_MIN,
            crate::format::COLUMN_LEN_MAX / 2
        )));
    }
    if options.put_timeout.is_zero() {
        return Err(Error::invalid("put_timeout must be more than zero"));
    }
    Ok(())
}
