//! Checkpoint -> tinyformer model file, in f32, f16 or full-integer int8.

use crate::bert_names;
use crate::checkpoint::{Checkpoint, Tensor};
use crate::gptq::{quantize_rows, Gram};
use crate::le::{f16_bytes, f32_bytes, i32_bytes};
use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::path::Path;
use tinyformer::format::writer::{write_model, AlignedBuf, TensorData};
use tinyformer::format::{scalar, Activation, Arch, Config, DType, Pooling, TensorKind as K};
use tinyformer::model::{Observer, Point};
use tinyformer::quant::{Requant, RESIDUAL_RANGE};
use tinyformer::{Input, Model};

/// Weight precision of the output file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    /// f32 weights (the runtime's own reference).
    F32,
    /// f16 weights, f32 arithmetic.
    F16,
    /// int8 weights and activations, integer-only arithmetic.
    Int8,
}

/// Conversion options.
#[derive(Clone, Debug)]
pub struct Options {
    pub precision: Precision,
    /// Longest sequence the model file accepts (default: the checkpoint's
    /// `max_position_embeddings`, at most 512). Position rows beyond it are dropped.
    pub max_seq: Option<u32>,
    /// Show progress bars.
    pub progress: bool,
    /// int8: error-compensating weight rounding and bias correction from the
    /// calibration inputs' moments (`gptq.rs`). Helps real encoders (MiniLM pooled
    /// cosine 0.988 -> 0.992); slower conversion, more memory.
    pub compensate: bool,
    /// int8: golden cases stored in the file's self-test section (the first this many
    /// calibration sequences with the outputs this runtime computes for them), for
    /// `Model::self_test` on the device; 0 writes no section.
    pub self_test: usize,
}

/// The checkpoint name of a tensor the converter copies or quantizes.
fn hf_name(kind: K, layer: Option<u16>) -> Result<String> {
    bert_names::name(kind, layer).ok_or_else(|| anyhow!("no source for {kind:?}"))
}

/// The format config for a checkpoint.
pub fn format_config(
    ckpt: &Checkpoint,
    weight_dtype: DType,
    max_seq: Option<u32>,
) -> Result<Config> {
    let c = &ckpt.config;
    let max_seq = max_seq.unwrap_or(c.max_position_embeddings.min(512));
    if max_seq < 2 || max_seq > c.max_position_embeddings {
        bail!(
            "--max-seq {max_seq} must be between 2 and the checkpoint's max_position_embeddings ({})",
            c.max_position_embeddings
        );
    }
    Ok(Config {
        arch: Arch::BertEncoder,
        weight_dtype,
        activation: ckpt.activation,
        pooling: ckpt.pooling,
        vocab_size: c.vocab_size,
        hidden: c.hidden_size,
        layers: c.num_hidden_layers,
        heads: c.num_attention_heads,
        ffn: c.intermediate_size,
        // Only the positions the runtime can use are stored.
        max_positions: max_seq,
        type_vocab: c.type_vocab_size,
        num_labels: ckpt.labels.len() as u32,
        max_seq,
        layer_norm_eps_bits: (c.layer_norm_eps as f32).to_bits(),
        decoder: None,
    })
}

/// The first `rows` rows of a 2-D tensor.
fn first_rows(t: &Tensor, rows: usize) -> &[f32] {
    let cols = t.shape.get(1).copied().unwrap_or(1);
    &t.data[..(rows * cols).min(t.data.len())]
}

pub(crate) fn i8_bytes(v: &[i8]) -> Vec<u8> {
    v.iter().map(|&x| x as u8).collect()
}

pub(crate) fn requant_bytes(v: &[Requant]) -> Vec<u8> {
    v.iter()
        .flat_map(|r| [r.multiplier, r.shift])
        .flat_map(|x| x.to_le_bytes())
        .collect()
}

/// Serialises the tokenizer section for a checkpoint's vocabulary and settings.
pub fn tokenizer_section(ckpt: &Checkpoint) -> Result<Vec<u8>> {
    use tinyformer::tokenizer::{TokenizerConfig, BERT_ADDED_TOKENS};
    let vocab: Vec<&str> = ckpt.vocab.iter().map(String::as_str).collect();
    // HF matches the special tokens verbatim in raw text; only those in the vocabulary.
    let added: Vec<&str> = BERT_ADDED_TOKENS
        .iter()
        .copied()
        .filter(|t| vocab.contains(t))
        .collect();
    let settings = TokenizerConfig {
        lowercase: ckpt.tokenizer.lowercase,
        strip_accents: ckpt.tokenizer.strip_accents,
        chinese_chars: ckpt.tokenizer.chinese_chars,
        clean_text: ckpt.tokenizer.clean_text,
        added_tokens: &added,
        ..TokenizerConfig::bert_uncased()
    };
    tinyformer::tokenizer::encode_section(&vocab, &settings)
        .map_err(|e| anyhow!("{}: vocabulary: {e}", ckpt.dir.display()))
}

