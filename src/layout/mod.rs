//! Failure-domain layout: sites, nodes, the promise, and placement.
//!
//! A [`Layout`] is the code RS(k, m), the sites (failure domains that can be
//! lost whole) with their nodes, and a [`Promise`]: "any `sites_lost` sites,
//! plus any `extra_nodes_lost` more nodes, may be lost and every blob stays
//! readable". Building a layout checks that the promise can hold and refuses,
//! with an error that names the fix, when it cannot.
//!
//! [`Layout::placement`] decides where the k + m columns of each stripe go:
//! - each site holds as even a share as its node count allows, and never so
//!   many that losing the promised sites (plus nodes) loses more than m;
//! - which columns are data and which parity rotates with the stripe id, so
//!   every site serves reads and none is parity-only;
//! - within a site, nodes are chosen by weighted rendezvous hashing on
//!   (stripe id, column slot, node name), so load follows capacity weights
//!   and adding a node to a site moves only about its share of columns.
//!   Plain weighted rendezvous follows weights exactly only when a site
//!   holds one column per stripe; for several, the layout solves (once, at
//!   build, exactly for sites of up to 12 nodes) for rendezvous weights that
//!   give every node its capacity share, capped at one column per stripe.
//!
//! Placement is a pure function of the layout description and the stripe
//! id, identical on every platform; the node names of a placement
//! ([`Layout::placement_names`]) are what a column header stores, so stripes
//! stay findable after the topology changes.
//!
//! ```
//! use geoshard::layout::{Layout, SiteId};
//!
//! let layout = Layout::from_toml_str(r#"
//!     [code]
//!     data_count = 4
//!     parity_count = 2
//!
//!     [[sites]]
//!     name = "a"
//!     nodes = [{ name = "a1", path = "/srv/a1" }, { name = "a2", path = "/srv/a2" }]
//!     [[sites]]
//!     name = "b"
//!     nodes = [{ name = "b1", path = "/srv/b1" }, { name = "b2", path = "/srv/b2" }]
//!     [[sites]]
//!     name = "c"
//!     nodes = [{ name = "c1", url = "s3://bucket/c1" }, { name = "c2", url = "s3://bucket/c2" }]
//! "#)?;
//! let placement = layout.placement(42);
//! assert_eq!(placement.columns().len(), 6);
//! assert!(layout.survives(&[SiteId(0)], &[]));
//! assert!(!layout.survives(&[SiteId(0), SiteId(1)], &[]));
//! println!("{}", layout.explain());
//! # Ok::<(), geoshard::Error>(())
//! ```

mod builder;
mod explain;
mod hash;
mod placement;
mod plan;
mod remote;
mod spread;
mod survive;
mod toml;
mod types;
mod validate;
mod weights;

use std::collections::HashMap;

pub use builder::{LayoutBuilder, SiteBuilder};
pub use explain::{Explanation, FailureCase, SiteShare};
pub use placement::Placement;
pub use plan::PromiseRoom;
pub use remote::{Remote, Secret};
pub use types::{Code, Location, NodeId, NodeSpec, Promise, SiteId, SiteSpec};

use crate::Result;
use spread::Spread;

/// Most columns a stripe can have: Reed-Solomon over GF(2^8) has 256
/// distinct evaluation points.
pub const COLUMN_COUNT_MAX: usize = 256;
/// Most sites in a layout.
pub const SITE_COUNT_MAX: usize = 256;
/// Most nodes in a layout (node ids are `u16`).
pub const NODE_COUNT_MAX: usize = 4096;
/// Longest site or node name, in bytes. Node names are stored in every
/// column header, so they are kept short.
pub const NAME_LEN_MAX: usize = 64;
/// Longest layout file [`Layout::load`] reads, in bytes.
pub const LAYOUT_FILE_LEN_MAX: u64 = 4 << 20;
/// URL schemes a node location may use.
pub const URL_SCHEMES: [&str; 4] = ["s3", "gs", "az", "file"];

const _: () = assert!(NODE_COUNT_MAX <= u16::MAX as usize);
const _: () = assert!(SITE_COUNT_MAX <= u16::MAX as usize);
const _: () = assert!(COLUMN_COUNT_MAX <= u16::MAX as usize);

/// A checked description of sites, nodes, the code and the promise, and the
/// placement of stripes over it. See the [module docs](self).
///
/// Build one with [`Layout::builder`], [`Layout::from_toml_str`] or
/// [`Layout::load`]; every way checks the same rules. Two layouts are equal
/// when their descriptions are.
#[derive(Clone, Debug)]
pub struct Layout {
    code: Code,
    promise: Promise,
    sites: Vec<SiteSpec>,
    nodes: Vec<NodeSpec>,
    node_by_name: HashMap<String, NodeId>,
    site_by_name: HashMap<String, SiteId>,
    spread: Spread,
    /// Stable hash of each node's name, by node index.
    node_hashes: Vec<u64>,
    /// Rendezvous weights of each site, by site index.
    site_weights: Vec<SiteWeights>,
    /// Hash key of each column slot within a site.
    slot_keys: Vec<u64>,
}

/// The rendezvous weights of one site's nodes.
#[derive(Clone, Debug)]
struct SiteWeights {
    /// For each column count the site holds in some stripe, the inverse of
    /// each node's effective weight (in the order of `SiteSpec::nodes`), or
    /// `None` when weights cannot matter: all nodes weigh the same, or the
    /// site puts a column on every node.
    inverse_by_count: Vec<(usize, Option<Vec<f64>>)>,
}

