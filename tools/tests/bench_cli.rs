//! `tinyformer bench` end to end: the JSON Lines shape and every value that does not
//! depend on timing (arena bytes against `inspect`, the MAC count, the input ids).
//! Timings are only checked for being positive and consistent with each other.

use serde_json::Value;
use std::path::Path;
use std::process::Output;

mod common;
use common::{fixture, run};

fn ok(o: &Output) -> Vec<Value> {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn convert(checkpoint: &str, dtype: &str, out: &Path) {
    ok(&common::convert(&fixture(checkpoint), out, dtype));
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap()
}

/// The MAC formula written out independently of `tools/src/bench.rs`, from the config
/// that `inspect --json` reports.
fn expected_macs(config: &Value, seq: u64) -> u64 {
    let (h, f, layers, labels) = (
        u(&config["hidden"]),
        u(&config["ffn"]),
        u(&config["layers"]),
        u(&config["num_labels"]),
    );
    let qkvo = 4 * seq * h * h;
    let attention = 2 * seq * seq * h;
    let ffn = 2 * seq * h * f;
    let pooler = if config["pooling"] == "cls_pooler" {
        h * h
    } else {
        0
    };
    layers * (qkvo + attention + ffn) + pooler + h * labels
}

#[test]
fn json_lines_match_inspect_and_the_mac_formula() {
    let tmp = tempfile::tempdir().unwrap();
    for (checkpoint, dtype) in [
        ("tiny-bert-cls", "int8"),
        ("tiny-bert-cls", "f16"),
        ("tiny-bert-mean", "f32"),
        ("tiny-bert-mean", "int8"),
    ] {
        let model = tmp.path().join(format!("{checkpoint}-{dtype}.tfm"));
        convert(checkpoint, dtype, &model);
        let m = model.to_str().unwrap();
        let seqs = [1u64, 2, 16, 64];
        let mut args = vec!["bench", "-m", m, "--iters", "3", "--json"];
        let seq_args: Vec<String> = seqs.iter().map(u64::to_string).collect();
        for s in &seq_args {
            args.extend(["--seq", s.as_str()]);
        }
        let lines = ok(&run(&args));
        assert_eq!(
            lines.len(),
            seqs.len(),
            "{checkpoint} {dtype}: one line per --seq"
        );
        for (line, &seq) in lines.iter().zip(&seqs) {
            let what = format!("{checkpoint} {dtype} seq {seq}");
            let keys: Vec<&str> = line
                .as_object()
                .unwrap()
                .keys()
                .map(|k| k.as_str())
                .collect();
            for key in [
                "model",
                "dtype",
                "seq",
                "iters",
                "warmup",
                "threads",
                "median_ms",
                "min_ms",
                "mean_ms",
                "inferences_per_s",
                "macs",
                "gmac_per_s",
                "rows",
                "arena_bytes",
                "ids",
            ] {
                assert!(keys.contains(&key), "{what}: no `{key}` in {keys:?}");
            }
            assert_eq!(line["model"], m, "{what}");
            assert_eq!(line["dtype"], dtype, "{what}");
            assert_eq!(u(&line["seq"]), seq, "{what}");
            assert_eq!(u(&line["iters"]), 3, "{what}");
            assert!(u(&line["warmup"]) >= 2, "{what}");
            assert_eq!(u(&line["threads"]), 1, "{what}");

            let rows = line["rows"].to_string();
            let inspect = ok(&run(&[
                "inspect",
                m,
                "--json",
                "--seq",
                &seq.to_string(),
                "--rows",
                &rows,
            ]));
            let inspect = &inspect[0];
            assert_eq!(
                line["arena_bytes"], inspect["memory_plan"]["arena_bytes"],
                "{what}: arena bytes = `inspect --seq` figure"
            );
            assert_eq!(
                u(&line["macs"]),
                expected_macs(&inspect["config"], seq),
                "{what}"
            );

            let ids: Vec<u64> = line["ids"].as_array().unwrap().iter().map(u).collect();
            assert_eq!(ids.len() as u64, seq, "{what}");
            assert_eq!(ids[0], 2, "{what}: starts with [CLS]");
            if seq >= 2 {
                assert_eq!(*ids.last().unwrap(), 3, "{what}: ends with [SEP]");
            }

            let (median, min, mean) = (
                line["median_ms"].as_f64().unwrap(),
                line["min_ms"].as_f64().unwrap(),
                line["mean_ms"].as_f64().unwrap(),
            );
            // The mean of equal times can round one ulp below them.
            assert!(
                min > 0.0 && min <= median && min <= mean * (1.0 + 1e-12),
                "{what}: min {min} median {median} mean {mean}"
            );
            let ips = line["inferences_per_s"].as_f64().unwrap();
            assert!((ips * median / 1e3 - 1.0).abs() < 1e-9, "{what}");
            let gmacs = line["gmac_per_s"].as_f64().unwrap();
            let expect = u(&line["macs"]) as f64 / (median * 1e-3) / 1e9;
            assert!((gmacs / expect - 1.0).abs() < 1e-9, "{what}");
        }
    }
}

#[test]
fn ids_are_the_benchmark_sentence_repeated() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m.tfm");
    convert("tiny-bert-cls", "int8", &model);
    let m = model.to_str().unwrap();
    let text = tinyformer_cli::bench::BENCH_TEXT;
    let tokens = ok(&run(&["tokenize", "-m", m, "--json", text]));
    let sentence: Vec<u64> = tokens[0]["ids"].as_array().unwrap().iter().map(u).collect();
    let pieces = &sentence[1..sentence.len() - 1];
    assert!(!pieces.contains(&1), "no [UNK] in the benchmark sentence");

    // At the sentence's own length the input is exactly its tokenization; longer
    // inputs repeat its word pieces.
    let natural = sentence.len().to_string();
    let lines = ok(&run(&[
        "bench", "-m", m, "--iters", "1", "--json", "--seq", &natural, "--seq", "64",
    ]));
    let ids =
        |line: &Value| -> Vec<u64> { line["ids"].as_array().unwrap().iter().map(u).collect() };
    assert_eq!(ids(&lines[0]), sentence);
    let long = ids(&lines[1]);
    let expected: Vec<u64> = std::iter::once(2)
        .chain(pieces.iter().copied().cycle().take(62))
        .chain(std::iter::once(3))
        .collect();
    assert_eq!(long, expected);
}

#[test]
fn human_output_and_bad_arguments() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m.tfm");
    convert("tiny-bert-cls", "f32", &model);
    let m = model.to_str().unwrap();

    let o = run(&["bench", "-m", m, "--iters", "2", "--seq", "8"]);
    assert!(o.status.success());
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("f32 weights, 2 layers, hidden 64"), "{text}");
    assert!(text.contains("median ms"), "{text}");
    assert_eq!(text.lines().count(), 3, "{text}");

    // Without --seq: the default lengths that fit the model (max_seq 64 here).
    let lines = ok(&run(&["bench", "-m", m, "--iters", "1", "--json"]));
    let seqs: Vec<u64> = lines.iter().map(|l| u(&l["seq"])).collect();
    assert_eq!(seqs, [16, 64]);

    for (args, message) in [
        (vec!["--seq", "65"], "max_seq 64"),
        (vec!["--seq", "0"], "--seq 0"),
        (vec!["--iters", "0"], "--iters"),
    ] {
        let mut all = vec!["bench", "-m", m];
        all.extend(args);
        let o = run(&all);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{all:?}");
        assert!(
            o.stdout.is_empty(),
            "{all:?}: nothing timed before the error"
        );
        assert!(err.contains(message), "{all:?}: {err}");
    }
}
