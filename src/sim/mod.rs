//! Deterministic simulation of the whole store (feature `testing`).
//!
//! [`run`] drives the real [`Store`] code, not a model of it, through a
//! seeded random history of operations and faults, and checks every answer
//! against a reference model whose specification is docs/DURABILITY.md.
//! One seed fixes everything: the operations, the faults, and which
//! requests share a commit (the store runs with a stepped committer: no
//! thread of its own, the simulator decides when a commit happens and how
//! many submissions it takes). Running a seed twice gives the same
//! [`SimReport::trace_hash`], a hash of every operation's result and of
//! every node I/O (node, operation, generation, offset, length, crc).
//!
//! Each seed enables its own subset of operations and fault kinds, with its
//! own weights (swarm testing), on a layout of three sites, whose nodes are
//! simulated local disks or, on a quarter of the seeds, the real
//! [`ObjectNode`](crate::node::ObjectNode) over simulated buckets (a second
//! opener then takes the leases over from the running writer, whose lease
//! reads may fail or hang, and listings may show deleted objects):
//!
//! - operations: put (0 B to 3 MiB, about 1% over 64 KiB, split blobs
//!   included), delete, get, contains, `len_of`, `keys_with_prefix`, flush,
//!   committer steps of 1 to 64 submissions (hundreds stay in flight),
//!   each leaving nothing, a written or a sealed commit outstanding for
//!   the next to be sealed behind (pipelined commits),
//!   compact, repair, scrub, health, close and reopen, a second opener
//!   (refused), an open with every disk unmounted (refused);
//! - faults: a process crash during a commit, a flush, a compaction, a
//!   repair or an open (writes under way land whole, torn into a prefix,
//!   zeros or garbage, or not at all); a site fire (every node of a site
//!   wiped) and a site outage; a full disk; EIO on reads; a failed sync (the
//!   node fences); bit rot in synced bytes; a segment shortened under the
//!   running store; a misdirected write that lands over earlier records and
//!   reports success; a node directory that vanishes and comes back whole
//!   or empty. All faults stay inside one site until it is healed and
//!   repaired (the promise); some seeds break a second site now and then,
//!   and must see the loss reported, never a silent wrong answer.
//!
//! Two seed ranges weigh the swarm their own way: from
//! [`CHECKPOINT_HEAVY_SEEDS`], checkpoints and reopens (deltas over
//! deltas); in [`FAULT_HEAVY_SEEDS`]' range, crashes in commits and
//! compactions (one torn write per crash as long as its records while no
//! fault is outstanding, a site fire at once after half of them), and rot
//! in a node's last record followed by a crashed open.
//!
//! The model checks, after every operation: an acknowledged put or delete
//! is what reads see (D1, D3); an unacknowledged one is wholly there or
//! wholly absent and never flips once seen (D4); a read never returns bytes
//! that were not put under that key; within the promise no read and no
//! reopen fails; a second opener is refused (D6) and a store whose disks
//! are all missing does not open as a new one (D7). At the end every fault
//! heals, repair runs, and the store must survive any site loss again with
//! every key reading back (liveness). docs/TESTING.md shows a soak run's
//! composition.

mod bucket;
mod executor;
mod factory;
mod model;
mod node;
mod rng;
mod world;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use self::factory::SimFactory;
use self::model::{Model, OpRef, Value};
use self::rng::{Rng, mix, value_bytes};
pub use self::world::FaultCounts;
use self::world::{SimClock, World};
use crate::layout::{Layout, SiteId};
use crate::store::{CompactOptions, RepairOptions, ScrubOptions};
use crate::store::{Overlap, Pending, Request};
use crate::{Error, Options, Store, WritePolicy};

/// One simulation run: a seed and how many operations it takes.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Fixes every choice of the run.
    pub seed: u64,
    /// Operations before the final heal-and-check.
    pub operations: u64,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Operations run, the final checks included.
    pub operations: u64,
    /// Operations by kind.
    pub by_kind: BTreeMap<&'static str, u64>,
    /// Puts and deletes submitted.
    pub writes: u64,
    /// Puts and deletes acknowledged.
    pub acknowledged: u64,
    /// Puts and deletes answered with an error.
    pub write_errors: u64,
    /// Opens of the store (the first create excluded).
    pub reopens: u64,
    /// Opens that started from a checkpoint (the rest scanned every
    /// record).
    pub checkpoint_opens: u64,
    /// Checkpoints written (the operation, or a crash point).
    pub checkpoints: u64,
    /// Of those, deltas over a base (docs/DURABILITY.md, C8).
    pub delta_checkpoints: u64,
    /// Of those, written without the columns of nodes that took no
    /// writes (DURABILITY.md, C2: a site or node down).
    pub degraded_checkpoints: u64,
    /// Opens that started from a delta checkpoint and its base.
    pub delta_opens: u64,
    /// Stripes opens rebuilt before returning: crash debris below the
    /// promise's margin (DURABILITY.md, Open step 6).
    pub stripes_rebuilt_at_open: u64,
    /// Faults injected, by kind.
    pub faults: FaultCounts,
    /// A failure beyond the promise happened, and was reported loudly.
    pub beyond_promise: bool,
    /// Node I/O calls traced.
    pub node_io: u64,
    /// Simulated time the run took, in microseconds (the store's clock).
    pub simulated_us: u64,
    /// The most simulated time one operation took, in microseconds: a
    /// step that takes more than [`STEP_LIMIT_US`] fails the run as a hang.
    pub slowest_step_us: u64,
    /// Hash of every result, every node I/O and the simulated time: equal
    /// for equal seeds.
    pub trace_hash: u64,
}

/// A run that broke the promise (or panicked): everything needed to see
/// why, and to run it again.
#[derive(Debug)]
pub struct SimFailure {
    /// The seed.
    pub seed: u64,
    /// Operations the run was given.
    pub operations: u64,
    /// The operation that failed.
    pub at: u64,
    /// What went wrong.
    pub message: String,
    /// The last operations and their results.
    pub trace: Vec<String>,
    /// The one command that runs it again.
    pub replay: String,
}

impl std::fmt::Display for SimFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "simulation seed {} failed at operation {}: {}",
            self.seed, self.at, self.message
        )?;
        writeln!(f, "last operations:")?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        write!(f, "replay: {}", self.replay)
    }
}

impl std::error::Error for SimFailure {}

/// How the simulator found a mutation: the first failing seed and the
/// operations run to get there (all seeds before it included).
#[derive(Debug)]
pub struct Found {
    /// The first seed that failed (and passes without the mutation).
    pub seed: u64,
    /// Seeds run, the failing one included.
    pub seeds: u64,
    /// Operations run over those seeds, up to the failure.
    pub operations: u64,
    /// The failure.
    pub failure: SimFailure,
}

/// Switches `mutation` on (alone) and runs `seeds` with `operations` each
/// until one fails that passes without it; switches it off again. `None` when no seed failed: the
/// simulator is missing a fault or an operation.
pub fn find(
    mutation: crate::mutation::Mutation,
    seeds: std::ops::Range<u64>,
    operations: u64,
) -> Option<Found> {
    crate::mutation::set(&[mutation]);
    let mut run_ops = 0;
    let mut found = None;
    for (i, seed) in seeds.enumerate() {
        match run(&SimConfig { seed, operations }) {
            Ok(report) => run_ops += report.operations,
            Err(failure) => {
                // A seed that fails without the mutation too finds a
                // different bug, not this one.
                crate::mutation::set(&[]);
                let plain = run(&SimConfig { seed, operations });
                crate::mutation::set(&[mutation]);
                if plain.is_err() {
                    run_ops += failure.at;
                    continue;
                }
                found = Some(Found {
                    seed,
                    seeds: i as u64 + 1,
                    operations: run_ops + failure.at,
                    failure,
                });
                break;
            }
        }
    }
    crate::mutation::set(&[]);
    found
}

