//! The `tinyformer` binary end to end: convert -> inspect -> tokenize/embed/classify/
//! eval, JSON Lines output, and clear errors (file and field named, non-zero exit)
//! for bad checkpoints and bad input, without damaging existing files.

use serde_json::Value;
use std::fs;
use std::path::Path;

mod common;
use common::*;

#[test]
fn convert_then_inspect_lists_every_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    for dtype in ["f32", "f16", "int8"] {
        let out = tmp.path().join(format!("m-{dtype}.tfm"));
        let o = convert(&fixture("tiny-bert-cls"), &out, dtype);
        assert!(o.status.success(), "{}", stderr(&o));
        let o = run(&["inspect", out.to_str().unwrap(), "--json", "--seq", "16"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v = &json_lines(&o)[0];
        assert_eq!(v["checksum"], "ok");
        let expected = if dtype == "int8" { 67 } else { 36 };
        assert_eq!(v["tensors"].as_array().unwrap().len(), expected, "{dtype}");
        assert_eq!(v["memory_plan"]["seq"], 16);
        assert_eq!(
            v["labels"],
            serde_json::json!(["negative", "neutral", "positive"])
        );
        let sum: u64 = v["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["bytes"].as_u64().unwrap())
            .sum();
        assert_eq!(v["tensor_bytes"].as_u64().unwrap(), sum);
    }
}

#[test]
fn json_lines_one_object_per_text_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m.tfm");
    assert!(convert(&fixture("tiny-bert-cls"), &model, "int8")
        .status
        .success());
    let m = model.to_str().unwrap();
    let texts = [
        "the best film of the year",
        "it was",
        "dull and far too long",
    ];
    let mut args = vec!["classify", "-m", m, "--json"];
    args.extend(texts);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 3);
    for (line, text) in lines.iter().zip(texts) {
        assert_eq!(line["text"], text);
        let scores = line["scores"].as_object().unwrap();
        assert_eq!(scores.len(), 3);
        let best = scores
            .values()
            .map(|v| v.as_f64().unwrap())
            .fold(0.0, f64::max);
        assert_eq!(line["score"].as_f64().unwrap(), best);
        assert!(scores.contains_key(line["label"].as_str().unwrap()));
    }
    let o = run(&["tokenize", "-m", m, "--json", "Hello, world!"]);
    let ids = &json_lines(&o)[0]["ids"];
    assert_eq!(ids[0], 2, "starts with [CLS]");
    assert_eq!(
        ids.as_array().unwrap().last().unwrap(),
        3,
        "ends with [SEP]"
    );
    let o = run(&["embed", "-m", m, "--json", "a", "b"]);
    assert_eq!(json_lines(&o).len(), 2);
}

#[test]
fn long_text_is_truncated_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m.tfm");
    assert!(convert(&fixture("tiny-bert-cls"), &model, "f32")
        .status
        .success());
    let long = "word ".repeat(500);
    let o = run(&["tokenize", "-m", model.to_str().unwrap(), "--json", &long]);
    assert!(o.status.success());
    assert_eq!(json_lines(&o)[0]["ids"].as_array().unwrap().len(), 64);
    assert!(stderr(&o).contains("truncated"), "{}", stderr(&o));
}

