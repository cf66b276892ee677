//! The full-integer forward pass: int8 weights and activations, i32 accumulators and
//! residual stream, fixed-point requantization, integer softmax, LayerNorm and
//! table-driven activations. It executes no floating-point operation.
//!
//! ```text
//! embeddings, per token t:
//!     x[t] = LN(WordRq(word[id_t]) + PosRq(pos[t]) + TypeRq(type[ty_t]))        (int8)
//! for each layer:
//!     attention block:
//!         K = sat8(KeyRq(Wk x + bk)) ; V = sat8(ValueRq(Wv x + bv))    (int8, every t)
//!         per token t:
//!             q, e_q = narrow(QueryRq(Wq x[t] + bq))               (int8, scale 2^e_q)
//!             per head: ctx = CtxRq(softmax(ScoreToLog2_e_q (q . K)) V)          (i32)
//!             c, e_c = narrow(ctx)
//!             x[t] = LN(AttnOutRq_e_c(Wo c) + AttnOutRq(bo) + AttnSkipRq(x[t]))  (int8)
//!     FFN block, per token t:
//!         h, e_h = narrow(ActRq(act(Ffn1Rq(W1 x[t] + b1))))          (act in Q10, int8)
//!         x[t] = LN(Ffn2Rq_e_h(W2 h) + Ffn2Rq(b2) + FfnSkipRq(x[t]))             (int8)
//! pooling: p = TanhRq(tanh(PoolerRq(Wp x[0] + bp))) | x[0] | mean of kept x[t]   (int8)
//! head:    out = ClassRq(Wc p + bc) | PooledRq(p) (the mean's exact sum / count)  (Q16)
//! ```
//!
//! `narrow` scales a wide row by a power of two `2^-e` that fits its largest value
//! into int8 and returns `e` ([`narrow_row`]); `Rq_e` is the requantization pair times
//! `2^e`, so a product with a narrowed row costs no per-row multiplier
//! ([`Requant::apply_scaled`], [`Requant::with_exponent`]). The "per token t" loops run
//! a batch of [`Plan::rows`] tokens at a time, so each weight matrix is read once per
//! batch ([`matmul_i8_into_with`], into a tile of `i32` accumulators that
//! [`requant`] then requantizes row by row); results do not depend on the batch size.
//!
//! Scales never appear here: the converter folded them into the `*Rq` tables, the
//! integer LayerNorm parameters and the scalar tensors (see `docs/FORMAT.md`).

use super::float::{copy, row};
use super::plan::{attention, ffn, views, Attention, Ffn, Plan, MAX_BATCH_ROWS};
#[cfg(feature = "threads")]
use super::{
    parallel::{each, part_rows, MIN_MACS},
    NoObserver,
};
use super::{Fixed, FixedObserver, Input, Point};
use crate::format::{scalar, ModelFile, Pooling, TensorKind as K};
use crate::kernels::attention::attend_rows_i8_with;
use crate::kernels::gelu::{activation_q10, Tail};
use crate::kernels::layernorm::layer_norm_i32;
use crate::kernels::matvec::{matmul_i8_into_with, matvec_i8_with, Int8Kernel, RowsI8};
use crate::kernels::requant;
use crate::quant::{div_round, narrow_row, saturate_i8, saturate_residual, Requant};

