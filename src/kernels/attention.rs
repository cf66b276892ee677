//! Scaled dot-product attention for one query row and one head.
//!
//! Keys and values are the full `[seq, hidden]` projections; head `h` uses columns
//! `h * head_dim .. (h + 1) * head_dim`. The only scratch is one row of `seq` scores,
//! so attention memory grows O(seq), not O(heads * seq^2).

use super::matvec::{
    matmul_i8_strided_with, weighted_values_rows_with, Int8Kernel, QueryElem, RowsI8,
};
use super::requant;
use super::softmax::{softmax_f32, softmax_q15, MASKED};
use crate::quant::Requant;

/// Scratch elements (`f32` or `i32`) one attention row needs: one score per key.
pub const fn attention_scratch_len(seq: usize) -> usize {
    seq
}

/// Columns of head `head` within a `[seq, hidden]` row.
#[inline(always)]
fn head_cols<T>(row: &[T], head: usize, head_dim: usize) -> &[T] {
    row.get(head * head_dim..(head + 1) * head_dim)
        .unwrap_or(&[])
}

/// `ctx = softmax(q . K^T * scale) V` for one head, `f32`.
///
/// `q` and `ctx` are `head_dim` long; `keys`, `values` are `[seq, hidden]`;
/// `scores` is `seq` long; keys with `keep(j) == false` get probability 0.
#[allow(clippy::too_many_arguments)]
pub fn attend_f32(
    ctx: &mut [f32],
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    hidden: usize,
    head: usize,
    scale: f32,
    scores: &mut [f32],
    keep: impl Fn(usize) -> bool,
) {
    let head_dim = ctx.len();
    for (j, (score, key)) in scores.iter_mut().zip(keys.chunks_exact(hidden)).enumerate() {
        let key = head_cols(key, head, head_dim);
        *score = if keep(j) {
            q.iter().zip(key).map(|(a, b)| a * b).sum::<f32>() * scale
        } else {
            0.0
        };
    }
    softmax_f32(scores, keep);
    ctx.fill(0.0);
    for (p, value) in scores.iter().zip(values.chunks_exact(hidden)) {
        for (c, v) in ctx.iter_mut().zip(head_cols(value, head, head_dim)) {
            *c += p * v;
        }
    }
}

/// Integer attention for one head: an int8 (encoder) or int16 (decoder) query `q`,
/// int8 `keys` and `values`, to the context on a fine i32 grid (the caller narrows the
/// whole row with one row scale).
///
/// Scores `q . k` are exact `i32`; [`softmax_q15`] turns them into Q15 probabilities
/// using `to_log2` (real multiplier `s_q * s_k / sqrt(head_dim) * log2(e) * 2^16`);
/// `ctx[c] = ctx_rq[c](sum_j p_j * v_j[c])` (clamped to the residual range) with
/// per-channel `ctx_rq[c] = s_v[c] / (2^15 * s_ctx[c])` (`ctx_rq` holds this head's
/// `head_dim` pairs).
/// `|sum_j p_j v_j| <= 2^15 * 128 * (1 + seq / 2^15)` fits `i32`.
#[allow(clippy::too_many_arguments)]
pub fn attend_i8<Q: QueryElem>(
    ctx: &mut [i32],
    q: &[Q],
    keys: &[i8],
    values: &[i8],
    hidden: usize,
    head: usize,
    to_log2: Requant,
    ctx_rq: &[[i32; 2]],
    scores: &mut [i32],
    keep: impl Fn(usize) -> bool,
) {
    attend_i8_with(
        Int8Kernel::best(),
        ctx,
        q,
        keys,
        values,
        hidden,
        head,
        to_log2,
        ctx_rq,
        scores,
        keep,
    );
}

