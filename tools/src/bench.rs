//! `tinyformer bench`: single-thread forward-pass timing at fixed sequence lengths.
//!
//! For each sequence length the tool builds one fixed input (the model's own tokenization
//! of [`BENCH_TEXT`], its word pieces repeated to fill `seq` tokens between `[CLS]` and
//! `[SEP]`), sizes an arena to exactly [`tinyformer::Model::arena_bytes_batched`] for
//! `--rows` token rows per pass over the weights (int8; float models run one row at a
//! time, so their arena is [`tinyformer::Model::arena_bytes`]), runs warm-up
//! passes, then times `iters` forward passes one by one. The runtime itself is single
//! threaded, so the figures are one core's.
//!
//! The timed call is the public entry point a user calls: [`Model::forward_fixed`] for
//! int8 models (integer only, Q16.16 output), [`Model::forward`] for f32/f16 models,
//! input and arena checks included.

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};
use tinyformer::format::{Config, Pooling};
use tinyformer::{Input, Model};

use crate::run::ModelBytes;

/// The sentence whose word pieces fill the benchmark input (line 5 of
/// `tests/fixtures/sentences.txt`, so the tiny fixture vocabularies cover it too).
pub const BENCH_TEXT: &str = "The central bank raised interest rates by 0.25 percentage points \
on Wednesday, citing persistent inflation in housing and services.";

/// Default sequence lengths when no `--seq` is given.
pub const DEFAULT_SEQS: [usize; 3] = [16, 64, 128];

/// With no `--iters`, iterations are chosen so the timed part takes about this long.
const AUTO_TARGET: Duration = Duration::from_secs(1);
/// Bounds of the automatic iteration count.
const AUTO_ITERS: (usize, usize) = (5, 2000);
/// Warm-up: at least this many passes and at least [`WARMUP_TIME`].
const WARMUP_MIN_ITERS: usize = 2;
const WARMUP_TIME: Duration = Duration::from_millis(200);

/// Multiply-accumulates of one forward pass over `seq` tokens, counting the matrix
/// products only (embedding sums, LayerNorm, softmax and activations are not counted):
///
/// ```text
/// per layer:  4·seq·hidden²          Q, K, V and attention output projections
///           + 2·seq²·hidden          scores Q·Kᵀ and context P·V, all heads together
///           + 2·seq·hidden·ffn       the two FFN projections
/// once:       hidden²                BERT pooler (pooling `cls_pooler` only)
///           + hidden·num_labels      classifier head
/// ```
///
/// No mask is applied in the benchmark, so every query attends to all `seq` keys.
pub fn macs_per_inference(config: &Config, seq: usize) -> u64 {
    let (n, h, f) = (seq as u64, u64::from(config.hidden), u64::from(config.ffn));
    let per_layer = 4 * n * h * h + 2 * n * n * h + 2 * n * h * f;
    let pooler = if config.pooling == Pooling::ClsPooler {
        h * h
    } else {
        0
    };
    u64::from(config.layers) * per_layer + pooler + h * u64::from(config.num_labels)
}

/// The benchmark's token ids for `seq` tokens: `[CLS]`, the word pieces of
/// [`BENCH_TEXT`] repeated cyclically, `[SEP]` (`seq == 1` is `[CLS]` alone).
pub fn bench_ids(model: &Model<'_>, seq: usize) -> Result<Vec<u32>> {
    let max_seq = model.config().max_seq as usize;
    if seq == 0 || seq > max_seq {
        bail!("--seq {seq}: must be between 1 and the model's max_seq {max_seq}");
    }
    let tokens = crate::run::tokenize(model, BENCH_TEXT)?;
    let ids = &tokens.ids;
    // The tokenizer always emits [CLS] ... [SEP]; the pieces are what lies between.
    let (Some(&cls), Some(&sep)) = (ids.first(), ids.last()) else {
        bail!("the model's tokenizer produced no tokens for the benchmark text");
    };
    let pieces = ids.get(1..ids.len().saturating_sub(1)).unwrap_or(&[]);
    let mut out = Vec::with_capacity(seq);
    out.push(cls);
    if seq >= 2 {
        if pieces.is_empty() {
            bail!("the model's tokenizer produced no word pieces for the benchmark text");
        }
        out.extend(pieces.iter().cycle().take(seq - 2));
        out.push(sep);
    }
    Ok(out)
}

