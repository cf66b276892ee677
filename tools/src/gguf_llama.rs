//! A Llama GGUF file (`general.architecture = "llama"`) as a [`LlamaSource`] for the
//! decoder converter, with its SentencePiece vocabulary (`tokenizer.ggml.model =
//! "llama"`) or byte-level BPE vocabulary (`"gpt2"`: GPT-2, SmolLM2) as a tinyformer
//! tokenizer section.
//!
//! GGUF stores a Llama the way the runtime wants it: each matrix `[out, in]` row-major
//! (GGUF dims `[in, out]`, the row length first) and the query/key rows in the
//! adjacent-pair RoPE order (llama.cpp's converters undo Hugging Face's half-split
//! permutation), so tensors are only dequantized to `f32`, never permuted. Every tensor
//! is checked for the shape the hyperparameters imply, naming the tensor.
//!
//! Memory: the dequantized weights, `4 x` the parameter count (the file is mapped, not
//! read).

use crate::decoder::{LlamaParams, LlamaSource};
use crate::gguf::{Gguf, Value, MAGIC};
use anyhow::{anyhow, bail, Context, Result};
use tinyformer::format::TensorKind as K;
use tinyformer::tokenizer::bytebpe::{encode_section as bpe_section, ByteBpeConfig, PreTokenizer};
use tinyformer::tokenizer::sentencepiece::{encode_section as sp_section, SentencePieceConfig};

/// SentencePiece's word-boundary mark, a space in the core's (llama2.c's) pieces.
const SPACE_MARK: char = '\u{2581}';

/// A GGUF Llama with every weight dequantized.
pub struct GgufLlama {
    params: LlamaParams,
    /// `(kind, layer, values)`, a few per layer: searched linearly.
    tensors: Vec<(K, Option<u16>, Vec<f32>)>,
}

/// Per-layer tensors: GGUF name after `blk.N.` and the runtime's kind.
const LAYER_TENSORS: [(&str, K); 9] = [
    ("attn_norm", K::RmsAttn),
    ("attn_q", K::QueryW),
    ("attn_k", K::KeyW),
    ("attn_v", K::ValueW),
    ("attn_output", K::AttnOutW),
    ("ffn_norm", K::RmsFfn),
    ("ffn_gate", K::GateW),
    ("ffn_up", K::UpW),
    ("ffn_down", K::DownW),
];

impl GgufLlama {
    /// Reads the hyperparameters and dequantizes every tensor of `gguf`.
    pub fn from_gguf(gguf: &Gguf<'_>) -> Result<Self> {
        let arch = gguf.str("general.architecture")?;
        if arch != "llama" {
            bail!("general.architecture is {arch:?}: only \"llama\" converts to a decoder");
        }
        let vocab = gguf.str_array("tokenizer.ggml.tokens")?.len();
        let heads = gguf.u32("llama.attention.head_count")?;
        let hidden = gguf.u32("llama.embedding_length")?;
        let kv_heads = match gguf.get("llama.attention.head_count_kv") {
            Some(_) => gguf.u32("llama.attention.head_count_kv")?,
            None => heads,
        };
        let rope_theta = match gguf.get("llama.rope.freq_base") {
            Some(_) => gguf.f32("llama.rope.freq_base")?,
            None => 10000.0,
        };
        if heads == 0 || hidden % heads != 0 {
            bail!("llama.embedding_length {hidden} is not a multiple of llama.attention.head_count {heads}");
        }
        if kv_heads == 0 || heads % kv_heads != 0 {
            bail!("llama.attention.head_count_kv {kv_heads} does not divide llama.attention.head_count {heads}");
        }
        if gguf.get("llama.rope.dimension_count").is_some() {
            let rotary = gguf.u32("llama.rope.dimension_count")?;
            if rotary != hidden / heads {
                bail!(
                    "llama.rope.dimension_count {rotary}: only RoPE over the whole head ({}) is supported",
                    hidden / heads
                );
            }
        }
        let (bos, eos, _) = special_ids(gguf)?;
        let separate_output = gguf.tensors().iter().any(|t| t.name == "output.weight");
        let params = LlamaParams {
            vocab: u32::try_from(vocab).map_err(|_| anyhow!("tokenizer.ggml.tokens: too many"))?,
            hidden,
            ffn: gguf.u32("llama.feed_forward_length")?,
            layers: gguf.u32("llama.block_count")?,
            heads,
            kv_heads,
            max_positions: gguf.u32("llama.context_length")?,
            rope_theta,
            rms_eps: gguf.f32("llama.attention.layer_norm_rms_epsilon")?,
            bos,
            eos,
            separate_output,
        };
        let layers = u16::try_from(params.layers)
            .map_err(|_| anyhow!("llama.block_count {} is too large", params.layers))?;

        let mut names: Vec<(String, K, Option<u16>)> = vec![
            ("token_embd.weight".into(), K::WordEmb, None),
            ("output_norm.weight".into(), K::RmsFinal, None),
        ];
        if separate_output {
            names.push(("output.weight".into(), K::OutputW, None));
        }
        for layer in 0..layers {
            for (name, kind) in LAYER_TENSORS {
                names.push((format!("blk.{layer}.{name}.weight"), kind, Some(layer)));
            }
        }
        let mut tensors = Vec::new();
        for (name, kind, layer) in names {
            let want = expected_shape(&params, kind);
            let info = gguf.tensor(&name)?;
            if info.dims() != want {
                bail!(
                    "tensor {name}: dims {:?}, expected {want:?} (GGUF order, row length first)",
                    info.dims()
                );
            }
            let values = info.dequantize()?;
            if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
                bail!("tensor {name}: element {bad} is not finite");
            }
            tensors.push((kind, layer, values));
        }
        Ok(GgufLlama { params, tensors })
    }
}

