//! Codec tests: the `reed-solomon-erasure` oracle, every engine against the
//! scalar one, every erasure pattern of small codes, range reconstruct,
//! argument validation, the decode cache and verify. Seeded, and sized to
//! stay fast in debug builds.

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reed_solomon_erasure::galois_8::ReedSolomon as Oracle;

use super::engine::{self, MatrixTables};
use super::matrix::Matrix;
use super::*;

/// Column buffers whose slices start at `misalign` bytes past an allocation,
/// so SIMD loads see unaligned addresses.
struct Columns {
    buffers: Vec<Vec<u8>>,
    misalign: usize,
    column_len: usize,
}

impl Columns {
    fn random(rng: &mut ChaCha8Rng, count: usize, column_len: usize, misalign: usize) -> Columns {
        let buffers = (0..count)
            .map(|_| {
                let mut b = vec![0u8; column_len + misalign];
                rng.fill_bytes(&mut b);
                b
            })
            .collect();
        Columns {
            buffers,
            misalign,
            column_len,
        }
    }

    fn zeroed(count: usize, column_len: usize, misalign: usize) -> Columns {
        Columns {
            buffers: vec![vec![0u8; column_len + misalign]; count],
            misalign,
            column_len,
        }
    }

    fn get(&self, i: usize) -> &[u8] {
        &self.buffers[i][self.misalign..self.misalign + self.column_len]
    }

    fn refs(&self) -> Vec<&[u8]> {
        (0..self.buffers.len()).map(|i| self.get(i)).collect()
    }

    fn muts(&mut self) -> Vec<&mut [u8]> {
        let (m, l) = (self.misalign, self.column_len);
        self.buffers.iter_mut().map(|b| &mut b[m..m + l]).collect()
    }
}

fn oracle_parity(k: usize, m: usize, data: &[&[u8]]) -> Vec<Vec<u8>> {
    let oracle = Oracle::new(k, m).expect("valid shape");
    let mut parity = vec![vec![0u8; data[0].len()]; m];
    oracle.encode_sep(data, &mut parity).expect("oracle encode");
    parity
}

fn encode_with(codec: &Codec, data: &Columns, misalign: usize) -> Columns {
    let mut parity = Columns::zeroed(codec.parity_count(), data.column_len, misalign);
    codec
        .encode(&data.refs(), &mut parity.muts())
        .expect("encode");
    parity
}

#[test]
fn codec_is_send_sync_clone_debug() {
    fn assert_traits<T: Send + Sync + Clone + std::fmt::Debug>() {}
    assert_traits::<Codec>();
    let codec = Codec::with_engine(4, 2, EngineKind::Scalar).unwrap();
    let text = format!("{codec:?}");
    assert!(
        text.contains("data_count: 4") && text.contains("Scalar"),
        "{text}"
    );
}

#[test]
fn engine_kind_names_round_trip() {
    for kind in EngineKind::ALL {
        assert_eq!(kind.to_string().parse::<EngineKind>().unwrap(), kind);
    }
    assert_eq!(
        "avx512gfni".parse::<EngineKind>().unwrap(),
        EngineKind::Avx512Gfni
    );
    assert!(matches!(
        "sse9".parse::<EngineKind>(),
        Err(Error::InvalidArgument { .. })
    ));
    let available = EngineKind::available();
    assert_eq!(available[0], EngineKind::Scalar);
    assert_eq!(EngineKind::best(), *available.last().unwrap());
}

#[test]
fn engine_from_env_values() {
    assert_eq!(engine_from_env(None).unwrap(), EngineKind::best());
    assert_eq!(
        engine_from_env(Some("".into())).unwrap(),
        EngineKind::best()
    );
    assert_eq!(
        engine_from_env(Some(" scalar ".into())).unwrap(),
        EngineKind::Scalar
    );
    assert!(matches!(
        engine_from_env(Some("fast".into())),
        Err(Error::InvalidArgument { .. })
    ));
}

