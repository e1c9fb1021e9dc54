//! Opening and creating a store: the nodes, their manifests, the identity
//! and outage checks, then recovery and the new session's manifest
//! (docs/DURABILITY.md, "Open": D7, D8).

use std::sync::Arc;

use super::Options;
use super::manifest::{ManifestState, Manifests, NodeManifest, read_all};
use super::nodes::NodeSet;
use crate::format::Manifest;
use crate::layout::{Layout, NodeId, PromiseRoom};
use crate::node::{Node, NodeFactory, OpenPurpose};
use crate::{Error, Result};

/// Bits of a stripe id below the session: `session << SESSION_SHIFT | n`.
pub(crate) const SESSION_SHIFT: u32 = 40;
/// The most sessions (opens) a store can have.
pub(crate) const SESSION_MAX: u64 = (1 << (64 - SESSION_SHIFT)) - 1;

/// The session a stripe id belongs to.
pub(crate) fn session_of(stripe_id: u64) -> u64 {
    stripe_id >> SESSION_SHIFT
}

/// A node handle, or why there is none.
pub(crate) type Handle = std::result::Result<Arc<dyn Node>, String>;

/// Whether the store is being created or opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Create,
    Open,
}

/// Opens every node of the layout through the store's factory. Another
/// owner or settings that cannot work fail the whole open (an operator must
/// act); any other failure leaves the node down, for repair to adopt.
pub(crate) fn open_handles(
    factory: &dyn NodeFactory,
    layout: &Layout,
    mode: Mode,
) -> Result<Vec<Handle>> {
    let purpose = match mode {
        Mode::Create => OpenPurpose::Create,
        Mode::Open if crate::mutation::enabled(crate::mutation::Mutation::OpenCreatesWhenEmpty) => {
            OpenPurpose::Create
        }
        Mode::Open => OpenPurpose::Open,
    };
    let mut out = Vec::with_capacity(layout.nodes().len());
    for (spec, opened) in layout
        .nodes()
        .iter()
        .zip(factory.open_nodes(layout.nodes(), purpose))
    {
        match opened {
            Ok(node) => out.push(Ok(node)),
            Err(
                e @ (Error::InvalidLayout { .. }
                | Error::InvalidArgument { .. }
                | Error::Locked { .. }),
            ) => return Err(e),
            Err(e) => {
                tracing::warn!(node = %spec.name, error = %e, "node could not be opened; left down");
                out.push(Err(down_reason(e)));
            }
        }
    }
    Ok(out)
}

/// What a node left down says in `health`.
pub(crate) fn down_reason(e: Error) -> String {
    match e {
        Error::Unavailable { reason, .. } => reason,
        e => e.to_string(),
    }
}

/// 16 bytes no other store has: the OS-seeded keys of the standard
/// library's hasher, the clock and the process id, mixed.
fn random_store_id() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut out = [0u8; 16];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(nanos);
        hasher.write_u32(std::process::id());
        hasher.write_usize(i);
        chunk.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    out
}

/// Deciding the store's identity at open, from the nodes' manifests.
pub(crate) struct Identify<'a> {
    pub layout: &'a Layout,
    pub options: &'a Options,
    pub nodes: &'a NodeSet,
    pub manifests: &'a Manifests,
    /// The identity a created store gets instead of a random one.
    pub fixed_store_id: Option<[u8; 16]>,
}