/// Owned tensor payloads keyed by (kind, layer).
type Payloads = Vec<(K, Option<u16>, Vec<u8>)>;

fn assemble(config: &Config, ckpt: &Checkpoint, payloads: &Payloads) -> Result<Vec<u8>> {
    let tensors = TensorData::borrow_all(payloads);
    let labels: Vec<&str> = ckpt.labels.iter().map(String::as_str).collect();
    let section = tokenizer_section(ckpt)?;
    write_model(config, &section, &labels, &tensors).map_err(|e| anyhow!("writing the model: {e}"))
}

/// Converts to f32 or f16 weights.
pub fn convert_float(ckpt: &Checkpoint, f16: bool, max_seq: Option<u32>) -> Result<Vec<u8>> {
    let dtype = if f16 { DType::F16 } else { DType::F32 };
    let config = format_config(ckpt, dtype, max_seq)?;
    let mut payloads: Payloads = Vec::new();
    let weight_bytes = |v: &[f32]| -> Vec<u8> {
        if f16 {
            f16_bytes(v)
        } else {
            f32_bytes(v)
        }
    };
    for index in 0..tinyformer::format::tensor_count(&config) {
        let Some(spec) = tinyformer::format::tensor_spec(&config, index) else {
            break;
        };
        let bytes = match spec.kind {
            kind if bert_names::is_norm(kind) => {
                let stem = hf_name(kind, spec.layer)?;
                let mut v = ckpt.tensor(&format!("{stem}.weight"))?.data.clone();
                v.extend_from_slice(&ckpt.tensor(&format!("{stem}.bias"))?.data);
                f32_bytes(&v)
            }
            kind => {
                let t = ckpt.tensor(&hf_name(kind, spec.layer)?)?;
                if spec.dtype == DType::F32 && spec.rank == 1 {
                    f32_bytes(&t.data)
                } else {
                    weight_bytes(first_rows(t, spec.dims[0] as usize))
                }
            }
        };
        payloads.push((spec.kind, spec.layer, bytes));
    }
    assemble(&config, ckpt, &payloads)
}

/// Per-channel absolute maxima of every activation point, and the second moments of
/// every dense layer's input, from the float model on real text.
#[derive(Default, Debug, Clone)]
pub struct Ranges {
    absmax: HashMap<(PointKey, usize), Vec<f32>>,
    grams: HashMap<(PointKey, usize), Gram>,
    /// Whether `grams` are collected (for `Options::compensate`).
    second_moments: bool,
}

/// `Point` as a hashable key.
type PointKey = u8;

fn key(p: Point) -> PointKey {
    p as u8
}

impl Observer for Ranges {
    fn observe(&mut self, point: Point, layer: usize, values: &[f32]) {
        let e = self
            .absmax
            .entry((key(point), layer))
            .or_insert_with(|| vec![0.0; values.len()]);
        for (m, v) in e.iter_mut().zip(values) {
            *m = m.max(v.abs());
        }
        if self.second_moments
            && matches!(
                point,
                Point::EmbOut
                    | Point::FfnOut
                    | Point::Context
                    | Point::AttnOut
                    | Point::Act
                    | Point::Pooled
            )
        {
            self.grams
                .entry((key(point), layer))
                .or_insert_with(|| Gram::new(values.len()))
                .add(values);
        }
    }
}

/// The scale of the Q10 fixed-point activation input and output.
pub(crate) const ACT_UNIT: f64 = 1.0 / (1u32 << tinyformer::kernels::gelu::ACT_FRAC_BITS) as f64;

/// Extra bits of the wide grid of per-row scaled activations (see `model/int8.rs`).
const FINE_BITS: u32 = 8;

/// Smallest channel scale relative to the tensor's largest: keeps near-dead channels
/// from producing huge LayerNorm constants.
const MIN_CHANNEL_RATIO: f64 = 1.0 / 1024.0;

/// Per-channel maxima from a finite calibration set are less robust than the tensor
/// maximum; this margin (capped at the tensor maximum) keeps unseen inputs from
/// saturating.
const CHANNEL_HEADROOM: f64 = 1.5;

