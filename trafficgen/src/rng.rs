//! Deterministic pseudo-random numbers written here, so that a seed gives the same capture forever.
//!
//! [`SplitMix64`] expands the user's seed into state, [`Rng`] (xoshiro256**) is the stream every generator decision
//! draws from, [`mix64`] is a stateless hash for decisions that must not depend on the order of draws (which ENI is
//! silent in which window), and [`Zipf`] samples flow sizes.
//!
//! # Guarantees
//! Output depends only on the seed: integer arithmetic, plus `f64` addition, multiplication, division and square root
//! (all correctly rounded by IEEE 754, so identical on every platform) when the Zipf table is built. No crate version
//! or libm can change a capture.

/// SplitMix64 (Steele, Lea, Flood 2014): seeds [`Rng`] from one `u64`.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// Starts the sequence at `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next value of the sequence.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.state)
    }
}

/// SplitMix64's finaliser: a bijective, well-mixing hash of one `u64`.
pub(crate) fn mix64(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256** (Blackman, Vigna 2018): the generator's random stream.
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A stream seeded from `seed` through [`SplitMix64`].
    pub(crate) fn new(seed: u64) -> Self {
        let mut sm = SplitMix64::new(seed);
        let mut s = [sm.next_u64(), sm.next_u64(), sm.next_u64(), sm.next_u64()];
        if s == [0; 4] {
            // The all-zero state is the one xoshiro cannot leave; SplitMix64 practically never yields it.
            s[0] = 1;
        }
        Self { s }
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A uniform value in `0..n` without bias (Lemire's multiply-and-reject); 0 when `n` is 0.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        // Truncation keeps the low 64 bits: the fraction Lemire's method tests.
        let mut low = m as u64;
        if low < n {
            let threshold = n.wrapping_neg() % n;
            while low < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
                low = m as u64;
            }
        }
        (m >> 64) as u64
    }

    /// A uniform value in `lo..=hi` (`lo` when `hi < lo`).
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        match (hi - lo).checked_add(1) {
            Some(span) => lo + self.below(span),
            None => self.next_u64(),
        }
    }

    /// A uniform `u16` in `lo..=hi`.
    pub(crate) fn range_u16(&mut self, lo: u16, hi: u16) -> u16 {
        // The result lies in lo..=hi, which fits in u16.
        self.range(u64::from(lo), u64::from(hi)) as u16
    }

    /// A uniform `u32` in `lo..=hi`.
    pub(crate) fn range_u32(&mut self, lo: u32, hi: u32) -> u32 {
        // The result lies in lo..=hi, which fits in u32.
        self.range(u64::from(lo), u64::from(hi)) as u32
    }

    /// True with probability `per_million / 1_000_000`.
    pub(crate) fn chance(&mut self, per_million: u32) -> bool {
        self.below(1_000_000) < u64::from(per_million)
    }

    /// A uniform index into a slice of `len` elements (`len` > 0).
    pub(crate) fn index(&mut self, len: usize) -> usize {
        // usize is at most 64 bits on every supported target, and the result is below len.
        self.below(len as u64) as usize
    }

    /// Picks an index by weight: index `i` with probability `weights[i] / sum(weights)`.
    pub(crate) fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut point = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            let w = u64::from(w);
            if point < w {
                return i;
            }
            point -= w;
        }
        weights.len().saturating_sub(1)
    }
}

/// Zipf sampler over `1..=max` with exponent 1.5: P(k) proportional to k^-1.5.
///
/// A cumulative table of integer weights and a binary search: exact, platform-independent, O(log max) per draw.
#[derive(Debug, Clone)]
pub(crate) struct Zipf {
    cumulative: Vec<u64>,
}

impl Zipf {
    /// The table for sizes `1..=max` (`max` at least 1).
    pub(crate) fn new(max: u32) -> Self {
        let max = max.max(1);
        let mut cumulative = Vec::with_capacity(max as usize);
        let mut total = 0u64;
        for k in 1..=max {
            let k = f64::from(k);
            // 2^52 / k^1.5, at least 1: with max <= 2^20 the sum stays far below u64::MAX.
            let weight = ((4_503_599_627_370_496.0 / (k * k.sqrt())) as u64).max(1);
            total += weight;
            cumulative.push(total);
        }
        Self { cumulative }
    }

    /// One size in `1..=max`.
    pub(crate) fn sample(&self, rng: &mut Rng) -> u32 {
        let total = self.cumulative.last().copied().unwrap_or(1);
        let point = rng.below(total);
        let index = self.cumulative.partition_point(|&c| c <= point);
        // index < cumulative.len() <= u32::MAX, since point < total = the last entry.
        index as u32 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_reference_values() {
        // SplitMix64 seeded with 1234567: the well-known first outputs (also checked with a Python transcription).
        let mut sm = SplitMix64::new(1_234_567);
        assert_eq!(sm.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(sm.next_u64(), 3_203_168_211_198_807_973);
        assert_eq!(sm.next_u64(), 9_817_491_932_198_370_423);
    }

    #[test]
    fn xoshiro_matches_reference_values() {
        // xoshiro256** from state [1, 2, 3, 4]: first outputs of the published algorithm (checked with a Python transcription).
        let mut rng = Rng { s: [1, 2, 3, 4] };
        assert_eq!(rng.next_u64(), 11_520);
        assert_eq!(rng.next_u64(), 0);
        assert_eq!(rng.next_u64(), 1_509_978_240);
        assert_eq!(rng.next_u64(), 1_215_971_899_390_074_240);
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = Rng::new(7);
        let mut seen = [0u32; 6];
        for _ in 0..6000 {
            let v = rng.below(6);
            seen[v as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
        assert_eq!(rng.below(0), 0);
        assert_eq!(rng.range(5, 5), 5);
        assert_eq!(rng.range(9, 3), 9);
        let v = rng.range(10, 12);
        assert!((10..=12).contains(&v));
    }

    #[test]
    fn weighted_respects_zero_weights() {
        let mut rng = Rng::new(3);
        for _ in 0..1000 {
            assert_ne!(rng.weighted(&[5, 0, 5]), 1);
        }
    }

    #[test]
    fn zipf_is_heavy_tailed_and_bounded() {
        let zipf = Zipf::new(1000);
        let mut rng = Rng::new(11);
        let draws: Vec<u32> = (0..100_000).map(|_| zipf.sample(&mut rng)).collect();
        assert!(draws.iter().all(|&d| (1..=1000).contains(&d)));
        let ones = draws.iter().filter(|&&d| d == 1).count();
        // P(1) = 1 / H(1000, 1.5) ~= 0.39.
        assert!((35_000..43_000).contains(&ones), "{ones}");
        assert!(draws.iter().any(|&d| d > 300), "no elephant in 100k draws");
    }
}
