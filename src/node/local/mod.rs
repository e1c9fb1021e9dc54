//! The local directory node: one directory per node, one append-only segment
//! file per generation, a lock file, memory-mapped zero-copy reads and
//! io_uring (or pwrite) group-commit writes.
//!
//! Files by role: [`segment`] (one segment: writer and reader), [`map`]
//! (mmap slices, and the SIGBUS handler that keeps an unreadable mapped
//! page from killing the process), [`scan`] (whole-segment scans for
//! `Node::scan` and recovery, safe against a file cut under them), [`recovery`] (scan and cut torn tails on open),
//! [`io`] (write engines), [`lock`] (single owner), [`fs`] (directory sync,
//! free space).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use bytes::Bytes;

use super::{Capacity, Node, RecordLocation, RecordRef, Scan, SharedSubmission};
use crate::format::NODE_NAME_LEN_MAX;
use crate::{Error, Result};

mod fs;
mod io;
mod lock;
mod manifest;
mod map;
mod recovery;
mod scan;
mod segment;

#[cfg(any(test, feature = "testing"))]
pub(crate) use io::{WriteAndSync, WriteFailure, WriteStandIn};
pub(crate) use map::{MappedWatch, ReplacedMark, mark as mark_replaced};
use segment::{AppendContext, Segment};

/// A batch's answer and, when timed, when it was done.
pub(crate) type DoneAppend = (Result<Vec<RecordLocation>>, Option<Instant>);

/// Which engine a [`LocalNode`] writes with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum IoEngineKind {
    /// io_uring if the kernel allows it, else pwrite (logged once).
    #[default]
    Auto,
    /// io_uring only: opening fails if the kernel refuses it.
    Uring,
    /// `pwritev` + `fdatasync` system calls.
    Pwrite,
}

/// Options of a [`LocalNode`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalOptions {
    /// The write engine.
    pub io_engine: IoEngineKind,
}

impl LocalOptions {
    /// Options with the given write engine.
    pub fn with_io_engine(io_engine: IoEngineKind) -> Self {
        LocalOptions { io_engine }
    }
}

/// A node stored in a local directory.
///
/// Layout of the directory: `LOCK` (held while open) and one
/// `<generation as 16 hex digits>.segment` file per generation; see
/// `docs/FORMAT.md`. Opening recovers every segment: a torn tail is cut
/// off, damage in the middle is kept and reported by [`Node::scan`].
///
/// After a failed sync (or a failed clean-up of a failed write) the node is
/// *fenced*: appends and removals return [`Error::NodeFenced`] until the
/// node is reopened, because what reached the disk is unknown. Reads of
/// durable bytes keep working. A failed write that could be cleaned up
/// (ENOSPC, for example) returns [`Error::Io`] and leaves the node usable.
/// An append whose segment file turns out to be unlinked once it is synced
/// (the node directory was deleted under the running node) returns
/// [`Error::Unavailable`] and fences the node as well: its bytes went to a
/// file nobody can open again.
///
/// A segment file truncated behind the node's back (or a mapped page the
/// medium can no longer read) never kills the process: a read of the lost
/// bytes returns an error or bytes that fail their checksum (zeros), and a
/// scan reports them as damage.
///
/// # Example
/// ```
/// use geoshard::node::{IoEngineKind, LocalNode, LocalOptions, Node};
///
/// let dir = tempfile::tempdir()?;
/// let node = LocalNode::open("a1", dir.path(), &LocalOptions::default())?;
/// assert_ne!(node.io_engine(), IoEngineKind::Auto);
/// assert!(node.generations()?.is_empty());
/// // A second owner is refused while the first is open.
/// let again = LocalNode::open("a1", dir.path(), &LocalOptions::default());
/// assert!(matches!(again, Err(geoshard::Error::Locked { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct LocalNode {
    name: String,
    dir: PathBuf,
    engine: io::Engine,
    segments: RwLock<BTreeMap<u64, Arc<Segment>>>,
    fenced: AtomicBool,
    /// Serialises manifest writes (each picks the slot the other did not).
    manifest_writer: std::sync::Mutex<()>,
    _lock: lock::LockFile,
}

