//! Recovery, phase 1: scan every reachable node of the store and gather the
//! column records of each stripe.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::super::manifest::Manifests;
use super::super::nodes::NodeSet;
use crate::format::ColumnHeader;
use crate::layout::Layout;
use crate::layout::NodeId;
use crate::node::{Node, Scan, ScannedRecord};
use crate::{Error, Result};

/// The records found of one stripe, all with the same header (but for the
/// column index).
pub(crate) struct Found {
    pub header: ColumnHeader,
    pub records: Vec<(NodeId, ScannedRecord)>,
}

impl Found {
    /// Whether column `column`'s record was found on `node`.
    pub fn has_column_on(&self, column: usize, node: NodeId) -> bool {
        self.records
            .iter()
            .any(|(n, r)| *n == node && usize::from(r.header.column_index) == column)
    }

    /// Payload bytes of every record found.
    pub fn stored_bytes(&self) -> u64 {
        self.records
            .iter()
            .map(|(_, r)| u64::from(r.location.len))
            .sum()
    }
}

/// Everything the scans found.
#[derive(Default)]
pub(crate) struct Scanned {
    pub stripes: BTreeMap<u64, Found>,
    /// (node, generation) pairs with damage in the middle of the durable
    /// bytes: such a node may have lost records of that generation.
    pub damaged: HashSet<(NodeId, u64)>,
    /// Bytes cut from the end of (node, generation) at open as a torn
    /// write: the last records of that segment may have been there.
    pub torn: HashMap<(NodeId, u64), u64>,
    pub corrupt_regions: usize,
    pub tail_bytes_truncated: u64,
    /// Records whose header disagreed with the stripe's chosen header.
    pub inconsistent_records: usize,
    /// Nodes a checkpoint measured that were scanned whole all the same:
    /// a segment did not hold what the checkpoint saw.
    pub scanned_whole: HashSet<NodeId>,
}

/// Where a scan starts in each segment: a checkpoint's horizons, for the
/// nodes it measured. Nodes it did not measure, and segments it did not
/// see, are scanned whole.
#[derive(Default)]
pub(crate) struct Horizons {
    pub lens: HashMap<(NodeId, u64), u64>,
    pub measured: HashSet<NodeId>,
}

impl Horizons {
    fn from(&self, node: NodeId, generation: u64) -> u64 {
        self.lens.get(&(node, generation)).copied().unwrap_or(0)
    }
}

/// One node's scan: every generation's records (and whether the node
/// scanned it from its horizon itself, `Node::scan_from`), or why not.
type NodeScan = (NodeId, Arc<dyn Node>, Result<Vec<(u64, Scan, bool)>>);

/// Phase 1: every reachable member node's records.
pub(crate) struct NodeScanner<'a> {
    pub layout: &'a Layout,
    pub nodes: &'a NodeSet,
    pub manifests: &'a Manifests,
}

