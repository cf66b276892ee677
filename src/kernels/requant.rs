//! Requantization of a tile of matrix-product accumulators: the epilogues of the int8
//! forward pass's dense layers, a whole `[tokens, channels]` tile at a time.
//!
//! Each function applies, element by element, the arithmetic of [`Requant::apply`]
//! and its relatives (the definition), on x86-64 in their branch-free forms
//! ([`Requant::apply_lanes`], tested equal); the loops run over whole rows with the
//! channel's pair read in step, so the compiler vectorises them. With `std`
//! on an x86-64 CPU with AVX-512 (F, BW, DQ, VL) the same loops are compiled for it
//! and chosen at run time: 64-bit multiplies (`vpmullq`) and per-lane shifts
//! (`vpsravq`) of eight channels at once, instead of one channel per call through a
//! `store` callback. Same code, same arithmetic: the results are identical, which the
//! tests check against the scalar element functions anyway.
//!
//! `rq` tables hold one `(multiplier, shift)` pair per channel; a channel past the end
//! of a table acts as the zero multiplier, as [`Requant::from_table`] does.

use core::ops::Range;

use super::gelu::{activation_q10, Tail, ACT_TABLE_LEN};
use super::{avx512_variant, dispatch};
use crate::quant::{saturate_i8, saturate_residual, Requant};

mod channels;

/// Whether the tiles go a channel at a time ([`channels`]): on 32-bit cores, which have
/// no 64-bit vector lanes for the row loops to use, so that a channel's constants stay
/// in registers; not with `small-kernels` (one code path, the rows').
const BY_CHANNEL: bool = cfg!(target_pointer_width = "32") && !cfg!(feature = "small-kernels");

/// The pair of channel `o`, or the zero multiplier past the table.
#[inline(always)]
fn pair(rq: &[[i32; 2]], o: usize) -> Requant {
    Requant::from_table(rq, o)
}

/// `rq.apply(x)` in the form that suits the target: the branch-free 64-bit one where
/// the loops vectorise (x86-64), the 32-bit high-word path elsewhere (one `SMULL` on a
/// Cortex-M). The same value either way ([`Requant::apply_lanes`]).
#[inline(always)]
fn apply(rq: Requant, x: i32) -> i64 {
    if cfg!(target_arch = "x86_64") {
        rq.apply_lanes(x)
    } else {
        rq.apply(x)
    }
}

/// `rq.apply_scaled(x, extra)` in the form that suits the target, as [`apply`].
#[inline(always)]
fn apply_scaled(rq: Requant, x: i32, extra: i32) -> i64 {
    if cfg!(target_arch = "x86_64") {
        rq.apply_scaled_lanes(x, extra)
    } else {
        rq.apply_scaled(x, extra)
    }
}

/// How many channels of a row the loops take in step with the tables (`full`, all
/// present): the head, which vectorises on the host and skips the per-channel bounds
/// checks everywhere. The rest goes through the per-channel lookups with the same
/// arithmetic; with `small-kernels` (code size over speed) the whole row does: one loop
/// instead of two.
#[inline(always)]
fn head_len(full: usize) -> usize {
    if cfg!(feature = "small-kernels") {
        0
    } else {
        full
    }
}

/// `out[t][o] = sat8(rq[o](acc[t][o]))` for every row `t` of `acc` (`rows` wide; a
/// `rows` of 0 writes nothing): a tile requantized to int8 (keys and values).
#[inline]
pub fn to_i8(out: &mut [i8], acc: &[i32], rq: &[[i32; 2]], rows: usize) {
    if BY_CHANNEL {
        return channels::to_i8(out, acc, rq, rows);
    }
    dispatch!(to_i8_avx512, to_i8_body(out, acc, rq, rows))
}

avx512_variant!(to_i8_avx512, to_i8_body(out: &mut [i8], acc: &[i32], rq: &[[i32; 2]], rows: usize));

#[inline(always)]
fn to_i8_body(out: &mut [i8], acc: &[i32], rq: &[[i32; 2]], rows: usize) {
    let Some(width) = core::num::NonZeroUsize::new(rows) else {
        return;
    };
    let full = head_len(rq.len().min(rows));
    for (y, a) in out
        .chunks_exact_mut(width.get())
        .zip(acc.chunks_exact(width.get()))
    {
        let (y_head, y_tail) = y.split_at_mut(full);
        for ((y, &a), &[m, s]) in y_head.iter_mut().zip(a).zip(rq) {
            *y = saturate_i8(apply(Requant::new(m, s), a));
        }
        for (o, y) in y_tail.iter_mut().enumerate() {
            *y = saturate_i8(pair(rq, full + o).apply(a.get(full + o).copied().unwrap_or(0)));
        }
    }
}