/// Runs the encoder on `input` and writes `out` (Q16.16 logits or pooled embedding).
/// The caller checked the input and the arena against `plan` ([`super::Model`]), and
/// chose `kernel` when it loaded the model, and `threads` ([`super::Model::with_threads`]).
pub(super) fn forward<O: FixedObserver>(
    file: &ModelFile<'_>,
    input: &Input<'_>,
    plan: &Plan,
    (kernel, threads): (Int8Kernel, usize),
    arena: &mut [u8],
    out: &mut [i32],
    obs: &mut O,
) {
    #[cfg(not(feature = "threads"))]
    let _ = threads;
    let config = file.config();
    let pass = Pass {
        file,
        input,
        kernel,
        #[cfg(feature = "threads")]
        threads: threads.max(1),
        hidden: config.hidden as usize,
        heads: config.heads as usize,
        head_dim: config.head_dim(),
        ffn: config.ffn as usize,
        // The blocks' row exponents hold one batch: never more rows than they have.
        batch_rows: plan.rows.clamp(1, MAX_BATCH_ROWS),
    };
    // `x`: the layer state, `[seq, hidden]` int8; `residual`: one batch of i32 rows.
    // The attention and FFN buffers share the rest, one block at a time.
    let buffers = views::<i8, i32>(plan, arena);
    let (x, residual, shared) = (buffers.x, buffers.residual, buffers.shared);

    pass.embeddings(x, residual, obs);
    for layer in 0..config.layers as usize {
        let attention_buffers = attention(plan, &mut *shared);
        pass.attention_block(layer, (x, residual), attention_buffers, obs);
        let ffn_buffers = ffn(plan, &mut *shared);
        pass.ffn_block(layer, (x, residual), ffn_buffers, obs);
    }
    // Pooling reuses the attention block's `context` row.
    let pooled = attention::<i8, i32>(plan, shared).context;
    let pooled = pooled.get_mut(..pass.hidden).unwrap_or(&mut []);
    let sum = residual.get_mut(..pass.hidden).unwrap_or(&mut []);
    let count = pass.pool(x, pooled, sum);
    obs.observe(Point::Pooled, 0, Fixed::I8(pooled));
    pass.head(pooled, (sum, count), out);
}

/// What every stage of one pass reads: the model, the input, the kernel and the
/// dimensions.
struct Pass<'p> {
    file: &'p ModelFile<'p>,
    input: &'p Input<'p>,
    kernel: Int8Kernel,
    /// Threads the batches' rows are split across (`threads` feature, `parallel`).
    #[cfg(feature = "threads")]
    threads: usize,
    hidden: usize,
    heads: usize,
    head_dim: usize,
    ffn: usize,
    /// Token rows per batch, `1..=MAX_BATCH_ROWS`.
    batch_rows: usize,
}

/// A quantized dense layer and the kernel that computes it: `W` int8 `[out, in]`, bias
/// i32 `[out]` in units of `s_in * s_w[o]`, and per-output `(multiplier, shift)` to the
/// output scale.
struct Dense<'a> {
    w: &'a [i8],
    b: &'a [i32],
    rq: &'a [[i32; 2]],
    kernel: Int8Kernel,
    #[cfg(feature = "threads")]
    threads: usize,
}

/// Integer LayerNorm parameters: the `gamma_q` and `beta_q` rows and epsilon.
struct Norm<'a> {
    gamma: &'a [i32],
    beta: &'a [i32],
    eps: i64,
}

/// One layer's tensors of the attention block.
struct AttentionWeights<'a> {
    query: Dense<'a>,
    key: Dense<'a>,
    value: Dense<'a>,
    /// Scores to the softmax's base-2 exponent in Q16, before the query row's `2^e_q`.
    score_to_log2: Requant,
    /// Per channel: weighted values (Q15 probabilities times int8) to the context grid.
    ctx_rq: &'a [[i32; 2]],
    out: Dense<'a>,
    /// Per channel: the block's input (the skip connection) to the residual grid.
    skip_rq: &'a [[i32; 2]],
    norm: Norm<'a>,
}

/// One batch's (or part's) rows of the buffers of the attention block: rows of `x`,
/// of the residual (the queries', then the contexts' wide grid), of the narrowed
/// queries, of the scores and of the narrowed contexts.
struct AttentionRows<'r> {
    batch: &'r mut [i8],
    wide: &'r mut [i32],
    query: &'r mut [i8],
    scores: &'r mut [i32],
    context: &'r mut [i8],
}

/// One layer's tensors of the FFN block.
struct FfnWeights<'a> {
    ffn1: Dense<'a>,
    /// Per channel: the Q10 activation to the FFN's wide grid.
    act_rq: &'a [[i32; 2]],
    ffn2: Dense<'a>,
    /// Per channel: the block's input (the skip connection) to the residual grid.
    skip_rq: &'a [[i32; 2]],
    norm: Norm<'a>,
}