/// The AVX2 + GFNI engine runs wherever the CPU has both (then every test
/// here that walks `EngineKind::available()` checks it against the scalar
/// engine); elsewhere it is skipped, and this says so. qemu's user mode
/// emulates no GFNI, and the AMD EPYC machines of this project without
/// AVX-512 have none either.
#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_gfni_engine_runs_where_the_cpu_has_gfni() {
    let has = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("gfni");
    assert_eq!(EngineKind::Avx2Gfni.is_available(), has);
    if !has {
        eprintln!("skipped: this CPU has no GFNI, so the avx2gfni engine is not tested here");
        return;
    }
    assert!(EngineKind::available().contains(&EngineKind::Avx2Gfni));
    if !EngineKind::Avx512Gfni.is_available() {
        assert_eq!(EngineKind::best(), EngineKind::Avx2Gfni);
    }
    // Its own check against the scalar engine, byte for byte: one to
    // thirteen outputs (register groups of 1-8, and 8 + 5), lengths around
    // the 32-byte steps and 64-byte pairs, unaligned buffers.
    let mut rng = ChaCha8Rng::seed_from_u64(0x6f1);
    for (k, m) in [
        (2, 1),
        (4, 2),
        (6, 3),
        (3, 4),
        (10, 4),
        (5, 5),
        (3, 6),
        (2, 7),
        (4, 8),
        (5, 13),
    ] {
        let gfni = Codec::with_engine(k, m, EngineKind::Avx2Gfni).unwrap();
        assert_eq!(gfni.engine(), EngineKind::Avx2Gfni);
        let scalar = Codec::with_engine(k, m, EngineKind::Scalar).unwrap();
        for len in [0, 1, 31, 32, 33, 63, 64, 65, 95, 96, 127, 128, 200, 4113] {
            let data = Columns::random(&mut rng, k, len, len % 3);
            let got = encode_with(&gfni, &data, 1);
            let want = encode_with(&scalar, &data, 0);
            assert_eq!(got.refs(), want.refs(), "RS({k},{m}), {len} bytes");
        }
    }
}

/// The aarch64 run (under qemu in CI) must exercise the NEON engine, not
/// just the scalar one.
#[cfg(target_arch = "aarch64")]
#[test]
fn neon_engine_is_available_on_aarch64() {
    assert_eq!(EngineKind::best(), EngineKind::Neon);
}

#[test]
fn unavailable_engine_is_an_error() {
    let missing = EngineKind::ALL.into_iter().find(|k| !k.is_available());
    // x86-64 never has NEON and aarch64 never has AVX2.
    let missing = missing.expect("some engine is foreign to this CPU");
    assert!(matches!(
        Codec::with_engine(4, 2, missing),
        Err(Error::InvalidArgument { .. })
    ));
}

#[test]
fn every_engine_multiplies_every_constant_by_every_byte() {
    // 8 rows x 1 column per call covers 8 constants; 32 calls cover all 256.
    // This is the bit-order check of the GFNI matrices (and the nibble tables)
    // on real hardware.
    let input: Vec<u8> = (0..=255u8).cycle().take(256 + 63).collect();
    for kind in EngineKind::available() {
        let engine = engine::build(kind).unwrap();
        for first in (0..256).step_by(8) {
            let mut matrix = Matrix::zero(8, 1);
            for r in 0..8 {
                matrix.set(r, 0, (first + r) as u8);
            }
            let tables = MatrixTables::new(&matrix);
            let mut out = vec![vec![0u8; input.len()]; 8];
            let mut outs: Vec<&mut [u8]> = out.iter_mut().map(|o| o.as_mut_slice()).collect();
            engine.mul_matrix(&tables, &[&input], &mut outs);
            for (r, o) in out.iter().enumerate() {
                for (&x, &y) in input.iter().zip(o) {
                    assert_eq!(
                        y,
                        gf::mul((first + r) as u8, x),
                        "{kind} c={} x={x}",
                        first + r
                    );
                }
            }
        }
    }
}

