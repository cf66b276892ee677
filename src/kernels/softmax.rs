//! Softmax over one row of attention scores or logits.

#[cfg(all(target_arch = "x86_64", any(test, feature = "std")))]
use crate::quant::EXP2_LUT;
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
///
/// On x86-64 hosts with AVX2 the exponentials are computed eight at a time
/// (`exponentials_avx2`), bit for bit as the scalar code (tested on random rows).
pub fn softmax_q15(scores: &mut [i32], to_log2: Requant) {
    // MASKED is i32::MIN, so the plain maximum (which vectorises) is the maximum of
    // the unmasked scores unless every score is masked.
    let max = scores.iter().copied().max().unwrap_or(MASKED);
    if max == MASKED {
        scores.fill(0);
        return;
    }
    #[cfg(all(target_arch = "x86_64", any(test, feature = "std")))]
    let sum = if std::is_x86_feature_detected!("avx2") && to_log2.multiplier >= 0 {
        // SAFETY: the CPU supports AVX2 (checked just above).
        unsafe { exponentials_avx2(scores, max, to_log2) }
    } else {
        exponentials(scores, max, to_log2)
    };
    #[cfg(not(all(target_arch = "x86_64", any(test, feature = "std"))))]
    let sum = exponentials(scores, max, to_log2);
    normalize(scores, sum);
}

/// The unnormalised weight of one score: `2^-(t / 2^16)` in Q30 with `t` the score's
/// distance below the row maximum as a Q16 base-2 exponent; 0 for [`MASKED`].
#[inline(always)]
fn exponential(score: i32, max: i32, to_log2: Requant) -> u32 {
    if score == MASKED {
        return 0;
    }
    // max - s <= 2^32 fits i64; requantize in two halves to stay in the i32
    // domain `Requant::apply` is proven for.
    let distance = (i64::from(max) - i64::from(score)).min(i64::from(i32::MAX)) as i32;
    let t = to_log2.apply(distance).clamp(0, i64::from(u32::MAX)) as u32;
    exp2_neg_q16(t)
}

/// Replaces each score by its [`exponential`] and returns their sum.
fn exponentials(scores: &mut [i32], max: i32, to_log2: Requant) -> u64 {
    let mut sum = 0u64;
    for s in scores.iter_mut() {
        let e = exponential(*s, max, to_log2);
        sum += u64::from(e);
        *s = e as i32;
    }
    sum
}