/// [`attend_i8`] with the scores and the weighted sum of values computed by `kernel`
/// ([`QueryElem::dots_with`], [`weighted_values_with`]); the same result for every
/// kernel.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn attend_i8_with<Q: QueryElem>(
    kernel: Int8Kernel,
    ctx: &mut [i32],
    q: &[Q],
    keys: &[i8],
    values: &[i8],
    hidden: usize,
    head: usize,
    to_log2: Requant,
    ctx_rq: &[[i32; 2]],
    scores: &mut [i32],
    keep: impl Fn(usize) -> bool,
) {
    let head_dim = ctx.len();
    // Precondition of the forward pass (`heads * head_dim == hidden`); anything else
    // gets an empty context rather than columns of the next head or row.
    if head_dim == 0 || hidden == 0 || (head + 1) * head_dim > hidden || q.len() != head_dim {
        ctx.fill(0);
        return;
    }
    let head_keys = keys.get(head * head_dim..).unwrap_or(&[]);
    let n = scores.len().min(keys.len() / hidden);
    let scores = scores.get_mut(..n).unwrap_or(&mut []);
    Q::dots_with(kernel, scores, q, head_keys, hidden);
    for (j, score) in scores.iter_mut().enumerate() {
        if !keep(j) {
            *score = MASKED;
        }
    }
    softmax_q15(scores, to_log2);
    ctx.fill(0);
    weighted_values_with(kernel, ctx, scores, values, hidden, head);
    for (d, c) in ctx.iter_mut().enumerate() {
        // `saturate_residual(rq.apply(c))` for a valid pair, in 32-bit steps.
        *c = Requant::from_table(ctx_rq, d).add_scaled_residual(0, *c, 0);
    }
}

/// [`attend_i8_with`] for a block of int8 query rows at once: for each row `t` of
/// `queries` (this head's `head_dim` columns, rows `stride` apart), the context
/// `ctx[t * hidden + head * head_dim..][..head_dim]` of that query against every key,
/// with the score multiplier `to_log2.with_exponent(exponents[t])` (the row's own
/// power-of-two scale; a missing exponent is 0). The scores of all rows against all keys are one matrix product
/// ([`matmul_i8_strided_with`], a tile kernel where the CPU has one), then each row's
/// softmax and weighted values as in [`attend_i8_with`]: the same result per row.
/// `scores` holds `queries.rows` rows of one score per key (`keys.len() / hidden`, at
/// most `scores.len() / queries.rows`).
#[allow(clippy::too_many_arguments)]
pub fn attend_rows_i8_with(
    kernel: Int8Kernel,
    ctx: &mut [i32],
    queries: RowsI8<'_>,
    (keys, values): (&[i8], &[i8]),
    (hidden, head): (usize, usize),
    (to_log2, exponents): (Requant, &[u8]),
    ctx_rq: &[[i32; 2]],
    scores: &mut [i32],
    keep: impl Fn(usize) -> bool,
) {
    let head_dim = queries.cols;
    let rows = queries.rows;
    // The forward pass's precondition, as in `attend_i8_with`.
    if head_dim == 0 || hidden == 0 || (head + 1) * head_dim > hidden {
        for t in 0..rows {
            head_row(ctx, t, hidden, (head, head_dim)).fill(0);
        }
        return;
    }
    let n = (keys.len() / hidden).min(scores.len().checked_div(rows).unwrap_or(0));
    let head_keys = RowsI8 {
        data: keys.get(head * head_dim..).unwrap_or(&[]),
        rows: n,
        cols: head_dim,
        stride: hidden,
    };
    let scores = scores.get_mut(..rows * n).unwrap_or(&mut []);
    matmul_i8_strided_with(kernel, queries, head_keys, &[], scores, n);
    for t in 0..rows {
        // (No keys: an empty row, whose context is 0 as in `attend_i8_with`.)
        let row = scores.get_mut(t * n..(t + 1) * n).unwrap_or(&mut []);
        for (j, score) in row.iter_mut().enumerate() {
            if !keep(j) {
                *score = MASKED;
            }
        }
        let exponent = exponents.get(t).copied().unwrap_or(0);
        softmax_q15(row, to_log2.with_exponent(u32::from(exponent)));
    }
    weighted_values_rows(
        kernel,
        ctx,
        scores,
        values,
        (hidden, head, head_dim),
        (rows, n),
    );
    let cols = head * head_dim..(head + 1) * head_dim;
    requant::context(ctx, ctx_rq, (cols, hidden), rows);
}

