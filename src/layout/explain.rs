//! What a layout costs and what it survives, in numbers and in words.

use std::fmt;

use super::Layout;
use super::types::{Code, Promise, SiteId, plural};

/// What a layout costs and survives; [`Display`](fmt::Display) renders it
/// as text for operators. Made by [`Layout::explain`].
#[derive(Clone, Debug, PartialEq)]
pub struct Explanation {
    /// The code RS(k, m).
    pub code: Code,
    /// The promise the layout keeps.
    pub promise: Promise,
    /// Bytes stored per byte of blob for full stripes: (k + m) / k.
    pub storage_overhead: f64,
    /// Nodes in the layout.
    pub node_count: usize,
    /// Each site's share of a stripe, by [`SiteId`].
    pub sites: Vec<SiteShare>,
    /// Largest number of whole sites whose loss every stripe survives (at
    /// least `promise.sites_lost`).
    pub sites_survived: usize,
    /// Nodes anywhere whose loss every stripe survives: m, since no two
    /// columns of a stripe share a node.
    pub nodes_survived: usize,
    /// After losing the `promise.sites_lost` fullest sites, how many more
    /// nodes every stripe survives (at least `promise.extra_nodes_lost`).
    pub extra_nodes_survived: usize,
    /// The smallest loss, starting from the promised sites, that can make a
    /// stripe unreadable.
    pub worst_case: FailureCase,
}

/// One site's share of each stripe.
#[derive(Clone, Debug, PartialEq)]
pub struct SiteShare {
    /// The site's name.
    pub name: String,
    /// Its nodes.
    pub node_count: usize,
    /// Fewest columns of a stripe it holds.
    pub column_count_min: usize,
    /// Most columns of a stripe it holds.
    pub column_count_max: usize,
    /// Data columns of a stripe it holds, on average over stripes.
    pub data_column_mean: f64,
}

/// A loss that can make some stripe unreadable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailureCase {
    /// Whole sites lost.
    pub sites: Vec<SiteId>,
    /// Nodes lost on top, outside those sites.
    pub extra_nodes: usize,
    /// Columns of the worst-hit stripe lost (more than m).
    pub columns_lost: usize,
}