impl Identify<'_> {
    /// Reads every node's manifest and decides the store's identity (or,
    /// creating, checks every node is empty and makes a new identity).
    /// Marks nodes that are not part of the store down. Returns the newest
    /// committed manifest found (for a new store, one of session 0) with
    /// each node's `node_since`, and the highest session any manifest
    /// names (the next session is one more: a failed open's proposed
    /// session is never reused).
    pub(crate) fn identify(&self, mode: Mode) -> Result<(ManifestState, u64)> {
        let handles: Vec<Option<Arc<dyn Node>>> =
            self.nodes.ids().map(|id| self.nodes.get(id)).collect();
        let manifests = read_all(&handles);
        match mode {
            Mode::Create => self.identify_new(&handles, &manifests),
            Mode::Open
                if crate::mutation::enabled(crate::mutation::Mutation::OpenCreatesWhenEmpty)
                    && manifests.iter().all(|m| matches!(m, NodeManifest::Absent)) =>
            {
                self.identify_new(&handles, &manifests)
            }
            Mode::Open => self.identify_existing(&manifests),
        }
    }

    fn identify_new(
        &self,
        handles: &[Option<Arc<dyn Node>>],
        manifests: &[NodeManifest],
    ) -> Result<(ManifestState, u64)> {
        for (i, (handle, manifest)) in handles.iter().zip(manifests).enumerate() {
            let name = &self.layout.nodes()[i].name;
            let Some(node) = handle else {
                return Err(Error::Unavailable {
                    node: name.clone(),
                    reason: format!(
                        "creating a store needs every node of the layout ({})",
                        self.nodes.down_reason(NodeId(i as u16)).unwrap_or_default()
                    ),
                });
            };
            // A create that failed before it committed left proposed
            // manifests and no data: that is still an empty node.
            let holds_data = !node.generations()?.is_empty();
            let committed = matches!(manifest, NodeManifest::Found(m) if m.committed);
            if committed || holds_data {
                return Err(Error::StoreExists { node: name.clone() });
            }
        }
        let code = self.layout.code();
        for id in self.nodes.ids() {
            self.manifests.set_member(id, true);
        }
        let state = ManifestState {
            shared: Manifest {
                store_id: self.fixed_store_id.unwrap_or_else(random_store_id),
                data_count: code.data_count as u16,
                parity_count: code.parity_count as u16,
                session: 0,
                version: 0,
                committed: true,
                node_since_stripe_id: 0,
                node_history_missing: false,
                node_name: "-".into(),
                discarded: Vec::new(),
            },
            node_since: vec![0; self.nodes.len()],
            node_history_missing: vec![false; self.nodes.len()],
        };
        Ok((state, 0))
    }

    fn identify_existing(&self, manifests: &[NodeManifest]) -> Result<(ManifestState, u64)> {
        let found: Vec<(NodeId, &Manifest)> = manifests
            .iter()
            .enumerate()
            .filter_map(|(i, m)| match m {
                NodeManifest::Found(m) => Some((NodeId(i as u16), m)),
                _ => None,
            })
            .collect();
        let max_session = found.iter().map(|(_, m)| m.session).max().unwrap_or(0);
        let committed = found
            .iter()
            .filter(|(_, m)| m.committed)
            .max_by_key(|(_, m)| m.age());
        // No committed manifest, but proposals and data: an open crashed
        // between proposing its session and committing it, after the
        // proposal reached every reachable node (the committed manifest
        // before it may be on nodes that are down, or nowhere). The
        // proposal holds everything the committed manifest it was built
        // from held, plus that open's decisions (docs/DURABILITY.md,
        // "The manifest"): it decides in its place. A proposal of session 1
        // with no data anywhere is a create that never finished: no store.
        let proposed = || {
            found
                .iter()
                .max_by_key(|(_, m)| m.age())
                .filter(|_| {
                    !crate::mutation::enabled(crate::mutation::Mutation::ProposalsDecideNothing)
                })
                // Session 1 is the create's own: a proposal of a later one
                // was built from a committed manifest, so the store exists
                // (even if it holds nothing yet).
                .filter(|(_, m)| m.session >= 2 || self.any_node_holds_data())
        };
        let Some(&(_, newest)) = committed.or_else(proposed) else {
            return Err(no_store(manifests, found.len()));
        };
        self.check_manifests(&found, newest, max_session)?;
        let (node_since, node_history_missing) = self.note_members(manifests);
        Ok((
            ManifestState {
                shared: newest.clone(),
                node_since,
                node_history_missing,
            },
            max_session,
        ))
    }

    /// Refuses manifests of another store or another node, of another
    /// code, or of a store that used up its sessions.
    fn check_manifests(
        &self,
        found: &[(NodeId, &Manifest)],
        newest: &Manifest,
        max_session: u64,
    ) -> Result<()> {
        let layout = &self.layout;
        for (id, m) in found {
            let name = &layout.node(*id).name;
            if m.store_id != newest.store_id {
                return Err(Error::InvalidLayout {
                    reason: format!("node {name} holds the manifest of another store"),
                    fix: "check the layout's node paths: every node of a layout belongs to one \
                          store"
                        .into(),
                });
            }
            if m.node_name != *name {
                return Err(Error::InvalidLayout {
                    reason: format!(
                        "the location of node {name} holds the manifest of node {}",
                        m.node_name
                    ),
                    fix: "check the layout's node names and paths: a directory keeps the node \
                          name it was created under"
                        .into(),
                });
            }
        }
        let code = layout.code();
        if usize::from(newest.data_count) != code.data_count
            || usize::from(newest.parity_count) != code.parity_count
        {
            return Err(Error::InvalidLayout {
                reason: format!(
                    "the store is coded RS({}, {}), but the layout says RS({}, {})",
                    newest.data_count, newest.parity_count, code.data_count, code.parity_count
                ),
                fix: "open the store with the layout it was written with".into(),
            });
        }
        if max_session >= SESSION_MAX {
            return Err(Error::LimitExceeded {
                what: "sessions (opens) of one store",
                limit: SESSION_MAX,
                actual: max_session + 1,
            });
        }
        Ok(())
    }

    /// Marks the nodes holding a manifest of the store as members, and the
    /// others down; returns each node's `node_since` and
    /// `node_history_missing`.
    fn note_members(&self, manifests: &[NodeManifest]) -> (Vec<u64>, Vec<bool>) {
        let mut node_since = vec![0; self.nodes.len()];
        let mut node_history_missing = vec![false; self.nodes.len()];
        for (i, m) in manifests.iter().enumerate() {
            let id = NodeId(i as u16);
            match m {
                NodeManifest::Found(m) => {
                    node_since[i] = m.node_since_stripe_id;
                    node_history_missing[i] = m.node_history_missing;
                    self.manifests.set_member(id, true);
                }
                NodeManifest::Absent => self.nodes.mark_down(
                    id,
                    "holds no manifest of this store (new, replaced or emptied); repair adopts it",
                ),
                NodeManifest::Unusable(why) => self.nodes.mark_down(id, why.clone()),
            }
        }
        (node_since, node_history_missing)
    }

    /// Whether some up node holds a segment.
    fn any_node_holds_data(&self) -> bool {
        self.nodes.ids().any(|id| {
            self.nodes
                .get(id)
                .is_some_and(|node| node.generations().is_ok_and(|g| !g.is_empty()))
        })
    }

    /// Refuses an outage beyond the promise (unless salvaging), before any
    /// stripe is judged: then what is missing is never taken for crash
    /// debris. A node rebuilt empty whose lost columns repair never brought
    /// back counts as missing here: a stripe whose every record burned on
    /// such nodes leaves nothing a scan could find (docs/DURABILITY.md,
    /// "Open", step 2).
    ///
    /// # Errors
    /// [`Error::TooManyNodesDown`] naming the missing nodes.
    pub(crate) fn check_outage(&self) -> Result<()> {
        let Some(outage) = self.outage() else {
            return Ok(());
        };
        let names = |ids: &[NodeId]| -> Vec<String> {
            ids.iter()
                .map(|&id| self.layout.node(id).name.clone())
                .collect()
        };
        let (missing, unrestored) = (names(&outage.missing), names(&outage.unrestored));
        if self.options.salvage {
            tracing::error!(
                nodes = ?missing,
                rebuilt_empty = ?unrestored,
                "more nodes are missing than the promise covers; salvaging"
            );
            return Ok(());
        }
        let mut reason = format!(
            "more nodes are missing than the layout promises to survive ({}); data may be lost",
            self.layout.promise()
        );
        if !unrestored.is_empty() {
            reason.push_str(&format!(
                ". Of them, {} came back empty and repair never brought back the columns \
                 they lost: a stripe whose every record burned leaves nothing a scan can find",
                unrestored.join(", ")
            ));
        }
        let mut nodes = missing;
        nodes.extend(unrestored);
        Err(Error::TooManyNodesDown { nodes, reason })
    }

    /// The outage beyond the promise, if there is one: the nodes down or
    /// without the manifest, and the members rebuilt empty whose lost
    /// columns were never brought back.
    pub(crate) fn outage(&self) -> Option<Outage> {
        let missing = missing_nodes(self.nodes, self.manifests);
        let state = self.manifests.state();
        let unrestored: Vec<NodeId> = state
            .nodes_missing_history()
            .into_iter()
            .filter(|id| !missing.contains(id))
            .filter(|_| !crate::mutation::enabled(crate::mutation::Mutation::AdoptedCountWhole))
            .collect();
        let all: Vec<NodeId> = missing.iter().chain(&unrestored).copied().collect();
        if all.is_empty() || self.layout.promise_room(&all) != PromiseRoom::Exceeded {
            return None;
        }
        let lost_below = unrestored
            .iter()
            .filter_map(|id| state.node_since.get(id.index()).copied())
            .max();
        Some(Outage {
            missing,
            unrestored,
            lost_below,
        })
    }
}

