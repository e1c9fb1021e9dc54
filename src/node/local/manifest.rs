//! The node's manifest file: `MANIFEST`, two fixed-size slots written in
//! turn, so a crash during a write leaves the other, older slot intact, and
//! a rewrite reuses blocks the file already holds (it works on a full disk).
//!
//! Slot layout (docs/FORMAT.md, "Manifest file"): magic `GSMS`, u32 payload
//! length, u64 write sequence, payload, u32 crc of everything before it,
//! zero padding to [`SLOT_LEN`]. The valid slot with the higher sequence
//! wins.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::Bytes;

use crate::format::MANIFEST_LEN_MAX;
use crate::{Error, Result};

pub(super) const FILE_NAME: &str = "MANIFEST";
const SLOT_MAGIC: [u8; 4] = *b"GSMS";
const SLOT_HEADER_LEN: usize = 4 + 4 + 8;
/// Bytes of one slot: room for the largest manifest.
pub(super) const SLOT_LEN: usize = 72 << 10;
const _: () = assert!(SLOT_HEADER_LEN + MANIFEST_LEN_MAX + 4 <= SLOT_LEN);

/// A valid slot: its sequence and payload.
struct Slot {
    sequence: u64,
    payload: Vec<u8>,
}

/// The manifest bytes, `None` if the node has no manifest file.
pub(super) fn read(dir: &Path) -> Result<Option<Bytes>> {
    let path = dir.join(FILE_NAME);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
    };
    let slots = read_slots(&file, &path)?;
    match slots.into_iter().flatten().max_by_key(|s| s.sequence) {
        Some(slot) => Ok(Some(Bytes::from(slot.payload))),
        None => Err(Error::Corrupt {
            location: path.display().to_string(),
            reason: "no intact manifest slot".into(),
        }),
    }
}

/// Writes `payload` into the slot that does not hold the newest manifest,
/// then syncs it (and, for a new file, the directory).
pub(super) fn write(dir: &Path, payload: &[u8]) -> Result<()> {
    if payload.len() > MANIFEST_LEN_MAX {
        return Err(Error::LimitExceeded {
            what: "manifest length",
            limit: MANIFEST_LEN_MAX as u64,
            actual: payload.len() as u64,
        });
    }
    let path = dir.join(FILE_NAME);
    let context = |what: &str| format!("{what} {}", path.display());
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(context("opening"), e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io(context("measuring"), e))?
        .len();
    let created = len < (2 * SLOT_LEN) as u64;
    let slots = if created {
        [None, None]
    } else {
        read_slots(&file, &path)?
    };
    let (target, sequence) = match &slots {
        [Some(a), Some(b)] if a.sequence >= b.sequence => (1, a.sequence + 1),
        [Some(_), Some(b)] => (0, b.sequence + 1),
        [Some(a), None] => (1, a.sequence + 1),
        [None, Some(b)] => (0, b.sequence + 1),
        [None, None] => (0, 1),
    };
    let mut slot = Vec::with_capacity(SLOT_LEN);
    slot.extend_from_slice(&SLOT_MAGIC);
    slot.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    slot.extend_from_slice(&sequence.to_le_bytes());
    slot.extend_from_slice(payload);
    let crc = crc32fast::hash(&slot);
    slot.extend_from_slice(&crc.to_le_bytes());
    slot.resize(SLOT_LEN, 0);
    if created {
        // Allocate both slots now, so later rewrites need no new blocks.
        let mut both = vec![0u8; 2 * SLOT_LEN];
        both[target * SLOT_LEN..(target + 1) * SLOT_LEN].copy_from_slice(&slot);
        file.write_all_at(&both, 0)
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io(context("writing"), e))?;
        super::fs::sync_dir(dir).map_err(|e| Error::io(context("syncing the directory of"), e))?;
        return Ok(());
    }
    file.write_all_at(&slot, (target * SLOT_LEN) as u64)
        .and_then(|()| file.sync_data())
        .map_err(|e| Error::io(context("writing"), e))
}

fn read_slots(file: &File, path: &Path) -> Result<[Option<Slot>; 2]> {
    let mut buf = vec![0u8; SLOT_LEN];
    let mut out = [None, None];
    for (index, slot) in out.iter_mut().enumerate() {
        let read = read_fully_at(file, &mut buf, (index * SLOT_LEN) as u64)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        *slot = decode_slot(&buf[..read]);
    }
    Ok(out)
}

/// Reads as much of `buf` as the file has at `offset`.
fn read_fully_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// A slot's payload if the slot is intact; any bytes may be hostile.
fn decode_slot(bytes: &[u8]) -> Option<Slot> {
    if bytes.get(..4)? != SLOT_MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?) as usize;
    if len > MANIFEST_LEN_MAX {
        return None;
    }
    let sequence = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    let end = SLOT_HEADER_LEN + len;
    let stored = u32::from_le_bytes(bytes.get(end..end + 4)?.try_into().ok()?);
    if crc32fast::hash(bytes.get(..end)?) != stored {
        return None;
    }
    Some(Slot {
        sequence,
        payload: bytes.get(SLOT_HEADER_LEN..end)?.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_write_leaves_the_older_manifest() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        write(dir.path(), b"one").unwrap();
        write(dir.path(), b"two").unwrap();
        assert_eq!(read(dir.path()).unwrap().as_deref(), Some(&b"two"[..]));
        // Tear the slot "two" went to (slot 1): "one" is back.
        let file = OpenOptions::new()
            .write(true)
            .open(dir.path().join(FILE_NAME))
            .unwrap();
        file.write_all_at(b"garbage", SLOT_LEN as u64 + 20).unwrap();
        assert_eq!(read(dir.path()).unwrap().as_deref(), Some(&b"one"[..]));
        // The next write goes over the torn slot.
        write(dir.path(), b"three").unwrap();
        assert_eq!(read(dir.path()).unwrap().as_deref(), Some(&b"three"[..]));
        write(dir.path(), b"four").unwrap();
        assert_eq!(read(dir.path()).unwrap().as_deref(), Some(&b"four"[..]));
        // Both slots bad: corrupt, not absent.
        file.write_all_at(&[0xff; 64], 0).unwrap();
        file.write_all_at(&[0xff; 64], SLOT_LEN as u64).unwrap();
        assert!(matches!(read(dir.path()), Err(Error::Corrupt { .. })));
    }
}
