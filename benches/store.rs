//! Store benchmarks against the designs a user would otherwise build, all
//! on the same local node directories and the same machine in one run:
//!
//! - geoshard: RS(6,3) over 3 sites x 3 nodes, packed stripes, group commit;
//! - replication: the same pipelined group commit, each commit's values appended
//!   whole to one node in each of 3 sites (3x the bytes);
//! - naive RS: each blob coded alone into 6+3 records, one per node, each
//!   synced (no packing, no group commit).
//!
//! Besides criterion's throughput lines it prints put latency percentiles
//! (64 threads), open time for a store of many small blobs (healthy and
//! with a site gone), index memory per blob, 1 MiB async puts of geoshard
//! and replication in alternating rounds (fair to both whatever state the
//! page cache is in), and put latency against commit latency.
//! `GEOSHARD_BENCH_OPEN_BLOBS` sets the open benchmark's size (default
//! 1,000,000). `GEOSHARD_BENCH_SECTIONS` (comma-separated, from `puts`,
//! `gets`, `degraded`, `open`, `open_large`, `rounds`, `latency`) runs only
//! those sections; unset, all run. `open_scale` (the open of 10^8 blobs
//! with the page cache dropped, or of `GEOSHARD_BENCH_SCALE_BLOBS`, in
//! `GEOSHARD_BENCH_SCALE_DIR`) runs only when named: it writes tens of GB.

mod common;

use common::value;

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::layout;
use criterion::{BenchmarkId, Criterion, Throughput};
use geoshard::codec::Codec;
use geoshard::format::{ColumnHeader, CommitStamp};
use geoshard::layout::{Layout, Location, SiteId};
use geoshard::node::{LocalNode, LocalOptions, Node, RecordRef};
use geoshard::{Options, Store};

/// Counts live heap bytes, for the index-memory figure.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: AllocLayout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: AllocLayout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const THREADS_SMALL: usize = 64;
const THREADS_LARGE: usize = 8;
/// Puts in flight through the async interfaces: 1 KiB values, 1 MiB ones.
const IN_FLIGHT: usize = 4096;
const IN_FLIGHT_LARGE: usize = 64;

/// The systems under test, behind one interface.
trait System2: Sync {
    fn put(&self, key: &[u8], value: Bytes);
    fn get(&self, key: &[u8]) -> Bytes;
}

impl System2 for Store {
    fn put(&self, key: &[u8], value: Bytes) {
        Store::put(self, key, value).expect("put");
    }
    fn get(&self, key: &[u8]) -> Bytes {
        Store::get(self, key)
            .expect("get")
            .expect("present")
            .into_bytes()
    }
}

// ---- baseline (a): 3-way replication with the same pipelined group commit ----

/// A queued put: key, value, and where to acknowledge it.
type RepRequest = (Vec<u8>, Bytes, RepAck);

/// How a replicated put is acknowledged: to a blocked thread, or to a
/// future (the async interface, as geoshard's `Completion`).
enum RepAck {
    Blocking(SyncSender<()>),
    Async(Arc<AsyncAck>),
}

