//! A chat service on geoshard: rooms of text messages and photos over HTTP
//! (axum), kept in one erasure-coded store, with a Prometheus `/metrics`
//! page and admin endpoints that burn a site and repair it while the service
//! runs.
//!
//! ```text
//! cargo run --release --example chat_service -- --data /tmp/chat
//! ```
//!
//! With no `--layout`, the store is RS(6,3) over three local sites (fra,
//! ams, par) of three node directories each under `--data`: any one site can
//! burn. `--layout FILE` takes a geoshard layout file instead (local
//! directories, or `s3://` nodes, e.g. against the SeaweedFS server of
//! `geoshard::testing::s3`). The store is created on first start and opened
//! on later ones.
//!
//! # API
//! - `POST /rooms/{room}/messages`, body: the message (UTF-8, at most
//!   64 KiB) → `{"seq": N}` once it is durable. Sequence numbers count up per
//!   room in the order the service took the messages; the key is
//!   `m/{room}/{seq:020}`, so key order is send order.
//! - `GET /rooms/{room}/messages?limit=L` → the room's last `L` messages
//!   (default 50, at most 1000), oldest first: `[{"seq": N, "text": ".."}]`.
//! - `GET /rooms/{room}/history?after=N&limit=L` → messages after `N` (default:
//!   from the start) in send order, at most `L` (default and most 1000): a
//!   walk of `keys_with_prefix("m/{room}/")`.
//! - `POST /rooms/{room}/photos`, body: the photo (at most 16 MiB) →
//!   `{"id": N}`; `GET /rooms/{room}/photos/{id}` → its bytes, sent from the
//!   store's memory-mapped columns without a copy when the store is healthy.
//! - `GET /metrics`: geoshard's metrics and the service's per-route request
//!   latency, in the Prometheus text format.
//! - `GET /admin/stats`: the store's counters and health as JSON.
//! - `POST /admin/burn/{site}`: a fire. Every node of the site fails every
//!   call from now on (the store's open descriptors and mappings no longer
//!   serve it), and a local node's directory is deleted: its data is gone.
//!   Reads are rebuilt from the other sites, writes go to handoff nodes.
//! - `POST /admin/repair`: the site is back with empty disks. Repair opens
//!   its nodes afresh, rebuilds their columns and moves handoffs home; the
//!   answer is the repair report.
//!
//! The admin endpoints have no authentication (a burn deletes data): keep
//! `--listen` on loopback, or put the service behind a proxy that guards
//! `/admin`. The service warns at start when it listens elsewhere.
//!
//! Room names are 1 to 64 characters of `A-Z a-z 0-9 _ -`. A geoshard error
//! is answered with its message: 400/413 for bad input, 503 when the store
//! cannot serve (more lost than the layout promises), 504 when a write is not
//! durable within 30 s (it may still land), 500 otherwise.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use clap::Parser;
use geoshard::layout::{Layout, Location, NodeSpec};
use geoshard::node::{DefaultNodeFactory, FaultyNode, Node, NodeFactory, OpenPurpose};
use geoshard::{Error, Options, RepairOptions, Store};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;
use serde_json::json;

/// Longest message taken, in bytes.
const MESSAGE_LEN_MAX: usize = 64 * 1024;
/// Longest photo taken, in bytes.
const PHOTO_LEN_MAX: usize = 16 * 1024 * 1024;
/// Most messages one read returns.
const READ_LIMIT_MAX: u64 = 1000;
/// How long a write may take to become durable before the answer is 504.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Parser, Debug)]
#[command(about = "A chat service on geoshard: post and read messages and photos over HTTP")]
struct Args {
    /// Address to listen on (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Directory of the default layout's nodes (three sites of three nodes).
    #[arg(long, default_value = "chat-data")]
    data: PathBuf,
    /// A geoshard layout file (TOML) to use instead of the default.
    #[arg(long)]
    layout: Option<PathBuf>,
}

