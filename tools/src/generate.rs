//! Running decoders on the host: tokenizing with the model's own tokenizer, generating
//! (streamed, sampled in the core) and teacher-forced scoring.

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use std::io::Write as _;
use std::path::Path;
use tinyformer::format::writer::AlignedBuf;
use tinyformer::model::decoder::sample::{logit_to_q16, Sampler, SamplerSettings};
use tinyformer::model::decoder::{DecoderPlan, MAX_PREFILL_ROWS};
use tinyformer::tokenizer::decoder::DecoderTokenizer;
use tinyformer::tokenizer::stream::Utf8Stream;
use tinyformer::{Decoder, Logits, State};

use crate::convert::Precision;
use crate::decoder::LlamaSource;
use crate::run::{read_lines, ModelBytes};

impl ModelBytes {
    /// Validates and loads a decoder model (its prefill on the process's `--threads`,
    /// [`crate::run::set_threads`]).
    pub fn decoder(&self) -> Result<Decoder<'_>> {
        let model =
            Decoder::from_bytes(self.bytes()).map_err(|e| anyhow!("{}: {e}", self.name()))?;
        Ok(model.with_threads(crate::run::threads()))
    }

    /// Whether the file holds a decoder (validated; an invalid file gives the error).
    pub fn is_decoder(&self) -> Result<bool> {
        let file = tinyformer::ModelFile::from_bytes(self.bytes())
            .map_err(|e| anyhow!("{}: {e}", self.name()))?;
        Ok(file.config().decoder.is_some())
    }
}

/// The decoder's tokenizer (validated with the file).
pub fn tokenizer<'m>(model: &Decoder<'m>) -> Result<DecoderTokenizer<'m>> {
    DecoderTokenizer::from_section(model.file().tokenizer_section()).map_err(|e| anyhow!("{e}"))
}

/// A decoder's tokenizer, validated once for any number of texts.
pub struct TextEncoder<'m> {
    pub tok: DecoderTokenizer<'m>,
    bos: u32,
}

impl<'m> TextEncoder<'m> {
    /// The tokenizer of `model`.
    pub fn new(model: &Decoder<'m>) -> Result<Self> {
        Ok(Self {
            tok: tokenizer(model)?,
            bos: model.params().bos_id,
        })
    }

    /// Token ids of `text` as the device would see them: BOS first where the
    /// vocabulary adds it (SentencePiece), special tokens such as `<|im_start|>`
    /// matched in the text when `special_tokens` (byte-level BPE). An empty result is
    /// BOS alone, so that an empty prompt still starts the model.
    pub fn encode(&self, text: &str, special_tokens: bool) -> Result<Vec<u32>> {
        let mut ids = vec![0u32; self.tok.encode_buffer_len(text.len())];
        let n = self
            .tok
            .encode(text.as_bytes(), special_tokens, &mut ids)
            .map_err(|e| anyhow!("tokenizing: {e}"))?;
        ids.truncate(n);
        if ids.is_empty() {
            ids.push(self.bos);
        }
        Ok(ids)
    }
}

/// [`TextEncoder::encode`] for one text (a loop over texts makes the encoder once).
pub fn encode(model: &Decoder<'_>, text: &str, special_tokens: bool) -> Result<Vec<u32>> {
    TextEncoder::new(model)?.encode(text, special_tokens)
}

/// The ChatML turn markers of a chat model's vocabulary.
#[derive(Clone, Copy)]
struct ChatMl {
    /// `<|im_end|>`.
    end: u32,
}

impl ChatMl {
    /// The markers of a model's vocabulary `tok` (`name` for the error): a byte-level
    /// BPE vocabulary with `<|im_start|>` and `<|im_end|>`.
    fn of(tok: &DecoderTokenizer<'_>, name: &str) -> Result<ChatMl> {
        let DecoderTokenizer::ByteBpe(bpe) = tok else {
            bail!("{name}: --chat needs a chat model's vocabulary (<|im_start|>, <|im_end|>); this one is SentencePiece");
        };
        let id = |token: &str| {
            bpe.token_id(token.as_bytes())
                .ok_or_else(|| anyhow!("{name}: --chat: the vocabulary has no {token} token"))
        };
        id("<|im_start|>")?;
        Ok(ChatMl {
            end: id("<|im_end|>")?,
        })
    }

