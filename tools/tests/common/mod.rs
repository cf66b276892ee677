//! Helpers shared by the CLI's end-to-end tests (each test file uses a subset).
#![allow(dead_code)]

pub mod gguf;

use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `tinyformer` binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tinyformer"))
}

/// A file or directory under `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

/// Runs the binary with `args`.
pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Standard output as JSON Lines.
pub fn json_lines(o: &Output) -> Vec<Value> {
    String::from_utf8(o.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Copies a fixture checkpoint into a temporary directory to damage it.
pub fn copy_checkpoint(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(fixture(name)).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    dir
}

/// `tinyformer convert DIR -o OUT --dtype DTYPE`, int8 calibrated on the fixture
/// sentences.
pub fn convert(dir: &Path, out: &Path, dtype: &str) -> Output {
    let calibration = fixture("sentences.txt");
    let mut args = vec![
        "convert",
        dir.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--dtype",
        dtype,
    ];
    if dtype == "int8" {
        args.extend(["--calibration", calibration.to_str().unwrap()]);
    }
    run(&args)
}
