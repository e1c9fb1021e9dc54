//! The front of the read path: a key resolved in the index under the lock,
//! then its blob read after it (a whole blob from one column, a split one
//! part by part), resolving again when compaction moved it meanwhile. The
//! reading itself (healthy, degraded, hedged) is [`Reads`](super::read).

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use super::Inner;
use super::blob::Blob;
use super::index::{BlobLoc, PartLoc};
use super::stripes::StripeInfo;
use crate::layout::NodeId;
use crate::node::RecordLocation;
use crate::{Error, Result};

/// How often a get resolves a key again after compaction moved it.
const GET_ATTEMPTS_MAX: usize = 8;

/// Why one try of a get did not answer.
enum GetError {
    /// The value moved (compaction) between resolving and reading it.
    Moved,
    Failed(Error),
}
use GetError::{Failed, Moved};

/// The body of [`Store::get`](super::Store::get), after the key's check.
pub(crate) fn get(inner: &Inner, key: &[u8]) -> Result<Option<Blob>> {
    // A read of a location compaction removed meanwhile fails; the key
    // is then resolved again (a few times at most).
    let mut attempts = 0;
    loop {
        attempts += 1;
        match get_once(inner, key) {
            Ok(found) => return Ok(found),
            Err(Moved) if attempts < GET_ATTEMPTS_MAX => continue,
            Err(Moved) => {
                return Err(Error::Unavailable {
                    node: "(all)".into(),
                    reason: format!(
                        "the value kept moving ({GET_ATTEMPTS_MAX} tries): compaction is \
                         rewriting it; try again"
                    ),
                });
            }
            Err(Failed(e)) => return Err(e),
        }
    }
}

fn get_once(inner: &Inner, key: &[u8]) -> std::result::Result<Option<Blob>, GetError> {
    if inner.closed.load(Ordering::Acquire) {
        return Err(Failed(Error::Closed));
    }
    // Resolve under the lock, read after it. The common case (a whole
    // blob on a reachable node) needs only the node and the record's
    // location; the stripe itself is fetched only to read degraded.
    let mut parts: Vec<(PartLoc, Arc<StripeInfo>)> = Vec::new();
    let (whole, resolved) = {
        let state = inner.read_state();
        let found = state.index.get(key);
        if !inner.index_intact_in(&state.index) {
            return Err(Failed(Inner::index_lost_error()));
        }
        let Some(loc) = found else {
            drop(state);
            inner.loss.check(key, None).map_err(Failed)?;
            return Ok(None);
        };
        let stripe_of = |p: &PartLoc| -> Result<&Arc<StripeInfo>> {
            state.stripes.get(p.slot).ok_or_else(|| Error::Corrupt {
                location: format!("stripe slot {}", p.slot),
                reason: "indexed stripe is missing from the stripe table".into(),
            })
        };
        match &loc {
            BlobLoc::Whole(p) => {
                let (stripe_id, stored) = match state.stripes.stored(p.slot, p.column_index) {
                    Some(found) => found,
                    None => {
                        let stripe = stripe_of(p).map_err(Failed)?;
                        let column = stripe.columns.get(usize::from(p.column_index));
                        (stripe.stripe_id, column.and_then(|c| c.stored))
                    }
                };
                (Some((*p, stripe_id, stored)), None)
            }
            BlobLoc::Split(split) => {
                parts = split
                    .parts
                    .iter()
                    .map(|p| Ok((*p, Arc::clone(stripe_of(p)?))))
                    .collect::<Result<_>>()
                    .map_err(Failed)?;
                (None, Some(loc.clone()))
            }
        }
    };
    if inner.loss.is_pending() {
        let newest = whole
            .map(|w| w.1)
            .into_iter()
            .chain(parts.iter().map(|(_, s)| s.stripe_id))
            .max();
        inner.loss.check(key, newest).map_err(Failed)?;
    }
    let count = inner.stats.gets.fetch_inc();
    // Timed: a sample of the local whole-blob reads, every other read.
    let local = matches!(whole, Some((_, _, Some((node, _)))) if !inner.nodes.is_remote(node));
    let started = (!local || count.is_multiple_of(super::metrics::GET_SAMPLE_EVERY))
        .then(std::time::Instant::now);
    let got = if let Some((part, stripe_id, stored)) = whole {
        read_whole_blob(inner, &part, stripe_id, stored)
    } else {
        match read_split(inner, &parts) {
            Ok(chunks) => Ok(Some(Blob::from_chunks(chunks))),
            // The parts were resolved under the lock and read after it: if
            // the key points elsewhere now, compaction moved it.
            Err(_) if inner.read_state().index.get(key) != resolved => Err(Moved),
            Err(e) => Err(Failed(e)),
        }
    };
    if let Some(started) = started {
        inner
            .metrics
            .get_seconds
            .record(super::metrics::seconds_since(started));
    }
    got
}

