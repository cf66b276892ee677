//! x86-64 AVX-512 VNNI products, bit-exact against the scalar reference: the decoder's
//! int16-by-int8 products (first), the encoder's int8 tile products with the tokens
//! in the lanes, and attention's weighted values for a block of query rows (below).
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

use super::RowsI8;
use core::arch::x86_64::{
    __m128i, __m512i, _mm256_add_epi32, _mm256_castsi256_si128, _mm256_extracti128_si256,
    _mm256_maskz_loadu_epi8, _mm256_set_m128i, _mm512_add_epi32, _mm512_and_si512,
    _mm512_castsi512_si256, _mm512_cmplt_epi32_mask, _mm512_cvtepi8_epi16, _mm512_dpbusd_epi32,
    _mm512_dpwssd_epi32, _mm512_extracti64x4_epi64, _mm512_loadu_si512, _mm512_mask_blend_epi32,
    _mm512_mask_storeu_epi32, _mm512_maskz_loadu_epi16, _mm512_maskz_loadu_epi32,
    _mm512_maskz_loadu_epi8, _mm512_reduce_add_epi32, _mm512_set1_epi32, _mm512_set1_epi8,
    _mm512_setzero_si512, _mm512_shuffle_i32x4, _mm512_slli_epi32, _mm512_srai_epi32,
    _mm512_storeu_si512, _mm512_sub_epi32, _mm512_unpackhi_epi32, _mm512_unpackhi_epi64,
    _mm512_unpacklo_epi32, _mm512_unpacklo_epi64, _mm512_xor_si512, _mm_add_epi32,
    _mm_maskz_loadu_epi8, _mm_prefetch, _mm_setzero_si128, _mm_storeu_si128, _mm_unpackhi_epi8,
    _mm_unpacklo_epi8, _MM_HINT_T0,
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

// ---------------------------------------------------------------------------------
// int8 x int8 matrix products: tokens in the lanes.
// ---------------------------------------------------------------------------------
//
// The products above put consecutive columns of one (row, token) pair in the lanes and
// add the lanes up at the end. The int8 matrix product below turns that around, the
// layout of MLAS and oneDNN: each `i32` lane is one token, and `vpdpbusd` adds four
// columns of that token times the same four columns of one weight row, broadcast to
// every lane. So a register holds one output channel of 16 tokens, nothing is added
// across lanes, and a tile of 16 weight rows x 16 tokens is 16 accumulators fed by one
// token load and 16 four-byte weight broadcasts per four columns. A 16 x 16 transpose
// at the end turns the tile into 16 token rows of 16 channels, stored contiguously.
//
// The tokens are packed for this once per chunk of columns (the weights are read in
// place): token bytes offset to unsigned (`x ^ 0x80` reads as `x + 128`, the operand
// `vpdpbusd` takes unsigned), four columns of 16 tokens per 64-byte group. The offset
// adds `128 * sum(w_row)` to every product of that row, removed with the row's sum.
// Every addition wraps in `i32`, so the result is the reference's wrapping sum.

/// Tokens per register: one `i32` lane each.
const LANES: usize = 16;

/// Tokens packed at a time: four registers of [`LANES`].
const CHUNK_TOKENS: usize = 4 * LANES;

/// Columns packed at a time (a multiple of 64): the packed chunk is
/// `CHUNK_TOKENS * CHUNK_COLS` bytes on the stack (32 KiB), one token block's 8 KiB and
/// one weight tile's chunk (16 rows) 8 KiB, so the tile's rows stay in L1 while they
/// serve every token block. Measured on the 64 x 1536 x 384 product: 354 GMAC/s with
/// 256 columns (two chunks of a 384-long row, the second added to the first's sums in
/// memory), 407 with 512; 768 and 1536 no faster.
const CHUNK_COLS: usize = 512;

/// A 16 x 16 transpose of `i32` lanes: lane `c` of output `t` is lane `t` of input
/// `c`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
fn transpose16(r: [__m512i; 16]) -> [__m512i; 16] {
    // Within each 128-bit block k: pairs of inputs interleaved by 32 and then 64 bits
    // give b[4i + j] = [r4i, r4i+1, r4i+2, r4i+3] at lane 4k + j.
    let a: [__m512i; 16] = core::array::from_fn(|n| {
        let (lo, hi) = (r[n & !1], r[n | 1]);
        if n % 2 == 0 {
            _mm512_unpacklo_epi32(lo, hi)
        } else {
            _mm512_unpackhi_epi32(lo, hi)
        }
    });
    let b: [__m512i; 16] = core::array::from_fn(|n| {
        let (i, j) = (n / 4, n % 4);
        let (p, q) = (a[4 * i + (j / 2)], a[4 * i + 2 + (j / 2)]);
        if j % 2 == 0 {
            _mm512_unpacklo_epi64(p, q)
        } else {
            _mm512_unpackhi_epi64(p, q)
        }
    });
    // Then a 4 x 4 transpose of 128-bit blocks among b[j], b[4 + j], b[8 + j],
    // b[12 + j]: output 4k + j takes block k of each.
    let mut out = [_mm512_setzero_si512(); 16];
    for j in 0..4 {
        let c0 = _mm512_shuffle_i32x4::<0x44>(b[j], b[4 + j]);
        let c1 = _mm512_shuffle_i32x4::<0xEE>(b[j], b[4 + j]);
        let c2 = _mm512_shuffle_i32x4::<0x44>(b[8 + j], b[12 + j]);
        let c3 = _mm512_shuffle_i32x4::<0xEE>(b[8 + j], b[12 + j]);
        out[j] = _mm512_shuffle_i32x4::<0x88>(c0, c2);
        out[4 + j] = _mm512_shuffle_i32x4::<0xDD>(c0, c2);
        out[8 + j] = _mm512_shuffle_i32x4::<0x88>(c1, c3);
        out[12 + j] = _mm512_shuffle_i32x4::<0xDD>(c1, c3);
    }
    out
}

/// Mask of the first `n` (at most 64) bytes.
#[inline(always)]
fn byte_mask(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// Mask of the first `n` (at most 16) `i32` lanes.
#[inline(always)]
fn lane_mask(n: usize) -> u16 {
    if n >= LANES {
        u16::MAX
    } else {
        (1u16 << n) - 1
    }
}

/// `a + b` per lane, saturated to the `i32` range (`i32::saturating_add`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
fn saturating_add(a: __m512i, b: __m512i) -> __m512i {
    let sum = _mm512_add_epi32(a, b);
    // Overflow iff both operands have the sign the sum lacks; then the bound of a's
    // sign: `(a >> 31) ^ i32::MAX` is MAX for a >= 0 and MIN for a < 0.
    let both = _mm512_and_si512(_mm512_xor_si512(a, sum), _mm512_xor_si512(b, sum));
    let overflow = _mm512_cmplt_epi32_mask(both, _mm512_setzero_si512());
    let bound = _mm512_xor_si512(_mm512_srai_epi32::<31>(a), _mm512_set1_epi32(i32::MAX));
    _mm512_mask_blend_epi32(overflow, sum, bound)
}

/// Packs `n` tokens of `xs` (rows `stride` apart) from token `t0`, columns `k0..k0 + kc`
/// (`kc` a multiple of 4, at most [`CHUNK_COLS`]), into `packed`: block `b` of 16
/// tokens, group `g` of four columns at byte `(b * CHUNK_COLS / 4 + g) * 64`, token
/// `i` of the block at `+ 4 * i`, offset to unsigned. Tokens past `n` read as 0.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL and VNNI; tokens `t0..t0 + n` must be held
/// completely by `xs` and `k0 + kc` be at most the row length.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn pack_tokens(
    packed: &mut [u8; CHUNK_TOKENS * CHUNK_COLS],
    xs: *const i8,
    stride: usize,
    (t0, n): (usize, usize),
    (k0, kc): (usize, usize),
) {
    let offset = _mm512_set1_epi8(i8::MIN);
    let groups = kc / 4;
    for b in 0..n.div_ceil(LANES) {
        for span in 0..kc.div_ceil(64) {
            let mask = byte_mask(kc - span * 64);
            let rows: [__m512i; 16] = core::array::from_fn(|i| {
                let t = b * LANES + i;
                let v = if t < n {
                    // SAFETY: token `t0 + t` is in `xs` and the masked bytes are its
                    // columns `k0 + 64 * span..` below `k0 + kc <= cols`; masked-off
                    // bytes are not read.
                    unsafe {
                        _mm512_maskz_loadu_epi8(mask, xs.add((t0 + t) * stride + k0 + span * 64))
                    }
                } else {
                    _mm512_setzero_si512()
                };
                _mm512_xor_si512(v, offset)
            });
            for (i, group) in transpose16(rows).into_iter().enumerate() {
                let g = span * 16 + i;
                if g < groups {
                    let at = (b * (CHUNK_COLS / 4) + g) * 64;
                    if let Some(dst) = packed.get_mut(at..at + 64) {
                        // SAFETY: `dst` is 64 bytes; `storeu` has no alignment need.
                        unsafe { _mm512_storeu_si512(dst.as_mut_ptr().cast(), group) };
                    }
                }
            }
        }
    }
}

/// The 16 accumulators of one tile: weight rows at `w + row[r] * cols + k0` (16 row
/// indices) times one packed token block, over `groups` groups of four columns; lane
/// `t` of accumulator `r` is token `t`'s product with row `r`, plus the offset's
/// `128 * sum(row)`.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL and VNNI; every row must be readable for
/// `k0 + 4 * groups` bytes and `block` for `64 * groups`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile_i8(w: [*const i8; 16], block: *const u8, groups: usize) -> [__m512i; 16] {
    let mut acc = [_mm512_setzero_si512(); 16];
    for g in 0..groups {
        // SAFETY: group `g < groups` of the block, 64 bytes.
        let xv = unsafe { _mm512_loadu_si512(block.add(g * 64).cast()) };
        for (acc, &row) in acc.iter_mut().zip(&w) {
            // SAFETY: four bytes of the row at column `4 g < 4 groups` (caller).
            let four = unsafe { row.add(4 * g).cast::<i32>().read_unaligned() };
            *acc = _mm512_dpbusd_epi32(*acc, xv, _mm512_set1_epi32(four));
        }
    }
    acc
}