impl RepAck {
    fn send(self) {
        match self {
            RepAck::Blocking(tx) => {
                let _ = tx.send(());
            }
            RepAck::Async(ack) => {
                ack.done.store(true, Ordering::Release);
                let waker = ack.waker.lock().expect("waker").take();
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
        }
    }
}

/// The answer slot of an async replicated put.
#[derive(Default)]
struct AsyncAck {
    done: AtomicBool,
    waker: std::sync::Mutex<Option<Waker>>,
}

/// A replicated put through the async interface: ready once acknowledged.
struct RepCompletion(Arc<AsyncAck>);

impl Future for RepCompletion {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.done.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        *self.0.waker.lock().expect("waker") = Some(cx.waker().clone());
        if self.0.done.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Replicated {
    fn put_async(&self, key: &[u8], value: Bytes) -> RepCompletion {
        let ack = Arc::new(AsyncAck::default());
        self.tx
            .as_ref()
            .expect("open")
            .send(RepMsg::Put((
                key.to_vec(),
                value,
                RepAck::Async(Arc::clone(&ack)),
            )))
            .expect("send");
        RepCompletion(ack)
    }
}

struct Replicated {
    tx: Option<Sender<RepMsg>>,
    index: Arc<RepIndex>,
    nodes: Arc<Vec<LocalNode>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Replicated {
    fn open(root: &Path, options: &Options) -> Replicated {
        let nodes: Arc<Vec<LocalNode>> = Arc::new(
            (0..3)
                .map(|s| {
                    LocalNode::open(
                        format!("r{s}"),
                        root.join(format!("rep{s}")),
                        &LocalOptions::default(),
                    )
                    .expect("replica node")
                })
                .collect(),
        );
        let index = Arc::new(RwLock::new(HashMap::new()));
        let (tx, rx) = mpsc::channel();
        let interval = options.commit_interval;
        let capacity = options.column_len_target * 6;
        let thread = {
            let (nodes, index, events) = (Arc::clone(&nodes), Arc::clone(&index), tx.clone());
            std::thread::spawn(move || replicate(rx, events, nodes, index, interval, capacity))
        };
        Replicated {
            tx: Some(tx),
            index,
            nodes,
            thread: Some(thread),
        }
    }
}

type RepIndex = RwLock<HashMap<Vec<u8>, (u64, u64, u32, u32)>>;

/// What the replication committer's queue carries.
enum RepMsg {
    Put(RepRequest),
    /// The writer finished a commit.
    Written,
    /// The store is dropped.
    Stop,
}

/// The same pipelined group commit as geoshard's: a commit is sealed at
/// once when nothing is being written; behind a commit being written, the
/// next gathers until it is durable, `interval` passed or it is full, and
/// is then handed to the writer (at most one waits there). The writer
/// appends to the three replicas, publishes, and acknowledges in order.
fn replicate(
    rx: Receiver<RepMsg>,
    events: Sender<RepMsg>,
    nodes: Arc<Vec<LocalNode>>,
    index: Arc<RepIndex>,
    interval: Duration,
    capacity: usize,
) {
    let (wtx, wrx) = mpsc::sync_channel::<Vec<RepRequest>>(1);
    let writer = std::thread::spawn(move || {
        let mut payload = Vec::new();
        let mut stripe_id = 1u64;
        while let Ok(batch) = wrx.recv() {
            write_replicated(&nodes, &index, &mut payload, stripe_id, batch);
            stripe_id += 1;
            if events.send(RepMsg::Written).is_err() {
                break;
            }
        }
    });
    let mut outstanding = 0usize;
    let mut gathering: Vec<RepRequest> = Vec::new();
    let mut weight = 0usize;
    let mut since = Instant::now();
    let mut stopping = false;
    loop {
        if stopping && gathering.is_empty() && outstanding == 0 {
            break;
        }
        let due = !gathering.is_empty()
            && outstanding < 2
            && (outstanding == 0 || stopping || weight >= capacity || since.elapsed() >= interval);
        if due {
            outstanding += 1;
            weight = 0;
            wtx.send(std::mem::take(&mut gathering)).expect("writer");
            continue;
        }
        let timeout = if gathering.is_empty() || outstanding >= 2 {
            Duration::from_secs(1)
        } else {
            interval.saturating_sub(since.elapsed())
        };
        match rx.recv_timeout(timeout) {
            Ok(RepMsg::Put(r)) => {
                if gathering.is_empty() {
                    since = Instant::now();
                }
                weight += r.1.len();
                gathering.push(r);
            }
            Ok(RepMsg::Written) => outstanding -= 1,
            Ok(RepMsg::Stop) => stopping = true,
            Err(_) => {}
        }
    }
    drop(wtx);
    let _ = writer.join();
}

/// One replicated commit: its values appended to every replica, then
/// published and acknowledged.
fn write_replicated(
    nodes: &[LocalNode],
    index: &RepIndex,
    payload: &mut Vec<u8>,
    stripe_id: u64,
    batch: Vec<RepRequest>,
) {
    let names: Vec<String> = (0..3).map(|s| format!("r{s}")).collect();
    payload.clear();
    let mut spans = Vec::with_capacity(batch.len());
    for (_, v, _) in &batch {
        spans.push((payload.len() as u64, v.len() as u32, crc32fast::hash(v)));
        payload.extend_from_slice(v);
    }
    let crc = crc32fast::hash(payload);
    let len = payload.len() as u32;
    let headers: Vec<ColumnHeader> = (0..3u16)
        .map(|c| ColumnHeader {
            stripe_id,
            generation: 1,
            data_count: 1,
            parity_count: 2,
            column_index: c,
            column_lens: vec![len; 3],
            column_checksums: vec![crc; 3],
            placement: names.clone(),
            entry_table_lens: vec![0],
            commit: CommitStamp::default(),
            handoffs: Vec::new(),
        })
        .collect();
    let locs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .zip(&headers)
            .map(|(node, header)| {
                let payload = &payload[..];
                s.spawn(move || {
                    node.append(1, &[RecordRef { header, payload }])
                        .expect("append")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("join"))
            .collect()
    });
    let base = locs[0][0];
    let mut ix = index.write().expect("index");
    for ((key, _, ack), (off, len, crc)) in batch.into_iter().zip(spans) {
        ix.insert(key, (base.generation, base.offset + off, len, crc));
        ack.send();
    }
}

impl System2 for Replicated {
    fn put(&self, key: &[u8], value: Bytes) {
        let (ack, rx) = mpsc::sync_channel(1);
        self.tx
            .as_ref()
            .expect("open")
            .send(RepMsg::Put((key.to_vec(), value, RepAck::Blocking(ack))))
            .expect("send");
        rx.recv().expect("ack");
    }
    fn get(&self, key: &[u8]) -> Bytes {
        let (generation, offset, len, crc) =
            *self.index.read().expect("index").get(key).expect("present");
        let bytes = self.nodes[0].read(generation, offset, len).expect("read");
        assert_eq!(crc32fast::hash(&bytes), crc);
        bytes
    }
}

impl Drop for Replicated {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(RepMsg::Stop);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---- baseline (b): naive per-blob Reed-Solomon ----

struct NaiveRs {
    codec: Codec,
    nodes: Vec<LocalNode>,
    next: AtomicUsize,
    index: RwLock<HashMap<Vec<u8>, NaiveLoc>>,
}

/// A naive-RS blob: its length and (generation, offset) of each column.
type NaiveLoc = (usize, Vec<(u64, u64)>);

impl NaiveRs {
    fn open(root: &Path) -> NaiveRs {
        NaiveRs {
            codec: Codec::new(6, 3).expect("codec"),
            nodes: (0..9)
                .map(|n| {
                    LocalNode::open(
                        format!("n{n}"),
                        root.join(format!("naive{n}")),
                        &LocalOptions::default(),
                    )
                    .expect("naive node")
                })
                .collect(),
            next: AtomicUsize::new(1),
            index: RwLock::new(HashMap::new()),
        }
    }
}

impl System2 for NaiveRs {
    fn put(&self, key: &[u8], value: Bytes) {
        let column_len = value.len().div_ceil(6).max(1);
        let mut columns: Vec<Vec<u8>> = (0..9).map(|_| vec![0u8; column_len]).collect();
        for (c, chunk) in value.chunks(column_len).enumerate() {
            columns[c][..chunk.len()].copy_from_slice(chunk);
        }
        {
            let (data, parity) = columns.split_at_mut(6);
            let d: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
            let mut p: Vec<&mut [u8]> = parity.iter_mut().map(Vec::as_mut_slice).collect();
            self.codec.encode(&d, &mut p).expect("encode");
        }
        let stripe_id = self.next.fetch_add(1, Ordering::Relaxed) as u64;
        let lens = vec![column_len as u32; 9];
        let crcs: Vec<u32> = columns.iter().map(|c| crc32fast::hash(c)).collect();
        let names: Vec<String> = (0..9).map(|n| format!("n{n}")).collect();
        let locs: Vec<(u64, u64)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..9)
                .map(|c| {
                    let header = ColumnHeader {
                        stripe_id,
                        generation: 1,
                        data_count: 6,
                        parity_count: 3,
                        column_index: c as u16,
                        column_lens: lens.clone(),
                        column_checksums: crcs.clone(),
                        placement: names.clone(),
                        entry_table_lens: vec![0; 6],
                        commit: CommitStamp::default(),
                        handoffs: Vec::new(),
                    };
                    let (node, payload) = (&self.nodes[c], &columns[c]);
                    s.spawn(move || {
                        let l = node
                            .append(
                                1,
                                &[RecordRef {
                                    header: &header,
                                    payload,
                                }],
                            )
                            .expect("append");
                        (l[0].generation, l[0].offset)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("join"))
                .collect()
        });
        self.index
            .write()
            .expect("index")
            .insert(key.to_vec(), (value.len(), locs));
    }
    fn get(&self, key: &[u8]) -> Bytes {
        let (len, locs) = self
            .index
            .read()
            .expect("index")
            .get(key)
            .cloned()
            .expect("present");
        let column_len = len.div_ceil(6).max(1);
        let mut out = Vec::with_capacity(len);
        for (c, (generation, offset)) in locs.iter().take(6).enumerate() {
            let want = (len - (c * column_len).min(len)).min(column_len);
            let bytes = self.nodes[c]
                .read(*generation, *offset, want as u32)
                .expect("read");
            out.extend_from_slice(&bytes);
        }
        out.into()
    }
}

// ---- drivers ----

/// Puts `count` values of `len` bytes from `threads` threads; returns the
/// elapsed time and every put's latency.
fn put_many(
    sys: &dyn System2,
    threads: usize,
    count: usize,
    len: usize,
    tag: &str,
) -> (Duration, Vec<Duration>) {
    let per_thread = count.div_ceil(threads);
    let payloads: Vec<Bytes> = (0..threads).map(|t| value(len, t as u64)).collect();
    let started = Instant::now();
    let latencies: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let v = payloads[t].clone();
                s.spawn(move || {
                    let mut lat = Vec::with_capacity(per_thread);
                    for i in 0..per_thread {
                        let key = format!("{tag}/{t}/{i}");
                        let t0 = Instant::now();
                        sys.put(key.as_bytes(), v.clone());
                        lat.push(t0.elapsed());
                    }
                    lat
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("join"))
            .collect()
    });
    (started.elapsed(), latencies)
}

/// A put through an async interface, as a boxed future.
type AsyncPut<'a> = dyn Fn(&[u8], Bytes) -> Pin<Box<dyn Future<Output = ()> + Send>> + 'a;

/// geoshard's `put_async` as the benchmark's driver takes it.
fn geoshard_async_put(store: &Store) -> Box<AsyncPut<'_>> {
    Box::new(|key: &[u8], value: Bytes| {
        let put = store.put_async(key, value);
        Box::pin(async move { put.await.expect("put") }) as Pin<Box<dyn Future<Output = ()> + Send>>
    })
}

/// The async puts of each system under test.
fn async_puts<'a>(
    geoshard: &'a Store,
    replicated: &'a Replicated,
) -> [(&'static str, Box<AsyncPut<'a>>); 2] {
    [
        ("geoshard", geoshard_async_put(geoshard)),
        (
            "replication_3x",
            Box::new(move |key: &[u8], value: Bytes| {
                Box::pin(replicated.put_async(key, value))
                    as Pin<Box<dyn Future<Output = ()> + Send>>
            }),
        ),
    ]
}

/// Puts `count` values of `len` bytes through `put` from this thread,
/// keeping `in_flight` of them waiting; returns the elapsed time and every
/// put's latency (submission to answer).
fn put_async_many(
    put: &AsyncPut<'_>,
    in_flight: usize,
    count: usize,
    len: usize,
    tag: &str,
) -> (Duration, Vec<Duration>) {
    let payload = value(len, 1);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    type Waiting = (Pin<Box<dyn Future<Output = ()> + Send>>, Instant);
    let mut window: Vec<Option<Waiting>> = Vec::with_capacity(in_flight);
    let mut latencies = Vec::with_capacity(count);
    let mut submitted = 0usize;
    let submit = |submitted: &mut usize| {
        let key = format!("{tag}/{submitted}");
        *submitted += 1;
        (put(key.as_bytes(), payload.clone()), Instant::now())
    };
    let started = Instant::now();
    while submitted < count.min(in_flight) {
        window.push(Some(submit(&mut submitted)));
    }
    while latencies.len() < count {
        let mut progressed = false;
        for slot in window.iter_mut() {
            let Some((future, at)) = slot else { continue };
            if future.as_mut().poll(&mut cx).is_ready() {
                latencies.push(at.elapsed());
                progressed = true;
                *slot = (submitted < count).then(|| submit(&mut submitted));
            }
        }
        if !progressed {
            std::thread::park_timeout(Duration::from_millis(1));
        }
    }
    (started.elapsed(), latencies)
}

/// Wakes the benchmark's thread.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// One line of a latency report: rate, p50 and p99 of `latencies`.
fn print_latency(name: &str, elapsed: Duration, mut latencies: Vec<Duration>) {
    latencies.sort_unstable();
    println!(
        "  {name:15} {:8.0} puts/s  p50 {:6.2} ms  p99 {:6.2} ms",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}

struct Systems {
    _dir: tempfile::TempDir,
    geoshard: Store,
    replicated: Replicated,
    naive: NaiveRs,
}

fn systems() -> Systems {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = Options::default();
    Systems {
        geoshard: Store::create(layout(&dir.path().join("geoshard")), options.clone())
            .expect("store"),
        replicated: Replicated::open(&dir.path().join("replicated"), &options),
        naive: NaiveRs::open(&dir.path().join("naive")),
        _dir: dir,
    }
}

fn bench_puts(c: &mut Criterion, sys: &Systems) {
    let mut g = c.benchmark_group("put_1KiB_64_threads");
    g.throughput(Throughput::Elements(1)).sample_size(10);
    let named: [(&str, &dyn System2); 3] = [
        ("geoshard", &sys.geoshard),
        ("replication_3x", &sys.replicated),
        ("naive_rs", &sys.naive),
    ];
    for (name, s) in named {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| put_many(s, THREADS_SMALL, iters as usize, 1024, "p1k").0)
        });
    }
    g.finish();

