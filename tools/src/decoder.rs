//! Llama-family checkpoint -> tinyformer decoder file (arch 2), in f32, f16 or
//! full-integer int8 with scales calibrated on real text.
//!
//! Sources implement [`LlamaSource`] (llama2.c checkpoints today); the conversion
//! only sees canonical tensors in the runtime's layout (`[out, in]` rows, query/key
//! rows in the adjacent-pair RoPE order).

use crate::convert::{
    activation_table, clamp_i32, i8_bytes, progress_bar, requant_bytes, Precision,
};
use crate::gptq::quantize_rows;
use crate::le::{f16_bytes, f32_bytes, i32_bytes};
use crate::llama2c::Llama2cCheckpoint;
use anyhow::{anyhow, bail, Result};
use tinyformer::format::writer::{write_model, AlignedBuf, TensorData};
use tinyformer::format::{
    scalar, tensor_count, tensor_spec, Activation, Arch, Config, DType, DecoderParams, Pooling,
    TensorKind as K,
};
use tinyformer::kernels::gelu::ACT_FRAC_BITS;
use tinyformer::kernels::rmsnorm::{RMS_OUT_BITS, RMS_WEIGHT_BITS};
use tinyformer::kernels::rope::rope_table_entry;
use tinyformer::model::decoder::KEY_WIDE_BITS;
use tinyformer::model::{Observer, Point};
use tinyformer::quant::{Requant, RESIDUAL_MAX};
use tinyformer::{Decoder, State};

/// Hyperparameters of a Llama-family model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LlamaParams {
    pub vocab: u32,
    pub hidden: u32,
    pub ffn: u32,
    pub layers: u32,
    pub heads: u32,
    pub kv_heads: u32,
    /// Positions the model was trained for.
    pub max_positions: u32,
    pub rope_theta: f32,
    pub rms_eps: f32,
    pub bos: u32,
    pub eos: u32,
    /// Whether the output head has its own matrix.
    pub separate_output: bool,
}

/// A checkpoint the decoder converter reads: canonical tensors as `f32`.
pub trait LlamaSource {
    /// Hyperparameters.
    fn params(&self) -> LlamaParams;
    /// Tensor `kind` of `layer` (`None`: model-level) in the runtime's layout, for the
    /// float kinds of the canonical list (`WordEmb`, `Rms*`, `*W`).
    fn tensor(&self, kind: K, layer: Option<u16>) -> Result<&[f32]>;
}

impl LlamaSource for Llama2cCheckpoint {
    fn params(&self) -> LlamaParams {
        let c = &self.config;
        LlamaParams {
            vocab: c.vocab_size,
            hidden: c.dim,
            ffn: c.hidden_dim,
            layers: c.layers,
            heads: c.heads,
            kv_heads: c.kv_heads,
            max_positions: c.seq_len,
            // llama2.c hard-codes both.
            rope_theta: 10000.0,
            rms_eps: 1e-5,
            // llama2.c's tokenizer: <unk> 0, <s> 1, </s> 2.
            bos: 1,
            eos: 2,
            separate_output: !c.shared_classifier,
        }
    }

    fn tensor(&self, kind: K, layer: Option<u16>) -> Result<&[f32]> {
        match (kind, layer) {
            (K::WordEmb, None) => return Ok(self.token_embedding()),
            (K::RmsFinal, None) => return Ok(self.rms_final()),
            (K::OutputW, None) => return Ok(self.classifier()),
            _ => {}
        }
        let l = match layer {
            Some(l) if u32::from(l) < self.config.layers => self.layer(l as usize),
            _ => bail!("a llama2.c checkpoint has no {kind:?} tensor for layer {layer:?}"),
        };
        Ok(match kind {
            K::RmsAttn => l.rms_att,
            K::QueryW => l.wq,
            K::KeyW => l.wk,
            K::ValueW => l.wv,
            K::AttnOutW => l.wo,
            K::RmsFfn => l.rms_ffn,
            K::GateW => l.w1,
            K::UpW => l.w3,
            K::DownW => l.w2,
            other => bail!("a llama2.c checkpoint has no {other:?} tensor"),
        })
    }
}

/// The format config for a source; `max_seq` (default: the trained context) bounds
/// the context a state can be made for.
pub fn decoder_config(
    p: &LlamaParams,
    weight_dtype: DType,
    max_seq: Option<u32>,
) -> Result<Config> {
    let max_seq = max_seq.unwrap_or(p.max_positions);
    if max_seq < 2 || max_seq > p.max_positions {
        bail!(
            "--max-seq {max_seq} must be between 2 and the checkpoint's context length ({})",
            p.max_positions
        );
    }
    Ok(Config {
        arch: Arch::LlamaDecoder,
        weight_dtype,
        activation: Activation::Silu,
        pooling: Pooling::None,
        vocab_size: p.vocab,
        hidden: p.hidden,
        layers: p.layers,
        heads: p.heads,
        ffn: p.ffn,
        max_positions: p.max_positions,
        type_vocab: 0,
        num_labels: 0,
        max_seq,
        layer_norm_eps_bits: p.rms_eps.to_bits(),
        decoder: Some(DecoderParams {
            kv_heads: p.kv_heads,
            rope_theta_bits: p.rope_theta.to_bits(),
            bos_id: p.bos,
            eos_id: p.eos,
            separate_output: p.separate_output,
        }),
    })
}

