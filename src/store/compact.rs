//! Compaction: reclaim the space of generations that are mostly dead
//! (docs/DURABILITY.md, "Compaction": D1, D3).
//!
//! For a generation whose useful fraction (live blob bytes, times column
//! bytes still needed: handoff copies whose column is home again and
//! stripes open discarded are not) is under the threshold:
//! 1. every live blob in it is rewritten through the committer, as a
//!    relocation that applies only if no newer put or delete raced it;
//! 2. its tombstones that may still hide a value in a live generation are
//!    carried forward, and so are its retire markers whose generations may
//!    still have remains on some node;
//! 3. once all that is durable, a retire marker naming the generation is
//!    committed (coded and placed like any blob, so it survives a site
//!    fire), and only then are its segments removed from every node.
//!
//! Removing segments can be cut short by a crash or a down node; the retire
//! marker is what tells a later open that the remains are garbage and not
//! stripes that lost columns.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::Store;
use super::commit::Request;
use super::index::BlobLoc;
use super::stripes::StripeInfo;
use super::submit::Pending;
use crate::format::EntryFlags;
use crate::{Error, Result};

/// A live blob of a generation being compacted: its key and where it is.
type LiveBlob = (Box<[u8]>, BlobLoc);

/// What [`Store::compact`] considers.
#[derive(Clone, Debug, PartialEq)]
pub struct CompactOptions {
    /// Compact a generation when its useful fraction is under this: live
    /// blob bytes over blob bytes written to it, times the column bytes its
    /// stripes still need over the column bytes it holds (handoff copies
    /// whose column is home again, and stripes open discarded, are not
    /// needed). Default 0.5.
    pub live_ratio_max: f64,
    /// Compact at most this many generations in one call. Default: all.
    pub generations_max: usize,
}

impl Default for CompactOptions {
    fn default() -> CompactOptions {
        CompactOptions {
            live_ratio_max: 0.5,
            generations_max: usize::MAX,
        }
    }
}

/// What [`Store::compact`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactReport {
    /// Generations whose segments were removed.
    pub generations_compacted: Vec<u64>,
    /// Live blobs rewritten into new stripes.
    pub blobs_moved: u64,
    /// Their bytes.
    pub bytes_moved: u64,
    /// Tombstones carried forward.
    pub tombstones_carried: u64,
    /// Tombstones dropped: no live generation could hold a value they hide.
    pub tombstones_dropped: u64,
    /// Column bytes (data and parity, all nodes) of the removed generations.
    pub column_bytes_removed: u64,
}

/// The body of [`Store::compact`].
pub(crate) fn compact(store: &Store, options: &CompactOptions) -> Result<CompactReport> {
    let inner = &store.inner;
    let _only_one = inner.maintenance.lock().unwrap_or_else(|p| p.into_inner());
    let _span = tracing::info_span!("compaction").entered();
    store.flush()?;
    let candidates: Vec<u64> = {
        let state = inner.read_state();
        // The newest generation with visible stripes may be the one
        // the committer appends to: never touched.
        let newest = state
            .generations
            .iter()
            .filter(|(_, u)| u.stripes > 0)
            .map(|(g, _)| *g)
            .next_back();
        let mut c: Vec<(f64, u64)> = state
            .generations
            .iter()
            .filter(|(g, _)| newest.is_none_or(|n| **g < n))
            .map(|(g, u)| (u.useful_ratio(), *g))
            .filter(|(ratio, _)| *ratio < options.live_ratio_max)
            .collect();
        c.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        c.into_iter()
            .take(options.generations_max)
            .map(|(_, g)| g)
            .collect()
    };
    let mut report = CompactReport::default();
    for generation in candidates {
        compact_one(store, generation, &mut report)?;
    }
    tracing::info!(
        generations = ?report.generations_compacted,
        blobs_moved = report.blobs_moved,
        bytes_moved = report.bytes_moved,
        tombstones_carried = report.tombstones_carried,
        column_bytes_removed = report.column_bytes_removed,
        "compaction done"
    );
    Ok(report)
}

/// Compacts one generation: relocate its live blobs, carry forward what
/// must outlive it, retire it durably, then remove it.
fn compact_one(store: &Store, generation: u64, report: &mut CompactReport) -> Result<()> {
    let (stripes, live) = generation_contents(store, generation);
    relocate_live(store, live, report)?;
    let retire = carry_forward(store, generation, &stripes, report)?;
    // What was found live came from the index, read in place from a
    // checkpoint's records: a page of them lost or changed would retire
    // live blobs for good (C9).
    if !store.inner.index_verified() {
        return Err(super::Inner::index_lost_error());
    }
    retire_and_remove(store, generation, retire, report)
}

/// The stripes of `generation` and the live blobs with a part in it.
fn generation_contents(store: &Store, generation: u64) -> (Vec<Arc<StripeInfo>>, Vec<LiveBlob>) {
    let inner = &store.inner;
    let state = inner.read_state();
    let stripes: Vec<_> = state
        .stripes
        .values()
        .filter(|s| s.generation == generation)
        .cloned()
        .collect();
    let in_generation = |loc: &BlobLoc| {
        loc.parts().iter().any(|p| {
            state
                .stripes
                .get(p.slot)
                .is_some_and(|s| s.generation == generation)
        })
    };
    let mut live: Vec<LiveBlob> = state
        .index
        .iter()
        .filter(|(_, loc)| in_generation(loc))
        .map(|(k, loc)| (Box::<[u8]>::from(k), loc))
        .collect();
    // Relocated in key order: the same stripes whatever order the index
    // keeps (the simulator's traces depend on it).
    live.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    (stripes, live)
}

