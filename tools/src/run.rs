//! Running models on the host: opening model files (memory-mapped), tokenizing text
//! with the model's own tokenizer, and running the forward pass.

use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use tinyformer::model::probabilities_q15;
use tinyformer::{Input, Model};

/// Model bytes: a read-only memory map (page aligned) or a `'static` embedded model.
pub enum ModelBytes {
    Mapped(memmap2::Mmap, PathBuf),
    Static(&'static [u8], &'static str),
}

impl ModelBytes {
    /// Maps a model file.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path)
            .with_context(|| format!("{}: cannot open", path.display()))?;
        // SAFETY: read-only mapping of a file the tool does not modify; another process
        // truncating it while mapped could fault, the accepted limit of mmap input.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .with_context(|| format!("{}: cannot map", path.display()))?;
        Ok(Self::Mapped(map, path.to_path_buf()))
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::Mapped(m, _) => m,
            Self::Static(b, _) => b,
        }
    }

    /// Where the bytes come from, for messages.
    pub fn name(&self) -> String {
        match self {
            Self::Mapped(_, p) => p.display().to_string(),
            Self::Static(_, n) => (*n).to_string(),
        }
    }

    /// Validates and loads the model.
    pub fn model(&self) -> Result<Model<'_>> {
        Model::from_bytes(self.bytes()).map_err(|e| anyhow!("{}: {e}", self.name()))
    }
}

/// Token ids of one text, as the device would see them.
pub struct Tokens {
    pub ids: Vec<u32>,
    /// Word pieces before truncation (without `[CLS]`/`[SEP]`).
    pub pieces_total: usize,
    pub truncated: bool,
}

/// Tokenizes `text` with the model's tokenizer, truncated to the model's `max_seq`.
pub fn tokenize(model: &Model<'_>, text: &str) -> Result<Tokens> {
    let mut ids = vec![0u32; model.config().max_seq as usize];
    let enc = model
        .tokenizer()
        .encode(text.as_bytes(), &mut ids)
        .map_err(|e| anyhow!("tokenizing: {e}"))?;
    ids.truncate(enc.len);
    Ok(Tokens {
        ids,
        pieces_total: enc.pieces_total,
        truncated: enc.truncated,
    })
}

/// Warns on stderr when a text was truncated to the model's context.
pub fn warn_truncated(index: usize, tokens: &Tokens, max_seq: u32) {
    if tokens.truncated {
        eprintln!(
            "warning: text {} has {} word pieces; truncated to the model's {} tokens (incl. [CLS]/[SEP])",
            index + 1,
            tokens.pieces_total,
            max_seq
        );
    }
}

/// Reusable working memory for forward passes, sized for the model's `max_seq`.
pub struct Runner<'m> {
    pub model: Model<'m>,
    arena: Vec<u128>,
}

/// One forward pass's result.
pub struct Output {
    /// Logits or embedding, as f32.
    pub values: Vec<f32>,
    /// Class probabilities (classifiers only): integer softmax for int8 models
    /// (`q15 / 32768`), f32 softmax otherwise.
    pub probabilities: Vec<f32>,
    /// For int8 models, the probabilities in Q15 exactly as the device computes them.
    pub probabilities_q15: Option<Vec<i32>>,
}

impl<'m> Runner<'m> {
    pub fn new(model: Model<'m>) -> Result<Self> {
        // Room for the largest batch of rows per weight pass (faster, same results).
        let bytes = model
            .arena_bytes_batched(
                model.config().max_seq as usize,
                tinyformer::model::MAX_BATCH_ROWS,
            )
            .map_err(|e| anyhow!("{e}"))?;
        Ok(Self {
            model,
            arena: vec![0u128; bytes.div_ceil(16)],
        })
    }

    /// Runs the model on token ids.
    pub fn run(&mut self, ids: &[u32]) -> Result<Output> {
        let config = *self.model.config();
        let arena: &mut [u8] = bytemuck::cast_slice_mut(&mut self.arena);
        let n = config.output_len();
        let classifier = config.num_labels > 0;
        if config.is_int8() {
            let mut fixed = vec![0i32; n];
            self.model
                .forward_fixed(Input::new(ids), arena, &mut fixed)
                .map_err(|e| anyhow!("{e}"))?;
            let values = fixed.iter().map(|&v| v as f32 / 65536.0).collect();
            if classifier {
                let mut q = fixed;
                probabilities_q15(&mut q);
                let probabilities = q.iter().map(|&p| p as f32 / 32768.0).collect();
                return Ok(Output {
                    values,
                    probabilities,
                    probabilities_q15: Some(q),
                });
            }
            return Ok(Output {
                values,
                probabilities: Vec::new(),
                probabilities_q15: None,
            });
        }
        let mut values = vec![0f32; n];
        self.model
            .forward(Input::new(ids), arena, &mut values)
            .map_err(|e| anyhow!("{e}"))?;
        let probabilities = if classifier {
            let mut p = values.clone();
            tinyformer::kernels::softmax::softmax_f32(&mut p, |_| true);
            p
        } else {
            Vec::new()
        };
        Ok(Output {
            values,
            probabilities,
            probabilities_q15: None,
        })
    }

    /// Label name of class `i`.
    pub fn label(&self, i: usize) -> String {
        self.model
            .label(i)
            .map_or_else(|| format!("LABEL_{i}"), str::to_string)
    }
}

/// Index of the largest value (first on ties).
pub fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
}

/// Reads texts: the arguments, or standard input lines when there are none.
pub fn read_texts(args: &[String]) -> Result<Vec<String>> {
    if !args.is_empty() {
        return Ok(args.to_vec());
    }
    use std::io::Read;
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .context("reading standard input")?;
    stdin_texts(bytes)
}

/// Standard input's bytes as texts, one per line.
pub fn stdin_texts(bytes: Vec<u8>) -> Result<Vec<String>> {
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow!(
            "standard input: invalid UTF-8 at byte {}",
            e.utf8_error().valid_up_to()
        )
    })?;
    let texts: Vec<String> = text.lines().map(str::to_string).collect();
    if texts.is_empty() {
        bail!("no text given (pass texts as arguments or on standard input, one per line)");
    }
    Ok(texts)
}

/// The default model embedded in this binary: the bundled int8 sentiment classifier
/// (`models/default/sentiment-int8.tfm`, see `models/default/EVAL.md`).
pub fn default_model() -> ModelBytes {
    static MODEL: &[u8] = tinyformer::include_model!("../../models/default/sentiment-int8.tfm");
    ModelBytes::Static(
        MODEL,
        "the embedded default model (models/default/sentiment-int8.tfm)",
    )
}
