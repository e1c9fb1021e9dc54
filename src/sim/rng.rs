//! The simulator's randomness: one seed, one stream, no other source.

/// SplitMix64's finaliser: a good 64-bit mix of `x`.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A small, fast, seeded generator (SplitMix64), or the bytes of a fuzz
/// input read as a stream of choices (`store_history`): there each draw
/// takes as few bytes as its range needs, so that a fuzzer's byte edits are
/// edits of single choices.
#[derive(Clone, Debug)]
pub(crate) struct Rng {
    state: u64,
    /// The fuzz input, when choices come from it.
    input: Option<std::sync::Arc<[u8]>>,
    at: usize,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng {
            state: mix(seed),
            input: None,
            at: 0,
        }
    }

    /// Choices read from `input`; once it is used up every draw is 0.
    pub fn from_input(input: &[u8]) -> Rng {
        Rng {
            state: 0,
            input: Some(input.into()),
            at: 0,
        }
    }

    /// The input is used up (never, for a seeded generator).
    pub fn exhausted(&self) -> bool {
        self.input
            .as_ref()
            .is_some_and(|input| self.at >= input.len())
    }

    /// The next `bytes` bytes of the input, little-endian, 0 past its end.
    fn take(&mut self, bytes: usize) -> u64 {
        let Some(input) = &self.input else {
            return 0;
        };
        let mut word = [0u8; 8];
        let from = self.at.min(input.len());
        let to = (self.at + bytes).min(input.len());
        word[..to - from].copy_from_slice(&input[from..to]);
        self.at += bytes;
        u64::from_le_bytes(word)
    }

    pub fn next_u64(&mut self) -> u64 {
        if self.input.is_some() {
            return self.take(8);
        }
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.state)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        if self.input.is_some() {
            // As many bytes as `n` needs, scaled onto `0..n`.
            let bytes = (64 - (n - 1).leading_zeros()).div_ceil(8).max(1) as usize;
            let bits = 8 * bytes as u32;
            let draw = self.take(bytes);
            return ((u128::from(draw) * u128::from(n)) >> bits) as u64;
        }
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// True with probability `1 / n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    /// An index drawn by `weights` (at least one is non-zero).
    pub fn pick(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut at = self.below(total.max(1));
        for (i, &w) in weights.iter().enumerate() {
            if at < u64::from(w) {
                return i;
            }
            at -= u64::from(w);
        }
        weights.len() - 1
    }
}

/// The bytes of value `id` of `len` bytes: a pure function of both, so the
/// model keeps only the id, the length and the checksum.
pub(crate) fn value_bytes(id: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut state = mix(id ^ 0x5eed);
    while out.len() < len {
        state = mix(state);
        let word = state.to_le_bytes();
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&word[..take]);
    }
    out
}