/// How closely the channel scales of the row-narrowed dense inputs (attention context,
/// FFN activation) follow their channels' ranges: `s[c] = s_max * (s_chan[c] / s_max)^k`
/// with `s_chan` the per-channel scales, from per tensor (`k = 0`) to per channel (1).
///
/// These scales are folded into the weight columns of the next dense layer (attention
/// output, FFN2) before per-row weight quantization (`quantize_dense`): a channel with
/// `r` times less range than the row's largest gets its weight column scaled down `r`
/// times, i.e. a weight step `r` times coarser relative to its own weights. That
/// rounding error is the same for every token, so it does not average out and lands
/// almost whole in a mean-pooled vector. Fully per channel it dominated the int8 error
/// of all-MiniLM-L6-v2 (layer 0's FFN residual sum: relative error 0.92% with the folded
/// FFN2 weights, 0.38% with the weights quantized as they are); per tensor, the small channels lose their
/// activation resolution instead (the row's power-of-two scale is set by its largest
/// channel). `1/4` balances the two: MiniLM pooled cosine min 0.981 -> 0.988, mean
/// 0.9961 -> 0.9976 (51 sentences, rounding to nearest); the fixtures improve or stay
/// level. LayerNorm outputs keep fully per-channel scales (their ranges differ by more
/// than 10x, and less migration measured worse).
const ROW_INPUT_CHANNEL_EXPONENT: f64 = 0.25;

impl Ranges {
    fn get(&self, point: Point, layer: usize) -> f64 {
        let v = self.absmax.get(&(key(point), layer));
        f64::from(v.map_or(0.0, |v| v.iter().fold(0f32, |a, &b| a.max(b)))).max(1e-6)
    }
    /// Per-tensor scale of an int8 activation at `point`.
    fn int8(&self, point: Point, layer: usize) -> f64 {
        self.get(point, layer) / 127.0
    }
    /// Per-channel scales of an int8 activation at `point` (LayerNorm outputs, whose
    /// channels differ in range by more than 10x in real BERT models).
    fn int8_channels(&self, point: Point, layer: usize, channels: usize) -> Vec<f64> {
        let max = self.get(point, layer);
        let v = self.absmax.get(&(key(point), layer));
        (0..channels)
            .map(|c| {
                let m = v.and_then(|v| v.get(c)).map_or(max, |&m| f64::from(m));
                (m * CHANNEL_HEADROOM).min(max).max(max * MIN_CHANNEL_RATIO) / 127.0
            })
            .collect()
    }
    /// Per-channel scales of a row-narrowed dense input at `point` (context, FFN
    /// activation): the per-channel scales pulled toward the tensor scale (see
    /// [`ROW_INPUT_CHANNEL_EXPONENT`]). Never below the per-channel scale, so the wide
    /// grid holds no larger values than with it.
    fn row_input_channels(&self, point: Point, layer: usize, channels: usize) -> Vec<f64> {
        let max = self.int8(point, layer);
        self.int8_channels(point, layer, channels)
            .iter()
            .map(|&s| max * (s / max).powf(ROW_INPUT_CHANNEL_EXPONENT))
            .collect()
    }
    /// Scale of the i32 residual stream at `point`.
    fn residual(&self, point: Point, layer: usize) -> f64 {
        self.get(point, layer) / RESIDUAL_RANGE
    }
    /// The per-channel scales the int8 model uses at `point` (for points inside the
    /// encoder; the pooled vector's depend on the pooling).
    pub fn scales(&self, point: Point, layer: usize, channels: usize) -> Vec<f64> {
        match point {
            Point::EmbSum | Point::AttnSum | Point::FfnSum => {
                vec![self.residual(point, layer); channels]
            }
            Point::EmbOut | Point::AttnOut | Point::FfnOut | Point::Value => {
                self.int8_channels(point, layer, channels)
            }
            // Rows scaled one by one (query, context, activation) are kept on a grid
            // 2^FINE_BITS finer than their int8 scale; each row then gets a
            // power-of-two scale at run time.
            Point::Context | Point::Act => self
                .row_input_channels(point, layer, channels)
                .iter()
                .map(|s| s / f64::from(1u32 << FINE_BITS))
                .collect(),
            Point::Query => vec![self.int8(point, layer) / f64::from(1u32 << FINE_BITS); channels],
            Point::Ffn1 => vec![ACT_UNIT; channels],
            _ => vec![self.int8(point, layer); channels],
        }
    }
    /// Second moments of the inputs of the dense layers that read `point`, if observed.
    pub fn gram(&self, point: Point, layer: usize) -> Option<&Gram> {
        self.grams.get(&(key(point), layer))
    }
    /// Every recorded absolute maximum `(point, layer, max)`, for reports.
    pub fn report(&self) -> Vec<(u8, usize, f32)> {
        let mut v: Vec<_> = self
            .absmax
            .iter()
            .map(|(&(p, l), m)| (p, l, m.iter().fold(0f32, |a, &b| a.max(b))))
            .collect();
        v.sort_by_key(|&(p, l, _)| (l, p));
        v
    }
}

