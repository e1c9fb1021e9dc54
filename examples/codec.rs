//! Codec demo: encode an RS(6, 3) stripe, lose one site's worth of columns
//! (3 of 9, as when 9 columns are spread over 3 sites), rebuild them, check
//! every byte, then print encode and reconstruct throughput for every SIMD
//! engine this CPU supports.
//!
//! ```sh
//! cargo run --release --example codec
//! ```

use std::time::{Duration, Instant};

use geoshard::codec::{Codec, EngineKind};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

const DATA_COUNT: usize = 6;
const PARITY_COUNT: usize = 3;
/// Columns 0, 1 and 2 live in the site that burns.
const LOST: [usize; 3] = [0, 1, 2];
/// How long each throughput figure is measured.
const MEASURE_TIME: Duration = Duration::from_millis(250);

fn main() -> Result<(), geoshard::Error> {
    let column_len = 1 << 20;
    let codec = Codec::new(DATA_COUNT, PARITY_COUNT)?;
    println!(
        "RS({DATA_COUNT}, {PARITY_COUNT}) with {} MiB columns on the {} engine (best of: {})",
        column_len >> 20,
        codec.engine(),
        names(&EngineKind::available())
    );

    let mut rng = ChaCha8Rng::seed_from_u64(2022);
    let mut stripe = vec![vec![0u8; column_len]; DATA_COUNT + PARITY_COUNT];
    for column in &mut stripe[..DATA_COUNT] {
        rng.fill_bytes(column);
    }
    encode(&codec, &mut stripe)?;

    // The site burns: its columns are gone.
    let original: Vec<Vec<u8>> = LOST.iter().map(|&i| stripe[i].clone()).collect();
    for &i in &LOST {
        stripe[i].fill(0);
    }
    reconstruct(&codec, &mut stripe)?;
    let intact = LOST
        .iter()
        .zip(&original)
        .all(|(&i, before)| stripe[i] == *before);
    println!(
        "lost columns {LOST:?} (one site), rebuilt from the other {}: {}",
        DATA_COUNT + PARITY_COUNT - LOST.len(),
        if intact {
            "every byte matches"
        } else {
            "MISMATCH"
        }
    );
    if !intact {
        std::process::exit(1);
    }

    println!();
    println!("single-thread throughput, GB/s of data (k x column_len per call):");
    println!(
        "{:<12} {:>10} {:>14} {:>18}",
        "engine", "column", "encode", "reconstruct 3"
    );
    for column_len in [64 << 10, 1 << 20] {
        let mut stripe = vec![vec![0u8; column_len]; DATA_COUNT + PARITY_COUNT];
        for column in &mut stripe[..DATA_COUNT] {
            rng.fill_bytes(column);
        }
        for kind in EngineKind::available() {
            let codec = Codec::with_engine(DATA_COUNT, PARITY_COUNT, kind)?;
            let encode_rate = rate(column_len, || encode(&codec, &mut stripe))?;
            let reconstruct_rate = rate(column_len, || reconstruct(&codec, &mut stripe))?;
            println!(
                "{:<12} {:>7} KiB {:>14.2} {:>18.2}",
                kind.name(),
                column_len >> 10,
                encode_rate,
                reconstruct_rate
            );
        }
    }
    Ok(())
}

fn encode(codec: &Codec, stripe: &mut [Vec<u8>]) -> Result<(), geoshard::Error> {
    let (data, parity) = stripe.split_at_mut(DATA_COUNT);
    let data: Vec<&[u8]> = data.iter().map(|c| c.as_slice()).collect();
    let mut parity: Vec<&mut [u8]> = parity.iter_mut().map(|c| c.as_mut_slice()).collect();
    codec.encode(&data, &mut parity)
}

/// Rebuilds the `LOST` columns from all the others.
fn reconstruct(codec: &Codec, stripe: &mut [Vec<u8>]) -> Result<(), geoshard::Error> {
    let (lost, kept) = stripe.split_at_mut(LOST.len());
    let present: Vec<(usize, &[u8])> = kept
        .iter()
        .enumerate()
        .map(|(i, c)| (LOST.len() + i, c.as_slice()))
        .collect();
    let mut missing: Vec<(usize, &mut [u8])> = lost
        .iter_mut()
        .enumerate()
        .map(|(i, c)| (i, c.as_mut_slice()))
        .collect();
    codec.reconstruct(&present, &mut missing)
}

/// GB/s of data columns processed by `op`, run repeatedly for
/// `MEASURE_TIME`.
fn rate(
    column_len: usize,
    mut op: impl FnMut() -> Result<(), geoshard::Error>,
) -> Result<f64, geoshard::Error> {
    op()?; // warm up: decode matrix, caches
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < MEASURE_TIME {
        op()?;
        calls += 1;
    }
    let bytes = calls as f64 * (DATA_COUNT * column_len) as f64;
    Ok(bytes / start.elapsed().as_secs_f64() / 1e9)
}

fn names(kinds: &[EngineKind]) -> String {
    kinds
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}