/// GGUF dims (`[row length, rows]`, or `[len]` for a vector) of tensor `kind`.
fn expected_shape(p: &LlamaParams, kind: K) -> Vec<u64> {
    // `kv_heads` divides `heads` (checked when read), so this is at most `hidden`.
    let kv_dim = u64::from(p.hidden / p.heads.max(1)) * u64::from(p.kv_heads);
    let (hidden, ffn, vocab) = (u64::from(p.hidden), u64::from(p.ffn), u64::from(p.vocab));
    match kind {
        K::WordEmb | K::OutputW => vec![hidden, vocab],
        K::KeyW | K::ValueW => vec![hidden, kv_dim],
        K::QueryW | K::AttnOutW => vec![hidden, hidden],
        K::GateW | K::UpW => vec![hidden, ffn],
        K::DownW => vec![ffn, hidden],
        _ => vec![hidden],
    }
}

/// `(bos, eos, unk)`, llama.cpp's SentencePiece defaults (1, 2, 0) where absent.
fn special_ids(gguf: &Gguf<'_>) -> Result<(u32, u32, u32)> {
    let id = |key: &str, default: u32| -> Result<u32> {
        match gguf.get(key) {
            Some(_) => gguf.u32(key),
            None => Ok(default),
        }
    };
    Ok((
        id("tokenizer.ggml.bos_token_id", 1)?,
        id("tokenizer.ggml.eos_token_id", 2)?,
        id("tokenizer.ggml.unknown_token_id", 0)?,
    ))
}

impl LlamaSource for GgufLlama {
    fn params(&self) -> LlamaParams {
        self.params
    }

    fn tensor(&self, kind: K, layer: Option<u16>) -> Result<&[f32]> {
        let key = match kind {
            // Tied: the classifier is the token embedding.
            K::OutputW if !self.params.separate_output => (K::WordEmb, None),
            _ => (kind, layer),
        };
        self.tensors
            .iter()
            .find(|(k, l, _)| (*k, *l) == key)
            .map(|(_, _, values)| values.as_slice())
            .ok_or_else(|| anyhow!("a GGUF Llama has no {kind:?} tensor for layer {layer:?}"))
    }
}

