//! One decoder step in full-integer arithmetic: int8 weights, an int8 key/value cache,
//! the inputs of every product narrowed to int16 per token with the row's own scale
//! (TFLite's "16x8" scheme: int16 activations times int8 weights, exact in `i32`),
//! i32 residual stream, integer RMSNorm, RoPE from a Q14 table, SiLU by table and the
//! fixed-point softmax. It executes no floating-point operation.
//!
//! Why int16 activations: the f64 simulation `tools/reference/decoder_int8_ceiling.py`
//! puts int8 activations (one scale per token row) as the largest single loss of top-1
//! agreement with the float model (0.977 alone); at 16 bits they cost nothing
//! measurable, and the products are as cheap (the DSP and AVX2 kernels widen both
//! operands to 16 bits anyway). Weights and the cache, which hold the memory, stay
//! int8.
//!
//! ```text
//! x = WordRq[token](emb[token])                                   (residual, i32)
//! for each layer:
//!     xq, e = narrow(rmsnorm(x))                                (int16, scale 2^e)
//!     q = QueryKeyRq rope(QueryRq_e (Wq xq)) ; k = rope(KeyRq_e (Wk xq))    (i32)
//!     keys[pos] = KeyCacheRq k ; values[pos] = ValueRq_e (Wv xq)  (int8 cache)
//!     per head: qq, e_q = narrow(q) ; ctx = CtxRq(softmax(ScoreRq_e_q (qq . K)) V)
//!     cq, e_c = narrow(ctx) ; x += AttnOutRq_e_c (Wo cq)
//!     xq, e = narrow(rmsnorm(x)) ; h = silu(GateRq_e (Wg xq)) * UpRq_e (Wu xq) (Q10)
//!     hq, e_h = narrow(h) ; x += DownRq_e_h (Wd hq)
//! logits = OutputRq_e (Wout narrow(rmsnorm(x)))                   (Q16)
//! ```
//!
//! `narrow` scales a wide row by a power of two `2^-e` so that its largest magnitude
//! lands in `(top / 2, top]` (`top` = 32,767 for rows up to 512 elements) and returns
//! `e`; `Rq_e` is the tensor's requantization pair times `2^e`, a shift, so a product
//! with a narrowed row costs no per-row multiplier ([`crate::quant::narrow_row_i16`],
//! [`Requant::apply_scaled`]).
//!
//! The scales are the converter's, folded into the `*Rq` tables (`docs/FORMAT.md`).

use super::plan::{views, MAX_PREFILL_ROWS};
use super::{Shape, Step};
use crate::format::{scalar, ModelFile, TensorKind as K};
use crate::kernels::attention::attend_i8_with;
use crate::kernels::gelu::{activation_q10, Tail, ACT_FRAC_BITS};
use crate::kernels::matvec::{matmul_i16_with, matvec_i16_with, Int8Kernel};
use crate::kernels::rmsnorm::rms_norm_i32;
use crate::kernels::rope::rope_i32;
#[cfg(feature = "threads")]
use crate::model::parallel::{each, MIN_MACS};
use crate::model::{Fixed, FixedObserver, Point};
use crate::quant::{narrow_row_i16, saturate_i8, saturate_residual, Requant};

/// Extra fractional bits of the wide key grid over the int8 cache grid: `KeyRq` maps
/// to `s_cache / 2^8`, so RoPE rotates keys 256 times finer than they are stored.
pub const KEY_WIDE_BITS: u32 = 8;

