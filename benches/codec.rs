//! Codec throughput: encode and reconstruct (1 and m missing data columns)
//! for RS(4,2), RS(6,3), RS(10,4), RS(12,4) at 4 KiB, 64 KiB and 1 MiB
//! columns, in data bytes per second (k x column_len per call).
//!
//! Lines per group: every geoshard engine this CPU runs
//! (`geoshard-<engine>`), `reed-solomon-erasure` (simd-accel), and
//! `reed-solomon-simd`; with `--features bench-isal`, Intel ISA-L 2.31
//! (`isal` = its run-time dispatch: the AVX-512 + GFNI kernels on a CPU
//! that has them; `isal-avx2gfni` = `ec_encode_data_avx2_gfni`, on CPUs with
//! AVX2 and GFNI; `isal-avx2` = `ec_encode_data_avx2`, on CPUs with AVX2).
//! ISA-L gets the very same coding
//! matrix (reed-solomon-erasure's), and its decode tables are built once per
//! erasure pattern outside the timed loop, as geoshard's LRU does.
//!
//! ```sh
//! cargo bench --bench codec --features bench-isal
//! cargo bench --bench codec --features bench-isal -- 'encode/RS\(6,3\)'   # a subset
//! python3 benches/codec_table.py                                          # the table
//! # the issue's target cells, geoshard and ISA-L interleaved call batch by
//! # call batch (robust against a noisy machine): the best engine this CPU
//! # runs (or the one GEOSHARD_SIMD names; ISA-L's side stays its dispatch)
//! # against ISA-L's dispatch, then both libraries' AVX2 + GFNI and AVX2
//! # kernels where the CPU has them:
//! GEOSHARD_BENCH_INTERLEAVED=1 cargo bench --bench codec --features bench-isal
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use geoshard::codec::{Codec, EngineKind};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

const CODES: [(usize, usize); 4] = [(4, 2), (6, 3), (10, 4), (12, 4)];
const COLUMN_LENS: [usize; 3] = [4 << 10, 64 << 10, 1 << 20];

fn len_label(column_len: usize) -> String {
    if column_len >= 1 << 20 {
        format!("{}MiB", column_len >> 20)
    } else {
        format!("{}KiB", column_len >> 10)
    }
}

/// A stripe: k random data columns and m parity columns, as separate
/// allocations like a store's buffers.
struct Stripe {
    // Read only by the ISA-L baseline.
    #[cfg_attr(not(feature = "bench-isal"), allow(dead_code))]
    k: usize,
    m: usize,
    columns: Vec<Vec<u8>>,
}

impl Stripe {
    fn new(k: usize, m: usize, column_len: usize) -> Stripe {
        let mut rng = ChaCha8Rng::seed_from_u64((k * 1000 + m) as u64 ^ column_len as u64);
        let mut columns = vec![vec![0u8; column_len]; k + m];
        for c in &mut columns[..k] {
            rng.fill_bytes(c);
        }
        let mut stripe = Stripe { k, m, columns };
        let codec = Codec::new(k, m).expect("valid code");
        geoshard_encode(&codec, &mut stripe.columns);
        stripe
    }
}

fn geoshard_encode(codec: &Codec, columns: &mut [Vec<u8>]) {
    let (data, parity) = columns.split_at_mut(codec.data_count());
    let data: Vec<&[u8]> = data.iter().map(|c| c.as_slice()).collect();
    let mut parity: Vec<&mut [u8]> = parity.iter_mut().map(|c| c.as_mut_slice()).collect();
    codec.encode(&data, &mut parity).expect("encode");
}

