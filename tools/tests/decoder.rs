//! The decoder end to end on llama2.c's stories260K (committed under
//! `models/stories260K/`): conversion, the published greedy output reproduced byte
//! for byte, int8 and f16 against the f32 model on held-out text, and the CLI's
//! `generate`, `score`, `tokenize` and `inspect` on decoder files.
//!
//! The golden text `greedy-200.txt` is llama2.c's own (`run.c`, temperature 0, 200
//! steps from the empty prompt), the text its test suite asserts: an independent
//! reference. The held-out text `tests/fixtures/stories/heldout.txt` (82 lines of
//! children's-story sentences) and the calibration text `calibration.txt` (48 lines)
//! were written for this project, so neither is in the model's training data.

mod common;

use common::{json_lines, run, stderr};
use serde_json::Value;
use std::path::{Path, PathBuf};
use tinyformer_cli::generate::{encode, logits_f64, DecoderRunner};
use tinyformer_cli::run::ModelBytes;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn stories(file: &str) -> String {
    repo("models/stories260K").join(file).display().to_string()
}

/// Converts stories260K to `dtype` in `dir` and returns the file's path.
fn convert(dir: &Path, dtype: &str) -> String {
    let out = dir.join(format!("stories-{dtype}.tfm"));
    let calibration = repo("tests/fixtures/stories/calibration.txt");
    let mut args = vec![
        "convert".to_string(),
        stories("stories260K.bin"),
        "--tokenizer".to_string(),
        stories("tok512.bin"),
        "-o".to_string(),
        out.display().to_string(),
        "--dtype".to_string(),
        dtype.to_string(),
    ];
    if dtype == "int8" {
        args.push("--calibration".to_string());
        args.push(calibration.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run(&args);
    assert!(o.status.success(), "convert {dtype}: {}", stderr(&o));
    out.display().to_string()
}

#[test]
fn f32_greedy_reproduces_llama2c_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let model = convert(dir.path(), "f32");
    let want = std::fs::read_to_string(stories("greedy-200.txt")).unwrap();
    // JSON: the text of exactly 200 generated tokens.
    let o = run(&["generate", "-m", &model, "-n", "200", "--json", ""]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = &json_lines(&o)[0];
    assert_eq!(v["ids"].as_array().unwrap().len(), 200);
    assert_eq!(v["prompt_ids"], serde_json::json!([1]));
    assert_eq!(v["text"].as_str().unwrap(), want);
    // Human mode streams the same text.
    let o = run(&["generate", "-m", &model, "-n", "200", ""]);
    assert!(o.status.success());
    assert_eq!(String::from_utf8(o.stdout).unwrap(), format!("{want}\n"));
}

/// Teacher-forced summary of `model` against `reference` on the held-out text.
fn score(model: &str, reference: &str) -> Value {
    score_with(model, reference, &[])
}

/// [`score`] with more `score` options.
fn score_with(model: &str, reference: &str, options: &[&str]) -> Value {
    let data = repo("tests/fixtures/stories/heldout.txt");
    let mut args = vec![
        "score",
        "-m",
        model,
        "--data",
        data.to_str().unwrap(),
        "--compare",
        reference,
        "--json",
    ];
    args.extend_from_slice(options);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = json_lines(&o);
    let summary = lines.last().unwrap().clone();
    assert_eq!(summary["lines"], 82);
    // Per-line objects carry what the issue names.
    let first = &lines[0];
    for key in ["text", "ids", "nll", "tokens", "argmax"] {
        assert!(first.get(key).is_some(), "missing {key}");
    }
    assert_eq!(
        first["argmax"].as_array().unwrap().len(),
        first["tokens"].as_u64().unwrap() as usize
    );
    summary
}

/// Measured on this machine (docs/ACCURACY.md, "Decoders"): f16 perplexity equal to f32
/// to four decimals, agreement 0.9996; the committed int8 model +0.08% perplexity,
/// top-1 agreement 0.979, mean KL 0.0021 nats. The guards sit near those figures (a
/// 2x regression of the int8 excess perplexity or KL fails); the targets are
/// +2% (int8) and +0.5% (f16) perplexity and int8 top-1 agreement >= 0.97.
#[test]
fn int8_and_f16_against_f32_on_held_out_text() {
    let dir = tempfile::tempdir().unwrap();
    let f32_model = convert(dir.path(), "f32");
    let f16_model = convert(dir.path(), "f16");
    let reference = score(&f32_model, &f32_model);
    let ppl = reference["perplexity"].as_f64().unwrap();
    assert!((ppl - 9.549).abs() < 0.01, "f32 perplexity {ppl}");
    assert_eq!(reference["top1_agreement"], 1.0);

    let f16 = score(&f16_model, &f32_model);
    let f16_ppl = f16["perplexity"].as_f64().unwrap();
    assert!(
        f16_ppl / ppl - 1.0 < 0.0005,
        "f16 perplexity {f16_ppl} vs {ppl}"
    );
    assert!(f16["top1_agreement"].as_f64().unwrap() >= 0.999);

    // The committed int8 model (what the CLI embeds and the firmware flashes), and a
    // fresh conversion: the converter is deterministic.
    let committed = stories("stories260K-int8.tfm");
    let fresh = convert(dir.path(), "int8");
    assert_eq!(
        std::fs::read(&committed).unwrap(),
        std::fs::read(&fresh).unwrap()
    );
    let int8 = score(&committed, &f32_model);
    let int8_ppl = int8["perplexity"].as_f64().unwrap();
    let agreement = int8["top1_agreement"].as_f64().unwrap();
    let kl = int8["mean_kl"].as_f64().unwrap();
    println!(
        "int8: perplexity {int8_ppl:.4} ({:+.2}%), agreement {agreement:.4}, KL {kl:.5}",
        (int8_ppl / ppl - 1.0) * 100.0
    );
    assert!(
        int8_ppl / ppl - 1.0 < 0.0016,
        "int8 perplexity {int8_ppl} vs {ppl}"
    );
    assert!(agreement >= 0.97, "int8 top-1 agreement {agreement}");
    assert!(kl < 0.0042, "int8 mean KL {kl}");
}

/// `score --compare`'s confident positions (the reference's top logit leads its
/// runner-up by at least `--margin`) and their agreement, against counts made here
/// from both models' logits with the top two found by sorting.
#[test]
fn score_agreement_where_the_reference_is_confident() {
    let dir = tempfile::tempdir().unwrap();
    let f32_model = convert(dir.path(), "f32");
    let int8_model = stories("stories260K-int8.tfm");
    let s = score(&int8_model, &f32_model);
    let tokens = s["tokens"].as_u64().unwrap() as usize;
    let confident = s["confident_positions"].as_u64().unwrap() as usize;
    let agreement = s["top1_agreement_confident"].as_f64().unwrap();

    let load = |path: &str| ModelBytes::open(Path::new(path)).unwrap();
    let (int8_bytes, f32_bytes) = (load(&int8_model), load(&f32_model));
    let mut int8 = DecoderRunner::new(int8_bytes.decoder().unwrap(), None).unwrap();
    let mut reference = DecoderRunner::new(f32_bytes.decoder().unwrap(), None).unwrap();
    let text = std::fs::read_to_string(repo("tests/fixtures/stories/heldout.txt")).unwrap();
    let top_two = |logits: &[f64]| {
        let mut order: Vec<usize> = (0..logits.len()).collect();
        // Largest first, the lowest id first among equals (greedy's tie rule).
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        (order[0], logits[order[0]] - logits[order[1]])
    };
    let (mut want_confident, mut want_agree, mut positions) = (0, 0, 0);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let ids = encode(&reference.model, line, true).unwrap();
        let mut a = int8.state().unwrap();
        let mut b = reference.state().unwrap();
        for &id in &ids[..ids.len() - 1] {
            let (top, _) = top_two(&logits_f64(a.step(id).unwrap()));
            let (want_top, margin) = top_two(&logits_f64(b.step(id).unwrap()));
            positions += 1;
            if margin >= 0.5 {
                want_confident += 1;
                want_agree += usize::from(top == want_top);
            }
        }
    }
    assert_eq!(positions, tokens);
    assert_eq!(confident, want_confident);
    // As a count: serde_json's parser may be one ulp off the printed value.
    assert_eq!((agreement * confident as f64).round() as usize, want_agree);
    // Most positions, not all: the figure differs from the all-position one.
    assert!(
        confident > tokens / 2 && confident < tokens,
        "{confident} of {tokens}"
    );
    println!(
        "int8 stories260K: agreement {} over all {tokens} positions, {agreement:.4} over \
         the {confident} confident ones",
        s["top1_agreement"]
    );

    // Margin 0: every position counts, and the two agreements are one figure.
    let all = score_with(&int8_model, &f32_model, &["--margin", "0"]);
    assert_eq!(
        all["confident_positions"].as_u64().unwrap() as usize,
        tokens
    );
    assert_eq!(all["top1_agreement_confident"], all["top1_agreement"]);
    // The model against itself agrees everywhere it is confident.
    let same = score(&f32_model, &f32_model);
    assert_eq!(
        same["confident_positions"].as_u64().unwrap() as usize,
        confident
    );
    assert_eq!(same["top1_agreement_confident"], 1.0);
    assert_eq!(same["compare_perplexity"], same["perplexity"]);
    let o = run(&["score", "-m", &f32_model, "--data", "-", "--margin=-1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--margin -1"), "{}", stderr(&o));
}

#[test]
fn tokenize_inspect_and_errors_on_decoder_files() {
    let model = stories("stories260K-int8.tfm");
    let o = run(&["tokenize", "-m", &model, "--json", "Once upon a time", ""]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = json_lines(&o);
    // llama2.c: BOS first, then the dummy-prefix pieces (ids from its own encoder,
    // tests/fixtures/sentencepiece/stories260K.jsonl).
    assert_eq!(lines[0]["ids"][0], 1);
    assert_eq!(lines[1]["ids"], serde_json::json!([1]));

    let o = run(&["inspect", &model, "--seq", "256", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = &json_lines(&o)[0];
    assert_eq!(v["config"]["arch"], "llama_decoder");
    assert_eq!(v["config"]["kv_heads"], 4);
    // 2 x 5 layers x 256 positions x 32 (kv_dim) int8 cache.
    assert_eq!(v["memory_plan"]["kv_cache_bytes"], 2 * 5 * 256 * 32);
    assert!(v["memory_plan"]["arena_bytes"].as_u64().unwrap() > 81_920);
    let o = run(&["inspect", &model, "--seq", "513"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--seq 513"), "{}", stderr(&o));

    // A context shorter than the prompt is refused; generation stops at the
    // context's end with a warning.
    let o = run(&[
        "generate",
        "-m",
        &model,
        "--ctx",
        "3",
        "Once upon a time there was",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("more than the context"),
        "{}",
        stderr(&o)
    );
    let o = run(&[
        "generate", "-m", &model, "--ctx", "8", "-n", "50", "--json", "",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Positions 0..8 each predict one token: BOS plus 7 fed back, 8 generated.
    assert_eq!(json_lines(&o)[0]["ids"].as_array().unwrap().len(), 8);
    assert!(stderr(&o).contains("end of the 8-token context"));

    // Sampling: the same seed gives the same tokens; another seed other tokens.
    let gen = |seed: &str| {
        let o = run(&[
            "generate",
            "--temperature",
            "0.9",
            "--top-p",
            "0.9",
            "--seed",
            seed,
            "-n",
            "40",
            "--json",
            "Once upon a time",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        json_lines(&o)[0]["ids"].clone()
    };
    assert_eq!(gen("7"), gen("7"));
    assert_ne!(gen("7"), gen("8"));

    // Converter errors name the file and the missing piece.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.tfm");
    let out = out.to_str().unwrap();
    let o = run(&[
        "convert",
        &stories("stories260K.bin"),
        "-o",
        out,
        "--dtype",
        "f32",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--tokenizer"), "{}", stderr(&o));
    let o = run(&[
        "convert",
        &stories("stories260K.bin"),
        "--tokenizer",
        &stories("tok512.bin"),
        "-o",
        out,
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--calibration"), "{}", stderr(&o));
    let bad = dir.path().join("tok.bin");
    std::fs::write(&bad, [0u8; 7]).unwrap();
    let o = run(&[
        "convert",
        &stories("stories260K.bin"),
        "--tokenizer",
        bad.to_str().unwrap(),
        "-o",
        out,
        "--dtype",
        "f32",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("tok.bin"), "{}", stderr(&o));
    assert!(!Path::new(out).exists(), "nothing written on failure");
    // An encoder is not a decoder.
    let o = run(&[
        "generate",
        "-m",
        &repo("models/default/sentiment-int8.tfm")
            .display()
            .to_string(),
        "hi",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("bert_encoder"), "{}", stderr(&o));
}

/// `--threads` on a decoder: `generate` prints the same tokens on 2 threads as on 1
/// (stories260K's projections are too small to split; the split itself is checked
/// against the scalar reference on a model large enough, in `tests/decoder.rs`), and
/// `bench` reports the count it ran the prefill on.
#[test]
fn threads_option_on_decoders() {
    let model = stories("stories260K-int8.tfm");
    let generate = |threads: &str| {
        let args = ["generate", "-m", &model, "-n", "20", "--threads", threads];
        run(&[&args[..], &["--json", "Once upon a time"]].concat())
    };
    let (one, two) = (generate("1"), generate("2"));
    assert!(one.status.success(), "{}", stderr(&one));
    assert!(two.status.success(), "{}", stderr(&two));
    assert_eq!(one.stdout, two.stdout);
    let o = run(&[
        "bench",
        "-m",
        &model,
        "--threads",
        "2",
        "--ctx",
        "64",
        "--prompt",
        "16",
        "--steps",
        "8",
        "--rounds",
        "1",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json_lines(&o)[0]["threads"], 2);
}
