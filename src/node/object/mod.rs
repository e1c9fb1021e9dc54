//! A [`Node`] on an object store: an S3 bucket prefix (AWS, MinIO, Ceph
//! RGW, SeaweedFS, Garage, ...), a GCS or Azure Blob prefix, or a `file://`
//! directory, through the `object_store` crate.
//!
//! # Layout of the prefix
//!
//! ```text
//! <prefix>/lease                          the writer's lease (see below)
//! <prefix>/<generation:016x>/<seq:06x>.seg one object per durable append
//! ```
//!
//! Each [`Node::append`] batch becomes one immutable object: a segment
//! header followed by the batch's column records, byte for byte what a
//! local node appends to its segment file (see `docs/FORMAT.md`). The batch
//! is durable when the object store acknowledges the `PUT`; objects are
//! written with `PutMode::Create`, so nothing is ever overwritten, and a
//! failed `PUT` leaves either the whole object or none of it (never half a
//! record). A [`RecordLocation`] offset is `seq << 40 | offset in object`.
//!
//! Reads are range `GET`s returning the response body as [`Bytes`].
//! Opening the node lists the prefix once (the object sizes bound reads and
//! answer [`Node::generations`] without a request); [`Node::scan`] fetches a
//! generation's objects concurrently: small objects whole (every checksum
//! verified, like a local scan), large ones only their record headers by
//! range `GET`s (header checksums verified; payload checksums are verified
//! by every read and by scrub).
//!
//! # Concurrency, retries, failures
//!
//! Requests run on the engine's own tokio runtime (threads `geoshard-io`,
//! shared by every node of the process): each call spawns its request
//! there and waits on a plain channel, so the synchronous API works from
//! any thread, also from inside a caller's tokio runtime (call it through
//! `spawn_blocking` there, as any blocking I/O). At most [`ObjectOptions::max_in_flight`] run at once per
//! node. Retryable failures (connection errors, timeouts, 5xx) are retried
//! with exponential backoff up to [`ObjectOptions::max_retries`] times
//! within [`ObjectOptions::retry_timeout`]; what still fails is reported as
//! [`Error::Unavailable`], and the store marks the node down and goes on as
//! its write policy says.
//!
//! # Single writer: the lease
//!
//! Opening a node takes the lease object `<prefix>/lease` with a
//! conditional put (`PutMode::Create`, or `PutMode::Update` with the etag of
//! the lease it read), so exactly one opener wins each round. Every append
//! re-reads the lease in parallel with its `PUT`: a writer that finds
//! another holder stops with [`Error::Superseded`] (and removes the object
//! it just wrote, which was never acknowledged). That is what stops the old
//! writer after a failover across regions, when the old site was not dead
//! but only cut off. The window is one in-flight append per node.
//!
//! ```no_run
//! use geoshard::layout::{Remote, Secret};
//! use geoshard::node::{Node, ObjectNode, ObjectOptions};
//!
//! let remote = Remote {
//!     endpoint: Some("http://127.0.0.1:8333".into()),
//!     region: Some("us-east-1".into()),
//!     allow_http: true,
//!     access_key_id: Some(Secret::Env("S3_KEY_ID".into())),
//!     secret_access_key: Some(Secret::Env("S3_SECRET".into())),
//!     ..Remote::default()
//! };
//! let node = ObjectNode::open("seoul-1", "s3://geoshard/seoul-1", Some(&remote), &ObjectOptions::default())?;
//! println!("generations: {:?}", node.generations()?);
//! # Ok::<(), geoshard::Error>(())
//! ```

mod connect;
pub(crate) mod runtime;

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use tokio::sync::Semaphore;

use super::{Capacity, CorruptRegion, Node, RecordLocation, RecordRef, Scan, ScannedRecord};
use crate::format::{
    ColumnHeader, HEADER_LEN_MAX, SEGMENT_HEADER_LEN, SegmentRecord, SegmentScan,
    decode_segment_header, encode_segment_header, scan_segment,
};
use crate::layout::Remote;
use crate::{Error, Result};