    let mut g = c.benchmark_group("put_1MiB_8_threads");
    g.throughput(Throughput::Bytes(1 << 20)).sample_size(10);
    for (name, s) in named {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| put_many(s, THREADS_LARGE, iters as usize, 1 << 20, "p1m").0)
        });
    }
    g.finish();

    // The async interfaces: one thread keeps IN_FLIGHT puts in flight.
    let puts = async_puts(&sys.geoshard, &sys.replicated);
    let mut g = c.benchmark_group(format!("put_1KiB_{IN_FLIGHT}_in_flight_async"));
    g.throughput(Throughput::Elements(1)).sample_size(10);
    for (name, put) in &puts {
        g.bench_function(*name, |b| {
            b.iter_custom(|iters| put_async_many(put, IN_FLIGHT, iters as usize, 1024, "a1k").0)
        });
    }
    g.finish();
    let mut g = c.benchmark_group(format!("put_1MiB_{IN_FLIGHT_LARGE}_in_flight_async"));
    g.throughput(Throughput::Bytes(1 << 20)).sample_size(10);
    for (name, put) in &puts {
        g.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                put_async_many(put, IN_FLIGHT_LARGE, iters as usize, 1 << 20, "a1m").0
            })
        });
    }
    g.finish();
    println!("put latency, 1 KiB values, {IN_FLIGHT} in flight (async, one thread), 65,536 puts:");
    for (name, put) in &puts {
        let (elapsed, lat) = put_async_many(put, IN_FLIGHT, 65_536, 1024, "alat");
        print_latency(name, elapsed, lat);
    }

    println!("put latency, 1 KiB values, {THREADS_SMALL} threads, 6,400 puts:");
    for (name, s) in named {
        let (elapsed, lat) = put_many(s, THREADS_SMALL, 6_400, 1024, "lat");
        print_latency(name, elapsed, lat);
    }
}

fn bench_gets(c: &mut Criterion, sys: &Systems) {
    const KEYS: usize = 10_000;
    for (len, tag) in [(1024usize, "1KiB"), (1 << 20, "1MiB")] {
        let count = if len == 1024 { KEYS } else { 64 };
        let named: [(&str, &dyn System2); 2] = [
            ("geoshard", &sys.geoshard),
            ("replication_3x", &sys.replicated),
        ];
        for (_, s) in named {
            put_many(s, THREADS_SMALL.min(count), count, len, &format!("g{tag}"));
        }
        let mut g = c.benchmark_group(format!("get_{tag}_1_thread"));
        g.throughput(if len == 1024 {
            Throughput::Elements(1)
        } else {
            Throughput::Bytes(len as u64)
        });
        for (name, s) in named {
            let per = count.div_ceil(THREADS_SMALL.min(count));
            let keys: Vec<String> = (0..count)
                .map(|i| format!("g{tag}/{}/{}", i / per, i % per))
                .collect();
            let mut i = 0;
            g.bench_function(BenchmarkId::new(name, "healthy"), |b| {
                b.iter(|| {
                    i = (i + 7919) % keys.len();
                    s.get(keys[i].as_bytes())
                })
            });
            if name == "geoshard" && len == 1024 {
                g.bench_function(BenchmarkId::new(name, "contains"), |b| {
                    b.iter(|| {
                        i = (i + 7919) % keys.len();
                        sys.geoshard.contains(keys[i].as_bytes()).expect("contains")
                    })
                });
            }
            if name == "geoshard" {
                // The async face of the same read: answered at the first
                // poll (healthy, local).
                let mut cx = Context::from_waker(Waker::noop());
                g.bench_function(BenchmarkId::new(name, "healthy_async"), |b| {
                    b.iter(|| {
                        i = (i + 7919) % keys.len();
                        let mut read = sys.geoshard.get_async(keys[i].as_bytes());
                        match Pin::new(&mut read).poll(&mut cx) {
                            Poll::Ready(got) => got.expect("get").expect("present"),
                            Poll::Pending => panic!("a healthy local get waited"),
                        }
                    })
                });
            }
        }
        g.finish();
        if len == 1024 {
            get_rounds_report(sys, &named, count);
        }
    }
}

