//! Next-token sampling: greedy, temperature, top-k and top-p (nucleus) over Q16.16
//! logits, in integer arithmetic only.
//!
//! The sampling path ([`Sampler::sample`], [`argmax`]) executes no floating-point
//! operation and nothing in it depends on the width of `usize`, so an int8 model on an
//! FPU-less microcontroller and the same model on a 64-bit host draw the same tokens
//! from the same seed. Float models convert their `f32` logits with [`logit_to_q16`]
//! first (see *Host side* below).
//!
//! # Algorithm
//!
//! Logits `l_i` are Q16.16 (`value = l_i / 65536`), the temperature `T` and the top-p
//! mass `p` are Q16 (`65536` = 1.0).
//!
//! 1. **Weights.** `d_i = max - l_i` lies in `[0, 2^32)`. Its base-2 exponent
//!    `t_i = round(d_i * log2(e) / T)` (Q16) is one 32x32-bit multiply by a reciprocal
//!    of `T` prepared in [`Sampler::new`] (31 significant bits) and a rounding shift;
//!    then `w_i = 2^(-t_i / 65536)` in Q30 by [`exp2_neg_q16`](crate::quant::exp2_neg_q16). The most likely token
//!    weighs `2^30`; tokens below `2^-30` of it weigh 0 and are never drawn. Weights are
//!    `u32`, their sums `u64` (at most `2^32 * 2^30`, no overflow). They are recomputed
//!    from the logits where needed, so the scratch holds only token ids.
//! 2. **Top-k** (`top_k` in `1..vocab`): the ids of the `k` largest logits, chosen with
//!    `select_nth_unstable_by` and sorted by *(logit descending, id ascending)*, a total
//!    order, so the candidate list is unique whatever the sort's internals do.
//! 3. **Top-p** (`p < 65536`), on the candidates left by top-k (or the whole
//!    vocabulary): in the same order, the shortest prefix whose weight `C` reaches
//!    `ceil(p * W / 65536)`, `W` the candidates' total, i.e. cumulative probability
//!    `>= p` (exact integer comparison). Without top-k, tokens lighter than
//!    `min((W - ceil(p W)) / (n - 1) + 1, 2^30)` are dropped before sorting (llama2.c's
//!    cut): they weigh `W - ceil(p W)` at most together, so the nucleus never reaches
//!    them and the result is the same as sorting everything.
//! 4. **Draw.** One 32-bit number `u` from xorshift64* ([`XorShift64Star`], llama2.c's
//!    `random_u32`), `r = floor(u * C / 2^32)` in `[0, C)`, and the token is the first
//!    candidate whose running weight sum exceeds `r`. Each token's probability differs
//!    from `w_i / C` by less than `2^-32` (the `u` values that land on it form an
//!    interval); no modulo is involved. Without top-k or top-p the candidates are all tokens in
//!    id order and no scratch is used.
//!
//! Every call with `T > 0` advances the generator by exactly one step, whatever the
//! logits; greedy calls (`T = 0`) do not touch it.
//!
//! **Accuracy.** The probabilities `w_i / W` differ from an f64 softmax of
//! `(l_i - max) / T` by at most 1.5e-6 absolute; relatively by 7.8e-6 for probabilities
//! above 1e-3 and 3.7e-4 above 1e-6 (where the last Q30 unit of small weights
//! dominates). Measured over 2,000 random rows (test `probabilities_match_f64_softmax`);
//! a million draws match the f64 softmax with chi-square 12.9 and 6.1 (11 degrees of
//! freedom) at temperatures 1 and 0.5 (`frequencies_match_softmax`).
//!
//! # Scratch
//!
//! Top-k and top-p need a list of candidate ids: [`scratch_len`]`(vocab)` `u32`s
//! (`4 * vocab` bytes). Settings with neither ([`SamplerSettings::uses_scratch`] is
//! false) never touch the scratch and accept an empty one.
//!
//! # Host side
//!
//! [`logit_to_q16`], [`temperature_q16_from_f32`], [`top_p_q16_from_f32`] and
//! [`SamplerSettings::from_f32`] use `f32`: they convert at the boundary (command-line
//! options, a float model's logits) and are not part of the sampling path. They are not
//! behind the `std` feature because a float model on a microcontroller with an FPU needs
//! them too. Integer-only firmware that does not call them links no float routine: a
//! `thumbv6m-none-eabi` (Cortex-M0+) binary running every path of [`Sampler::sample`]
//! links no soft-float symbol (the check of `tools/check-no-float.sh`).
//!
//! ```
//! use tinyformer::model::decoder::sample::{scratch_len, Sampler, SamplerSettings};
//!
//! let settings = SamplerSettings { temperature_q16: 52_429, top_k: 40, top_p_q16: 58_982 };
//! let mut sampler = Sampler::new(settings, 42)?;
//! let logits_q16 = [65_536, 3 * 65_536, -65_536, 2 * 65_536]; // 1.0, 3.0, -1.0, 2.0
//! let mut scratch = [0u32; scratch_len(4)];
//! let token = sampler.sample(&logits_q16, &mut scratch)?;
//! assert!(token < 4);
//! # Ok::<(), tinyformer::model::decoder::sample::SampleError>(())
//! ```

use crate::quant::{exp2_neg_q16_below_31, LOG2_E};
use crate::rng::XorShift64Star;
use core::cmp::Ordering;
use core::fmt;

/// `1.0` in Q16 (temperature and top-p) and the logit scale of Q16.16.
pub const Q16_ONE: u32 = 1 << 16;

/// Largest vocabulary [`Sampler::sample`] accepts: token ids are `u32`.
pub const MAX_VOCAB: usize = u32::MAX as usize;

/// `u32` elements of scratch [`Sampler::sample`] needs for a vocabulary of `vocab`
/// tokens when top-k or top-p is on: one candidate id per token.
pub const fn scratch_len(vocab: usize) -> usize {
    vocab
}

/// Why settings or a sampling call were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SampleError {
    /// `top_p_q16` is not in `1..=65536`.
    TopPOutOfRange {
        /// The value given.
        top_p_q16: u32,
    },
    /// The logits are empty.
    EmptyLogits,
    /// More logits than [`MAX_VOCAB`].
    VocabTooLarge {
        /// Logits given.
        vocab: usize,
    },
    /// The scratch is shorter than [`scratch_len`] of the vocabulary.
    ScratchTooSmall {
        /// `u32` elements needed.
        needed: usize,
        /// `u32` elements given.
        got: usize,
    },
}

