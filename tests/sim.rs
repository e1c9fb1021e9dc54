//! The deterministic simulation (src/sim, docs/TESTING.md): a fixed set of
//! seeds on every `cargo test`, the same seed twice giving the same trace,
//! and a replay/soak entry point driven by environment variables.

use geoshard::sim::{SimConfig, SimReport, run, run_history};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn run_or_panic(seed: u64, operations: u64) -> SimReport {
    match run(&SimConfig { seed, operations }) {
        Ok(report) => report,
        Err(failure) => panic!("{failure}"),
    }
}

#[test]
fn fixed_seeds_keep_the_promise() {
    // 150 seeds x 1000 operations: about 10 s in a dev build here. The
    // soak (docs/TESTING.md) runs many more.
    let seeds = env_u64("GEOSHARD_SIM_SEEDS").unwrap_or(150);
    let operations = env_u64("GEOSHARD_SIM_OPS").unwrap_or(1000);
    let (mut total, mut beyond, mut degraded) = (0, 0, 0);
    for seed in 0..seeds {
        let report = run_or_panic(seed, operations);
        total += report.operations;
        beyond += u64::from(report.beyond_promise);
        degraded += report.degraded_checkpoints;
    }
    // Checkpoints go on with nodes down (docs/DURABILITY.md, C2), and
    // the fixed seeds open from such ones.
    assert!(
        seeds < 150 || degraded > 0,
        "no checkpoint written with a node down in {seeds} seeds"
    );
    // A seed that goes beyond the promise may end early (its open refused,
    // loudly); most run every operation.
    assert!(
        total >= (seeds - beyond) * operations,
        "{total} operations over {seeds} seeds, {beyond} beyond the promise"
    );
}

/// Seeds found by longer soaks, outside the fixed range: 3,024 (S15 of
/// docs/DURABILITY.md) answered `None` for an acknowledged put at operation
/// 388, after fires on all three sites with repairs between took every
/// record of a stripe; the open is now refused, loudly. 945 and 3,298
/// (S14) never got their redundancy back: repair refused an object-store
/// prefix a fire had wiped, which held an append that landed afterwards.
/// 22,912 (S16) could not open after a crash at operation 821: a stripe
/// handed two columns to each of two nodes, and the crash tore both appends
/// to less than two records but more than one.
#[test]
fn seeds_from_the_soak_keep_the_promise() {
    let report = run_or_panic(3024, 400);
    assert!(
        report.beyond_promise,
        "the seed's fires go beyond the promise"
    );
    for seed in [945, 3298, 22912] {
        run_or_panic(seed, 1000);
    }
}

/// The checkpoint-heavy seeds (`CHECKPOINT_HEAVY_SEEDS` on: hundreds of
/// keys, checkpoints and reopens often) take deltas over deltas and open
/// from them (docs/DURABILITY.md, C8), every answer checked.
#[test]
fn checkpoint_heavy_seeds_keep_the_promise() {
    let seeds = env_u64("GEOSHARD_SIM_HEAVY_SEEDS").unwrap_or(12);
    let (mut deltas, mut delta_opens) = (0, 0);
    for seed in geoshard::sim::CHECKPOINT_HEAVY_SEEDS..geoshard::sim::CHECKPOINT_HEAVY_SEEDS + seeds
    {
        let report = run_or_panic(seed, 1000);
        deltas += report.delta_checkpoints;
        delta_opens += report.delta_opens;
    }
    assert!(
        deltas > seeds && delta_opens > seeds,
        "{deltas} deltas written, {delta_opens} opens from one"
    );
}