#[test]
fn encode_matches_oracle_on_random_shapes() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x6765_6f73);
    let mut shapes: Vec<(usize, usize, usize)> = vec![
        (1, 1, 1),
        (1, 1, 77),
        // k + m = 256 at both ends. (The oracle is generic code compiled
        // unoptimised into this test, and its cost grows with k^3: k = 255
        // would take seconds, so the widest k is checked against our own
        // reconstruct in `reconstruct_large_codes_and_extra_present_columns`.)
        (1, 255, 3),
        (128, 128, 2),
        (4, 2, 1),
        (6, 3, 4096 + 17),
        (10, 4, 999),
        (12, 4, 64),
        (3, 13, 130),
    ];
    for _ in 0..60 {
        let k = rng.random_range(1..=24);
        let m = rng.random_range(1..=12);
        let column_len = match rng.random_range(0..4) {
            0 => rng.random_range(1..=8),
            1 => rng.random_range(1..=200) | 1,
            2 => rng.random_range(1..=3000),
            _ => 64 * rng.random_range(1..=8),
        };
        shapes.push((k, m, column_len));
    }
    for (k, m, column_len) in shapes {
        let misalign = rng.random_range(0..64);
        let data = Columns::random(&mut rng, k, column_len, misalign);
        let expected = oracle_parity(k, m, &data.refs());
        // Building a 256-column code is slow in debug builds: huge shapes
        // run on the scalar and the best engine only (the small ones cover
        // every engine, and the cross-engine test covers row groups).
        let engines = if k + m > 64 {
            vec![EngineKind::Scalar, EngineKind::best()]
        } else {
            EngineKind::available()
        };
        for kind in engines {
            let codec = Codec::with_engine(k, m, kind).unwrap();
            let parity = encode_with(&codec, &data, rng.random_range(0..64));
            for (j, expected) in expected.iter().enumerate() {
                assert_eq!(
                    parity.get(j),
                    &expected[..],
                    "{kind} RS({k},{m}) len {column_len} parity {j}"
                );
            }
        }
    }
}

#[test]
fn empty_columns_encode_and_reconstruct() {
    for kind in EngineKind::available() {
        let codec = Codec::with_engine(3, 2, kind).unwrap();
        let data: [&[u8]; 3] = [&[], &[], &[]];
        let (mut p0, mut p1) = ([0u8; 0], [0u8; 0]);
        codec.encode(&data, &mut [&mut p0, &mut p1]).unwrap();
        let present: Vec<(usize, &[u8])> = vec![(0, &[]), (1, &[]), (4, &[])];
        codec
            .reconstruct(&present, &mut [(2, &mut p0), (3, &mut p1)])
            .unwrap();
    }
}

/// Data columns shorter than the stripe are taken as zero-padded by encode,
/// reconstruct and verify: the same bytes as with the padding written out,
/// on every engine, across lengths that cut the stripe at several points,
/// past the zeros block (16 KiB) and across tiles.
#[test]
fn short_data_columns_are_taken_as_zero_padded() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for kind in EngineKind::available() {
        for &(k, m, stripe_len) in &[(4, 2, 1000), (6, 3, 70_001), (3, 13, 40_000), (2, 1, 5)] {
            let codec = Codec::with_engine(k, m, kind).unwrap();
            let lens: Vec<usize> = (0..k)
                .map(|c| match c {
                    0 => stripe_len,
                    1 => 0,
                    _ => rng.random_range(0..=stripe_len),
                })
                .collect();
            let short: Vec<Vec<u8>> = lens
                .iter()
                .map(|&len| (0..len).map(|_| rng.random()).collect())
                .collect();
            let padded: Vec<Vec<u8>> = short
                .iter()
                .map(|c| {
                    let mut p = c.clone();
                    p.resize(stripe_len, 0);
                    p
                })
                .collect();
            let encode = |data: &[Vec<u8>]| {
                let mut parity = vec![vec![0u8; stripe_len]; m];
                let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
                let mut out: Vec<&mut [u8]> = parity.iter_mut().map(Vec::as_mut_slice).collect();
                codec.encode(&refs, &mut out).unwrap();
                parity
            };
            let parity = encode(&short);
            assert_eq!(parity, encode(&padded), "{kind} RS({k},{m}) encode");

            // Rebuild data column 0 (full length) and the last parity column
            // from the short data columns and the other parity columns.
            let mut present: Vec<(usize, &[u8])> =
                (1..k).map(|c| (c, short[c].as_slice())).collect();
            present.extend((0..m - 1).map(|j| (k + j, parity[j].as_slice())));
            if present.len() >= k {
                let (mut col0, mut last) = (vec![0u8; stripe_len], vec![0u8; stripe_len]);
                codec
                    .reconstruct(&present, &mut [(0, &mut col0), (k + m - 1, &mut last)])
                    .unwrap();
                assert_eq!(col0, padded[0], "{kind} RS({k},{m}) reconstruct data");
                assert_eq!(last, parity[m - 1], "{kind} RS({k},{m}) reconstruct parity");
            }

            let mut columns: Vec<&[u8]> = short.iter().map(Vec::as_slice).collect();
            columns.extend(parity.iter().map(Vec::as_slice));
            let mut scratch = VerifyScratch::new();
            let report = codec.verify(&columns, None, &mut scratch).unwrap();
            assert!(report.parity_matches(), "{kind} RS({k},{m}) verify");
        }
    }
}