/// This head's `head_dim` columns of row `t` of `ctx` (rows `hidden` wide); empty if
/// `ctx` does not hold them (or the offsets overflow).
#[inline]
fn head_row(
    ctx: &mut [i32],
    t: usize,
    hidden: usize,
    (head, head_dim): (usize, usize),
) -> &mut [i32] {
    let start = t
        .checked_mul(hidden)
        .zip(head.checked_mul(head_dim))
        .and_then(|(row, col)| row.checked_add(col));
    start
        .and_then(|start| Some(start..start.checked_add(head_dim)?))
        .and_then(|range| ctx.get_mut(range))
        .unwrap_or(&mut [])
}

/// The weighted sums of values of every row of `probs` (`rows` rows of `keys` Q15
/// probabilities) into its row of `ctx` (this head's columns, raw): by the AVX-512
/// tile kernel where it runs, 64 rows at a time ([`weighted_values_rows_with`]; a row
/// it leaves, with a probability of exactly 1.0, through the reference), else row by
/// row through [`weighted_values_with`].
fn weighted_values_rows(
    kernel: Int8Kernel,
    ctx: &mut [i32],
    probs: &[i32],
    values: &[i8],
    (hidden, head, head_dim): (usize, usize, usize),
    (rows, keys): (usize, usize),
) {
    let by_row = |ctx: &mut [i32], probs: &[i32], t: usize| {
        let out = head_row(ctx, t, hidden, (head, head_dim));
        out.fill(0);
        let row = probs.get(t * keys..(t + 1) * keys).unwrap_or(&[]);
        weighted_values_with(kernel, out, row, values, hidden, head);
    };
    let head_values = values.get(head * head_dim..).unwrap_or(&[]);
    for t0 in (0..rows).step_by(64) {
        let n = (rows - t0).min(64);
        let block_ctx = ctx.get_mut(t0 * hidden..).unwrap_or(&mut []);
        let block_probs = probs.get(t0 * keys..(t0 + n) * keys).unwrap_or(&[]);
        let head_ctx = block_ctx.get_mut(head * head_dim..).unwrap_or(&mut []);
        match weighted_values_rows_with(
            kernel,
            head_ctx,
            block_probs,
            head_values,
            (hidden, head_dim),
            (n, keys),
        ) {
            Some(wide) => {
                for t in (0..n).filter(|t| wide & (1 << t) != 0) {
                    by_row(block_ctx, block_probs, t);
                }
            }
            None => (0..n).for_each(|t| by_row(block_ctx, block_probs, t)),
        }
    }
}

/// `ctx += sum_j p_j * values[j][head columns]`, the scalar reference: key by key over
/// the whole `hidden`-wide rows of `values` (contiguous, so the loop vectorises),
/// skipping keys with probability 0 (masked or underflowed): they add nothing. Exact
/// integer sums (bound in [`attend_i8`]), so any instruction set gives the same
/// result.
#[inline(always)]
pub fn weighted_values_reference(
    ctx: &mut [i32],
    probs: &[i32],
    values: &[i8],
    hidden: usize,
    head: usize,
) {
    let head_dim = ctx.len();
    for (&p, value) in probs.iter().zip(values.chunks_exact(hidden.max(1))) {
        if p != 0 {
            for (c, &v) in ctx.iter_mut().zip(head_cols(value, head, head_dim)) {
                *c += p * i32::from(v);
            }
        }
    }
}

/// [`weighted_values_reference`] by the fastest path: AVX2 on x86-64 hosts, the
/// Cortex-M DSP kernel for a head of a multiple of 4.
#[inline]
pub fn weighted_values(ctx: &mut [i32], probs: &[i32], values: &[i8], hidden: usize, head: usize) {
    weighted_values_with(Int8Kernel::best(), ctx, probs, values, hidden, head);
}