/// [`exponentials`] eight lanes at a time with AVX2 (the distance's requantization in
/// 64-bit lanes, the table by gathers), the same bits as the scalar code for every
/// input with a non-negative multiplier; the tail runs the scalar code.
#[cfg(all(target_arch = "x86_64", any(test, feature = "std")))]
#[target_feature(enable = "avx2")]
fn exponentials_avx2(scores: &mut [i32], max: i32, to_log2: Requant) -> u64 {
    use core::arch::x86_64::*;
    let shift = 31i32.saturating_sub(to_log2.shift).clamp(1, 62) as i64;
    let mut sum = 0u64;
    let mut chunks = scores.chunks_exact_mut(8);
    // Vector constants; the intrinsics are safe to call here: the function's
    // target feature is enabled.
    let max_v = _mm256_set1_epi32(max);
    let masked_v = _mm256_set1_epi32(MASKED);
    let i32_max = _mm256_set1_epi32(i32::MAX);
    let multiplier = _mm256_set1_epi64x(i64::from(to_log2.multiplier));
    let round = _mm256_set1_epi64x(1i64 << (shift - 1));
    let count = _mm_set_epi64x(0, shift);
    let u32_max = _mm256_set1_epi64x(i64::from(u32::MAX));
    let low_mask = _mm256_set1_epi64x(0xFFFF_FFFF);
    let byte = _mm256_set1_epi32(0xFF);
    let one = _mm256_set1_epi32(1);
    let thirty = _mm256_set1_epi32(30);
    let half_step = _mm256_set1_epi32(128);
    for chunk in &mut chunks {
        // SAFETY: `chunk` holds exactly 8 i32 (32 bytes); unaligned loads and stores.
        let s = unsafe { _mm256_loadu_si256(chunk.as_ptr().cast()) };
        let masked = _mm256_cmpeq_epi32(s, masked_v);
        // max - s is in [0, 2^32) as an unsigned 32-bit value: exact modular
        // subtraction, then the scalar code's clamp to i32::MAX.
        let distance = _mm256_min_epu32(_mm256_sub_epi32(max_v, s), i32_max);
        // round(distance * multiplier / 2^shift) in 64-bit lanes: even lanes, then
        // the odd ones moved down; both operands are non-negative below 2^31.
        let requant = |d: __m256i| {
            let t = _mm256_srl_epi64(
                _mm256_add_epi64(_mm256_mul_epu32(d, multiplier), round),
                count,
            );
            // Clamp to u32::MAX (t >= 0): a signed compare is right below 2^63.
            let over = _mm256_cmpgt_epi64(t, u32_max);
            _mm256_blendv_epi8(t, u32_max, over)
        };
        let even = requant(distance);
        let odd = requant(_mm256_srli_epi64::<32>(distance));
        let t = _mm256_or_si256(
            _mm256_and_si256(even, low_mask),
            _mm256_slli_epi64::<32>(odd),
        );
        // exp2_neg_q16, lane by lane.
        let whole = _mm256_srli_epi32::<16>(t);
        let index = _mm256_and_si256(_mm256_srli_epi32::<8>(t), byte);
        let frac = _mm256_and_si256(t, byte);
        let table = EXP2_LUT.as_ptr().cast::<i32>();
        // SAFETY: indices are at most 255 and 256; the table has 257 entries.
        let (a, b) = unsafe {
            (
                _mm256_i32gather_epi32::<4>(table, index),
                _mm256_i32gather_epi32::<4>(table, _mm256_add_epi32(index, one)),
            )
        };
        let step = _mm256_srli_epi32::<8>(_mm256_add_epi32(
            _mm256_mullo_epi32(_mm256_sub_epi32(a, b), frac),
            half_step,
        ));
        let v = _mm256_sub_epi32(a, step);
        // (v + (1 << (whole - 1))) >> whole, which is v for whole == 0.
        let bias = _mm256_srli_epi32::<1>(_mm256_sllv_epi32(one, whole));
        let shifted = _mm256_srlv_epi32(_mm256_add_epi32(v, bias), whole);
        let zero = _mm256_or_si256(masked, _mm256_cmpgt_epi32(whole, thirty));
        let e = _mm256_andnot_si256(zero, shifted);
        // SAFETY: as for the load.
        unsafe { _mm256_storeu_si256(chunk.as_mut_ptr().cast(), e) };
        let wide = _mm256_add_epi64(
            _mm256_cvtepu32_epi64(_mm256_castsi256_si128(e)),
            _mm256_cvtepu32_epi64(_mm256_extracti128_si256::<1>(e)),
        );
        let mut lanes = [0u64; 4];
        // SAFETY: `lanes` is 32 bytes.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), wide) };
        sum += lanes.iter().sum::<u64>();
    }
    for s in chunks.into_remainder() {
        let e = exponential(*s, max, to_log2);
        sum += u64::from(e);
        *s = e as i32;
    }
    sum
}

/// Turns weights summing to `sum` into Q15 probabilities (see [`softmax_q15`]).
fn normalize(scores: &mut [i32], sum: u64) {
    let recip = (1u64 << 62) / sum.max(1);
    #[cfg(all(target_arch = "x86_64", any(test, feature = "std")))]
    if recip <= u64::from(u32::MAX) && std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { normalize_avx2(scores, recip as u32) };
    }
    normalize_with(scores, recip);
}

/// `p = (e * recip + 2^46) >> 47` for each weight `e` (at most 2^30).
#[inline(always)]
fn normalize_with(scores: &mut [i32], recip: u64) {
    for s in scores.iter_mut() {
        *s = ((*s as u64 * recip + (1 << 46)) >> 47) as i32;
    }
}

