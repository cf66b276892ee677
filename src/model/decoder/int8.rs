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

use super::plan::views;
use super::{Shape, Step};
use crate::format::{scalar, ModelFile, TensorKind as K};
use crate::kernels::attention::attend_i8_with;
use crate::kernels::gelu::{activation_q10, Tail, ACT_FRAC_BITS};
use crate::kernels::matvec::{matvec_i16_with, Int8Kernel};
use crate::kernels::rmsnorm::rms_norm_i32;
use crate::kernels::rope::rope_i32;
use crate::model::{Fixed, FixedObserver, Point};
use crate::quant::{narrow_row_i16, saturate_i8, saturate_residual, Requant};

/// Extra fractional bits of the wide key grid over the int8 cache grid: `KeyRq` maps
/// to `s_cache / 2^8`, so RoPE rotates keys 256 times finer than they are stored.
pub const KEY_WIDE_BITS: u32 = 8;

/// Runs `token` at position `pos` (`< plan.ctx`, checked by the caller); see
/// [`super::float::step`].
pub(crate) fn step<O: FixedObserver>(step: &Step<'_, '_>, arena: &mut [u8], obs: &mut O) {
    let Step {
        file,
        kernel,
        plan,
        token,
        pos,
        logits,
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
    let scalars: &[i32] = file.tensor(K::DecScalars, None);
    let eps = {
        let part = |i| scalars.get(scalar::RMS_EPS + i).copied().unwrap_or(0);
        (i64::from(part(1)) << 32) | i64::from(part(0) as u32)
    };
    let act_table: &[i32] = file.tensor(K::ActTable, None);
    let rope: &[i32] = file.tensor(K::RopeTable, None);
    let rope_row = rope
        .get(pos * head_dim..(pos + 1) * head_dim)
        .unwrap_or(&[]);
    let kernel = kernel.resolved();
    let v = views::<i32, i16, i8>(plan, arena);
    let x = v.residual;

    let emb: &[i8] = file.tensor(K::WordEmb, None);
    let emb_rq = Requant::from_table(file.tensor(K::WordRq, None), token as usize);
    let row = token as usize * hidden;
    for (r, &q) in x.iter_mut().zip(emb.get(row..row + hidden).unwrap_or(&[])) {
        *r = saturate_residual(emb_rq.apply(i32::from(q)));
    }
    obs.observe(Point::EmbSum, 0, Fixed::I32(x));

    for layer in 0..config.layers as usize {
        let l = Some(layer as u16);
        let cache_row = (layer * plan.ctx + pos) * kv_dim;
        let layer_start = layer * plan.ctx * kv_dim;

        // Attention block.
        let xq = v.input.get_mut(..hidden).unwrap_or(&mut []);
        rms_norm_i32(v.context, x, file.tensor(K::RmsAttn, l), eps);
        let e = narrow_row_i16(xq, v.context);
        to_wide(v.query, xq, e, file, kernel, K::QueryW, K::QueryRq, l);
        to_wide(v.key, xq, e, file, kernel, K::KeyW, K::KeyRq, l);
        let value_rq: &[[i32; 2]] = file.tensor(K::ValueRq, l);
        let value = v
            .values
            .get_mut(cache_row..cache_row + kv_dim)
            .unwrap_or(&mut []);
        matvec_i16_with(kernel, kv_dim, xq, file.tensor(K::ValueW, l), |o, acc| {
            if let Some(y) = value.get_mut(o) {
                *y = saturate_i8(i64::from(
                    Requant::from_table(value_rq, o).apply_scaled_i32(acc, e),
                ));
            }
        });
        rope_i32(v.query, head_dim, rope_row);
        rope_i32(v.key, head_dim, rope_row);
        // Each cached key channel has its own scale; the query channel that meets it
        // takes the matching factor, so `q~ . k_cache = q . k`.
        let query_key_rq: &[[i32; 2]] = file.tensor(K::QueryKeyRq, l);
        for (head, query) in v.query.chunks_exact_mut(head_dim.max(1)).enumerate() {
            let kv_head = head / group.max(1);
            let rq = query_key_rq
                .get(kv_head * head_dim..(kv_head + 1) * head_dim)
                .unwrap_or(&[]);
            for (q, &[multiplier, shift]) in query.iter_mut().zip(rq) {
                // `saturate_residual(rq.apply(q))` (a validated pair), in 32-bit steps.
                *q = Requant::new(multiplier, shift).add_scaled_residual(0, *q, 0);
            }
        }
        let key_cache_rq: &[[i32; 2]] = file.tensor(K::KeyCacheRq, l);
        let key = v
            .keys
            .get_mut(cache_row..cache_row + kv_dim)
            .unwrap_or(&mut []);
        for (c, (k, &wide)) in key.iter_mut().zip(v.key.iter()).enumerate() {
            *k = saturate_i8(i64::from(
                Requant::from_table(key_cache_rq, c).apply_scaled_i32(wide, 0),
            ));
        }
        obs.observe(Point::Query, layer, Fixed::I32(v.query));
        obs.observe(Point::Key, layer, Fixed::I8(key));

        let seen = layer_start..cache_row + kv_dim;
        let keys = v.keys.get(seen.clone()).unwrap_or(&[]);
        let values = v.values.get(seen).unwrap_or(&[]);
        let scores = v.scores.get_mut(..=pos).unwrap_or(&mut []);
        let score_rq: &[[i32; 2]] = file.tensor(K::ScoreRq, l);
        let ctx_rq: &[[i32; 2]] = file.tensor(K::CtxRq, l);
        for head in 0..heads {
            let cols = head * head_dim..(head + 1) * head_dim;
            let query = v.query_narrow.get_mut(cols.clone()).unwrap_or(&mut []);
            let e_q = narrow_row_i16(query, v.query.get(cols.clone()).unwrap_or(&[]));
            let kv_head = head / group;
            attend_i8_with(
                kernel,
                v.context.get_mut(cols.clone()).unwrap_or(&mut []),
                query,
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
        obs.observe(Point::Context, layer, Fixed::I32(v.context));
        let e_ctx = narrow_row_i16(xq, v.context);
        add_projection(x, xq, e_ctx, file, kernel, K::AttnOutW, K::AttnOutRq, l);
        obs.observe(Point::AttnSum, layer, Fixed::I32(x));

        // SwiGLU block.
        rms_norm_i32(v.context, x, file.tensor(K::RmsFfn, l), eps);
        let e = narrow_row_i16(xq, v.context);
        to_wide(v.gate, xq, e, file, kernel, K::GateW, K::GateRq, l);
        to_wide(v.up, xq, e, file, kernel, K::UpW, K::UpRq, l);
        for (g, &u) in v.gate.iter_mut().zip(v.up.iter()) {
            let silu = i64::from(activation_q10(*g, act_table, Tail::Linear));
            *g = saturate_residual((silu * i64::from(u)) >> ACT_FRAC_BITS);
        }
        obs.observe(Point::Act, layer, Fixed::I32(v.gate));
        let hq = v.input.get_mut(..ffn).unwrap_or(&mut []);
        let e_h = narrow_row_i16(hq, v.gate);
        add_projection(x, hq, e_h, file, kernel, K::DownW, K::DownRq, l);
        obs.observe(Point::FfnSum, layer, Fixed::I32(x));
    }

    if logits {
        let xq = v.input.get_mut(..hidden).unwrap_or(&mut []);
        rms_norm_i32(v.context, x, file.tensor(K::RmsFinal, None), eps);
        let e = narrow_row_i16(xq, v.context);
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

/// `out = sat_r(rq 2^e (W xq))` on a wide grid (`out.len()` rows of `W`), for an
/// input row of scale `2^e`. (Flat arguments on purpose: passing the weights as a
/// tuple costs 0.4% more instructions per token on the Cortex-M4.)
#[allow(clippy::too_many_arguments)]
fn to_wide(
    out: &mut [i32],
    xq: &[i16],
    e: i32,
    file: &ModelFile<'_>,
    kernel: Int8Kernel,
    w: K,
    rq: K,
    l: Option<u16>,
) {
    project(out, xq, file, kernel, (w, rq, l), |_, rq, acc| {
        rq.add_scaled_residual(0, acc, e)
    });
}

/// `x += rq 2^e (W xq)`: a projection back into the residual stream.
#[allow(clippy::too_many_arguments)]
fn add_projection(
    x: &mut [i32],
    xq: &[i16],
    e: i32,
    file: &ModelFile<'_>,
    kernel: Int8Kernel,
    w: K,
    rq: K,
    l: Option<u16>,
) {
    project(x, xq, file, kernel, (w, rq, l), |old, rq, acc| {
        rq.add_scaled_residual(old, acc, e)
    });
}

/// `out[o] = combine(out[o], rq[o], (W xq)[o])` for the `out.len()` rows of `W`.
fn project(
    out: &mut [i32],
    xq: &[i16],
    file: &ModelFile<'_>,
    kernel: Int8Kernel,
    (w, rq, l): (K, K, Option<u16>),
    combine: impl Fn(i32, Requant, i32) -> i32,
) {
    let rq: &[[i32; 2]] = file.tensor(rq, l);
    matvec_i16_with(kernel, out.len(), xq, file.tensor(w, l), |o, acc| {
        if let Some(y) = out.get_mut(o) {
            *y = combine(*y, Requant::from_table(rq, o), acc);
        }
    });
}