fn encode(c: &mut Criterion) {
    for (k, m) in CODES {
        for column_len in COLUMN_LENS {
            let mut group =
                c.benchmark_group(format!("encode/RS({k},{m})/{}", len_label(column_len)));
            group.throughput(Throughput::Bytes((k * column_len) as u64));
            let mut stripe = Stripe::new(k, m, column_len);

            for kind in EngineKind::available() {
                let codec = Codec::with_engine(k, m, kind).expect("engine");
                let (data, parity) = stripe.columns.split_at_mut(k);
                let data: Vec<&[u8]> = data.iter().map(|c| c.as_slice()).collect();
                let mut parity: Vec<&mut [u8]> =
                    parity.iter_mut().map(|c| c.as_mut_slice()).collect();
                group.bench_function(
                    BenchmarkId::from_parameter(format!("geoshard-{kind}")),
                    |b| {
                        b.iter(|| {
                            codec
                                .encode(black_box(&data), black_box(&mut parity))
                                .expect("encode")
                        })
                    },
                );
            }

            let rse = reed_solomon_erasure::galois_8::ReedSolomon::new(k, m).expect("rse");
            {
                let (data, parity) = stripe.columns.split_at_mut(k);
                group.bench_function("reed-solomon-erasure", |b| {
                    b.iter(|| {
                        rse.encode_sep(black_box(&*data), black_box(&mut *parity))
                            .expect("rse")
                    })
                });
            }

            let mut rss =
                reed_solomon_simd::ReedSolomonEncoder::new(k, m, column_len).expect("rss");
            group.bench_function("reed-solomon-simd", |b| {
                b.iter(|| {
                    rss.reset(k, m, column_len).expect("reset");
                    for d in &stripe.columns[..k] {
                        rss.add_original_shard(d).expect("add");
                    }
                    let result = rss.encode().expect("encode");
                    black_box(result.recovery_iter().count());
                })
            });

            #[cfg(feature = "bench-isal")]
            isal::bench_encode(&mut group, &mut stripe);

            group.finish();
            let _ = stripe.m;
        }
    }
}

fn reconstruct(c: &mut Criterion) {
    for (k, m) in CODES {
        for column_len in COLUMN_LENS {
            let stripe = Stripe::new(k, m, column_len);
            for missing_count in [1, m] {
                let mut group = c.benchmark_group(format!(
                    "reconstruct-{missing_count}/RS({k},{m})/{}",
                    len_label(column_len)
                ));
                group.throughput(Throughput::Bytes((k * column_len) as u64));
                // Lose data columns 0..missing_count; all the others are present.
                let present: Vec<(usize, &[u8])> = (missing_count..k + m)
                    .map(|i| (i, stripe.columns[i].as_slice()))
                    .collect();
                let mut rebuilt = vec![vec![0u8; column_len]; missing_count];

                for kind in EngineKind::available() {
                    let codec = Codec::with_engine(k, m, kind).expect("engine");
                    let mut missing: Vec<(usize, &mut [u8])> = rebuilt
                        .iter_mut()
                        .enumerate()
                        .map(|(i, c)| (i, c.as_mut_slice()))
                        .collect();
                    codec
                        .reconstruct(&present, &mut missing)
                        .expect("reconstruct");
                    group.bench_function(
                        BenchmarkId::from_parameter(format!("geoshard-{kind}")),
                        |b| {
                            b.iter(|| {
                                codec
                                    .reconstruct(black_box(&present), black_box(&mut missing))
                                    .expect("reconstruct")
                            })
                        },
                    );
                }
                for (i, r) in rebuilt.iter().enumerate() {
                    assert_eq!(r, &stripe.columns[i], "geoshard rebuilt column {i}");
                }

                let rse = reed_solomon_erasure::galois_8::ReedSolomon::new(k, m).expect("rse");
                let mut work = stripe.columns.clone();
                group.bench_function("reed-solomon-erasure", |b| {
                    b.iter(|| {
                        let mut shards: Vec<(&mut [u8], bool)> = work
                            .iter_mut()
                            .enumerate()
                            .map(|(i, c)| (c.as_mut_slice(), i >= missing_count))
                            .collect();
                        rse.reconstruct_data(black_box(&mut shards)).expect("rse")
                    })
                });

                // reed-solomon-simd is a different code: give it its own
                // recovery shards, then drop the same data columns.
                let recovery: Vec<Vec<u8>> =
                    reed_solomon_simd::encode(k, m, &stripe.columns[..k]).expect("rss encode");
                let mut rss =
                    reed_solomon_simd::ReedSolomonDecoder::new(k, m, column_len).expect("rss");
                group.bench_function("reed-solomon-simd", |b| {
                    b.iter(|| {
                        rss.reset(k, m, column_len).expect("reset");
                        for (i, d) in stripe.columns[..k].iter().enumerate().skip(missing_count) {
                            rss.add_original_shard(i, d).expect("add");
                        }
                        for (j, r) in recovery.iter().enumerate().take(missing_count) {
                            rss.add_recovery_shard(j, r).expect("add");
                        }
                        let result = rss.decode().expect("decode");
                        black_box(result.restored_original_iter().count());
                    })
                });

                #[cfg(feature = "bench-isal")]
                isal::bench_reconstruct(&mut group, &stripe, missing_count);

                group.finish();
            }
        }
    }
}