#[tokio::main]
async fn main() {
    if let Err(message) = run(Args::parse()).await {
        eprintln!("chat_service: {message}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), String> {
    // The recorder goes in before the store opens: the store registers its
    // metric handles at open.
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
        .map_err(|e| format!("metrics buckets: {e}"))?
        .build_recorder();
    let prometheus = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|e| format!("installing the metrics recorder: {e}"))?;

    let layout = match &args.layout {
        Some(path) => Layout::load(path).map_err(|e| format!("layout {}: {e}", path.display()))?,
        None => default_layout(&args.data)?,
    };
    let options = Options::default();
    let factory = Arc::new(BurnableNodes::new(&options));
    let (store, created) = tokio::task::spawn_blocking({
        let factory = factory.clone();
        move || open_or_create(layout, options, factory)
    })
    .await
    .map_err(|e| format!("opening the store: {e}"))??;
    let store = Arc::new(store);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let address = listener
        .local_addr()
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    if !address.ip().is_loopback() {
        eprintln!(
            "chat_service: warning: the /admin endpoints (burn deletes data) have no \
             authentication; listening on {address}, not on loopback"
        );
    }
    eprintln!(
        "chat_service: {} store of {} blobs, {} sites; listening on http://{address}",
        if created { "created a" } else { "opened the" },
        store.len(),
        store.layout().sites().len(),
    );

    // Histograms are summarised by the exporter's upkeep.
    tokio::spawn({
        let prometheus = prometheus.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                prometheus.run_upkeep();
            }
        }
    });

    let app = router(Service {
        store: store.clone(),
        factory,
        rooms: Arc::new(Rooms::default()),
        prometheus,
    });
    // Answers go out as they are written, not held back by Nagle's
    // algorithm for the client's ACK.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| format!("serving: {e}"))?;

    eprintln!("chat_service: closing the store");
    tokio::task::spawn_blocking(move || store.close())
        .await
        .map_err(|e| format!("closing the store: {e}"))?
        .map_err(|e| format!("closing the store: {e}"))
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = interrupt.await;
                return;
            }
        };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
}

/// RS(6,3) over three sites of three local node directories.
fn default_layout(data: &std::path::Path) -> Result<Layout, String> {
    let mut builder = Layout::builder().code(6, 3);
    for site in ["fra", "ams", "par"] {
        builder = builder.site(site, |mut s| {
            for n in 1..=3 {
                let name = format!("{site}-{n}");
                let path = data.join(site).join(&name);
                s = s.node(name, path.as_path());
            }
            s
        });
    }
    builder.build().map_err(|e| format!("default layout: {e}"))
}

/// Opens the store, or creates it when there is none yet.
fn open_or_create(
    layout: Layout,
    options: Options,
    factory: Arc<BurnableNodes>,
) -> Result<(Store, bool), String> {
    match Store::open_with_factory(layout.clone(), options.clone(), factory.clone()) {
        Ok(store) => Ok((store, false)),
        Err(Error::NoStore { .. }) => {
            // The failed open's handles (and their locks or leases) go
            // before the create opens the nodes again.
            factory.nodes().clear();
            Store::create_with_factory(layout, options, factory)
                .map(|store| (store, true))
                .map_err(|e| format!("creating the store: {e}"))
        }
        Err(e) => Err(format!("opening the store: {e}")),
    }
}

/// A node the admin endpoint can burn.
type Burnable = Arc<FaultyNode<Arc<dyn Node>>>;

/// Opens the layout's nodes as the default factory does, each behind a
/// [`FaultyNode`] the admin endpoint can burn.
#[derive(Debug)]
struct BurnableNodes {
    inner: DefaultNodeFactory,
    nodes: Mutex<HashMap<String, Burnable>>,
}

impl BurnableNodes {
    fn new(options: &Options) -> BurnableNodes {
        BurnableNodes {
            inner: DefaultNodeFactory::new(options),
            nodes: Mutex::new(HashMap::new()),
        }
    }

