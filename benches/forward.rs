//! Forward-pass and kernel benchmarks (criterion, one thread).
//!
//! `cargo bench --bench forward` times the full forward pass of two encoder shapes at
//! several sequence lengths in each precision, and the int8 kernels. The models have
//! random weights (speed does not depend on values) and are built with the format
//! writer, so the benchmark needs no checkpoint. Matrix products report throughput in
//! multiply-accumulates (criterion prints elements/s: read as MAC/s), element-wise
//! kernels in elements. The int8 matvec runs once per available kernel (scalar
//! reference, AVX2, ...), so the ratio comes from one run on the same machine.
//!
//! The decoder benches time one decode step at positions around 128 of the shape of
//! llama2.c's stories260K (hidden 64, 5 layers, 8 query and 4 key/value heads, ffn 172,
//! vocab 512, context 512): int8 on the committed `models/stories260K/stories260K-int8.tfm`,
//! f32 and f16 on random weights of the same shape. Their throughput is one element per
//! step: criterion's elements/s are decode tokens/s. `tools/bench/compare_llama2c.py`
//! times whole greedy decodes against llama2.c's `run.c`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use tinyformer::format::writer::{write_model, AlignedBuf, TensorData};
use tinyformer::format::{
    scalar, tensor_count, tensor_spec, Activation, Arch, Config, DType, Pooling, TensorKind,
};
use tinyformer::rng::XorShift64Star;
use tinyformer::{Decoder, Input, Model, State};

/// An encoder shape.
struct Shape {
    name: &'static str,
    hidden: u32,
    layers: u32,
    heads: u32,
    ffn: u32,
    vocab: u32,
}

const TINY: Shape = Shape {
    name: "tiny-h64-l2",
    hidden: 64,
    layers: 2,
    heads: 4,
    ffn: 128,
    vocab: 1536,
};
const MINILM: Shape = Shape {
    name: "minilm-h384-l6",
    hidden: 384,
    layers: 6,
    heads: 12,
    ffn: 1536,
    vocab: 30522,
};

/// A random model of `shape` in `dtype`: small random weights, valid requantization
/// pairs (multipliers near 1/64 so activations stay in range), unit LayerNorms.
fn random_model(shape: &Shape, dtype: DType) -> AlignedBuf {
    let config = Config {
        arch: Arch::BertEncoder,
        weight_dtype: dtype,
        activation: Activation::Gelu,
        pooling: Pooling::ClsPooler,
        vocab_size: shape.vocab,
        hidden: shape.hidden,
        layers: shape.layers,
        heads: shape.heads,
        ffn: shape.ffn,
        max_positions: 128,
        type_vocab: 2,
        num_labels: 2,
        max_seq: 128,
        layer_norm_eps_bits: 1e-12f32.to_bits(),
        decoder: None,
    };
    let mut rng = XorShift64Star::new(1);
    let payloads: Vec<(TensorKind, Option<u16>, Vec<u8>)> = (0..tensor_count(&config))
        .map(|i| {
            let spec = tensor_spec(&config, i).unwrap();
            let n = (spec.dims[0] * spec.dims[1]) as usize;
            let bytes: Vec<u8> = match spec.dtype {
                // The score-to-exponent pair must be a valid requantization pair too
                // (the format checks it); the LayerNorm epsilons are small.
                _ if spec.kind == TensorKind::LayerScalars => (0..n as i32)
                    .map(|k| match k {
                        k if k == scalar::SCORE_TO_LOG2 as i32 => 1 << 30,
                        k if k == scalar::SCORE_TO_LOG2 as i32 + 1 => -6,
                        _ => 1,
                    })
                    .flat_map(i32::to_le_bytes)
                    .collect(),
                _ if spec.kind.is_requant() => (0..n / 2)
                    .flat_map(|_| [1i32 << 30, -6])
                    .flat_map(i32::to_le_bytes)
                    .collect(),
                DType::F32
                    if matches!(
                        spec.kind,
                        TensorKind::EmbNorm | TensorKind::AttnNorm | TensorKind::FfnNorm
                    ) =>
                {
                    (0..n)
                        .flat_map(|k| if k < n / 2 { 1.0f32 } else { 0.0 }.to_le_bytes())
                        .collect()
                }
                DType::F32 => (0..n)
                    .flat_map(|_| {
                        ((rng.next_u32() % 2001) as f32 / 1000.0 - 1.0)
                            .mul_add(0.05, 0.0)
                            .to_le_bytes()
                    })
                    .collect(),
                DType::F16 => (0..n)
                    .flat_map(|_| {
                        half::f16::from_f32((rng.next_u32() % 2001) as f32 / 20000.0 - 0.05)
                            .to_le_bytes()
                    })
                    .collect(),
                DType::I8 => (0..n).map(|_| rng.next_u32() as u8).collect(),
                DType::I32 => (0..n)
                    .flat_map(|_| ((rng.next_u32() % 4096) as i32 - 2048).to_le_bytes())
                    .collect(),
            };
            (spec.kind, spec.layer, bytes)
        })
        .collect();
    let tensors = TensorData::borrow_all(&payloads);
    let vocab: Vec<String> = (0..shape.vocab)
        .map(|i| match i {
            0 => "[PAD]".to_string(),
            1 => "[UNK]".to_string(),
            2 => "[CLS]".to_string(),
            3 => "[SEP]".to_string(),
            _ => format!("tok{i}"),
        })
        .collect();
    let vocab: Vec<&str> = vocab.iter().map(String::as_str).collect();
    let section = tinyformer::tokenizer::encode_section(
        &vocab,
        &tinyformer::tokenizer::TokenizerConfig {
            added_tokens: &["[PAD]", "[UNK]", "[CLS]", "[SEP]"],
            ..tinyformer::tokenizer::TokenizerConfig::bert_uncased()
        },
    )
    .unwrap();
    AlignedBuf::from_bytes(&write_model(&config, &section, &["no", "yes"], &tensors).unwrap())
}

