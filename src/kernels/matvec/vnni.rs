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

/// `v[at..at + 32]`; `None` past the end.
#[inline]
#[target_feature(enable = "avx2")]
fn load(v: &[i8], at: usize) -> Option<__m256i> {
    let chunk = v.get(at..at + STEP)?;
    // SAFETY: `chunk` holds 32 bytes; `loadu` has no alignment requirement.
    Some(unsafe { _mm256_loadu_si256(chunk.as_ptr().cast()) })
}

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
    let body = cols - cols % STEP;
    let offset = _mm256_set1_epi8(i8::MIN);
    let mut acc = [_mm256_setzero_si256(); R];
    let mut at = 0;
    while at < body {
        if let Some(xv) = load(x, at) {
            for (r, acc) in acc.iter_mut().enumerate() {
                if let Some(wv) = load(w, r * cols + at) {
                    // SAFETY: AVX-VNNI is guaranteed by the caller.
                    *acc = unsafe { dpbusd(*acc, _mm256_xor_si256(wv, offset), xv) };
                }
            }
        }
        at += STEP;
    }
    let mut out = [0; R];
    for (r, (o, acc)) in out.iter_mut().zip(acc).enumerate() {
        let row_tail = w.get(r * cols + body..(r + 1) * cols).unwrap_or(&[]);
        let x_tail = x.get(body..).unwrap_or(&[]);
        *o = sum_lanes(acc)
            .wrapping_sub(correction)
            .wrapping_add(dot_i8_reference(row_tail, x_tail));
    }
    out
}

/// `dot_i8_reference(a, b)`.
///
/// # Safety
/// The CPU must support AVX-VNNI.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn dot(a: &[i8], b: &[i8]) -> i32 {
    let len = a.len().min(b.len());
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
