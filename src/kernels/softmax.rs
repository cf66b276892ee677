//! Softmax over one row of attention scores or logits.

#[cfg(all(target_arch = "x86_64", any(test, feature = "std")))]
use crate::quant::EXP2_LUT;
use crate::quant::{div_u64, exp2_neg_q16, exp2_neg_q16_below_31, Requant};

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
/// rows is in the tests (`q15_softmax_error`): 1.7e-5 (about 0.54 Q15 steps).
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
/// Elsewhere a non-negative multiplier (every valid one) takes `exponentials_u32`,
/// the same bits in 32-bit steps (one 32x32-bit multiply per score; cheap on a
/// Cortex-M4), also tested against the scalar code on every target.
pub fn softmax_q15(scores: &mut [i32], to_log2: Requant) {
    // MASKED is i32::MIN, so the plain maximum (which vectorises) is the maximum of
    // the unmasked scores unless every score is masked.
    let max = row_max(scores);
    if max == MASKED {
        scores.fill(0);
        return;
    }
    #[cfg(all(target_arch = "x86_64", any(test, feature = "std")))]
    let sum = if crate::kernels::avx512_available() && to_log2.multiplier >= 0 {
        // SAFETY: the CPU supports AVX-512 F/BW/DQ/VL (checked just above).
        unsafe { exponentials_avx512(scores, max, to_log2) }
    } else if std::is_x86_feature_detected!("avx2") && to_log2.multiplier >= 0 {
        // SAFETY: the CPU supports AVX2 (checked just above).
        unsafe { exponentials_avx2(scores, max, to_log2) }
    } else {
        exponentials_any(scores, max, to_log2)
    };
    #[cfg(not(all(target_arch = "x86_64", any(test, feature = "std"))))]
    let sum = exponentials_any(scores, max, to_log2);
    normalize(scores, sum);
}

/// The largest score, [`MASKED`] for an empty row (compiled for AVX-512 where the CPU
/// has it: 16 lanes per compare).
#[inline]
fn row_max(scores: &[i32]) -> i32 {
    crate::kernels::dispatch!(row_max_avx512, row_max_body(scores))
}

crate::kernels::avx512_variant!(row_max_avx512, row_max_body(scores: &[i32]) -> i32);

#[inline(always)]
fn row_max_body(scores: &[i32]) -> i32 {
    scores.iter().copied().max().unwrap_or(MASKED)
}