impl<'p> Pass<'p> {
    fn dense(&self, (w, b, rq): (K, K, K), layer: Option<u16>) -> Dense<'p> {
        Dense {
            w: self.file.tensor(w, layer),
            b: self.file.tensor(b, layer),
            rq: self.file.tensor(rq, layer),
            kernel: self.kernel,
            #[cfg(feature = "threads")]
            threads: self.threads,
        }
    }

    /// LayerNorm parameters `[2, hidden]` (gamma row, beta row) and `eps`.
    fn norm(&self, kind: K, layer: Option<u16>, eps: i64) -> Norm<'p> {
        let params: &[i32] = self.file.tensor(kind, layer);
        let (gamma, beta) = params.split_at(self.hidden.min(params.len()));
        Norm { gamma, beta, eps }
    }

    /// `x[t] = LN(sum of the three embedding rows of token t)`, each table row
    /// requantized from its own scale to the residual scale; `residual`'s first row is
    /// the sum.
    fn embeddings<O: FixedObserver>(&self, x: &mut [i8], residual: &mut [i32], obs: &mut O) {
        let (file, hidden) = (self.file, self.hidden);
        let tables: [(&[i8], &[[i32; 2]]); 3] = [
            (file.tensor(K::WordEmb, None), file.tensor(K::WordRq, None)),
            (file.tensor(K::PosEmb, None), file.tensor(K::PosRq, None)),
            (file.tensor(K::TypeEmb, None), file.tensor(K::TypeRq, None)),
        ];
        let scalars: &[i32] = file.tensor(K::EmbScalars, None);
        let norm = self.norm(K::EmbNorm, None, eps_at(scalars, scalar::EMB_EPS));
        let sum = residual.get_mut(..hidden).unwrap_or(&mut []);
        for (t, token) in x.chunks_exact_mut(hidden).enumerate() {
            let word = self.input.ids.get(t).copied().unwrap_or(0) as usize;
            let table_rows = [word, t, self.input.type_id(t)];
            sum.fill(0);
            for ((table, rq), r) in tables.iter().zip(table_rows) {
                requant::add_row(sum, row(table, r, hidden), Requant::from_table(rq, r));
            }
            obs.observe(Point::EmbSum, 0, Fixed::I32(sum));
            layer_norm_i32(token, sum, norm.gamma, norm.beta, norm.eps);
            obs.observe(Point::EmbOut, 0, Fixed::I8(token));
        }
    }

    /// The attention block of `layer`: keys and values of every token, then a batch of
    /// token rows at a time their queries, attention over all keys, the output
    /// projection plus the skip connection in `residual`, and LayerNorm back into
    /// those rows of `x` (their keys and values exist already, and no later row reads
    /// them).
    fn attention_block<O: FixedObserver>(
        &self,
        layer: usize,
        (x, residual): (&mut [i8], &mut [i32]),
        buffers: Attention<'_, i8, i32>,
        obs: &mut O,
    ) {
        let hidden = self.hidden;
        let weights = AttentionWeights::load(self, layer);
        let Attention {
            scores,
            keys,
            values,
            query,
            context,
        } = buffers;
        // One weight pass per group of tokens.
        // The residual rows are free until the first batch: the projections' tiles.
        weights.key.to_i8_rows(keys, x, (hidden, hidden), residual);
        weights
            .value
            .to_i8_rows(values, x, (hidden, hidden), residual);
        for (key, value) in keys.chunks_exact(hidden).zip(values.chunks_exact(hidden)) {
            obs.observe(Point::Key, layer, Fixed::I8(key));
            obs.observe(Point::Value, layer, Fixed::I8(value));
        }

        let (keys, values) = (&*keys, &*values);
        for batch in x.chunks_mut(self.batch_rows * hidden) {
            let rows = batch.len() / hidden;
            let wide = residual.get_mut(..rows * hidden).unwrap_or(&mut []);
            // With threads (and no observer, which must see the rows in order), the
            // batch's rows in parts, each with its own rows of every buffer.
            #[cfg(feature = "threads")]
            let seq = keys.len() / hidden;
            #[cfg(feature = "threads")]
            if self.threads > 1 && !O::OBSERVES && rows * 2 * hidden * (hidden + seq) >= MIN_MACS {
                let n = part_rows(self.threads, rows);
                let parts = batch
                    .chunks_mut(n * hidden)
                    .zip(wide.chunks_mut(n * hidden))
                    .zip(query.chunks_mut(n * hidden))
                    .zip(scores.chunks_mut((n * seq).max(1)))
                    .zip(context.chunks_mut(n * hidden));
                each(
                    self.threads,
                    parts,
                    |((((batch, wide), query), scores), context)| {
                        let rows = AttentionRows {
                            batch,
                            wide,
                            query,
                            scores,
                            context,
                        };
                        self.attention_rows(&weights, layer, (keys, values), rows, &mut NoObserver);
                    },
                );
                continue;
            }
            let rows = AttentionRows {
                batch,
                wide,
                query: &mut *query,
                scores: &mut *scores,
                context: &mut *context,
            };
            self.attention_rows(&weights, layer, (keys, values), rows, obs);
        }
    }

    /// The attention block for one batch of token rows (`batch`, rows of `x`): their
    /// queries on the wide grid (`wide`, rows of `residual`), each narrowed with its own
    /// power-of-two scale (the score multiplier absorbs the exponent); head by head,
    /// their attention over every key into the same wide rows; the contexts narrowed,
    /// the output projection plus the skip connection, and LayerNorm back into `batch`.
    fn attention_rows<O: FixedObserver>(
        &self,
        weights: &AttentionWeights<'_>,
        layer: usize,
        (keys, values): (&[i8], &[i8]),
        AttentionRows {
            batch,
            wide,
            query,
            scores,
            context,
        }: AttentionRows<'_>,
        obs: &mut O,
    ) {
        let hidden = self.hidden;
        let rows = batch.len() / hidden;
        let mut query_exponents = [0u8; MAX_BATCH_ROWS];
        let mut context_exponents = [0u8; MAX_BATCH_ROWS];
        weights.query.to_wide_rows(wide, batch, hidden, hidden);
        narrow_rows(
            (wide, query, hidden),
            &mut query_exponents,
            (Point::Query, layer),
            obs,
        );
        for head in 0..self.heads {
            let queries = RowsI8 {
                data: query.get(head * self.head_dim..).unwrap_or(&[]),
                rows,
                cols: self.head_dim,
                stride: hidden,
            };
            let cols = head * self.head_dim..(head + 1) * self.head_dim;
            attend_rows_i8_with(
                self.kernel.resolved(),
                wide,
                queries,
                (keys, values),
                (hidden, head),
                (weights.score_to_log2, &query_exponents),
                weights.ctx_rq.get(cols).unwrap_or(&[]),
                scores,
                |j| self.input.keep(j),
            );
        }
        narrow_rows(
            (wide, context, hidden),
            &mut context_exponents,
            (Point::Context, layer),
            obs,
        );
        let contexts = context.get(..rows * hidden).unwrap_or(&[]);
        weights.out.to_residual_rows(
            wide,
            (contexts, &context_exponents),
            (batch, weights.skip_rq),
            (hidden, hidden),
        );
        let points = (Point::AttnSum, Point::AttnOut);
        norm_rows((batch, wide, hidden), &weights.norm, (points, layer), obs);
    }

    /// The FFN block of `layer`, a batch of token rows at a time: FFN1 into Q10 fixed
    /// point, the activation by table interpolation, a per-channel requantization onto
    /// a grid 256x finer than int8, then a power-of-two row scale that fits the row's
    /// largest value into int8 (rows of small activations keep their resolution, large
    /// ones never clip); FFN2 plus the skip connection in `residual`, and LayerNorm back
    /// into the rows of `x`.
    fn ffn_block<O: FixedObserver>(
        &self,
        layer: usize,
        (x, residual): (&mut [i8], &mut [i32]),
        buffers: Ffn<'_, i8, i32>,
        obs: &mut O,
    ) {
        let weights = FfnWeights::load(self, layer);
        let (hidden, ffn) = (self.hidden, self.ffn);
        let Ffn { wide, act } = buffers;
        let act_table = requant::ActTable::new(self.file.tensor(K::ActTable, None));
        for batch in x.chunks_mut(self.batch_rows * hidden) {
            let rows = batch.len() / hidden;
            let residual = residual.get_mut(..rows * hidden).unwrap_or(&mut []);
            let wide = wide.get_mut(..rows * ffn).unwrap_or(&mut []);
            // With threads (and no observer), the batch's rows in parts.
            #[cfg(feature = "threads")]
            if self.threads > 1 && !O::OBSERVES && rows * 2 * hidden * ffn >= MIN_MACS {
                let n = part_rows(self.threads, rows);
                let parts = batch
                    .chunks_mut(n * hidden)
                    .zip(residual.chunks_mut(n * hidden))
                    .zip(wide.chunks_mut(n * ffn))
                    .zip(act.chunks_mut(n * ffn));
                each(self.threads, parts, |(((batch, residual), wide), act)| {
                    let rows = (batch, residual, wide, act);
                    self.ffn_rows(&weights, (layer, act_table), rows, &mut NoObserver);
                });
                continue;
            }
            let rows = (batch, residual, wide, &mut *act);
            self.ffn_rows(&weights, (layer, act_table), rows, obs);
        }
    }

    /// The FFN block for one batch of token rows (`batch`, rows of `x`): FFN1 and its
    /// activation into `wide`, each row narrowed into `act` with its own scale, FFN2
    /// plus the skip connection into `residual`, LayerNorm back into `batch`.
    fn ffn_rows<O: FixedObserver>(
        &self,
        weights: &FfnWeights<'_>,
        (layer, act_table): (usize, requant::ActTable<'_>),
        (batch, residual, wide, act): (&mut [i8], &mut [i32], &mut [i32], &mut [i8]),
        obs: &mut O,
    ) {
        let (hidden, ffn) = (self.hidden, self.ffn);
        let rows = batch.len() / hidden;
        let mut act_exponents = [0u8; MAX_BATCH_ROWS];
        let ffn1 = &weights.ffn1;
        ffn1.tile(ffn, hidden, batch, wide);
        requant::activation(wide, (ffn1.rq, weights.act_rq), act_table, ffn);
        narrow_rows(
            (wide, act, ffn),
            &mut act_exponents,
            (Point::Act, layer),
            obs,
        );
        let acts = act.get(..rows * ffn).unwrap_or(&[]);
        weights.ffn2.to_residual_rows(
            residual,
            (acts, &act_exponents),
            (batch, weights.skip_rq),
            (hidden, ffn),
        );
        let points = (Point::FfnSum, Point::FfnOut);
        norm_rows(
            (batch, residual, hidden),
            &weights.norm,
            (points, layer),
            obs,
        );
    }

    /// Pools `x` into `pooled` (int8, the scale of its source): the BERT pooler (dense
    /// into Q10, tanh by table, per-channel requantization) or the first row, or the
    /// mean of the kept rows, whose exact integer sum stays in `sum` for a
    /// full-precision embedding output. Returns the number of rows pooled.
    fn pool(&self, x: &[i8], pooled: &mut [i8], sum: &mut [i32]) -> i64 {
        let (file, hidden) = (self.file, self.hidden);
        match file.config().pooling {
            Pooling::ClsPooler => {
                let pooler = self.dense((K::PoolerW, K::PoolerB, K::PoolerRq), None);
                let tanh_table: &[i32] = file.tensor(K::TanhTable, None);
                let tanh_rq: &[[i32; 2]] = file.tensor(K::TanhRq, None);
                pooler.matvec(hidden, row(x, 0, hidden), |o, acc| {
                    let pre = saturate_residual(Requant::from_table(pooler.rq, o).apply(acc));
                    let tanh = activation_q10(pre, tanh_table, Tail::Flat);
                    if let Some(y) = pooled.get_mut(o) {
                        *y = saturate_i8(Requant::from_table(tanh_rq, o).apply(tanh));
                    }
                });
                1
            }
            // `None` is a decoder's and never validates for an encoder.
            Pooling::Cls | Pooling::None => {
                copy(pooled, row(x, 0, hidden));
                1
            }
            Pooling::Mean => {
                sum.fill(0);
                let mut count = 0i64;
                for (t, token) in x.chunks_exact(hidden).enumerate() {
                    if self.input.keep(t) {
                        for (acc, &e) in sum.iter_mut().zip(token) {
                            *acc += i32::from(e);
                        }
                        count += 1;
                    }
                }
                let count = count.max(1);
                for (p, &s) in pooled.iter_mut().zip(sum.iter()) {
                    *p = saturate_i8(div_round(i64::from(s), count));
                }
                count
            }
        }
    }

    /// The classifier's logits, or the pooled embedding, in Q16.16: the embedding of
    /// mean pooling from the exact `sum` of `count` rows, the others from `pooled`.
    fn head(&self, pooled: &[i8], (sum, count): (&[i32], i64), out: &mut [i32]) {
        let file = self.file;
        let clamp_i32 = |v: i64| v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
        if file.config().num_labels > 0 {
            let classifier = self.dense((K::ClassW, K::ClassB, K::ClassRq), None);
            classifier.matvec(out.len(), pooled, |o, acc| {
                if let Some(y) = out.get_mut(o) {
                    *y = clamp_i32(Requant::from_table(classifier.rq, o).apply(acc));
                }
            });
        } else {
            let to_q16: &[[i32; 2]] = file.tensor(K::PooledRq, None);
            let mean = file.config().pooling == Pooling::Mean;
            for (c, y) in out.iter_mut().enumerate() {
                let rq = Requant::from_table(to_q16, c);
                *y = if mean {
                    let channel_sum = sum.get(c).copied().unwrap_or(0);
                    clamp_i32(div_round(rq.apply(channel_sum), count.max(1)))
                } else {
                    clamp_i32(rq.apply(i32::from(pooled.get(c).copied().unwrap_or(0))))
                };
            }
        }
    }
}