#[cfg(feature = "bench-isal")]
mod isal {
    //! ISA-L 2.31 from the `isal-sys` crate's vendored source (built with
    //! nasm + autotools, linked statically). `isal-sys` only binds igzip, so
    //! the erasure-code entry points are declared here.

    #![allow(unsafe_code, reason = "FFI to ISA-L")]

    use criterion::BenchmarkGroup;
    use criterion::measurement::WallTime;
    use std::os::raw::{c_int, c_uchar};

    use std::time::Instant;

    use geoshard::codec::{Codec, EngineKind};

    use super::Stripe;

    use isal_sys as _;

    unsafe extern "C" {
        /// Run-time dispatched table init (GFNI layout when the CPU has it).
        fn ec_init_tables(k: c_int, rows: c_int, a: *mut c_uchar, gftbls: *mut c_uchar);
        /// Portable 32-bytes-per-coefficient tables, the layout of the
        /// SSE/AVX/AVX2 kernels.
        fn ec_init_tables_base(k: c_int, rows: c_int, a: *mut c_uchar, gftbls: *mut c_uchar);
        fn ec_encode_data(
            len: c_int,
            k: c_int,
            rows: c_int,
            gftbls: *mut c_uchar,
            data: *mut *mut c_uchar,
            coding: *mut *mut c_uchar,
        );
        /// GFNI tables (8 bytes per coefficient), for the `*_gfni` kernels.
        fn ec_init_tables_gfni(k: c_int, rows: c_int, a: *mut c_uchar, gftbls: *mut c_uchar);
        fn ec_encode_data_avx2_gfni(
            len: c_int,
            k: c_int,
            rows: c_int,
            gftbls: *mut c_uchar,
            data: *mut *mut c_uchar,
            coding: *mut *mut c_uchar,
        );
        fn ec_encode_data_avx2(
            len: c_int,
            k: c_int,
            rows: c_int,
            gftbls: *mut c_uchar,
            data: *mut *mut c_uchar,
            coding: *mut *mut c_uchar,
        );
        fn gf_invert_matrix(input: *mut c_uchar, output: *mut c_uchar, n: c_int) -> c_int;
    }

    /// The (k + m) x k coding matrix of reed-solomon-erasure, read back by
    /// encoding unit vectors: data column c = e_c makes parity byte c of
    /// parity column j the coefficient (j, c).
    fn coding_matrix(k: usize, m: usize) -> Vec<u8> {
        let rse = reed_solomon_erasure::galois_8::ReedSolomon::new(k, m).expect("rse");
        let data: Vec<Vec<u8>> = (0..k)
            .map(|c| (0..k).map(|b| u8::from(b == c)).collect())
            .collect();
        let mut parity = vec![vec![0u8; k]; m];
        rse.encode_sep(&data, &mut parity).expect("rse");
        let mut matrix = vec![0u8; (k + m) * k];
        for i in 0..k {
            matrix[i * k + i] = 1;
        }
        for (j, p) in parity.iter().enumerate() {
            matrix[(k + j) * k..(k + j + 1) * k].copy_from_slice(p);
        }
        matrix
    }

    type Encode = unsafe extern "C" fn(
        c_int,
        c_int,
        c_int,
        *mut c_uchar,
        *mut *mut c_uchar,
        *mut *mut c_uchar,
    );
    type InitTables = unsafe extern "C" fn(c_int, c_int, *mut c_uchar, *mut c_uchar);

