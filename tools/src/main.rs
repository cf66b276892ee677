//! `tinyformer`: convert, inspect and run tinyformer models on a host.
//!
//! Human-readable output by default; `--json` prints JSON Lines (one object per input
//! text, in input order). Errors go to stderr naming the file and field; the exit code
//! is 0 only on success. An input text that cannot be used (empty, a line of standard
//! input that is not UTF-8) is reported and skipped, the others are processed, and the
//! exit code is then 1 (`run::for_each_text`).

use anyhow::{anyhow, bail, Result};
use clap::{Parser, Subcommand};
use serde_json::json;
use std::path::{Path, PathBuf};
use tinyformer::format::tensor_spec;
use tinyformer_cli::checkpoint::Checkpoint;
use tinyformer_cli::convert::{convert, write_atomically, Options, Precision};
use tinyformer_cli::run::{
    argmax, for_each_text, read_lines, read_texts, tokenize, tokenize_input, ModelBytes, Runner,
};

/// `println!` that returns the write error instead of panicking (a closed pipe, as with
/// `| head`, ends the program quietly).
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($t)*)?;
    }};
}

#[derive(Parser)]
#[command(
    name = "tinyformer",
    version,
    about = "Convert, inspect and run tinyformer models",
    after_help = "Texts of tokenize, embed and classify, and prompts of generate, come as \
arguments, or on standard input one per line when there are none. A text that cannot \
be used (a line of standard input that is not valid UTF-8; for encoder models also an \
empty or whitespace-only text, or one the model cannot run) is reported on stderr \
with its number (`text 2`, `standard input line 2`) and skipped; the others are \
processed and the exit code is then 1. A text whose word pieces are all [UNK] gets a \
warning. Exit code 0 only on success."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Convert a checkpoint to a tinyformer model file: a Hugging Face BERT directory
    /// (encoder) or a llama2.c checkpoint file with --tokenizer (decoder).
    Convert {
        /// Directory with config.json, model.safetensors and vocab.txt (or
        /// tokenizer.json), or a llama2.c `.bin` checkpoint.
        model_dir: PathBuf,
        /// llama2.c tokenizer file (`tokenizer.bin`) for a llama2.c checkpoint.
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        /// Output model file (written atomically).
        #[arg(short, long)]
        output: PathBuf,
        /// Weight precision [default: int8, which needs --calibration; without it,
        /// choose f16 or f32].
        #[arg(long, value_enum)]
        dtype: Option<Precision>,
        /// Text file for int8 calibration: real text like the model's inputs, one
        /// sample per line (required for int8, unused by f16 and f32).
        #[arg(long)]
        calibration: Option<PathBuf>,
        /// Longest sequence the model accepts, tokens incl. [CLS]/[SEP].
        #[arg(long)]
        max_seq: Option<u32>,
        /// int8: error-compensating weight rounding (GPTQ) and bias correction from
        /// the calibration inputs' moments; recommended for real pretrained encoders.
        #[arg(long)]
        compensate_rounding: bool,
        /// int8 encoders: store this many golden cases (the first calibration texts
        /// and their exact outputs) in the file's self-test section, which
        /// `Model::self_test` reruns on the device; 0 for none.
        #[arg(long, default_value_t = 2)]
        self_test: usize,
    },
    /// Run a model file's self-test (its golden cases, compared bit for bit), or with
    /// --add, write a copy of the file with a self-test section for the given texts.
    SelfTest {
        file: PathBuf,
        /// Text file, one golden case per line: write a copy of FILE (which must have
        /// no self-test section) with these texts and their outputs to --output.
        #[arg(long, requires = "output")]
        add: Option<PathBuf>,
        /// Output model file for --add (written atomically).
        #[arg(short, long, requires = "add")]
        output: Option<PathBuf>,
    },
    /// Show a model file's config, tensors, sizes, checksum and memory plan.
    Inspect {
        file: PathBuf,
        /// Sequence length for the memory plan (default: the model's max).
        #[arg(long)]
        seq: Option<usize>,
        /// Token rows per pass over the weights in the plan (int8; 1 is the smallest
        /// arena, up to 8 trade memory for speed).
        #[arg(long, default_value_t = 1)]
        rows: usize,
        /// Print one JSON object (config, tensors, memory plan) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Generate text with a decoder model (streams to stdout as tokens come).
    Generate {
        /// Decoder model file (default: the bundled int8 stories260K model).
        #[arg(short, long)]
        model: Option<PathBuf>,
        /// Prompts, one generation each (standard input lines if none; an empty
        /// prompt starts from BOS alone).
        prompts: Vec<String>,
        /// Tokens to generate at most per prompt.
        #[arg(short = 'n', long, default_value_t = 256)]
        max_tokens: usize,
        /// Sampling temperature; 0 is greedy (argmax).
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        /// Sample among the K most likely tokens only (0: all).
        #[arg(long, default_value_t = 0)]
        top_k: u32,
        /// Nucleus sampling: the smallest set of tokens with probability >= P (1: off).
        #[arg(long, default_value_t = 1.0)]
        top_p: f32,
        /// Seed of the sampler's integer PRNG (same seed, same tokens on host and
        /// device for int8 models).
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Context length of the state (default: the model's max_seq).
        #[arg(long)]
        ctx: Option<usize>,
        /// Print JSON Lines, one object per prompt, in input order: prompt, prompt_ids,
        /// ids (generated only), text (a prompt that fails: prompt and error).
        #[arg(long)]
        json: bool,
    },
    /// Teacher-forced evaluation of a decoder on a text file (one sample per line):
    /// loss per line, then perplexity (and agreement/KL against --compare).
    Score {
        #[arg(short, long)]
        model: PathBuf,
        #[arg(long)]
        data: PathBuf,
        /// A reference model scored alongside: top-1 agreement and mean
        /// KL(P_compare || P_model) per position.
        #[arg(long)]
        compare: Option<PathBuf>,
        /// Print JSON Lines, one object per scored line in input order (text, ids,
        /// nll, tokens, argmax), then a summary object.
        #[arg(long)]
        json: bool,
    },
    /// Print the token ids the device would see (and the word pieces).
    Tokenize {
        /// Model file, encoder or decoder (default: the model embedded in this
        /// binary, as for classify).
        #[arg(short, long)]
        model: Option<PathBuf>,
        /// Texts (standard input lines if none). Encoders: an empty or whitespace-only
        /// text is an error for that text; decoders accept it (BOS alone, as generate).
        texts: Vec<String>,
        /// Print JSON Lines, one object per input, in input order: text, ids (a text
        /// that fails: text and error).
        #[arg(long)]
        json: bool,
    },
    /// Print the pooled embedding (or the logits of a classifier).
    Embed {
        #[arg(short, long)]
        model: PathBuf,
        /// Texts (standard input lines if none); with --ids, comma-separated token ids.
        /// An empty or whitespace-only text is an error for that text.
        texts: Vec<String>,
        /// Inputs are token ids, e.g. `101,7592,102`.
        #[arg(long)]
        ids: bool,
        /// Print JSON Lines, one object per input, in input order: text, embedding (a
        /// text that fails: text and error).
        #[arg(long)]
        json: bool,
    },
    /// Classify texts: label and probability per text.
    Classify {
        /// Model file (default: the model embedded in this binary).
        #[arg(short, long)]
        model: Option<PathBuf>,
        /// Texts (standard input lines if none); with --ids, comma-separated token ids.
        /// An empty or whitespace-only text is an error for that text.
        texts: Vec<String>,
        /// Inputs are token ids, e.g. `101,7592,102`.
        #[arg(long)]
        ids: bool,
        /// Print JSON Lines, one object per input, in input order: text, label, score,
        /// scores (a text that fails: text and error).
        #[arg(long)]
        json: bool,
    },
    /// Evaluate a classifier on a labelled TSV file (`label<TAB>text` per line; blank
    /// lines are skipped; a line with an empty text or invalid UTF-8 is reported and
    /// skipped, and the exit code is then 1).
    Eval {
        #[arg(short, long)]
        model: PathBuf,
        #[arg(long)]
        data: PathBuf,
        /// Another model to measure label agreement with.
        #[arg(long)]
        compare: Option<PathBuf>,
        /// Print one JSON object (accuracy, per-class scores, confusion) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Time the forward pass (one thread) at fixed sequence lengths.
    Bench {
        #[arg(short, long)]
        model: PathBuf,
        /// Sequence length in tokens, repeatable (default: 16, 64, 128 up to max_seq).
        #[arg(long)]
        seq: Vec<usize>,
        /// Timed passes per length (default: about one second's worth).
        #[arg(long)]
        iters: Option<usize>,
        /// Token rows per pass over the weights (int8 models; float models run one row
        /// at a time): 1 is the smallest arena (`Model::arena_bytes`).
        #[arg(long, default_value_t = tinyformer::model::MAX_BATCH_ROWS)]
        rows: usize,
        /// Decoders: context length (default: the model's max_seq).
        #[arg(long)]
        ctx: Option<usize>,
        /// Decoders: prompt tokens per timed prefill.
        #[arg(long, default_value_t = 128)]
        prompt: usize,
        /// Decoders: tokens per timed greedy decode.
        #[arg(long, default_value_t = 255)]
        steps: usize,
        /// Decoders: timed rounds (the median is reported).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Print JSON Lines, one object per sequence length (decoders: one object).
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli.command) {
        let broken_pipe = e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        });
        if broken_pipe {
            return;
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Convert {
            model_dir,
            tokenizer,
            output,
            dtype,
            calibration,
            max_seq,
            compensate_rounding,
            self_test,
        } => {
            let dtype = convert_dtype(dtype, calibration.as_deref())?;
            let calibration = calibration.filter(|_| dtype == Precision::Int8);
            if model_dir.is_file() {
                tinyformer_cli::generate::cmd_convert_llama2c(
                    &model_dir,
                    tokenizer.as_deref(),
                    &output,
                    dtype,
                    calibration.as_deref(),
                    max_seq,
                )
            } else {
                if tokenizer.is_some() {
                    bail!("--tokenizer is for llama2.c checkpoints (a .bin file), not a directory");
                }
                cmd_convert(
                    &model_dir,
                    &output,
                    dtype,
                    calibration.as_deref(),
                    max_seq,
                    compensate_rounding,
                    self_test,
                )
            }
        }
        Command::Generate {
            model,
            prompts,
            max_tokens,
            temperature,
            top_k,
            top_p,
            seed,
            ctx,
            json,
        } => {
            let bytes = match model {
                Some(path) => ModelBytes::open(&path)?,
                None => tinyformer_cli::generate::default_decoder(),
            };
            let options = tinyformer_cli::generate::GenerateOptions {
                max_new: max_tokens,
                temperature,
                top_k,
                top_p,
                seed,
            };
            tinyformer_cli::generate::cmd_generate(&bytes, &prompts, &options, ctx, json)
        }
        Command::Score {
            model,
            data,
            compare,
            json,
        } => tinyformer_cli::generate::cmd_score(&model, &data, compare.as_deref(), json),
        Command::SelfTest { file, add, output } => match (add, output) {
            (Some(texts), Some(output)) => {
                let bytes = ModelBytes::open(&file)?;
                let model = bytes.model()?;
                let mut sequences = Vec::new();
                for (n, line) in read_lines(&texts)?.into_iter().enumerate() {
                    let line =
                        line.map_err(|e| anyhow!("{}: line {}: {e}", texts.display(), n + 1))?;
                    if !line.trim().is_empty() {
                        sequences.push(tokenize(&model, &line)?.ids);
                    }
                }
                let with = tinyformer_cli::convert::add_self_test(bytes.bytes(), &sequences)?;
                write_atomically(&output, &with, std::slice::from_ref(&file))?;
                let written = ModelBytes::open(&output)?;
                let model = written.model()?;
                let cases = tinyformer_cli::run::self_test(&model)?;
                eprintln!(
                    "wrote {} ({} bytes, {cases} self-test cases, self-test ok)",
                    output.display(),
                    with.len(),
                );
                Ok(())
            }
            _ => {
                let bytes = ModelBytes::open(&file)?;
                let model = bytes.model()?;
                let cases = tinyformer_cli::run::self_test(&model)
                    .map_err(|e| anyhow!("{}: self-test failed: {e}", file.display()))?;
                println!("self-test ok: {cases} cases");
                Ok(())
            }
        },
        Command::Inspect {
            file,
            seq,
            rows,
            json,
        } => cmd_inspect(&file, seq, rows, json),
        Command::Tokenize { model, texts, json } => {
            let bytes = match model {
                Some(path) => ModelBytes::open(&path)?,
                None => tinyformer_cli::run::default_model(),
            };
            cmd_tokenize(&bytes, &texts, json)
        }
        Command::Embed {
            model,
            texts,
            ids,
            json,
        } => cmd_run(&ModelBytes::open(&model)?, &texts, ids, json, false),
        Command::Classify {
            model,
            texts,
            ids,
            json,
        } => {
            let bytes = match model {
                Some(path) => ModelBytes::open(&path)?,
                None => tinyformer_cli::run::default_model(),
            };
            cmd_run(&bytes, &texts, ids, json, true)
        }
        Command::Eval {
            model,
            data,
            compare,
            json,
        } => cmd_eval(&model, &data, compare.as_deref(), json),
        Command::Bench {
            model,
            seq,
            iters,
            rows,
            ctx,
            prompt,
            steps,
            rounds,
            json,
        } => {
            let bytes = ModelBytes::open(&model)?;
            if bytes.is_decoder()? {
                tinyformer_cli::bench::cmd_bench_decoder(&bytes, ctx, prompt, steps, rounds, json)
            } else {
                tinyformer_cli::bench::cmd_bench(&model, &seq, iters, rows, json)
            }
        }
    }
}

/// `--dtype` defaults to int8, which is what a microcontroller wants but needs
/// calibration text to set the activation scales. Without `--calibration` the default
/// is refused with what to add (rather than quietly writing a float file four times
/// the size): the user chooses between calibrating and a float dtype. A calibration
/// file with a float dtype is unused, and said so.
fn convert_dtype(dtype: Option<Precision>, calibration: Option<&Path>) -> Result<Precision> {
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

fn cmd_convert(
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
    write_atomically(output, &bytes, &ckpt.inputs)?;
    // Re-open what was written and validate it.
    let written = ModelBytes::open(output)?;
    let model = written.model()?;
    eprintln!(
        "wrote {} ({} bytes, {:?}, {} tensors, checksum ok)",
        output.display(),
        bytes.len(),
        precision,
        model.file().tensor_count()
    );
    Ok(())
}

/// Tokenizes the calibration text with the tokenizer the model file will carry.
fn calibration_sequences(
    ckpt: &Checkpoint,
    path: &Path,
    max_seq: Option<u32>,
) -> Result<Vec<Vec<u32>>> {
    let lines = read_lines(path)?;
    // A float model file gives the exact tokenizer the converted file will use.
    let float = tinyformer_cli::convert::convert_float(ckpt, false, max_seq)?;
    let buf = tinyformer::format::writer::AlignedBuf::from_bytes(&float);
    let model = tinyformer::Model::from_bytes(buf.as_bytes()).map_err(|e| anyhow!("{e}"))?;
    let mut out = Vec::new();
    // Calibration sets the scales of every file written from it: a bad line stops.
    for (n, line) in lines.into_iter().enumerate() {
        let line = line.map_err(|e| anyhow!("{}: line {}: {e}", path.display(), n + 1))?;
        if !line.trim().is_empty() {
            out.push(tokenize(&model, &line)?.ids);
        }
    }
    if out.is_empty() {
        bail!("{}: no non-empty lines to calibrate on", path.display());
    }
    Ok(out)
}

/// One buffer of a memory plan, for printing.
struct PlanRow {
    name: &'static str,
    phase: &'static str,
    offset: usize,
    bytes: usize,
}

fn cmd_inspect(path: &Path, seq: Option<usize>, rows: usize, json: bool) -> Result<()> {
    let bytes = ModelBytes::open(path)?;
    let file = tinyformer::ModelFile::from_bytes(bytes.bytes())
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let c = *file.config();
    let seq = seq.unwrap_or(c.max_seq as usize);
    let bad_seq = |e| anyhow!("{}: --seq {seq}: {e}", path.display());
    // The plan: the encoder's at `seq` tokens and `rows` rows per pass, or the
    // decoder's state at a context of `seq` positions.
    let (plan_rows, arena_bytes, plan_extra) = match c.decoder {
        None => {
            let plan = tinyformer::model::Plan::batched(&c, seq, rows).map_err(bad_seq)?;
            let rows = plan.buffers.iter().map(|b| PlanRow {
                name: b.name,
                phase: b.phase.name(),
                offset: b.offset,
                bytes: b.bytes,
            });
            (
                rows.collect::<Vec<_>>(),
                plan.total_bytes(),
                json!({"seq": seq, "rows": plan.rows, "live_lower_bound_bytes": plan.live_lower_bound()}),
            )
        }
        Some(_) => {
            let plan = tinyformer::model::decoder::DecoderPlan::new(&c, seq).map_err(bad_seq)?;
            let rows = plan.buffers.iter().map(|b| PlanRow {
                name: b.name,
                phase: b.phase.name(),
                offset: b.offset,
                bytes: b.bytes,
            });
            (
                rows.collect::<Vec<_>>(),
                plan.total_bytes(),
                json!({"ctx": seq, "kv_cache_bytes": plan.cache_bytes()}),
            )
        }
    };
    let mut tensors = Vec::new();
    let mut per_dtype: std::collections::BTreeMap<&str, u64> = Default::default();
    let prefix = if c.decoder.is_some() {
        "model.layers"
    } else {
        "encoder.layer"
    };
    for i in 0..file.tensor_count() {
        let (Some(info), Some(spec)) = (file.tensor_info(i), tensor_spec(&c, i as usize)) else {
            continue;
        };
        let name = match info.layer {
            Some(l) => format!("{prefix}.{l}.{}", info.kind.name()),
            None => info.kind.name().to_string(),
        };
        let shape: Vec<u32> = if spec.rank == 1 {
            vec![info.dims[0]]
        } else {
            info.dims.to_vec()
        };
        *per_dtype.entry(info.dtype.name()).or_default() += u64::from(info.len);
        tensors.push((name, info.dtype, shape, info.len, info.offset));
    }
    let labels: Vec<String> = (0..c.num_labels)
        .map(|i| file.label(i).unwrap_or("").to_string())
        .collect();
    if json {
        let mut config = json!({
            "arch": c.arch.name(),
            "weight_dtype": c.weight_dtype.name(),
            "activation": c.activation.name(),
            "pooling": c.pooling.name(),
            "vocab_size": c.vocab_size, "hidden": c.hidden, "layers": c.layers, "heads": c.heads,
            "ffn": c.ffn, "max_positions": c.max_positions, "type_vocab": c.type_vocab,
            "num_labels": c.num_labels, "max_seq": c.max_seq, "layer_norm_eps": c.layer_norm_eps(),
        });
        if let Some(d) = c.decoder {
            config["kv_heads"] = json!(d.kv_heads);
            config["rope_theta"] = json!(d.rope_theta());
            config["bos_id"] = json!(d.bos_id);
            config["eos_id"] = json!(d.eos_id);
            config["separate_output"] = json!(d.separate_output);
        }
        let mut plan = plan_extra;
        plan["arena_bytes"] = json!(arena_bytes);
        plan["buffers"] = plan_rows
            .iter()
            .map(
                |b| json!({"name": b.name, "phase": b.phase, "offset": b.offset, "bytes": b.bytes}),
            )
            .collect();
        let v = json!({
            "file": path.display().to_string(),
            "file_bytes": bytes.bytes().len(),
            "format_version": tinyformer::format::VERSION,
            "checksum": "ok",
            "crc32": format!("{:08x}", file.crc32()),
            "config": config,
            "labels": labels,
            "vocab_size": c.vocab_size,
            "tensors": tensors.iter().map(|(name, dtype, shape, len, offset)| json!({
                "name": name, "dtype": dtype.name(), "shape": shape, "bytes": len, "offset": offset,
            })).collect::<Vec<_>>(),
            "bytes_per_dtype": per_dtype,
            "tensor_bytes": per_dtype.values().sum::<u64>(),
            "memory_plan": plan,
        });
        out!("{v}");
        return Ok(());
    }
    out!(
        "{}: tinyformer format v{}, {} bytes, checksum: ok (crc32 {:08x})",
        path.display(),
        tinyformer::format::VERSION,
        bytes.bytes().len(),
        file.crc32()
    );
    match c.decoder {
        None => out!(
            "config: bert encoder, weights {}, {} layers, hidden {}, {} heads, ffn {}, vocab {}, max_seq {}, activation {}, pooling {}, labels {}",
            c.weight_dtype.name(), c.layers, c.hidden, c.heads, c.ffn, c.vocab_size, c.max_seq, c.activation.name(), c.pooling.name(),
            if labels.is_empty() { "none (embedding model)".to_string() } else { labels.join(", ") }
        ),
        Some(d) => out!(
            "config: llama decoder, weights {}, {} layers, hidden {}, {} heads ({} key/value), ffn {}, vocab {}, context {} (trained {}), rope theta {}, bos {}, eos {}, output head {}",
            c.weight_dtype.name(), c.layers, c.hidden, c.heads, d.kv_heads, c.ffn, c.vocab_size, c.max_seq, c.max_positions,
            d.rope_theta(), d.bos_id, d.eos_id, if d.separate_output { "separate" } else { "tied to the embedding" }
        ),
    }
    out!(
        "\n{:<52} {:>5} {:>14} {:>10}",
        "tensor",
        "dtype",
        "shape",
        "bytes"
    );
    for (name, dtype, shape, len, _) in &tensors {
        let shape = shape
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join("x");
        out!("{name:<52} {:>5} {shape:>14} {len:>10}", dtype.name());
    }
    out!();
    for (dtype, n) in &per_dtype {
        out!("{dtype:>5}: {n} bytes");
    }
    out!("total: {} tensor bytes", per_dtype.values().sum::<u64>());
    match c.decoder {
        None => out!(
            "\nmemory plan at seq {seq}, {} row(s) per batch: arena {arena_bytes} bytes (lower bound for a row-wise schedule {})",
            plan_extra_field(&plan_extra, "rows"),
            plan_extra_field(&plan_extra, "live_lower_bound_bytes"),
        ),
        Some(_) => out!(
            "\nmemory plan at context {seq}: arena {arena_bytes} bytes (key/value cache {})",
            plan_extra_field(&plan_extra, "kv_cache_bytes"),
        ),
    }
    for b in &plan_rows {
        out!(
            "  {:<10} {:<9} offset {:>8} bytes {:>8}",
            b.name,
            b.phase,
            b.offset,
            b.bytes
        );
    }
    Ok(())
}

fn plan_extra_field(v: &serde_json::Value, key: &str) -> u64 {
    v.get(key).and_then(serde_json::Value::as_u64).unwrap_or(0)
}

fn cmd_tokenize(bytes: &ModelBytes, texts: &[String], json: bool) -> Result<()> {
    if bytes.is_decoder()? {
        return tinyformer_cli::generate::cmd_tokenize_decoder(bytes, texts, json);
    }
    let model = bytes.model()?;
    for_each_text(&read_texts(texts)?, json, false, |input, text| {
        let tokens = tokenize_input(&model, input, text)?;
        if json {
            return Ok(json!({"text": text, "ids": tokens.ids}).to_string());
        }
        let ids: Vec<String> = tokens.ids.iter().map(u32::to_string).collect();
        let pieces: Vec<&str> = tokens
            .ids
            .iter()
            .map(|&id| model.tokenizer().token(id).unwrap_or("?"))
            .collect();
        Ok(format!("{}\t{}", ids.join(" "), pieces.join(" ")))
    })
}

fn parse_ids(s: &str) -> Result<Vec<u32>> {
    s.split([',', ' '])
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<u32>()
                .map_err(|_| anyhow!("`{t}` is not a token id"))
        })
        .collect()
}

