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
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(Error::Locked {
                path: dir.to_path_buf(),
            });
        }
        Err(TryLockError::Error(e)) => {
            return Err(Error::io(format!("locking {}", path.display()), e));
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
