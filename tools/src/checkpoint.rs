//! Reading a Hugging Face BERT-family checkpoint directory: `config.json`,
//! `model.safetensors` (memory-mapped), `vocab.txt` or `tokenizer.json`,
//! `tokenizer_config.json`, and for sentence-transformers directories `modules.json`
//! with the pooling module's `config.json`.

use anyhow::{anyhow, bail, Context, Result};
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use tinyformer::format::{Activation, Pooling};

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

/// Tokenizer settings from `tokenizer_config.json` (BERT defaults when absent).
#[derive(Debug, Clone)]
pub struct TokenizerSettings {
    pub lowercase: bool,
    pub strip_accents: bool,
    pub chinese_chars: bool,
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
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text =
        fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))
}

impl Checkpoint {
    /// Reads and checks a checkpoint directory.
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
        let config: HfConfig = read_json(&config_path)?;
        let cfg_err =
            |field: &str, why: String| anyhow!("{}: field `{field}`: {why}", config_path.display());
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
        let tensors = read_safetensors(&st_path)?;

        let (vocab, vocab_path) = read_vocab(dir)?;
        let tokenizer = read_tokenizer_settings(dir)?;
        let pooling = detect_pooling(dir, classifier, &tensors)?;
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
        let mut inputs = vec![config_path, st_path, vocab_path];
        inputs.retain(|p| p.exists());
        let ckpt = Self {
            dir: dir.to_path_buf(),
            config,
            activation,
            pooling,
            labels,
            vocab,
            tokenizer,
            tensors,
            inputs,
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
        let mut want: Vec<(String, Vec<usize>)> = vec![
            ("embeddings.word_embeddings.weight".into(), vec![v, h]),
            ("embeddings.position_embeddings.weight".into(), vec![p, h]),
            ("embeddings.token_type_embeddings.weight".into(), vec![t, h]),
            ("embeddings.LayerNorm.weight".into(), vec![h]),
            ("embeddings.LayerNorm.bias".into(), vec![h]),
        ];
        for l in 0..c.num_hidden_layers {
            let pre = format!("encoder.layer.{l}.");
            for (name, shape) in [
                ("attention.self.query.weight", vec![h, h]),
                ("attention.self.query.bias", vec![h]),
                ("attention.self.key.weight", vec![h, h]),
                ("attention.self.key.bias", vec![h]),
                ("attention.self.value.weight", vec![h, h]),
                ("attention.self.value.bias", vec![h]),
                ("attention.output.dense.weight", vec![h, h]),
                ("attention.output.dense.bias", vec![h]),
                ("attention.output.LayerNorm.weight", vec![h]),
                ("attention.output.LayerNorm.bias", vec![h]),
                ("intermediate.dense.weight", vec![f, h]),
                ("intermediate.dense.bias", vec![f]),
                ("output.dense.weight", vec![h, f]),
                ("output.dense.bias", vec![h]),
                ("output.LayerNorm.weight", vec![h]),
                ("output.LayerNorm.bias", vec![h]),
            ] {
                want.push((format!("{pre}{name}"), shape));
            }
        }
        if self.pooling == Pooling::ClsPooler {
            want.push(("pooler.dense.weight".into(), vec![h, h]));
            want.push(("pooler.dense.bias".into(), vec![h]));
        }
        if !self.labels.is_empty() {
            want.push(("classifier.weight".into(), vec![self.labels.len(), h]));
            want.push(("classifier.bias".into(), vec![self.labels.len()]));
        }
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
                "{}: vocabulary has {} tokens, config.json field `vocab_size` says {v}",
                self.dir.display(),
                self.vocab.len()
            );
        }
        Ok(())
    }
}

