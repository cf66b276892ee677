//! Reading a Hugging Face BERT-family checkpoint directory: `config.json`,
//! `model.safetensors` (memory-mapped), `vocab.txt` or `tokenizer.json`,
//! `tokenizer_config.json`, and for sentence-transformers directories `modules.json`
//! with the pooling module's `config.json`.

use crate::{bert_names, le};
use anyhow::{anyhow, bail, Context, Result};
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use tinyformer::format::{Activation, Pooling, TensorKind as K};

/// The subset of a Hugging Face `config.json` the converter needs.
#[derive(Debug, Deserialize)]
pub struct HfConfig {
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default)]
    pub model_type: Option<String>,
    pub vocab_size: u32,
    pub hidden_size: u32,
    pub num_hidden_layers: u32,
    pub num_attention_heads: u32,
    pub intermediate_size: u32,
    pub max_position_embeddings: u32,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: u32,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
    #[serde(default)]
    pub id2label: Option<BTreeMap<String, String>>,
}

fn default_type_vocab() -> u32 {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}

/// The normalizer settings of a checkpoint's tokenizer: from the `normalizer` of
/// `tokenizer.json` when the vocabulary comes from that file, else from
/// `tokenizer_config.json` (BERT's uncased defaults when absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenizerSettings {
    /// Lowercase (HF `lowercase` / `do_lower_case`).
    pub lowercase: bool,
    /// Strip accents (HF `strip_accents`; its `null` resolved to `lowercase`).
    pub strip_accents: bool,
    /// Split CJK ideographs (HF `handle_chinese_chars` / `tokenize_chinese_chars`).
    pub chinese_chars: bool,
    /// Drop control chars and map whitespace to spaces (HF `clean_text`; always on in
    /// the slow `BertTokenizer`).
    pub clean_text: bool,
}

/// A dense f32 tensor read from the checkpoint.
#[derive(Debug, Clone)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// A loaded checkpoint, weights widened to f32.
pub struct Checkpoint {
    pub dir: PathBuf,
    pub config: HfConfig,
    pub activation: Activation,
    pub pooling: Pooling,
    /// Label names in id order; empty for a model without a classifier.
    pub labels: Vec<String>,
    pub vocab: Vec<String>,
    pub tokenizer: TokenizerSettings,
    /// Tensors by their name without the `bert.` prefix.
    pub tensors: HashMap<String, Tensor>,
    /// The input files, so the converter can refuse to overwrite them.
    pub inputs: Vec<PathBuf>,
    /// Things the converter should tell the user (printed by `convert`).
    pub warnings: Vec<String>,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    parse_json(&bytes).with_context(|| format!("{}", path.display()))
}

fn parse_json<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).context("invalid JSON")
}

/// Which vocabulary file a checkpoint has.
#[derive(Clone, Copy, Debug)]
pub enum VocabSource<'a> {
    /// `vocab.txt`: one token per line, UTF-8.
    Txt(&'a [u8]),
    /// `tokenizer.json` with a WordPiece model.
    TokenizerJson(&'a [u8]),
}

/// A checkpoint's files as bytes, for [`Checkpoint::from_parts`].
#[derive(Clone, Copy, Debug)]
pub struct Parts<'a> {
    /// `config.json`.
    pub config_json: &'a [u8],
    /// `model.safetensors`.
    pub safetensors: &'a [u8],
    /// `vocab.txt` or `tokenizer.json`.
    pub vocab: VocabSource<'a>,
    /// `tokenizer_config.json`, when present (BERT defaults otherwise).
    pub tokenizer_config: Option<&'a [u8]>,
    /// The `config.json` of a sentence-transformers pooling module, when the directory
    /// has one (`modules.json` names it).
    pub pooling_config: Option<&'a [u8]>,
}

