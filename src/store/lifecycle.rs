//! The node set's lifecycle while the store runs: checking the nodes
//! (a deleted local directory, a remote node's lease), and bringing back
//! the ones that are down, fenced or wiped, through the node factory, so
//! that the store never names a concrete node type. A node that comes back
//! without this store's manifest is adopted (docs/DURABILITY.md, "Repair").

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::Duration;

use super::State;
use super::clock::Clock;
use super::commit::NODE_CHECK_INTERVAL;
use super::manifest::Manifests;
use super::nodes::NodeSet;
use crate::format::Manifest;
use crate::layout::{Layout, NodeId};
use crate::node::{Node, NodeFactory};
use crate::{Error, Result};

/// The node lifecycle over the store's nodes, manifests and stripe table.
pub(crate) struct NodeLifecycle<'a> {
    pub layout: &'a Layout,
    pub nodes: &'a NodeSet,
    pub factory: &'a dyn NodeFactory,
    pub manifests: &'a Manifests,
    pub clock: &'a dyn Clock,
    /// When the remote nodes were last checked (by `clock`).
    pub remote_checked: &'a Mutex<Option<Duration>>,
    /// The next stripe id: an adopted node holds every column from it on.
    pub next_stripe_id: &'a AtomicU64,
    /// The stripe table: a node reopened empty has its columns forgotten.
    pub state: &'a RwLock<State>,
}

