//! Property tests (proptest): the integer kernels never overflow or panic on any input
//! (this profile has overflow checks on, so an arithmetic overflow is a failure), the
//! Q15 softmax sums to one within its documented bound, and the format reader accepts
//! every file the writer produces for random small configs and refuses every
//! single-byte change of their header and directory.
//!
//! Case counts are kept small so that `cargo test --workspace` stays fast; set
//! `PROPTEST_CASES` to run more.

mod common;

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use tinyformer::format::writer::{write_model, AlignedBuf, TensorData};
use tinyformer::format::{
    header, limits, scalar, tensor_count, tensor_spec, Activation, Arch, Config, DType,
    FormatError, ModelFile, Pooling, TensorKind, DIR_ENTRY_LEN, HEADER_LEN,
};
use tinyformer::kernels::gelu::{activation_q10, Tail, ACT_FRAC_BITS, ACT_RANGE, ACT_TABLE_LEN};
use tinyformer::kernels::layernorm::layer_norm_i32;
use tinyformer::kernels::matvec::{dot_i8, matvec_i8, MAX_DOT_LEN};
use tinyformer::kernels::softmax::{softmax_q15, MASKED};
use tinyformer::model::MAX_BATCH_ROWS;
use tinyformer::quant::{saturate_i8, saturate_residual, Requant, RESIDUAL_MAX};
use tinyformer::rng::XorShift64Star;
use tinyformer::tokenizer::{encode_section, TokenizerConfig};
use tinyformer::{Input, Model};

/// `cases` per property natively; 2 under Miri, which interprets every step (there the
/// point is undefined-behaviour checking of the paths, not coverage of the inputs).
fn cases(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: if cfg!(miri) { 2 } else { cases },
        // Miri's isolation forbids the file access of the regression files.
        failure_persistence: if cfg!(miri) {
            None
        } else {
            ProptestConfig::default().failure_persistence
        },
        ..ProptestConfig::default()
    }
}

/// `i32` values biased toward the extremes and small magnitudes, where overflow and
/// rounding bugs live.
fn edgy_i32() -> impl Strategy<Value = i32> {
    prop_oneof![
        3 => any::<i32>(),
        1 => Just(i32::MIN),
        1 => Just(i32::MAX),
        1 => Just(i32::MIN + 1),
        1 => -2i32..=2,
        1 => Just(RESIDUAL_MAX as i32),
        1 => Just(-RESIDUAL_MAX as i32),
    ]
}

/// A requantization pair in the range validation accepts.
fn valid_requant() -> impl Strategy<Value = Requant> {
    (
        prop_oneof![
            any::<i32>().prop_map(|m| m & i32::MAX),
            Just(i32::MAX),
            Just(0)
        ],
        -31i32..=30,
    )
        .prop_map(|(m, s)| Requant::new(m, s))
}

/// The documented semantics of [`Requant::apply`], in `i128`.
fn requant_reference(x: i32, rq: Requant) -> i128 {
    let r = 31 - rq.shift;
    (i128::from(x) * i128::from(rq.multiplier) + (1i128 << (r - 1))) >> r
}

