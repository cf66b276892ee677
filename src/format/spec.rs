//! The canonical tensor list: which tensors a model of a given [`Config`] holds, in
//! which order, with which dtype and shape. Both the reader (validation) and the
//! writer use it, and the runtime finds tensors by the same arithmetic.

use super::{Arch, Config, DType, Pooling};

/// What a tensor is (directory `kind` code). Codes are stable across versions.
///
/// Float models (`weight_dtype` f32/f16) hold weights `W` in the weight dtype and
/// biases, LayerNorm parameters in f32. Full-integer models (`weight_dtype` i8) hold
/// `i8` weights, `i32` biases (in units of input scale x weight scale), requantization
/// tables `*Rq` of `(multiplier, shift)` pairs, integer LayerNorm parameters, lookup
/// tables and scalar constants; see `docs/FORMAT.md` for the exact semantics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u16)]
#[allow(missing_docs)]
pub enum TensorKind {
    WordEmb = 1,
    PosEmb = 2,
    TypeEmb = 3,
    /// LayerNorm after the embedding sum: `[2, hidden]` (gamma row, beta row).
    EmbNorm = 4,
    WordRq = 5,
    PosRq = 6,
    TypeRq = 7,
    /// int8: `[8]` i32 constants of the embedding block (see `docs/FORMAT.md`).
    EmbScalars = 8,
    QueryW = 16,
    QueryB = 17,
    QueryRq = 18,
    KeyW = 19,
    KeyB = 20,
    KeyRq = 21,
    ValueW = 22,
    ValueB = 23,
    ValueRq = 24,
    AttnOutW = 25,
    AttnOutB = 26,
    AttnOutRq = 27,
    AttnNorm = 28,
    Ffn1W = 29,
    Ffn1B = 30,
    Ffn1Rq = 31,
    /// int8: the FFN activation in Q10 fixed point, sampled on `[-8, 8]` every 1/32
    /// (`[513]` i32), interpolated linearly (see [`crate::kernels::gelu`]).
    ActTable = 32,
    Ffn2W = 33,
    Ffn2B = 34,
    Ffn2Rq = 35,
    FfnNorm = 36,
    /// int8: `[16]` i32 constants of one encoder layer.
    LayerScalars = 37,
    /// int8: per-channel requant of the layer input (skip connection) into the
    /// attention residual.
    AttnSkipRq = 38,
    /// int8: per-channel requant of the attention block output into the FFN residual.
    FfnSkipRq = 39,
    /// int8: per-channel requant of the Q10 activation output to int8.
    ActRq = 40,
    /// int8: per-channel requant of Q15-probability-weighted values to the int8
    /// context, `s_v[c] / (2^15 * s_ctx[c])`.
    CtxRq = 41,
    PoolerW = 48,
    PoolerB = 49,
    PoolerRq = 50,
    /// int8: tanh of the pooler in Q10, sampled like [`TensorKind::ActTable`].
    TanhTable = 51,
    ClassW = 52,
    ClassB = 53,
    ClassRq = 54,
    /// int8: per-channel requant of the Q10 tanh output to the int8 pooled vector.
    TanhRq = 57,
    /// int8: per-channel requant of the pooled vector to the Q16 output (models
    /// without a classifier).
    PooledRq = 56,
    /// Decoder: SwiGLU gate projection `[ffn, hidden]`.
    GateW = 64,
    /// Decoder: SwiGLU up projection `[ffn, hidden]`.
    UpW = 65,
    /// Decoder: SwiGLU down projection `[hidden, ffn]`.
    DownW = 66,
    /// Decoder: separate output head `[vocab, hidden]` (absent when tied).
    OutputW = 67,
    /// Decoder: RMSNorm weight before attention `[hidden]`.
    RmsAttn = 70,
    /// Decoder: RMSNorm weight before the FFN `[hidden]`.
    RmsFfn = 71,
    /// Decoder: final RMSNorm weight `[hidden]`.
    RmsFinal = 72,
    /// Decoder int8: requant of the gate accumulator to Q10.
    GateRq = 73,
    /// Decoder int8: requant of the up accumulator to Q10.
    UpRq = 74,
    /// Decoder int8: requant of the down accumulator into the residual.
    DownRq = 75,
    /// Decoder int8: requant of the output-head accumulator to Q16 logits.
    OutputRq = 76,
    /// Decoder int8: RoPE `(cos, sin)` pairs in Q14 for each position `< max_seq`
    /// and frequency, `[max_seq, head_dim]` i32.
    RopeTable = 77,
    /// Decoder int8: per key/value head, score to a Q16 base-2 exponent.
    ScoreRq = 78,
    /// Decoder int8: `[8]` i32 model constants (RMSNorm epsilon).
    DecScalars = 79,
    /// Decoder int8: per key channel, the rotated wide key to the int8 cache (one
    /// cache scale per channel).
    KeyCacheRq = 80,
    /// Decoder int8: per key channel, the factor a rotated query channel takes so that
    /// its product with the cached key is the true score.
    QueryKeyRq = 81,
}

