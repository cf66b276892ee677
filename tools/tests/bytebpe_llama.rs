//! One Llama with a byte-level BPE (GPT-2 / SmolLM2 style) vocabulary, from GGUF and
//! from a Hugging Face directory.
//!
//! `tests/fixtures/bytebpe-llama/` (written by `tools/reference/bytebpe_llama_fixture.py`,
//! whose docstring says how to regenerate it) holds a tiny random Llama as GGUF in
//! F32, F16, Q8_0, Q4_0 and Q4_1 (llama.cpp's `gguf` writer and quantizers) and, as
//! `hf/`, the F32 file written as a `LlamaForCausalLM` directory by
//! `tools/reference/gguf_to_hf_llama.py` (q/k rows back in Hugging Face's half-split
//! order, `tokenizer.json` rebuilt with Hugging Face `tokenizers`). Its goldens are the
//! float64 numpy Llama's last-position logits over each file's dequantized weights
//! (`tools/reference/llama_numpy.py`) and the prompts' ids from `tokenizers`.
//!
//! The F32 GGUF and the directory must convert to the same file byte for byte; every
//! type must follow its own reference; the directory's `tokenizer.json` reader must
//! give Hugging Face's ids, here and on the 6,000 strings of the byte-level BPE
//! parity goldens (`tests/fixtures/bytebpe/`), and refuse what it cannot reproduce.
//!
//! Test names start with `bytebpe_llama` (`cargo test -p tinyformer-cli bytebpe_llama`).

mod common;

use common::{json_lines, run, stderr, JsonCase};
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use tinyformer::format::writer::AlignedBuf;
use tinyformer::tokenizer::bytebpe::{encode_buffer_len, ByteBpe};
use tinyformer::{Decoder, Logits};
use tinyformer_cli::decoder::{convert_float, LlamaSource};
use tinyformer_cli::generate::DecoderRunner;
use tinyformer_cli::gguf::GgufFile;
use tinyformer_cli::gguf_llama::{self, GgufLlama};
use tinyformer_cli::hf_llama::{self, HfLlama};

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(path)
}