impl<'a> AttentionWeights<'a> {
    fn load(pass: &Pass<'a>, layer: usize) -> Self {
        let l = Some(layer as u16);
        let scalars: &[i32] = pass.file.tensor(K::LayerScalars, l);
        Self {
            query: pass.dense((K::QueryW, K::QueryB, K::QueryRq), l),
            key: pass.dense((K::KeyW, K::KeyB, K::KeyRq), l),
            value: pass.dense((K::ValueW, K::ValueB, K::ValueRq), l),
            score_to_log2: requant_at(scalars, scalar::SCORE_TO_LOG2),
            ctx_rq: pass.file.tensor(K::CtxRq, l),
            out: pass.dense((K::AttnOutW, K::AttnOutB, K::AttnOutRq), l),
            skip_rq: pass.file.tensor(K::AttnSkipRq, l),
            norm: pass.norm(K::AttnNorm, l, eps_at(scalars, scalar::ATTN_EPS)),
        }
    }
}

impl<'a> FfnWeights<'a> {
    fn load(pass: &Pass<'a>, layer: usize) -> Self {
        let l = Some(layer as u16);
        let scalars: &[i32] = pass.file.tensor(K::LayerScalars, l);
        Self {
            ffn1: pass.dense((K::Ffn1W, K::Ffn1B, K::Ffn1Rq), l),
            act_rq: pass.file.tensor(K::ActRq, l),
            ffn2: pass.dense((K::Ffn2W, K::Ffn2B, K::Ffn2Rq), l),
            skip_rq: pass.file.tensor(K::FfnSkipRq, l),
            norm: pass.norm(K::FfnNorm, l, eps_at(scalars, scalar::FFN_EPS)),
        }
    }
}