/// `acc[t][o] = sat_r(rq[o](acc[t][o]))` in place (rows `rows` wide): a tile onto the
/// residual-range wide grid (the queries).
#[inline]
pub fn to_wide(acc: &mut [i32], rq: &[[i32; 2]], rows: usize) {
    if BY_CHANNEL {
        return channels::to_wide(acc, rq, rows);
    }
    dispatch!(to_wide_avx512, to_wide_body(acc, rq, rows))
}

avx512_variant!(to_wide_avx512, to_wide_body(acc: &mut [i32], rq: &[[i32; 2]], rows: usize));

#[inline(always)]
fn to_wide_body(acc: &mut [i32], rq: &[[i32; 2]], rows: usize) {
    let Some(width) = core::num::NonZeroUsize::new(rows) else {
        return;
    };
    let full = head_len(rq.len().min(rows));
    for row in acc.chunks_exact_mut(width.get()) {
        let (head, tail) = row.split_at_mut(full);
        for (a, &[m, s]) in head.iter_mut().zip(rq) {
            *a = saturate_residual(apply(Requant::new(m, s), *a));
        }
        for (o, a) in tail.iter_mut().enumerate() {
            *a = saturate_residual(pair(rq, full + o).apply(*a));
        }
    }
}

/// The FFN activation's table ([`activation_q10`]'s, Q10) with what the 32-bit loops
/// need to know about it, found by one pass over it when it is read, so that a
/// layer's batches share it.
#[derive(Clone, Copy)]
pub struct ActTable<'t> {
    entries: &'t [i32],
    /// The table, when it is complete and its neighbouring entries differ by less than
    /// `2^26`: the interpolation's product `(b - a) * frac + 16` (`frac < 32`) then
    /// fits 32 bits.
    narrow: Option<&'t [i32; ACT_TABLE_LEN]>,
    /// The largest magnitude of an entry (what an interpolated value is within; the
    /// DSP loop's bound).
    #[cfg(tinyformer_dsp)]
    largest: u32,
}

impl<'t> ActTable<'t> {
    /// The table `entries` (any length; [`activation_q10`] defines the function).
    pub fn new(entries: &'t [i32]) -> Self {
        let steps = entries.windows(2);
        let narrow = steps
            .map(|w| (i64::from(w[1]) - i64::from(w[0])).unsigned_abs())
            .all(|step| step < 1 << 26);
        Self {
            entries,
            narrow: <&[i32; ACT_TABLE_LEN]>::try_from(entries)
                .ok()
                .filter(|_| narrow),
            #[cfg(tinyformer_dsp)]
            largest: entries.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0),
        }
    }

    /// The entries.
    pub fn entries(&self) -> &'t [i32] {
        self.entries
    }
}

/// The FFN's first epilogue, in place: `acc[t][o] = sat_r(act_rq[o](f(sat_r(rq[o](acc)))))`
/// with `f` the Q10 activation by interpolation in `table` (linear tail).
#[inline]
pub fn activation(
    acc: &mut [i32],
    (rq, act_rq): (&[[i32; 2]], &[[i32; 2]]),
    table: ActTable<'_>,
    rows: usize,
) {
    if BY_CHANNEL {
        return channels::activation(acc, (rq, act_rq), table, rows);
    }
    let table = table.entries;
    dispatch!(
        activation_avx512,
        activation_body(acc, (rq, act_rq), table, rows)
    )
}

