//! Repair and scrub throughput.
//!
//! `repair/site` rebuilds a burned site (3 of 9 nodes) of a store holding
//! `GEOSHARD_BENCH_REPAIR_MIB` MiB of user data (default 512: 1 MiB photos
//! and chat messages). Its baseline, measured in the same run, moves the
//! same bytes with plain file I/O: read every segment of 6 surviving nodes
//! (what repair reads) and write+sync the bytes repair writes into 3 files.
//! The target: repair at least 0.7x the baseline's speed.
//! `scrub/full` reads and checks every column.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::layout;
use criterion::{Criterion, Throughput};
use geoshard::layout::{Layout, Location, SiteId};
use geoshard::{Options, RepairOptions, ScrubOptions, Store};

fn site_dirs(layout: &Layout, site: SiteId) -> Vec<PathBuf> {
    layout.sites()[site.index()]
        .nodes
        .iter()
        .filter_map(|id| match &layout.node(*id).location {
            Location::Dir(p) => Some(p.clone()),
            Location::Url(_) => None,
        })
        .collect()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "segment"))
                .collect()
        })
        .unwrap_or_default()
}

fn fill(store: &Store, mib: usize) -> u64 {
    let photos = mib * 7 / 8;
    let messages = (mib - photos) * 1024;
    let mut x = 0x1234_5678_9abc_def1u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let photo: Vec<u8> = (0..1 << 20).map(|_| next() as u8).collect();
    let message: Vec<u8> = (0..1024).map(|_| next() as u8).collect();
    std::thread::scope(|s| {
        for t in 0..16 {
            let (photo, message) = (&photo, &message);
            s.spawn(move || {
                for i in (t..photos).step_by(16) {
                    store
                        .put(format!("photo/{i}").as_bytes(), photo.clone())
                        .expect("put");
                }
                for i in (t..messages).step_by(16) {
                    store
                        .put(format!("msg/{i}").as_bytes(), message.clone())
                        .expect("put");
                }
            });
        }
    });
    store.flush().expect("flush");
    (photos << 20) as u64 + (messages * 1024) as u64
}

/// Plain-I/O time to read `read_from` completely and write `write_bytes`
/// (synced) split over `write_dirs`.
fn baseline(read_from: &[PathBuf], write_bytes: u64, write_dirs: &[PathBuf]) -> Duration {
    let started = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    for path in read_from {
        let mut f = std::fs::File::open(path).expect("open");
        while f.read(&mut buf).expect("read") > 0 {}
    }
    let per_dir = write_bytes / write_dirs.len() as u64;
    std::thread::scope(|s| {
        for dir in write_dirs {
            let buf = &buf;
            s.spawn(move || {
                std::fs::create_dir_all(dir).expect("mkdir");
                let mut f = std::fs::File::create(dir.join("baseline")).expect("create");
                let mut left = per_dir;
                while left > 0 {
                    let n = left.min(buf.len() as u64) as usize;
                    f.write_all(&buf[..n]).expect("write");
                    left -= n as u64;
                }
                f.sync_data().expect("sync");
            });
        }
    });
    let elapsed = started.elapsed();
    for dir in write_dirs {
        let _ = std::fs::remove_file(dir.join("baseline"));
    }
    elapsed
}

fn main() {
    let mib: usize = std::env::var("GEOSHARD_BENCH_REPAIR_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = layout(dir.path());
    let user_bytes = {
        let store = Store::create(layout.clone(), Options::default()).expect("store");
        fill(&store, mib)
    };
    let burned = site_dirs(&layout, SiteId(1));
    let survivors: Vec<PathBuf> = [SiteId(0), SiteId(2)]
        .iter()
        .flat_map(|s| site_dirs(&layout, *s))
        .flat_map(|d| files(&d))
        .collect();

    // One measured repair first, for the bytes it moves and the ratio.
    for d in &burned {
        std::fs::remove_dir_all(d).expect("burn");
    }
    let store = Store::open(layout.clone(), Options::default()).expect("reopen");
    let report = store.repair(&RepairOptions::default()).expect("repair");
    drop(store);
    let base = baseline(&survivors, report.bytes_written, &burned);
    let moved = report.bytes_read + report.bytes_written;
    println!(
        "repair of one site ({mib} MiB of user data): {:.2} s, read {} MiB + wrote {} MiB = {:.0} MiB/s; \
         plain read+write of the same bytes {:.2} s ({:.0} MiB/s); ratio {:.2}",
        report.elapsed.as_secs_f64(),
        report.bytes_read >> 20,
        report.bytes_written >> 20,
        moved as f64 / report.elapsed.as_secs_f64() / 1048576.0,
        base.as_secs_f64(),
        moved as f64 / base.as_secs_f64() / 1048576.0,
        base.as_secs_f64() / report.elapsed.as_secs_f64(),
    );

    let mut g = c.benchmark_group("repair");
    g.throughput(Throughput::Bytes(report.bytes_written));
    g.bench_function("site", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                for d in &burned {
                    std::fs::remove_dir_all(d).expect("burn");
                }
                let store = Store::open(layout.clone(), Options::default()).expect("reopen");
                let started = Instant::now();
                store.repair(&RepairOptions::default()).expect("repair");
                total += started.elapsed();
            }
            total
        })
    });
    g.bench_function("baseline_plain_read_write", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| baseline(&survivors, report.bytes_written, &burned))
                .sum()
        })
    });
    g.finish();

    let store = Store::open(layout, Options::default()).expect("open");
    let mut g = c.benchmark_group("scrub");
    let stored: u64 = store.health().nodes.iter().map(|n| n.bytes).sum();
    g.throughput(Throughput::Bytes(stored));
    g.bench_function("full", |b| {
        b.iter(|| {
            let r = store.scrub(&ScrubOptions::default()).expect("scrub");
            assert!(r.is_clean());
        })
    });
    g.finish();
    println!("user bytes {user_bytes}, stored column bytes {stored}");
    c.final_summary();
}