impl fmt::Display for SampleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use SampleError::*;
        match *self {
            TopPOutOfRange { top_p_q16 } => {
                write!(f, "top-p {top_p_q16} (Q16) is not in 1..=65536")
            }
            EmptyLogits => f.write_str("no logits to sample from"),
            VocabTooLarge { vocab } => {
                write!(f, "{vocab} logits: at most {MAX_VOCAB} supported")
            }
            ScratchTooSmall { needed, got } => {
                write!(
                    f,
                    "sampler scratch too small: needs {needed} u32, got {got}"
                )
            }
        }
    }
}

impl core::error::Error for SampleError {}

/// How the next token is chosen. Fixed point throughout, so settings mean the same on
/// every target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SamplerSettings {
    /// Softmax temperature in Q16 (`65536` = 1.0); 0 is greedy (argmax, lowest id on
    /// ties), which ignores `top_k` and `top_p_q16`.
    pub temperature_q16: u32,
    /// Sample among the `top_k` most likely tokens only; 0 (or at least the vocabulary
    /// size) keeps all.
    pub top_k: u32,
    /// Nucleus mass in Q16, `1..=65536`: sample among the most likely tokens whose
    /// cumulative probability first reaches it; `65536` keeps all.
    pub top_p_q16: u32,
}

impl SamplerSettings {
    /// Always the most likely token (argmax).
    pub const GREEDY: Self = Self {
        temperature_q16: 0,
        top_k: 0,
        top_p_q16: Q16_ONE,
    };

    /// Checks the ranges: `top_p_q16` in `1..=65536` (all temperatures and `top_k`
    /// values are meaningful).
    pub const fn validate(&self) -> Result<(), SampleError> {
        if self.top_p_q16 == 0 || self.top_p_q16 > Q16_ONE {
            return Err(SampleError::TopPOutOfRange {
                top_p_q16: self.top_p_q16,
            });
        }
        Ok(())
    }

    /// Whether [`Sampler::sample`] needs [`scratch_len`] elements of scratch: when it
    /// samples (`temperature_q16 > 0`) with top-k or top-p on. Otherwise any scratch,
    /// even empty, is accepted.
    pub const fn uses_scratch(&self) -> bool {
        self.temperature_q16 != 0 && (self.top_k != 0 || self.top_p_q16 < Q16_ONE)
    }

    /// Settings from real values (host side, e.g. command-line options), converted by
    /// [`temperature_q16_from_f32`] and [`top_p_q16_from_f32`].
    pub fn from_f32(temperature: f32, top_k: u32, top_p: f32) -> Self {
        Self {
            temperature_q16: temperature_q16_from_f32(temperature),
            top_k,
            top_p_q16: top_p_q16_from_f32(top_p),
        }
    }
}

/// Draws token ids from Q16.16 logits with fixed settings and a seeded generator.
///
/// Holds no buffer: the caller passes the scratch to each [`Sampler::sample`] call.
#[derive(Clone, Debug)]
pub struct Sampler {
    settings: SamplerSettings,
    inv_temperature: InvTemperature,
    rng: XorShift64Star,
}

impl Sampler {
    /// A sampler for `settings` (validated, see [`SamplerSettings::validate`]), its
    /// generator seeded from `seed`. Every seed, 0 included, gives a usable stream.
    pub fn new(settings: SamplerSettings, seed: u64) -> Result<Self, SampleError> {
        settings.validate()?;
        Ok(Self {
            settings,
            inv_temperature: InvTemperature::new(settings.temperature_q16),
            rng: XorShift64Star::new(seed),
        })
    }

    /// The settings.
    pub fn settings(&self) -> SamplerSettings {
        self.settings
    }

    /// The next token id, below `logits_q16.len()`, drawn from the softmax of
    /// `logits_q16 / T` after top-k and top-p (see the module docs for the exact
    /// integer semantics). `scratch` needs [`scratch_len`]`(logits_q16.len())` elements
    /// when [`SamplerSettings::uses_scratch`]; its contents on entry do not matter and
    /// on return are unspecified.
    ///
    /// Errors (nothing is drawn, the generator does not advance):
    /// [`SampleError::EmptyLogits`], [`SampleError::VocabTooLarge`],
    /// [`SampleError::ScratchTooSmall`].
    pub fn sample(&mut self, logits_q16: &[i32], scratch: &mut [u32]) -> Result<u32, SampleError> {
        let n = logits_q16.len();
        if n == 0 {
            return Err(SampleError::EmptyLogits);
        }
        // Token ids are u32 (on 32-bit targets every slice length already fits).
        if u32::try_from(n).is_err() {
            return Err(SampleError::VocabTooLarge { vocab: n });
        }
        let needed = scratch_len(n);
        if self.settings.uses_scratch() && scratch.len() < needed {
            return Err(SampleError::ScratchTooSmall {
                needed,
                got: scratch.len(),
            });
        }
        if self.settings.temperature_q16 == 0 {
            return Ok(argmax(logits_q16));
        }
        let u = self.rng.next_u32();
        let top_k = usize::try_from(self.settings.top_k).unwrap_or(usize::MAX);
        let top_p = self.settings.top_p_q16;
        let token = if top_k != 0 && top_k < n {
            self.sample_top_k(logits_q16, &mut scratch[..n], top_k, u)
        } else if top_p < Q16_ONE {
            self.sample_top_p(logits_q16, &mut scratch[..n], u)
        } else {
            self.sample_all(logits_q16, u)
        };
        Ok(token)
    }

    /// Weights relative to `max`, the largest logit among the candidates.
    fn weights(&self, max: i32) -> Weights {
        Weights {
            max,
            inv_temperature: self.inv_temperature,
        }
    }

    /// No top-k, no top-p: every token, in id order.
    fn sample_all(&self, logits: &[i32], u: u32) -> u32 {
        let max = logits.iter().copied().max().unwrap_or(0);
        let weights = self.weights(max);
        let total: u64 = logits.iter().map(|&l| u64::from(weights.of(l))).sum();
        let r = scale_draw(u, total);
        pick(
            r,
            logits
                .iter()
                .enumerate()
                .map(|(id, &l)| (id as u32, weights.of(l))),
        )
    }