fn forward(c: &mut Criterion) {
    for shape in [TINY, MINILM] {
        let mut group = c.benchmark_group(format!("forward/{}", shape.name));
        group.sample_size(10);
        // (dtype, label, token rows per weight pass: 1 is the smallest arena).
        let dtypes: &[(DType, &str, usize)] = if shape.name == MINILM.name {
            &[
                (DType::I8, "int8", 1),
                (DType::I8, "int8 rows8", 8),
                (DType::F16, "f16", 1),
            ]
        } else {
            &[
                (DType::I8, "int8", 1),
                (DType::I8, "int8 rows8", 8),
                (DType::F16, "f16", 1),
                (DType::F32, "f32", 1),
            ]
        };
        for &(dtype, label, rows) in dtypes {
            let buf = random_model(&shape, dtype);
            let model = Model::from_bytes(buf.as_bytes()).unwrap();
            for seq in [16usize, 64, 128] {
                let ids: Vec<u32> = (0..seq as u32)
                    .map(|i| (i * 37 + 5) % shape.vocab)
                    .collect();
                let bytes = model.arena_bytes_batched(seq, rows).unwrap();
                let mut arena = vec![0u128; bytes.div_ceil(16)];
                let arena: &mut [u8] = bytemuck::cast_slice_mut(&mut arena);
                // Multiply-accumulates of the encoder: projections, FFN and attention.
                let (h, f, n) = (u64::from(shape.hidden), u64::from(shape.ffn), seq as u64);
                let macs = u64::from(shape.layers) * n * (4 * h * h + 2 * h * f + 2 * n * h);
                group.throughput(Throughput::Elements(macs));
                group.bench_with_input(BenchmarkId::new(label, seq), &seq, |b, _| {
                    let mut out = [0f32; 2];
                    b.iter(|| {
                        model
                            .forward(Input::new(black_box(&ids)), arena, &mut out)
                            .unwrap()
                    });
                });
            }
        }
        group.finish();
    }
}

