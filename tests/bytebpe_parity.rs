//! The byte-level BPE tokenizer (`tinyformer::tokenizer::bytebpe`) against Hugging Face
//! `tokenizers`.
//!
//! `tests/fixtures/bytebpe/tokenizer.json` is a byte-level BPE tokenizer trained with
//! `tokenizers` (SmolLM2's pre-tokenizer, three special tokens), and `goldens.jsonl`
//! what `tokenizers` gives for 6,000 strings with it: both made by
//! `tools/reference/bytebpe_goldens.py` (its docstring says how to regenerate them).
//! The section is built here from the `tokenizer.json` strings with `encode_section`, as
//! the host converter will, and every golden must match id for id: with special tokens
//! matched, as plain text, and with GPT-2's pre-tokenizer; and decoding the ids through
//! `Utf8Stream` must give HF's `decode`.

mod common;

use std::path::PathBuf;

use serde_json::Value;
use tinyformer::tokenizer::bytebpe::{
    encode_buffer_len, encode_section, ByteBpe, ByteBpeConfig, PreTokenizer,
};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Token strings by id, merges as `"left right"`, added-token ids and the id of
/// `<|endoftext|>`, from `tokenizer.json`.
struct HfTokenizer {
    tokens: Vec<String>,
    merges: Vec<String>,
    added: Vec<u32>,
    endoftext: u32,
}

fn read_tokenizer_json() -> HfTokenizer {
    let text = std::fs::read_to_string(repo("tests/fixtures/bytebpe/tokenizer.json")).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    let model = &json["model"];
    assert_eq!(model["type"], "BPE");
    let mut by_id: Vec<(u32, String)> = model["vocab"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(token, id)| (id.as_u64().unwrap() as u32, token.clone()))
        .collect();
    let mut added = Vec::new();
    let mut endoftext = None;
    for token in json["added_tokens"].as_array().unwrap() {
        let id = token["id"].as_u64().unwrap() as u32;
        let content = token["content"].as_str().unwrap().to_owned();
        if content == "<|endoftext|>" {
            endoftext = Some(id);
        }
        if !by_id.iter().any(|(i, _)| *i == id) {
            by_id.push((id, content));
        }
        added.push(id);
    }
    by_id.sort();
    let tokens: Vec<String> = by_id
        .into_iter()
        .enumerate()
        .map(|(i, (id, token))| {
            assert_eq!(i as u32, id, "ids are dense");
            token
        })
        .collect();
    // Merges are `["a", "b"]` pairs (tokenizers >= 0.20) or `"a b"` strings.
    let merges = model["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            Value::String(s) => s.clone(),
            Value::Array(pair) => format!(
                "{} {}",
                pair[0].as_str().unwrap(),
                pair[1].as_str().unwrap()
            ),
            other => panic!("merge {other}"),
        })
        .collect();
    HfTokenizer {
        tokens,
        merges,
        added,
        endoftext: endoftext.unwrap(),
    }
}

fn section(hf: &HfTokenizer, pre_tokenizer: PreTokenizer) -> Vec<u8> {
    let tokens: Vec<&str> = hf.tokens.iter().map(String::as_str).collect();
    let merges: Vec<&str> = hf.merges.iter().map(String::as_str).collect();
    let config = ByteBpeConfig {
        pre_tokenizer,
        eos_id: Some(hf.endoftext),
        ..ByteBpeConfig::smollm2()
    };
    encode_section(&tokens, &merges, &hf.added, &config).unwrap()
}

struct Golden {
    text: String,
    ids: Vec<u32>,
    plain_ids: Vec<u32>,
    gpt2_ids: Vec<u32>,
    decoded: String,
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_u64().unwrap() as u32)
        .collect()
}

