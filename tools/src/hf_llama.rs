//! Reading a Hugging Face `LlamaForCausalLM` directory (`config.json`,
//! `model.safetensors`, `tokenizer.json`) as a decoder source ([`LlamaSource`]) and a
//! tokenizer section: SentencePiece for a Llama-2-style `tokenizer.json`, byte-level BPE
//! for a GPT-2-style one (GPT-2, SmolLM2).
//!
//! # Weights
//!
//! `config.json` gives the hyperparameters ([`HfLlama::from_dir`] lists the fields and
//! what is refused). `model.safetensors` (one file; sharded checkpoints are refused) is
//! memory-mapped and holds, in F32, F16 or BF16, each matrix in PyTorch's
//! `nn.Linear` layout `[out_features, in_features]` row-major, which is the runtime's
//! layout too:
//!
//! | Hugging Face name | shape | tinyformer kind |
//! |---|---|---|
//! | `model.embed_tokens.weight` | `[vocab, hidden]` | `WordEmb` |
//! | `model.layers.N.input_layernorm.weight` | `[hidden]` | `RmsAttn` |
//! | `model.layers.N.self_attn.q_proj.weight` | `[heads * d, hidden]` | `QueryW` (rows un-permuted) |
//! | `model.layers.N.self_attn.k_proj.weight` | `[kv_heads * d, hidden]` | `KeyW` (rows un-permuted) |
//! | `model.layers.N.self_attn.v_proj.weight` | `[kv_heads * d, hidden]` | `ValueW` |
//! | `model.layers.N.self_attn.o_proj.weight` | `[hidden, heads * d]` | `AttnOutW` |
//! | `model.layers.N.post_attention_layernorm.weight` | `[hidden]` | `RmsFfn` |
//! | `model.layers.N.mlp.gate_proj.weight` | `[intermediate, hidden]` | `GateW` |
//! | `model.layers.N.mlp.up_proj.weight` | `[intermediate, hidden]` | `UpW` |
//! | `model.layers.N.mlp.down_proj.weight` | `[hidden, intermediate]` | `DownW` |
//! | `model.norm.weight` | `[hidden]` | `RmsFinal` |
//! | `lm_head.weight` | `[vocab, hidden]` | `OutputW`; absent when tied (`WordEmb` serves) |
//!
//! with `d = hidden / heads`. Every tensor's shape is checked against the config and
//! every value must be finite; a missing tensor, and any tensor not in the table (a bias,
//! a layer the config does not have), is an error naming the tensor and the file. Old
//! checkpoints' `rotary_emb.inv_freq` buffers (derived from `rope_theta`) are skipped,
//! and so is an `lm_head.weight` stored beside tied embeddings (the model ignores it).
//! Memory: the weights as `f32` (4 bytes per parameter), plus the mapping.
//!
//! # The RoPE permutation
//!
//! The runtime (like Meta's checkpoints, llama2.c and GGUF) rotates *adjacent pairs*:
//! within each head, query/key elements `2i` and `2i + 1` are rotated together by angle
//! `pos * theta^(-2i/d)`. Hugging Face's Llama rotates *halves* (`rotate_half`): element
//! `i` with element `d/2 + i`. Its `convert_llama_weights_to_hf.py` makes the two agree
//! by permuting the rows of `q_proj` and `k_proj` within each head: with `p` in {0, 1}
//! and `i < d/2`,
//!
//! ```text
//! hf_row[h * d + p * d/2 + i] = meta_row[h * d + 2i + p]
//! ```
//!
//! i.e. the even rows of the head first, then the odd ones. This reader inverts it,
//! `meta_row[h * d + 2i + p] = hf_row[h * d + p * d/2 + i]`, for the `heads` heads of
//! `q_proj` and the `kv_heads` heads of `k_proj`. Nothing else is permuted: the
//! attention scores are dot products of query and key within a head, which the same
//! permutation on both leaves unchanged, and `v_proj`/`o_proj` never see it.
//!
//! # Tokenizer
//!
//! A `tokenizer.json` with a `ByteLevel` pre-tokenizer, decoder or post-processor is a
//! GPT-2-style byte-level BPE (SmolLM2's, GPT-2's): [`tokenizer_section`] writes it as
//! the byte-level BPE section (`tinyformer::tokenizer::bytebpe`) with the same
//! `bytebpe::encode_section` the GGUF reader uses for a `gpt2` vocabulary, so the same
//! vocabulary from either file gives the same section byte for byte. Token strings are
//! in GPT-2's byte-to-unicode alphabet; merges are `"left right"` strings or
//! `["left", "right"]` pairs, by rank; every `added_tokens` entry is matched verbatim
//! in the text, as `tokenizers` matches it. The split before BPE must be one the
//! runtime has: GPT-2's `ByteLevel(add_prefix_space=false, use_regex=true)`, or
//! SmolLM2's `Sequence([Digits(individual_digits=true), ByteLevel(...)])`; anything
//! else (a `Split` regex as Llama 3's or Qwen's, a normalizer, a post-processor adding
//! BOS, added tokens with `lstrip`/`rstrip`/`single_word`) is refused by name. BOS/EOS
//! are `config.json`'s `bos_token_id`/`eos_token_id`; no BOS is added.
//!
//! Otherwise [`tokenizer_section`] reads a Llama-2-style `tokenizer.json` (byte-fallback
//! BPE over text whose spaces are `▁`, U+2581, with a dummy-prefix `▁`) into the
//! SentencePiece section the runtime's llama2.c-style encoder reads
//! (`tinyformer::tokenizer::sentencepiece`). That encoder merges, at each step, the
//! adjacent pair whose concatenation is the piece of the highest score, leftmost on
//! ties, and only pieces scoring above llama2.c's `-1e10`; Hugging Face merges the
//! listed pair of the lowest rank, leftmost on ties. Scores therefore follow the merge
//! list: the pieces that merges make, in the order of the first merge making each, get
//! the scores `0, -1, -2, ...` (the `k`-th such piece `-k`, exact in `f32`), so a lower
//! rank is a higher score; every other piece (single characters, the `<0xNN>` byte
//! pieces, specials) gets `f32::MIN`, below the threshold, so the encoder never merges
//! into it, as Hugging Face never does. Both start from the same sequence: one token
//! per character, or its `<0xNN>` byte pieces when the character is not a piece. This
//! reproduces Hugging Face's ids when the merge list is the one a SentencePiece
//! vocabulary implies, and [`tokenizer_section`] checks that it is: every merge makes
//! a vocabulary piece, the merges making one piece are consecutive in the list (so
//! comparing pieces compares ranks), and every split of a made piece
//! into two vocabulary pieces is a listed merge. One difference remains: when one piece
//! can be made by two different pairs at two places of the text at once, Hugging Face
//! merges the pair listed first and the runtime the leftmost pair (as SentencePiece
//! itself does). Pieces are stored with `▁` written as a space, llama2.c's convention
//! (so input text containing `▁` itself is encoded by byte fallback on the device), and
//! Hugging Face's matching of added tokens in the text (a literal `<s>`) has no
//! counterpart: the runtime encodes such text as ordinary characters.

