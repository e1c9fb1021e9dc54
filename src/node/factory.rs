//! How a store opens its nodes: the one place that turns a layout's node
//! location into a [`Node`].
//!
//! The store never names a concrete node type. It asks a [`NodeFactory`] for
//! a node when it opens or creates a store, and again when repair brings a
//! node back (a recreated directory, a wiped object-store prefix, a node
//! fenced after a failed sync). [`DefaultNodeFactory`] opens local
//! directories as [`LocalNode`]s and URLs as `ObjectNode`s (feature
//! `object-store`); tests and simulations bring their own.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use crate::layout::{Location, NodeSpec};
use crate::node::{LocalNode, LocalOptions, Node};
#[cfg(feature = "object-store")]
use crate::node::{ObjectNode, ObjectOptions};
use crate::{Error, Result};

/// Why a node is being opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenPurpose {
    /// Creating a new store: a missing local directory is created.
    Create,
    /// Opening an existing store: a missing local directory, or one that
    /// holds nothing of a store (a disk that is not mounted, a replaced
    /// disk), is not opened and nothing is written there; the node is left
    /// down for repair to adopt (docs/DURABILITY.md, D7).
    Open,
    /// Repair bringing back a node that is down or fenced: a missing
    /// directory is recreated empty, an object-store prefix is listed afresh
    /// and its lease taken again.
    Reopen,
}

/// Opens the nodes of a layout for a store.
///
/// What an error means to the store:
/// - [`Error::Locked`], [`Error::InvalidLayout`] and
///   [`Error::InvalidArgument`] fail the whole open (another process has
///   the node, or the settings cannot work: an operator must act);
/// - any other error leaves the node down, with the error as the reason
///   [`Store::health`](crate::Store::health) shows; repair asks again.
pub trait NodeFactory: Send + Sync + std::fmt::Debug {
    /// Opens the node `spec` of the layout for `purpose`.
    ///
    /// # Errors
    /// As the trait docs say: an error that fails the open, or one that
    /// leaves the node down.
    fn open_node(&self, spec: &NodeSpec, purpose: OpenPurpose) -> Result<Arc<dyn Node>>;

    /// Opens every node of `specs` (the nodes of a layout, in order);
    /// `out[i]` is `specs[i]`'s node or why it could not be opened. The
    /// default opens one after another; a factory whose nodes are slow to
    /// open (remote ones) opens them in parallel.
    fn open_nodes(&self, specs: &[NodeSpec], purpose: OpenPurpose) -> Vec<Result<Arc<dyn Node>>> {
        specs
            .iter()
            .map(|spec| self.open_node(spec, purpose))
            .collect()
    }

    /// Brings back a node repair found down or fenced. `old` is the store's
    /// last handle to it, already out of service; the default takes and
    /// drops it (and any lock it holds) and opens the node again for
    /// [`OpenPurpose::Reopen`]. A handle left in `old` goes back to the
    /// store (still down) when reopening fails.
    ///
    /// # Errors
    /// As [`open_node`](Self::open_node).
    fn reopen_node(
        &self,
        spec: &NodeSpec,
        old: &mut Option<Arc<dyn Node>>,
    ) -> Result<Arc<dyn Node>> {
        drop(old.take());
        self.open_node(spec, OpenPurpose::Reopen)
    }

    /// Whether `spec`'s node is remote: its reads are hedged and its lease
    /// is checked while the store is idle (at most once a second).
    fn is_remote(&self, spec: &NodeSpec) -> bool {
        matches!(spec.location, Location::Url(_))
    }
}

/// The factory behind [`Store::open`](crate::Store::open) and
/// [`Store::create`](crate::Store::create): local directories as
/// [`LocalNode`]s, URLs as `ObjectNode`s (in parallel; each lists its prefix
/// and takes the writer lease).
#[derive(Clone, Debug, Default)]
pub struct DefaultNodeFactory {
    local: LocalOptions,
    #[cfg(feature = "object-store")]
    object: ObjectOptions,
}

impl DefaultNodeFactory {
    /// A factory that opens nodes with the node options of `options`.
    pub fn new(options: &crate::Options) -> DefaultNodeFactory {
        DefaultNodeFactory {
            local: options.local.clone(),
            #[cfg(feature = "object-store")]
            object: options.object.clone(),
        }
    }