/// The fault-heavy seeds (`FAULT_HEAVY_SEEDS` on: crashes in commits and
/// compactions with a site burned at once after half of them, torn writes
/// as long as their records, rot in a node's last record followed by a
/// crashed open) leave crash debris below the promise's margin, which open
/// must rebuild (docs/DURABILITY.md, Open step 6), every answer checked.
#[test]
fn fault_heavy_seeds_keep_the_promise() {
    let seeds = env_u64("GEOSHARD_SIM_FAULT_SEEDS").unwrap_or(12);
    let (mut rebuilt, mut fires) = (0, 0);
    for seed in geoshard::sim::FAULT_HEAVY_SEEDS..geoshard::sim::FAULT_HEAVY_SEEDS + seeds {
        let report = run_or_panic(seed, 1000);
        rebuilt += report.stripes_rebuilt_at_open;
        fires += report.faults.site_fires;
    }
    assert!(
        rebuilt > 0 && fires > seeds,
        "{rebuilt} stripes rebuilt at open, {fires} site fires"
    );
}

#[test]
fn a_seed_run_twice_gives_the_same_trace() {
    // 3 and 11 are plain; 24, 114, 139 and 258 crash during a repair whose
    // appends to several generations of one node used to race for the
    // node's faults (which append a crash tears), 24 also with a repair
    // batch whose record order came from a hash map. 5516's open indexed
    // a commit's split blobs in a hash map's order too (a checkpoint's
    // bytes after it then differed in about one run of two). 2,000,000,063
    // is fault-heavy: torn writes to length, rot then a crashed open.
    let mut hashes = std::collections::BTreeSet::new();
    let seeds = [3, 11, 24, 114, 139, 258, 5516, 2_000_000_063];
    for seed in seeds {
        let first = run_or_panic(seed, 1000);
        let second = run_or_panic(seed, 1000);
        assert_eq!(
            (
                first.trace_hash,
                first.node_io,
                first.simulated_us,
                &first.by_kind
            ),
            (
                second.trace_hash,
                second.node_io,
                second.simulated_us,
                &second.by_kind
            ),
            "seed {seed} is not deterministic"
        );
        assert!(first.node_io > 0 && first.simulated_us > 0);
        hashes.insert(first.trace_hash);
    }
    assert_eq!(
        hashes.len(),
        seeds.len(),
        "different seeds gave the same trace"
    );
}

/// The operations the `store_history` fuzz target gives each input.
const HISTORY_OPERATIONS: u64 = 400;

/// Histories read from bytes (the `store_history` fuzz target's entry):
/// any bytes are a history, the empty input one with no operations, and
/// every input kept in `fuzz/corpus/store_history` passes again.
#[test]
fn histories_from_bytes_keep_the_promise() {
    let empty = run_history(&[], HISTORY_OPERATIONS).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(empty.writes, 0);
    let mut state = 0x5eed_u64;
    let mut inputs: Vec<Vec<u8>> = (0..12)
        .map(|i| {
            (0..200 + 150 * i)
                .map(|_| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    (state >> 56) as u8
                })
                .collect()
        })
        .collect();
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/store_history");
    if let Ok(entries) = std::fs::read_dir(&corpus) {
        let mut files: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for file in files {
            inputs.push(std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())));
        }
    }
    let mut writes = 0;
    for input in &inputs {
        let report = run_history(input, HISTORY_OPERATIONS).unwrap_or_else(|f| panic!("{f}"));
        writes += report.writes;
    }
    assert!(writes > 0, "{} histories wrote nothing", inputs.len());
}

/// `GEOSHARD_SIM_SEED=N GEOSHARD_SIM_OPS=M cargo test --test sim replay -- --nocapture`,
/// or `GEOSHARD_SIM_HISTORY=<file>` for a fuzz input (`store_history`).
#[test]
fn replay() {
    if let Some(file) = std::env::var_os("GEOSHARD_SIM_HISTORY") {
        let input = std::fs::read(&file).expect("GEOSHARD_SIM_HISTORY names a readable file");
        let operations = env_u64("GEOSHARD_SIM_OPS").unwrap_or(HISTORY_OPERATIONS);
        match run_history(&input, operations) {
            Ok(report) => println!("{report:#?}"),
            Err(failure) => panic!("{failure}"),
        }
        return;
    }
    let Some(seed) = env_u64("GEOSHARD_SIM_SEED") else {
        return;
    };
    let operations = env_u64("GEOSHARD_SIM_OPS").unwrap_or(400);
    let report = run_or_panic(seed, operations);
    println!("{report:#?}");
}