use crate::decoder::{LlamaParams, LlamaSource};
use anyhow::{anyhow, bail, Context, Result};
use half::{bf16, f16};
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;
use tinyformer::format::limits::{
    MAX_FFN, MAX_HEAD_DIM, MAX_HIDDEN, MAX_LAYERS, MAX_POSITIONS, MAX_VOCAB,
};
use tinyformer::format::TensorKind as K;
use tinyformer::tokenizer::bytebpe::{encode_section as bpe_section, ByteBpeConfig, PreTokenizer};
use tinyformer::tokenizer::sentencepiece::{encode_section, SentencePieceConfig};

/// The per-layer tensors: the runtime's kind and the name after `model.layers.N.`.
const LAYER_TENSORS: [(K, &str); 9] = [
    (K::RmsAttn, "input_layernorm.weight"),
    (K::QueryW, "self_attn.q_proj.weight"),
    (K::KeyW, "self_attn.k_proj.weight"),
    (K::ValueW, "self_attn.v_proj.weight"),
    (K::AttnOutW, "self_attn.o_proj.weight"),
    (K::RmsFfn, "post_attention_layernorm.weight"),
    (K::GateW, "mlp.gate_proj.weight"),
    (K::UpW, "mlp.up_proj.weight"),
    (K::DownW, "mlp.down_proj.weight"),
];

/// Score of pieces no merge makes: below llama2.c's `-1e10` threshold, so the runtime's
/// encoder never merges into them.
const NOT_MERGED: f32 = f32::MIN;

/// `eos_token_id`: one id or a list (the first is taken).
#[derive(Deserialize)]
#[serde(untagged)]
enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

/// The fields of `config.json` this reader uses (`LlamaConfig`'s names).
#[derive(Deserialize)]
struct HfConfig {
    #[serde(default)]
    architectures: Vec<String>,
    vocab_size: u32,
    hidden_size: u32,
    intermediate_size: u32,
    num_hidden_layers: u32,
    num_attention_heads: u32,
    num_key_value_heads: Option<u32>,
    head_dim: Option<u32>,
    max_position_embeddings: u32,
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    /// Newer `transformers` move `rope_theta` here (with `rope_type`).
    rope_parameters: Option<Value>,
    rope_scaling: Option<Value>,
    hidden_act: Option<String>,
    bos_token_id: u32,
    eos_token_id: TokenIds,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
}

/// Whether `dir/config.json` names `LlamaForCausalLM` among its `architectures`: the
/// `convert` command's choice between this reader and the BERT one. An unreadable or
/// invalid config is `false`, left to the BERT reader to report.
pub fn is_llama_dir(dir: &Path) -> bool {
    let Ok(text) = fs::read_to_string(dir.join("config.json")) else {
        return false;
    };
    let Ok(json) = serde_json::from_str::<Value>(&text) else {
        return false;
    };
    json["architectures"]
        .as_array()
        .is_some_and(|a| a.iter().any(|v| v == "LlamaForCausalLM"))
}