/// [`tile_i8`] for 16 rows `stride` bytes apart from `w`: the same products, with the
/// row addresses as four bases (rows 0, 4, 8, 12) plus 0, 1, 2 or 3 strides, so that
/// they fit the general registers with the loop's other operands (16 separate row
/// pointers spill, measured: about a fifth of the kernel's time).
///
/// `next`, when given, is the next tile's first row: its rows are prefetched, one
/// cache line per group.
///
/// # Safety
/// As [`tile_i8`], for the rows `w + r * stride`, `r < 16`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile_i8_strided(
    (w, stride): (*const i8, usize),
    next: Option<*const i8>,
    block: *const u8,
    groups: usize,
) -> [__m512i; 16] {
    let mut acc = [_mm512_setzero_si512(); 16];
    let (s1, s2, s3) = (stride, 2 * stride, 3 * stride);
    let mut bases = [
        w,
        w.wrapping_add(4 * stride),
        w.wrapping_add(8 * stride),
        w.wrapping_add(12 * stride),
    ];
    let mut x = block;
    for g in 0..groups {
        // SAFETY: the group's 64 bytes of the block (caller).
        let xv = unsafe { _mm512_loadu_si512(x.cast()) };
        for (quad, base) in bases.iter().enumerate() {
            for (k, offset) in [0, s1, s2, s3].into_iter().enumerate() {
                // SAFETY: four bytes of row `4 * quad + k` at the group's column
                // (caller); `read_unaligned` has no alignment need.
                let four = unsafe { base.add(offset).cast::<i32>().read_unaligned() };
                let acc = &mut acc[4 * quad + k];
                *acc = _mm512_dpbusd_epi32(*acc, xv, _mm512_set1_epi32(four));
            }
        }
        // One cache line of the next tile's rows per group (row `g % 16`, line
        // `g / 16`: a chunk of 512 columns is 128 groups and 16 x 8 lines), so that its
        // weights arrive while this tile computes. A prefetch never faults, and
        // `wrapping_add` keeps the address computation defined past the weights.
        if let Some(next) = next {
            let line = next.wrapping_add((g % 16) * stride + (g / 16) * 64);
            _mm_prefetch::<_MM_HINT_T0>(line);
        }
        for base in &mut bases {
            *base = base.wrapping_add(4);
        }
        x = x.wrapping_add(64);
    }
    acc
}

