//! One decoder step in `f32` arithmetic over f32 or f16 weights, in llama2.c's order:
//!
//! ```text
//! x = emb[token]
//! for each layer:
//!     xb = rmsnorm(x) ; q, k, v = Wq xb, Wk xb, Wv xb ; rope(q, k, pos)
//!     cache[pos] = k, v ; ctx = softmax(q K^T / sqrt(head_dim)) V   (per head, GQA)
//!     x += Wo ctx
//!     xb = rmsnorm(x) ; x += Wdown (silu(Wgate xb) * Wup xb)
//! logits = Wout rmsnorm(x)
//! ```

use super::plan::views;
use super::{Shape, Step};
use crate::format::TensorKind as K;
use crate::kernels::attention::attend_f32;
use crate::kernels::gelu::silu;
use crate::kernels::matvec::{matvec_f32, Weight};
use crate::kernels::rmsnorm::rms_norm_f32;
use crate::kernels::rope::rope_f32;
use crate::model::float::add_assign;
use crate::model::{Observer, Point};

/// Runs the block's one `token` at position `pos` (`< plan.ctx`, checked by the caller), writing its
/// keys and values into the cache and, if `logits` is set, the next-token logits.
pub(crate) fn step<W: Weight, O: Observer>(step: &Step<'_, '_>, arena: &mut [u8], obs: &mut O) {
    let Step {
        file,
        plan,
        tokens,
        pos,
        logits,
        ..
    } = *step;
    // A float plan has one row: the block is one token.
    let &[token] = tokens else { return };
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
    let eps = config.layer_norm_eps();
    let theta = dec.rope_theta();
    let scale = 1.0 / libm::sqrtf(head_dim as f32);
    let v = views::<f32, f32, f32>(plan, arena);
    let x = v.residual;
    let xb = v.input.get_mut(..hidden).unwrap_or(&mut []);

    let emb: &[W] = file.tensor(K::WordEmb, None);
    let row = token as usize * hidden;
    W::widen_into(emb.get(row..row + hidden).unwrap_or(&[]), x);
    obs.observe(Point::EmbSum, 0, x);

    for layer in 0..config.layers as usize {
        let l = Some(layer as u16);
        let cache_row = (layer * plan.ctx + pos) * kv_dim;
        let layer_start = layer * plan.ctx * kv_dim;
        rms_norm_f32(xb, x, file.tensor(K::RmsAttn, l), eps);
        matvec_f32::<W>(v.query, xb, file.tensor(K::QueryW, l), &[]);
        let key = v
            .keys
            .get_mut(cache_row..cache_row + kv_dim)
            .unwrap_or(&mut []);
        matvec_f32::<W>(key, xb, file.tensor(K::KeyW, l), &[]);
        let value = v
            .values
            .get_mut(cache_row..cache_row + kv_dim)
            .unwrap_or(&mut []);
        matvec_f32::<W>(value, xb, file.tensor(K::ValueW, l), &[]);
        obs.observe(Point::Value, layer, value);
        rope_f32(v.query, head_dim, pos, theta);
        let key = v
            .keys
            .get_mut(cache_row..cache_row + kv_dim)
            .unwrap_or(&mut []);
        rope_f32(key, head_dim, pos, theta);
        obs.observe(Point::Query, layer, v.query);
        obs.observe(Point::Key, layer, key);

        // Keys and values of positions 0..=pos of this layer.
        let seen = layer_start..cache_row + kv_dim;
        let keys = v.keys.get(seen.clone()).unwrap_or(&[]);
        let values = v.values.get(seen).unwrap_or(&[]);
        let scores = v.scores.get_mut(..=pos).unwrap_or(&mut []);
        for head in 0..heads {
            let cols = head * head_dim..(head + 1) * head_dim;
            attend_f32(
                v.context.get_mut(cols.clone()).unwrap_or(&mut []),
                v.query.get(cols).unwrap_or(&[]),
                keys,
                values,
                kv_dim,
                head / group,
                scale,
                scores,
                |_| true,
            );
        }
        obs.observe(Point::Context, layer, v.context);
        matvec_f32::<W>(v.out, v.context, file.tensor(K::AttnOutW, l), &[]);
        add_assign(x, v.out);
        obs.observe(Point::AttnSum, layer, x);

        rms_norm_f32(xb, x, file.tensor(K::RmsFfn, l), eps);
        matvec_f32::<W>(v.gate, xb, file.tensor(K::GateW, l), &[]);
        matvec_f32::<W>(v.up, xb, file.tensor(K::UpW, l), &[]);
        obs.observe(Point::Ffn1, layer, v.gate);
        for (g, u) in v.gate.iter_mut().zip(v.up.iter()) {
            *g = silu(*g) * u;
        }
        obs.observe(Point::Act, layer, v.gate);
        matvec_f32::<W>(
            v.out,
            v.gate.get(..ffn).unwrap_or(&[]),
            file.tensor(K::DownW, l),
            &[],
        );
        add_assign(x, v.out);
        obs.observe(Point::FfnSum, layer, x);
    }

    if logits {
        rms_norm_f32(xb, x, file.tensor(K::RmsFinal, None), eps);
        let head = if dec.separate_output {
            K::OutputW
        } else {
            K::WordEmb
        };
        matvec_f32::<W>(v.logits, xb, file.tensor(head, None), &[]);
        obs.observe(Point::Logits, 0, v.logits);
    }
}
