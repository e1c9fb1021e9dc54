//! The simulated disks of every node, their faults, and the factory that
//! opens them for a store (exclusive locks, missing and unmounted
//! directories, torn tails cut at open, as a local node does).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::rng::mix;
use crate::format::scan_segment;
use crate::layout::{Layout, NodeSpec};

/// One node's disk: what survives the process.
#[derive(Debug, Default)]
pub(crate) struct Disk {
    /// The directory exists (false: deleted, or a disk that is not
    /// mounted).
    pub present: bool,
    /// Calls fail as if the node could not be reached (a network split, a
    /// site without power); the bytes stay.
    pub unreachable: bool,
    /// Durable segment bytes by generation.
    pub segments: BTreeMap<u64, Vec<u8>>,
    pub manifest: Option<Vec<u8>>,
    /// Bumped by every open, wipe or vanish: older handles stop working.
    pub epoch: u64,
    /// A handle of `epoch` is open (the lock a local node takes).
    pub locked: bool,
    /// Appends fail with ENOSPC and write nothing.
    pub full: bool,
    /// Reads fail with EIO.
    pub read_eio: bool,
    /// The next append writes its bytes but its sync fails (the node
    /// fences; the bytes may be there after a crash).
    pub sync_fail_next: bool,
    /// The next append lands `misdirect_by` bytes before the end of its
    /// segment, over records already there, and says it succeeded.
    pub misdirect_next: bool,
    /// Mutating calls so far (fates are drawn from it, not from the order
    /// threads run in).
    pub calls: u64,
    /// Hash of every I/O of this disk, step by step: the node's trace.
    pub trace: u64,
    /// The I/O of the current step, as a sum of hashes: the calls of one
    /// step may run on several threads (a repair rebuilds while it writes),
    /// so within a step the trace is the set of calls, not their order.
    pub step: u64,
    /// I/O calls traced.
    pub io_count: u64,
    /// Simulated time each call to this node takes, in microseconds.
    pub latency_us: u64,
}

impl Disk {
    /// Adds one I/O to the disk's trace.
    pub fn record(&mut self, op: u64, generation: u64, offset: u64, len: u64, crc: u32) {
        self.io_count += 1;
        let mut h = mix(op);
        for v in [generation, offset, len, u64::from(crc)] {
            h = mix(h ^ v);
        }
        self.step = self.step.wrapping_add(h);
    }

    /// Whether the disk holds anything of a store.
    pub fn used(&self) -> bool {
        self.manifest.is_some() || !self.segments.is_empty()
    }
}

/// Counts of injected faults, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Process crashes (a store dropped mid-step, its queue unanswered).
    pub crashes: u64,
    /// Writes torn by a crash (a prefix, zeros or garbage left).
    pub torn_writes: u64,
    /// Whole sites burned (every node wiped).
    pub site_fires: u64,
    /// Sites made unreachable (and later reachable again).
    pub site_outages: u64,
    /// Nodes whose disk filled (ENOSPC).
    pub disks_full: u64,
    /// Nodes whose reads failed with EIO for a while.
    pub read_errors: u64,
    /// Appends whose sync failed (the node fences).
    pub sync_failures: u64,
    /// Bytes flipped in synced data.
    pub bit_rot: u64,
    /// Segments shortened under a running store.
    pub files_shortened: u64,
    /// Appends that landed at the wrong offset and said they succeeded.
    pub misdirected_writes: u64,
    /// Node directories that vanished (and came back, whole or empty).
    pub dirs_vanished: u64,
    /// Failures beyond the promise (a second site hit while one was).
    pub beyond_promise: u64,
    /// Seeds with a slow site (every call to its nodes takes 20 ms of
    /// simulated time).
    pub slow_sites: u64,
    /// Seeds whose puts give up retrying after 2 to 101 ms of simulated
    /// time.
    pub short_put_timeouts: u64,
}

impl FaultCounts {
    /// Adds `other`'s counts to these (a soak's totals).
    pub fn add(&mut self, other: &FaultCounts) {
        self.crashes += other.crashes;
        self.torn_writes += other.torn_writes;
        self.site_fires += other.site_fires;
        self.site_outages += other.site_outages;
        self.disks_full += other.disks_full;
        self.read_errors += other.read_errors;
        self.sync_failures += other.sync_failures;
        self.bit_rot += other.bit_rot;
        self.files_shortened += other.files_shortened;
        self.misdirected_writes += other.misdirected_writes;
        self.dirs_vanished += other.dirs_vanished;
        self.beyond_promise += other.beyond_promise;
        self.slow_sites += other.slow_sites;
        self.short_put_timeouts += other.short_put_timeouts;
    }
}

