//! Load for `examples/chat_service.rs` through a site fire: a mix of chat
//! traffic over HTTP, a burned site in the middle, a repair, latency by
//! phase, and at the end every acknowledged message and photo read back and
//! compared byte for byte.
//!
//! ```text
//! cargo run --release --example chat_service -- --data /tmp/chat &
//! cargo run --release --example chat_load -- --rate 2000 --phase-secs 20
//! ```
//!
//! The mix (per request): 70% a message of 100 B - 2 KiB to one of the
//! rooms, 1% a photo of 100 KiB - 3 MiB (log-uniform), 25% a read of a
//! room's 20 most recent messages, 4% a fetch of a photo posted earlier
//! (checked against its checksum). With `--rate R` requests start on a fixed
//! schedule of R per second (open loop: a request's latency counts from when
//! it was due, so a stall is not hidden by the requests it delays); with
//! `--rate 0` the connections send flat out.
//!
//! Phases: `before` (healthy), `fire` (from the moment `POST
//! /admin/burn/{site}` is sent), `repair` (while `POST /admin/repair`
//! runs), `after`. Each request counts in the phase in which it was due.
//! The run fails (exit code 1) on any error, on a 2xx answer with wrong
//! content, on any acknowledged write that does not read back exactly, when
//! the fire phase shows no degraded reads or no handoffs (columns written
//! away from home), when the repair leaves a stripe unrepaired or a column
//! missing, or when reads are still degraded after it. The client never
//! retries: every non-2xx answer, timeout and broken connection is an
//! error.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

/// How long one request of the traffic may take before it counts as a
/// timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an admin request (stats, burn, repair) may take: a repair over
/// remote sites takes a while.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(3600);
/// Messages asked for by a read of recent messages.
const RECENT_LIMIT: u32 = 20;
/// The service's page size for history.
const HISTORY_PAGE: usize = 1000;
const MESSAGE_LEN_MIN: usize = 100;
const MESSAGE_LEN_MAX: usize = 2048;
const PHOTO_LEN_MIN: usize = 100 * 1024;
const PHOTO_LEN_MAX: usize = 3 * 1024 * 1024;

#[derive(Parser, Debug, Clone)]
#[command(about = "Chat traffic against examples/chat_service through a site fire")]
struct Args {
    /// The service's address.
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// Requests started per second (0: flat out).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Connections (and so requests in flight at most).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    connections: u32,
    /// Length of the before, fire and after phases, in seconds.
    #[arg(long, default_value_t = 20.0)]
    phase_secs: f64,
    /// Rooms the traffic spreads over.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    rooms: u32,
    /// Percent of requests that post a photo.
    #[arg(long, default_value_t = 1)]
    photo_percent: u32,
    /// The site to burn.
    #[arg(long, default_value = "fra")]
    burn: String,
    /// No fire: two healthy phases, before and after.
    #[arg(long)]
    no_fire: bool,
    /// Seed of the traffic (rooms, lengths, contents).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also print each second's request count and latency.
    #[arg(long)]
    timeline: bool,
    /// A prefix for room names, so runs against one store do not mix.
    #[arg(long, default_value = "load")]
    room_prefix: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Before = 0,
    Fire = 1,
    Repair = 2,
    After = 3,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Before => "before",
            Phase::Fire => "fire",
            Phase::Repair => "repair",
            Phase::After => "after",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    PostMessage = 0,
    PostPhoto = 1,
    ReadRecent = 2,
    GetPhoto = 3,
}

const KINDS: [Kind; 4] = [
    Kind::PostMessage,
    Kind::PostPhoto,
    Kind::ReadRecent,
    Kind::GetPhoto,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::PostMessage => "post message",
            Kind::PostPhoto => "post photo",
            Kind::ReadRecent => "read recent",
            Kind::GetPhoto => "get photo",
        }
    }
}

/// An acknowledged write, enough to make its bytes again.
#[derive(Clone, Copy, Debug)]
struct Acked {
    room: u32,
    seq: u64,
    len: usize,
    content_seed: u64,
    crc: u32,
}

/// What the workers share.
struct Shared {
    args: Args,
    started: Instant,
    next_ticket: AtomicU64,
    /// When each phase started, in order.
    phase_starts: Mutex<Vec<(Phase, Instant)>>,
    stop: AtomicBool,
    /// Latencies (µs) by phase and kind.
    latencies: Mutex<BTreeMap<(Phase, Kind), Vec<u64>>>,
    /// Latencies (µs) by the second (since the start) they were due in.
    per_second: Mutex<Vec<Vec<u64>>>,
    /// Errors by phase and what went wrong.
    errors: Mutex<BTreeMap<(Phase, String), u64>>,
    messages: Mutex<Vec<Acked>>,
    photos: Mutex<Vec<Acked>>,
}