    /// The `k` (in `1..n`) largest logits, then top-p among them if it is on.
    fn sample_top_k(&self, logits: &[i32], ids: &mut [u32], k: usize, u: u32) -> u32 {
        for (id, slot) in ids.iter_mut().enumerate() {
            *slot = id as u32;
        }
        let order = by_logit_descending(logits);
        ids.select_nth_unstable_by(k - 1, &order);
        let candidates = &mut ids[..k];
        candidates.sort_unstable_by(&order);
        let max = candidates.first().map_or(0, |&id| logits[id as usize]);
        let weights = self.weights(max);
        let candidates = &candidates[..];
        let total = candidates
            .iter()
            .map(|&id| u64::from(weights.of(logits[id as usize])))
            .sum();
        let top_p = self.settings.top_p_q16;
        let (len, mass) = if top_p < Q16_ONE {
            nucleus(
                logits,
                candidates,
                &weights,
                nucleus_threshold(total, top_p),
            )
        } else {
            (candidates.len(), total)
        };
        pick_among(logits, &candidates[..len], &weights, scale_draw(u, mass))
    }

    /// Top-p over the whole vocabulary, with llama2.c's cut before sorting.
    fn sample_top_p(&self, logits: &[i32], ids: &mut [u32], u: u32) -> u32 {
        let n = logits.len();
        let max = logits.iter().copied().max().unwrap_or(0);
        let weights = self.weights(max);
        // Each token's weight goes to its scratch slot, read back by the cut below
        // instead of being computed twice.
        let mut total = 0u64;
        for (slot, &l) in ids.iter_mut().zip(logits) {
            let w = weights.of(l);
            *slot = w;
            total += u64::from(w);
        }
        let threshold = nucleus_threshold(total, self.settings.top_p_q16);
        // The tokens lighter than `cutoff` number at most n - 1 (the maximum weighs
        // 2^30 >= cutoff) and weigh at most (n - 1) * (cutoff - 1) <= total - threshold
        // together, so the heavier ones reach the threshold on their own, and being a
        // prefix of the sorted order (weights never increase along it) they hold the
        // whole nucleus.
        let cutoff = (total - threshold)
            .checked_div(n as u64 - 1)
            .map_or(1, |q| q + 1)
            .min(1 << 30);
        // Slot `kept <= id` is written only after slot `id`'s weight was read.
        let mut kept = 0;
        for id in 0..n {
            let heavy = ids.get(id).is_some_and(|&w| u64::from(w) >= cutoff);
            if let (true, Some(slot)) = (heavy, ids.get_mut(kept)) {
                *slot = id as u32;
                kept += 1;
            }
        }
        let candidates = &mut ids[..kept];
        candidates.sort_unstable_by(by_logit_descending(logits));
        let (len, mass) = nucleus(logits, candidates, &weights, threshold);
        debug_assert!(mass >= threshold, "the cut lost part of the nucleus");
        pick_among(logits, &candidates[..len], &weights, scale_draw(u, mass))
    }
}

/// Index of the largest logit, the lowest on ties; 0 for an empty slice. Greedy
/// decoding without a [`Sampler`] or scratch.
pub fn argmax(logits: &[i32]) -> u32 {
    u32::try_from(crate::kernels::argmax::argmax(logits)).unwrap_or(u32::MAX)
}

/// A real logit as Q16.16, rounded to nearest; saturates at the `i32` range; NaN
/// becomes `i32::MIN` (never drawn unless every logit is NaN). Host side (float):
/// converts a float model's logits for [`Sampler::sample`].
pub fn logit_to_q16(logit: f32) -> i32 {
    if logit.is_nan() {
        return i32::MIN;
    }
    // Scaling by a power of two is exact; `as` saturates (also for infinities).
    libm::roundf(logit * Q16_ONE as f32) as i32
}

/// A real temperature as Q16, rounded to nearest and saturating; 0, negative, NaN
/// and temperatures below `2^-17` become 0 (greedy, the limit). Host side (float).
pub fn temperature_q16_from_f32(temperature: f32) -> u32 {
    if temperature.is_nan() || temperature <= 0.0 {
        return 0;
    }
    libm::roundf(temperature * Q16_ONE as f32) as u32
}

/// A real top-p as Q16 in `1..=65536`: like llama2.c, values outside `(0, 1)` and NaN
/// turn top-p off (`65536`); tiny positive values become 1. Host side (float).
pub fn top_p_q16_from_f32(top_p: f32) -> u32 {
    if top_p.is_nan() || top_p <= 0.0 || top_p >= 1.0 {
        return Q16_ONE;
    }
    (libm::roundf(top_p * Q16_ONE as f32) as u32).clamp(1, Q16_ONE)
}

/// `log2(e) / T` as `multiplier * 2^-shift`, multiplier in `[2^31, 2^32)`: turns a
/// logit distance (Q16) into a base-2 exponent (Q16) with one multiply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct InvTemperature {
    multiplier: u32,
    shift: u32,
}

/// `log2(e) = LOG2_MANTISSA / 2^30`.
const LOG2_MANTISSA: u64 = LOG2_E.multiplier as u64;
const _: () = assert!(LOG2_E.shift == 1 && LOG2_E.multiplier > 0);

impl InvTemperature {
    /// For `temperature_q16 = T * 2^16`: `t = d * log2(e) * 2^16 / (T * 2^16) =
    /// d * LOG2_MANTISSA / (temperature_q16 * 2^14)`, so the multiplier is
    /// `floor(LOG2_MANTISSA * 2^33 / temperature_q16)` (no overflow:
    /// `LOG2_MANTISSA < 2^31`) divided by the power of two that brings it below `2^32`,
    /// and the shift `47` minus that power. A quotient of at least `2^31` keeps 31
    /// significant bits. Temperature 0 (greedy) gives the zero multiplier, unused.
    fn new(temperature_q16: u32) -> Self {
        let Some(q) = (LOG2_MANTISSA << 33).checked_div(u64::from(temperature_q16)) else {
            return Self {
                multiplier: 0,
                shift: 0,
            };
        };
        let excess = (u64::BITS - q.leading_zeros()).saturating_sub(32);
        Self {
            multiplier: (q >> excess) as u32,
            shift: 47 - excess,
        }
    }
}

/// The weight of a logit: `2^(-(max - logit) * log2(e) / T)` in Q30.
#[derive(Clone, Copy, Debug)]
struct Weights {
    max: i32,
    inv_temperature: InvTemperature,
}