/// The body of [`Layout::explain`].
pub(crate) fn explain(layout: &Layout) -> Explanation {
    let code = layout.code;
    let m = code.parity_count;
    let site_count = layout.sites.len();
    let column_count = code.column_count();
    let mut data_totals = vec![0usize; site_count];
    for sequence in &layout.spread.sequences {
        for shift in 0..column_count {
            for column in 0..code.data_count {
                data_totals[sequence[(column + shift) % column_count].index()] += 1;
            }
        }
    }
    let variants = (layout.spread.sequences.len() * column_count) as f64;
    let sites = layout
        .sites
        .iter()
        .enumerate()
        .map(|(index, site)| {
            let counts = layout.spread.counts.iter().map(|split| split[index]);
            SiteShare {
                name: site.name.clone(),
                node_count: site.nodes.len(),
                column_count_min: counts.clone().min().unwrap_or(0),
                column_count_max: counts.max().unwrap_or(0),
                data_column_mean: data_totals[index] as f64 / variants,
            }
        })
        .collect();
    let sites_survived = (0..site_count)
        .rev()
        .find(|&s| layout.spread.top_sites_column_count(s) <= m)
        .unwrap_or(0);
    let promised_sites = layout.promise.sites_lost;
    let in_sites = layout.spread.top_sites_column_count(promised_sites);
    let extra_nodes_survived = m - in_sites;
    // The fullest sites of the first rotation (every rotation has the
    // same column counts, only on different sites).
    let split = &layout.spread.counts[0];
    let mut fullest: Vec<usize> = (0..site_count).collect();
    fullest.sort_by_key(|&site| std::cmp::Reverse(split[site]));
    let mut lost_sites: Vec<SiteId> = fullest[..promised_sites]
        .iter()
        .map(|&site| SiteId(site as u16))
        .collect();
    lost_sites.sort();
    Explanation {
        code,
        promise: layout.promise,
        storage_overhead: code.overhead(),
        node_count: layout.nodes.len(),
        sites,
        sites_survived,
        nodes_survived: m,
        extra_nodes_survived,
        worst_case: FailureCase {
            sites: lost_sites,
            extra_nodes: extra_nodes_survived + 1,
            columns_lost: in_sites + extra_nodes_survived + 1,
        },
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Code {
            data_count: k,
            parity_count: m,
        } = self.code;
        let n = k + m;
        let site_count = self.sites.len();
        writeln!(
            f,
            "{} over {site_count} {} and {} {}: storage overhead {:.2}x ((k + m) / k = {n} / {k})",
            self.code,
            plural(site_count, "site", "sites"),
            self.node_count,
            plural(self.node_count, "node", "nodes"),
            self.storage_overhead,
        )?;
        writeln!(f, "columns of each stripe, per site:")?;
        for site in &self.sites {
            let columns = if site.column_count_min == site.column_count_max {
                format!("{}", site.column_count_max)
            } else {
                format!("{} to {}", site.column_count_min, site.column_count_max)
            };
            writeln!(
                f,
                "  site \"{}\" ({} {}): {columns} {} ({:.2} data columns on average)",
                site.name,
                site.node_count,
                plural(site.node_count, "node", "nodes"),
                plural(site.column_count_max, "column", "columns"),
                site.data_column_mean,
            )?;
        }
        writeln!(f, "promise: survive {} (checked, holds)", self.promise)?;
        write!(
            f,
            "survives: any {} {} at once; any {} {} anywhere",
            self.sites_survived,
            plural(self.sites_survived, "site", "sites"),
            self.nodes_survived,
            plural(self.nodes_survived, "node", "nodes"),
        )?;
        if self.promise.sites_lost > 0 {
            write!(
                f,
                "; any {} {} plus any {} more {}",
                self.promise.sites_lost,
                plural(self.promise.sites_lost, "site", "sites"),
                self.extra_nodes_survived,
                plural(self.extra_nodes_survived, "node", "nodes"),
            )?;
        }
        writeln!(f)?;
        let worst = &self.worst_case;
        let names: Vec<String> = worst
            .sites
            .iter()
            .filter_map(|id| self.sites.get(id.index()))
            .map(|site| format!("site \"{}\"", site.name))
            .collect();
        let nodes = format!(
            "{} {}",
            worst.extra_nodes,
            plural(worst.extra_nodes, "node", "nodes")
        );
        let what = if names.is_empty() {
            format!("{nodes} anywhere")
        } else {
            format!("{} plus {nodes} elsewhere", names.join(" and "))
        };
        write!(
            f,
            "does not survive (smallest loss that can lose data): {what}: {} of {n} columns of a \
             stripe lost, only {m} parity",
            worst.columns_lost,
        )?;
        if self.sites_survived < site_count {
            let sites = self.sites_survived + 1;
            write!(
                f,
                "; or any {sites} {} at once",
                plural(sites, "site", "sites")
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(k: usize, m: usize, sizes: &[usize]) -> crate::layout::LayoutBuilder {
        let mut builder = Layout::builder().code(k, m);
        for (site, &size) in sizes.iter().enumerate() {
            builder = builder.site(format!("s{site}"), |mut s| {
                for node in 0..size {
                    s = s.node(
                        format!("s{site}n{node}"),
                        format!("/s{site}n{node}").as_str(),
                    );
                }
                s
            });
        }
        builder
    }

    #[test]
    fn uneven_split_is_explained() {
        // RS(4,4) over 3 sites: 8 columns split 3/3/2, rotating.
        let explanation = grid(4, 4, &[3, 3, 3]).build().unwrap().explain();
        assert_eq!(explanation.storage_overhead, 2.0);
        for site in &explanation.sites {
            assert_eq!((site.column_count_min, site.column_count_max), (2, 3));
            assert!((site.data_column_mean - 4.0 / 3.0).abs() < 1e-9);
        }
        assert_eq!(explanation.sites_survived, 1);
        assert_eq!(explanation.nodes_survived, 4);
        // After the fullest site (3 columns), one more node.
        assert_eq!(explanation.extra_nodes_survived, 1);
        assert_eq!(explanation.worst_case.extra_nodes, 2);
        assert_eq!(explanation.worst_case.columns_lost, 5);
        let text = explanation.to_string();
        assert!(
            text.contains("site \"s0\" (3 nodes): 2 to 3 columns (1.33 data columns on average)"),
            "{text}"
        );
        assert!(text.contains("any 1 site plus any 1 more node"), "{text}");
        assert!(
            text.contains("plus 2 nodes elsewhere: 5 of 8 columns of a stripe lost, only 4 parity"),
            "{text}"
        );
    }

    #[test]
    fn node_only_promise_is_explained() {
        let layout = grid(4, 2, &[6])
            .sites_lost(0)
            .extra_nodes_lost(2)
            .build()
            .unwrap();
        let explanation = layout.explain();
        assert_eq!(explanation.sites_survived, 0);
        assert_eq!(explanation.worst_case.sites, Vec::<SiteId>::new());
        assert_eq!(explanation.worst_case.extra_nodes, 3);
        let text = explanation.to_string();
        assert!(
            text.contains("promise: survive the loss of any 2 nodes"),
            "{text}"
        );
        assert!(text.contains("3 nodes anywhere: 3 of 6 columns"), "{text}");
        assert!(text.contains("or any 1 site at once"), "{text}");
    }
}
