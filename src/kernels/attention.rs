//! Scaled dot-product attention for one query row and one head.
//!
//! Keys and values are the full `[seq, hidden]` projections; head `h` uses columns
//! `h * head_dim .. (h + 1) * head_dim`. The only scratch is one row of `seq` scores,
//! so attention memory grows O(seq), not O(heads * seq^2).

use super::matvec::{Int8Kernel, QueryElem};
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
/// Cortex-M DSP kernel for a head of 8.
#[inline]
pub fn weighted_values(ctx: &mut [i32], probs: &[i32], values: &[i8], hidden: usize, head: usize) {
    weighted_values_with(Int8Kernel::best(), ctx, probs, values, hidden, head);
}

/// [`weighted_values_reference`] by `kernel`'s path: the AVX2 build of the reference
/// for [`Int8Kernel::Avx2`] and [`Int8Kernel::AvxVnni`] (with `std`, on a CPU with
/// AVX2), the Cortex-M DSP kernel for a head of 8 with [`Int8Kernel::Dsp`], else the
/// reference.
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
}