    /// `prompt` as a user turn, then the start of the assistant's (the Hugging Face
    /// chat template with no system message).
    fn wrap(&self, prompt: &str) -> String {
        format!("<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n")
    }
}

/// Working memory for one decoding session at a fixed context.
pub struct DecoderRunner<'m> {
    pub model: Decoder<'m>,
    pub plan: DecoderPlan,
    arena: Vec<u32>,
}

impl<'m> DecoderRunner<'m> {
    /// An arena for `ctx` positions (default: the model's `max_seq`) whose int8
    /// prompts run in blocks of [`MAX_PREFILL_ROWS`] tokens (the host has the memory;
    /// the results are those of one token at a time).
    pub fn new(model: Decoder<'m>, ctx: Option<usize>) -> Result<Self> {
        let ctx = ctx.unwrap_or(model.config().max_seq as usize);
        let plan = model
            .plan_with_rows(ctx, MAX_PREFILL_ROWS)
            .map_err(|e| anyhow!("context {ctx}: {e}"))?;
        Ok(Self {
            model,
            plan,
            arena: vec![0u32; plan.total_bytes().div_ceil(4)],
        })
    }

    /// A fresh state over the arena.
    pub fn state(&mut self) -> Result<State<'m, '_>> {
        State::with_plan(
            &self.model,
            bytemuck::cast_slice_mut(&mut self.arena),
            self.plan,
        )
        .map_err(|e| anyhow!("{e}"))
    }
}

/// Logits as `f64` natural-log units (Q16 for int8 models).
pub fn logits_f64(logits: Logits<'_>) -> Vec<f64> {
    match logits {
        Logits::F32(l) => l.iter().map(|&v| f64::from(v)).collect(),
        Logits::Q16(l) => l.iter().map(|&v| f64::from(v) / 65536.0).collect(),
    }
}

/// Index of the largest logit, the lowest on ties (what greedy decoding picks).
pub fn argmax(logits: &[f64]) -> u32 {
    tinyformer::kernels::argmax::argmax(logits) as u32
}

/// `log softmax(logits)`.
pub fn log_softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = logits.iter().map(|v| (v - max).exp()).sum();
    let log_sum = max + sum.ln();
    logits.iter().map(|v| v - log_sum).collect()
}

/// Sampling settings from the command line (host floats, converted once to the
/// core's fixed point).
#[derive(Clone, Copy, Debug)]
pub struct GenerateOptions {
    /// Tokens to generate at most.
    pub max_new: usize,
    /// 0 = greedy.
    pub temperature: f32,
    /// 0 = off.
    pub top_k: u32,
    /// 1 = off.
    pub top_p: f32,
    pub seed: u64,
    /// Wrap prompts in ChatML turns and stop at `<|im_end|>`.
    pub chat: bool,
    /// Match special tokens (`<|im_start|>`) in prompts (byte-level BPE).
    pub special_tokens: bool,
}

impl GenerateOptions {
    fn settings(&self) -> Result<SamplerSettings> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            bail!("--temperature must be a finite number >= 0");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            bail!("--top-p must be in (0, 1]");
        }
        Ok(SamplerSettings::from_f32(
            self.temperature,
            self.top_k,
            self.top_p,
        ))
    }
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// `max_new` tokens were generated.
    Length,
    /// The model produced EOS (or BOS, which starts a new sequence in llama2.c's
    /// models).
    EndOfSequence,
    /// The context is full.
    ContextFull,
}