    fn nodes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Burnable>> {
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wrap(&self, spec: &NodeSpec, node: Arc<dyn Node>) -> Arc<dyn Node> {
        let node = Arc::new(FaultyNode::new(node));
        self.nodes().insert(spec.name.clone(), node.clone());
        node
    }

    /// Burns node `name`: every call fails from now on.
    fn burn(&self, name: &str) -> bool {
        match self.nodes().get(name) {
            Some(node) => {
                node.burn();
                true
            }
            None => false,
        }
    }
}

impl NodeFactory for BurnableNodes {
    fn open_node(&self, spec: &NodeSpec, purpose: OpenPurpose) -> geoshard::Result<Arc<dyn Node>> {
        let node = self.inner.open_node(spec, purpose)?;
        Ok(self.wrap(spec, node))
    }

    fn open_nodes(
        &self,
        specs: &[NodeSpec],
        purpose: OpenPurpose,
    ) -> Vec<geoshard::Result<Arc<dyn Node>>> {
        self.inner
            .open_nodes(specs, purpose)
            .into_iter()
            .zip(specs)
            .map(|(node, spec)| node.map(|node| self.wrap(spec, node)))
            .collect()
    }

    /// A repaired node is a new one (the site's new disks): the burned
    /// handle is dropped with its descriptors and lock.
    fn reopen_node(
        &self,
        spec: &NodeSpec,
        old: &mut Option<Arc<dyn Node>>,
    ) -> geoshard::Result<Arc<dyn Node>> {
        drop(old.take());
        drop(self.nodes().remove(&spec.name));
        self.open_node(spec, OpenPurpose::Reopen)
    }