/// Timing of one sequence length (also the `--json` line, JSON Lines).
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// Model file.
    pub model: String,
    /// Weight precision as `convert --dtype` names it: `int8`, `f16` or `f32`.
    pub dtype: &'static str,
    /// Tokens per inference.
    pub seq: usize,
    /// Timed forward passes.
    pub iters: usize,
    /// Untimed warm-up passes before them.
    pub warmup: usize,
    /// Threads of the forward pass (`--threads`; int8 models split each batch of rows,
    /// float models run on the calling thread).
    pub threads: usize,
    /// Median wall time of one forward pass, milliseconds.
    pub median_ms: f64,
    /// Fastest forward pass, milliseconds.
    pub min_ms: f64,
    /// Mean, milliseconds.
    pub mean_ms: f64,
    /// `1000 / median_ms`.
    pub inferences_per_s: f64,
    /// [`macs_per_inference`].
    pub macs: u64,
    /// `macs / median` in 10⁹ per second.
    pub gmac_per_s: f64,
    /// Token rows per pass over the weights (see [`tinyformer::model::Plan`]).
    pub rows: usize,
    /// Arena bytes the pass used: exactly the plan's total for `seq` and `rows`.
    pub arena_bytes: usize,
    /// The input token ids (so other runtimes can be timed on the same input).
    pub ids: Vec<u32>,
}

/// Times the forward pass of `model` on [`bench_ids`]`(seq)`. `iters: None` picks a
/// count that takes about one second.
pub fn bench_seq(
    model: &Model<'_>,
    name: &str,
    seq: usize,
    iters: Option<usize>,
    rows: usize,
) -> Result<BenchResult> {
    let config = *model.config();
    let ids = bench_ids(model, seq)?;
    let plan = tinyformer::model::Plan::batched(&config, seq, rows).map_err(|e| anyhow!("{e}"))?;
    let arena_bytes = plan.total_bytes();
    // u128 elements: the arena must be 16-byte aligned.
    let mut arena = vec![0u128; arena_bytes.div_ceil(16)];
    let arena: &mut [u8] = &mut bytemuck::cast_slice_mut(&mut arena)[..arena_bytes];
    let mut fixed = vec![0i32; config.output_len()];
    let mut float = vec![0f32; config.output_len()];
    let input = Input::new(&ids);
    let mut pass = || -> Result<Duration> {
        let start = Instant::now();
        if config.is_int8() {
            model.forward_fixed(input, arena, &mut fixed)
        } else {
            model.forward(input, arena, &mut float)
        }
        .map_err(|e| anyhow!("forward pass at seq {seq}: {e}"))?;
        let elapsed = start.elapsed();
        std::hint::black_box((&fixed, &float));
        Ok(elapsed)
    };

    let (mut warmup, mut warm_time) = (0usize, Duration::ZERO);
    while warmup < WARMUP_MIN_ITERS || warm_time < WARMUP_TIME {
        warm_time += pass()?;
        warmup += 1;
    }
    let iters = match iters {
        Some(n) => n,
        None => {
            let per_pass = warm_time.as_secs_f64() / warmup as f64;
            let n = (AUTO_TARGET.as_secs_f64() / per_pass.max(1e-9)) as usize;
            n.clamp(AUTO_ITERS.0, AUTO_ITERS.1)
        }
    };
    let mut times_ms = Vec::with_capacity(iters);
    for _ in 0..iters {
        times_ms.push(pass()?.as_secs_f64() * 1e3);
    }
    times_ms.sort_by(f64::total_cmp);
    let median_ms = median(&times_ms);
    let macs = macs_per_inference(&config, seq);
    Ok(BenchResult {
        model: name.to_string(),
        dtype: dtype_name(&config),
        seq,
        iters,
        warmup,
        threads: encoder_threads(model),
        median_ms,
        min_ms: times_ms.first().copied().unwrap_or(0.0),
        mean_ms: times_ms.iter().sum::<f64>() / iters as f64,
        inferences_per_s: 1e3 / median_ms,
        macs,
        gmac_per_s: macs as f64 / (median_ms * 1e-3) / 1e9,
        rows: plan.rows,
        arena_bytes,
        ids,
    })
}

