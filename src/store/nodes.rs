//! The store's view of its nodes: the open handle (if any) and whether the
//! node is up. A node that fails a read is marked down and skipped by reads
//! and writes until the store is reopened or repaired. A node that fails an
//! append (a full disk, an I/O error) stops taking writes but keeps serving
//! the records it already holds durably.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use crate::layout::{Layout, NodeId};
use crate::node::{Node, NodeFactory};

pub(crate) struct NodeSlot {
    pub name: String,
    /// Remote (its factory says so): reads are hedged, the lease checked.
    pub remote: bool,
    /// Replaced when repair reopens a lost node.
    node: RwLock<Option<Arc<dyn Node>>>,
    down: AtomicBool,
    unwritable: AtomicBool,
    reason: Mutex<Option<String>>,
}

/// Every node of the layout, indexed by `NodeId`.
pub(crate) struct NodeSet {
    slots: Vec<NodeSlot>,
    /// Set when a node's lease was taken by another writer (the node and
    /// what was found): every later write fails with
    /// [`Error::Superseded`](crate::Error::Superseded).
    superseded: Mutex<Option<(String, String)>>,
}

impl NodeSet {
    /// `nodes[i]` is the open handle of `layout.nodes()[i]`, or the reason it
    /// could not be opened.
    pub fn new(
        layout: &Layout,
        factory: &dyn NodeFactory,
        nodes: Vec<Result<Arc<dyn Node>, String>>,
    ) -> NodeSet {
        assert_eq!(
            nodes.len(),
            layout.nodes().len(),
            "one handle per layout node"
        );
        let slots = layout
            .nodes()
            .iter()
            .zip(nodes)
            .map(|(spec, node)| {
                let (node, reason) = match node {
                    Ok(n) => (Some(n), None),
                    Err(why) => (None, Some(why)),
                };
                NodeSlot {
                    name: spec.name.clone(),
                    remote: factory.is_remote(spec),
                    down: AtomicBool::new(node.is_none()),
                    unwritable: AtomicBool::new(node.is_none()),
                    node: RwLock::new(node),
                    reason: Mutex::new(reason),
                }
            })
            .collect();
        NodeSet {
            slots,
            superseded: Mutex::new(None),
        }
    }