/// Step 1: relocates the live blobs (the committer writes each again
/// unless a newer operation on its key came first), a bounded amount
/// in flight at a time.
fn relocate_live(store: &Store, live: Vec<LiveBlob>, report: &mut CompactReport) -> Result<()> {
    const IN_FLIGHT_BYTES_MAX: u64 = 64 << 20;
    let mut waiting = Vec::new();
    let mut in_flight = 0u64;
    for (key, expected) in live {
        let value = read_whole(store, &expected)?;
        in_flight += value.len() as u64;
        report.bytes_moved += value.len() as u64;
        let (ack, rx) = Pending::channel();
        store.submit(Request::Relocate {
            key,
            value,
            expected,
            ack,
        })?;
        waiting.push(rx);
        if in_flight >= IN_FLIGHT_BYTES_MAX {
            report.blobs_moved += wait_all(store, &mut waiting)?;
            in_flight = 0;
        }
    }
    report.blobs_moved += wait_all(store, &mut waiting)?;
    Ok(())
}

/// Step 2: carries forward the tombstones of `stripes` that may still
/// hide something, and gathers the generations to retire: this one and
/// those of retire markers whose generations may have remains.
fn carry_forward(
    store: &Store,
    generation: u64,
    stripes: &[Arc<StripeInfo>],
    report: &mut CompactReport,
) -> Result<Vec<u64>> {
    let inner = &store.inner;
    let mut waiting = Vec::new();
    let live_generations: Vec<u64> = inner
        .read_state()
        .generations
        .keys()
        .copied()
        .filter(|g| *g != generation)
        .collect();
    let pending = inner
        .retired_pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut retire = vec![generation];
    let k = inner.layout.code().data_count;
    for stripe in stripes {
        for c in 0..k {
            let table_len = stripe.entry_table_len(c);
            if table_len == 0 {
                continue;
            }
            let (entries, _) = inner.reads().entry_table(stripe, c, table_len)?;
            for e in entries {
                if e.flags.contains(EntryFlags::RETIRE) {
                    let loc = super::index::PartLoc {
                        // Read directly from `stripe`; the slot is unused.
                        slot: u32::MAX,
                        offset: e.offset,
                        len: e.len,
                        checksum: e.checksum,
                        column_index: c as u16,
                    };
                    retire.extend(
                        inner
                            .reads()
                            .retired_generations(stripe, &loc)?
                            .into_iter()
                            .filter(|g| pending.contains(g)),
                    );
                } else if e.flags.contains(EntryFlags::TOMBSTONE) {
                    // The tombstone hides values in generations up to
                    // `blob_len`; with none of those live, it is done.
                    let hides = e.blob_len;
                    if !live_generations.iter().any(|&g| g <= hides) {
                        report.tombstones_dropped += 1;
                        continue;
                    }
                    let (ack, rx) = Pending::channel();
                    store.submit(Request::Tombstone {
                        key: e.key.into(),
                        hides_generation: hides,
                        ack,
                    })?;
                    waiting.push(rx);
                }
            }
        }
    }
    report.tombstones_carried += wait_all(store, &mut waiting)?;
    retire.sort_unstable();
    retire.dedup();
    Ok(retire)
}

/// Step 3: retires the generations durably, then removes `generation`
/// from every node (what a node that is down keeps, the next open
/// removes).
fn retire_and_remove(
    store: &Store,
    generation: u64,
    retire: Vec<u64>,
    report: &mut CompactReport,
) -> Result<()> {
    let inner = &store.inner;
    let (ack, rx) = Pending::channel();
    store.submit(Request::Retire {
        generations: retire,
        ack,
    })?;
    store.wait(&rx, "compaction", None)??;
    let mut everywhere = true;
    for id in inner.nodes.ids() {
        let Some(node) = inner.nodes.get(id) else {
            everywhere = false;
            continue;
        };
        if let Err(e) = node.remove_generation(generation) {
            everywhere = false;
            tracing::warn!(node = %node.name(), generation, error = %e,
                "could not remove a retired generation; the next open retries");
        }
    }
    if !everywhere {
        inner
            .retired_pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(generation);
    }
    let mut state = inner.write_state();
    if let Some(usage) = state.generations.get(&generation) {
        report.column_bytes_removed += usage.column_bytes;
    }
    state.drop_generation(generation);
    report.generations_compacted.push(generation);
    Ok(())
}

/// A blob's bytes as one `Bytes` (copied only if split).
fn read_whole(store: &Store, loc: &BlobLoc) -> Result<Bytes> {
    let inner = &store.inner;
    let mut out = BytesMut::new();
    let mut single = None;
    for part in loc.parts() {
        let stripe = inner
            .read_state()
            .stripes
            .get(part.slot)
            .cloned()
            .ok_or_else(|| Error::Corrupt {
                location: format!("stripe slot {}", part.slot),
                reason: "indexed stripe is missing from the stripe table".into(),
            })?;
        let bytes = inner.reads().read_part(&stripe, part)?;
        if loc.parts().len() == 1 {
            single = Some(bytes);
        } else {
            out.extend_from_slice(&bytes);
        }
    }
    Ok(single.unwrap_or_else(|| out.freeze()))
}

/// Waits for every acknowledgement; returns how many did something.
fn wait_all(store: &Store, waiting: &mut Vec<Pending>) -> Result<u64> {
    let mut done = 0;
    for pending in waiting.drain(..) {
        if store.wait(&pending, "compaction", None)?? {
            done += 1;
        }
    }
    Ok(done)
}
