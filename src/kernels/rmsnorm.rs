//! RMSNorm over one token's hidden vector (Llama-family decoders).

use crate::quant::{clamp_residual, isqrt_round, RESIDUAL_MAX};

/// In-place `x = x / sqrt(mean(x^2) + eps) * weight` in `f32`, in llama2.c's order
/// of operations (`ss` summed element by element, `1 / sqrt`, then `w * (ss * x)`),
/// so float models reproduce its outputs.
pub fn rms_norm_f32(out: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
    let mut ss = 0.0f32;
    for v in x {
        ss += v * v;
    }
    ss /= x.len().max(1) as f32;
    ss += eps;
    let inv = 1.0 / libm::sqrtf(ss);
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
        *o = w * (inv * v);
    }
}

/// Fractional bits of the stored RMSNorm weight `gamma_q = round(gamma * 2^14)`.
pub const RMS_WEIGHT_BITS: u32 = 14;
/// Fractional bits of the wide normalised output: an output element `y` stands for
/// `y * 2^-14`.
pub const RMS_OUT_BITS: u32 = 14;
/// Fractional bits of the mean square (the root gets half as many).
const MS_BITS: u32 = 8;
/// Fractional bits of the reciprocal root.
const INV_BITS: u32 = 40;
/// Fractional bits of the normalised value `x / rms`.
const NORM_BITS: u32 = 16;

/// Integer RMSNorm: residual `x` (i32, any common scale, clamped to `±RESIDUAL_MAX`)
/// to a wide row `out` in Q14: `out[i] * 2^-14` approximates `x[i] / rms(x) *
/// gamma[i]` (the caller narrows it to int8 with the row's own scale).
///
/// The input scale cancels in `x / rms`, so it only enters through `eps`, given in
/// squared input units (clamped to `[0, 2^40]`). With `gamma_q = round(gamma * 2^14)`:
///
/// - `ms = sum(x^2) / n + eps` in Q8 (floor), `rms = round(sqrt(ms))` in Q4;
/// - `inv = floor(2^44 / rms)`; normalised `z_i = (x_i * inv) >> 24` (Q16, floor);
/// - `out_i = sat32((z_i * gamma_q_i) >> 16)` (Q14).
///
/// Bounds: `|x| < 2^24`, `sum(x^2) < 2^48 * n < 2^61` for `n <= 8192`, `ms` in Q8 `<
/// 2^61`; `|x_i| <= sqrt(n) * rms`, so `|x_i * inv| <= 2^40 * sqrt(n) * 2^1` and
/// `|z| < 2^24`; `|z * gamma_q| < 2^55`: nothing overflows for any parameters and
/// any input. An all-zero input gives an all-zero output.
///
/// **Cost.** The same bits as that definition (`rms_norm_reference` in the tests), in
/// the operations a 32-bit core has where the values allow: for rows shorter than
/// `2^15` (every model's) the squares are summed without saturation (the sum stays
/// below `2^63`), for `n < 2^16` the division by `n` is four 32-bit hardware divisions
/// (`div_rem_small`), and when `inv < 2^31` (`rms > 2^13` in Q4, i.e. above 512
/// input units) each element takes two 32x32-bit multiplies.
pub fn rms_norm_i32(out: &mut [i32], x: &[i32], gamma_q: &[i32], eps: i64) {
    let n = x.len().max(1) as u64;
    let sum_sq = sum_of_squares(x);
    let eps = eps.clamp(0, 1 << 40) as u64;
    let (quotient, remainder) = match u32::try_from(n) {
        Ok(small) if small < 1 << 16 => div_rem_small(sum_sq, small),
        _ => (sum_sq / n, sum_sq % n),
    };
    // remainder < n, and no slice of i32 has 2^56 elements: `remainder << 8` fits.
    let ms_q8 = (quotient << MS_BITS) + ((remainder << MS_BITS) / n) + (eps << MS_BITS);
    let rms_q4 = isqrt_round(ms_q8);
    let inv = (1u64 << (INV_BITS + MS_BITS / 2))
        .checked_div(rms_q4)
        .unwrap_or(0);
    match u32::try_from(inv) {
        Ok(inv) if inv < 1 << 31 => normalize_32(out, x, gamma_q, inv),
        _ => normalize_64(out, x, gamma_q, inv as i64),
    }
}