impl Dense<'_> {
    /// `out[t * rows + o] = W xs[t] + b` (the `i32` accumulators, bias added with
    /// saturation) for every token row of `xs` (`cols` wide) that `out` holds
    /// ([`matmul_i8_into_with`]).
    fn tile(&self, rows: usize, cols: usize, xs: &[i8], out: &mut [i32]) {
        matmul_i8_into_with(self.kernel.resolved(), rows, cols, xs, self.w, self.b, out);
    }

    /// `store(o, W x + b)` for every output `o < rows` ([`matvec_i8_with`]).
    fn matvec(&self, rows: usize, x: &[i8], store: impl FnMut(usize, i32)) {
        matvec_i8_with(self.kernel.resolved(), rows, x, self.w, self.b, store);
    }

    /// `out[t] = sat_r(rq(W xs[t] + b))` on a wide (i32) grid, for every token row of
    /// `xs` (`cols` wide), into rows of `rows` in `out`.
    fn to_wide_rows(&self, out: &mut [i32], xs: &[i8], rows: usize, cols: usize) {
        self.tile(rows, cols, xs, out);
        requant::to_wide(out, self.rq, rows);
    }

    /// `out[t] = sat8(rq(W xs[t] + b))` for every token row of `xs` (`cols` wide),
    /// into rows of `rows` in `out`, as many rows at a time as `scratch` holds
    /// accumulator rows (at least one); parts of those rows across threads.
    fn to_i8_rows(
        &self,
        out: &mut [i8],
        xs: &[i8],
        (rows, cols): (usize, usize),
        scratch: &mut [i32],
    ) {
        let part = |out: &mut [i8], xs: &[i8], tile: &mut [i32]| {
            self.tile(rows, cols, xs, tile);
            requant::to_i8(out, tile, self.rq, rows);
        };
        let batch = (scratch.len() / rows.max(1)).max(1);
        for (out, xs) in out
            .chunks_mut(batch * rows)
            .zip(xs.chunks(batch * cols.max(1)))
        {
            let tile = scratch.get_mut(..out.len()).unwrap_or(&mut []);
            #[cfg(feature = "threads")]
            if self.threads > 1 && xs.len() * rows >= MIN_MACS {
                let n = part_rows(self.threads, xs.len() / cols.max(1));
                let parts = out
                    .chunks_mut(n * rows)
                    .zip(xs.chunks(n * cols.max(1)))
                    .zip(tile.chunks_mut(n * rows));
                each(self.threads, parts, |((out, xs), tile)| part(out, xs, tile));
                continue;
            }
            part(out, xs, tile);
        }
    }

    /// For every token row `t`: `residual[t] = sat_r(rq(W xs[t] * 2^exponents[t]) +
    /// rq(b) + skip_rq(skip[t]))`, the projection back into the residual stream plus
    /// the skip connection (per-channel scales: LayerNorm outputs are quantized per
    /// channel, see `docs/FORMAT.md`). `exponents[t]` is the input row's power-of-two
    /// scale; the bias is on the unscaled grid, so it is requantized on its own
    /// ([`requant::onto_residual`]). `residual` and `skip` rows are `hidden` wide, `xs`
    /// rows `cols` wide.
    fn to_residual_rows(
        &self,
        residual: &mut [i32],
        (xs, exponents): (&[i8], &[u8]),
        (skip, skip_rq): (&[i8], &[[i32; 2]]),
        (hidden, cols): (usize, usize),
    ) {
        matmul_i8_into_with(
            self.kernel.resolved(),
            hidden,
            cols,
            xs,
            self.w,
            &[],
            residual,
        );
        requant::onto_residual(
            residual,
            exponents,
            (self.rq, self.b),
            (skip, skip_rq),
            hidden,
        );
    }
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