/// The precision as `convert --dtype` names it.
/// Threads the forward pass runs on: the model's for int8, one for float models.
fn encoder_threads(model: &Model<'_>) -> usize {
    if model.config().is_int8() {
        model.threads()
    } else {
        1
    }
}

fn dtype_name(config: &Config) -> &'static str {
    if config.is_int8() {
        "int8"
    } else {
        config.weight_dtype.name()
    }
}

/// Median of sorted values (mean of the middle two for an even count).
fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The `bench` subcommand: times each of `seqs` and prints a table or JSON Lines.
pub fn cmd_bench(
    path: &Path,
    seqs: &[usize],
    iters: Option<usize>,
    rows: usize,
    json: bool,
) -> Result<()> {
    use std::io::Write as _;
    if iters == Some(0) {
        bail!("--iters must be at least 1");
    }
    let bytes = ModelBytes::open(path)?;
    let model = bytes.model()?;
    let name = bytes.name();
    let seqs: Vec<usize> = if seqs.is_empty() {
        let max = model.config().max_seq as usize;
        DEFAULT_SEQS.iter().copied().filter(|&s| s <= max).collect()
    } else {
        seqs.to_vec()
    };
    // Check every length before spending time on any.
    for &seq in &seqs {
        bench_ids(&model, seq).with_context(|| name.clone())?;
    }
    let mut stdout = std::io::stdout().lock();
    if !json {
        let c = model.config();
        writeln!(
            stdout,
            "{name}: {} weights, {} layers, hidden {}, ffn {}, {} thread{}",
            dtype_name(c),
            c.layers,
            c.hidden,
            c.ffn,
            encoder_threads(&model),
            if encoder_threads(&model) == 1 {
                ""
            } else {
                "s"
            }
        )?;
        writeln!(
            stdout,
            "{:>5} {:>6} {:>11} {:>9} {:>9} {:>10} {:>8} {:>5} {:>11}",
            "seq", "iters", "median ms", "min ms", "inf/s", "MMAC", "GMAC/s", "rows", "arena B"
        )?;
    }
    for &seq in &seqs {
        let r = bench_seq(&model, &name, seq, iters, rows)?;
        if json {
            writeln!(stdout, "{}", serde_json::to_string(&r)?)?;
        } else {
            writeln!(
                stdout,
                "{:>5} {:>6} {:>11.3} {:>9.3} {:>9.1} {:>10.2} {:>8.2} {:>5} {:>11}",
                r.seq,
                r.iters,
                r.median_ms,
                r.min_ms,
                r.inferences_per_s,
                r.macs as f64 / 1e6,
                r.gmac_per_s,
                r.rows,
                r.arena_bytes
            )?;
        }
        stdout.flush()?;
    }
    Ok(())
}

/// The text whose tokens fill a decoder benchmark's prompt (a sentence of our own,
/// repeated to the prompt length).
pub const DECODER_BENCH_TEXT: &str =
    "Once upon a time, a little fox found a shiny red ball in the tall grass.";

/// Decoder throughput (prefill on the decoder's threads, decoding on one).
#[derive(Debug, Serialize)]
pub struct DecoderBenchResult {
    pub model: String,
    pub dtype: &'static str,
    /// Context the state was made for.
    pub ctx: usize,
    /// Prompt tokens per prefill (BOS first).
    pub prompt_tokens: usize,
    /// Tokens generated per decode run (greedy, after a BOS-only prompt).
    pub decode_tokens: usize,
    pub rounds: usize,
    /// Threads of the prefill's projections ([`tinyformer::Decoder::with_threads`]).
    pub threads: usize,
    /// Median over rounds of prompt tokens per second.
    pub prefill_tokens_per_s: f64,
    /// Median over rounds of generated tokens per second (the logits of every step
    /// and the argmax included).
    pub decode_tokens_per_s: f64,
    /// Prompt tokens per prefill block (int8: each weight matrix read once per block).
    pub prefill_rows: usize,
    /// Arena bytes of the state (cache plus the scratch of one prefill block).
    pub arena_bytes: usize,
}