/// Runs the block `step.tokens` (at most `plan.rows`) at positions `pos..` (within
/// `plan.ctx`, checked by the caller); see [`super::float::step`]. Every token goes
/// through exactly the operations of a block of one: a block only shares each weight
/// matrix's pass among its tokens ([`matmul_i16_with`]), so the cache and logits are
/// bit-identical whatever the block size.
pub(crate) fn step<O: FixedObserver>(step: &Step<'_, '_>, arena: &mut [u8], obs: &mut O) {
    let Step {
        file,
        kernel,
        plan,
        tokens,
        pos,
        logits,
        ..
    } = *step;
    let config = file.config();
    let Some(dec) = config.decoder else { return };
    let Shape {
        hidden,
        ffn,
        heads,
        head_dim,
        kv_dim,
        group,
    } = Shape::of(config);
    let n = tokens.len().min(plan.rows).min(MAX_PREFILL_ROWS);
    let tokens = tokens.get(..n).unwrap_or(&[]);
    let scalars: &[i32] = file.tensor(K::DecScalars, None);
    let eps = {
        let part = |i| scalars.get(scalar::RMS_EPS + i).copied().unwrap_or(0);
        (i64::from(part(1)) << 32) | i64::from(part(0) as u32)
    };
    let act_table: &[i32] = file.tensor(K::ActTable, None);
    let rope: &[i32] = file.tensor(K::RopeTable, None);
    let kernel = kernel.resolved();
    let exec = Exec {
        kernel,
        #[cfg(feature = "threads")]
        threads: step.threads,
    };
    let v = views::<i32, i16, i8>(plan, arena);
    // The block's rows of the scratch buffers (a plan has room for `plan.rows`).
    let x = v.residual.get_mut(..n * hidden).unwrap_or(&mut []);
    let query = v.query.get_mut(..n * hidden).unwrap_or(&mut []);
    let wide_keys = v.key.get_mut(..n * kv_dim).unwrap_or(&mut []);
    let context = v.context.get_mut(..n * hidden).unwrap_or(&mut []);
    let gate = v.gate.get_mut(..n * ffn).unwrap_or(&mut []);
    let up = v.up.get_mut(..n * ffn).unwrap_or(&mut []);
    // Row `t` of a block buffer of `width` elements per token.
    #[inline(always)]
    fn row<T>(buf: &mut [T], t: usize, width: usize) -> &mut [T] {
        buf.get_mut(t * width..(t + 1) * width).unwrap_or(&mut [])
    }
    // The narrowing exponent of each token's current matmul input row.
    let mut e = [0i32; MAX_PREFILL_ROWS];
    let e = e.get_mut(..n).unwrap_or(&mut []);

    let emb: &[i8] = file.tensor(K::WordEmb, None);
    let word_rq: &[[i32; 2]] = file.tensor(K::WordRq, None);
    for (t, &token) in tokens.iter().enumerate() {
        let emb_rq = Requant::from_table(word_rq, token as usize);
        let at = token as usize * hidden;
        let x = row(x, t, hidden);
        for (r, &q) in x.iter_mut().zip(emb.get(at..at + hidden).unwrap_or(&[])) {
            *r = saturate_residual(emb_rq.apply(i32::from(q)));
        }
        obs.observe(Point::EmbSum, 0, Fixed::I32(x));
    }
    for layer in 0..config.layers as usize {
        let l = Some(layer as u16);
        let xq = v.input.get_mut(..n * hidden).unwrap_or(&mut []);
        let layer_start = layer * plan.ctx * kv_dim;
        let cache_row = |t: usize| (layer * plan.ctx + pos + t) * kv_dim;

        // Attention block: the block's queries, keys and values.
        norm_rows(xq, e, context, x, file.tensor(K::RmsAttn, l), eps);
        to_wide(query, xq, e, file, exec, K::QueryW, K::QueryRq, l);
        to_wide(wide_keys, xq, e, file, exec, K::KeyW, K::KeyRq, l);
        // The values go straight into the cache rows of the block's positions, which
        // follow each other: `n` rows of `kv_dim` from `cache_row(0)`.
        let values = v
            .values
            .get_mut(cache_row(0)..cache_row(0) + n * kv_dim)
            .unwrap_or(&mut []);
        project(
            values,
            xq,
            e,
            file,
            exec,
            (K::ValueW, K::ValueRq, l),
            |_, rq, acc, e| saturate_i8(i64::from(rq.apply_scaled_i32(acc, e))),
        );
        let query_key_rq: &[[i32; 2]] = file.tensor(K::QueryKeyRq, l);
        let key_cache_rq: &[[i32; 2]] = file.tensor(K::KeyCacheRq, l);
        for t in 0..n {
            let p = pos + t;
            let rope_row = rope.get(p * head_dim..(p + 1) * head_dim).unwrap_or(&[]);
            let q_row = row(query, t, hidden);
            let wide_key = row(wide_keys, t, kv_dim);
            rope_i32(q_row, head_dim, rope_row);
            rope_i32(wide_key, head_dim, rope_row);
            // Each cached key channel has its own scale; the query channel that meets
            // it takes the matching factor, so `q~ . k_cache = q . k`.
            for (head, q_head) in q_row.chunks_exact_mut(head_dim.max(1)).enumerate() {
                let kv_head = head / group.max(1);
                let rq = query_key_rq
                    .get(kv_head * head_dim..(kv_head + 1) * head_dim)
                    .unwrap_or(&[]);
                for (q, &[multiplier, shift]) in q_head.iter_mut().zip(rq) {
                    // `saturate_residual(rq.apply(q))` (a validated pair), in 32-bit
                    // steps.
                    *q = Requant::new(multiplier, shift).add_scaled_residual(0, *q, 0);
                }
            }
            let key = v
                .keys
                .get_mut(cache_row(t)..cache_row(t) + kv_dim)
                .unwrap_or(&mut []);
            for (c, (k, &wide)) in key.iter_mut().zip(wide_key.iter()).enumerate() {
                *k = saturate_i8(i64::from(
                    Requant::from_table(key_cache_rq, c).apply_scaled_i32(wide, 0),
                ));
            }
            obs.observe(Point::Query, layer, Fixed::I32(q_row));
            obs.observe(Point::Key, layer, Fixed::I8(key));
        }

        // Each token attends to the cache up to its own position (the block's later
        // keys are already cached, and not seen).
        let score_rq: &[[i32; 2]] = file.tensor(K::ScoreRq, l);
        let ctx_rq: &[[i32; 2]] = file.tensor(K::CtxRq, l);
        for (t, e) in e.iter_mut().enumerate() {
            let seen = layer_start..cache_row(t) + kv_dim;
            let keys = v.keys.get(seen.clone()).unwrap_or(&[]);
            let values = v.values.get(seen).unwrap_or(&[]);
            let scores = v.scores.get_mut(..=pos + t).unwrap_or(&mut []);
            let q_row = row(query, t, hidden);
            let c_row = row(context, t, hidden);
            for head in 0..heads {
                let cols = head * head_dim..(head + 1) * head_dim;
                let narrow = v.query_narrow.get_mut(cols.clone()).unwrap_or(&mut []);
                let e_q = narrow_row_i16(narrow, q_row.get(cols.clone()).unwrap_or(&[]));
                let kv_head = head / group;
                attend_i8_with(
                    kernel,
                    c_row.get_mut(cols.clone()).unwrap_or(&mut []),
                    narrow,
                    keys,
                    values,
                    kv_dim,
                    kv_head,
                    Requant::from_table(score_rq, kv_head).times_pow2(e_q),
                    ctx_rq.get(cols).unwrap_or(&[]),
                    scores,
                    |_| true,
                );
            }
            obs.observe(Point::Context, layer, Fixed::I32(c_row));
            *e = narrow_row_i16(row(xq, t, hidden), c_row);
        }
        add_projection(x, xq, e, file, exec, K::AttnOutW, K::AttnOutRq, l);
        for t in 0..n {
            obs.observe(Point::AttnSum, layer, Fixed::I32(row(x, t, hidden)));
        }

        // SwiGLU block.
        norm_rows(xq, e, context, x, file.tensor(K::RmsFfn, l), eps);
        to_wide(gate, xq, e, file, exec, K::GateW, K::GateRq, l);
        to_wide(up, xq, e, file, exec, K::UpW, K::UpRq, l);
        let hq = v.input.get_mut(..n * ffn).unwrap_or(&mut []);
        for (t, e) in e.iter_mut().enumerate() {
            let gate = row(gate, t, ffn);
            for (g, &u) in gate.iter_mut().zip(row(up, t, ffn).iter()) {
                let silu = i64::from(activation_q10(*g, act_table, Tail::Linear));
                *g = saturate_residual((silu * i64::from(u)) >> ACT_FRAC_BITS);
            }
            obs.observe(Point::Act, layer, Fixed::I32(gate));
            *e = narrow_row_i16(row(hq, t, ffn), gate);
        }
        add_projection(x, hq, e, file, exec, K::DownW, K::DownRq, l);
        for t in 0..n {
            obs.observe(Point::FfnSum, layer, Fixed::I32(row(x, t, hidden)));
        }
    }

    // The logits of the block's last token.
    if let (true, Some(last)) = (logits, n.checked_sub(1)) {
        let xq = v.input.get_mut(..hidden).unwrap_or(&mut []);
        let normed = row(context, 0, hidden);
        rms_norm_i32(
            normed,
            row(x, last, hidden),
            file.tensor(K::RmsFinal, None),
            eps,
        );
        let e = narrow_row_i16(xq, normed);
        let head = if dec.separate_output {
            K::OutputW
        } else {
            K::WordEmb
        };
        let rq: &[[i32; 2]] = file.tensor(K::OutputRq, None);
        let out = &mut *v.logits;
        matvec_i16_with(kernel, out.len(), xq, file.tensor(head, None), |o, acc| {
            if let Some(y) = out.get_mut(o) {
                *y = Requant::from_table(rq, o).apply_scaled_i32(acc, e);
            }
        });
        obs.observe(Point::Logits, 0, Fixed::I32(v.logits));
    }
}

