//! LayerNorm over one token's hidden vector.

use super::{avx512_variant, dispatch};
use crate::quant::{clamp_residual, div_round, div_u64, isqrt_round, mul_wide, saturate_i8};

/// In-place `x = (x - mean) / sqrt(var + eps) * gamma + beta` in `f32`.
pub fn layer_norm_f32(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = x.len().max(1) as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv_std = 1.0 / libm::sqrtf(var + eps);
    for (i, v) in x.iter_mut().enumerate() {
        let g = gamma.get(i).copied().unwrap_or(0.0);
        let b = beta.get(i).copied().unwrap_or(0.0);
        *v = (*v - mean) * inv_std * g + b;
    }
}

/// Fractional bits of the normalised value `(x - mean) / std` inside the kernel.
const NORM_BITS: u32 = 16;
/// Fractional bits of the variance (the standard deviation gets half as many).
const VAR_BITS: u32 = 8;
/// Fractional bits of the reciprocal standard deviation.
const INV_BITS: u32 = 40;

/// Fractional bits of the stored `gamma_q` / `beta_q`.
pub const PARAM_BITS: u32 = 14;

/// Integer LayerNorm: residual `x` (i32, any common scale) to int8 `out` with output
/// scale `s_out`. Inputs are first clamped to `±RESIDUAL_MAX` (the range of the
/// residual stream, so a no-op in the forward pass); the bounds below rest on it.
///
/// The input scale cancels in `(x - mean) / std`, so it only enters through `eps`,
/// given in squared input units (clamped to `[0, 2^31)`). With `gamma_q = round(gamma / s_out * 2^14)` and
/// `beta_q = round(beta / s_out * 2^14)`:
///
/// - `mean = round(sum(x) / n)`, `d_i = x_i - mean`;
/// - `var = sum(d^2) / n + eps` in Q8 (floor), `std = round(sqrt(var))` in Q4;
/// - `inv = floor(2^44 / std)` (so `2^40 / std` in input units); normalised
///   `z_i = (d_i * inv) >> 24` (Q16, floor);
/// - `out_i = sat8((z_i * gamma_q_i + (beta_q_i << 16) + 2^29) >> 30)`.
///
/// Bounds: `|d| < 2^25`, `sum(d^2) < 2^50 * n < 2^63` for `n <= 8192` (the sum
/// saturates beyond, far past `MAX_HIDDEN`), `var` in Q8 `< 2^59`;
/// `|d * inv| <= 2^40 * sqrt(n) * 2^2`; `|z| <= 2^16 * sqrt(n) < 2^23`, so
/// `z * gamma_q < 2^54`: nothing overflows for any parameters and any `i32` input
/// (`tests/properties.rs` checks it with overflow checks on).
/// A constant input (`std == 0`) gives `out = sat8(beta_q >> 14)`.
///
/// The loops are compiled for AVX-512 where the CPU has it (`std`, chosen at run
/// time): same code, same results.
#[inline]
pub fn layer_norm_i32(out: &mut [i8], x: &[i32], gamma_q: &[i32], beta_q: &[i32], eps: i64) {
    dispatch!(
        layer_norm_i32_avx512,
        layer_norm_i32_body(out, x, gamma_q, beta_q, eps)
    )
}

/// [`layer_norm_i32`]'s scalar reference: the same definition in 64-bit arithmetic
/// throughout, no 32-bit form, no assembly; what the fast forms are tested against
/// (on the host, and on a Cortex-M4 by `examples/kernel-check-m4`).
pub fn layer_norm_i32_reference(
    out: &mut [i8],
    x: &[i32],
    gamma_q: &[i32],
    beta_q: &[i32],
    eps: i64,
) {
    layer_norm_i32_with(out, x, (gamma_q, beta_q, eps), false);
}

avx512_variant!(
    layer_norm_i32_avx512,
    layer_norm_i32_body(out: &mut [i8], x: &[i32], gamma_q: &[i32], beta_q: &[i32], eps: i64)
);

