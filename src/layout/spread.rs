//! How many columns of a stripe each site holds, and in which column
//! positions.
//!
//! The split is a water-fill: every site gets the same number of columns L,
//! except sites with fewer than L nodes (they hold one column per node) and
//! `r` sites that hold L + 1 to make up k + m. This is the most even split
//! the node counts allow, and it is *majorized* by every other split, so it
//! also minimises the columns held by any `sites_lost` sites together: if
//! this split cannot keep the promise, no split can.
//!
//! Which sites hold the L + 1 columns rotates: there is one split per
//! *rotation* (one per site), and a stripe picks its rotation from its id.
//! The columns are then dealt to the sites round-robin, in the rotation's
//! site order, and the deal is shifted cyclically by a per-stripe offset, so
//! that which columns are data (the first k) and which parity rotates too.

use super::types::SiteId;

/// The per-rotation splits of a layout.
#[derive(Clone, Debug)]
pub(crate) struct Spread {
    /// `counts[rotation][site]`: columns the site holds in that rotation.
    pub counts: Vec<Vec<usize>>,
    /// `sequences[rotation][position]`: the site dealt that position.
    pub sequences: Vec<Vec<SiteId>>,
    /// `positions[rotation]`: the positions dealt to each site, grouped by
    /// site in site order, increasing within a site; site `s` has
    /// `positions[rotation][starts[rotation][s]..starts[rotation][s + 1]]`.
    /// The j-th position of a site is its column slot j.
    pub positions: Vec<Vec<u16>>,
    /// Where each site's positions start, plus the total at the end.
    pub starts: Vec<Vec<u16>>,
}

impl Spread {
    /// The splits for sites with `caps[site]` nodes each, or `None` when the
    /// sites have fewer nodes in total than a stripe has columns.
    pub fn new(caps: &[usize], column_count: usize) -> Option<Spread> {
        let site_count = caps.len();
        let mut counts = Vec::with_capacity(site_count);
        let mut sequences = Vec::with_capacity(site_count);
        let mut positions = Vec::with_capacity(site_count);
        let mut starts = Vec::with_capacity(site_count);
        for rotation in 0..site_count {
            let split = water_fill(caps, column_count, rotation)?;
            let sequence = deal(&split, rotation);
            let mut start = vec![0u16; site_count + 1];
            for site in 0..site_count {
                start[site + 1] = start[site] + split[site] as u16;
            }
            let mut grouped = Vec::with_capacity(column_count);
            for site in 0..site_count {
                grouped.extend(
                    (0..column_count as u16).filter(|&p| sequence[usize::from(p)].index() == site),
                );
            }
            positions.push(grouped);
            starts.push(start);
            sequences.push(sequence);
            counts.push(split);
        }
        Some(Spread {
            counts,
            sequences,
            positions,
            starts,
        })
    }

    /// The most columns any one site holds in any stripe.
    pub fn site_column_count_max(&self) -> usize {
        self.counts.iter().flatten().copied().max().unwrap_or(0)
    }

    /// The most columns any `sites` sites hold together in any stripe.
    pub fn top_sites_column_count(&self, sites: usize) -> usize {
        self.counts
            .iter()
            .map(|split| top_sum(split, sites))
            .max()
            .unwrap_or(0)
    }
}

/// The sum of the `count` largest values.
pub(crate) fn top_sum(values: &[usize], count: usize) -> usize {
    let mut sorted = values.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.iter().take(count).sum()
}

/// The most even split of `column_count` columns over sites with `caps`
/// nodes; the `r` extra columns go to the first sites with room in the
/// order starting at `rotation`.
pub(crate) fn water_fill(
    caps: &[usize],
    column_count: usize,
    rotation: usize,
) -> Option<Vec<usize>> {
    if caps.iter().sum::<usize>() < column_count {
        return None;
    }
    let filled = |level: usize| caps.iter().map(|&cap| cap.min(level)).sum::<usize>();
    let mut level = 0;
    while filled(level + 1) <= column_count && level < column_count {
        level += 1;
    }
    let mut split: Vec<usize> = caps.iter().map(|&cap| cap.min(level)).collect();
    let mut remainder = column_count - filled(level);
    let site_count = caps.len();
    for step in 0..site_count {
        if remainder == 0 {
            break;
        }
        let site = (rotation + step) % site_count;
        if caps[site] > level {
            split[site] += 1;
            remainder -= 1;
        }
    }
    debug_assert_eq!(remainder, 0, "water-fill left columns over");
    Some(split)
}

/// Deals positions to sites round-robin in the order starting at
/// `rotation`, so that consecutive positions fall in different sites.
fn deal(split: &[usize], rotation: usize) -> Vec<SiteId> {
    let site_count = split.len();
    let rounds = split.iter().copied().max().unwrap_or(0);
    let mut sequence = Vec::with_capacity(split.iter().sum());
    for round in 0..rounds {
        for step in 0..site_count {
            let site = (rotation + step) % site_count;
            if split[site] > round {
                sequence.push(SiteId(site as u16));
            }
        }
    }
    sequence
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_split_when_nodes_allow() {
        assert_eq!(water_fill(&[3, 3, 3], 9, 0), Some(vec![3, 3, 3]));
        assert_eq!(water_fill(&[5, 5, 5], 8, 0), Some(vec![3, 3, 2]));
        assert_eq!(water_fill(&[5, 5, 5], 8, 1), Some(vec![2, 3, 3]));
        assert_eq!(water_fill(&[5, 5, 5], 8, 2), Some(vec![3, 2, 3]));
    }

    #[test]
    fn small_sites_hold_one_column_per_node() {
        assert_eq!(water_fill(&[1, 4, 4], 9, 0), Some(vec![1, 4, 4]));
        assert_eq!(water_fill(&[2, 4, 4], 9, 0), Some(vec![2, 4, 3]));
        assert_eq!(water_fill(&[2, 2], 5, 0), None);
        assert_eq!(water_fill(&[2, 3], 5, 1), Some(vec![2, 3]));
    }

    #[test]
    fn deal_alternates_sites() {
        let spread = Spread::new(&[3, 3, 3], 9).unwrap();
        let names: Vec<u16> = spread.sequences[1].iter().map(|s| s.0).collect();
        assert_eq!(names, [1, 2, 0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(spread.site_column_count_max(), 3);
        assert_eq!(spread.top_sites_column_count(2), 6);
        let uneven = Spread::new(&[1, 4, 4], 9).unwrap();
        let names: Vec<u16> = uneven.sequences[0].iter().map(|s| s.0).collect();
        assert_eq!(names, [0, 1, 2, 1, 2, 1, 2, 1, 2]);
    }
}