/// [`activation`] on AVX-512: eight channels at a time in 64-bit lanes by
/// [`x86::activation8`] (table reads as gathers, which the compiler does not
/// generate by itself), the channels past a multiple of eight and any table that is
/// not full by the scalar body.
#[cfg(all(target_arch = "x86_64", any(test, feature = "std")))]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
fn activation_avx512(
    acc: &mut [i32],
    (rq, act_rq): (&[[i32; 2]], &[[i32; 2]]),
    table: &[i32],
    rows: usize,
) {
    let (Ok(full), Some(width)) = (
        <&[i32; super::gelu::ACT_TABLE_LEN]>::try_from(table),
        core::num::NonZeroUsize::new(rows),
    ) else {
        return activation_body(acc, (rq, act_rq), table, rows);
    };
    let lanes = rq.len().min(act_rq.len()).min(rows) / 8 * 8;
    for row in acc.chunks_exact_mut(width.get()) {
        let (head, tail) = row.split_at_mut(lanes);
        for ((a, rq), act_rq) in head
            .chunks_exact_mut(8)
            .zip(rq.chunks_exact(8))
            .zip(act_rq.chunks_exact(8))
        {
            x86::activation8(a, (rq, act_rq), full);
        }
        for (o, a) in tail.iter_mut().enumerate() {
            let (rq, act_rq) = (pair(rq, lanes + o), pair(act_rq, lanes + o));
            *a = activation_element(*a, (rq, act_rq), table);
        }
    }
}

/// [`activation`]'s element: `sat_r(act_rq(f(sat_r(rq(a)))))`, `f` the Q10 table with
/// the linear tail.
#[inline(always)]
fn activation_element(a: i32, (rq, act_rq): (Requant, Requant), table: &[i32]) -> i32 {
    let pre = saturate_residual(apply(rq, a));
    saturate_residual(apply(act_rq, activation_q10(pre, table, Tail::Linear)))
}

#[inline(always)]
fn activation_body(
    acc: &mut [i32],
    (rq, act_rq): (&[[i32; 2]], &[[i32; 2]]),
    table: &[i32],
    rows: usize,
) {
    let Some(width) = core::num::NonZeroUsize::new(rows) else {
        return;
    };
    let full = head_len(rq.len().min(act_rq.len()).min(rows));
    for row in acc.chunks_exact_mut(width.get()) {
        let (head, tail) = row.split_at_mut(full);
        for ((a, &[m, s]), &[act_m, act_s]) in head.iter_mut().zip(rq).zip(act_rq) {
            *a = activation_element(*a, (Requant::new(m, s), Requant::new(act_m, act_s)), table);
        }
        for (o, a) in tail.iter_mut().enumerate() {
            *a = activation_element(*a, (pair(rq, full + o), pair(act_rq, full + o)), table);
        }
    }
}

/// AVX-512 forms of the element functions, on eight channels in 64-bit lanes.
#[cfg(all(target_arch = "x86_64", any(test, feature = "std")))]
mod x86 {
    use core::arch::x86_64::{
        __m512i, _mm256_loadu_si256, _mm256_storeu_si256, _mm512_add_epi64, _mm512_and_si512,
        _mm512_cmpge_epi64_mask, _mm512_cmplt_epi64_mask, _mm512_cvtepi32_epi64,
        _mm512_cvtepi64_epi32, _mm512_i64gather_epi64, _mm512_loadu_si512, _mm512_mask_blend_epi64,
        _mm512_max_epi64, _mm512_min_epi64, _mm512_mul_epi32, _mm512_mullo_epi64,
        _mm512_set1_epi64, _mm512_slli_epi64, _mm512_sllv_epi64, _mm512_srai_epi64,
        _mm512_srav_epi64, _mm512_sub_epi64,
    };

    use super::super::gelu::{ACT_FRAC_BITS, ACT_RANGE, ACT_STEPS_PER_UNIT, ACT_TABLE_LEN};
    use crate::quant::RESIDUAL_MAX;

    /// [`Requant::apply_lanes`](crate::quant::Requant::apply_lanes) of eight values
    /// (the low 32 bits of each lane) by eight `(multiplier, shift)` pairs as loaded
    /// from a table: multiplier in the low half of each lane, shift in the high one.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
    fn apply(x: __m512i, pairs: __m512i) -> __m512i {
        // `31 - shift` is exact in 64 bits, so clamping it matches the 32-bit
        // saturating subtraction clamped to the same range.
        let shift = _mm512_srai_epi64::<32>(pairs);
        let total = _mm512_sub_epi64(_mm512_set1_epi64(31), shift);
        let total = _mm512_min_epi64(
            _mm512_max_epi64(total, _mm512_set1_epi64(1)),
            _mm512_set1_epi64(62),
        );
        // Signed 32 x 32 -> 64-bit products of the low halves: x and the multiplier.
        let product = _mm512_mul_epi32(x, pairs);
        let one = _mm512_set1_epi64(1);
        let round = _mm512_sllv_epi64(one, _mm512_sub_epi64(total, one));
        _mm512_srav_epi64(_mm512_add_epi64(product, round), total)
    }