use TensorKind as K;

const ALL_KINDS: [TensorKind; 59] = [
    K::GateW,
    K::UpW,
    K::DownW,
    K::OutputW,
    K::RmsAttn,
    K::RmsFfn,
    K::RmsFinal,
    K::GateRq,
    K::UpRq,
    K::DownRq,
    K::OutputRq,
    K::RopeTable,
    K::ScoreRq,
    K::DecScalars,
    K::KeyCacheRq,
    K::QueryKeyRq,
    K::WordEmb,
    K::PosEmb,
    K::TypeEmb,
    K::EmbNorm,
    K::WordRq,
    K::PosRq,
    K::TypeRq,
    K::EmbScalars,
    K::QueryW,
    K::QueryB,
    K::QueryRq,
    K::KeyW,
    K::KeyB,
    K::KeyRq,
    K::ValueW,
    K::ValueB,
    K::ValueRq,
    K::AttnOutW,
    K::AttnOutB,
    K::AttnOutRq,
    K::AttnNorm,
    K::Ffn1W,
    K::Ffn1B,
    K::Ffn1Rq,
    K::ActTable,
    K::Ffn2W,
    K::Ffn2B,
    K::Ffn2Rq,
    K::FfnNorm,
    K::LayerScalars,
    K::PoolerW,
    K::PoolerB,
    K::PoolerRq,
    K::TanhTable,
    K::ClassW,
    K::ClassB,
    K::ClassRq,
    K::AttnSkipRq,
    K::FfnSkipRq,
    K::PooledRq,
    K::ActRq,
    K::CtxRq,
    K::TanhRq,
];

impl TensorKind {
    /// Decodes a kind code.
    pub fn from_code(code: u16) -> Option<Self> {
        ALL_KINDS.iter().copied().find(|k| *k as u16 == code)
    }

    /// Whether the tensor holds `(multiplier, shift)` requantization pairs.
    pub fn is_requant(self) -> bool {
        matches!(
            self,
            K::WordRq
                | K::PosRq
                | K::TypeRq
                | K::QueryRq
                | K::KeyRq
                | K::ValueRq
                | K::AttnOutRq
                | K::Ffn1Rq
                | K::Ffn2Rq
                | K::PoolerRq
                | K::ClassRq
                | K::AttnSkipRq
                | K::FfnSkipRq
                | K::PooledRq
                | K::ActRq
                | K::CtxRq
                | K::TanhRq
                | K::GateRq
                | K::UpRq
                | K::DownRq
                | K::OutputRq
                | K::ScoreRq
                | K::KeyCacheRq
                | K::QueryKeyRq
        )
    }