#[test]
fn engines_agree_with_scalar_across_lengths_groups_and_tiles() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    // (3, 13) has two row groups; (4, 12) at 70_000 bytes is tiled; 300_001
    // bytes is past the GFNI engine's two-vector length.
    let cases: Vec<(usize, usize, Vec<usize>)> = vec![
        (6, 3, (0..=300).chain([300_001]).collect()),
        (
            3,
            13,
            vec![1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 129, 1000],
        ),
        (4, 12, vec![70_000 + 5]),
        (17, 9, vec![4096 + 3]),
    ];
    for (k, m, lens) in cases {
        let scalar = Codec::with_engine(k, m, EngineKind::Scalar).unwrap();
        for column_len in lens {
            let data = Columns::random(&mut rng, k, column_len, 1 + column_len % 7);
            let expected = encode_with(&scalar, &data, 0);
            for kind in EngineKind::available() {
                let codec = Codec::with_engine(k, m, kind).unwrap();
                let parity = encode_with(&codec, &data, 3);
                for j in 0..m {
                    assert_eq!(
                        parity.get(j),
                        expected.get(j),
                        "{kind} RS({k},{m}) len {column_len}"
                    );
                }
            }
        }
    }
}

/// All columns (data then parity) of a random stripe.
fn random_stripe(rng: &mut ChaCha8Rng, codec: &Codec, column_len: usize) -> Vec<Vec<u8>> {
    let data = Columns::random(rng, codec.data_count(), column_len, 0);
    let parity = encode_with(codec, &data, 0);
    data.buffers.into_iter().chain(parity.buffers).collect()
}

/// Rebuilds the columns in `missing_mask` from all the others; returns them
/// in ascending index order.
fn rebuild(codec: &Codec, stripe: &[Vec<u8>], missing_mask: u64) -> Result<Vec<Vec<u8>>> {
    let present: Vec<(usize, &[u8])> = (0..stripe.len())
        .filter(|i| missing_mask >> i & 1 == 0)
        .map(|i| (i, stripe[i].as_slice()))
        .collect();
    let missing_indices: Vec<usize> = (0..stripe.len())
        .filter(|i| missing_mask >> i & 1 == 1)
        .collect();
    let mut rebuilt = vec![vec![0xAAu8; stripe[0].len()]; missing_indices.len()];
    // Hand the missing list over in descending order: the codec must not
    // depend on the caller's order.
    let mut missing: Vec<(usize, &mut [u8])> = missing_indices
        .iter()
        .copied()
        .zip(rebuilt.iter_mut().map(|b| b.as_mut_slice()))
        .rev()
        .collect();
    codec.reconstruct(&present, &mut missing)?;
    Ok(rebuilt)
}

#[test]
fn reconstruct_every_erasure_pattern_of_small_codes() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for (k, m) in [(1, 1), (1, 3), (2, 2), (4, 2), (3, 3), (6, 3), (5, 5)] {
        for kind in EngineKind::available() {
            let codec = Codec::with_engine(k, m, kind).unwrap();
            let stripe = random_stripe(&mut rng, &codec, 67);
            let n = k + m;
            for mask in 1u64..(1 << n) {
                let lost = mask.count_ones() as usize;
                let result = rebuild(&codec, &stripe, mask);
                if lost > m {
                    match result {
                        Err(Error::NotEnoughColumns { needed, available }) => {
                            assert_eq!((needed, available), (k, n - lost));
                        }
                        other => panic!("{kind} RS({k},{m}) lost {mask:b}: {other:?}"),
                    }
                    continue;
                }
                let rebuilt = result.unwrap();
                let lost_indices = (0..n).filter(|i| mask >> i & 1 == 1);
                for (bytes, i) in rebuilt.iter().zip(lost_indices) {
                    assert_eq!(
                        bytes, &stripe[i],
                        "{kind} RS({k},{m}) lost {mask:b} column {i}"
                    );
                }
            }
        }
    }
}