/// Healthy 1 KiB gets of both systems in alternating rounds (the first
/// system alternating): criterion measures one after the other, and on
/// these VMs the second often finds the caches in another state. Prints
/// each system's median ns per get and the ratio.
fn get_rounds_report(sys: &Systems, named: &[(&str, &dyn System2); 2], count: usize) {
    const ROUNDS: usize = 8;
    const GETS: usize = 200_000;
    let per = count.div_ceil(THREADS_SMALL.min(count));
    let keys: Vec<String> = (0..count)
        .map(|i| format!("g1KiB/{}/{}", i / per, i % per))
        .collect();
    let mut ns: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut contains_ns = Vec::new();
    for round in 0..ROUNDS {
        for turn in 0..2 {
            let which = (round + turn) % 2;
            let s = named[which].1;
            let mut i = 0;
            let started = Instant::now();
            for _ in 0..GETS {
                i = (i + 7919) % keys.len();
                std::hint::black_box(s.get(keys[i].as_bytes()));
            }
            ns[which].push(started.elapsed().as_nanos() as f64 / GETS as f64);
        }
        let started = Instant::now();
        for n in 0..GETS {
            let key = &keys[(n * 7919) % keys.len()];
            std::hint::black_box(sys.geoshard.contains(key.as_bytes()).expect("contains"));
        }
        contains_ns.push(started.elapsed().as_nanos() as f64 / GETS as f64);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (g, r) = (median(&mut ns[0]), median(&mut ns[1]));
    let c = median(&mut contains_ns);
    println!(
        "get rounds (1 KiB, 1 thread, {ROUNDS} alternating rounds of {GETS}): {} {g:.0} ns, \
         {} {r:.0} ns: {:.2}x; geoshard contains {c:.0} ns ({:.2}x its get)",
        named[0].0,
        named[1].0,
        r / g,
        g / c
    );
}

fn bench_degraded_get(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = layout(dir.path());
    let count = 10_000;
    {
        let store = Store::create(layout.clone(), Options::default()).expect("store");
        put_many(&store, THREADS_SMALL, count, 1024, "d");
    }
    // The fire: one site's directories are gone when the store reopens.
    for id in &layout.sites()[1].nodes {
        if let Location::Dir(p) = &layout.node(*id).location {
            std::fs::remove_dir_all(p).expect("burn");
        }
    }
    let store = Store::open(layout, Options::default()).expect("reopen");
    let per = count / THREADS_SMALL + 1;
    let keys: Vec<String> = (0..count)
        .map(|i| format!("d/{}/{}", i / per, i % per))
        .filter(|k| store.contains(k.as_bytes()).unwrap_or(false))
        .collect();
    let mut g = c.benchmark_group("get_1KiB_1_thread");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function(BenchmarkId::new("geoshard", "site_gone"), |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            store
                .get(keys[i].as_bytes())
                .expect("get")
                .expect("present")
        })
    });
    g.finish();
    let stats = store.stats();
    println!(
        "degraded get: {} of {} gets rebuilt from other columns",
        stats.degraded_reads, stats.gets
    );
}