impl NodeLifecycle<'_> {
    /// Marks down local nodes whose directory is gone (a fire while the
    /// store runs); the open files of a deleted directory would otherwise
    /// keep answering.
    ///
    /// Up remote nodes are asked [`Node::check`] (their lease), in parallel
    /// and at most once per [`NODE_CHECK_INTERVAL`]: a wiped prefix marks
    /// the node down, a lease taken by another writer stops this store's
    /// writes.
    pub(crate) fn check_nodes(&self) {
        let mut remote = Vec::new();
        for id in self.nodes.ids() {
            let Some(node) = self.nodes.get(id) else {
                continue;
            };
            if self.nodes.is_remote(id) {
                remote.push((id, node));
            } else {
                match node.check() {
                    Ok(()) => {}
                    // It answers but must take no writes (a lease in
                    // doubt): reads go on (simulator finding S12).
                    Err(e @ Error::WriteRefused { .. }) => {
                        self.nodes.mark_unwritable(id, format!("check: {e}"));
                    }
                    Err(e) => self.nodes.mark_down(id, super::open::down_reason(e)),
                }
            }
        }
        if remote.is_empty() || !self.remote_check_due() {
            return;
        }
        let results: Vec<(NodeId, Result<()>)> =
            super::nodes::parallel_map(&remote, |(id, node)| (*id, node.check()));
        for (id, result) in results {
            match result {
                Ok(()) => {}
                Err(Error::Superseded { node, reason }) => self.nodes.supersede(node, reason),
                Err(e @ Error::WriteRefused { .. }) => {
                    self.nodes.mark_unwritable(id, format!("check: {e}"));
                }
                Err(e) => self.nodes.mark_down(id, format!("check failed: {e}")),
            }
        }
    }

    /// Whether the remote nodes are due a check (and notes that they got one).
    fn remote_check_due(&self) -> bool {
        let mut last = self
            .remote_checked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = self.clock.now();
        match *last {
            Some(at) if now.saturating_sub(at) < NODE_CHECK_INTERVAL => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }

    /// Puts nodes back in service: down or fenced local nodes are reopened
    /// (the old handle, and its lock, dropped first; a missing directory is
    /// recreated empty), wiped object-store prefixes are reopened, full
    /// nodes may try again, and other down nodes are revived if they
    /// answer. A node that comes back without this store's manifest (new,
    /// rebuilt, wiped) is adopted: it gets the manifest, with `node_since`
    /// the next stripe id, before it takes writes (docs/DURABILITY.md,
    /// "Repair").
    pub(crate) fn revive_nodes(&self) -> Vec<String> {
        self.check_nodes();
        let mut revived = Vec::new();
        for (i, spec) in self.layout.nodes().iter().enumerate() {
            let id = NodeId(i as u16);
            let remote = self.nodes.is_remote(id);
            if remote && self.nodes.superseded_by().is_some() {
                // Reopening would take the lease back from the writer that
                // took over.
                continue;
            }
            let fenced = self.nodes.handle(id).is_some_and(|n| n.is_fenced());
            let mut failed_check = false;
            if self.nodes.is_writable(id) && !fenced {
                if self.manifests.is_member(id) && !remote {
                    continue;
                }
                if let Some(node) = self.nodes.get(id) {
                    // A remote node may answer and still have lost its
                    // prefix (a burned site): ask it.
                    match node.check() {
                        Ok(()) if self.manifests.is_member(id) => continue,
                        Ok(()) => {
                            if self.admit(id, &*node).is_ok() {
                                revived.push(spec.name.clone());
                            }
                            continue;
                        }
                        Err(Error::Superseded { node, reason }) => {
                            self.nodes.supersede(node, reason);
                            continue;
                        }
                        Err(e @ Error::WriteRefused { .. }) => {
                            self.nodes.mark_unwritable(id, format!("check: {e}"));
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!(node = %spec.name, error = %e, "node failed its check; reopening");
                            failed_check = true;
                        }
                    }
                }
            }
            if self.nodes.is_up(id) && !fenced && !failed_check && self.manifests.is_member(id) {
                // Up but taking no writes (a full disk): let it try again.
                // Not a node that just failed its check (a wiped prefix):
                // that one is reopened below.
                self.nodes.revive(id);
                revived.push(spec.name.clone());
                continue;
            }
            if self.reopen(id, spec, fenced) {
                revived.push(spec.name.clone());
            }
        }
        revived
    }

    /// Reopens node `id` through the factory, the store's old handle (and
    /// its lock) dropped first, and admits it; returns whether it is back.
    fn reopen(&self, id: NodeId, spec: &crate::layout::NodeSpec, fenced: bool) -> bool {
        // Drop the store's handle (and its lock) before reopening.
        let mut old = self.nodes.handle(id);
        if crate::mutation::enabled(crate::mutation::Mutation::RepairKeepsHandle) {
            // The old handle (and its lock) stays in its slot.
            old = None;
        } else {
            self.nodes.release(id, "reopening");
            // The gets' views of its segments go with the handle, so a
            // failed reopen leaves no mapping of the node behind.
            self.state
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .stripes
                .clear_views(Some(id));
        }
        let reopened = self.factory.reopen_node(spec, &mut old);
        let node = match reopened.and_then(|node| self.admit(id, &*node).map(|()| node)) {
            Ok(node) => node,
            Err(e) => {
                if let Some(old) = old {
                    self.nodes.put_back(id, old);
                }
                match e {
                    Error::Superseded { node, reason } => self.nodes.supersede(node, reason),
                    e => {
                        tracing::warn!(node = %spec.name, error = %e, "node still unavailable");
                    }
                }
                return false;
            }
        };
        // Reopened empty (a recreated directory, a wiped prefix): the
        // columns it held are gone, whatever their old locations say.
        // Forget them so reads go degraded at once and this repair
        // rebuilds every one.
        if holds_nothing_of_ours(&*node).unwrap_or(false) {
            self.state
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .forget_columns_on(id);
        }
        if fenced {
            tracing::info!(node = %spec.name, "fenced node reopened");
        }
        self.nodes.replace(id, node);
        // Gets map the node's segments again, through the new handle. A
        // get that took a mapping from the old handle before it was let go
        // cannot set it now: the clear moves the views' epoch, which the
        // get read before asking (`StripeTable::fill_view`). Otherwise,
        // once repair stored columns anew at the generations of a wiped
        // node, that stale mapping would fail every get of the segment's
        // crc check and send it degraded for the life of the process.
        self.state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .stripes
            .clear_views(Some(id));
        true
    }

    /// Makes `node` part of the store: if it holds this store's manifest it
    /// gets the current one (keeping its `node_since`); if it holds none and
    /// no segments, it is adopted; anything else is refused.
    fn admit(&self, id: NodeId, node: &dyn Node) -> Result<()> {
        match node.read_manifest()? {
            Some(bytes) => {
                let found = Manifest::decode(&bytes)?;
                let mut state = self.manifests.state();
                if found.store_id != state.shared.store_id {
                    return Err(Error::InvalidLayout {
                        reason: format!("node {} holds another store", node.name()),
                        fix: "check the layout's node paths".into(),
                    });
                }
                if let Some(since) = state.node_since.get_mut(id.index()) {
                    *since = found.node_since_stripe_id;
                }
                if let Some(missing) = state.node_history_missing.get_mut(id.index()) {
                    *missing = found.node_history_missing;
                }
                let current = state.for_node(id, &self.layout.node(id).name);
                node.write_manifest(&current.encode()?)?;
                self.manifests.set_node_own(
                    id,
                    found.node_since_stripe_id,
                    found.node_history_missing,
                );
                self.manifests.set_member(id, true);
                Ok(())
            }
            // A wiped prefix may hold appends that landed after the wipe,
            // none acknowledged: it is adopted with them (its node_since
            // keeps them from counting as evidence, and their stripes are
            // failed attempts, discarded or decided by an open that ran
            // while the node was missing). Simulator finding S14.
            None if holds_nothing_of_ours(node)? => self.manifests.adopt(
                self.layout,
                self.next_stripe_id.load(Ordering::Acquire),
                id,
                node,
                true,
            ),
            None => Err(Error::InvalidLayout {
                reason: format!("node {} holds segments but no manifest", node.name()),
                fix: "move that directory (prefix) away; repair then rebuilds the node".into(),
            }),
        }
    }
}

/// Whether a node holds nothing the store needs from it: it came back
/// wiped ([`Node::came_back_wiped`]: what it holds are appends that landed
/// after the wipe, none acknowledged), or it holds no data (only
/// checkpoint columns, or nothing).
fn holds_nothing_of_ours(node: &dyn Node) -> Result<bool> {
    let wiped = node.came_back_wiped()
        && !crate::mutation::enabled(crate::mutation::Mutation::RefuseWipedPrefix);
    Ok(wiped || only_checkpoints(&node.generations()?))
}

/// Whether a node's generations hold no data: none, or only columns of
/// checkpoints (written before the store noticed the node came back empty;
/// they hold no stripe and check themselves when read).
fn only_checkpoints(generations: &[u64]) -> bool {
    generations
        .iter()
        .all(|&g| super::checkpoint::is_checkpoint_generation(g))
}