    fn is_remote(&self, spec: &NodeSpec) -> bool {
        self.inner.is_remote(spec)
    }
}

/// Each room's next sequence number, found from the store on first use.
#[derive(Default)]
struct Rooms {
    next: Mutex<HashMap<String, u64>>,
}

impl Rooms {
    fn next(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.next.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the room's next sequence number.
    fn take(&self, store: &Store, room: &str) -> u64 {
        if !self.next().contains_key(room) {
            // Found outside the lock (a walk of the room's keys): another
            // caller may have found it meanwhile; both found the same.
            let found = last_seq(store, room).map_or(1, |last| last + 1);
            self.next().entry(room.to_string()).or_insert(found);
        }
        let mut next = self.next();
        let seq = next.entry(room.to_string()).or_insert(1);
        let taken = *seq;
        *seq += 1;
        taken
    }

    /// The last sequence number taken in the room (0: none). A room with
    /// nothing in it is not remembered: reads of made-up names cost nothing
    /// lasting.
    fn last(&self, store: &Store, room: &str) -> u64 {
        if let Some(&seq) = self.next().get(room) {
            return seq - 1;
        }
        match last_seq(store, room) {
            Some(last) => *self.next().entry(room.to_string()).or_insert(last + 1) - 1,
            None => 0,
        }
    }
}

/// The highest sequence number stored in the room, over its messages and
/// its photos (they share the sequence).
fn last_seq(store: &Store, room: &str) -> Option<u64> {
    [message_prefix(room), photo_prefix(room)]
        .iter()
        .filter_map(|prefix| {
            store
                .keys_with_prefix(prefix.as_bytes())
                .filter_map(|key| seq_of(&key[prefix.len()..]))
                .last()
        })
        .max()
}

fn message_prefix(room: &str) -> String {
    format!("m/{room}/")
}

fn message_key(room: &str, seq: u64) -> String {
    format!("m/{room}/{seq:020}")
}

fn photo_prefix(room: &str) -> String {
    format!("p/{room}/")
}

fn photo_key(room: &str, id: u64) -> String {
    format!("p/{room}/{id:020}")
}

fn seq_of(digits: &[u8]) -> Option<u64> {
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[derive(Clone)]
struct Service {
    store: Arc<Store>,
    factory: Arc<BurnableNodes>,
    rooms: Arc<Rooms>,
    prometheus: PrometheusHandle,
}

fn router(service: Service) -> Router {
    Router::new()
        .route(
            "/rooms/{room}/messages",
            post(post_message).get(recent_messages),
        )
        .route("/rooms/{room}/history", get(history))
        .route("/rooms/{room}/photos", post(post_photo))
        .route("/rooms/{room}/photos/{id}", get(get_photo))
        .route("/metrics", get(prometheus_page))
        .route("/admin/stats", get(admin_stats))
        .route("/admin/burn/{site}", post(admin_burn))
        .route("/admin/repair", post(admin_repair))
        .layer(DefaultBodyLimit::max(PHOTO_LEN_MAX))
        .with_state(service)
}

/// Buckets of every `*_seconds` histogram (the store's and the service's);
/// the others (commit sizes) are exported as summaries.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.0, 2.0, 5.0,
];

/// Runs a handler's work and answers it, timed into
/// `chat_request_seconds{route, status}`.
async fn timed<R: IntoResponse>(
    route: &'static str,
    answer: impl Future<Output = Result<R, Failure>>,
) -> Response {
    let started = Instant::now();
    let response = answer.await.into_response();
    metrics::histogram!(
        "chat_request_seconds",
        "route" => route,
        "status" => response.status().as_str().to_string()
    )
    .record(started.elapsed().as_secs_f64());
    response
}

/// A failure as an HTTP answer.
struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let status = match e {
            Error::InvalidArgument { .. } => StatusCode::BAD_REQUEST,
            Error::LimitExceeded { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::TimedOut { .. } => StatusCode::GATEWAY_TIMEOUT,
            Error::NotEnoughColumns { .. }
            | Error::Unavailable { .. }
            | Error::WriteRefused { .. }
            | Error::Closed
            | Error::TooManyNodesDown { .. }
            | Error::StripesUnrecoverable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure(status, e.to_string())
    }
}

fn check_room(room: &str) -> Result<(), Failure> {
    let ok = (1..=64).contains(&room.len())
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Failure(
            StatusCode::BAD_REQUEST,
            format!("bad room name {room:?}: use 1 to 64 characters of A-Z a-z 0-9 _ -"),
        ))
    }
}

/// Puts `value` under `key`, answering once it is durable.
async fn put_durably(store: &Store, key: &str, value: Bytes) -> Result<(), Failure> {
    match tokio::time::timeout(WRITE_TIMEOUT, store.put_async(key.as_bytes(), value)).await {
        Ok(done) => Ok(done?),
        Err(_) => Err(Failure(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "{key} was not durable within {} s; it may still land",
                WRITE_TIMEOUT.as_secs()
            ),
        )),
    }
}

async fn post_message(
    State(service): State<Service>,
    Path(room): Path<String>,
    body: Bytes,
) -> Response {
    timed("post_message", async {
        check_room(&room)?;
        if body.len() > MESSAGE_LEN_MAX {
            return Err(Failure(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a message holds at most {MESSAGE_LEN_MAX} bytes"),
            ));
        }
        if std::str::from_utf8(&body).is_err() {
            return Err(Failure(
                StatusCode::BAD_REQUEST,
                "a message is UTF-8 text".to_string(),
            ));
        }
        post_durably(&service, &room, body, message_key, "seq").await
    })
    .await
}

/// Takes the room's next sequence number for `body`, puts it under
/// `key_of(room, seq)` and answers `{field: seq}` once it is durable.
/// Messages and photos share the sequence: one counter orders everything
/// posted to a room.
async fn post_durably(
    service: &Service,
    room: &str,
    body: Bytes,
    key_of: fn(&str, u64) -> String,
    field: &str,
) -> Result<Json<serde_json::Value>, Failure> {
    let seq = service.rooms.take(&service.store, room);
    put_durably(&service.store, &key_of(room, seq), body).await?;
    Ok(Json(json!({ field: seq })))
}