    /// `saturate_residual` of eight 64-bit lanes.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
    fn saturate_residual(v: __m512i) -> __m512i {
        let max = _mm512_set1_epi64(RESIDUAL_MAX);
        _mm512_max_epi64(_mm512_min_epi64(v, max), _mm512_set1_epi64(-RESIDUAL_MAX))
    }

    /// The FFN epilogue of eight channels ([`super::activation_body`]'s element):
    /// `a = sat_r(act_rq(f(sat_r(rq(a)))))`, `f` [`activation_q10`](super::activation_q10)
    /// with the linear tail, its table reads gathered.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
    pub(super) fn activation8(
        a: &mut [i32],
        (rq, act_rq): (&[[i32; 2]], &[[i32; 2]]),
        table: &[i32; ACT_TABLE_LEN],
    ) {
        let (Ok(a), Ok(rq), Ok(act_rq)) = (
            <&mut [i32; 8]>::try_from(a),
            <&[[i32; 2]; 8]>::try_from(rq),
            <&[[i32; 2]; 8]>::try_from(act_rq),
        ) else {
            return;
        };
        // SAFETY: 8 `i32` (32 bytes) and 8 pairs (64 bytes); unaligned loads.
        let (x, pairs, act_pairs) = unsafe {
            (
                _mm512_cvtepi32_epi64(_mm256_loadu_si256(a.as_ptr().cast())),
                _mm512_loadu_si512(rq.as_ptr().cast()),
                _mm512_loadu_si512(act_rq.as_ptr().cast()),
            )
        };
        let pre = saturate_residual(apply(x, pairs));
        // `activation_q10` with the linear tail: interpolation between table entries
        // `index` and `index + 1` for `pre` in `[lo, -lo)`, else the first entry
        // below and `pre` itself above. Clamped first, so that every index read is
        // inside the table (at most 511 + 1 of 513 entries); the clamped lanes are
        // replaced afterwards.
        let unit = 1i64 << ACT_FRAC_BITS;
        let step = unit / i64::from(ACT_STEPS_PER_UNIT);
        let lo = -i64::from(ACT_RANGE) * unit;
        let clamped = _mm512_min_epi64(
            _mm512_max_epi64(pre, _mm512_set1_epi64(lo)),
            _mm512_set1_epi64(-lo - 1),
        );
        let offset = _mm512_sub_epi64(clamped, _mm512_set1_epi64(lo));
        let index = _mm512_srai_epi64::<{ ACT_STEPS_SHIFT }>(offset);
        let frac = _mm512_and_si512(offset, _mm512_set1_epi64(step - 1));
        let base = table.as_ptr();
        // Entries `index` and `index + 1` are adjacent: one 64-bit gather reads both
        // (half the gathered elements of two 32-bit gathers, which cost per element;
        // the low half is entry `index`, little-endian).
        // SAFETY: every index is in `0..=511`, so the eight bytes read at `4 * index`
        // are entries `index` and `index + 1 <= 512` of the 513-entry table.
        let pairs = unsafe { _mm512_i64gather_epi64::<4>(index, base.cast()) };
        let lo_v = _mm512_srai_epi64::<32>(_mm512_slli_epi64::<32>(pairs));
        let hi_v = _mm512_srai_epi64::<32>(pairs);
        // `(b - a) * frac` in 64 bits (`|b - a|` can exceed 32 bits): AVX-512 DQ.
        let slope = _mm512_mullo_epi64(_mm512_sub_epi64(hi_v, lo_v), frac);
        let inside = _mm512_add_epi64(
            lo_v,
            _mm512_srai_epi64::<{ ACT_STEPS_SHIFT }>(_mm512_add_epi64(
                slope,
                _mm512_set1_epi64(step / 2),
            )),
        );
        // `as i32` in the reference: keep the low 32 bits, sign-extended.
        let inside = _mm512_cvtepi32_epi64(_mm512_cvtepi64_epi32(inside));
        let below = _mm512_cmplt_epi64_mask(pre, _mm512_set1_epi64(lo));
        let above = _mm512_cmpge_epi64_mask(pre, _mm512_set1_epi64(-lo));
        let first = _mm512_set1_epi64(i64::from(table[0]));
        let f = _mm512_mask_blend_epi64(above, _mm512_mask_blend_epi64(below, inside, first), pre);
        let out = saturate_residual(apply(f, act_pairs));
        // SAFETY: 8 `i32`, 32 bytes; the lanes fit `i32` after saturation.
        unsafe { _mm256_storeu_si256(a.as_mut_ptr().cast(), _mm512_cvtepi64_epi32(out)) };
    }