/// Runs the float model over calibration sequences and records activation ranges.
pub fn calibrate(float_model: &[u8], sequences: &[Vec<u32>], progress: bool) -> Result<Ranges> {
    calibrate_with(float_model, sequences, progress, false)
}

/// [`calibrate`], also recording the moments of every dense layer's input if
/// `second_moments` (needed by `Options::compensate`).
pub fn calibrate_with(
    float_model: &[u8],
    sequences: &[Vec<u32>],
    progress: bool,
    second_moments: bool,
) -> Result<Ranges> {
    let buf = AlignedBuf::from_bytes(float_model);
    let model = Model::from_bytes(buf.as_bytes())
        .map_err(|e| anyhow!("float model for calibration: {e}"))?;
    let mut ranges = Ranges {
        second_moments,
        ..Ranges::default()
    };
    let longest = sequences.iter().map(Vec::len).max().unwrap_or(1);
    let mut arena = vec![
        0u32;
        model
            .arena_bytes(longest)
            .map_err(|e| anyhow!("{e}"))?
            .div_ceil(4)
    ];
    let mut out = vec![0f32; model.config().output_len()];
    let bar = progress_bar(progress, sequences.len() as u64, "calibrating");
    for ids in sequences {
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut arena);
        model
            .forward_observed(Input::new(ids), bytes, &mut out, &mut ranges)
            .map_err(|e| anyhow!("calibration forward pass: {e}"))?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(ranges)
}