/// [`weighted_values_reference`] by `kernel`'s path: the AVX2 build of the reference
/// for [`Int8Kernel::Avx2`] and [`Int8Kernel::AvxVnni`] (with `std`, on a CPU with
/// AVX2), the Cortex-M DSP kernel for a head of a multiple of 4 with
/// [`Int8Kernel::Dsp`], else the reference.
#[inline]
pub fn weighted_values_with(
    kernel: Int8Kernel,
    ctx: &mut [i32],
    probs: &[i32],
    values: &[i8],
    hidden: usize,
    head: usize,
) {
    match kernel {
        #[cfg(all(target_arch = "x86_64", any(test, feature = "std")))]
        Int8Kernel::Avx2 | Int8Kernel::AvxVnni | Int8Kernel::Avx512Vnni
            if std::is_x86_feature_detected!("avx2") =>
        {
            // SAFETY: the CPU supports AVX2 (checked just above).
            unsafe { weighted_values_avx2(ctx, probs, values, hidden, head) }
        }
        #[cfg(tinyformer_dsp)]
        Int8Kernel::Dsp if weighted_values_dsp(ctx, probs, values, hidden, head) => {}
        _ => weighted_values_reference(ctx, probs, values, hidden, head),
    }
}

/// The Cortex-M DSP kernel over the same whole rows as the reference, from this head's
/// first column; `false` (nothing written) for a head it has no path for.
#[cfg(tinyformer_dsp)]
#[inline(always)]
fn weighted_values_dsp(
    ctx: &mut [i32],
    probs: &[i32],
    values: &[i8],
    hidden: usize,
    head: usize,
) -> bool {
    let whole = values
        .get(..values.len() / hidden.max(1) * hidden)
        .unwrap_or(&[]);
    let head_values = whole.get(head * ctx.len()..).unwrap_or(&[]);
    super::matvec::weighted_values_dsp(ctx, probs, head_values, hidden)
}