    /// ISA-L's kernels this CPU can run, each with the geoshard engine it
    /// is compared with in the interleaved table: its run-time dispatch
    /// (against the engine `Codec::new` picks: the best one, or the one
    /// `GEOSHARD_SIMD` names; ISA-L's side stays its dispatch) always;
    /// `ec_encode_data_avx2_gfni` where the CPU has AVX2 and GFNI;
    /// `ec_encode_data_avx2` where it has AVX2 (each would fault without).
    fn kernels() -> Vec<(&'static str, InitTables, Encode, EngineKind)> {
        let best = Codec::new(2, 1)
            .expect("GEOSHARD_SIMD names an engine this CPU runs")
            .engine();
        let mut kernels = vec![(
            "isal",
            ec_init_tables as InitTables,
            ec_encode_data as Encode,
            best,
        )];
        if EngineKind::Avx2Gfni.is_available() {
            kernels.push((
                "isal-avx2gfni",
                ec_init_tables_gfni as InitTables,
                ec_encode_data_avx2_gfni as Encode,
                EngineKind::Avx2Gfni,
            ));
        }
        if EngineKind::Avx2.is_available() {
            kernels.push((
                "isal-avx2",
                ec_init_tables_base as InitTables,
                ec_encode_data_avx2 as Encode,
                EngineKind::Avx2,
            ));
        }
        kernels
    }

    /// One ISA-L kernel set up to multiply `rows` (row-major, row_count x k)
    /// by k input columns into its own output buffers.
    pub(super) struct IsalRun {
        encode: Encode,
        tables: Vec<u8>,
        input_ptrs: Vec<*mut c_uchar>,
        output_ptrs: Vec<*mut c_uchar>,
        outputs: Vec<Vec<u8>>,
        len: c_int,
        k: c_int,
        row_count: c_int,
    }

    impl IsalRun {
        pub(super) fn new(
            init: InitTables,
            encode: Encode,
            k: usize,
            rows: &mut [u8],
            inputs: &[&[u8]],
        ) -> IsalRun {
            let row_count = rows.len() / k;
            let column_len = inputs[0].len();
            // GFNI tables take 8 bytes per coefficient, the others 32.
            let mut tables = vec![0u8; 32 * k * row_count];
            let (k, row_count) = (k as c_int, row_count as c_int);
            // SAFETY: `rows` is row_count x k bytes; `tables` has the 32
            // bytes per coefficient ISA-L documents as its largest layout.
            unsafe { init(k, row_count, rows.as_mut_ptr(), tables.as_mut_ptr()) };
            let mut outputs = vec![vec![0u8; column_len]; row_count as usize];
            IsalRun {
                encode,
                tables,
                input_ptrs: inputs.iter().map(|c| c.as_ptr().cast_mut()).collect(),
                output_ptrs: outputs.iter_mut().map(|c| c.as_mut_ptr()).collect(),
                outputs,
                len: c_int::try_from(column_len).expect("len"),
                k,
                row_count,
            }
        }

        pub(super) fn run(&mut self) {
            // SAFETY: k input pointers (to slices the caller keeps alive
            // for as long as this value) and row_count output pointers to
            // our own buffers, each `len` bytes; ISA-L only reads the inputs
            // (its API is not const-correct). `encode` is the dispatching
            // `ec_encode_data` or a kernel `kernels()` listed only where the
            // CPU has its instructions.
            unsafe {
                (self.encode)(
                    self.len,
                    self.k,
                    self.row_count,
                    self.tables.as_mut_ptr(),
                    self.input_ptrs.as_mut_ptr(),
                    self.output_ptrs.as_mut_ptr(),
                )
            }
        }
    }

    /// Benchmarks every ISA-L kernel on `rows` x inputs, after checking its
    /// result once against `expected`.
    fn bench_rows(
        group: &mut BenchmarkGroup<'_, WallTime>,
        k: usize,
        rows: &mut [u8],
        inputs: &[&[u8]],
        expected: &[&[u8]],
    ) {
        for (name, init, encode, _) in kernels() {
            let mut isal = IsalRun::new(init, encode, k, rows, inputs);
            isal.run();
            for (o, e) in isal.outputs.iter().zip(expected) {
                assert_eq!(o.as_slice(), *e, "{name} output differs from geoshard");
            }
            group.bench_function(name, |b| b.iter(|| isal.run()));
        }
    }