type Payloads = Vec<(K, Option<u16>, Vec<u8>)>;

fn assemble(config: &Config, tokenizer: &[u8], payloads: &Payloads) -> Result<Vec<u8>> {
    let tensors = TensorData::borrow_all(payloads);
    write_model(config, tokenizer, &[], &tensors).map_err(|e| anyhow!("writing the model: {e}"))
}

/// f32 or f16 weights.
pub fn convert_float(
    src: &dyn LlamaSource,
    tokenizer: &[u8],
    f16: bool,
    max_seq: Option<u32>,
) -> Result<Vec<u8>> {
    let dtype = if f16 { DType::F16 } else { DType::F32 };
    let config = decoder_config(&src.params(), dtype, max_seq)?;
    let mut payloads: Payloads = Vec::new();
    for index in 0..tensor_count(&config) {
        let Some(spec) = tensor_spec(&config, index) else {
            break;
        };
        let data = src.tensor(spec.kind, spec.layer)?;
        let bytes = if spec.dtype == DType::F16 {
            f16_bytes(data)
        } else {
            f32_bytes(data)
        };
        payloads.push((spec.kind, spec.layer, bytes));
    }
    assemble(&config, tokenizer, &payloads)
}

/// Absolute maxima of the float model's activations on calibration text: the
/// residual stream (all layers), and per layer and channel the rotated queries, the
/// rotated keys and the values.
#[derive(Clone, Debug, Default)]
pub struct DecoderRanges {
    pub residual: f32,
    pub query: Vec<Vec<f32>>,
    pub key: Vec<Vec<f32>>,
    pub value: Vec<Vec<f32>>,
}

impl DecoderRanges {
    fn new(config: &Config) -> Self {
        let (l, h, kv) = (
            config.layers as usize,
            config.hidden as usize,
            config.kv_dim(),
        );
        Self {
            residual: 0.0,
            query: vec![vec![0.0; h]; l],
            key: vec![vec![0.0; kv]; l],
            value: vec![vec![0.0; kv]; l],
        }
    }
}

impl Observer for DecoderRanges {
    fn observe(&mut self, point: Point, layer: usize, values: &[f32]) {
        let channels = match point {
            Point::EmbSum | Point::AttnSum | Point::FfnSum => {
                let m = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                self.residual = self.residual.max(m);
                return;
            }
            Point::Query => &mut self.query,
            Point::Key => &mut self.key,
            Point::Value => &mut self.value,
            _ => return,
        };
        if let Some(maxima) = channels.get_mut(layer) {
            for (m, v) in maxima.iter_mut().zip(values) {
                *m = m.max(v.abs());
            }
        }
    }
}

