//! Checkpoints whose tokenizer comes only as `tokenizer.json` (no `vocab.txt`): the
//! converter takes the normalizer settings from that file, refuses the ones
//! tinyformer's tokenizer would not reproduce, and warns about a
//! `tokenizer_config.json` that contradicts it (following `tokenizer.json`, as
//! Hugging Face `tokenizers` does).
//!
//! Fixture: `tests/fixtures/tokenizer/tiny-cased/`, written by
//! `tools/reference/tokenizer_goldens.py goldens` (see its docstring): the
//! `tokenizer.json` Hugging Face `tokenizers` saves for the vocabulary of
//! `tests/fixtures/tiny-bert-mean` with `BertNormalizer(lowercase=False,
//! strip_accents=None)` (a cased checkpoint), and `parity.jsonl`, the ids `tokenizers`
//! gives with it (truncated to 128, `pieces` counted before truncation).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use tinyformer::format::writer::AlignedBuf;
use tinyformer::Model;
use tinyformer_cli::checkpoint::{Checkpoint, Parts, TokenizerSettings, VocabSource};
use tinyformer_cli::convert::convert_float;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn cased_tokenizer_json() -> Value {
    let path = fixtures().join("tokenizer/tiny-cased/tokenizer.json");
    serde_json::from_slice(&read(&path)).unwrap()
}

/// tiny-bert-mean's files except `vocab.txt` and `tokenizer_config.json`.
struct Files {
    config: Vec<u8>,
    safetensors: Vec<u8>,
    pooling: Vec<u8>,
}

fn tiny_bert_mean() -> Files {
    let dir = fixtures().join("tiny-bert-mean");
    Files {
        config: read(&dir.join("config.json")),
        safetensors: read(&dir.join("model.safetensors")),
        pooling: read(&dir.join("1_Pooling/config.json")),
    }
}

/// Loads tiny-bert-mean with `tokenizer_json` as its only tokenizer file, plus a
/// `tokenizer_config.json` if given; the error text with its context chain.
fn load(tokenizer_json: &Value, tokenizer_config: Option<&Value>) -> Result<Checkpoint, String> {
    let files = tiny_bert_mean();
    let json = serde_json::to_vec(tokenizer_json).unwrap();
    let config = tokenizer_config.map(|v| serde_json::to_vec(v).unwrap());
    let parts = Parts {
        config_json: &files.config,
        safetensors: &files.safetensors,
        vocab: VocabSource::TokenizerJson(&json),
        tokenizer_config: config.as_deref(),
        pooling_config: Some(&files.pooling),
    };
    Checkpoint::from_parts(&parts).map_err(|e| format!("{e:#}"))
}

fn with_normalizer(normalizer: Value) -> Value {
    let mut json = cased_tokenizer_json();
    json["normalizer"] = normalizer;
    json
}

const CASED: TokenizerSettings = TokenizerSettings {
    lowercase: false,
    strip_accents: false,
    chinese_chars: true,
    clean_text: true,
};

