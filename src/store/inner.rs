//! Everything the public handle and the committer share, and the
//! components it hands out (each over the parts of it that it needs).

use super::clock::Clock;
use super::clock::SystemClock;
use super::health::Counters;
use super::manifest::{ManifestState, Manifests};
use super::nodes::NodeSet;
use super::open::{Mode, SESSION_SHIFT};
use super::salvage::PendingLoss;
use super::submit::{Scheduling, Start};
use super::{Health, OpenReport, health, lifecycle, open, read, recover, stripe_io};
use super::{Options, RepairQueue, State};
use crate::Result;
use crate::codec::Codec;
use crate::layout::Layout;
use crate::node::NodeFactory;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// Everything the public handle and the committer share.
pub(crate) struct Inner {
    pub layout: Layout,
    pub options: Options,
    pub codec: Codec,
    pub nodes: NodeSet,
    pub state: RwLock<State>,
    pub stats: Counters,
    /// Histograms and gauges for the `metrics` recorder (registered at
    /// open).
    pub metrics: super::metrics::Metrics,
    pub repair_queue: RepairQueue,
    pub open_report: Mutex<OpenReport>,
    /// Held by the one compaction, repair or scrub that may run at a time.
    pub maintenance: Mutex<()>,
    /// Opens the nodes, and reopens them for repair.
    pub factory: Arc<dyn NodeFactory>,
    /// The identity a created store gets, instead of a random one (the
    /// simulator: one seed, one trace).
    pub fixed_store_id: Option<[u8; 16]>,
    /// When the object-store nodes were last checked (by `clock`).
    pub remote_checked: Mutex<Option<Duration>>,
    /// The time that decides deadlines and check intervals.
    pub clock: Arc<dyn Clock>,
    /// Set by `close`: the nodes are released.
    pub closed: AtomicBool,
    /// Whether the index was full at the last publish: puts are refused
    /// (checked without the state lock, which publish holds for writing).
    pub index_full: AtomicBool,
    /// The manifest as last written, and which nodes hold it.
    pub manifests: Manifests,
    /// The next stripe id the committer will use.
    pub next_stripe_id: AtomicU64,
    /// Checkpoints started this session (numbers their generations).
    pub checkpoints_taken: std::sync::atomic::AtomicU32,
    /// Entries published since the last checkpoint was taken (the
    /// automatic checkpoint policy counts them).
    pub entries_since_checkpoint: AtomicU64,
    /// Set while a checkpoint started by the policy runs.
    pub checkpoint_running: Arc<AtomicBool>,
    /// Set when a node that takes writes lacks the newest checkpoint's
    /// columns (`checkpoint::lacks_columns`): the policy starts the next
    /// checkpoint without waiting for `checkpoint_every` writes.
    pub checkpoint_wanted: AtomicBool,
    /// What this process wrote of checkpoints, for the choice between a
    /// delta and a full one (docs/DURABILITY.md, C8).
    pub checkpoint_chain: Mutex<super::checkpoint::Chain>,
    /// A loss beyond the promise found by a salvage open, until accepted.
    pub loss: PendingLoss,
    /// Retired generations whose removal is not confirmed on every node:
    /// compaction carries their retire markers forward.
    pub retired_pending: Mutex<BTreeSet<u64>>,
    /// Set by a salvage open whose manifest reached no quorum: writes are
    /// refused (their stripe ids could collide with a later session's).
    pub read_only: AtomicBool,
    /// Set once a page of the checkpoint records the index reads in place
    /// read as zeros under the running store, or they failed their
    /// checksums (`BaseIndex::intact`, `BaseIndex::verify`;
    /// docs/DURABILITY.md, C9): from then on reads that look a key up and
    /// writes are refused, until the store is opened again.
    pub index_lost: AtomicBool,
    /// I/O that fans out runs one call after another on the calling
    /// thread, in a fixed order (a stepped store, the simulator's):
    /// degraded reads ask their source columns in turn instead of racing
    /// them, and a repair's appends to one node's several generations do
    /// not race for it. Which columns answer first, which failures are
    /// heard, and which of two appends a node's fault hits must not depend
    /// on thread timing.
    pub sequential_io: bool,
}

