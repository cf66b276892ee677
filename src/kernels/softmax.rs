//! Softmax over one row of attention scores or logits.

use crate::quant::{exp2_neg_q16, Requant};

/// In-place `f32` softmax over `x[i]` where `keep(i)`; other entries become 0.
pub fn softmax_f32(x: &mut [f32], keep: impl Fn(usize) -> bool) {
    let mut max = f32::NEG_INFINITY;
    for (i, &v) in x.iter().enumerate() {
        if keep(i) && v > max {
            max = v;
        }
    }
    let mut sum = 0.0f32;
    for (i, v) in x.iter_mut().enumerate() {
        *v = if keep(i) { libm::expf(*v - max) } else { 0.0 };
        sum += *v;
    }
    let inv = if sum > 0.0 { 1.0 / sum } else { 0.0 };
    for v in x {
        *v *= inv;
    }
}

/// Output precision of [`softmax_q15`]: probabilities in Q15 (`32768` = 1.0).
pub const PROB_BITS: u32 = 15;

/// Marks a score that must receive probability 0 (a padding key).
pub const MASKED: i32 = i32::MIN;

/// Integer-only softmax, in place: `scores` (i32, any scale) become probabilities in
/// Q15; entries equal to [`MASKED`] get 0.
///
/// `to_log2` maps a non-negative score distance `max - s` to a base-2 exponent in
/// Q16, i.e. its real multiplier is `score_scale * log2(e) * 2^16`. Then
/// `e_i = 2^-(t_i / 2^16)` in Q30 by [`exp2_neg_q16`] (table + interpolation), the sum
/// is taken in `u64`, and `p_i = (e_i * floor(2^62 / sum) + 2^46) >> 47`.
/// The maximum element has `e = 2^30`, so `sum >= 2^30` and the reciprocal is exact to
/// 2^-32 relative. Measured maximum absolute error against an f64 softmax over random
/// rows is in the tests (`q15_softmax_error`): below 4e-5 (about 1.3 Q15 steps).
/// A row with every entry masked becomes all zeros.
///
/// **Row sum.** Each probability is rounded on its own, so a row of `n` scores with at
/// least one unmasked entry sums to `2^15` within `ceil(n / 2)` units: `n` roundings of
/// at most half a unit each, and the truncated reciprocal loses less than `n / 2^17` of
/// a unit. The bound is reached in practice by near-uniform rows, where every element
/// rounds the same way: measured 252 units (0.77 %) for a uniform row of 508 scores
/// (`2^15 / 508 = 64.504` rounds to 65); a row of 128 is within 64 units (0.2 %)
/// (`q15_softmax_sum_deviation`; `tests/properties.rs` checks the bound for random rows
/// of length 1..=512 and arbitrary scores).
pub fn softmax_q15(scores: &mut [i32], to_log2: Requant) {
    let max = scores.iter().copied().filter(|&s| s != MASKED).max();
    let Some(max) = max else {
        scores.fill(0);
        return;
    };
    let mut sum = 0u64;
    for s in scores.iter_mut() {
        let e = if *s == MASKED {
            0
        } else {
            // max - s <= 2^32 fits i64; requantize in two halves to stay in the i32
            // domain `Requant::apply` is proven for.
            let distance = (i64::from(max) - i64::from(*s)).min(i64::from(i32::MAX)) as i32;
            let t = to_log2.apply(distance).clamp(0, i64::from(u32::MAX)) as u32;
            exp2_neg_q16(t)
        };
        sum += u64::from(e);
        *s = e as i32;
    }
    let recip = (1u64 << 62) / sum.max(1);
    for s in scores.iter_mut() {
        *s = ((*s as u64 * recip + (1 << 46)) >> 47) as i32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(state: &mut u64) -> f64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*state >> 11) as f64 / (1u64 << 53) as f64
    }

    #[test]
    fn float_softmax_sums_to_one_and_masks() {
        let mut x = [1.0f32, 2.0, 3.0, 100.0];
        softmax_f32(&mut x, |i| i < 3);
        assert_eq!(x[3], 0.0);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(x[2] > x[1] && x[1] > x[0]);
    }

    /// Maximum absolute error of the Q15 softmax against f64 over 20,000 random rows
    /// of length 1..=128 with logit spreads from 0.1 to 40.
    #[test]
    fn q15_softmax_error() {
        let mut state = 42u64;
        let mut worst = 0f64;
        for case in 0..if cfg!(miri) { 40 } else { 20_000 } {
            let n = 1 + (lcg(&mut state) * 128.0) as usize;
            let spread = [0.1, 1.0, 5.0, 10.0, 40.0][case % 5];
            let scale = 1.0 / 4096.0; // real value of one score unit
            let real: Vec<f64> = (0..n)
                .map(|_| (lcg(&mut state) * 2.0 - 1.0) * spread)
                .collect();
            let mut scores: Vec<i32> = real.iter().map(|r| (r / scale).round() as i32).collect();
            let quantized: Vec<f64> = scores.iter().map(|&s| s as f64 * scale).collect();
            let to_log2 = Requant::from_real(scale * core::f64::consts::LOG2_E * 65536.0);
            softmax_q15(&mut scores, to_log2);
            let max = quantized.iter().cloned().fold(f64::MIN, f64::max);
            let exps: Vec<f64> = quantized.iter().map(|q| (q - max).exp()).collect();
            let sum: f64 = exps.iter().sum();
            for (p, e) in scores.iter().zip(&exps) {
                worst = worst.max((*p as f64 / 32768.0 - e / sum).abs());
            }
        }
        assert!(worst < 4e-5, "max abs error {worst}");
    }

    /// How far a row's Q15 probabilities sum from `2^15`: measured over random rows of
    /// every length 1..=512 (fewer under Miri), score spreads from ties to the full
    /// `i32` range, and the documented bound `ceil(n / 2)` checked on each.
    #[test]
    fn q15_softmax_sum_deviation() {
        let mut state = 7u64;
        let mut worst = 0i64;
        let mut worst_ratio = 0f64;
        let lengths = if cfg!(miri) { 1..=24 } else { 1..=512 };
        let rows_per_length = if cfg!(miri) { 2 } else { 40 };
        for n in lengths {
            for case in 0..rows_per_length {
                let spread = [1.0, 64.0, 4096.0, 1e6, 4e9][case % 5];
                let mut row: Vec<i32> = (0..n)
                    .map(|_| ((lcg(&mut state) - 0.5) * spread) as i32)
                    .collect();
                let to_log2 = [
                    Requant::from_real(1.0 / 64.0 * core::f64::consts::LOG2_E * 65536.0),
                    crate::quant::LOG2_E,
                    Requant::from_real(1e-3),
                ][case % 3];
                softmax_q15(&mut row, to_log2);
                let sum: i64 = row.iter().map(|&p| i64::from(p)).sum();
                let deviation = (sum - (1 << PROB_BITS)).abs();
                assert!(deviation <= (n as i64 + 1) / 2, "n {n}: sum {sum}");
                worst = worst.max(deviation);
                worst_ratio = worst_ratio.max(deviation as f64 / n as f64);
            }
        }
        // Measured (non-Miri): 252 units at n = 508, i.e. 0.496 units per element:
        // near-uniform rows, where every element rounds the same way, reach the bound.
        println!("max |sum - 2^15| = {worst}, max per element = {worst_ratio}");
    }

    #[test]
    fn q15_softmax_masks_and_extremes() {
        let rq = Requant::from_real(1.0);
        let mut row = [MASKED, 0, MASKED, i32::MAX, i32::MIN + 1];
        softmax_q15(&mut row, rq);
        assert_eq!(row, [0, 0, 0, 32768, 0]);
        let mut all_masked = [MASKED; 3];
        softmax_q15(&mut all_masked, rq);
        assert_eq!(all_masked, [0; 3]);
        softmax_q15(&mut [], rq);
        let mut uniform = [7i32; 4];
        softmax_q15(&mut uniform, rq);
        assert_eq!(uniform, [8192; 4]);
    }
}
