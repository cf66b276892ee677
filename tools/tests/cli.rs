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

/// `classify --windows N` reads a long text as consecutive windows of `max_seq` tokens
/// and averages their logits: checked against `embed` (which prints a classifier's
/// logits) run on each window's words as a text of its own, for f32 and int8, and
/// `eval --windows` predicts the same labels.
#[test]
fn windows_average_the_logits_of_each_window() {
    let tmp = tempfile::tempdir().unwrap();
    // Words that are one word piece each, so the windows are runs of 62 words.
    let candidates = [
        "the", "film", "good", "bad", "a", "of", "and", "movie", "best", "dull", "long",
    ];
    let probe = tmp.path().join("probe.tfm");
    assert!(convert(&fixture("tiny-bert-cls"), &probe, "f32")
        .status
        .success());
    let mut args = vec!["tokenize", "-m", probe.to_str().unwrap(), "--json"];
    args.extend(candidates);
    let single: Vec<&str> = json_lines(&run(&args))
        .iter()
        .zip(candidates)
        .filter(|(v, _)| v["ids"].as_array().unwrap().len() == 3)
        .map(|(_, w)| w)
        .collect();
    assert!(single.len() >= 3, "{single:?}");
    let words: Vec<&str> = (0..150)
        .map(|i| single[(i * 7 + i / 5) % single.len()])
        .collect();
    let text = words.join(" ");
    let softmax = |logits: &[f64]| -> Vec<f64> {
        let max = logits.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
        e.iter().map(|x| x / e.iter().sum::<f64>()).collect()
    };
    for (dtype, tolerance) in [("f32", 1e-5), ("int8", 2e-3)] {
        let model = tmp.path().join(format!("m-{dtype}.tfm"));
        assert!(convert(&fixture("tiny-bert-cls"), &model, dtype)
            .status
            .success());
        let m = model.to_str().unwrap();
        for windows in [1usize, 2, 3, 9] {
            let read = windows.min(3); // 150 words = 62 + 62 + 26
            let chunks: Vec<String> = words.chunks(62).take(read).map(|c| c.join(" ")).collect();
            let mut args = vec!["embed", "-m", m, "--json"];
            args.extend(chunks.iter().map(String::as_str));
            let logits: Vec<Vec<f64>> = json_lines(&run(&args))
                .iter()
                .map(|v| {
                    let e = v["embedding"].as_array().unwrap();
                    e.iter().map(|x| x.as_f64().unwrap()).collect()
                })
                .collect();
            let mean: Vec<f64> = (0..3)
                .map(|k| logits.iter().map(|l| l[k]).sum::<f64>() / read as f64)
                .collect();
            let expected = softmax(&mean);
            let w = windows.to_string();
            let o = run(&["classify", "-m", m, "--json", "--windows", &w, &text]);
            assert!(o.status.success(), "{}", stderr(&o));
            let v = &json_lines(&o)[0];
            let scores = v["scores"].as_object().unwrap();
            for (k, label) in ["negative", "neutral", "positive"].iter().enumerate() {
                let got = scores[*label].as_f64().unwrap();
                assert!(
                    (got - expected[k]).abs() < tolerance,
                    "{dtype} windows {windows} {label}: {got} vs {}",
                    expected[k]
                );
            }
            assert_eq!(
                v.get("windows").and_then(Value::as_u64),
                (windows > 1).then_some(read as u64)
            );
            // Cut short (1 or 2 windows of 3): a warning naming what was read.
            assert_eq!(
                stderr(&o).contains("truncated"),
                windows < 3,
                "{}",
                stderr(&o)
            );
            // eval reads the same windows: its one prediction is classify's label.
            let data = tmp.path().join("d.tsv");
            fs::write(&data, format!("{}\t{text}\n", v["label"].as_str().unwrap())).unwrap();
            let o = run(&[
                "eval",
                "-m",
                m,
                "--data",
                data.to_str().unwrap(),
                "--json",
                "--windows",
                &w,
            ]);
            assert!(o.status.success(), "{}", stderr(&o));
            let e = &json_lines(&o)[0];
            assert_eq!(
                (e["accuracy"].as_f64(), e["windows"].as_u64()),
                (Some(1.0), Some(windows as u64))
            );
            assert_eq!(e["truncated"], u64::from(windows < 3));
        }
    }
}
