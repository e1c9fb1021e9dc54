//! The simulator earns its keep: for each named mutation (a durability fix
//! switched off, `geoshard::mutation`), the seed of the default swarm that
//! found it must fail with the mutation and pass without it. The search
//! itself (seeds 0, 1, 2, ... until one fails) is
//! `cargo run --release --example sim_mutations`; docs/TESTING.md has its
//! table, with the mutations it has not found yet.
//!
//! One test, so that no other test of this process runs while a mutation
//! is switched on.

use geoshard::mutation::{self, Mutation};
use geoshard::sim::{SimConfig, run};

/// (mutations, the first seed of 0.. that found them, operations per
/// seed). `SilentNewestLoss` is switched on with `AdoptedCountWhole`: every
/// history that reached it went beyond the promise through nodes adopted
/// empty, which open now refuses before it judges any stripe (S15), so it
/// is found only with that check off too; `KeepOrphanOnWipedPrefix` (S11)
/// likewise with `RefuseWipedPrefix` (S14), since repair now adopts a
/// wiped prefix with the orphan in it (docs/TESTING.md, "Mutations").
/// `TornEvidencePerRecord` (S16) is pinned at the soak's seed 22,912,
/// the first seed past 22,911 that finds it (the soak ran 0-22,911 clean
/// before the fix).
const FOUND: &[(&[Mutation], u64, u64)] = &[
    (&[Mutation::SiteBlindHandoff], 11, 1000),
    (
        &[Mutation::SilentNewestLoss, Mutation::AdoptedCountWhole],
        1080,
        1000,
    ),
    (&[Mutation::TombstoneRace], 174, 1000),
    (&[Mutation::OpenCreatesWhenEmpty], 0, 1000),
    (&[Mutation::RepairKeepsHandle], 9, 1000),
    (&[Mutation::KeepFailedAttempts], 22, 1000),
    (&[Mutation::ProposalsDecideNothing], 6, 1000),
    (&[Mutation::ScrubPayloadsOnly], 1478, 1000),
    (&[Mutation::LeaseUnknownIsOurs], 30, 1000),
    (&[Mutation::VanishedObjectFailsScan], 28, 1000),
    (&[Mutation::ManifestOnWipedPrefix], 63, 1000),
    (
        &[
            Mutation::KeepOrphanOnWipedPrefix,
            Mutation::RefuseWipedPrefix,
        ],
        21,
        1000,
    ),
    (&[Mutation::LeaseDoubtMarksDown], 28, 1000),
    (&[Mutation::ForgetUnrecordedDiscards], 294, 1000),
    (&[Mutation::AdoptedCountWhole], 3024, 1000),
    (&[Mutation::RefuseWipedPrefix], 945, 1000),
    (&[Mutation::TornEvidencePerRecord], 22912, 1000),
    // In the checkpoint-heavy seeds (geoshard::sim::CHECKPOINT_HEAVY_SEEDS
    // on): the first of them that finds it.
    (&[Mutation::DeltaForgetsOlderHidden], 1_000_000_001, 1000),
];

#[test]
fn every_found_mutation_is_found_again_by_its_seed() {
    for &(mutations, seed, operations) in FOUND {
        let config = SimConfig { seed, operations };
        mutation::set(mutations);
        let with = run(&config);
        mutation::set(&[]);
        let failure = match with {
            Err(failure) => failure,
            Ok(_) => panic!("{mutations:?}: seed {seed} no longer finds it"),
        };
        if let Err(other) = run(&config) {
            panic!("{mutations:?}: seed {seed} fails without the mutation too: {other}");
        }
        eprintln!(
            "{mutations:?}: seed {seed} finds it at operation {}: {}",
            failure.at,
            failure.message.chars().take(120).collect::<String>()
        );
    }
}