fn bench_open(c: &mut Criterion) {
    let blobs: usize = std::env::var("GEOSHARD_BENCH_OPEN_BLOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = layout(dir.path());
    let started = Instant::now();
    // No checkpoints while filling: the opens below choose their own.
    let no_checkpoints = Options {
        checkpoint_every: 0,
        ..Options::default()
    };
    {
        let store = Store::create(layout.clone(), no_checkpoints.clone()).expect("store");
        fill_chat_store(&store, 0, blobs);
    }
    println!(
        "open: wrote {blobs} blobs of 100 B in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let before = LIVE.load(Ordering::Relaxed);
    let full_scan = Options {
        checkpoints: false,
        ..no_checkpoints.clone()
    };
    let store = Store::open(layout.clone(), full_scan.clone()).expect("open");
    let after = LIVE.load(Ordering::Relaxed);
    let blobs = store.len();
    let stripes = store.health().stripes;
    let listing = Instant::now();
    let (first_keys, first_listing, slowest_put, puts_meanwhile) =
        first_listing_with_puts(&store, "listing");
    assert_eq!(first_keys.len(), 1000.min(blobs));
    let key_bytes: usize = store.keys_with_prefix(b"room-").map(|k| k.len()).sum();
    let listing = listing.elapsed();
    let listed = LIVE.load(Ordering::Relaxed);
    // The puts during the listing added keys of their own.
    let all_key_bytes: usize = store.keys_with_prefix(b"").map(|k| k.len()).sum();
    let all_keys = store.len();
    println!(
        "index memory: {blobs} blobs in {stripes} stripes ({:.1} blobs per stripe), \
         {:.1} B/blob beyond the key bytes (all store heap after open), \
         {:.1} B/blob once keys_with_prefix has built the key order; {}",
        blobs as f64 / stripes as f64,
        (after - before).saturating_sub(key_bytes) as f64 / blobs as f64,
        listed.saturating_sub(before + all_key_bytes) as f64 / all_keys as f64,
        proc_memory(),
    );
    println!(
        "key order: the first 1,000 keys after open in {:.2} s (sorting the index; \
         {puts_meanwhile} puts meanwhile, the slowest {:.1} ms), then every key in {:.2} s",
        first_listing.as_secs_f64(),
        slowest_put.as_secs_f64() * 1e3,
        (listing - first_listing).as_secs_f64()
    );
    // Point reads of random keys across the whole store (the index and
    // the segments far larger than the caches).
    let random_keys = random_chat_keys(100_000, blobs);
    let mut g = c.benchmark_group(format!("random_key_{blobs}_blobs_1_thread"));
    g.throughput(Throughput::Elements(1));
    for (name, contains) in [("get_100B", false), ("contains", true)] {
        let mut i = 0;
        g.bench_function(BenchmarkId::new("geoshard", name), |b| {
            b.iter(|| {
                i = (i + 1) % random_keys.len();
                let key = random_keys[i].as_bytes();
                if contains {
                    assert!(store.contains(key).expect("contains"));
                } else {
                    store.get(key).expect("get").expect("present");
                }
            })
        });
    }
    g.finish();
    drop(store);

    // Puts with checkpoints written in the background against puts
    // without, alternating rounds of fresh keys on this store.
    let tail = (blobs / 10).clamp(1, 1_000_000);
    // Twice the default policy's checkpoints (the default policy's are
    // measured after the opens, which they would otherwise change).
    checkpoint_put_rounds(&layout, &no_checkpoints, blobs, tail, tail / 2);
    // A checkpoint now, then the largest tail the default policy leaves
    // (Options::checkpoint_every writes, at most a tenth of the store).
    let store = Store::open(layout.clone(), no_checkpoints.clone()).expect("open");
    let written_before = store.stats().bytes_written;
    let heap_before = LIVE.load(Ordering::Relaxed);
    let taking = Instant::now();
    let report = store.checkpoint().expect("checkpoint");
    let took = taking.elapsed();
    let full_column_bytes = report.column_bytes;
    // A delta when the writes since the last full checkpoint (the put
    // rounds') are under a quarter of it: then the opens below read both.
    let (opened_delta, above_records) = (report.delta_of.is_some(), report.records);
    let heap_after = LIVE.load(Ordering::Relaxed);
    let first_tail = store.len();
    fill_chat_store(&store, 10 * blobs, tail);
    let heap_tail = LIVE.load(Ordering::Relaxed);
    println!(
        "after the checkpoint the index {} onto it ({} ms under the write lock): store heap \
         {:.1} MiB before it, {:.1} MiB after, {:.1} MiB once the {tail} puts after it were made \
         ({:.1} B per put)",
        if report.rebased {
            "moved"
        } else {
            "did NOT move"
        },
        report.rebase_locked_ms,
        heap_before as f64 / (1 << 20) as f64,
        heap_after as f64 / (1 << 20) as f64,
        heap_tail as f64 / (1 << 20) as f64,
        heap_tail.saturating_sub(heap_after) as f64 / tail as f64,
    );
    let tail_bytes = store.stats().bytes_written - written_before;
    let per_put = tail_bytes as f64 / tail as f64;
    println!(
        "checkpoint ({}) of {} blobs: {:.2} s ({} ms under the state lock), body {:.1} MiB, \
         {:.1} MiB of columns ({:.1} B per blob); the {tail} puts after it wrote {:.1} B of \
         columns each: one checkpoint every {} puts writes {:.2}x what they do (write \
         amplification {:.2})",
        if report.delta_of.is_some() {
            "a delta"
        } else {
            "full"
        },
        report.blobs,
        took.as_secs_f64(),
        report.locked_ms,
        report.body_bytes as f64 / (1 << 20) as f64,
        report.column_bytes as f64 / (1 << 20) as f64,
        report.column_bytes as f64 / report.blobs as f64,
        per_put,
        Options::default().checkpoint_every,
        report.column_bytes as f64 / (Options::default().checkpoint_every as f64 * per_put),
        1.0 + report.column_bytes as f64 / (Options::default().checkpoint_every as f64 * per_put),
    );
    drop(store);
    let opened = |layout: &Layout, options: &Options| {
        let before = LIVE.load(Ordering::Relaxed);
        let started = Instant::now();
        let store = Store::open(layout.clone(), options.clone()).expect("open");
        let elapsed = started.elapsed();
        let heap = LIVE.load(Ordering::Relaxed).saturating_sub(before);
        (store, elapsed, heap)
    };
    let (store, elapsed, heap) = opened(&layout, &no_checkpoints);
    let report = store.open_report();
    assert!(report.checkpoint.is_some(), "opened from the checkpoint");
    let at_open = store.len();
    assert_eq!(at_open, first_tail + tail);
    // The first listing builds the checkpoint's key order (outside the
    // state lock), puts going on meanwhile.
    let (first_keys, first_listing, slowest_put, puts_meanwhile) =
        first_listing_with_puts(&store, "listing-from-checkpoint");
    assert_eq!(first_keys.len(), 1000.min(blobs));
    // Every key's bytes but those of the puts made during the listing.
    let listed_bytes =
        |prefix: &[u8]| -> usize { store.keys_with_prefix(prefix).map(|k| k.len()).sum() };
    let key_bytes = listed_bytes(b"") - listed_bytes(b"listing-from-checkpoint/");
    // The checkpoint's records (keys included) stay in the mapped column
    // pieces, not on the heap: the tail's keys are the heap's only keys.
    assert_eq!(report.checkpoint_base.is_some(), opened_delta);
    if opened_delta {
        println!(
            "the checkpoint opened from is a delta of {above_records} records (every key \
             written since the full one under it) over that full one ({} of its blobs \
             still visible)",
            (at_open - tail).saturating_sub(above_records as usize)
        );
    }
    println!(
        "open from the checkpoint with a tail of {} stripes ({tail} blobs): {:.2} s, {at_open} blobs, \
         {:.1} B/blob of store heap in all (the checkpoint's keys and records are mapped, not \
         heap; {:.1} B/blob beyond every key's bytes); {}",
        report.tail_stripes,
        elapsed.as_secs_f64(),
        heap as f64 / at_open as f64,
        heap.saturating_sub(key_bytes) as f64 / at_open as f64,
        proc_memory()
    );
    println!(
        "key order after the open from the checkpoint: the first 1,000 keys in {:.2} s \
         (sorting the checkpoint's keys outside the lock; {puts_meanwhile} puts meanwhile, the \
         slowest {:.1} ms)",
        first_listing.as_secs_f64(),
        slowest_put.as_secs_f64() * 1e3,
    );
    // Random-key reads on the store opened from the checkpoint.
    let mut g = c.benchmark_group(format!("random_key_{blobs}_blobs_from_checkpoint"));
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function(BenchmarkId::new("geoshard", "get_100B"), |b| {
        b.iter(|| {
            i = (i + 1) % random_keys.len();
            store
                .get(random_keys[i].as_bytes())
                .expect("get")
                .expect("present")
        })
    });
    g.finish();
    drop(store);

    // Timed opens: each includes health() and 10^4 random gets; the store
    // is dropped (closed) after the clock stops, before the next open.
    let open_and_read = |layout: &Layout, options: &Options| {
        let store = Store::open(layout.clone(), options.clone()).expect("open");
        let health = store.health();
        for key in random_keys.iter().take(10_000) {
            store.get(key.as_bytes()).expect("get").expect("present");
        }
        (store, health)
    };
    let timed = |iters: u64, open: &dyn Fn() -> (Store, geoshard::Health)| {
        let mut elapsed = Duration::ZERO;
        for _ in 0..iters {
            let started = Instant::now();
            let opened = open();
            elapsed += started.elapsed();
            drop(opened);
        }
        elapsed
    };
    let mut g = c.benchmark_group(format!("open_{blobs}_blobs"));
    g.sample_size(10);
    g.bench_function("healthy_full_scan", |b| {
        b.iter_custom(|iters| timed(iters, &|| open_and_read(&layout, &full_scan)))
    });
    g.bench_function(format!("healthy_checkpoint_tail_{tail}"), |b| {
        b.iter_custom(|iters| timed(iters, &|| open_and_read(&layout, &no_checkpoints)))
    });
    let gone = dir.path().join("gone");
    // The store's nodes but site 2's, copied where the layout below
    // names them.
    let copy_gone = || {
        let _ = std::fs::remove_dir_all(&gone);
        for (i, spec) in layout.nodes().iter().enumerate() {
            if spec.site == SiteId(2) {
                continue;
            }
            if let Location::Dir(p) = &spec.location {
                copy_dir(p, &gone.join(format!("{i}")));
            }
        }
    };
    copy_gone();
    let mut b2 = Layout::builder().code(6, 3);
    for s in 0..3u16 {
        let dirs: Vec<(String, PathBuf)> = layout.sites()[usize::from(s)]
            .nodes
            .iter()
            .map(|id| {
                (
                    layout.node(*id).name.clone(),
                    gone.join(format!("{}", id.0)),
                )
            })
            .collect();
        b2 = b2.site(format!("site{s}"), |mut site| {
            for (name, dir) in &dirs {
                site = site.node(name, dir.as_path());
            }
            site
        });
    }
    let gone_layout = b2.build().expect("layout");
    g.bench_function("one_site_gone_full_scan", |b| {
        b.iter_custom(|iters| timed(iters, &|| open_and_read(&gone_layout, &full_scan)))
    });
    g.bench_function(format!("one_site_gone_checkpoint_tail_{tail}"), |b| {
        b.iter_custom(|iters| {
            timed(iters, &|| {
                let (store, health) = open_and_read(&gone_layout, &no_checkpoints);
                assert!(store.open_report().checkpoint.is_some());
                assert!(health.columns_missing > 0);
                (store, health)
            })
        })
    });
    g.finish();

    // When the checkpoint above was full: a delta over it (the tail is
    // less than a quarter of it), then another tail, and the same opens,
    // which read the full checkpoint and the delta together, as a
    // long-running store's do between two full ones. (When it was a delta
    // already, the opens above were these.)
    if opened_delta {
        println!("the opens above read a delta and its base");
    } else {
        let store = Store::open(layout.clone(), no_checkpoints.clone()).expect("open");
        let taking = Instant::now();
        let delta = store.checkpoint().expect("checkpoint");
        let took = taking.elapsed();
        assert!(delta.delta_of.is_some(), "a delta: {delta:?}");
        println!(
            "delta checkpoint over the full one: {} records of {} blobs in {:.2} s ({} ms under the \
             state lock), body {:.1} MiB, {:.1} MiB of columns: {:.2}x the full checkpoint's \
             columns, {:.1} B of columns per record it holds",
            delta.records,
            delta.blobs,
            took.as_secs_f64(),
            delta.locked_ms,
            delta.body_bytes as f64 / (1 << 20) as f64,
            delta.column_bytes as f64 / (1 << 20) as f64,
            delta.column_bytes as f64 / full_column_bytes as f64,
            delta.column_bytes as f64 / delta.records.max(1) as f64,
        );
        fill_chat_store(&store, 12 * blobs, tail);
        drop(store);
        copy_gone();
        let mut g = c.benchmark_group(format!("open_{blobs}_blobs_delta"));
        g.sample_size(10);
        let records = delta.records;
        g.bench_function(format!("healthy_delta_{records}_tail_{tail}"), |b| {
            b.iter_custom(|iters| {
                timed(iters, &|| {
                    let (store, health) = open_and_read(&layout, &no_checkpoints);
                    assert_eq!(store.open_report().checkpoint, Some(delta.generation));
                    (store, health)
                })
            })
        });
        g.bench_function(format!("one_site_gone_delta_{records}_tail_{tail}"), |b| {
            b.iter_custom(|iters| {
                timed(iters, &|| {
                    let (store, health) = open_and_read(&gone_layout, &no_checkpoints);
                    assert_eq!(store.open_report().checkpoint, Some(delta.generation));
                    assert!(health.columns_missing > 0);
                    (store, health)
                })
            })
        });
        g.finish();
    }

    // Puts with the default policy's checkpoints against none (keys past
    // every key written above). A checkpoint starts at a put once the
    // writes since the last one reach the policy's count; most are deltas,
    // and a full one comes once the keys written since the last full one
    // reach a quarter of the store (DURABILITY.md C8). Rounds of a quarter
    // of the store and one policy count more hold one such cycle or more,
    // as a long run does per as many puts: a full checkpoint and the
    // deltas between two.
    let every = Options::default().checkpoint_every as usize;
    let store_now = blobs + 5 * tail;
    checkpoint_put_rounds(
        &layout,
        &no_checkpoints,
        blobs + 4 * tail,
        (store_now / 4 + every).max(2 * every + 10_000),
        every,
    );
}

/// Writes back dirty pages and drops the page cache (root only): true
/// when it was dropped.
fn drop_page_cache() -> bool {
    let synced = std::process::Command::new("sync")
        .status()
        .is_ok_and(|s| s.success());
    synced && std::fs::write("/proc/sys/vm/drop_caches", b"3").is_ok()
}

/// Put throughput with and without background checkpoints
/// (`Options::checkpoint_every` at `every`, against 0): alternating
/// rounds of `count` fresh chat messages each on the store at `layout`
/// (message numbers from 2 x `blobs` on), medians printed, with the
/// checkpoints each round with them wrote. A checkpoint a round
/// started is finished inside it (the store is closed before the clock
/// stops).
fn checkpoint_put_rounds(
    layout: &Layout,
    no_checkpoints: &Options,
    blobs: usize,
    count: usize,
    every: usize,
) {
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut next = 2 * blobs;
    // Per round with checkpoints: (written, deltas, checkpoint column
    // bytes, commit column bytes), from `Store::stats` after the close
    // (which waits for a checkpoint running).
    let mut written: Vec<(u64, u64, u64, u64)> = Vec::new();
    let mut size = 0;
    for round in 0..4 {
        let with = round % 2 == 1;
        let options = if with {
            Options {
                checkpoint_every: every as u64,
                ..Options::default()
            }
        } else {
            no_checkpoints.clone()
        };
        let store = Store::open(layout.clone(), options).expect("open");
        if round == 0 {
            size = store.len();
        }
        let started = Instant::now();
        fill_chat_store(&store, next, count);
        // The checkpoint a round started is part of its cost.
        store.close().expect("close");
        rates[usize::from(with)].push(count as f64 / started.elapsed().as_secs_f64());
        if with {
            let stats = store.stats();
            assert_eq!(stats.checkpoint_failures, 0, "a checkpoint failed");
            written.push((
                stats.checkpoints,
                stats.checkpoint_deltas,
                stats.checkpoint_bytes,
                stats.bytes_written,
            ));
        }
        next += count;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[(v.len() - 1) / 2] + v[v.len() / 2]) / 2.0
    };
    let (without, with) = (median(&mut rates[0]), median(&mut rates[1]));
    let amplification: Vec<String> = written
        .iter()
        .map(|&(_, _, checkpoint, commits)| {
            format!(
                "{:.2}",
                (commits + checkpoint) as f64 / commits.max(1) as f64
            )
        })
        .collect();
    println!(
        "puts of 100 B, 4,096 in flight, {count} per round on the {size}-blob store: \
         {:.0}/s without checkpoints, {:.0}/s with one every {} puts ({:.2}x; checkpoints \
         written per round {:?} (of them deltas {:?}), column bytes of checkpoints {:?} \
         against commits' {:?}: write amplification {:?}); rounds {:?} / {:?}",
        without,
        with,
        every,
        with / without,
        written.iter().map(|w| w.0).collect::<Vec<_>>(),
        written.iter().map(|w| w.1).collect::<Vec<_>>(),
        written.iter().map(|w| w.2).collect::<Vec<_>>(),
        written.iter().map(|w| w.3).collect::<Vec<_>>(),
        amplification,
        rates[0].iter().map(|r| r.round()).collect::<Vec<_>>(),
        rates[1].iter().map(|r| r.round()).collect::<Vec<_>>(),
    );
}

/// Open of a store of few, large records: the segment scan at open reads
/// and checks every byte, so this is where the scan's own cost (its reads
/// and the memory it touches) shows, where the 100 B open above measures
/// the index.
fn bench_open_large(c: &mut Criterion) {
    let mib: usize = std::env::var("GEOSHARD_BENCH_OPEN_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = layout(dir.path());
    {
        let store = Store::create(layout.clone(), Options::default()).expect("store");
        put_many(&store, THREADS_LARGE, mib * 4, 256 << 10, "l");
    }
    let mut g = c.benchmark_group(format!("open_{mib}MiB_of_256KiB_blobs"));
    g.sample_size(10);
    g.throughput(Throughput::Bytes((mib as u64) << 20));
    g.bench_function("healthy", |b| {
        b.iter(|| Store::open(layout.clone(), Options::default()).expect("open"))
    });
    g.finish();
}

/// The key of message `n` of a chat store: 10,000 rooms, messages spread
/// over them round-robin (`room-<r>/msg-<n>`, 15 to 22 bytes).
fn chat_key(n: usize) -> String {
    format!("room-{}/msg-{n}", n % 10_000)
}

/// `count` keys of messages drawn at random (a fixed xorshift sequence)
/// from the first `blobs`.
fn random_chat_keys(count: usize, blobs: usize) -> Vec<String> {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    (0..count)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            chat_key((rng % blobs as u64) as usize)
        })
        .collect()
}

