//! Hugging Face `LlamaForCausalLM` directories as a decoder source, on
//! `tests/fixtures/hf-llama/stories260K/`: llama2.c's stories260K written the way
//! Hugging Face's tooling stores it (q/k rows in the half-split RoPE order, a
//! Llama-2-style `tokenizer.json`) by `tools/reference/hf_from_llama2c.py`.
//!
//! The conversion must give the llama2.c conversion's model byte for byte, reproduce
//! llama2.c's published greedy output, and tokenize like both llama2.c's tokenizer and
//! Hugging Face `tokenizers` (the golden `stories260K-tokens.json`, written by the
//! script). Damaged copies of the directory must be refused with errors naming the
//! file and the field or tensor.
//!
//! Test names start with `hf_llama` so that `cargo test -p tinyformer-cli hf_llama`
//! selects them.

mod common;

use common::{json_lines, run, stderr, JsonCase};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use tinyformer::format::writer::AlignedBuf;
use tinyformer::format::TensorKind as K;
use tinyformer::tokenizer::sentencepiece::SentencePiece;
use tinyformer::{Decoder, Logits};
use tinyformer_cli::decoder::{convert_float, LlamaParams, LlamaSource};
use tinyformer_cli::generate::{generate, DecoderRunner, GenerateOptions};
use tinyformer_cli::hf_llama::{tokenizer_section, HfLlama};
use tinyformer_cli::llama2c::read_llama2c;
use tinyformer_cli::llama2c_tokenizer::section_from_file;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn hf_dir() -> PathBuf {
    repo("tests/fixtures/hf-llama/stories260K")
}

fn llama2c_section() -> Vec<u8> {
    section_from_file(&repo("models/stories260K/tok512.bin"), 512).unwrap()
}

fn llama2c_model(section: &[u8]) -> Vec<u8> {
    let ckpt = read_llama2c(&repo("models/stories260K/stories260K.bin")).unwrap();
    convert_float(&ckpt, section, false, None).unwrap()
}

/// `ids` of `text` (BOS first) with a section's encoder.
fn encode(section: &[u8], text: &str) -> Vec<u32> {
    let sp = SentencePiece::from_section(section).unwrap();
    let mut ids = vec![0u32; text.len() + 2];
    let n = sp.encode(text.as_bytes(), true, &mut ids).unwrap();
    ids.truncate(n);
    ids
}

/// Float logits after `prompt` of a converted model.
fn logits(model: &[u8], prompt: &[u32]) -> Vec<f32> {
    let buf = AlignedBuf::from_bytes(model);
    let decoder = Decoder::from_bytes(buf.as_bytes()).unwrap();
    let mut runner = DecoderRunner::new(decoder, Some(16)).unwrap();
    let mut state = runner.state().unwrap();
    match state.prefill(prompt).unwrap() {
        Logits::F32(l) => l.to_vec(),
        Logits::Q16(_) => panic!("a float model gives f32 logits"),
    }
}

#[test]
fn hf_llama_converts_to_the_llama2c_model_byte_for_byte() {
    let hf = HfLlama::from_dir(&hf_dir()).unwrap();
    assert_eq!(
        hf.params(),
        LlamaParams {
            vocab: 512,
            hidden: 64,
            ffn: 172,
            layers: 5,
            heads: 8,
            kv_heads: 4,
            max_positions: 512,
            rope_theta: 10000.0,
            rms_eps: 1e-5,
            bos: 1,
            eos: 2,
            separate_output: false,
        }
    );
    // Same tokenizer section: the whole file (config, every tensor) is identical.
    let section = llama2c_section();
    let want = llama2c_model(&section);
    assert_eq!(convert_float(&hf, &section, false, None).unwrap(), want);
    let ckpt = read_llama2c(&repo("models/stories260K/stories260K.bin")).unwrap();
    assert_eq!(
        convert_float(&hf, &section, true, None).unwrap(),
        convert_float(&ckpt, &section, true, None).unwrap()
    );
}