impl SiteWeights {
    /// `None`: rank nodes by hash alone.
    fn inverse(&self, count: usize) -> Option<&[f64]> {
        self.inverse_by_count
            .iter()
            .find(|(c, _)| *c == count)
            .and_then(|(_, inverse)| inverse.as_deref())
    }
}

impl PartialEq for Layout {
    fn eq(&self, other: &Self) -> bool {
        self.code == other.code
            && self.promise == other.promise
            && self.sites == other.sites
            && self.nodes == other.nodes
    }
}

impl Eq for Layout {}

impl Layout {
    /// Starts describing a layout; see [`LayoutBuilder`].
    pub fn builder() -> LayoutBuilder {
        LayoutBuilder::default()
    }

    fn from_builder(builder: LayoutBuilder) -> Result<Layout> {
        let code = validate::check_description(&builder)?;
        let promise = builder.promise;
        let mut sites = Vec::with_capacity(builder.sites.len());
        let mut nodes = Vec::new();
        for (site_index, site) in builder.sites.into_iter().enumerate() {
            let site_id = SiteId(site_index as u16);
            let mut members = Vec::with_capacity(site.nodes.len());
            for node in site.nodes {
                members.push(NodeId(nodes.len() as u16));
                let remote = match &node.location {
                    Location::Url(_) => node.remote.or_else(|| site.remote.clone()),
                    Location::Dir(_) => None,
                };
                nodes.push(NodeSpec {
                    name: node.name,
                    site: site_id,
                    location: node.location,
                    weight: node.weight,
                    remote,
                });
            }
            sites.push(SiteSpec {
                name: site.name,
                nodes: members,
            });
        }
        // Placement slices a site's node hashes by id range.
        debug_assert!(
            sites
                .iter()
                .all(|site| site.nodes.windows(2).all(|w| w[1].0 == w[0].0 + 1))
        );
        let caps: Vec<usize> = sites.iter().map(|site| site.nodes.len()).collect();
        let site_names: Vec<&str> = sites.iter().map(|site| site.name.as_str()).collect();
        let spread = validate::check_promise(code, promise, &site_names, &caps)?;
        let site_weights = sites
            .iter()
            .enumerate()
            .map(|(site_index, site)| {
                let weights: Vec<u32> = site
                    .nodes
                    .iter()
                    .map(|&id| nodes[id.index()].weight)
                    .collect();
                let mut counts: Vec<usize> = spread
                    .counts
                    .iter()
                    .map(|split| split[site_index])
                    .collect();
                counts.sort_unstable();
                counts.dedup();
                let uniform = weights.windows(2).all(|pair| pair[0] == pair[1]);
                let inverse_by_count = counts
                    .into_iter()
                    .map(|count| {
                        if uniform || count >= weights.len() {
                            return (count, None);
                        }
                        let effective = weights::effective_weights(&weights, count);
                        (count, Some(effective.iter().map(|w| 1.0 / w).collect()))
                    })
                    .collect();
                SiteWeights { inverse_by_count }
            })
            .collect();
        let node_hashes = nodes
            .iter()
            .map(|node| hash::name_hash(&node.name))
            .collect();
        let node_by_name = nodes
            .iter()
            .enumerate()
            .map(|(index, node)| (node.name.clone(), NodeId(index as u16)))
            .collect();
        let site_by_name = sites
            .iter()
            .enumerate()
            .map(|(index, site)| (site.name.clone(), SiteId(index as u16)))
            .collect();
        Ok(Layout {
            code,
            promise,
            sites,
            nodes,
            node_by_name,
            site_by_name,
            spread,
            node_hashes,
            site_weights,
            slot_keys: (0..COLUMN_COUNT_MAX).map(hash::slot_key).collect(),
        })
    }

    /// The code RS(k, m).
    pub fn code(&self) -> Code {
        self.code
    }

    /// The promise the layout was checked to keep.
    pub fn promise(&self) -> Promise {
        self.promise
    }

    /// The sites, indexed by [`SiteId`].
    pub fn sites(&self) -> &[SiteSpec] {
        &self.sites
    }

    /// The nodes of every site, indexed by [`NodeId`].
    pub fn nodes(&self) -> &[NodeSpec] {
        &self.nodes
    }

    /// The node `id`.
    ///
    /// # Panics
    ///
    /// If `id` is not a node of this layout (ids come from the layout, so
    /// that is a bug).
    pub fn node(&self, id: NodeId) -> &NodeSpec {
        &self.nodes[id.index()]
    }

    /// The site `id`.
    ///
    /// # Panics
    ///
    /// If `id` is not a site of this layout.
    pub fn site(&self, id: SiteId) -> &SiteSpec {
        &self.sites[id.index()]
    }

    /// The node named `name`, if the layout has one.
    pub fn node_by_name(&self, name: &str) -> Option<NodeId> {
        self.node_by_name.get(name).copied()
    }

    /// The site named `name`, if the layout has one.
    pub fn site_by_name(&self, name: &str) -> Option<SiteId> {
        self.site_by_name.get(name).copied()
    }

    /// The most columns of one stripe that any one site holds.
    ///
    /// This is what the promise allows given the sites' node counts: the
    /// layout was checked so that the `sites_lost` fullest sites together
    /// hold at most m − `extra_nodes_lost` columns (with `sites_lost = 1`,
    /// this number is at most m − `extra_nodes_lost`).
    pub fn max_columns_per_site(&self) -> usize {
        self.spread.site_column_count_max()
    }

    /// The most columns that any `sites_lost` sites hold together in one
    /// stripe (at most m − `extra_nodes_lost`).
    pub fn max_columns_in_lost_sites(&self) -> usize {
        self.spread.top_sites_column_count(self.promise.sites_lost)
    }
}
