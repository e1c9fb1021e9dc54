//! An object store over a simulated node's disk, for the real
//! [`ObjectNode`](crate::node::ObjectNode): an in-memory bucket
//! (`object_store`'s `InMemory`) that lives in the [`World`], so it
//! survives the process, with the faults of an object service applied and
//! every request traced.
//!
//! The object node runs on the simulator's executor (`executor.rs`): every
//! request is polled on the thread that called the node, and completes
//! when it is first polled (the in-memory store never waits), except a
//! hung lease read, which never answers: the node's own timeout, a timer
//! on simulated time, ends it. A put whose answer is lost after the
//! service applied it answers a timeout error, as the HTTP client's own
//! timeout would.
//!
//! Faults, per disk:
//! - unreachable, or the bucket gone (a vanished directory): every request
//!   fails;
//! - a full disk: puts are refused (a quota);
//! - read EIO: gets fail;
//! - a failed sync: the next put is applied but answers a timeout;
//! - a crash under way: a put or delete lands whole or not at all, and
//!   fails either way (objects are never torn);
//! - lease reads that fail or hang, for the handles opened before the
//!   fault (one writer's view of the lease, as a proxy or a partition
//!   would give it);
//! - a stale listing: listings still show objects deleted earlier, whose
//!   reads answer "not found" (objects vanishing between a listing and a
//!   read, as a superseded writer's compaction or a lagging index makes
//!   them).

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

use super::rng::mix;
use super::world::{DELETED_KEPT, Disk, UNREACHABLE_US, World};

const OP_PUT: u64 = 11;
const OP_GET: u64 = 12;
const OP_HEAD: u64 = 13;
const OP_DELETE: u64 = 14;
const OP_LIST: u64 = 15;

/// The simulator's `request_timeout` (how long the object node's lease
/// check waits), in microseconds.
pub(crate) const REQUEST_TIMEOUT_US: u64 = 2_000_000;

/// One handle's view of a simulated node's bucket.
#[derive(Clone, Debug)]
pub(crate) struct SimBucket {
    pub world: Arc<World>,
    pub index: usize,
    /// The world's open count when this handle was made (lease faults aim
    /// at the handles opened before them).
    pub opened: u64,
    /// The process this handle belongs to: a crash ends it.
    pub process: u64,
}

impl std::fmt::Display for SimBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SimBucket({})", self.index)
    }
}

fn failure(why: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "SimBucket",
        source: why.to_owned().into(),
    }
}

fn is_lease(path: &Path) -> bool {
    path.as_ref().split('/').any(|part| part == "lease")
}

/// Why a request is not served.
enum Refused {
    /// It fails with this error.
    Fails(object_store::Error),
    /// It never answers (a hung lease read).
    Hangs,
}

impl From<object_store::Error> for Refused {
    fn from(e: object_store::Error) -> Refused {
        Refused::Fails(e)
    }
}

impl Refused {
    /// The error of a request that cannot hang.
    fn error(self) -> object_store::Error {
        match self {
            Refused::Fails(e) => e,
            Refused::Hangs => failure("no answer within the request timeout"),
        }
    }
}

/// A request that never answers: pending until the caller drops it.
async fn hang<T>() -> T {
    std::future::pending().await
}

/// What a crash leaves of a put or delete under way.
enum Fate {
    Done,
    Lost,
}

