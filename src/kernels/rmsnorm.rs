//! RMSNorm over one token's hidden vector (Llama-family decoders).

use crate::quant::{isqrt_round, RESIDUAL_MAX};

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
pub fn rms_norm_i32(out: &mut [i32], x: &[i32], gamma_q: &[i32], eps: i64) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: &[f64], gamma: &[f64], eps: f64) -> Vec<f64> {
        let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64 + eps;
        x.iter()
            .zip(gamma)
            .map(|(v, g)| v / ms.sqrt() * g)
            .collect()
    }

    #[test]
    fn integer_rms_norm_matches_f64() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0
        };
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
        // grid and of gamma, on outputs up to about 20: measured 2.8e-4.
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