/// Runs one seed.
///
/// # Errors
/// A [`SimFailure`] when the store broke the promise, panicked, or the
/// final check failed.
pub fn run(config: &SimConfig) -> Result<SimReport, SimFailure> {
    let replay = format!(
        "GEOSHARD_SIM_SEED={} GEOSHARD_SIM_OPS={} cargo test --test sim replay -- --nocapture",
        config.seed, config.operations
    );
    run_with(config, Rng::new(config.seed), replay)
}

/// Runs the history `input` encodes: every choice a seed would make
/// (layout, swarm, operations, faults, their targets) read from the bytes
/// instead, until they run out or `max_operations` ran; then the same final
/// heal-and-check. The `store_history` fuzz target calls it, so that
/// coverage guidance explores histories; any byte string is a valid
/// history. [`SimFailure::seed`] and the world's crash fates come from a
/// hash of the input.
///
/// # Errors
/// As [`run`].
pub fn run_history(input: &[u8], max_operations: u64) -> Result<SimReport, SimFailure> {
    let seed = input
        .chunks(8)
        .fold(mix(input.len() as u64), |hash, chunk| {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            mix(hash ^ u64::from_le_bytes(word))
        });
    let config = SimConfig {
        seed,
        operations: max_operations,
    };
    let replay = format!(
        "GEOSHARD_SIM_HISTORY=<the input file> GEOSHARD_SIM_OPS={max_operations} cargo test --test sim replay -- --nocapture"
    );
    run_with(&config, Rng::from_input(input), replay)
}

fn run_with(config: &SimConfig, rng: Rng, replay: String) -> Result<SimReport, SimFailure> {
    let mut sim = Sim::new(config, rng);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.run()));
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_default();
            Err(format!("panic: {message}"))
        }
    };
    // Drop the store before the world.
    if let Some(store) = sim.store.take() {
        store.crash();
    }
    match outcome {
        Ok(()) => {
            sim.world.end_step();
            let (disk_hash, node_io) = sim.world.trace_hash();
            sim.report.trace_hash = mix(mix(sim.trace_hash ^ disk_hash) ^ sim.world.now_us());
            sim.report.node_io = node_io;
            sim.report.simulated_us = sim.world.now_us();
            sim.report.faults = sim.world.faults().clone();
            Ok(sim.report)
        }
        Err(message) => Err(SimFailure {
            seed: config.seed,
            operations: config.operations,
            at: sim.report.operations,
            message,
            trace: sim.trace.into_iter().collect(),
            replay,
        }),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Put,
    Delete,
    Step,
    Get,
    Contains,
    LenOf,
    Prefix,
    Flush,
    Compact,
    Checkpoint,
    Repair,
    Scrub,
    Health,
    Reopen,
    Crash,
    Fault,
    Heal,
    SecondOpener,
    Unmounted,
}

