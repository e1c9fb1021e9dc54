//! A damaged index checkpoint -> open's decoder never panics (it refuses,
//! and open scans every record instead).
//!
//! The input edits a valid checkpoint body (so the fuzzer starts from real
//! records, stripes and trailer): a flag byte (bit 0: fix the checksum up
//! after the edits, so the damage reaches the parser), (offset, xor)
//! triples, and an optional cut length.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = geoshard::testing::checkpoint_decode(data);
});