    /// Hugging Face-style name, for humans (`inspect`).
    pub fn name(self) -> &'static str {
        match self {
            K::WordEmb => "embeddings.word_embeddings",
            K::PosEmb => "embeddings.position_embeddings",
            K::TypeEmb => "embeddings.token_type_embeddings",
            K::EmbNorm => "embeddings.LayerNorm",
            K::WordRq => "embeddings.word_embeddings.requant",
            K::PosRq => "embeddings.position_embeddings.requant",
            K::TypeRq => "embeddings.token_type_embeddings.requant",
            K::EmbScalars => "embeddings.scalars",
            K::QueryW => "attention.self.query.weight",
            K::QueryB => "attention.self.query.bias",
            K::QueryRq => "attention.self.query.requant",
            K::KeyW => "attention.self.key.weight",
            K::KeyB => "attention.self.key.bias",
            K::KeyRq => "attention.self.key.requant",
            K::ValueW => "attention.self.value.weight",
            K::ValueB => "attention.self.value.bias",
            K::ValueRq => "attention.self.value.requant",
            K::AttnOutW => "attention.output.dense.weight",
            K::AttnOutB => "attention.output.dense.bias",
            K::AttnOutRq => "attention.output.dense.requant",
            K::AttnNorm => "attention.output.LayerNorm",
            K::Ffn1W => "intermediate.dense.weight",
            K::Ffn1B => "intermediate.dense.bias",
            K::Ffn1Rq => "intermediate.dense.requant",
            K::ActTable => "activation_table",
            K::ActRq => "intermediate.activation.requant",
            K::CtxRq => "attention.context.requant",
            K::TanhRq => "pooler.tanh.requant",
            K::Ffn2W => "output.dense.weight",
            K::Ffn2B => "output.dense.bias",
            K::Ffn2Rq => "output.dense.requant",
            K::FfnNorm => "output.LayerNorm",
            K::LayerScalars => "scalars",
            K::PoolerW => "pooler.dense.weight",
            K::PoolerB => "pooler.dense.bias",
            K::PoolerRq => "pooler.dense.requant",
            K::TanhTable => "pooler.tanh_table",
            K::ClassW => "classifier.weight",
            K::ClassB => "classifier.bias",
            K::ClassRq => "classifier.requant",
            K::AttnSkipRq => "attention.skip.requant",
            K::FfnSkipRq => "output.skip.requant",
            K::PooledRq => "pooled.requant",
            K::GateW => "mlp.gate_proj.weight",
            K::UpW => "mlp.up_proj.weight",
            K::DownW => "mlp.down_proj.weight",
            K::OutputW => "lm_head.weight",
            K::RmsAttn => "input_layernorm.weight",
            K::RmsFfn => "post_attention_layernorm.weight",
            K::RmsFinal => "norm.weight",
            K::GateRq => "mlp.gate_proj.requant",
            K::UpRq => "mlp.up_proj.requant",
            K::DownRq => "mlp.down_proj.requant",
            K::OutputRq => "lm_head.requant",
            K::RopeTable => "rope_table",
            K::ScoreRq => "self_attn.score.requant",
            K::DecScalars => "scalars",
            K::KeyCacheRq => "self_attn.k_cache.requant",
            K::QueryKeyRq => "self_attn.q_key_scale.requant",
        }
    }
}

/// Element indices of the int8 scalar tensors ([`TensorKind::EmbScalars`],
/// [`TensorKind::LayerScalars`]). A pair `(m, s)` at
/// `i, i + 1` is a [`crate::quant::Requant`]; unused elements are zero.
pub mod scalar {
    /// EmbScalars: LayerNorm epsilon in squared residual units.
    pub const EMB_EPS: usize = 0;
    /// LayerScalars: score distance to a Q16 base-2 exponent,
    /// `s_q * s_k / sqrt(head_dim) * log2(e) * 2^16`.
    pub const SCORE_TO_LOG2: usize = 2;
    /// LayerScalars: epsilon of the attention LayerNorm in squared residual units.
    pub const ATTN_EPS: usize = 8;
    /// LayerScalars: epsilon of the FFN LayerNorm in squared residual units.
    pub const FFN_EPS: usize = 9;
    /// DecScalars: RMSNorm epsilon in squared residual units, an `i64` as its low
    /// and high 32-bit halves at `RMS_EPS`, `RMS_EPS + 1`.
    pub const RMS_EPS: usize = 0;
}

/// The expected directory entry at one index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// Kind.
    pub kind: TensorKind,
    /// Layer, `None` for model-level tensors.
    pub layer: Option<u16>,
    /// Element type.
    pub dtype: DType,
    /// 1 or 2.
    pub rank: u8,
    /// `[rows, cols]`, `cols == 1` for vectors.
    pub dims: [u32; 2],
}

impl TensorSpec {
    /// Payload bytes (`u64`: config limits keep it far below overflow).
    pub fn byte_len(&self) -> u64 {
        u64::from(self.dims[0]) * u64::from(self.dims[1]) * self.dtype.size() as u64
    }
}

const FLOAT_EMB: &[TensorKind] = &[K::WordEmb, K::PosEmb, K::TypeEmb, K::EmbNorm];
const INT8_EMB: &[TensorKind] = &[
    K::WordEmb,
    K::WordRq,
    K::PosEmb,
    K::PosRq,
    K::TypeEmb,
    K::TypeRq,
    K::EmbNorm,
    K::EmbScalars,
    K::ActTable,
];
const FLOAT_LAYER: &[TensorKind] = &[
    K::QueryW,
    K::QueryB,
    K::KeyW,
    K::KeyB,
    K::ValueW,
    K::ValueB,
    K::AttnOutW,
    K::AttnOutB,
    K::AttnNorm,
    K::Ffn1W,
    K::Ffn1B,
    K::Ffn2W,
    K::Ffn2B,
    K::FfnNorm,
];
const INT8_LAYER: &[TensorKind] = &[
    K::QueryW,
    K::QueryB,
    K::QueryRq,
    K::KeyW,
    K::KeyB,
    K::KeyRq,
    K::ValueW,
    K::ValueB,
    K::ValueRq,
    K::CtxRq,
    K::AttnOutW,
    K::AttnOutB,
    K::AttnOutRq,
    K::AttnSkipRq,
    K::AttnNorm,
    K::Ffn1W,
    K::Ffn1B,
    K::Ffn1Rq,
    K::ActRq,
    K::Ffn2W,
    K::Ffn2B,
    K::Ffn2Rq,
    K::FfnSkipRq,
    K::FfnNorm,
    K::LayerScalars,
];