impl Checkpoint {
    /// Reads and checks a checkpoint directory: finds its files, memory-maps the
    /// safetensors and hands the bytes to [`Checkpoint::from_parts`]. Errors name the
    /// directory and the file.
    pub fn load(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            bail!(
                "{}: not a directory (expected a Hugging Face checkpoint directory)",
                dir.display()
            );
        }
        let config_path = dir.join("config.json");
        if !config_path.exists() {
            bail!("{}: missing config.json", dir.display());
        }
        let config_json = fs::read(&config_path)
            .with_context(|| format!("{}: cannot read", config_path.display()))?;
        let st_path = dir.join("model.safetensors");
        if !st_path.exists() {
            if dir.join("pytorch_model.bin").exists() {
                bail!(
                    "{}: only a pickle `pytorch_model.bin` is present; tinyformer reads safetensors. Convert it with \
                     `python -c \"from transformers import AutoModel; AutoModel.from_pretrained('{0}').save_pretrained('{0}', safe_serialization=True)\"` \
                     (or load it in PyTorch and save with `safetensors.torch.save_file`)",
                    dir.display()
                );
            }
            bail!("{}: missing model.safetensors", dir.display());
        }
        let st_file = fs::File::open(&st_path)
            .with_context(|| format!("{}: cannot open", st_path.display()))?;
        // SAFETY: the mapping is read-only and lives only inside this function (tensors
        // are copied out as f32); a concurrent writer truncating the file could fault
        // the process, which is the documented limit of memory-mapped input (the same
        // as every mmap-based loader).
        let st_map = unsafe { memmap2::Mmap::map(&st_file) }
            .with_context(|| format!("{}: cannot map", st_path.display()))?;
        let (vocab_path, vocab_bytes, vocab_is_txt) = {
            let txt = dir.join("vocab.txt");
            let json = dir.join("tokenizer.json");
            let (path, is_txt) = if txt.exists() {
                (txt, true)
            } else if json.exists() {
                (json, false)
            } else {
                bail!("{}: missing vocab.txt (or tokenizer.json)", dir.display())
            };
            let bytes =
                fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
            (path, bytes, is_txt)
        };
        let tokenizer_config = read_optional(&dir.join("tokenizer_config.json"))?;
        let pooling_config = match pooling_module_config(dir)? {
            Some(path) => {
                Some(fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?)
            }
            None => None,
        };
        let parts = Parts {
            config_json: &config_json,
            safetensors: &st_map,
            vocab: if vocab_is_txt {
                VocabSource::Txt(&vocab_bytes)
            } else {
                VocabSource::TokenizerJson(&vocab_bytes)
            },
            tokenizer_config: tokenizer_config.as_deref(),
            pooling_config: pooling_config.as_deref(),
        };
        let mut ckpt = Self::from_parts(&parts).with_context(|| format!("{}", dir.display()))?;
        ckpt.dir = dir.to_path_buf();
        ckpt.inputs = vec![config_path, st_path, vocab_path];
        Ok(ckpt)
    }

    /// Parses and checks a checkpoint from the bytes of its files, without touching the
    /// file system (this is what [`Checkpoint::load`] does after reading them). Errors
    /// name the file (`config.json`, `model.safetensors`, ...) and the field.
    ///
    /// Allocation is bounded by the input: config sizes are checked against the
    /// format's limits before anything is sized from them, and tensors are only
    /// copied out of `safetensors` (whose header the `safetensors` crate bounds).
    /// The result's `dir` is empty and `inputs` is empty.
    pub fn from_parts(parts: &Parts<'_>) -> Result<Self> {
        let config: HfConfig = parse_json(parts.config_json).context("config.json")?;
        let cfg_err = |field: &str, why: String| anyhow!("config.json: field `{field}`: {why}");
        if let Some(t) = &config.model_type {
            if t != "bert" {
                return Err(cfg_err(
                    "model_type",
                    format!("`{t}` is not supported (BERT-family encoders with model_type `bert`)"),
                ));
            }
        }
        if let Some(p) = &config.position_embedding_type {
            if p != "absolute" {
                return Err(cfg_err(
                    "position_embedding_type",
                    format!("`{p}` is not supported (only `absolute`)"),
                ));
            }
        }
        check_config_limits(&config).map_err(|(field, why)| cfg_err(field, why))?;
        let activation = match config.hidden_act.as_str() {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => {
                return Err(cfg_err(
                    "hidden_act",
                    format!("activation `{other}` is not supported (gelu, gelu_new, relu)"),
                ))
            }
        };
        let arch = config
            .architectures
            .first()
            .map(String::as_str)
            .unwrap_or("BertModel");
        let classifier = match arch {
            "BertForSequenceClassification" => true,
            "BertModel" => false,
            other => {
                return Err(cfg_err(
                    "architectures",
                    format!(
                        "`{other}` is not supported (BertModel or BertForSequenceClassification)"
                    ),
                ))
            }
        };

        let tensors = parse_safetensors(parts.safetensors).context("model.safetensors")?;
        let stated = match parts.tokenizer_config {
            Some(bytes) => parse_json(bytes).context("tokenizer_config.json")?,
            None => TokenizerConfigJson::default(),
        };
        let mut warnings = Vec::new();
        let (vocab, tokenizer) = match parts.vocab {
            VocabSource::Txt(bytes) => (parse_vocab_txt(bytes)?, stated.settings()),
            VocabSource::TokenizerJson(bytes) => {
                let (vocab, settings) = parse_tokenizer_json(bytes)?;
                warnings.extend(stated.disagreements(&settings));
                (vocab, settings)
            }
        };
        let pooling = match parts.pooling_config {
            Some(bytes) => parse_pooling_config(bytes).context("pooling module config.json")?,
            None if classifier || tensors.contains_key(bert_names::POOLER[0].1) => {
                Pooling::ClsPooler
            }
            None => Pooling::Cls,
        };
        let labels = if classifier {
            let map = config
                .id2label
                .as_ref()
                .ok_or_else(|| cfg_err("id2label", "missing for a sequence classifier".into()))?;
            let mut labels = vec![String::new(); map.len()];
            for (k, v) in map {
                let i: usize = k
                    .parse()
                    .map_err(|_| cfg_err("id2label", format!("key `{k}` is not an integer")))?;
                *labels
                    .get_mut(i)
                    .ok_or_else(|| cfg_err("id2label", format!("id {i} out of range")))? =
                    v.clone();
            }
            labels
        } else {
            Vec::new()
        };
        let ckpt = Self {
            dir: PathBuf::new(),
            config,
            activation,
            pooling,
            labels,
            vocab,
            tokenizer,
            tensors,
            inputs: Vec::new(),
            warnings,
        };
        ckpt.check_shapes()?;
        Ok(ckpt)
    }

    /// A tensor by its un-prefixed name.
    pub fn tensor(&self, name: &str) -> Result<&Tensor> {
        self.tensors.get(name).ok_or_else(|| {
            anyhow!(
                "{}: tensor `{name}` is missing",
                self.dir.join("model.safetensors").display()
            )
        })
    }

    /// Checks every tensor the format needs against the config.
    fn check_shapes(&self) -> Result<()> {
        let c = &self.config;
        let (v, h, f, p, t) = (
            c.vocab_size as usize,
            c.hidden_size as usize,
            c.intermediate_size as usize,
            c.max_position_embeddings as usize,
            c.type_vocab_size as usize,
        );
        let labels = self.labels.len();
        // The checkpoint shape of each tensor (`[out, in]` for a weight matrix).
        let shape = |kind: K| match kind {
            K::WordEmb => vec![v, h],
            K::PosEmb => vec![p, h],
            K::TypeEmb => vec![t, h],
            K::QueryW | K::KeyW | K::ValueW | K::AttnOutW | K::PoolerW => vec![h, h],
            K::Ffn1W => vec![f, h],
            K::Ffn1B => vec![f],
            K::Ffn2W => vec![h, f],
            K::ClassW => vec![labels, h],
            K::ClassB => vec![labels],
            _ => vec![h],
        };
        let mut entries: Vec<(K, String)> = Vec::new();
        let mut add = |table: &[(K, &str)], prefix: &str| {
            for &(kind, name) in table {
                entries.push((kind, format!("{prefix}{name}")));
            }
        };
        add(&bert_names::EMBEDDINGS, "");
        for l in 0..c.num_hidden_layers {
            add(&bert_names::LAYER, &bert_names::layer_prefix(l));
        }
        if self.pooling == Pooling::ClsPooler {
            add(&bert_names::POOLER, "");
        }
        if labels > 0 {
            add(&bert_names::CLASSIFIER, "");
        }
        let want = entries.into_iter().flat_map(|(kind, name)| {
            bert_names::tensor_names(kind, &name)
                .into_iter()
                .map(move |name| (name, shape(kind)))
        });
        let st = self.dir.join("model.safetensors");
        for (name, shape) in want {
            let tensor = self.tensor(&name)?;
            if tensor.shape != shape {
                bail!(
                    "{}: tensor `{name}` has shape {:?}, config.json implies {:?}",
                    st.display(),
                    tensor.shape,
                    shape
                );
            }
            if let Some(i) = tensor.data.iter().position(|x| !x.is_finite()) {
                bail!(
                    "{}: tensor `{name}` has a non-finite value ({}) at element {i}",
                    st.display(),
                    tensor.data[i]
                );
            }
        }
        if self.vocab.len() != v {
            bail!(
                "vocabulary has {} tokens, config.json field `vocab_size` says {v}",
                self.vocab.len()
            );
        }
        Ok(())
    }
}