/// Reads a whole blob at `part` of stripe `stripe_id`, whose column is
/// `stored`: from its node, or rebuilt from the stripe's other columns
/// (hedged when the node is remote).
#[inline]
fn read_whole_blob(
    inner: &Inner,
    part: &PartLoc,
    stripe_id: u64,
    stored: Option<(crate::layout::NodeId, crate::node::RecordLocation)>,
) -> std::result::Result<Option<Blob>, GetError> {
    if let Some((node, _)) = stored
        && inner.nodes.is_remote(node)
    {
        // Remote: the hedged read needs the stripe; a copy of its Arc
        // costs nothing next to a network round trip.
        let stripe = inner.read_state().stripes.get(part.slot).cloned();
        return match stripe {
            Some(stripe) if stripe.stripe_id == stripe_id => Ok(Some(Blob::from(
                inner.reads().read_part(&stripe, part).map_err(Failed)?,
            ))),
            _ => Err(Moved),
        };
    }
    let read = stored.and_then(|(node, loc)| {
        inner
            .reads()
            .read_stored(stripe_id, node, loc, part.offset, part.len, true)
    });
    if let Some(bytes) = inner.reads().checked(stripe_id, part, read) {
        return Ok(Some(Blob::from(bytes)));
    }
    // Degraded: rebuild from the stripe's other columns.
    let stripe = inner.read_state().stripes.get(part.slot).cloned();
    match stripe {
        Some(stripe) if stripe.stripe_id == stripe_id => Ok(Some(Blob::from(
            inner
                .reads()
                .read_degraded_point(&stripe, part)
                .map_err(Failed)?,
        ))),
        // Compaction moved the blob meanwhile: read it where it is now.
        _ => Err(Moved),
    }
}

/// Reads every part of a split blob (in parallel when remote).
fn read_split(inner: &Inner, parts: &[(PartLoc, Arc<StripeInfo>)]) -> Result<Vec<Bytes>> {
    let remote = parts.iter().any(|(part, stripe)| {
        stripe
            .columns
            .get(usize::from(part.column_index))
            .and_then(|c| c.stored)
            .is_some_and(|(node, _)| inner.nodes.is_remote(node))
    });
    if remote && parts.len() > 1 {
        // Parts on remote nodes are fetched in parallel: a split blob
        // costs one round trip, not one per part.
        super::nodes::parallel_map(parts, |(part, stripe)| {
            inner.reads().read_part(stripe, part)
        })
        .into_iter()
        .collect()
    } else {
        parts
            .iter()
            .map(|(part, stripe)| inner.reads().read_part(stripe, part))
            .collect()
    }
}

/// A get answered on the calling thread when that costs no wait: the key
/// is absent, or its blob is whole in one column of a reachable local node,
/// read and checked now (a slice of a mapped segment). `None` when the get
/// needs more (a remote or down node, a split blob, a checksum failure, a
/// pending loss): the caller then runs [`get`] where it may block.
///
/// `Store::get` tries this first: its common case then costs one lock of
/// the state, a slice of the segment's view (the node's mapping, kept in
/// the stripe table: no call into the node) and the checksum
/// (docs/PERFORMANCE.md, "The healthy get"). A blob of a segment no get
/// has mapped yet, or past its view, is read through the node, and the
/// view set. With `timed`, one get in
/// [`GET_SAMPLE_EVERY`](super::metrics::GET_SAMPLE_EVERY) (by the count
/// of gets so far, read without a write: a sample, not an exact period)
/// is timed into `get_seconds`.
pub(crate) fn get_if_local(inner: &Inner, key: &[u8], timed: bool) -> Option<Result<Option<Blob>>> {
    if inner.closed.load(Ordering::Acquire) {
        return Some(Err(Error::Closed));
    }
    if inner.loss.is_pending() {
        return None;
    }
    let started = (timed
        && inner
            .stats
            .gets
            .get()
            .is_multiple_of(super::metrics::GET_SAMPLE_EVERY))
    .then(std::time::Instant::now);
    let (part, stripe_id, node, loc, viewed, unmapped, epoch) = {
        let state = inner.read_state();
        let found = state.index.get(key);
        if !inner.index_intact_in(&state.index) {
            return Some(Err(Inner::index_lost_error()));
        }
        let Some(found) = found else {
            return Some(Ok(None));
        };
        let BlobLoc::Whole(part) = found else {
            return None;
        };
        let hot = state.stripes.hot(part.slot, part.column_index)?;
        let (node, loc) = hot.stored?;
        if inner.nodes.is_remote(node) || !inner.nodes.is_up(node) {
            return None;
        }
        let view = hot.view.filter(|_| part.len < VIEW_READ_MAX);
        let viewed = view
            .and_then(OnceLock::get)
            .and_then(|mapped| slice_record(mapped, &loc, &part));
        let unmapped = view.is_some_and(|v| v.get().is_none());
        let epoch = state.stripes.view_epoch();
        (part, hot.stripe_id, node, loc, viewed, unmapped, epoch)
    };
    let bytes = match viewed {
        Some(bytes) => bytes,
        None => {
            let bytes =
                inner
                    .reads()
                    .read_stored(stripe_id, node, loc, part.offset, part.len, true)?;
            if unmapped {
                fill_view(inner, &part, node, loc.generation, epoch);
            }
            bytes
        }
    };
    // A mismatch is left to the full read, which counts it once, warns and
    // rebuilds (a read error has marked the node down already, so the full
    // read goes straight to the other columns).
    if crc32fast::hash(&bytes) != part.checksum {
        return None;
    }
    inner.stats.gets.inc();
    if let Some(started) = started {
        inner
            .metrics
            .get_seconds
            .record(super::metrics::seconds_since(started));
    }
    Some(Ok(Some(Blob::from(bytes))))
}

