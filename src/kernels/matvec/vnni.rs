//! x86-64 AVX-VNNI int8 dot products, bit-exact against the scalar reference.
//!
//! `vpdpbusd` multiplies 32 unsigned-by-signed byte pairs and adds each group of four
//! products to one of eight `i32` lanes, in one instruction (twice the pairs of the
//! AVX2 path's `vpmaddwd`, and no widening). Its first operand is unsigned, so the
//! weights are offset by 128 (`w ^ 0x80` reads as the byte `w + 128`) and the excess
//! removed afterwards:
//!
//! `sum_i (w_i + 128) x_i = sum_i w_i x_i + 128 * sum_i x_i`.
//!
//! The correction depends only on `x`, so a matrix-vector product computes it once
//! for all rows. Every addition wraps in `i32` (the lanes, the correction, the
//! subtraction): arithmetic modulo 2^32 gives the reference's wrapping sum exactly,
//! whatever the intermediate values. Lengths that are not a multiple of 32 finish with
//! the scalar reference on the tail.
//!
//! The instruction is written with `asm!` (the `vpdpbusd` intrinsics need Rust 1.89;
//! the crate's MSRV is 1.87). The functions are `unsafe`: the CPU must support
//! AVX-VNNI, which the dispatch in `matvec.rs` checks (CPUID, cached).

use core::arch::asm;
use core::arch::x86_64::{
    __m256i, _mm256_loadu_si256, _mm256_set1_epi8, _mm256_setzero_si256, _mm256_xor_si256,
};

use super::avx2::sum_lanes;
use super::dot_i8_reference;

/// Int8 elements per step.
const STEP: usize = 32;

/// `acc + dpbusd(u, s)`: each `i32` lane adds the four products of its bytes, `u`
/// unsigned and `s` signed (wrapping).
///
/// # Safety
/// The CPU must support AVX-VNNI.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn dpbusd(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    let mut acc = acc;
    // SAFETY: a register-only instruction (no memory, stack or flags); the caller
    // guarantees AVX-VNNI. `{vex}` selects the AVX-VNNI encoding (not AVX-512).
    unsafe {
        asm!(
            "{{vex}} vpdpbusd {acc}, {u}, {s}",
            acc = inout(ymm_reg) acc,
            u = in(ymm_reg) u,
            s = in(ymm_reg) s,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}

/// The correction `128 * sum(x[..body])` (wrapping).
#[inline]
fn offset_correction(x: &[i8], body: usize) -> i32 {
    let sum = x
        .get(..body)
        .unwrap_or(&[])
        .iter()
        .fold(0i32, |s, &v| s.wrapping_add(i32::from(v)));
    sum.wrapping_mul(128)
}

/// Dot products of `R` contiguous rows `w = [W0 | W1 | ...]` (each `x.len()` long)
/// with `x`, given `correction = offset_correction(x, body)`.
///
/// # Safety
/// The CPU must support AVX-VNNI.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn dot_rows<const R: usize>(w: &[i8], x: &[i8], correction: i32) -> [i32; R] {
    let cols = x.len();
    // SAFETY: AVX-VNNI is guaranteed by the caller.
    unsafe { products::<R, 1>(w, cols, x, cols, &[correction]) }.map(|[d]| d)
}

