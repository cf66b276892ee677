//! How the CLI treats its inputs (issue 14, "what a new user tripped on"): `tokenize`
//! without `-m` uses the embedded model as `classify` does; an empty or whitespace-only
//! text, or a line of standard input that is not UTF-8, is an error for that input
//! alone (named, skipped, the others processed, exit code 1, and with `--json` an
//! `error` object in its place); an all-`[UNK]` text gets a warning; `convert` without
//! calibration says what to add; every `--json` flag has help text.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Output, Stdio};

mod common;
use common::*;

/// The default model as a file (the embedded one is its copy).
fn default_model() -> String {
    repo("models/default/sentiment-int8.tfm")
}

fn repo(path: &str) -> String {
    let p: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", path].iter().collect();
    p.to_str().unwrap().to_string()
}

/// Runs the binary with `args`, `input` on standard input.
fn run_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn stdout_lines(o: &Output) -> Vec<String> {
    String::from_utf8(o.stdout.clone())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn tokenize_without_model_uses_the_embedded_model() {
    let embedded = run(&["tokenize", "--json", "a gorgeous, witty movie"]);
    assert!(embedded.status.success(), "{}", stderr(&embedded));
    let file = run(&[
        "tokenize",
        "-m",
        &default_model(),
        "--json",
        "a gorgeous, witty movie",
    ]);
    assert!(file.status.success(), "{}", stderr(&file));
    assert_eq!(json_lines(&embedded), json_lines(&file));
    assert!(json_lines(&embedded)[0]["ids"].as_array().unwrap().len() > 2);
}

#[test]
fn empty_and_whitespace_texts_are_errors_for_that_text_only() {
    let model = default_model();
    let texts = ["a fine film", "", " \t ", "dull and far too long"];
    for command in [
        vec!["classify"],
        vec!["embed", "-m", &model],
        vec!["tokenize"],
    ] {
        let mut args = command.clone();
        args.extend(texts);
        let o = run(&args);
        assert_eq!(o.status.code(), Some(1), "{command:?}: {}", stderr(&o));
        let err = stderr(&o);
        for n in [2, 3] {
            assert!(
                err.contains(&format!(
                    "error: text {n}: the text is empty or whitespace only; skipped"
                )),
                "{command:?}: {err}"
            );
        }
        assert!(err.contains("2 of 4 inputs failed"), "{command:?}: {err}");
        // The other texts are processed, in order.
        let lines = stdout_lines(&o);
        assert_eq!(lines.len(), 2, "{command:?}: {lines:?}");
        if command[0] != "tokenize" {
            assert!(lines[0].contains("a fine film"), "{lines:?}");
            assert!(lines[1].contains("dull and far too long"), "{lines:?}");
        }
        // JSON Lines: still one object per input in input order, errors in place.
        args.push("--json");
        let o = run(&args);
        assert_eq!(o.status.code(), Some(1), "{command:?}: {}", stderr(&o));
        let lines = json_lines(&o);
        assert_eq!(lines.len(), 4, "{command:?}");
        for (line, text) in lines.iter().zip(texts) {
            assert_eq!(line["text"], text);
        }
        assert!(lines[0].get("error").is_none());
        assert_eq!(
            lines[1]["error"],
            "text 2: the text is empty or whitespace only"
        );
        assert!(lines[2]["error"].as_str().unwrap().starts_with("text 3:"));
        assert!(lines[3].get("error").is_none());
    }
    // An empty list of token ids too.
    let o = run(&["classify", "--ids", "2,100,3", ""]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("text 2: the text is empty"));
    assert_eq!(stdout_lines(&o).len(), 1);
}

#[test]
fn a_text_the_tokenizer_drops_entirely_is_an_error() {
    let o = run(&["tokenize", "\u{1}\u{2}", "fine"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("text 1: no word pieces"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stdout_lines(&o).len(), 1);
}

#[test]
fn eval_reports_and_skips_lines_with_an_empty_text() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d.tsv");
    std::fs::write(
        &data,
        b"positive\ta fine film\nnegative\t  \n\npositive\t\xff\nnegative\tawful\n",
    )
    .unwrap();
    let o = run(&[
        "eval",
        "-m",
        &default_model(),
        "--data",
        data.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("d.tsv: line 2: the text is empty or whitespace only; skipped"),
        "{err}"
    );
    assert!(
        err.contains("d.tsv: line 4: invalid UTF-8 at byte 9; skipped"),
        "{err}"
    );
    // The blank line 3 is not a text; the two good lines are evaluated.
    let v = &json_lines(&o)[0];
    assert_eq!(v["examples"], 2);
    assert_eq!(v["skipped"], 2);
}

#[test]
fn a_text_of_only_unknown_pieces_gets_a_warning() {
    let o = run(&["tokenize", "--json", "🙂 ☃", "a fine film"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ids = &json_lines(&o)[0]["ids"];
    assert_eq!(
        ids,
        &serde_json::json!([2, 1, 1, 3]),
        "[CLS] [UNK] [UNK] [SEP]"
    );
    let err = stderr(&o);
    assert!(
        err.contains("warning: text 1: every word piece is [UNK]"),
        "{err}"
    );
    assert!(!err.contains("text 2"), "{err}");
    // classify runs it (the result is the model's prior) with the same warning.
    let o = run(&["classify", "🙂"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("every word piece is [UNK]"));
}

#[test]
fn an_invalid_utf8_line_on_standard_input_is_skipped_and_reported() {
    let input = b"a fine film\nnot \xff\xfe valid\r\nawful\n";
    let model = default_model();
    for command in [
        vec!["classify"],
        vec!["embed", "-m", &model],
        vec!["tokenize"],
    ] {
        let o = run_stdin(&command, input);
        assert_eq!(o.status.code(), Some(1), "{command:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("error: standard input line 2: invalid UTF-8 at byte 4; skipped"),
            "{command:?}: {err}"
        );
        assert_eq!(stdout_lines(&o).len(), 2, "{command:?}");
        let mut json = command.clone();
        json.push("--json");
        let lines = json_lines(&run_stdin(&json, input));
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["text"], "a fine film");
        assert!(lines[1]["text"].is_null());
        assert!(lines[1]["error"]
            .as_str()
            .unwrap()
            .starts_with("standard input line 2: invalid UTF-8"));
        assert_eq!(lines[2]["text"], "awful");
    }
    // Blank lines of standard input are empty texts: errors of their own.
    let o = run_stdin(&["classify"], b"a fine film\n\nawful\n");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("standard input line 2: the text is empty"));
    assert_eq!(stdout_lines(&o).len(), 2);
}

#[test]
fn decoder_commands_skip_an_invalid_utf8_line_on_standard_input() {
    let model = repo("models/stories260K/stories260K-int8.tfm");
    let input = b"Once upon\n\xc3\nThe cat\n";
    let o = run_stdin(&["tokenize", "-m", &model, "--json"], input);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("standard input line 2: invalid UTF-8 at byte 0"));
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2]["text"], "The cat");
    // Decoders take an empty text: BOS alone, as an empty prompt of `generate`.
    let o = run(&["tokenize", "-m", &model, "--json", ""]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run_stdin(&["generate", "-n", "2", "--json"], input);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["prompt"], "Once upon");
    assert!(lines[1]["prompt"].is_null());
    assert_eq!(lines[2]["prompt"], "The cat");
}

#[test]
fn convert_without_calibration_says_what_to_add() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m.tfm");
    let ckpt = fixture("tiny-bert-cls");
    let (ckpt, out_s) = (ckpt.to_str().unwrap(), out.to_str().unwrap());
    for dtype in [&[][..], &["--dtype", "int8"][..]] {
        let mut args = vec!["convert", ckpt, "-o", out_s];
        args.extend(dtype);
        let o = run(&args);
        assert_eq!(o.status.code(), Some(1));
        let err = stderr(&o);
        assert!(err.contains("needs calibration text"), "{err}");
        assert!(err.contains("add `--calibration FILE`"), "{err}");
        assert!(err.contains("`--dtype f16`"), "{err}");
        assert!(!out.exists());
    }
    assert!(stderr(&run(&["convert", ckpt, "-o", out_s])).contains("int8, the default --dtype"));
    // The float dtypes need none; a calibration file given to them is unused, and said so.
    let o = run(&["convert", ckpt, "-o", out_s, "--dtype", "f16"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let calibration = fixture("sentences.txt");
    let o = run(&[
        "convert",
        ckpt,
        "-o",
        out_s,
        "--dtype",
        "f32",
        "--calibration",
        calibration.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("is unused: only int8 is calibrated"));
    // With calibration the default is int8.
    let o = run(&[
        "convert",
        ckpt,
        "-o",
        out_s,
        "--calibration",
        calibration.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = &json_lines(&run(&["inspect", out_s, "--json"]))[0];
    assert_eq!(v["config"]["weight_dtype"], "i8");
}

#[test]
fn every_json_flag_has_help_text() {
    for command in [
        "inspect", "generate", "score", "tokenize", "embed", "classify", "eval", "bench",
    ] {
        let o = run(&[command, "--help"]);
        assert!(o.status.success());
        let help = String::from_utf8(o.stdout).unwrap();
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with("--json"))
            .unwrap_or_else(|| panic!("{command}: no --json in\n{help}"));
        assert!(line.contains("JSON"), "{command}: `{line}`");
        if ["tokenize", "embed", "classify"].contains(&command) {
            assert!(
                line.contains("one object per input, in input order"),
                "{command}: `{line}`"
            );
        }
    }
}
