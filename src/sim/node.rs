//! A node over a simulated disk: the [`Node`] contract of a local node
//! (segment bytes in the format of docs/FORMAT.md, scanned by the same
//! scanner), with the disk's faults applied and every I/O traced.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

use super::rng::mix;
use super::world::{Disk, World};
use crate::format::{encode_segment_header, scan_segment};
use crate::node::{Capacity, Node, RecordLocation, RecordRef, Scan};
use crate::{Error, Result};

const OP_APPEND: u64 = 1;
const OP_READ: u64 = 2;
const OP_SCAN: u64 = 3;
const OP_REMOVE: u64 = 4;
const OP_MANIFEST_READ: u64 = 5;
const OP_MANIFEST_WRITE: u64 = 6;

/// What a crash leaves of a write that was under way.
enum Fate {
    Done,
    Torn,
    Lost,
}

#[derive(Debug)]
pub(crate) struct SimNode {
    world: Arc<World>,
    index: usize,
    name: String,
    epoch: u64,
    fenced: AtomicBool,
    /// Durable bytes per generation: what this handle's recovery found
    /// intact, plus its appends. Bytes past it are a torn tail.
    durable: Mutex<BTreeMap<u64, u64>>,
    /// Torn tail bytes per generation when this handle opened.
    truncated: BTreeMap<u64, u64>,
}

impl SimNode {
    pub fn new(
        world: Arc<World>,
        index: usize,
        name: String,
        epoch: u64,
        durable: BTreeMap<u64, u64>,
        truncated: BTreeMap<u64, u64>,
    ) -> SimNode {
        SimNode {
            world,
            index,
            name,
            epoch,
            fenced: AtomicBool::new(false),
            durable: Mutex::new(durable),
            truncated,
        }
    }

    fn durable_len(&self, generation: u64) -> u64 {
        self.durable
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&generation)
            .copied()
            .unwrap_or(0)
    }

    fn set_durable_len(&self, generation: u64, len: u64) {
        self.durable
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(generation, len);
    }

    fn unavailable(&self, reason: &str) -> Error {
        Error::Unavailable {
            node: self.name.clone(),
            reason: reason.into(),
        }
    }

    fn errno(&self, what: &str, errno: i32) -> Error {
        Error::io(
            format!("{what} on simulated node {}", self.name),
            std::io::Error::from_raw_os_error(errno),
        )
    }

    /// Adds one call to the disk's trace (and to stderr with
    /// `GEOSHARD_SIM_IO_LOG`).
    fn record(&self, disk: &mut Disk, op: u64, generation: u64, offset: u64, len: u64, crc: u32) {
        if self.world.io_log {
            eprintln!(
                "io node {} op {op} generation {generation:x} at {offset} len {len} crc {crc:08x}",
                self.index
            );
        }
        disk.record(op, generation, offset, len, crc);
    }

    /// The disk, if this handle may use it now.
    fn enter(&self) -> Result<std::sync::MutexGuard<'_, Disk>> {
        let disk = self.world.disk(self.index);
        // Every call takes simulated time, a call that is not answered
        // the longest.
        self.world.advance(if disk.unreachable {
            super::world::UNREACHABLE_US
        } else {
            disk.latency_us
        });
        if disk.epoch != self.epoch {
            return Err(self.unavailable("this handle was closed (crash, wipe or reopen)"));
        }
        if disk.unreachable {
            return Err(self.unavailable("unreachable"));
        }
        if !disk.present {
            return Err(self.unavailable("directory is gone"));
        }
        Ok(disk)
    }

    /// The fate of a mutating call while a crash is under way, drawn from
    /// the disk's own call count (not from thread timing).
    fn fate(&self, disk: &mut Disk) -> Option<Fate> {
        disk.calls += 1;
        if !self.world.crashing.load(Ordering::Acquire) {
            return None;
        }
        let draw = mix(self.world.seed ^ mix(self.index as u64 ^ (disk.calls << 16)));
        // How far along the writes under way were when the process died is
        // drawn per crash: most done, or few.
        let done_per_mille = self.world.crash_done_per_mille.load(Ordering::Acquire);
        Some(if draw % 1000 < done_per_mille {
            Fate::Done
        } else if (draw >> 32).is_multiple_of(2) {
            Fate::Torn
        } else {
            Fate::Lost
        })
    }

    fn encode(
        &self,
        generation: u64,
        start: u64,
        records: &[RecordRef<'_>],
    ) -> Result<(Vec<u8>, Vec<RecordLocation>)> {
        let mut bytes = Vec::new();
        if start == 0 {
            bytes.extend_from_slice(&encode_segment_header(generation));
        }
        let mut locations = Vec::with_capacity(records.len());
        for record in records {
            record.header.encode_into(&mut bytes)?;
            locations.push(RecordLocation {
                generation,
                offset: start + bytes.len() as u64,
                len: record.payload.len() as u32,
            });
            bytes.extend_from_slice(record.payload);
        }
        Ok((bytes, locations))
    }
}