proptest! {
    #![proptest_config(cases(2000))]

    /// Requantization is exact (one rounding, half up) for every valid pair and every
    /// `i32` accumulator, and saturation to int8 or the residual range is the clamp of
    /// the exact value.
    #[test]
    fn requant_is_exact_and_saturates(x in edgy_i32(), rq in valid_requant()) {
        let exact = requant_reference(x, rq);
        let got = rq.apply(x);
        prop_assert_eq!(i128::from(got), exact);
        prop_assert_eq!(i128::from(saturate_i8(got)), exact.clamp(-128, 127));
        prop_assert_eq!(
            i128::from(saturate_residual(got)),
            exact.clamp(-i128::from(RESIDUAL_MAX), i128::from(RESIDUAL_MAX))
        );
    }

    /// A run-time power of two on top of the pair: exact while the shift stays in range,
    /// saturated to `±2^62` (with the sign of the product) above it, the smallest
    /// multiplier of the range below it.
    #[test]
    fn requant_scaled_is_exact_or_saturated(
        x in edgy_i32(),
        rq in valid_requant(),
        extra in prop_oneof![-64i32..=64, any::<i32>()],
    ) {
        let got = rq.apply_scaled(x, extra);
        let shift = i64::from(rq.shift) + i64::from(extra.clamp(-62, 62));
        if shift <= 30 {
            let shift = shift.max(-31) as i32;
            let exact = requant_reference(x, Requant::new(rq.multiplier, shift));
            prop_assert_eq!(i128::from(got), exact);
        } else if x == 0 || rq.multiplier == 0 {
            prop_assert_eq!(got, 0);
        } else {
            prop_assert_eq!(got, i64::from(x.signum()) << 62);
        }
    }

    /// The 32-bit fast paths of the epilogues are the 64-bit formula.
    #[test]
    fn residual_epilogue_is_the_64_bit_formula(
        x in edgy_i32(),
        multiplier in edgy_i32(),
        shift in edgy_i32(),
        extra in prop_oneof![-64i32..=64, any::<i32>()],
        base in edgy_i32(),
    ) {
        let rq = Requant::new(multiplier, shift);
        let clamped = i64::from(base).clamp(-RESIDUAL_MAX, RESIDUAL_MAX);
        prop_assert_eq!(
            rq.add_scaled_residual(base, x, extra),
            saturate_residual(clamped + rq.apply_scaled(x, extra))
        );
        prop_assert_eq!(
            i64::from(rq.apply_scaled_i32(x, extra)),
            rq.apply_scaled(x, extra).clamp(i64::from(i32::MIN), i64::from(i32::MAX))
        );
    }

    /// Pairs that validation would refuse (a hostile file's scalars) still never
    /// overflow: the kernels are total.
    #[test]
    fn requant_is_total_on_invalid_pairs(
        x in edgy_i32(),
        multiplier in edgy_i32(),
        shift in edgy_i32(),
        extra in any::<i32>(),
    ) {
        let rq = Requant::new(multiplier, shift);
        let clamped = Requant::new(multiplier, shift.clamp(-31, 30));
        prop_assert_eq!(rq.apply(x), clamped.apply(x));
        rq.apply_scaled(x, extra);
        rq.times_pow2(extra).apply(x);
        rq.with_exponent(extra.unsigned_abs()).apply(x);
    }
}

/// The i32 accumulator bound is tight: `MAX_DOT_LEN` products of -128 * -128 fit, one
/// more would not.
#[test]
fn dot_product_bound_is_tight() {
    let min = vec![i8::MIN; MAX_DOT_LEN];
    let max = vec![i8::MAX; MAX_DOT_LEN];
    assert_eq!(
        i64::from(dot_i8(&min, &min)),
        MAX_DOT_LEN as i64 * 128 * 128
    );
    assert_eq!(
        i64::from(dot_i8(&min, &max)),
        -(MAX_DOT_LEN as i64) * 128 * 127
    );
    assert!((MAX_DOT_LEN as i64 + 1) * 128 * 128 > i64::from(i32::MAX));
}

/// Validation enforces `in` dimensions below the dot-product bound: one past each limit
/// is refused with the field named.
#[test]
fn config_limits_keep_dot_products_exact() {
    for (hidden, heads, ffn, field) in [
        (limits::MAX_HIDDEN + 1, 1, 16, "hidden"),
        (64, 1, limits::MAX_FFN + 1, "ffn"),
        (limits::MAX_HEAD_DIM * 2, 1, 16, "head_dim"),
    ] {
        let config = Config {
            hidden,
            heads,
            ffn,
            ..small_config(DType::I8)
        };
        let err = write_model(&config, &[], &[], &[]).unwrap_err();
        assert_eq!(
            err,
            FormatError::ConfigOutOfRange {
                field,
                value: if field == "head_dim" {
                    hidden
                } else {
                    hidden.max(ffn)
                }
            }
        );
    }
}