/// Config sizes the format stores as they are must be within its limits; checking them
/// first also bounds everything sized from them (e.g. the per-layer tensor list).
fn check_config_limits(c: &HfConfig) -> std::result::Result<(), (&'static str, String)> {
    use tinyformer::format::limits::*;
    for (field, value, max) in [
        ("vocab_size", c.vocab_size, MAX_VOCAB),
        ("hidden_size", c.hidden_size, MAX_HIDDEN),
        ("num_hidden_layers", c.num_hidden_layers, MAX_LAYERS),
        ("num_attention_heads", c.num_attention_heads, c.hidden_size),
        ("intermediate_size", c.intermediate_size, MAX_FFN),
        ("type_vocab_size", c.type_vocab_size, MAX_TYPE_VOCAB),
    ] {
        if !(1..=max).contains(&value) {
            return Err((field, format!("{value} is outside 1..={max}")));
        }
    }
    Ok(())
}

/// Reads every floating-point tensor, widened to f32, with the `bert.` prefix removed
/// and old `gamma`/`beta` LayerNorm names mapped to `weight`/`bias`. The `safetensors`
/// crate checks the header (at most 100 MB) and that every tensor's bytes lie in the
/// buffer, so the copies are bounded by the input.
fn parse_safetensors(bytes: &[u8]) -> Result<HashMap<String, Tensor>> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| anyhow!("invalid safetensors: {e}"))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => le::f32s(view.data()),
            Dtype::F16 => le::f16s(view.data()),
            Dtype::BF16 => le::bf16s(view.data()),
            Dtype::F64 => le::f64s(view.data()),
            // Integer buffers such as `embeddings.position_ids` are not weights; a
            // weight in another dtype is refused here rather than reported missing.
            other => {
                if [".weight", ".bias", ".gamma", ".beta"]
                    .iter()
                    .any(|suffix| name.ends_with(suffix))
                {
                    bail!(
                        "tensor `{name}` has dtype {other:?}; weights must be F32, F16, BF16 or F64"
                    );
                }
                continue;
            }
        };
        let mut key = name.strip_prefix("bert.").unwrap_or(&name).to_string();
        if let Some(stem) = key.strip_suffix(".gamma") {
            key = format!("{stem}.weight");
        } else if let Some(stem) = key.strip_suffix(".beta") {
            key = format!("{stem}.bias");
        }
        out.insert(
            key,
            Tensor {
                shape: view.shape().to_vec(),
                data,
            },
        );
    }
    Ok(out)
}

