//! Moving many blobs in or out with one open of the store: `put --dir`,
//! `put --list` and `get --prefix`.
//!
//! Puts go through the async API: up to [`IN_FLIGHT`] files (and at most
//! [`BYTES_IN_FLIGHT`] bytes) wait for durability at once, so they share
//! commits instead of paying one commit each, from this one thread.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{BufRead, Write};
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use geoshard::{Completion, Store};
use serde::Serialize;

use crate::{CliResult, Failure, ui};

/// Puts waiting for durability at once.
const IN_FLIGHT: usize = 1024;
/// Bytes of values waiting for durability at once (bounds memory).
const BYTES_IN_FLIGHT: u64 = 256 << 20;

#[derive(Serialize)]
struct BulkOutput {
    blobs: u64,
    bytes: u64,
    seconds: f64,
    blobs_per_sec: f64,
    mb_per_sec: f64,
}

impl BulkOutput {
    fn print(&self, json: bool, verb: &str) -> CliResult {
        if json {
            return ui::print_json(self);
        }
        println!(
            "{verb} {} blobs ({}) in {:.1} s: {:.0} blobs/s, {:.1} MB/s",
            self.blobs,
            ui::bytes(self.bytes),
            self.seconds,
            self.blobs_per_sec,
            self.mb_per_sec
        );
        Ok(())
    }
}

/// `put --dir DIR`: every file under `dir`, keyed by `prefix` and its
/// relative path.
pub fn put_dir(store: &Store, json: bool, dir: &Path, prefix: &str) -> CliResult {
    let mut files = Vec::new();
    walk(dir, &mut files).map_err(|e| {
        Failure::failed(format!(
            "cannot list {}: {e}. Pass a readable directory to --dir",
            dir.display()
        ))
    })?;
    files.sort();
    let keyed = files
        .into_iter()
        .map(|path| {
            let relative = path.strip_prefix(dir).unwrap_or(&path);
            Ok((key_of(prefix, relative)?, path))
        })
        .collect::<Result<Vec<_>, Failure>>()?;
    put_files(store, json, keyed)
}

/// `put --list LIST`: the files named in `list` (or stdin), one per line,
/// keyed by `prefix` and the path as written.
pub fn put_list(store: &Store, json: bool, list: &Path, prefix: &str) -> CliResult {
    let lines: Vec<String> = if list == Path::new("-") {
        std::io::stdin().lock().lines().collect::<Result<_, _>>()
    } else {
        std::fs::File::open(list)
            .map(std::io::BufReader::new)
            .and_then(|r| r.lines().collect::<Result<_, _>>())
    }
    .map_err(|e| {
        Failure::failed(format!(
            "cannot read the list {}: {e}. Pass a text file of paths, one per line, or `-`",
            list.display()
        ))
    })?;
    let keyed = lines
        .iter()
        .map(|line| line.trim_end_matches('\r'))
        .filter(|line| !line.is_empty())
        .map(|line| {
            let path = PathBuf::from(line);
            Ok((key_of(prefix, &path)?, path))
        })
        .collect::<Result<Vec<_>, Failure>>()?;
    put_files(store, json, keyed)
}

/// Every file under `dir`, recursively (symbolic links are not followed).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&entry.path(), out)?;
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
    Ok(())
}

/// The key of a file at `path`: `prefix` then the path's parts joined by
/// `/` (`.` parts dropped, leading `/` and `..` refused: a key names a
/// place under the prefix).
fn key_of(prefix: &str, path: &Path) -> Result<String, Failure> {
    let mut key = prefix.to_string();
    let mut first = true;
    for part in path.components() {
        match part {
            Component::Normal(name) => {
                let name = name.to_str().ok_or_else(|| {
                    Failure::failed(format!(
                        "{} is not UTF-8: keys are text. Rename it, or put it alone with a KEY",
                        path.display()
                    ))
                })?;
                if !first {
                    key.push('/');
                }
                key.push_str(name);
                first = false;
            }
            Component::CurDir => {}
            _ => {
                return Err(Failure::failed(format!(
                    "{}: list paths relative to where their keys should start (no leading `/` \
                     or `..`)",
                    path.display()
                )));
            }
        }
    }
    Ok(key)
}

