//! Metrics through the [`metrics`] facade: the handles are registered once,
//! when the store opens, with whatever recorder the process installed then
//! (a Prometheus exporter, say). With none installed every handle is a
//! no-op: recording costs a branch, and nothing is allocated per
//! operation either way. README.md ("Metrics and tracing") lists them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram};

use super::nodes::NodeSet;
use crate::layout::{Layout, NodeId};

/// One stripe in this many has its appends through the shared io_uring
/// submission timed per node (timing wakes the writer about once per node
/// instead of once; see README, "Metrics and tracing").
pub(crate) const SHARED_APPEND_SAMPLE_EVERY: u64 = 16;

/// One `get` of a whole blob on a local node in this many is timed (the
/// read is a memory-mapped slice, whose timing would cost more than the
/// read); every get of a split blob, or of a column on a remote node or
/// on none, is timed. `get_async`'s answers at the first poll are not.
pub(crate) const GET_SAMPLE_EVERY: u64 = 64;

/// The store's histograms and gauges; its counters live with
/// [`Counters`](super::health::Counters), which mirror each into a
/// `metrics` counter.
pub(crate) struct Metrics {
    /// Seconds from a put's or delete's submission to its answer.
    pub write_seconds: Histogram,
    /// Seconds a `get` took (sampled, see [`GET_SAMPLE_EVERY`]).
    pub get_seconds: Histogram,
    /// Seconds from a commit's seal to its publication (durable on every
    /// planned node, every earlier commit published).
    pub commit_seconds: Histogram,
    /// Column bytes a commit wrote (parity included).
    pub commit_bytes: Histogram,
    /// Requests a commit answered.
    pub commit_requests: Histogram,
    /// Seconds to append one stripe's columns to all its planned nodes in
    /// parallel, syncs included (the slowest planned node's time).
    pub stripe_append_seconds: Histogram,
    /// Per node (label `node`): seconds from the start of a stripe's (or a
    /// repair batch's) appends to this node's records being durable
    /// (sampled for local nodes sharing the io_uring submission: one
    /// stripe in [`SHARED_APPEND_SAMPLE_EVERY`]).
    pub node_append_seconds: Vec<Histogram>,
    /// Per node: column payload bytes appended (commits and repair).
    pub node_bytes_written: Vec<Counter>,
    /// Appends through the shared io_uring submission so far: one in
    /// [`SHARED_APPEND_SAMPLE_EVERY`] is timed per node.
    shared_appends: AtomicU64,
    /// Columns repair rebuilt, and columns it moved home.
    pub repair_columns_rebuilt: Counter,
    pub repair_columns_moved_home: Counter,
    /// Bytes repair wrote.
    pub repair_bytes_written: Counter,
    /// Bytes scrub read.
    pub scrub_bytes_read: Counter,
    /// Fraction of the running repair's and scrub's stripes done (1 when
    /// none runs).
    pub repair_progress: Gauge,
    pub scrub_progress: Gauge,
    /// Columns waiting for repair.
    pub repair_queue: Gauge,
    /// Per node (label `node`): 1 when it answers, 0 when down.
    pub node_up: Vec<Gauge>,
    /// Per node: 1 when it takes writes.
    pub node_writable: Vec<Gauge>,
}

impl Metrics {
    /// Registers every handle with the recorder installed now.
    pub fn register(layout: &Layout) -> Metrics {
        Metrics {
            node_append_seconds: per_node(
                layout,
                |node| metrics::histogram!("geoshard_node_append_seconds", "node" => node),
            ),
            node_bytes_written: per_node(
                layout,
                |node| metrics::counter!("geoshard_node_bytes_written_total", "node" => node),
            ),
            shared_appends: AtomicU64::new(0),
            write_seconds: metrics::histogram!("geoshard_write_seconds"),
            get_seconds: metrics::histogram!("geoshard_get_seconds"),
            commit_seconds: metrics::histogram!("geoshard_commit_seconds"),
            commit_bytes: metrics::histogram!("geoshard_commit_bytes"),
            commit_requests: metrics::histogram!("geoshard_commit_requests"),
            stripe_append_seconds: metrics::histogram!("geoshard_stripe_append_seconds"),
            repair_columns_rebuilt: metrics::counter!("geoshard_repair_columns_rebuilt_total"),
            repair_columns_moved_home: metrics::counter!(
                "geoshard_repair_columns_moved_home_total"
            ),
            repair_bytes_written: metrics::counter!("geoshard_repair_bytes_written_total"),
            scrub_bytes_read: metrics::counter!("geoshard_scrub_bytes_read_total"),
            repair_progress: metrics::gauge!("geoshard_repair_progress_ratio"),
            scrub_progress: metrics::gauge!("geoshard_scrub_progress_ratio"),
            repair_queue: metrics::gauge!("geoshard_repair_queue_columns"),
            node_up: per_node(
                layout,
                |node| metrics::gauge!("geoshard_node_up", "node" => node),
            ),
            node_writable: per_node(
                layout,
                |node| metrics::gauge!("geoshard_node_writable", "node" => node),
            ),
        }
    }

    /// Whether the next stripe's appends through the shared io_uring
    /// submission are timed per node.
    pub fn time_shared_appends(&self) -> bool {
        self.shared_appends
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SHARED_APPEND_SAMPLE_EVERY)
    }

    /// Records one node's append: its time (when it was measured) and
    /// payload bytes.
    pub fn observe_append(&self, node: NodeId, elapsed: Option<Duration>, bytes: u64) {
        if let (Some(elapsed), Some(histogram)) =
            (elapsed, self.node_append_seconds.get(node.index()))
        {
            histogram.record(elapsed.as_secs_f64());
        }
        if let Some(counter) = self.node_bytes_written.get(node.index()) {
            counter.increment(bytes);
        }
    }

    /// Sets the node gauges and the repair queue from the store's state.
    pub fn observe_nodes(&self, nodes: &NodeSet, repair_queue: usize) {
        for id in nodes.ids() {
            let i = id.index();
            if let Some(gauge) = self.node_up.get(i) {
                gauge.set(f64::from(u8::from(nodes.is_up(id))));
            }
            if let Some(gauge) = self.node_writable.get(i) {
                gauge.set(f64::from(u8::from(nodes.is_writable(id))));
            }
        }
        self.repair_queue.set(repair_queue as f64);
    }
}

/// One handle per node of `layout`, made by `handle` from the node's name
/// (its `node` label).
fn per_node<T>(layout: &Layout, handle: impl Fn(String) -> T) -> Vec<T> {
    layout
        .nodes()
        .iter()
        .map(|node| handle(node.name.clone()))
        .collect()
}

/// Seconds since `start`, for a histogram.
pub(crate) fn seconds_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}