fn parse_vocab_txt(bytes: &[u8]) -> Result<Vec<String>> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        anyhow!(
            "vocab.txt: invalid UTF-8 at byte {} (UTF-8 expected)",
            e.valid_up_to()
        )
    })?;
    Ok(text.lines().map(str::to_string).collect())
}

/// The parts of a Hugging Face `tokenizer.json` the converter reads. Each part is
/// read into its own type afterwards, so that an error names the field; `normalizer`
/// and `pre_tokenizer` are kept as JSON because a refusal quotes them.
#[derive(Deserialize)]
struct TokenizerJson {
    model: serde_json::Value,
    /// `null` (or absent): no normalization at all.
    #[serde(default)]
    normalizer: Option<serde_json::Value>,
    /// `null` (or absent): no pre-tokenizer.
    #[serde(default)]
    pre_tokenizer: Option<serde_json::Value>,
}

/// The `type` tag of a `tokenizer.json` component (normalizer, pre-tokenizer), which
/// says how to read the rest.
#[derive(Deserialize)]
struct TypeTag {
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

impl TypeTag {
    /// The tag of `value` at JSON path `field` (`None` when absent or `null`).
    fn of(value: &serde_json::Value, field: &str) -> Result<Option<String>> {
        Self::deserialize(value)
            .map(|tag| tag.kind)
            .map_err(|e| anyhow!("tokenizer.json: field `{field}`: {e}"))
    }
}

/// `tokenizer.json` `model`: a WordPiece model as tinyformer's tokenizer implements
/// it. The vocabulary is read separately (ids checked one by one).
#[derive(Deserialize)]
struct WordPieceJson {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    unk_token: Option<String>,
    #[serde(default)]
    continuing_subword_prefix: Option<String>,
    #[serde(default)]
    max_input_chars_per_word: Option<u64>,
    /// Token -> id; `None` when the field is missing.
    #[serde(default)]
    vocab: Option<BTreeMap<String, VocabId>>,
}

/// A `model.vocab` value: an id, or anything else (refused naming the token).
#[derive(Deserialize)]
#[serde(untagged)]
enum VocabId {
    Id(u64),
    NotAnId(serde::de::IgnoredAny),
}

/// HF `BertNormalizer` as `tokenizers` serialises it; absent fields take its
/// defaults, unknown fields are refused (they could change the normalization).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BertNormalizerJson {
    #[serde(rename = "type")]
    _type: String,
    #[serde(default = "yes")]
    clean_text: bool,
    #[serde(default = "yes")]
    handle_chinese_chars: bool,
    /// `null` follows `lowercase`.
    #[serde(default)]
    strip_accents: Option<bool>,
    #[serde(default = "yes")]
    lowercase: bool,
}