impl Shared {
    /// The phase at `at`: a request counts in the phase in which it was
    /// due. Asked once the request is answered, so every phase that
    /// started before it was due is known.
    fn phase_at(&self, at: Instant) -> Phase {
        lock(&self.phase_starts)
            .iter()
            .rev()
            .find(|(_, start)| *start <= at)
            .map_or(Phase::Before, |(phase, _)| *phase)
    }

    /// Starts `phase` now; returns when.
    fn enter(&self, phase: Phase) -> Instant {
        let now = Instant::now();
        lock(&self.phase_starts).push((phase, now));
        now
    }

    fn error(&self, phase: Phase, what: String) {
        *lock(&self.errors).entry((phase, what)).or_default() += 1;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn room_name(args: &Args, room: u32) -> String {
    format!("{}-{room}", args.room_prefix)
}

/// The bytes of a message (printable ASCII) or photo (any bytes).
fn content(kind: Kind, len: usize, seed: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut bytes = vec![0u8; len];
    rng.fill_bytes(&mut bytes);
    if kind == Kind::PostMessage {
        for b in &mut bytes {
            *b = b' ' + *b % 95;
        }
    }
    bytes
}

/// One HTTP/1.1 connection to the service; no retries.
struct Connection {
    addr: SocketAddr,
    sender: Option<http1::SendRequest<Full<Bytes>>>,
}

/// Why a request failed.
enum Failed {
    Status(StatusCode, String),
    /// A 2xx answer whose content is wrong (a photo's bytes, the order of
    /// messages, a missing field).
    Wrong(String),
    Timeout,
    Connection(String),
}

impl Failed {
    fn describe(&self) -> String {
        match self {
            Failed::Status(status, _) => format!("HTTP {}", status.as_u16()),
            Failed::Wrong(_) => "wrong answer".to_string(),
            Failed::Timeout => "timeout".to_string(),
            Failed::Connection(e) => format!("connection: {e}"),
        }
    }
}

impl Connection {
    fn new(addr: SocketAddr) -> Connection {
        Connection { addr, sender: None }
    }

    async fn connect(&mut self) -> Result<(), Failed> {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| Failed::Connection(e.to_string()))?;
        stream
            .set_nodelay(true)
            .map_err(|e| Failed::Connection(e.to_string()))?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Failed::Connection(e.to_string()))?;
        tokio::spawn(connection);
        self.sender = Some(sender);
        Ok(())
    }

    /// Sends a request and reads the whole answer; a failure drops the
    /// connection (the next request opens a new one).
    async fn request(&mut self, method: Method, path: &str, body: Bytes) -> Result<Bytes, Failed> {
        self.request_within(REQUEST_TIMEOUT, method, path, body)
            .await
    }

    /// As [`request`](Self::request), with its own timeout.
    async fn request_within(
        &mut self,
        timeout: Duration,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<Bytes, Failed> {
        let result = tokio::time::timeout(timeout, self.exchange(method, path, body)).await;
        let result = result.unwrap_or(Err(Failed::Timeout));
        if matches!(result, Err(Failed::Timeout | Failed::Connection(_))) {
            self.sender = None;
        }
        result
    }

    async fn exchange(&mut self, method: Method, path: &str, body: Bytes) -> Result<Bytes, Failed> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.connect().await?;
        }
        let Some(sender) = self.sender.as_mut() else {
            return Err(Failed::Connection("not connected".into()));
        };
        sender
            .ready()
            .await
            .map_err(|e| Failed::Connection(e.to_string()))?;
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "chat")
            .body(Full::new(body))
            .map_err(|e| Failed::Connection(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| Failed::Connection(e.to_string()))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| Failed::Connection(e.to_string()))?
            .to_bytes();
        if status.is_success() {
            Ok(bytes)
        } else {
            Err(Failed::Status(
                status,
                String::from_utf8_lossy(&bytes).into_owned(),
            ))
        }
    }
}

