//! The lock file that makes a node directory single-owner.
//!
//! `LOCK` holds an advisory exclusive lock (`flock`) for as long as the node
//! is open; the kernel drops it when the process dies, so a crash never
//! leaves a stale lock. The text inside only helps a human find the owner.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::Path;

use crate::{Error, Result};

/// File name of the lock file inside a node directory.
pub(super) const LOCK_FILE_NAME: &str = "LOCK";

/// Times the lock is asked for, 2 ms apart, before it counts as held by
/// another owner (about 100 ms).
const LOCK_ATTEMPTS: u32 = 50;

/// Holds the lock until dropped.
#[derive(Debug)]
pub(super) struct LockFile {
    _file: File,
}

pub(super) fn acquire(dir: &Path, node_name: &str) -> Result<LockFile> {
    let path = dir.join(LOCK_FILE_NAME);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(format!("opening lock file {}", path.display()), e))?;
    // A lock released a moment ago can still be held for a few
    // milliseconds: a child this process forked (to exec something else)
    // shares the lock file's description until its exec closes it. Ask
    // again for a short while before calling the directory another owner's.
    let mut attempts = 0;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) if attempts < LOCK_ATTEMPTS => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Err(TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    path: dir.to_path_buf(),
                });
            }
            Err(TryLockError::Error(e)) => {
                return Err(Error::io(format!("locking {}", path.display()), e));
            }
        }
    }
    let owner = format!(
        "geoshard node lock\nformat_version {}\nnode {node_name}\npid {}\n",
        crate::format::FORMAT_VERSION,
        std::process::id()
    );
    file.set_len(0)
        .and_then(|()| file.write_all(owner.as_bytes()))
        .map_err(|e| Error::io(format!("writing lock file {}", path.display()), e))?;
    Ok(LockFile { _file: file })
}