impl SimBucket {
    /// Enters a request: its simulated time, whether this handle and the
    /// bucket answer, and the faults that refuse it before it is applied.
    fn enter(
        &self,
        op: u64,
        path: Option<&Path>,
    ) -> std::result::Result<std::sync::MutexGuard<'_, Disk>, Refused> {
        let disk = self.world.disk(self.index);
        let unreachable = disk.unreachable || !disk.present;
        self.world.advance(if unreachable {
            UNREACHABLE_US
        } else {
            disk.latency_us
        });
        if self.world.process() != self.process {
            return Err(failure("this process is gone").into());
        }
        if disk.unreachable {
            return Err(failure("unreachable").into());
        }
        if !disk.present {
            return Err(failure("the bucket is gone").into());
        }
        let bucket = disk
            .bucket
            .as_ref()
            .ok_or_else(|| failure("not an object node"))?;
        let lease_read = matches!(op, OP_GET | OP_HEAD | OP_LIST) && path.is_some_and(is_lease);
        if let Some(fault) = bucket.lease_fault
            && lease_read
            && self.opened < fault.opened_before
        {
            if fault.hang {
                return Err(Refused::Hangs);
            }
            return Err(failure("503 Service Unavailable").into());
        }
        if op == OP_GET && disk.read_eio {
            return Err(failure("500 Internal Error (disk read)").into());
        }
        if op == OP_PUT && disk.full && !path.is_some_and(is_lease) {
            return Err(failure("507 Insufficient Storage").into());
        }
        Ok(disk)
    }

    /// The fate of a put or delete while a crash is under way, drawn from
    /// the disk's own call count.
    fn fate(&self, disk: &mut Disk) -> Option<Fate> {
        disk.calls += 1;
        if !self
            .world
            .crashing
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return None;
        }
        let draw = mix(self.world.seed ^ mix(self.index as u64 ^ (disk.calls << 16)));
        let done = self
            .world
            .crash_done_per_mille
            .load(std::sync::atomic::Ordering::Acquire);
        Some(if draw % 1000 < done {
            Fate::Done
        } else {
            Fate::Lost
        })
    }

    fn record(&self, disk: &mut Disk, op: u64, path: &Path, offset: u64, len: u64, crc: u32) {
        let name = u64::from(crc32fast::hash(path.as_ref().as_bytes()));
        if self.world.io_log {
            eprintln!(
                "io node {} op {op} object {path} at {offset} len {len} crc {crc:08x}",
                self.index
            );
        }
        disk.record(op, name, offset, len, crc);
    }

    fn put_now(&self, path: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        let mut disk = self.enter(OP_PUT, Some(path)).map_err(Refused::error)?;
        let bytes = payload.iter().fold(Vec::new(), |mut all, part| {
            all.extend_from_slice(part);
            all
        });
        let crc = crc32fast::hash(&bytes);
        self.record(&mut disk, OP_PUT, path, 0, bytes.len() as u64, crc);
        let fate = self.fate(&mut disk);
        if let Some(Fate::Lost) = fate {
            return Err(failure("the process died before the request was sent"));
        }
        let bucket = disk.bucket.as_ref().map(|b| Arc::clone(&b.bucket));
        let bucket = bucket.ok_or_else(|| failure("not an object node"))?;
        let done = bucket
            .put_opts(path, PutPayload::from(bytes), opts)
            .now_or_never()
            .unwrap_or_else(|| Err(failure("the in-memory store did not answer at once")))?;
        if fate.is_some() {
            return Err(failure("the process died before the answer came"));
        }
        if std::mem::take(&mut disk.sync_fail_next) {
            return Err(failure("timed out (the request was applied)"));
        }
        Ok(done)
    }

    fn get_now(&self, path: &Path, options: GetOptions) -> std::result::Result<GetResult, Refused> {
        let op = if options.head { OP_HEAD } else { OP_GET };
        let mut disk = self.enter(op, Some(path))?;
        let (start, len) = match &options.range {
            Some(GetRange::Bounded(r)) => (r.start, r.end.saturating_sub(r.start)),
            Some(GetRange::Offset(o)) => (*o, u64::MAX),
            Some(GetRange::Suffix(s)) => (u64::MAX, *s),
            None => (0, u64::MAX),
        };
        let bucket = disk.bucket.as_ref().map(|b| Arc::clone(&b.bucket));
        let bucket = bucket.ok_or_else(|| failure("not an object node"))?;
        let got = bucket
            .get_opts(path, options)
            .now_or_never()
            .unwrap_or_else(|| Err(failure("the in-memory store did not answer at once")));
        let found = u32::from(got.is_ok());
        self.record(&mut disk, op, path, start, len, found);
        Ok(got?)
    }

    fn delete_now(&self, path: &Path) -> Result<()> {
        let mut disk = self.enter(OP_DELETE, Some(path)).map_err(Refused::error)?;
        self.record(&mut disk, OP_DELETE, path, 0, 0, 0);
        let fate = self.fate(&mut disk);
        if let Some(Fate::Lost) = fate {
            return Err(failure("the process died before the request was sent"));
        }
        let Some(state) = disk.bucket.as_mut() else {
            return Err(failure("not an object node"));
        };
        let meta = state
            .bucket
            .get_opts(path, GetOptions::new().with_head(true))
            .now_or_never()
            .and_then(|r| r.ok())
            .map(|r| r.meta);
        let bucket = Arc::clone(&state.bucket);
        let deleted = bucket
            .delete_stream(futures_util::stream::iter([Ok(path.clone())]).boxed())
            .next()
            .now_or_never()
            .flatten();
        if let Some(meta) = meta {
            state.deleted.push(meta);
            if state.deleted.len() > DELETED_KEPT {
                state.deleted.remove(0);
            }
        }
        match deleted {
            Some(Err(e)) => return Err(e),
            _ if fate.is_some() => {
                return Err(failure("the process died before the answer came"));
            }
            _ => {}
        }
        Ok(())
    }

    fn list_now(
        &self,
        prefix: Option<&Path>,
    ) -> std::result::Result<Vec<Result<ObjectMeta>>, Refused> {
        let mut disk = match self.enter(OP_LIST, prefix) {
            Ok(disk) => disk,
            Err(Refused::Fails(e)) => return Ok(vec![Err(e)]),
            Err(Refused::Hangs) => return Err(Refused::Hangs),
        };
        let Some(state) = disk.bucket.as_ref() else {
            return Ok(vec![Err(failure("not an object node"))]);
        };
        let mut metas: Vec<ObjectMeta> =
            match state.bucket.list(prefix).collect::<Vec<_>>().now_or_never() {
                Some(found) => match found.into_iter().collect::<Result<Vec<_>>>() {
                    Ok(metas) => metas,
                    Err(e) => return Ok(vec![Err(e)]),
                },
                None => {
                    return Ok(vec![Err(failure(
                        "the in-memory store did not answer at once",
                    ))]);
                }
            };
        if state.stale_listing {
            for gone in &state.deleted {
                let under = prefix.is_none_or(|p| gone.location.prefix_matches(p));
                if under && !metas.iter().any(|m| m.location == gone.location) {
                    metas.push(gone.clone());
                }
            }
        }
        metas.sort_by(|a, b| a.location.cmp(&b.location));
        let listed = metas.len() as u64;
        let hash = metas.iter().fold(0u32, |h, m| {
            h ^ crc32fast::hash(m.location.as_ref().as_bytes())
        });
        let prefix = prefix.cloned().unwrap_or_default();
        self.record(&mut disk, OP_LIST, &prefix, 0, listed, hash);
        Ok(metas.into_iter().map(Ok).collect())
    }
}

