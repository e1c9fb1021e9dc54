//! Remote-site benchmarks on a real S3 server (SeaweedFS on loopback,
//! started here through `geoshard::testing::s3`), against the design a user would
//! otherwise build, in one run on the same server:
//!
//! - geoshard: RS(4,2) over 3 sites x 2 nodes, each node a prefix in its
//!   site's bucket (1.5x the bytes), group commit every 2 ms;
//! - replication: `object_store` directly, each put writing the whole value
//!   to all 3 buckets concurrently and waiting for all 3 (3x the bytes), each
//!   get reading one bucket.
//!
//! Throughput is user data. Concurrent callers are real: N OS threads each
//! putting or getting distinct keys, geoshard through `Store`, replication
//! through `runtime.block_on` on a shared multi-thread tokio runtime.
//! `GEOSHARD_BENCH_REMOTE_OPS` sets the operations per iteration (default
//! 16; at least one per caller, 4x for gets).

mod common;

use geoshard::testing::s3;

use common::value;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, SamplingMode, Throughput};
use geoshard::layout::{Layout, Remote, Secret};
use geoshard::{Options, Store};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use tokio::runtime::Runtime;

const SITES: [&str; 3] = ["a", "b", "c"];
const BUCKETS: [&str; 3] = ["geoshard-a", "geoshard-b", "geoshard-c"];
const CALLERS: [usize; 2] = [1, 32];
const GET_KEYS: usize = 512;
const GET_LEN: usize = 4 << 10;

fn batch_ops() -> usize {
    std::env::var("GEOSHARD_BENCH_REMOTE_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16)
}

/// A prefix no earlier run uses.
fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{name}-{}-{nanos}", std::process::id())
}

fn remote(server: &s3::S3Server) -> Remote {
    Remote {
        endpoint: Some(server.endpoint.clone()),
        region: Some(server.region.clone()),
        allow_http: true,
        access_key_id: Some(Secret::Value(server.access_key_id.clone())),
        secret_access_key: Some(Secret::Value(server.secret_access_key.clone())),
        ..Remote::default()
    }
}

/// RS(4,2) over sites a, b, c x 2 nodes, node `{site}{n}` at
/// `s3://geoshard-{site}/{run}/{site}{n}`.
fn layout(server: &s3::S3Server, run: &str) -> Layout {
    let remote = remote(server);
    let mut b = Layout::builder().code(4, 2);
    for site in SITES {
        let nodes: Vec<(String, String)> = (1..=2)
            .map(|n| {
                let name = format!("{site}{n}");
                let url = format!("s3://geoshard-{site}/{run}/{name}");
                (name, url)
            })
            .collect();
        b = b.site(site, |mut s| {
            s = s.remote(remote.clone());
            for (name, url) in nodes {
                s = s.node(name, url);
            }
            s
        });
    }
    b.build().expect("bench layout")
}

/// The systems under test, behind one interface.
trait System: Sync {
    fn put(&self, key: &str, value: Bytes);
    fn get(&self, key: &str) -> usize;
}

impl System for Store {
    fn put(&self, key: &str, value: Bytes) {
        Store::put(self, key.as_bytes(), value).expect("put");
    }
    fn get(&self, key: &str) -> usize {
        Store::get(self, key.as_bytes())
            .expect("get")
            .expect("present")
            .len()
    }
}

/// 3-way replication with `object_store` directly, one bucket per site.
struct Replicated {
    runtime: Runtime,
    buckets: Vec<AmazonS3>,
    run: String,
    next_get: AtomicU64,
}

impl Replicated {
    fn new(server: &s3::S3Server, run: &str) -> Replicated {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let buckets = BUCKETS
            .iter()
            .map(|bucket| {
                AmazonS3Builder::new()
                    .with_endpoint(&server.endpoint)
                    .with_allow_http(true)
                    .with_region(&server.region)
                    .with_access_key_id(&server.access_key_id)
                    .with_secret_access_key(&server.secret_access_key)
                    .with_bucket_name(*bucket)
                    .build()
                    .expect("s3 client")
            })
            .collect();
        Replicated {
            runtime,
            buckets,
            run: format!("{run}/replication"),
            next_get: AtomicU64::new(0),
        }
    }

    fn path(&self, key: &str) -> ObjectPath {
        ObjectPath::from(format!("{}/{key}", self.run))
    }
}

