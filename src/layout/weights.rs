//! Turning capacity weights into rendezvous weights.
//!
//! Weighted rendezvous (each node scores `-w / ln(u)`, the best wins) picks
//! one node with probability exactly proportional to its weight. A site
//! that holds c > 1 columns of a stripe takes the best c nodes, which is
//! successive sampling without replacement, and that favours light nodes:
//! with weights 1, 1, 2 and c = 2 the heavy node is in 5/6 of the stripes,
//! not the 2 x 2/4 = 1 its capacity asks for.
//!
//! So for each column count a site holds, the layout solves for *effective*
//! weights whose successive-sampling inclusion probabilities equal the
//! capacity shares `c * w / W` (capped at 1: a node cannot hold two columns
//! of a stripe, so a very heavy node is simply in every stripe). Inclusion
//! probabilities are computed exactly over subsets, which is cheap for up to
//! [`EXACT_NODES_MAX`] nodes; bigger sites keep their raw weights, where
//! the bias is small because c is small next to the node count.
//!
//! Only basic floating-point operations are used, in a fixed order, so the
//! result is the same on every platform (placement depends on it).

/// Largest site whose effective weights are solved exactly (2^n subsets).
pub(crate) const EXACT_NODES_MAX: usize = 12;

/// Weight given to a node that must be in every stripe.
const ALWAYS: f64 = 1e12;

/// Iterations of the fixed point; it converges in a few dozen.
const ITERATIONS_MAX: usize = 400;

/// Effective rendezvous weights for a site whose nodes have capacity
/// `weights` and which holds `count` columns of a stripe.
pub(crate) fn effective_weights(weights: &[u32], count: usize) -> Vec<f64> {
    let raw: Vec<f64> = weights.iter().map(|&w| f64::from(w)).collect();
    let node_count = weights.len();
    let uniform = weights.windows(2).all(|pair| pair[0] == pair[1]);
    if count <= 1 || count >= node_count || uniform || node_count > EXACT_NODES_MAX {
        return raw;
    }
    let targets = capacity_shares(&raw, count);
    let always = targets.iter().filter(|&&t| t >= 1.0).count();
    // Nodes in every stripe are drawn first; solve for the others only.
    let rest: Vec<usize> = (0..node_count).filter(|&i| targets[i] < 1.0).collect();
    let rest_count = count - always;
    let mut solved = raw.clone();
    for (i, weight) in solved.iter_mut().enumerate() {
        if targets[i] >= 1.0 {
            *weight = ALWAYS;
        }
    }
    if rest_count == 0 || rest_count >= rest.len() {
        return solved;
    }
    let rest_targets: Vec<f64> = rest.iter().map(|&i| targets[i]).collect();
    let mut rest_weights: Vec<f64> = rest.iter().map(|&i| raw[i]).collect();
    for _ in 0..ITERATIONS_MAX {
        let inclusion = inclusion_probabilities(&rest_weights, rest_count);
        let mut error_max: f64 = 0.0;
        for ((weight, &target), &got) in rest_weights.iter_mut().zip(&rest_targets).zip(&inclusion)
        {
            error_max = error_max.max((target - got).abs());
            *weight *= target / got;
        }
        if error_max < 1e-9 {
            break;
        }
    }
    // Rescale so the weights stay near the raw ones in size.
    let total: f64 = rest_weights.iter().sum();
    let raw_total: f64 = rest.iter().map(|&i| raw[i]).sum();
    for (slot, &i) in rest.iter().enumerate() {
        solved[i] = rest_weights[slot] * raw_total / total;
    }
    solved
}

