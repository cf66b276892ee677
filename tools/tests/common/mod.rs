//! Helpers shared by the CLI's end-to-end tests (each test file uses a subset).
#![allow(dead_code)]

pub mod gguf;

use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A damaged-JSON case: what, the edit, a part of the expected error.
/// A `tokenizer.json`'s merges rewritten from `[left, right]` pairs to the older
/// `"left right"` strings (both forms read the same).
#[allow(dead_code)] // not every test binary uses every helper
pub fn merges_as_strings(tokenizer: &mut Value) {
    let merges: Vec<Value> = tokenizer["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            Value::String(format!(
                "{} {}",
                m[0].as_str().unwrap(),
                m[1].as_str().unwrap()
            ))
        })
        .collect();
    tokenizer["model"]["merges"] = Value::Array(merges);
}

pub type JsonCase = (&'static str, fn(&mut Value), &'static str);

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

/// Environment variable naming the file a child of [`reads_under_address_cap`] reads.
const CHILD_READ: &str = "TINYFORMER_CHILD_READ";

/// In a child started by [`reads_under_address_cap`]: runs `read` on the file it was
/// given, prints `child: read ok` or `child: ERROR`, and returns true (the test then
/// returns). In the parent: false.
pub fn child_read(read: impl Fn(&Path) -> anyhow::Result<()>) -> bool {
    let Some(path) = std::env::var_os(CHILD_READ) else {
        return false;
    };
    match read(Path::new(&path)) {
        Ok(()) => println!("child: read ok"),
        Err(e) => println!("child: {e:#}"),
    }
    true
}

/// For each `(what, bytes, expected)`, writes `bytes` to a file named `file_name` and
/// re-runs test `test` of this binary alone in a child whose address space is capped at
/// 1 GiB (`ulimit -v`), where [`child_read`] reads it: the child's output must hold
/// `expected` (a refusal with its error, not an allocation failure) and, unless it is
/// the control `child: read ok`, name the file.
pub fn reads_under_address_cap(test: &str, file_name: &str, cases: Vec<(&str, Vec<u8>, &str)>) {
    const ADDRESS_SPACE_KIB: u64 = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    for (what, bytes, expected) in cases {
        let path = dir.path().join(file_name);
        fs::write(&path, bytes).unwrap();
        let o = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -v {ADDRESS_SPACE_KIB}\nexec \"$0\" \"$@\""))
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(CHILD_READ, &path)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{what}: {out}\n{err}");
        assert!(out.contains(expected), "{what}: {out}\n{err}");
        if expected != "child: read ok" {
            assert!(
                out.contains(&format!("child: {}", path.display())),
                "{what}: {out}"
            );
        }
    }
}
