//! The float forward pass: f32 or f16 weights, f32 arithmetic. It is the runtime's own
//! reference and the converter's calibration engine (through [`Observer`]).

use super::plan::{attention, ffn, views, Plan};
use super::{Input, Observer, Point};
use crate::format::{ModelFile, Pooling, TensorKind as K};
use crate::kernels::attention::attend_f32;
use crate::kernels::gelu::activate_f32;
use crate::kernels::layernorm::layer_norm_f32;
use crate::kernels::matvec::{matvec_f32, Weight};

/// A dense layer's parameters: `W` `[out, in]` and bias `[out]`.
struct Dense<'a, W> {
    w: &'a [W],
    b: &'a [f32],
}

impl<'a, W: Weight> Dense<'a, W> {
    fn load(file: &ModelFile<'a>, w: K, b: K, layer: Option<u16>) -> Self {
        Self {
            w: file.tensor(w, layer),
            b: file.tensor(b, layer),
        }
    }
    fn apply(&self, out: &mut [f32], x: &[f32]) {
        matvec_f32(out, x, self.w, self.b);
    }
}

/// LayerNorm parameters `[2, hidden]`: gamma row then beta row.
fn norm_params<'a>(
    file: &ModelFile<'a>,
    kind: K,
    layer: Option<u16>,
    hidden: usize,
) -> (&'a [f32], &'a [f32]) {
    let params: &[f32] = file.tensor(kind, layer);
    params.split_at(hidden.min(params.len()))
}

/// Row `r` of a row-major `[rows, cols]` table; empty if out of range.
pub(super) fn row<T>(table: &[T], r: usize, cols: usize) -> &[T] {
    table.get(r * cols..(r + 1) * cols).unwrap_or(&[])
}