const DEC_FLOAT_EMB: &[TensorKind] = &[K::WordEmb];
const DEC_INT8_EMB: &[TensorKind] = &[
    K::WordEmb,
    K::WordRq,
    K::RopeTable,
    K::ActTable,
    K::DecScalars,
];
const DEC_FLOAT_LAYER: &[TensorKind] = &[
    K::RmsAttn,
    K::QueryW,
    K::KeyW,
    K::ValueW,
    K::AttnOutW,
    K::RmsFfn,
    K::GateW,
    K::UpW,
    K::DownW,
];
const DEC_INT8_LAYER: &[TensorKind] = &[
    K::RmsAttn,
    K::QueryW,
    K::QueryRq,
    K::KeyW,
    K::KeyRq,
    K::KeyCacheRq,
    K::QueryKeyRq,
    K::ValueW,
    K::ValueRq,
    K::ScoreRq,
    K::CtxRq,
    K::AttnOutW,
    K::AttnOutRq,
    K::RmsFfn,
    K::GateW,
    K::GateRq,
    K::UpW,
    K::UpRq,
    K::DownW,
    K::DownRq,
];

/// Head tensors present for a config, in order, as a fixed array and a count.
fn head_kinds(config: &Config) -> ([TensorKind; 8], usize) {
    let mut kinds = [K::PooledRq; 8];
    let mut n = 0;
    // At most 7 kinds are pushed; `get_mut` keeps a panic path out of firmware.
    let mut push = |k| {
        if let Some(slot) = kinds.get_mut(n) {
            *slot = k;
            n += 1;
        }
    };
    let int8 = config.is_int8();
    if let Some(d) = config.decoder {
        push(K::RmsFinal);
        if d.separate_output {
            push(K::OutputW);
        }
        if int8 {
            push(K::OutputRq);
        }
        return (kinds, n);
    }
    if config.pooling == Pooling::ClsPooler {
        push(K::PoolerW);
        push(K::PoolerB);
        if int8 {
            push(K::PoolerRq);
            push(K::TanhTable);
            push(K::TanhRq);
        }
    }
    if config.num_labels > 0 {
        push(K::ClassW);
        push(K::ClassB);
        if int8 {
            push(K::ClassRq);
        }
    }
    if int8 && config.num_labels == 0 {
        push(K::PooledRq);
    }
    (kinds, n)
}

fn sections(config: &Config) -> (&'static [TensorKind], &'static [TensorKind]) {
    match (config.arch, config.is_int8()) {
        (Arch::BertEncoder, true) => (INT8_EMB, INT8_LAYER),
        (Arch::BertEncoder, false) => (FLOAT_EMB, FLOAT_LAYER),
        (Arch::LlamaDecoder, true) => (DEC_INT8_EMB, DEC_INT8_LAYER),
        (Arch::LlamaDecoder, false) => (DEC_FLOAT_EMB, DEC_FLOAT_LAYER),
    }
}

/// Number of tensors a model with this config holds.
pub fn tensor_count(config: &Config) -> usize {
    let (emb, layer) = sections(config);
    emb.len() + layer.len() * config.layers as usize + head_kinds(config).1
}

/// Directory index of tensor `(kind, layer)`, `None` if the config has no such tensor.
pub fn tensor_index(config: &Config, kind: TensorKind, layer: Option<u16>) -> Option<u32> {
    let (emb, per_layer) = sections(config);
    let index = match layer {
        None => {
            if let Some(i) = emb.iter().position(|&k| k == kind) {
                i
            } else {
                let (head, n) = head_kinds(config);
                let i = head.get(..n)?.iter().position(|&k| k == kind)?;
                emb.len() + per_layer.len() * config.layers as usize + i
            }
        }
        Some(l) if u32::from(l) < config.layers => {
            let i = per_layer.iter().position(|&k| k == kind)?;
            emb.len() + per_layer.len() * l as usize + i
        }
        Some(_) => return None,
    };
    Some(index as u32)
}

