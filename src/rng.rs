//! One small seeded pseudo-random generator: the decoder's sampler draws from it, and
//! every test, benchmark and fuzz helper of the project that needs random inputs uses
//! it too, so there is one generator to trust rather than a copy per file.
//!
//! [`XorShift64Star`] is Vigna's xorshift64* with llama2.c's constants (`random_u32`
//! in `run.c`): 64 bits of state, integer-only, the same stream on every target.
//! It is not cryptographic and not meant for statistics beyond "spread the inputs".
//!
//! ```
//! use tinyformer::rng::XorShift64Star;
//!
//! let mut rng = XorShift64Star::new(42);
//! let byte = rng.next_u32() as u8;
//! let index = rng.below(10);
//! assert!(index < 10);
//! # let _ = byte;
//! ```

/// Vigna's xorshift64* with llama2.c's constants: 32-bit outputs ([`next_u32`]) are
/// the high half of the scrambled state, as llama2.c's `random_u32`.
///
/// [`next_u32`]: XorShift64Star::next_u32
#[derive(Clone, Debug)]
pub struct XorShift64Star {
    /// Never 0 (a fixed point of xorshift).
    pub(crate) state: u64,
}

impl XorShift64Star {
    /// A generator seeded from `seed`. The state is the seed through the splitmix64
    /// finalizer: 0, a fixed point of xorshift, and neighbouring seeds all give
    /// unrelated non-zero states. (The one seed that the finalizer, a bijection, maps
    /// to 0 gets a fixed non-zero state.)
    pub const fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self {
            state: if z == 0 { 0x9E37_79B9_7F4A_7C15 } else { z },
        }
    }

    /// The next 64 bits: one xorshift step, then the state times the xorshift64*
    /// multiplier. The high bits are the best; [`next_u32`](Self::next_u32) keeps those.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// The next 32 bits: the high half of [`next_u64`](Self::next_u64) (llama2.c's
    /// `random_u32`). The sampler draws one per token.
    #[inline]
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// A value in `0..n` (`0` for `n = 0`), by the remainder of
    /// [`next_u64`](Self::next_u64): biased by at most `n / 2^64`, which test inputs
    /// can ignore.
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % (n as u64).max(1)) as usize
    }

    /// A value uniform in `[0, 1)`: the top 53 bits of [`next_u64`](Self::next_u64)
    /// over `2^53`. For host tests and tools; the integer inference path never calls
    /// it (`tools/check-no-float.sh` checks that no float routine is linked).
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first outputs for seed 0 are llama2.c's `random_u32` from the state
    /// `0xE220A8397B1DCDAF` (splitmix64 of 0), checked against the C code (as in the
    /// sampler's golden test).
    #[test]
    fn golden_stream() {
        let mut rng = XorShift64Star::new(0);
        assert_eq!(rng.state, 0xE220_A839_7B1D_CDAF);
        let stream: Vec<u32> = (0..4).map(|_| rng.next_u32()).collect();
        assert_eq!(stream, [2075964429, 3732923411, 3016112181, 3765678016]);
        let mut a = XorShift64Star::new(7);
        let mut b = a.clone();
        assert_eq!(a.next_u32(), (b.next_u64() >> 32) as u32);
    }

    #[test]
    fn helpers_stay_in_range() {
        let mut rng = XorShift64Star::new(1);
        for n in [0, 1, 2, 3, 1000, usize::MAX] {
            for _ in 0..100 {
                assert!(rng.below(n) < n.max(1));
            }
        }
        let (mut low, mut high) = (false, false);
        for _ in 0..1000 {
            let u = rng.next_f64();
            assert!((0.0..1.0).contains(&u));
            low |= u < 0.01;
            high |= u > 0.99;
        }
        assert!(low && high);
    }
}