/// `sum(clamp_residual(x)^2)`, saturating at `u64::MAX`. Each square is below `2^48`, so
/// fewer than `2^15` of them cannot reach `2^63`: the plain sum (one
/// multiply-accumulate per element); longer rows saturate step by step.
fn sum_of_squares(x: &[i32]) -> u64 {
    let square = |v: i32| {
        // |clamp_residual(v)|: RESIDUAL_MAX < 2^24 fits u32.
        let a = v.unsigned_abs().min(RESIDUAL_MAX as u32);
        u64::from(a) * u64::from(a)
    };
    if x.len() < 1 << 15 {
        x.iter().map(|&v| square(v)).sum()
    } else {
        x.iter().fold(0u64, |acc, &v| acc.saturating_add(square(v)))
    }
}

/// `(a / d, a % d)` for `1 <= d < 2^16` by long division in base `2^16` with 32-bit
/// divisions (a hardware instruction on a Cortex-M3/M4, unlike the 64-bit one):
/// each step divides `r * 2^16 + digit` with `r < d`, which is below `d * 2^16 <=
/// 2^32`. `d = 0` gives `(0, 0)` (never used).
#[inline]
fn div_rem_small(a: u64, d: u32) -> (u64, u64) {
    let Some(d) = core::num::NonZeroU32::new(d) else {
        return (0, 0);
    };
    let mut quotient = 0u64;
    let mut r = 0u32;
    for i in (0..4).rev() {
        let current = (r << 16) | ((a >> (16 * i)) & 0xFFFF) as u32;
        quotient = (quotient << 16) | u64::from(current / d);
        r = current % d;
    }
    (quotient, u64::from(r))
}

/// The per-element step for `inv < 2^31`, in 32x32-bit products:
///
/// - `z = floor(x * inv / 2^24)` with `x = clamp_residual(v)`, `|x| < 2^24`: with `x + 2^24
///   >= 0` the product is unsigned, and subtracting `inv * 2^24` (a multiple of
///   `2^24`) after it is subtracting `inv` after the shift, so `z = ((x + 2^24) * inv
///   >> 24) - inv`; the shifted product is below `2^25 * 2^31 / 2^24 = 2^32`, and
///   `|z|` is below `2^31`;
/// - `y = (z * gamma) >> 16` is a signed 32x32-bit product; it fits `i32` exactly
///   when the bits above its 31st agree with its sign, otherwise it saturates.
#[inline(never)]
fn normalize_32(out: &mut [i32], x: &[i32], gamma_q: &[i32], inv: u32) {
    const BIAS: i32 = 1 << 24;
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(gamma_q) {
        let biased = (clamp_residual(v) + BIAS) as u32;
        let scaled = ((u64::from(biased) * u64::from(inv)) >> (INV_BITS - NORM_BITS)) as u32;
        let z = scaled.wrapping_sub(inv) as i32;
        let product = i64::from(z) * i64::from(g);
        let y = product >> (NORM_BITS + RMS_WEIGHT_BITS - RMS_OUT_BITS);
        *o = match i32::try_from(y) {
            Ok(y) => y,
            // i32::MAX for y > 0, i32::MIN for y < 0.
            Err(_) => ((product >> 63) as i32) ^ i32::MAX,
        };
    }
}