/// Runs the float model over each sequence (teacher-forced from position 0) and
/// collects [`DecoderRanges`].
pub fn calibrate(
    float_model: &[u8],
    sequences: &[Vec<u32>],
    progress: bool,
) -> Result<DecoderRanges> {
    let buf = AlignedBuf::from_bytes(float_model);
    let model = Decoder::from_bytes(buf.as_bytes()).map_err(|e| anyhow!("float model: {e}"))?;
    let config = *model.config();
    let ctx = config.max_seq as usize;
    let mut arena = vec![0u32; model.arena_bytes(ctx)?.div_ceil(4)];
    let mut state = State::new(&model, bytemuck::cast_slice_mut(&mut arena), ctx)?;
    let mut ranges = DecoderRanges::new(&config);
    let bar = progress_bar(progress, sequences.len() as u64, "calibrating");
    for ids in sequences {
        state.reset();
        for &id in ids.iter().take(ctx) {
            state.step_observed(id, &mut ranges)?;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if ranges.residual == 0.0 {
        bail!("calibration saw no activations (empty calibration text?)");
    }
    Ok(ranges)
}

/// The residual stream's calibrated maximum maps to `2^20`, leaving a factor 16 of
/// headroom below the clamp at `RESIDUAL_MAX` (about `2^24`).
const RESIDUAL_TARGET: f64 = (1u32 << 20) as f64;
/// The rotated queries' calibrated maximum maps to `2^16` on their wide grid.
const QUERY_TARGET: f64 = (1u32 << 16) as f64;
/// The attention context's largest possible value (the largest value in the cache)
/// maps to `2^16` on its wide grid.
const CONTEXT_TARGET: f64 = (1u32 << 16) as f64;

/// A positive scale for an observed maximum `m` mapped to `target` (a channel that
/// never fired gets the scale of a maximum of 1e-6).
fn scale(m: f32, target: f64) -> f64 {
    f64::from(m).max(1e-6) / target
}

/// Per-row int8 weights `[rows, cols]` and their scales.
fn quantize(w: &[f32], cols: usize) -> (Vec<i8>, Vec<f64>) {
    quantize_rows(w, cols, None)
}

fn rq(v: impl IntoIterator<Item = f64>) -> Vec<u8> {
    requant_bytes(&v.into_iter().map(Requant::from_real).collect::<Vec<_>>())
}

/// Full-integer int8 with scales from `ranges`.
pub fn convert_int8(
    src: &dyn LlamaSource,
    tokenizer: &[u8],
    ranges: &DecoderRanges,
    max_seq: Option<u32>,
) -> Result<Vec<u8>> {
    let p = src.params();
    let config = decoder_config(&p, DType::I8, max_seq)?;
    let (h, f) = (p.hidden as usize, p.ffn as usize);
    let head_dim = config.head_dim();
    let kv_dim = config.kv_dim();
    let group = (p.heads / p.kv_heads) as usize;
    let norm_in = 2f64.powi(-(RMS_OUT_BITS as i32));
    let q10 = 2f64.powi(-(ACT_FRAC_BITS as i32));
    let s_res = scale(ranges.residual, RESIDUAL_TARGET);
    debug_assert!(RESIDUAL_TARGET < RESIDUAL_MAX as f64);
    let mut out: Payloads = Vec::new();
    let mut push = |kind: K, layer: Option<u16>, bytes: Vec<u8>| out.push((kind, layer, bytes));
    let gamma = |v: &[f32]| -> Vec<u8> {
        let one = f64::from(1u32 << RMS_WEIGHT_BITS);
        i32_bytes(
            &v.iter()
                .map(|&g| clamp_i32(f64::from(g) * one))
                .collect::<Vec<_>>(),
        )
    };

    // Model level.
    let (emb_q, emb_s) = quantize(src.tensor(K::WordEmb, None)?, h);
    push(K::WordEmb, None, i8_bytes(&emb_q));
    push(K::WordRq, None, rq(emb_s.iter().map(|s| s / s_res)));
    let theta = f64::from(p.rope_theta);
    let rope: Vec<i32> = (0..config.max_seq as usize)
        .flat_map(|pos| {
            (0..head_dim / 2).flat_map(move |i| rope_table_entry(pos, i, head_dim, theta))
        })
        .collect();
    push(K::RopeTable, None, i32_bytes(&rope));
    push(
        K::ActTable,
        None,
        i32_bytes(&activation_table(Activation::Silu)),
    );
    let eps_q = (f64::from(p.rms_eps) / (s_res * s_res)).round().min(1e18) as i64;
    let mut scalars = [0i32; 8];
    scalars[scalar::RMS_EPS] = eps_q as i32;
    scalars[scalar::RMS_EPS + 1] = (eps_q >> 32) as i32;
    push(K::DecScalars, None, i32_bytes(&scalars));

    for layer in 0..p.layers as usize {
        let l = Some(layer as u16);
        // Keys: one cache scale per channel, `s_k[c]`. The projections and RoPE run on
        // a wide grid with one scale per rotated pair, `s_pair[c] / 2^8` (a rotation
        // commutes with a scale common to its pair), which is folded into the query
        // rows of the pair: q~[c] = q[c] s_pair[c]. After RoPE the key channel goes to
        // its cache scale (`KeyCacheRq`) and the query channel takes the factor
        // `s_k[c] / s_pair[c] <= 1` (`QueryKeyRq`), so q~ . k_cache = q . k. (One scale
        // per pair for the cache itself costs 1.5 points of top-1 agreement on
        // stories260K: tools/reference/decoder_int8_ceiling.py, part `kv-pair`.)
        let key_max = &ranges.key[layer];
        let s_k: Vec<f64> = key_max.iter().map(|&m| scale(m, 127.0)).collect();
        let s_pair: Vec<f64> = (0..kv_dim).map(|c| s_k[c].max(s_k[c ^ 1])).collect();
        let s_v: Vec<f64> = ranges.value[layer]
            .iter()
            .map(|&m| scale(m, 127.0))
            .collect();
        let s_ctx = s_v.iter().fold(0.0f64, |a, &b| a.max(b)) * 127.0 / CONTEXT_TARGET;
        // The kv channel a query channel meets: head h reads kv head h / group.
        let kv_channel = |c: usize| (c / head_dim / group) * head_dim + c % head_dim;
        let q_max = (0..h).fold(0.0f64, |m, c| {
            m.max(f64::from(ranges.query[layer][c]) * s_pair[kv_channel(c)])
        });
        let s_q = q_max.max(1e-12) / QUERY_TARGET;

        push(K::RmsAttn, l, gamma(src.tensor(K::RmsAttn, l)?));
        let wq: Vec<f32> = src
            .tensor(K::QueryW, l)?
            .chunks(h)
            .enumerate()
            .flat_map(|(c, row)| {
                let s = s_pair[kv_channel(c)];
                row.iter().map(move |&w| (f64::from(w) * s) as f32)
            })
            .collect();
        let (wq, sq) = quantize(&wq, h);
        push(K::QueryW, l, i8_bytes(&wq));
        push(K::QueryRq, l, rq(sq.iter().map(|s| s * norm_in / s_q)));
        let (wk, sk) = quantize(src.tensor(K::KeyW, l)?, h);
        push(K::KeyW, l, i8_bytes(&wk));
        let key_wide = 2f64.powi(KEY_WIDE_BITS as i32);
        push(
            K::KeyRq,
            l,
            rq(sk
                .iter()
                .zip(&s_pair)
                .map(|(s, sp)| s * norm_in / (sp / key_wide))),
        );
        push(
            K::KeyCacheRq,
            l,
            rq(s_pair.iter().zip(&s_k).map(|(sp, sk)| sp / key_wide / sk)),
        );
        push(
            K::QueryKeyRq,
            l,
            rq(s_k.iter().zip(&s_pair).map(|(sk, sp)| sk / sp)),
        );
        let (wv, sv) = quantize(src.tensor(K::ValueW, l)?, h);
        push(K::ValueW, l, i8_bytes(&wv));
        push(
            K::ValueRq,
            l,
            rq(sv.iter().zip(&s_v).map(|(s, sc)| s * norm_in / sc)),
        );
        let log2e_q16 = std::f64::consts::LOG2_E * 65536.0;
        let score = s_q / (head_dim as f64).sqrt() * log2e_q16;
        push(K::ScoreRq, l, rq((0..p.kv_heads).map(|_| score)));
        push(
            K::CtxRq,
            l,
            rq((0..h).map(|c| s_v[kv_channel(c)] / (32768.0 * s_ctx))),
        );
        let (wo, so) = quantize(src.tensor(K::AttnOutW, l)?, h);
        push(K::AttnOutW, l, i8_bytes(&wo));
        push(K::AttnOutRq, l, rq(so.iter().map(|s| s * s_ctx / s_res)));

        push(K::RmsFfn, l, gamma(src.tensor(K::RmsFfn, l)?));
        for (w_kind, rq_kind) in [(K::GateW, K::GateRq), (K::UpW, K::UpRq)] {
            let (w, s) = quantize(src.tensor(w_kind, l)?, h);
            push(w_kind, l, i8_bytes(&w));
            push(rq_kind, l, rq(s.iter().map(|s| s * norm_in / q10)));
        }
        let (wd, sd) = quantize(src.tensor(K::DownW, l)?, f);
        push(K::DownW, l, i8_bytes(&wd));
        push(K::DownRq, l, rq(sd.iter().map(|s| s * q10 / s_res)));
    }

    push(K::RmsFinal, None, gamma(src.tensor(K::RmsFinal, None)?));
    let logit_unit = 65536.0;
    let out_scales = if p.separate_output {
        let (w, s) = quantize(src.tensor(K::OutputW, None)?, h);
        push(K::OutputW, None, i8_bytes(&w));
        s
    } else {
        emb_s
    };
    push(
        K::OutputRq,
        None,
        rq(out_scales.iter().map(|s| s * norm_in * logit_unit)),
    );
    assemble(&config, tokenizer, &out)
}

/// Converts a Llama-family source; int8 needs calibration sequences (token ids,
/// BOS first).
pub fn convert(
    src: &dyn LlamaSource,
    tokenizer: &[u8],
    precision: Precision,
    max_seq: Option<u32>,
    calibration: Option<&[Vec<u32>]>,
    progress: bool,
) -> Result<Vec<u8>> {
    match precision {
        Precision::F32 => convert_float(src, tokenizer, false, max_seq),
        Precision::F16 => convert_float(src, tokenizer, true, max_seq),
        Precision::Int8 => {
            let sequences = calibration.filter(|c| !c.is_empty()).ok_or_else(|| {
                anyhow!(
                    "--dtype int8 needs --calibration <TEXT_FILE> (real text, one sample per line)"
                )
            })?;
            let float = convert_float(src, tokenizer, false, max_seq)?;
            let ranges = calibrate(&float, sequences, progress)?;
            convert_int8(src, tokenizer, &ranges, max_seq)
        }
    }
}