#[derive(Deserialize)]
struct RecentQuery {
    limit: Option<u64>,
}

/// Reads the messages `seqs` of `room`, all at once; missing ones (never
/// acknowledged, or still being written) are left out.
async fn read_messages(
    store: &Store,
    room: &str,
    seqs: impl Iterator<Item = u64>,
) -> Result<Vec<serde_json::Value>, Failure> {
    let reads: Vec<_> = seqs
        .map(|seq| (seq, store.get_async(message_key(room, seq).as_bytes())))
        .collect();
    let mut messages = Vec::with_capacity(reads.len());
    for (seq, read) in reads {
        if let Some(blob) = read.await? {
            let text = String::from_utf8_lossy(&blob.to_bytes()).into_owned();
            messages.push(json!({ "seq": seq, "text": text }));
        }
    }
    Ok(messages)
}

async fn recent_messages(
    State(service): State<Service>,
    Path(room): Path<String>,
    Query(query): Query<RecentQuery>,
) -> Response {
    timed("recent_messages", async {
        check_room(&room)?;
        let limit = query.limit.unwrap_or(50).min(READ_LIMIT_MAX);
        let last = service.rooms.last(&service.store, &room);
        let first = last.saturating_sub(limit) + 1;
        let messages = read_messages(&service.store, &room, first..=last).await?;
        Ok::<_, Failure>(Json(messages))
    })
    .await
}

#[derive(Deserialize)]
struct HistoryQuery {
    after: Option<u64>,
    limit: Option<u64>,
}

async fn history(
    State(service): State<Service>,
    Path(room): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Response {
    timed("history", async {
        check_room(&room)?;
        let after = query.after.unwrap_or(0);
        let limit = query.limit.unwrap_or(READ_LIMIT_MAX).min(READ_LIMIT_MAX) as usize;
        let prefix = message_prefix(&room);
        // Key order is send order: the walk yields sequence numbers rising.
        let seqs: Vec<u64> = service
            .store
            .keys_with_prefix(prefix.as_bytes())
            .filter_map(|key| seq_of(&key[prefix.len()..]))
            .filter(|&seq| seq > after)
            .take(limit)
            .collect();
        let messages = read_messages(&service.store, &room, seqs.into_iter()).await?;
        Ok::<_, Failure>(Json(messages))
    })
    .await
}

async fn post_photo(
    State(service): State<Service>,
    Path(room): Path<String>,
    body: Bytes,
) -> Response {
    timed("post_photo", async {
        check_room(&room)?;
        post_durably(&service, &room, body, photo_key, "id").await
    })
    .await
}

async fn get_photo(
    State(service): State<Service>,
    Path((room, id)): Path<(String, u64)>,
) -> Response {
    timed("get_photo", async {
        check_room(&room)?;
        let Some(blob) = service
            .store
            .get_async(photo_key(&room, id).as_bytes())
            .await?
        else {
            return Err(Failure(
                StatusCode::NOT_FOUND,
                format!("no photo {id} in room {room}"),
            ));
        };
        // The blob's chunks borrow the store's mapped columns: sent as they
        // are, without gathering them into one buffer.
        let len = blob.len();
        let chunks = blob.into_chunks().into_iter().map(Ok::<_, std::io::Error>);
        let body = Body::from_stream(futures_util::stream::iter(chunks));
        Ok(Response::builder()
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, len)
            .body(body)
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
    })
    .await
}

async fn prometheus_page(State(service): State<Service>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        service.prometheus.render(),
    )
        .into_response()
}