/// Bits of a [`RecordLocation`] offset that hold the offset inside an
/// object; the bits above hold the object's sequence number.
const SEQ_SHIFT: u32 = 40;
const OFFSET_MASK: u64 = (1 << SEQ_SHIFT) - 1;
/// Most objects (appends) per generation.
const SEQ_MAX: u64 = (1 << 24) - 1;
/// Objects up to this size are scanned whole (all checksums verified);
/// larger ones by their record headers only.
const SCAN_WHOLE_MAX: u64 = 256 << 10;
const LEASE_NAME: &str = "lease";
const LEASE_LEN_MAX: usize = 4096;

/// Options of an [`ObjectNode`]: concurrency, timeouts, retries, fencing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectOptions {
    /// Most requests in flight at once on this node (default 64).
    pub max_in_flight: usize,
    /// Timeout of one request attempt, from connect to the last byte of the
    /// body (default 30 s).
    pub request_timeout: Duration,
    /// Timeout to establish a connection (default 5 s).
    pub connect_timeout: Duration,
    /// Retries of a failed retryable request (default 3), with exponential
    /// backoff from 50 ms up to 2 s.
    pub max_retries: usize,
    /// No retry starts after this long since the first attempt
    /// (default 10 s).
    pub retry_timeout: Duration,
    /// Take the single-writer lease on open and check it on every append
    /// (default true). Only for read-only tools and benchmarks: two writers
    /// without a lease corrupt nothing on their own, but the store's
    /// stripes would interleave.
    pub lease: bool,
}

impl Default for ObjectOptions {
    fn default() -> Self {
        ObjectOptions {
            max_in_flight: 64,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            max_retries: 3,
            retry_timeout: Duration::from_secs(10),
            lease: true,
        }
    }
}

/// The objects of one generation: sequence number to object size.
#[derive(Debug, Default)]
struct Generation {
    next_seq: u64,
    objects: BTreeMap<u64, u64>,
}

/// A node on an object store; see the [module docs](self).
pub struct ObjectNode {
    name: String,
    url: String,
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    limit: Arc<Semaphore>,
    max_in_flight: usize,
    generations: RwLock<BTreeMap<u64, Generation>>,
    /// Our lease object's body, when leasing.
    lease: Option<Bytes>,
    /// Why appends are refused, once superseded.
    superseded: Mutex<Option<String>>,
}