fn yes() -> bool {
    true
}

/// HF `Sequence` normalizer.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SequenceJson {
    #[serde(rename = "type")]
    _type: String,
    normalizers: Vec<serde_json::Value>,
}

/// The `BertTokenizer` options of `tokenizer_config.json`, `None` where not stated
/// (`strip_accents: null` is HF's "follow `do_lower_case`", the same as absent).
#[derive(Debug, Default, Deserialize)]
struct TokenizerConfigJson {
    #[serde(default)]
    do_lower_case: Option<bool>,
    #[serde(default)]
    strip_accents: Option<bool>,
    #[serde(default)]
    tokenize_chinese_chars: Option<bool>,
}

impl TokenizerConfigJson {
    /// The settings `BertTokenizer` uses: stated values over BERT's uncased defaults.
    fn settings(&self) -> TokenizerSettings {
        let lowercase = self.do_lower_case.unwrap_or(true);
        TokenizerSettings {
            lowercase,
            strip_accents: self.strip_accents.unwrap_or(lowercase),
            chinese_chars: self.tokenize_chinese_chars.unwrap_or(true),
            clean_text: true,
        }
    }

    /// Where a `tokenizer_config.json` states a value the `tokenizer.json` normalizer
    /// contradicts: `tokenizers` (and so tinyformer, which matches it) follows
    /// `tokenizer.json`, while `transformers` rebuilds the normalizer from
    /// `tokenizer_config.json`, so the user should know the checkpoint tokenizes two
    /// ways.
    fn disagreements(&self, normalizer: &TokenizerSettings) -> Vec<String> {
        let mut out = Vec::new();
        for (field, stated, json_field, used) in [
            (
                "do_lower_case",
                self.do_lower_case,
                "lowercase",
                normalizer.lowercase,
            ),
            (
                "strip_accents",
                self.strip_accents,
                "strip_accents",
                normalizer.strip_accents,
            ),
            (
                "tokenize_chinese_chars",
                self.tokenize_chinese_chars,
                "handle_chinese_chars",
                normalizer.chinese_chars,
            ),
        ] {
            if let Some(stated) = stated.filter(|&v| v != used) {
                out.push(format!(
                    "tokenizer_config.json: field `{field}` is {stated} but tokenizer.json's \
                     normalizer has `{json_field}` {used}; following tokenizer.json as Hugging \
                     Face `tokenizers` does (`transformers` would follow tokenizer_config.json)"
                ));
            }
        }
        out
    }
}