#[inline(always)]
fn layer_norm_i32_body(out: &mut [i8], x: &[i32], gamma_q: &[i32], beta_q: &[i32], eps: i64) {
    layer_norm_i32_with(out, x, (gamma_q, beta_q, eps), NARROW);
}

/// Whether [`layer_norm_i32`] takes its 32-bit form where it can: on 32-bit cores, where
/// a 64-bit product costs several instructions and `SMULL`/`SMLAL` one; not with
/// `small-kernels` (one code path, the 64-bit one).
const NARROW: bool = cfg!(target_pointer_width = "32") && !cfg!(feature = "small-kernels");

/// [`layer_norm_i32`], in its 32-bit form when `narrow` and the row allows it (at most
/// `2^13` elements and `inv < 2^31`): then `d` and `z` are `i32` (`|d| < 2^25`,
/// `|z| < 2^26`) and every product a 32 x 32 -> 64-bit one, with the same values.
#[inline(always)]
fn layer_norm_i32_with(
    out: &mut [i8],
    x: &[i32],
    (gamma_q, beta_q, eps): (&[i32], &[i32], i64),
    narrow: bool,
) {
    let n = x.len().max(1) as i64;
    let short = x.len() <= 1 << 13;
    let deviations = |mean: i32| {
        x.iter().map(move |&v| {
            let d = i64::from(clamp_residual(v) - mean);
            (d * d) as u64
        })
    };
    let (mean, sum_sq) = if narrow && short {
        // One pass: the sum and the sum of squares (each square below 2^48, their sum
        // below 2^61), then `sum((x - m)^2) = sum(x^2) + n m^2 - 2 m sum(x)` exactly,
        // for any `m` (the first two terms add up below 2^62, the third is at most
        // 2^62 and the result in `[0, 2^62]`).
        let (sum, squares) = sums(x);
        // `|mean| <= RESIDUAL_MAX`, so the deviations fit `i32`. (In 32 bits where
        // the sum fits: one `SDIV` instead of a 64-bit division's call.)
        let mean = match (i32::try_from(sum), i32::try_from(n)) {
            (Ok(sum), Ok(n)) if sum.unsigned_abs() < 1 << 30 && n < 1 << 16 => {
                (if sum >= 0 { sum + n / 2 } else { sum - n / 2 }) / n
            }
            _ => div_round(sum, n) as i32,
        };
        let m = i64::from(mean);
        (mean, (squares + n * m * m - 2 * m * sum) as u64)
    } else {
        let sum: i64 = x.iter().map(|&v| i64::from(clamp_residual(v))).sum();
        let mean = div_round(sum, n) as i32;
        // Each square is below 2^50, so up to 2^13 of them cannot reach 2^63: the
        // plain sum (which vectorises) equals the saturating one there; longer rows
        // saturate.
        let sum_sq = if short {
            deviations(mean).sum()
        } else {
            deviations(mean).fold(0u64, u64::saturating_add)
        };
        (mean, sum_sq)
    };
    // Variance with 8 fractional bits (Q8), so the standard deviation has 4 (Q4):
    // the floor of small integer variances would otherwise cost several percent.
    let n_u = n as u64;
    // (32-bit divisions on 32-bit cores: the remainder is below `n < 2^16`.)
    let (quotient, fraction) = match u16::try_from(n) {
        Ok(d) if narrow => {
            let (q, r) = div_rem_u16(sum_sq, d);
            (q, u64::from(((r as u32) << VAR_BITS) / u32::from(d)))
        }
        _ => (sum_sq / n_u, ((sum_sq % n_u) << VAR_BITS) / n_u),
    };
    let var_q8 = (quotient << VAR_BITS)
        + fraction
        + ((eps.clamp(0, i64::from(i32::MAX)) as u64) << VAR_BITS);
    let std_q4 = isqrt_round(var_q8);
    let inv = if std_q4 == 0 {
        0
    } else {
        div_u64(1 << (INV_BITS + VAR_BITS / 2), std_q4) as i64
    };
    let n = out.len();
    let in_step = x.len() == n && gamma_q.len() == n && beta_q.len() == n;
    match i32::try_from(inv) {
        Ok(inv) if narrow && short && in_step => {
            normalize_narrow(out, x, (gamma_q, beta_q), (mean, inv))
        }
        _ => {
            let element = |x: i32, g: i32, b: i32| {
                let d = i64::from(clamp_residual(x) - mean);
                let z = (d * inv) >> (INV_BITS - NORM_BITS);
                saturate_i8(scale(z, g, b) >> SCALE_SHIFT)
            };
            if in_step {
                // The forward pass's case, in step (a loop that vectorises).
                for (((o, &x), &g), &b) in out.iter_mut().zip(x).zip(gamma_q).zip(beta_q) {
                    *o = element(x, g, b);
                }
            } else {
                for (i, o) in out.iter_mut().enumerate() {
                    let at = |v: &[i32]| v.get(i).copied().unwrap_or(0);
                    *o = element(at(x), at(gamma_q), at(beta_q));
                }
            }
        }
    }
}