/// One worker: takes the next ticket, waits until it is due, sends it.
async fn worker(shared: Arc<Shared>, id: u32) {
    let mut connection = Connection::new(shared.args.addr);
    let mut rng = ChaCha8Rng::seed_from_u64(shared.args.seed ^ (u64::from(id) << 32));
    let interval = if shared.args.rate == 0 {
        None
    } else {
        Some(1.0 / shared.args.rate as f64)
    };
    while !shared.stop.load(Ordering::Acquire) {
        let ticket = shared.next_ticket.fetch_add(1, Ordering::Relaxed);
        let due = match interval {
            Some(interval) => {
                let due = shared.started + Duration::from_secs_f64(ticket as f64 * interval);
                tokio::time::sleep_until(due.into()).await;
                if shared.stop.load(Ordering::Acquire) {
                    break;
                }
                due
            }
            None => Instant::now(),
        };
        let kind = pick_kind(&shared, &mut rng);
        let answer = one_request(&shared, &mut connection, &mut rng, kind).await;
        let phase = shared.phase_at(due);
        match answer {
            Ok(()) => {
                let micros = due.elapsed().as_micros() as u64;
                lock(&shared.latencies)
                    .entry((phase, kind))
                    .or_default()
                    .push(micros);
                let second = due.duration_since(shared.started).as_secs() as usize;
                let mut per_second = lock(&shared.per_second);
                if per_second.len() <= second {
                    per_second.resize_with(second + 1, Vec::new);
                }
                per_second[second].push(micros);
            }
            Err(failed) => {
                match &failed {
                    Failed::Status(status, body) => {
                        eprintln!("chat_load: {} answered {status}: {body}", kind.name());
                    }
                    Failed::Wrong(what) => eprintln!("chat_load: {}: {what}", kind.name()),
                    Failed::Timeout | Failed::Connection(_) => {}
                }
                shared.error(phase, format!("{}: {}", kind.name(), failed.describe()));
            }
        }
    }
}

fn pick_kind(shared: &Shared, rng: &mut ChaCha8Rng) -> Kind {
    let photo = shared.args.photo_percent.min(100);
    let roll = rng.random_range(0..100u32);
    if roll < photo {
        Kind::PostPhoto
    } else if roll < photo + 25 {
        Kind::ReadRecent
    } else if roll < photo + 29 && !lock(&shared.photos).is_empty() {
        Kind::GetPhoto
    } else {
        Kind::PostMessage
    }
}

async fn one_request(
    shared: &Shared,
    connection: &mut Connection,
    rng: &mut ChaCha8Rng,
    kind: Kind,
) -> Result<(), Failed> {
    let args = &shared.args;
    match kind {
        Kind::PostMessage | Kind::PostPhoto => {
            let room = rng.random_range(0..args.rooms);
            let len = if kind == Kind::PostMessage {
                rng.random_range(MESSAGE_LEN_MIN..=MESSAGE_LEN_MAX)
            } else {
                // Log-uniform: many small photos, a few large ones.
                let (low, high) = ((PHOTO_LEN_MIN as f64).ln(), (PHOTO_LEN_MAX as f64).ln());
                rng.random_range(low..high).exp() as usize
            };
            let content_seed = rng.next_u64();
            let body = content(kind, len, content_seed);
            let crc = crc32fast::hash(&body);
            let path = match kind {
                Kind::PostMessage => format!("/rooms/{}/messages", room_name(args, room)),
                _ => format!("/rooms/{}/photos", room_name(args, room)),
            };
            let answer = connection
                .request(Method::POST, &path, Bytes::from(body))
                .await?;
            let field = if kind == Kind::PostMessage {
                "seq"
            } else {
                "id"
            };
            let seq = serde_json::from_slice::<Value>(&answer)
                .ok()
                .and_then(|v| v.get(field).and_then(Value::as_u64))
                .ok_or_else(|| Failed::Wrong(format!("no {field} in the answer")))?;
            let acked = Acked {
                room,
                seq,
                len,
                content_seed,
                crc,
            };
            match kind {
                Kind::PostMessage => lock(&shared.messages).push(acked),
                _ => lock(&shared.photos).push(acked),
            }
            Ok(())
        }
        Kind::ReadRecent => {
            let room = rng.random_range(0..args.rooms);
            let path = format!(
                "/rooms/{}/messages?limit={RECENT_LIMIT}",
                room_name(args, room)
            );
            let answer = connection.request(Method::GET, &path, Bytes::new()).await?;
            let messages: Vec<Value> = serde_json::from_slice(&answer)
                .map_err(|e| Failed::Wrong(format!("not a list of messages: {e}")))?;
            let seqs: Vec<u64> = messages
                .iter()
                .filter_map(|m| m.get("seq").and_then(Value::as_u64))
                .collect();
            if seqs.len() != messages.len() || seqs.windows(2).any(|w| w[0] >= w[1]) {
                return Err(Failed::Wrong(format!(
                    "recent messages out of send order: {seqs:?}"
                )));
            }
            Ok(())
        }
        Kind::GetPhoto => {
            let photo = {
                let photos = lock(&shared.photos);
                photos[rng.random_range(0..photos.len())]
            };
            let path = format!(
                "/rooms/{}/photos/{}",
                room_name(args, photo.room),
                photo.seq
            );
            let answer = connection.request(Method::GET, &path, Bytes::new()).await?;
            if answer.len() != photo.len || crc32fast::hash(&answer) != photo.crc {
                return Err(Failed::Wrong(format!(
                    "photo {path}: {} bytes read, {} written, or their checksums differ",
                    answer.len(),
                    photo.len
                )));
            }
            Ok(())
        }
    }
}