/// The `R x T` dot products of `R` weight rows (row `r` is `w[r * w_stride..]`) with
/// `T` contiguous token rows `xs`, all `cols` long, given each token's
/// `offset_correction(x, body)`: the shared inner loop of every kernel here. Each
/// offset weight chunk serves `T` tokens and each token chunk `R` rows, from registers.
///
/// # Safety
/// The CPU must support AVX-VNNI.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn products<const R: usize, const T: usize>(
    w: &[i8],
    w_stride: usize,
    xs: &[i8],
    cols: usize,
    correction: &[i32; T],
) -> [[i32; T]; R] {
    let body = cols - cols % STEP;
    let mut out = [[0; T]; R];
    let w_row = |r: usize| w.get(r * w_stride..r * w_stride + cols).unwrap_or(&[]);
    // The extent the loads below read, with checked arithmetic: the bound the unsafe
    // loads rest on must not wrap.
    let w_extent = R
        .checked_sub(1)
        .and_then(|r| r.checked_mul(w_stride))
        .and_then(|e| e.checked_add(cols));
    let x_extent = T.checked_mul(cols);
    let in_bounds =
        matches!((w_extent, x_extent), (Some(we), Some(xe)) if we <= w.len() && xe <= xs.len());
    if !in_bounds {
        // Not from this module's callers; kept total with the reference.
        for (r, out) in out.iter_mut().enumerate() {
            for (t, o) in out.iter_mut().enumerate() {
                *o = dot_i8_reference(w_row(r), token(xs, t, cols));
            }
        }
        return out;
    }
    let offset = _mm256_set1_epi8(i8::MIN);
    let mut acc = [[_mm256_setzero_si256(); T]; R];
    let (wp, xp) = (w.as_ptr(), xs.as_ptr());
    let mut at = 0;
    while at < body {
        // SAFETY (loads): `at + STEP <= body <= cols`, so row `r < R` reads
        // `r * w_stride + at .. + STEP` within `(R - 1) * w_stride + cols <= w.len()`
        // and token `t < T` within `T * cols <= xs.len()` (both checked above without
        // overflow; `R >= 1`, else `w_extent` is `None`); `loadu` has no alignment
        // requirement. Slices here would cost a bounds check per load (measured: a
        // quarter of the kernel's instructions).
        let wv: [__m256i; R] = core::array::from_fn(|r| unsafe {
            _mm256_xor_si256(_mm256_loadu_si256(wp.add(r * w_stride + at).cast()), offset)
        });
        for t in 0..T {
            // SAFETY: in bounds, as for the weight loads above.
            let xv = unsafe { _mm256_loadu_si256(xp.add(t * cols + at).cast()) };
            for (acc, wv) in acc.iter_mut().zip(&wv) {
                if let Some(acc) = acc.get_mut(t) {
                    // SAFETY: AVX-VNNI is guaranteed by the caller.
                    *acc = unsafe { dpbusd(*acc, *wv, xv) };
                }
            }
        }
        at += STEP;
    }
    for (r, (out, acc)) in out.iter_mut().zip(acc).enumerate() {
        let w_tail = w_row(r).get(body..).unwrap_or(&[]);
        for ((o, acc), (t, c)) in out.iter_mut().zip(acc).zip(correction.iter().enumerate()) {
            let x_tail = token(xs, t, cols).get(body..).unwrap_or(&[]);
            *o = sum_lanes(acc)
                .wrapping_sub(*c)
                .wrapping_add(dot_i8_reference(w_tail, x_tail));
        }
    }
    out
}

/// `dots_i8_reference(out, q, keys, stride)`: four keys per pass, sharing each
/// chunk of `q` and its correction.
///
/// # Safety
/// The CPU must support AVX-VNNI.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn dots(out: &mut [i32], q: &[i8], keys: &[i8], stride: usize) {
    const KEYS: usize = 4;
    let cols = q.len();
    if cols < STEP {
        // Too short for one 32-byte step (e.g. heads of 16): AVX2 steps by 16.
        for (j, o) in out.iter_mut().enumerate() {
            *o = super::avx2::dot(super::strided_row(keys, j, stride, cols), q);
        }
        return;
    }
    let correction = offset_correction(q, cols - cols % STEP);
    let mut j = 0;
    // `KEYS` rows from `j` on: `(j + KEYS - 1) * stride + cols` bytes, checked.
    let group = |j: usize| {
        let end = (j + KEYS - 1).checked_mul(stride)?.checked_add(cols)?;
        keys.get(j.checked_mul(stride)?..end)
    };
    while let (Some(w), Some(out)) = (group(j), out.get_mut(j..j + KEYS)) {
        // SAFETY: AVX-VNNI is guaranteed by the caller.
        let sums = unsafe { products::<KEYS, 1>(w, stride, q, cols, &[correction]) };
        for (o, [s]) in out.iter_mut().zip(sums) {
            *o = s;
        }
        j += KEYS;
    }
    for (j, o) in out.iter_mut().enumerate().skip(j) {
        let key = super::strided_row(keys, j, stride, cols);
        // SAFETY: AVX-VNNI is guaranteed by the caller.
        *o = unsafe { dot(key, q) };
    }
}

/// `dot_i8_reference(a, b)`.
///
/// # Safety
/// The CPU must support AVX-VNNI.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn dot(a: &[i8], b: &[i8]) -> i32 {
    let len = a.len().min(b.len());
    if len < STEP {
        // No whole 32-byte step: AVX2 steps by 16.
        return super::avx2::dot(a, b);
    }
    let (a, b) = (a.get(..len).unwrap_or(&[]), b.get(..len).unwrap_or(&[]));
    let correction = offset_correction(b, len - len % STEP);
    // SAFETY: AVX-VNNI is guaranteed by the caller.
    let [d] = unsafe { dot_rows::<1>(a, b, correction) };
    d
}

