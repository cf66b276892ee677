//! The full-integer forward pass: int8 weights and activations, i32 accumulators and
//! residual stream, fixed-point requantization, integer softmax, LayerNorm and
//! table-driven activations. It executes no floating-point operation.
//!
//! Scales never appear here: the converter folded them into the `*Rq` tables, the
//! integer LayerNorm parameters and the scalar tensors (see `docs/FORMAT.md`).

use super::float::{copy, row};
use super::plan::{attention, ffn, views, Plan, MAX_BATCH_ROWS};
use super::{Fixed, FixedObserver, Input, Point};
use crate::format::{scalar, ModelFile, Pooling, TensorKind as K};
use crate::kernels::attention::attend_i8;
use crate::kernels::gelu::{activation_q10, Tail};
use crate::kernels::layernorm::layer_norm_i32;
use crate::kernels::matvec::{matmul_i8, matvec_i8};
use crate::quant::{div_round, narrow_row, saturate_i8, saturate_residual, Requant};

/// A quantized dense layer: `W` int8 `[out, in]`, bias i32 `[out]` in units of
/// `s_in * s_w[o]`, and per-output `(multiplier, shift)` to the output scale.
struct Dense<'a> {
    w: &'a [i8],
    b: &'a [i32],
    rq: &'a [[i32; 2]],
}

impl<'a> Dense<'a> {
    fn load(file: &ModelFile<'a>, w: K, b: K, rq: K, layer: Option<u16>) -> Self {
        Self {
            w: file.tensor(w, layer),
            b: file.tensor(b, layer),
            rq: file.tensor(rq, layer),
        }
    }

    /// `out[t] = sat_r(rq(W xs[t] + b))` on a wide (i32) grid, for every token row of
    /// `xs` (`cols` wide), into rows of `rows` in `out`.
    fn to_wide_rows(&self, out: &mut [i32], xs: &[i8], rows: usize, cols: usize) {
        matmul_i8(rows, cols, xs, self.w, self.b, |t, o, acc| {
            if let Some(y) = out.get_mut(t * rows + o) {
                *y = saturate_residual(Requant::from_table(self.rq, o).apply(acc));
            }
        });
    }

    /// `out[t] = sat8(rq(W xs[t] + b))` for every token row of `xs` (`cols` wide),
    /// into rows of `rows` in `out`.
    fn to_i8_rows(&self, out: &mut [i8], xs: &[i8], rows: usize, cols: usize) {
        matmul_i8(rows, cols, xs, self.w, self.b, |t, o, acc| {
            if let Some(y) = out.get_mut(t * rows + o) {
                *y = saturate_i8(Requant::from_table(self.rq, o).apply(acc));
            }
        });
    }

    /// For every token row `t`: `residual[t] = sat_r(rq(W xs[t] * 2^exponents[t]) +
    /// rq(b) + skip_rq(skip[t]))`, the projection back into the residual stream plus
    /// the skip connection (per-channel scales: LayerNorm outputs are quantized per
    /// channel, see `docs/FORMAT.md`). `exponents[t]` is the input row's power-of-two
    /// scale; the bias is on the unscaled grid, so it is requantized on its own.
    /// `residual` and `skip` rows are `hidden` wide, `xs` rows `cols` wide.
    fn to_residual_rows(
        &self,
        residual: &mut [i32],
        xs: &[i8],
        exponents: &[u32],
        skip: &[i8],
        skip_rq: &[[i32; 2]],
        (hidden, cols): (usize, usize),
    ) {
        matmul_i8(hidden, cols, xs, self.w, &[], |t, o, dot| {
            let rq = Requant::from_table(self.rq, o);
            let bias = rq.apply(self.b.get(o).copied().unwrap_or(0));
            let at = t * hidden + o;
            let s = i32::from(skip.get(at).copied().unwrap_or(0));
            let exponent = exponents.get(t).copied().unwrap_or(0);
            if let Some(r) = residual.get_mut(at) {
                let skip = Requant::from_table(skip_rq, o).apply(s);
                *r = saturate_residual(rq.apply_scaled(dot, exponent as i32) + bias + skip);
            }
        });
    }
}