/// Why a read or write is refused once the index lost a page.
pub(crate) const INDEX_LOST: &str = "a page of the checkpoint records the index reads in place \
    could not be read under the running store, or they changed (a checkpoint file cut short or \
    rewritten, or a media error), so a lookup could miss a key; reads and writes are refused \
    until the store is opened again, which reads the checkpoint anew and rebuilds the lost \
    column from the others (docs/DURABILITY.md, C9)";

impl Inner {
    /// The store's shared state before anything is read from the nodes.
    pub(crate) fn new(
        layout: Layout,
        options: Options,
        factory: Arc<dyn NodeFactory>,
        nodes: Vec<open::Handle>,
        codec: Codec,
        start: &Start,
    ) -> Inner {
        let node_count = layout.nodes().len();
        let metrics = super::metrics::Metrics::register(&layout);
        Inner {
            nodes: NodeSet::new(&layout, &*factory, nodes),
            layout,
            options,
            codec,
            state: RwLock::new(State::default()),
            stats: Counters::registered(),
            metrics,
            repair_queue: RepairQueue::default(),
            open_report: Mutex::new(OpenReport::default()),
            maintenance: Mutex::new(()),
            factory,
            fixed_store_id: start.store_id,
            remote_checked: Mutex::new(None),
            clock: start
                .clock
                .clone()
                .unwrap_or_else(|| Arc::new(SystemClock::new())),
            closed: AtomicBool::new(false),
            index_full: AtomicBool::new(false),
            manifests: Manifests::new(node_count),
            next_stripe_id: AtomicU64::new(0),
            checkpoints_taken: std::sync::atomic::AtomicU32::new(0),
            entries_since_checkpoint: AtomicU64::new(0),
            checkpoint_running: Arc::new(AtomicBool::new(false)),
            checkpoint_wanted: AtomicBool::new(false),
            checkpoint_chain: Mutex::new(super::checkpoint::Chain::default()),
            loss: PendingLoss::default(),
            retired_pending: Mutex::new(BTreeSet::new()),
            read_only: AtomicBool::new(false),
            index_lost: AtomicBool::new(false),
            sequential_io: start.scheduling == Scheduling::Stepped,
        }
    }

    /// Identifies the store, recovers its stripes and index, and starts a
    /// new session (docs/DURABILITY.md, "Open"). Returns the session's
    /// first stripe id and the stripes open must rebuild before it
    /// returns.
    pub(crate) fn open_session(&self, mode: Mode, started: Instant) -> Result<(u64, Vec<u64>)> {
        let (found, max_session) = self.identifier().identify(mode)?;
        self.manifests.replace(found.clone());
        self.identifier().check_outage()?;
        let session = max_session + 1;
        let recovered = self.recovery().recover(&found, session)?;
        if !self.start_session(session, recovered.discarded_ranges.clone())? {
            self.read_only.store(true, Ordering::Release);
        }
        let report = recovered.report;
        *self.write_state() = recovered.state;
        if let (Some((base, homes)), Some(newest)) = (recovered.bottom_homes, recovered.newest) {
            self.checkpoint_chain
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .opened_over(base, homes, newest);
        }
        if let Some(loss) = recovered.loss {
            self.loss.set(loss);
        }
        let cleaned = recover::remove_retired_leftovers(&self.nodes, &recovered.retired);
        if !cleaned {
            *self
                .retired_pending
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = recovered.retired;
        }
        let first_stripe_id = (session << SESSION_SHIFT) | 1;
        self.next_stripe_id
            .store(first_stripe_id, Ordering::Release);
        tracing::info!(
            session,
            blobs = report.blobs,
            stripes = report.stripes_visible,
            discarded = report.stripes_discarded,
            lost = report.stripes_lost,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "store opened"
        );
        if let Ok(mut r) = self.open_report.lock() {
            *r = report;
        }
        Ok((first_stripe_id, recovered.below_margin))
    }

    pub(crate) fn read_state(&self) -> RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave the index half
        // updated in a way readers could observe: publishing is a sequence
        // of whole-entry inserts. So a poisoned lock is still usable.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether what was read from `index` (the state's, whose lock the
    /// caller holds) can be trusted: false once a page of its base, the
    /// checkpoint records read in place, was lost under the running store
    /// (the file cut short, a media error: `BaseIndex::intact`), and ever
    /// after (`index_lost`). Asked after the reads it vouches for and
    /// before their answer is acted on (docs/DURABILITY.md, C9).
    pub(crate) fn index_intact_in(&self, index: &super::index::Index) -> bool {
        if self.index_lost.load(Ordering::Acquire) {
            return false;
        }
        if index.base_intact() {
            return true;
        }
        self.latch_index_lost();
        false
    }