impl NodeScanner<'_> {
    /// Scans every reachable member node in parallel (a remote node is
    /// latency-bound, a local one verifies every payload checksum). A node
    /// whose scan fails is marked down.
    ///
    /// # Errors
    /// [`Error::InvalidLayout`] when a node holds stripes of another code.
    pub(crate) fn scan_nodes(&self) -> Result<Scanned> {
        self.scan_nodes_from(&Horizons::default())
    }

    /// [`scan_nodes`](Self::scan_nodes), keeping only the records and
    /// damage past `horizons`.
    ///
    /// # Errors
    /// As `scan_nodes`.
    pub(crate) fn scan_nodes_from(&self, horizons: &Horizons) -> Result<Scanned> {
        let code = self.layout.code();
        let (k, m) = (code.data_count, code.parity_count);
        let scanned = self.scan_members(horizons);
        // Candidate headers per stripe id: a stripe id with two different
        // headers (a misdirected or hostile record) keeps the header found
        // in the most columns.
        let mut candidates: BTreeMap<u64, Vec<Found>> = BTreeMap::new();
        let mut out = Scanned::default();
        for (id, node, scans) in scanned {
            let scans = match scans {
                Ok(scans) => scans,
                Err(e) => {
                    self.nodes.mark_down(id, format!("scan failed: {e}"));
                    continue;
                }
            };
            // A node is scanned from its horizons only if every segment
            // scanned from one has a record ending there (or the node found
            // one starting there, scanning from it), or none before it and
            // is at least that long (the checkpoint saw no record there):
            // the segment still holds what the checkpoint saw. Else it is
            // taken whole.
            let meets = |generation: u64, scan: &Scan, from_horizon: bool| {
                let from = horizons.from(id, generation);
                from == 0
                    || from_horizon
                    || scan
                        .records
                        .iter()
                        .any(|r| r.location.offset + u64::from(r.location.len) == from)
                    || (scan.records.iter().all(|r| r.location.offset >= from)
                        && node.segment_len(generation).is_ok_and(|len| len >= from))
            };
            let from_horizons = horizons.measured.contains(&id)
                && scans.iter().all(|(generation, scan, from_horizon)| {
                    meets(*generation, scan, *from_horizon)
                });
            let scans: Vec<(u64, Scan)> = if horizons.measured.contains(&id) && !from_horizons {
                out.scanned_whole.insert(id);
                // What was scanned from a horizon is scanned again whole.
                let whole = scans
                    .into_iter()
                    .map(|(generation, scan, from_horizon)| {
                        if from_horizon {
                            node.scan(generation).map(|scan| (generation, scan))
                        } else {
                            Ok((generation, scan))
                        }
                    })
                    .collect::<Result<Vec<_>>>();
                match whole {
                    Ok(whole) => whole,
                    Err(e) => {
                        self.nodes.mark_down(id, format!("scan failed: {e}"));
                        continue;
                    }
                }
            } else {
                scans.into_iter().map(|(g, scan, _)| (g, scan)).collect()
            };
            for (generation, mut scan) in scans {
                let from = if from_horizons {
                    horizons.from(id, generation)
                } else {
                    0
                };
                if from > 0 {
                    scan.records.retain(|r| r.location.offset >= from);
                    scan.corrupt.retain(|c| c.offset + c.len > from);
                }
                out.corrupt_regions += scan.corrupt.len();
                out.tail_bytes_truncated += scan.truncated_tail_bytes;
                if scan.truncated_tail_bytes > 0 {
                    out.torn.insert((id, generation), scan.truncated_tail_bytes);
                }
                for region in &scan.corrupt {
                    out.damaged.insert((id, region.generation));
                    tracing::warn!(node = %node.name(), generation = region.generation,
                        offset = region.offset, reason = %region.reason, "corrupt region skipped");
                }
                for rec in scan.records {
                    let header = &rec.header;
                    same_code(&*node, header, k, m)?;
                    let list = candidates.entry(header.stripe_id).or_default();
                    match list.iter_mut().find(|f| same_stripe(&f.header, header)) {
                        Some(found) => found.records.push((id, rec)),
                        None => list.push(Found {
                            header: rec.header.clone(),
                            records: vec![(id, rec)],
                        }),
                    }
                }
            }
        }
        for (stripe_id, mut list) in candidates {
            list.sort_by_key(|f| std::cmp::Reverse(distinct_columns(f)));
            let mut list = list.into_iter();
            let Some(best) = list.next() else { continue };
            for other in list {
                out.inconsistent_records += other.records.len();
            }
            out.stripes.insert(stripe_id, best);
        }
        Ok(out)
    }

    /// Every member node's scan, all nodes at once, in node order; a
    /// measured node's segments from their horizons where the node can.
    fn scan_members(&self, horizons: &Horizons) -> Vec<NodeScan> {
        std::thread::scope(|s| {
            let handles: Vec<_> = self
                .nodes
                .ids()
                .filter(|&id| self.manifests.is_member(id))
                .filter_map(|id| Some((id, self.nodes.get(id)?)))
                .map(|(id, node)| {
                    s.spawn(move || {
                        let scans = node.generations().and_then(|gens| {
                            gens.into_iter()
                                .filter(|&g| !super::super::checkpoint::is_checkpoint_generation(g))
                                .map(|g| {
                                    let from = if horizons.measured.contains(&id) {
                                        horizons.from(id, g)
                                    } else {
                                        0
                                    };
                                    if from > 0
                                        && let Some(scan) = node.scan_from(g, from)?
                                    {
                                        return Ok((g, scan, true));
                                    }
                                    node.scan(g).map(|scan| (g, scan, false))
                                })
                                .collect::<Result<Vec<_>>>()
                        });
                        (id, node, scans)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        })
    }
}

/// Refuses a record coded other than the layout's RS(`k`, `m`).
fn same_code(node: &dyn Node, header: &ColumnHeader, k: usize, m: usize) -> Result<()> {
    if usize::from(header.data_count) == k && usize::from(header.parity_count) == m {
        return Ok(());
    }
    Err(Error::InvalidLayout {
        reason: format!(
            "node {} holds stripe {} coded RS({}, {}), but the layout says RS({k}, {m})",
            node.name(),
            header.stripe_id,
            header.data_count,
            header.parity_count
        ),
        fix: "open the store with the layout it was written with".into(),
    })
}

fn distinct_columns(found: &Found) -> usize {
    let mut columns: Vec<u16> = found
        .records
        .iter()
        .map(|(_, r)| r.header.column_index)
        .collect();
    columns.sort_unstable();
    columns.dedup();
    columns.len()
}

/// True when two headers describe the same stripe (all but the column index).
fn same_stripe(a: &ColumnHeader, b: &ColumnHeader) -> bool {
    a.stripe_id == b.stripe_id
        && a.generation == b.generation
        && a.data_count == b.data_count
        && a.parity_count == b.parity_count
        && a.column_lens == b.column_lens
        && a.column_checksums == b.column_checksums
        && a.placement == b.placement
        && a.entry_table_lens == b.entry_table_lens
        && a.commit == b.commit
        && a.handoffs == b.handoffs
}