pub fn progress_bar(enabled: bool, len: u64, message: &'static str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}

/// A dense layer quantized per output channel.
struct QDense {
    w: Vec<i8>,
    b: Vec<i32>,
    rq: Vec<Requant>,
}

pub(crate) fn clamp_i32(x: f64) -> i32 {
    x.round().clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
}

/// `y = W x + b` with per-channel input scales `s_in` and per-output-channel scales
/// `s_out`.
///
/// The input scales are folded into the weight columns (`W'[o][i] = W[o][i] * s_in[i]`)
/// before per-row quantization, so the integer kernel is the same whether the input is
/// quantized per tensor or per channel: `y[o] = s_w'[o] * sum_i Wq[o][i] * q[i]`.
/// With the input's second moments `gram`, rounding compensates errors (`gptq`).
fn quantize_dense(
    w: &Tensor,
    b: &Tensor,
    s_in: &[f64],
    s_out: &[f64],
    gram: Option<&Gram>,
) -> QDense {
    let cols = w.shape.get(1).copied().unwrap_or(1);
    let folded: Vec<f32> = w
        .data
        .iter()
        .enumerate()
        .map(|(i, &v)| (f64::from(v) * s_in[i % cols]) as f32)
        .collect();
    let gram = gram.filter(|g| g.rows() > 0);
    let (wq, s_w) = quantize_rows(&folded, cols, gram.map(|g| (g, s_in)));
    // Bias correction: the rounding error's mean effect, `dW E[x]`, is removed from the bias.
    let mean = gram.map(Gram::mean);
    let b = b
        .data
        .iter()
        .zip(&s_w)
        .enumerate()
        .map(|(o, (&b, &sw))| {
            let shift = mean.as_ref().map_or(0.0, |m| {
                (0..cols)
                    .map(|i| {
                        let k = o * cols + i;
                        (f64::from(wq[k]) * sw - f64::from(folded[k])) / s_in[i] * m[i]
                    })
                    .sum::<f64>()
            });
            clamp_i32((f64::from(b) - shift) / sw)
        })
        .collect();
    let rq = s_w
        .iter()
        .zip(s_out)
        .map(|(&sw, &so)| Requant::from_real(sw / so))
        .collect();
    QDense { w: wq, b, rq }
}

/// `f` sampled for [`tinyformer::kernels::gelu::activation_q10`], computed in f64.
pub(crate) fn function_table(f: impl Fn(f64) -> f64) -> Vec<i32> {
    (0..tinyformer::kernels::gelu::ACT_TABLE_LEN)
        .map(|i| clamp_i32(f(tinyformer::kernels::gelu::act_table_input(i)) / ACT_UNIT))
        .collect()
}

/// The FFN activation's table.
pub(crate) fn activation_table(activation: Activation) -> Vec<i32> {
    function_table(|x| match activation {
        Activation::Gelu => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
        Activation::GeluTanh => {
            0.5 * x
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
        }
        Activation::Relu => x.max(0.0),
        Activation::Silu => x / (1.0 + (-x).exp()),
    })
}

/// `(gamma, beta)` of a LayerNorm to `(gamma_q, beta_q)` for per-channel output
/// scales `s_out`.
fn quantize_norm(
    ckpt: &Checkpoint,
    kind: K,
    layer: Option<u16>,
    s_out: &[f64],
) -> Result<Vec<i32>> {
    let stem = hf_name(kind, layer)?;
    let bits = f64::from(1u32 << tinyformer::kernels::layernorm::PARAM_BITS);
    let q = |name: &str| -> Result<Vec<i32>> {
        let t = ckpt.tensor(&format!("{stem}.{name}"))?;
        Ok(t.data
            .iter()
            .zip(s_out)
            .map(|(&v, s)| clamp_i32(f64::from(v) / s * bits))
            .collect())
    };
    let mut v = q("weight")?;
    v.extend(q("bias")?);
    Ok(v)
}

/// Per-channel `s_in[c] / s_out` requantization table.
fn channel_requant(s_in: &[f64], s_out: f64) -> Vec<u8> {
    requant_bytes(
        &s_in
            .iter()
            .map(|s| Requant::from_real(s / s_out))
            .collect::<Vec<_>>(),
    )
}

/// Converts to a full-integer int8 model, with activation scales from `ranges`.
pub fn convert_int8(ckpt: &Checkpoint, ranges: &Ranges, max_seq: Option<u32>) -> Result<Vec<u8>> {
    let config = format_config(ckpt, DType::I8, max_seq)?;
    let eps = ckpt.config.layer_norm_eps;
    let head_dim = config.head_dim() as f64;
    let mut p: Payloads = Vec::new();
    let hidden = config.hidden as usize;
    let dense = |p: &mut Payloads,
                 w: K,
                 b: K,
                 rq: K,
                 layer: Option<u16>,
                 (s_in, gram): (&[f64], Option<&Gram>),
                 s_out: &[f64]|
     -> Result<()> {
        let wt = ckpt.tensor(&hf_name(w, layer)?)?;
        let bt = ckpt.tensor(&hf_name(b, layer)?)?;
        let q = quantize_dense(wt, bt, s_in, s_out, gram);
        p.push((w, layer, i8_bytes(&q.w)));
        p.push((b, layer, i32_bytes(&q.b)));
        p.push((rq, layer, requant_bytes(&q.rq)));
        Ok(())
    };
    let eps_units = |s_r: f64| clamp_i32(eps / (s_r * s_r)).max(0);

    // Embeddings: per-row int8 tables, each row requantized into the residual scale.
    let s_emb = ranges.residual(Point::EmbSum, 0);
    for (table, rq, rows) in [
        (K::WordEmb, K::WordRq, config.vocab_size),
        (K::PosEmb, K::PosRq, config.max_positions),
        (K::TypeEmb, K::TypeRq, config.type_vocab),
    ] {
        let t = ckpt.tensor(&hf_name(table, None)?)?;
        let (q, scales) = quantize_rows(first_rows(t, rows as usize), hidden, None);
        p.push((table, None, i8_bytes(&q)));
        p.push((
            rq,
            None,
            requant_bytes(
                &scales
                    .iter()
                    .map(|s| Requant::from_real(s / s_emb))
                    .collect::<Vec<_>>(),
            ),
        ));
    }
    // LayerNorm outputs (`x`, `h`) are quantized per channel.
    let mut s_x = ranges.int8_channels(Point::EmbOut, 0, hidden);
    let mut x_gram = ranges.gram(Point::EmbOut, 0);
    p.push((
        K::EmbNorm,
        None,
        i32_bytes(&quantize_norm(ckpt, K::EmbNorm, None, &s_x)?),
    ));
    p.push((
        K::ActTable,
        None,
        i32_bytes(&activation_table(ckpt.activation)),
    ));
    let mut emb_scalars = [0i32; 8];
    emb_scalars[scalar::EMB_EPS] = eps_units(s_emb);
    p.push((K::EmbScalars, None, i32_bytes(&emb_scalars)));

    for layer in 0..config.layers as usize {
        let l = Some(layer as u16);
        let (h, f) = (hidden, config.ffn as usize);
        let s_q = ranges.scales(Point::Query, layer, 1)[0];
        let s_k = ranges.int8(Point::Key, layer);
        let s_v = ranges.scales(Point::Value, layer, h);
        let s_ctx = ranges.scales(Point::Context, layer, h);
        let s_r1 = ranges.residual(Point::AttnSum, layer);
        let s_h = ranges.scales(Point::AttnOut, layer, h);
        let s_g = ranges.scales(Point::Act, layer, f);
        let s_r2 = ranges.residual(Point::FfnSum, layer);
        let s_next = ranges.scales(Point::FfnOut, layer, h);

        dense(
            &mut p,
            K::QueryW,
            K::QueryB,
            K::QueryRq,
            l,
            (&s_x, x_gram),
            &vec![s_q; h],
        )?;
        let x_in = (&s_x[..], x_gram);
        dense(&mut p, K::KeyW, K::KeyB, K::KeyRq, l, x_in, &vec![s_k; h])?;
        dense(&mut p, K::ValueW, K::ValueB, K::ValueRq, l, x_in, &s_v)?;
        let ctx_rq: Vec<Requant> = s_v
            .iter()
            .zip(&s_ctx)
            .map(|(v, c)| Requant::from_real(v / (32768.0 * c)))
            .collect();
        p.push((K::CtxRq, l, requant_bytes(&ctx_rq)));
        dense(
            &mut p,
            K::AttnOutW,
            K::AttnOutB,
            K::AttnOutRq,
            l,
            (&s_ctx, ranges.gram(Point::Context, layer)),
            &vec![s_r1; h],
        )?;
        p.push((K::AttnSkipRq, l, channel_requant(&s_x, s_r1)));
        p.push((
            K::AttnNorm,
            l,
            i32_bytes(&quantize_norm(ckpt, K::AttnNorm, l, &s_h)?),
        ));
        // FFN1 writes Q10 fixed point; the activation table keeps it there; then
        // per-channel requantization to int8.
        dense(
            &mut p,
            K::Ffn1W,
            K::Ffn1B,
            K::Ffn1Rq,
            l,
            (&s_h, ranges.gram(Point::AttnOut, layer)),
            &vec![ACT_UNIT; f],
        )?;
        let act_rq: Vec<Requant> = s_g
            .iter()
            .map(|g| Requant::from_real(ACT_UNIT / g))
            .collect();
        p.push((K::ActRq, l, requant_bytes(&act_rq)));
        dense(
            &mut p,
            K::Ffn2W,
            K::Ffn2B,
            K::Ffn2Rq,
            l,
            (&s_g, ranges.gram(Point::Act, layer)),
            &vec![s_r2; h],
        )?;
        p.push((K::FfnSkipRq, l, channel_requant(&s_h, s_r2)));
        p.push((
            K::FfnNorm,
            l,
            i32_bytes(&quantize_norm(ckpt, K::FfnNorm, l, &s_next)?),
        ));

        let mut s = [0i32; 16];
        let mut put = |at: usize, r: Requant| {
            s[at] = r.multiplier;
            s[at + 1] = r.shift;
        };
        put(
            scalar::SCORE_TO_LOG2,
            Requant::from_real(s_q * s_k / head_dim.sqrt() * std::f64::consts::LOG2_E * 65536.0),
        );
        s[scalar::ATTN_EPS] = eps_units(s_r1);
        s[scalar::FFN_EPS] = eps_units(s_r2);
        p.push((K::LayerScalars, l, i32_bytes(&s)));
        s_x = s_next;
        x_gram = ranges.gram(Point::FfnOut, layer);
    }

    // Pooling and head. `s_pooled` are the channel scales of the pooled int8 vector.
    let s_pooled = if config.pooling == Pooling::ClsPooler {
        // Dense into Q10, tanh by table, per-channel requantization to int8.
        let s_tanh = ranges.int8_channels(Point::Pooled, 0, hidden);
        dense(
            &mut p,
            K::PoolerW,
            K::PoolerB,
            K::PoolerRq,
            None,
            (&s_x, None),
            &vec![ACT_UNIT; hidden],
        )?;
        p.push((K::TanhTable, None, i32_bytes(&function_table(f64::tanh))));
        let tanh_rq: Vec<Requant> = s_tanh
            .iter()
            .map(|s| Requant::from_real(ACT_UNIT / s))
            .collect();
        p.push((K::TanhRq, None, requant_bytes(&tanh_rq)));
        s_tanh
    } else {
        s_x
    };
    let q16 = f64::from(1u32 << tinyformer::model::OUTPUT_FRAC_BITS);
    if config.num_labels > 0 {
        dense(
            &mut p,
            K::ClassW,
            K::ClassB,
            K::ClassRq,
            None,
            (&s_pooled, None),
            &vec![1.0 / q16; config.num_labels as usize],
        )?;
    } else {
        p.push((K::PooledRq, None, channel_requant(&s_pooled, 1.0 / q16)));
    }

    assemble(&config, ckpt, &p)
}

/// Converts a checkpoint directory. int8 needs calibration sequences.
pub fn convert(
    ckpt: &Checkpoint,
    options: &Options,
    calibration: Option<&[Vec<u32>]>,
) -> Result<Vec<u8>> {
    match options.precision {
        Precision::F32 => convert_float(ckpt, false, options.max_seq),
        Precision::F16 => convert_float(ckpt, true, options.max_seq),
        Precision::Int8 => {
            let sequences = calibration.filter(|c| !c.is_empty()).ok_or_else(|| {
                anyhow!(
                    "--dtype int8 needs --calibration <TEXT_FILE> (real text, one sample per line)"
                )
            })?;
            let float = convert_float(ckpt, false, options.max_seq)?;
            let ranges = calibrate_with(&float, sequences, options.progress, options.compensate)?;
            let bytes = convert_int8(ckpt, &ranges, options.max_seq)?;
            let golden = &sequences[..options.self_test.min(sequences.len())];
            if golden.is_empty() {
                Ok(bytes)
            } else {
                add_self_test(&bytes, golden)
            }
        }
    }
}

/// Adds a self-test section to the int8 encoder file `bytes` (which has none): each
/// sequence (truncated to the model's `max_seq`) with the exact Q16.16 output
/// `Model::forward_fixed` computes for it here. The host runs the same integer code
/// as a device, so a device that computes anything else is broken (see
/// `Model::self_test`). Tensor payloads move; every other byte is unchanged.
pub fn add_self_test(bytes: &[u8], sequences: &[Vec<u32>]) -> Result<Vec<u8>> {
    let buf = AlignedBuf::from_bytes(bytes);
    let model = Model::from_bytes(buf.as_bytes()).map_err(|e| anyhow!("self-test: {e}"))?;
    let max_seq = model.config().max_seq as usize;
    let output_len = model.config().output_len();
    let mut cases = Vec::with_capacity(sequences.len());
    for ids in sequences {
        let ids = &ids[..ids.len().min(max_seq)];
        let mut arena = vec![0u128; model.arena_bytes(ids.len())?.div_ceil(16)];
        let mut out = vec![0i32; output_len];
        model
            .forward_fixed(
                Input::new(ids),
                bytemuck::cast_slice_mut(&mut arena),
                &mut out,
            )
            .map_err(|e| anyhow!("self-test case {}: {e}", cases.len()))?;
        cases.push((ids, out));
    }
    let cases: Vec<(&[u32], &[i32])> = cases.iter().map(|(i, o)| (*i, o.as_slice())).collect();
    let section = tinyformer::format::self_test::encode_section(output_len, &cases);
    tinyformer::format::writer::with_self_test(bytes, &section)
        .map_err(|e| anyhow!("adding the self-test section: {e}"))
}

/// Writes `bytes` to `path` atomically (temporary file in the same directory, then
/// rename), refusing to overwrite any of `inputs`.
pub fn write_atomically(path: &Path, bytes: &[u8], inputs: &[std::path::PathBuf]) -> Result<()> {
    write_atomically_with(path, inputs, |out| std::io::Write::write_all(out, bytes))
}

/// [`write_atomically`] with the payload produced by `write` (tests inject write
/// failures through it). Until the final rename nothing exists under `path`'s name:
/// the data goes to `.<name>.<random>.partial` in the same directory, is synced, then
/// renamed over `path`. On any error the temporary file is removed and `path` is left
/// as it was (absent, or the previous complete file); a process killed mid-write
/// leaves at most a `.partial` file beside it.
pub fn write_atomically_with(
    path: &Path,
    inputs: &[std::path::PathBuf],
    write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    if path.exists() {
        let target = path
            .canonicalize()
            .with_context(|| format!("{}: cannot resolve", path.display()))?;
        for input in inputs {
            if input.canonicalize().ok().as_deref() == Some(target.as_path()) {
                bail!(
                    "{}: refusing to overwrite an input file of the conversion",
                    path.display()
                );
            }
        }
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".partial")
        .tempfile_in(&dir)
        .with_context(|| {
            format!(
                "{}: cannot create a temporary file in {} (is the directory writable?)",
                path.display(),
                dir.display()
            )
        })?;
    write(tmp.as_file_mut())
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("{}: write failed (disk full?)", path.display()))?;
    tmp.persist(path).map_err(|e| {
        anyhow!(
            "{}: cannot rename the temporary file into place: {}",
            path.display(),
            e.error
        )
    })?;
    Ok(())
}