#[async_trait]
impl ObjectStore for SimBucket {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.put_now(location, payload, opts)
    }

    async fn put_multipart_opts(
        &self,
        _location: &Path,
        _opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        Err(object_store::Error::NotImplemented {
            operation: "multipart uploads".into(),
            implementer: "SimBucket".into(),
        })
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        match self.get_now(location, options) {
            Ok(got) => Ok(got),
            Err(Refused::Fails(e)) => Err(e),
            Err(Refused::Hangs) => hang().await,
        }
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let this = self.clone();
        locations
            .map(move |location| {
                let location = location?;
                this.delete_now(&location)?;
                Ok(location)
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        match self.list_now(prefix) {
            Ok(listed) => futures_util::stream::iter(listed).boxed(),
            Err(_) => futures_util::stream::pending().boxed(),
        }
    }

    async fn list_with_delimiter(&self, _prefix: Option<&Path>) -> Result<ListResult> {
        Err(object_store::Error::NotImplemented {
            operation: "listings with a delimiter".into(),
            implementer: "SimBucket".into(),
        })
    }

    async fn copy_opts(&self, _from: &Path, _to: &Path, _options: CopyOptions) -> Result<()> {
        Err(object_store::Error::NotImplemented {
            operation: "copies".into(),
            implementer: "SimBucket".into(),
        })
    }
}