/// Integer LayerNorm parameters `[2, hidden]` (gamma_q row, beta_q row).
fn norm_params<'a>(
    file: &ModelFile<'a>,
    kind: K,
    layer: Option<u16>,
    hidden: usize,
) -> (&'a [i32], &'a [i32]) {
    let params: &[i32] = file.tensor(kind, layer);
    params.split_at(hidden.min(params.len()))
}

fn requant_at(scalars: &[i32], at: usize) -> Requant {
    Requant::new(
        scalars.get(at).copied().unwrap_or(0),
        scalars.get(at + 1).copied().unwrap_or(0),
    )
}

fn eps_at(scalars: &[i32], at: usize) -> i64 {
    i64::from(scalars.get(at).copied().unwrap_or(0))
}

/// LayerNorm of each residual row into the matching row of `xs` (both `hidden`
/// wide), reporting the sum and the output at `points`.
fn norm_rows<O: FixedObserver>(
    (xs, residual, hidden): (&mut [i8], &[i32], usize),
    (gamma, beta, eps): (&[i32], &[i32], i64),
    points: (Point, Point),
    layer: usize,
    obs: &mut O,
) {
    for (x, sum) in xs
        .chunks_exact_mut(hidden.max(1))
        .zip(residual.chunks_exact(hidden.max(1)))
    {
        obs.observe(points.0, layer, Fixed::I32(sum));
        layer_norm_i32(x, sum, gamma, beta, eps);
        obs.observe(points.1, layer, Fixed::I8(x));
    }
}