/// `--dtype` defaults to int8, which is what a microcontroller wants but needs
/// calibration text to set the activation scales. Without `--calibration` the default
/// is refused with what to add (rather than quietly writing a float file four times
/// the size): the user chooses between calibrating and a float dtype. A calibration
/// file with a float dtype is unused, and said so.
pub fn convert_dtype(dtype: Option<Precision>, calibration: Option<&Path>) -> Result<Precision> {
    match (dtype, calibration) {
        (None | Some(Precision::Int8), None) => bail!(
            "{} needs calibration text to set the activation scales: add `--calibration FILE` \
             (real text like the model's inputs, one sample per line), or convert to float \
             weights with `--dtype f16` (or `--dtype f32`)",
            if dtype.is_none() {
                "int8, the default --dtype,"
            } else {
                "--dtype int8"
            }
        ),
        (Some(float), Some(path)) if float != Precision::Int8 => {
            eprintln!(
                "warning: --calibration {} is unused: only int8 is calibrated",
                path.display()
            );
            Ok(float)
        }
        (dtype, _) => Ok(dtype.unwrap_or(Precision::Int8)),
    }
}

/// `convert` for a Hugging Face BERT directory: reads and checks the checkpoint,
/// tokenizes the calibration text (int8), converts and writes atomically, then
/// re-validates the output.
pub fn cmd_convert(
    dir: &Path,
    output: &Path,
    precision: Precision,
    calibration: Option<&Path>,
    max_seq: Option<u32>,
    compensate: bool,
    self_test: usize,
) -> Result<()> {
    let ckpt = Checkpoint::load(dir)?;
    for w in &ckpt.warnings {
        eprintln!("warning: {}: {w}", dir.display());
    }
    let options = Options {
        precision,
        max_seq,
        progress: true,
        compensate,
        self_test,
    };
    let sequences = match calibration {
        Some(path) => Some(calibration_sequences(&ckpt, path, max_seq)?),
        None => None,
    };
    let bytes = convert(&ckpt, &options, sequences.as_deref())?;
    write_checked(output, &bytes, &ckpt.inputs, precision)
}