/// Puts every `(key, path)`, many in flight at once.
fn put_files(store: &Store, json: bool, files: Vec<(String, PathBuf)>) -> CliResult {
    let started = Instant::now();
    let bar = ui::bar(json, files.len() as u64, "storing", "files");
    let mut waiting: VecDeque<(String, u64, Completion<()>)> = VecDeque::new();
    let mut bytes_waiting = 0u64;
    let (mut blobs, mut bytes) = (0u64, 0u64);
    let mut settle = |entry: (String, u64, Completion<()>), bytes_waiting: &mut u64| {
        let (key, len, completion) = entry;
        block_on(completion).map_err(|e| Failure::failed(format!("put {key}: {e}")))?;
        *bytes_waiting -= len;
        blobs += 1;
        bytes += len;
        bar.inc(1);
        Ok::<(), Failure>(())
    };
    for (key, path) in files {
        let value = std::fs::read(&path).map_err(|e| {
            Failure::failed(format!(
                "cannot read {}: {e}. Check the file, then run the command again (puts are \
                 idempotent)",
                path.display()
            ))
        })?;
        let len = value.len() as u64;
        while !waiting.is_empty()
            && (waiting.len() >= IN_FLIGHT || bytes_waiting + len > BYTES_IN_FLIGHT)
        {
            if let Some(entry) = waiting.pop_front() {
                settle(entry, &mut bytes_waiting)?;
            }
        }
        let completion = store.put_async(key.as_bytes(), value);
        bytes_waiting += len;
        waiting.push_back((key, len, completion));
    }
    while let Some(entry) = waiting.pop_front() {
        settle(entry, &mut bytes_waiting)?;
    }
    bar.finish_and_clear();
    summary(blobs, bytes, started).print(json, "stored")
}

/// `get --prefix PREFIX -o DIR`: every blob under the prefix into `dir`.
pub fn get_prefix(store: &Store, json: bool, prefix: &str, dir: &Path) -> CliResult {
    let started = Instant::now();
    let keys: Vec<Vec<u8>> = store.keys_with_prefix(prefix.as_bytes()).collect();
    let bar = ui::bar(json, keys.len() as u64, "fetching", "blobs");
    let (mut blobs, mut bytes) = (0u64, 0u64);
    for key in keys {
        let shown = String::from_utf8_lossy(&key).into_owned();
        let target = path_of(dir, &key)?;
        // A key deleted since the listing is skipped.
        let Some(blob) = store.get(&key)? else {
            bar.inc(1);
            continue;
        };
        let write = || -> std::io::Result<()> {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut file = std::fs::File::create(&target)?;
            for chunk in blob.chunks() {
                file.write_all(chunk)?;
            }
            file.sync_all()
        };
        write().map_err(|e| {
            Failure::failed(format!(
                "cannot write {} (key {shown}): {e}. Check free space, and that no key is both a \
                 blob and the start of another's path",
                target.display()
            ))
        })?;
        blobs += 1;
        bytes += blob.len() as u64;
        bar.inc(1);
    }
    bar.finish_and_clear();
    summary(blobs, bytes, started).print(json, "fetched")
}

/// Where the blob of `key` goes under `dir`: its `/`-separated parts as
/// path parts. A key that would leave `dir` or cannot be a file name there
/// (an empty, `.` or `..` part, a NUL, not UTF-8) is refused.
fn path_of(dir: &Path, key: &[u8]) -> Result<PathBuf, Failure> {
    let refuse = |why: &str| {
        Failure::failed(format!(
            "key {:?} {why}, so it cannot be written as a file under {}. Fetch it alone with \
             `geoshard get KEY -o FILE`",
            String::from_utf8_lossy(key),
            dir.display()
        ))
    };
    let text = std::str::from_utf8(key).map_err(|_| refuse("is not UTF-8"))?;
    let mut path = dir.to_path_buf();
    for part in text.split('/') {
        if part.is_empty() || part == "." || part == ".." || part.contains('\0') {
            return Err(refuse("has an empty, `.`, `..` or NUL part"));
        }
        path.push(part);
    }
    Ok(path)
}

fn summary(blobs: u64, bytes: u64, started: Instant) -> BulkOutput {
    let elapsed = started.elapsed();
    BulkOutput {
        blobs,
        bytes,
        seconds: elapsed.as_secs_f64(),
        blobs_per_sec: ui::per_sec(blobs, elapsed),
        mb_per_sec: ui::mb_per_sec(bytes, elapsed),
    }
}

/// Wakes the thread that waits in [`block_on`].
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Waits for `future` on this thread (parked between polls).
fn block_on<F: Future + Unpin>(mut future: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = Pin::new(&mut future).poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}
