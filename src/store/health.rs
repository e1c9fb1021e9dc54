//! Counters (`stats`) and the health report (`health`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use super::State;
use super::nodes::NodeSet;
use crate::layout::Layout;

/// A counter of [`Stats`], mirrored into a `metrics` counter (a no-op
/// when no recorder was installed at open).
pub(crate) struct Counter {
    value: AtomicU64,
    metric: metrics::Counter,
}

impl Default for Counter {
    fn default() -> Counter {
        Counter {
            value: AtomicU64::new(0),
            metric: metrics::Counter::noop(),
        }
    }
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Counter").field(&self.get()).finish()
    }
}

impl Counter {
    fn registered(name: &'static str) -> Counter {
        Counter {
            value: AtomicU64::new(0),
            metric: metrics::counter!(name),
        }
    }

    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds one; returns the count before it.
    pub fn fetch_inc(&self) -> u64 {
        self.metric.increment(1);
        self.value.fetch_add(1, Ordering::Relaxed)
    }

    pub fn add(&self, n: u64) {
        self.metric.increment(n);
        self.value.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub puts: Counter,
    pub gets: Counter,
    pub deletes: Counter,
    pub degraded_reads: Counter,
    pub hedged_reads: Counter,
    pub checksum_failures: Counter,
    pub read_errors: Counter,
    pub write_failures: Counter,
    pub degraded_writes: Counter,
    pub handoff_columns: Counter,
    pub commit_retries: Counter,
    pub bytes_written: Counter,
    pub checkpoints: Counter,
    pub checkpoint_deltas: Counter,
    pub checkpoints_degraded: Counter,
    pub checkpoint_failures: Counter,
    pub checkpoint_bytes: Counter,
    /// Bytes read by repairs, for progress reports.
    pub repair_bytes_read: Counter,
    pub index_lost: Counter,
}

impl Counters {
    /// Counters whose every change also goes to the `metrics` recorder
    /// installed now (`geoshard_<name>_total`).
    pub fn registered() -> Counters {
        Counters {
            puts: Counter::registered("geoshard_puts_total"),
            gets: Counter::registered("geoshard_gets_total"),
            deletes: Counter::registered("geoshard_deletes_total"),
            degraded_reads: Counter::registered("geoshard_degraded_reads_total"),
            hedged_reads: Counter::registered("geoshard_hedged_reads_total"),
            checksum_failures: Counter::registered("geoshard_checksum_failures_total"),
            read_errors: Counter::registered("geoshard_read_errors_total"),
            write_failures: Counter::registered("geoshard_write_failures_total"),
            degraded_writes: Counter::registered("geoshard_degraded_writes_total"),
            handoff_columns: Counter::registered("geoshard_handoff_columns_total"),
            commit_retries: Counter::registered("geoshard_commit_retries_total"),
            bytes_written: Counter::registered("geoshard_bytes_written_total"),
            checkpoints: Counter::registered("geoshard_checkpoints_total"),
            checkpoint_deltas: Counter::registered("geoshard_checkpoint_deltas_total"),
            checkpoints_degraded: Counter::registered("geoshard_checkpoints_degraded_total"),
            checkpoint_failures: Counter::registered("geoshard_checkpoint_failures_total"),
            checkpoint_bytes: Counter::registered("geoshard_checkpoint_bytes_total"),
            repair_bytes_read: Counter::registered("geoshard_repair_bytes_read_total"),
            index_lost: Counter::registered("geoshard_index_lost_total"),
        }
    }