impl std::fmt::Debug for LocalNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalNode")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .field("io_engine", &self.engine.kind())
            .field("fenced", &self.fenced.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl LocalNode {
    /// Opens (creating it if missing) the node directory `dir` under the
    /// stable name `name`, takes its lock and recovers its segments.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty or over-long name;
    /// [`Error::Locked`] when another process (or another open handle) owns
    /// the directory; [`Error::Io`] when the directory cannot be created,
    /// listed or recovered, or when [`IoEngineKind::Uring`] is asked for and
    /// the kernel refuses io_uring.
    pub fn open(
        name: impl Into<String>,
        dir: impl AsRef<Path>,
        options: &LocalOptions,
    ) -> Result<LocalNode> {
        let kind = options.io_engine;
        LocalNode::open_with_engine(name.into(), dir.as_ref(), |name| {
            io::Engine::open(kind).map_err(|e| engine_error(kind, name, e))
        })
    }

    /// [`open`](Self::open), with the node's own appends going through
    /// `stand_in` (a fault injector in tests, see
    /// [`WriteStandIn`](io::WriteStandIn)).
    ///
    /// # Errors
    /// As [`open`](Self::open).
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn open_with_stand_in(
        name: impl Into<String>,
        dir: impl AsRef<Path>,
        options: &LocalOptions,
        stand_in: Arc<dyn WriteStandIn>,
    ) -> Result<LocalNode> {
        let kind = options.io_engine;
        LocalNode::open_with_engine(name.into(), dir.as_ref(), |name| {
            let engine = io::Engine::open(kind).map_err(|e| engine_error(kind, name, e))?;
            Ok(io::Engine::StoodIn {
                engine: Box::new(engine),
                stand_in,
            })
        })
    }

    /// Opens the node with the engine `engine` sets up (after the name is
    /// checked and the directory locked).
    fn open_with_engine(
        name: String,
        dir: &Path,
        engine: impl FnOnce(&str) -> Result<io::Engine>,
    ) -> Result<LocalNode> {
        if name.is_empty() || name.len() > NODE_NAME_LEN_MAX {
            return Err(Error::invalid(format!(
                "node name must be 1 to {NODE_NAME_LEN_MAX} bytes, got {}",
                name.len()
            )));
        }
        let dir = dir.to_path_buf();
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating node directory {}", dir.display()), e))?;
        let lock = lock::acquire(&dir, &name)?;
        let engine = engine(&name)?;
        let mut generations = Vec::new();
        let listing = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(format!("listing node directory {}", dir.display()), e))?;
        for entry in listing {
            let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
            if let Some(generation) = entry
                .file_name()
                .to_str()
                .and_then(segment::parse_file_name)
            {
                generations.push(generation);
            }
        }
        let mut segments = BTreeMap::new();
        let mut removed_any = false;
        for generation in generations {
            match recovery::recover(&name, &dir, generation)? {
                Some(segment) => {
                    segments.insert(generation, Arc::new(segment));
                }
                None => removed_any = true,
            }
        }
        if removed_any {
            fs::sync_dir(&dir).map_err(|e| Error::io(format!("syncing {}", dir.display()), e))?;
        }
        Ok(LocalNode {
            name,
            dir,
            engine,
            segments: RwLock::new(segments),
            fenced: AtomicBool::new(false),
            manifest_writer: std::sync::Mutex::new(()),
            _lock: lock,
        })
    }

    /// The write engine in use: [`IoEngineKind::Uring`] or
    /// [`IoEngineKind::Pwrite`], never `Auto`.
    pub fn io_engine(&self) -> IoEngineKind {
        self.engine.kind()
    }

    /// The node directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether an earlier failure fenced the node (see the type docs).
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    fn check_fence(&self) -> Result<()> {
        if self.is_fenced() {
            return Err(Error::NodeFenced {
                node: self.name.clone(),
            });
        }
        Ok(())
    }

    /// [`Node::read`], through the mapping for point reads when `point`.
    fn read_as(&self, generation: u64, offset: u64, len: u32, point: bool) -> Result<Bytes> {
        let Some(segment) = self.segment(generation) else {
            return Err(self.out_of_range(generation, offset, len, 0));
        };
        let durable_len = segment.durable_len().map_err(|e| {
            Error::io(
                format!("scanning segment {} of node {}", generation, self.name),
                e,
            )
        })?;
        let end = offset
            .checked_add(u64::from(len))
            .filter(|&end| end <= durable_len)
            .ok_or_else(|| self.out_of_range(generation, offset, len, durable_len))?;
        let bytes = segment.read(offset, end, point).map_err(|e| {
            Error::io(
                format!("reading segment {} of node {}", generation, self.name),
                e,
            )
        })?;
        map::warn_if_pages_were_replaced();
        Ok(bytes)
    }

    fn segment(&self, generation: u64) -> Option<Arc<Segment>> {
        let segments = self.segments.read().unwrap_or_else(PoisonError::into_inner);
        segments.get(&generation).cloned()
    }

    fn segment_for_append(&self, generation: u64) -> Result<Arc<Segment>> {
        if let Some(segment) = self.segment(generation) {
            return Ok(segment);
        }
        let mut segments = self
            .segments
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(segment) = segments.get(&generation) {
            return Ok(Arc::clone(segment));
        }
        let path = self.dir.join(segment::file_name(generation));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(format!("creating segment {}", path.display()), e))?;
        // A file that is not in the map was either removed by recovery or
        // never existed; anything in it now was never acknowledged. (Only
        // truncate when needed: ext4 treats truncate-then-write files
        // specially, and a fresh file is empty anyway.)
        let existing_len = file
            .metadata()
            .map_err(|e| Error::io(format!("creating segment {}", path.display()), e))?
            .len();
        if existing_len > 0 {
            file.set_len(0)
                .map_err(|e| Error::io(format!("creating segment {}", path.display()), e))?;
        }
        let segment = Arc::new(Segment::new(generation, path, file));
        segments.insert(generation, Arc::clone(&segment));
        Ok(segment)
    }

    fn context(&self) -> AppendContext<'_> {
        AppendContext {
            engine: &self.engine,
            dir: &self.dir,
            node_name: &self.name,
            fenced: &self.fenced,
        }
    }

    /// Fences the node if the failure calls for it; returns the error.
    fn record_failure(&self, failure: segment::AppendFailure) -> Error {
        if failure.fence {
            self.fenced.store(true, Ordering::Release);
            tracing::error!(node = %self.name, error = %failure.error, "node fenced after a failed append");
        }
        failure.error
    }

    /// Validates a batch and finds (or creates) its segment.
    fn start_append(&self, generation: u64, records: &[RecordRef<'_>]) -> Result<Arc<Segment>> {
        self.check_fence()?;
        for record in records {
            record.validate(generation)?;
        }
        self.segment_for_append(generation)
    }

    /// Whether this node's appends can join a shared io_uring submission.
    pub(crate) fn joins_shared_submission(&self) -> bool {
        #[cfg(target_os = "linux")]
        {
            self.engine.shares_submission() && io::Engine::shared_uring().is_some()
        }
        #[cfg(not(target_os = "linux"))]
        {
            false
        }
    }

    /// Appends batches of several io_uring local nodes with one shared
    /// submission: every batch is its own linked chain of writes and sync,
    /// and the kernel runs the chains in parallel. No two batches may name
    /// the same node and generation (the caller, `append_all`, ensures it).
    /// When `timed`, each result comes with when that batch was done
    /// (durable or failed).
    #[cfg(target_os = "linux")]
    pub(crate) fn append_shared(
        batches: &[(&LocalNode, u64, &[RecordRef<'_>])],
        timed: bool,
    ) -> Vec<DoneAppend> {
        let mut results: Vec<Option<DoneAppend>> = batches.iter().map(|_| None).collect();
        let Some(engine) = io::Engine::shared_uring() else {
            return batches
                .iter()
                .map(|(node, generation, records)| {
                    (node.append(*generation, records), timed.then(Instant::now))
                })
                .collect();
        };
        let mut ready: Vec<(usize, &LocalNode, Arc<Segment>, &[RecordRef<'_>])> = Vec::new();
        for (index, &(node, generation, records)) in batches.iter().enumerate() {
            if records.is_empty() {
                results[index] = Some((
                    node.check_fence().map(|()| Vec::new()),
                    timed.then(Instant::now),
                ));
                continue;
            }
            match node.start_append(generation, records) {
                Ok(segment) => ready.push((index, node, segment, records)),
                Err(error) => results[index] = Some((Err(error), timed.then(Instant::now))),
            }
        }
        // Writer locks are taken in one global order (by segment address)
        // so that concurrent callers can never deadlock.
        ready.sort_by_key(|(_, _, segment, _)| Arc::as_ptr(segment) as usize);
        let contexts: Vec<AppendContext<'_>> =
            ready.iter().map(|(_, node, _, _)| node.context()).collect();
        let mut prepared = Vec::with_capacity(ready.len());
        for ((index, node, segment, records), context) in ready.iter().zip(&contexts) {
            match segment.prepare(context, records) {
                Ok(batch) => prepared.push((*index, *node, context, batch)),
                Err(failure) => {
                    results[*index] =
                        Some((Err(node.record_failure(failure)), timed.then(Instant::now)));
                }
            }
        }
        let bufs: Vec<Vec<std::io::IoSlice<'_>>> = prepared
            .iter()
            .map(|(_, _, _, batch)| batch.bufs())
            .collect();
        let jobs: Vec<io::uring::Job<'_>> = prepared
            .iter()
            .zip(&bufs)
            .map(|((_, _, _, batch), bufs)| io::uring::Job {
                file: batch.segment().file(),
                offset: batch.start,
                bufs,
            })
            .collect();
        let outcomes = engine.run(&jobs, timed);
        drop(jobs);
        drop(bufs);
        for ((index, node, context, batch), (outcome, done)) in prepared.into_iter().zip(outcomes) {
            results[index] = Some((
                batch
                    .finish(context, outcome)
                    .map_err(|failure| node.record_failure(failure)),
                done,
            ));
        }
        results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| (Err(Error::invalid("batch was not appended")), None))
            })
            .collect()
    }

    fn out_of_range(&self, generation: u64, offset: u64, len: u32, durable_len: u64) -> Error {
        Error::invalid(format!(
            "read of {len} bytes at {offset} is outside the {durable_len} durable bytes of \
             generation {generation} on node {}",
            self.name
        ))
    }
}

impl Node for LocalNode {
    fn name(&self) -> &str {
        &self.name
    }

    fn append(&self, generation: u64, records: &[RecordRef<'_>]) -> Result<Vec<RecordLocation>> {
        if records.is_empty() {
            return self.check_fence().map(|()| Vec::new());
        }
        let segment = self.start_append(generation, records)?;
        let context = self.context();
        segment
            .append(&context, records)
            .map_err(|failure| self.record_failure(failure))
    }

    fn read(&self, generation: u64, offset: u64, len: u32) -> Result<Bytes> {
        self.read_as(generation, offset, len, false)
    }

    fn read_point(&self, generation: u64, offset: u64, len: u32) -> Result<Bytes> {
        self.read_as(generation, offset, len, true)
    }

    fn mapped(&self, generation: u64) -> Option<Bytes> {
        let bytes = self.segment(generation)?.mapped();
        map::warn_if_pages_were_replaced();
        bytes
    }

    fn prefetch_point(&self, generation: u64, offset: u64, len: u32) -> bool {
        let Some(segment) = self.segment(generation) else {
            return false;
        };
        // A hint: a range out of bounds or a failure is left to the read
        // that follows, which reports it.
        let Ok(durable_len) = segment.durable_len() else {
            return false;
        };
        offset
            .checked_add(u64::from(len))
            .filter(|&end| end <= durable_len)
            .is_some_and(|end| segment.prefetch(offset, end))
    }

    fn scan(&self, generation: u64) -> Result<Scan> {
        let Some(segment) = self.segment(generation) else {
            return Ok(Scan::default());
        };
        let (found, scanned_len) = segment.scan().map_err(|e| {
            Error::io(
                format!("scanning segment {generation} of node {}", self.name),
                e,
            )
        })?;
        let truncated = segment.truncated_tail_bytes().map_err(|e| {
            Error::io(
                format!("scanning segment {generation} of node {}", self.name),
                e,
            )
        })?;
        Ok(Scan::of_durable_bytes(
            generation,
            found,
            scanned_len,
            truncated,
        ))
    }

    fn scan_from(&self, generation: u64, from: u64) -> Result<Option<Scan>> {
        let Some(segment) = self.segment(generation) else {
            return Ok(None);
        };
        let context = |e| {
            Error::io(
                format!(
                    "scanning segment {generation} of node {} from byte {from}",
                    self.name
                ),
                e,
            )
        };
        let Some(found) = segment.recover_past(from).map_err(context)? else {
            return Ok(None);
        };
        let truncated = segment.truncated_tail_bytes().map_err(context)?;
        let durable_len = found.intact_len;
        Ok(Some(Scan::of_durable_bytes(
            generation,
            found,
            durable_len,
            truncated,
        )))
    }

    fn segment_len(&self, generation: u64) -> Result<u64> {
        match self.segment(generation) {
            None => Ok(0),
            Some(segment) => segment.durable_len().map_err(|e| {
                Error::io(
                    format!("scanning segment {generation} of node {}", self.name),
                    e,
                )
            }),
        }
    }

    fn generations(&self) -> Result<Vec<u64>> {
        let segments = self.segments.read().unwrap_or_else(PoisonError::into_inner);
        // A segment whose every byte was cut as a torn tail at open is
        // listed too, so its scan reports what was cut.
        Ok(segments
            .values()
            .filter(|segment| segment.listed())
            .map(|segment| segment.generation)
            .collect())
    }

    fn remove_generation(&self, generation: u64) -> Result<()> {
        self.check_fence()?;
        let mut segments = self
            .segments
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(segment) = segments.remove(&generation) else {
            return Ok(());
        };
        match std::fs::remove_file(&segment.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                let error = Error::io(format!("removing segment {}", segment.path.display()), e);
                segments.insert(generation, segment);
                return Err(error);
            }
        }
        drop(segments);
        fs::sync_dir(&self.dir)
            .map_err(|e| Error::io(format!("syncing node directory {}", self.dir.display()), e))
    }

    fn read_manifest(&self) -> Result<Option<Bytes>> {
        manifest::read(&self.dir)
    }

    fn write_manifest(&self, bytes: &[u8]) -> Result<()> {
        let _one_writer = self
            .manifest_writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        manifest::write(&self.dir, bytes)
    }

    fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    /// The directory must still exist: the open files of a deleted
    /// directory would otherwise keep answering.
    fn check(&self) -> Result<()> {
        if self.dir.is_dir() {
            return Ok(());
        }
        Err(Error::Unavailable {
            node: self.name.clone(),
            reason: format!("directory {} is gone", self.dir.display()),
        })
    }

    fn capacity(&self) -> Result<Capacity> {
        let used_bytes = {
            let segments = self.segments.read().unwrap_or_else(PoisonError::into_inner);
            segments.values().map(|segment| segment.len_hint()).sum()
        };
        let available_bytes = fs::available_bytes(&self.dir)
            .map_err(|e| Error::io(format!("measuring free space of {}", self.dir.display()), e))?;
        Ok(Capacity {
            used_bytes,
            available_bytes,
        })
    }

    fn shared_submission(&self) -> Option<SharedSubmission<'_>> {
        SharedSubmission::of(self)
    }
}

/// The error for an engine `kind` the kernel refused for node `name`.
fn engine_error(kind: IoEngineKind, name: &str, e: std::io::Error) -> Error {
    Error::io(format!("setting up {kind:?} for node {name}"), e)
}

#[cfg(test)]
mod tests;