/// For each token row `t` of the residual `x` (`e.len()` rows): `xq[t], e[t] =
/// narrow(rmsnorm(x[t]) * gamma)`, `normed` the wide scratch.
#[inline(always)]
fn norm_rows(
    xq: &mut [i16],
    e: &mut [i32],
    normed: &mut [i32],
    x: &[i32],
    gamma: &[i32],
    eps: i64,
) {
    let width = x.len() / e.len().max(1);
    let chunks = xq
        .chunks_exact_mut(width.max(1))
        .zip(normed.chunks_exact_mut(width.max(1)))
        .zip(x.chunks_exact(width.max(1)));
    for (e, ((xq, normed), x)) in e.iter_mut().zip(chunks) {
        rms_norm_i32(normed, x, gamma, eps);
        *e = narrow_row_i16(xq, normed);
    }
}

/// `out[t] = sat_r(rq 2^e[t] (W xq[t]))` on a wide grid for each token row `t` of
/// `xq` (scale `2^e[t]`; `out` rows are the rows of `W`). (Flat arguments on purpose:
/// passing the weights as a tuple costs 0.4% more instructions per token on the
/// Cortex-M4.)
#[allow(clippy::too_many_arguments)]
fn to_wide(
    out: &mut [i32],
    xq: &[i16],
    e: &[i32],
    file: &ModelFile<'_>,
    exec: Exec,
    w: K,
    rq: K,
    l: Option<u16>,
) {
    project(out, xq, e, file, exec, (w, rq, l), |_, rq, acc, e| {
        rq.add_scaled_residual(0, acc, e)
    });
}

