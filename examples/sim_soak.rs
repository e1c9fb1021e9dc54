//! Soak run of the deterministic simulation (docs/TESTING.md): many short
//! seeds, each checked against the reference model, with a summary of what
//! they did. Stops at the first failure and prints its replay command.
//!
//! ```text
//! cargo run --release --example sim_soak -- [first seed] [seeds, 0 = until stopped] [operations per seed]
//! cargo run --release --example sim_soak -- 0 1000 1000
//! ```
//!
//! Memory is bounded too (the model's "memory bounded"): on Linux each
//! seed's peak resident memory is read from the kernel's high-water mark
//! (reset before the seed through `/proc/self/clear_refs`), and a seed whose
//! peak passes `GEOSHARD_SIM_MEMORY_MIB` (default 256) fails the soak.

use std::collections::BTreeMap;
use std::time::Instant;

use geoshard::sim::{FaultCounts, SimConfig, run};

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("arguments are numbers"))
        .collect();
    let first = args.first().copied().unwrap_or(0);
    let seeds = args.get(1).copied().unwrap_or(1000);
    let operations = args.get(2).copied().unwrap_or(1000);
    let started = Instant::now();
    let mut by_kind: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut faults = FaultCounts::default();
    let (mut total, mut writes, mut acknowledged, mut reopens, mut beyond, mut node_io) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut simulated_us, mut slowest_step_us, mut nondeterministic) = (0u64, 0u64, 0u64);
    let (mut checkpoints, mut checkpoint_opens) = (0u64, 0u64);
    let (mut deltas, mut delta_opens, mut degraded) = (0u64, 0u64, 0u64);
    let mut rebuilt_at_open = 0u64;
    // Every seed's trace, folded in seed order: a change meant to keep
    // behaviour (a refactor) must keep it too.
    let mut traces = 0u64;
    let memory_limit_mib: u64 = std::env::var("GEOSHARD_SIM_MEMORY_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let mut peak_mib = 0u64;
    let mut seed = first;
    while seeds == 0 || seed < first + seeds {
        reset_peak_memory();
        let report = match run(&SimConfig { seed, operations }) {
            Ok(report) => report,
            Err(failure) => {
                eprintln!("{failure}");
                std::process::exit(1);
            }
        };
        if std::env::var_os("GEOSHARD_SIM_TWICE").is_some() {
            // Determinism: the same seed again must give the same trace.
            if let Ok(again) = run(&SimConfig { seed, operations })
                && (again.trace_hash, again.node_io) != (report.trace_hash, report.node_io)
            {
                eprintln!(
                    "seed {seed} is not deterministic: node I/O {} then {}",
                    report.node_io, again.node_io
                );
                nondeterministic += 1;
            }
        }
        if let Some(peak) = peak_memory_mib() {
            peak_mib = peak_mib.max(peak);
            if peak > memory_limit_mib {
                eprintln!(
                    "seed {seed}: peak resident memory {peak} MiB, over the {memory_limit_mib} MiB \
                     bound (GEOSHARD_SIM_MEMORY_MIB)"
                );
                std::process::exit(1);
            }
        }
        total += report.operations;
        writes += report.writes;
        acknowledged += report.acknowledged;
        reopens += report.reopens;
        checkpoints += report.checkpoints;
        checkpoint_opens += report.checkpoint_opens;
        deltas += report.delta_checkpoints;
        degraded += report.degraded_checkpoints;
        delta_opens += report.delta_opens;
        rebuilt_at_open += report.stripes_rebuilt_at_open;
        node_io += report.node_io;
        simulated_us += report.simulated_us;
        traces = traces.rotate_left(5) ^ report.trace_hash;
        slowest_step_us = slowest_step_us.max(report.slowest_step_us);
        beyond += u64::from(report.beyond_promise);
        for (kind, count) in report.by_kind {
            *by_kind.entry(kind).or_default() += count;
        }
        faults.add(&report.faults);
        seed += 1;
        if (seed - first) % 100 == 0 {
            eprintln!(
                "{} seeds, {total} operations, {:.0} ops/s",
                seed - first,
                total as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "seeds {first}..{seed}: {total} operations in {elapsed:.1} s ({:.0} operations/s)",
        total as f64 / elapsed
    );
    println!(
        "writes submitted {writes} ({:.1}% of operations), acknowledged {acknowledged}",
        100.0 * writes as f64 / total as f64
    );
    println!(
        "reopens {reopens}, node I/O calls {node_io}, seeds that went beyond the promise {beyond}"
    );
    println!(
        "checkpoints written {checkpoints} ({deltas} deltas, {degraded} with nodes down skipped), opens from a checkpoint {checkpoint_opens} of {reopens} ({delta_opens} from a delta), stripes rebuilt at open {rebuilt_at_open}"
    );
    println!(
        "simulated time {:.1} s, slowest operation {:.1} ms of simulated time",
        simulated_us as f64 / 1e6,
        slowest_step_us as f64 / 1e3
    );
    println!("trace of every seed: {traces:016x}");
    println!("peak resident memory of a seed: {peak_mib} MiB (bound {memory_limit_mib} MiB)");
    println!("operations by kind:");
    for (kind, count) in &by_kind {
        println!("  {kind:<18} {count}");
    }
    println!("faults injected: {faults:#?}");
    if nondeterministic > 0 {
        eprintln!("{nondeterministic} seeds gave a different trace when run again");
        std::process::exit(1);
    }
}

/// Resets the kernel's high-water mark of this process's resident memory
/// (Linux; elsewhere nothing is measured).
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// This process's peak resident memory since the last reset, in MiB.
fn peak_memory_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}