    /// `log2` of the table step in Q10 units (32): the index is `offset >> 5`.
    const ACT_STEPS_SHIFT: u32 = ACT_FRAC_BITS - ACT_STEPS_PER_UNIT.trailing_zeros();
}

/// The attention context of one head, in place: for each of the first `rows` rows of
/// `ctx` (rows `width` wide; the last may be short) that holds the columns `cols`,
/// `c = rq[d].add_scaled_residual(0, c, 0)` for its column `cols.start + d`
/// (`sat_r(rq[d](c))` for a valid pair).
#[inline]
pub fn context(
    ctx: &mut [i32],
    rq: &[[i32; 2]],
    (cols, width): (Range<usize>, usize),
    rows: usize,
) {
    if BY_CHANNEL {
        return channels::context(ctx, rq, (cols, width), rows);
    }
    for row in ctx.chunks_mut(width.max(1)).take(rows) {
        for (d, c) in row
            .get_mut(cols.clone())
            .unwrap_or(&mut [])
            .iter_mut()
            .enumerate()
        {
            *c = pair(rq, d).add_scaled_residual(0, *c, 0);
        }
    }
}

/// `sum[o] = sat_r(sat_r(sum[o]) + rq(row[o]))` for every `o` of both: an int8 row (an
/// embedding table's) onto the residual grid with its one scale, added to `sum` (whose
/// values are on that grid already, `±RESIDUAL_MAX`, in the forward pass).
#[inline]
pub fn add_row(sum: &mut [i32], row: &[i8], rq: Requant) {
    if BY_CHANNEL {
        return channels::add_row(sum, row, rq);
    }
    for (acc, &e) in sum.iter_mut().zip(row) {
        let base = saturate_residual(i64::from(*acc));
        *acc = saturate_residual(i64::from(base) + rq.apply(i32::from(e)));
    }
}

/// A projection back into the residual stream plus the skip connection, in place: for
/// every row `t` (`rows` wide), `acc[t][o] = sat_r(rq[o](acc[t][o] * 2^exponents[t]) +
/// rq[o](bias[o]) + skip_rq[o](skip[t][o]))` ([`Requant::apply_scaled`]: the input
/// row's power-of-two scale; the bias is on the unscaled grid, so it is requantized on
/// its own). A missing exponent is 0, a missing bias or skip value 0.
#[inline]
pub fn onto_residual(
    acc: &mut [i32],
    exponents: &[u8],
    (rq, bias): (&[[i32; 2]], &[i32]),
    (skip, skip_rq): (&[i8], &[[i32; 2]]),
    rows: usize,
) {
    if BY_CHANNEL && skip.len() >= acc.len() {
        return channels::onto_residual(acc, exponents, (rq, bias), (skip, skip_rq), rows);
    }
    dispatch!(
        onto_residual_avx512,
        onto_residual_body(acc, exponents, (rq, bias), (skip, skip_rq), rows)
    )
}

#[cfg(all(target_arch = "x86_64", any(test, feature = "std")))]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
fn onto_residual_avx512(
    acc: &mut [i32],
    exponents: &[u8],
    dense: (&[[i32; 2]], &[i32]),
    skip: (&[i8], &[[i32; 2]]),
    rows: usize,
) {
    onto_residual_body(acc, exponents, dense, skip, rows)
}