/// The per-element step in 64-bit arithmetic, for any `inv` in `[0, 2^44]`.
fn normalize_64(out: &mut [i32], x: &[i32], gamma_q: &[i32], inv: i64) {
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(gamma_q) {
        let z = (i64::from(clamp_residual(v)) * inv) >> (INV_BITS - NORM_BITS);
        let y = (z * i64::from(g)) >> (NORM_BITS + RMS_WEIGHT_BITS - RMS_OUT_BITS);
        *o = y.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::XorShift64Star;

    /// The original formulation of [`rms_norm_i32`] (64-bit arithmetic throughout),
    /// the definition the fast paths must reproduce bit for bit.
    fn rms_norm_reference(out: &mut [i32], x: &[i32], gamma_q: &[i32], eps: i64) {
        let residual = |v: i32| i64::from(v).clamp(-RESIDUAL_MAX, RESIDUAL_MAX);
        let n = x.len().max(1) as u64;
        let sum_sq: u64 = x.iter().fold(0u64, |acc, &v| {
            let a = residual(v).unsigned_abs();
            acc.saturating_add(a * a)
        });
        let eps = eps.clamp(0, 1 << 40) as u64;
        let ms_q8 = ((sum_sq / n) << MS_BITS) + (((sum_sq % n) << MS_BITS) / n) + (eps << MS_BITS);
        let rms_q4 = isqrt_round(ms_q8);
        let inv = if rms_q4 == 0 {
            0
        } else {
            (1i64 << (INV_BITS + MS_BITS / 2)) / rms_q4 as i64
        };
        for ((o, &v), &g) in out.iter_mut().zip(x).zip(gamma_q) {
            let z = (residual(v) * inv) >> (INV_BITS - NORM_BITS);
            let y = (z * i64::from(g)) >> (NORM_BITS + RMS_WEIGHT_BITS - RMS_OUT_BITS);
            *o = y.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
        }
    }

    /// The fast paths give the reference's bits: random rows of lengths 0..=300 with
    /// magnitudes from 0 to beyond the residual clamp (both per-element paths: tiny
    /// rows have `inv >= 2^31`), random and extreme gammas and epsilons.
    #[test]
    fn matches_reference_formulation() {
        let mut rng = XorShift64Star::new(17);
        let rows = if cfg!(miri) { 40 } else { 20_000 };
        for case in 0..rows {
            let n = (rng.next_u64() % 301) as usize;
            let magnitude = [1u64, 8, 300, 1 << 12, 1 << 16, 1 << 24, 1 << 32][case % 7];
            let x: Vec<i32> = (0..n)
                .map(|_| match rng.next_u64() % 50 {
                    0 => i32::MAX,
                    1 => i32::MIN,
                    2 => RESIDUAL_MAX as i32,
                    3 => -(RESIDUAL_MAX as i32),
                    _ => ((rng.next_u64() % (2 * magnitude)) as i64 - magnitude as i64)
                        .clamp(i64::from(i32::MIN), i64::from(i32::MAX))
                        as i32,
                })
                .collect();
            let gamma_q: Vec<i32> = (0..n)
                .map(|_| match rng.next_u64() % 20 {
                    0 => i32::MAX,
                    1 => i32::MIN,
                    _ => (rng.next_u64() % 65536) as i32 - 16384,
                })
                .collect();
            let eps = [0, 1, 42, 1 << 20, 1 << 40, i64::MAX, -5][case % 7];
            let mut want = vec![0; n];
            let mut got = vec![1; n];
            rms_norm_reference(&mut want, &x, &gamma_q, eps);
            rms_norm_i32(&mut got, &x, &gamma_q, eps);
            assert_eq!(got, want, "case {case}");
        }
    }

    /// Long rows: the division by `n` for `n` near and beyond `2^16`, and the
    /// saturating sum beyond `2^15` elements.
    #[test]
    fn long_rows_match_reference_formulation() {
        let mut rng = XorShift64Star::new(19);
        let lengths: &[usize] = if cfg!(miri) {
            &[3, 257]
        } else {
            &[(1 << 15) - 1, 1 << 15, (1 << 16) - 1, 1 << 16, 70_001]
        };
        for &n in lengths {
            for magnitude in [1000u64, 1 << 25] {
                let x: Vec<i32> = (0..n)
                    .map(|_| (rng.next_u64() % (2 * magnitude)) as i32 - magnitude as i32)
                    .collect();
                let gamma_q = vec![16384; n];
                let (mut want, mut got) = (vec![0; n], vec![0; n]);
                rms_norm_reference(&mut want, &x, &gamma_q, 7);
                rms_norm_i32(&mut got, &x, &gamma_q, 7);
                assert_eq!(got, want, "n {n}");
            }
        }
        for d in [1u32, 2, 3, 7, 64, 288, 65_535] {
            for a in [
                0u64,
                1,
                u64::MAX,
                1 << 63,
                123_456_789_012_345,
                rng.next_u64(),
            ] {
                assert_eq!(div_rem_small(a, d), (a / u64::from(d), a % u64::from(d)));
            }
        }
    }

    fn reference(x: &[f64], gamma: &[f64], eps: f64) -> Vec<f64> {
        let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64 + eps;
        x.iter()
            .zip(gamma)
            .map(|(v, g)| v / ms.sqrt() * g)
            .collect()
    }

    #[test]
    fn integer_rms_norm_matches_f64() {
        let mut rng = XorShift64Star::new(7);
        let mut next = || rng.next_f64() * 2.0 - 1.0;
        let n = 64;
        let scale = 1.0 / 4096.0; // residual unit
        let mut worst = 0.0f64;
        for _ in 0..200 {
            let real: Vec<f64> = (0..n).map(|_| next() * 3.0).collect();
            let gamma: Vec<f64> = (0..n).map(|_| 0.5 + next().abs() * 2.0).collect();
            let x: Vec<i32> = real.iter().map(|v| (v / scale).round() as i32).collect();
            let gamma_q: Vec<i32> = gamma.iter().map(|g| (g * 16384.0).round() as i32).collect();
            let eps = 1e-5;
            let eps_q = (eps / (scale * scale)).round() as i64;
            let mut out = vec![0i32; n];
            rms_norm_i32(&mut out, &x, &gamma_q, eps_q);
            let want = reference(&real, &gamma, eps);
            for (o, w) in out.iter().zip(&want) {
                let got = f64::from(*o) / 16384.0;
                worst = worst.max((got - w).abs());
            }
        }
        // The Q14 grid (half a step is 3.1e-5) plus the rounding of the residual
        // grid and of gamma, on outputs up to about 20: measured 2.93e-4.
        println!("worst absolute error {worst:.3e}");
        assert!(worst < 4e-4, "worst absolute error {worst}");
    }

    #[test]
    fn zero_and_extreme_inputs_are_total() {
        let mut out = [1i32; 4];
        rms_norm_i32(&mut out, &[0; 4], &[16384; 4], 0);
        assert_eq!(out, [0; 4]);
        let x = [i32::MAX, i32::MIN, 1, -1];
        let g = [i32::MAX, i32::MIN, i32::MAX, 0];
        rms_norm_i32(&mut out, &x, &g, i64::MAX);
        rms_norm_i32(&mut out, &x, &g, i64::MIN);
        rms_norm_i32(&mut [], &x, &g, 0);
        rms_norm_i32(&mut out, &[], &g, 0);
    }

    #[test]
    fn f32_rms_norm_unit_weight_has_unit_rms() {
        let x = [1.0f32, -2.0, 3.0, -4.0];
        let mut out = [0.0f32; 4];
        rms_norm_f32(&mut out, &x, &[1.0; 4], 0.0);
        let ms: f32 = out.iter().map(|v| v * v).sum::<f32>() / 4.0;
        assert!((ms - 1.0).abs() < 1e-6);
    }
}