fn cmd_run(
    bytes: &ModelBytes,
    texts: &[String],
    ids: bool,
    json: bool,
    classify: bool,
) -> Result<()> {
    let model = bytes.model()?;
    let c = *model.config();
    if classify && c.num_labels == 0 {
        bail!(
            "{}: model has no classifier head (num_labels 0); use `embed`",
            bytes.name()
        );
    }
    let mut runner = Runner::new(model)?;
    for_each_text(&read_texts(texts)?, json, false, |input, text| {
        let token_ids = if ids {
            parse_ids(text)?
        } else {
            tokenize_input(&runner.model, input, text)?.ids
        };
        let out = runner.run(&token_ids)?;
        if !classify {
            if json {
                return Ok(json!({"text": text, "embedding": out.values}).to_string());
            }
            let values: Vec<String> = out.values.iter().map(|v| format!("{v:.6}")).collect();
            return Ok(format!("{text}\t{}", values.join(" ")));
        }
        let best = argmax(&out.probabilities);
        let label = runner.label(best);
        if !json {
            return Ok(format!("{label}\t{:.4}\t{text}", out.probabilities[best]));
        }
        let scores: serde_json::Map<String, serde_json::Value> = out
            .probabilities
            .iter()
            .enumerate()
            .map(|(k, p)| (runner.label(k), json!(p)))
            .collect();
        let mut v = json!({"text": text, "label": label, "score": out.probabilities[best], "scores": scores});
        if let Some(q) = &out.probabilities_q15 {
            v["scores_q15"] = json!(q);
        }
        Ok(v.to_string())
    })
}