    pub fn snapshot(&self, blobs: usize, stripes: usize, repair_queue: usize) -> Stats {
        Stats {
            blobs,
            stripes,
            puts: self.puts.get(),
            gets: self.gets.get(),
            deletes: self.deletes.get(),
            degraded_reads: self.degraded_reads.get(),
            hedged_reads: self.hedged_reads.get(),
            checksum_failures: self.checksum_failures.get(),
            read_errors: self.read_errors.get(),
            write_failures: self.write_failures.get(),
            degraded_writes: self.degraded_writes.get(),
            handoff_columns: self.handoff_columns.get(),
            commit_retries: self.commit_retries.get(),
            bytes_written: self.bytes_written.get(),
            checkpoints: self.checkpoints.get(),
            checkpoint_deltas: self.checkpoint_deltas.get(),
            checkpoints_degraded: self.checkpoints_degraded.get(),
            checkpoint_failures: self.checkpoint_failures.get(),
            checkpoint_bytes: self.checkpoint_bytes.get(),
            index_lost: self.index_lost.get(),
            repair_queue,
        }
    }
}

/// Counters since the store was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Keys with a value.
    pub blobs: usize,
    /// Visible stripes.
    pub stripes: usize,
    /// Durable puts (blocking and async; relocations by compaction not counted).
    pub puts: u64,
    /// Gets of keys that exist.
    pub gets: u64,
    /// Durable deletes (blocking and async).
    pub deletes: u64,
    /// Blob parts rebuilt from other columns because their own column could
    /// not be read or failed its checksum.
    pub degraded_reads: u64,
    /// Reads from an object-store node that had not answered after
    /// `Options::read_hedge_after` and were raced by a degraded read.
    pub hedged_reads: u64,
    /// Blob parts and entry tables whose bytes failed their checksum.
    pub checksum_failures: u64,
    /// Node reads that failed.
    pub read_errors: u64,
    /// Commits that failed (their puts got an error).
    pub write_failures: u64,
    /// Stripes acknowledged without the promise's margin: written while
    /// the promise was used up (a whole site down) or could not be kept;
    /// repair restores it.
    pub degraded_writes: u64,
    /// Columns commits wrote to a node other than their home (handoffs:
    /// the home took no writes); repair moves them home.
    pub handoff_columns: u64,
    /// Commit attempts sealed again after an append failed.
    pub commit_retries: u64,
    /// Column bytes appended to nodes (data and parity) by commits.
    pub bytes_written: u64,
    /// Checkpoints written, by [`Store::checkpoint`](super::Store::checkpoint)
    /// and in the background (`Options::checkpoint_every`).
    pub checkpoints: u64,
    /// Of those, deltas (`CheckpointReport::delta_of`).
    pub checkpoint_deltas: u64,
    /// Of those, written without the columns of nodes that took no writes
    /// (`CheckpointReport::nodes_skipped`): no margin left there until
    /// the next full one.
    pub checkpoints_degraded: u64,
    /// Checkpoints begun and not written (refused, or a node failed to take
    /// its column; a background one is retried after the next
    /// `Options::checkpoint_every` writes). The log says why.
    pub checkpoint_failures: u64,
    /// Column bytes (data and parity) checkpoints wrote: with
    /// [`bytes_written`](Self::bytes_written), the write amplification of
    /// checkpoints.
    pub checkpoint_bytes: u64,
    /// 1 once a page of the checkpoint records the index reads in place
    /// could not be read under the running store (a checkpoint file cut
    /// short, a media error), or a compaction or checkpoint found their
    /// columns changed: reads and writes are then refused with
    /// [`Error::Corrupt`](crate::Error::Corrupt) until the store is opened
    /// again (docs/DURABILITY.md, C9).
    pub index_lost: u64,
    /// Columns waiting for repair (missing, damaged, or away from home).
    pub repair_queue: usize,
}

/// One node, as [`Health`] sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeHealth {
    /// The node's name in the layout.
    pub name: String,
    /// Its site's name.
    pub site: String,
    /// False when the node could not be opened or a read from it failed.
    pub reachable: bool,
    /// False when the node takes no more writes (an append failed, e.g. a
    /// full disk); its records are still read while it is reachable.
    pub writable: bool,
    /// Why it is down or takes no writes, when it is or does not.
    pub down_reason: Option<String>,
    /// Column records of visible stripes that this node holds.
    pub columns: usize,
    /// Their payload bytes.
    pub bytes: u64,
    /// Columns whose home is this node but that are not here.
    pub columns_missing: usize,
    /// Columns held here whose home is another node (handoffs).
    pub columns_away: usize,
}