const OPS: [Op; 19] = [
    Op::Put,
    Op::Delete,
    Op::Step,
    Op::Get,
    Op::Contains,
    Op::LenOf,
    Op::Prefix,
    Op::Flush,
    Op::Compact,
    Op::Checkpoint,
    Op::Repair,
    Op::Scrub,
    Op::Health,
    Op::Reopen,
    Op::Crash,
    Op::Fault,
    Op::Heal,
    Op::SecondOpener,
    Op::Unmounted,
];

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Delete => "delete",
            Op::Step => "commit step",
            Op::Get => "get",
            Op::Contains => "contains",
            Op::LenOf => "len_of",
            Op::Prefix => "keys_with_prefix",
            Op::Flush => "flush",
            Op::Compact => "compact",
            Op::Checkpoint => "checkpoint",
            Op::Repair => "repair",
            Op::Scrub => "scrub",
            Op::Health => "health",
            Op::Reopen => "close and reopen",
            Op::Crash => "crash",
            Op::Fault => "fault",
            Op::Heal => "heal and repair",
            Op::SecondOpener => "second opener",
            Op::Unmounted => "open unmounted",
        }
    }

    /// The base weight, before the seed's swarm choice.
    fn weight(self) -> u32 {
        match self {
            Op::Put => 300,
            Op::Delete => 40,
            Op::Step => 200,
            Op::Get => 250,
            Op::Contains | Op::LenOf => 40,
            Op::Prefix => 15,
            Op::Flush => 20,
            Op::Compact => 6,
            Op::Checkpoint => 4,
            Op::Repair => 4,
            Op::Scrub => 2,
            Op::Health => 5,
            Op::Reopen => 3,
            Op::Crash => 3,
            Op::Fault => 6,
            Op::Heal => 3,
            Op::SecondOpener | Op::Unmounted => 1,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    SiteFire,
    SiteOutage,
    DiskFull,
    ReadEio,
    SyncFail,
    BitRot,
    Shorten,
    Misdirect,
    DirVanish,
    /// Object-store seeds: the running writer's lease reads fail or hang.
    LeaseReads,
    /// Object-store seeds: listings show deleted objects.
    StaleListing,
}

const FAULTS: [Fault; 9] = [
    Fault::SiteFire,
    Fault::SiteOutage,
    Fault::DiskFull,
    Fault::ReadEio,
    Fault::SyncFail,
    Fault::BitRot,
    Fault::Shorten,
    Fault::Misdirect,
    Fault::DirVanish,
];

/// Where a crash strikes.
#[derive(Clone, Copy, Debug)]
enum CrashPoint {
    Commit,
    Flush,
    Compact,
    Checkpoint,
    Repair,
    Open,
}

struct Sim {
    seed: u64,
    operations: u64,
    rng: Rng,
    world: Arc<World>,
    factory: Arc<SimFactory>,
    layout: Layout,
    options: Options,
    store: Option<Store>,
    model: Model,
    inflight: Vec<(Pending, OpRef)>,
    keys: Vec<Vec<u8>>,
    weights: Vec<u32>,
    faults: Vec<Fault>,
    /// A fault-heavy seed's stream ([`FAULT_HEAVY_SEEDS`]): where its
    /// crashes strike.
    crash_points: Option<Rng>,
    /// A fault-heavy seed rotted a node's last record: the next crash is
    /// one of an open.
    crash_open_next: bool,
    /// The one site faults may hit until it is healed and repaired.
    victim: Option<usize>,
    /// Since the victim was picked, every fault was a full disk on fewer
    /// nodes than its site has, with no crash or reopen: a put plans
    /// around such nodes inside their own site, so the store must still
    /// survive any site loss (`check_full_disks`).
    only_full_disks: bool,
    /// The nodes faults hit since the victim was picked.
    faulted: std::collections::BTreeSet<usize>,
    /// This seed may break a second site now and then.
    beyond_allowed: bool,
    /// A failure beyond the promise happened: reads may fail (loudly).
    beyond: bool,
    /// Nodes whose directory vanished and comes back empty at heal.
    vanished_empty: Vec<usize>,
    /// The nodes are object-store nodes: a second opener takes over.
    objects: bool,
    /// A takeover may come with the old writer's lease reads failing.
    lease_reads_at_takeover: bool,
    /// A writer that was taken over is committing: its writes may fail as
    /// superseded.
    superseded_ok: bool,
    next_value: u64,
    report: SimReport,
    trace: VecDeque<String>,
    trace_hash: u64,
    /// `GEOSHARD_SIM_VERBOSE` set: every trace line goes to stderr.
    verbose: bool,
    /// `GEOSHARD_SIM_WATCH=<stripe id>`: where its records are, printed
    /// whenever that changes (debugging a failure).
    watch: Option<u64>,
    watched: String,
    /// `GEOSHARD_SIM_WATCH_KEY=<key>`: where the store has the key, printed
    /// whenever that changes.
    watch_key: Option<Vec<u8>>,
    watched_key: String,
}

const TRACE_LINES: usize = 48;

/// Seeds the random stream of a seed's timing (slow nodes, put timeout).
const TIMING_STREAM: u64 = 0x7131_c10c_5eed_0001;

/// Seeds the random stream of a seed's node kind (object-store nodes or
/// not) and object-store faults.
const OBJECT_STREAM: u64 = 0x0b1e_c757_0e5e_ed06;

/// Seeds the random stream of a seed's checkpoint profile (many keys,
/// checkpoints and reopens often: deltas over deltas, DURABILITY.md C8).
const DELTA_STREAM: u64 = 0xde17_a5ee_d0c8_0003;

/// Seeds from this one on run the checkpoint-heavy profile (the seeds
/// below keep their histories, and the mutation seeds pinned in them), but
/// for the fault-heavy range ([`FAULT_HEAVY_SEEDS`], 10^9 seeds from it).
/// A history's seed, a hash of its bytes ([`run_history`]), is almost
/// always past both: histories run this profile.
pub const CHECKPOINT_HEAVY_SEEDS: u64 = 1_000_000_000;

/// Seeds the random stream of a seed's fault-heavy profile (crashes in
/// commits and compactions, then site losses before any repair).
const FAULT_STREAM: u64 = 0xfa17_c4a5_4ea7_0004;

/// The 10^9 seeds from this one run the fault-heavy profile: crashes,
/// reopens, compactions and faults several times their weight, crashes
/// mostly during a commit or a compaction, a torn write as long as its
/// records, a site fire at once after half the crashes, bit rot in a
/// node's last record followed by a crashed open, and on half of them no
/// repair or scrub but the one after a heal. So a crash's debris meets a
/// site loss, and bit rot a reopen, before anything repairs them: what
/// open must rebuild (DURABILITY.md S2) and what its recovery must leave
/// (S1), which the default swarm makes too rare (docs/TESTING.md, "The
/// fault-heavy seeds").
pub const FAULT_HEAVY_SEEDS: u64 = 2_000_000_000;

/// Whether `seed` runs the fault-heavy profile ([`FAULT_HEAVY_SEEDS`]).
fn fault_heavy(seed: u64) -> bool {
    (FAULT_HEAVY_SEEDS..FAULT_HEAVY_SEEDS + 1_000_000_000).contains(&seed)
}

/// Simulated time per call to a node of a slow site, in microseconds.
const SLOW_US: u64 = 20_000;

/// Simulated time between two operations, in microseconds.
const STEP_GAP_US: u64 = 1_000;

/// The most simulated time one operation may take, in microseconds: more
/// is a hang (a retry loop that does not end, a wait nothing answers).
/// A repair or scrub of everything a seed wrote, at the slow site's 20 ms
/// a call, stays well under it.
pub const STEP_LIMIT_US: u64 = 600_000_000;

impl Sim {
    fn new(config: &SimConfig, mut rng: Rng) -> Sim {
        let (nodes_per_site, k, m) = if rng.one_in(3) { (2, 4, 2) } else { (3, 6, 3) };
        let layout = sim_layout(3, nodes_per_site, k, m);
        let mut options = Options {
            column_len_target: 64 << 10,
            split_len_min: 16 << 10,
            segment_len_target: [128 << 10, 1 << 20, 8 << 20][rng.below(3) as usize],
            write_policy: if rng.one_in(5) {
                WritePolicy::Strict
            } else {
                WritePolicy::Available
            },
            ..Options::default()
        };
        // Swarm: each seed leaves some operations and faults out, and
        // weighs the rest its own way.
        let mut weights: Vec<u32> = OPS
            .iter()
            .map(|&op| {
                let always = matches!(op, Op::Put | Op::Step | Op::Get);
                if !always && rng.one_in(4) {
                    0
                } else {
                    op.weight() * (1 + rng.below(4) as u32)
                }
            })
            .collect();
        let known_gaps = std::env::var_os("GEOSHARD_SIM_KNOWN_GAPS").is_some();
        let faults: Vec<Fault> = FAULTS
            .iter()
            .copied()
            .filter(|_| !rng.one_in(3))
            .filter(|&fault| known_gaps || !matches!(fault, Fault::Shorten | Fault::Misdirect))
            .collect();
        let mut key_count = 8 + rng.below(120) as usize;
        // Checkpoint-heavy seeds ([`CHECKPOINT_HEAVY_SEEDS`] on), from a
        // stream of their own: hundreds of keys, so that a quarter of them
        // written since a full checkpoint takes a while, and checkpoints
        // and reopens about ten times as often, so that a delta is taken
        // by a store opened from one and opened from in turn
        // (DURABILITY.md C8; the swarm without them never did that with a
        // delete in between: docs/TESTING.md, "Mutations").
        let mut delta_rng = Rng::new(mix(config.seed ^ DELTA_STREAM));
        if config.seed >= CHECKPOINT_HEAVY_SEEDS && !fault_heavy(config.seed) {
            key_count = 300 + delta_rng.below(700) as usize;
            for (weight, op) in weights.iter_mut().zip(OPS) {
                if matches!(op, Op::Checkpoint | Op::Reopen) {
                    *weight = op.weight() * (8 + delta_rng.below(8) as u32);
                }
            }
        }
        // Fault-heavy seeds ([`FAULT_HEAVY_SEEDS`]), from a stream of their
        // own, which also picks their crash points.
        let mut crash_points = None;
        let mut faults = faults;
        if fault_heavy(config.seed) {
            let mut profile = Rng::new(mix(config.seed ^ FAULT_STREAM));
            let no_repair = profile.one_in(2);
            // Half of them open by a full scan: bit rot under a
            // checkpoint's horizon is seen by none of its opens.
            if profile.one_in(2) {
                options.checkpoints = false;
            }
            for (weight, op) in weights.iter_mut().zip(OPS) {
                match op {
                    Op::Crash => *weight = op.weight() * (4 + profile.below(8) as u32),
                    Op::Reopen => *weight = op.weight() * (2 + profile.below(4) as u32),
                    Op::Compact => *weight = op.weight() * (3 + profile.below(4) as u32),
                    Op::Fault => *weight = op.weight() * (2 + profile.below(3) as u32),
                    Op::Repair | Op::Scrub if no_repair => *weight = 0,
                    _ => {}
                }
            }
            for fault in [Fault::SiteFire, Fault::BitRot] {
                if !faults.contains(&fault) {
                    faults.push(fault);
                }
            }
            // Bit rot three times its share: rot that an open scans
            // before a scrub or repair finds it.
            faults.extend([Fault::BitRot, Fault::BitRot]);
            crash_points = Some(profile);
        }
        let keys = (0..key_count)
            .map(|i| format!("room-{}/msg-{:05}", i % 7, i).into_bytes())
            .collect();
        // Object-store nodes on a quarter of the seeds, from a stream of
        // their own (as time): the other seeds kept every choice.
        let mut object_rng = Rng::new(mix(config.seed ^ OBJECT_STREAM));
        let objects = object_rng.one_in(4);
        if objects {
            for fault in [Fault::LeaseReads, Fault::StaleListing] {
                if !object_rng.one_in(3) {
                    faults.push(fault);
                }
            }
        }
        let lease_reads_at_takeover = faults.contains(&Fault::LeaseReads);
        let world = World::new(config.seed, &layout, objects);
        if objects {
            world.faults().object_seeds += 1;
        }
        let beyond_allowed = rng.one_in(4);
        // Time is drawn from a stream of its own, so that adding it left
        // every other choice of a seed as it was.
        let mut timing = Rng::new(mix(config.seed ^ TIMING_STREAM));
        if timing.one_in(3) {
            // A slow site: every call to its nodes takes 20 ms.
            let site = SiteId(timing.below(layout.sites().len() as u64) as u16);
            for (i, spec) in layout.nodes().iter().enumerate() {
                if spec.site == site {
                    world.disk(i).latency_us = SLOW_US;
                }
            }
            world.faults().slow_sites += 1;
        }
        if timing.one_in(3) {
            // A put that gives up after a few calls' worth of time: a
            // commit's retries stop at the deadline.
            options.put_timeout = std::time::Duration::from_millis(2 + timing.below(100));
            world.faults().short_put_timeouts += 1;
        }
        Sim {
            seed: config.seed,
            operations: config.operations,
            rng,
            factory: Arc::new(SimFactory {
                world: Arc::clone(&world),
            }),
            world,
            layout,
            options,
            store: None,
            model: Model::default(),
            inflight: Vec::new(),
            keys,
            weights,
            faults,
            crash_points,
            crash_open_next: false,
            victim: None,
            only_full_disks: true,
            faulted: std::collections::BTreeSet::new(),
            beyond_allowed,
            beyond: false,
            vanished_empty: Vec::new(),
            objects,
            lease_reads_at_takeover,
            superseded_ok: false,
            next_value: config.seed.wrapping_mul(1 << 20),
            report: SimReport {
                seed: config.seed,
                ..SimReport::default()
            },
            trace: VecDeque::new(),
            trace_hash: 0,
            verbose: std::env::var_os("GEOSHARD_SIM_VERBOSE").is_some(),
            watch: std::env::var("GEOSHARD_SIM_WATCH")
                .ok()
                .and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok()),
            watched: String::new(),
            watch_key: std::env::var("GEOSHARD_SIM_WATCH_KEY")
                .ok()
                .map(String::into_bytes),
            watched_key: String::new(),
        }
    }

    fn note(&mut self, line: String) {
        if self.verbose {
            eprintln!("sim {}: {line}", self.seed);
        }
        self.trace_hash = mix(self.trace_hash ^ u64::from(crc32fast::hash(line.as_bytes())));
        if self.trace.len() == TRACE_LINES {
            self.trace.pop_front();
        }
        self.trace.push_back(line);
    }

    fn run(&mut self) -> Result<(), String> {
        let store_id = mix(self.seed).to_le_bytes();
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&store_id);
        id[8..].copy_from_slice(&mix(self.seed ^ 1).to_le_bytes());
        let store = Store::start_simulated(
            self.layout.clone(),
            self.options.clone(),
            self.factory.clone(),
            self.clock(),
            Some(id),
        )
        .map_err(|e| format!("create failed: {e}"))?;
        self.store = Some(store);
        for i in 0..self.operations {
            if self.rng.exhausted() {
                break;
            }
            let op = OPS[self.rng.pick(&self.weights)];
            self.report.operations += 1;
            *self.report.by_kind.entry(op.name()).or_default() += 1;
            if matches!(op, Op::Crash | Op::Reopen) {
                self.only_full_disks = false;
            }
            let before = self.world.now_us();
            let line = self
                .operation(op)
                .map_err(|e| format!("{}: {e}", op.name()))?;
            self.took(op.name(), before)?;
            self.check_full_disks()
                .map_err(|e| format!("{}: {e}", op.name()))?;
            self.world.end_step();
            if self.verbose {
                let (hash, io) = self.world.trace_hash();
                eprintln!("sim {}: io {io} {hash:016x}", self.seed);
            }
            self.note(format!("{i} {}: {line}", op.name()));
            if let Some(key) = &self.watch_key {
                let now = self
                    .store
                    .as_ref()
                    .map_or_else(|| "no store".into(), |s| s.describe_key(key));
                if now != self.watched_key {
                    eprintln!("sim {}: key {} is now: {now}", self.seed, show_key(key));
                    self.watched_key = now;
                }
            }
            if let Some(watch) = self.watch {
                let now = self.world.find_stripe(watch);
                if now != self.watched || self.verbose {
                    let view = self.store.as_ref().map(|s| s.describe_stripe(watch));
                    eprintln!(
                        "sim {}: stripe {watch:#x} is now: {now}; the store: {view:?}",
                        self.seed
                    );
                    self.watched = now;
                }
            }
            if self.store.is_none() {
                // A loss beyond the promise refused the open, loudly: the
                // run ends here.
                return Ok(());
            }
        }
        self.final_check()
    }

    /// What a commit step leaves outstanding (pipelined commits): nothing,
    /// a written commit, or a sealed one.
    fn overlap(&mut self) -> Overlap {
        [Overlap::None, Overlap::Written, Overlap::Sealed][self.rng.below(3) as usize]
    }

    fn store(&self) -> Result<&Store, String> {
        self.store.as_ref().ok_or_else(|| "no store".to_string())
    }

    fn operation(&mut self, op: Op) -> Result<String, String> {
        match op {
            Op::Put => self.put(),
            Op::Delete => self.delete(),
            Op::Step => {
                let max = 1 + self.rng.below(64) as usize;
                let overlap = self.overlap();
                let answered = self.store()?.step_overlapping(max, overlap).unwrap_or(0);
                self.collect()?;
                Ok(format!(
                    "{answered} answered ({overlap:?} left outstanding)"
                ))
            }
            Op::Get => {
                let key = self.key();
                self.get(&key)
            }
            Op::Contains => {
                let key = self.key();
                let got = self.store()?.contains(&key);
                let (some, none) = self.model.may_be(&key);
                match got {
                    Ok(true) if some => Ok("true".into()),
                    Ok(false) if none => Ok("false".into()),
                    Ok(answer) => Err(format!(
                        "contains({}) = {answer}, which the model does not allow",
                        show_key(&key)
                    )),
                    Err(e) => self.read_error(&key, e),
                }
            }
            Op::LenOf => {
                let key = self.key();
                match self.store()?.len_of(&key) {
                    Ok(Some(len)) if self.model.may_have_len(&key, len) => Ok(format!("{len}")),
                    Ok(None) if self.model.may_be(&key).1 => Ok("none".into()),
                    Ok(answer) => Err(format!(
                        "len_of({}) = {answer:?}, which the model does not allow",
                        show_key(&key)
                    )),
                    Err(e) => self.read_error(&key, e),
                }
            }
            Op::Prefix => self.prefix(),
            Op::Flush => {
                let result = self.store()?.flush();
                self.collect()?;
                Ok(format!("{:?}", result.map_err(|e| kind(&e))))
            }
            Op::Compact => {
                let options = CompactOptions {
                    live_ratio_max: [0.3, 0.6, 0.95][self.rng.below(3) as usize],
                    generations_max: 1 + self.rng.below(4) as usize,
                };
                let result = self.store()?.compact(&options);
                self.collect()?;
                Ok(match result {
                    Ok(r) => format!(
                        "{} generations, {} blobs moved",
                        r.generations_compacted.len(),
                        r.blobs_moved
                    ),
                    Err(e) => kind(&e),
                })
            }
            Op::Checkpoint => {
                let result = self.store()?.checkpoint();
                self.collect()?;
                Ok(match result {
                    Ok(r) => {
                        self.report.checkpoints += 1;
                        self.report.delta_checkpoints += u64::from(r.delta_of.is_some());
                        self.report.degraded_checkpoints += u64::from(!r.nodes_skipped.is_empty());
                        format!("{} blobs, {} stripes", r.blobs, r.stripes)
                    }
                    Err(e) => kind(&e),
                })
            }
            Op::Repair => {
                let result = self.store()?.repair(&RepairOptions::default());
                self.collect()?;
                Ok(match result {
                    Ok(r) => format!(
                        "{} repaired, {} unrepairable",
                        r.stripes_repaired, r.stripes_unrepairable
                    ),
                    Err(e) => kind(&e),
                })
            }
            Op::Scrub => {
                let result = self.store()?.scrub(&ScrubOptions::default());
                self.collect()?;
                Ok(match result {
                    Ok(_) => "ok".into(),
                    Err(e) => kind(&e),
                })
            }
            Op::Health => {
                let health = self.store()?.health();
                Ok(format!(
                    "survives {}, missing {}",
                    health.survives_any_site_loss, health.columns_missing
                ))
            }
            Op::Reopen => {
                self.close()?;
                self.open()
            }
            Op::Crash => self.crash(),
            Op::Fault => self.fault(),
            Op::Heal => self.heal(),
            Op::SecondOpener if self.objects => self.takeover(),
            Op::SecondOpener => {
                let second = Store::open_simulated(
                    self.layout.clone(),
                    self.options.clone(),
                    self.factory.clone(),
                    self.clock(),
                );
                match second {
                    Ok(_) => Err("a second opener got the store while it was open (D6)".into()),
                    Err(e) => Ok(kind(&e)),
                }
            }
            Op::Unmounted => self.unmounted(),
        }
    }

    fn key(&mut self) -> Vec<u8> {
        let i = self.rng.below(self.keys.len() as u64) as usize;
        self.keys[i].clone()
    }

    fn value_len(&mut self) -> usize {
        match self.rng.below(100) {
            0 => {
                if self.rng.one_in(8) {
                    (1 << 20) + self.rng.below(2 << 20) as usize
                } else {
                    (64 << 10) + self.rng.below(448 << 10) as usize
                }
            }
            1..=4 => 2048 + self.rng.below(62 << 10) as usize,
            5..=29 => 200 + self.rng.below(1848) as usize,
            _ => self.rng.below(200) as usize,
        }
    }

    fn put(&mut self) -> Result<String, String> {
        let key = self.key();
        let len = self.value_len();
        self.next_value += 1;
        let id = self.next_value;
        let bytes = value_bytes(id, len);
        let value = Value {
            id,
            len: len as u32,
            crc: crc32fast::hash(&bytes),
        };
        let (ack, pending) = Pending::channel();
        let submitted = self.store()?.submit(Request::Put {
            key: key.clone().into(),
            value: bytes.into(),
            ack,
        });
        self.submitted(&key, Some(value), pending, submitted)?;
        Ok(format!("{} #{id} {len} B", show_key(&key)))
    }

    fn delete(&mut self) -> Result<String, String> {
        let key = self.key();
        let (ack, pending) = Pending::channel();
        let submitted = self.store()?.submit(Request::Delete {
            key: key.clone().into(),
            ack,
        });
        self.submitted(&key, None, pending, submitted)?;
        Ok(show_key(&key))
    }

    fn submitted(
        &mut self,
        key: &[u8],
        value: Option<Value>,
        pending: Pending,
        submitted: crate::Result<()>,
    ) -> Result<(), String> {
        self.report.writes += 1;
        let op = self.model.submit(key, value);
        match submitted {
            Ok(()) => self.inflight.push((pending, op)),
            Err(e) => {
                self.model.failed(&op);
                return Err(format!("submit failed on an open store: {e}"));
            }
        }
        Ok(())
    }

    /// Takes the answers the committer gave.
    fn collect(&mut self) -> Result<(), String> {
        let mut still = Vec::with_capacity(self.inflight.len());
        for (pending, op) in std::mem::take(&mut self.inflight) {
            match pending.try_take() {
                None => still.push((pending, op)),
                Some(Ok(_)) => {
                    self.report.acknowledged += 1;
                    self.model.acked(&op);
                }
                Some(Err(e)) => {
                    self.report.write_errors += 1;
                    self.model.failed(&op);
                    if let Error::Superseded { .. } = e
                        && !self.superseded_ok
                    {
                        return Err(format!("a write failed as superseded with one writer: {e}"));
                    }
                }
            }
        }
        self.inflight = still;
        Ok(())
    }

    /// Every submission still waiting is lost with the process: it may
    /// or may not have landed.
    fn abandon_inflight(&mut self) {
        for (_, op) in std::mem::take(&mut self.inflight) {
            self.model.failed(&op);
        }
    }

    fn get(&mut self, key: &[u8]) -> Result<String, String> {
        let got = self.store()?.get(key);
        match got {
            Ok(Some(blob)) => {
                let bytes = blob.to_bytes();
                let seen = (bytes.len() as u32, crc32fast::hash(&bytes));
                self.model.observe(key, Some(seen))?;
                Ok(format!("{} B {:08x}", seen.0, seen.1))
            }
            Ok(None) => {
                self.model.observe(key, None)?;
                Ok("none".into())
            }
            Err(e) => self.read_error(key, e),
        }
    }

    /// A read failed: only allowed after a failure beyond the promise, and
    /// then it is the loud answer the promise asks for.
    fn read_error(&self, key: &[u8], e: Error) -> Result<String, String> {
        if self.beyond {
            Ok(format!("loud: {}", kind(&e)))
        } else {
            Err(format!(
                "reading {} failed within the promise: {e}; {}; the key: {}",
                show_key(key),
                self.health_line(),
                self.store
                    .as_ref()
                    .map_or_else(String::new, |s| s.describe_key(key))
            ))
        }
    }

    fn prefix(&mut self) -> Result<String, String> {
        let room = self.rng.below(8);
        let prefix = format!("room-{room}/").into_bytes();
        let listed: Vec<Vec<u8>> = self.store()?.keys_with_prefix(&prefix).collect();
        for key in &listed {
            if !key.starts_with(&prefix) {
                return Err(format!("listed {} for prefix room-{room}/", show_key(key)));
            }
            if !self.model.may_be(key).0 {
                return Err(format!("listed {}, which has no value", show_key(key)));
            }
        }
        let keys: Vec<Vec<u8>> = self
            .model
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .cloned()
            .collect();
        for key in keys {
            let (some, none) = self.model.may_be(&key);
            if some && !none && !listed.contains(&key) {
                return Err(format!("{} has a value but was not listed", show_key(&key)));
            }
        }
        Ok(format!("{} keys", listed.len()))
    }

    fn close(&mut self) -> Result<(), String> {
        if let Some(store) = self.store.take() {
            let result = store.close();
            drop(store);
            self.collect()?;
            self.abandon_inflight();
            result.map_err(|e| format!("close failed: {e}"))?;
        }
        Ok(())
    }

    fn open(&mut self) -> Result<String, String> {
        self.report.reopens += 1;
        match Store::open_simulated(
            self.layout.clone(),
            self.options.clone(),
            self.factory.clone(),
            self.clock(),
        ) {
            Ok(store) => {
                let report = store.open_report();
                self.report.checkpoint_opens += u64::from(report.checkpoint.is_some());
                self.report.delta_opens += u64::from(report.checkpoint_base.is_some());
                self.report.stripes_rebuilt_at_open += report.stripes_rebuilt_at_open as u64;
                self.store = Some(store);
                Ok(format!(
                    "opened: {} visible, {} discarded",
                    report.stripes_visible, report.stripes_discarded
                ))
            }
            Err(e) if self.beyond => {
                // Loud, as the promise asks: the run ends.
                Ok(format!("refused beyond the promise: {}", kind(&e)))
            }
            Err(e) => {
                let records = match &e {
                    Error::StripesUnrecoverable { stripe_ids, .. } => stripe_ids
                        .iter()
                        .map(|&id| format!("{id:#x}: {}", self.world.find_stripe(id)))
                        .collect::<Vec<_>>()
                        .join(" | "),
                    _ => String::new(),
                };
                Err(format!(
                    "open failed within the promise: {e}; records on the disks: {records}"
                ))
            }
        }
    }

    fn crash(&mut self) -> Result<String, String> {
        self.world.faults().crashes += 1;
        let points = [
            CrashPoint::Commit,
            CrashPoint::Flush,
            CrashPoint::Compact,
            CrashPoint::Checkpoint,
            CrashPoint::Repair,
            CrashPoint::Open,
        ];
        let rot_then_open = std::mem::take(&mut self.crash_open_next);
        let point = match self.crash_points.as_mut() {
            Some(_) if rot_then_open => CrashPoint::Open,
            // Fault-heavy: a commit or a compaction three times in four.
            Some(profile) => match profile.below(8) {
                0..=2 => CrashPoint::Commit,
                3..=5 => CrashPoint::Compact,
                n => points[[1, 3, 4, 5][(n - 6 + 2 * profile.below(2)) as usize]],
            },
            None => points[self.rng.below(6) as usize],
        };
        let mut done = [100, 333, 700, 950][self.rng.below(4) as usize];
        let mut queued = 0;
        let healthy = self.victim.is_none();
        if let Some(profile) = self.crash_points.as_mut() {
            // Fault-heavy: a commit or a compaction has a queue of puts to
            // crash in; most writes under way land; and with no fault
            // outstanding, the first torn write of one disk drawn here
            // runs to its whole length (one disk, so that which write it
            // is does not depend on the order of the nodes' threads). One
            // such tear costs a commit one node's columns; more than one,
            // or any in a commit written while a site is out, can leave a
            // commit that reached fewer than k nodes with no evidence
            // against it, which open cannot tell from an acknowledged
            // stripe that lost columns on two sites (DURABILITY.md, "What
            // is not protected", S9).
            if matches!(point, CrashPoint::Commit | CrashPoint::Compact) {
                queued = 1 + profile.below(24);
            }
            if rot_then_open {
                // Its new manifest mostly not written: the next open is
                // the one that decides.
                done = [100, 333][profile.below(2) as usize];
            } else if healthy {
                done = [700, 950, 950, 950][profile.below(4) as usize];
                let disk = profile.below(self.world.disk_count() as u64);
                self.world.to_length_disk.store(disk, Ordering::Release);
            }
            // With the known gaps on, every torn write runs to its whole
            // length, faults outstanding or not: S9's state, reproduced.
            if self.world.known_gaps {
                self.world.to_length_all.store(true, Ordering::Release);
            }
        }
        for _ in 0..queued {
            self.put()?;
        }
        self.world
            .crash_done_per_mille
            .store(done, Ordering::Release);
        self.world.crashing.store(true, Ordering::Release);
        match point {
            CrashPoint::Commit => {
                // Everything queued: a commit of many stripes, so a node's
                // append holds several records and can tear between them;
                // half the time after another commit left outstanding, so
                // the crash comes between overlapping commits.
                if self.rng.one_in(2) {
                    let overlap = if self.rng.one_in(2) {
                        Overlap::Written
                    } else {
                        Overlap::Sealed
                    };
                    let max = 1 + self.rng.below(16) as usize;
                    let _ = self.store()?.step_overlapping(max, overlap);
                }
                let overlap = self.overlap();
                let _ = self.store()?.step_overlapping(usize::MAX, overlap);
            }
            CrashPoint::Flush => {
                let _ = self.store()?.flush();
            }
            CrashPoint::Compact => {
                let _ = self.store()?.compact(&CompactOptions {
                    live_ratio_max: 0.95,
                    generations_max: 2,
                });
            }
            CrashPoint::Checkpoint => {
                let _ = self.store()?.checkpoint();
            }
            CrashPoint::Repair => {
                let _ = self.store()?.repair(&RepairOptions::default());
            }
            CrashPoint::Open => {}
        }
        self.collect()?;
        if let Some(store) = self.store.take() {
            store.crash();
        }
        self.abandon_inflight();
        if let CrashPoint::Open = point {
            // The process that crashed was opening the store.
            self.world.crash_done();
            self.world.crashing.store(true, Ordering::Release);
            let opened = Store::open_simulated(
                self.layout.clone(),
                self.options.clone(),
                self.factory.clone(),
                self.clock(),
            );
            if let Ok(store) = opened {
                store.crash();
            }
        }
        self.world.crash_done();
        if self.world.io_log {
            eprintln!("sim {}: the crashed process is gone; opening", self.seed);
        }
        let torn = self.world.faults().torn_writes;
        let opened = self.open()?;
        // Fault-heavy seeds: half the time a site burns at once, before
        // anything but the open could repair what the crash left.
        let fire = self.store.is_some() && self.crash_points.as_mut().is_some_and(|p| p.one_in(2));
        if fire {
            let burned = self.inject(Fault::SiteFire)?;
            return Ok(format!(
                "{point:?} ({torn} torn so far); {opened}; then a fire: {burned}"
            ));
        }
        Ok(format!("{point:?} ({torn} torn so far); {opened}"))
    }

    /// A second writer opens the store while the first still runs
    /// (object-store nodes: no lock refuses it, the lease passes to it).
    /// Sometimes the first writer's lease reads fail or hang from just
    /// before. The first writer goes on unaware: a few more writes and a
    /// commit of everything it holds; whatever it acknowledges, a user was
    /// told is durable, so the model holds the new writer to it (D6: a
    /// writer that was taken over acknowledges nothing). Then the first
    /// writer's process ends.
    fn takeover(&mut self) -> Result<String, String> {
        let Some(old) = self.store.take() else {
            return Err("no store".into());
        };
        self.world.faults().takeovers += 1;
        let mut line = String::new();
        if self.lease_reads_at_takeover && self.rng.one_in(2) {
            let hang = self.rng.one_in(2);
            line = self.lease_fault(hang);
        }
        let opened = self.open()?;
        // Back to the old writer, with its submissions from before the
        // takeover (still in `self.inflight`).
        let new = self.store.replace(old);
        self.superseded_ok = true;
        let acked = self.report.acknowledged;
        let writes = 1 + self.rng.below(4);
        for _ in 0..writes {
            if self.rng.one_in(4) {
                self.delete()?;
            } else {
                self.put()?;
            }
        }
        let answered = self.store()?.step_if_stepped(usize::MAX).unwrap_or(0);
        self.collect()?;
        self.superseded_ok = false;
        let acked = self.report.acknowledged - acked;
        if let Some(old) = self.store.take() {
            old.crash();
        }
        self.abandon_inflight();
        self.store = new;
        Ok(format!(
            "{line}{opened}; the old writer: {writes} more writes, {answered} answered, {acked} acknowledged"
        ))
    }

    /// The running writer's lease reads fail (or hang until the request
    /// timeout) on every node, for the handles opened so far.
    fn lease_fault(&mut self, hang: bool) -> String {
        let opened_before = self.world.opens.load(Ordering::Acquire);
        for i in 0..self.world.disk_count() {
            if let Some(bucket) = self.world.disk(i).bucket.as_mut() {
                bucket.lease_fault = Some(world::LeaseFault {
                    hang,
                    opened_before,
                });
            }
        }
        self.world.faults().lease_faults += 1;
        format!("lease reads {}; ", if hang { "hang" } else { "fail" })
    }

    /// The site faults go to: the victim, or a new one; now and then, on
    /// seeds that allow it, another one (beyond the promise).
    fn target_site(&mut self) -> usize {
        let sites = self.layout.sites().len() as u64;
        match self.victim {
            None => {
                let site = self.rng.below(sites) as usize;
                self.victim = Some(site);
                self.faulted.clear();
                site
            }
            Some(victim) if self.beyond_allowed && self.rng.one_in(8) => {
                let other = (victim + 1 + self.rng.below(sites - 1) as usize) % sites as usize;
                self.beyond = true;
                self.report.beyond_promise = true;
                self.world.faults().beyond_promise += 1;
                other
            }
            Some(victim) => victim,
        }
    }

    /// While the only faults are full disks on some nodes of the victim
    /// site (not all of them), every column that could not go home went to
    /// another node of its home site (the handoff rule of
    /// docs/DURABILITY.md, D1): the store must still survive the loss of
    /// any one site, with nothing to repair. Full disks lose nothing and
    /// leave every node readable; a handoff to another site would make one
    /// site hold more columns than the code can lose.
    fn check_full_disks(&mut self) -> Result<(), String> {
        let Some(site) = self.victim else {
            return Ok(());
        };
        if !self.only_full_disks
            || self.beyond
            || self.faulted.is_empty()
            || self.faulted.len() >= self.site_nodes(site).len()
        {
            return Ok(());
        }
        let health = self.store()?.health();
        if health.nodes.iter().all(|n| n.reachable) && !health.survives_any_site_loss {
            return Err(format!(
                "with only full disks in site {site} (nodes {:?}), the store no longer survives \
                 a site loss: {}",
                self.faulted,
                self.health_line()
            ));
        }
        Ok(())
    }

    /// The store's clock: the world's simulated time.
    fn clock(&self) -> Arc<dyn crate::store::Clock> {
        Arc::new(SimClock {
            world: Arc::clone(&self.world),
        })
    }

    /// Ends an operation that started at simulated time `before`: fails
    /// the run if it took longer than a step may (a hang), then lets the
    /// time between two operations pass.
    fn took(&mut self, what: &str, before: u64) -> Result<(), String> {
        let took = self.world.now_us() - before;
        self.report.slowest_step_us = self.report.slowest_step_us.max(took);
        if let Some(why) = self.world.take_hang() {
            return Err(format!("{what}: {why}: a hang"));
        }
        if took > STEP_LIMIT_US {
            return Err(format!(
                "{what} took {took} µs of simulated time (more than {STEP_LIMIT_US}): a hang"
            ));
        }
        self.world.advance(STEP_GAP_US);
        Ok(())
    }

    fn site_nodes(&self, site: usize) -> Vec<usize> {
        self.layout
            .nodes()
            .iter()
            .enumerate()
            .filter(|(_, spec)| spec.site == SiteId(site as u16))
            .map(|(i, _)| i)
            .collect()
    }

    fn fault(&mut self) -> Result<String, String> {
        if self.faults.is_empty() {
            return Ok("none enabled".into());
        }
        let fault = self.faults[self.rng.below(self.faults.len() as u64) as usize];
        let injected = self.inject(fault)?;
        if self.crash_open_next {
            let crashed = self.crash()?;
            return Ok(format!("{injected}; then a crash: {crashed}"));
        }
        Ok(injected)
    }

    /// Injects `fault` (one of the seed's [`Fault`]s).
    fn inject(&mut self, fault: Fault) -> Result<String, String> {
        // Object-service faults lose nothing: they hit every node.
        match fault {
            Fault::LeaseReads => {
                let hang = self.rng.one_in(2);
                return Ok(self.lease_fault(hang));
            }
            Fault::StaleListing => {
                for i in 0..self.world.disk_count() {
                    if let Some(bucket) = self.world.disk(i).bucket.as_mut() {
                        bucket.stale_listing = true;
                    }
                }
                self.world.faults().stale_listings += 1;
                return Ok("listings show deleted objects".into());
            }
            _ => {}
        }
        // Every fault stays in the victim site. A full disk or a failed sync
        // elsewhere loses nothing durable by itself, but a whole site that
        // takes no writes makes the store write degraded stripes, and the
        // simulator cannot yet tell when that uses the promise up
        // (docs/TESTING.md, "What the simulator does not cover yet").
        let fresh = self.victim.is_none();
        let site = self.target_site();
        if fresh {
            // What a crash or an earlier fault left may still need repair.
            self.only_full_disks = self.store()?.health().survives_any_site_loss;
        }
        let nodes = self.site_nodes(site);
        let node = nodes[self.rng.below(nodes.len() as u64) as usize];
        let name = self.layout.nodes()[node].name.clone();
        self.faulted.insert(node);
        if fault != Fault::DiskFull {
            self.only_full_disks = false;
        }
        let mut counts = self.world.faults().clone();
        match fault {
            Fault::SiteFire => {
                for &i in &nodes {
                    self.world.wipe(i);
                }
                counts.site_fires += 1;
            }
            Fault::SiteOutage => {
                for &i in &nodes {
                    self.world.disk(i).unreachable = true;
                }
                counts.site_outages += 1;
            }
            Fault::DiskFull => {
                self.world.disk(node).full = true;
                counts.disks_full += 1;
            }
            Fault::ReadEio => {
                self.world.disk(node).read_eio = true;
                counts.read_errors += 1;
            }
            Fault::SyncFail => {
                self.world.disk(node).sync_fail_next = true;
                counts.sync_failures += 1;
            }
            Fault::BitRot if self.crash_points.as_mut().is_some_and(|p| p.one_in(2)) => {
                // Fault-heavy: the rot lands in the header of the last
                // record of the node's newest stripe segment (a record-sized
                // tail at the next open), and an open crashes before the
                // one after it (DURABILITY.md S1: that tail must stay).
                let rotted = self.rot_last_record(node);
                counts.bit_rot += u64::from(rotted);
                self.crash_open_next = rotted;
            }
            Fault::BitRot => {
                let rotted = self.damage_a_segment(node, |rng, generation, bytes| {
                    let at = rng.below(bytes.len() as u64) as usize;
                    let bit = 1 << rng.below(8);
                    // Half the time the rot lands in a record's header (a
                    // few percent of the bytes, but what recovery and
                    // scrub read first); the same draws either way.
                    let at = header_byte(bytes, generation, at).unwrap_or(at);
                    bytes[at] ^= bit;
                });
                counts.bit_rot += u64::from(rotted);
            }
            Fault::Shorten => {
                let cut = self.damage_a_segment(node, |rng, _, bytes| {
                    let cut = 1 + rng.below(bytes.len() as u64) as usize;
                    bytes.truncate(bytes.len() - cut.min(bytes.len()));
                });
                counts.files_shortened += u64::from(cut);
            }
            Fault::Misdirect => {
                self.world.disk(node).misdirect_next = true;
                counts.misdirected_writes += 1;
            }
            Fault::LeaseReads | Fault::StaleListing => {}
            Fault::DirVanish => {
                let mut disk = self.world.disk(node);
                disk.present = false;
                drop(disk);
                if self.rng.one_in(2) {
                    self.vanished_empty.push(node);
                }
                counts.dirs_vanished += 1;
            }
        }
        counts.crashes = self.world.faults().crashes;
        *self.world.faults() = counts;
        Ok(format!("{fault:?} on {name} (site {site})"))
    }

    /// Flips a bit in the header of the last intact record of the newest
    /// of `node`'s stripe segments (not a checkpoint's) that has one:
    /// whether there was one (never on an object-store node, whose
    /// objects are written whole; the fault then still counts as one of
    /// the victim site's).
    fn rot_last_record(&mut self, node: usize) -> bool {
        let (pick, bit) = (self.rng.below(1 << 16) as usize, 1 << self.rng.below(8));
        let mut disk = self.world.disk(node);
        if disk.bucket.is_some() {
            return false;
        }
        for (&generation, bytes) in disk.segments.iter_mut().rev() {
            if generation >> 40 == 0xff_ffff {
                continue;
            }
            let scan = crate::format::scan_segment(bytes, generation);
            if let Some(last) = scan.records.last() {
                let header_len = (last.payload_offset - last.record_offset).max(1) as usize;
                bytes[last.record_offset as usize + pick % header_len] ^= bit;
                return true;
            }
        }
        false
    }

    /// Applies `damage` to the bytes of a random non-empty segment of
    /// `node`; false when it has none.
    fn damage_a_segment(
        &mut self,
        node: usize,
        damage: impl FnOnce(&mut Rng, u64, &mut Vec<u8>),
    ) -> bool {
        let mut disk = self.world.disk(node);
        if let Some(bucket) = disk.bucket.as_ref() {
            // An object's bytes, changed under the service.
            let objects: Vec<_> = bucket
                .objects()
                .into_iter()
                .filter_map(|(path, bytes)| Some((world::object_generation(&path)?, path, bytes)))
                .filter(|(_, _, bytes)| !bytes.is_empty())
                .collect();
            if objects.is_empty() {
                return false;
            }
            let (generation, path, bytes) = &objects[self.rng.below(objects.len() as u64) as usize];
            let mut bytes = bytes.to_vec();
            let len = bytes.len();
            damage(&mut self.rng, *generation, &mut bytes);
            if bytes.len() != len {
                // Objects are written whole: a shorter object is not a
                // fault of an object service.
                return false;
            }
            bucket.overwrite(path, bytes);
            return true;
        }
        let generations: Vec<u64> = disk.segments.keys().copied().collect();
        if generations.is_empty() {
            return false;
        }
        let generation = generations[self.rng.below(generations.len() as u64) as usize];
        match disk.segments.get_mut(&generation) {
            Some(bytes) if !bytes.is_empty() => {
                damage(&mut self.rng, generation, bytes);
                true
            }
            _ => false,
        }
    }

    /// Every fault heals (a vanished directory comes back whole or empty),
    /// then repair runs; once the store survives a site loss again, faults
    /// may pick a new site.
    fn heal(&mut self) -> Result<String, String> {
        for i in 0..self.world.disk_count() {
            let mut disk = self.world.disk(i);
            disk.unreachable = false;
            disk.full = false;
            disk.read_eio = false;
            disk.sync_fail_next = false;
            disk.misdirect_next = false;
            disk.present = true;
            if let Some(bucket) = disk.bucket.as_mut() {
                bucket.lease_fault = None;
                bucket.stale_listing = false;
            }
        }
        for node in std::mem::take(&mut self.vanished_empty) {
            self.world.wipe(node);
        }
        let repaired = self.store()?.repair(&RepairOptions::default());
        // Faults the store cannot see until it reads (bit rot, a
        // misdirected write, a shortened file) are healed only once a scrub
        // has read everything and repaired what it found.
        let scrubbed = self.store()?.scrub(&ScrubOptions::default());
        self.collect()?;
        let health = self.store()?.health();
        if health.survives_any_site_loss && scrubbed.is_ok() && !self.beyond {
            self.victim = None;
        }
        Ok(format!(
            "{}; scrub {}; survives {}",
            match repaired {
                Ok(r) => format!("{} repaired", r.stripes_repaired),
                Err(e) => kind(&e),
            },
            match scrubbed {
                Ok(r) => format!(
                    "{} corrupt, {} missing, {} repaired",
                    r.columns_corrupt,
                    r.columns_missing,
                    r.repair.map_or(0, |r| r.stripes_repaired)
                ),
                Err(e) => kind(&e),
            },
            health.survives_any_site_loss
        ))
    }

    fn unmounted(&mut self) -> Result<String, String> {
        self.close()?;
        let present: Vec<bool> = (0..self.world.disk_count())
            .map(|i| std::mem::replace(&mut self.world.disk(i).present, false))
            .collect();
        let opened = Store::open_simulated(
            self.layout.clone(),
            self.options.clone(),
            self.factory.clone(),
            self.clock(),
        );
        for (i, was) in present.into_iter().enumerate() {
            self.world.disk(i).present = was;
        }
        let line = match opened {
            Ok(_) => return Err("a store whose disks are all missing opened (D7)".into()),
            Err(Error::NoStore { .. }) => "refused: no store".to_string(),
            Err(e) => return Err(format!("unmounted store refused with the wrong error: {e}")),
        };
        let reopened = self.open()?;
        Ok(format!("{line}; {reopened}"))
    }

    /// Heal everything, repair, and check that every key reads back and a
    /// site loss would be survived (liveness).
    fn final_check(&mut self) -> Result<(), String> {
        self.report.operations += 1;
        // Whatever is queued is answered first (a strict store may refuse
        // it while nodes are down), then every fault heals.
        let _ = self.store()?.flush();
        self.collect()?;
        let healed = self.heal()?;
        self.note(format!("final heal: {healed}"));
        if let Err(e) = self.store()?.flush()
            && !self.beyond
        {
            return Err(format!("flush after healing failed: {e}"));
        }
        self.collect()?;
        if self.beyond {
            return match self.world.take_hang() {
                Some(why) => Err(format!("final check: {why}: a hang")),
                None => Ok(()),
            };
        }
        let mut survives = false;
        for _ in 0..3 {
            let _ = self.store()?.repair(&RepairOptions::default());
            if self.store()?.health().survives_any_site_loss {
                survives = true;
                break;
            }
        }
        if !survives {
            let health = self.store()?.health();
            return Err(format!(
                "after healing and repair the store would not survive a site loss: {} columns missing, {} away; {}",
                health.columns_missing,
                health.columns_away,
                self.health_line()
            ));
        }
        let keys: Vec<Vec<u8>> = self.model.keys().cloned().collect();
        for key in keys {
            self.get(&key)?;
        }
        match self.world.take_hang() {
            Some(why) => Err(format!("final check: {why}: a hang")),
            None => Ok(()),
        }
    }
}