/// Reads and checks `dir/config.json`; errors name the file and the field.
fn read_config(dir: &Path) -> Result<LlamaParams> {
    let path = dir.join("config.json");
    let text =
        fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let c: HfConfig =
        serde_json::from_str(&text).with_context(|| format!("{}: invalid", path.display()))?;
    params_from(&c).with_context(|| path.display().to_string())
}

fn params_from(c: &HfConfig) -> Result<LlamaParams> {
    if !c.architectures.iter().any(|a| a == "LlamaForCausalLM") {
        bail!(
            "`architectures` is {:?}, not LlamaForCausalLM (the only architecture read)",
            c.architectures
        );
    }
    // serde reads `null` as `None`.
    if let Some(scaling) = &c.rope_scaling {
        bail!("`rope_scaling` is {scaling}: scaled RoPE is not supported (only null)");
    }
    let act = c.hidden_act.as_deref().unwrap_or("silu");
    if act != "silu" {
        bail!("`hidden_act` is {act:?}: only \"silu\" (SwiGLU) is supported");
    }
    if c.attention_bias || c.mlp_bias {
        bail!("`attention_bias`/`mlp_bias` are set: biases are not supported");
    }
    let in_range = |field: &str, value: u32, min: u32, max: u32| {
        if (min..=max).contains(&value) {
            Ok(value)
        } else {
            Err(anyhow!("`{field}` is {value}, outside {min}..={max}"))
        }
    };
    let vocab = in_range("vocab_size", c.vocab_size, 1, MAX_VOCAB)?;
    let hidden = in_range("hidden_size", c.hidden_size, 1, MAX_HIDDEN)?;
    let ffn = in_range("intermediate_size", c.intermediate_size, 1, MAX_FFN)?;
    let layers = in_range("num_hidden_layers", c.num_hidden_layers, 1, MAX_LAYERS)?;
    let heads = in_range("num_attention_heads", c.num_attention_heads, 1, hidden)?;
    let kv_heads = in_range(
        "num_key_value_heads",
        c.num_key_value_heads.unwrap_or(heads),
        1,
        heads,
    )?;
    let max_positions = in_range(
        "max_position_embeddings",
        c.max_position_embeddings,
        2,
        MAX_POSITIONS,
    )?;
    if !hidden.is_multiple_of(heads) || !heads.is_multiple_of(kv_heads) {
        bail!(
            "`num_attention_heads` ({heads}) must divide `hidden_size` ({hidden}) and \
             `num_key_value_heads` ({kv_heads}) must divide it"
        );
    }
    let head_dim = hidden / heads;
    if c.head_dim.is_some_and(|d| d != head_dim) {
        bail!(
            "`head_dim` is {:?}, not hidden_size / num_attention_heads = {head_dim} \
             (not supported)",
            c.head_dim
        );
    }
    in_range("head dimension", head_dim, 2, MAX_HEAD_DIM)?;
    if !head_dim.is_multiple_of(2) {
        bail!("head dimension {head_dim} is odd: RoPE rotates pairs");
    }
    let rope_theta = match (&c.rope_parameters, c.rope_theta) {
        (Some(p), _) => {
            let kind = p
                .get("rope_type")
                .and_then(Value::as_str)
                .unwrap_or("default");
            if kind != "default" {
                bail!(
                    "`rope_parameters.rope_type` is {kind:?}: only \"default\" RoPE is supported"
                );
            }
            p.get("rope_theta")
                .and_then(Value::as_f64)
                .ok_or_else(|| anyhow!("`rope_parameters` has no numeric `rope_theta`"))?
        }
        (_, theta) => theta.unwrap_or(10000.0),
    };
    if !(rope_theta.is_finite() && rope_theta > 1.0) {
        bail!("`rope_theta` is {rope_theta}, not a finite number above 1");
    }
    if !(c.rms_norm_eps.is_finite() && c.rms_norm_eps > 0.0) {
        bail!(
            "`rms_norm_eps` is {}, not a positive number",
            c.rms_norm_eps
        );
    }
    let eos = match &c.eos_token_id {
        TokenIds::One(id) => *id,
        TokenIds::Many(ids) => *ids
            .first()
            .ok_or_else(|| anyhow!("`eos_token_id` is an empty list"))?,
    };
    for (field, id) in [("bos_token_id", c.bos_token_id), ("eos_token_id", eos)] {
        if id >= vocab {
            bail!("`{field}` is {id}, not below `vocab_size` {vocab}");
        }
    }
    Ok(LlamaParams {
        vocab,
        hidden,
        ffn,
        layers,
        heads,
        kv_heads,
        max_positions,
        rope_theta: rope_theta as f32,
        rms_eps: c.rms_norm_eps as f32,
        bos: c.bos_token_id,
        eos,
        separate_output: !c.tie_word_embeddings,
    })
}