#[test]
fn reconstruct_large_codes_and_extra_present_columns() {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    for (k, m) in [(128, 128), (255, 1), (200, 56), (20, 12)] {
        let codec = Codec::new(k, m).unwrap();
        let stripe = random_stripe(&mut rng, &codec, 33);
        let n = k + m;
        // Lose m random columns; pass every other column (more than k) in
        // shuffled order.
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        let (lost, kept) = order.split_at(m);
        let present: Vec<(usize, &[u8])> =
            kept.iter().map(|&i| (i, stripe[i].as_slice())).collect();
        let mut rebuilt = vec![vec![0u8; 33]; m];
        let mut missing: Vec<(usize, &mut [u8])> = lost
            .iter()
            .copied()
            .zip(rebuilt.iter_mut().map(|b| b.as_mut_slice()))
            .collect();
        codec.reconstruct(&present, &mut missing).unwrap();
        for (bytes, &i) in rebuilt.iter().zip(lost) {
            assert_eq!(bytes, &stripe[i], "RS({k},{m}) column {i}");
        }
    }
}

#[test]
fn range_reconstruct_equals_the_range_of_a_full_rebuild() {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let column_len = 5000;
    for kind in EngineKind::available() {
        let codec = Codec::with_engine(6, 3, kind).unwrap();
        let stripe = random_stripe(&mut rng, &codec, column_len);
        let lost = [0usize, 4, 7];
        let mask = lost.iter().fold(0u64, |acc, i| acc | 1 << i);
        let full = rebuild(&codec, &stripe, mask).unwrap();
        for (a, b) in [
            (0, 1),
            (1, 2),
            (3, 70),
            (100, 4099),
            (4999, 5000),
            (0, 5000),
            (17, 17),
        ] {
            let present: Vec<(usize, &[u8])> = (0..9)
                .filter(|i| !lost.contains(i))
                .map(|i| (i, &stripe[i][a..b]))
                .collect();
            let mut range = vec![vec![0u8; b - a]; 3];
            let mut missing: Vec<(usize, &mut [u8])> = lost
                .iter()
                .copied()
                .zip(range.iter_mut().map(|r| r.as_mut_slice()))
                .collect();
            codec.reconstruct(&present, &mut missing).unwrap();
            for (r, f) in range.iter().zip(&full) {
                assert_eq!(&r[..], &f[a..b], "{kind} range [{a}, {b})");
            }
        }
    }
}

#[test]
fn invalid_arguments_are_errors_not_panics() {
    let invalid = |r: Result<Codec>| matches!(r, Err(Error::InvalidArgument { .. }));
    assert!(invalid(Codec::new(0, 2)));
    assert!(invalid(Codec::new(2, 0)));
    assert!(invalid(Codec::new(200, 57)));
    assert!(Codec::new(200, 56).is_ok());

    let codec = Codec::new(2, 2).unwrap();
    let is_invalid = |r: Result<()>| matches!(r, Err(Error::InvalidArgument { .. }));
    let (a, b, short) = ([1u8; 8], [2u8; 8], [3u8; 7]);
    let (mut p, mut q, mut short_out) = ([0u8; 8], [0u8; 8], [0u8; 7]);
    // encode: counts and lengths
    assert!(is_invalid(codec.encode(&[&a], &mut [&mut p, &mut q])));
    assert!(is_invalid(codec.encode(&[&a, &b], &mut [&mut p])));
    // A data column longer than the parity columns (shorter is padding).
    let mut short_q = [0u8; 7];
    assert!(is_invalid(
        codec.encode(&[&a, &short], &mut [&mut short_out, &mut short_q])
    ));
    assert!(is_invalid(
        codec.encode(&[&a, &b], &mut [&mut p, &mut short_out])
    ));
    codec.encode(&[&a, &b], &mut [&mut p, &mut q]).unwrap();
    // reconstruct: index out of range, duplicates, overlap, lengths
    assert!(is_invalid(
        codec.reconstruct(&[(0, &a), (4, &b)], &mut [(2, &mut p)])
    ));
    assert!(is_invalid(
        codec.reconstruct(&[(0, &a), (1, &b)], &mut [(9, &mut p)])
    ));
    assert!(is_invalid(
        codec.reconstruct(&[(0, &a), (0, &b)], &mut [(2, &mut p)])
    ));
    assert!(is_invalid(codec.reconstruct(
        &[(0, &a), (1, &b)],
        &mut [(2, &mut p), (2, &mut q)]
    )));
    assert!(is_invalid(
        codec.reconstruct(&[(0, &a), (1, &b)], &mut [(1, &mut p)])
    ));
    // A present column shorter than the missing ones is padding, not an
    // error.
    codec
        .reconstruct(&[(0, &a), (1, &short)], &mut [(2, &mut p)])
        .unwrap();
    assert!(is_invalid(
        codec.reconstruct(&[(0, &a), (1, &b)], &mut [(2, &mut short_out)])
    ));
    // not enough columns
    assert!(matches!(
        codec.reconstruct(&[(0, &a)], &mut [(2, &mut p)]),
        Err(Error::NotEnoughColumns {
            needed: 2,
            available: 1
        })
    ));
    // nothing missing is fine
    codec.reconstruct(&[(0, &a), (3, &b)], &mut []).unwrap();
}