/// The vocabulary and normalizer settings of a `tokenizer.json` with a WordPiece
/// model; refuses what tinyformer's tokenizer would not reproduce.
fn parse_tokenizer_json(bytes: &[u8]) -> Result<(Vec<String>, TokenizerSettings)> {
    let json: TokenizerJson = parse_json(bytes).context("tokenizer.json")?;
    let model = WordPieceJson::deserialize(&json.model)
        .map_err(|e| anyhow!("tokenizer.json: field `model`: {e}"))?;
    if model.kind.as_deref() != Some("WordPiece") {
        bail!(
            "tokenizer.json: field `model.type` is {}, only WordPiece is supported",
            serde_json::json!(model.kind)
        );
    }
    let refuse = |field: &str, value: &dyn std::fmt::Display, supported: &str| {
        anyhow!("tokenizer.json: field `{field}` is {value}; tinyformer's tokenizer supports {supported}")
    };
    if let Some(unk) = model.unk_token.as_deref().filter(|&t| t != "[UNK]") {
        return Err(refuse("model.unk_token", &format!("`{unk}`"), "`[UNK]`"));
    }
    if let Some(prefix) = model
        .continuing_subword_prefix
        .as_deref()
        .filter(|&p| p != tinyformer::tokenizer::CONTINUATION_PREFIX)
    {
        return Err(refuse(
            "model.continuing_subword_prefix",
            &format!("`{prefix}`"),
            "`##`",
        ));
    }
    if let Some(n) = model.max_input_chars_per_word.filter(|&n| n != 100) {
        return Err(refuse("model.max_input_chars_per_word", &n, "100"));
    }
    if let Some(pre) = &json.pre_tokenizer {
        let kind = TypeTag::deserialize(pre).ok().and_then(|tag| tag.kind);
        if kind.as_deref() != Some("BertPreTokenizer") {
            return Err(refuse("pre_tokenizer", pre, "BertPreTokenizer"));
        }
    }
    let settings = normalizer_settings(json.normalizer.as_ref(), "normalizer")?;

    let map = model
        .vocab
        .ok_or_else(|| anyhow!("tokenizer.json: field `model.vocab` is missing"))?;
    let mut vocab = vec![String::new(); map.len()];
    for (token, id) in map {
        let VocabId::Id(id) = id else {
            bail!("tokenizer.json: field `model.vocab.{token}` is not an id");
        };
        let Some(slot) = usize::try_from(id).ok().and_then(|i| vocab.get_mut(i)) else {
            bail!("tokenizer.json: field `model.vocab.{token}`: id {id} out of range");
        };
        *slot = token;
    }
    Ok((vocab, settings))
}

/// Maps a `tokenizer.json` normalizer (at JSON path `field`) to the settings of
/// tinyformer's BERT normalizer: `null` (none), a `BertNormalizer`, or a `Sequence`
/// holding at most one of those. Anything else is refused: other normalizers (NFC,
/// `Lowercase`, `StripAccents`, ...) differ from the BERT steps in small ways (e.g.
/// `StripAccents` drops every combining mark, `BertNormalizer` only nonspacing ones).
fn normalizer_settings(
    value: Option<&serde_json::Value>,
    field: &str,
) -> Result<TokenizerSettings> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(TokenizerSettings {
            lowercase: false,
            strip_accents: false,
            chinese_chars: false,
            clean_text: false,
        });
    };
    let kind = TypeTag::of(value, field)?;
    match kind.as_deref() {
        Some("BertNormalizer") => {
            let n = BertNormalizerJson::deserialize(value)
                .map_err(|e| anyhow!("tokenizer.json: field `{field}` (BertNormalizer): {e}"))?;
            Ok(TokenizerSettings {
                lowercase: n.lowercase,
                strip_accents: n.strip_accents.unwrap_or(n.lowercase),
                chinese_chars: n.handle_chinese_chars,
                clean_text: n.clean_text,
            })
        }
        Some("Sequence") => {
            let seq = SequenceJson::deserialize(value)
                .map_err(|e| anyhow!("tokenizer.json: field `{field}` (Sequence): {e}"))?;
            match seq.normalizers.as_slice() {
                [] => normalizer_settings(None, field),
                [one] => normalizer_settings(Some(one), &format!("{field}.normalizers[0]")),
                more => bail!(
                    "tokenizer.json: field `{field}.normalizers` chains {} normalizers; \
                     tinyformer's tokenizer supports one BertNormalizer",
                    more.len()
                ),
            }
        }
        _ => bail!(
            "tokenizer.json: field `{field}.type` is {}; tinyformer's tokenizer supports \
             BertNormalizer (alone or as the only member of a Sequence) or none",
            serde_json::json!(kind)
        ),
    }
}