pub(super) fn forward<O: FixedObserver>(
    file: &ModelFile<'_>,
    input: &Input<'_>,
    plan: &Plan,
    arena: &mut [u8],
    out: &mut [i32],
    obs: &mut O,
) {
    let config = file.config();
    let (hidden, heads) = (config.hidden as usize, config.heads as usize);
    let head_dim = config.head_dim();
    let ffn_dim = config.ffn as usize;
    // `exponents` below holds one batch: never more rows than it has.
    let batch = plan.rows.clamp(1, MAX_BATCH_ROWS);
    let v = views::<i8, i32>(plan, arena);

    // Embeddings: each table row has its own scale, requantized into a common residual
    // scale, summed, then LayerNorm to int8.
    let tables: [(&[i8], &[[i32; 2]]); 3] = [
        (file.tensor(K::WordEmb, None), file.tensor(K::WordRq, None)),
        (file.tensor(K::PosEmb, None), file.tensor(K::PosRq, None)),
        (file.tensor(K::TypeEmb, None), file.tensor(K::TypeRq, None)),
    ];
    let (gamma, beta) = norm_params(file, K::EmbNorm, None, hidden);
    let emb_scalars: &[i32] = file.tensor(K::EmbScalars, None);
    let eps = eps_at(emb_scalars, scalar::EMB_EPS);
    let act_table: &[i32] = file.tensor(K::ActTable, None);
    for (t, x) in v.x.chunks_exact_mut(hidden).enumerate() {
        let rows = [
            input.ids.get(t).copied().unwrap_or(0) as usize,
            t,
            input.type_id(t),
        ];
        let sum = v.residual.get_mut(..hidden).unwrap_or(&mut []);
        sum.fill(0);
        for ((table, rq), r) in tables.iter().zip(rows) {
            let scale = Requant::from_table(rq, r);
            for (acc, &e) in sum.iter_mut().zip(row(table, r, hidden)) {
                *acc = saturate_residual(i64::from(*acc) + scale.apply(i32::from(e)));
            }
        }
        obs.observe(Point::EmbSum, 0, Fixed::I32(sum));
        layer_norm_i32(x, sum, gamma, beta, eps);
        obs.observe(Point::EmbOut, 0, Fixed::I8(x));
    }

    for layer in 0..config.layers as usize {
        let l = Some(layer as u16);
        let query = Dense::load(file, K::QueryW, K::QueryB, K::QueryRq, l);
        let key = Dense::load(file, K::KeyW, K::KeyB, K::KeyRq, l);
        let value = Dense::load(file, K::ValueW, K::ValueB, K::ValueRq, l);
        let attn_out = Dense::load(file, K::AttnOutW, K::AttnOutB, K::AttnOutRq, l);
        let ffn1 = Dense::load(file, K::Ffn1W, K::Ffn1B, K::Ffn1Rq, l);
        let ffn2 = Dense::load(file, K::Ffn2W, K::Ffn2B, K::Ffn2Rq, l);
        let act_rq: &[[i32; 2]] = file.tensor(K::ActRq, l);
        let ctx_rq: &[[i32; 2]] = file.tensor(K::CtxRq, l);
        let (attn_gamma, attn_beta) = norm_params(file, K::AttnNorm, l, hidden);
        let (ffn_gamma, ffn_beta) = norm_params(file, K::FfnNorm, l, hidden);
        let s: &[i32] = file.tensor(K::LayerScalars, l);
        let attn_skip: &[[i32; 2]] = file.tensor(K::AttnSkipRq, l);
        let to_log2 = requant_at(s, scalar::SCORE_TO_LOG2);
        let ffn_skip: &[[i32; 2]] = file.tensor(K::FfnSkipRq, l);
        let (attn_eps, ffn_eps) = (eps_at(s, scalar::ATTN_EPS), eps_at(s, scalar::FFN_EPS));

        let a = attention::<i8, i32>(plan, &mut *v.shared);
        // Keys and values of every token (one weight pass per group of tokens).
        key.to_i8_rows(a.keys, v.x, hidden, hidden);
        value.to_i8_rows(a.values, v.x, hidden, hidden);
        for (k, val) in a
            .keys
            .chunks_exact(hidden)
            .zip(a.values.chunks_exact(hidden))
        {
            obs.observe(Point::Key, layer, Fixed::I8(k));
            obs.observe(Point::Value, layer, Fixed::I8(val));
        }

        // Query rows, attention, output projection and LayerNorm, a batch of rows
        // at a time (each row's wide values in its row of `residual`).
        let mut exponents = [0u32; MAX_BATCH_ROWS];
        for xs in v.x.chunks_mut(batch * hidden) {
            let n = xs.len() / hidden;
            let residual = v.residual.get_mut(..n * hidden).unwrap_or(&mut []);
            query.to_wide_rows(residual, xs, hidden, hidden);
            for ((wide, context), exponent) in residual
                .chunks_exact_mut(hidden)
                .zip(a.context.chunks_exact_mut(hidden))
                .zip(exponents.iter_mut())
            {
                // The query row on a fine grid, narrowed with its own power-of-two
                // scale; the score multiplier absorbs the exponent.
                obs.observe(Point::Query, layer, Fixed::I32(wide));
                let q_exponent = narrow_row(a.query, wide);
                let to_log2_row = to_log2.with_exponent(q_exponent);
                for head in 0..heads {
                    let cols = head * head_dim..(head + 1) * head_dim;
                    attend_i8(
                        wide.get_mut(cols.clone()).unwrap_or(&mut []),
                        a.query.get(cols).unwrap_or(&[]),
                        a.keys,
                        a.values,
                        hidden,
                        head,
                        to_log2_row,
                        ctx_rq
                            .get(head * head_dim..(head + 1) * head_dim)
                            .unwrap_or(&[]),
                        a.scores,
                        |j| input.keep(j),
                    );
                }
                obs.observe(Point::Context, layer, Fixed::I32(wide));
                *exponent = narrow_row(context, wide);
            }
            let contexts = a.context.get(..n * hidden).unwrap_or(&[]);
            attn_out.to_residual_rows(
                residual,
                contexts,
                &exponents,
                xs,
                attn_skip,
                (hidden, hidden),
            );
            let norm = (attn_gamma, attn_beta, attn_eps);
            norm_rows(
                (xs, residual, hidden),
                norm,
                (Point::AttnSum, Point::AttnOut),
                layer,
                obs,
            );
        }

        let f = ffn::<i8, i32>(plan, &mut *v.shared);
        for xs in v.x.chunks_mut(batch * hidden) {
            let n = xs.len() / hidden;
            let residual = v.residual.get_mut(..n * hidden).unwrap_or(&mut []);
            // FFN1 into Q10 fixed point, the activation by table interpolation, a
            // per-channel requantization onto a grid 256x finer than int8, then a
            // power-of-two row scale that fits the row's largest value into int8:
            // rows of small activations keep their resolution, large ones never clip.
            matmul_i8(ffn_dim, hidden, xs, ffn1.w, ffn1.b, |t, o, acc| {
                let pre = saturate_residual(Requant::from_table(ffn1.rq, o).apply(acc));
                let act = activation_q10(pre, act_table, Tail::Linear);
                if let Some(y) = f.wide.get_mut(t * ffn_dim + o) {
                    *y = saturate_residual(Requant::from_table(act_rq, o).apply(act));
                }
            });
            for ((wide, act), exponent) in f
                .wide
                .chunks_exact(ffn_dim)
                .zip(f.act.chunks_exact_mut(ffn_dim))
                .zip(exponents.iter_mut())
                .take(n)
            {
                obs.observe(Point::Act, layer, Fixed::I32(wide));
                *exponent = narrow_row(act, wide);
            }
            let acts = f.act.get(..n * ffn_dim).unwrap_or(&[]);
            ffn2.to_residual_rows(residual, acts, &exponents, xs, ffn_skip, (hidden, ffn_dim));
            let norm = (ffn_gamma, ffn_beta, ffn_eps);
            norm_rows(
                (xs, residual, hidden),
                norm,
                (Point::FfnSum, Point::FfnOut),
                layer,
                obs,
            );
        }
    }

    let a = attention::<i8, i32>(plan, &mut *v.shared);
    // One row of `context` and `residual` from here on.
    let context = a.context.get_mut(..hidden).unwrap_or(&mut []);
    let residual = v.residual.get_mut(..hidden).unwrap_or(&mut []);
    // Pooling into `context` (int8, the scale of its source). Mean pooling also keeps
    // the exact integer sum in `residual` for a full-precision embedding output.
    let mut count = 1i64;
    match config.pooling {
        Pooling::ClsPooler => {
            // Dense into Q10, tanh by table, per-channel requantization to int8.
            let pooler = Dense::load(file, K::PoolerW, K::PoolerB, K::PoolerRq, None);
            let table: &[i32] = file.tensor(K::TanhTable, None);
            let tanh_rq: &[[i32; 2]] = file.tensor(K::TanhRq, None);
            matvec_i8(hidden, row(v.x, 0, hidden), pooler.w, pooler.b, |o, acc| {
                let pre = saturate_residual(Requant::from_table(pooler.rq, o).apply(acc));
                let t = activation_q10(pre, table, Tail::Flat);
                if let Some(y) = context.get_mut(o) {
                    *y = saturate_i8(Requant::from_table(tanh_rq, o).apply(t));
                }
            });
        }
        // `None` is a decoder's and never validates for an encoder.
        Pooling::Cls | Pooling::None => copy(context, row(v.x, 0, hidden)),
        Pooling::Mean => {
            residual.fill(0);
            count = 0;
            for (t, x) in v.x.chunks_exact(hidden).enumerate() {
                if input.keep(t) {
                    for (acc, &e) in residual.iter_mut().zip(x) {
                        *acc += i32::from(e);
                    }
                    count += 1;
                }
            }
            let count = count.max(1);
            for (p, &sum) in context.iter_mut().zip(residual.iter()) {
                *p = saturate_i8(div_round(i64::from(sum), count));
            }
        }
    }

    obs.observe(Point::Pooled, 0, Fixed::I8(context));
    let clamp_i32 = |x: i64| x.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
    if config.num_labels > 0 {
        let classifier = Dense::load(file, K::ClassW, K::ClassB, K::ClassRq, None);
        matvec_i8(out.len(), context, classifier.w, classifier.b, |o, acc| {
            if let Some(y) = out.get_mut(o) {
                *y = clamp_i32(Requant::from_table(classifier.rq, o).apply(acc));
            }
        });
    } else {
        let to_q16: &[[i32; 2]] = file.tensor(K::PooledRq, None);
        for (c, y) in out.iter_mut().enumerate() {
            let rq = Requant::from_table(to_q16, c);
            *y = if config.pooling == Pooling::Mean {
                let sum = residual.get(c).copied().unwrap_or(0);
                clamp_i32(div_round(rq.apply(sum), count.max(1)))
            } else {
                clamp_i32(rq.apply(i32::from(context.get(c).copied().unwrap_or(0))))
            };
        }
    }
}
