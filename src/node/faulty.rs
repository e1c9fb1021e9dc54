//! A fault-injecting wrapper around any [`Node`], for tests and drills: burn
//! the node (a site fire), fail appends with an errno (EIO, ENOSPC), flip
//! bits in what reads return, add latency.

use std::sync::Mutex;
use std::sync::PoisonError;
use std::time::Duration;

use bytes::Bytes;

use super::{Capacity, Node, RecordLocation, RecordRef, Scan};
use crate::{Error, Result};

#[derive(Debug, Default)]
struct Faults {
    burned: bool,
    failing_appends: u32,
    append_errno: i32,
    flip_reads: bool,
    latency: Duration,
}

/// Wraps a node and injects faults on demand; with no fault set it behaves
/// exactly like the node it wraps (it passes the conformance suite).
///
/// # Example
/// ```
/// use geoshard::node::{FaultyNode, LocalNode, LocalOptions, Node};
///
/// let dir = tempfile::tempdir()?;
/// let node = FaultyNode::new(LocalNode::open("a1", dir.path(), &LocalOptions::default())?);
/// node.burn();
/// assert!(matches!(node.generations(), Err(geoshard::Error::Unavailable { .. })));
/// node.heal();
/// assert!(node.generations()?.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct FaultyNode<N> {
    inner: N,
    faults: Mutex<Faults>,
}

impl<N: Node> FaultyNode<N> {
    /// Wraps `inner`, with no fault set.
    pub fn new(inner: N) -> Self {
        FaultyNode {
            inner,
            faults: Mutex::new(Faults::default()),
        }
    }

    /// The wrapped node.
    pub fn inner(&self) -> &N {
        &self.inner
    }