/// [`exponentials`], by `exponentials_u32` for a non-negative multiplier.
#[inline(always)]
fn exponentials_any(scores: &mut [i32], max: i32, to_log2: Requant) -> u64 {
    match u32::try_from(to_log2.multiplier) {
        Ok(multiplier) => exponentials_u32(scores, max, multiplier, to_log2.shift),
        Err(_) => exponentials(scores, max, to_log2),
    }
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

/// [`exponentials`] for the non-negative multiplier `multiplier` (and `shift`, as in
/// [`Requant`]), the same bits for every input, in the operations a 32-bit core has:
///
/// - the distance `max - s` is in `[0, 2^32)` (`s <= max`), so it is the 32-bit
///   wrapping difference, then clamped to `i32::MAX` as in [`exponential`];
/// - `Requant::apply` of it is `(p + 2^(k - 1)) >> k` with `p = d * multiplier <
///   2^62` (one 32x32-bit multiply) and `k` the total shift in `[1, 62]`, which is
///   `((p >> j) + 1) >> 1` with `j = k - 1` (`p = q * 2^j + r`, `r < 2^j`: both are
///   `floor((q + 1) / 2)`), so no 64-bit addition;
/// - [`exp2_neg_q16`] is 0 exactly when that exponent reaches `31 * 2^16`, i.e. when
///   `q = p >> j` reaches `62 * 2^16 - 1`: the clamp and the range check become one
///   32-bit comparison of `q` (saturated to `u32::MAX` when it does not fit 32 bits).
///
/// With `p = hi * 2^32 + lo`, `q` is `hi >> (j - 32)` for `j >= 32`, and for `j` in
/// `1..=31` it is `(hi << (32 - j)) | (lo >> j)` when `hi < 2^j` (otherwise `q >=
/// 2^32`): one loop for each case, so the shift needs no 64-bit shifter and the loop
/// keeps its constants in registers. `j = 0` (`k = 1`, a multiplier beyond any real
/// model's) takes [`exponentials`]. Not inlined: in its own function the loop's
/// constants stay in registers (inlined into the attention loop they were reloaded
/// or rebuilt for every score).
#[inline(never)]
fn exponentials_u32(scores: &mut [i32], max: i32, multiplier: u32, shift: i32) -> u64 {
    let j = 31i32.saturating_sub(shift).clamp(1, 62) as u32 - 1;
    if j >= 32 {
        let j_hi = j - 32;
        exponentials_with(scores, max, multiplier, |lo, hi| {
            let _ = lo;
            hi >> j_hi
        })
    } else if j >= 1 {
        let j_lo = 32 - j;
        exponentials_with(scores, max, multiplier, |lo, hi| {
            if hi >> j != 0 {
                u32::MAX
            } else {
                (hi << j_lo) | (lo >> j)
            }
        })
    } else {
        exponentials(scores, max, Requant::new(multiplier as i32, shift))
    }
}

/// The loop of `exponentials_u32`; `quotient(lo, hi)` is `p >> j` for the product
/// `p = hi * 2^32 + lo`, saturated to `u32::MAX`.
#[inline(always)]
fn exponentials_with(
    scores: &mut [i32],
    max: i32,
    multiplier: u32,
    quotient: impl Fn(u32, u32) -> u32,
) -> u64 {
    // q >= THRESHOLD <=> ((q + 1) >> 1) >= 31 * 2^16 <=> the weight is 0.
    const THRESHOLD: u32 = 62 * (1 << 16) - 1;
    let max = max as u32;
    let mut sum = 0u64;
    for s in scores.iter_mut() {
        let distance = max.wrapping_sub(*s as u32).min(i32::MAX as u32);
        let p = u64::from(distance) * u64::from(multiplier);
        let q = quotient(p as u32, (p >> 32) as u32);
        let e = if *s == MASKED || q >= THRESHOLD {
            0
        } else {
            exp2_neg_q16_below_31((q + 1) >> 1)
        };
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

/// [`exponentials`] sixteen lanes at a time with AVX-512: [`exponentials_avx2`]'s
/// steps on 512-bit registers (masks instead of compare vectors, the sum in 64-bit
/// lanes), the same bits as the scalar code for every input with a non-negative
/// multiplier; the tail runs the scalar code.
#[cfg(all(target_arch = "x86_64", any(test, feature = "std")))]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
fn exponentials_avx512(scores: &mut [i32], max: i32, to_log2: Requant) -> u64 {
    use core::arch::x86_64::*;
    let shift = 31i32.saturating_sub(to_log2.shift).clamp(1, 62) as i64;
    let mut chunks = scores.chunks_exact_mut(16);
    let max_v = _mm512_set1_epi32(max);
    let masked_v = _mm512_set1_epi32(MASKED);
    let i32_max = _mm512_set1_epi32(i32::MAX);
    let multiplier = _mm512_set1_epi64(i64::from(to_log2.multiplier));
    let round = _mm512_set1_epi64(1i64 << (shift - 1));
    let count = _mm_set_epi64x(0, shift);
    let u32_max = _mm512_set1_epi64(i64::from(u32::MAX));
    let low_mask = _mm512_set1_epi64(0xFFFF_FFFF);
    let byte = _mm512_set1_epi32(0xFF);
    let one = _mm512_set1_epi32(1);
    let thirty = _mm512_set1_epi32(30);
    let half_step = _mm512_set1_epi32(128);
    let table = EXP2_LUT.as_ptr().cast::<i64>();
    // Lane `l` of the result takes dword `2l` (`a`) or `2l + 1` (`b`) of the pair
    // `low:high` (indices 16.. select from `high`).
    let even_dwords = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    let odd_dwords = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    let mut total = _mm512_setzero_si512();
    for chunk in &mut chunks {
        // SAFETY: `chunk` holds exactly 16 i32 (64 bytes); unaligned loads and stores.
        let s = unsafe { _mm512_loadu_si512(chunk.as_ptr().cast()) };
        let masked = _mm512_cmpeq_epi32_mask(s, masked_v);
        // As in `exponentials_avx2`: the exact modular distance, clamped to i32::MAX,
        // requantized in 64-bit lanes (even lanes, then the odd ones moved down) and
        // clamped to u32::MAX.
        let distance = _mm512_min_epu32(_mm512_sub_epi32(max_v, s), i32_max);
        let requant = |d: __m512i| {
            let t = _mm512_srl_epi64(
                _mm512_add_epi64(_mm512_mul_epu32(d, multiplier), round),
                count,
            );
            _mm512_min_epu64(t, u32_max)
        };
        let even = requant(distance);
        let odd = requant(_mm512_srli_epi64::<32>(distance));
        let t = _mm512_or_si512(
            _mm512_and_si512(even, low_mask),
            _mm512_slli_epi64::<32>(odd),
        );
        let whole = _mm512_srli_epi32::<16>(t);
        let index = _mm512_and_si512(_mm512_srli_epi32::<8>(t), byte);
        let frac = _mm512_and_si512(t, byte);
        // Entries `index` and `index + 1` are adjacent: two 64-bit gathers of eight
        // pairs read them (half the gathered elements of two 32-bit gathers, which
        // cost per element), then the entries are sorted out by lane: even dwords
        // (little-endian low halves) are `a`, odd ones `b`.
        // SAFETY: indices are at most 255, so the eight bytes read at `4 * index` are
        // entries `index` and `index + 1 <= 256` of the 257-entry table.
        let (low, high) = unsafe {
            (
                _mm512_i32gather_epi64::<4>(_mm512_castsi512_si256(index), table),
                _mm512_i32gather_epi64::<4>(_mm512_extracti64x4_epi64::<1>(index), table),
            )
        };
        let a = _mm512_permutex2var_epi32(low, even_dwords, high);
        let b = _mm512_permutex2var_epi32(low, odd_dwords, high);
        let step = _mm512_srli_epi32::<8>(_mm512_add_epi32(
            _mm512_mullo_epi32(_mm512_sub_epi32(a, b), frac),
            half_step,
        ));
        let v = _mm512_sub_epi32(a, step);
        let bias = _mm512_srli_epi32::<1>(_mm512_sllv_epi32(one, whole));
        let shifted = _mm512_srlv_epi32(_mm512_add_epi32(v, bias), whole);
        let zero = masked | _mm512_cmpgt_epi32_mask(whole, thirty);
        let e = _mm512_maskz_mov_epi32(!zero, shifted);
        // SAFETY: as for the load.
        unsafe { _mm512_storeu_si512(chunk.as_mut_ptr().cast(), e) };
        total = _mm512_add_epi64(
            total,
            _mm512_add_epi64(
                _mm512_cvtepu32_epi64(_mm512_castsi512_si256(e)),
                _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64::<1>(e)),
            ),
        );
    }
    let mut sum = _mm512_reduce_add_epi64(total) as u64;
    for s in chunks.into_remainder() {
        let e = exponential(*s, max, to_log2);
        sum += u64::from(e);
        *s = e as i32;
    }
    sum
}

/// Turns weights summing to `sum` into Q15 probabilities (see [`softmax_q15`]).
fn normalize(scores: &mut [i32], sum: u64) {
    let recip = div_u64(1 << 62, sum.max(1));
    #[cfg(all(target_arch = "x86_64", any(test, feature = "std")))]
    if recip <= u64::from(u32::MAX) && std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { normalize_avx2(scores, recip as u32) };
    }
    match u32::try_from(recip) {
        Ok(recip) => normalize_u32(scores, recip),
        Err(_) => normalize_with(scores, recip),
    }
}

/// [`normalize_with`] for a reciprocal below `2^32` (every row but those whose weight
/// sits on one entry) and weights `e` in `[0, 2^30]`, the same bits: with `e * recip
/// = hi * 2^32 + lo`, adding `2^46` adds `2^14` to `hi` without a carry from `lo`, and
/// `lo < 2^32` cannot reach the next multiple of `2^47`, so the result is
/// `(hi + 2^14) >> 15`; `hi <= 2^30`. One 32x32-bit multiply per weight.
#[inline(always)]
fn normalize_u32(scores: &mut [i32], recip: u32) {
    for s in scores.iter_mut() {
        let hi = ((u64::from(*s as u32) * u64::from(recip)) >> 32) as u32;
        *s = ((hi + (1 << 14)) >> 15) as i32;
    }
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
    use crate::rng::XorShift64Star;

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
        let rows = if cfg!(miri) { 0 } else { 3_000 };
        for (case, (row, to_log2)) in comparison_rows(rows, 3).into_iter().enumerate() {
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

    /// The AVX-512 exponentials equal the scalar ones bit for bit, on the same rows
    /// as the AVX2 comparison (the sixteen-lane body and every tail).
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn avx512_exponentials_match_scalar() {
        if !crate::kernels::avx512_available() {
            return;
        }
        let rows = if cfg!(miri) { 0 } else { 3_000 };
        for (case, (row, to_log2)) in comparison_rows(rows, 5).into_iter().enumerate() {
            let Some(max) = row.iter().copied().filter(|&s| s != MASKED).max() else {
                continue;
            };
            let mut scalar = row.clone();
            let mut simd = row;
            let want = exponentials(&mut scalar, max, to_log2);
            // SAFETY: AVX-512 checked above.
            let got = unsafe { exponentials_avx512(&mut simd, max, to_log2) };
            assert_eq!((got, &simd), (want, &scalar), "case {case}");
        }
    }

    /// Rows for the comparisons with the scalar code: every length 0..=70, masked
    /// entries, score spreads from ties to the full `i32` range, the extremes, and
    /// multipliers from zero and tiny to the largest valid one (every total shift).
    fn comparison_rows(rows: usize, seed: u64) -> Vec<(Vec<i32>, Requant)> {
        let mut rng = XorShift64Star::new(seed);
        (0..rows)
            .map(|case| {
                let n = case % 71;
                let spread = [1.0, 300.0, 1e5, 1e8, 4.2e9, 3e4][case % 6];
                let mut row: Vec<i32> = (0..n)
                    .map(|_| {
                        if rng.next_f64() < 0.05 {
                            MASKED
                        } else {
                            ((rng.next_f64() - 0.5) * spread) as i32
                        }
                    })
                    .collect();
                if case % 7 == 0 && n > 0 {
                    row[0] = i32::MAX;
                    row[n - 1] = i32::MIN + 1;
                }
                if case % 11 == 0 && n > 1 {
                    row[1] = i32::MIN + 1;
                }
                let to_log2 = match case % 8 {
                    0 => Requant::from_real(1.0 / 64.0 * core::f64::consts::LOG2_E * 65536.0),
                    1 => Requant::from_real(1e-7),
                    2 => Requant::new(i32::MAX, 30),
                    3 => Requant::new(1 << 30, -31),
                    4 => crate::quant::LOG2_E,
                    5 => Requant::new(0, 0),
                    // Every total shift in 1..=62, and out-of-range shifts.
                    _ => Requant::new(
                        (1 << 30) + (rng.next_f64() * f64::from(1u32 << 30)) as i32,
                        (rng.next_f64() * 70.0) as i32 - 35,
                    ),
                };
                (row, to_log2)
            })
            .collect()
    }

    /// The 32-bit exponentials and normalisation (the path of every target without
    /// AVX2) equal the scalar code bit for bit, on random and extreme rows.
    #[test]
    fn u32_exponentials_and_normalize_match_scalar() {
        let rows = if cfg!(miri) { 60 } else { 6_000 };
        for (case, (row, to_log2)) in comparison_rows(rows, 11).into_iter().enumerate() {
            let Some(max) = row.iter().copied().filter(|&s| s != MASKED).max() else {
                continue;
            };
            let multiplier = u32::try_from(to_log2.multiplier).unwrap();
            let mut scalar = row.clone();
            let mut fast = row;
            let want = exponentials(&mut scalar, max, to_log2);
            let got = exponentials_u32(&mut fast, max, multiplier, to_log2.shift);
            assert_eq!((got, &fast), (want, &scalar), "case {case}");
            let recip = (1u64 << 62) / want.max(1);
            normalize_with(&mut scalar, recip);
            match u32::try_from(recip) {
                Ok(recip) => normalize_u32(&mut fast, recip),
                Err(_) => normalize_with(&mut fast, recip),
            }
            assert_eq!(fast, scalar, "case {case}");
        }
        // Every weight 0..=2^30 in steps, with reciprocals around the largest ones.
        for recip in [
            u32::MAX,
            u32::MAX - 1,
            1 << 31,
            (1 << 31) + 12_345,
            4_000_000_000,
        ] {
            let mut e: Vec<i32> = (0..=1 << 30)
                .step_by(if cfg!(miri) { 1 << 22 } else { 4099 })
                .chain([1 << 30])
                .collect();
            let mut want = e.clone();
            normalize_with(&mut want, u64::from(recip));
            normalize_u32(&mut e, recip);
            assert_eq!(e, want);
        }
    }

    /// The AVX2 normalisation equals the scalar one bit for bit.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn avx2_normalize_matches_scalar() {
        if !std::is_x86_feature_detected!("avx2") {
            return;
        }
        let mut rng = XorShift64Star::new(5);
        for case in 0..if cfg!(miri) { 0 } else { 2_000 } {
            let n = case % 37;
            let row: Vec<i32> = (0..n)
                .map(|_| (rng.next_f64() * f64::from(1u32 << 30)) as i32)
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
        let mut rng = XorShift64Star::new(42);
        let mut worst = 0f64;
        for case in 0..if cfg!(miri) { 40 } else { 20_000 } {
            let n = 1 + (rng.next_f64() * 128.0) as usize;
            let spread = [0.1, 1.0, 5.0, 10.0, 40.0][case % 5];
            let scale = 1.0 / 4096.0; // real value of one score unit
            let real: Vec<f64> = (0..n)
                .map(|_| (rng.next_f64() * 2.0 - 1.0) * spread)
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
        println!("max abs error {worst:.3e}");
        // Measured 1.66e-5 (0.54 Q15 steps): the guard fails at 1.5 times that.
        assert!(worst < 2.5e-5, "max abs error {worst}");
    }

    /// How far a row's Q15 probabilities sum from `2^15`: measured over random rows of
    /// every length 1..=512 (fewer under Miri), score spreads from ties to the full
    /// `i32` range, and the documented bound `ceil(n / 2)` checked on each.
    #[test]
    fn q15_softmax_sum_deviation() {
        let mut rng = XorShift64Star::new(7);
        let mut worst = 0i64;
        let mut worst_ratio = 0f64;
        let lengths = if cfg!(miri) { 1..=24 } else { 1..=512 };
        let rows_per_length = if cfg!(miri) { 2 } else { 40 };
        for n in lengths {
            for case in 0..rows_per_length {
                let spread = [1.0, 64.0, 4096.0, 1e6, 4e9][case % 5];
                let mut row: Vec<i32> = (0..n)
                    .map(|_| ((rng.next_f64() - 0.5) * spread) as i32)
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