/// A Hugging Face `LlamaForCausalLM` checkpoint: the checked config and every weight as
/// `f32` in the runtime's layout (query/key rows un-permuted, see the module docs).
#[derive(Clone, Debug)]
pub struct HfLlama {
    params: LlamaParams,
    embed: Vec<f32>,
    norm: Vec<f32>,
    /// `lm_head.weight`, when not tied.
    lm_head: Option<Vec<f32>>,
    /// Per layer, the tensors in [`LAYER_TENSORS`] order.
    layers: Vec<Vec<Vec<f32>>>,
}

impl HfLlama {
    /// Reads `dir/config.json` and `dir/model.safetensors`.
    ///
    /// `config.json`: `architectures` must list `LlamaForCausalLM`; `vocab_size`,
    /// `hidden_size`, `intermediate_size`, `num_hidden_layers`, `num_attention_heads`,
    /// `max_position_embeddings`, `rms_norm_eps`, `bos_token_id` and `eos_token_id` (an
    /// id or a list, the first taken) are required; `num_key_value_heads` defaults to
    /// the heads, `rope_theta` to 10000 (or `rope_parameters.rope_theta`),
    /// `tie_word_embeddings` to false, as in `LlamaConfig`. Refused: `rope_scaling` other
    /// than null, a `rope_type` other than default, `hidden_act` other than `silu`,
    /// biases, a `head_dim` other than `hidden_size / num_attention_heads`, and sizes
    /// beyond the runtime's format limits. Errors name the file and the field or tensor.
    pub fn from_dir(dir: &Path) -> Result<HfLlama> {
        let params = read_config(dir)?;
        let path = dir.join("model.safetensors");
        if !path.exists() && dir.join("model.safetensors.index.json").exists() {
            bail!(
                "{}: sharded checkpoints (model.safetensors.index.json) are not supported; \
                 merge the shards into one model.safetensors",
                dir.display()
            );
        }
        let file =
            fs::File::open(&path).with_context(|| format!("{}: cannot open", path.display()))?;
        // SAFETY: the mapping is read-only and dropped at the end of this function (the
        // tensors are copied out as f32); a concurrent writer truncating the file could
        // fault the process, the documented limit of memory-mapped input.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .with_context(|| format!("{}: cannot map", path.display()))?;
        let st = SafeTensors::deserialize(&map)
            .map_err(|e| anyhow!("{}: invalid safetensors: {e}", path.display()))?;
        Reader {
            st: &st,
            path: &path,
            seen: HashSet::new(),
        }
        .read(params)
    }
}

/// Copies tensors out of the safetensors file, remembering which were read.
struct Reader<'a, 'd> {
    st: &'a SafeTensors<'d>,
    path: &'a Path,
    seen: HashSet<String>,
}

impl Reader<'_, '_> {
    fn read(mut self, params: LlamaParams) -> Result<HfLlama> {
        let p = &params;
        let (vocab, hidden, ffn) = (p.vocab as usize, p.hidden as usize, p.ffn as usize);
        let d = hidden / p.heads as usize;
        let (q_rows, kv_rows) = (hidden, p.kv_heads as usize * d);
        let embed = self.tensor("model.embed_tokens.weight", &[vocab, hidden])?;
        let norm = self.tensor("model.norm.weight", &[hidden])?;
        let lm_head = if p.separate_output {
            Some(self.tensor("lm_head.weight", &[vocab, hidden])?)
        } else {
            None
        };
        let mut layers = Vec::with_capacity(p.layers as usize);
        for l in 0..p.layers {
            let mut tensors = Vec::with_capacity(LAYER_TENSORS.len());
            for (kind, suffix) in LAYER_TENSORS {
                let shape: &[usize] = match kind {
                    K::RmsAttn | K::RmsFfn => &[hidden],
                    K::QueryW => &[q_rows, hidden],
                    K::KeyW | K::ValueW => &[kv_rows, hidden],
                    K::AttnOutW => &[hidden, q_rows],
                    K::GateW | K::UpW => &[ffn, hidden],
                    _ => &[hidden, ffn], // DownW
                };
                let t = self.tensor(&format!("model.layers.{l}.{suffix}"), shape)?;
                tensors.push(match kind {
                    K::QueryW => from_half_split(&t, p.heads as usize, hidden),
                    K::KeyW => from_half_split(&t, p.kv_heads as usize, hidden),
                    _ => t,
                });
            }
            layers.push(tensors);
        }
        // Everything else must be a buffer the model derives or ignores; anything else
        // (biases, extra layers) would be silently dropped.
        let mut names: Vec<&str> = self.st.names().into_iter().map(String::as_str).collect();
        names.sort_unstable();
        for name in names {
            let ignored = name.ends_with(".rotary_emb.inv_freq")
                || (name == "lm_head.weight" && !p.separate_output);
            if !self.seen.contains(name) && !ignored {
                bail!(
                    "{}: unexpected tensor `{name}` (not part of a LlamaForCausalLM with \
                     this config.json)",
                    self.path.display()
                );
            }
        }
        Ok(HfLlama {
            params,
            embed,
            norm,
            lm_head,
            layers,
        })
    }