impl System for Replicated {
    fn put(&self, key: &str, value: Bytes) {
        let path = self.path(key);
        self.runtime.block_on(async {
            let puts = self
                .buckets
                .iter()
                .map(|b| b.put(&path, PutPayload::from(value.clone())));
            for result in futures_util::future::join_all(puts).await {
                result.expect("replica put");
            }
        });
    }
    fn get(&self, key: &str) -> usize {
        let path = self.path(key);
        let i = self.next_get.fetch_add(1, Ordering::Relaxed) as usize % self.buckets.len();
        self.runtime.block_on(async {
            let got = self.buckets[i].get(&path).await.expect("replica get");
            got.bytes().await.expect("replica body").len()
        })
    }
}

/// `ops` puts of distinct keys spread over `callers` threads; wall time.
fn put_batch(
    s: &dyn System,
    callers: usize,
    ops: usize,
    value: &Bytes,
    tag: &str,
    seq: &AtomicU64,
) -> Duration {
    let first = seq.fetch_add(ops as u64, Ordering::Relaxed) as usize;
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..callers {
            scope.spawn(move || {
                for i in (t..ops).step_by(callers) {
                    s.put(&format!("{tag}/{}", first + i), value.clone());
                }
            });
        }
    });
    start.elapsed()
}

/// `ops` gets of pre-written keys spread over `callers` threads; wall time.
fn get_batch(s: &dyn System, callers: usize, ops: usize, seq: &AtomicU64) -> Duration {
    let first = seq.fetch_add(ops as u64, Ordering::Relaxed) as usize;
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..callers {
            scope.spawn(move || {
                for i in (t..ops).step_by(callers) {
                    let len = s.get(&format!("get/{}", (first + i) % GET_KEYS));
                    assert_eq!(len, GET_LEN);
                }
            });
        }
    });
    start.elapsed()
}

fn iterate(iters: u64, mut batch: impl FnMut() -> Duration) -> Duration {
    (0..iters).map(|_| batch()).sum()
}

fn bench_puts(c: &mut Criterion, named: &[(&str, &dyn System)]) {
    let seq = AtomicU64::new(0);
    for (len, tag) in [(64usize << 10, "64KiB"), (1 << 20, "1MiB")] {
        let v = value(len, len as u64);
        for callers in CALLERS {
            let ops = batch_ops().max(callers).div_ceil(callers) * callers;
            let mut g = c.benchmark_group(format!("remote_put/{tag}/callers_{callers}"));
            g.throughput(Throughput::Bytes((ops * len) as u64))
                .sampling_mode(SamplingMode::Flat)
                .sample_size(10);
            for &(name, s) in named {
                let key = format!("put{tag}");
                g.bench_function(name, |b| {
                    b.iter_custom(|iters| {
                        iterate(iters, || put_batch(s, callers, ops, &v, &key, &seq))
                    })
                });
            }
            g.finish();
        }
    }
}

fn bench_gets(c: &mut Criterion, named: &[(&str, &dyn System)]) {
    let v = value(GET_LEN, 4);
    let seq = AtomicU64::new(0);
    for &(_, s) in named {
        std::thread::scope(|scope| {
            for t in 0..32 {
                let v = &v;
                scope.spawn(move || {
                    for i in (t..GET_KEYS).step_by(32) {
                        s.put(&format!("get/{i}"), v.clone());
                    }
                });
            }
        });
    }
    for callers in CALLERS {
        let ops = 4 * batch_ops().max(callers).div_ceil(callers) * callers;
        let mut g = c.benchmark_group(format!("remote_get_4KiB/callers_{callers}"));
        g.throughput(Throughput::Bytes((ops * GET_LEN) as u64))
            .sampling_mode(SamplingMode::Flat)
            .sample_size(10);
        for &(name, s) in named {
            g.bench_function(name, |b| {
                b.iter_custom(|iters| iterate(iters, || get_batch(s, callers, ops, &seq)))
            });
        }
        g.finish();
    }
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    let server = s3::S3Server::start(&BUCKETS);
    let run = unique("bench");
    let store = Store::create(
        layout(&server, &run),
        Options {
            commit_interval: Duration::from_millis(2),
            ..Options::default()
        },
    )
    .expect("open remote store");
    let replicated = Replicated::new(&server, &run);
    {
        let named: [(&str, &dyn System); 2] =
            [("geoshard", &store), ("replication_3x", &replicated)];
        bench_puts(&mut c, &named);
        bench_gets(&mut c, &named);
    }
    store.close().expect("close");
    drop(server);
    c.final_summary();
}
