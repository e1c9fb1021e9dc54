//! Build-time checks. Every refusal says what is wrong *and* what to change,
//! with concrete numbers where there are some.

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

use super::builder::LayoutBuilder;
use super::spread::Spread;
use super::types::{Code, Location, Promise, plural};
use super::{COLUMN_COUNT_MAX, NAME_LEN_MAX, NODE_COUNT_MAX, SITE_COUNT_MAX, URL_SCHEMES};
use crate::{Error, Result};

pub(crate) fn invalid(reason: impl Into<String>, fix: impl Into<String>) -> Error {
    Error::InvalidLayout {
        reason: reason.into(),
        fix: fix.into(),
    }
}

fn cannot_survive(promise: Promise, reason: impl Into<String>, fix: impl Into<String>) -> Error {
    Error::LayoutCannotSurvive {
        promise: promise.to_string(),
        reason: reason.into(),
        fix: fix.into(),
    }
}

/// Checks everything about the description except the promise; returns the
/// code.
pub(crate) fn check_description(builder: &LayoutBuilder) -> Result<Code> {
    let code = builder.code.ok_or_else(|| {
        invalid(
            "no code is given",
            "set the code, e.g. `.code(6, 3)` or `[code] data_count = 6, parity_count = 3`",
        )
    })?;
    check_code(code)?;
    check_sites(builder)?;
    check_locations(builder)?;
    let node_count: usize = builder.sites.iter().map(|site| site.nodes.len()).sum();
    let column_count = code.column_count();
    if node_count < column_count {
        let missing = column_count - node_count;
        return Err(invalid(
            format!(
                "{code} puts the {column_count} columns of a stripe on {column_count} different \
                 nodes, but the layout has only {node_count} {}",
                plural(node_count, "node", "nodes")
            ),
            format!(
                "add {missing} {} or use a code with at most {node_count} columns in all",
                plural(missing, "node", "nodes")
            ),
        ));
    }
    Ok(code)
}

fn check_code(code: Code) -> Result<()> {
    let Code {
        data_count: k,
        parity_count: m,
    } = code;
    if k == 0 {
        return Err(invalid(
            format!("{code} has no data columns (data_count k is 0)"),
            "set data_count to at least 1, e.g. RS(6,3)",
        ));
    }
    if m == 0 {
        return Err(invalid(
            format!(
                "{code} has no parity columns (parity_count m is 0), so losing any node loses data"
            ),
            "set parity_count to at least 1; RS(6,3) over 3 sites survives any one site",
        ));
    }
    if k.saturating_add(m) > COLUMN_COUNT_MAX {
        return Err(invalid(
            format!(
                "{code} has {} columns, more than the {COLUMN_COUNT_MAX} that Reed-Solomon over \
                 GF(2^8) allows",
                k.saturating_add(m)
            ),
            format!(
                "use at most {COLUMN_COUNT_MAX} columns in all (k + m), e.g. RS(6,3) or RS(12,6)"
            ),
        ));
    }
    Ok(())
}