/// Generates after `prompt` (ids, BOS first), calling `emit` with each generated
/// id and the whole UTF-8 text it completes (held back while a character is split
/// across byte tokens). Stops at EOS, BOS, and with `options.chat` at `<|im_end|>`.
/// Returns the generated ids (the stop token excluded).
pub fn generate(
    runner: &mut DecoderRunner<'_>,
    prompt: &[u32],
    options: &GenerateOptions,
    mut emit: impl FnMut(u32, &str) -> Result<()>,
) -> Result<(Vec<u32>, Stop)> {
    let settings = options.settings()?;
    let mut sampler = Sampler::new(settings, options.seed).map_err(|e| anyhow!("{e}"))?;
    let model = runner.model;
    let tok = tokenizer(&model)?;
    let params = *model.params();
    // A chat turn also ends at `<|im_end|>` (SmolLM2's EOS is that token already).
    let turn_end = match options.chat {
        true => Some(ChatMl::of(&tok, "the model")?.end),
        false => None,
    };
    let vocab = model.config().vocab_size as usize;
    let mut scratch = vec![0u32; tinyformer::model::decoder::sample::scratch_len(vocab)];
    let mut state = runner.state()?;
    if prompt.len() > state.capacity() {
        bail!(
            "the prompt has {} tokens, more than the context of {}",
            prompt.len(),
            state.capacity()
        );
    }
    let logits = state.prefill(prompt).map_err(|e| anyhow!("{e}"))?;
    let mut next = pick(&mut sampler, logits, &mut scratch, settings)?;
    let mut out = Vec::new();
    let mut stream = Utf8Stream::new();
    let mut prev = *prompt.last().unwrap_or(&params.bos_id);
    loop {
        if out.len() >= options.max_new {
            return finish(out, Stop::Length, &mut stream, &mut emit);
        }
        if next == params.eos_id || next == params.bos_id || Some(next) == turn_end {
            return finish(out, Stop::EndOfSequence, &mut stream, &mut emit);
        }
        out.push(next);
        let mut text = String::new();
        stream.push(tok.decode(prev, next), |s| text.push_str(s));
        emit(next, &text)?;
        prev = next;
        if out.len() >= options.max_new {
            continue;
        }
        if state.pos() == state.capacity() {
            return finish(out, Stop::ContextFull, &mut stream, &mut emit);
        }
        let logits = state.step(next).map_err(|e| anyhow!("{e}"))?;
        next = pick(&mut sampler, logits, &mut scratch, settings)?;
    }
}

fn finish(
    ids: Vec<u32>,
    stop: Stop,
    stream: &mut Utf8Stream,
    emit: &mut impl FnMut(u32, &str) -> Result<()>,
) -> Result<(Vec<u32>, Stop)> {
    let mut rest = String::new();
    stream.finish(|s| rest.push_str(s));
    if !rest.is_empty() {
        emit(u32::MAX, &rest)?;
    }
    Ok((ids, stop))
}

/// Greedy decoding takes the argmax of the logits as they are (f32 for float
/// models, so llama2.c's outputs are reproduced exactly); sampling runs the core's
/// integer sampler on Q16 logits, identical on the host and the device.
fn pick(
    sampler: &mut Sampler,
    logits: Logits<'_>,
    scratch: &mut [u32],
    settings: SamplerSettings,
) -> Result<u32> {
    if settings.temperature_q16 == 0 {
        return Ok(argmax(&logits_f64(logits)));
    }
    let q16: Vec<i32>;
    let logits_q16 = match logits {
        Logits::Q16(l) => l,
        Logits::F32(l) => {
            q16 = l.iter().map(|&v| logit_to_q16(v)).collect();
            &q16
        }
    };
    sampler
        .sample(logits_q16, scratch)
        .map_err(|e| anyhow!("{e}"))
}

/// Teacher-forced evaluation of one token sequence (BOS first).
#[derive(Clone, Debug, Default)]
pub struct Scored {
    /// Natural-log loss summed over tokens `1..n` given their prefix.
    pub nll: f64,
    /// Tokens scored (`n - 1`).
    pub tokens: usize,
    /// The model's top prediction at positions `0..n - 1`.
    pub argmax: Vec<u32>,
    /// With a comparison model: positions where both predict the same top token.
    pub agree: usize,
    /// With a comparison model: sum over positions of `KL(P_compare || P_model)`.
    pub kl: f64,
    /// With a comparison model: positions where its top logit leads its runner-up by
    /// at least the margin (the reference is confident).
    pub confident: usize,
    /// Of those, positions where both predict the same top token.
    pub agree_confident: usize,
    /// With a comparison model: its natural-log loss summed over the same tokens.
    pub compare_nll: f64,
}

