//! The simulated disks of every node, their faults, and the factory that
//! opens them for a store (exclusive locks, missing and unmounted
//! directories, torn tails cut at open, as a local node does).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::rng::mix;
use futures_util::{FutureExt, StreamExt};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{GetOptions, ObjectMeta, ObjectStore, PutOptions, PutPayload};

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
    /// An object-store node's bucket (the seed's nodes are object-store
    /// nodes); `segments` and `manifest` are then unused.
    pub bucket: Option<BucketDisk>,
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
        self.manifest.is_some()
            || !self.segments.is_empty()
            || self.bucket.as_ref().is_some_and(|b| !b.is_empty())
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
    /// Seeds whose nodes are object-store nodes (the real `ObjectNode`
    /// over a simulated bucket).
    pub object_seeds: u64,
    /// Second writers that took the leases of a running store.
    pub takeovers: u64,
    /// Times a writer's lease reads failed or hung.
    pub lease_faults: u64,
    /// Times listings began to show deleted objects.
    pub stale_listings: u64,
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
        self.object_seeds += other.object_seeds;
        self.takeovers += other.takeovers;
        self.lease_faults += other.lease_faults;
        self.stale_listings += other.stale_listings;
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
    /// While crashing: the disk whose next torn write leaves the prefix
    /// then zeros to the write's whole length (the file's size made
    /// durable, its last blocks not: FORMAT.md, "What we assume of the
    /// medium"), a torn tail as long as the records it held, so that a
    /// commit's stripe is shown without that node's columns (a
    /// fault-heavy seed's crashes, while no fault is outstanding);
    /// `u64::MAX`: none.
    pub to_length_disk: AtomicU64,
    /// While crashing: every torn write runs to its whole length (a
    /// fault-heavy seed's crashes with `GEOSHARD_SIM_KNOWN_GAPS`, which
    /// reach S9's state: DURABILITY.md, "What is not protected").
    pub to_length_all: AtomicBool,
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
    /// Object-store node handles made so far.
    pub opens: AtomicU64,
    /// The process running the store: bumped by a crash, which ends every
    /// object-store handle of the process before it.
    process: AtomicU64,
    /// The first request that waited for something that never comes (the
    /// simulator fails the run on it).
    hang: Mutex<Option<String>>,
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
    /// `objects`: the nodes are object-store nodes, each over a bucket.
    pub fn new(seed: u64, layout: &Layout, objects: bool) -> Arc<World> {
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
                        bucket: objects.then(BucketDisk::default),
                        ..Disk::default()
                    })
                })
                .collect(),
            crashing: AtomicBool::new(false),
            crash_done_per_mille: std::sync::atomic::AtomicU64::new(333),
            to_length_disk: AtomicU64::new(u64::MAX),
            to_length_all: AtomicBool::new(false),
            faults: Mutex::new(FaultCounts::default()),
            known_gaps: std::env::var_os("GEOSHARD_SIM_KNOWN_GAPS").is_some(),
            now_us: AtomicU64::new(0),
            io_log: std::env::var_os("GEOSHARD_SIM_IO_LOG").is_some(),
            opens: AtomicU64::new(0),
            process: AtomicU64::new(0),
            hang: Mutex::new(None),
        })
    }

    /// The process running the store now.
    pub fn process(&self) -> u64 {
        self.process.load(Ordering::Acquire)
    }

    /// Notes a request that waits for something that never comes.
    pub fn note_hang(&self, why: &str) {
        self.hang
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(|| why.to_owned());
    }

    /// The hang noted since the last call, if any.
    pub fn take_hang(&self) -> Option<String> {
        self.hang
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
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
        self.to_length_disk.store(u64::MAX, Ordering::Release);
        self.to_length_all.store(false, Ordering::Release);
        self.process.fetch_add(1, Ordering::AcqRel);
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
        if disk.bucket.is_some() {
            disk.bucket = Some(BucketDisk::default());
        }
        disk.epoch += 1;
        disk.locked = false;
        disk.present = true;
    }

    /// Where the records of `stripe_id` are on the disks (failure reports).
    pub fn find_stripe(&self, stripe_id: u64) -> String {
        let mut out = Vec::new();
        for (i, spec) in self.specs.iter().enumerate() {
            let disk = self.disk(i);
            let objects: Vec<(u64, Vec<u8>)> = disk
                .bucket
                .as_ref()
                .map(|b| {
                    b.objects()
                        .into_iter()
                        .filter_map(|(path, bytes)| {
                            Some((object_generation(&path)?, bytes.to_vec()))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let segments = disk
                .segments
                .iter()
                .map(|(&g, bytes)| (g, bytes.clone()))
                .chain(objects);
            for (generation, bytes) in segments {
                let scan = scan_segment(&bytes, generation);
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

/// Deleted objects a stale listing may still show, per disk.
pub(crate) const DELETED_KEPT: usize = 256;

/// How a writer's lease reads fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LeaseFault {
    /// They hang until the request timeout (else they answer an error).
    pub hang: bool,
    /// Handles opened before this open count are affected.
    pub opened_before: u64,
}

/// The object-service side of a simulated disk.
#[derive(Debug, Default)]
pub(crate) struct BucketDisk {
    pub bucket: Arc<InMemory>,
    /// Objects deleted so far (the newest [`DELETED_KEPT`]), for stale
    /// listings.
    pub deleted: Vec<ObjectMeta>,
    /// Listings also show `deleted` objects that are still gone.
    pub stale_listing: bool,
    pub lease_fault: Option<LeaseFault>,
}

impl BucketDisk {
    /// Every object of the bucket, with its bytes.
    pub fn objects(&self) -> Vec<(Path, bytes::Bytes)> {
        let metas: Vec<ObjectMeta> = match self.bucket.list(None).collect::<Vec<_>>().now_or_never()
        {
            Some(metas) => metas.into_iter().flatten().collect(),
            None => Vec::new(),
        };
        let mut out = Vec::new();
        for meta in metas {
            let got = self
                .bucket
                .get_opts(&meta.location, GetOptions::default())
                .now_or_never();
            if let Some(Ok(got)) = got
                && let Some(Ok(bytes)) = got.bytes().now_or_never()
            {
                out.push((meta.location, bytes));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Replaces an object's bytes (bit rot under the service).
    pub fn overwrite(&self, path: &Path, bytes: Vec<u8>) {
        let _ = self
            .bucket
            .put_opts(path, PutPayload::from(bytes), PutOptions::default())
            .now_or_never();
    }

    /// Whether the bucket holds anything.
    pub fn is_empty(&self) -> bool {
        !matches!(
            self.bucket.list(None).next().now_or_never(),
            Some(Some(Ok(_)))
        )
    }
}

/// The generation of a segment object `<prefix>/<generation:016x>/<seq>.seg`.
pub(crate) fn object_generation(path: &Path) -> Option<u64> {
    let parts: Vec<&str> = path.as_ref().split('/').collect();
    let [.., generation, object] = parts[..] else {
        return None;
    };
    if !object.ends_with(".seg") || generation.len() != 16 {
        return None;
    }
    u64::from_str_radix(generation, 16).ok()
}
