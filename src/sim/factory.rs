//! The node factory over the simulated disks: exclusive locks, missing and
//! unmounted directories, and the recovery a local node does at open.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::bucket::{REQUEST_TIMEOUT_US, SimBucket};
use super::executor::SimExecutor;
use super::node::SimNode;
use super::world::World;
use crate::format::scan_segment;
use crate::layout::NodeSpec;
use crate::node::{Node, NodeFactory, ObjectNode, ObjectOptions, OpenPurpose};
use crate::{Error, Result};

/// Opens the simulated disks for a store.
#[derive(Clone, Debug)]
pub(crate) struct SimFactory {
    pub world: Arc<World>,
}

impl NodeFactory for SimFactory {
    fn open_node(&self, spec: &NodeSpec, purpose: OpenPurpose) -> Result<Arc<dyn Node>> {
        let index = self
            .world
            .index_of(spec)
            .ok_or_else(|| Error::invalid(format!("no simulated disk for {}", spec.name)))?;
        if self.world.disk(index).bucket.is_some() {
            return self.open_object_node(spec, index);
        }
        let mut disk = self.world.disk(index);
        let unavailable = |reason: &str| Error::Unavailable {
            node: spec.name.clone(),
            reason: reason.into(),
        };
        if disk.unreachable {
            return Err(unavailable("unreachable"));
        }
        match purpose {
            OpenPurpose::Open if !disk.present => return Err(unavailable("directory is missing")),
            OpenPurpose::Open if !disk.used() => {
                return Err(unavailable("directory holds no store"));
            }
            _ => disk.present = true,
        }
        if disk.locked {
            return Err(Error::Locked {
                path: format!("sim:{}", spec.name).into(),
            });
        }
        disk.epoch += 1;
        disk.locked = true;
        // Recovery, as a local node does it: what follows the last intact
        // record is a torn tail, left on disk (docs/DURABILITY.md, D5) and
        // reported by every scan; appends go after the intact part.
        let mut durable = BTreeMap::new();
        let mut truncated = BTreeMap::new();
        disk.segments.retain(|_, bytes| !bytes.is_empty());
        for (&generation, bytes) in &mut disk.segments {
            let scan = scan_segment(bytes, generation);
            durable.insert(generation, scan.intact_len);
            let cut = bytes.len() as u64 - scan.intact_len;
            if cut > 0 {
                truncated.insert(generation, cut);
                if crate::mutation::enabled(crate::mutation::Mutation::CutTornTails) {
                    bytes.truncate(scan.intact_len as usize);
                }
            }
        }
        let epoch = disk.epoch;
        drop(disk);
        Ok(Arc::new(SimNode::new(
            Arc::clone(&self.world),
            index,
            spec.name.clone(),
            epoch,
            durable,
            truncated,
        )))
    }
}

impl SimFactory {
    /// The real object-store node over the disk's bucket, opened as the
    /// default factory opens a URL node (whatever the purpose: an empty
    /// prefix opens, takes the lease and holds nothing yet). A handle
    /// belongs to the process running now; its lease names the open.
    fn open_object_node(&self, spec: &NodeSpec, index: usize) -> Result<Arc<dyn Node>> {
        let opened = self
            .world
            .opens
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let bucket = SimBucket {
            world: Arc::clone(&self.world),
            index,
            opened,
            process: self.world.process(),
        };
        let options = ObjectOptions {
            request_timeout: std::time::Duration::from_micros(REQUEST_TIMEOUT_US),
            ..ObjectOptions::default()
        };
        let node = ObjectNode::open_store_as(
            &spec.name,
            Arc::new(bucket),
            "geoshard",
            &options,
            format!("sim open {opened}"),
            Arc::new(SimExecutor {
                world: Arc::clone(&self.world),
            }),
        )?;
        Ok(Arc::new(node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::RecordRef;
    use crate::sim::world::LeaseFault;

    /// A hung lease read is ended by the object node's own timeout, a
    /// timer on simulated time: the append is refused as a lease in doubt
    /// after exactly the request timeout (and the requests' latency).
    #[test]
    fn a_hung_lease_read_ends_at_the_nodes_own_timeout() {
        let layout = crate::sim::sim_layout(3, 1, 2, 1);
        let world = World::new(7, &layout, true);
        let factory = SimFactory {
            world: Arc::clone(&world),
        };
        let spec = &layout.nodes()[0];
        let node = factory
            .open_node(spec, OpenPurpose::Create)
            .unwrap_or_else(|e| panic!("open: {e}"));
        let opened_before = world.opens.load(std::sync::atomic::Ordering::Acquire);
        if let Some(bucket) = world.disk(0).bucket.as_mut() {
            bucket.lease_fault = Some(LeaseFault {
                hang: true,
                opened_before,
            });
        }
        let before = world.now_us();
        let header = crate::node::conformance::sample_header(1, 1, 0, b"abcd");
        let appended = node.append(
            1,
            &[RecordRef {
                header: &header,
                payload: b"abcd",
            }],
        );
        assert!(
            matches!(appended, Err(Error::WriteRefused { .. })),
            "{appended:?}"
        );
        let took = world.now_us() - before;
        assert!(
            (REQUEST_TIMEOUT_US..REQUEST_TIMEOUT_US + 10_000).contains(&took),
            "took {took} µs"
        );
        assert!(world.take_hang().is_none());
    }
}