/// Narrows each wide row into the matching row of `out` (both `width` wide) with its
/// own power-of-two scale ([`narrow_row`]), the exponents in `exponents` (at most 31,
/// so they fit `u8`), reporting each wide row at `point` of `layer` first.
fn narrow_rows<O: FixedObserver>(
    (wide, out, width): (&[i32], &mut [i8], usize),
    exponents: &mut [u8],
    (point, layer): (Point, usize),
    obs: &mut O,
) {
    for ((wide_row, out_row), exponent) in wide
        .chunks_exact(width.max(1))
        .zip(out.chunks_exact_mut(width.max(1)))
        .zip(exponents.iter_mut())
    {
        obs.observe(point, layer, Fixed::I32(wide_row));
        *exponent = narrow_row(out_row, wide_row) as u8;
    }
}

/// LayerNorm of each residual row into the matching row of `x` (both `hidden` wide),
/// reporting the sum and the output at `points` of `layer`.
fn norm_rows<O: FixedObserver>(
    (x, residual, hidden): (&mut [i8], &[i32], usize),
    norm: &Norm<'_>,
    (points, layer): ((Point, Point), usize),
    obs: &mut O,
) {
    for (token, sum) in x
        .chunks_exact_mut(hidden.max(1))
        .zip(residual.chunks_exact(hidden.max(1)))
    {
        obs.observe(points.0, layer, Fixed::I32(sum));
        layer_norm_i32(token, sum, norm.gamma, norm.beta, norm.eps);
        obs.observe(points.1, layer, Fixed::I8(token));
    }
}