/// [`weighted_values_reference`] compiled for AVX2 (eight lanes instead of SSE2's
/// four, and `vpmulld`), which [`weighted_values`] selects at run time.
#[cfg(all(target_arch = "x86_64", any(test, feature = "std")))]
#[target_feature(enable = "avx2")]
fn weighted_values_avx2(ctx: &mut [i32], probs: &[i32], values: &[i8], hidden: usize, head: usize) {
    weighted_values_reference(ctx, probs, values, hidden, head);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_attention_picks_matching_key() {
        // Two keys, hidden 2, one head: the query matches key 1 strongly.
        let keys = [1.0f32, 0.0, 0.0, 1.0];
        let values = [10.0f32, 20.0, 30.0, 40.0];
        let mut ctx = [0.0f32; 2];
        let mut scores = [0.0f32; 2];
        attend_f32(
            &mut ctx,
            &[0.0, 50.0],
            &keys,
            &values,
            2,
            0,
            1.0,
            &mut scores,
            |_| true,
        );
        assert!((ctx[0] - 30.0).abs() < 1e-3 && (ctx[1] - 40.0).abs() < 1e-3);
        attend_f32(
            &mut ctx,
            &[0.0, 50.0],
            &keys,
            &values,
            2,
            0,
            1.0,
            &mut scores,
            |j| j == 0,
        );
        assert_eq!(ctx, [10.0, 20.0]);
    }

    #[test]
    fn int8_attention_matches_float_on_peaked_row() {
        let keys = [127i8, 0, 0, 127];
        let values = [10i8, 20, 30, 40];
        let mut ctx: [i32; 2];
        let mut scores = [0i32; 2];
        // score unit 1/64, ctx scale equal to value scale.
        let to_log2 = Requant::from_real(1.0 / 64.0 * core::f64::consts::LOG2_E * 65536.0);
        let r = Requant::from_real(1.0 / 32768.0);
        let ctx_rq = [[r.multiplier, r.shift]; 2];
        // An int8 query (the encoder's) and an int16 one (the decoder's).
        fn context<Q: QueryElem>(
            q: &[Q],
            keys: &[i8],
            values: &[i8],
            rq: (Requant, &[[i32; 2]]),
        ) -> [i32; 2] {
            let (mut ctx, mut scores) = ([0i32; 2], [0i32; 2]);
            attend_i8(
                &mut ctx,
                q,
                keys,
                values,
                2,
                0,
                rq.0,
                rq.1,
                &mut scores,
                |_| true,
            );
            ctx
        }
        assert_eq!(
            context(&[0i8, 127], &keys, &values, (to_log2, &ctx_rq)),
            [30, 40]
        );
        assert_eq!(
            context(&[0i16, 127], &keys, &values, (to_log2, &ctx_rq)),
            [30, 40]
        );
        // Arguments outside the forward pass's shape (a head past `hidden`, a query of
        // another length, `hidden` 0) give an empty context, not a panic.
        for (q, hidden, head) in [
            (&[0i8, 127][..], 2, 1),
            (&[1][..], 2, 0),
            (&[0, 127][..], 0, 0),
        ] {
            ctx = [7, 7];
            attend_i8(
                &mut ctx,
                q,
                &keys,
                &values,
                hidden,
                head,
                to_log2,
                &ctx_rq,
                &mut scores,
                |_| true,
            );
            assert_eq!(ctx, [0, 0], "hidden {hidden} head {head}");
        }
    }

    #[test]
    fn attention_rows_match_row_by_row() {
        use crate::rng::XorShift64Star;
        let mut rng = XorShift64Star::new(31);
        let kernels = Int8Kernel::ALL.into_iter().filter(|k| k.is_available());
        // (query rows, keys, heads, head_dim): across the 16-row tiles, 64-row blocks,
        // odd key counts and channel tails.
        let shapes: &[(usize, usize, usize, usize)] = if cfg!(miri) {
            &[(3, 5, 2, 4)]
        } else {
            &[
                (1, 1, 1, 4),
                (5, 9, 3, 24),
                (17, 33, 2, 32),
                (64, 64, 4, 24),
                (70, 20, 2, 20),
                (3, 7, 1, 6),
            ]
        };
        for kernel in kernels {
            for &(rows, keys_n, heads, head_dim) in shapes {
                let hidden = heads * head_dim;
                let mut random = |n: usize, scale: u32| -> Vec<i8> {
                    (0..n).map(|_| (rng.next_u32() % scale) as i8).collect()
                };
                let queries = random(rows * hidden, 256);
                let keys = random(keys_n * hidden, 256);
                let values = random(keys_n * hidden, 256);
                let r = Requant::from_real(1.0 / 4096.0);
                let ctx_rq = vec![[r.multiplier, r.shift]; head_dim];
                // Sharp scores (every row with one certain key) and soft ones; every
                // third key masked in one pass.
                for (sharp, masked) in [(false, false), (true, false), (false, true)] {
                    let to_log2 = Requant::from_real(if sharp { 40.0 } else { 0.02 });
                    let exponents: Vec<u8> = (0..rows as u8).map(|t| t % 3).collect();
                    let keep = |j: usize| !masked || j % 3 != 1;
                    let mut want = vec![7i32; rows * hidden];
                    let mut scores = vec![0i32; keys_n];
                    for t in 0..rows {
                        for head in 0..heads {
                            let cols = head * head_dim..(head + 1) * head_dim;
                            let q = &queries[t * hidden..][cols.clone()];
                            let ctx = &mut want[t * hidden..][cols.clone()];
                            let rq = to_log2.with_exponent(u32::from(exponents[t]));
                            attend_i8_with(
                                kernel,
                                ctx,
                                q,
                                &keys,
                                &values,
                                hidden,
                                head,
                                rq,
                                &ctx_rq,
                                &mut scores,
                                keep,
                            );
                        }
                    }
                    let mut got = vec![7i32; rows * hidden];
                    let mut scores = vec![0i32; rows * keys_n];
                    for head in 0..heads {
                        let q = RowsI8 {
                            data: &queries[head * head_dim..],
                            rows,
                            cols: head_dim,
                            stride: hidden,
                        };
                        attend_rows_i8_with(
                            kernel,
                            &mut got,
                            q,
                            (&keys, &values),
                            (hidden, head),
                            (to_log2, &exponents),
                            &ctx_rq,
                            &mut scores,
                            keep,
                        );
                    }
                    let name = format!("{kernel:?} {rows}x{keys_n} heads {heads}x{head_dim} sharp {sharp} masked {masked}");
                    assert_eq!(got, want, "{name}");
                }
            }
        }
    }
}
