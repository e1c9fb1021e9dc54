//! The store's manifest as the running store knows it, and writing it to
//! the nodes (docs/DURABILITY.md, "The manifest": D4, D7, D8).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::nodes::NodeSet;
use crate::Error;
use crate::Result;
use crate::format::Manifest;
use crate::layout::{Layout, NodeId, PromiseRoom};
use crate::node::Node;

/// The store-wide manifest and each node's own part of it.
#[derive(Clone, Debug)]
pub(crate) struct ManifestState {
    /// The store-wide fields (its `node_name`, `node_since_stripe_id` and
    /// `node_history_missing` are ignored; see the fields below).
    pub shared: Manifest,
    /// Per layout node: the stripe id since which the node holds every
    /// column planned on it.
    pub node_since: Vec<u64>,
    /// Per layout node: whether it came back empty and what it lost is not
    /// brought back yet; see `Manifest::node_history_missing`.
    pub node_history_missing: Vec<bool>,
}

impl ManifestState {
    /// The manifest node `id` (named `name`) keeps.
    pub fn for_node(&self, id: NodeId, name: &str) -> Manifest {
        Manifest {
            node_name: name.to_string(),
            node_since_stripe_id: self.node_since.get(id.index()).copied().unwrap_or(0),
            node_history_missing: self.history_missing(id),
            ..self.shared.clone()
        }
    }

    /// Whether node `id` was rebuilt empty and what it lost was not brought
    /// back yet: open counts it as missing when it judges an outage
    /// (docs/DURABILITY.md, "Open", step 2).
    pub fn history_missing(&self, id: NodeId) -> bool {
        self.node_history_missing
            .get(id.index())
            .copied()
            .unwrap_or(false)
    }

    /// The nodes whose [`history_missing`](Self::history_missing).
    pub fn nodes_missing_history(&self) -> Vec<NodeId> {
        (0..self.node_history_missing.len())
            .map(|i| NodeId(i as u16))
            .filter(|&id| self.history_missing(id))
            .collect()
    }
}

/// What one node's manifest says, as read at open.
#[derive(Clone, Debug)]
pub(crate) enum NodeManifest {
    /// The node holds this manifest.
    Found(Manifest),
    /// The node holds none (a new, replaced or wiped node).
    Absent,
    /// The node could not be asked, or what it holds does not decode.
    Unusable(String),
}