/// The model file's tokenizer gives what `tokenizers` gives with the cased
/// `tokenizer.json`, on every golden (the issue's case first: "Hello World Café" is
/// `[CLS] [UNK] [UNK] [UNK] [SEP]` with this uncased vocabulary, not lowercased).
#[test]
fn cased_tokenizer_json_matches_hugging_face() {
    let ckpt = load(&cased_tokenizer_json(), None).unwrap();
    assert_eq!(ckpt.tokenizer, CASED);
    let bytes = convert_float(&ckpt, false, None).unwrap();
    let buf = AlignedBuf::from_bytes(&bytes);
    let model = Model::from_bytes(buf.as_bytes()).unwrap();
    let goldens =
        std::fs::read_to_string(fixtures().join("tokenizer/tiny-cased/parity.jsonl")).unwrap();
    let mut count = 0;
    for line in goldens.lines() {
        let golden: Value = serde_json::from_str(line).unwrap();
        let text = golden["text"].as_str().unwrap();
        let want: Vec<u32> = serde_json::from_value(golden["ids"].clone()).unwrap();
        let mut ids = [0u32; 128];
        let enc = model.tokenizer().encode(text.as_bytes(), &mut ids).unwrap();
        assert_eq!(&ids[..enc.len], &want[..], "{text:?}");
        assert_eq!(enc.pieces_total as u64, golden["pieces"].as_u64().unwrap());
        count += 1;
    }
    assert!(count > 100);
    assert!(goldens.starts_with(r#"{"text":"Hello World Café","ids":[2,1,1,1,3],"#));
}

/// The issue's reproduction through the command line: `convert` a directory with only
/// `tokenizer.json`, then `tokenize`.
#[test]
fn cli_convert_and_tokenize_keep_case() {
    let dir = tempfile::tempdir().unwrap();
    let source = fixtures().join("tiny-bert-mean");
    for file in ["config.json", "model.safetensors", "modules.json"] {
        std::fs::copy(source.join(file), dir.path().join(file)).unwrap();
    }
    std::fs::create_dir(dir.path().join("1_Pooling")).unwrap();
    std::fs::copy(
        source.join("1_Pooling/config.json"),
        dir.path().join("1_Pooling/config.json"),
    )
    .unwrap();
    std::fs::copy(
        fixtures().join("tokenizer/tiny-cased/tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    let model = dir.path().join("model.tfm");
    let exe = env!("CARGO_BIN_EXE_tinyformer");
    let out = Command::new(exe)
        .arg("convert")
        .arg(dir.path())
        .arg("-o")
        .arg(&model)
        .args(["--dtype", "f32"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(exe)
        .args(["tokenize", "--json", "-m"])
        .arg(&model)
        .arg("Hello World Café")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["ids"], json!([2, 1, 1, 1, 3]), "{line}");
}

/// How each supported normalizer maps to the tokenizer's flags.
#[test]
fn normalizer_settings_are_read() {
    let bert = |lowercase: Value, strip_accents: Value| {
        json!({"type": "BertNormalizer", "clean_text": false, "handle_chinese_chars": false,
               "strip_accents": strip_accents, "lowercase": lowercase})
    };
    let flags = |lowercase, strip_accents, chinese_chars, clean_text| TokenizerSettings {
        lowercase,
        strip_accents,
        chinese_chars,
        clean_text,
    };
    for (normalizer, want) in [
        (
            bert(json!(true), Value::Null),
            flags(true, true, false, false),
        ),
        (
            bert(json!(true), json!(false)),
            flags(true, false, false, false),
        ),
        (
            bert(json!(false), json!(true)),
            flags(false, true, false, false),
        ),
        // Absent fields take BertNormalizer's defaults.
        (
            json!({"type": "BertNormalizer"}),
            flags(true, true, true, true),
        ),
        (
            json!({"type": "Sequence", "normalizers": [bert(json!(false), Value::Null)]}),
            flags(false, false, false, false),
        ),
        // No normalizer: nothing is changed before pre-tokenization.
        (Value::Null, flags(false, false, false, false)),
        (
            json!({"type": "Sequence", "normalizers": []}),
            flags(false, false, false, false),
        ),
    ] {
        let ckpt = load(&with_normalizer(normalizer.clone()), None)
            .unwrap_or_else(|e| panic!("{normalizer}: {e}"));
        assert_eq!(ckpt.tokenizer, want, "{normalizer}");
    }
}

/// What tinyformer's tokenizer would not reproduce is refused, naming the file and
/// the field.
#[test]
fn unsupported_tokenizer_json_settings_are_refused() {
    let mut prefix = cased_tokenizer_json();
    prefix["model"]["continuing_subword_prefix"] = json!("@@");
    let mut unk = cased_tokenizer_json();
    unk["model"]["unk_token"] = json!("<unk>");
    let mut word_chars = cased_tokenizer_json();
    word_chars["model"]["max_input_chars_per_word"] = json!(200);
    let mut pre = cased_tokenizer_json();
    pre["pre_tokenizer"] = json!({"type": "Whitespace"});
    let mut model = cased_tokenizer_json();
    model["model"]["type"] = json!("BPE");
    for (json, want) in [
        (
            with_normalizer(json!({"type": "NFC"})),
            "tokenizer.json: field `normalizer.type` is \"NFC\"; tinyformer's tokenizer supports BertNormalizer",
        ),
        (
            with_normalizer(json!({"type": "Sequence", "normalizers": [
                {"type": "NFD"}, {"type": "StripAccents"}]})),
            "tokenizer.json: field `normalizer.normalizers` chains 2 normalizers",
        ),
        (
            with_normalizer(json!({"type": "Sequence", "normalizers": [{"type": "Lowercase"}]})),
            "tokenizer.json: field `normalizer.normalizers[0].type` is \"Lowercase\"",
        ),
        (
            with_normalizer(json!({"type": "BertNormalizer", "lowercase": false, "nfc": true})),
            "tokenizer.json: field `normalizer` (BertNormalizer): unknown field `nfc`",
        ),
        (
            with_normalizer(json!({"type": "BertNormalizer", "lowercase": "no"})),
            "tokenizer.json: field `normalizer` (BertNormalizer): invalid type: string \"no\", expected a boolean",
        ),
        (
            prefix,
            "tokenizer.json: field `model.continuing_subword_prefix` is `@@`; tinyformer's tokenizer supports `##`",
        ),
        (
            unk,
            "tokenizer.json: field `model.unk_token` is `<unk>`; tinyformer's tokenizer supports `[UNK]`",
        ),
        (
            word_chars,
            "tokenizer.json: field `model.max_input_chars_per_word` is 200; tinyformer's tokenizer supports 100",
        ),
        (
            pre,
            "tokenizer.json: field `pre_tokenizer` is {\"type\":\"Whitespace\"}; tinyformer's tokenizer supports BertPreTokenizer",
        ),
        (
            model,
            "tokenizer.json: field `model.type` is \"BPE\", only WordPiece is supported",
        ),
    ] {
        let err = load(&json, None).err().expect("refused");
        assert!(err.contains(want), "{err}\n   expected {want}");
    }
}

/// A `tokenizer_config.json` that contradicts `tokenizer.json`'s normalizer
/// (`transformers` would follow the one, `tokenizers` the other) gets a warning, and
/// the settings follow `tokenizer.json`; stating the same values, or nothing, gets no
/// warning.
#[test]
fn tokenizer_json_wins_over_a_contradicting_tokenizer_config() {
    let json = cased_tokenizer_json();
    for (config, want) in [
        (
            json!({"do_lower_case": true}),
            "tokenizer_config.json: field `do_lower_case` is true but tokenizer.json's normalizer has `lowercase` false",
        ),
        (
            json!({"do_lower_case": false, "strip_accents": true}),
            "tokenizer_config.json: field `strip_accents` is true but tokenizer.json's normalizer has `strip_accents` false",
        ),
        (
            json!({"tokenize_chinese_chars": false}),
            "tokenizer_config.json: field `tokenize_chinese_chars` is false but tokenizer.json's normalizer has `handle_chinese_chars` true",
        ),
    ] {
        let ckpt = load(&json, Some(&config)).unwrap();
        assert_eq!(ckpt.tokenizer, CASED, "{config}");
        assert_eq!(ckpt.warnings.len(), 1, "{config}");
        assert!(ckpt.warnings[0].contains(want), "{:?}\n   expected {want}", ckpt.warnings);
    }
    for config in [
        json!({"do_lower_case": false, "strip_accents": null, "tokenize_chinese_chars": true}),
        json!({"model_max_length": 64}),
    ] {
        let ckpt = load(&json, Some(&config)).unwrap();
        assert_eq!(ckpt.tokenizer, CASED, "{config}");
        assert!(ckpt.warnings.is_empty(), "{config}: {:?}", ckpt.warnings);
    }
}