    /// Tensor `name` as f32, checked to have `shape` and finite values.
    fn tensor(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let file = self.path.display();
        let view = self
            .st
            .tensor(name)
            .map_err(|_| anyhow!("{file}: missing tensor `{name}`"))?;
        if view.shape() != shape {
            bail!(
                "{file}: tensor `{name}` has shape {:?}, config.json implies {shape:?}",
                view.shape()
            );
        }
        let bytes = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => bail!("{file}: tensor `{name}` has dtype {other:?}, not F32, F16 or BF16"),
        };
        if let Some(at) = values.iter().position(|x| !x.is_finite()) {
            bail!(
                "{file}: tensor `{name}` has a non-finite value {} at element {at}",
                values[at]
            );
        }
        self.seen.insert(name.to_string());
        Ok(values)
    }
}

/// Hugging Face's half-split query/key rows back to the adjacent-pair order, per head:
/// `out[h*d + 2i + p] = w[h*d + p*d/2 + i]` (see the module docs). `w` holds `heads`
/// heads of `d` rows of `cols`, its shape checked by the caller.
fn from_half_split(w: &[f32], heads: usize, cols: usize) -> Vec<f32> {
    let d = w.len() / (heads * cols);
    let half = d / 2;
    let mut out = vec![0.0; w.len()];
    for h in 0..heads {
        for i in 0..half {
            for p in 0..2 {
                let (src, dst) = (h * d + p * half + i, h * d + 2 * i + p);
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

impl LlamaSource for HfLlama {
    fn params(&self) -> LlamaParams {
        self.params
    }

    fn tensor(&self, kind: K, layer: Option<u16>) -> Result<&[f32]> {
        match (kind, layer) {
            (K::WordEmb, None) => Ok(&self.embed),
            (K::RmsFinal, None) => Ok(&self.norm),
            (K::OutputW, None) => Ok(self.lm_head.as_deref().unwrap_or(&self.embed)),
            (_, Some(l)) => {
                let tensors = self.layers.get(usize::from(l));
                let at = LAYER_TENSORS.iter().position(|(k, _)| *k == kind);
                match (tensors, at) {
                    (Some(t), Some(at)) => Ok(&t[at]),
                    _ => bail!("a Hugging Face Llama has no {kind:?} tensor for layer {l}"),
                }
            }
            _ => bail!("a Hugging Face Llama has no model-level {kind:?} tensor"),
        }
    }
}

/// The tokenizer section for `dir/tokenizer.json`: byte-level BPE for a GPT-2-style
/// file (a `ByteLevel` component; see the module docs), else SentencePiece for a
/// Llama-2-style byte-fallback BPE, with `<unk>` from the model's `unk_token`. BOS/EOS
/// come from `dir/config.json`. The vocabulary (`model.vocab` plus `added_tokens`) must
/// hold ids `0..vocab_size` exactly, `vocab_size` from the config.
///
/// Refused with an error naming the file: a model other than BPE, dropout,
/// `ignore_merges`, subword prefixes or suffixes; for byte-level BPE, byte fallback and
/// the components the module docs list; for SentencePiece, no `byte_fallback`, merges
/// the runtime's encoder cannot reproduce (see the module docs), normalizers or
/// pre-tokenizers other than Llama 2's (`Prepend("▁")` + `Replace(" ", "▁")`, or
/// `Metaspace` with `▁` and a prepended `▁`), and pieces containing a plain space.
pub fn tokenizer_section(dir: &Path) -> Result<Vec<u8>> {
    let params = read_config(dir)?;
    let path = dir.join("tokenizer.json");
    let text =
        fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let json: Value =
        serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))?;
    build_section(&json, &params).with_context(|| path.display().to_string())
}

/// Whether `v` (a component of `tokenizer.json`, possibly a `Sequence`) is or contains
/// a component of type `ty`.
fn contains_type(v: &Value, ty: &str) -> bool {
    match v {
        Value::Object(map) => {
            map.get("type").and_then(Value::as_str) == Some(ty)
                || map.values().any(|x| contains_type(x, ty))
        }
        Value::Array(items) => items.iter().any(|x| contains_type(x, ty)),
        _ => false,
    }
}

fn type_of(v: &Value) -> Option<&str> {
    v.get("type").and_then(Value::as_str)
}

/// The components of `v`: the items of a `Sequence` (under `key`), else `v` itself.
fn components<'v>(v: &'v Value, key: &str) -> Vec<&'v Value> {
    match (type_of(v), v.get(key).and_then(Value::as_array)) {
        (Some("Sequence"), Some(items)) => items.iter().collect(),
        _ => vec![v],
    }
}