pub(super) fn forward<W: Weight, O: Observer>(
    file: &ModelFile<'_>,
    input: &Input<'_>,
    plan: &Plan,
    arena: &mut [u8],
    out: &mut [f32],
    obs: &mut O,
) {
    let config = file.config();
    let (hidden, heads) = (config.hidden as usize, config.heads as usize);
    let head_dim = config.head_dim();
    let eps = config.layer_norm_eps();
    let v = views::<f32, f32>(plan, arena);

    // Embeddings: word + position + token type, then LayerNorm.
    let word: &[W] = file.tensor(K::WordEmb, None);
    let pos: &[W] = file.tensor(K::PosEmb, None);
    let types: &[W] = file.tensor(K::TypeEmb, None);
    let (gamma, beta) = norm_params(file, K::EmbNorm, None, hidden);
    for (t, x) in v.x.chunks_exact_mut(hidden).enumerate() {
        let id = input.ids.get(t).copied().unwrap_or(0) as usize;
        let parts = (
            row(word, id, hidden),
            row(pos, t, hidden),
            row(types, input.type_id(t), hidden),
        );
        for (h, xh) in x.iter_mut().enumerate() {
            let get = |r: &[W]| r.get(h).map_or(0.0, |w| w.to_f32());
            *xh = get(parts.0) + get(parts.1) + get(parts.2);
        }
        obs.observe(Point::EmbSum, 0, x);
        layer_norm_f32(x, gamma, beta, eps);
        obs.observe(Point::EmbOut, 0, x);
    }

    let scale = 1.0 / libm::sqrtf(head_dim as f32);
    for layer in 0..config.layers as usize {
        let l = Some(layer as u16);
        let query = Dense::<W>::load(file, K::QueryW, K::QueryB, l);
        let key = Dense::<W>::load(file, K::KeyW, K::KeyB, l);
        let value = Dense::<W>::load(file, K::ValueW, K::ValueB, l);
        let attn_out = Dense::<W>::load(file, K::AttnOutW, K::AttnOutB, l);
        let ffn1 = Dense::<W>::load(file, K::Ffn1W, K::Ffn1B, l);
        let ffn2 = Dense::<W>::load(file, K::Ffn2W, K::Ffn2B, l);
        let (attn_gamma, attn_beta) = norm_params(file, K::AttnNorm, l, hidden);
        let (ffn_gamma, ffn_beta) = norm_params(file, K::FfnNorm, l, hidden);

        // K = x Wk^T + bk, V = x Wv^T + bv for every row.
        let a = attention::<f32, f32>(plan, &mut *v.shared);
        for ((x, k), val) in
            v.x.chunks_exact(hidden)
                .zip(a.keys.chunks_exact_mut(hidden))
                .zip(a.values.chunks_exact_mut(hidden))
        {
            key.apply(k, x);
            value.apply(val, x);
            obs.observe(Point::Key, layer, k);
            obs.observe(Point::Value, layer, val);
        }

        // Per query row: attention, output projection, residual, LayerNorm.
        for x in v.x.chunks_exact_mut(hidden) {
            query.apply(a.query, x);
            obs.observe(Point::Query, layer, a.query);
            for head in 0..heads {
                let cols = head * head_dim..(head + 1) * head_dim;
                attend_f32(
                    a.context.get_mut(cols.clone()).unwrap_or(&mut []),
                    a.query.get(cols).unwrap_or(&[]),
                    a.keys,
                    a.values,
                    hidden,
                    head,
                    scale,
                    a.scores,
                    |j| input.keep(j),
                );
            }
            obs.observe(Point::Context, layer, a.context);
            attn_out.apply(v.residual, a.context);
            add_assign(v.residual, x);
            obs.observe(Point::AttnSum, layer, v.residual);
            layer_norm_f32(v.residual, attn_gamma, attn_beta, eps);
            copy(x, v.residual);
            obs.observe(Point::AttnOut, layer, x);
        }

        let f = ffn::<f32, f32>(plan, &mut *v.shared);
        // Per row: FFN, residual, LayerNorm.
        for x in v.x.chunks_exact_mut(hidden) {
            ffn1.apply(f.act, x);
            obs.observe(Point::Ffn1, layer, f.act);
            activate_f32(f.act, config.activation);
            obs.observe(Point::Act, layer, f.act);
            ffn2.apply(v.residual, f.act);
            add_assign(v.residual, x);
            obs.observe(Point::FfnSum, layer, v.residual);
            layer_norm_f32(v.residual, ffn_gamma, ffn_beta, eps);
            copy(x, v.residual);
            obs.observe(Point::FfnOut, layer, x);
        }
    }

    let a = attention::<f32, f32>(plan, &mut *v.shared);
    // Pooling into `context`.
    let pooled = &mut *a.context;
    match config.pooling {
        Pooling::ClsPooler => {
            let pooler = Dense::<W>::load(file, K::PoolerW, K::PoolerB, None);
            pooler.apply(pooled, row(v.x, 0, hidden));
            obs.observe(Point::PoolerPre, 0, pooled);
            for p in pooled.iter_mut() {
                *p = libm::tanhf(*p);
            }
        }
        // `None` is a decoder's and never validates for an encoder.
        Pooling::Cls | Pooling::None => copy(pooled, row(v.x, 0, hidden)),
        Pooling::Mean => {
            pooled.fill(0.0);
            let mut count = 0usize;
            for (t, x) in v.x.chunks_exact(hidden).enumerate() {
                if input.keep(t) {
                    add_assign(pooled, x);
                    count += 1;
                }
            }
            let inv = 1.0 / count.max(1) as f32;
            pooled.iter_mut().for_each(|p| *p *= inv);
        }
    }
    obs.observe(Point::Pooled, 0, pooled);

    if config.num_labels > 0 {
        Dense::<W>::load(file, K::ClassW, K::ClassB, None).apply(out, pooled);
        obs.observe(Point::Logits, 0, out);
    } else {
        copy(out, pooled);
    }
}

/// `dst = src` over the common length (lengths are equal by the plan).
pub(super) fn copy<T: Copy>(dst: &mut [T], src: &[T]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = *s;
    }
}

pub(crate) fn add_assign(acc: &mut [f32], x: &[f32]) {
    for (a, b) in acc.iter_mut().zip(x) {
        *a += b;
    }
}
