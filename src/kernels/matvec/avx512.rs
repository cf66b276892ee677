//! x86-64 AVX-512 VNNI products of int16 activations with int8 weights (the decoder's
//! "16x8" products), bit-exact against the scalar reference.
//!
//! 32 pairs per step: the weights sign-extended to int16 as they are loaded
//! (`vpmovsxbw`), then `vpdpwssd` multiplies them with 32 int16 activations and adds
//! each adjacent pair of products to one of 16 `i32` lanes of the accumulator, in one
//! instruction. Every pair sum is at most `2 * 32,767 * 128 < 2^23` and the
//! accumulation wraps (the non-saturating form), like the reference's wrapping sum.
//! A length that is not a multiple of 32 finishes with masked loads (masked-off lanes
//! read as zero and never touch memory), so no scalar tail runs.
//!
//! A matrix product visits the weights in tiles of `R` rows by `T` tokens: each
//! widened weight chunk serves `T` tokens and each token chunk `R` rows, so a prompt
//! of several tokens streams the weights once per `T` tokens instead of once per
//! token. Decoding one token is the `T = 1` case.
//!
//! The functions are safe to call only on a CPU with AVX-512 F/BW/VL and VNNI
//! (`#[target_feature]`), which the dispatch in `matvec.rs` checks.

use core::arch::x86_64::{
    __m512i, _mm256_add_epi32, _mm256_castsi256_si128, _mm256_extracti128_si256,
    _mm256_maskz_loadu_epi8, _mm512_add_epi32, _mm512_castsi512_si256, _mm512_cvtepi8_epi16,
    _mm512_dpwssd_epi32, _mm512_extracti64x4_epi64, _mm512_maskz_loadu_epi16, _mm512_setzero_si512,
    _mm512_unpackhi_epi32, _mm512_unpackhi_epi64, _mm512_unpacklo_epi32, _mm512_unpacklo_epi64,
    _mm_add_epi32, _mm_prefetch, _mm_storeu_si128, _MM_HINT_T0,
};

/// Elements per step.
const STEP: usize = 32;

/// How far ahead of the current weight chunk each row prefetches, in bytes. A
/// matrix-vector product streams its weights from memory once; without software
/// prefetch the kernel read 135 MB at 9-12 GB/s on the development machine (AMD EPYC,
/// AVX-512), with it at 25-34 GB/s, the rate of a loop that only touches each cache
/// line (scanned 512 B to 8 KiB: 4 KiB was best for 4-row tiles).
const PREFETCH: usize = 4096;

/// Weight rows per tile.
const ROWS: usize = 4;

/// Tokens per tile of a matrix product: 4 x 4 accumulators, 4 widened weight chunks
/// and a token chunk stay in the 32 vector registers.
const TOKENS: usize = 4;

/// `[sum(a), sum(b), sum(c), sum(d)]` of four 16-lane accumulators (wrapping).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
fn sum4(a: __m512i, b: __m512i, c: __m512i, d: __m512i) -> [i32; 4] {
    // Within each 128-bit block: [a0+a2, b0+b2, a1+a3, b1+b3], the same for c, d.
    let ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
    let cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
    // Within each block: [a, b, c, d] partial sums; then the four blocks added.
    let abcd = _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
    let half = _mm256_add_epi32(
        _mm512_castsi512_si256(abcd),
        _mm512_extracti64x4_epi64::<1>(abcd),
    );
    let quarter = _mm_add_epi32(
        _mm256_castsi256_si128(half),
        _mm256_extracti128_si256::<1>(half),
    );
    let mut out = [0i32; 4];
    // SAFETY: `out` holds 16 bytes; `storeu` has no alignment requirement.
    unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), quarter) };
    out
}

