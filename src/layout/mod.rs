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

    /// What the layout costs (storage overhead), how it spreads a stripe,
    /// what it survives and the smallest loss it does not.
    ///
    /// ```
    /// use geoshard::layout::Layout;
    ///
    /// let layout = Layout::builder()
    ///     .code(6, 3)
    ///     .site("a", |s| s.node("a1", "/srv/a1").node("a2", "/srv/a2").node("a3", "/srv/a3"))
    ///     .site("b", |s| s.node("b1", "/srv/b1").node("b2", "/srv/b2").node("b3", "/srv/b3"))
    ///     .site("c", |s| s.node("c1", "/srv/c1").node("c2", "/srv/c2").node("c3", "/srv/c3"))
    ///     .build()?;
    /// let explanation = layout.explain();
    /// assert_eq!(explanation.storage_overhead, 1.5);
    /// assert_eq!(explanation.sites_survived, 1);
    /// assert_eq!(explanation.worst_case.extra_nodes, 1);
    /// assert!(explanation.to_string().contains("storage overhead 1.50x"));
    /// # Ok::<(), geoshard::Error>(())
    /// ```
    pub fn explain(&self) -> Explanation {
        explain::explain(self)
    }

    /// Where the columns of stripe `stripe_id` go. Pure and deterministic:
    /// the same layout description and id give the same placement on every
    /// machine.
    ///
    /// 1. The stripe id picks a *rotation* (which sites hold one column more
    ///    when k + m does not divide evenly) and a cyclic *shift*; the
    ///    columns are dealt round-robin over the sites and shifted, so
    ///    which columns each site holds, and so which are data, rotates.
    /// 2. Within a site, its columns (slots) are matched to distinct nodes
    ///    by weighted rendezvous: each (slot, node) pair scores
    ///    `-w / ln(u)` with `u` a hash of (stripe id, slot, node name), and
    ///    pairs are taken best first. `w` is the node's capacity weight,
    ///    adjusted when the site holds several columns so that each node's
    ///    share of them follows its weight (see the module docs); where
    ///    every node of the site gets a column, or all weigh the same, the
    ///    hash alone ranks. Adding a node to a site moves about its share of
    ///    that site's columns and nothing elsewhere.
    ///
    /// Costs one 64-bit hash per (slot, node) pair of each site, plus a
    /// logarithm where weights matter; about 2,100 instructions for
    /// 3 sites x 3 nodes RS(6,3) (see `docs/PERFORMANCE.md`).
    pub fn placement(&self, stripe_id: u64) -> Placement {
        placement::placement(self, stripe_id)
    }

    /// Nodes that may take column `column_index` of `placement` while its
    /// home node is down, best first.
    ///
    /// Candidates are up (`down` says false) and hold no column of the
    /// stripe yet. First come the other nodes of the home node's site,
    /// ranked by weighted rendezvous on (stripe id, column index), so
    /// every writer picks the same one; then nodes of the other sites,
    /// sites holding fewer columns of the stripe first (ties by a
    /// rendezvous rank of the site), nodes within a site ranked as above.
    ///
    /// A column written to its own site keeps the stripe's promise. A column
    /// moved to another site is still better than no column (losing that
    /// site loses it, as not writing it would), but the stripe may then
    /// depend on more than the promised sites: check the result with
    /// [`Layout::placement_keeps_promise`] and record the stripe for
    /// repair.
    ///
    /// # Panics
    ///
    /// If `column_index` is not a column of `placement`.
    pub fn handoff_candidates(
        &self,
        placement: &Placement,
        column_index: usize,
        down: &dyn Fn(NodeId) -> bool,
    ) -> Vec<NodeId> {
        placement::handoff_candidates(self, placement, column_index, down)
    }

    /// The node names of `placement`'s columns, by column index: the value
    /// a column header stores so the stripe stays findable after the
    /// topology changes.
    pub fn placement_names(&self, placement: &Placement) -> Vec<&str> {
        placement::placement_names(self, placement)
    }

    /// The placement whose columns are on the nodes named `names`, e.g. as
    /// read from a column header.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) if a name is not a node of this layout
    /// (it was removed), if two columns name the same node, or if there are
    /// more than [`COLUMN_COUNT_MAX`] names.
    pub fn placement_from_names<S: AsRef<str>>(
        &self,
        stripe_id: u64,
        names: &[S],
    ) -> Result<Placement> {
        placement::placement_from_names(self, stripe_id, names)
    }

    /// Whether every stripe placed by this layout stays readable (keeps at
    /// least k columns) when the sites `lost_sites` and the nodes
    /// `lost_nodes` are all lost. Duplicates, and nodes inside lost sites,
    /// count once; ids that are not in the layout are ignored.
    ///
    /// Exact: it takes the worst stripe, i.e. the split of columns over
    /// sites that loses most, with every lost node holding a column where
    /// its site holds enough.
    ///
    /// ```
    /// use geoshard::layout::{Layout, NodeId, SiteId};
    ///
    /// let layout = Layout::builder()
    ///     .code(4, 2)
    ///     .site("a", |s| s.node("a1", "/srv/a1").node("a2", "/srv/a2"))
    ///     .site("b", |s| s.node("b1", "/srv/b1").node("b2", "/srv/b2"))
    ///     .site("c", |s| s.node("c1", "/srv/c1").node("c2", "/srv/c2"))
    ///     .build()?;
    /// assert!(layout.survives(&[SiteId(2)], &[]));
    /// assert!(layout.survives(&[], &[NodeId(0), NodeId(2)]));
    /// assert!(!layout.survives(&[SiteId(2)], &[NodeId(0)]));
    /// # Ok::<(), geoshard::Error>(())
    /// ```
    pub fn survives(&self, lost_sites: &[SiteId], lost_nodes: &[NodeId]) -> bool {
        survive::survives(self, lost_sites, lost_nodes)
    }

    /// Whether a stripe whose columns are on `columns` (one entry per column
    /// that exists; columns that were never written are left out) stays
    /// readable when `lost_sites` and `lost_nodes` are lost: at least k of
    /// its columns are on nodes outside both.
    ///
    /// Unlike [`survives`](Layout::survives), this is about one stripe as it
    /// actually is, handoffs and missing columns included.
    ///
    /// # Panics
    ///
    /// If a node of `columns` is not a node of this layout.
    pub fn placement_survives(
        &self,
        columns: &[NodeId],
        lost_sites: &[SiteId],
        lost_nodes: &[NodeId],
    ) -> bool {
        survive::placement_survives(self, columns, lost_sites, lost_nodes)
    }

    /// Whether a stripe whose columns are on `columns` (as in
    /// [`placement_survives`](Layout::placement_survives)) survives *every*
    /// loss the promise covers: any `sites_lost` sites plus any
    /// `extra_nodes_lost` more nodes. Health reporting asks this of each
    /// stripe ("does it survive losing any one site, where its columns
    /// really are").
    ///
    /// # Panics
    ///
    /// If a node of `columns` is not a node of this layout.
    pub fn placement_keeps_promise(&self, columns: &[NodeId]) -> bool {
        survive::placement_keeps_promise(self, columns)
    }

    /// How `failed` (nodes that are down or take no writes, duplicates
    /// allowed) stands against the promise.
    ///
    /// ```
    /// use geoshard::layout::{Layout, NodeId, PromiseRoom};
    ///
    /// let layout = Layout::builder()
    ///     .code(4, 2)
    ///     .site("a", |s| s.node("a1", "/srv/a1").node("a2", "/srv/a2"))
    ///     .site("b", |s| s.node("b1", "/srv/b1").node("b2", "/srv/b2"))
    ///     .site("c", |s| s.node("c1", "/srv/c1").node("c2", "/srv/c2"))
    ///     .build()?;
    /// assert_eq!(layout.promise_room(&[]), PromiseRoom::Room);
    /// assert_eq!(layout.promise_room(&[NodeId(0)]), PromiseRoom::Room);
    /// assert_eq!(layout.promise_room(&[NodeId(0), NodeId(1)]), PromiseRoom::UsedUp);
    /// assert_eq!(layout.promise_room(&[NodeId(0), NodeId(2)]), PromiseRoom::Exceeded);
    /// # Ok::<(), geoshard::Error>(())
    /// ```
    pub fn promise_room(&self, failed: &[NodeId]) -> PromiseRoom {
        plan::promise_room(self, failed)
    }

    /// Whether a stripe whose stored columns are on `stored` (one entry per
    /// stored column, a node may repeat), with `zero_columns` more columns
    /// that are known zeros (data columns of length 0, never stored), keeps
    /// at least k columns through every promise failure set that contains
    /// every node of `failed`. With `failed` empty, this is "keeps the whole
    /// promise". When no promise failure set contains `failed`, the answer
    /// is whether it survives `failed` alone.
    pub fn survives_promise_given(
        &self,
        stored: &[NodeId],
        zero_columns: usize,
        failed: &[NodeId],
    ) -> bool {
        plan::survives_promise_given(self, stored, zero_columns, failed)
    }

    /// Plans a node for each stored column of a stripe: its placement node
    /// if `writable`, else the writable node that minimises, in order, the
    /// most columns any one site then holds, a move out of the column's
    /// home site, the columns the node already holds of this stripe, and
    /// the layout's handoff rank. `stored` lists the column indexes that
    /// have bytes. Returns the planned node of each of them, in the order
    /// of `stored`, or `None` when no node takes writes.
    ///
    /// # Panics
    ///
    /// If a column index of `stored` is not a column of `placement`.
    pub fn plan_columns(
        &self,
        placement: &Placement,
        stored: &[usize],
        writable: &dyn Fn(NodeId) -> bool,
    ) -> Option<Vec<NodeId>> {
        plan::plan_columns(self, placement, stored, writable)
    }

    /// The node column `column` of `placement` goes to when its home takes
    /// no writes, given the nodes holding the stripe's other columns
    /// (`held`, one entry per column): among `candidates` (nodes that take
    /// writes), the one that minimises the most columns any one site then
    /// holds, then a move out of the home site, then the columns the node
    /// already holds, then the layout's handoff rank. `None` without
    /// candidates.
    ///
    /// # Panics
    ///
    /// If `column` is not a column of `placement`.
    pub fn handoff_for(
        &self,
        placement: &Placement,
        column: usize,
        held: &[NodeId],
        candidates: &[NodeId],
    ) -> Option<NodeId> {
        plan::handoff_for(self, placement, column, held, candidates)
    }

    /// Reads a layout from TOML text (format: README.md, "Layout file").
    /// Relative directory paths are kept as written.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidLayout`](crate::Error::InvalidLayout) when the text is not valid TOML or not a
    /// layout (the reason names the line and column), or a node has both or
    /// neither of `path` and `url`; then everything
    /// [`LayoutBuilder::build`](LayoutBuilder::build) refuses.
    pub fn from_toml_str(text: &str) -> Result<Layout> {
        toml::from_toml_str(text)
    }

    /// Reads the layout file at `path`. Relative directory paths in it are
    /// taken relative to the file's directory.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) when the file cannot be read, [`Error::LimitExceeded`](crate::Error::LimitExceeded)
    /// when it is over [`LAYOUT_FILE_LEN_MAX`] bytes, and everything
    /// [`Layout::from_toml_str`] returns.
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Layout> {
        toml::load(path)
    }

    /// The layout as TOML that [`Layout::from_toml_str`] reads back into an
    /// equal layout.
    pub fn to_toml_string(&self) -> String {
        toml::to_toml_string(self)
    }
}