/// The service's counters (`GET /admin/stats`).
async fn stats(connection: &mut Connection) -> Result<Value, String> {
    let answer = connection
        .request_within(ADMIN_TIMEOUT, Method::GET, "/admin/stats", Bytes::new())
        .await
        .map_err(|f| format!("GET /admin/stats: {}", f.describe()))?;
    serde_json::from_slice(&answer).map_err(|e| format!("GET /admin/stats: {e}"))
}

fn counter(stats: &Value, name: &str) -> u64 {
    stats.get(name).and_then(Value::as_u64).unwrap_or(0)
}

/// A phase's boundaries and the service's counters at its start.
struct PhaseRecord {
    phase: Phase,
    started: Instant,
    ended: Instant,
    degraded_reads: u64,
    handoffs: u64,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    match run(Args::parse()).await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(message) => {
            eprintln!("chat_load: {message}");
            std::process::exit(2);
        }
    }
}

async fn run(args: Args) -> Result<bool, String> {
    if !(args.phase_secs.is_finite() && args.phase_secs > 0.0 && args.phase_secs <= 86_400.0) {
        return Err(format!(
            "--phase-secs {} is not a length of time: give seconds between 0 and 86400",
            args.phase_secs
        ));
    }
    let mut admin = Connection::new(args.addr);
    let first = stats(&mut admin).await?;
    println!(
        "chat_load: {} at {} for {} s per phase, {} connections, {} rooms{}",
        args.addr,
        if args.rate == 0 {
            "flat out".to_string()
        } else {
            format!("{} requests/s", args.rate)
        },
        args.phase_secs,
        args.connections,
        args.rooms,
        if args.no_fire {
            String::new()
        } else {
            format!(", site {} burns", args.burn)
        }
    );
    let shared = Arc::new(Shared {
        args: args.clone(),
        started: Instant::now(),
        next_ticket: AtomicU64::new(0),
        phase_starts: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
        latencies: Mutex::new(BTreeMap::new()),
        per_second: Mutex::new(Vec::new()),
        errors: Mutex::new(BTreeMap::new()),
        messages: Mutex::new(Vec::new()),
        photos: Mutex::new(Vec::new()),
    });
    lock(&shared.phase_starts).push((Phase::Before, shared.started));
    let workers: Vec<_> = (0..args.connections)
        .map(|id| tokio::spawn(worker(shared.clone(), id)))
        .collect();

    let phase_len = Duration::from_secs_f64(args.phase_secs);
    let mut records = Vec::new();
    let mut at_start = (shared.started, first);
    let mut ok = true;
    // Ends the phase that started at the last boundary: its counters are
    // the difference of the service's counters at the two boundaries.
    let mut advance =
        |records: &mut Vec<PhaseRecord>, phase: Phase, boundary: Instant, now: Value| {
            let (started, before) = std::mem::replace(&mut at_start, (boundary, now.clone()));
            let delta = |name: &str| counter(&now, name).saturating_sub(counter(&before, name));
            records.push(PhaseRecord {
                phase,
                started,
                ended: boundary,
                degraded_reads: delta("degraded_reads"),
                handoffs: delta("handoff_columns"),
            });
        };

    tokio::time::sleep(phase_len).await;
    if args.no_fire {
        let now = stats(&mut admin).await?;
        let boundary = shared.enter(Phase::After);
        advance(&mut records, Phase::Before, boundary, now);
        tokio::time::sleep(phase_len).await;
    } else {
        let now = stats(&mut admin).await?;
        let boundary = shared.enter(Phase::Fire);
        advance(&mut records, Phase::Before, boundary, now);
        let burn = admin
            .request_within(
                ADMIN_TIMEOUT,
                Method::POST,
                &format!("/admin/burn/{}", args.burn),
                Bytes::new(),
            )
            .await
            .map_err(|f| format!("burning {}: {}", args.burn, f.describe()))?;
        println!("burned: {}", String::from_utf8_lossy(&burn));
        tokio::time::sleep(phase_len).await;

        let now = stats(&mut admin).await?;
        let boundary = shared.enter(Phase::Repair);
        advance(&mut records, Phase::Fire, boundary, now);
        let repair = admin
            .request_within(ADMIN_TIMEOUT, Method::POST, "/admin/repair", Bytes::new())
            .await
            .map_err(|f| format!("repair: {}", f.describe()))?;
        let boundary = shared.enter(Phase::After);
        println!("repaired: {}", String::from_utf8_lossy(&repair));
        ok &= repair_complete(&repair);
        let now = stats(&mut admin).await?;
        advance(&mut records, Phase::Repair, boundary, now);
        tokio::time::sleep(phase_len).await;
    }
    shared.stop.store(true, Ordering::Release);
    for worker in workers {
        worker.await.map_err(|e| format!("a worker failed: {e}"))?;
    }
    let now = stats(&mut admin).await?;
    advance(&mut records, Phase::After, Instant::now(), now);

    if args.timeline {
        timeline(&shared, &records);
    }
    ok &= report(&shared, &records);
    ok &= verify(&shared, &mut admin).await;
    println!(
        "{}",
        if ok {
            "chat_load: ok"
        } else {
            "chat_load: FAILED"
        }
    );
    Ok(ok)
}