    fn open_local(
        &self,
        spec: &NodeSpec,
        dir: &Path,
        purpose: OpenPurpose,
    ) -> Result<Arc<dyn Node>> {
        match purpose {
            OpenPurpose::Open => match dir_state(dir) {
                DirState::Missing => {
                    return Err(Error::Unavailable {
                        node: spec.name.clone(),
                        reason: format!("directory {} is missing", dir.display()),
                    });
                }
                DirState::Empty => {
                    return Err(Error::Unavailable {
                        node: spec.name.clone(),
                        reason: format!(
                            "directory {} holds no store (not mounted, or a new disk)",
                            dir.display()
                        ),
                    });
                }
                DirState::Used => {}
            },
            OpenPurpose::Reopen => std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("recreating {}", dir.display()), e))?,
            OpenPurpose::Create => {}
        }
        let node = LocalNode::open(spec.name.clone(), dir, &self.local)?;
        Ok(Arc::new(node))
    }

    #[cfg(feature = "object-store")]
    fn open_remote(&self, spec: &NodeSpec, url: &str) -> Result<Arc<dyn Node>> {
        let node = ObjectNode::open(&spec.name, url, spec.remote.as_ref(), &self.object)?;
        Ok(Arc::new(node))
    }

    #[cfg(not(feature = "object-store"))]
    fn open_remote(&self, spec: &NodeSpec, _url: &str) -> Result<Arc<dyn Node>> {
        Err(Error::InvalidLayout {
            reason: format!(
                "node {} is at {}; this build has no object-store support",
                spec.name, spec.location
            ),
            fix: "build geoshard with the `object-store` cargo feature, or give the node a local \
                  `path`"
                .into(),
        })
    }
}

impl NodeFactory for DefaultNodeFactory {
    fn open_node(&self, spec: &NodeSpec, purpose: OpenPurpose) -> Result<Arc<dyn Node>> {
        match &spec.location {
            Location::Dir(dir) => self.open_local(spec, dir, purpose),
            Location::Url(url) => self.open_remote(spec, url),
        }
    }

    fn open_nodes(&self, specs: &[NodeSpec], purpose: OpenPurpose) -> Vec<Result<Arc<dyn Node>>> {
        // Remote nodes each take a round trip or more: open them in
        // parallel, local ones on this thread meanwhile.
        std::thread::scope(|scope| {
            let remote: Vec<_> = specs
                .iter()
                .enumerate()
                .filter(|(_, spec)| self.is_remote(spec))
                .map(|(i, spec)| (i, scope.spawn(move || self.open_node(spec, purpose))))
                .collect();
            let mut out: Vec<Option<Result<Arc<dyn Node>>>> = specs
                .iter()
                .map(|spec| (!self.is_remote(spec)).then(|| self.open_node(spec, purpose)))
                .collect();
            for (i, handle) in remote {
                let result = handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                out[i] = Some(result);
            }
            out.into_iter()
                .map(|result| result.unwrap_or_else(|| Err(Error::invalid("node was not opened"))))
                .collect()
        })
    }

    fn is_remote(&self, spec: &NodeSpec) -> bool {
        matches!(spec.location, Location::Url(_))
    }
}

enum DirState {
    Missing,
    Empty,
    Used,
}

/// Whether a node directory exists and holds anything of a store.
fn dir_state(dir: &Path) -> DirState {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return DirState::Missing;
    };
    let used = listing.flatten().any(|entry| {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        name == "MANIFEST" || name.ends_with(".segment")
    });
    if used {
        DirState::Used
    } else {
        DirState::Empty
    }
}

/// A node the caller opened, or why it could not.
type Given = std::result::Result<Arc<dyn Node>, String>;

/// The nodes a caller opened itself
/// ([`Store::open_with_nodes`](crate::Store::open_with_nodes)): handed
/// out once, in layout order. Repair cannot open them again; it brings a
/// node back only if the handle it had answers again.
#[derive(Debug)]
pub(crate) struct GivenNodes {
    handles: Mutex<Vec<Option<Given>>>,
}

impl GivenNodes {
    pub(crate) fn new(handles: Vec<std::result::Result<Arc<dyn Node>, String>>) -> GivenNodes {
        GivenNodes {
            handles: Mutex::new(handles.into_iter().map(Some).collect()),
        }
    }
}

impl NodeFactory for GivenNodes {
    fn open_node(&self, spec: &NodeSpec, _purpose: OpenPurpose) -> Result<Arc<dyn Node>> {
        Err(Error::Unavailable {
            node: spec.name.clone(),
            reason: "a node given to open_with_nodes is opened by its caller".into(),
        })
    }

    fn open_nodes(&self, specs: &[NodeSpec], _purpose: OpenPurpose) -> Vec<Result<Arc<dyn Node>>> {
        let mut handles = self.handles.lock().unwrap_or_else(PoisonError::into_inner);
        specs
            .iter()
            .enumerate()
            .map(
                |(i, spec)| match handles.get_mut(i).and_then(Option::take) {
                    Some(Ok(node)) => Ok(node),
                    Some(Err(reason)) => Err(Error::Unavailable {
                        node: spec.name.clone(),
                        reason,
                    }),
                    None => Err(Error::invalid(format!("no node handle for {}", spec.name))),
                },
            )
            .collect()
    }

    fn reopen_node(
        &self,
        spec: &NodeSpec,
        old: &mut Option<Arc<dyn Node>>,
    ) -> Result<Arc<dyn Node>> {
        // The same handle, if it answers again.
        let node = old.clone().ok_or_else(|| Error::Unavailable {
            node: spec.name.clone(),
            reason: "never opened".into(),
        })?;
        node.generations()?;
        Ok(node)
    }

    fn is_remote(&self, spec: &NodeSpec) -> bool {
        matches!(spec.location, Location::Url(_))
    }
}