/// What a torn write leaves: a prefix, the prefix then zeros, the prefix
/// then garbage, or every sector written but in another order, some never
/// (the whole length, some 512-byte sectors zero). With `to_length`, the
/// prefix then zeros to the write's whole length (the file's size made
/// durable, its last blocks not: FORMAT.md, "What we assume of the
/// medium"), so that the tail is as long as the records it held.
fn tear(bytes: &[u8], draw: u64, reorder: bool, to_length: bool) -> Vec<u8> {
    if bytes.is_empty() {
        return Vec::new();
    }
    if to_length {
        let keep = (draw >> 8) as usize % bytes.len();
        let mut out = bytes[..keep].to_vec();
        out.resize(bytes.len(), 0);
        return out;
    }
    if reorder && (draw >> 40).is_multiple_of(4) {
        let mut out = bytes.to_vec();
        let mut h = draw;
        for sector in out.chunks_mut(512) {
            h = mix(h);
            if h.is_multiple_of(2) {
                sector.fill(0);
            }
        }
        return out;
    }
    let keep = (draw >> 8) as usize % bytes.len();
    let mut out = bytes[..keep].to_vec();
    let rest = bytes.len() - keep;
    match draw % 3 {
        0 => {}
        1 => out.resize(keep + rest / 2, 0),
        _ => {
            let mut h = draw;
            for _ in 0..rest / 2 {
                h = mix(h);
                out.push(h as u8);
            }
        }
    }
    out
}

impl Drop for SimNode {
    fn drop(&mut self) {
        let mut disk = self.world.disk(self.index);
        if disk.epoch == self.epoch {
            disk.locked = false;
        }
    }
}

impl Node for SimNode {
    fn name(&self) -> &str {
        &self.name
    }