/// Every simulated disk.
#[derive(Debug)]
pub(crate) struct World {
    pub seed: u64,
    specs: Vec<NodeSpec>,
    disks: Vec<Mutex<Disk>>,
    /// A crash is under way: every mutating call draws a fate (done, torn,
    /// or not done) and fails.
    pub crashing: AtomicBool,
    /// While crashing: the share (per mille) of writes under way that land
    /// whole.
    pub crash_done_per_mille: std::sync::atomic::AtomicU64,
    pub faults: Mutex<FaultCounts>,
    /// `GEOSHARD_SIM_KNOWN_GAPS`: also the faults of the open findings
    /// (docs/TESTING.md), such as torn writes whose sectors landed out of
    /// order (S9).
    pub known_gaps: bool,
    /// Simulated time in microseconds: the store's clock ([`SimClock`]).
    /// It moves only when the simulator says so: by each node call's
    /// latency (calls of one step add up as if they ran one after another,
    /// so the sum does not depend on which thread ran first) and by a
    /// fixed amount between steps.
    pub now_us: AtomicU64,
    /// `GEOSHARD_SIM_IO_LOG`: every node call goes to stderr (finding
    /// where two runs of a seed part).
    pub io_log: bool,
}

/// Simulated time per call to a node that does not answer (a connect
/// timeout), in microseconds.
pub(crate) const UNREACHABLE_US: u64 = 5_000;

/// Simulated time per call to a healthy node, in microseconds.
pub(crate) const LATENCY_US: u64 = 100;

/// The store's clock in a simulation: the world's simulated time.
#[derive(Debug)]
pub(crate) struct SimClock {
    pub world: Arc<World>,
}

impl crate::store::Clock for SimClock {
    fn now(&self) -> Duration {
        Duration::from_micros(self.world.now_us.load(Ordering::Acquire))
    }
}

impl World {
    pub fn new(seed: u64, layout: &Layout) -> Arc<World> {
        Arc::new(World {
            seed,
            specs: layout.nodes().to_vec(),
            disks: layout
                .nodes()
                .iter()
                .map(|_| {
                    Mutex::new(Disk {
                        present: true,
                        latency_us: LATENCY_US,
                        ..Disk::default()
                    })
                })
                .collect(),
            crashing: AtomicBool::new(false),
            crash_done_per_mille: std::sync::atomic::AtomicU64::new(333),
            faults: Mutex::new(FaultCounts::default()),
            known_gaps: std::env::var_os("GEOSHARD_SIM_KNOWN_GAPS").is_some(),
            now_us: AtomicU64::new(0),
            io_log: std::env::var_os("GEOSHARD_SIM_IO_LOG").is_some(),
        })
    }

    /// Moves simulated time on by `micros`.
    pub fn advance(&self, micros: u64) {
        self.now_us.fetch_add(micros, Ordering::AcqRel);
    }

    /// Simulated time so far, in microseconds.
    pub fn now_us(&self) -> u64 {
        self.now_us.load(Ordering::Acquire)
    }

    pub fn disk(&self, index: usize) -> MutexGuard<'_, Disk> {
        self.disks[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn disk_count(&self) -> usize {
        self.disks.len()
    }

    pub fn faults(&self) -> MutexGuard<'_, FaultCounts> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends a step: folds each disk's calls of the step into its trace.
    pub fn end_step(&self) {
        for i in 0..self.disks.len() {
            let mut disk = self.disk(i);
            disk.trace = mix(disk.trace ^ disk.step);
            disk.step = 0;
        }
    }

    /// The trace of every disk, hashed in node order.
    pub fn trace_hash(&self) -> (u64, u64) {
        let mut hash = 0u64;
        let mut count = 0;
        for i in 0..self.disks.len() {
            let disk = self.disk(i);
            hash = mix(hash ^ disk.trace);
            count += disk.io_count;
        }
        (hash, count)
    }

    /// The process is gone: every handle stops working, locks are free.
    pub fn crash_done(&self) {
        self.crashing.store(false, Ordering::Release);
        for i in 0..self.disks.len() {
            let mut disk = self.disk(i);
            disk.epoch += 1;
            disk.locked = false;
        }
    }

    /// Wipes a node: everything lost, the directory back empty.
    pub fn wipe(&self, index: usize) {
        let mut disk = self.disk(index);
        disk.segments.clear();
        disk.manifest = None;
        disk.epoch += 1;
        disk.locked = false;
        disk.present = true;
    }

    /// Where the records of `stripe_id` are on the disks (failure reports).
    pub fn find_stripe(&self, stripe_id: u64) -> String {
        let mut out = Vec::new();
        for (i, spec) in self.specs.iter().enumerate() {
            let disk = self.disk(i);
            for (&generation, bytes) in &disk.segments {
                let scan = scan_segment(bytes, generation);
                for record in scan
                    .records
                    .iter()
                    .filter(|r| r.header.stripe_id == stripe_id)
                {
                    out.push(format!(
                        "col {} on {}@{generation:#x}:{}",
                        record.header.column_index, spec.name, record.payload_offset
                    ));
                }
            }
        }
        out.join(", ")
    }

    pub fn index_of(&self, spec: &NodeSpec) -> Option<usize> {
        self.specs.iter().position(|s| s.name == spec.name)
    }
}