/// The state of the store's redundancy, computed from where the columns
/// actually are.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// Every node of the layout.
    pub nodes: Vec<NodeHealth>,
    /// Visible stripes.
    pub stripes: usize,
    /// Stripe count by margin: how many more columns each stripe can lose
    /// and still be read (a negative margin would be a lost stripe).
    pub stripes_by_margin: BTreeMap<i64, usize>,
    /// Columns that are not on any reachable node.
    pub columns_missing: usize,
    /// Columns held away from their home node.
    pub columns_away: usize,
    /// If one more site burned now, would every blob still be readable?
    pub survives_any_site_loss: bool,
    /// Set while a loss beyond the promise found by a salvage open is not
    /// accepted yet (see [`Store::accept_loss`](super::Store::accept_loss)).
    pub loss_pending: bool,
    /// Set when another writer took over (it holds a remote node's lease):
    /// the node and what was found. This store no longer writes; see
    /// [`Error::Superseded`](crate::Error::Superseded).
    pub superseded_by: Option<String>,
}

/// The health of the stripes in `state`, with the nodes of `node_set`:
/// where each stripe's columns are, and whether it survives the loss of
/// any one site.
pub(crate) fn compute(
    layout: &Layout,
    node_set: &NodeSet,
    state: &State,
    loss_pending: bool,
    superseded_by: Option<String>,
) -> Health {
    let k = layout.code().data_count;
    let mut nodes = node_states(layout, node_set);
    let site_count = layout.sites().len();
    let mut by_margin: BTreeMap<i64, usize> = BTreeMap::new();
    let mut columns_missing = 0;
    let mut columns_away = 0;
    let mut survives = true;
    let mut alive_per_site = vec![0usize; site_count];
    for stripe in state.stripes.values() {
        alive_per_site.iter_mut().for_each(|n| *n = 0);
        let mut alive = 0usize;
        let mut virtual_zero = 0usize;
        for col in stripe.columns.iter() {
            if col.len == 0 {
                virtual_zero += 1;
                continue;
            }
            match col.stored {
                Some((at, _)) if node_set.is_up(at) => {
                    alive += 1;
                    let n = &mut nodes[usize::from(at.0)];
                    n.columns += 1;
                    n.bytes += u64::from(col.len);
                    if col.is_away() {
                        n.columns_away += 1;
                        columns_away += 1;
                    }
                    let site = usize::from(layout.node(at).site.0);
                    alive_per_site[site] += 1;
                }
                _ => {
                    columns_missing += 1;
                    if let Some(home) = col.home {
                        nodes[usize::from(home.0)].columns_missing += 1;
                    }
                }
            }
        }
        let present = alive + virtual_zero;
        *by_margin.entry(present as i64 - k as i64).or_default() += 1;
        let worst_site = alive_per_site.iter().copied().max().unwrap_or(0);
        if present - worst_site < k {
            survives = false;
        }
    }
    Health {
        nodes,
        stripes: state.stripes.len(),
        stripes_by_margin: by_margin,
        columns_missing,
        columns_away,
        survives_any_site_loss: survives,
        loss_pending,
        superseded_by,
    }
}

/// Every node's state, its column counts still zero.
fn node_states(layout: &Layout, node_set: &NodeSet) -> Vec<NodeHealth> {
    layout
        .nodes()
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let id = crate::layout::NodeId(i as u16);
            NodeHealth {
                name: spec.name.clone(),
                site: layout.sites()[usize::from(spec.site.0)].name.clone(),
                reachable: node_set.is_up(id),
                writable: node_set.is_writable(id),
                down_reason: node_set.down_reason(id),
                columns: 0,
                bytes: 0,
                columns_missing: 0,
                columns_away: 0,
            }
        })
        .collect()
}