fn check_name(kind: &str, name: &str) -> Result<()> {
    let fix = format!(
        "name the {kind} with 1 to {NAME_LEN_MAX} ASCII letters, digits, '-', '_' or '.' \
         (names are stored in every column header)"
    );
    if name.is_empty() {
        return Err(invalid(format!("a {kind} has an empty name"), fix));
    }
    if name.len() > NAME_LEN_MAX {
        return Err(invalid(
            format!(
                "{kind} name \"{name}\" is {} bytes long, over {NAME_LEN_MAX}",
                name.len()
            ),
            fix,
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(invalid(
            format!(
                "{kind} name {name:?} has characters other than ASCII letters, digits, '-', '_' and '.'"
            ),
            fix,
        ));
    }
    Ok(())
}

fn check_sites(builder: &LayoutBuilder) -> Result<()> {
    if builder.sites.is_empty() {
        return Err(invalid(
            "the layout has no sites",
            "add sites with nodes; surviving the loss of a site takes at least 2 sites \
             (3 sites of 3 nodes for RS(6,3))",
        ));
    }
    if builder.sites.len() > SITE_COUNT_MAX {
        return Err(invalid(
            format!(
                "the layout has {} sites, over the limit of {SITE_COUNT_MAX}",
                builder.sites.len()
            ),
            format!("use at most {SITE_COUNT_MAX} sites"),
        ));
    }
    let mut site_names = HashSet::new();
    let mut node_sites: HashMap<&str, &str> = HashMap::new();
    let mut node_count = 0;
    for site in &builder.sites {
        check_name("site", &site.name)?;
        if !site_names.insert(site.name.as_str()) {
            return Err(invalid(
                format!("two sites are named \"{}\"", site.name),
                "give each site a unique name",
            ));
        }
        if site.nodes.is_empty() {
            return Err(invalid(
                format!("site \"{}\" has no nodes", site.name),
                format!("add nodes to site \"{}\" or remove the site", site.name),
            ));
        }
        for node in &site.nodes {
            check_name("node", &node.name)?;
            if let Some(other_site) = node_sites.insert(node.name.as_str(), site.name.as_str()) {
                let place = if other_site == site.name {
                    format!("twice in site \"{other_site}\"")
                } else {
                    format!("in sites \"{other_site}\" and \"{}\"", site.name)
                };
                return Err(invalid(
                    format!("node name \"{}\" is used {place}", node.name),
                    "give each node a name that is unique in the whole layout \
                     (column headers find nodes by name)",
                ));
            }
            if node.weight == 0 {
                return Err(invalid(
                    format!(
                        "node \"{}\" in site \"{}\" has weight 0",
                        node.name, site.name
                    ),
                    format!(
                        "give node \"{}\" a weight of at least 1 (weights are relative \
                         capacities: 2 takes twice the columns of 1), or remove the node",
                        node.name
                    ),
                ));
            }
        }
        node_count += site.nodes.len();
    }
    if node_count > NODE_COUNT_MAX {
        return Err(invalid(
            format!("the layout has {node_count} nodes, over the limit of {NODE_COUNT_MAX}"),
            format!("use at most {NODE_COUNT_MAX} nodes"),
        ));
    }
    Ok(())
}

/// A path with `.` and repeated or trailing separators removed, so that
/// `/x/a/`, `/x/./a` and `/x//a` compare equal.
fn normal_path(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| *c != Component::CurDir)
        .collect()
}

fn check_locations(builder: &LayoutBuilder) -> Result<()> {
    let mut dirs: Vec<(PathBuf, &str)> = Vec::new();
    let mut urls: Vec<(Vec<&str>, &str, &str)> = Vec::new();
    for node in builder.sites.iter().flat_map(|site| &site.nodes) {
        match &node.location {
            Location::Dir(path) => {
                if node.remote.is_some() {
                    return Err(invalid(
                        format!(
                            "node \"{}\" is a local directory but has remote settings",
                            node.name
                        ),
                        format!(
                            "give node \"{}\" a `url` (s3://bucket/prefix), or drop its \
                             `remote` table",
                            node.name
                        ),
                    ));
                }
                if path.as_os_str().is_empty() {
                    return Err(invalid(
                        format!("node \"{}\" has an empty directory path", node.name),
                        format!(
                            "give node \"{}\" the directory it stores columns in",
                            node.name
                        ),
                    ));
                }
                if path.to_str().is_none() {
                    return Err(invalid(
                        format!("the directory of node \"{}\" is not valid UTF-8", node.name),
                        "use a UTF-8 directory path (layouts are written as TOML)",
                    ));
                }
                dirs.push((normal_path(path), node.name.as_str()));
            }
            Location::Url(url) => {
                let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
                if !URL_SCHEMES.contains(&scheme) {
                    return Err(invalid(
                        format!(
                            "node \"{}\" has the URL \"{url}\", whose scheme \"{scheme}\" geoshard \
                             does not serve",
                            node.name
                        ),
                        format!(
                            "use a URL starting with {} or a directory path",
                            URL_SCHEMES.map(|s| format!("{s}://")).join(", ")
                        ),
                    ));
                }
                let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
                if segments.is_empty() {
                    return Err(invalid(
                        format!(
                            "node \"{}\" has the URL \"{url}\", which names no bucket or path",
                            node.name
                        ),
                        format!("write it as {scheme}://bucket/prefix"),
                    ));
                }
                urls.push((segments, scheme, node.name.as_str()));
            }
        }
    }
    // Sorted by components, a location is directly followed by the locations
    // inside it, so comparing neighbours finds every clash.
    dirs.sort();
    for pair in dirs.windows(2) {
        let [(outer, outer_node), (inner, inner_node)] = pair else {
            continue;
        };
        if outer == inner {
            return Err(invalid(
                format!(
                    "nodes \"{outer_node}\" and \"{inner_node}\" both use the directory {}",
                    outer.display()
                ),
                "give each node its own directory (one directory per disk)",
            ));
        }
        if inner.starts_with(outer) {
            return Err(invalid(
                format!(
                    "the directory of node \"{inner_node}\" ({}) is inside the directory of node \
                     \"{outer_node}\" ({})",
                    inner.display(),
                    outer.display()
                ),
                "give each node its own directory, not one inside another node's",
            ));
        }
    }
    urls.sort();
    for pair in urls.windows(2) {
        let [
            (outer, outer_scheme, outer_node),
            (inner, inner_scheme, inner_node),
        ] = pair
        else {
            continue;
        };
        if outer_scheme != inner_scheme || !inner.starts_with(outer) {
            continue;
        }
        let url = format!("{outer_scheme}://{}", outer.join("/"));
        let reason = if outer == inner {
            format!("nodes \"{outer_node}\" and \"{inner_node}\" both use {url}")
        } else {
            format!(
                "the URL of node \"{inner_node}\" is inside {url}, the URL of node \"{outer_node}\""
            )
        };
        return Err(invalid(
            reason,
            "give each node its own prefix, not one inside another node's",
        ));
    }
    Ok(())
}

/// Checks that the promise holds for sites with `caps[site]` nodes; returns
/// the split it holds with.
pub(crate) fn check_promise(
    code: Code,
    promise: Promise,
    site_names: &[&str],
    caps: &[usize],
) -> Result<Spread> {
    let Promise {
        sites_lost: s,
        extra_nodes_lost: e,
    } = promise;
    let site_count = caps.len();
    let column_count = code.column_count();
    let m = code.parity_count;
    if s > 0 && s >= site_count {
        let fix = if site_count > 1 {
            format!(
                "add sites (at least {}) or lower sites_lost to {}",
                s.saturating_add(1),
                site_count - 1
            )
        } else {
            format!("add sites (at least {})", s.saturating_add(1))
        };
        return Err(cannot_survive(
            promise,
            format!(
                "the layout has only {site_count} {}, so losing {s} loses every column",
                plural(site_count, "site", "sites")
            ),
            fix,
        ));
    }
    let spread = Spread::new(caps, column_count).ok_or_else(|| {
        invalid(
            "the sites have fewer nodes than a stripe has columns",
            "add nodes",
        )
    })?;
    let lost = spread.top_sites_column_count(s);
    if lost.saturating_add(e) <= m {
        return Ok(spread);
    }
    let even_lost = even_top(site_count, column_count, s);
    if even_lost.saturating_add(e) <= m {
        return Err(node_shortage(code, promise, site_names, caps, &spread));
    }
    let reason = too_much_in_too_few_sites(code, promise, site_count, even_lost);
    let mut fixes = Vec::new();
    if s.saturating_add(e) <= m
        && let Some(sites_needed) =
            (site_count + 1..=column_count).find(|&n| even_top(n, column_count, s) + e <= m)
    {
        fixes.push(format!(
            "use at least {sites_needed} sites with {} nodes each",
            column_count.div_ceil(sites_needed)
        ));
    }
    if let Some((parity, per_site)) =
        (m + 1..=COLUMN_COUNT_MAX - code.data_count).find_map(|parity| {
            let bigger = code.data_count + parity;
            (even_top(site_count, bigger, s).saturating_add(e) <= parity)
                .then(|| (parity, even_top(site_count, bigger, 1)))
        })
    {
        fixes.push(format!(
            "keep {site_count} {} and use RS({},{parity}) ({per_site} columns per site, so each site \
             needs at least {per_site} nodes)",
            plural(site_count, "site", "sites"),
            code.data_count
        ));
    }
    if e > 0 && even_lost <= m {
        fixes.push(format!("lower extra_nodes_lost to {}", m - even_lost));
    }
    if s > 1
        && let Some(fewer) = (1..s)
            .rev()
            .find(|&fewer| spread.top_sites_column_count(fewer).saturating_add(e) <= m)
    {
        fixes.push(format!("lower sites_lost to {fewer}"));
    }
    if fixes.is_empty() {
        fixes.push("promise less: lower sites_lost or extra_nodes_lost".to_owned());
    }
    Err(cannot_survive(promise, reason, fixes.join("; or ")))
}

/// The most columns `sites_lost` sites hold together when `column_count`
/// columns are split as evenly as possible over `site_count` sites with
/// room for all (what the water-fill gives without node limits).
fn even_top(site_count: usize, column_count: usize, sites_lost: usize) -> usize {
    let (share, extra) = (column_count / site_count, column_count % site_count);
    let sites_lost = sites_lost.min(site_count);
    sites_lost * share + sites_lost.min(extra)
}

fn too_much_in_too_few_sites(
    code: Code,
    promise: Promise,
    site_count: usize,
    lost: usize,
) -> String {
    let Promise {
        sites_lost: s,
        extra_nodes_lost: e,
    } = promise;
    let n = code.column_count();
    let m = code.parity_count;
    let parity = format!("{m} parity {}", plural(m, "column", "columns"));
    let sites = plural(site_count, "site", "sites");
    match (s, e) {
        (0, _) => format!("losing {e} nodes loses {e} columns, more than the {parity}"),
        (1, 0) => format!(
            "with {site_count} {sites} a site would hold at least {lost} of the {n} columns of a \
             stripe, more than the {parity}"
        ),
        (1, _) => format!(
            "with {site_count} {sites} a site would hold at least {lost} of the {n} columns of a \
             stripe; with {e} more {} lost that is {} columns, more than the {parity}",
            plural(e, "node", "nodes"),
            lost.saturating_add(e)
        ),
        (_, 0) => format!(
            "with {site_count} sites, {s} sites would hold at least {lost} of the {n} columns of a \
             stripe together, more than the {parity}"
        ),
        (_, _) => format!(
            "with {site_count} sites, {s} sites would hold at least {lost} of the {n} columns of a \
             stripe together; with {e} more {} lost that is {} columns, more than the {parity}",
            plural(e, "node", "nodes"),
            lost.saturating_add(e)
        ),
    }
}

/// The promise would hold with an even split, but some sites have too few
/// nodes to take their share, which pushes columns onto the others.
fn node_shortage(
    code: Code,
    promise: Promise,
    site_names: &[&str],
    caps: &[usize],
    spread: &Spread,
) -> Error {
    let site_count = caps.len();
    let column_count = code.column_count();
    let m = code.parity_count;
    let holds = |targets: &[usize]| {
        Spread::new(targets, column_count).is_some_and(|s| {
            s.top_sites_column_count(promise.sites_lost) + promise.extra_nodes_lost <= m
        })
    };
    // The fewest nodes to add: raise short sites to the floor of an even
    // share if that is enough, else to its ceiling (which always is).
    let floor: Vec<usize> = caps
        .iter()
        .map(|&cap| cap.max(column_count / site_count))
        .collect();
    let ceiling: Vec<usize> = caps
        .iter()
        .map(|&cap| cap.max(column_count.div_ceil(site_count)))
        .collect();
    let targets = if holds(&floor) { floor } else { ceiling };
    let short: Vec<(usize, usize)> = (0..site_count)
        .filter(|&site| targets[site] > caps[site])
        .map(|site| (site, targets[site] - caps[site]))
        .collect();
    let described: Vec<String> = short
        .iter()
        .map(|&(site, _)| {
            format!(
                "site \"{}\" has {} {} but must hold {} columns of every stripe",
                site_names[site],
                caps[site],
                plural(caps[site], "node", "nodes"),
                targets[site]
            )
        })
        .collect();
    let fullest = (0..site_count)
        .max_by_key(|&site| spread.counts[0][site])
        .unwrap_or(0);
    let most = spread.site_column_count_max();
    let reason = format!(
        "{} (two columns of a stripe never share a node); the columns it cannot take push up to \
         {most} columns onto site \"{}\", so {promise} could lose {} columns, more than the {m} \
         parity {}",
        described.join(", and "),
        site_names[fullest],
        spread.top_sites_column_count(promise.sites_lost) + promise.extra_nodes_lost,
        plural(m, "column", "columns"),
    );
    let fix = short
        .iter()
        .map(|&(site, missing)| {
            format!(
                "add {missing} {} to site \"{}\"",
                plural(missing, "node", "nodes"),
                site_names[site]
            )
        })
        .collect::<Vec<_>>()
        .join(" and ");
    cannot_survive(promise, reason, fix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_top_matches_an_uncapped_water_fill() {
        for site_count in 1..=9 {
            for column_count in 1..=30 {
                let spread = Spread::new(&vec![column_count; site_count], column_count).unwrap();
                for sites_lost in 0..=site_count {
                    assert_eq!(
                        even_top(site_count, column_count, sites_lost),
                        spread.top_sites_column_count(sites_lost),
                        "{column_count} columns over {site_count} sites, {sites_lost} lost"
                    );
                }
            }
        }
    }
}