/// Puts `count` messages of 100 B under [`chat_key`]s, 4,096 in flight
/// from this thread (commits of thousands of blobs: stripes as full as a
/// busy service's).
fn fill_chat_store(store: &Store, first: usize, count: usize) {
    const IN_FLIGHT: usize = 4096;
    let payload = value(100, 7);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut window: Vec<geoshard::Completion<()>> = Vec::with_capacity(IN_FLIGHT);
    let mut submitted = 0;
    while submitted < count || !window.is_empty() {
        while submitted < count && window.len() < IN_FLIGHT {
            window.push(store.put_async(chat_key(first + submitted).as_bytes(), payload.clone()));
            submitted += 1;
        }
        let before = window.len();
        window.retain_mut(|put| match Pin::new(put).poll(&mut cx) {
            Poll::Ready(done) => {
                done.expect("put");
                false
            }
            Poll::Pending => true,
        });
        if window.len() == before {
            std::thread::park_timeout(Duration::from_millis(1));
        }
    }
}

/// The first 1,000 keys of `room-` listed while another thread puts
/// 100 B values under `{tag}/{n}`: the keys, the listing's time, the
/// slowest put's latency and the puts made meanwhile. The first listing
/// after an open builds the key order of every key.
fn first_listing_with_puts(store: &Store, tag: &str) -> (Vec<Vec<u8>>, Duration, Duration, usize) {
    let listing = Instant::now();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let putter = s.spawn(|| {
            let (mut slowest, mut count) = (Duration::ZERO, 0usize);
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                store
                    .put(format!("{tag}/{count}").as_bytes(), value(100, 3))
                    .expect("put");
                slowest = slowest.max(started.elapsed());
                count += 1;
            }
            (slowest, count)
        });
        let keys: Vec<Vec<u8>> = store.keys_with_prefix(b"room-").take(1000).collect();
        let elapsed = listing.elapsed();
        stop.store(true, Ordering::Relaxed);
        let (slowest, count) = putter.join().expect("putter");
        (keys, elapsed, slowest, count)
    })
}

