//! Compaction: reclaim the space of generations whose blobs are mostly dead.
//!
//! For a generation whose live ratio is under the threshold:
//! 1. every live blob in it is rewritten through the committer, as a
//!    relocation that applies only if no newer put or delete raced it;
//! 2. tombstones in it that may still hide a value in an older generation
//!    are carried forward, and so are the retire markers it holds;
//! 3. once all that is durable, a retire marker naming the generation is
//!    committed (coded and placed like any blob, so it survives a site
//!    fire), and only then are its segments removed from every node.
//!
//! Removing segments can be cut short by a crash or a down node; the retire
//! marker is what tells a later open that the remains are garbage and not
//! acknowledged stripes that lost columns.

use std::sync::mpsc;

use bytes::{Bytes, BytesMut};

use super::Store;
use super::commit::Request;
use super::index::BlobLoc;
use crate::format::EntryFlags;
use crate::{Error, Result};

/// A live blob of a generation being compacted: its key and where it is.
type LiveBlob = (Box<[u8]>, BlobLoc);

/// What [`Store::compact`] considers.
#[derive(Clone, Debug, PartialEq)]
pub struct CompactOptions {
    /// Compact a generation when its live bytes are under this fraction of
    /// the blob bytes written to it. Default 0.5.
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
    /// Column bytes (data and parity, all nodes) of the removed generations.
    pub column_bytes_removed: u64,
}

impl Store {
    /// Rewrites the live blobs of mostly-dead generations and removes those
    /// generations from every node. Runs alongside reads and writes.
    ///
    /// # Errors
    ///
    /// A read or commit error stops compaction before the generation being
    /// compacted is retired; nothing is lost and a later call resumes.
    pub fn compact(&self, options: &CompactOptions) -> Result<CompactReport> {
        let inner = &self.inner;
        let _only_one = inner.maintenance.lock().unwrap_or_else(|p| p.into_inner());
        self.flush()?;
        let candidates: Vec<u64> = {
            let state = inner.read_state();
            let newest = state.generations.keys().next_back().copied();
            let mut c: Vec<(f64, u64)> = state
                .generations
                .iter()
                .filter(|(g, _)| Some(**g) != newest)
                .map(|(g, u)| {
                    let ratio = if u.blob_bytes == 0 {
                        0.0
                    } else {
                        u.live_bytes as f64 / u.blob_bytes as f64
                    };
                    (ratio, *g)
                })
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
            self.compact_one(generation, &mut report)?;
        }
        Ok(report)
    }

    fn compact_one(&self, generation: u64, report: &mut CompactReport) -> Result<()> {
        let inner = &self.inner;
        let (stripes, live): (Vec<_>, Vec<LiveBlob>) = {
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
            let live = state
                .index
                .iter()
                .filter(|(_, loc)| in_generation(loc))
                .map(|(k, loc)| (Box::<[u8]>::from(k), loc.clone()))
                .collect();
            (stripes, live)
        };

        // 1. Relocate live blobs, a bounded amount in flight at a time.
        const IN_FLIGHT_BYTES_MAX: u64 = 64 << 20;
        let mut waiting = Vec::new();
        let mut in_flight = 0u64;
        for (key, expected) in live {
            let value = self.read_whole(&expected)?;
            in_flight += value.len() as u64;
            report.bytes_moved += value.len() as u64;
            let (ack, rx) = mpsc::sync_channel(1);
            self.submit(Request::Relocate {
                key,
                value,
                expected,
                ack,
            })?;
            waiting.push(rx);
            if in_flight >= IN_FLIGHT_BYTES_MAX {
                report.blobs_moved += wait_all(&mut waiting)?;
                in_flight = 0;
            }
        }
        report.blobs_moved += wait_all(&mut waiting)?;

        // 2. Carry tombstones and retire markers forward.
        let mut retire = vec![generation];
        let k = inner.layout.code().data_count;
        for stripe in &stripes {
            for c in 0..k {
                let table_len = stripe.entry_table_len(c);
                if table_len == 0 {
                    continue;
                }
                let (entries, _) = inner.entry_table(stripe, c, table_len)?;
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
                        retire.extend(inner.retired_generations(stripe, &loc)?);
                    } else if e.flags.contains(EntryFlags::TOMBSTONE) {
                        let (ack, rx) = mpsc::sync_channel(1);
                        self.submit(Request::Tombstone {
                            key: e.key.into(),
                            ack,
                        })?;
                        waiting.push(rx);
                    }
                }
            }
        }
        report.tombstones_carried += wait_all(&mut waiting)?;
        retire.sort_unstable();
        retire.dedup();

        // 3. Retire durably, then remove.
        let (ack, rx) = mpsc::sync_channel(1);
        self.submit(Request::Retire {
            generations: retire,
            ack,
        })?;
        rx.recv().map_err(|_| Error::Closed)??;
        for id in inner.nodes.ids() {
            if let Some(node) = inner.nodes.get(id)
                && let Err(e) = node.remove_generation(generation)
            {
                tracing::warn!(node = %node.name(), generation, error = %e,
                    "could not remove a retired generation; the next open retries");
            }
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
    fn read_whole(&self, loc: &BlobLoc) -> Result<Bytes> {
        let inner = &self.inner;
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
            let bytes = inner.read_part(&stripe, part)?;
            if loc.parts().len() == 1 {
                single = Some(bytes);
            } else {
                out.extend_from_slice(&bytes);
            }
        }
        Ok(single.unwrap_or_else(|| out.freeze()))
    }
}

/// Waits for every acknowledgement; returns how many did something.
fn wait_all(waiting: &mut Vec<mpsc::Receiver<Result<bool>>>) -> Result<u64> {
    let mut done = 0;
    for rx in waiting.drain(..) {
        if rx.recv().map_err(|_| Error::Closed)?? {
            done += 1;
        }
    }
    Ok(done)
}