/// The answer of an admin endpoint's blocking work: its JSON, its failure,
/// or the task's panic.
fn admin_answer(
    answer: Result<Result<serde_json::Value, Failure>, tokio::task::JoinError>,
) -> Response {
    match answer {
        Ok(Ok(value)) => Json(value).into_response(),
        Ok(Err(failure)) => failure.into_response(),
        Err(e) => Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn admin_stats(State(service): State<Service>) -> Response {
    let store = service.store.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let stats = store.stats();
        let health = store.health();
        json!({
            "blobs": stats.blobs,
            "stripes": stats.stripes,
            "puts": stats.puts,
            "gets": stats.gets,
            "degraded_reads": stats.degraded_reads,
            "hedged_reads": stats.hedged_reads,
            "checksum_failures": stats.checksum_failures,
            "read_errors": stats.read_errors,
            "write_failures": stats.write_failures,
            "degraded_writes": stats.degraded_writes,
            "handoff_columns": stats.handoff_columns,
            "commit_retries": stats.commit_retries,
            "bytes_written": stats.bytes_written,
            "checkpoints": stats.checkpoints,
            "checkpoint_deltas": stats.checkpoint_deltas,
            "checkpoints_degraded": stats.checkpoints_degraded,
            "checkpoint_failures": stats.checkpoint_failures,
            "checkpoint_bytes": stats.checkpoint_bytes,
            "repair_queue": stats.repair_queue,
            "columns_missing": health.columns_missing,
            "columns_away": health.columns_away,
            "survives_any_site_loss": health.survives_any_site_loss,
            "nodes_down": health.nodes.iter().filter(|n| !n.reachable).map(|n| n.name.clone()).collect::<Vec<_>>(),
        })
    })
    .await;
    admin_answer(answer.map(Ok))
}

async fn admin_burn(State(service): State<Service>, Path(site): Path<String>) -> Response {
    let answer = tokio::task::spawn_blocking(move || {
        let layout = service.store.layout();
        let Some(site_id) = layout.site_by_name(&site) else {
            return Err(Failure(StatusCode::NOT_FOUND, format!("no site {site:?}")));
        };
        let mut burned = Vec::new();
        let mut wiped = Vec::new();
        for &id in &layout.site(site_id).nodes {
            let spec = layout.node(id);
            if service.factory.burn(&spec.name) {
                burned.push(spec.name.clone());
            }
            if let Location::Dir(path) = &spec.location {
                match std::fs::remove_dir_all(path) {
                    Ok(()) => wiped.push(path.display().to_string()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(Failure(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            format!("deleting {}: {e}", path.display()),
                        ));
                    }
                }
            }
        }
        // The store notices at once (it checks its nodes).
        let health = service.store.health();
        Ok(json!({
            "site": site,
            "burned": burned,
            "wiped": wiped,
            "nodes_down": health.nodes.iter().filter(|n| !n.reachable).map(|n| n.name.clone()).collect::<Vec<_>>(),
            "survives_any_site_loss": health.survives_any_site_loss,
        }))
    })
    .await;
    admin_answer(answer)
}

async fn admin_repair(State(service): State<Service>) -> Response {
    let answer = tokio::task::spawn_blocking(move || {
        let report = service.store.repair(&RepairOptions::default())?;
        let health = service.store.health();
        Ok::<_, Failure>(json!({
            "stripes_needing_repair": report.stripes_needing_repair,
            "stripes_repaired": report.stripes_repaired,
            "columns_rebuilt": report.columns_rebuilt,
            "columns_moved_home": report.columns_moved_home,
            "stripes_unrepairable": report.stripes_unrepairable,
            "nodes_revived": report.nodes_revived,
            "bytes_read": report.bytes_read,
            "bytes_written": report.bytes_written,
            "seconds": report.elapsed.as_secs_f64(),
            "columns_missing": health.columns_missing,
            "columns_away": health.columns_away,
            "survives_any_site_loss": health.survives_any_site_loss,
        }))
    })
    .await;
    admin_answer(answer)
}