/// Resident and anonymous memory of this process (from /proc/self/status).
fn proc_memory() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or_else(|| "?".to_string(), |kb| format!("{} MiB", kb / 1024))
    };
    format!(
        "process RSS {} (anonymous {}, file-backed {})",
        field("VmRSS:"),
        field("RssAnon:"),
        field("RssFile:")
    )
}

/// Gets of each timed open of `open_scale` timed one by one.
const FIRST_GETS_TIMED: usize = 300;

/// Open at scale (section `open_scale`, run only when named): a store of
/// `GEOSHARD_BENCH_SCALE_BLOBS` chat messages (default 10^8: 28 GB of
/// disk, check free space first; about 5 GB of heap once open), then a
/// checkpoint, then the most keys a delta over it holds under the
/// default policy (16 of `Options::checkpoint_every` puts, the deltas
/// one process writes over one full checkpoint, at most a quarter of the
/// store: DURABILITY.md C8; `GEOSHARD_BENCH_SCALE_DELTA` sets it, 0 for
/// none) and a delta checkpoint of them, then the largest tail the
/// default policy leaves (`Options::checkpoint_every` puts, at most a
/// tenth of the store), kept in `GEOSHARD_BENCH_SCALE_DIR` (required) and reused by the
/// next run while it holds a marker of the same count. Each open is timed
/// with `health()` and 10^4 random gets, as in the `open` section, but
/// printed instead of sampled by criterion (a full scan of 10^8 blobs
/// took 65-87 s here with the page cache dropped): from the checkpoint three times, a full scan
/// once, then both again with site 2's directories moved aside. An open
/// without them changes the other nodes' manifests: the marker is removed
/// first, so the next run writes the store again.
fn open_scale_report() {
    let blobs: usize = std::env::var("GEOSHARD_BENCH_SCALE_BLOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000_000);
    let dir = PathBuf::from(
        std::env::var("GEOSHARD_BENCH_SCALE_DIR")
            .expect("GEOSHARD_BENCH_SCALE_DIR: where the store of the open_scale section is kept"),
    );
    let tail = (blobs / 10).clamp(1, Options::default().checkpoint_every as usize);
    let delta: usize = std::env::var("GEOSHARD_BENCH_SCALE_DELTA")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| (16 * Options::default().checkpoint_every as usize).min(blobs / 4));
    let marker = dir.join(format!("filled-{blobs}-{delta}-{tail}"));
    let layout = layout(&dir);
    let no_checkpoints = Options {
        checkpoint_every: 0,
        ..Options::default()
    };
    let full_scan = Options {
        checkpoints: false,
        ..no_checkpoints.clone()
    };
    if !marker.exists() {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("remove the old store");
        }
        let store = Store::create(layout.clone(), no_checkpoints.clone()).expect("store");
        let started = Instant::now();
        fill_chat_store(&store, 0, blobs);
        let filled = started.elapsed();
        let report = store.checkpoint().expect("checkpoint");
        let checkpointed = started.elapsed();
        println!(
            "open_scale: wrote {blobs} blobs of 100 B in {:.0} s, a checkpoint of them in {:.1} s \
             ({} ms under the state lock, {:.0} MiB of columns)",
            filled.as_secs_f64(),
            (checkpointed - filled).as_secs_f64(),
            report.locked_ms,
            report.column_bytes as f64 / (1 << 20) as f64,
        );
        if delta > 0 {
            let started = Instant::now();
            fill_chat_store(&store, 20 * blobs, delta);
            let filled = started.elapsed();
            let report = store.checkpoint().expect("delta checkpoint");
            assert!(report.delta_of.is_some(), "a delta: {report:?}");
            println!(
                "open_scale: then {delta} more in {:.0} s, a delta checkpoint of them in {:.1} s \
                 ({} records, {} ms under the state lock, {:.0} MiB of columns)",
                filled.as_secs_f64(),
                (started.elapsed() - filled).as_secs_f64(),
                report.records,
                report.locked_ms,
                report.column_bytes as f64 / (1 << 20) as f64,
            );
        }
        let started = Instant::now();
        fill_chat_store(&store, 10 * blobs, tail);
        println!(
            "open_scale: then a tail of {tail} in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        drop(store);
        std::fs::write(&marker, b"").expect("marker");
    }
    // Keys are counted, not listed: a listing would build the key order.
    let digits = |n: usize| n.checked_ilog10().unwrap_or(0) as usize + 1;
    let key_len = |n: usize| "room-".len() + digits(n % 10_000) + "/msg-".len() + digits(n);
    let key_bytes: usize = (0..blobs)
        .chain(20 * blobs..20 * blobs + delta)
        .chain(10 * blobs..10 * blobs + tail)
        .map(key_len)
        .sum();
    let random_keys = random_chat_keys(10_000, blobs);
    let timed_open = |layout: &Layout, options: &Options, what: &str| {
        let before = LIVE.load(Ordering::Relaxed);
        let started = Instant::now();
        let store = Store::open(layout.clone(), options.clone()).expect("open");
        let opened = started.elapsed();
        let heap = LIVE.load(Ordering::Relaxed).saturating_sub(before);
        let health = store.health();
        // The first gets one by one: a cold get's latency, healthy or
        // rebuilt from other columns (one site gone).
        let (mut healthy, mut degraded) = (Vec::new(), Vec::new());
        for key in &random_keys[..FIRST_GETS_TIMED] {
            let (before, get_started) = (store.stats().degraded_reads, Instant::now());
            store.get(key.as_bytes()).expect("get").expect("present");
            let micros = get_started.elapsed().as_secs_f64() * 1e6;
            if store.stats().degraded_reads > before {
                degraded.push(micros);
            } else {
                healthy.push(micros);
            }
        }
        for key in &random_keys[FIRST_GETS_TIMED..] {
            store.get(key.as_bytes()).expect("get").expect("present");
        }
        let elapsed = started.elapsed();
        let report = store.open_report();
        let quantiles = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            let at = |q: usize| v.get(v.len() * q / 100).copied().unwrap_or(0.0);
            format!(
                "{} gets, median {:.0} µs, p90 {:.0} µs",
                v.len(),
                at(50),
                at(90)
            )
        };
        println!(
            "    first {FIRST_GETS_TIMED} gets: healthy {}; degraded {}",
            quantiles(&mut healthy),
            quantiles(&mut degraded)
        );
        println!(
            "  {what}: {:.2} s with health() and 10^4 random gets (open {:.2} s; {} \
             tail stripes; {} blobs; {} columns missing; {:.1} B/blob of heap beyond the key \
             bytes; {})",
            elapsed.as_secs_f64(),
            opened.as_secs_f64(),
            report.tail_stripes,
            store.len(),
            health.columns_missing,
            heap.saturating_sub(key_bytes) as f64 / store.len().max(1) as f64,
            proc_memory()
        );
        assert_eq!(store.len(), blobs + delta + tail);
        if delta > 0 && options.checkpoints {
            assert!(report.checkpoint_base.is_some(), "opened from the delta");
        }
        elapsed.as_secs_f64()
    };
    let drop_caches = || {
        if !drop_page_cache() {
            println!("  (page cache not dropped: /proc/sys/vm/drop_caches is not writable here)");
        }
    };
    println!(
        "open_scale: {blobs} blobs, {delta} more in a delta checkpoint over them, and a tail \
         of {tail}; {key_bytes} key bytes"
    );
    let runs = |layout: &Layout, name: &str| {
        let mut from_checkpoint = Vec::new();
        for _ in 0..3 {
            drop_caches();
            from_checkpoint.push(timed_open(
                layout,
                &no_checkpoints,
                &format!("{name}, from the checkpoint"),
            ));
        }
        from_checkpoint.sort_by(f64::total_cmp);
        drop_caches();
        let full = timed_open(layout, &full_scan, &format!("{name}, full scan"));
        println!(
            "  {name}: from the checkpoint {:.2} s (median of 3), full scan {full:.2} s: {:.1}x",
            from_checkpoint[1],
            full / from_checkpoint[1]
        );
    };
    runs(&layout, "healthy");
    std::fs::remove_file(&marker).expect("remove the marker");
    let aside = dir.join("site2-aside");
    std::fs::rename(dir.join("site2"), &aside).expect("move site 2 aside");
    runs(&layout, "site 2 gone");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let sections = std::env::var("GEOSHARD_BENCH_SECTIONS").ok();
    let run = |name: &str| {
        sections
            .as_deref()
            .is_none_or(|s| s.split(',').any(|x| x.trim() == name))
    };
    if run("puts") || run("gets") {
        let sys = systems();
        if run("puts") {
            bench_puts(&mut c, &sys);
        }
        if run("gets") {
            bench_gets(&mut c, &sys);
        }
    }
    if run("degraded") {
        bench_degraded_get(&mut c);
    }
    if run("open") {
        bench_open(&mut c);
    }
    if run("open_large") {
        bench_open_large(&mut c);
    }
    // Only when named: it writes tens of GB.
    if sections
        .as_deref()
        .is_some_and(|s| s.split(',').any(|x| x.trim() == "open_scale"))
    {
        open_scale_report();
    }
    if run("rounds") {
        large_put_rounds_report();
    }
    if run("latency") {
        commit_latency_report();
    }
    c.final_summary();
}