#[inline(always)]
fn onto_residual_body(
    acc: &mut [i32],
    exponents: &[u8],
    (rq, bias): (&[[i32; 2]], &[i32]),
    (skip, skip_rq): (&[i8], &[[i32; 2]]),
    rows: usize,
) {
    let Some(width) = core::num::NonZeroUsize::new(rows) else {
        return;
    };
    let element =
        |a: i32, exponent: i32, (rq, bias): (Requant, i32), (skip_rq, skip): (Requant, i8)| {
            let sum =
                apply_scaled(rq, a, exponent) + apply(rq, bias) + apply(skip_rq, i32::from(skip));
            saturate_residual(sum)
        };
    let full = head_len(rq.len().min(bias.len()).min(skip_rq.len()).min(rows));
    for (t, row) in acc.chunks_exact_mut(width.get()).enumerate() {
        let exponent = i32::from(exponents.get(t).copied().unwrap_or(0));
        let skip_row = skip.get(t * rows..(t + 1) * rows).unwrap_or(&[]);
        if skip_row.len() == rows {
            let (head, tail) = row.split_at_mut(full);
            for ((((a, &[m, s]), &b), &[skip_m, skip_s]), &x) in
                head.iter_mut().zip(rq).zip(bias).zip(skip_rq).zip(skip_row)
            {
                *a = element(
                    *a,
                    exponent,
                    (Requant::new(m, s), b),
                    (Requant::new(skip_m, skip_s), x),
                );
            }
            for (o, a) in tail.iter_mut().enumerate() {
                let o = full + o;
                let dense = (pair(rq, o), bias.get(o).copied().unwrap_or(0));
                *a = element(
                    *a,
                    exponent,
                    dense,
                    (pair(skip_rq, o), skip_row.get(o).copied().unwrap_or(0)),
                );
            }
        } else {
            for (o, a) in row.iter_mut().enumerate() {
                let dense = (pair(rq, o), bias.get(o).copied().unwrap_or(0));
                let x = skip.get(t * rows + o).copied().unwrap_or(0);
                *a = element(*a, exponent, dense, (pair(skip_rq, o), x));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::gelu::ACT_TABLE_LEN;
    use crate::rng::XorShift64Star;

    /// Pairs as the converter writes them, plus a few past the usual range.
    fn pairs(n: usize, rng: &mut XorShift64Star) -> Vec<[i32; 2]> {
        (0..n)
            .map(|o| match o % 5 {
                0 => [0, 0],
                1 => [
                    (1 << 30) + (rng.next_u32() >> 2) as i32,
                    -40 + (rng.next_u32() % 80) as i32,
                ],
                _ => [
                    (1 << 30) + (rng.next_u32() >> 2) as i32,
                    -((rng.next_u32() % 20) as i32),
                ],
            })
            .collect()
    }

    fn values(n: usize, rng: &mut XorShift64Star) -> Vec<i32> {
        (0..n)
            .map(|i| match i % 7 {
                0 => i32::MIN,
                1 => i32::MAX,
                2 => (rng.next_u32() as i32) >> 8,
                _ => rng.next_u32() as i32,
            })
            .collect()
    }

    #[test]
    fn tiles_match_the_element_functions() {
        let mut rng = XorShift64Star::new(21);
        // A GELU-like table (steep and flat parts) and one past the 32-bit range.
        let gelu: Vec<i32> = (0..ACT_TABLE_LEN as i32)
            .map(|i| (i - 256) * 40 + (i % 7) * 3)
            .collect();
        let wild: Vec<i32> = (0..ACT_TABLE_LEN).map(|_| rng.next_u32() as i32).collect();
        let (tokens, widths): (usize, &[usize]) = if cfg!(miri) {
            (2, &[0, 3, 9])
        } else {
            (5, &[0, 1, 7, 8, 9, 31, 384])
        };
        for &rows in widths {
            let rq = pairs(rows, &mut rng);
            let act_rq = pairs(rows, &mut rng);
            let skip_rq = pairs(rows, &mut rng);
            let bias = values(rows, &mut rng);
            let acc = values(tokens * rows, &mut rng);
            let skip: Vec<i8> = (0..tokens * rows).map(|_| rng.next_u32() as i8).collect();
            // Row exponents that move some channels' products across the 32-bit paths,
            // and none (large bias terms on the high-word path).
            let spread: Vec<u8> = (0..tokens as u8).map(|t| t * 3).collect();
            let none = vec![0u8; tokens];
            // Tables a channel short, to reach the zero-multiplier tails.
            let short = rows.saturating_sub(1);
            for (rq, act_rq) in [(&rq[..], &act_rq[..]), (&rq[..short], &act_rq[..])] {
                let at = |o: usize| Requant::from_table(rq, o);
                for (o, &[m, shift]) in rq.iter().enumerate().take(4) {
                    let row_rq = Requant::new(m, shift);
                    let row: Vec<i8> = acc.iter().map(|&a| (a >> (o * 5)) as i8).collect();
                    let mut got = acc.clone();
                    add_row(&mut got, &row, row_rq);
                    let want: Vec<i32> = acc
                        .iter()
                        .zip(&row)
                        .map(|(&a, &e)| {
                            let base = i64::from(saturate_residual(i64::from(a)));
                            saturate_residual(base + row_rq.apply(i32::from(e)))
                        })
                        .collect();
                    assert_eq!(got, want, "add_row {rows}");
                    let mut got = acc.clone();
                    channels::add_row(&mut got, &row, row_rq);
                    assert_eq!(got, want, "channels::add_row {rows}");
                }
                let mut got = vec![0i8; acc.len()];
                to_i8(&mut got, &acc, rq, rows);
                let want: Vec<i8> = acc
                    .iter()
                    .enumerate()
                    .map(|(i, &a)| saturate_i8(at(i % rows.max(1)).apply(a)))
                    .collect();
                assert_eq!(got, want, "to_i8 {rows}");
                channels::to_i8(&mut got, &acc, rq, rows);
                assert_eq!(got, want, "channels::to_i8 {rows}");

                let mut got = acc.clone();
                to_wide(&mut got, rq, rows);
                let want: Vec<i32> = acc
                    .iter()
                    .enumerate()
                    .map(|(i, &a)| saturate_residual(at(i % rows.max(1)).apply(a)))
                    .collect();
                assert_eq!(got, want, "to_wide {rows}");
                let mut got = acc.clone();
                channels::to_wide(&mut got, rq, rows);
                assert_eq!(got, want, "channels::to_wide {rows}");

                // One head's columns of rows twice as wide, the last row short.
                let (width, cols) = (2 * rows, rows / 2..rows / 2 + rows);
                let ctx: Vec<i32> = values(tokens * width - rows / 2, &mut rng);
                let mut want = ctx.clone();
                for row in want.chunks_mut(width.max(1)).take(tokens) {
                    if let Some(row) = row.get_mut(cols.clone()) {
                        for (d, c) in row.iter_mut().enumerate() {
                            *c = at(d).add_scaled_residual(0, *c, 0);
                        }
                    }
                }
                for channels in [false, true] {
                    let mut got = ctx.clone();
                    let place = (cols.clone(), width);
                    if channels {
                        channels::context(&mut got, rq, place, tokens);
                    } else {
                        context(&mut got, rq, place, tokens);
                    }
                    assert_eq!(got, want, "context {rows} {channels}");
                }

                for table in [&gelu, &wild, &gelu[..100].to_vec()] {
                    let mut got = acc.clone();
                    activation(&mut got, (rq, act_rq), ActTable::new(table), rows);
                    let mut by_channel = acc.clone();
                    channels::activation(&mut by_channel, (rq, act_rq), ActTable::new(table), rows);
                    let want: Vec<i32> = acc
                        .iter()
                        .enumerate()
                        .map(|(i, &a)| {
                            let o = i % rows.max(1);
                            let pre = saturate_residual(at(o).apply(a));
                            saturate_residual(Requant::from_table(act_rq, o).apply(activation_q10(
                                pre,
                                table,
                                Tail::Linear,
                            )))
                        })
                        .collect();
                    assert_eq!(got, want, "activation {rows}");
                    assert_eq!(by_channel, want, "channels::activation {rows}");
                }

                for (skip, exponents) in [
                    (&skip[..], &spread),
                    (&skip[..], &none),
                    (&skip[..skip.len() / 2], &spread),
                ] {
                    let mut got = acc.clone();
                    onto_residual(&mut got, exponents, (rq, &bias), (skip, &skip_rq), rows);
                    let mut by_channel = acc.clone();
                    if skip.len() == acc.len() {
                        let (dense, skip) = ((rq, &bias[..]), (skip, &skip_rq[..]));
                        channels::onto_residual(&mut by_channel, exponents, dense, skip, rows);
                    }
                    let want: Vec<i32> = acc
                        .iter()
                        .enumerate()
                        .map(|(i, &a)| {
                            let (t, o) = (i / rows.max(1), i % rows.max(1));
                            let e = i32::from(exponents[t]);
                            let b = at(o).apply(bias[o]);
                            let s = Requant::from_table(&skip_rq, o)
                                .apply(i32::from(skip.get(i).copied().unwrap_or(0)));
                            saturate_residual(at(o).apply_scaled(a, e) + b + s)
                        })
                        .collect();
                    assert_eq!(got, want, "onto_residual {rows}");
                    if skip.len() == acc.len() {
                        assert_eq!(by_channel, want, "channels::onto_residual {rows}");
                    }
                }
            }
        }
    }
}