impl std::fmt::Debug for ObjectNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectNode")
            .field("name", &self.name)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl ObjectNode {
    /// Opens the node at `url` (`s3://bucket/prefix`, `gs://…`, `az://…`,
    /// `file:///dir`), with the connection settings `remote`: lists its
    /// objects and, unless `options.lease` is off, takes the writer lease.
    ///
    /// # Errors
    /// [`Error::InvalidLayout`] for a URL or setting that cannot work (the
    /// fix is named); [`Error::Unavailable`] when the store cannot be
    /// reached (after retries) or refuses the credentials;
    /// [`Error::InvalidArgument`] for options out of range.
    pub fn open(
        name: &str,
        url: &str,
        remote: Option<&Remote>,
        options: &ObjectOptions,
    ) -> Result<ObjectNode> {
        if options.max_in_flight == 0 {
            return Err(Error::invalid("max_in_flight must be at least 1"));
        }
        let (store, prefix) = connect::connect(name, url, remote, options)?;
        let mut node = ObjectNode {
            name: name.to_owned(),
            url: url.to_owned(),
            store,
            prefix,
            limit: Arc::new(Semaphore::new(options.max_in_flight)),
            max_in_flight: options.max_in_flight,
            generations: RwLock::new(BTreeMap::new()),
            lease: None,
            superseded: Mutex::new(None),
        };
        if options.lease {
            node.lease = Some(node.take_lease()?);
        }
        node.list_all()?;
        tracing::debug!(node = name, url, "object node opened");
        Ok(node)
    }

    /// The node's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn object_path(&self, generation: u64, seq: u64) -> Path {
        self.prefix
            .clone()
            .join(format!("{generation:016x}"))
            .join(format!("{seq:06x}.seg"))
    }

    fn generation_path(&self, generation: u64) -> Path {
        self.prefix.clone().join(format!("{generation:016x}"))
    }

    fn lease_path(&self) -> Path {
        self.prefix.clone().join(LEASE_NAME)
    }

    /// Runs a request future on the runtime under the in-flight limit.
    fn run<T: Send + 'static>(
        &self,
        what: impl Into<String>,
        future: impl Future<Output = object_store::Result<T>> + Send + 'static,
    ) -> Result<T> {
        let limit = Arc::clone(&self.limit);
        let result = runtime::block_on(async move {
            let _permit = limit.acquire_owned().await;
            future.await
        })?;
        result.map_err(|e| self.error(&what.into(), e))
    }

    /// Maps an `object_store` error to ours.
    fn error(&self, what: &str, error: object_store::Error) -> Error {
        use object_store::Error as E;
        match error {
            E::NotFound { .. } => {
                Error::invalid(format!("{what} on node {}: not found", self.name))
            }
            E::AlreadyExists { .. } | E::Precondition { .. } => Error::Superseded {
                node: self.name.clone(),
                reason: format!("{what}: the object was written by another writer"),
            },
            E::InvalidPath { .. } | E::NotSupported { .. } | E::NotImplemented { .. } => {
                Error::invalid(format!("{what} on node {}: {error}", self.name))
            }
            other => Error::Unavailable {
                node: self.name.clone(),
                reason: format!("{what}: {other}"),
            },
        }
    }

    /// Lists the prefix and records every segment object.
    fn list_all(&self) -> Result<()> {
        let store = Arc::clone(&self.store);
        let prefix = self.prefix.clone();
        let metas = self.run("listing", async move {
            let mut stream = store.list(Some(&prefix));
            let mut out = Vec::new();
            while let Some(meta) = stream.next().await {
                let meta = meta?;
                let parts: Vec<String> = match meta.location.prefix_match(&prefix) {
                    Some(parts) => parts.map(|p| p.as_ref().to_owned()).collect(),
                    None => continue,
                };
                out.push((parts, meta.size));
            }
            Ok(out)
        })?;
        let mut generations = BTreeMap::<u64, Generation>::new();
        for (parts, size) in metas {
            let [generation, object] = &parts[..] else {
                continue;
            };
            let Some((generation, seq)) = parse_object_name(generation, object) else {
                tracing::warn!(node = %self.name, object = ?parts, "unknown object under the node's prefix; ignored");
                continue;
            };
            let entry = generations.entry(generation).or_default();
            entry.objects.insert(seq, size);
            entry.next_seq = entry.next_seq.max(seq + 1);
        }
        *self.write_generations() = generations;
        Ok(())
    }

    fn read_generations(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u64, Generation>> {
        self.generations
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_generations(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<u64, Generation>> {
        self.generations
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn superseded_reason(&self) -> Option<String> {
        self.superseded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Takes the lease: creates it, or replaces the lease found with a
    /// conditional update, so that of two openers racing exactly one wins a
    /// round (the other retries and supersedes it).
    fn take_lease(&self) -> Result<Bytes> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let holder = format!(
            "{}:{}:{}:{}",
            hostname(),
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let store = Arc::clone(&self.store);
        let path = self.lease_path();
        self.run("taking the lease", async move {
            let mut last = None;
            for _ in 0..5 {
                let (epoch, mode) = match store.get(&path).await {
                    Ok(found) => {
                        let version = UpdateVersion {
                            e_tag: found.meta.e_tag.clone(),
                            version: found.meta.version.clone(),
                        };
                        let body = found.bytes().await?;
                        (lease_epoch(&body) + 1, PutMode::Update(version))
                    }
                    Err(object_store::Error::NotFound { .. }) => (1, PutMode::Create),
                    Err(e) => return Err(e),
                };
                let body = Bytes::from(format!(
                    "geoshard-lease 1\nepoch {epoch}\nholder {holder}\n"
                ));
                let put = |mode| {
                    store.put_opts(
                        &path,
                        PutPayload::from(body.clone()),
                        PutOptions::from(mode),
                    )
                };
                match put(mode).await {
                    Ok(_) => return Ok(body),
                    Err(
                        e @ (object_store::Error::AlreadyExists { .. }
                        | object_store::Error::Precondition { .. }),
                    ) => last = Some(e),
                    // A store without conditional updates (a local file
                    // system): overwrite; fencing then rests on appends'
                    // lease checks only.
                    Err(
                        object_store::Error::NotImplemented { .. }
                        | object_store::Error::NotSupported { .. },
                    ) => {
                        put(PutMode::Overwrite).await?;
                        return Ok(body);
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(last.unwrap_or_else(|| object_store::Error::Generic {
                store: "geoshard",
                source: "the lease kept changing".into(),
            }))
        })
    }

    /// Marks the node superseded and returns the error to report.
    fn supersede(&self, reason: String) -> Error {
        tracing::error!(node = %self.name, %reason, "another writer holds the lease; appends stop");
        let mut slot = self
            .superseded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        slot.get_or_insert(reason.clone());
        Error::Superseded {
            node: self.name.clone(),
            reason,
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into())
}

/// The epoch in a lease body; 0 for anything unreadable (any bytes may be
/// hostile).
fn lease_epoch(body: &[u8]) -> u64 {
    let Some(body) = body.get(..body.len().min(LEASE_LEN_MAX)) else {
        return 0;
    };
    std::str::from_utf8(body)
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("epoch "))
                .and_then(|epoch| epoch.trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
}

/// `(generation, seq)` of a segment object `<generation:016x>/<seq:06x>.seg`.
fn parse_object_name(generation: &str, object: &str) -> Option<(u64, u64)> {
    let seq = object.strip_suffix(".seg")?;
    if generation.len() != 16 || seq.len() != 6 {
        return None;
    }
    let generation = u64::from_str_radix(generation, 16).ok()?;
    let seq = u64::from_str_radix(seq, 16).ok()?;
    Some((generation, seq))
}

/// What the lease check found.
enum LeaseCheck {
    Ours,
    Other(String),
    /// The lease object is gone: the prefix was wiped (a lost site).
    Gone,
    Unknown,
}

async fn check_lease(store: Arc<dyn ObjectStore>, path: Path, ours: Bytes) -> LeaseCheck {
    match store.get(&path).await {
        Ok(found) => match found.bytes().await {
            Ok(body) if body == ours => LeaseCheck::Ours,
            Ok(body) => LeaseCheck::Other(format!(
                "the lease is now at epoch {} (ours is epoch {})",
                lease_epoch(&body),
                lease_epoch(&ours)
            )),
            Err(_) => LeaseCheck::Unknown,
        },
        Err(object_store::Error::NotFound { .. }) => LeaseCheck::Gone,
        Err(_) => LeaseCheck::Unknown,
    }
}

/// Fetches the records of one segment object: whole when small, else
/// record headers by range requests (falling back to the whole object when
/// a header does not decode, so damage is found and resynchronised on).
async fn scan_object(
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
    generation: u64,
) -> object_store::Result<SegmentScan> {
    if size > SCAN_WHOLE_MAX
        && let Some(scan) = scan_headers(&*store, &path, size, generation).await?
    {
        return Ok(scan);
    }
    let bytes = store.get(&path).await?.bytes().await?;
    Ok(scan_segment(&bytes, generation))
}

/// The header walk of [`scan_object`]; `None` when something needs the
/// whole object to judge.
async fn scan_headers(
    store: &dyn ObjectStore,
    path: &Path,
    size: u64,
    generation: u64,
) -> object_store::Result<Option<SegmentScan>> {
    let window = |start: u64| start..size.min(start + HEADER_LEN_MAX as u64);
    let mut range: Range<u64> = window(0);
    let mut bytes = store.get_range(path, range.clone()).await?;
    match bytes.get(..SEGMENT_HEADER_LEN).map(decode_segment_header) {
        Some(Ok(found)) if found == generation => {}
        _ => return Ok(None),
    }
    let mut scan = SegmentScan::default();
    let mut pos = SEGMENT_HEADER_LEN as u64;
    while pos < size {
        if pos < range.start || window(pos).end > range.end {
            range = window(pos);
            bytes = store.get_range(path, range.clone()).await?;
        }
        let Some(slice) = bytes.get((pos - range.start) as usize..) else {
            return Ok(None);
        };
        let Ok((header, header_len)) = ColumnHeader::decode(slice) else {
            return Ok(None);
        };
        let payload_offset = pos + header_len as u64;
        let payload_len = header.payload_len();
        let end = payload_offset + u64::from(payload_len);
        if header.generation != generation || end > size {
            return Ok(None);
        }
        scan.records.push(SegmentRecord {
            header,
            record_offset: pos,
            payload_offset,
            payload_len,
        });
        pos = end;
    }
    scan.intact_len = size;
    Ok(Some(scan))
}

impl Node for ObjectNode {
    fn name(&self) -> &str {
        &self.name
    }

    fn append(&self, generation: u64, records: &[RecordRef<'_>]) -> Result<Vec<RecordLocation>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(reason) = self.superseded_reason() {
            return Err(Error::Superseded {
                node: self.name.clone(),
                reason,
            });
        }
        for record in records {
            record.validate(generation)?;
        }
        let total: usize = SEGMENT_HEADER_LEN
            + records
                .iter()
                .map(|r| r.header.encoded_len() + r.payload.len())
                .sum::<usize>();
        if total as u64 > OFFSET_MASK {
            return Err(Error::LimitExceeded {
                what: "object-store append length",
                limit: OFFSET_MASK,
                actual: total as u64,
            });
        }
        let mut body = Vec::with_capacity(total);
        body.extend_from_slice(&encode_segment_header(generation));
        let mut offsets = Vec::with_capacity(records.len());
        for record in records {
            record.header.encode_into(&mut body)?;
            offsets.push((body.len() as u64, record.payload.len() as u32));
            body.extend_from_slice(record.payload);
        }
        let seq = {
            let mut generations = self.write_generations();
            let entry = generations.entry(generation).or_default();
            let seq = entry.next_seq;
            if seq > SEQ_MAX {
                return Err(Error::LimitExceeded {
                    what: "appends to one object-store generation",
                    limit: SEQ_MAX + 1,
                    actual: seq + 1,
                });
            }
            entry.next_seq += 1;
            seq
        };
        let size = body.len() as u64;
        let path = self.object_path(generation, seq);
        let store = Arc::clone(&self.store);
        let lease = self.lease.clone().map(|ours| (self.lease_path(), ours));
        let limit = Arc::clone(&self.limit);
        // The PUT and the lease check, as one unit of the in-flight limit
        // when the limit allows two.
        let permits = if self.lease.is_some() && self.max_in_flight >= 2 {
            2
        } else {
            1
        };
        let put_path = path.clone();
        let (put, lease_check) = runtime::block_on(async move {
            let _permit = limit.acquire_many_owned(permits).await;
            let put = store.put_opts(
                &put_path,
                PutPayload::from(Bytes::from(body)),
                PutOptions::from(PutMode::Create),
            );
            match lease {
                Some((lease_path, ours)) => {
                    let check = check_lease(Arc::clone(&store), lease_path, ours);
                    let (put, check) = tokio::join!(put, check);
                    let check = match check {
                        LeaseCheck::Ours | LeaseCheck::Unknown => None,
                        other => {
                            // Never acknowledged: take it back.
                            if put.is_ok() {
                                let _ = store.delete(&put_path).await;
                            }
                            Some(other)
                        }
                    };
                    (put, check)
                }
                None => (put.await, None),
            }
        })?;
        match lease_check {
            Some(LeaseCheck::Other(reason)) => return Err(self.supersede(reason)),
            Some(_) => {
                return Err(Error::Unavailable {
                    node: self.name.clone(),
                    reason: "its lease object is gone: the prefix was wiped (reopen the store \
                             or repair to take it back)"
                        .into(),
                });
            }
            None => {}
        }
        match put {
            Ok(_) => {}
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => {
                return Err(self.supersede(format!(
                    "segment object {path} was already written by another writer"
                )));
            }
            Err(e) => return Err(self.error(&format!("appending to generation {generation}"), e)),
        }
        self.write_generations()
            .entry(generation)
            .or_default()
            .objects
            .insert(seq, size);
        Ok(offsets
            .into_iter()
            .map(|(offset, len)| RecordLocation {
                generation,
                offset: seq << SEQ_SHIFT | offset,
                len,
            })
            .collect())
    }

    fn read(&self, generation: u64, offset: u64, len: u32) -> Result<Bytes> {
        let seq = offset >> SEQ_SHIFT;
        let start = offset & OFFSET_MASK;
        let size = self
            .read_generations()
            .get(&generation)
            .and_then(|g| g.objects.get(&seq).copied())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "node {}: no object {seq} in generation {generation}",
                    self.name
                ))
            })?;
        let end = start + u64::from(len);
        if end > size {
            return Err(Error::invalid(format!(
                "node {}: read of {start}..{end} past the end ({size}) of object {seq} of \
                 generation {generation}",
                self.name
            )));
        }
        if len == 0 {
            return Ok(Bytes::new());
        }
        let store = Arc::clone(&self.store);
        let path = self.object_path(generation, seq);
        self.run(format!("reading generation {generation}"), async move {
            store.get_range(&path, start..end).await
        })
    }

    fn scan(&self, generation: u64) -> Result<Scan> {
        let objects: Vec<(u64, u64)> = match self.read_generations().get(&generation) {
            Some(g) => g.objects.iter().map(|(&seq, &size)| (seq, size)).collect(),
            None => return Ok(Scan::default()),
        };
        let store = Arc::clone(&self.store);
        let limit = Arc::clone(&self.limit);
        let paths: Vec<(u64, u64, Path)> = objects
            .iter()
            .map(|&(seq, size)| (seq, size, self.object_path(generation, seq)))
            .collect();
        let scans = self.run(format!("scanning generation {generation}"), async move {
            let tasks = paths.into_iter().map(|(seq, size, path)| {
                let (store, limit) = (Arc::clone(&store), Arc::clone(&limit));
                async move {
                    let _permit = limit.acquire_owned().await;
                    scan_object(store, path, size, generation)
                        .await
                        .map(|scan| (seq, size, scan))
                }
            });
            let mut out: Vec<(u64, u64, SegmentScan)> = futures_util::stream::iter(tasks)
                .buffer_unordered(64)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<object_store::Result<_>>()?;
            out.sort_by_key(|(seq, ..)| *seq);
            Ok(out)
        })?;
        let mut scan = Scan::default();
        for (seq, size, found) in scans {
            let base = seq << SEQ_SHIFT;
            for record in found.records {
                scan.records.push(ScannedRecord {
                    header: record.header,
                    location: RecordLocation {
                        generation,
                        offset: base | record.payload_offset,
                        len: record.payload_len,
                    },
                });
            }
            for damage in found.damaged {
                scan.corrupt.push(CorruptRegion {
                    generation,
                    offset: base | damage.offset,
                    len: damage.len,
                    reason: damage.reason,
                });
            }
            // Objects are written whole: a bad tail is damage, not a torn
            // write.
            if found.intact_len < size {
                scan.corrupt.push(CorruptRegion {
                    generation,
                    offset: base | found.intact_len,
                    len: size - found.intact_len,
                    reason: found
                        .tail_reason
                        .unwrap_or_else(|| "bad bytes at the end of the object".into()),
                });
            }
        }
        Ok(scan)
    }

    fn generations(&self) -> Result<Vec<u64>> {
        Ok(self
            .read_generations()
            .iter()
            .filter(|(_, g)| !g.objects.is_empty())
            .map(|(&generation, _)| generation)
            .collect())
    }

    fn remove_generation(&self, generation: u64) -> Result<()> {
        if let Some(reason) = self.superseded_reason() {
            return Err(Error::Superseded {
                node: self.name.clone(),
                reason,
            });
        }
        let store = Arc::clone(&self.store);
        let prefix = self.generation_path(generation);
        // List rather than trust memory: objects of a failed append may
        // exist without being known.
        self.run(format!("removing generation {generation}"), async move {
            let locations = store
                .list(Some(&prefix))
                .map(|meta| meta.map(|m| m.location))
                .boxed();
            let mut deleted = store.delete_stream(locations);
            while let Some(result) = deleted.next().await {
                match result {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })?;
        self.write_generations().remove(&generation);
        Ok(())
    }

    fn check(&self) -> Result<()> {
        if let Some(reason) = self.superseded_reason() {
            return Err(Error::Superseded {
                node: self.name.clone(),
                reason,
            });
        }
        let Some(ours) = self.lease.clone() else {
            return Ok(());
        };
        let store = Arc::clone(&self.store);
        let path = self.lease_path();
        let found = runtime::block_on(check_lease(store, path, ours))?;
        match found {
            LeaseCheck::Ours => Ok(()),
            LeaseCheck::Other(reason) => Err(self.supersede(reason)),
            LeaseCheck::Gone => Err(Error::Unavailable {
                node: self.name.clone(),
                reason: "its lease object is gone: the prefix was wiped".into(),
            }),
            LeaseCheck::Unknown => Err(Error::Unavailable {
                node: self.name.clone(),
                reason: "the lease could not be read".into(),
            }),
        }
    }

    fn capacity(&self) -> Result<Capacity> {
        let used_bytes = self
            .read_generations()
            .values()
            .flat_map(|g| g.objects.values())
            .sum();
        Ok(Capacity {
            used_bytes,
            // An object store sets no fixed limit here.
            available_bytes: u64::MAX,
        })
    }
}

#[cfg(test)]
#[path = "../../../tests/common/s3.rs"]
mod s3;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::NodeExt;

    /// The conformance suite against a real S3 server (SeaweedFS on
    /// loopback, started by the test; it fails, never skips, without one).
    #[test]
    fn conformance_on_s3() {
        let server = s3::S3Server::shared();
        let remote = Remote {
            endpoint: Some(server.endpoint.clone()),
            region: Some(server.region.clone()),
            allow_http: true,
            access_key_id: Some(crate::layout::Secret::Value(server.access_key_id.clone())),
            secret_access_key: Some(crate::layout::Secret::Value(
                server.secret_access_key.clone(),
            )),
            ..Remote::default()
        };
        let url = format!(
            "s3://geoshard-test/conformance-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        crate::node::conformance::run(|| {
            ObjectNode::open("s3n", &url, Some(&remote), &ObjectOptions::default())
        });
    }

    #[test]
    fn secrets_never_reach_debug_output() {
        let remote = Remote {
            access_key_id: Some(crate::layout::Secret::Value("AKIA-VISIBLE?".into())),
            secret_access_key: Some(crate::layout::Secret::Value("s3cr3t-value".into())),
            options: [(
                "azure_storage_account_key".to_owned(),
                crate::layout::Secret::Value("azure-key-value".into()),
            )]
            .into(),
            ..Remote::default()
        };
        let shown = format!("{remote:?}");
        for secret in ["AKIA-VISIBLE?", "s3cr3t-value", "azure-key-value"] {
            assert!(!shown.contains(secret), "{secret} leaked into Debug");
        }
    }

    #[test]
    fn conformance_on_file_urls() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("file://{}", dir.path().join("node").display());
        crate::node::conformance::run(|| {
            ObjectNode::open("f1", &url, None, &ObjectOptions::default())
        });
    }

    /// Appends `payloads` to `generation` as one batch (column `i % 3` of
    /// stripe `i + 1`); returns the headers and where the records went.
    fn append_samples(
        node: &ObjectNode,
        generation: u64,
        payloads: &[Vec<u8>],
    ) -> (Vec<ColumnHeader>, Vec<RecordLocation>) {
        let headers: Vec<ColumnHeader> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| {
                crate::node::conformance::sample_header(i as u64 + 1, generation, (i % 3) as u16, p)
            })
            .collect();
        let records: Vec<RecordRef<'_>> = headers
            .iter()
            .zip(payloads)
            .map(|(header, payload)| RecordRef { header, payload })
            .collect();
        let locations = node.append(generation, &records).expect("append");
        (headers, locations)
    }

    /// Objects over [`SCAN_WHOLE_MAX`] are scanned by their headers only;
    /// the result must be the whole-object scan's.
    #[test]
    fn large_objects_scan_by_headers_like_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("file://{}", dir.path().join("node").display());
        let node = ObjectNode::open("f1", &url, None, &ObjectOptions::default()).expect("open");
        let payloads: Vec<Vec<u8>> = (0..5)
            .map(|i| crate::node::conformance::sample_payload(i, 90_000 + i as usize * 1000))
            .collect();
        let (headers, locations) = append_samples(&node, 4, &payloads);
        let scan = node.scan(4).expect("scan");
        assert_eq!(scan.records.len(), 5);
        assert!(scan.corrupt.is_empty());
        for ((record, location), header) in scan.records.iter().zip(&locations).zip(&headers) {
            assert_eq!(record.location, *location);
            assert_eq!(&record.header, header);
        }
        let path = node.object_path(4, 0);
        let store = Arc::clone(&node.store);
        let size = *node.read_generations()[&4].objects.get(&0).expect("object");
        assert!(size > SCAN_WHOLE_MAX, "the object is large enough to walk");
        let walked = runtime::block_on(async move { scan_headers(&*store, &path, size, 4).await })
            .expect("runtime")
            .expect("walk")
            .expect("the walk judged the object");
        assert_eq!(walked.records.len(), 5);
    }

    /// Any bytes may be hostile: flip bytes of stored objects (small ones,
    /// scanned whole, and large ones, walked by headers) and reopen. The
    /// scan never panics, and every record it lists either reads back
    /// intact or fails its checksum; nothing else.
    #[test]
    fn hostile_object_bytes_never_panic_a_scan() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("node");
        let url = format!("file://{}", root.display());
        let options = ObjectOptions::default();
        let node = ObjectNode::open("f1", &url, None, &options).expect("open");
        for (generation, len) in [(1u64, 3_000usize), (2, 150_000)] {
            let payloads: Vec<Vec<u8>> = (0..3)
                .map(|i| crate::node::conformance::sample_payload(generation * 10 + i, len))
                .collect();
            append_samples(&node, generation, &payloads);
        }
        drop(node);
        let objects: Vec<std::path::PathBuf> = [1u64, 2]
            .iter()
            .map(|g| root.join(format!("{g:016x}")).join("000000.seg"))
            .collect();
        let originals: Vec<Vec<u8>> = objects
            .iter()
            .map(|path| std::fs::read(path).expect("object on disk"))
            .collect();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..60 {
            for (path, original) in objects.iter().zip(&originals) {
                let mut bytes = original.clone();
                for _ in 0..1 + next() % 4 {
                    // Mostly the first bytes (segment and record headers).
                    let span = if next() % 2 == 0 { 600 } else { bytes.len() };
                    let at = (next() as usize) % span.min(bytes.len());
                    bytes[at] ^= 1 << (next() % 8);
                }
                std::fs::write(path, &bytes).expect("damage");
            }
            let node = ObjectNode::open("f1", &url, None, &options).expect("reopen");
            for generation in [1u64, 2] {
                let scan = node
                    .scan(generation)
                    .expect("a scan reports damage, it does not fail");
                for record in &scan.records {
                    match node.read_payload(record) {
                        Ok(_) | Err(Error::ChecksumMismatch { .. }) => {}
                        Err(other) => panic!("unexpected error {other:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn object_names_parse_strictly() {
        assert_eq!(
            parse_object_name("000000000000000a", "00000b.seg"),
            Some((10, 11))
        );
        for (generation, object) in [
            ("a", "00000b.seg"),
            ("000000000000000a", "b.seg"),
            ("000000000000000a", "00000b.tmp"),
            ("00000000000000zz", "00000b.seg"),
        ] {
            assert_eq!(parse_object_name(generation, object), None);
        }
    }

    #[test]
    fn lease_epoch_of_hostile_bytes_is_zero() {
        assert_eq!(lease_epoch(b"geoshard-lease 1\nepoch 7\nholder x\n"), 7);
        assert_eq!(lease_epoch(b"epoch x"), 0);
        assert_eq!(lease_epoch(&[0xff, 0xfe]), 0);
        assert_eq!(lease_epoch(b""), 0);
    }

    #[test]
    fn a_second_opener_supersedes_the_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("file://{}", dir.path().join("node").display());
        let options = ObjectOptions::default();
        let first = ObjectNode::open("f1", &url, None, &options).expect("open");
        let payload = crate::node::conformance::sample_payload(1, 100);
        let header = crate::node::conformance::sample_header(1, 0, 0, &payload);
        let record = [RecordRef {
            header: &header,
            payload: &payload,
        }];
        first
            .append(0, &record)
            .expect("append while holding the lease");
        let second = ObjectNode::open("f1", &url, None, &options).expect("second open");
        match first.append(0, &record) {
            Err(Error::Superseded { .. }) => {}
            other => panic!("the first writer must stop, got {other:?}"),
        }
        assert!(matches!(
            first.append(0, &record),
            Err(Error::Superseded { .. })
        ));
        assert_eq!(
            second.scan(0).expect("scan").records.len(),
            1,
            "the refused append left nothing visible"
        );
        second.append(0, &record).expect("the new writer writes");
    }
}