/// 1 MiB async puts of both systems in alternating rounds, on a pair of
/// stores made for this report.
///
/// On these VMs a buffered write copies into the page cache at 4-5 GB/s
/// while the kernel reuses pages freed moments ago, and at 0.4-0.5 GB/s
/// once the cache grows into memory the VM has not used lately
/// (docs/PERFORMANCE.md, "1 MiB async puts and the page cache"). A
/// criterion group measures one system after the other, so whichever runs
/// second finds colder memory. Here each round puts 256 MiB through each
/// system, the first one alternating, so both see the same states; the
/// ratio is of the medians. It writes about 9 GiB to the temp directory
/// (1.5x and 3x of 2 GiB each), removed at the end.
fn large_put_rounds_report() {
    const ROUNDS: usize = 8;
    const PUTS: usize = 256;
    let dir = tempfile::tempdir().expect("tempdir");
    let options = Options::default();
    let geoshard =
        Store::create(layout(&dir.path().join("geoshard")), options.clone()).expect("store");
    let replicated = Replicated::open(&dir.path().join("replicated"), &options);
    let puts = async_puts(&geoshard, &replicated);
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..ROUNDS {
        for turn in 0..2 {
            let which = (round + turn) % 2;
            let (_, put) = &puts[which];
            let tag = format!("rounds{round}");
            let (elapsed, _) = put_async_many(&**put, IN_FLIGHT_LARGE, PUTS, 1 << 20, &tag);
            rates[which].push(PUTS as f64 / elapsed.as_secs_f64());
        }
    }
    println!(
        "put 1 MiB, {IN_FLIGHT_LARGE} in flight, async, {ROUNDS} alternating rounds of {PUTS} MiB \
         per system (MiB/s):"
    );
    let mut medians = [0.0; 2];
    for (which, (name, _)) in puts.iter().enumerate() {
        let list: Vec<String> = rates[which].iter().map(|r| format!("{r:.0}")).collect();
        let mut sorted = rates[which].clone();
        sorted.sort_by(f64::total_cmp);
        medians[which] = (sorted[ROUNDS / 2 - 1] + sorted[ROUNDS / 2]) / 2.0;
        println!(
            "  {name:15} median {:6.0}  rounds {}",
            medians[which],
            list.join(" ")
        );
    }
    println!(
        "  geoshard / replication_3x: {:.2}x (ratio of medians)",
        medians[0] / medians[1]
    );
}

/// p99 put latency with 4,096 puts in flight against the median commit
/// latency (seal to durable), from the store's own metrics. The recorder
/// is installed only now: every store above registered its handles
/// without one, so no benchmark ran with metrics on.
fn commit_latency_report() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    if recorder.install().is_err() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::create(layout(dir.path()), Options::default()).expect("store");
    let put = geoshard_async_put(&store);
    let (elapsed, mut latencies) = put_async_many(&*put, IN_FLIGHT, 65_536, 1024, "commit");
    let mut commits: Vec<f64> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == "geoshard_commit_seconds")
        .flat_map(|(.., value)| match value {
            metrics_util::debugging::DebugValue::Histogram(v) => {
                v.into_iter().map(|x| x.into_inner()).collect()
            }
            _ => Vec::new(),
        })
        .collect();
    if commits.is_empty() {
        return;
    }
    commits.sort_by(f64::total_cmp);
    latencies.sort_unstable();
    let commit_p50 = commits[commits.len() / 2] * 1e3;
    let put_p99 = percentile(&latencies, 0.99).as_secs_f64() * 1e3;
    println!(
        "put latency against commit latency, 1 KiB, {IN_FLIGHT} in flight: {:.0} puts/s, \
         {} commits, commit p50 {commit_p50:.2} ms (seal to durable), put p50 {:.2} ms, \
         p99 {put_p99:.2} ms = {:.1}x the commit p50",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        commits.len(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        put_p99 / commit_p50,
    );
}