fn kernels(c: &mut Criterion) {
    use tinyformer::kernels::matvec::{self, Int8Kernel};
    use tinyformer::kernels::{attention, gelu, layernorm, softmax};
    use tinyformer::quant::Requant;
    let mut group = c.benchmark_group("kernels");
    let mut rng = XorShift64Star::new(7);

    // Matrix-vector products of the MiniLM FFN shape (throughput in MACs).
    let (rows, cols) = (1536usize, 384usize);
    let w: Vec<i8> = (0..rows * cols).map(|_| rng.next_u32() as i8).collect();
    let x: Vec<i8> = (0..cols).map(|_| rng.next_u32() as i8).collect();
    let bias = vec![0i32; rows];
    group.throughput(Throughput::Elements((rows * cols) as u64));
    for kernel in Int8Kernel::ALL.into_iter().filter(|k| k.is_available()) {
        let name = format!("matvec_i8 1536x384 {kernel:?}");
        group.bench_function(name, |b| {
            let mut sink = 0i32;
            b.iter(|| {
                matvec::matvec_i8_with(kernel, rows, black_box(&x), &w, &bias, |_, v| {
                    sink = sink.wrapping_add(v)
                })
            });
        });
    }
    // The same weights over a batch of eight tokens (one weight pass per batch where
    // the kernel has a multi-token path).
    let tokens = 8usize;
    let xs: Vec<i8> = (0..tokens * cols).map(|_| rng.next_u32() as i8).collect();
    group.throughput(Throughput::Elements((tokens * rows * cols) as u64));
    for kernel in Int8Kernel::ALL.into_iter().filter(|k| k.is_available()) {
        let name = format!("matmul_i8 8x1536x384 {kernel:?}");
        group.bench_function(name, |b| {
            let mut sink = 0i32;
            b.iter(|| {
                matvec::matmul_i8_with(kernel, rows, cols, black_box(&xs), &w, &bias, |_, _, v| {
                    sink = sink.wrapping_add(v)
                })
            });
        });
    }
    // The int8 forward pass's tile product: a batch of 64 tokens into an `i32` tile
    // (AVX-512 VNNI has its own tokens-in-lanes kernel; the others their matmul).
    let tokens = 64usize;
    let xs: Vec<i8> = (0..tokens * cols).map(|_| rng.next_u32() as i8).collect();
    let mut tile = vec![0i32; tokens * rows];
    group.throughput(Throughput::Elements((tokens * rows * cols) as u64));
    for kernel in Int8Kernel::ALL.into_iter().filter(|k| k.is_available()) {
        let name = format!("matmul_i8_into 64x1536x384 {kernel:?}");
        group.bench_function(name, |b| {
            b.iter(|| {
                matvec::matmul_i8_into_with(
                    kernel,
                    rows,
                    cols,
                    black_box(&xs),
                    &w,
                    &bias,
                    &mut tile,
                )
            });
        });
    }
    // The decoder's int16-by-int8 products at SmolLM2-135M's FFN shape: one token
    // (decode) and a 16-token block of a prompt (prefill).
    let (rows16, cols16) = (1536usize, 576usize);
    let w16: Vec<i8> = (0..rows16 * cols16).map(|_| rng.next_u32() as i8).collect();
    for tokens in [1usize, 16] {
        let xs16: Vec<i16> = (0..tokens * cols16)
            .map(|_| (rng.next_u32() as i16) / 2)
            .collect();
        group.throughput(Throughput::Elements((tokens * rows16 * cols16) as u64));
        for kernel in Int8Kernel::ALL.into_iter().filter(|k| k.is_available()) {
            let name = format!("matmul_i16 {tokens}x{rows16}x{cols16} {kernel:?}");
            group.bench_function(name, |b| {
                let mut sink = 0i32;
                b.iter(|| {
                    matvec::matmul_i16_with(
                        kernel,
                        rows16,
                        cols16,
                        black_box(&xs16),
                        &w16,
                        |_, _, v| sink = sink.wrapping_add(v),
                    )
                });
            });
        }
    }
    group.throughput(Throughput::Elements((rows * cols) as u64));

    let wf: Vec<half::f16> = w
        .iter()
        .map(|&v| half::f16::from_f32(f32::from(v) / 128.0))
        .collect();
    let xf: Vec<f32> = x.iter().map(|&v| f32::from(v) / 128.0).collect();
    let mut out = vec![0f32; rows];
    group.bench_function("matvec_f16 1536x384", |b| {
        b.iter(|| matvec::matvec_f32(&mut out, black_box(&xf), &wf, &[]))
    });

    // One attention row of one head at seq 128 (head_dim 32): scores, softmax,
    // weighted values; throughput in MACs (2 * seq * head_dim).
    let (seq, hidden, head_dim) = (128usize, 384usize, 32usize);
    let keys: Vec<i8> = (0..seq * hidden)
        .map(|_| rng.next_u32() as i8 / 4)
        .collect();
    let values: Vec<i8> = (0..seq * hidden).map(|_| rng.next_u32() as i8).collect();
    let q: Vec<i8> = (0..head_dim).map(|_| rng.next_u32() as i8 / 4).collect();
    let to_log2 = Requant::from_real(1.0 / 4096.0 * std::f64::consts::LOG2_E * 65536.0);
    let r = Requant::from_real(1.0 / 32768.0);
    let ctx_rq = vec![[r.multiplier, r.shift]; head_dim];
    let mut ctx = vec![0i32; head_dim];
    let mut scores = vec![0i32; attention::attention_scratch_len(seq)];
    group.throughput(Throughput::Elements((2 * seq * head_dim) as u64));
    group.bench_function("attend_i8 seq128 head_dim32", |b| {
        b.iter(|| {
            attention::attend_i8(
                &mut ctx,
                black_box(&q),
                &keys,
                &values,
                hidden,
                3,
                to_log2,
                &ctx_rq,
                &mut scores,
                |_| true,
            )
        })
    });

    // Element-wise kernels (throughput in elements).
    let score_row: Vec<i32> = (0..128).map(|_| (rng.next_u32() % 20000) as i32).collect();
    group.throughput(Throughput::Elements(128));
    group.bench_function("softmax_q15 128", |b| {
        let mut row = score_row.clone();
        b.iter(|| {
            row.copy_from_slice(&score_row);
            softmax::softmax_q15(black_box(&mut row), to_log2);
        });
    });
    let resid: Vec<i32> = (0..384)
        .map(|_| (rng.next_u32() % 32768) as i32 - 16384)
        .collect();
    let gamma = vec![1 << 14; 384];
    let mut normed = vec![0i8; 384];
    group.throughput(Throughput::Elements(384));
    group.bench_function("layer_norm_i32 384", |b| {
        b.iter(|| {
            layernorm::layer_norm_i32(&mut normed, black_box(&resid), &gamma, &bias[..384], 0)
        })
    });
    // GELU by table interpolation over one FFN row (Q10 in, Q10 out).
    let table: Vec<i32> = (0..gelu::ACT_TABLE_LEN)
        .map(|i| (gelu::gelu(gelu::act_table_input(i) as f32) * 1024.0) as i32)
        .collect();
    let pre: Vec<i32> = (0..1536)
        .map(|_| (rng.next_u32() % 16384) as i32 - 8192)
        .collect();
    group.throughput(Throughput::Elements(1536));
    group.bench_function("gelu_q10 1536", |b| {
        b.iter(|| {
            black_box(&pre)
                .iter()
                .map(|&v| gelu::activation_q10(v, &table, gelu::Tail::Linear))
                .fold(0i32, i32::wrapping_add)
        })
    });
    group.finish();
}