/// `128 * sum(row)` for 16 rows of `kc` bytes, as a register (lane `r`, row `r`).
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL and VNNI; every row readable for `kc` bytes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn offset_sums(w: [*const i8; 16], kc: usize) -> __m512i {
    let ones = _mm512_set1_epi8(1);
    let mut sums = [0i32; 16];
    for (s, &row) in sums.iter_mut().zip(&w) {
        let mut acc = _mm512_setzero_si512();
        for span in 0..kc.div_ceil(64) {
            // SAFETY: the masked bytes are the row's first `kc`; others not read.
            let v =
                unsafe { _mm512_maskz_loadu_epi8(byte_mask(kc - span * 64), row.add(span * 64)) };
            acc = _mm512_dpbusd_epi32(acc, ones, v);
        }
        *s = _mm512_reduce_add_epi32(acc);
    }
    // SAFETY: `sums` holds 16 `i32`.
    let sums = unsafe { _mm512_loadu_si512(sums.as_ptr().cast()) };
    _mm512_slli_epi32::<7>(sums)
}

/// `matmul_i8_strided_reference(x, w, bias, out, out_stride)` for `cols` a positive
/// multiple of 4, `x` holding every row and `out` every element (the caller's
/// dispatch checks all three): `x` rows in chunks of 64, packed per chunk of 256
/// columns; per chunk, tiles of 16 `w` rows (the last one overlapping, its rows
/// clamped to the last held row and the extra channels not stored) by 16 `x` rows.
/// Partial sums of a column chunk are added to `out`, the bias at the last one. Rows
/// `w` does not hold completely store the bias alone (the reference's empty dot
/// product).
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL and VNNI; the preconditions above must hold.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn matmul_i8_into(
    x: RowsI8<'_>,
    w: RowsI8<'_>,
    bias: &[i32],
    out: &mut [i32],
    out_stride: usize,
) {
    let (tokens, rows, cols) = (x.rows, w.rows, x.cols);
    if cols == 0 || !cols.is_multiple_of(4) || rows == 0 || tokens == 0 {
        return;
    }
    let held = w.held();
    let bias_at = |o: usize| bias.get(o).copied().unwrap_or(0);
    for o in held..rows {
        for t in 0..tokens {
            if let Some(y) = out.get_mut(t * out_stride + o) {
                *y = bias_at(o);
            }
        }
    }
    if held == 0 {
        return;
    }
    let mut packed = [0u8; CHUNK_TOKENS * CHUNK_COLS];
    let (xp, wp, outp) = (x.data.as_ptr(), w.data.as_ptr(), out.as_mut_ptr());
    for t0 in (0..tokens).step_by(CHUNK_TOKENS) {
        let n = (tokens - t0).min(CHUNK_TOKENS);
        for k0 in (0..cols).step_by(CHUNK_COLS) {
            let kc = (cols - k0).min(CHUNK_COLS);
            let (first, last) = (k0 == 0, k0 + kc == cols);
            // SAFETY: rows `t0..t0 + n <= tokens` are held by `x` (caller), columns
            // `k0..k0 + kc <= cols`; the caller checked the CPU.
            unsafe { pack_tokens(&mut packed, xp, x.stride, (t0, n), (k0, kc)) };
            for o0 in (0..held).step_by(16) {
                let channels = (held - o0).min(16);
                // Rows past the held ones repeat the last (their channels are not
                // stored), so every pointer is inside `w`.
                // SAFETY: row `min(o0 + r, held - 1) < held` is held completely by
                // `w`; `+ k0` stays within the row.
                let w_rows: [*const i8; 16] = core::array::from_fn(|r| unsafe {
                    wp.add((o0 + r).min(held - 1) * w.stride + k0)
                });
                // SAFETY: each row readable for `kc` bytes from `k0` (`k0 + kc <= cols`).
                let correction = unsafe { offset_sums(w_rows, kc) };
                let channel_mask = lane_mask(channels);
                let bias_mask = lane_mask(bias.len().saturating_sub(o0).min(channels));
                // SAFETY: lanes under `bias_mask` are `bias[o0..]`, inside `bias`.
                let bias_v = unsafe {
                    _mm512_maskz_loadu_epi32(bias_mask, bias.as_ptr().add(o0.min(bias.len())))
                };
                for b in 0..n.div_ceil(LANES) {
                    let block = packed.as_ptr().wrapping_add(b * CHUNK_COLS * 16);
                    // SAFETY: `kc / 4` groups of block `b` were packed; rows as above
                    // (a whole tile: rows `o0..o0 + 16` held, `w.stride` apart).
                    let acc = unsafe {
                        if channels == 16 {
                            // The first token block prefetches the next tile's rows.
                            let next = (b == 0).then(|| w_rows[0].wrapping_add(16 * w.stride));
                            tile_i8_strided((w_rows[0], w.stride), next, block, kc / 4)
                        } else {
                            tile_i8(w_rows, block, kc / 4)
                        }
                    };
                    for (i, v) in transpose16(acc).into_iter().enumerate() {
                        let t = t0 + b * LANES + i;
                        if t >= t0 + n {
                            break;
                        }
                        // SAFETY: `t < tokens`, so `out` holds `t * out_stride + o0 +
                        // channels` elements (`o0 + channels <= held <= rows`, caller's
                        // precondition); masked lanes only.
                        let at = unsafe { outp.add(t * out_stride + o0) };
                        let mut v = _mm512_sub_epi32(v, correction);
                        if !first {
                            // SAFETY: as the store below.
                            v = _mm512_add_epi32(v, unsafe {
                                _mm512_maskz_loadu_epi32(channel_mask, at)
                            });
                        }
                        if last {
                            v = saturating_add(v, bias_v);
                        }
                        // SAFETY: see `at`.
                        unsafe { _mm512_mask_storeu_epi32(at, channel_mask, v) };
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Attention's weighted sums of values for a block of query rows.
// ---------------------------------------------------------------------------------

/// Eight int8 values of each of two key rows interleaved and widened: lane `d` of the
/// result holds `(a[d], b[d])` as two int16 (`vpdpwssd`'s pair), for `d < 16`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
fn value_pairs(a: __m128i, b: __m128i) -> __m512i {
    let low = _mm_unpacklo_epi8(a, b);
    let high = _mm_unpackhi_epi8(a, b);
    _mm512_cvtepi8_epi16(_mm256_set_m128i(high, low))
}

/// `ctx[t * ctx_stride + d] = sum_j probs[t * p_stride + j] * values[j * v_stride + d]`
/// for `t < rows`, `j < keys`, `d < dims`: the weighted sums of one head's values for a
/// block of query rows, raw `i32` (wrapping, exact for attention's bounds). The
/// products take each probability's low 16 bits as a signed int16: exact for the Q15
/// probabilities below 2^15 (the caller keeps a row with a probability of 2^15 away). Tiles of 16 query rows x 16 channels: per pair of
/// keys, their 16 values interleaved into int16 pairs once (`value_pairs`) serve the
/// 16 rows, each a broadcast of its two probabilities and one `vpdpwssd`; the sums of a
/// row's 16 channels are contiguous, so no transpose.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL and VNNI; `probs` must hold
/// `(rows - 1) * p_stride + keys` elements, `values` `(keys - 1) * v_stride + dims`,
/// `ctx` `(rows - 1) * ctx_stride + dims`, and `dims <= v_stride` (the caller checks).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn weighted_values_rows(
    ctx: &mut [i32],
    ctx_stride: usize,
    (probs, p_stride): (&[i32], usize),
    (values, v_stride): (&[i8], usize),
    (rows, keys, dims): (usize, usize, usize),
) {
    let (pp, vp, cp) = (probs.as_ptr(), values.as_ptr(), ctx.as_mut_ptr());
    for t0 in (0..rows).step_by(LANES) {
        let tile_rows = (rows - t0).min(LANES);
        for d0 in (0..dims).step_by(LANES) {
            let channels = (dims - d0).min(LANES);
            let mask = lane_mask(channels);
            let mut acc = [_mm512_setzero_si512(); LANES];
            let mut j = 0;
            while j < keys {
                let pair = j + 1 < keys;
                // SAFETY: key rows `j` (and `j + 1` when paired) `< keys`, columns
                // `d0..d0 + channels <= dims`: inside `values` (caller); masked bytes
                // only.
                let (a, b) = unsafe {
                    let a = _mm_maskz_loadu_epi8(mask, vp.add(j * v_stride + d0));
                    let b = if pair {
                        _mm_maskz_loadu_epi8(mask, vp.add((j + 1) * v_stride + d0))
                    } else {
                        _mm_setzero_si128()
                    };
                    (a, b)
                };
                let vv = value_pairs(a, b);
                for (t, acc) in acc.iter_mut().enumerate() {
                    // Rows past the tile's repeat its last (not stored).
                    let row = t0 + t.min(tile_rows - 1);
                    // SAFETY: row `< rows`, keys `j` (and `j + 1`) `< keys`: inside
                    // `probs` (caller).
                    let (p0, p1) = unsafe {
                        let at = pp.add(row * p_stride + j);
                        (at.read(), if pair { at.add(1).read() } else { 0 })
                    };
                    let word = (p0 & 0xFFFF) | (p1 << 16);
                    *acc = _mm512_dpwssd_epi32(*acc, vv, _mm512_set1_epi32(word));
                }
                j += 2;
            }
            for (t, acc) in acc.into_iter().enumerate().take(tile_rows) {
                // SAFETY: row `t0 + t < rows`, channels `d0..d0 + channels <= dims`:
                // inside `ctx` (caller); masked lanes only.
                unsafe { _mm512_mask_storeu_epi32(cp.add((t0 + t) * ctx_stride + d0), mask, acc) };
            }
        }
    }
}