/// Blobs under this many bytes are sliced from their segment's view
/// ([`Node::mapped`](crate::node::Node::mapped): a mapping advised random
/// access); larger ones go through `read_point`, which reads them through
/// the mapping with the default readahead (the local node's
/// `LARGE_READ_MIN`).
const VIEW_READ_MAX: u32 = 64 << 10;

/// The bytes of `part` (of the column record at `loc`) in `mapped`, the
/// view of the record's segment; `None` when they lie past its end (or the
/// record's).
fn slice_record(mapped: &Bytes, loc: &RecordLocation, part: &PartLoc) -> Option<Bytes> {
    let within = u64::from(part.offset) + u64::from(part.len);
    if within > u64::from(loc.len) {
        return None;
    }
    let start = usize::try_from(loc.offset + u64::from(part.offset)).ok()?;
    let end = start.checked_add(part.len as usize)?;
    (end <= mapped.len()).then(|| mapped.slice(start..end))
}

/// Sets the view of the segment `part`'s record is in, on `node` in
/// `generation`, to the node's mapping of it (empty when it keeps none:
/// later gets then read through the node without asking again). Taken
/// without the state lock, set under it if the column still lies there
/// and no view was cleared since the get read `epoch` under it
/// ([`StripeTable::fill_view`](super::stripes::StripeTable::fill_view)).
fn fill_view(inner: &Inner, part: &PartLoc, node: NodeId, generation: u64, epoch: u64) {
    let Some(mapped) = inner.nodes.with_node(node, |n| n.mapped(generation)) else {
        return;
    };
    inner.read_state().stripes.fill_view(
        part.slot,
        part.column_index,
        node,
        generation,
        epoch,
        mapped.unwrap_or_default(),
    );
}

/// Threads that run the async API's reads that may wait (remote, degraded,
/// split): few and shared, so thousands of such reads in flight queue
/// instead of starting a thread each. They are not the pool the reads
/// themselves fan out on (`node::spawn_blocking`): a read waiting here for
/// its columns never waits for a thread held by another read waiting here.
const READ_THREADS: usize = 16;

type Job = Box<dyn FnOnce() + Send + 'static>;

static READ_POOL: std::sync::OnceLock<Option<std::sync::mpsc::Sender<Job>>> =
    std::sync::OnceLock::new();

/// Runs `job` on the async reads' pool, starting it on first use. False
/// when no thread could be started (`job` is dropped).
pub(crate) fn spawn_read(job: impl FnOnce() + Send + 'static) -> bool {
    let pool = READ_POOL.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        let mut started = 0;
        for i in 0..READ_THREADS {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("geoshard-read-{i}"))
                .spawn(move || {
                    loop {
                        let job = {
                            let rx = rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                            rx.recv()
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if spawned.is_ok() {
                started += 1;
            }
        }
        (started > 0).then_some(tx)
    });
    pool.as_ref()
        .is_some_and(|tx| tx.send(Box::new(job)).is_ok())
}