#[test]
fn hf_llama_greedy_reproduces_llama2c() {
    let hf = HfLlama::from_dir(&hf_dir()).unwrap();
    let section = tokenizer_section(&hf_dir()).unwrap();
    let model = convert_float(&hf, &section, false, None).unwrap();
    let buf = AlignedBuf::from_bytes(&model);
    let decoder = Decoder::from_bytes(buf.as_bytes()).unwrap();
    let mut runner = DecoderRunner::new(decoder, None).unwrap();
    let options = GenerateOptions {
        max_new: 200,
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        seed: 0,
        chat: false,
        special_tokens: true,
    };
    let mut text = String::new();
    let (ids, _) = generate(&mut runner, &encode(&section, ""), &options, |_, s| {
        text.push_str(s);
        Ok(())
    })
    .unwrap();
    assert_eq!(ids.len(), 200);
    let want = fs::read_to_string(repo("models/stories260K/greedy-200.txt")).unwrap();
    assert_eq!(text, want);
}

/// The stored q_proj/k_proj rows as they are in the file (half-split order), every
/// other tensor from the reader: what a converter skipping the un-permutation gives.
struct Unpermuted {
    hf: HfLlama,
    raw: Vec<(K, u16, Vec<f32>)>,
}

impl LlamaSource for Unpermuted {
    fn params(&self) -> LlamaParams {
        self.hf.params()
    }

    fn tensor(&self, kind: K, layer: Option<u16>) -> anyhow::Result<&[f32]> {
        let raw = self
            .raw
            .iter()
            .find(|(k, l, _)| *k == kind && Some(*l) == layer);
        match raw {
            Some((_, _, data)) => Ok(data),
            None => self.hf.tensor(kind, layer),
        }
    }
}

fn f32s(view: &TensorView<'_>) -> Vec<f32> {
    assert_eq!(view.dtype(), Dtype::F32);
    view.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

#[test]
fn hf_llama_unpermutation_matters() {
    let bytes = fs::read(hf_dir().join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let hf = HfLlama::from_dir(&hf_dir()).unwrap();
    let mut raw = Vec::new();
    for l in 0..5u16 {
        for (kind, name) in [(K::QueryW, "q_proj"), (K::KeyW, "k_proj")] {
            let view = st
                .tensor(&format!("model.layers.{l}.self_attn.{name}.weight"))
                .unwrap();
            let stored = f32s(&view);
            let read = hf.tensor(kind, Some(l)).unwrap();
            // A permutation of whole rows (of 64), not the identity.
            assert_ne!(stored, read);
            let mut a: Vec<u32> = stored.iter().map(|x| x.to_bits()).collect();
            let mut b: Vec<u32> = read.iter().map(|x| x.to_bits()).collect();
            a.sort_unstable();
            b.sort_unstable();
            assert_eq!(a, b);
            // Row 1 of each head (pair 0, element 1) is stored at row d/2 = 4.
            assert_eq!(read[64..128], stored[4 * 64..5 * 64]);
            raw.push((kind, l, stored));
        }
    }
    let section = llama2c_section();
    let prompt = encode(&section, "Once upon a time, there was a little girl");
    let want = logits(&llama2c_model(&section), &prompt);
    let right = logits(&convert_float(&hf, &section, false, None).unwrap(), &prompt);
    assert_eq!(right, want);
    let wrong = Unpermuted { hf, raw };
    let wrong = logits(
        &convert_float(&wrong, &section, false, None).unwrap(),
        &prompt,
    );
    let diff = wrong
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff > 0.1, "max logit difference {diff}");
}

#[test]
fn hf_llama_tokenizer_matches_llama2c_and_hf_tokenizers() {
    let hf = tokenizer_section(&hf_dir()).unwrap();
    let l2c = llama2c_section();
    let heldout = fs::read_to_string(repo("tests/fixtures/stories/heldout.txt")).unwrap();
    let mut lines = 0;
    for line in heldout.lines() {
        assert_eq!(encode(&hf, line), encode(&l2c, line), "{line:?}");
        lines += 1;
    }
    assert_eq!(lines, 82);

    let golden: Value = serde_json::from_str(
        &fs::read_to_string(repo("tests/fixtures/hf-llama/stories260K-tokens.json")).unwrap(),
    )
    .unwrap();
    let cases = golden["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 82 + 7);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(encode(&hf, text), want, "{text:?}");
    }

    // Decoding gives llama2.c's pieces: spaces, not `▁`; the specials as Hugging Face
    // names them.
    let sp = SentencePiece::from_section(&hf).unwrap();
    assert_eq!((sp.unk_id(), sp.bos_id(), sp.eos_id()), (0, 1, 2));
    assert_eq!(sp.byte_fallback_base(), 3);
    assert_eq!(sp.piece(1), Some(&b"<s>"[..]));
    assert_eq!(sp.piece(259), Some(&b" t"[..]));
    assert_eq!(sp.decode(1, 403), b"Once");
    assert_eq!(sp.decode(403, 407), b" upon");
}

/// A copy of the fixture directory in a temporary directory, to damage.
fn copy_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["config.json", "model.safetensors", "tokenizer.json"] {
        fs::copy(hf_dir().join(name), dir.path().join(name)).unwrap();
    }
    dir
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut v);
    fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

