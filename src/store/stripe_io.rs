//! Stripe I/O: where a stripe's columns go (the plan and the
//! acknowledgement rule of docs/DURABILITY.md) and writing them to exactly
//! those nodes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::metrics::Metrics;
use super::nodes::NodeSet;
use super::stripes::StripeInfo;
use super::{Options, WritePolicy};
use crate::Error;
use crate::format::ColumnHeader;
use crate::layout::{Layout, NodeId, PromiseRoom};
use crate::node::{AppendBatch, Node, RecordLocation, RecordRef, append_all_timed};

/// Where every column of a stripe goes.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    /// The planned node of every column (`None` for a column of length 0,
    /// which is never stored).
    pub nodes: Vec<Option<NodeId>>,
    /// The stripe is written while the promise is used up (or exceeded), or
    /// without the margin the promise asks: acknowledged without it.
    pub degraded: bool,
}

/// Why a stripe cannot be written now.
#[derive(Clone, Debug)]
pub(crate) enum PlanRefused {
    /// No node takes writes.
    NoNode { columns: usize },
    /// `WritePolicy::Strict` and the plan would not keep the promise.
    Strict(String),
    /// The nodes that take writes all lie inside one failure set the
    /// promise allows to lose: another writer could hold the rest.
    NoQuorum(String),
}

/// Why writing a planned stripe failed.
#[derive(Debug)]
pub(crate) enum WriteFailed {
    /// Appends to these nodes failed; the nodes were marked. Another plan
    /// may succeed.
    Nodes(Vec<NodeId>),
    /// Another writer took a node's lease: stop writing for good.
    Superseded { node: String, reason: String },
}

/// A node, the planned columns it takes, and its handle.
type NodeColumns = (NodeId, Vec<usize>, Arc<dyn Node>);

/// Stripe I/O over the store's nodes: it plans where columns go and
/// writes them, marking the nodes whose appends fail.
pub(crate) struct StripeIo<'a> {
    pub layout: &'a Layout,
    pub options: &'a Options,
    pub nodes: &'a NodeSet,
    /// Appends to several generations of one node go one after another
    /// (a stepped store: see `Inner::sequential_io`).
    pub sequential_io: bool,
    /// Where each node's append time and bytes go.
    pub metrics: &'a Metrics,
}

/// One node's share of a write: records for one of its generations.
pub(crate) struct NodeAppend<'r> {
    pub node_id: NodeId,
    pub node: Arc<dyn Node>,
    pub generation: u64,
    pub records: Vec<RecordRef<'r>>,
}