/// The pooling modes of a sentence-transformers pooling module's `config.json` that
/// tinyformer implements (others, such as max pooling, are refused when set alone).
#[derive(Deserialize)]
struct PoolingConfigJson {
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_cls_token: bool,
}

/// A sentence-transformers pooling module says mean or CLS pooling.
fn parse_pooling_config(bytes: &[u8]) -> Result<Pooling> {
    let cfg: PoolingConfigJson = parse_json(bytes)?;
    if cfg.pooling_mode_mean_tokens {
        return Ok(Pooling::Mean);
    }
    if cfg.pooling_mode_cls_token {
        return Ok(Pooling::Cls);
    }
    bail!("only `pooling_mode_mean_tokens` or `pooling_mode_cls_token` pooling is supported")
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    if !path.exists() {
        return Ok(None);
    }
    fs::read(path)
        .map(Some)
        .with_context(|| format!("{}: cannot read", path.display()))
}

/// The pooling module's `config.json` of a sentence-transformers directory, if
/// `modules.json` lists one. Without a pooling module, pooling follows the checkpoint:
/// a classifier uses CLS + pooler; a bare `BertModel` uses the pooler when it has one
/// (see [`Checkpoint::from_parts`]).
fn pooling_module_config(dir: &Path) -> Result<Option<PathBuf>> {
    let modules = dir.join("modules.json");
    if !modules.exists() {
        return Ok(None);
    }
    let list: Vec<ModuleJson> = read_json(&modules)?;
    Ok(list
        .into_iter()
        .find(|m| {
            m.kind
                .as_deref()
                .is_some_and(|t| t.ends_with("models.Pooling"))
        })
        .map(|m| {
            let sub = m.path.as_deref().unwrap_or("1_Pooling");
            dir.join(sub).join("config.json")
        }))
}