#[test]
fn hf_llama_tokenizer_in_the_metaspace_form() {
    // Newer files: no normalizer, a Metaspace pre-tokenizer that prepends `▁`.
    let dir = copy_dir();
    edit_json(&dir.path().join("tokenizer.json"), |v| {
        v["normalizer"] = Value::Null;
        v["pre_tokenizer"] = json!({
            "type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "first",
            "split": false
        });
    });
    assert_eq!(
        tokenizer_section(dir.path()).unwrap(),
        tokenizer_section(&hf_dir()).unwrap()
    );
    // Splitting words at `▁` changes nothing when no piece has `▁` inside.
    edit_json(&dir.path().join("tokenizer.json"), |v| {
        v["pre_tokenizer"]["split"] = json!(true)
    });
    assert_eq!(
        tokenizer_section(dir.path()).unwrap(),
        tokenizer_section(&hf_dir()).unwrap()
    );
    // Merges as "left right" strings (older files) read the same.
    edit_json(
        &dir.path().join("tokenizer.json"),
        common::merges_as_strings,
    );
    assert_eq!(
        tokenizer_section(dir.path()).unwrap(),
        tokenizer_section(&hf_dir()).unwrap()
    );
}

/// Rewrites `model.safetensors` with `edit` applied to its (name, dtype, shape, data).
type Entry = (String, Dtype, Vec<usize>, Vec<u8>);