impl StripeIo<'_> {
    /// Appends every group's records to its node: all at once (local nodes
    /// share one io_uring submission), or one after another in a stepped
    /// store when `ordered` (several generations of one node race for it
    /// otherwise). A node that answers with the wrong number of locations
    /// takes no more writes and its group fails; other errors are returned
    /// as they are, for the caller to judge (`note_append_error`, or a
    /// superseded store).
    pub(crate) fn append_groups(
        &self,
        groups: &[NodeAppend<'_>],
        ordered: bool,
    ) -> Vec<crate::Result<Vec<RecordLocation>>> {
        let batches: Vec<AppendBatch<'_>> = groups
            .iter()
            .map(|g| (&*g.node, g.generation, &g.records[..]))
            .collect();
        // A stepped store (the simulator) appends one node after another,
        // each timed from its own start.
        let results: Vec<(crate::Result<Vec<RecordLocation>>, Option<Duration>)> =
            if ordered && self.sequential_io {
                batches
                    .iter()
                    .map(|&(node, generation, records)| {
                        let started = Instant::now();
                        (node.append(generation, records), Some(started.elapsed()))
                    })
                    .collect()
            } else {
                append_all_timed(&batches, self.metrics.time_shared_appends())
            };
        groups
            .iter()
            .zip(results)
            .map(|(g, (result, elapsed))| match result {
                Ok(locations) if locations.len() == g.records.len() => {
                    let bytes = g.records.iter().map(|r| r.payload.len() as u64).sum();
                    self.metrics.observe_append(g.node_id, elapsed, bytes);
                    Ok(locations)
                }
                Ok(locations) => {
                    let why = format!(
                        "append returned {} locations for {}",
                        locations.len(),
                        g.records.len()
                    );
                    self.nodes.mark_unwritable(g.node_id, why.clone());
                    Err(Error::invalid(why))
                }
                Err(e) => Err(e),
            })
            .collect()
    }

    /// A node that takes writes for column `column` of `stripe` when its
    /// home does not (nor `avoid`): the handoff that keeps the stripe
    /// safest given where its other columns are (docs/DURABILITY.md,
    /// "Repair, scrub, handoffs"). `None` when no node takes writes.
    pub(crate) fn handoff_target(
        &self,
        stripe: &StripeInfo,
        column: usize,
        avoid: &[NodeId],
        also_held: &[NodeId],
    ) -> Option<NodeId> {
        let homes: Option<Vec<NodeId>> = stripe.columns.iter().map(|c| c.home).collect();
        let placement = crate::layout::Placement::from_columns(stripe.stripe_id, &homes?).ok()?;
        let held: Vec<NodeId> = stripe
            .columns
            .iter()
            .enumerate()
            .filter(|(c, _)| *c != column)
            .filter_map(|(_, col)| col.stored.map(|(n, _)| n))
            .filter(|&n| self.nodes.is_up(n))
            .chain(also_held.iter().copied())
            .collect();
        let candidates: Vec<NodeId> = self
            .nodes
            .ids()
            .filter(|&n| self.nodes.is_writable(n) && !avoid.contains(&n))
            .collect();
        self.layout
            .handoff_for(&placement, column, &held, &candidates)
    }

    /// Plans stripe `stripe_id`, whose columns have `column_lens` (0: not
    /// stored), on the nodes that take writes now (docs/DURABILITY.md,
    /// "The plan and the acknowledgement rule").
    pub(crate) fn plan_stripe(
        &self,
        stripe_id: u64,
        column_lens: &[u32],
    ) -> std::result::Result<Plan, PlanRefused> {
        let layout = &self.layout;
        let placement = layout.placement(stripe_id);
        let stored: Vec<usize> = (0..column_lens.len())
            .filter(|&c| column_lens[c] > 0)
            .collect();
        let zeros = column_lens.len() - stored.len();
        let failed: Vec<NodeId> = self
            .nodes
            .ids()
            .filter(|&n| !self.nodes.is_writable(n))
            .collect();
        let site_blind = crate::mutation::enabled(crate::mutation::Mutation::SiteBlindHandoff);
        let planned = if site_blind {
            self.plan_site_blind(&placement, &stored)
        } else {
            layout.plan_columns(&placement, &stored, &|n| self.nodes.is_writable(n))
        }
        .ok_or(PlanRefused::NoNode {
            columns: stored.len(),
        })?;
        let room = layout.promise_room(&failed);
        let degraded = !site_blind
            && !failed.is_empty()
            && (room != PromiseRoom::Room
                || !layout.survives_promise_given(&planned, zeros, &failed));
        if self.options.write_policy == WritePolicy::Strict
            && (degraded || !layout.survives_promise_given(&planned, zeros, &[]))
        {
            return Err(self.strict_refusal(&failed, room));
        }
        // D6: the planned nodes must be a quorum.
        self.check_quorum(&planned)?;
        let mut nodes = vec![None; column_lens.len()];
        for (&c, n) in stored.iter().zip(planned) {
            nodes[c] = Some(n);
        }
        Ok(Plan { nodes, degraded })
    }

    /// Why a strict write policy refuses to plan with `failed` taking no
    /// writes.
    fn strict_refusal(&self, failed: &[NodeId], room: PromiseRoom) -> PlanRefused {
        let layout = &self.layout;
        let down: Vec<&str> = failed
            .iter()
            .map(|&n| layout.node(n).name.as_str())
            .collect();
        let why = match room {
            PromiseRoom::Room => "no placement of the stripe's columns keeps it",
            PromiseRoom::UsedUp => "the nodes that failed use it up",
            PromiseRoom::Exceeded => "the nodes that failed exceed it",
        };
        PlanRefused::Strict(format!(
            "strict write policy: with {} taking no writes, the layout's promise ({}) cannot \
             be kept: {why}; bring the nodes back or use WritePolicy::Available",
            down.join(", "),
            layout.promise()
        ))
    }

    /// Refuses a plan whose nodes all lie inside one promise failure set:
    /// a writer cut off with them could otherwise acknowledge while a new
    /// writer, holding the rest, does too (two quorums intersect;
    /// docs/DURABILITY.md, D6).
    fn check_quorum(&self, planned: &[NodeId]) -> std::result::Result<(), PlanRefused> {
        let layout = &self.layout;
        let mut distinct = planned.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        if !super::manifest::is_quorum(layout, &distinct) {
            let names: Vec<&str> = distinct
                .iter()
                .map(|&n| layout.node(n).name.as_str())
                .collect();
            return Err(PlanRefused::NoQuorum(format!(
                "only {} take writes, and the layout's promise ({}) allows losing all of them at \
                 once: acknowledging there could not be told apart from a second writer holding \
                 the other nodes; bring more nodes back",
                names.join(", "),
                layout.promise()
            )));
        }
        Ok(())
    }

    /// The planned columns grouped by node, with each node's handle; the
    /// nodes that take no writes now if there are any.
    fn writable_groups(&self, plan: &Plan) -> std::result::Result<Vec<NodeColumns>, WriteFailed> {
        let mut by_node: Vec<(NodeId, Vec<usize>)> = Vec::new();
        for (c, n) in plan.nodes.iter().enumerate() {
            let Some(n) = *n else { continue };
            match by_node.iter_mut().find(|(id, _)| *id == n) {
                Some((_, cols)) => cols.push(c),
                None => by_node.push((n, vec![c])),
            }
        }
        let mut failed = Vec::new();
        let mut live: Vec<NodeColumns> = Vec::new();
        for (n, cols) in by_node {
            match self.nodes.get_writable(n) {
                Some(node) => live.push((n, cols, node)),
                None => failed.push(n),
            }
        }
        if !failed.is_empty() {
            return Err(WriteFailed::Nodes(failed));
        }
        Ok(live)
    }

    /// The plan before the durability fix (a mutation, docs/TESTING.md): a
    /// column whose home takes no writes goes to the writable node holding
    /// the fewest columns of the stripe, lowest id first, whatever its site.
    fn plan_site_blind(
        &self,
        placement: &crate::layout::Placement,
        stored: &[usize],
    ) -> Option<Vec<NodeId>> {
        let columns = placement.columns();
        let mut planned: Vec<NodeId> = Vec::with_capacity(stored.len());
        for &c in stored {
            let home = columns[c];
            let node = if self.nodes.is_writable(home) {
                home
            } else {
                self.nodes
                    .ids()
                    .filter(|&n| self.nodes.is_writable(n))
                    .min_by_key(|&n| (planned.iter().filter(|&&p| p == n).count(), n.0))?
            };
            planned.push(node);
        }
        Some(planned)
    }

    /// The handoffs a header records for `plan`: columns planned away from
    /// their placement node.
    pub(crate) fn handoffs_of(&self, stripe_id: u64, plan: &Plan) -> Vec<(u16, String)> {
        let placement = self.layout.placement(stripe_id);
        plan.nodes
            .iter()
            .enumerate()
            .filter_map(|(c, n)| {
                let n = (*n)?;
                (n != placement.columns()[c]).then(|| (c as u16, self.layout.node(n).name.clone()))
            })
            .collect()
    }

    /// Appends every planned column (`payloads[c]` with `headers[c]`) to its
    /// planned node, one append per node, all nodes in parallel. Returns
    /// every column's location, or which nodes failed (they are marked:
    /// down when unreachable, else taking no writes).
    pub(crate) fn write_planned(
        &self,
        generation: u64,
        plan: &Plan,
        headers: &[ColumnHeader],
        payloads: &[&[u8]],
    ) -> std::result::Result<Vec<Option<(NodeId, RecordLocation)>>, WriteFailed> {
        let live = self.writable_groups(plan)?;
        let mut failed = Vec::new();
        let groups: Vec<NodeAppend<'_>> = live
            .iter()
            .map(|(n, cols, node)| NodeAppend {
                node_id: *n,
                node: Arc::clone(node),
                generation,
                records: cols
                    .iter()
                    .map(|&c| RecordRef {
                        header: &headers[c],
                        payload: payloads[c],
                    })
                    .collect(),
            })
            .collect();
        let results = self.append_groups(&groups, false);
        let mut out = vec![None; plan.nodes.len()];
        for ((n, cols, _), result) in live.iter().zip(results) {
            match result {
                Ok(locations) => {
                    for (&c, loc) in cols.iter().zip(locations) {
                        out[c] = Some((*n, loc));
                    }
                }
                Err(Error::Superseded { node, reason }) => {
                    self.nodes.supersede(node.clone(), reason.clone());
                    return Err(WriteFailed::Superseded { node, reason });
                }
                Err(e) => {
                    self.note_append_error(*n, generation, &e);
                    failed.push(*n);
                }
            }
        }
        if failed.is_empty() {
            Ok(out)
        } else {
            Err(WriteFailed::Nodes(failed))
        }
    }

    /// Marks a node whose append failed: down when it cannot be reached,
    /// else it takes no more writes (its durable records are still read).
    pub(crate) fn note_append_error(&self, node: NodeId, generation: u64, e: &Error) {
        let reason = format!("append to generation {generation} failed: {e}");
        if matches!(e, Error::Unavailable { .. }) {
            self.nodes.mark_down(node, reason);
        } else {
            self.nodes.mark_unwritable(node, reason);
        }
    }
}

impl PlanRefused {
    pub(crate) fn to_error(&self) -> Error {
        match self {
            PlanRefused::NoNode { columns } => Error::NotEnoughColumns {
                needed: *columns,
                available: 0,
            },
            PlanRefused::Strict(reason) | PlanRefused::NoQuorum(reason) => Error::WriteRefused {
                reason: reason.clone(),
            },
        }
    }
}