proptest! {
    #![proptest_config(cases(64))]

    /// `matvec_i8` is exact for `in` dimensions up to the largest the format allows
    /// (`MAX_FFN`), with extreme weights, inputs and biases.
    #[test]
    fn matvec_is_exact_up_to_the_format_limit(
        rows in 1usize..=3,
        cols in prop_oneof![1usize..=64, Just(limits::MAX_FFN as usize)],
        seed in any::<u64>(),
        bias in prop::collection::vec(edgy_i32(), 3),
        pattern in 0u8..3,
    ) {
        let mut rng = XorShift64Star::new(seed);
        let mut next = || -> i8 {
            let state = rng.next_u64();
            match pattern {
                0 => (state >> 56) as i8,
                1 => if state >> 63 == 0 { i8::MIN } else { i8::MAX },
                _ => i8::MIN,
            }
        };
        let x: Vec<i8> = (0..cols).map(|_| next()).collect();
        let w: Vec<i8> = (0..rows * cols).map(|_| next()).collect();
        let mut got = vec![0i32; rows];
        matvec_i8(rows, &x, &w, &bias, |o, acc| got[o] = acc);
        for (o, &g) in got.iter().enumerate() {
            let dot: i64 = w[o * cols..(o + 1) * cols]
                .iter()
                .zip(&x)
                .map(|(&a, &b)| i64::from(a) * i64::from(b))
                .sum();
            let want = (dot + i64::from(bias[o])).clamp(i64::from(i32::MIN), i64::from(i32::MAX));
            prop_assert_eq!(i64::from(g), want);
        }
    }

    /// Integer LayerNorm returns for any `i32` row (not only the residual range), any
    /// parameters and any epsilon.
    #[test]
    fn layer_norm_is_total(
        x in prop::collection::vec(edgy_i32(), 1..=64),
        params in prop::collection::vec((edgy_i32(), edgy_i32()), 64),
        eps in prop_oneof![any::<i64>(), Just(i64::MIN), Just(i64::MAX), Just(0i64)],
    ) {
        let gamma: Vec<i32> = params.iter().map(|p| p.0).collect();
        let beta: Vec<i32> = params.iter().map(|p| p.1).collect();
        let mut out = vec![0i8; x.len()];
        layer_norm_i32(&mut out, &x, &gamma, &beta, eps);
    }

    /// A constant row has no spread: every output is `beta_q / 2^14` rounded half up,
    /// whatever the value, gamma and epsilon.
    #[test]
    fn layer_norm_of_a_constant_row_is_beta(
        value in edgy_i32(),
        n in 1usize..=64,
        params in prop::collection::vec((edgy_i32(), edgy_i32()), 64),
        eps in any::<i64>(),
    ) {
        let gamma: Vec<i32> = params.iter().map(|p| p.0).collect();
        let beta: Vec<i32> = params.iter().map(|p| p.1).collect();
        let mut out = vec![0i8; n];
        layer_norm_i32(&mut out, &vec![value; n], &gamma, &beta, eps);
        for (o, &b) in out.iter().zip(&beta) {
            let want = ((i64::from(b) + (1 << 13)) >> 14).clamp(-128, 127);
            prop_assert_eq!(i64::from(*o), want);
        }
    }

    /// The table activation returns for any input and any table; inside the table
    /// range it hits the table exactly at the sample points, outside it follows the
    /// documented tails.
    #[test]
    fn table_activation_is_total_and_exact_at_samples(
        x in edgy_i32(),
        table in prop::collection::vec(edgy_i32(), ACT_TABLE_LEN),
        k in 0usize..ACT_TABLE_LEN - 1,
    ) {
        let unit = 1i32 << ACT_FRAC_BITS;
        let lo = -ACT_RANGE * unit;
        for tail in [Tail::Linear, Tail::Flat] {
            let y = activation_q10(x, &table, tail);
            if x < lo {
                prop_assert_eq!(y, table[0]);
            } else if x >= ACT_RANGE * unit {
                prop_assert_eq!(y, if tail == Tail::Linear { x } else { table[ACT_TABLE_LEN - 1] });
            }
            let step = unit / 32;
            prop_assert_eq!(activation_q10(lo + k as i32 * step, &table, tail), table[k]);
        }
    }
}

