//! Local node benchmarks, each against a baseline measured in the same run:
//!
//! - append + sync of 1 MiB and 16 KiB records with the io_uring and pwrite
//!   engines vs `std::fs::File::write_all` + `sync_data` of the same bytes;
//! - the same with 8 node directories per batch (`append_all`) vs 8 plain
//!   files written and synced one after the other (and, for reference, on 8
//!   threads);
//! - reads of 4 KiB and 1 MiB ranges (crc included) from a page-cached
//!   segment vs a crc pass over the same bytes in ordinary memory.
//!
//! Run: `cargo bench --bench node -- --warm-up-time 1 --measurement-time 3`.

use std::fs::File;
use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use geoshard::format::ColumnHeader;
use geoshard::node::{
    IoEngineKind, LocalNode, LocalOptions, Node, NodeExt, RecordLocation, RecordRef, append_all,
};

/// Appends per generation before it is removed, so the disk use stays
/// bounded however long criterion runs.
const APPENDS_PER_GENERATION: u64 = 64;
const NODE_COUNT: usize = 8;

fn header(stripe_id: u64, generation: u64, payload: &[u8]) -> ColumnHeader {
    let len = payload.len() as u32;
    let checksum = crc32fast::hash(payload);
    ColumnHeader {
        stripe_id,
        generation,
        data_count: 6,
        parity_count: 3,
        column_index: 0,
        column_lens: vec![len; 9],
        column_checksums: vec![checksum; 9],
        placement: (0..9)
            .map(|i| format!("site-{}/node-{}", i / 3, i % 3))
            .collect(),
        entry_table_lens: vec![0; 6],
        commit: geoshard::format::CommitStamp::default(),
        handoffs: Vec::new(),
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// A node that appends one batch of `records_per_batch` records per call,
/// rotating generations to bound disk use.
struct Appender {
    node: LocalNode,
    payload: Vec<u8>,
    records_per_batch: usize,
    generation: u64,
    appends: u64,
}

impl Appender {
    fn new(dir: &Path, engine: IoEngineKind, record_len: usize, records_per_batch: usize) -> Self {
        let node =
            LocalNode::open("bench", dir, &LocalOptions::with_io_engine(engine)).expect("open");
        assert_eq!(node.io_engine(), engine, "engine available");
        Appender {
            node,
            payload: payload(record_len),
            records_per_batch,
            generation: 0,
            appends: 0,
        }
    }

    fn rotate(&mut self) {
        self.appends += 1;
        if self.appends.is_multiple_of(APPENDS_PER_GENERATION) {
            self.node
                .remove_generation(self.generation)
                .expect("remove");
            self.generation += 1;
        }
    }

    fn headers(&self) -> Vec<ColumnHeader> {
        (0..self.records_per_batch)
            .map(|i| {
                header(
                    self.appends * 1000 + i as u64,
                    self.generation,
                    &self.payload,
                )
            })
            .collect()
    }

    fn append(&mut self) {
        let headers = self.headers();
        let records: Vec<RecordRef<'_>> = headers
            .iter()
            .map(|header| RecordRef {
                header,
                payload: &self.payload,
            })
            .collect();
        black_box(self.node.append(self.generation, &records).expect("append"));
        self.rotate();
    }
}

/// The baseline: the same record bytes written with `write_all` and synced
/// with `sync_data`, rotating files like the node rotates segments.
struct PlainFile {
    dir: PathBuf,
    file: File,
    bytes: Vec<u8>,
    generation: u64,
    appends: u64,
}

impl PlainFile {
    fn new(dir: &Path, record_len: usize, records_per_batch: usize) -> Self {
        let payload = payload(record_len);
        let mut bytes = Vec::new();
        for i in 0..records_per_batch {
            header(i as u64, 0, &payload)
                .encode_into(&mut bytes)
                .expect("encode");
            bytes.extend_from_slice(&payload);
        }
        PlainFile {
            dir: dir.to_path_buf(),
            file: Self::create(dir, 0),
            bytes,
            generation: 0,
            appends: 0,
        }
    }

    fn create(dir: &Path, generation: u64) -> File {
        let file = File::create(dir.join(format!("{generation}.plain"))).expect("create");
        File::open(dir)
            .and_then(|d| d.sync_all())
            .expect("sync dir");
        file
    }

    fn append(&mut self) {
        self.file.write_all(&self.bytes).expect("write");
        self.file.sync_data().expect("sync");
        self.appends += 1;
        if self.appends.is_multiple_of(APPENDS_PER_GENERATION) {
            std::fs::remove_file(self.dir.join(format!("{}.plain", self.generation))).expect("rm");
            self.generation += 1;
            self.file = Self::create(&self.dir, self.generation);
        }
    }
}

fn append_sync(c: &mut Criterion) {
    let mut group = c.benchmark_group("node/append_sync");
    // Each iteration waits for a disk sync: few, flat samples.
    group.sample_size(20).sampling_mode(SamplingMode::Flat);
    for (name, record_len, per_batch) in [
        ("1MiB", 1 << 20, 1),
        ("16KiB", 16 << 10, 1),
        ("16KiBx64", 16 << 10, 64),
    ] {
        group.throughput(Throughput::Bytes((record_len * per_batch) as u64));
        let dir = tempfile::tempdir().expect("tempdir");
        let mut plain = PlainFile::new(dir.path(), record_len, per_batch);
        group.bench_function(
            BenchmarkId::new("baseline_write_all_sync_data", name),
            |b| b.iter(|| plain.append()),
        );
        for (engine_name, engine) in [
            ("uring", IoEngineKind::Uring),
            ("pwrite", IoEngineKind::Pwrite),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut appender = Appender::new(dir.path(), engine, record_len, per_batch);
            group.bench_function(BenchmarkId::new(engine_name, name), |b| {
                b.iter(|| appender.append())
            });
        }
    }
    group.finish();
}

fn append_sync_8_nodes(c: &mut Criterion) {
    let mut group = c.benchmark_group("node/append_sync_8_nodes");
    group.sample_size(20).sampling_mode(SamplingMode::Flat);
    for (name, record_len) in [("1MiB", 1 << 20), ("16KiB", 16 << 10)] {
        group.throughput(Throughput::Bytes((record_len * NODE_COUNT) as u64));
        let dirs: Vec<_> = (0..NODE_COUNT)
            .map(|_| tempfile::tempdir().expect("tempdir"))
            .collect();
        let mut plains: Vec<PlainFile> = dirs
            .iter()
            .map(|d| PlainFile::new(d.path(), record_len, 1))
            .collect();
        group.bench_function(
            BenchmarkId::new("baseline_write_all_sync_data", name),
            |b| b.iter(|| plains.iter_mut().for_each(PlainFile::append)),
        );
        group.bench_function(BenchmarkId::new("baseline_on_8_threads", name), |b| {
            b.iter(|| {
                std::thread::scope(|scope| {
                    for plain in plains.iter_mut() {
                        scope.spawn(move || plain.append());
                    }
                })
            })
        });
        for (engine_name, engine) in [
            ("uring", IoEngineKind::Uring),
            ("pwrite", IoEngineKind::Pwrite),
        ] {
            let dirs: Vec<_> = (0..NODE_COUNT)
                .map(|_| tempfile::tempdir().expect("tempdir"))
                .collect();
            let mut appenders: Vec<Appender> = dirs
                .iter()
                .map(|d| Appender::new(d.path(), engine, record_len, 1))
                .collect();
            group.bench_function(BenchmarkId::new(engine_name, name), |b| {
                b.iter(|| {
                    let headers: Vec<Vec<ColumnHeader>> =
                        appenders.iter().map(Appender::headers).collect();
                    let records: Vec<Vec<RecordRef<'_>>> = headers
                        .iter()
                        .zip(&appenders)
                        .map(|(headers, a)| {
                            headers
                                .iter()
                                .map(|header| RecordRef {
                                    header,
                                    payload: &a.payload,
                                })
                                .collect()
                        })
                        .collect();
                    let batches: Vec<(&dyn Node, u64, &[RecordRef<'_>])> = appenders
                        .iter()
                        .zip(&records)
                        .map(|(a, records)| (&a.node as &dyn Node, a.generation, &records[..]))
                        .collect();
                    for result in append_all(&batches) {
                        black_box(result.expect("append"));
                    }
                    drop(batches);
                    drop(records);
                    appenders.iter_mut().for_each(Appender::rotate);
                })
            });
        }
    }
    group.finish();
}

fn read(c: &mut Criterion) {
    const RECORDS: usize = 16;
    const RECORD_LEN: usize = 1 << 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let node = LocalNode::open("bench", dir.path(), &LocalOptions::default()).expect("open");
    let payloads: Vec<Vec<u8>> = (0..RECORDS).map(|i| payload(RECORD_LEN + i)).collect();
    let headers: Vec<ColumnHeader> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| header(i as u64, 0, p))
        .collect();
    let records: Vec<RecordRef<'_>> = headers
        .iter()
        .zip(&payloads)
        .map(|(header, payload)| RecordRef { header, payload })
        .collect();
    let locations: Vec<RecordLocation> = node.append(0, &records).expect("append");
    // The same bytes in ordinary heap memory, for the baseline.
    let memory: Vec<Vec<u8>> = payloads.iter().map(|p| p.to_vec()).collect();

    let mut group = c.benchmark_group("node/read");
    for (name, len) in [("4KiB", 4096usize), ("1MiB", RECORD_LEN)] {
        // Ranges spread over all records (16 MiB), checksums known up front
        // as the index would know them.
        let ranges: Vec<(usize, RecordLocation, u32)> = (0..256)
            .map(|i| {
                let record = i % RECORDS;
                let start = (i * 7919 * 64) % (RECORD_LEN - len + 1);
                let location = RecordLocation {
                    generation: 0,
                    offset: locations[record].offset + start as u64,
                    len: len as u32,
                };
                let checksum = crc32fast::hash(&payloads[record][start..start + len]);
                (start, location, checksum)
            })
            .collect();
        for (_, location, checksum) in &ranges {
            node.read_checked(0, location.offset, location.len, *checksum)
                .expect("warm the cache");
        }
        group.throughput(Throughput::Bytes(len as u64));
        let mut turn = 0usize;
        group.bench_function(BenchmarkId::new("baseline_memory_crc", name), |b| {
            b.iter(|| {
                turn = (turn + 1) % ranges.len();
                let (start, _, checksum) = ranges[turn];
                let bytes = &memory[turn % RECORDS][start..start + len];
                assert_eq!(crc32fast::hash(black_box(bytes)), checksum);
            })
        });
        group.bench_function(BenchmarkId::new("read_checked", name), |b| {
            b.iter(|| {
                turn = (turn + 1) % ranges.len();
                let (_, location, checksum) = ranges[turn];
                black_box(
                    node.read_checked(0, location.offset, location.len, checksum)
                        .expect("read"),
                )
            })
        });
        group.bench_function(BenchmarkId::new("read_unchecked", name), |b| {
            b.iter(|| {
                turn = (turn + 1) % ranges.len();
                let (_, location, _) = ranges[turn];
                black_box(node.read(0, location.offset, location.len).expect("read"))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, append_sync, append_sync_8_nodes, read);
criterion_main!(benches);