    /// [`index_intact`](Self::index_intact), and the base's columns read
    /// whole against their checksums (`BaseIndex::verify`, outside the
    /// lock): what a compaction asks before it retires a generation, and
    /// a checkpoint before it writes, since a base that changed without a
    /// fault (a file cut inside a page, a hole punched, bytes rewritten)
    /// would make their losses permanent (C9). A pass over the base's
    /// bytes (about 0.4 GB at 10^7 blobs).
    pub(crate) fn index_verified(&self) -> bool {
        let base = {
            let state = self.read_state();
            if !self.index_intact_in(&state.index) {
                return false;
            }
            state.index.base_handle()
        };
        if base.is_none_or(|b| b.verify()) {
            return true;
        }
        self.latch_index_lost();
        false
    }

    /// Sets `index_lost`, counting and logging it the first time.
    fn latch_index_lost(&self) {
        if !self.index_lost.swap(true, Ordering::AcqRel) {
            self.stats.index_lost.inc();
            tracing::error!("the store's index: {INDEX_LOST}");
        }
    }

    /// [`index_intact_in`](Self::index_intact_in), taking the state's
    /// read lock (not for a caller that holds it).
    pub(crate) fn index_intact(&self) -> bool {
        self.index_intact_in(&self.read_state().index)
    }

    /// The error of a read or write refused because the index lost a page
    /// ([`index_intact_in`](Self::index_intact_in)).
    pub(crate) fn index_lost_error() -> crate::Error {
        crate::Error::Corrupt {
            location: "the store's index".into(),
            reason: INDEX_LOST.into(),
        }
    }

    pub(crate) fn index_contains(&self, key: &[u8]) -> bool {
        self.read_state().index.contains(key)
    }

    pub(crate) fn queue_repair(&self, stripe_id: u64, column_index: u16) {
        self.repair_queue.push(stripe_id, column_index);
    }

    pub(crate) fn repair_queue_len(&self) -> usize {
        self.repair_queue.len()
    }

    /// Empties the repair queue and returns what was in it.
    pub(crate) fn take_repair_queue(&self) -> BTreeSet<(u64, u16)> {
        self.repair_queue.take()
    }

    /// Starts session `session` on the member nodes (see
    /// [`Manifests::start_session`]).
    pub(crate) fn start_session(&self, session: u64, discarded: Vec<(u64, u64)>) -> Result<bool> {
        self.manifests.start_session(
            &self.nodes,
            &self.layout,
            self.options.salvage,
            session,
            discarded,
        )
    }

    /// Changes the committed manifest (see [`Manifests::update`]).
    pub(crate) fn update_manifest(&self, change: impl FnOnce(&mut ManifestState)) -> Result<()> {
        self.manifests.update(&self.nodes, &self.layout, change)
    }

    /// Clears `node_history_missing` of the nodes that came back empty
    /// once every stripe the store knows keeps the layout's promise again
    /// where its columns are: what they lost no longer matters to any open,
    /// which then counts them whole (docs/DURABILITY.md, "Open", step 2).
    /// Repair and `accept_loss` call it under the maintenance lock, so no
    /// node is adopted meanwhile. Not while a salvage loss is pending, nor
    /// on a read-only store. A node the manifest write may have missed (it
    /// is not up, writable and a member afterwards) keeps the flag here, so
    /// the next repair writes it again; a write that reaches no quorum
    /// leaves every flag for the next repair.
    pub(crate) fn note_history_restored(&self) {
        let before = self.manifests.state();
        let missing = before.nodes_missing_history();
        if missing.is_empty()
            || self.loss.is_pending()
            || self.read_only.load(Ordering::Acquire)
            || !self.every_stripe_keeps_the_promise()
        {
            return;
        }
        let marked = self.update_manifest(|m| {
            for id in &missing {
                // Adopted again since (a later fire): not this repair's.
                if m.node_since.get(id.index()) == before.node_since.get(id.index())
                    && let Some(flag) = m.node_history_missing.get_mut(id.index())
                {
                    *flag = false;
                }
            }
        });
        if let Err(e) = marked {
            tracing::warn!(
                error = %e,
                "could not record that the nodes that came back empty are whole again"
            );
            return;
        }
        let mut whole = Vec::new();
        for &id in &missing {
            if self.nodes.is_up(id) && self.nodes.is_writable(id) && self.manifests.is_member(id) {
                whole.push(self.layout.node(id).name.as_str());
            } else {
                self.manifests.mark_history_missing(id);
            }
        }
        tracing::info!(nodes = ?whole, "nodes that came back empty are whole again");
    }