/// `count * w / W` per node, capped at 1, with what a capped node cannot
/// take shared among the others in proportion to their weights.
pub(crate) fn capacity_shares(weights: &[f64], count: usize) -> Vec<f64> {
    let mut shares = vec![0.0; weights.len()];
    let mut capped = vec![false; weights.len()];
    loop {
        let open_count = count as f64 - capped.iter().filter(|&&c| c).count() as f64;
        let open_weight: f64 = weights
            .iter()
            .zip(&capped)
            .filter(|(_, c)| !**c)
            .map(|(w, _)| w)
            .sum();
        let mut changed = false;
        for i in 0..weights.len() {
            if capped[i] {
                shares[i] = 1.0;
                continue;
            }
            shares[i] = open_count * weights[i] / open_weight;
            if shares[i] >= 1.0 {
                capped[i] = true;
                changed = true;
            }
        }
        if !changed {
            return shares;
        }
    }
}

/// The probability that each node is among the first `count` drawn when
/// nodes are drawn one by one, each with probability proportional to its
/// weight among those not yet drawn (what the best-`count` rendezvous does).
pub(crate) fn inclusion_probabilities(weights: &[f64], count: usize) -> Vec<f64> {
    let node_count = weights.len();
    let mut reach = vec![0.0f64; 1 << node_count];
    reach[0] = 1.0;
    let mut inclusion = vec![0.0; node_count];
    // Masks only grow, so visiting them in increasing order sees every
    // subset after all its predecessors.
    for mask in 0..reach.len() {
        let p = reach[mask];
        if p == 0.0 {
            continue;
        }
        let drawn = mask.count_ones() as usize;
        if drawn == count {
            for (i, slot) in inclusion.iter_mut().enumerate() {
                if mask & (1 << i) != 0 {
                    *slot += p;
                }
            }
            continue;
        }
        // Summed, not subtracted from the total: a node weighing ALWAYS
        // would leave nothing but rounding error of the others.
        let left: f64 = (0..node_count)
            .filter(|&i| mask & (1 << i) == 0)
            .map(|i| weights[i])
            .sum();
        for (i, &weight) in weights.iter().enumerate() {
            if mask & (1 << i) == 0 {
                reach[mask | (1 << i)] += p * weight / left;
            }
        }
    }
    inclusion
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successive_sampling_is_biased_for_several_columns() {
        let inclusion = inclusion_probabilities(&[1.0, 1.0, 2.0], 2);
        assert!((inclusion[2] - 5.0 / 6.0).abs() < 1e-12);
        assert!((inclusion.iter().sum::<f64>() - 2.0).abs() < 1e-12);
    }

    #[test]
    fn effective_weights_hit_capacity_shares() {
        for (weights, count) in [
            (vec![1, 2, 1, 2], 2),
            (vec![1, 2, 3, 4, 5], 3),
            (vec![1, 1, 1, 1, 1, 1, 2, 2, 2], 3),
            (vec![1, 1, 2], 2),
            (vec![1, 1, 10, 1], 2),
        ] {
            let effective = effective_weights(&weights, count);
            let raw: Vec<f64> = weights.iter().map(|&w| f64::from(w)).collect();
            let shares = capacity_shares(&raw, count);
            let got = inclusion_probabilities(&effective, count);
            for (share, got) in shares.iter().zip(&got) {
                assert!(
                    (share - got).abs() < 1e-6,
                    "{weights:?} c={count}: {shares:?} vs {got:?}"
                );
            }
        }
    }

    #[test]
    fn uniform_and_trivial_sites_keep_raw_weights() {
        assert_eq!(effective_weights(&[3, 3, 3], 2), vec![3.0; 3]);
        assert_eq!(effective_weights(&[1, 2, 3], 1), vec![1.0, 2.0, 3.0]);
        assert_eq!(effective_weights(&[1, 2, 3], 3), vec![1.0, 2.0, 3.0]);
    }

    #[test]
    fn capacity_shares_cap_heavy_nodes() {
        let shares = capacity_shares(&[1.0, 1.0, 10.0, 1.0], 2);
        assert_eq!(shares[2], 1.0);
        assert!((shares[0] - 1.0 / 3.0).abs() < 1e-12);
    }
}
