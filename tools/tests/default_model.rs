//! The bundled default model (`models/default/`): its microcontroller budget, the
//! committed int8 and f16 files against the float64 reference on real sentences, and
//! the copy embedded in the CLI (the README's main command).
//!
//! Golden: `tests/fixtures/golden/default.json`, regenerated with
//! `python tools/reference/golden.py models/default/checkpoint --sentences
//! tests/fixtures/sentences.txt -o tests/fixtures/golden/default.json`.

use std::path::{Path, PathBuf};
use std::process::Command;
use tinyformer::format::writer::AlignedBuf;
use tinyformer::{Input, Model};

#[derive(serde::Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
    logits: Vec<f64>,
}

#[derive(serde::Deserialize)]
struct Golden {
    cases: Vec<Case>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn golden() -> Golden {
    let text = std::fs::read_to_string(root().join("tests/fixtures/golden/default.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn load(name: &str) -> AlignedBuf {
    AlignedBuf::from_bytes(&std::fs::read(root().join("models/default").join(name)).unwrap())
}

fn logits(model: &Model<'_>, ids: &[u32]) -> Vec<f32> {
    let mut arena = vec![0u8; model.arena_bytes(ids.len()).unwrap()];
    let mut out = vec![0f32; model.config().output_len()];
    model
        .forward(Input::new(ids), &mut arena, &mut out)
        .unwrap();
    out
}

use tinyformer::kernels::argmax::argmax;

#[test]
fn committed_int8_model_fits_a_microcontroller() {
    let int8 = load("sentiment-int8.tfm");
    let model = Model::from_bytes(int8.as_bytes()).unwrap();
    let bytes = int8.as_bytes().len();
    let arena = model.arena_bytes(64).unwrap();
    println!("int8 file {bytes} bytes, arena at seq 64 {arena} bytes");
    assert!(
        bytes <= 1 << 20,
        "int8 model is {bytes} bytes, budget 1 MiB"
    );
    assert!(
        arena <= 64 * 1024,
        "arena at seq 64 is {arena} bytes, budget 64 KiB"
    );
    assert_eq!(model.config().num_labels, 2);
}

/// The committed files against the float64 reference: the tokenizer exactly, the
/// label on every sentence, and the max abs logit error within a guard about 1.5x
/// above the measured error (so a 2x regression fails).
#[test]
fn committed_models_agree_with_the_float_reference() {
    let g = golden();
    // (file, fewest agreeing labels, guard on the max abs logit error); measured:
    // f16 51/51 and 5.685e-4, int8 51/51 and 4.649e-2 (the 3x96 model).
    for (name, min_agree, max_abs) in [
        ("sentiment-f16.tfm", 51, 8.5e-4),
        ("sentiment-int8.tfm", 51, 7.0e-2),
    ] {
        let buf = load(name);
        let model = Model::from_bytes(buf.as_bytes()).unwrap();
        let (mut agree, mut worst) = (0, 0f64);
        for case in &g.cases {
            let ids = tinyformer_cli::run::tokenize(&model, &case.text)
                .unwrap()
                .ids;
            assert_eq!(
                ids, case.ids,
                "tokenizer differs from the reference on {:?}",
                case.text
            );
            let out = logits(&model, &ids);
            agree += usize::from(argmax(&out) == argmax(&case.logits));
            for (a, b) in out.iter().zip(&case.logits) {
                worst = worst.max((f64::from(*a) - b).abs());
            }
        }
        let n = g.cases.len();
        println!("{name}: label agreement {agree}/{n}, max abs logit error {worst:.3e}");
        assert!(
            agree >= min_agree,
            "{name}: label agreement {agree}/{n}, guard {min_agree}/{n}"
        );
        assert!(
            worst <= max_abs,
            "{name}: max abs logit error {worst:.3e} above its guard {max_abs:.1e}"
        );
    }
}

#[test]
fn cli_classifies_with_the_embedded_default_model() {
    let out = Command::new(env!("CARGO_BIN_EXE_tinyformer"))
        .args([
            "classify",
            "--json",
            "A warm, funny and beautifully acted film.",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The embedded copy is the committed int8 file: same answer as loading it by path.
    let by_path = Command::new(env!("CARGO_BIN_EXE_tinyformer"))
        .args(["classify", "--json", "-m"])
        .arg(root().join("models/default/sentiment-int8.tfm"))
        .arg("A warm, funny and beautifully acted film.")
        .output()
        .unwrap();
    let by_path: serde_json::Value = serde_json::from_slice(&by_path.stdout).unwrap();
    assert_eq!(line, by_path);
    assert!(["negative", "positive"].contains(&line["label"].as_str().unwrap()));
}

/// The bundled int8 model carries a self-test section (its golden cases are the texts
/// of `models/default/self-test.txt`, added with `tinyformer self-test
/// models/default/sentiment-int8.tfm --add models/default/self-test.txt`), and the
/// host passes it, as the firmware does at boot (`tools/firmware-check.sh`).
#[test]
fn committed_int8_model_passes_its_self_test() {
    let buf = load("sentiment-int8.tfm");
    let model = Model::from_bytes(buf.as_bytes()).unwrap();
    assert_eq!(model.file().self_test_cases().count(), 2);
    let texts = std::fs::read_to_string(root().join("models/default/self-test.txt")).unwrap();
    for (case, text) in model.file().self_test_cases().zip(texts.lines()) {
        let mut ids = vec![0u32; 64];
        let n = model
            .tokenizer()
            .encode(text.as_bytes(), &mut ids)
            .unwrap()
            .len;
        assert_eq!(case.ids, &ids[..n], "{text}");
    }
    let mut arena = vec![0u128; model.self_test_arena_bytes().unwrap().div_ceil(16)];
    model
        .self_test(bytemuck::cast_slice_mut(&mut arena))
        .unwrap();
}

/// The int8 pass gives the same Q16.16 logits whatever computes it: the scalar
/// reference one row at a time and the best kernel here in batches of up to 64 rows,
/// for inputs of 1 to 64 tokens (one batch, a batch and a tail). (`--threads` leaves
/// this model's blocks on one thread, too small to gain from a split:
/// `tests/properties.rs` checks threads on a MiniLM-sized layer.)
#[test]
fn int8_results_do_not_depend_on_kernel_or_batch() {
    use tinyformer::kernels::matvec::Int8Kernel;
    use tinyformer::model::MAX_BATCH_ROWS;
    let bytes = load("sentiment-int8.tfm");
    let model = Model::from_bytes(bytes.as_bytes()).unwrap();
    let vocab = model.config().vocab_size;
    for len in [1usize, 15, 16, 17, 33, 48, 64] {
        let ids: Vec<u32> = (0..len as u32).map(|i| (i * 977 + 101) % vocab).collect();
        let run = |model: Model<'_>, rows: usize| {
            let bytes = model.arena_bytes_batched(len, rows).unwrap();
            let mut arena = AlignedBuf::from_bytes(&vec![0; bytes]);
            let mut out = vec![0i32; model.config().output_len()];
            model
                .forward_fixed(Input::new(&ids), arena.as_bytes_mut(), &mut out)
                .unwrap();
            out
        };
        let reference = run(model.with_kernel(Int8Kernel::Scalar), 1);
        for rows in [1, 16, MAX_BATCH_ROWS] {
            let got = run(model, rows);
            assert_eq!(
                got,
                reference,
                "{len} tokens, {rows} rows, {:?}",
                model.kernel()
            );
        }
    }
}