fn cmd_eval(path: &Path, data: &Path, compare: Option<&Path>, json: bool) -> Result<()> {
    let bytes = ModelBytes::open(path)?;
    let mut runner = Runner::new(bytes.model()?)?;
    let other_bytes = compare.map(ModelBytes::open).transpose()?;
    let mut other = match &other_bytes {
        Some(b) => Some(Runner::new(b.model()?)?),
        None => None,
    };
    let labels: Vec<String> = (0..runner.model.config().num_labels as usize)
        .map(|i| runner.label(i))
        .collect();
    if labels.is_empty() {
        bail!("{}: model has no classifier head", path.display());
    }
    // A line with invalid UTF-8 or an empty text is reported and skipped (the exit
    // code is then 1); a line that does not fit the model's labels stops: the file or
    // the model is the wrong one.
    let mut rows = Vec::new();
    let mut skipped = 0usize;
    for (n, line) in read_lines(data)?.into_iter().enumerate() {
        let at = format!("{}: line {}", data.display(), n + 1);
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                eprintln!("error: {at}: {e}; skipped");
                skipped += 1;
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let (label, text) = line
            .split_once('\t')
            .ok_or_else(|| anyhow!("{at}: expected `label<TAB>text`"))?;
        let gold = labels
            .iter()
            .position(|l| l == label)
            .ok_or_else(|| anyhow!("{at}: label `{label}` is not one of the model's {labels:?}"))?;
        if text.trim().is_empty() {
            eprintln!("error: {at}: the text is empty or whitespace only; skipped");
            skipped += 1;
            continue;
        }
        rows.push((gold, text.to_string()));
    }
    let k = labels.len();
    let mut confusion = vec![vec![0usize; k]; k];
    let (mut agree, mut truncated, mut unknown) = (0usize, 0usize, 0usize);
    let bar = tinyformer_cli::convert::progress_bar(true, rows.len() as u64, "evaluating");
    for (gold, text) in &rows {
        let tokens = tokenize(&runner.model, text)?;
        truncated += usize::from(tokens.truncated);
        unknown += usize::from(tokens.all_unknown);
        let pred = argmax(&runner.run(&tokens.ids)?.probabilities);
        confusion[*gold][pred] += 1;
        if let Some(o) = other.as_mut() {
            let t = tokenize(&o.model, text)?;
            agree += usize::from(argmax(&o.run(&t.ids)?.probabilities) == pred);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let total = rows.len().max(1);
    let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
    let accuracy = correct as f64 / total as f64;
    let per_class: Vec<serde_json::Value> = (0..k)
        .map(|i| {
            let tp = confusion[i][i] as f64;
            let predicted: usize = (0..k).map(|g| confusion[g][i]).sum();
            let actual: usize = confusion[i].iter().sum();
            let p = if predicted > 0 {
                tp / predicted as f64
            } else {
                0.0
            };
            let r = if actual > 0 { tp / actual as f64 } else { 0.0 };
            let f1 = if p + r > 0.0 {
                2.0 * p * r / (p + r)
            } else {
                0.0
            };
            json!({"label": labels[i], "precision": p, "recall": r, "f1": f1, "support": actual})
        })
        .collect();
    let agreement = other.as_ref().map(|_| agree as f64 / total as f64);
    if truncated > 0 {
        eprintln!(
            "warning: {truncated} texts were truncated to the model's {} tokens",
            runner.model.config().max_seq
        );
    }
    if unknown > 0 {
        eprintln!(
            "warning: {unknown} texts are all [UNK] word pieces (the model's vocabulary covers none of them)"
        );
    }
    let done = |skipped: usize| {
        if skipped > 0 {
            bail!(
                "{}: {skipped} line(s) reported above were skipped; the figures cover the other {}",
                data.display(),
                rows.len()
            );
        }
        Ok(())
    };
    if json {
        out!(
            "{}",
            json!({"model": path.display().to_string(), "data": data.display().to_string(), "examples": rows.len(),
                   "accuracy": accuracy, "per_class": per_class, "labels": labels, "confusion": confusion,
                   "compare": compare.map(|p| p.display().to_string()), "agreement": agreement, "truncated": truncated,
                   "all_unknown": unknown, "skipped": skipped})
        );
        return done(skipped);
    }
    out!(
        "{}: {} examples, accuracy {:.4}",
        data.display(),
        rows.len(),
        accuracy
    );
    out!(
        "{:<16} {:>9} {:>9} {:>9} {:>8}",
        "label",
        "precision",
        "recall",
        "f1",
        "support"
    );
    for v in &per_class {
        out!(
            "{:<16} {:>9.4} {:>9.4} {:>9.4} {:>8}",
            v["label"].as_str().unwrap_or(""),
            v["precision"].as_f64().unwrap_or(0.0),
            v["recall"].as_f64().unwrap_or(0.0),
            v["f1"].as_f64().unwrap_or(0.0),
            v["support"]
        );
    }
    out!("confusion (rows: gold, columns: predicted; order {labels:?}):");
    for row in &confusion {
        out!(
            "  {}",
            row.iter().map(|n| format!("{n:>7}")).collect::<String>()
        );
    }
    if let (Some(a), Some(p)) = (agreement, compare) {
        out!("label agreement with {}: {:.4}", p.display(), a);
    }
    done(skipped)
}