/// The tensor expected at directory `index`, `None` past the end.
pub fn tensor_spec(config: &Config, index: usize) -> Option<TensorSpec> {
    let (emb, per_layer) = sections(config);
    let layers_end = emb.len() + per_layer.len() * config.layers as usize;
    let (kind, layer) = if index < emb.len() {
        (emb[index], None)
    } else if index < layers_end {
        let i = index - emb.len();
        (
            per_layer[i % per_layer.len()],
            Some((i / per_layer.len()) as u16),
        )
    } else {
        let (head, n) = head_kinds(config);
        (*head.get(..n)?.get(index - layers_end)?, None)
    };
    let (dtype, dims) = shape(config, kind);
    Some(TensorSpec {
        kind,
        layer,
        dtype,
        rank: if dims[1] == 1 && !is_matrix(kind) {
            1
        } else {
            2
        },
        dims,
    })
}

/// Matrices keep rank 2 even when a dimension is 1 (e.g. one label).
fn is_matrix(kind: TensorKind) -> bool {
    matches!(
        kind,
        K::WordEmb
            | K::PosEmb
            | K::TypeEmb
            | K::EmbNorm
            | K::QueryW
            | K::KeyW
            | K::ValueW
            | K::AttnOutW
            | K::AttnNorm
            | K::Ffn1W
            | K::Ffn2W
            | K::FfnNorm
            | K::PoolerW
            | K::ClassW
            | K::GateW
            | K::UpW
            | K::DownW
            | K::OutputW
            | K::RopeTable
    ) || kind.is_requant()
}

/// Element type and `[rows, cols]` of a tensor kind under a config.
fn shape(config: &Config, kind: TensorKind) -> (DType, [u32; 2]) {
    let (v, h, f) = (config.vocab_size, config.hidden, config.ffn);
    let (p, t, l) = (config.max_positions, config.type_vocab, config.num_labels);
    let w = config.weight_dtype;
    let int8 = config.is_int8();
    let bias = if int8 { DType::I32 } else { DType::F32 };
    let norm = bias;
    let kv_dim = config.kv_dim() as u32;
    match kind {
        K::WordEmb => (w, [v, h]),
        K::PosEmb => (w, [p, h]),
        K::TypeEmb => (w, [t, h]),
        K::EmbNorm | K::AttnNorm | K::FfnNorm => (norm, [2, h]),
        K::WordRq => (DType::I32, [v, 2]),
        K::PosRq => (DType::I32, [p, 2]),
        K::TypeRq => (DType::I32, [t, 2]),
        K::EmbScalars => (DType::I32, [8, 1]),
        K::LayerScalars => (DType::I32, [16, 1]),
        K::KeyW | K::ValueW => (w, [kv_dim, h]),
        K::KeyRq | K::ValueRq | K::KeyCacheRq | K::QueryKeyRq => (DType::I32, [kv_dim, 2]),
        K::QueryW | K::AttnOutW | K::PoolerW => (w, [h, h]),
        K::QueryB | K::KeyB | K::ValueB | K::AttnOutB | K::Ffn2B | K::PoolerB => (bias, [h, 1]),
        K::QueryRq
        | K::AttnOutRq
        | K::DownRq
        | K::Ffn2Rq
        | K::PoolerRq
        | K::AttnSkipRq
        | K::FfnSkipRq
        | K::PooledRq
        | K::TanhRq => (DType::I32, [h, 2]),
        K::Ffn1W => (w, [f, h]),
        K::Ffn1B => (bias, [f, 1]),
        K::Ffn1Rq => (DType::I32, [f, 2]),
        K::ActTable | K::TanhTable => (DType::I32, [crate::kernels::gelu::ACT_TABLE_LEN as u32, 1]),
        K::ActRq => (DType::I32, [f, 2]),
        K::CtxRq => (DType::I32, [h, 2]),
        K::Ffn2W => (w, [h, f]),
        K::ClassW => (w, [l, h]),
        K::ClassB => (bias, [l, 1]),
        K::ClassRq => (DType::I32, [l, 2]),
        K::GateW | K::UpW => (w, [f, h]),
        K::GateRq | K::UpRq => (DType::I32, [f, 2]),
        K::DownW => (w, [h, f]),
        K::OutputW => (w, [v, h]),
        K::OutputRq => (DType::I32, [v, 2]),
        K::RmsAttn | K::RmsFfn | K::RmsFinal => (norm, [h, 1]),
        K::RopeTable => (DType::I32, [config.max_seq, config.head_dim() as u32]),
        K::ScoreRq => (DType::I32, [config.kv_heads() as u32, 2]),
        K::DecScalars => (DType::I32, [8, 1]),
    }
}
