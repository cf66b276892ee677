//! Matrix-vector products, `y = W x + b`, with `W` row-major `[out, in]`.

use half::f16;

/// A weight element that the float kernels widen to `f32`.
pub trait Weight: Copy + bytemuck::Pod {
    /// Widens to `f32`.
    fn to_f32(self) -> f32;
}

impl Weight for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
}

impl Weight for f16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
}

/// `out[o] = bias[o] + sum_i w[o * x.len() + i] * x[i]`, accumulated in `f32`.
///
/// `w` holds `out.len()` rows of `x.len()` elements; missing rows or bias entries
/// read as zero (never happens for validated models).
pub fn matvec_f32<W: Weight>(out: &mut [f32], x: &[f32], w: &[W], bias: &[f32]) {
    let cols = x.len();
    for (o, y) in out.iter_mut().enumerate() {
        let row = w.get(o * cols..(o + 1) * cols).unwrap_or(&[]);
        let mut acc = 0.0f32;
        for (wi, xi) in row.iter().zip(x) {
            acc += wi.to_f32() * xi;
        }
        *y = acc + bias.get(o).copied().unwrap_or(0.0);
    }
}

/// Longest int8 dot product whose `i32` accumulator cannot overflow:
/// `|sum| <= len * 128 * 128 <= i32::MAX` holds for `len <= 131_071` (`2^17 - 1`).
///
/// Every `in` dimension a validated model can have (`hidden`, `ffn`, `head_dim`) is
/// bounded by [`crate::format::limits`] well below this; a compile-time assertion
/// there ties the two together.
pub const MAX_DOT_LEN: usize = i32::MAX as usize / (128 * 128);

/// Dot product of two int8 vectors into `i32`.
///
/// Exact (no overflow) when the shorter of `a`, `b` has at most [`MAX_DOT_LEN`]
/// elements; the format's config validation guarantees it for every dot product of the
/// forward pass.
#[inline]
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = 0i32;
    for (&x, &y) in a.iter().zip(b) {
        acc += i32::from(x) * i32::from(y);
    }
    acc
}

/// int8 matrix-vector product: for each output row `o`, calls
/// `store(o, bias[o] + dot(W[o], x))` with the `i32` accumulator (bias added with
/// saturation). The caller requantizes, so one kernel serves int8 and residual outputs.
///
/// The accumulator is exact for `x.len() <= MAX_DOT_LEN` (see [`MAX_DOT_LEN`]).
#[inline]
pub fn matvec_i8(rows: usize, x: &[i8], w: &[i8], bias: &[i32], mut store: impl FnMut(usize, i32)) {
    let cols = x.len();
    for o in 0..rows {
        let row = w.get(o * cols..(o + 1) * cols).unwrap_or(&[]);
        let acc = dot_i8(row, x).saturating_add(bias.get(o).copied().unwrap_or(0));
        store(o, acc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_matvec_small() {
        let w = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut out = [0.0f32; 2];
        matvec_f32(&mut out, &[1.0, 0.5, -1.0], &w, &[0.25, -0.25]);
        assert_eq!(out, [1.0 + 1.0 - 3.0 + 0.25, 4.0 + 2.5 - 6.0 - 0.25]);
        let wh: [f16; 6] = w.map(f16::from_f32);
        let mut out16 = [0.0f32; 2];
        matvec_f32(&mut out16, &[1.0, 0.5, -1.0], &wh, &[0.25, -0.25]);
        assert_eq!(out, out16);
    }

    #[test]
    fn int8_matvec_extremes() {
        let x = [-128i8; 64];
        let w = [-128i8; 128];
        let mut got = [0i32; 2];
        matvec_i8(2, &x, &w, &[i32::MAX, 5], |o, v| got[o] = v);
        assert_eq!(got, [i32::MAX, 64 * 16384 + 5]);
    }
}