/// How far the largest logit leads the second largest (0 on a tie; `logits` holds at
/// least two values).
pub fn top2_margin(logits: &[f64]) -> f64 {
    let (mut first, mut second) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for &v in logits {
        if v > first {
            second = first;
            first = v;
        } else if v > second {
            second = v;
        }
    }
    first - second
}

/// Scores `ids` with `runner`'s model, and alongside with `compare` if given; a
/// position counts as confident where `compare`'s top logit leads its runner-up by at
/// least `margin` (natural-log units).
pub fn score(
    runner: &mut DecoderRunner<'_>,
    mut compare: Option<&mut DecoderRunner<'_>>,
    ids: &[u32],
    margin: f64,
) -> Result<Scored> {
    let mut result = Scored::default();
    let mut state = runner.state()?;
    let mut other = match compare.as_mut() {
        Some(r) => Some(r.state()?),
        None => None,
    };
    for (t, pair) in ids.windows(2).enumerate() {
        let logits = logits_f64(
            state
                .step(pair[0])
                .map_err(|e| anyhow!("position {t}: {e}"))?,
        );
        let lp = log_softmax(&logits);
        result.nll -= lp[pair[1] as usize];
        result.tokens += 1;
        let top = argmax(&logits);
        result.argmax.push(top);
        if let Some(o) = other.as_mut() {
            let reference = logits_f64(o.step(pair[0]).map_err(|e| anyhow!("position {t}: {e}"))?);
            let lq = log_softmax(&reference);
            result.compare_nll -= lq[pair[1] as usize];
            let agree = usize::from(argmax(&reference) == top);
            result.agree += agree;
            if top2_margin(&reference) >= margin {
                result.confident += 1;
                result.agree_confident += agree;
            }
            result.kl += lq
                .iter()
                .zip(&lp)
                .map(|(q, p)| q.exp() * (q - p))
                .sum::<f64>();
        }
    }
    Ok(result)
}

/// The bundled decoder: llama2.c's stories260K converted to int8
/// (`models/stories260K/stories260K-int8.tfm`, see `models/stories260K/README.md`).
pub fn default_decoder() -> ModelBytes {
    static MODEL: &[u8] =
        tinyformer::include_model!("../../models/stories260K/stories260K-int8.tfm");
    ModelBytes::Static(
        MODEL,
        "the embedded stories260K model (models/stories260K/stories260K-int8.tfm)",
    )
}

/// Where and how `convert` writes a decoder: the output file, the weight precision, the
/// int8 calibration text and the context length (default: the source's).
pub struct DecoderTarget<'a> {
    pub output: &'a Path,
    pub precision: Precision,
    pub calibration: Option<&'a Path>,
    pub max_seq: Option<u32>,
}

/// `convert` for a llama2.c checkpoint and its `tokenizer.bin`.
pub fn cmd_convert_llama2c(
    checkpoint: &Path,
    tokenizer: Option<&Path>,
    target: &DecoderTarget<'_>,
) -> Result<()> {
    let tokenizer = tokenizer.ok_or_else(|| {
        anyhow!(
            "{}: a llama2.c checkpoint needs --tokenizer <tokenizer.bin>",
            checkpoint.display()
        )
    })?;
    let ckpt = crate::llama2c::read_llama2c(checkpoint)?;
    let section =
        crate::llama2c_tokenizer::section_from_file(tokenizer, ckpt.config.vocab_size as usize)?;
    let inputs = [checkpoint.to_path_buf(), tokenizer.to_path_buf()];
    convert_decoder(&ckpt, &section, &inputs, target)
}

/// `convert` for a Llama GGUF file (weights, hyperparameters and vocabulary in one).
pub fn cmd_convert_gguf(path: &Path, target: &DecoderTarget<'_>) -> Result<()> {
    let file = crate::gguf::GgufFile::open(path)?;
    let gguf = file.parse()?;
    let named = |e: anyhow::Error| e.context(format!("{}", path.display()));
    let src = crate::gguf_llama::GgufLlama::from_gguf(&gguf).map_err(named)?;
    let section = crate::gguf_llama::tokenizer_section(&gguf).map_err(named)?;
    let inputs = [path.to_path_buf()];
    convert_decoder(&src, &section, &inputs, target)
}