fn goldens() -> Vec<Golden> {
    let text = std::fs::read_to_string(repo("tests/fixtures/bytebpe/goldens.jsonl")).unwrap();
    text.lines()
        .map(|line| {
            let json: Value = serde_json::from_str(line).unwrap();
            let text = json["text"].as_str().unwrap().to_owned();
            let main = ids(&json["ids"]);
            // Variants are stored only where they differ.
            let or_main = |key: &str| json.get(key).map_or_else(|| main.clone(), ids);
            Golden {
                plain_ids: or_main("plain_ids"),
                gpt2_ids: or_main("gpt2_ids"),
                decoded: json
                    .get("decoded")
                    .map_or_else(|| text.clone(), |d| d.as_str().unwrap().to_owned()),
                ids: main,
                text,
            }
        })
        .collect()
}

fn encode(bpe: &ByteBpe<'_>, text: &str, special_tokens: bool) -> Vec<u32> {
    let mut out = vec![0u32; encode_buffer_len(text.len(), bpe.add_bos())];
    let n = bpe
        .encode(text.as_bytes(), special_tokens, &mut out)
        .unwrap();
    out.truncate(n);
    out
}

#[test]
fn smollm2_pre_tokenizer_matches_hf_on_every_golden() {
    let hf = read_tokenizer_json();
    let section = section(&hf, PreTokenizer::SmolLm2);
    let bpe = ByteBpe::from_section(&section).unwrap();
    assert_eq!(bpe.vocab_size() as usize, hf.tokens.len());
    assert_eq!(bpe.merge_count() as usize, hf.merges.len());
    assert_eq!(bpe.eos_id(), Some(hf.endoftext));
    assert_eq!((bpe.bos_id(), bpe.add_bos()), (None, false));
    let goldens = goldens();
    assert!(goldens.len() >= 5000, "{} goldens", goldens.len());
    let mut failures = 0;
    for golden in &goldens {
        let ids = encode(&bpe, &golden.text, true);
        let plain = encode(&bpe, &golden.text, false);
        let decoded = common::decode_bytebpe(&bpe, &ids);
        if ids != golden.ids || plain != golden.plain_ids || decoded != golden.decoded {
            failures += 1;
            if failures <= 10 {
                eprintln!(
                    "{:?}\n  ids  {ids:?}\n  hf   {:?}\n  plain {plain:?}\n  hf    {:?}\n  decoded {decoded:?} vs {:?}",
                    golden.text, golden.ids, golden.plain_ids, golden.decoded
                );
            }
        }
    }
    assert_eq!(
        failures,
        0,
        "{failures} of {} goldens differ",
        goldens.len()
    );
    // The fixture exercises what it should: special tokens, their plain form, digits.
    assert!(goldens.iter().any(|g| g.ids != g.plain_ids));
    assert!(goldens.iter().any(|g| g.ids != g.gpt2_ids));
}

#[test]
fn gpt2_pre_tokenizer_matches_hf_on_every_golden() {
    let hf = read_tokenizer_json();
    let section = section(&hf, PreTokenizer::Gpt2);
    let bpe = ByteBpe::from_section(&section).unwrap();
    let goldens = goldens();
    let failures: Vec<&Golden> = goldens
        .iter()
        .filter(|g| encode(&bpe, &g.text, true) != g.gpt2_ids)
        .collect();
    assert!(
        failures.is_empty(),
        "{} differ, first {:?}",
        failures.len(),
        failures.first().map(|g| &g.text)
    );
}

#[test]
fn special_tokens_match_verbatim_or_as_text() {
    let hf = read_tokenizer_json();
    let section = section(&hf, PreTokenizer::SmolLm2);
    let bpe = ByteBpe::from_section(&section).unwrap();
    let start = bpe.token_id(b"<|im_start|>").unwrap();
    let end = bpe.token_id(b"<|im_end|>").unwrap();
    assert!(bpe.is_added(start) && bpe.is_added(end));
    let ids = encode(&bpe, "<|im_start|>user\nHi<|im_end|>", true);
    assert_eq!(ids.first(), Some(&start));
    assert_eq!(ids.last(), Some(&end));
    let plain = encode(&bpe, "<|im_start|>user\nHi<|im_end|>", false);
    assert!(!plain.contains(&start) && !plain.contains(&end));
    assert_eq!(
        common::decode_bytebpe(&bpe, &plain),
        "<|im_start|>user\nHi<|im_end|>"
    );
}