/// The tokenizer section of `gguf`'s vocabulary: SentencePiece for
/// `tokenizer.ggml.model = "llama"` (pieces, merge scores, byte pieces `<0x00>`..
/// `<0xFF>` in order), byte-level BPE for `"gpt2"` (tokens in GPT-2's byte-to-unicode
/// alphabet, `tokenizer.ggml.merges` by rank, the `tokenizer.ggml.pre` split, control
/// and user-defined tokens matched in the text as Hugging Face's added tokens).
pub fn tokenizer_section(gguf: &Gguf<'_>) -> Result<Vec<u8>> {
    match gguf.str("tokenizer.ggml.model")? {
        "llama" => sentencepiece_section(gguf),
        "gpt2" => byte_bpe_section(gguf),
        other => bail!(
            "tokenizer.ggml.model {other:?} is not supported (\"llama\": SentencePiece, \"gpt2\": byte-level BPE)"
        ),
    }
}

fn sentencepiece_section(gguf: &Gguf<'_>) -> Result<Vec<u8>> {
    let tokens = gguf.str_array("tokenizer.ggml.tokens")?;
    let scores = gguf.f32_array("tokenizer.ggml.scores")?;
    let pieces: Vec<Vec<u8>> = tokens
        .iter()
        .map(|t| t.replace(SPACE_MARK, " ").into_bytes())
        .collect();
    let byte_base = tokens
        .iter()
        .position(|t| *t == "<0x00>")
        .context("tokenizer.ggml.tokens: no byte piece <0x00> (byte fallback)")?;
    let (bos, eos, unk) = special_ids(gguf)?;
    let config = SentencePieceConfig {
        unk_id: unk,
        bos_id: bos,
        eos_id: eos,
        byte_fallback_base: byte_base as u32,
    };
    let pieces: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
    sp_section(&pieces, &scores, &config).map_err(|e| anyhow!("tokenizer.ggml.tokens: {e}"))
}

/// llama.cpp's token types that Hugging Face treats as added tokens: `CONTROL` (3,
/// `<|im_start|>`) and `USER_DEFINED` (4).
const ADDED_TOKEN_TYPES: [i32; 2] = [3, 4];

fn byte_bpe_section(gguf: &Gguf<'_>) -> Result<Vec<u8>> {
    let tokens = gguf.str_array("tokenizer.ggml.tokens")?;
    let merges = gguf.str_array("tokenizer.ggml.merges")?;
    let types = gguf.i32_array("tokenizer.ggml.token_type")?;
    if types.len() != tokens.len() {
        bail!(
            "tokenizer.ggml.token_type has {} entries for {} tokens",
            types.len(),
            tokens.len()
        );
    }
    let added: Vec<u32> = (0u32..)
        .zip(&types)
        .filter(|(_, t)| ADDED_TOKEN_TYPES.contains(t))
        .map(|(id, _)| id)
        .collect();
    let pre_tokenizer = match gguf.get("tokenizer.ggml.pre") {
        None => PreTokenizer::Gpt2,
        Some(_) => match gguf.str("tokenizer.ggml.pre")? {
            "smollm" => PreTokenizer::SmolLm2,
            "gpt-2" | "gpt2" | "default" => PreTokenizer::Gpt2,
            other => bail!(
                "tokenizer.ggml.pre {other:?}: this pre-tokenizer split is not supported \
                 (\"gpt-2\", \"smollm\")"
            ),
        },
    };
    let add_bos = match gguf.get("tokenizer.ggml.add_bos_token") {
        Some(Value::Bool(b)) => *b,
        Some(other) => bail!(
            "tokenizer.ggml.add_bos_token: expected bool, found {}",
            other.type_name()
        ),
        None => false,
    };
    let (bos, eos, _) = special_ids(gguf)?;
    let config = ByteBpeConfig {
        pre_tokenizer,
        bos_id: Some(bos),
        eos_id: Some(eos),
        add_bos,
    };
    bpe_section(tokens, merges, &added, &config)
        .map_err(|e| anyhow!("tokenizer.ggml.tokens/merges: {e}"))
}

/// Whether the file at `path` starts with GGUF's magic; an unreadable file is an
/// error naming it.
pub fn is_gguf(path: &std::path::Path) -> Result<bool> {
    use std::io::Read as _;
    let file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut magic = Vec::with_capacity(MAGIC.len());
    file.take(MAGIC.len() as u64)
        .read_to_end(&mut magic)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(magic == MAGIC)
}