/// Extreme rows: every int8 kernel input at its type's bounds.
#[test]
fn kernels_on_extreme_rows() {
    let lengths: &[usize] = if cfg!(miri) {
        &[1, 2, 64]
    } else {
        &[1, 2, 4096, 8192, 20_000]
    };
    for &n in lengths {
        for x in [
            vec![i32::MIN; n],
            vec![i32::MAX; n],
            (0..n)
                .map(|i| if i % 2 == 0 { i32::MIN } else { i32::MAX })
                .collect(),
        ] {
            let mut out = vec![0i8; n];
            for (g, b) in [(i32::MAX, i32::MIN), (i32::MIN, i32::MAX), (0, 0)] {
                for eps in [i64::MIN, 0, i64::MAX] {
                    layer_norm_i32(&mut out, &x, &vec![g; n], &vec![b; n], eps);
                }
            }
            let mut scores = x.clone();
            softmax_q15(&mut scores, Requant::new(i32::MAX, 30));
            assert!(scores.iter().all(|&p| (0..=32768).contains(&p)));
        }
    }
    let table = [i32::MIN; ACT_TABLE_LEN];
    for x in [i32::MIN, -8193, -8192, 0, 8191, 8192, i32::MAX] {
        activation_q10(x, &table, Tail::Linear);
        activation_q10(x, &[i32::MAX; ACT_TABLE_LEN], Tail::Flat);
    }
}