/// One entry of a sentence-transformers `modules.json`.
#[derive(Deserialize)]
struct ModuleJson {
    /// The module's class, e.g. `sentence_transformers.models.Pooling`.
    #[serde(rename = "type", default)]
    kind: Option<String>,
    /// Its directory, relative to the checkpoint.
    #[serde(default)]
    path: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures")
            .join(name)
    }

    fn read(dir: &Path, file: &str) -> Vec<u8> {
        fs::read(dir.join(file)).unwrap()
    }

    /// `from_parts` on the bytes of a directory gives what `load` gives.
    #[test]
    fn from_parts_matches_load() {
        let dir = fixture("tiny-bert-mean");
        let (config, st, vocab, tok, pool) = (
            read(&dir, "config.json"),
            read(&dir, "model.safetensors"),
            read(&dir, "vocab.txt"),
            read(&dir, "tokenizer_config.json"),
            read(&dir, "1_Pooling/config.json"),
        );
        let parts = Parts {
            config_json: &config,
            safetensors: &st,
            vocab: VocabSource::Txt(&vocab),
            tokenizer_config: Some(&tok),
            pooling_config: Some(&pool),
        };
        let from_bytes = Checkpoint::from_parts(&parts).unwrap();
        let loaded = Checkpoint::load(&dir).unwrap();
        assert_eq!(from_bytes.pooling, Pooling::Mean);
        assert_eq!(loaded.pooling, Pooling::Mean);
        assert_eq!(from_bytes.vocab, loaded.vocab);
        assert_eq!(from_bytes.tensors.len(), loaded.tensors.len());
        for (name, t) in &loaded.tensors {
            assert_eq!(from_bytes.tensors[name].data, t.data, "{name}");
        }
        assert!(from_bytes.inputs.is_empty());
        assert_eq!(loaded.inputs.len(), 3);
    }

    /// Found while writing the `convert_read` fuzz target: a `num_hidden_layers` of
    /// 4e9 made the shape check build a list of 64e9 expected tensors (memory and time
    /// without bound) before noticing that none of them exists. Now refused up front.
    #[test]
    fn huge_layer_count_is_refused_before_anything_is_sized() {
        let dir = fixture("tiny-bert-cls");
        let config = String::from_utf8(read(&dir, "config.json"))
            .unwrap()
            .replace(
                "\"num_hidden_layers\": 2",
                "\"num_hidden_layers\": 4000000000",
            );
        let (st, vocab) = (read(&dir, "model.safetensors"), read(&dir, "vocab.txt"));
        let parts = Parts {
            config_json: config.as_bytes(),
            safetensors: &st,
            vocab: VocabSource::Txt(&vocab),
            tokenizer_config: None,
            pooling_config: None,
        };
        let err = format!("{:#}", Checkpoint::from_parts(&parts).err().unwrap());
        assert!(
            err.contains("config.json: field `num_hidden_layers`: 4000000000 is outside 1..=64"),
            "{err}"
        );
    }

    /// The typed `tokenizer.json` reading still names the field of each refusal.
    #[test]
    fn tokenizer_json_errors_name_the_field() {
        let model = |vocab: &str| {
            format!(r#"{{"model":{{"type":"WordPiece","vocab":{vocab}}},"normalizer":null}}"#)
        };
        for (json, want) in [
            (
                model(r#"{"[UNK]":0,"a":"x"}"#),
                "field `model.vocab.a` is not an id",
            ),
            (
                model(r#"{"[UNK]":0,"a":7}"#),
                "field `model.vocab.a`: id 7 out of range",
            ),
            (
                r#"{"model":{"type":"WordPiece"}}"#.to_string(),
                "field `model.vocab` is missing",
            ),
            (
                r#"{"model":{"vocab":{}}}"#.to_string(),
                "field `model.type` is null, only WordPiece",
            ),
            (
                model(r#"{"[UNK]":0}"#).replace(
                    r#""normalizer":null"#,
                    r#""normalizer":{"type":"Sequence","normalizers":[{"type":"NFC"}]}"#,
                ),
                "field `normalizer.normalizers[0].type` is \"NFC\"",
            ),
        ] {
            let err = format!("{:#}", parse_tokenizer_json(json.as_bytes()).unwrap_err());
            assert!(err.contains(want), "{err}\n   expected {want}");
        }
        let (vocab, settings) =
            parse_tokenizer_json(model(r#"{"b":1,"[UNK]":0}"#).as_bytes()).unwrap();
        assert_eq!(vocab, ["[UNK]", "b"]);
        assert!(!settings.lowercase);
    }

    #[test]
    fn pooling_config_modes() {
        let mean = br#"{"word_embedding_dimension":8,"pooling_mode_mean_tokens":true}"#;
        assert_eq!(parse_pooling_config(mean).unwrap(), Pooling::Mean);
        let cls = br#"{"pooling_mode_cls_token":true,"pooling_mode_mean_tokens":false}"#;
        assert_eq!(parse_pooling_config(cls).unwrap(), Pooling::Cls);
        assert!(parse_pooling_config(br#"{"pooling_mode_max_tokens":true}"#).is_err());
    }

    /// Hostile safetensors headers are errors, not allocations: a header length of
    /// 2^64 - 1, and a tensor claiming 2^62 elements in a tiny buffer.
    #[test]
    fn hostile_safetensors_are_errors() {
        let mut huge_header = u64::MAX.to_le_bytes().to_vec();
        huge_header.extend_from_slice(b"{}");
        let json = br#"{"w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,4]}}"#;
        let mut huge_shape = (json.len() as u64).to_le_bytes().to_vec();
        huge_shape.extend_from_slice(json);
        huge_shape.extend_from_slice(&[0; 4]);
        for st in [huge_header, huge_shape] {
            let err = parse_safetensors(&st).unwrap_err().to_string();
            assert!(err.starts_with("invalid safetensors"), "{err}");
        }
    }
}