/// Whether the repair report says every stripe was repaired and no column
/// is missing.
fn repair_complete(answer: &[u8]) -> bool {
    let Ok(report) = serde_json::from_slice::<Value>(answer) else {
        println!("  the repair answer is not JSON");
        return false;
    };
    let unrepairable = counter(&report, "stripes_unrepairable");
    let missing = counter(&report, "columns_missing");
    if unrepairable > 0 || missing > 0 {
        println!("  repair left {unrepairable} stripes unrepairable and {missing} columns missing");
        return false;
    }
    true
}

/// Prints the table; false when there were errors, the fire showed no
/// degraded reads or no handoffs, or reads were still degraded after the
/// repair.
fn report(shared: &Shared, records: &[PhaseRecord]) -> bool {
    let latencies = lock(&shared.latencies);
    let errors = lock(&shared.errors);
    let mut ok = true;
    println!();
    println!(
        "{:<8} {:<13} {:>6} {:>8} {:>9} {:>8} {:>8} {:>8} {:>7} {:>9} {:>8}",
        "phase",
        "requests",
        "secs",
        "count",
        "per sec",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "errors",
        "degraded",
        "handoffs"
    );
    for record in records {
        let secs = record.ended.duration_since(record.started).as_secs_f64();
        let phase_errors: u64 = errors
            .iter()
            .filter(|((phase, _), _)| *phase == record.phase)
            .map(|(_, n)| n)
            .sum();
        let mut all: Vec<u64> = Vec::new();
        let mut rows = Vec::new();
        for kind in KINDS {
            let mut samples = latencies
                .get(&(record.phase, kind))
                .cloned()
                .unwrap_or_default();
            samples.sort_unstable();
            all.extend_from_slice(&samples);
            rows.push((kind.name(), samples));
        }
        all.sort_unstable();
        println!(
            "{:<8} {:<13} {:>6.1} {:>8} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>7} {:>9} {:>8}",
            record.phase.name(),
            "all",
            secs,
            all.len(),
            all.len() as f64 / secs,
            percentile(&all, 50.0),
            percentile(&all, 99.0),
            percentile(&all, 99.9),
            phase_errors,
            record.degraded_reads,
            record.handoffs
        );
        for (name, samples) in rows {
            println!(
                "{:<8} {:<13} {:>6} {:>8} {:>9.0} {:>8.2} {:>8.2} {:>8.2}",
                "",
                name,
                "",
                samples.len(),
                samples.len() as f64 / secs,
                percentile(&samples, 50.0),
                percentile(&samples, 99.0),
                percentile(&samples, 99.9),
            );
        }
        if record.phase == Phase::Fire && (record.degraded_reads == 0 || record.handoffs == 0) {
            println!("  the fire phase shows no degraded reads or no handoffs");
            ok = false;
        }
        let repaired = records.iter().any(|r| r.phase == Phase::Repair);
        if record.phase == Phase::After && repaired && record.degraded_reads > 0 {
            println!("  reads were still degraded after the repair");
            ok = false;
        }
    }
    let total_errors: u64 = errors.values().sum();
    println!();
    println!("errors: {total_errors} (client retries: 0, the client never retries)");
    for ((phase, what), n) in errors.iter() {
        println!("  {}: {what}: {n}", phase.name());
    }
    ok && total_errors == 0
}