fn edit_weights(dir: &Path, edit: impl FnOnce(&mut Vec<Entry>)) {
    let path = dir.join("model.safetensors");
    let bytes = fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut entries: Vec<Entry> = st
        .tensors()
        .into_iter()
        .map(|(name, v)| (name, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut entries);
    let views: Vec<(String, TensorView<'_>)> = entries
        .iter()
        .map(|(name, dtype, shape, data)| {
            (
                name.clone(),
                TensorView::new(*dtype, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    fs::write(&path, safetensors::serialize(views, &None).unwrap()).unwrap();
}

/// The error of reading the weights, as the CLI prints it (`{:#}`).
fn weights_error(dir: &Path) -> String {
    format!("{:#}", HfLlama::from_dir(dir).unwrap_err())
}

#[test]
fn hf_llama_reads_f16_and_bf16() {
    let want = HfLlama::from_dir(&hf_dir()).unwrap();
    for dtype in [Dtype::F16, Dtype::BF16] {
        let dir = copy_dir();
        edit_weights(dir.path(), |entries| {
            for (_, d, _, data) in entries.iter_mut() {
                *data = data
                    .chunks_exact(4)
                    .flat_map(|b| {
                        let x = f32::from_le_bytes(b.try_into().unwrap());
                        match dtype {
                            Dtype::F16 => half::f16::from_f32(x).to_le_bytes(),
                            _ => half::bf16::from_f32(x).to_le_bytes(),
                        }
                    })
                    .collect();
                *d = dtype;
            }
        });
        let got = HfLlama::from_dir(dir.path()).unwrap();
        for (kind, layer) in [
            (K::WordEmb, None),
            (K::QueryW, Some(3)),
            (K::DownW, Some(4)),
        ] {
            let rounded: Vec<f32> = want
                .tensor(kind, layer)
                .unwrap()
                .iter()
                .map(|&x| match dtype {
                    Dtype::F16 => half::f16::from_f32(x).to_f32(),
                    _ => half::bf16::from_f32(x).to_f32(),
                })
                .collect();
            assert_eq!(
                got.tensor(kind, layer).unwrap(),
                rounded,
                "{dtype:?} {kind:?}"
            );
        }
    }
}

#[test]
fn hf_llama_refuses_bad_configs() {
    let cases: [JsonCase; 8] = [
        (
            "architecture",
            |v| v["architectures"] = json!(["MistralForCausalLM"]),
            "not LlamaForCausalLM",
        ),
        (
            "rope_scaling",
            |v| v["rope_scaling"] = json!({"rope_type": "linear", "factor": 2.0}),
            "`rope_scaling`",
        ),
        (
            "hidden_act",
            |v| v["hidden_act"] = json!("gelu"),
            "`hidden_act`",
        ),
        (
            "missing field",
            |v| {
                v.as_object_mut().unwrap().remove("hidden_size");
            },
            "hidden_size",
        ),
        (
            "kv heads",
            |v| v["num_key_value_heads"] = json!(3),
            "`num_key_value_heads`",
        ),
        (
            "eos list",
            |v| v["eos_token_id"] = json!([600, 2]),
            "`eos_token_id` is 600",
        ),
        ("bias", |v| v["attention_bias"] = json!(true), "biases"),
        (
            "rope type",
            |v| v["rope_parameters"] = json!({"rope_type": "llama3", "rope_theta": 5e5}),
            "rope_type",
        ),
    ];
    for (what, edit, want) in cases {
        let dir = copy_dir();
        edit_json(&dir.path().join("config.json"), edit);
        let error = weights_error(dir.path());
        assert!(
            error.contains("config.json") && error.contains(want),
            "{what}: {error}"
        );
    }
    // Accepted variants: an eos list (the first taken), rope_theta under
    // rope_parameters, no num_key_value_heads (= heads).
    let dir = copy_dir();
    edit_json(&dir.path().join("config.json"), |v| {
        v["eos_token_id"] = json!([2, 7]);
        v["rope_parameters"] = json!({"rope_type": "default", "rope_theta": 5e5});
    });
    let p = HfLlama::from_dir(dir.path()).unwrap().params();
    assert_eq!((p.eos, p.rope_theta), (2, 5e5));
    edit_json(&dir.path().join("config.json"), |v| {
        v.as_object_mut().unwrap().remove("num_key_value_heads");
    });
    let error = weights_error(dir.path());
    assert!(
        error.contains("k_proj") && error.contains("[32, 64]"),
        "{error}"
    );
}

#[test]
fn hf_llama_refuses_bad_tensors() {
    // Missing.
    let dir = copy_dir();
    edit_weights(dir.path(), |e| {
        e.retain(|(name, ..)| name != "model.layers.2.mlp.up_proj.weight")
    });
    let error = weights_error(dir.path());
    assert!(
        error.contains("model.safetensors")
            && error.contains("missing tensor `model.layers.2.mlp.up_proj.weight`"),
        "{error}"
    );
    // Wrong shape (same element count).
    let dir = copy_dir();
    edit_weights(dir.path(), |e| {
        for (name, _, shape, _) in e.iter_mut() {
            if name == "model.layers.1.self_attn.k_proj.weight" {
                *shape = vec![64, 32];
            }
        }
    });
    let error = weights_error(dir.path());
    assert!(
        error.contains("model.safetensors")
            && error.contains("`model.layers.1.self_attn.k_proj.weight` has shape [64, 32]")
            && error.contains("[32, 64]"),
        "{error}"
    );
    // A bias the runtime has no place for.
    let dir = copy_dir();
    edit_weights(dir.path(), |e| {
        e.push((
            "model.layers.0.self_attn.q_proj.bias".into(),
            Dtype::F32,
            vec![64],
            vec![0; 256],
        ))
    });
    let error = weights_error(dir.path());
    assert!(
        error.contains("unexpected tensor `model.layers.0.self_attn.q_proj.bias`"),
        "{error}"
    );
    // Unsupported dtype, non-finite values.
    let dir = copy_dir();
    edit_weights(dir.path(), |e| {
        for (name, dtype, _, data) in e.iter_mut() {
            if name == "model.norm.weight" {
                *dtype = Dtype::I32;
            }
            if name == "model.embed_tokens.weight" {
                data[4..8].copy_from_slice(&f32::NAN.to_le_bytes());
            }
        }
    });
    let error = weights_error(dir.path());
    assert!(
        error.contains("`model.embed_tokens.weight` has a non-finite value NaN at element 1"),
        "{error}"
    );
    edit_weights(dir.path(), |e| {
        for (name, _, _, data) in e.iter_mut() {
            if name == "model.embed_tokens.weight" {
                data[4..8].copy_from_slice(&0f32.to_le_bytes());
            }
        }
    });
    let error = weights_error(dir.path());
    assert!(
        error.contains("`model.norm.weight` has dtype I32, not F32, F16 or BF16"),
        "{error}"
    );
    // Untied: lm_head is required.
    let dir = copy_dir();
    edit_json(&dir.path().join("config.json"), |v| {
        v["tie_word_embeddings"] = json!(false)
    });
    let error = weights_error(dir.path());
    assert!(error.contains("missing tensor `lm_head.weight`"), "{error}");
    // Not a safetensors file.
    let dir = copy_dir();
    fs::write(dir.path().join("model.safetensors"), b"not safetensors").unwrap();
    let error = weights_error(dir.path());
    assert!(
        error.contains("model.safetensors") && error.contains("invalid safetensors"),
        "{error}"
    );
}

#[test]
fn hf_llama_refuses_bad_tokenizers() {
    let cases: [JsonCase; 6] = [
        (
            "byte-level",
            |v| {
                v["normalizer"] = Value::Null;
                v["pre_tokenizer"] = json!({"type": "ByteLevel", "add_prefix_space": false,
                    "trim_offsets": true, "use_regex": true});
            },
            "`model.byte_fallback` is true in a byte-level (`ByteLevel`) BPE",
        ),
        (
            "no byte fallback",
            |v| v["model"]["byte_fallback"] = json!(false),
            "byte_fallback",
        ),
        (
            "unigram",
            |v| v["model"]["type"] = json!("Unigram"),
            "only BPE",
        ),
        (
            "no prefix",
            |v| {
                v["normalizer"] = json!({"type": "Replace", "pattern": {"String": " "},
                    "content": "\u{2581}"})
            },
            "expected Llama 2's text handling",
        ),
        (
            "merges out of order",
            |v| {
                // Move the second merge of "▁the" to the end.
                let merges = v["model"]["merges"].as_array_mut().unwrap();
                let at = merges
                    .iter()
                    .position(|m| m == &json!(["\u{2581}th", "e"]))
                    .unwrap();
                let m = merges.remove(at);
                merges.push(m);
            },
            "makes \"▁the\" again",
        ),
        (
            "incomplete merges",
            |v| {
                let merges = v["model"]["merges"].as_array_mut().unwrap();
                merges.retain(|m| m != &json!(["\u{2581}th", "e"]));
            },
            "\"▁th\" + \"e\" is not one of them",
        ),
    ];
    // The vocabulary must cover config.json's vocab_size exactly.
    let dir = copy_dir();
    edit_json(&dir.path().join("config.json"), |v| {
        v["vocab_size"] = json!(513)
    });
    let error = format!("{:#}", tokenizer_section(dir.path()).unwrap_err());
    assert!(
        error.contains("tokenizer.json") && error.contains("no token has id 512"),
        "{error}"
    );
    for (what, edit, want) in cases {
        let dir = copy_dir();
        edit_json(&dir.path().join("tokenizer.json"), edit);
        let error = format!("{:#}", tokenizer_section(dir.path()).unwrap_err());
        assert!(
            error.contains("tokenizer.json") && error.contains(want),
            "{what}: {error}"
        );
    }
}

/// `tinyformer convert DIR` picks this reader for a `LlamaForCausalLM` directory: the
/// f32 file generates llama2.c's published greedy text, and int8 converts with
/// calibration (its accuracy is the llama2.c checkpoint's, tools/tests/decoder.rs).
#[test]
fn hf_llama_converts_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = hf_dir();
    let f32_out = tmp.path().join("hf-f32.tfm");
    let (dir_s, out_s) = (dir.to_str().unwrap(), f32_out.to_str().unwrap());
    let o = run(&["convert", dir_s, "-o", out_s, "--dtype", "f32"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["generate", "-m", out_s, "-n", "200", "--json", ""]);
    assert!(o.status.success(), "{}", stderr(&o));
    let want = fs::read_to_string(repo("models/stories260K/greedy-200.txt")).unwrap();
    assert_eq!(json_lines(&o)[0]["text"].as_str().unwrap(), want);

    let int8_out = tmp.path().join("hf-int8.tfm");
    let calibration = repo("tests/fixtures/stories/calibration.txt");
    let o = run(&[
        "convert",
        dir_s,
        "-o",
        int8_out.to_str().unwrap(),
        "--calibration",
        calibration.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["inspect", int8_out.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json_lines(&o)[0]["config"]["weight_dtype"], "i8");
}