/// `convert` for a Hugging Face `LlamaForCausalLM` directory.
pub fn cmd_convert_hf_llama(dir: &Path, target: &DecoderTarget<'_>) -> Result<()> {
    let src = crate::hf_llama::HfLlama::from_dir(dir)?;
    let section = crate::hf_llama::tokenizer_section(dir)?;
    let inputs = ["config.json", "model.safetensors", "tokenizer.json"].map(|f| dir.join(f));
    convert_decoder(&src, &section, &inputs, target)
}

/// Converts a decoder source with its tokenizer section, writes it atomically and
/// re-validates the output; int8 calibrates on `calibration`'s non-empty lines (one
/// sample each, BOS first), tokenized by the model's own tokenizer.
fn convert_decoder(
    src: &dyn LlamaSource,
    section: &[u8],
    inputs: &[std::path::PathBuf],
    target: &DecoderTarget<'_>,
) -> Result<()> {
    let DecoderTarget {
        output,
        precision,
        calibration,
        max_seq,
    } = *target;
    let sequences = match calibration {
        Some(path) => {
            let float = crate::decoder::convert_float(src, section, false, max_seq)?;
            let buf = AlignedBuf::from_bytes(&float);
            let model = Decoder::from_bytes(buf.as_bytes()).map_err(|e| anyhow!("{e}"))?;
            let max = model.config().max_seq as usize;
            let encoder = TextEncoder::new(&model)?;
            let mut out = Vec::new();
            for (n, line) in read_lines(path)?.into_iter().enumerate() {
                let line = line.map_err(|e| anyhow!("{}: line {}: {e}", path.display(), n + 1))?;
                if line.trim().is_empty() {
                    continue;
                }
                let mut ids = encoder.encode(&line, true)?;
                ids.truncate(max);
                out.push(ids);
            }
            if out.is_empty() {
                bail!("{}: no non-empty lines to calibrate on", path.display());
            }
            Some(out)
        }
        None => None,
    };
    let bytes =
        crate::decoder::convert(src, section, precision, max_seq, sequences.as_deref(), true)?;
    crate::convert::write_checked(output, &bytes, inputs, precision)
}

/// `tokenize` on a decoder: ids as the model's own tokenizer gives them (BOS first
/// where the vocabulary adds it).
pub fn cmd_tokenize_decoder(
    bytes: &ModelBytes,
    texts: &[String],
    special_tokens: bool,
    json: bool,
) -> Result<()> {
    let model = bytes.decoder()?;
    let encoder = TextEncoder::new(&model)?;
    let tok = &encoder.tok;
    // An empty text is BOS alone, as an empty prompt of `generate`.
    let inputs = crate::run::read_texts(texts)?;
    crate::run::for_each_text(&inputs, json, true, |_, text| {
        let ids = encoder.encode(text, special_tokens)?;
        if json {
            let record = crate::encoder::TokensRecord { ids: &ids, text };
            return Ok(serde_json::to_string(&record)?);
        }
        let pieces: Vec<String> = ids
            .iter()
            .map(|&id| String::from_utf8_lossy(tok.piece(id).unwrap_or(b"?")).into_owned())
            .collect();
        let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
        Ok(format!("{}\t{}", ids.join(" "), pieces.join("|")))
    })
}

