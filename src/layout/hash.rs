//! The hash and the arithmetic placement is built on.
//!
//! Placement is part of the on-disk contract: a stripe written by one build
//! on one machine must be placed the same way by another build on another
//! machine. So everything here is fixed and platform independent: integer
//! mixing, and a logarithm made only of IEEE-754 basic operations (which
//! are exactly rounded everywhere) rather than the platform's `ln`, which may
//! differ in the last bit between libm implementations. The golden test in
//! `placement.rs` pins the results.

/// Seed mixed into the stripe id for choosing the site rotation and shift.
pub(crate) const STRIPE_SEED: u64 = 0x6765_6f73_6861_7264; // "geoshard"
/// Seed mixed into the stripe id for the within-site rendezvous.
pub(crate) const RENDEZVOUS_SEED: u64 = 0x7265_6e64_657a_766f; // "rendezvo"
/// Seed for per-slot keys.
const SLOT_SEED: u64 = 0x736c_6f74_6b65_7973; // "slotkeys"
/// Seed for handoff ranking, so handoff order is independent of placement.
pub(crate) const HANDOFF_SEED: u64 = 0x6861_6e64_6f66_6673; // "handoffs"

/// SplitMix64's finalizer (Stafford's variant 13): a bijection on u64 with
/// full avalanche; two multiplications and three shifts.
#[inline]
pub(crate) fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Maps a uniform `h` to `0..n` by multiply-shift (no division).
#[inline]
pub(crate) fn below(h: u64, n: usize) -> usize {
    ((u128::from(h) * n as u128) >> 64) as usize
}

/// A stable 64-bit hash of a name: FNV-1a over the bytes, then mixed.
pub(crate) fn name_hash(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in name.as_bytes() {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h)
}

/// The key of column slot `slot` within a site.
#[inline]
pub(crate) fn slot_key(slot: usize) -> u64 {
    mix64((slot as u64).wrapping_add(SLOT_SEED))
}

/// The rendezvous hash of (stripe, slot, node), from their premixed keys.
#[inline]
pub(crate) fn pair_hash(stripe_key: u64, slot_key: u64, node_hash: u64) -> u64 {
    mix64(stripe_key ^ slot_key ^ node_hash.rotate_left(17))
}

/// `-ln(u)` for `u = (h / 2^12 + 1/2) / 2^52`, a uniform number in (0, 1)
/// taken from the top 52 bits of `h`: an exponential variate with rate 1.
///
/// Strictly positive and decreasing in `h`, so for equal weights comparing
/// hashes gives the same order.
#[inline]
pub(crate) fn exponential(h: u64) -> f64 {
    // Exact: (h >> 12) < 2^52, so adding one half stays representable, and
    // scaling by a power of two is exact too.
    let u = ((h >> 12) as f64 + 0.5) * (1.0 / (1u64 << 52) as f64);
    -ln_positive(u)
}

/// Natural logarithm of a positive, finite, normal `x`, from basic
/// operations only (see the module docs); relative error below 1e-12.
#[inline]
pub(crate) fn ln_positive(x: f64) -> f64 {
    let bits = x.to_bits();
    let mut exponent = ((bits >> 52) & 0x7ff) as i64 - 1023;
    // The mantissa as a number in [1, 2).
    let mut fraction = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | (1023 << 52));
    if fraction > std::f64::consts::SQRT_2 {
        fraction *= 0.5;
        exponent += 1;
    }
    // ln(f) = 2 atanh(s) with s = (f - 1) / (f + 1), |s| <= 0.1716.
    let s = (fraction - 1.0) / (fraction + 1.0);
    let s2 = s * s;
    let series = 1.0
        + s2 * (1.0 / 3.0
            + s2 * (1.0 / 5.0
                + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0 + s2 * (1.0 / 11.0 + s2 * (1.0 / 13.0))))));
    exponent as f64 * std::f64::consts::LN_2 + 2.0 * s * series
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_matches_std_closely() {
        let mut x = 1e-300_f64;
        while x < 1e300 {
            for factor in [1.0, 1.1, 1.41, 1.42, 1.7, 1.999] {
                let v = x * factor;
                let expected = v.ln();
                let got = ln_positive(v);
                let tolerance = 1e-12 * expected.abs().max(1.0);
                assert!(
                    (got - expected).abs() <= tolerance,
                    "ln({v}) = {got}, std says {expected}"
                );
            }
            x *= 7.3;
        }
    }

    #[test]
    fn exponential_is_positive_and_monotone() {
        assert!(exponential(u64::MAX) > 0.0);
        assert!(exponential(0) > exponential(1 << 12));
        assert!(exponential(u64::MAX - (1 << 12)) > exponential(u64::MAX));
        // Mean of an Exp(1) variate over well-mixed inputs is ~1.
        let n = 100_000u64;
        let mean: f64 = (0..n).map(|i| exponential(mix64(i))).sum::<f64>() / n as f64;
        assert!((mean - 1.0).abs() < 0.01, "mean {mean}");
    }

    #[test]
    fn name_hash_is_pinned() {
        // Placement depends on these values: they must never change.
        assert_eq!(name_hash(""), mix64(0xcbf2_9ce4_8422_2325));
        assert_ne!(name_hash("a1"), name_hash("a2"));
        assert_eq!(mix64(0), 0);
        assert_eq!(mix64(1), 0x5692_161d_100b_05e5);
    }
}