/// Writes a converted model to `output` atomically (refusing to overwrite one of
/// `inputs`), re-opens and validates what was written as the model it holds, and
/// says so on stderr.
pub fn write_checked(
    output: &Path,
    bytes: &[u8],
    inputs: &[std::path::PathBuf],
    precision: Precision,
) -> Result<()> {
    write_atomically(output, bytes, inputs)?;
    let written = crate::run::ModelBytes::open(output)?;
    let tensors = if written.is_decoder()? {
        written.decoder()?.file().tensor_count()
    } else {
        written.model()?.file().tensor_count()
    };
    eprintln!(
        "wrote {} ({} bytes, {precision:?}, {tensors} tensors, checksum ok)",
        output.display(),
        bytes.len(),
    );
    Ok(())
}

/// Tokenizes the calibration text with the tokenizer the model file will carry.
pub fn calibration_sequences(
    ckpt: &Checkpoint,
    path: &Path,
    max_seq: Option<u32>,
) -> Result<Vec<Vec<u32>>> {
    let lines = crate::run::read_lines(path)?;
    // A float model file gives the exact tokenizer the converted file will use.
    let float = convert_float(ckpt, false, max_seq)?;
    let buf = tinyformer::format::writer::AlignedBuf::from_bytes(&float);
    let model = tinyformer::Model::from_bytes(buf.as_bytes()).map_err(|e| anyhow!("{e}"))?;
    let mut out = Vec::new();
    // Calibration sets the scales of every file written from it: a bad line stops.
    for (n, line) in lines.into_iter().enumerate() {
        let line = line.map_err(|e| anyhow!("{}: line {}: {e}", path.display(), n + 1))?;
        if !line.trim().is_empty() {
            out.push(crate::run::tokenize(&model, &line)?.ids);
        }
    }
    if out.is_empty() {
        bail!("{}: no non-empty lines to calibrate on", path.display());
    }
    Ok(out)
}