fn goldens() -> Value {
    let text = fs::read_to_string(fixture("bytebpe-llama/goldens.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The golden prompts: text and Hugging Face's ids.
fn prompts() -> Vec<(String, Vec<u32>)> {
    goldens()["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let ids = serde_json::from_value(p["ids"].clone()).unwrap();
            (p["text"].as_str().unwrap().to_owned(), ids)
        })
        .collect()
}

/// The f32 conversion of a source with its tokenizer section.
fn convert(src: &dyn LlamaSource, section: &[u8]) -> Vec<u8> {
    convert_float(src, section, false, None).unwrap()
}

fn convert_gguf(name: &str) -> Vec<u8> {
    let file = GgufFile::open(&fixture(&format!("bytebpe-llama/{name}"))).unwrap();
    let gguf = file.parse().unwrap();
    let section = gguf_llama::tokenizer_section(&gguf).unwrap();
    convert(&GgufLlama::from_gguf(&gguf).unwrap(), &section)
}

fn convert_hf() -> Vec<u8> {
    let dir = fixture("bytebpe-llama/hf");
    let section = hf_llama::tokenizer_section(&dir).unwrap();
    convert(&HfLlama::from_dir(&dir).unwrap(), &section)
}

/// Last-position logits of each prompt.
fn last_logits(model: &[u8], prompts: &[(String, Vec<u32>)]) -> Vec<Vec<f32>> {
    let buf = AlignedBuf::from_bytes(model);
    let decoder = Decoder::from_bytes(buf.as_bytes()).unwrap();
    let mut runner = DecoderRunner::new(decoder, None).unwrap();
    prompts
        .iter()
        .map(|(_, ids)| {
            let mut state = runner.state().unwrap();
            match state.prefill(ids).unwrap() {
                Logits::F32(l) => l.to_vec(),
                Logits::Q16(_) => panic!("a float model gives f32 logits"),
            }
        })
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn bytebpe_llama_gguf_f32_and_hf_dir_convert_to_the_same_file() {
    let from_gguf = convert_gguf("tiny-f32.gguf");
    let from_hf = convert_hf();
    assert!(from_gguf == from_hf, "the two conversions differ");

    // And from the command line, whole files (header, checksum) included.
    let dir = tempfile::tempdir().unwrap();
    let out = |name: &str| dir.path().join(name);
    for (input, output) in [
        (fixture("bytebpe-llama/tiny-f32.gguf"), out("gguf.tfm")),
        (fixture("bytebpe-llama/hf"), out("hf.tfm")),
    ] {
        let o = run(&[
            "convert",
            input.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
            "--dtype",
            "f32",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert!(fs::read(out("gguf.tfm")).unwrap() == fs::read(out("hf.tfm")).unwrap());
}

/// Each GGUF type converts and its f32 logits follow the float64 reference over the
/// same file's dequantized weights (the blocks are the model: no tolerance for
/// quantization, only for float32 arithmetic: measured 7.6e-6..9.1e-6 on logits of
/// magnitude ~10; the reference in float32 itself lands 2e-6..4e-6 away,
/// `float32_max_abs_diff` in the goldens).
#[test]
fn bytebpe_llama_every_gguf_type_follows_its_reference() {
    let goldens = goldens();
    let prompts = prompts();
    let vocab = goldens["vocab"].as_u64().unwrap() as usize;
    for kind in goldens["types"].as_array().unwrap() {
        let kind = kind.as_str().unwrap();
        let file = goldens["logits_files"][kind].as_str().unwrap();
        let bytes = fs::read(fixture("bytebpe-llama").join(file)).unwrap();
        let want: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(want.len(), vocab * prompts.len(), "{file}");
        let got = last_logits(&convert_gguf(&format!("tiny-{kind}.gguf")), &prompts);
        let diff = got
            .iter()
            .zip(want.chunks_exact(vocab))
            .map(|(g, w)| max_abs_diff(g, w))
            .fold(0.0, f32::max);
        eprintln!("{kind}: max abs logit difference {diff:.2e}");
        assert!(diff < 2e-5, "{kind}: logits differ by {diff}");
    }
}

/// `tinyformer tokenize` on the directory's conversion gives Hugging Face's ids.
#[test]
fn bytebpe_llama_tokenize_gives_hugging_face_ids() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("hf.tfm");
    fs::write(&model, convert_hf()).unwrap();
    let prompts = prompts();
    let mut args = vec!["tokenize", "-m", model.to_str().unwrap(), "--json"];
    args.extend(prompts.iter().map(|(text, _)| text.as_str()));
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = json_lines(&o);
    assert_eq!(lines.len(), prompts.len());
    for ((text, want), line) in prompts.iter().zip(&lines) {
        let got: Vec<u32> = serde_json::from_value(line["ids"].clone()).unwrap();
        assert_eq!(&got, want, "{text:?}");
    }
}

/// A directory holding the byte-level BPE parity fixture's `tokenizer.json` (3,422
/// tokens, `["a", "b"]` merges, SmolLM2's pre-tokenizer) with a `config.json` of that
/// vocabulary size, edited by `edit`.
fn bytebpe_dir(edit: impl FnOnce(&mut Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let config = fs::read_to_string(fixture("bytebpe-llama/hf/config.json")).unwrap();
    let mut config: Value = serde_json::from_str(&config).unwrap();
    config["vocab_size"] = json!(3422);
    fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let text = fs::read_to_string(fixture("bytebpe/tokenizer.json")).unwrap();
    let mut json: Value = serde_json::from_str(&text).unwrap();
    edit(&mut json);
    fs::write(dir.path().join("tokenizer.json"), json.to_string()).unwrap();
    dir
}

fn section(dir: &Path) -> Vec<u8> {
    hf_llama::tokenizer_section(dir).unwrap()
}

fn refusal(edit: impl FnOnce(&mut Value)) -> String {
    let dir = bytebpe_dir(edit);
    format!("{:#}", hf_llama::tokenizer_section(dir.path()).unwrap_err())
}

/// The `tokenizer.json` reader on the parity fixture: Hugging Face's ids for the 6,000
/// golden strings (special tokens matched: `ids`; read as plain text: `plain_ids`;
/// with GPT-2's pre-tokenizer instead of SmolLM2's: `gpt2_ids`; each defaulting to
/// `ids` where the goldens leave it out), and the `"a b"` merge form gives the same
/// section as the `["a", "b"]` form.
#[test]
fn bytebpe_llama_hf_tokenizer_json_gives_hugging_face_ids_on_6000_strings() {
    let smollm2 = section(bytebpe_dir(|_| {}).path());
    let gpt2 = section(
        bytebpe_dir(|j| {
            j["pre_tokenizer"] = json!({"type": "ByteLevel", "add_prefix_space": false,
                "trim_offsets": true, "use_regex": true});
        })
        .path(),
    );
    let strings = section(bytebpe_dir(common::merges_as_strings).path());
    assert!(
        strings == smollm2,
        "the two merge forms give different sections"
    );

    let smollm2 = ByteBpe::from_section(&smollm2).unwrap();
    let gpt2 = ByteBpe::from_section(&gpt2).unwrap();
    assert_eq!((smollm2.bos_id(), smollm2.eos_id()), (Some(1), Some(2)));
    assert!(!smollm2.add_bos());
    let encode = |bpe: &ByteBpe<'_>, text: &str, special: bool| {
        let mut out = vec![0u32; encode_buffer_len(text.len(), false)];
        let n = bpe.encode(text.as_bytes(), special, &mut out).unwrap();
        out.truncate(n);
        out
    };
    let goldens = fs::read_to_string(fixture("bytebpe/goldens.jsonl")).unwrap();
    let mut count = 0;
    // Split on '\n' only: the strings hold other line separators.
    for line in goldens.split('\n').filter(|l| !l.is_empty()) {
        let g: Value = serde_json::from_str(line).unwrap();
        let text = g["text"].as_str().unwrap();
        let ids = |key: &str| -> Vec<u32> {
            serde_json::from_value(g.get(key).unwrap_or(&g["ids"]).clone()).unwrap()
        };
        assert_eq!(encode(&smollm2, text, true), ids("ids"), "{text:?}");
        assert_eq!(encode(&smollm2, text, false), ids("plain_ids"), "{text:?}");
        assert_eq!(encode(&gpt2, text, true), ids("gpt2_ids"), "{text:?}");
        count += 1;
    }
    assert_eq!(count, 6000);
}

#[test]
fn bytebpe_llama_hf_refuses_what_it_cannot_reproduce() {
    let cases: [JsonCase; 8] = [
        (
            "Llama 3's Split regex",
            |j| {
                j["pre_tokenizer"] = json!({"type": "Sequence", "pretokenizers": [
                    {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"},
                     "behavior": "Isolated", "invert": false},
                    {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                     "use_regex": false}]});
            },
            "not a byte-level split the runtime has",
        ),
        (
            "prefix space",
            |j| j["pre_tokenizer"]["pretokenizers"][1]["add_prefix_space"] = json!(true),
            "not a byte-level split the runtime has",
        ),
        (
            "normalizer",
            |j| j["normalizer"] = json!({"type": "NFC"}),
            "normalizer {\"type\":\"NFC\"}",
        ),
        (
            "BOS-adding post-processor",
            |j| {
                j["post_processor"] = json!({"type": "TemplateProcessing",
                    "single": [{"SpecialToken": {"id": "<|im_start|>", "type_id": 0}},
                               {"Sequence": {"id": "A", "type_id": 0}}],
                    "pair": [], "special_tokens": {}});
            },
            "post_processor",
        ),
        (
            "no byte-level decoder",
            |j| j["decoder"] = Value::Null,
            "needs the `ByteLevel` decoder",
        ),
        (
            "lstrip added token",
            |j| j["added_tokens"][2]["lstrip"] = json!(true),
            "added token \"<|im_end|>\" has `lstrip` set",
        ),
        (
            "byte fallback",
            |j| j["model"]["byte_fallback"] = json!(true),
            "`model.byte_fallback` is true in a byte-level",
        ),
        (
            "ignore_merges",
            |j| j["model"]["ignore_merges"] = json!(true),
            "`model.ignore_merges` is true",
        ),
    ];
    for (name, edit, want) in cases {
        let error = refusal(edit);
        assert!(
            error.contains("tokenizer.json") && error.contains(want),
            "{name}: {error}"
        );
    }
}