/// [`normalize_with`] eight lanes at a time for a reciprocal below 2^32 (every row
/// but those whose weight sits on one entry): 32x32-bit products in 64-bit lanes,
/// the same bits.
#[cfg(all(target_arch = "x86_64", any(test, feature = "std")))]
#[target_feature(enable = "avx2")]
fn normalize_avx2(scores: &mut [i32], recip: u32) {
    use core::arch::x86_64::*;
    let recip_v = _mm256_set1_epi64x(i64::from(recip));
    let round = _mm256_set1_epi64x(1 << 46);
    let low_mask = _mm256_set1_epi64x(0xFFFF_FFFF);
    let mut chunks = scores.chunks_exact_mut(8);
    for chunk in &mut chunks {
        // SAFETY: `chunk` holds exactly 8 i32 (32 bytes); unaligned loads and stores.
        let e = unsafe { _mm256_loadu_si256(chunk.as_ptr().cast()) };
        let even = _mm256_srli_epi64::<47>(_mm256_add_epi64(_mm256_mul_epu32(e, recip_v), round));
        let odd = _mm256_srli_epi64::<47>(_mm256_add_epi64(
            _mm256_mul_epu32(_mm256_srli_epi64::<32>(e), recip_v),
            round,
        ));
        let p = _mm256_or_si256(
            _mm256_and_si256(even, low_mask),
            _mm256_slli_epi64::<32>(odd),
        );
        // SAFETY: as for the load.
        unsafe { _mm256_storeu_si256(chunk.as_mut_ptr().cast(), p) };
    }
    normalize_with(chunks.into_remainder(), u64::from(recip));
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

    /// The AVX2 exponentials equal the scalar ones bit for bit: random rows of every
    /// length 0..=70 (the eight-lane body and every tail), masked entries, score
    /// spreads from ties to the full `i32` range, and multipliers from tiny to the
    /// largest valid one.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn avx2_exponentials_match_scalar() {
        if !std::is_x86_feature_detected!("avx2") {
            return;
        }
        let mut state = 3u64;
        let rows = if cfg!(miri) { 0 } else { 3_000 };
        for case in 0..rows {
            let n = case % 71;
            let spread = [1.0, 300.0, 1e5, 1e8, 4.2e9][case % 5];
            let mut row: Vec<i32> = (0..n)
                .map(|_| {
                    if lcg(&mut state) < 0.05 {
                        MASKED
                    } else {
                        ((lcg(&mut state) - 0.5) * spread) as i32
                    }
                })
                .collect();
            if case % 7 == 0 && n > 0 {
                row[0] = i32::MAX;
                row[n - 1] = i32::MIN + 1;
            }
            let to_log2 = [
                Requant::from_real(1.0 / 64.0 * core::f64::consts::LOG2_E * 65536.0),
                Requant::from_real(1e-7),
                Requant::new(i32::MAX, 30),
                Requant::new(1 << 30, -31),
                crate::quant::LOG2_E,
            ][case % 5];
            let Some(max) = row.iter().copied().filter(|&s| s != MASKED).max() else {
                continue;
            };
            let mut scalar = row.clone();
            let mut simd = row;
            let want = exponentials(&mut scalar, max, to_log2);
            // SAFETY: AVX2 checked above.
            let got = unsafe { exponentials_avx2(&mut simd, max, to_log2) };
            assert_eq!((got, &simd), (want, &scalar), "case {case}");
        }
    }

    /// The AVX2 normalisation equals the scalar one bit for bit.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn avx2_normalize_matches_scalar() {
        if !std::is_x86_feature_detected!("avx2") {
            return;
        }
        let mut state = 5u64;
        for case in 0..if cfg!(miri) { 0 } else { 2_000 } {
            let n = case % 37;
            let row: Vec<i32> = (0..n)
                .map(|_| (lcg(&mut state) * f64::from(1u32 << 30)) as i32)
                .collect();
            // Sums above 2^30: the reciprocal fits 32 bits (the only case it is used).
            let sum = row
                .iter()
                .map(|&e| e as u64)
                .sum::<u64>()
                .max((1 << 30) + 1);
            let recip = (1u64 << 62) / sum;
            let (mut scalar, mut simd) = (row.clone(), row);
            normalize_with(&mut scalar, recip);
            // SAFETY: AVX2 checked above.
            unsafe { normalize_avx2(&mut simd, recip as u32) };
            assert_eq!(simd, scalar, "case {case}");
        }
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