/// An outage beyond the promise ([`Identify::outage`]).
pub(crate) struct Outage {
    /// Nodes down or without the manifest.
    pub missing: Vec<NodeId>,
    /// Members rebuilt empty whose lost columns were never brought back.
    pub unrestored: Vec<NodeId>,
    /// The highest `node_since` of `unrestored`: stripes below it may be
    /// lost without a trace (their keys unknown).
    pub lost_below: Option<u64>,
}

/// The nodes that are not serving this store now: down, or not holding its
/// manifest.
pub(crate) fn missing_nodes(nodes: &NodeSet, manifests: &Manifests) -> Vec<NodeId> {
    nodes
        .ids()
        .filter(|&id| !nodes.is_up(id) || !manifests.is_member(id))
        .collect()
}

/// The error for nodes none of which holds a committed manifest (or a
/// proposal that decides): `found` of them hold a manifest at all.
fn no_store(manifests: &[NodeManifest], found: usize) -> Error {
    let reachable = manifests
        .iter()
        .filter(|m| !matches!(m, NodeManifest::Unusable(_)))
        .count();
    Error::NoStore {
        reason: format!(
            "none of the {} nodes holds a committed manifest of a store ({reachable} \
             reachable, {} with a manifest a create or open never finished)",
            manifests.len(),
            found
        ),
        fix: "check that every node directory is mounted (or every bucket reachable) \
              and that the layout names the right paths; to start a new store use \
              Store::create (geoshard create)"
            .into(),
    }
}