/// Checks the text handling is Llama 2's: spaces become `▁` and a `▁` is prepended,
/// either by the normalizer (then no pre-tokenizer) or by a `Metaspace` pre-tokenizer
/// (then no normalizer). Returns whether the pre-tokenizer splits the text into words
/// at each `▁`.
fn check_metaspace(json: &Value) -> Result<bool> {
    const SPACE: &str = "\u{2581}";
    let null = Value::Null;
    let normalizer = json.get("normalizer").unwrap_or(&null);
    let pre = json.get("pre_tokenizer").unwrap_or(&null);
    let expected = "expected Llama 2's text handling: a `Metaspace` pre-tokenizer with \
                    replacement \"▁\" that prepends it, or the normalizers `Prepend(\"▁\")` \
                    and `Replace(\" \", \"▁\")` without a pre-tokenizer";
    match (normalizer.is_null(), pre.is_null()) {
        (false, true) => {
            let parts = components(normalizer, "normalizers");
            let prepend = parts.iter().any(|n| {
                type_of(n) == Some("Prepend")
                    && n.get("prepend").and_then(Value::as_str) == Some(SPACE)
            });
            let replace = parts.iter().any(|n| {
                type_of(n) == Some("Replace")
                    && n.pointer("/pattern/String").and_then(Value::as_str) == Some(" ")
                    && n.get("content").and_then(Value::as_str) == Some(SPACE)
            });
            if parts.len() != 2 || !prepend || !replace {
                bail!("normalizer {normalizer}: {expected}");
            }
            Ok(false)
        }
        (true, false) => {
            let parts = components(pre, "pretokenizers");
            let [meta] = parts[..] else {
                bail!("pre-tokenizer {pre}: {expected}");
            };
            let scheme = meta.get("prepend_scheme").and_then(Value::as_str);
            let legacy_prefix = meta.get("add_prefix_space").and_then(Value::as_bool);
            let prepends = matches!(scheme, Some("always" | "first"))
                || (scheme.is_none() && legacy_prefix == Some(true));
            if type_of(meta) != Some("Metaspace")
                || meta.get("replacement").and_then(Value::as_str) != Some(SPACE)
                || !prepends
            {
                bail!("pre-tokenizer {pre}: {expected}");
            }
            // Older files have no `split` and always split.
            Ok(meta.get("split").and_then(Value::as_bool).unwrap_or(true))
        }
        _ => bail!("normalizer {normalizer} and pre-tokenizer {pre}: {expected}"),
    }
}

/// `model.merges` in rank order, each `"left right"` (older files) or
/// `["left", "right"]` (`tokenizers` >= 0.20).
fn merge_list(model: &Value) -> Result<Vec<(&str, &str)>> {
    let merges = model
        .get("merges")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("`model.merges` is not a list"))?;
    merges
        .iter()
        .enumerate()
        .map(|(rank, merge)| {
            let pair = match merge {
                Value::String(s) => s.split_once(' '),
                Value::Array(items) => match &items[..] {
                    [Value::String(a), Value::String(b)] => Some((a.as_str(), b.as_str())),
                    _ => None,
                },
                _ => None,
            };
            pair.ok_or_else(|| anyhow!("merge {rank} is not a pair: {merge}"))
        })
        .collect()
}

/// Puts `piece` at `id` of `pieces`; the id must be in range and not another piece's.
fn place<'j>(
    pieces: &mut [Option<&'j str>],
    piece: &'j str,
    id: Option<u64>,
    what: &str,
) -> Result<()> {
    let size = pieces.len();
    let slot = id
        .and_then(|id| usize::try_from(id).ok())
        .and_then(|id| pieces.get_mut(id))
        .ok_or_else(|| {
            anyhow!("{what} {piece:?} has id {id:?}, not below config.json's vocab_size {size}")
        })?;
    match slot {
        Some(other) if *other != piece => bail!("{what} {piece:?} has the id of {other:?}"),
        _ => *slot = Some(piece),
    }
    Ok(())
}

/// `json`'s `model`, checked to be a plain BPE: no dropout, no `ignore_merges`, no
/// subword prefix or suffix; byte fallback on for Llama 2's form, off for byte-level.
fn bpe_model(json: &Value, byte_level: bool) -> Result<&Value> {
    let model = json
        .get("model")
        .ok_or_else(|| anyhow!("no `model` object"))?;
    let model_type = model.get("type").and_then(Value::as_str);
    if model_type != Some("BPE") {
        bail!("`model.type` is {model_type:?}: only BPE is supported");
    }
    let byte_fallback = model.get("byte_fallback").and_then(Value::as_bool) == Some(true);
    match (byte_level, byte_fallback) {
        (false, false) => {
            bail!("`model.byte_fallback` is not true: the runtime's encoder needs byte fallback")
        }
        (true, true) => bail!(
            "`model.byte_fallback` is true in a byte-level (`ByteLevel`) BPE: not supported \
             (every byte is a token already)"
        ),
        _ => {}
    }
    for (key, unset) in [
        ("dropout", Value::Null),
        ("ignore_merges", Value::Bool(false)),
        ("continuing_subword_prefix", Value::Null),
        ("end_of_word_suffix", Value::Null),
    ] {
        let value = model.get(key).unwrap_or(&unset);
        let empty = value.as_str() == Some("");
        if *value != unset && !empty {
            bail!("`model.{key}` is {value}: not supported (only {unset})");
        }
    }
    Ok(model)
}