    /// Whether every stripe the store knows keeps at least k columns
    /// through every loss the layout's promise covers, counting only
    /// columns stored on nodes that are up.
    fn every_stripe_keeps_the_promise(&self) -> bool {
        let state = self.read_state();
        let mut stored = Vec::new();
        state.stripes.values().all(|stripe| {
            stored.clear();
            let mut zero = 0;
            for col in stripe.columns.iter() {
                match col.stored {
                    _ if col.len == 0 => zero += 1,
                    Some((at, _)) if self.nodes.is_up(at) => stored.push(at),
                    _ => {}
                }
            }
            self.layout.survives_promise_given(&stored, zero, &[])
        })
    }

    /// Raises node `id`'s `node_since` to the next stripe id: it lacked a
    /// column planned on it, which repair just rebuilt (see
    /// [`Manifests::adopt`]).
    pub(crate) fn adopt_node(
        &self,
        id: crate::layout::NodeId,
        node: &dyn crate::node::Node,
    ) -> Result<()> {
        let next = self.next_stripe_id.load(Ordering::Acquire);
        self.manifests.adopt(&self.layout, next, id, node, false)
    }

    /// Where the columns are, and whether the store survives a site loss.
    pub(crate) fn health(&self) -> Health {
        health::compute(
            &self.layout,
            &self.nodes,
            &self.read_state(),
            self.loss.is_pending(),
            self.nodes
                .superseded_by()
                .map(|(node, reason)| format!("node {node}: {reason}")),
        )
    }

    /// The store's identity from its nodes' manifests.
    pub(crate) fn identifier(&self) -> open::Identify<'_> {
        open::Identify {
            layout: &self.layout,
            options: &self.options,
            nodes: &self.nodes,
            manifests: &self.manifests,
            fixed_store_id: self.fixed_store_id,
        }
    }

    /// Open's recovery over this store's nodes.
    pub(crate) fn recovery(&self) -> recover::Recovery<'_> {
        recover::Recovery {
            layout: &self.layout,
            options: &self.options,
            nodes: &self.nodes,
            manifests: &self.manifests,
            repairs: &self.repair_queue,
            reads: self.reads(),
            identify: self.identifier(),
            codec: &self.codec,
            // A stepped store (the simulator's) hashes its index under a
            // key drawn from its identity, so its checkpoints' bytes are the
            // same every run.
            hash_key: self.sequential_io.then(|| {
                let id = self.manifests.state().shared.store_id;
                let half = |i: usize| {
                    let mut word = [0u8; 8];
                    word.copy_from_slice(&id[i..i + 8]);
                    u64::from_le_bytes(word) ^ 0x6765_6f73_6861_7264
                };
                (half(0), half(8))
            }),
        }
    }

    /// The node set's lifecycle: checks, revival, adoption.
    pub(crate) fn lifecycle(&self) -> lifecycle::NodeLifecycle<'_> {
        lifecycle::NodeLifecycle {
            layout: &self.layout,
            nodes: &self.nodes,
            factory: &*self.factory,
            manifests: &self.manifests,
            clock: &*self.clock,
            remote_checked: &self.remote_checked,
            next_stripe_id: &self.next_stripe_id,
            state: &self.state,
        }
    }

    /// Stripe I/O over this store's nodes.
    pub(crate) fn stripe_io(&self) -> stripe_io::StripeIo<'_> {
        stripe_io::StripeIo {
            layout: &self.layout,
            options: &self.options,
            nodes: &self.nodes,
            sequential_io: self.sequential_io,
            metrics: &self.metrics,
        }
    }

    /// The read path over this store's nodes.
    pub(crate) fn reads(&self) -> read::Reads<'_> {
        read::Reads {
            layout: &self.layout,
            options: &self.options,
            codec: &self.codec,
            nodes: &self.nodes,
            stats: &self.stats,
            repairs: &self.repair_queue,
            sequential_io: self.sequential_io,
        }
    }
}
