//! `tinyformer`: convert, inspect and run tinyformer models on a host.
//!
//! Human-readable output by default; `--json` prints JSON Lines (one object per input
//! text, in input order). Errors go to stderr naming the file and field; the exit code
//! is 0 only on success. An input text that cannot be used (empty, a line of standard
//! input that is not UTF-8) is reported and skipped, the others are processed, and the
//! exit code is then 1 (`run::for_each_text`).

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use tinyformer_cli::convert::{cmd_convert, convert_dtype, Precision};
use tinyformer_cli::encoder::{cmd_run, cmd_tokenize, Report};
use tinyformer_cli::run::{default_model, ModelBytes};
use tinyformer_cli::{bench, eval, generate, inspect, run};

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
    /// (encoder); or, for a decoder, a Hugging Face LlamaForCausalLM directory, a Llama
    /// GGUF file, or a llama2.c checkpoint file with --tokenizer.
    Convert {
        /// Directory with config.json, model.safetensors and vocab.txt or tokenizer.json
        /// (BERT or LlamaForCausalLM), a `.gguf` file, or a llama2.c `.bin` checkpoint.
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
        /// Longest sequence the model accepts, in tokens (an encoder's CLS and SEP included).
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
        /// arena, up to 64 trade memory for speed).
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
        /// Chat models (ChatML: `<|im_start|>`, `<|im_end|>`): wrap each prompt as a
        /// user turn followed by the assistant's, and stop at `<|im_end|>` or EOS.
        #[arg(long)]
        chat: bool,
        /// Byte-level BPE vocabularies: read special tokens such as `<|im_start|>` in
        /// the text as plain text (by default they are matched, as Hugging Face does).
        #[arg(long)]
        no_special: bool,
        /// Threads of an int8 model's prompt prefill (parts of each projection's
        /// output rows; the same tokens for every count); decoding runs on one.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
        threads: u16,
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
        /// With --compare: also report top-1 agreement over the positions where the
        /// compare model's top logit leads its runner-up by at least this (logits,
        /// natural-log units).
        #[arg(long, default_value_t = 0.5)]
        margin: f64,
        /// Byte-level BPE vocabularies: read special tokens such as `<|im_start|>` in
        /// the text as plain text (by default they are matched, as Hugging Face does).
        #[arg(long)]
        no_special: bool,
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
        /// Byte-level BPE vocabularies: read special tokens such as `<|im_start|>` in
        /// the text as plain text (by default they are matched, as Hugging Face does).
        #[arg(long)]
        no_special: bool,
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
        /// Threads of the int8 encoder's forward pass (parts of each batch of token
        /// rows; the same results for every count).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
        threads: u16,
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
        /// Threads of the int8 encoder's forward pass (parts of each batch of token
        /// rows; the same results for every count).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
        threads: u16,
        /// Print JSON Lines, one object per input, in input order: text, label, score,
        /// scores (a text that fails: text and error).
        #[arg(long)]
        json: bool,
        /// Read a text longer than the model's context in up to N consecutive windows
        /// of `max_seq` tokens (each `[CLS] ... [SEP]`) and average their logits; 1
        /// (the default) truncates to the first window, as the device's `encode` does.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
        windows: u16,
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
        /// Threads of the int8 encoder's forward pass (parts of each batch of token
        /// rows; the same results for every count).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
        threads: u16,
        /// Print one JSON object (accuracy, per-class scores, confusion) instead of text.
        #[arg(long)]
        json: bool,
        /// Read each text in up to N windows and average the logits (as `classify
        /// --windows`), both models.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
        windows: u16,
    },
    /// Time the forward pass (one thread unless --threads) at fixed sequence lengths.
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
        /// Threads of the int8 encoder's forward pass (parts of each batch of token
        /// rows), or of an int8 decoder's prefill (parts of each projection's output
        /// rows); the same results for every count.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
        threads: u16,
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
            let target = generate::DecoderTarget {
                output: &output,
                precision: dtype,
                calibration: calibration.as_deref(),
                max_seq,
            };
            if model_dir.is_file() && tinyformer_cli::gguf_llama::is_gguf(&model_dir)? {
                if tokenizer.is_some() {
                    bail!("--tokenizer is for llama2.c checkpoints: a GGUF file carries its own");
                }
                generate::cmd_convert_gguf(&model_dir, &target)
            } else if model_dir.is_file() {
                generate::cmd_convert_llama2c(&model_dir, tokenizer.as_deref(), &target)
            } else {
                if tokenizer.is_some() {
                    bail!("--tokenizer is for llama2.c checkpoints (a .bin file), not a directory");
                }
                if tinyformer_cli::hf_llama::is_llama_dir(&model_dir) {
                    return generate::cmd_convert_hf_llama(&model_dir, &target);
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
            chat,
            no_special,
            threads,
            json,
        } => {
            run::set_threads(threads)?;
            let bytes = match model {
                Some(path) => ModelBytes::open(&path)?,
                None => generate::default_decoder(),
            };
            let options = generate::GenerateOptions {
                max_new: max_tokens,
                temperature,
                top_k,
                top_p,
                seed,
                chat,
                special_tokens: !no_special,
            };
            generate::cmd_generate(&bytes, &prompts, &options, ctx, json)
        }
        Command::Score {
            model,
            data,
            compare,
            margin,
            no_special,
            json,
        } => generate::cmd_score(&model, &data, compare.as_deref(), margin, !no_special, json),
        Command::SelfTest { file, add, output } => match (add, output) {
            (Some(texts), Some(output)) => run::cmd_add_self_test(&file, &texts, &output),
            _ => run::cmd_self_test(&file),
        },
        Command::Inspect {
            file,
            seq,
            rows,
            json,
        } => inspect::cmd_inspect(&file, seq, rows, json),
        Command::Tokenize {
            model,
            texts,
            no_special,
            json,
        } => {
            let bytes = match model {
                Some(path) => ModelBytes::open(&path)?,
                None => default_model(),
            };
            cmd_tokenize(&bytes, &texts, !no_special, json)
        }
        Command::Embed {
            model,
            texts,
            ids,
            threads,
            json,
        } => {
            run::set_threads(threads)?;
            cmd_run(
                &ModelBytes::open(&model)?,
                &texts,
                ids,
                json,
                Report::Embedding,
                1,
            )
        }
        Command::Classify {
            model,
            texts,
            ids,
            threads,
            json,
            windows,
        } => {
            run::set_threads(threads)?;
            let bytes = match model {
                Some(path) => ModelBytes::open(&path)?,
                None => default_model(),
            };
            let windows = usize::from(windows);
            cmd_run(&bytes, &texts, ids, json, Report::Classification, windows)
        }
        Command::Eval {
            model,
            data,
            compare,
            threads,
            json,
            windows,
        } => {
            run::set_threads(threads)?;
            eval::cmd_eval(
                &model,
                &data,
                compare.as_deref(),
                json,
                usize::from(windows),
            )
        }
        Command::Bench {
            model,
            seq,
            iters,
            rows,
            threads,
            ctx,
            prompt,
            steps,
            rounds,
            json,
        } => {
            let bytes = ModelBytes::open(&model)?;
            run::set_threads(threads)?;
            if bytes.is_decoder()? {
                bench::cmd_bench_decoder(&bytes, ctx, prompt, steps, rounds, json)
            } else {
                bench::cmd_bench(&model, &seq, iters, rows, json)
            }
        }
    }
}
