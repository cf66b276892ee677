//! Extracts the Rust code blocks of the repository's `README.md` that rustdoc compiles
//! (info string empty or `rust`, without `ignore`, `compile_fail` or `text`) into
//! `$OUT_DIR/src/block_<line>.rs`, with rustdoc's hidden lines (`# `) shown and a block
//! without `fn main` wrapped in one, as rustdoc does; `$OUT_DIR/readme.rs` makes each a
//! module. `$OUT_DIR/models` links to the repository's `models/`, so a snippet's
//! `include_model!("../models/...")`, relative to its own file as for
//! `include_bytes!`, names the same file as in a crate whose `src/` sits beside
//! `models/`: the snippet compiles exactly as written.
use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = root.join("README.md");
    println!("cargo:rerun-if-changed={}", readme.display());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let src = out.join("src");
    fs::create_dir_all(&src).expect("create OUT_DIR/src");
    link_models(&root.join("models"), &out.join("models"));

    let text = fs::read_to_string(&readme).expect("read README.md");
    let mut modules = String::new();
    for (line, code) in compiled_blocks(&text) {
        let file = src.join(format!("block_{line}.rs"));
        let code = if code.contains("fn main") {
            code
        } else {
            format!("fn main() {{\n{code}}}\n")
        };
        fs::write(&file, code).expect("write a block");
        modules.push_str(&format!(
            "/// The README's code block at line {line}.\npub mod block_{line} {{\n    include!({:?});\n}}\n",
            file.display().to_string()
        ));
    }
    assert!(!modules.is_empty(), "README.md has no compiled Rust block");
    fs::write(out.join("readme.rs"), modules).expect("write readme.rs");
}

/// `(line of the opening fence, code)` of each block rustdoc compiles, hidden lines
/// shown.
fn compiled_blocks(text: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    // Inside a fence: `Some(None)` for a block that is not compiled, `Some(Some(..))`
    // for one that is.
    let mut fence: Option<Option<(usize, String)>> = None;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        match &mut fence {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    fence = Some(is_compiled_rust(info).then(|| (index + 1, String::new())));
                }
            }
            Some(block) => {
                if trimmed.starts_with("```") {
                    blocks.extend(block.take());
                    fence = None;
                } else if let Some((_, code)) = block {
                    code.push_str(&shown(line));
                    code.push('\n');
                }
            }
        }
    }
    blocks
}

/// Whether rustdoc compiles a block with this info string (as a doctest that is not
/// expected to fail).
fn is_compiled_rust(info: &str) -> bool {
    let words: Vec<&str> = info
        .split([',', ' ', '\t'])
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .collect();
    let rust = words.is_empty() || words.iter().all(|w| is_rustdoc_attribute(w));
    rust && !words
        .iter()
        .any(|w| matches!(*w, "ignore" | "compile_fail" | "text"))
}

fn is_rustdoc_attribute(word: &str) -> bool {
    matches!(
        word,
        "rust" | "no_run" | "should_panic" | "ignore" | "compile_fail" | "test_harness"
    ) || word.starts_with("edition")
}

/// A line as rustdoc compiles it: `# code` is hidden code, `##` an escaped `#`.
fn shown(line: &str) -> String {
    let trimmed = line.trim();
    if trimmed.starts_with("##") {
        line.replacen("##", "#", 1)
    } else if let Some(code) = trimmed.strip_prefix("# ") {
        code.to_string()
    } else if trimmed == "#" {
        String::new()
    } else {
        line.to_string()
    }
}

fn link_models(models: &Path, link: &Path) {
    let _ = fs::remove_file(link);
    #[cfg(unix)]
    std::os::unix::fs::symlink(models, link).expect("link OUT_DIR/models");
    #[cfg(windows)]
    std::os::windows::fs::symlink_dir(models, link).expect("link OUT_DIR/models");
}