/// The right shift from `z * gamma_q` to int8 units.
const SCALE_SHIFT: u32 = NORM_BITS + PARAM_BITS;

/// `z * g + (b << NORM_BITS)` plus the rounding of [`SCALE_SHIFT`].
#[inline(always)]
fn scale(z: i64, g: i32, b: i32) -> i64 {
    z * i64::from(g) + (i64::from(b) << NORM_BITS) + (1 << (SCALE_SHIFT - 1))
}

/// `(a / d, a % d)` for `d >= 1` below `2^16` in 32-bit divisions (a digit of 16 bits
/// at a time: each partial dividend `r * 2^16 + digit < 2^32`), where a 64-bit
/// division is a library call on a 32-bit core. `d == 0` gives `(0, 0)`.
fn div_rem_u16(a: u64, d: u16) -> (u64, u64) {
    let d = u32::from(d);
    if d == 0 {
        return (0, 0);
    }
    let (mut quotient, mut remainder) = (0u64, 0u32);
    for shift in [48, 32, 16, 0] {
        let part = (remainder << 16) | ((a >> shift) as u32 & 0xffff);
        quotient = (quotient << 16) | u64::from(part / d);
        remainder = part % d;
    }
    (quotient, u64::from(remainder))
}

/// The sum and the sum of squares of the clamped values of `x` (at most `2^13` of
/// them: below `2^38` and `2^61`).
#[inline(always)]
fn sums(x: &[i32]) -> (i64, i64) {
    #[cfg(tinyformer_dsp)]
    if let Some(sums) = sums_dsp(x) {
        return sums;
    }
    x.iter().fold((0i64, 0i64), |(sum, squares), &v| {
        let v = clamp_residual(v);
        (sum + i64::from(v), squares + mul_wide(v, v))
    })
}

/// [`sums`] on DSP cores for rows of 1 to 127 values, whose sum fits 32 bits
/// (`|v| < 2^24`): per value a load, the clamp, an add and an `SMLAL`, 9 instructions
/// (the compiler's loop: 12). `None` for other lengths.
#[cfg(tinyformer_dsp)]
fn sums_dsp(x: &[i32]) -> Option<(i64, i64)> {
    if x.is_empty() || x.len() >= 128 {
        return None;
    }
    let (sum, lo, hi): (i32, u32, i32);
    // SAFETY: reads `x.len() >= 1` values of `x` (4-byte aligned), then the count-down
    // loop ends. Register-only ARMv7E-M instructions otherwise (cfg(tinyformer_dsp));
    // every register written is an output.
    unsafe {
        core::arch::asm!(
            "2:",
            "ldr {v}, [{p}], #4",
            crate::quant::clamp_residual_asm!("{v}"),
            "add {sum}, {sum}, {v}",
            "smlal {lo}, {hi}, {v}, {v}",
            "subs {n}, {n}, #1",
            "bne 2b",
            p = inout(reg) x.as_ptr() => _,
            n = inout(reg) x.len() => _,
            v = out(reg) _,
            sum = inout(reg) 0i32 => sum,
            lo = inout(reg) 0u32 => lo,
            hi = inout(reg) 0i32 => hi,
            options(readonly, nostack),
        );
    }
    Some((i64::from(sum), (i64::from(hi) << 32) | i64::from(lo)))
}