/// `matvec_i8_reference(rows, x, w, bias, store)`.
///
/// # Safety
/// The CPU must support AVX-VNNI.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn matvec(
    rows: usize,
    x: &[i8],
    w: &[i8],
    bias: &[i32],
    store: impl FnMut(usize, i32),
) {
    let cols = x.len();
    let correction = offset_correction(x, cols - cols % STEP);
    // The closures inherit AVX2 from this function, so the row kernels inline.
    super::matvec_by_four(
        rows,
        x,
        w,
        bias,
        store,
        // SAFETY (both): AVX-VNNI is guaranteed by the caller.
        |w4, x| unsafe { dot_rows::<4>(w4, x, correction) },
        |row, x| unsafe { dot(row, x) },
    );
}

/// Tokens per tile of [`matmul`]: each weight chunk loaded serves this many tokens.
const TOKENS: usize = 4;
/// Weight rows per tile of [`matmul`]: `ROWS * TOKENS` = 12 accumulators, enough
/// independent `vpdpbusd` chains to hide its latency, plus `ROWS` offset weight
/// registers and one token register fill the 16 YMM registers (measured: 47 ms vs
/// 48 ms with 2 rows for the MiniLM-sized forward at 128 tokens).
const ROWS: usize = 3;

/// Tokens whose corrections [`matmul`] keeps at a time.
const CHUNK: usize = 32;

/// Token `k` (of `cols` elements) of `chunk`; empty past the end.
#[inline(always)]
fn token(chunk: &[i8], k: usize, cols: usize) -> &[i8] {
    chunk.get(k * cols..(k + 1) * cols).unwrap_or(&[])
}

/// `matmul_i8_reference(rows, cols, xs, w, bias, store)`. Tokens go in chunks of up
/// to 32; within a chunk each group of `ROWS` weight rows stays in L1 while every group of
/// four tokens takes a `ROWS x TOKENS` tile (leftover tokens a `ROWS x 1` one), so the
/// weights stream from memory once per chunk instead of once per token. Rows `w` does
/// not hold completely, and the last `rows % ROWS`, go through [`dot`].
///
/// # Safety
/// The CPU must support AVX-VNNI.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn matmul(
    rows: usize,
    cols: usize,
    xs: &[i8],
    w: &[i8],
    bias: &[i32],
    mut store: impl FnMut(usize, usize, i32),
) {
    let body = cols - cols % STEP;
    let bias_at = |o: usize| bias.get(o).copied().unwrap_or(0);
    let tokens = xs.len().checked_div(cols).unwrap_or(0);
    // Rows held completely, in whole groups.
    let grouped = (w.len() / cols.max(1)).min(rows) / ROWS * ROWS;
    let mut t0 = 0;
    while t0 < tokens {
        let n = (tokens - t0).min(CHUNK);
        let chunk = xs.get(t0 * cols..(t0 + n) * cols).unwrap_or(&[]);
        let mut correction = [0i32; CHUNK];
        for (k, c) in correction.iter_mut().enumerate().take(n) {
            *c = offset_correction(token(chunk, k, cols), body);
        }
        let mut o = 0;
        while o < grouped {
            let w_rows = w.get(o * cols..(o + ROWS) * cols).unwrap_or(&[]);
            let mut k = 0;
            while k + TOKENS <= n {
                let group = chunk.get(k * cols..(k + TOKENS) * cols).unwrap_or(&[]);
                let mut c = [0; TOKENS];
                c.copy_from_slice(correction.get(k..k + TOKENS).unwrap_or(&[0; TOKENS]));
                // SAFETY: AVX-VNNI is guaranteed by the caller.
                let sums = unsafe { products::<ROWS, TOKENS>(w_rows, cols, group, cols, &c) };
                for (r, sums) in sums.iter().enumerate() {
                    for (j, &s) in sums.iter().enumerate() {
                        store(t0 + k + j, o + r, s.saturating_add(bias_at(o + r)));
                    }
                }
                k += TOKENS;
            }
            for k in k..n {
                let c = correction.get(k).copied().unwrap_or(0);
                // SAFETY: AVX-VNNI is guaranteed by the caller.
                let sums = unsafe { dot_rows::<ROWS>(w_rows, token(chunk, k, cols), c) };
                for (r, &s) in sums.iter().enumerate() {
                    store(t0 + k, o + r, s.saturating_add(bias_at(o + r)));
                }
            }
            o += ROWS;
        }
        for o in grouped..rows {
            let row = w.get(o * cols..(o + 1) * cols).unwrap_or(&[]);
            for k in 0..n {
                // SAFETY: AVX-VNNI is guaranteed by the caller.
                let d = unsafe { dot(row, token(chunk, k, cols)) };
                store(t0 + k, o, d.saturating_add(bias_at(o)));
            }
        }
        t0 += n;
    }
}