/// `x[t] += rq 2^e[t] (W xq[t])`: projections back into the residual stream.
#[allow(clippy::too_many_arguments)]
fn add_projection(
    x: &mut [i32],
    xq: &[i16],
    e: &[i32],
    file: &ModelFile<'_>,
    exec: Exec,
    w: K,
    rq: K,
    l: Option<u16>,
) {
    project(x, xq, e, file, exec, (w, rq, l), |old, rq, acc, e| {
        rq.add_scaled_residual(old, acc, e)
    });
}

/// The kernel of a block's weight products and, with the `threads` feature, the threads
/// a block's projections may be split across ([`project`]).
#[derive(Clone, Copy)]
struct Exec {
    kernel: Int8Kernel,
    #[cfg(feature = "threads")]
    threads: usize,
}

/// `out[t][o] = combine(out[t][o], rq[o], (W xq[t])[o], e[t])` for the `e.len()` token
/// rows of `xq` and the rows `o` of `W` (`out.len() / e.len()` of them).
#[allow(clippy::too_many_arguments)]
fn project<T: Copy + Send>(
    out: &mut [T],
    xq: &[i16],
    e: &[i32],
    file: &ModelFile<'_>,
    exec: Exec,
    (w, rq, l): (K, K, Option<u16>),
    combine: impl Fn(T, Requant, i32, i32) -> T + Sync,
) {
    let rq: &[[i32; 2]] = file.tensor(rq, l);
    let w = file.tensor(w, l);
    let n = e.len().max(1);
    let (rows, cols) = (out.len() / n, xq.len() / n);
    let kernel = exec.kernel;
    #[cfg(feature = "threads")]
    if exec.threads > 1 && n > 1 && n * rows * cols >= MIN_MACS {
        return project_parts(out, (xq, e), (w, rq), (kernel, exec.threads), &combine);
    }
    if n > 1 && kernel.has_i16_matmul() {
        matmul_i16_with(kernel, rows, cols, xq, w, |t, o, acc| {
            if let (Some(y), Some(&e)) = (out.get_mut(t * rows + o), e.get(t)) {
                *y = combine(*y, Requant::from_table(rq, o), acc, e);
            }
        });
        return;
    }
    if let &[e] = e {
        // One token (every decoding step): the store needs no per-token indexing (a
        // shared path with the loop below costs 0.4% more instructions per token on
        // the Cortex-M4).
        matvec_i16_with(kernel, rows, xq, w, |o, acc| {
            if let Some(y) = out.get_mut(o) {
                *y = combine(*y, Requant::from_table(rq, o), acc, e);
            }
        });
        return;
    }
    // A block on a kernel without a multi-token path: token by token.
    for (t, &e) in e.iter().enumerate() {
        let out = out.get_mut(t * rows..(t + 1) * rows).unwrap_or(&mut []);
        let x = xq.get(t * cols..(t + 1) * cols).unwrap_or(&[]);
        matvec_i16_with(kernel, rows, x, w, |o, acc| {
            if let Some(y) = out.get_mut(o) {
                *y = combine(*y, Requant::from_table(rq, o), acc, e);
            }
        });
    }
}

