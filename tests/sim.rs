//! The deterministic simulation (src/sim, docs/TESTING.md): a fixed set of
//! seeds on every `cargo test`, the same seed twice giving the same trace,
//! and a replay/soak entry point driven by environment variables.

use geoshard::sim::{SimConfig, SimReport, run};

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
    let (mut total, mut beyond) = (0, 0);
    for seed in 0..seeds {
        let report = run_or_panic(seed, operations);
        total += report.operations;
        beyond += u64::from(report.beyond_promise);
    }
    // A seed that goes beyond the promise may end early (its open refused,
    // loudly); most run every operation.
    assert!(
        total >= (seeds - beyond) * operations,
        "{total} operations over {seeds} seeds, {beyond} beyond the promise"
    );
}

#[test]
fn a_seed_run_twice_gives_the_same_trace() {
    for seed in [3, 11] {
        let first = run_or_panic(seed, 300);
        let second = run_or_panic(seed, 300);
        assert_eq!(
            (first.trace_hash, first.node_io, &first.by_kind),
            (second.trace_hash, second.node_io, &second.by_kind),
            "seed {seed} is not deterministic"
        );
        assert!(first.node_io > 0);
    }
}

/// `GEOSHARD_SIM_SEED=N GEOSHARD_SIM_OPS=M cargo test --test sim replay -- --nocapture`
#[test]
fn replay() {
    let Some(seed) = env_u64("GEOSHARD_SIM_SEED") else {
        return;
    };
    let operations = env_u64("GEOSHARD_SIM_OPS").unwrap_or(400);
    let report = run_or_panic(seed, operations);
    println!("{report:#?}");
}