/// Reads every floating-point tensor, widened to f32, with the `bert.` prefix removed
/// and old `gamma`/`beta` LayerNorm names mapped to `weight`/`bias`.
fn read_safetensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    let file = fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    // SAFETY: the mapping is read-only and lives only inside this function; a concurrent
    // writer truncating the file could fault the process, which is the documented
    // limit of memory-mapped input (the same as every mmap-based loader).
    let map = unsafe { memmap2::Mmap::map(&file) }
        .with_context(|| format!("{}: cannot map", path.display()))?;
    let st = SafeTensors::deserialize(&map)
        .map_err(|e| anyhow!("{}: invalid safetensors: {e}", path.display()))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => view
                .data()
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => view
                .data()
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::F64 => view
                .data()
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
                .collect(),
            // Integer buffers such as `embeddings.position_ids` are not weights; a
            // weight in another dtype is refused here rather than reported missing.
            other => {
                if [".weight", ".bias", ".gamma", ".beta"]
                    .iter()
                    .any(|suffix| name.ends_with(suffix))
                {
                    bail!(
                        "{}: tensor `{name}` has dtype {other:?}; weights must be F32, F16, BF16 or F64",
                        path.display()
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

fn read_vocab(dir: &Path) -> Result<(Vec<String>, PathBuf)> {
    let txt = dir.join("vocab.txt");
    if txt.exists() {
        let text = fs::read_to_string(&txt)
            .with_context(|| format!("{}: cannot read (UTF-8 expected)", txt.display()))?;
        let vocab: Vec<String> = text.lines().map(str::to_string).collect();
        return Ok((vocab, txt));
    }
    let json = dir.join("tokenizer.json");
    if json.exists() {
        let value: serde_json::Value = read_json(&json)?;
        let model = &value["model"];
        if model["type"] != "WordPiece" {
            bail!(
                "{}: field `model.type` is {}, only WordPiece is supported",
                json.display(),
                model["type"]
            );
        }
        let map = model["vocab"]
            .as_object()
            .ok_or_else(|| anyhow!("{}: field `model.vocab` is missing", json.display()))?;
        let mut vocab = vec![String::new(); map.len()];
        for (token, id) in map {
            let id = id.as_u64().ok_or_else(|| {
                anyhow!(
                    "{}: field `model.vocab.{token}` is not an id",
                    json.display()
                )
            })?;
            *vocab.get_mut(id as usize).ok_or_else(|| {
                anyhow!(
                    "{}: field `model.vocab.{token}`: id {id} out of range",
                    json.display()
                )
            })? = token.clone();
        }
        return Ok((vocab, json));
    }
    bail!("{}: missing vocab.txt (or tokenizer.json)", dir.display())
}

fn read_tokenizer_settings(dir: &Path) -> Result<TokenizerSettings> {
    let path = dir.join("tokenizer_config.json");
    let mut s = TokenizerSettings {
        lowercase: true,
        strip_accents: true,
        chinese_chars: true,
    };
    if path.exists() {
        let v: serde_json::Value = read_json(&path)?;
        if let Some(b) = v["do_lower_case"].as_bool() {
            s.lowercase = b;
        }
        // HF: strip_accents = None follows lowercase.
        s.strip_accents = v["strip_accents"].as_bool().unwrap_or(s.lowercase);
        if let Some(b) = v["tokenize_chinese_chars"].as_bool() {
            s.chinese_chars = b;
        }
    }
    Ok(s)
}

/// Pooling follows the checkpoint: a sentence-transformers directory says mean or
/// CLS in its pooling module; a classifier uses CLS + pooler; a bare `BertModel` uses
/// the pooler when it has one.
fn detect_pooling(
    dir: &Path,
    classifier: bool,
    tensors: &HashMap<String, Tensor>,
) -> Result<Pooling> {
    let modules = dir.join("modules.json");
    if modules.exists() {
        let list: Vec<serde_json::Value> = read_json(&modules)?;
        for m in &list {
            if m["type"]
                .as_str()
                .is_some_and(|t| t.ends_with("models.Pooling"))
            {
                let sub = m["path"].as_str().unwrap_or("1_Pooling");
                let path = dir.join(sub).join("config.json");
                let cfg: serde_json::Value = read_json(&path)?;
                if cfg["pooling_mode_mean_tokens"].as_bool() == Some(true) {
                    return Ok(Pooling::Mean);
                }
                if cfg["pooling_mode_cls_token"].as_bool() == Some(true) {
                    return Ok(Pooling::Cls);
                }
                bail!(
                    "{}: only `pooling_mode_mean_tokens` or `pooling_mode_cls_token` pooling is supported",
                    path.display()
                );
            }
        }
    }
    if classifier || tensors.contains_key("pooler.dense.weight") {
        Ok(Pooling::ClsPooler)
    } else {
        Ok(Pooling::Cls)
    }
}