/// Prints each second's requests and latency, and the phase it was in.
fn timeline(shared: &Shared, records: &[PhaseRecord]) {
    let per_second = lock(&shared.per_second);
    println!();
    println!(
        "{:>6} {:<8} {:>8} {:>8} {:>8} {:>8}",
        "second", "phase", "count", "p50 ms", "p99 ms", "max ms"
    );
    for (second, samples) in per_second.iter().enumerate() {
        let at = shared.started + Duration::from_secs(second as u64);
        let phase = records
            .iter()
            .find(|r| at < r.ended)
            .map_or("", |r| r.phase.name());
        let mut samples = samples.clone();
        samples.sort_unstable();
        println!(
            "{:>6} {:<8} {:>8} {:>8.2} {:>8.2} {:>8.2}",
            second,
            phase,
            samples.len(),
            percentile(&samples, 50.0),
            percentile(&samples, 99.0),
            percentile(&samples, 100.0)
        );
    }
}

/// Reads back every acknowledged message (through the rooms' history, in
/// send order) and photo, and compares them byte for byte.
async fn verify(shared: &Shared, connection: &mut Connection) -> bool {
    let args = &shared.args;
    let messages = lock(&shared.messages).clone();
    let photos = lock(&shared.photos).clone();
    let started = Instant::now();
    let mut wrong = 0u64;
    let mut by_room: BTreeMap<u32, Vec<Acked>> = BTreeMap::new();
    for m in &messages {
        by_room.entry(m.room).or_default().push(*m);
    }
    for (room, acked) in &by_room {
        let mut history: BTreeMap<u64, String> = BTreeMap::new();
        let mut after = 0u64;
        loop {
            let path = format!(
                "/rooms/{}/history?after={after}&limit={HISTORY_PAGE}",
                room_name(args, *room)
            );
            let page: Vec<Value> = match connection.request(Method::GET, &path, Bytes::new()).await
            {
                Ok(answer) => match serde_json::from_slice(&answer) {
                    Ok(page) => page,
                    Err(e) => {
                        println!("  {path}: not a list of messages: {e}");
                        wrong += acked.len() as u64;
                        break;
                    }
                },
                Err(failed) => {
                    println!("  {path}: {}", failed.describe());
                    wrong += acked.len() as u64;
                    break;
                }
            };
            let count = page.len();
            for message in page {
                let seq = message.get("seq").and_then(Value::as_u64).unwrap_or(0);
                let text = message
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                if seq <= after {
                    println!("  room {room}: history out of send order at {seq}");
                    wrong += 1;
                }
                after = after.max(seq);
                history.insert(seq, text);
            }
            if count < HISTORY_PAGE {
                break;
            }
        }
        for m in acked {
            let expected = content(Kind::PostMessage, m.len, m.content_seed);
            match history.get(&m.seq) {
                Some(text) if text.as_bytes() == expected.as_slice() => {}
                Some(_) => {
                    println!("  room {room} message {}: different bytes", m.seq);
                    wrong += 1;
                }
                None => {
                    println!("  room {room} message {}: missing", m.seq);
                    wrong += 1;
                }
            }
        }
    }
    let mut photo_bytes = 0u64;
    for p in &photos {
        let path = format!("/rooms/{}/photos/{}", room_name(args, p.room), p.seq);
        match connection.request(Method::GET, &path, Bytes::new()).await {
            Ok(answer) => {
                photo_bytes += answer.len() as u64;
                if answer != content(Kind::PostPhoto, p.len, p.content_seed) {
                    println!("  {path}: different bytes");
                    wrong += 1;
                }
            }
            Err(failed) => {
                println!("  {path}: {}", failed.describe());
                wrong += 1;
            }
        }
    }
    println!(
        "verified: {} messages in {} rooms and {} photos ({:.1} MiB) read back in {:.1} s: {} wrong or missing",
        messages.len(),
        by_room.len(),
        photos.len(),
        photo_bytes as f64 / (1024.0 * 1024.0),
        started.elapsed().as_secs_f64(),
        wrong
    );
    wrong == 0
}
