//! The node factory over the simulated disks: exclusive locks, missing and
//! unmounted directories, and the recovery a local node does at open.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::bucket::{HANG_US, SimBucket};
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
            request_timeout: std::time::Duration::from_micros(HANG_US),
            ..ObjectOptions::default()
        };
        let node = ObjectNode::open_store_as(
            &spec.name,
            Arc::new(bucket),
            "geoshard",
            &options,
            format!("sim open {opened}"),
        )?;
        Ok(Arc::new(node))
    }
}