/// [`project`] on `threads` threads: the rows of `W` in one part per thread (each
/// part's slice of every token's row of `out`, and its rows of `W` and `rq`), each
/// part's products by [`matmul_i16_with`] on `kernel` (every kernel gives the
/// reference's values) with the same `combine`: the results of one thread.
#[cfg(feature = "threads")]
fn project_parts<T: Copy + Send>(
    out: &mut [T],
    (xq, e): (&[i16], &[i32]),
    (w, rq): (&[i8], &[[i32; 2]]),
    (kernel, threads): (Int8Kernel, usize),
    combine: &(impl Fn(T, Requant, i32, i32) -> T + Sync),
) {
    let n = e.len().max(1);
    let (rows, cols) = (out.len() / n, xq.len() / n);
    let part = rows.div_ceil(threads).max(1);
    let mut parts: std::vec::Vec<std::vec::Vec<&mut [T]>> = (0..rows.div_ceil(part))
        .map(|_| std::vec::Vec::with_capacity(n))
        .collect();
    for token_out in out.chunks_exact_mut(rows.max(1)).take(n) {
        for (outs, slice) in parts.iter_mut().zip(token_out.chunks_mut(part)) {
            outs.push(slice);
        }
    }
    let parts = parts.into_iter().enumerate();
    each(threads, parts, |(p, mut outs)| {
        let first = p * part;
        let part_w = w.get(first * cols..).unwrap_or(&[]);
        let part_rows = outs.first().map_or(0, |row| row.len());
        matmul_i16_with(kernel, part_rows, cols, xq, part_w, |t, o, acc| {
            let y = outs.get_mut(t).and_then(|row| row.get_mut(o));
            if let (Some(y), Some(&e)) = (y, e.get(t)) {
                *y = combine(*y, Requant::from_table(rq, first + o), acc, e);
            }
        });
    });
}