#[test]
fn eval_reports_accuracy_and_agreement() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.tfm"), tmp.path().join("b.tfm"));
    assert!(convert(&fixture("tiny-bert-cls"), &a, "int8")
        .status
        .success());
    assert!(convert(&fixture("tiny-bert-cls"), &b, "f32")
        .status
        .success());
    let data = tmp.path().join("d.tsv");
    fs::write(
        &data,
        "positive\ta fine film\nnegative\tawful\nneutral\tit exists\n",
    )
    .unwrap();
    let o = run(&[
        "eval",
        "-m",
        a.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--compare",
        b.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = &json_lines(&o)[0];
    assert_eq!(v["examples"], 3);
    let confusion: u64 = v["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|x| x.as_u64().unwrap())
        .sum();
    assert_eq!(confusion, 3);
    assert!(v["agreement"].as_f64().is_some());
    // Invalid UTF-8 and unknown labels name the file and line.
    fs::write(&data, b"positive\tok\nnegative\t\xff\xfe\n").unwrap();
    let o = run(&[
        "eval",
        "-m",
        a.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("d.tsv: line 2: invalid UTF-8"),
        "{}",
        stderr(&o)
    );
    fs::write(&data, "great\tok\n").unwrap();
    let o = run(&[
        "eval",
        "-m",
        a.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(
        stderr(&o).contains("line 1: label `great`"),
        "{}",
        stderr(&o)
    );
}

/// Bad checkpoints: each error names the file and the field, exits non-zero, and
/// leaves an existing output file untouched.
#[test]
fn bad_checkpoints_give_clear_errors() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("existing.tfm");
    fs::write(&out, b"keep me").unwrap();
    type Damage = fn(&Path);
    let cases: [(&str, Damage, &str); 8] = [
        (
            "missing config",
            |d| fs::remove_file(d.join("config.json")).unwrap(),
            "missing config.json",
        ),
        (
            "unsupported architecture",
            |d| {
                edit_config(
                    d,
                    "\"BertForSequenceClassification\"",
                    "\"GPT2LMHeadModel\"",
                )
            },
            "field `architectures`",
        ),
        (
            "unsupported activation",
            |d| edit_config(d, "\"gelu\"", "\"swish\""),
            "field `hidden_act`",
        ),
        (
            "pickle only",
            |d| {
                fs::remove_file(d.join("model.safetensors")).unwrap();
                fs::write(d.join("pytorch_model.bin"), b"pickle").unwrap();
            },
            "safe_serialization",
        ),
        (
            "shape mismatch",
            |d| edit_config(d, "\"intermediate_size\": 128", "\"intermediate_size\": 96"),
            "tensor `encoder.layer.0.intermediate.dense.weight` has shape [128, 64]",
        ),
        (
            "vocab mismatch",
            |d| {
                let path = d.join("vocab.txt");
                let text = fs::read_to_string(&path).unwrap();
                fs::write(&path, text.lines().skip(1).collect::<Vec<_>>().join("\n")).unwrap();
            },
            "vocabulary has 1535 tokens, config.json field `vocab_size` says 1536",
        ),
        (
            "missing vocab",
            |d| fs::remove_file(d.join("vocab.txt")).unwrap(),
            "missing vocab.txt",
        ),
        ("non-finite weight", poison_weight, "non-finite value"),
    ];
    for (name, damage, expected) in cases {
        let dir = copy_checkpoint("tiny-bert-cls");
        damage(dir.path());
        let o = convert(dir.path(), &out, "f16");
        assert!(!o.status.success(), "{name}: succeeded");
        let err = stderr(&o);
        assert!(err.contains(expected), "{name}: {err}");
        assert!(
            err.contains(dir.path().to_str().unwrap()),
            "{name}: no file named: {err}"
        );
        assert_eq!(
            fs::read(&out).unwrap(),
            b"keep me",
            "{name}: output damaged"
        );
    }
    // int8 without calibration text.
    let o = run(&[
        "convert",
        fixture("tiny-bert-cls").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(stderr(&o).contains("--calibration"), "{}", stderr(&o));
    // Never overwrites its input.
    let dir = copy_checkpoint("tiny-bert-cls");
    let input = dir.path().join("model.safetensors");
    let before = fs::read(&input).unwrap();
    let o = convert(dir.path(), &input, "f32");
    assert!(
        !o.status.success() && stderr(&o).contains("refusing to overwrite"),
        "{}",
        stderr(&o)
    );
    assert_eq!(fs::read(&input).unwrap(), before);
    // Only the output file appears in its directory: no temporary left behind.
    assert_eq!(fs::read_dir(out_dir.path()).unwrap().count(), 1);
}

fn edit_config(dir: &Path, from: &str, to: &str) {
    let path = dir.join("config.json");
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from}");
    fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// Writes a NaN into the first f32 of the word embeddings.
fn poison_weight(dir: &Path) {
    let path = dir.join("model.safetensors");
    let mut bytes = fs::read(&path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let start = header["bert.embeddings.word_embeddings.weight"]["data_offsets"][0]
        .as_u64()
        .unwrap() as usize;
    let at = 8 + header_len + start;
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    fs::write(path, bytes).unwrap();
}

#[test]
fn corrupt_model_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m.tfm");
    assert!(convert(&fixture("tiny-bert-cls"), &model, "int8")
        .status
        .success());
    // Flip a weight byte: structurally valid, so only the CRC can catch it.
    let o = run(&["inspect", model.to_str().unwrap(), "--json"]);
    let word = json_lines(&o)[0]["tensors"][0]["offset"].as_u64().unwrap() as usize;
    let mut bytes = fs::read(&model).unwrap();
    bytes[word + 100] ^= 1;
    fs::write(&model, &bytes).unwrap();
    let o = run(&["inspect", model.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("checksum mismatch"), "{}", stderr(&o));
    fs::write(&model, &bytes[..100]).unwrap();
    let o = run(&["classify", "-m", model.to_str().unwrap(), "x"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("m.tfm"), "{}", stderr(&o));
}