/// The `R x T` dot products of `R` weight rows (row `r` at `w + r * cols`) with `T`
/// token rows (token `t` at `x + t * cols`), all `cols` long.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL and VNNI; `w` must be readable for `R * cols`
/// bytes and `x` for `T * cols` elements.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile<const R: usize, const T: usize>(
    w: *const i8,
    x: *const i16,
    cols: usize,
) -> [[i32; T]; R] {
    let mut acc = [[_mm512_setzero_si512(); T]; R];
    let mut at = 0;
    while at < cols {
        // All 32 lanes, or the remaining `cols - at` (< 32) of the last step.
        let mask = match cols - at {
            left if left >= STEP => u32::MAX,
            left => (1u32 << left) - 1,
        };
        let mut xv = [_mm512_setzero_si512(); T];
        for (t, xv) in xv.iter_mut().enumerate() {
            // SAFETY: the lanes under `mask` are `x[t * cols + at..][..32 or left]`,
            // inside token row `t`; masked-off lanes are not read.
            *xv = unsafe { _mm512_maskz_loadu_epi16(mask, x.add(t * cols + at)) };
        }
        for r in 0..R {
            // A prefetch never faults, so an address past the weights is harmless
            // (`wrapping_add`: computing it is not undefined behaviour either).
            _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add(r * cols + at + PREFETCH));
        }
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: as above, inside weight row `r`.
            let wv = _mm512_cvtepi8_epi16(unsafe {
                _mm256_maskz_loadu_epi8(mask, w.add(r * cols + at))
            });
            for (acc, &xv) in acc.iter_mut().zip(&xv) {
                *acc = _mm512_dpwssd_epi32(*acc, wv, xv);
            }
        }
        at += STEP;
    }
    let mut out = [[0i32; T]; R];
    for t in 0..T {
        let mut r = 0;
        while r + 4 <= R {
            let s = sum4(acc[r][t], acc[r + 1][t], acc[r + 2][t], acc[r + 3][t]);
            for (i, s) in s.into_iter().enumerate() {
                out[r + i][t] = s;
            }
            r += 4;
        }
        while r < R {
            let z = _mm512_setzero_si512();
            out[r][t] = sum4(acc[r][t], z, z, z)[0];
            r += 1;
        }
    }
    out
}

/// `matmul_i16_reference(rows, cols, xs, w, store)`: tiles of [`ROWS`] weight rows by
/// [`TOKENS`] tokens, then the leftover tokens one at a time and the leftover rows one
/// at a time; a row `w` does not hold completely stores 0, as in the reference.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn matmul_i16(
    rows: usize,
    cols: usize,
    xs: &[i16],
    w: &[i8],
    mut store: impl FnMut(usize, usize, i32),
) {
    if cols == 0 {
        return;
    }
    let tokens = xs.len() / cols;
    let held = rows.min(w.len() / cols);
    let (x, wp) = (xs.as_ptr(), w.as_ptr());
    let mut o = 0;
    while o < held {
        let mut t = 0;
        if o + ROWS <= held {
            while t + TOKENS <= tokens {
                // SAFETY: rows `o..o + ROWS` are within the `held` rows of `w`, tokens
                // `t..t + TOKENS` within `xs`; the caller checked the CPU.
                let d = unsafe { tile::<ROWS, TOKENS>(wp.add(o * cols), x.add(t * cols), cols) };
                for (r, d) in d.into_iter().enumerate() {
                    for (i, d) in d.into_iter().enumerate() {
                        store(t + i, o + r, d);
                    }
                }
                t += TOKENS;
            }
            while t < tokens {
                // SAFETY: as above, one token.
                let d = unsafe { tile::<ROWS, 1>(wp.add(o * cols), x.add(t * cols), cols) };
                for (r, [d]) in d.into_iter().enumerate() {
                    store(t, o + r, d);
                }
                t += 1;
            }
            o += ROWS;
        } else {
            while t < tokens {
                // SAFETY: row `o < held`, token `t < tokens`.
                let [[d]] = unsafe { tile::<1, 1>(wp.add(o * cols), x.add(t * cols), cols) };
                store(t, o, d);
                t += 1;
            }
            o += 1;
        }
    }
    for o in held..rows {
        for t in 0..tokens {
            store(t, o, 0);
        }
    }
}

/// `matvec_i16_reference(rows, x, w, store)`: [`matmul_i16`] for one token.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn matvec_i16(rows: usize, x: &[i16], w: &[i8], mut store: impl FnMut(usize, i32)) {
    if x.is_empty() {
        // No columns: every dot product is the empty sum.
        (0..rows).for_each(|o| store(o, 0));
        return;
    }
    matmul_i16(rows, x.len(), x, w, |_, o, acc| store(o, acc));
}