impl Sim {
    /// The nodes as the store sees them, and what the disks hold.
    fn health_line(&self) -> String {
        let Some(store) = self.store.as_ref() else {
            return "no store".into();
        };
        let health = store.health();
        let nodes: Vec<String> = health
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let disk = self.world.disk(i);
                format!(
                    "{}{}{} cols {} missing {} away {} [disk: {} gens{}{}{}]",
                    n.name,
                    match (&n.down_reason, n.reachable) {
                        (Some(why), false) => format!(" DOWN ({why})"),
                        (_, false) => " DOWN".into(),
                        _ => String::new(),
                    },
                    if n.writable { "" } else { " RO" },
                    n.columns,
                    n.columns_missing,
                    n.columns_away,
                    disk.segments.len(),
                    if disk.unreachable { " unreachable" } else { "" },
                    if disk.full { " full" } else { "" },
                    if disk.present { "" } else { " missing" },
                )
            })
            .collect();
        format!(
            "victim site {:?}, survives {}, nodes: {}",
            self.victim,
            health.survives_any_site_loss,
            nodes.join("; ")
        )
    }
}

fn show_key(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

/// An error's kind, without the details that vary (for the trace).
fn kind(e: &Error) -> String {
    let debug = format!("{e:?}");
    debug
        .split([' ', '{', '('])
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Three sites of `nodes_per_site` nodes, RS(`k`, `m`), that promise any
/// one site.
fn sim_layout(sites: usize, nodes_per_site: usize, k: usize, m: usize) -> Layout {
    let mut builder = Layout::builder().code(k, m);
    for s in 0..sites {
        let names: Vec<String> = (0..nodes_per_site).map(|n| format!("s{s}n{n}")).collect();
        builder = builder.site(format!("site{s}"), |mut b| {
            for name in &names {
                b = b.node(
                    name,
                    std::path::Path::new("/nonexistent/geoshard-sim")
                        .join(name)
                        .as_path(),
                );
            }
            b
        });
    }
    builder
        .build()
        .unwrap_or_else(|e| panic!("the simulator's layout is valid: {e}"))
}

/// For an odd `at`, a byte of one of the intact record headers of segment
/// `bytes` of `generation`, chosen by `at`; `None` for an even one or a
/// segment with no intact record.
fn header_byte(bytes: &[u8], generation: u64, at: usize) -> Option<usize> {
    if at.is_multiple_of(2) {
        return None;
    }
    let records = crate::format::scan_segment(bytes, generation).records;
    let pick = at / 2;
    let record = records.get(pick % records.len().max(1))?;
    let header_len = (record.payload_offset - record.record_offset) as usize;
    Some(record.record_offset as usize + pick % header_len.max(1))
}