impl Weights {
    /// `w = 2^(-t / 2^16)` in Q30 for `t = round(d * multiplier / 2^shift)`, `d = max -
    /// logit` clamped to `[0, 2^32)`: the product is below `2^64`, the rounding is
    /// `((x >> (shift - 1)) + 1) >> 1` (half up, without an overflowing addend), and
    /// exponents beyond `u32` saturate (their weight is 0 from `t >= 31 * 2^16` on).
    ///
    /// Computed in 32-bit steps where it can (the same bits): the clamped distance is
    /// the 32-bit wrapping difference (0 when `logit > max`), the product one 32x32-bit
    /// multiply, and with `q = product >> (shift - 1)` the weight is 0 exactly when
    /// `t = (q + 1) >> 1` reaches `31 * 2^16`, i.e. when `q >= 62 * 2^16 - 1`, which
    /// replaces the saturation and the range check of
    /// [`exp2_neg_q16`](crate::quant::exp2_neg_q16).
    #[inline(always)]
    fn of(&self, logit: i32) -> u32 {
        // q >= THRESHOLD <=> t >= 31 * 2^16 <=> the weight is 0.
        const THRESHOLD: u64 = 62 * (1 << 16) - 1;
        let distance = if logit > self.max {
            0
        } else {
            (self.max as u32).wrapping_sub(logit as u32)
        };
        let product = u64::from(distance) * u64::from(self.inv_temperature.multiplier);
        let q = product >> self.inv_temperature.shift.saturating_sub(1);
        if q >= THRESHOLD {
            0
        } else {
            exp2_neg_q16_below_31((q as u32 + 1) >> 1)
        }
    }
}

/// Candidate order: logit descending, then id ascending (a total order, so every sort
/// and selection gives one result).
fn by_logit_descending(logits: &[i32]) -> impl Fn(&u32, &u32) -> Ordering + '_ {
    move |&a, &b| logits[b as usize].cmp(&logits[a as usize]).then(a.cmp(&b))
}

/// `ceil(p * total / 2^16)` for `p <= 2^16`, `total < 2^62`, without a 128-bit product:
/// with `total = high * 2^16 + low`, it is `p * high + ceil(p * low / 2^16)`.
fn nucleus_threshold(total: u64, top_p_q16: u32) -> u64 {
    let p = u64::from(top_p_q16.min(Q16_ONE));
    p * (total >> 16) + ((p * (total & 0xFFFF) + 0xFFFF) >> 16)
}

/// The shortest prefix of `candidates` (sorted) whose weight reaches `threshold`:
/// `(length, weight)`; the whole list if none does.
fn nucleus(logits: &[i32], candidates: &[u32], weights: &Weights, threshold: u64) -> (usize, u64) {
    let mut mass = 0u64;
    for (i, &id) in candidates.iter().enumerate() {
        mass += u64::from(weights.of(logits[id as usize]));
        if mass >= threshold {
            return (i + 1, mass);
        }
    }
    (candidates.len(), mass)
}

/// `floor(u * total / 2^32)`, in `[0, total)` for `total > 0`: with `total = high *
/// 2^32 + low` it is `u * high + floor(u * low / 2^32)`, both terms within `u64` for
/// `total < 2^62`.
fn scale_draw(u: u32, total: u64) -> u64 {
    let u = u64::from(u);
    u * (total >> 32) + ((u * (total & 0xFFFF_FFFF)) >> 32)
}

/// The first `(id, weight)` whose running weight sum exceeds `r`; if none does (only
/// when `r` is not below the total, which the callers exclude), the last one with a
/// positive weight, else the first.
fn pick(r: u64, candidates: impl Iterator<Item = (u32, u32)>) -> u32 {
    let mut sum = 0u64;
    let mut fallback = None;
    for (id, weight) in candidates {
        sum += u64::from(weight);
        if sum > r {
            return id;
        }
        if weight > 0 || fallback.is_none() {
            fallback = Some(id);
        }
    }
    fallback.unwrap_or(0)
}