    fn append(&self, generation: u64, records: &[RecordRef<'_>]) -> Result<Vec<RecordLocation>> {
        for record in records {
            record.validate(generation)?;
        }
        let mut disk = self.enter()?;
        if self.fenced.load(Ordering::Acquire) {
            return Err(Error::NodeFenced {
                node: self.name.clone(),
            });
        }
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let fate = self.fate(&mut disk);
        if disk.full {
            return Err(self.errno("append", libc::ENOSPC));
        }
        // After a torn tail, never over it (as a local node does); past a
        // file shortened behind the node's back, at the durable end.
        let physical = disk.segments.get(&generation).map_or(0, |s| s.len() as u64);
        let start = if crate::mutation::enabled(crate::mutation::Mutation::CutTornTails) {
            self.durable_len(generation)
        } else {
            self.durable_len(generation).max(physical)
        };
        let (bytes, locations) = self.encode(generation, start, records)?;
        let crc = crc32fast::hash(&bytes);
        if self.world.io_log {
            for r in records {
                eprintln!(
                    "io record node {} generation {generation:x} at {start}: stripe {:x} column {} crc {:08x}",
                    self.index,
                    r.header.stripe_id,
                    r.header.column_index,
                    crc32fast::hash(r.payload)
                );
            }
        }
        self.record(
            &mut disk,
            OP_APPEND,
            generation,
            start,
            bytes.len() as u64,
            crc,
        );
        let durable = self.durable_len(generation);
        let write = |disk: &mut Disk, bytes: &[u8]| {
            // After a torn tail, zeroed (as a local node does), or past a
            // file shortened behind the node's back (zeros in between).
            let segment = disk.segments.entry(generation).or_default();
            if !crate::mutation::enabled(crate::mutation::Mutation::CutTornTails) {
                let end = segment.len().min(start as usize);
                if end > durable as usize {
                    segment[durable as usize..end].fill(0);
                }
            }
            segment.resize(start as usize, 0);
            segment.extend_from_slice(bytes);
        };
        match fate {
            None => {}
            Some(Fate::Done) => {
                write(&mut disk, &bytes);
                return Err(self.unavailable("the process is crashing"));
            }
            Some(Fate::Torn) => {
                let draw = mix(self.world.seed ^ mix(disk.calls ^ 0x7e));
                let to_length = self.world.to_length_all.load(Ordering::Acquire)
                    || self
                        .world
                        .to_length_disk
                        .compare_exchange(
                            self.index as u64,
                            u64::MAX,
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        )
                        .is_ok();
                let torn = tear(&bytes, draw, self.world.known_gaps, to_length);
                self.world.faults().torn_writes += 1;
                write(&mut disk, &torn);
                return Err(self.unavailable("the process is crashing"));
            }
            Some(Fate::Lost) => return Err(self.unavailable("the process is crashing")),
        }
        if std::mem::take(&mut disk.misdirect_next) && start > 0 {
            // The bytes land over earlier records instead of at the end, and
            // the append says it succeeded: the records it reports are not
            // there, and what was there is damaged.
            let segment = disk.segments.entry(generation).or_default();
            let len = segment.len().min(start as usize);
            let at = len.saturating_sub(bytes.len().min(len / 2).max(1));
            let end = (at + bytes.len()).min(len);
            segment[at..end].copy_from_slice(&bytes[..end - at]);
            self.set_durable_len(generation, start + bytes.len() as u64);
            return Ok(locations);
        }
        write(&mut disk, &bytes);
        self.set_durable_len(generation, start + bytes.len() as u64);
        if std::mem::take(&mut disk.sync_fail_next) {
            self.fenced.store(true, Ordering::Release);
            return Err(self.errno("fdatasync", libc::EIO));
        }
        Ok(locations)
    }

    fn read(&self, generation: u64, offset: u64, len: u32) -> Result<Bytes> {
        let mut disk = self.enter()?;
        if disk.read_eio {
            return Err(self.errno("read", libc::EIO));
        }
        let Some(segment) = disk.segments.get(&generation) else {
            return Err(Error::invalid(format!(
                "generation {generation} of node {} does not exist",
                self.name
            )));
        };
        let end = offset.saturating_add(u64::from(len));
        if end > self.durable_len(generation) {
            return Err(Error::invalid(format!(
                "read of {offset}..{end} past the durable bytes of generation {generation} of node {}",
                self.name
            )));
        }
        if end > segment.len() as u64 {
            // Shortened behind the node's back: the pages are gone.
            return Err(self.errno("read past a shortened file", libc::EIO));
        }
        let bytes = Bytes::copy_from_slice(&segment[offset as usize..end as usize]);
        self.record(
            &mut disk,
            OP_READ,
            generation,
            offset,
            u64::from(len),
            crc32fast::hash(&bytes),
        );
        Ok(bytes)
    }

    fn scan(&self, generation: u64) -> Result<Scan> {
        let mut disk = self.enter()?;
        if disk.read_eio {
            return Err(self.errno("scan", libc::EIO));
        }
        let truncated_tail_bytes = self.truncated.get(&generation).copied().unwrap_or(0);
        let Some(bytes) = disk.segments.get(&generation) else {
            return Ok(Scan {
                truncated_tail_bytes,
                ..Scan::default()
            });
        };
        let durable = self.durable_len(generation);
        let bytes = &bytes[..(durable as usize).min(bytes.len())];
        let found = scan_segment(bytes, generation);
        // A file shortened behind the node's back is short of its durable
        // bytes: the missing part is damage, as a local node reports it.
        let len = durable;
        let crc = crc32fast::hash(bytes);
        self.record(&mut disk, OP_SCAN, generation, 0, len, crc);
        Ok(Scan::of_durable_bytes(
            generation,
            found,
            len,
            truncated_tail_bytes,
        ))
    }

    fn segment_len(&self, generation: u64) -> Result<u64> {
        let _disk = self.enter()?;
        Ok(self.durable_len(generation))
    }

    fn generations(&self) -> Result<Vec<u64>> {
        let disk = self.enter()?;
        Ok(disk
            .segments
            .keys()
            .filter(|&&g| self.durable_len(g) > 0 || self.truncated.contains_key(&g))
            .copied()
            .collect())
    }

    fn remove_generation(&self, generation: u64) -> Result<()> {
        let mut disk = self.enter()?;
        if self.fenced.load(Ordering::Acquire) {
            return Err(Error::NodeFenced {
                node: self.name.clone(),
            });
        }
        let fate = self.fate(&mut disk);
        self.record(&mut disk, OP_REMOVE, generation, 0, 0, 0);
        match fate {
            None | Some(Fate::Done) => {
                disk.segments.remove(&generation);
                self.set_durable_len(generation, 0);
            }
            Some(Fate::Torn | Fate::Lost) => {}
        }
        if fate.is_some() {
            return Err(self.unavailable("the process is crashing"));
        }
        Ok(())
    }

    fn capacity(&self) -> Result<Capacity> {
        let disk = self.enter()?;
        let used_bytes = disk.segments.values().map(|s| s.len() as u64).sum();
        Ok(Capacity {
            used_bytes,
            available_bytes: if disk.full { 0 } else { 1 << 40 },
        })
    }

    fn read_manifest(&self) -> Result<Option<Bytes>> {
        let mut disk = self.enter()?;
        if disk.read_eio {
            return Err(self.errno("reading the manifest", libc::EIO));
        }
        let manifest = disk.manifest.clone();
        let (len, crc) = manifest
            .as_ref()
            .map_or((0, 0), |m| (m.len() as u64, crc32fast::hash(m)));
        self.record(&mut disk, OP_MANIFEST_READ, 0, 0, len, crc);
        Ok(manifest.map(Bytes::from))
    }

    fn write_manifest(&self, manifest: &[u8]) -> Result<()> {
        if manifest.len() > crate::format::MANIFEST_LEN_MAX {
            return Err(Error::LimitExceeded {
                what: "manifest length",
                limit: crate::format::MANIFEST_LEN_MAX as u64,
                actual: manifest.len() as u64,
            });
        }
        let mut disk = self.enter()?;
        let fate = self.fate(&mut disk);
        self.record(
            &mut disk,
            OP_MANIFEST_WRITE,
            0,
            0,
            manifest.len() as u64,
            crc32fast::hash(manifest),
        );
        // Atomic: the old bytes or the new ones, never a mix.
        match fate {
            None | Some(Fate::Done) => disk.manifest = Some(manifest.to_vec()),
            Some(Fate::Torn | Fate::Lost) => {}
        }
        if fate.is_some() {
            return Err(self.unavailable("the process is crashing"));
        }
        Ok(())
    }

    fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    fn check(&self) -> Result<()> {
        self.enter().map(|_| ())
    }
}