/// `generate`: one generation per prompt, streamed in human mode.
pub fn cmd_generate(
    bytes: &ModelBytes,
    prompts: &[String],
    options: &GenerateOptions,
    ctx: Option<usize>,
    json: bool,
) -> Result<()> {
    let model = bytes.decoder()?;
    let encoder = TextEncoder::new(&model)?;
    let chat = options
        .chat
        .then(|| ChatMl::of(&encoder.tok, &bytes.name()))
        .transpose()?;
    let mut runner = DecoderRunner::new(model, ctx)?;
    // No prompt arguments: standard input lines (one that is not UTF-8 is reported and
    // skipped), or the empty prompt (BOS alone) when standard input is a terminal or empty.
    let bos_alone = || crate::run::arg_texts(&[String::new()]);
    let prompts = if !prompts.is_empty() {
        crate::run::arg_texts(prompts)
    } else if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        bos_alone()
    } else {
        let mut input = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut input)
            .context("reading standard input")?;
        if input.is_empty() {
            bos_alone()
        } else {
            crate::run::stdin_texts(&input)?
        }
    };
    let mut failures = crate::run::Failures::default();
    for input in &prompts {
        let prompt = match &input.text {
            Ok(prompt) => prompt,
            Err(e) => {
                failures.report(
                    input,
                    &anyhow!("{e}"),
                    json.then_some(crate::run::InputKey::Prompt),
                )?;
                continue;
            }
        };
        let prompt_ids = match chat {
            Some(chat) => encoder.encode(&chat.wrap(prompt), true)?,
            None => encoder.encode(prompt, options.special_tokens)?,
        };
        if !json {
            // The continuation follows the prompt as written.
            write!(std::io::stdout().lock(), "{prompt}")?;
        }
        let mut text = String::new();
        let (ids, stop) = generate(&mut runner, &prompt_ids, options, |_, piece| {
            text.push_str(piece);
            if !json {
                let mut stdout = std::io::stdout().lock();
                write!(stdout, "{piece}")?;
                stdout.flush()?;
            }
            Ok(())
        })?;
        if stop == Stop::ContextFull {
            eprintln!(
                "warning: generation stopped at the end of the {}-token context",
                runner.plan.ctx
            );
        }
        let mut stdout = std::io::stdout().lock();
        if json {
            let record = GenerationRecord {
                ids: &ids,
                prompt,
                prompt_ids: &prompt_ids,
                text: &text,
            };
            writeln!(stdout, "{}", serde_json::to_string(&record)?)?;
        } else {
            writeln!(stdout)?;
        }
        failures.ok();
    }
    failures.finish()
}

// The JSON records declare their fields in alphabetical order: the key order the
// output has always had.

/// A `generate --json` line.
#[derive(Debug, Serialize)]
pub struct GenerationRecord<'a> {
    /// The generated ids (the stop token excluded).
    pub ids: &'a [u32],
    pub prompt: &'a str,
    /// The prompt's ids, BOS first.
    pub prompt_ids: &'a [u32],
    /// The generated text.
    pub text: &'a str,
}

/// A `score --json` line: one scored line of the data file.
#[derive(Debug, Serialize)]
pub struct ScoredLineRecord<'a> {
    /// The model's top prediction at positions `0..n - 1`.
    pub argmax: &'a [u32],
    /// The line's ids, BOS first (cut to the context).
    pub ids: &'a [u32],
    /// Natural-log loss summed over the scored tokens.
    pub nll: f64,
    pub text: &'a str,
    /// Tokens scored.
    pub tokens: usize,
}

/// The last `score --json` line.
#[derive(Debug, Serialize)]
pub struct ScoreSummaryRecord {
    /// With `--compare`: the compare model's perplexity on the same tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compare_perplexity: Option<f64>,
    pub lines: usize,
    /// With `--compare`: mean `KL(P_compare || P_model)` per position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_kl: Option<f64>,
    /// `nll / tokens` (`null` when no token was scored).
    pub mean_nll: f64,
    /// With `--compare`: positions where the compare model's top logit leads its
    /// runner-up by at least `--margin`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confident_positions: Option<usize>,
    pub nll: f64,
    pub perplexity: f64,
    /// Always `true`: tells the summary from the lines.
    pub summary: bool,
    pub tokens: usize,
    /// With `--compare`: share of positions where both models' top token agrees.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top1_agreement: Option<f64>,
    /// With `--compare`: top-1 agreement over the confident positions (0 when there
    /// are none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top1_agreement_confident: Option<f64>,
}