/// [`pick`] over candidate ids.
fn pick_among(logits: &[i32], candidates: &[u32], weights: &Weights, r: u64) -> u32 {
    pick(
        r,
        candidates
            .iter()
            .map(|&id| (id, weights.of(logits[id as usize]))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const Q: f64 = 65536.0;

    /// 53 random bits (the ranges the tests take from it assume 53).
    fn next(rng: &mut XorShift64Star) -> u64 {
        rng.next_u64() >> 11
    }

    /// `n` logits uniform in `±spread` (real units), as Q16.16.
    fn random_logits(rng: &mut XorShift64Star, n: usize, spread: f64) -> Vec<i32> {
        (0..n)
            .map(|_| ((rng.next_f64() * 2.0 - 1.0) * spread * Q).round() as i32)
            .collect()
    }

    fn settings(temperature_q16: u32, top_k: u32, top_p_q16: u32) -> SamplerSettings {
        SamplerSettings {
            temperature_q16,
            top_k,
            top_p_q16,
        }
    }

    /// f64 softmax of `logits / T` (both read as real numbers).
    fn softmax_f64(logits: &[i32], temperature_q16: u32) -> Vec<f64> {
        let t = f64::from(temperature_q16) / Q;
        let max = logits.iter().copied().max().unwrap();
        let e: Vec<f64> = logits
            .iter()
            .map(|&l| ((f64::from(l) - f64::from(max)) / Q / t).exp())
            .collect();
        let sum: f64 = e.iter().sum();
        e.iter().map(|v| v / sum).collect()
    }

    /// Ids in candidate order (logit descending, id ascending).
    fn sorted_ids(logits: &[i32]) -> Vec<u32> {
        let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
        ids.sort_by(by_logit_descending(logits));
        ids
    }

    /// The documented semantics, directly: sort every id, cut at k, cut at the
    /// nucleus, draw with `u`; no pre-cut, no selection. Without either cut, the
    /// candidates are in id order.
    fn reference(s: SamplerSettings, logits: &[i32], u: u32) -> u32 {
        if s.temperature_q16 == 0 {
            return argmax(logits);
        }
        let n = logits.len();
        let top_k = s.top_k != 0 && (s.top_k as usize) < n;
        let mut ids = if top_k || s.top_p_q16 < Q16_ONE {
            sorted_ids(logits)
        } else {
            (0..n as u32).collect()
        };
        if top_k {
            ids.truncate(s.top_k as usize);
        }
        let weights = Weights {
            max: *logits.iter().max().unwrap(),
            inv_temperature: InvTemperature::new(s.temperature_q16),
        };
        let w: Vec<u64> = ids
            .iter()
            .map(|&id| u64::from(weights.of(logits[id as usize])))
            .collect();
        let total: u64 = w.iter().sum();
        let mut len = ids.len();
        if s.top_p_q16 < Q16_ONE {
            let threshold = (u128::from(total) * u128::from(s.top_p_q16)).div_ceil(1 << 16);
            let mut cum = 0u128;
            len = w
                .iter()
                .position(|&x| {
                    cum += u128::from(x);
                    cum >= threshold
                })
                .unwrap()
                + 1;
        }
        let mass: u64 = w[..len].iter().sum();
        let r = ((u128::from(u) * u128::from(mass)) >> 32) as u64;
        let mut cum = 0;
        for (i, &x) in w[..len].iter().enumerate() {
            cum += x;
            if cum > r {
                return ids[i];
            }
        }
        unreachable!("r < mass")
    }

    /// The next random number `sampler` will use.
    fn peek_u32(sampler: &Sampler) -> u32 {
        sampler.rng.clone().next_u32()
    }

    /// Draws `count` tokens, checking each against the reference.
    fn draw(sampler: &mut Sampler, logits: &[i32], count: usize) -> Vec<u32> {
        let mut scratch = vec![0u32; scratch_len(logits.len())];
        (0..count)
            .map(|_| {
                let u = peek_u32(sampler);
                let token = sampler.sample(logits, &mut scratch).unwrap();
                assert_eq!(token, reference(sampler.settings(), logits, u));
                token
            })
            .collect()
    }

    #[test]
    fn greedy_is_argmax_with_lowest_id_on_ties() {
        assert_eq!(argmax(&[]), 0);
        assert_eq!(argmax(&[i32::MIN]), 0);
        assert_eq!(argmax(&[i32::MIN, i32::MIN]), 0);
        assert_eq!(argmax(&[1, 5, 3, 5, -7]), 1);
        assert_eq!(argmax(&[-3, -1, -2]), 1);
        assert_eq!(argmax(&[i32::MIN, 0, i32::MAX, i32::MAX]), 2);
        let mut sampler = Sampler::new(SamplerSettings::GREEDY, 1).unwrap();
        let mut rng = XorShift64Star::new(3);
        for n in 1..if cfg!(miri) { 20 } else { 200 } {
            let mut logits = random_logits(&mut rng, n, 3.0);
            // Coarse values make ties common.
            logits.iter_mut().for_each(|l| *l &= !0x7FFF);
            let want = argmax(&logits);
            assert_eq!(logits[want as usize], *logits.iter().max().unwrap());
            assert!(logits[..want as usize]
                .iter()
                .all(|&l| l < logits[want as usize]));
            // Greedy with top-k / top-p set ignores them and needs no scratch.
            for s in [SamplerSettings::GREEDY, settings(0, 3, 1000)] {
                sampler.settings = s;
                assert_eq!(sampler.sample(&logits, &mut []), Ok(want));
            }
        }
    }

    #[test]
    fn small_temperatures_are_greedy() {
        let mut rng = XorShift64Star::new(11);
        for case in 0..if cfg!(miri) { 12 } else { 300 } {
            let n = 2 + case % 100;
            let mut logits = random_logits(&mut rng, n, 8.0);
            let best = (next(&mut rng) % n as u64) as usize;
            // A unique maximum, ahead of the runner-up by at least 1/16.
            let runner_up = logits.iter().copied().max().unwrap();
            logits[best] = runner_up + 4096;
            let s = settings([1, 2, 16, 64][case % 4], [0, 0, 5][case % 3], Q16_ONE);
            let mut sampler = Sampler::new(s, case as u64).unwrap();
            for token in draw(&mut sampler, &logits, 20) {
                assert_eq!(token, best as u32);
            }
        }
    }

    /// The integer probabilities `w_i / W` against an f64 softmax over random rows:
    /// the figures quoted in the module docs.
    #[test]
    fn probabilities_match_f64_softmax() {
        let mut rng = XorShift64Star::new(5);
        let (mut worst_abs, mut worst_rel, mut worst_rel_1e3) = (0f64, 0f64, 0f64);
        for case in 0..if cfg!(miri) { 20 } else { 2000 } {
            let n = 1 + (next(&mut rng) % 300) as usize;
            let spread = [0.5, 4.0, 16.0, 64.0][case % 4];
            let t = [0.25, 0.5, 1.0, 1.7, 4.0][case % 5];
            let temperature_q16 = (t * Q) as u32;
            let logits = random_logits(&mut rng, n, spread);
            let max = *logits.iter().max().unwrap();
            let weights = Weights {
                max,
                inv_temperature: InvTemperature::new(temperature_q16),
            };
            let w: Vec<f64> = logits.iter().map(|&l| f64::from(weights.of(l))).collect();
            let total: f64 = w.iter().sum();
            for (x, p) in w.iter().zip(softmax_f64(&logits, temperature_q16)) {
                let got = x / total;
                worst_abs = worst_abs.max((got - p).abs());
                if p > 1e-6 {
                    worst_rel = worst_rel.max((got - p).abs() / p);
                }
                if p > 1e-3 {
                    worst_rel_1e3 = worst_rel_1e3.max((got - p).abs() / p);
                }
            }
        }
        println!(
            "max abs error {worst_abs:.3e}, max rel error {worst_rel:.3e} (p > 1e-6), \
             {worst_rel_1e3:.3e} (p > 1e-3)"
        );
        // Measured 1.49e-6, 3.75e-4 and 7.78e-6: each guard fails at twice its figure.
        assert!(worst_abs < 2e-6, "{worst_abs}");
        assert!(worst_rel < 6e-4, "{worst_rel}");
        assert!(worst_rel_1e3 < 1.2e-5, "{worst_rel_1e3}");
    }

    /// Empirical frequencies over a million draws against the f64 softmax, at
    /// temperatures 1 and 0.5: Pearson's chi-square (11 degrees of freedom) and the
    /// largest deviation in standard deviations of a binomial count.
    #[test]
    #[cfg_attr(miri, ignore = "two million draws")]
    fn frequencies_match_softmax() {
        let logits: Vec<i32> = [
            0.0, -0.3, 0.7, 1.2, -1.1, 0.05, 0.9, -0.6, 0.4, -0.2, 1.05, -1.3,
        ]
        .iter()
        .map(|&v: &f64| (v * Q).round() as i32)
        .collect();
        let draws = 1_000_000usize;
        for (temperature_q16, seed) in [(Q16_ONE, 1u64), (Q16_ONE / 2, 2)] {
            let mut sampler = Sampler::new(settings(temperature_q16, 0, Q16_ONE), seed).unwrap();
            let mut counts = vec![0usize; logits.len()];
            for _ in 0..draws {
                counts[sampler.sample(&logits, &mut []).unwrap() as usize] += 1;
            }
            let p = softmax_f64(&logits, temperature_q16);
            let (mut chi2, mut worst_sigma, mut worst_abs) = (0f64, 0f64, 0f64);
            for (&c, &p) in counts.iter().zip(&p) {
                let expected = p * draws as f64;
                chi2 += (c as f64 - expected).powi(2) / expected;
                let sigma = (draws as f64 * p * (1.0 - p)).sqrt();
                worst_sigma = worst_sigma.max((c as f64 - expected).abs() / sigma);
                worst_abs = worst_abs.max((c as f64 / draws as f64 - p).abs());
            }
            println!(
                "T = {}: chi-square {chi2:.2} (11 dof), max deviation {worst_sigma:.2} sigma, \
                 {worst_abs:.2e} absolute",
                f64::from(temperature_q16) / Q
            );
            // 11 degrees of freedom: P(chi-square > 31.3) = 0.001.
            assert!(chi2 < 31.3, "chi-square {chi2}");
            assert!(worst_sigma < 4.0, "{worst_sigma} sigma");
        }
    }

    #[test]
    fn top_k_draws_only_from_the_k_largest() {
        let mut rng = XorShift64Star::new(17);
        let (cases, draws, max_n) = if cfg!(miri) {
            (8, 4, 40)
        } else {
            (400, 50, 300)
        };
        for case in 0..cases {
            let n = 2 + (next(&mut rng) % max_n) as usize;
            let mut logits = random_logits(&mut rng, n, [0.5, 3.0, 20.0][case % 3]);
            if case % 2 == 0 {
                logits.iter_mut().for_each(|l| *l &= !0x3FFF); // ties
            }
            let k = 1 + (next(&mut rng) % (n as u64 - 1)) as usize;
            let top_p = [Q16_ONE, 60000, 30000][case % 3];
            let temperature_q16 = [Q16_ONE, 200_000, 20_000][case % 3];
            let mut sampler =
                Sampler::new(settings(temperature_q16, k as u32, top_p), case as u64).unwrap();
            let sorted = sorted_ids(&logits);
            let kth = logits[sorted[k - 1] as usize];
            for token in draw(&mut sampler, &logits, draws) {
                assert!(
                    sorted[..k].contains(&token),
                    "case {case}: {token} not in top {k}"
                );
                assert!(logits[token as usize] >= kth);
            }
        }
    }

    /// Every draw lies in the nucleus computed in f64 (after top-k, if set), widened by
    /// `1e-5` of probability for the integer weights' error; also counts how often the
    /// integer nucleus differs from the exact f64 one.
    #[test]
    fn top_p_draws_only_from_the_f64_nucleus() {
        let mut rng = XorShift64Star::new(23);
        let (mut cases, mut differ) = (0, 0);
        let (rows, draws, max_n) = if cfg!(miri) {
            (8, 4, 40)
        } else {
            (600, 40, 400)
        };
        for case in 0..rows {
            let n = 1 + (next(&mut rng) % max_n) as usize;
            let logits = random_logits(&mut rng, n, [0.5, 3.0, 10.0][case % 3]);
            let top_p_q16 = 1 + (next(&mut rng) % u64::from(Q16_ONE - 1)) as u32;
            let top_k = [0, 0, 10, 100][case % 4];
            let temperature_q16 = [Q16_ONE, 30_000, 150_000][case % 3];
            let s = settings(temperature_q16, top_k, top_p_q16);
            let mut ids = sorted_ids(&logits);
            if top_k != 0 && (top_k as usize) < n {
                ids.truncate(top_k as usize);
            }
            let kept: Vec<i32> = ids.iter().map(|&id| logits[id as usize]).collect();
            let p = softmax_f64(&kept, temperature_q16); // in candidate order
            let nucleus_len = |mass: f64| {
                let mut cum = 0.0;
                p.iter()
                    .position(|&x| {
                        cum += x;
                        cum >= mass
                    })
                    .map_or(p.len(), |i| i + 1)
            };
            let exact = nucleus_len(f64::from(top_p_q16) / Q);
            let allowed = nucleus_len(f64::from(top_p_q16) / Q + 1e-5);
            let mut sampler = Sampler::new(s, case as u64).unwrap();
            let mut longest = 0;
            for token in draw(&mut sampler, &logits, draws) {
                let rank = ids.iter().position(|&id| id == token).unwrap();
                assert!(rank < allowed, "case {case}: rank {rank} outside {allowed}");
                longest = longest.max(rank + 1);
            }
            cases += 1;
            if longest > exact {
                differ += 1;
            }
        }
        println!("integer nucleus longer than the exact f64 one in {differ} of {cases} rows");
    }

    #[test]
    fn same_seed_same_sequence_and_seed_zero_works() {
        let (length, uniform_draws) = if cfg!(miri) { (20, 400) } else { (200, 8000) };
        let mut rng = XorShift64Star::new(29);
        let logits = random_logits(&mut rng, 50, 2.0);
        for s in [
            settings(Q16_ONE, 0, Q16_ONE),
            settings(Q16_ONE, 10, Q16_ONE),
            settings(Q16_ONE, 0, 58982),
        ] {
            let mut a = Sampler::new(s, 1234).unwrap();
            let mut b = Sampler::new(s, 1234).unwrap();
            let first = draw(&mut a, &logits, length);
            assert_eq!(first, draw(&mut b, &logits, length));
            // A clone continues the same stream.
            let mut c = a.clone();
            assert_eq!(draw(&mut a, &logits, length), draw(&mut c, &logits, length));
            let mut other = Sampler::new(s, 1235).unwrap();
            assert_ne!(first, draw(&mut other, &logits, length));
        }
        // Seed 0 is not xorshift's fixed point: uniform logits over 8 tokens draw each
        // about 1/8 of the time (within 5 standard deviations), and the stream differs
        // from seed 1's.
        let mut zero = Sampler::new(settings(Q16_ONE, 0, Q16_ONE), 0).unwrap();
        let mut one = Sampler::new(settings(Q16_ONE, 0, Q16_ONE), 1).unwrap();
        let tokens = draw(&mut zero, &[7; 8], uniform_draws);
        let expected = uniform_draws as f64 / 8.0;
        for t in 0..8 {
            let count = tokens.iter().filter(|&&x| x == t).count() as f64;
            let sigma = (expected * 7.0 / 8.0).sqrt();
            assert!((count - expected).abs() < 5.0 * sigma, "token {t}: {count}");
        }
        assert_ne!(tokens, draw(&mut one, &[7; 8], uniform_draws));
        assert_ne!(XorShift64Star::new(0).state, 0);
    }

    /// Pinned outputs: the generator, the weights and the draw are integer-only, so
    /// these hold on every target (`tools/miri.sh`-style runs with a 32-bit target
    /// check it). The logits are integer too: 64 values in about `±3.0`. The generator's
    /// first outputs for seed 0 are llama2.c's `random_u32` from the state
    /// `0xE220A8397B1DCDAF` (splitmix64 of 0), checked against the C code.
    #[test]
    fn golden_sequences() {
        let logits: Vec<i32> = (0..64i64)
            .map(|i| ((i * 2_654_435_761) % 393_216 - 196_608) as i32)
            .collect();
        let mut rng = XorShift64Star::new(0);
        assert_eq!(rng.state, 0xE220_A839_7B1D_CDAF);
        let stream: Vec<u32> = (0..4).map(|_| rng.next_u32()).collect();
        assert_eq!(stream, [2075964429, 3732923411, 3016112181, 3765678016]);
        let mut got = vec![];
        for s in [
            settings(Q16_ONE, 0, Q16_ONE),
            settings(45875, 8, Q16_ONE),
            settings(78643, 0, 58982),
            settings(Q16_ONE, 20, 52429),
        ] {
            let mut sampler = Sampler::new(s, 42).unwrap();
            got.push(draw(&mut sampler, &logits, 12));
        }
        let want = [
            [12, 36, 31, 17, 50, 36, 22, 50, 62, 43, 24, 31],
            [31, 62, 12, 31, 24, 62, 31, 24, 55, 43, 31, 12],
            [12, 36, 55, 62, 3, 17, 43, 22, 58, 29, 43, 55],
            [31, 24, 43, 12, 36, 24, 12, 36, 29, 5, 12, 43],
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn vocabulary_of_one() {
        for s in [
            SamplerSettings::GREEDY,
            settings(Q16_ONE, 0, Q16_ONE),
            settings(1, 1, 1),
            settings(u32::MAX, 5, 30000),
        ] {
            let mut sampler = Sampler::new(s, 9).unwrap();
            for logit in [i32::MIN, 0, i32::MAX] {
                assert_eq!(sampler.sample(&[logit], &mut [0]), Ok(0));
            }
        }
    }

    #[test]
    fn vocabulary_of_2_pow_20() {
        let n = if cfg!(miri) { 1 << 10 } else { 1 << 20 };
        let mut rng = XorShift64Star::new(37);
        let random = random_logits(&mut rng, n, 10.0);
        let uniform = vec![-5 * 65536; n];
        let mut scratch = vec![0u32; scratch_len(n)];
        assert_eq!(scratch.len(), n);
        for s in [
            settings(Q16_ONE, 0, Q16_ONE),
            settings(Q16_ONE, 40, Q16_ONE),
            settings(Q16_ONE, 0, 58982),
            settings(52429, 40, 58982),
            settings(u32::MAX, 0, 65535),
        ] {
            let mut sampler = Sampler::new(s, 5).unwrap();
            for logits in [&random, &uniform] {
                let u = peek_u32(&sampler);
                let token = sampler.sample(logits, &mut scratch).unwrap();
                assert!((token as usize) < n);
                assert_eq!(token, reference(s, logits, u));
            }
            if s.uses_scratch() {
                assert_eq!(
                    sampler.sample(&random, &mut scratch[..n - 1]),
                    Err(SampleError::ScratchTooSmall {
                        needed: n,
                        got: n - 1
                    })
                );
            }
        }
    }

    #[test]
    fn extreme_logits_and_settings() {
        let rows: [&[i32]; 6] = [
            &[i32::MIN, i32::MAX],
            &[i32::MAX, i32::MIN, i32::MAX],
            &[i32::MIN; 5],
            &[i32::MAX; 5],
            &[i32::MIN, 0, i32::MAX, i32::MIN + 1, i32::MAX - 1, -1, 1],
            &[0, i32::MIN, i32::MIN, i32::MIN],
        ];
        for row in rows {
            for temperature_q16 in [0, 1, 2, 65536, 1 << 24, u32::MAX] {
                for top_k in [0, 1, 2, 6, u32::MAX] {
                    for top_p_q16 in [1, 2, 32768, 65535, 65536] {
                        let s = settings(temperature_q16, top_k, top_p_q16);
                        let mut sampler = Sampler::new(s, u64::MAX).unwrap();
                        for token in draw(&mut sampler, row, if cfg!(miri) { 2 } else { 20 }) {
                            assert!((token as usize) < row.len());
                        }
                    }
                }
            }
        }
        // The full distance range at the largest temperature: 2^32 - 1 units of 2^-16
        // over T = 65536 - 2^-16 is just below 1, a weight of about e^-1.
        let weights = Weights {
            max: i32::MAX,
            inv_temperature: InvTemperature::new(u32::MAX),
        };
        let w = f64::from(weights.of(i32::MIN)) / f64::from(1u32 << 30);
        assert!((w - (-1.0f64).exp()).abs() < 1e-5, "{w}");
        // And at the smallest: one unit of distance is 1 / e.
        let weights = Weights {
            max: 1,
            inv_temperature: InvTemperature::new(1),
        };
        let w = f64::from(weights.of(0)) / f64::from(1u32 << 30);
        assert!((w - (-1.0f64).exp()).abs() < 1e-5, "{w}");
        assert_eq!(weights.of(i32::MIN), 0);
        assert_eq!(weights.of(1), 1 << 30);
    }

    /// The original formulation of [`Weights::of`] (64-bit distance, saturation, then
    /// [`exp2_neg_q16`](crate::quant::exp2_neg_q16)).
    fn weight_reference(weights: &Weights, logit: i32) -> u32 {
        let distance = (i64::from(weights.max) - i64::from(logit)).clamp(0, i64::from(u32::MAX));
        let product = distance as u64 * u64::from(weights.inv_temperature.multiplier);
        let t = ((product >> weights.inv_temperature.shift.saturating_sub(1)) + 1) >> 1;
        crate::quant::exp2_neg_q16(u32::try_from(t).unwrap_or(u32::MAX))
    }

    /// [`Weights::of`] equals the original formulation for random and extreme logits,
    /// maxima (also below the logit) and temperatures, 0 included.
    #[test]
    fn weights_match_reference_formulation() {
        let mut rng = XorShift64Star::new(47);
        let temperatures: Vec<u32> = (0..if cfg!(miri) { 30 } else { 3_000 })
            .map(|_| {
                let bits = next(&mut rng);
                (bits >> (20 + bits % 24)) as u32
            })
            .chain([0, 1, 2, 52_429, 65_536, u32::MAX])
            .collect();
        let extremes = [i32::MIN, i32::MIN + 1, -1, 0, 1, i32::MAX - 1, i32::MAX];
        for temperature_q16 in temperatures {
            let inv_temperature = InvTemperature::new(temperature_q16);
            for case in 0..if cfg!(miri) { 4 } else { 40 } {
                let spread = [1u64 << 10, 1 << 20, 1 << 26, 1 << 33][case % 4];
                let max = match case % 5 {
                    0 => extremes[case % extremes.len()],
                    _ => (next(&mut rng) % spread) as i32 - (spread / 2) as i32,
                };
                let weights = Weights {
                    max,
                    inv_temperature,
                };
                for _ in 0..20 {
                    let logit = max.wrapping_sub((next(&mut rng) % spread) as i32);
                    assert_eq!(weights.of(logit), weight_reference(&weights, logit));
                }
                for logit in extremes {
                    assert_eq!(weights.of(logit), weight_reference(&weights, logit));
                }
            }
        }
    }

    #[test]
    fn inverse_temperature_is_accurate() {
        let mut rng = XorShift64Star::new(41);
        let temperatures = (0..if cfg!(miri) { 200 } else { 10_000 })
            .map(|_| (next(&mut rng) >> 21) as u32)
            .chain([1, 2, 3, 65535, 65536, 65537, u32::MAX, u32::MAX - 1]);
        for t in temperatures.filter(|&t| t > 0) {
            let inv = InvTemperature::new(t);
            assert!(inv.multiplier >= 1 << 31, "{t}");
            let got = f64::from(inv.multiplier) / (inv.shift as f64).exp2();
            let want = core::f64::consts::LOG2_E * Q / f64::from(t);
            assert!((got / want - 1.0).abs() < 2e-9, "{t}: {got} vs {want}");
        }
        assert_eq!(InvTemperature::new(0).multiplier, 0);
    }

    #[test]
    fn threshold_and_draw_scaling_are_exact() {
        let mut rng = XorShift64Star::new(43);
        let totals = (0..if cfg!(miri) { 200 } else { 20_000 })
            .map(|_| next(&mut rng) << 9 >> (next(&mut rng) % 40))
            .chain([1, 2, 1 << 30, (1 << 62) - 1, u32::MAX as u64 * (1 << 30)])
            .collect::<Vec<u64>>();
        for total in totals {
            let total = total.clamp(1, (1 << 62) - 1);
            for p in [1, 2, 32767, 58982, 65535, 65536] {
                let want = (u128::from(total) * p as u128).div_ceil(1 << 16);
                assert_eq!(u128::from(nucleus_threshold(total, p)), want);
            }
            for u in [0, 1, 0x8000_0000, u32::MAX, next(&mut rng) as u32] {
                let want = (u128::from(u) * u128::from(total)) >> 32;
                let got = scale_draw(u, total);
                assert_eq!(u128::from(got), want);
                assert!(got < total);
            }
        }
    }

    #[test]
    fn errors() {
        for top_p_q16 in [0, Q16_ONE + 1, u32::MAX] {
            let s = settings(Q16_ONE, 0, top_p_q16);
            let err = Sampler::new(s, 0).unwrap_err();
            assert_eq!(err, SampleError::TopPOutOfRange { top_p_q16 });
            assert!(err.to_string().contains("top-p"));
        }
        let mut sampler = Sampler::new(settings(Q16_ONE, 5, Q16_ONE), 0).unwrap();
        let state = sampler.rng.state;
        assert_eq!(sampler.sample(&[], &mut []), Err(SampleError::EmptyLogits));
        let err = sampler.sample(&[1, 2, 3], &mut [0; 2]).unwrap_err();
        assert_eq!(err, SampleError::ScratchTooSmall { needed: 3, got: 2 });
        assert_eq!(
            err.to_string(),
            "sampler scratch too small: needs 3 u32, got 2"
        );
        // Refused calls do not advance the generator.
        assert_eq!(sampler.rng.state, state);
        // Without top-k and top-p no scratch is needed.
        let mut plain = Sampler::new(settings(Q16_ONE, 0, Q16_ONE), 0).unwrap();
        assert!(!plain.settings().uses_scratch());
        assert!(plain.sample(&[1, 2, 3], &mut []).unwrap() < 3);
        assert!(SampleError::EmptyLogits.to_string().contains("logits"));
        assert!(SampleError::VocabTooLarge { vocab: usize::MAX }
            .to_string()
            .contains("at most"));
    }

    #[test]
    fn host_conversions() {
        assert_eq!(logit_to_q16(1.5), 98304);
        assert_eq!(logit_to_q16(-2.25), -147456);
        assert_eq!(logit_to_q16(f32::INFINITY), i32::MAX);
        assert_eq!(logit_to_q16(-1e30), i32::MIN);
        assert_eq!(logit_to_q16(f32::NAN), i32::MIN);
        assert_eq!(temperature_q16_from_f32(0.8), 52429);
        assert_eq!(temperature_q16_from_f32(0.0), 0);
        assert_eq!(temperature_q16_from_f32(-1.0), 0);
        assert_eq!(temperature_q16_from_f32(f32::NAN), 0);
        assert_eq!(temperature_q16_from_f32(1e12), u32::MAX);
        assert_eq!(top_p_q16_from_f32(0.9), 58982);
        assert_eq!(top_p_q16_from_f32(1e-9), 1);
        for off in [0.0, -0.5, 1.0, 2.0, f32::NAN] {
            assert_eq!(top_p_q16_from_f32(off), Q16_ONE);
        }
        let s = SamplerSettings::from_f32(1.0, 40, 0.9);
        assert_eq!(s, settings(Q16_ONE, 40, 58982));
        assert!(s.validate().is_ok());
    }

    fn any_logit() -> impl Strategy<Value = i32> {
        prop_oneof![
            any::<i32>(),
            -(8 << 16)..(8 << 16),
            Just(i32::MIN),
            Just(i32::MAX),
            Just(0),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// Any logits and settings: no panic, the id is in range, the result is the
        /// reference's, greedy is argmax.
        #[test]
        #[cfg_attr(miri, ignore = "proptest's failure files need the file system")]
        fn any_input_samples_in_range(
            logits in prop::collection::vec(any_logit(), 1..300),
            temperature_q16 in prop_oneof![Just(0u32), 1u32..4, any::<u32>(), 16384u32..200_000],
            top_k in prop_oneof![Just(0u32), 1u32..20, any::<u32>()],
            top_p_q16 in prop_oneof![Just(Q16_ONE), 1..=Q16_ONE],
            seed in any::<u64>(),
        ) {
            let s = settings(temperature_q16, top_k, top_p_q16);
            let mut sampler = Sampler::new(s, seed).unwrap();
            for token in draw(&mut sampler, &logits, 4) {
                prop_assert!((token as usize) < logits.len());
                if temperature_q16 == 0 {
                    prop_assert_eq!(token, argmax(&logits));
                }
            }
        }
    }
}