/// The normalisation of [`layer_norm_i32_with`]'s 32-bit form (`x`, `gamma_q` and
/// `beta_q` as long as `out`): not inlined, so that `inv` reaches it as an `i32` and
/// each product is one `SMULL` ([`mul_wide`]) or `SMLAL`. With `t = z * g + (b << 16)`,
/// `|t| < 2^57 + 2^47`, so `t >> 29` fits `i32`, and `((t >> 29) + 1) >> 1` is the
/// rounded `(t + 2^29) >> 30` (the same floor).
#[inline(never)]
fn normalize_narrow(
    out: &mut [i8],
    x: &[i32],
    (gamma_q, beta_q): (&[i32], &[i32]),
    (mean, inv): (i32, i32),
) {
    #[cfg(tinyformer_dsp)]
    if normalize_dsp(out, x, (gamma_q, beta_q), (mean, inv)) {
        return;
    }
    for (((o, &x), &g), &b) in out.iter_mut().zip(x).zip(gamma_q).zip(beta_q) {
        let d = clamp_residual(x) - mean;
        let z = (mul_wide(d, inv) >> (INV_BITS - NORM_BITS)) as i32;
        let t = mul_wide(z, g) + (i64::from(b) << NORM_BITS);
        *o = ((((t >> (SCALE_SHIFT - 1)) as i32) + 1) >> 1).clamp(-128, 127) as i8;
    }
}