/// Reads the manifest of every node that has a handle, in parallel.
pub(crate) fn read_all(handles: &[Option<Arc<dyn Node>>]) -> Vec<NodeManifest> {
    std::thread::scope(|scope| {
        let readers: Vec<_> = handles
            .iter()
            .map(|handle| {
                scope.spawn(move || match handle {
                    None => NodeManifest::Unusable("not reachable".into()),
                    Some(node) => match node.read_manifest() {
                        Ok(None) => NodeManifest::Absent,
                        Ok(Some(bytes)) => match Manifest::decode(&bytes) {
                            Ok(manifest) => NodeManifest::Found(manifest),
                            Err(e) => NodeManifest::Unusable(format!("its manifest: {e}")),
                        },
                        Err(e) => NodeManifest::Unusable(format!("reading its manifest: {e}")),
                    },
                })
            })
            .collect();
        readers
            .into_iter()
            .map(|r| {
                r.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// Writes each node's manifest to `targets` in parallel; returns the nodes
/// whose write failed, with the error.
pub(crate) fn write_all(
    layout: &Layout,
    state: &ManifestState,
    targets: &[(NodeId, Arc<dyn Node>)],
) -> Vec<(NodeId, Error)> {
    std::thread::scope(|scope| {
        let writers: Vec<_> = targets
            .iter()
            .map(|(id, node)| {
                let manifest = state.for_node(*id, &layout.node(*id).name);
                scope.spawn(move || (*id, manifest.encode().and_then(|b| node.write_manifest(&b))))
            })
            .collect();
        writers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .filter_map(|(id, result)| result.err().map(|e| (id, e)))
            .collect()
    })
}

fn too_few(missing: Vec<String>) -> Error {
    Error::TooManyNodesDown {
        nodes: missing,
        reason: "the store's manifest (its identity and this session) could not be recorded on \
                 enough nodes for a later open to find it"
            .into(),
    }
}

/// Whether `written` reaches every later open: no promise failure set holds
/// all of it (docs/DURABILITY.md, assumption A4).
pub(crate) fn is_quorum(layout: &Layout, written: &[NodeId]) -> bool {
    !written.is_empty() && layout.promise_room(written) == PromiseRoom::Exceeded
}

/// How far a manifest write reached.
pub(crate) enum Reach {
    /// A quorum took it.
    Quorum,
    /// Too few nodes took it; these did not, and the first write refused
    /// because another writer holds the node's lease, if any was.
    Short(Vec<String>, Option<Error>),
}

/// The manifest as last written and which nodes hold it: the store's
/// identity, its session and its decisions (docs/DURABILITY.md, "The
/// manifest"). Changes go to the member nodes and are kept only once a
/// quorum took them; manifest writes never overlap.
#[derive(Debug)]
pub(crate) struct Manifests {
    current: Mutex<ManifestState>,
    /// Per layout node: whether it holds this store's manifest.
    members: Mutex<Vec<bool>>,
    /// Stripe-id ranges of failed commit attempts that no manifest write
    /// has recorded as discarded yet (D4): every later update that reaches
    /// a quorum records them.
    pending_discards: Mutex<Vec<(u64, u64)>>,
}

impl Manifests {
    /// No manifest yet (before open identifies the store), no member.
    pub(crate) fn new(node_count: usize) -> Manifests {
        Manifests {
            current: Mutex::new(ManifestState {
                shared: Manifest {
                    store_id: [0; 16],
                    data_count: 0,
                    parity_count: 0,
                    session: 0,
                    version: 0,
                    committed: false,
                    node_since_stripe_id: 0,
                    node_history_missing: false,
                    node_name: "-".into(),
                    discarded: Vec::new(),
                },
                node_since: vec![0; node_count],
                node_history_missing: vec![false; node_count],
            }),
            members: Mutex::new(vec![false; node_count]),
            pending_discards: Mutex::new(Vec::new()),
        }
    }

    /// Keeps `first..=last` (a failed attempt) to be recorded as discarded
    /// by the next manifest update that reaches a quorum.
    pub(crate) fn defer_discard(&self, first: u64, last: u64) {
        if crate::mutation::enabled(crate::mutation::Mutation::ForgetUnrecordedDiscards) {
            return;
        }
        self.pending_discards
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((first, last));
    }

    /// Whether some failed attempt is not recorded as discarded yet.
    pub(crate) fn has_pending_discards(&self) -> bool {
        !self
            .pending_discards
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, ManifestState> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes `found` (what open identified) as the manifest last written.
    pub(crate) fn replace(&self, found: ManifestState) {
        *self.lock() = found;
    }

    /// Writes `next` to every reachable node of the store, in parallel.
    /// Nodes whose write fails are marked down.
    ///
    /// # Errors
    /// A manifest that cannot be encoded (over a limit), before anything is
    /// written.
    fn write_to_members(
        &self,
        nodes: &NodeSet,
        layout: &Layout,
        next: &ManifestState,
    ) -> Result<Reach> {
        // Encode once up front: a manifest over a limit is the store's
        // problem, not the nodes'.
        next.for_node(NodeId(0), "check").encode()?;
        if next.shared.discarded.len() > crate::format::DISCARDED_RANGES_MAX * 9 / 10 {
            tracing::warn!(
                ranges = next.shared.discarded.len(),
                "the manifest's discarded ranges near their limit: repair the missing nodes so \
                 open can prune them"
            );
        }
        let targets: Vec<(NodeId, Arc<dyn Node>)> = nodes
            .ids()
            .filter(|&id| self.is_member(id))
            .filter_map(|id| Some((id, nodes.get(id)?)))
            .collect();
        let failed = write_all(layout, next, &targets);
        for (id, e) in &failed {
            tracing::warn!(node = %layout.node(*id).name, error = %e, "manifest write failed");
            let reason = format!("writing its manifest failed: {e}");
            if matches!(e, Error::WriteRefused { .. }) {
                // A lease in doubt: no writes, but reads go on (S12).
                nodes.mark_unwritable(*id, reason);
            } else {
                nodes.mark_down(*id, reason);
            }
        }
        let written: Vec<NodeId> = targets
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| !failed.iter().any(|(f, _)| f == id))
            .collect();
        if is_quorum(layout, &written) {
            return Ok(Reach::Quorum);
        }
        let superseded = failed
            .into_iter()
            .map(|(_, e)| e)
            .find(|e| matches!(e, Error::Superseded { .. } | Error::Locked { .. }));
        Ok(Reach::Short(
            nodes
                .ids()
                .filter(|id| !written.contains(id))
                .map(|id| layout.node(id).name.clone())
                .collect(),
            superseded,
        ))
    }

    /// Starts session `session`: writes the manifest proposed, and once a
    /// quorum has it, committed (docs/DURABILITY.md, "The manifest").
    /// Returns whether the store may write: a salvage open that cannot
    /// reach a quorum is read-only.
    ///
    /// # Errors
    /// [`Error::Superseded`] (or [`Error::Locked`]) when too few nodes took
    /// it because another writer holds their leases: two openers raced and
    /// this one lost; [`Error::TooManyNodesDown`] when too few nodes took it
    /// otherwise (unless salvaging); encoding errors.
    pub(crate) fn start_session(
        &self,
        nodes: &NodeSet,
        layout: &Layout,
        salvage: bool,
        session: u64,
        discarded: Vec<(u64, u64)>,
    ) -> Result<bool> {
        let mut current = self.lock();
        let mut proposed = current.clone();
        proposed.shared.session = session;
        proposed.shared.version = 0;
        proposed.shared.committed = false;
        proposed.shared.discarded = discarded;
        let mut committed = proposed.clone();
        committed.shared.version = 1;
        committed.shared.committed = true;
        for next in [&proposed, &committed] {
            match self.write_to_members(nodes, layout, next)? {
                Reach::Quorum => {}
                Reach::Short(missing, _) if salvage => {
                    tracing::error!(
                        nodes = ?missing,
                        "salvaging: the manifest reached too few nodes for a later open to be \
                         sure to see it; the store is read-only (repair, then open again)"
                    );
                    return Ok(false);
                }
                Reach::Short(missing, superseded) => {
                    return Err(superseded.unwrap_or_else(|| too_few(missing)));
                }
            }
        }
        *current = committed;
        Ok(true)
    }

    /// Changes the committed manifest with `change` (a new version) and
    /// writes it to every reachable node of the store; keeps the change only
    /// if a quorum took it. Manifest writes never overlap.
    ///
    /// # Errors
    /// [`Error::Superseded`] when too few nodes took it because another
    /// writer holds their leases; [`Error::TooManyNodesDown`] otherwise.
    pub(crate) fn update(
        &self,
        nodes: &NodeSet,
        layout: &Layout,
        change: impl FnOnce(&mut ManifestState),
    ) -> Result<()> {
        let mut current = self.lock();
        let mut next = current.clone();
        change(&mut next);
        let pending: Vec<(u64, u64)> = self
            .pending_discards
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for &(first, last) in &pending {
            crate::format::add_range(&mut next.shared.discarded, first, last);
        }
        next.shared.version += 1;
        next.shared.committed = true;
        match self.write_to_members(nodes, layout, &next)? {
            Reach::Quorum => {
                *current = next;
                self.pending_discards
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .retain(|range| !pending.contains(range));
                Ok(())
            }
            Reach::Short(missing, superseded) => {
                Err(superseded.unwrap_or_else(|| too_few(missing)))
            }
        }
    }

    /// Makes node `id` (reachable, holding no manifest of this store, e.g.
    /// rebuilt empty) part of the store: writes its manifest with
    /// `node_since` = `next_stripe_id`, so columns of older stripes are not
    /// expected on it until repair rebuilds them. `emptied`: the node came
    /// back empty, so its history is missing until repair brings it back
    /// (else, a node that lacked a column repair just rebuilt, its
    /// `node_history_missing` stays as it was).
    ///
    /// # Errors
    /// The node's write error.
    pub(crate) fn adopt(
        &self,
        layout: &Layout,
        next_stripe_id: u64,
        id: NodeId,
        node: &dyn Node,
        emptied: bool,
    ) -> Result<()> {
        let mut current = self.lock();
        let mut next = current.clone();
        // What it held is gone until repair brings it back: written before
        // the node takes writes, so no open takes it for whole meanwhile.
        // A node that only lacked a column stays as whole as it was.
        let history_missing = emptied || current.history_missing(id);
        if let Some(since) = next.node_since.get_mut(id.index()) {
            *since = next_stripe_id;
        }
        if let Some(slot) = next.node_history_missing.get_mut(id.index()) {
            *slot = history_missing;
        }
        let manifest = next.for_node(id, &layout.node(id).name);
        node.write_manifest(&manifest.encode()?)?;
        *current = next;
        self.set_member(id, true);
        Ok(())
    }

    /// Whether node `id` holds this store's manifest (is part of the store
    /// now, as opposed to a node left for repair to adopt).
    pub(crate) fn is_member(&self, id: NodeId) -> bool {
        self.members
            .lock()
            .map(|m| m.get(id.index()).copied().unwrap_or(false))
            .unwrap_or(false)
    }

    /// Records that node `id` holds (or no longer holds) the manifest.
    pub(crate) fn set_member(&self, id: NodeId, member: bool) {
        if let Ok(mut m) = self.members.lock()
            && let Some(slot) = m.get_mut(id.index())
        {
            *slot = member;
        }
    }

    /// Records node `id`'s own `node_since` and `node_history_missing`
    /// (read from its manifest).
    pub(crate) fn set_node_own(&self, id: NodeId, since: u64, history_missing: bool) {
        let mut state = self.lock();
        if let Some(slot) = state.node_since.get_mut(id.index()) {
            *slot = since;
        }
        if let Some(slot) = state.node_history_missing.get_mut(id.index()) {
            *slot = history_missing;
        }
    }

    /// Takes node `id`'s `node_history_missing` as set again, in memory
    /// only: the manifest write that cleared it may not have reached the
    /// node, so the next repair writes it again.
    pub(crate) fn mark_history_missing(&self, id: NodeId) {
        if let Some(slot) = self.lock().node_history_missing.get_mut(id.index()) {
            *slot = true;
        }
    }

    /// A copy of the manifest as last written.
    pub(crate) fn state(&self) -> ManifestState {
        self.lock().clone()
    }
}
