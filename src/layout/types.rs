//! The value types a layout is made of: ids, the code, the promise, where a
//! node keeps its columns.

use std::fmt;

use super::remote::Remote;
use std::path::{Path, PathBuf};

/// A node, as an index into [`Layout::nodes`](super::Layout::nodes).
///
/// Ids are dense and assigned in the order sites and nodes are described, so
/// they are only meaningful together with the layout that made them. What
/// outlives a topology change is the node's *name*.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u16);

/// A site, as an index into [`Layout::sites`](super::Layout::sites).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SiteId(pub u16);

impl NodeId {
    /// The id as an index into [`Layout::nodes`](super::Layout::nodes).
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl SiteId {
    /// The id as an index into [`Layout::sites`](super::Layout::sites).
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// The Reed-Solomon code RS(k, m): `data_count` (k) data columns and
/// `parity_count` (m) parity columns per stripe; any k columns rebuild the
/// stripe.
///
/// ```
/// use geoshard::layout::Code;
/// let code = Code { data_count: 6, parity_count: 3 };
/// assert_eq!(code.column_count(), 9);
/// assert_eq!(code.to_string(), "RS(6,3)");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Code {
    /// k: data columns per stripe.
    pub data_count: usize,
    /// m: parity columns per stripe; at most m columns may be lost.
    pub parity_count: usize,
}

impl Code {
    /// k + m: columns per stripe, each on a different node.
    pub fn column_count(&self) -> usize {
        self.data_count + self.parity_count
    }

    /// Storage used per byte stored: (k + m) / k.
    pub fn overhead(&self) -> f64 {
        self.column_count() as f64 / self.data_count as f64
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RS({},{})", self.data_count, self.parity_count)
    }
}

/// What the layout promises to survive: the loss of any `sites_lost` whole
/// sites plus any `extra_nodes_lost` further nodes anywhere, with every blob
/// still readable.
///
/// The default is the promise geoshard exists for: any one site.
///
/// ```
/// use geoshard::layout::Promise;
/// let promise = Promise::default();
/// assert_eq!((promise.sites_lost, promise.extra_nodes_lost), (1, 0));
/// assert_eq!(promise.to_string(), "the loss of any 1 site");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Promise {
    /// Whole sites that may be lost at once (default 1).
    pub sites_lost: usize,
    /// Further nodes, in any of the remaining sites, that may be lost on top
    /// (default 0).
    pub extra_nodes_lost: usize,
}

impl Default for Promise {
    fn default() -> Self {
        Promise {
            sites_lost: 1,
            extra_nodes_lost: 0,
        }
    }
}

impl fmt::Display for Promise {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sites = plural(self.sites_lost, "site", "sites");
        let nodes = plural(self.extra_nodes_lost, "node", "nodes");
        match (self.sites_lost, self.extra_nodes_lost) {
            (0, 0) => write!(f, "no loss at all"),
            (0, e) => write!(f, "the loss of any {e} {nodes}"),
            (s, 0) => write!(f, "the loss of any {s} {sites}"),
            (s, e) => write!(f, "the loss of any {s} {sites} plus any {e} more {nodes}"),
        }
    }
}

pub(crate) fn plural<'a>(count: usize, one: &'a str, many: &'a str) -> &'a str {
    if count == 1 { one } else { many }
}

/// Where a node keeps its columns.
///
/// ```
/// use geoshard::layout::Location;
/// use std::path::PathBuf;
/// assert_eq!(Location::parse("/srv/a1"), Location::Dir(PathBuf::from("/srv/a1")));
/// assert_eq!(Location::parse("s3://bucket/a1"), Location::Url("s3://bucket/a1".into()));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A local directory (one disk).
    Dir(PathBuf),
    /// An object-store prefix or file URL: `s3://`, `gs://`, `az://` or
    /// `file://` (see [`URL_SCHEMES`](super::URL_SCHEMES)).
    Url(String),
}

impl Location {
    /// Reads `text` as a URL when it has a `scheme://` prefix, else as a
    /// directory path. Whether the scheme is one geoshard serves is checked
    /// when the layout is built.
    pub fn parse(text: &str) -> Location {
        match text.split_once("://") {
            Some((scheme, _))
                if !scheme.is_empty()
                    && scheme
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
            {
                Location::Url(text.to_owned())
            }
            _ => Location::Dir(PathBuf::from(text)),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Dir(path) => write!(f, "{}", path.display()),
            Location::Url(url) => f.write_str(url),
        }
    }
}

impl From<&str> for Location {
    fn from(text: &str) -> Self {
        Location::parse(text)
    }
}

impl From<String> for Location {
    fn from(text: String) -> Self {
        Location::parse(&text)
    }
}

impl From<PathBuf> for Location {
    fn from(path: PathBuf) -> Self {
        Location::Dir(path)
    }
}

impl From<&Path> for Location {
    fn from(path: &Path) -> Self {
        Location::Dir(path.to_path_buf())
    }
}

/// One node of a layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    /// Stable name, unique in the layout; stored in every column header.
    pub name: String,
    /// The site the node belongs to.
    pub site: SiteId,
    /// Where the node keeps its columns.
    pub location: Location,
    /// Capacity weight: within its site, the node receives columns in
    /// proportion to it (as far as the site's column count allows).
    pub weight: u32,
    /// How to reach the object store of a [`Location::Url`] node (the
    /// node's own settings, else its site's); `None` for a directory, or a
    /// URL node that uses the provider's defaults.
    pub remote: Option<Remote>,
}

/// One site (failure domain) of a layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteSpec {
    /// Stable name, unique in the layout.
    pub name: String,
    /// The site's nodes, in the order they were described.
    pub nodes: Vec<NodeId>,
}
