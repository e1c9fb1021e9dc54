//! Switches each named mutation (a durability fix turned off, see
//! `geoshard::mutation`) on in turn and runs the simulator's default swarm
//! over a fixed seed range until a seed fails: how many seeds and
//! operations it took to find each bug (docs/TESTING.md, "Mutations").
//! The range starts at seed 0 unless a first seed is given (to check a seed
//! a soak found far out, or to search a profile's range such as
//! `geoshard::sim::FAULT_HEAVY_SEEDS`); `all` as the name runs every
//! mutation.
//!
//! ```text
//! cargo run --release --example sim_mutations -- [seeds per mutation] [operations per seed] [mutation name, or all] [first seed]
//! ```

use geoshard::mutation::Mutation;
use geoshard::sim::find;

fn main() {
    let only: Option<String> = std::env::args().nth(3).filter(|name| name != "all");
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .take(2)
        .map(|a| a.parse().expect("arguments are numbers"))
        .collect();
    let first: u64 = std::env::args()
        .nth(4)
        .map(|a| a.parse().expect("the first seed is a number"))
        .unwrap_or(0);
    let seeds = args.first().copied().unwrap_or(500);
    let operations = args.get(1).copied().unwrap_or(1000);
    let mut missed = 0;
    println!(
        "| mutation | first failing seed | seeds run | operations to find | what the model saw |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for mutation in Mutation::ALL {
        if only
            .as_ref()
            .is_some_and(|name| *name != format!("{mutation:?}"))
        {
            continue;
        }
        let started = std::time::Instant::now();
        match find(mutation, first..first + seeds, operations) {
            Some(found) => {
                let what: String = found.failure.message.chars().take(140).collect();
                println!(
                    "| {mutation:?} | {} | {} | {} | {} ({:.1} s) |",
                    found.seed,
                    found.seeds,
                    found.operations,
                    what.replace('|', "/"),
                    started.elapsed().as_secs_f64()
                );
            }
            None => {
                missed += 1;
                println!("| {mutation:?} | not found in {seeds} seeds | | | |");
            }
        }
    }
    if missed > 0 {
        std::process::exit(1);
    }
}
