//! The Rust way to describe a layout. The TOML file goes through it too, so
//! both are checked by the same code.

use super::Layout;
use super::remote::Remote;
use super::types::{Code, Location, Promise};
use crate::Result;

/// Describes a layout piece by piece; [`build`](LayoutBuilder::build) checks
/// it and refuses, with an error that names the fix, what cannot work.
///
/// ```
/// use geoshard::layout::{Layout, Promise};
///
/// let layout = Layout::builder()
///     .code(6, 3)
///     .site("fra", |s| s.node("fra-1", "/srv/fra-1").node("fra-2", "/srv/fra-2").node("fra-3", "/srv/fra-3"))
///     .site("ams", |s| s.node("ams-1", "/srv/ams-1").node("ams-2", "/srv/ams-2").node("ams-3", "/srv/ams-3"))
///     .site("par", |s| {
///         s.node("par-1", "s3://geoshard/par-1")
///             .node("par-2", "s3://geoshard/par-2")
///             .node_weighted("par-3", "s3://geoshard/par-3", 2)
///     })
///     .promise(Promise { sites_lost: 1, extra_nodes_lost: 0 })
///     .build()?;
/// assert_eq!(layout.nodes().len(), 9);
/// assert_eq!(layout.max_columns_per_site(), 3);
/// # Ok::<(), geoshard::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct LayoutBuilder {
    pub(crate) code: Option<Code>,
    pub(crate) promise: Promise,
    pub(crate) sites: Vec<SiteBuilder>,
}

/// Describes one site: its name and nodes. Made by [`LayoutBuilder::site`].
#[derive(Clone, Debug)]
#[must_use = "a site builder must be returned from the closure"]
pub struct SiteBuilder {
    pub(crate) name: String,
    pub(crate) nodes: Vec<NodeDraft>,
    pub(crate) remote: Option<Remote>,
}

/// A node as described, before it is checked.
#[derive(Clone, Debug)]
pub(crate) struct NodeDraft {
    pub name: String,
    pub location: Location,
    pub weight: u32,
    pub remote: Option<Remote>,
}

impl LayoutBuilder {
    /// The code RS(`data_count`, `parity_count`). Required.
    pub fn code(mut self, data_count: usize, parity_count: usize) -> Self {
        self.code = Some(Code {
            data_count,
            parity_count,
        });
        self
    }

    /// The promise; the default is [`Promise::default`], any one site.
    pub fn promise(mut self, promise: Promise) -> Self {
        self.promise = promise;
        self
    }

    /// Sets only [`Promise::sites_lost`].
    pub fn sites_lost(mut self, sites_lost: usize) -> Self {
        self.promise.sites_lost = sites_lost;
        self
    }

    /// Sets only [`Promise::extra_nodes_lost`].
    pub fn extra_nodes_lost(mut self, extra_nodes_lost: usize) -> Self {
        self.promise.extra_nodes_lost = extra_nodes_lost;
        self
    }

    /// Adds a site named `name`, whose nodes `describe` adds.
    pub fn site(
        mut self,
        name: impl Into<String>,
        describe: impl FnOnce(SiteBuilder) -> SiteBuilder,
    ) -> Self {
        let site = SiteBuilder {
            name: name.into(),
            nodes: Vec::new(),
            remote: None,
        };
        self.sites.push(describe(site));
        self
    }

    /// Checks the description and builds the layout.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidLayout`](crate::Error::InvalidLayout) when the
    /// description is malformed (no code, k or m out of range, no sites, an
    /// empty site, a bad or duplicate name, a duplicate or nested location,
    /// an unknown URL scheme, a zero weight, fewer nodes than columns);
    /// [`Error::LayoutCannotSurvive`](crate::Error::LayoutCannotSurvive)
    /// when it is well formed but cannot keep its promise. Both say what to
    /// change.
    pub fn build(self) -> Result<Layout> {
        Layout::from_builder(self)
    }
}

impl SiteBuilder {
    /// Adds a node of weight 1. `location` is a directory path or a URL
    /// (`s3://bucket/prefix`); see [`Location::parse`].
    pub fn node(self, name: impl Into<String>, location: impl Into<Location>) -> Self {
        self.node_weighted(name, location, 1)
    }

    /// Adds a node with capacity weight `weight` (at least 1): within the
    /// site it receives columns in proportion to its weight.
    pub fn node_weighted(
        mut self,
        name: impl Into<String>,
        location: impl Into<Location>,
        weight: u32,
    ) -> Self {
        self.nodes.push(NodeDraft {
            name: name.into(),
            location: location.into(),
            weight,
            remote: None,
        });
        self
    }

    /// How every URL node of this site reaches its object store (endpoint,
    /// region, credentials), unless the node has its own settings.
    pub fn remote(mut self, remote: Remote) -> Self {
        self.remote = Some(remote);
        self
    }

    /// Adds a URL node with its own connection settings, which win over
    /// the site's [`remote`](Self::remote).
    pub fn node_remote(
        mut self,
        name: impl Into<String>,
        location: impl Into<Location>,
        weight: u32,
        remote: Remote,
    ) -> Self {
        self.nodes.push(NodeDraft {
            name: name.into(),
            location: location.into(),
            weight,
            remote: Some(remote),
        });
        self
    }
}