/// Token strings by id: `model.vocab`, then `added_tokens` (which may extend it); ids
/// must be exactly `0..vocab_size`.
fn pieces_by_id<'j>(json: &'j Value, model: &'j Value, vocab_size: u32) -> Result<Vec<&'j str>> {
    let vocab = model
        .get("vocab")
        .and_then(Value::as_object)
        .ok_or_else(|| anyhow!("`model.vocab` is not an object"))?;
    let size = vocab_size as usize;
    let mut pieces: Vec<Option<&str>> = vec![None; size];
    for (piece, id) in vocab {
        place(&mut pieces, piece, id.as_u64(), "vocabulary piece")?;
    }
    for token in added_tokens(json) {
        let content = token.get("content").and_then(Value::as_str).unwrap_or("");
        place(
            &mut pieces,
            content,
            token.get("id").and_then(Value::as_u64),
            "added token",
        )?;
    }
    pieces
        .iter()
        .enumerate()
        .map(|(id, p)| p.ok_or_else(|| anyhow!("no token has id {id} (vocab_size {size})")))
        .collect()
}

/// The entries of `added_tokens` (none when absent).
fn added_tokens(json: &Value) -> impl Iterator<Item = &Value> {
    json.get("added_tokens")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// The byte-level pre-tokenizer `pre` (the `pre_tokenizer` of `tokenizer.json`) is, if
/// the runtime has it: GPT-2's `ByteLevel(add_prefix_space=false, use_regex=true)`, or
/// SmolLM2's `Sequence([Digits(individual_digits=true), ByteLevel(...)])`.
fn byte_level_pre_tokenizer(pre: &Value) -> Result<PreTokenizer> {
    let is_gpt2_byte_level = |v: &Value| {
        type_of(v) == Some("ByteLevel")
            && v.get("add_prefix_space").and_then(Value::as_bool) == Some(false)
            // Absent in files written before `tokenizers` 0.10: the regex was always on.
            && v.get("use_regex").and_then(Value::as_bool) != Some(false)
    };
    let parts = components(pre, "pretokenizers");
    match parts[..] {
        [byte_level] if is_gpt2_byte_level(byte_level) => Ok(PreTokenizer::Gpt2),
        [digits, byte_level]
            if type_of(digits) == Some("Digits")
                && digits.get("individual_digits").and_then(Value::as_bool) == Some(true)
                && is_gpt2_byte_level(byte_level) =>
        {
            Ok(PreTokenizer::SmolLm2)
        }
        _ => bail!(
            "pre-tokenizer {pre}: not a byte-level split the runtime has (GPT-2's \
             `ByteLevel` with add_prefix_space false and use_regex true, or SmolLM2's \
             `Sequence` of `Digits` with individual_digits true and that `ByteLevel`)"
        ),
    }
}

/// The byte-level BPE section (`tinyformer::tokenizer::bytebpe`, GPT-2 and SmolLM2
/// style) of a `tokenizer.json` whose `model` [`bpe_model`] checked: token strings in
/// GPT-2's byte-to-unicode alphabet, merges by rank, every entry of `added_tokens`
/// matched verbatim in the text (as `tokenizers` does), BOS/EOS from `config.json`, no
/// BOS added. The GGUF reader builds the same section from the same vocabulary
/// (`gguf_llama::tokenizer_section`): both go through `bytebpe::encode_section`.
///
/// Refused: a normalizer, a pre-tokenizer [`byte_level_pre_tokenizer`] does not know, a
/// decoder other than `ByteLevel`, a post-processor other than `ByteLevel` (one that
/// adds tokens), added tokens that strip spaces or match whole words only.
fn byte_level_section(json: &Value, model: &Value, params: &LlamaParams) -> Result<Vec<u8>> {
    let null = Value::Null;
    let normalizer = json.get("normalizer").unwrap_or(&null);
    if !normalizer.is_null() {
        bail!("normalizer {normalizer}: a byte-level BPE with a normalizer is not supported");
    }
    let pre_tokenizer = byte_level_pre_tokenizer(json.get("pre_tokenizer").unwrap_or(&null))?;
    let decoder = json.get("decoder").unwrap_or(&null);
    if type_of(decoder) != Some("ByteLevel") {
        bail!("decoder {decoder}: a byte-level BPE needs the `ByteLevel` decoder");
    }
    let post = json.get("post_processor").unwrap_or(&null);
    if !(post.is_null() || type_of(post) == Some("ByteLevel")) {
        bail!(
            "post_processor {post}: not supported (only null or `ByteLevel`, which add no \
             tokens)"
        );
    }
    let pieces = pieces_by_id(json, model, params.vocab)?;
    let mut added = Vec::new();
    for token in added_tokens(json) {
        let content = token.get("content").and_then(Value::as_str).unwrap_or("");
        for flag in ["single_word", "lstrip", "rstrip"] {
            if token.get(flag).and_then(Value::as_bool) == Some(true) {
                bail!("added token {content:?} has `{flag}` set: not supported");
            }
        }
        // `pieces_by_id` placed it, so the id is below vocab_size, a u32.
        added.push(token.get("id").and_then(Value::as_u64).unwrap_or(0) as u32);
    }
    let merges: Vec<String> = merge_list(model)?
        .iter()
        .enumerate()
        .map(
            |(rank, (left, right))| match left.contains(' ') || right.contains(' ') {
                // Spaces are `Ġ` in the alphabet; a literal one could not be told apart.
                true => Err(anyhow!(
                    "merge {rank} ({left:?} {right:?}) has a space in a piece"
                )),
                false => Ok(format!("{left} {right}")),
            },
        )
        .collect::<Result<_>>()?;
    let merges: Vec<&str> = merges.iter().map(String::as_str).collect();
    let config = ByteBpeConfig {
        pre_tokenizer,
        bos_id: Some(params.bos),
        eos_id: Some(params.eos),
        add_bos: false,
    };
    bpe_section(&pieces, &merges, &added, &config).map_err(|e| anyhow!("tokenizer section: {e}"))
}

fn build_section(json: &Value, params: &LlamaParams) -> Result<Vec<u8>> {
    let null = Value::Null;
    let byte_level = ["pre_tokenizer", "decoder", "post_processor"]
        .iter()
        .any(|key| contains_type(json.get(*key).unwrap_or(&null), "ByteLevel"));
    let model = bpe_model(json, byte_level)?;
    if byte_level {
        return byte_level_section(json, model, params);
    }
    let splits_words = check_metaspace(json)?;

    let pieces = pieces_by_id(json, model, params.vocab)?;
    let size = pieces.len();
    let ids: HashMap<&str, u32> = pieces
        .iter()
        .enumerate()
        .map(|(id, &p)| (p, id as u32)) // id < vocab_size, a u32
        .collect();

    // Scores: see the module docs.
    let merges = merge_list(model)?;
    let mut scores = vec![NOT_MERGED; size];
    let mut listed: HashSet<(&str, &str)> = HashSet::with_capacity(merges.len());
    let mut made = 0u32;
    let mut previous: Option<u32> = None;
    for (rank, &(left, right)) in merges.iter().enumerate() {
        let joined = format!("{left}{right}");
        let made_id = *ids.get(joined.as_str()).ok_or_else(|| {
            anyhow!("merge {rank} ({left:?} {right:?}) makes {joined:?}, not in the vocabulary")
        })?;
        if !ids.contains_key(left) || !ids.contains_key(right) {
            bail!("merge {rank} ({left:?} {right:?}) names a piece not in the vocabulary");
        }
        if previous != Some(made_id) {
            if scores[made_id as usize] != NOT_MERGED {
                bail!(
                    "merge {rank} makes {joined:?} again after merges making other pieces: the \
                     runtime's encoder ranks merges by the piece they make"
                );
            }
            scores[made_id as usize] = -(made as f32); // exact: made < vocab_size <= 2^20
            made += 1;
        }
        previous = Some(made_id);
        listed.insert((left, right));
    }
    // The runtime merges any adjacent pair that concatenates to a scored piece, so every
    // such pair must be a listed merge.
    for (id, piece) in pieces.iter().enumerate() {
        if scores[id] == NOT_MERGED {
            continue;
        }
        for (at, _) in piece.char_indices().skip(1) {
            let (left, right) = piece.split_at(at);
            if ids.contains_key(left) && ids.contains_key(right) && !listed.contains(&(left, right))
            {
                bail!(
                    "{piece:?} is made by merges but {left:?} + {right:?} is not one of them: the \
                     runtime's encoder would merge that pair too (not a SentencePiece-style \
                     merge list)"
                );
            }
        }
    }
    let mut bytes: Vec<Vec<u8>> = Vec::with_capacity(size);
    for (id, piece) in pieces.iter().enumerate() {
        if piece.contains(' ') {
            bail!("piece {id} {piece:?} contains a space; Llama 2's pieces write spaces as ▁");
        }
        if splits_words
            && piece
                .char_indices()
                .any(|(at, c)| at > 0 && c == '\u{2581}')
        {
            bail!(
                "piece {id} {piece:?} has ▁ inside, but the Metaspace pre-tokenizer splits \
                 words there (the runtime's encoder does not split)"
            );
        }
        bytes.push(piece.replace('\u{2581}', " ").into_bytes());
    }

    let unk_token = model
        .get("unk_token")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("`model.unk_token` is not set"))?;
    let unk_id = *ids
        .get(unk_token)
        .ok_or_else(|| anyhow!("`model.unk_token` {unk_token:?} is not in the vocabulary"))?;
    let byte_fallback_base = *ids
        .get("<0x00>")
        .ok_or_else(|| anyhow!("no byte piece <0x00>: byte fallback needs <0x00>..<0xFF>"))?;
    let config = SentencePieceConfig {
        unk_id,
        bos_id: params.bos,
        eos_id: params.eos,
        byte_fallback_base,
    };
    let refs: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
    encode_section(&refs, &scores, &config).map_err(|e| anyhow!("tokenizer section: {e}"))
}