/// Score rows: arbitrary `i32` scores with some masked entries and some ties at the
/// maximum.
fn score_row() -> impl Strategy<Value = Vec<i32>> {
    (1usize..=512, any::<u64>(), 0u8..4).prop_map(|(n, seed, kind)| {
        let mut rng = XorShift64Star::new(seed);
        (0..n)
            .map(|_| {
                let state = rng.next_u64();
                let r = (state >> 32) as i32;
                match (kind, state & 15) {
                    (_, 0) => MASKED,
                    (0, _) => r,
                    (1, _) => r >> 16,
                    (2, _) => r >> 24,
                    _ => [i32::MAX, i32::MIN + 1, 0][(state >> 8) as usize % 3],
                }
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(cases(256))]

    /// Q15 softmax: every probability in `[0, 2^15]`, masked entries 0, and the row sums
    /// to `2^15` within `n / 2` units (the bound documented on `softmax_q15`); a fully
    /// masked row is all zeros.
    #[test]
    fn softmax_sums_to_one(
        row in score_row(),
        to_log2 in prop_oneof![
            valid_requant(),
            (1e-6f64..1e3).prop_map(Requant::from_real),
        ],
    ) {
        let mut p = row.clone();
        softmax_q15(&mut p, to_log2);
        for (&s, &q) in row.iter().zip(&p) {
            prop_assert!((0..=32768).contains(&q), "{q}");
            if s == MASKED {
                prop_assert_eq!(q, 0);
            }
        }
        let sum: i64 = p.iter().map(|&q| i64::from(q)).sum();
        if row.iter().all(|&s| s == MASKED) {
            prop_assert_eq!(sum, 0);
        } else {
            let bound = (row.len() as i64 + 1) / 2;
            prop_assert!((sum - 32768).abs() <= bound, "sum {sum}, n {}", row.len());
        }
    }
}

// ---------------------------------------------------------------------------------
// Format: random small models through the writer and the reader.

fn small_config(weight_dtype: DType) -> Config {
    Config {
        arch: Arch::BertEncoder,
        weight_dtype,
        activation: Activation::Gelu,
        pooling: Pooling::ClsPooler,
        vocab_size: 8,
        hidden: 8,
        layers: 1,
        heads: 2,
        ffn: 16,
        max_positions: 8,
        type_vocab: 2,
        num_labels: 2,
        max_seq: 8,
        layer_norm_eps_bits: 1e-12f32.to_bits(),
        decoder: None,
    }
}

/// Random small configs: layers 1-3, hidden a multiple of heads, every dtype, pooling
/// and activation, with or without a classification head.
fn config_strategy() -> impl Strategy<Value = Config> {
    (
        (
            prop_oneof![Just(DType::F32), Just(DType::F16), Just(DType::I8)],
            prop_oneof![
                Just(Activation::Gelu),
                Just(Activation::GeluTanh),
                Just(Activation::Relu)
            ],
            prop_oneof![
                Just(Pooling::ClsPooler),
                Just(Pooling::Mean),
                Just(Pooling::Cls)
            ],
            1u32..=3,
            1u32..=4,
            1u32..=6,
        ),
        (
            6u32..=20,
            1u32..=24,
            2u32..=12,
            1u32..=3,
            0u32..=3,
            1e-12f32..1e-3,
        ),
    )
        .prop_flat_map(
            |((dtype, activation, pooling, layers, heads, head_dim), rest)| {
                let (vocab, ffn, positions, type_vocab, labels, eps) = rest;
                (2u32..=positions).prop_map(move |max_seq| Config {
                    arch: Arch::BertEncoder,
                    weight_dtype: dtype,
                    activation,
                    pooling,
                    vocab_size: vocab,
                    hidden: heads * head_dim,
                    layers,
                    heads,
                    ffn,
                    max_positions: positions,
                    type_vocab,
                    num_labels: labels,
                    max_seq,
                    layer_norm_eps_bits: eps.to_bits(),
                    decoder: None,
                })
            },
        )
}

fn vocab(size: u32) -> Vec<String> {
    let mut v: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.extend((v.len() as u32..size).map(|i| format!("w{i}")));
    v
}

/// A model file for `config` with payloads drawn from `seed`: arbitrary bytes, except
/// that requantization pairs are valid (as validation requires).
fn random_model(config: &Config, seed: u64) -> Vec<u8> {
    let mut rng = XorShift64Star::new(seed);
    let mut next = move || rng.next_u64();
    let payloads: Vec<(TensorKind, Option<u16>, Vec<u8>)> = (0..tensor_count(config))
        .map(|i| {
            let spec = tensor_spec(config, i).unwrap();
            let len = spec.byte_len() as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let put_pair = |bytes: &mut [u8], at: usize, r: u64| {
                let multiplier = (r as u32 & 0x7FFF_FFFF).to_le_bytes();
                let shift = ((r >> 32) % 62) as i32 - 31;
                bytes[at..at + 4].copy_from_slice(&multiplier);
                bytes[at + 4..at + 8].copy_from_slice(&shift.to_le_bytes());
            };
            if spec.kind.is_requant() {
                for at in (0..len).step_by(8) {
                    put_pair(&mut bytes, at, next());
                }
            } else if spec.kind == TensorKind::LayerScalars {
                put_pair(&mut bytes, 4 * scalar::SCORE_TO_LOG2, next());
            }
            (spec.kind, spec.layer, bytes)
        })
        .collect();
    let tensors = TensorData::borrow_all(&payloads);
    let words = vocab(config.vocab_size);
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let section = encode_section(&words, &TokenizerConfig::bert_uncased()).unwrap();
    let labels: Vec<String> = (0..config.num_labels)
        .map(|i| format!("label {i}"))
        .collect();
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    write_model(config, &section, &labels, &tensors).unwrap()
}

fn load(bytes: &[u8]) -> Result<Config, FormatError> {
    let buf = AlignedBuf::from_bytes(bytes);
    ModelFile::from_bytes(buf.as_bytes()).map(|f| *f.config())
}

/// Runs the model on a short random input; it must neither panic nor fail.
fn run_random_input(bytes: &[u8], seed: u64) {
    let buf = AlignedBuf::from_bytes(bytes);
    let model = Model::from_bytes(buf.as_bytes()).unwrap();
    let config = *model.config();
    let n = 1 + seed as usize % config.max_seq as usize;
    let ids: Vec<u32> = (0..n as u32)
        .map(|i| (i * 7 + seed as u32) % config.vocab_size)
        .collect();
    let mask: Vec<u8> = (0..n)
        .map(|i| u8::from(i == 0 || (seed >> i) & 1 == 1))
        .collect();
    let types: Vec<u32> = (0..n as u32)
        .map(|i| (i + (seed >> 8) as u32) % config.type_vocab)
        .collect();
    let input = Input {
        ids: &ids,
        mask: Some(&mask),
        type_ids: Some(&types),
    };
    let mut arena = AlignedBuf::from_bytes(&vec![0; model.arena_bytes(n).unwrap()]);
    if config.is_int8() {
        let mut out = vec![0i32; config.output_len()];
        model
            .forward_fixed(input, arena.as_bytes_mut(), &mut out)
            .unwrap();
        // Larger arenas run several rows per pass over the weights: same result.
        for rows in [2, 3, MAX_BATCH_ROWS] {
            let bytes = model.arena_bytes_batched(n, rows).unwrap();
            let mut arena = AlignedBuf::from_bytes(&vec![0; bytes]);
            let mut batched = vec![0i32; config.output_len()];
            model
                .forward_fixed(input, arena.as_bytes_mut(), &mut batched)
                .unwrap();
            assert_eq!(batched, out, "{rows} rows per batch");
        }
    } else {
        let mut out = vec![0f32; config.output_len()];
        model
            .forward(input, arena.as_bytes_mut(), &mut out)
            .unwrap();
    }
}

/// A MiniLM-sized int8 layer (hidden 384 in 12 heads, FFN 1536) on 128 tokens of random
/// weights gives the same Q16.16 outputs on 1, 2 and 3 threads as the scalar reference
/// one row at a time: its blocks are large enough to be split (64-row batches in
/// parts of 32 or 16 rows, `Model::with_threads`), and the split computes each row as
/// one thread does.
#[cfg(feature = "threads")]
#[test]
fn threads_give_the_scalar_reference_results() {
    use tinyformer::kernels::matvec::Int8Kernel;
    let config = Config {
        vocab_size: 64,
        hidden: 384,
        heads: 12,
        ffn: 1536,
        max_positions: 128,
        max_seq: 128,
        num_labels: 0,
        pooling: Pooling::Mean,
        ..small_config(DType::I8)
    };
    let bytes = AlignedBuf::from_bytes(&random_model(&config, 7));
    let model = Model::from_bytes(bytes.as_bytes()).unwrap();
    let ids: Vec<u32> = (0..128u32).map(|i| (i * 13 + 5) % 64).collect();
    let run = |model: Model<'_>, rows: usize| {
        let mut arena =
            AlignedBuf::from_bytes(&vec![0; model.arena_bytes_batched(128, rows).unwrap()]);
        let mut out = vec![0i32; config.output_len()];
        model
            .forward_fixed(Input::new(&ids), arena.as_bytes_mut(), &mut out)
            .unwrap();
        out
    };
    let reference = run(model.with_kernel(Int8Kernel::Scalar), 1);
    for threads in [1, 2, 3] {
        let got = run(model.with_threads(threads), MAX_BATCH_ROWS);
        assert_eq!(got, reference, "{threads} threads, {:?}", model.kernel());
    }
}

proptest! {
    #![proptest_config(cases(48))]

    /// Every file the writer produces for a random small config is accepted with its
    /// config intact, and the forward pass runs on it without panicking, even with
    /// arbitrary weights and requantization constants (integer kernels under overflow
    /// checks).
    #[test]
    fn writer_output_is_accepted_and_runs(config in config_strategy(), seed in any::<u64>()) {
        let bytes = random_model(&config, seed);
        prop_assert_eq!(load(&bytes), Ok(config));
        // The compile-time path reads the same config and sizes the same arena.
        prop_assert_eq!(Config::from_header(&bytes), Ok(config));
        for seq in 0..=config.max_seq as usize + 1 {
            let runtime = tinyformer::Plan::new(&config, seq).map(|p| p.total_bytes());
            prop_assert_eq!(tinyformer::try_arena_bytes(&bytes, seq), runtime);
        }
        run_random_input(&bytes, seed);
    }

    /// Any single-byte change of the header or the directory of a random model is
    /// refused; with the CRC recomputed to match (a forged file), the reader still never
    /// panics, and a file it accepts also runs.
    #[test]
    fn header_and_directory_corruption_is_refused(
        config in config_strategy(),
        seed in any::<u64>(),
        position in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let bytes = random_model(&config, seed);
        let end = HEADER_LEN + tensor_count(&config) * DIR_ENTRY_LEN;
        let at = position.index(end);
        let mut bad = bytes.clone();
        bad[at] ^= flip;
        prop_assert!(load(&bad).is_err(), "byte {} ^ {:#x} accepted", at, flip);

        common::restamp_crc(&mut bad);
        if (header::CRC32..header::CRC32 + 4).contains(&at) {
            // Re-stamping the CRC undoes the change itself.
            prop_assert_eq!(load(&bad), Ok(config));
        } else if load(&bad).is_ok() {
            run_random_input(&bad, seed);
        }
    }
}
