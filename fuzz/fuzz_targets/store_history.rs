//! Fuzzer bytes -> a history of operations and faults, run through the
//! deterministic simulator against the real store and checked by its
//! reference model (`geoshard::sim::run_history`): every choice a seed would
//! make is read from the input, so coverage guidance explores histories the
//! seeded soak does not reach. A failure is a broken promise, a panic or a
//! failed final check; its message carries the last operations.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// Operations per input at most: an input of a few hundred bytes already
/// runs that many, and the final heal-and-check follows.
const OPERATIONS_MAX: u64 = 400;

fuzz_target!(|data: &[u8]| {
    if let Err(failure) = geoshard::sim::run_history(data, OPERATIONS_MAX) {
        panic!("{failure}");
    }
});