    /// Unwraps the node.
    pub fn into_inner(self) -> N {
        self.inner
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every call fails with [`Error::Unavailable`] until [`heal`](Self::heal).
    pub fn burn(&self) {
        self.faults().burned = true;
    }

    /// Clears every fault.
    pub fn heal(&self) {
        *self.faults() = Faults::default();
    }

    /// The next `count` appends fail with `Error::Io` of OS error `errno`
    /// (e.g. `libc::EIO`, `libc::ENOSPC`) and write nothing.
    pub fn fail_next_appends(&self, count: u32, errno: i32) {
        let mut faults = self.faults();
        faults.failing_appends = count;
        faults.append_errno = errno;
    }

    /// While on, every non-empty read returns a copy of the bytes with one
    /// bit flipped (which bit depends on the range, so it is repeatable).
    pub fn flip_bits_on_read(&self, on: bool) {
        self.faults().flip_reads = on;
    }

    /// Every call first sleeps `latency`.
    pub fn set_latency(&self, latency: Duration) {
        self.faults().latency = latency;
    }

    /// Applies latency and burning; returns whether reads should be flipped.
    fn enter(&self) -> Result<bool> {
        let (latency, burned, flip) = {
            let faults = self.faults();
            (faults.latency, faults.burned, faults.flip_reads)
        };
        if !latency.is_zero() {
            std::thread::sleep(latency);
        }
        if burned {
            return Err(Error::Unavailable {
                node: self.inner.name().to_string(),
                reason: "burned by fault injection".into(),
            });
        }
        Ok(flip)
    }
}

impl<N: Node> Node for FaultyNode<N> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn append(&self, generation: u64, records: &[RecordRef<'_>]) -> Result<Vec<RecordLocation>> {
        self.enter()?;
        let errno = {
            let mut faults = self.faults();
            if faults.failing_appends > 0 {
                faults.failing_appends -= 1;
                Some(faults.append_errno)
            } else {
                None
            }
        };
        if let Some(errno) = errno {
            return Err(Error::io(
                format!("appending to node {} (injected fault)", self.inner.name()),
                std::io::Error::from_raw_os_error(errno),
            ));
        }
        self.inner.append(generation, records)
    }

    fn read(&self, generation: u64, offset: u64, len: u32) -> Result<Bytes> {
        let flip = self.enter()?;
        let bytes = self.inner.read(generation, offset, len)?;
        if !flip || bytes.is_empty() {
            return Ok(bytes);
        }
        let mut copy = bytes.to_vec();
        let bit = (offset.wrapping_mul(31).wrapping_add(u64::from(len))) % (copy.len() as u64 * 8);
        if let Some(byte) = copy.get_mut((bit / 8) as usize) {
            *byte ^= 1 << (bit % 8);
        }
        Ok(Bytes::from(copy))
    }

    fn scan(&self, generation: u64) -> Result<Scan> {
        self.enter()?;
        self.inner.scan(generation)
    }

    fn generations(&self) -> Result<Vec<u64>> {
        self.enter()?;
        self.inner.generations()
    }

    fn segment_len(&self, generation: u64) -> Result<u64> {
        self.enter()?;
        self.inner.segment_len(generation)
    }

    fn scan_from(&self, generation: u64, from: u64) -> Result<Option<Scan>> {
        self.enter()?;
        self.inner.scan_from(generation, from)
    }

    fn remove_generation(&self, generation: u64) -> Result<()> {
        self.enter()?;
        self.inner.remove_generation(generation)
    }

    fn capacity(&self) -> Result<Capacity> {
        self.enter()?;
        self.inner.capacity()
    }

    fn check(&self) -> Result<()> {
        self.enter()?;
        self.inner.check()
    }

    fn read_manifest(&self) -> Result<Option<Bytes>> {
        self.enter()?;
        self.inner.read_manifest()
    }

    fn write_manifest(&self, manifest: &[u8]) -> Result<()> {
        self.enter()?;
        self.inner.write_manifest(manifest)
    }

    fn is_fenced(&self) -> bool {
        self.inner.is_fenced()
    }

    /// The inner node's while no fault is set that touches appends (burned,
    /// failing appends, latency): then appends go through
    /// [`Node::append`], where the faults are.
    fn shared_submission(&self) -> Option<super::SharedSubmission<'_>> {
        let faults = self.faults();
        let untouched = !faults.burned && faults.failing_appends == 0 && faults.latency.is_zero();
        drop(faults);
        if untouched {
            self.inner.shared_submission()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::conformance::{run, sample_header, sample_payload};
    use crate::node::{LocalNode, LocalOptions, NodeExt};

    fn node(dir: &std::path::Path) -> FaultyNode<LocalNode> {
        FaultyNode::new(LocalNode::open("f1", dir, &LocalOptions::default()).unwrap())
    }

    #[test]
    fn without_faults_it_conforms() {
        let dir = tempfile::tempdir().unwrap();
        run(|| LocalNode::open("f1", dir.path(), &LocalOptions::default()).map(FaultyNode::new));
    }

    #[test]
    fn wrapping_a_shared_handle_of_any_node_conforms() {
        let dir = tempfile::tempdir().unwrap();
        run(|| {
            LocalNode::open("f1", dir.path(), &LocalOptions::default()).map(|node| {
                let shared: std::sync::Arc<dyn Node> = std::sync::Arc::new(node);
                FaultyNode::new(shared)
            })
        });
    }

    #[test]
    fn each_fault_does_what_it_says() {
        let dir = tempfile::tempdir().unwrap();
        let node = node(dir.path());
        let payload = sample_payload(1, 500);
        let header = sample_header(1, 0, 0, &payload);
        let batch = [RecordRef {
            header: &header,
            payload: &payload,
        }];
        let location = node.append(0, &batch).unwrap()[0];

        node.fail_next_appends(2, libc::ENOSPC);
        for _ in 0..2 {
            match node.append(0, &batch) {
                Err(Error::Io { source, .. }) => {
                    assert_eq!(source.raw_os_error(), Some(libc::ENOSPC))
                }
                other => panic!("expected ENOSPC, got {other:?}"),
            }
        }
        node.append(0, &batch)
            .expect("the third append goes through");
        assert_eq!(
            node.scan(0).unwrap().records.len(),
            2,
            "failed appends wrote nothing"
        );

        node.flip_bits_on_read(true);
        assert!(matches!(
            node.read_checked(0, location.offset, location.len, header.payload_checksum()),
            Err(Error::ChecksumMismatch { .. })
        ));
        node.flip_bits_on_read(false);
        node.read_checked(0, location.offset, location.len, header.payload_checksum())
            .unwrap();

        node.burn();
        assert!(matches!(
            node.read(0, location.offset, 1),
            Err(Error::Unavailable { .. })
        ));
        assert!(matches!(
            node.append(0, &batch),
            Err(Error::Unavailable { .. })
        ));
        assert!(
            node.scan(0).is_err() && node.capacity().is_err() && node.remove_generation(0).is_err()
        );
        assert!(node.read(0, 0, 1).unwrap_err().is_retryable());
        node.heal();

        node.set_latency(Duration::from_millis(20));
        let started = std::time::Instant::now();
        node.generations().unwrap();
        assert!(started.elapsed() >= Duration::from_millis(20));
        assert_eq!(node.inner().name(), "f1");
    }
}