/// Times prefill of a `prompt`-token prompt and greedy decoding of `steps` tokens,
/// `rounds` times each, at context `ctx`.
pub fn bench_decoder(
    model: &tinyformer::Decoder<'_>,
    name: &str,
    ctx: usize,
    prompt: usize,
    steps: usize,
    rounds: usize,
) -> Result<DecoderBenchResult> {
    use crate::generate::{argmax, logits_f64, DecoderRunner};
    if prompt == 0 || prompt > ctx || steps == 0 || steps >= ctx {
        bail!("need 0 < prompt <= ctx ({ctx}) and 0 < steps < ctx");
    }
    let text_ids = crate::generate::encode(model, DECODER_BENCH_TEXT, true)?;
    let mut ids = vec![model.params().bos_id];
    ids.extend(text_ids.iter().skip(1).cycle().take(prompt - 1));
    let mut runner = DecoderRunner::new(*model, Some(ctx))?;
    let arena_bytes = runner.plan.total_bytes();
    let (mut prefill, mut decode) = (Vec::new(), Vec::new());
    for _ in 0..rounds.max(1) + 1 {
        let mut state = runner.state()?;
        let start = Instant::now();
        std::hint::black_box(state.prefill(&ids).map_err(|e| anyhow!("{e}"))?);
        prefill.push(prompt as f64 / start.elapsed().as_secs_f64());
        state.reset();
        let start = Instant::now();
        let mut token = model.params().bos_id;
        for _ in 0..steps {
            token = argmax(&logits_f64(state.step(token).map_err(|e| anyhow!("{e}"))?));
        }
        std::hint::black_box(token);
        decode.push(steps as f64 / start.elapsed().as_secs_f64());
    }
    // The first round warms caches and is dropped.
    prefill.remove(0);
    decode.remove(0);
    prefill.sort_by(f64::total_cmp);
    decode.sort_by(f64::total_cmp);
    Ok(DecoderBenchResult {
        model: name.to_string(),
        dtype: dtype_name(model.config()),
        ctx,
        prompt_tokens: prompt,
        decode_tokens: steps,
        rounds: prefill.len(),
        threads: model.threads(),
        prefill_tokens_per_s: median(&prefill),
        decode_tokens_per_s: median(&decode),
        prefill_rows: runner.plan.rows,
        arena_bytes,
    })
}

/// The `bench` subcommand on a decoder: prefill and decode tokens per second.
pub fn cmd_bench_decoder(
    bytes: &ModelBytes,
    ctx: Option<usize>,
    prompt: usize,
    steps: usize,
    rounds: usize,
    json: bool,
) -> Result<()> {
    use std::io::Write as _;
    let model = bytes.decoder()?;
    let ctx = ctx.unwrap_or(model.config().max_seq as usize);
    let r = bench_decoder(&model, &bytes.name(), ctx, prompt, steps, rounds)?;
    let mut stdout = std::io::stdout().lock();
    if json {
        writeln!(stdout, "{}", serde_json::to_string(&r)?)?;
    } else {
        writeln!(
            stdout,
            "{}: {} decoder, context {}, arena {} bytes, median of {} rounds\n\
             prefill {:>10.1} tokens/s ({} prompt tokens, blocks of {}, {} thread{})\n\
             decode  {:>10.1} tokens/s ({} tokens, greedy, 1 thread)",
            r.model,
            r.dtype,
            r.ctx,
            r.arena_bytes,
            r.rounds,
            r.prefill_tokens_per_s,
            r.prompt_tokens,
            r.prefill_rows,
            r.threads,
            if r.threads == 1 { "" } else { "s" },
            r.decode_tokens_per_s,
            r.decode_tokens
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[1.0, 2.0, 9.0]), 2.0);
        assert_eq!(median(&[1.0, 2.0, 4.0, 9.0]), 3.0);
    }
}