/// The decoder shape of llama2.c's stories260K.
struct DecoderShape {
    hidden: u32,
    layers: u32,
    heads: u32,
    kv_heads: u32,
    ffn: u32,
    vocab: u32,
    max_seq: u32,
}

const STORIES260K: DecoderShape = DecoderShape {
    hidden: 64,
    layers: 5,
    heads: 8,
    kv_heads: 4,
    ffn: 172,
    vocab: 512,
    max_seq: 512,
};

/// The committed stories260K int8 model (converted from llama2.c's checkpoint, see
/// `models/stories260K/README.md`).
static STORIES260K_INT8: &[u8] =
    tinyformer::include_model!("../models/stories260K/stories260K-int8.tfm");

/// A random float decoder of `shape` (`dtype` F32 or F16): weights uniform in
/// ±0.05, unit RMSNorm weights, tied output head, a llama2.c-style vocabulary
/// (`<unk>`, `<s>`, `</s>`, 256 byte pieces, then made-up pieces).
fn random_decoder(shape: &DecoderShape, dtype: DType) -> AlignedBuf {
    use tinyformer::format::DecoderParams;
    use tinyformer::tokenizer::sentencepiece::{encode_section, SentencePieceConfig};
    let config = Config {
        arch: Arch::LlamaDecoder,
        weight_dtype: dtype,
        activation: Activation::Silu,
        pooling: Pooling::None,
        vocab_size: shape.vocab,
        hidden: shape.hidden,
        layers: shape.layers,
        heads: shape.heads,
        ffn: shape.ffn,
        max_positions: shape.max_seq,
        type_vocab: 0,
        num_labels: 0,
        max_seq: shape.max_seq,
        layer_norm_eps_bits: 1e-5f32.to_bits(),
        decoder: Some(DecoderParams {
            kv_heads: shape.kv_heads,
            rope_theta_bits: 10000f32.to_bits(),
            bos_id: 1,
            eos_id: 2,
            separate_output: false,
        }),
    };
    let mut pieces: Vec<Vec<u8>> = vec![b"<unk>".to_vec(), b"<s>".to_vec(), b"</s>".to_vec()];
    pieces.extend((0..=255u8).map(|b| format!("<0x{b:02X}>").into_bytes()));
    let made_up = shape.vocab as usize - pieces.len();
    pieces.extend((0..made_up).map(|i| format!("piece{i}").into_bytes()));
    let piece_refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
    let scores = vec![0.0f32; pieces.len()];
    let section = encode_section(&piece_refs, &scores, &SentencePieceConfig::llama2c()).unwrap();
    let mut rng = XorShift64Star::new(3);
    let mut weight = || (rng.next_u32() % 2001) as f32 / 20000.0 - 0.05;
    let payloads: Vec<(TensorKind, Option<u16>, Vec<u8>)> = (0..tensor_count(&config))
        .map(|i| {
            let spec = tensor_spec(&config, i).unwrap();
            let n = (spec.dims[0] * spec.dims[1]) as usize;
            let norm = matches!(
                spec.kind,
                TensorKind::RmsAttn | TensorKind::RmsFfn | TensorKind::RmsFinal
            );
            let bytes: Vec<u8> = match spec.dtype {
                DType::F32 => (0..n)
                    .flat_map(|_| if norm { 1.0 } else { weight() }.to_le_bytes())
                    .collect(),
                DType::F16 => (0..n)
                    .flat_map(|_| {
                        half::f16::from_f32(if norm { 1.0 } else { weight() }).to_le_bytes()
                    })
                    .collect(),
                other => panic!("random_decoder: {other:?} tensor in a float decoder"),
            };
            (spec.kind, spec.layer, bytes)
        })
        .collect();
    let tensors = TensorData::borrow_all(&payloads);
    AlignedBuf::from_bytes(&write_model(&config, &section, &[], &tensors).unwrap())
}