/// `score`: teacher-forced loss per line and perplexity (and agreement/KL against a
/// reference model; `margin` picks the positions where the reference is confident).
pub fn cmd_score(
    path: &Path,
    data: &Path,
    compare: Option<&Path>,
    margin: f64,
    special_tokens: bool,
    json: bool,
) -> Result<()> {
    if !(margin.is_finite() && margin >= 0.0) {
        bail!("--margin {margin}: must be a finite number >= 0");
    }
    let bytes = ModelBytes::open(path)?;
    let mut runner = DecoderRunner::new(bytes.decoder()?, None)?;
    let encoder = TextEncoder::new(&runner.model)?;
    let other_bytes = compare.map(ModelBytes::open).transpose()?;
    let mut other = match &other_bytes {
        Some(b) => Some(DecoderRunner::new(b.decoder()?, None)?),
        None => None,
    };
    if let Some(o) = &other {
        if o.model.config().vocab_size != runner.model.config().vocab_size {
            bail!("--compare: the two models have different vocabularies");
        }
    }
    let mut stdout = std::io::stdout().lock();
    let (mut nll, mut tokens, mut agree, mut kl, mut lines) = (0.0, 0usize, 0usize, 0.0, 0usize);
    let (mut confident, mut agree_confident, mut compare_nll) = (0usize, 0usize, 0.0);
    let mut failed = 0usize;
    for (n, line) in read_lines(data)?.into_iter().enumerate() {
        let text = match line {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {}: line {}: {e}; skipped", data.display(), n + 1);
                failed += 1;
                continue;
            }
        };
        if text.trim().is_empty() {
            continue;
        }
        let mut ids = encoder.encode(&text, special_tokens)?;
        if ids.len() > runner.plan.ctx {
            eprintln!(
                "warning: {}: line {}: {} tokens, scored over the first {} (the context)",
                data.display(),
                n + 1,
                ids.len(),
                runner.plan.ctx
            );
            ids.truncate(runner.plan.ctx);
        }
        let s = score(&mut runner, other.as_mut(), &ids, margin)?;
        nll += s.nll;
        tokens += s.tokens;
        agree += s.agree;
        confident += s.confident;
        agree_confident += s.agree_confident;
        compare_nll += s.compare_nll;
        kl += s.kl;
        lines += 1;
        if json {
            let record = ScoredLineRecord {
                argmax: &s.argmax,
                ids: &ids,
                nll: s.nll,
                text: &text,
                tokens: s.tokens,
            };
            writeln!(stdout, "{}", serde_json::to_string(&record)?)?;
        } else {
            let per_token = if s.tokens > 0 {
                s.nll / s.tokens as f64
            } else {
                0.0
            };
            writeln!(
                stdout,
                "{:>9.3}\t{:>4}\t{:.3}\t{text}",
                s.nll, s.tokens, per_token
            )?;
        }
    }
    let mean = if tokens > 0 {
        nll / tokens as f64
    } else {
        f64::NAN
    };
    let compared = other.is_some();
    let agreement_confident = agree_confident as f64 / confident.max(1) as f64;
    let compare_perplexity = (compare_nll / tokens as f64).exp();
    if json {
        let summary = ScoreSummaryRecord {
            compare_perplexity: compared.then_some(compare_perplexity),
            lines,
            mean_kl: compared.then(|| kl / tokens.max(1) as f64),
            mean_nll: mean,
            confident_positions: compared.then_some(confident),
            nll,
            perplexity: mean.exp(),
            summary: true,
            tokens,
            top1_agreement: compared.then(|| agree as f64 / tokens.max(1) as f64),
            top1_agreement_confident: compared.then_some(agreement_confident),
        };
        writeln!(stdout, "{}", serde_json::to_string(&summary)?)?;
    } else {
        write!(
            stdout,
            "{lines} lines, {tokens} tokens: perplexity {:.4} (mean loss {:.4} nats)",
            mean.exp(),
            mean
        )?;
        if compared {
            write!(
                stdout,
                " against {compare_perplexity:.4}, top-1 agreement {:.4} ({:.4} at the \
                 {confident} positions where the reference leads by >= {margin}), mean KL \
                 {:.5} nats",
                agree as f64 / tokens.max(1) as f64,
                agreement_confident,
                kl / tokens.max(1) as f64
            )?;
        }
        writeln!(stdout)?;
    }
    if failed > 0 {
        bail!("{}: {failed} line(s) could not be read", data.display());
    }
    if tokens == 0 {
        bail!(
            "{}: no line with at least two tokens to score",
            data.display()
        );
    }
    Ok(())
}