/// [`normalize_narrow`]'s loop on DSP cores (`out`, `x`, `gamma_q`, `beta_q` of one
/// length, at least 1; `false` otherwise): the same steps with `SMULL`, `SMLAL` on
/// `(b << 16)` as a 64-bit pair, and `SSAT` for the rounding shift and clamp, 21
/// instructions per value (the compiler's loop: 24).
#[cfg(tinyformer_dsp)]
fn normalize_dsp(
    out: &mut [i8],
    x: &[i32],
    (gamma_q, beta_q): (&[i32], &[i32]),
    (mean, inv): (i32, i32),
) -> bool {
    let n = out.len();
    if n == 0 || x.len() != n || gamma_q.len() != n || beta_q.len() != n {
        return false;
    }
    // SAFETY: reads `n >= 1` values of `x`, `gamma_q` and `beta_q` (4-byte aligned) and
    // writes `n` bytes of `out`, then the count-down loop ends. Register-only ARMv7E-M
    // instructions otherwise (cfg(tinyformer_dsp)); every register written is an
    // output.
    unsafe {
        core::arch::asm!(
            "2:",
            // z = (clamp(x) - mean) * inv >> 24
            "ldr {v}, [{xp}], #4",
            crate::quant::clamp_residual_asm!("{v}"),
            "sub {v}, {v}, {mean}",
            "smull {lo}, {hi}, {v}, {inv}",
            "lsr {lo}, {lo}, #{z_shift}",
            "orr {v}, {lo}, {hi}, lsl #{z_up}",
            // t = z * g + (b << 16); out = sat8(((t >> 29) + 1) >> 1)
            "ldr {g}, [{gp}], #4",
            "ldr {hi}, [{bp}], #4",
            "lsl {lo}, {hi}, #{norm}",
            "asr {hi}, {hi}, #{norm_up}",
            "smlal {lo}, {hi}, {v}, {g}",
            "lsr {lo}, {lo}, #{t_shift}",
            "orr {v}, {lo}, {hi}, lsl #{t_up}",
            "add {v}, {v}, #1",
            "ssat {v}, #8, {v}, asr #1",
            "strb {v}, [{op}], #1",
            "subs {n}, {n}, #1",
            "bne 2b",
            xp = inout(reg) x.as_ptr() => _,
            gp = inout(reg) gamma_q.as_ptr() => _,
            bp = inout(reg) beta_q.as_ptr() => _,
            op = inout(reg) out.as_mut_ptr() => _,
            n = inout(reg) n => _,
            mean = in(reg) mean,
            inv = in(reg) inv,
            v = out(reg) _,
            g = out(reg) _,
            lo = out(reg) _,
            hi = out(reg) _,
            z_shift = const INV_BITS - NORM_BITS,
            z_up = const 32 - (INV_BITS - NORM_BITS),
            norm = const NORM_BITS,
            norm_up = const 32 - NORM_BITS,
            t_shift = const SCALE_SHIFT - 1,
            t_up = const 32 - (SCALE_SHIFT - 1),
            options(nostack),
        );
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::RESIDUAL_MAX;
    use crate::rng::XorShift64Star;

    #[test]
    fn float_layer_norm_normalises() {
        let mut x = [1.0f32, 2.0, 3.0, 4.0];
        layer_norm_f32(&mut x, &[1.0; 4], &[0.0; 4], 1e-12);
        let mean: f32 = x.iter().sum::<f32>() / 4.0;
        let var: f32 = x.iter().map(|v| v * v).sum::<f32>() / 4.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5);
    }

    /// The integer kernel against an f64 LayerNorm on random rows: every output within
    /// one int8 step of the rounded real result.
    #[test]
    fn integer_layer_norm_matches_f64() {
        let mut rng = XorShift64Star::new(7);
        let mut worst = 0f64;
        for case in 0..if cfg!(miri) { 12 } else { 300 } {
            let n = [1usize, 2, 7, 64, 384, 768][case % 6];
            let amp = [3.0, 300.0, 16384.0, 1e6][case % 4];
            let x: Vec<i32> = (0..n)
                .map(|_| ((rng.next_f64() * 2.0 - 1.0) * amp) as i32)
                .collect();
            let s_out = 0.05;
            let gamma: Vec<f64> = (0..n).map(|_| 0.5 + rng.next_f64()).collect();
            let beta: Vec<f64> = (0..n).map(|_| rng.next_f64() - 0.5).collect();
            let gq: Vec<i32> = gamma
                .iter()
                .map(|g| (g / s_out * 16384.0).round() as i32)
                .collect();
            let bq: Vec<i32> = beta
                .iter()
                .map(|b| (b / s_out * 16384.0).round() as i32)
                .collect();
            let mut out = vec![0i8; n];
            layer_norm_i32(&mut out, &x, &gq, &bq, 0);
            let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
            let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
            for i in 0..n {
                let want = if var == 0.0 {
                    beta[i] / s_out
                } else {
                    (x[i] as f64 - mean) / var.sqrt() * gamma[i] / s_out + beta[i] / s_out
                };
                let want = want.clamp(-128.0, 127.0);
                let err = (out[i] as f64 - want).abs();
                if var.sqrt() >= 16.0 {
                    worst = worst.max(err);
                }
            }
        }
        println!("worst error {worst:.3} int8 steps (measured 0.679)");
        assert!(worst <= 1.0, "worst error {worst} int8 steps");
    }

    /// The 32-bit form equals the 64-bit one, wherever it applies.
    #[test]
    fn division_by_16_bit_divisors() {
        let mut rng = XorShift64Star::new(3);
        for case in 0..if cfg!(miri) { 50 } else { 20_000 } {
            let a = match case % 4 {
                0 => u64::MAX,
                1 => rng.next_u64() >> (rng.next_u32() % 64),
                _ => rng.next_u64(),
            };
            let d = [1u16, 2, 96, 384, u16::MAX, (rng.next_u32() as u16).max(1)][case % 6];
            assert_eq!(
                div_rem_u16(a, d),
                (a / u64::from(d), a % u64::from(d)),
                "{a} / {d}"
            );
        }
    }

    #[test]
    fn narrow_form_equals_wide() {
        let mut rng = XorShift64Star::new(9);
        let r = RESIDUAL_MAX as i32;
        for case in 0..if cfg!(miri) { 8 } else { 400 } {
            let n = [1usize, 3, 96, 384][case % 4];
            let amp = [1u32, 40, 3000, 1 << 24, u32::MAX][case % 5];
            let x: Vec<i32> = (0..n)
                .map(|i| match (case + i) % 11 {
                    0 => r,
                    1 => -r - 5,
                    2 => i32::MIN,
                    _ => ((rng.next_u32() % amp) as i32).wrapping_sub((amp / 2) as i32),
                })
                .collect();
            let param = |rng: &mut XorShift64Star| match case % 3 {
                0 => rng.next_u32() as i32,
                _ => (rng.next_u32() % (1 << 20)) as i32 - (1 << 19),
            };
            let gq: Vec<i32> = (0..n).map(|_| param(&mut rng)).collect();
            let bq: Vec<i32> = (0..n).map(|_| param(&mut rng)).collect();
            let eps = [0i64, 1, 1 << 20][case % 3];
            let (mut narrow, mut wide) = (vec![0i8; n], vec![0i8; n]);
            layer_norm_i32_with(&mut narrow, &x, (&gq, &bq, eps), true);
            layer_norm_i32_reference(&mut wide, &x, &gq, &bq, eps);
            assert_eq!(narrow, wide, "case {case}");
        }
    }

    #[test]
    fn integer_layer_norm_extremes_do_not_overflow() {
        let r = RESIDUAL_MAX as i32;
        let x: Vec<i32> = (0..4096).map(|i| if i % 2 == 0 { r } else { -r }).collect();
        let mut out = vec![0i8; 4096];
        layer_norm_i32(
            &mut out,
            &x,
            &vec![i32::MAX; 4096],
            &vec![i32::MIN; 4096],
            i64::MAX,
        );
        layer_norm_i32(
            &mut out,
            &x,
            &vec![i32::MIN; 4096],
            &vec![i32::MAX; 4096],
            0,
        );
        let mut one = [0i8; 1];
        layer_norm_i32(&mut one, &[5], &[1 << 14], &[3 << 14], 0);
        assert_eq!(one, [3]);
        layer_norm_i32(&mut [], &[], &[], &[], 0);
    }

    #[test]
    fn compiled_for_avx512_matches_the_plain_build() {
        let mut rng = crate::rng::XorShift64Star::new(41);
        let n = if cfg!(miri) { 3 } else { 200 };
        for case in 0..n {
            let len = 1 + case % 97;
            let x: Vec<i32> = (0..len)
                .map(|_| (rng.next_u32() as i32) >> (case % 20))
                .collect();
            let gamma: Vec<i32> = (0..len).map(|_| (rng.next_u32() as i32) >> 12).collect();
            let beta: Vec<i32> = (0..len).map(|_| (rng.next_u32() as i32) >> 10).collect();
            // Equal lengths (the loop in step), then short parameters.
            for params in [len, len / 2] {
                let (mut got, mut want) = (vec![0i8; len], vec![0i8; len]);
                let eps = i64::from(case as i32 * 1000);
                layer_norm_i32(&mut got, &x, &gamma[..params], &beta[..params], eps);
                layer_norm_i32_body(&mut want, &x, &gamma[..params], &beta[..params], eps);
                assert_eq!(got, want, "case {case}");
            }
        }
    }
}