/// Positions whose steps are timed: `DECODE_FROM..DECODE_TO`, around 128 on average
/// (a step's attention cost is linear in its position).
const DECODE_FROM: usize = 96;
const DECODE_TO: usize = 160;

/// One decode step (logits included) at positions around 128, in tokens/s.
fn decoder(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_step/stories260K");
    group.sample_size(20);
    // Untimed prefills make each measured second cost about 2.5 s of wall time.
    group.measurement_time(std::time::Duration::from_secs(2));
    group.throughput(Throughput::Elements(1));
    let f32_model = random_decoder(&STORIES260K, DType::F32);
    let f16_model = random_decoder(&STORIES260K, DType::F16);
    let models: [(&str, &[u8]); 3] = [
        ("int8 (committed file)", STORIES260K_INT8),
        ("f32 (random weights)", f32_model.as_bytes()),
        ("f16 (random weights)", f16_model.as_bytes()),
    ];
    for (label, bytes) in models {
        let model = Decoder::from_bytes(bytes).unwrap();
        let ctx = STORIES260K.max_seq as usize;
        let mut arena = vec![0u128; model.arena_bytes(ctx).unwrap().div_ceil(16)];
        let mut state = State::new(&model, bytemuck::cast_slice_mut(&mut arena), ctx).unwrap();
        // Token ids of no meaning, fixed so every run is the same.
        let ids: Vec<u32> = (0..DECODE_TO as u32)
            .map(|i| (i * 37 + 5) % STORIES260K.vocab)
            .collect();
        // Random float weights time like real ones only while the activations stay
        // finite (no NaN or infinity); checked once over the whole window.
        if let tinyformer::Logits::F32(logits) = state.prefill(&ids).unwrap() {
            assert!(
                logits.iter().all(|v| v.is_finite()),
                "{label}: non-finite logits"
            );
        }
        state.reset();
        group.bench_function(
            BenchmarkId::new(label, format!("pos {DECODE_FROM}..{DECODE_TO}")),
            |b| {
                // Each timed iteration is one step; the prefill up to DECODE_FROM that
                // every window of steps needs is outside the timer.
                b.iter_custom(|iters| {
                    let mut timed = std::time::Duration::ZERO;
                    for _ in 0..iters {
                        if state.pos() == 0 || state.pos() == DECODE_TO {
                            state.reset();
                            state.prefill(&ids[..DECODE_FROM]).unwrap();
                        }
                        let token = ids[state.pos()];
                        let start = std::time::Instant::now();
                        black_box(state.step(black_box(token)).unwrap());
                        timed += start.elapsed();
                    }
                    timed
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, forward, kernels, decoder);
criterion_main!(benches);