    /// Rate of `a` and `b` (GB/s of `data_bytes` per call) and their ratio,
    /// measured interleaved: rounds of ~20 ms batches alternating a, b and
    /// b, a, so machine noise hits both alike; medians over the rounds.
    fn interleaved(mut a: impl FnMut(), mut b: impl FnMut(), data_bytes: usize) -> (f64, f64, f64) {
        const ROUNDS: usize = 21;
        let start = Instant::now();
        a();
        b();
        let calls = (0.02 / start.elapsed().as_secs_f64().max(1e-9) * 2.0).max(1.0) as usize;
        let time = |f: &mut dyn FnMut()| {
            let t = Instant::now();
            for _ in 0..calls {
                f();
            }
            (calls * data_bytes) as f64 / t.elapsed().as_nanos() as f64
        };
        let (mut rates_a, mut rates_b, mut ratios) = (vec![], vec![], vec![]);
        for round in 0..ROUNDS {
            let (ra, rb) = if round % 2 == 0 {
                let ra = time(&mut a);
                (ra, time(&mut b))
            } else {
                let rb = time(&mut b);
                (time(&mut a), rb)
            };
            rates_a.push(ra);
            rates_b.push(rb);
            ratios.push(ra / rb);
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        (
            median(&mut rates_a),
            median(&mut rates_b),
            median(&mut ratios),
        )
    }

    /// The issue's target cells, geoshard vs ISA-L measured interleaved
    /// (`GEOSHARD_BENCH_INTERLEAVED=1`), printed as a Markdown table: one
    /// pair of columns per pair of [`kernels`].
    pub(super) fn interleaved_table() {
        let kernels = kernels();
        let mut header = String::from("| op | code | column |");
        for (isal, _, _, engine) in &kernels {
            header.push_str(&format!(" geoshard {engine} | {isal} | ratio |"));
        }
        println!("{header}");
        println!(
            "| --- | --- | --- |{}",
            " --- | --- | --- |".repeat(kernels.len())
        );
        for (k, m) in [(6, 3), (10, 4)] {
            for column_len in [64 << 10, 1 << 20] {
                let stripe = Stripe::new(k, m, column_len);
                let matrix = coding_matrix(k, m);
                let codecs: Vec<Codec> = kernels
                    .iter()
                    .map(|&(_, _, _, e)| Codec::with_engine(k, m, e).expect("engine"))
                    .collect();
                let data_bytes = k * column_len;

                // encode
                let mut cells = Vec::new();
                for (codec, &(_, init, encode, _)) in codecs.iter().zip(&kernels) {
                    let mut parity_rows = matrix[k * k..].to_vec();
                    let data: Vec<&[u8]> =
                        stripe.columns[..k].iter().map(|c| c.as_slice()).collect();
                    // Parity into buffers of its own, as ISA-L's outputs are
                    // (writing into the stripe's parity columns measured
                    // slower for the same kernel).
                    let mut own = vec![vec![0u8; column_len]; m];
                    let mut parity: Vec<&mut [u8]> =
                        own.iter_mut().map(|c| c.as_mut_slice()).collect();
                    let mut isal = IsalRun::new(init, encode, k, &mut parity_rows, &data);
                    cells.push(interleaved(
                        || codec.encode(&data, &mut parity).expect("encode"),
                        || isal.run(),
                        data_bytes,
                    ));
                }
                print_row("encode", k, m, column_len, &cells);

                // reconstruct m missing data columns from the first k present
                let mut cells = Vec::new();
                let used: Vec<usize> = (m..k + m).collect();
                let mut sub: Vec<u8> = used
                    .iter()
                    .flat_map(|&r| matrix[r * k..(r + 1) * k].to_vec())
                    .collect();
                let mut inverse = vec![0u8; k * k];
                // SAFETY: both buffers are k x k.
                let status =
                    unsafe { gf_invert_matrix(sub.as_mut_ptr(), inverse.as_mut_ptr(), k as c_int) };
                assert_eq!(status, 0, "singular decode matrix");
                let present: Vec<(usize, &[u8])> = used
                    .iter()
                    .map(|&i| (i, stripe.columns[i].as_slice()))
                    .collect();
                let inputs: Vec<&[u8]> = present.iter().map(|&(_, c)| c).collect();
                let mut rebuilt = vec![vec![0u8; column_len]; m];
                for (codec, &(_, init, encode, _)) in codecs.iter().zip(&kernels) {
                    let mut rows = inverse[..m * k].to_vec();
                    let mut isal = IsalRun::new(init, encode, k, &mut rows, &inputs);
                    let mut missing: Vec<(usize, &mut [u8])> = rebuilt
                        .iter_mut()
                        .enumerate()
                        .map(|(i, c)| (i, c.as_mut_slice()))
                        .collect();
                    cells.push(interleaved(
                        || {
                            codec
                                .reconstruct(&present, &mut missing)
                                .expect("reconstruct")
                        },
                        || isal.run(),
                        data_bytes,
                    ));
                }
                print_row(&format!("reconstruct {m} (m)"), k, m, column_len, &cells);
            }
        }
    }

    fn print_row(op: &str, k: usize, m: usize, column_len: usize, cells: &[(f64, f64, f64)]) {
        let cells: Vec<String> = cells
            .iter()
            .map(|(a, b, ratio)| format!("{a:.2} | {b:.2} | {ratio:.2}x"))
            .collect();
        println!(
            "| {op} | RS({k},{m}) | {} | {} |",
            super::len_label(column_len),
            cells.join(" | ")
        );
    }

    pub(super) fn bench_encode(group: &mut BenchmarkGroup<'_, WallTime>, stripe: &mut Stripe) {
        let (k, m) = (stripe.k, stripe.m);
        let matrix = coding_matrix(k, m);
        let mut parity_rows = matrix[k * k..].to_vec();
        let (data, parity) = stripe.columns.split_at(k);
        let data: Vec<&[u8]> = data.iter().map(|c| c.as_slice()).collect();
        let parity: Vec<&[u8]> = parity.iter().map(|c| c.as_slice()).collect();
        bench_rows(group, k, &mut parity_rows, &data, &parity);
    }

    pub(super) fn bench_reconstruct(
        group: &mut BenchmarkGroup<'_, WallTime>,
        stripe: &Stripe,
        missing_count: usize,
    ) {
        let (k, m) = (stripe.k, stripe.m);
        let matrix = coding_matrix(k, m);
        // Decode from the first k present columns (missing_count..), as
        // geoshard does: invert their rows; row i of the inverse rebuilds
        // data column i.
        let used: Vec<usize> = (missing_count..k + m).take(k).collect();
        let mut sub: Vec<u8> = used
            .iter()
            .flat_map(|&r| matrix[r * k..(r + 1) * k].to_vec())
            .collect();
        let mut inverse = vec![0u8; k * k];
        // SAFETY: both buffers are k x k.
        let status =
            unsafe { gf_invert_matrix(sub.as_mut_ptr(), inverse.as_mut_ptr(), k as c_int) };
        assert_eq!(status, 0, "singular decode matrix");
        let mut rows = inverse[..missing_count * k].to_vec();
        let inputs: Vec<&[u8]> = used.iter().map(|&i| stripe.columns[i].as_slice()).collect();
        let expected: Vec<&[u8]> = stripe.columns[..missing_count]
            .iter()
            .map(|c| c.as_slice())
            .collect();
        bench_rows(group, k, &mut rows, &inputs, &expected);
    }
}

fn config() -> Criterion {
    // 36 groups x ~8 lines: short samples keep a full run to minutes. The
    // command line (--warm-up-time, --measurement-time) still overrides.
    // Plots and the default 100 000 bootstrap resamples cost more than the
    // measurement itself here.
    Criterion::default()
        .sample_size(10)
        .nresamples(5_000)
        .without_plots()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(700))
}

criterion_group! {
    name = benches;
    config = config();
    targets = encode, reconstruct
}

fn main() {
    // The machine is shared and noisy: criterion measures one line after
    // the other, so a burst of load skews a ratio. This mode measures the
    // target cells interleaved instead.
    #[cfg(feature = "bench-isal")]
    if std::env::var_os("GEOSHARD_BENCH_INTERLEAVED").is_some() {
        isal::interleaved_table();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