#[test]
fn decode_matrices_are_cached_and_bounded() {
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let codec = Codec::new(10, 4).unwrap();
    let stripe = random_stripe(&mut rng, &codec, 100);
    for _ in 0..5 {
        assert_eq!(rebuild(&codec, &stripe, 0b11).unwrap()[1], stripe[1]);
    }
    assert_eq!(codec.decode_cache().miss_count(), 1);
    // A clone shares the cache.
    let clone = codec.clone();
    rebuild(&clone, &stripe, 0b11).unwrap();
    assert_eq!(codec.decode_cache().miss_count(), 1);
    // Many patterns: the cache keeps at most its capacity.
    for i in 0..14 {
        for j in (i + 1)..14 {
            rebuild(&codec, &stripe, 1 << i | 1 << j).unwrap();
        }
    }
    assert_eq!(codec.decode_cache().len(), DECODE_CACHE_CAPACITY);
}

#[test]
fn verify_reports_parity_and_checksum_mismatches() {
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    let mut scratch = VerifyScratch::new();
    for column_len in [0usize, 1, 100, VERIFY_TILE_LEN + 77] {
        let codec = Codec::new(4, 2).unwrap();
        let mut stripe = random_stripe(&mut rng, &codec, column_len);
        let checksums: Vec<u32> = stripe.iter().map(|c| crc32fast::hash(c)).collect();
        let report =
            |stripe: &[Vec<u8>], checksums: Option<&[u32]>, scratch: &mut VerifyScratch| {
                let refs: Vec<&[u8]> = stripe.iter().map(|c| c.as_slice()).collect();
                codec.verify(&refs, checksums, scratch).unwrap()
            };
        let clean = report(&stripe, Some(&checksums), &mut scratch);
        assert!(clean.is_consistent() && clean.parity_matches());
        assert!(clean.inconsistent_columns().is_empty());
        if column_len == 0 {
            continue;
        }
        let last = column_len - 1;
        // Damaged parity column 5 (near the end: the last tile is checked too).
        stripe[5][last] ^= 0x40;
        let r = report(&stripe, None, &mut scratch);
        assert_eq!(r.parity_mismatch().iter().collect::<Vec<_>>(), [5]);
        assert_eq!(r.inconsistent_columns().iter().collect::<Vec<_>>(), [5]);
        stripe[5][last] ^= 0x40;
        // Damaged data column 1: every parity column disagrees; the checksum
        // names the column.
        stripe[1][0] ^= 1;
        let r = report(&stripe, None, &mut scratch);
        assert_eq!(r.parity_mismatch().iter().collect::<Vec<_>>(), [4, 5]);
        let r = report(&stripe, Some(&checksums), &mut scratch);
        assert!(!r.is_consistent());
        assert_eq!(r.checksum_mismatch().iter().collect::<Vec<_>>(), [1]);
        assert_eq!(r.inconsistent_columns().iter().collect::<Vec<_>>(), [1]);
    }
    let codec = Codec::new(2, 1).unwrap();
    let a = [0u8; 4];
    let invalid = |r: Result<VerifyReport>| matches!(r, Err(Error::InvalidArgument { .. }));
    assert!(invalid(codec.verify(&[&a, &a], None, &mut scratch)));
    assert!(invalid(codec.verify(
        &[&a, &a, &a[..3]],
        None,
        &mut scratch
    )));
    assert!(invalid(codec.verify(
        &[&a, &a, &a],
        Some(&[0, 0]),
        &mut scratch
    )));
}
