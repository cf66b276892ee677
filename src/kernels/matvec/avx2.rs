//! x86-64 AVX2 int8 dot products, bit-exact against the scalar reference.
//!
//! 16 int8 pairs per step: both sides sign-extended to int16 (`vpmovsxbw`), multiplied
//! and summed in adjacent pairs into eight `i32` lanes (`vpmaddwd`: each pair sum is at
//! most `2 * 128 * 128 = 2^15`, exact), added to an `i32` accumulator (wrapping, like
//! the reference). The unsigned-by-signed byte product (`vpmaddubsw`) is avoided: it
//! saturates at `i16` and cannot represent `-128 * -128 * 2`. Lengths that are not a
//! multiple of 16 finish with the scalar reference on the tail.
//!
//! The functions are safe to call only on a CPU with AVX2 (`#[target_feature]`), which
//! the dispatch in `matvec.rs` checks.

use core::arch::x86_64::{
    __m256i, _mm256_add_epi32, _mm256_castsi256_si128, _mm256_cvtepi8_epi16,
    _mm256_extracti128_si256, _mm256_loadu_si256, _mm256_madd_epi16, _mm256_setzero_si256,
    _mm_add_epi32, _mm_cvtsi128_si32, _mm_loadu_si128, _mm_prefetch, _mm_shuffle_epi32,
    _MM_HINT_T0,
};

use super::{dot_i16_reference, dot_i8_reference};

/// Int8 elements per step.
const STEP: usize = 16;

/// How far ahead of the current chunk each weight row prefetches, in bytes (see
/// `avx512.rs`: a streamed matrix-vector product is otherwise bound by memory latency).
const PREFETCH: usize = 4096;

/// `v[at..at + 16]` sign-extended to sixteen `i16` lanes; `None` past the end.
#[inline]
#[target_feature(enable = "avx2")]
fn widen(v: &[i8], at: usize) -> Option<__m256i> {
    let chunk = v.get(at..at + STEP)?;
    // SAFETY: `chunk` holds 16 bytes; `loadu` has no alignment requirement.
    Some(_mm256_cvtepi8_epi16(unsafe {
        _mm_loadu_si128(chunk.as_ptr().cast())
    }))
}

/// Sum of the eight `i32` lanes (wrapping).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn sum_lanes(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// `reference(x, w)` (the scalar dot product of activations `x` and int8 weights `w`
/// over their common length): 16 elements per step, `load` giving activations as
/// sixteen `i16` lanes, the weights widened, `vpmaddwd`, the tail by `reference`.
#[inline]
#[target_feature(enable = "avx2")]
fn dot_with<X>(
    x: &[X],
    w: &[i8],
    load: impl Fn(&[X], usize) -> Option<__m256i>,
    reference: impl Fn(&[X], &[i8]) -> i32,
) -> i32 {
    let len = x.len().min(w.len());
    let body = len - len % STEP;
    let mut acc = _mm256_setzero_si256();
    let mut at = 0;
    while at < body {
        if let (Some(xv), Some(wv)) = (load(x, at), widen(w, at)) {
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(xv, wv));
        }
        at += STEP;
    }
    let (x_tail, w_tail) = (
        x.get(body..len).unwrap_or(&[]),
        w.get(body..len).unwrap_or(&[]),
    );
    sum_lanes(acc).wrapping_add(reference(x_tail, w_tail))
}

/// [`dot_with`] for four contiguous weight rows `w4 = [W0 | W1 | W2 | W3]` (each
/// `x.len()` long); each loaded activation chunk serves all four rows.
#[inline]
#[target_feature(enable = "avx2")]
fn dot4_with<X>(
    w4: &[i8],
    x: &[X],
    load: impl Fn(&[X], usize) -> Option<__m256i>,
    reference: impl Fn(&[X], &[i8]) -> i32,
) -> [i32; 4] {
    let cols = x.len();
    let body = cols - cols % STEP;
    let mut acc = [_mm256_setzero_si256(); 4];
    let mut at = 0;
    while at < body {
        for r in 0..4 {
            // A prefetch never faults, so an address past the weights is harmless
            // (`wrapping_add`: computing it is not undefined behaviour either).
            let ahead = w4.as_ptr().wrapping_add(r * cols + at + PREFETCH);
            _mm_prefetch::<_MM_HINT_T0>(ahead);
        }
        if let Some(xv) = load(x, at) {
            for (r, acc) in acc.iter_mut().enumerate() {
                if let Some(wv) = widen(w4, r * cols + at) {
                    *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(wv, xv));
                }
            }
        }
        at += STEP;
    }
    let mut out = [0; 4];
    for (r, (o, acc)) in out.iter_mut().zip(acc).enumerate() {
        let row_tail = w4.get(r * cols + body..(r + 1) * cols).unwrap_or(&[]);
        let x_tail = x.get(body..).unwrap_or(&[]);
        *o = sum_lanes(acc).wrapping_add(reference(x_tail, row_tail));
    }
    out
}

/// `dot_i8_reference(a, b)`.
#[target_feature(enable = "avx2")]
pub(super) fn dot(a: &[i8], b: &[i8]) -> i32 {
    dot_with(a, b, |v, at| widen(v, at), dot_i8_reference)
}

/// [`dot4_with`] for int8 activations.
#[inline]
#[target_feature(enable = "avx2")]
fn dot4(w4: &[i8], x: &[i8]) -> [i32; 4] {
    dot4_with(w4, x, |v, at| widen(v, at), dot_i8_reference)
}

/// `matvec_i8_reference(rows, x, w, bias, store)`.
#[target_feature(enable = "avx2")]
pub(super) fn matvec(rows: usize, x: &[i8], w: &[i8], bias: &[i32], store: impl FnMut(usize, i32)) {
    // The closures inherit AVX2 from this function, so `dot4` and `dot` inline.
    super::matvec_by_four(
        rows,
        x,
        w,
        bias,
        store,
        |w4, x| dot4(w4, x),
        |row, x| dot(row, x),
    );
}

/// `x[at..at + 16]` as sixteen `i16` lanes; `None` past the end.
#[inline]
#[target_feature(enable = "avx2")]
fn load_i16(x: &[i16], at: usize) -> Option<__m256i> {
    let chunk = x.get(at..at + STEP)?;
    // SAFETY: `chunk` holds 16 i16 (32 bytes); `loadu` has no alignment requirement.
    Some(unsafe { _mm256_loadu_si256(chunk.as_ptr().cast()) })
}

/// `matvec_i16_reference(rows, x, w, store)`.
#[target_feature(enable = "avx2")]
pub(super) fn matvec_i16(rows: usize, x: &[i16], w: &[i8], store: impl FnMut(usize, i32)) {
    super::matvec_by_four(
        rows,
        x,
        w,
        &[],
        store,
        |w4, x| dot4_with(w4, x, |v, at| load_i16(v, at), dot_i16_reference),
        |row, x| dot_with(x, row, |v, at| load_i16(v, at), dot_i16_reference),
    );
}