    /// Another writer holds `node`'s lease: this store stops writing for
    /// good.
    pub fn supersede(&self, node: String, reason: String) {
        let mut slot = self
            .superseded
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            tracing::error!(%node, %reason, "another writer took over; this store stops writing");
            *slot = Some((node, reason));
        }
    }

    /// The node and reason every write fails with once another writer
    /// took over.
    pub fn superseded_by(&self) -> Option<(String, String)> {
        self.superseded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn slot(&self, id: NodeId) -> &NodeSlot {
        &self.slots[usize::from(id.0)]
    }

    /// Whether the node is an object-store node (its factory says so):
    /// reads cross a network, so the store fetches its columns in
    /// parallel, hedges slow reads, and checks its lease while idle.
    pub fn is_remote(&self, id: NodeId) -> bool {
        self.slots.get(usize::from(id.0)).is_some_and(|s| s.remote)
    }

    pub fn ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        (0..self.slots.len()).map(|i| NodeId(i as u16))
    }

    /// The node's handle whether it is up or not.
    pub fn handle(&self, id: NodeId) -> Option<Arc<dyn Node>> {
        let slot = self.slots.get(usize::from(id.0))?;
        slot.node
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Calls `f` with the node if it is up, without taking a reference
    /// count (the read path's way to a node).
    pub fn with_node<R>(&self, id: NodeId, f: impl FnOnce(&dyn Node) -> R) -> Option<R> {
        if !self.is_up(id) {
            return None;
        }
        let slot = self.slots.get(usize::from(id.0))?;
        let guard = slot.node.read().unwrap_or_else(PoisonError::into_inner);
        guard.as_deref().map(f)
    }

    /// The node's handle if it is up.
    pub fn get(&self, id: NodeId) -> Option<Arc<dyn Node>> {
        if !self.is_up(id) {
            return None;
        }
        self.handle(id)
    }

    /// True when reads may go to the node.
    pub fn is_up(&self, id: NodeId) -> bool {
        self.slots
            .get(usize::from(id.0))
            .is_some_and(|s| !s.down.load(Ordering::Acquire))
    }

    /// The node's handle if it takes appends.
    pub fn get_writable(&self, id: NodeId) -> Option<Arc<dyn Node>> {
        if !self.is_writable(id) {
            return None;
        }
        self.handle(id)
    }

    pub fn is_writable(&self, id: NodeId) -> bool {
        self.slots.get(usize::from(id.0)).is_some_and(|s| {
            !s.down.load(Ordering::Acquire) && !s.unwritable.load(Ordering::Acquire)
        })
    }

    /// Drops every node handle (releasing local locks and remote clients)
    /// and marks every node down: the store is closed.
    pub fn close_all(&self) {
        for slot in &self.slots {
            slot.down.store(true, Ordering::Release);
            slot.unwritable.store(true, Ordering::Release);
            *slot.node.write().unwrap_or_else(PoisonError::into_inner) = None;
            set_reason(slot, "the store is closed".into());
        }
    }

    /// Drops the node's handle (releasing its lock or client) and marks it
    /// down: the step before reopening it.
    pub fn release(&self, id: NodeId, reason: impl Into<String>) {
        let Some(slot) = self.slots.get(usize::from(id.0)) else {
            return;
        };
        self.mark_down(id, reason);
        *slot.node.write().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Gives a node that is down its handle back (reopening it failed): it
    /// stays down, but its fence and its later revival can be asked.
    pub fn put_back(&self, id: NodeId, node: Arc<dyn Node>) {
        let Some(slot) = self.slots.get(usize::from(id.0)) else {
            return;
        };
        *slot.node.write().unwrap_or_else(PoisonError::into_inner) = Some(node);
    }

    /// Puts a (re)opened node in service.
    pub fn replace(&self, id: NodeId, node: Arc<dyn Node>) {
        let Some(slot) = self.slots.get(usize::from(id.0)) else {
            return;
        };
        *slot.node.write().unwrap_or_else(PoisonError::into_inner) = Some(node);
        self.revive(id);
    }

    /// Puts a node back in service after it answered again.
    pub fn revive(&self, id: NodeId) {
        let Some(slot) = self.slots.get(usize::from(id.0)) else {
            return;
        };
        if slot
            .node
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
        {
            return;
        }
        if slot.down.swap(false, Ordering::AcqRel) | slot.unwritable.swap(false, Ordering::AcqRel) {
            tracing::info!(node = %slot.name, "node back in service");
        }
        *slot.reason.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// No more reads or writes go to the node.
    pub fn mark_down(&self, id: NodeId, reason: impl Into<String>) {
        let Some(slot) = self.slots.get(usize::from(id.0)) else {
            return;
        };
        slot.unwritable.store(true, Ordering::Release);
        if !slot.down.swap(true, Ordering::AcqRel) {
            let reason = reason.into();
            tracing::warn!(node = %slot.name, %reason, "node marked down");
            set_reason(slot, reason);
        }
    }

    /// No more writes go to the node; reads of what it holds go on.
    pub fn mark_unwritable(&self, id: NodeId, reason: impl Into<String>) {
        let Some(slot) = self.slots.get(usize::from(id.0)) else {
            return;
        };
        if !slot.unwritable.swap(true, Ordering::AcqRel) {
            let reason = reason.into();
            tracing::warn!(node = %slot.name, %reason, "node takes no more writes");
            set_reason(slot, reason);
        }
    }

    /// Why the node is down or takes no writes, if it is or does not.
    pub fn down_reason(&self, id: NodeId) -> Option<String> {
        let slot = self.slots.get(usize::from(id.0))?;
        if !slot.unwritable.load(Ordering::Acquire) && !slot.down.load(Ordering::Acquire) {
            return None;
        }
        slot.reason.lock().ok().and_then(|r| r.clone())
    }
}

fn set_reason(slot: &NodeSlot, reason: String) {
    if let Ok(mut r) = slot.reason.lock() {
        *r = Some(reason);
    }
}

impl std::fmt::Debug for NodeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.slots
                    .iter()
                    .map(|s| (&s.name, !s.down.load(Ordering::Relaxed))),
            )
            .finish()
    }
}

/// `f` of each of `items`, one scoped thread each (per node: their waits
/// for I/O overlap), in the items' order; a panic in one is resumed here.
pub(crate) fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .iter()
            .map(|item| scope.spawn(move || f(item)))
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}
