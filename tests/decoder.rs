//! The decoder state on small random models (f32, f16, int8; tied and separate output
//! heads): the arena is exact, a full context is an error, reset makes the state
//! reusable, prefill equals stepping, bad inputs are refused without changing the
//! state. Also run under Miri (`tools/miri.sh`).

mod common;

use common::tiny_decoder;
use tinyformer::format::writer::AlignedBuf;
use tinyformer::format::{Arch, DType, FormatError};
use tinyformer::{Decoder, Error, Logits, Model, State};

/// Every weight dtype; under Miri (tools/miri.sh), where every step is interpreted,
/// f16 (the float step with widening) and int8.
const DTYPES: &[DType] = if cfg!(miri) {
    &[DType::F16, DType::I8]
} else {
    &[DType::F32, DType::F16, DType::I8]
};

fn logits_vec(l: Logits<'_>) -> Vec<i64> {
    match l {
        Logits::F32(v) => v.iter().map(|x| i64::from(x.to_bits())).collect(),
        Logits::Q16(v) => v.iter().map(|&x| i64::from(x)).collect(),
    }
}

/// A 16-byte aligned arena of `bytes` bytes.
fn arena(bytes: usize) -> Vec<u128> {
    vec![0u128; bytes.div_ceil(16)]
}

#[test]
fn arena_size_is_exact() {
    for &dtype in DTYPES {
        let buf = AlignedBuf::from_bytes(&tiny_decoder(dtype, false, 32, 1));
        let model = Decoder::from_bytes(buf.as_bytes()).unwrap();
        // Under Miri (tools/miri.sh) fewer and shorter contexts: every step is
        // interpreted.
        let contexts: &[usize] = if cfg!(miri) { &[1, 3] } else { &[1, 2, 7, 32] };
        for &ctx in contexts {
            let needed = model.arena_bytes(ctx).unwrap();
            let mut a = arena(needed);
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut a);
            assert_eq!(
                State::new(&model, &mut bytes[..needed - 1], ctx).err(),
                Some(Error::ArenaTooSmall {
                    needed,
                    got: needed - 1
                }),
                "{dtype:?} ctx {ctx}"
            );
            let mut state = State::new(&model, &mut bytes[..needed], ctx).unwrap();
            for t in 0..ctx {
                state.step((t as u32 * 37) % 259).unwrap();
            }
        }
        assert_eq!(
            model.arena_bytes(33).err(),
            Some(Error::SequenceTooLong { max: 32, got: 33 })
        );
        assert_eq!(model.arena_bytes(0).err(), Some(Error::EmptySequence));
    }
}

#[test]
fn full_context_is_an_error_and_reset_reuses_the_state() {
    for &dtype in DTYPES {
        let buf = AlignedBuf::from_bytes(&tiny_decoder(dtype, true, 16, 2));
        let model = Decoder::from_bytes(buf.as_bytes()).unwrap();
        let ctx = 5;
        let mut a = arena(model.arena_bytes(ctx).unwrap());
        let mut state = State::new(&model, bytemuck::cast_slice_mut(&mut a), ctx).unwrap();
        let prompt = [1u32, 70, 80, 90, 100];
        let first: Vec<Vec<i64>> = prompt
            .iter()
            .map(|&t| logits_vec(state.step(t).unwrap()))
            .collect();
        assert_eq!(state.pos(), ctx);
        assert_eq!(state.step(3).err(), Some(Error::ContextFull { ctx }));
        assert_eq!(state.pos(), ctx, "a refused step changes nothing");
        state.reset();
        assert_eq!(state.pos(), 0);
        let again: Vec<Vec<i64>> = prompt
            .iter()
            .map(|&t| logits_vec(state.step(t).unwrap()))
            .collect();
        assert_eq!(first, again, "{dtype:?}: a reset state repeats itself");
        // Prefill gives the last step's logits.
        state.reset();
        assert_eq!(logits_vec(state.prefill(&prompt).unwrap()), first[4]);
        state.reset();
        assert_eq!(
            state.prefill(&[1, 2, 3, 4, 5, 6]).err(),
            Some(Error::ContextFull { ctx })
        );
        assert_eq!(state.pos(), 0, "a refused prefill runs nothing");
    }
}

#[test]
fn bad_inputs_are_refused_without_running() {
    let buf = AlignedBuf::from_bytes(&tiny_decoder(DType::I8, false, 8, 3));
    let model = Decoder::from_bytes(buf.as_bytes()).unwrap();
    let mut a = arena(model.arena_bytes(8).unwrap());
    let mut state = State::new(&model, bytemuck::cast_slice_mut(&mut a), 8).unwrap();
    assert_eq!(
        state.step(259).err(),
        Some(Error::TokenOutOfRange {
            index: 0,
            id: 259,
            vocab: 259
        })
    );
    assert_eq!(
        state.prefill(&[1, 5, 900]).err(),
        Some(Error::TokenOutOfRange {
            index: 2,
            id: 900,
            vocab: 259
        })
    );
    assert_eq!(state.prefill(&[]).err(), Some(Error::EmptySequence));
    assert_eq!(
        state.step_observed(1, &mut Nothing).err(),
        Some(Error::NotFloat)
    );
    assert_eq!(state.pos(), 0);
    // The int8-only entry points agree with the general ones.
    let fixed = state.step_fixed(1).unwrap().to_vec();
    state.reset();
    assert_eq!(
        logits_vec(state.step(1).unwrap()),
        fixed.iter().map(|&v| i64::from(v)).collect::<Vec<_>>()
    );

    let fbuf = AlignedBuf::from_bytes(&tiny_decoder(DType::F32, false, 8, 3));
    let float = Decoder::from_bytes(fbuf.as_bytes()).unwrap();
    let mut fa = arena(float.arena_bytes(8).unwrap());
    let mut fstate = State::new(&float, bytemuck::cast_slice_mut(&mut fa), 8).unwrap();
    assert_eq!(fstate.step_fixed(1).err(), Some(Error::NotQuantized));
    assert_eq!(
        fstate.prefill_fixed(&[1, 2]).err(),
        Some(Error::NotQuantized)
    );
    assert_eq!(fstate.pos(), 0);

    // Misaligned arena.
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut a);
    let n = model.arena_bytes(8).unwrap();
    assert_eq!(
        State::new(&model, &mut bytes[1..n + 1], 8).err(),
        Some(Error::ArenaMisaligned { align: 4 })
    );
}

struct Nothing;
impl tinyformer::model::Observer for Nothing {
    fn observe(&mut self, _: tinyformer::model::Point, _: usize, _: &[f32]) {}
}

// Under Miri the CRC of the 1 MB encoder file alone takes minutes; the validation it
// reaches runs there in tests/format.rs.
#[test]
#[cfg_attr(miri, ignore)]
fn each_architecture_refuses_the_other() {
    let dec = AlignedBuf::from_bytes(&tiny_decoder(DType::F32, false, 8, 4));
    assert_eq!(
        Model::from_bytes(dec.as_bytes()).err(),
        Some(FormatError::WrongArch {
            expected: Arch::BertEncoder,
            found: Arch::LlamaDecoder
        })
    );
    let enc = include_bytes!("../models/default/sentiment-int8.tfm");
    let enc = AlignedBuf::from_bytes(enc);
    assert_eq!(
        Decoder::from_bytes(enc.as_bytes()).err(),
        Some(FormatError::WrongArch {
            expected: Arch::LlamaDecoder,
            found: Arch::BertEncoder
        })
    );
}

/// The encoder's loader refuses a decoder's file by its architecture without reading
/// the decoder tokenizer section (an encoder-only firmware links none of that
/// validation): with the section's magic broken and the CRC made to match again, the
/// file loader reports the tokenizer, `Model::from_bytes` still `WrongArch`.
#[test]
fn encoder_loader_refuses_a_decoder_before_its_tokenizer() {
    use tinyformer::format::{file_crc32, header, ModelFile};
    let mut bytes = tiny_decoder(DType::F32, false, 8, 4);
    let field = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let tokenizer = field(&bytes, header::TOKENIZER_OFFSET) as usize;
    bytes[tokenizer] ^= 0xff;
    let crc = file_crc32(&bytes);
    bytes[header::CRC32..header::CRC32 + 4].copy_from_slice(&crc.to_le_bytes());
    let file = AlignedBuf::from_bytes(&bytes);
    assert!(matches!(
        ModelFile::from_bytes(file.as_bytes()),
        Err(FormatError::Tokenizer(_))
    ));
    assert_eq!(
        Model::from_bytes(file.as_bytes()).err(),
        Some(FormatError::WrongArch {
            expected: Arch::BertEncoder,
            found: Arch::LlamaDecoder
        })
    );
}

/// Positions are independent of the context the state was made for, and the cache of
/// a longer context holds the same results.
#[test]
fn results_do_not_depend_on_the_context_length() {
    for &dtype in DTYPES {
        let buf = AlignedBuf::from_bytes(&tiny_decoder(dtype, false, 16, 5));
        let model = Decoder::from_bytes(buf.as_bytes()).unwrap();
        let run = |ctx: usize| -> Vec<Vec<i64>> {
            let mut a = arena(model.arena_bytes(ctx).unwrap());
            let mut state = State::new(&model, bytemuck::cast_slice_mut(&mut a), ctx).unwrap();
            (0..4)
                .map(|t| logits_vec(state.step(10 + t).unwrap()))
                .collect()
        };
        assert_eq!(run(4), run(16), "{dtype:?}");
    }
}

/// An int8 prefill in blocks of any size gives the logits and the cache of stepping
/// token by token, bit for bit, on every kernel this machine runs: the logits after
/// the prompt, then every step that reads the cache the blocks wrote. The arena of a
/// block plan is exact too. (Float plans have one row whatever is asked.)
#[test]
fn block_prefill_equals_stepping() {
    use tinyformer::kernels::matvec::Int8Kernel;
    let ctx = 16usize;
    let prompt: Vec<u32> = (0..11).map(|t| (t * 53 + 7) % 259).collect();
    let kernels: Vec<Int8Kernel> = Int8Kernel::ALL
        .into_iter()
        .filter(|k| k.is_available())
        .collect();
    let rows_list: &[usize] = if cfg!(miri) {
        &[3]
    } else {
        &[0, 1, 2, 3, 4, 5, 16, 99]
    };
    // Under Miri (tools/miri.sh), where every step is interpreted: the int8 model with
    // a tied head only (the block path is int8's; float plans have one row).
    let (dtypes, heads): (&[DType], &[bool]) = if cfg!(miri) {
        (&[DType::I8], &[false])
    } else {
        (DTYPES, &[false, true])
    };
    for &dtype in dtypes {
        for &separate in heads {
            let buf = AlignedBuf::from_bytes(&tiny_decoder(dtype, separate, ctx as u32, 6));
            let base = Decoder::from_bytes(buf.as_bytes()).unwrap();
            let stepped: Vec<Vec<i64>> = {
                let mut a = arena(base.arena_bytes(ctx).unwrap());
                let mut state = State::new(&base, bytemuck::cast_slice_mut(&mut a), ctx).unwrap();
                let mut out: Vec<Vec<i64>> = prompt
                    .iter()
                    .map(|&t| logits_vec(state.step(t).unwrap()))
                    .collect();
                out.drain(..prompt.len() - 1);
                out.extend((0..3).map(|t| logits_vec(state.step(40 + t).unwrap())));
                out
            };
            for &kernel in &kernels {
                let model = base.with_kernel(kernel);
                for &rows in rows_list {
                    let plan = model.plan_with_rows(ctx, rows).unwrap();
                    let name = format!("{dtype:?} separate {separate} {kernel:?} rows {rows}");
                    let want_rows = if dtype == DType::I8 {
                        rows.clamp(1, 16)
                    } else {
                        1
                    };
                    assert_eq!(plan.rows, want_rows, "{name}");
                    let needed = plan.total_bytes();
                    let mut a = arena(needed);
                    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut a);
                    assert_eq!(
                        State::with_plan(&model, &mut bytes[..needed - 1], plan).err(),
                        Some(Error::ArenaTooSmall {
                            needed,
                            got: needed - 1
                        }),
                        "{name}"
                    );
                    let mut state = State::with_plan(&model, &mut bytes[..needed], plan).unwrap();
                    let mut got = vec![logits_vec(state.prefill(&prompt).unwrap())];
                    got.extend((0..3).map(|t| logits_vec(state.step(40 + t).unwrap())));
                    assert_eq!(got, stepped, "{name}");
                }
            }
        }
    }
}

/// An int8 decoder large enough that its prefill blocks' FFN projections are split
/// across threads (16 tokens x 2048 x 256 = 8.4 M multiply-accumulates, at least
/// `MIN_MACS`): the same logits after the prompt and after each later step on 1, 2 and
/// 3 threads as the scalar reference on one (`Decoder::with_threads`; the parts are
/// rows of the weight matrices, each computed as one thread computes it).
#[cfg(feature = "threads")]
#[cfg_attr(miri, ignore)] // interpreted, this model's prefill takes hours
#[test]
fn prefill_threads_give_the_reference_results() {
    use common::{sized_decoder, DecoderShape};
    use tinyformer::kernels::matvec::Int8Kernel;
    let ctx = 40usize;
    let shape = DecoderShape {
        hidden: 256,
        heads: 8,
        kv_heads: 4,
        ffn: 2048,
        layers: 2,
    };
    let buf = AlignedBuf::from_bytes(&sized_decoder(DType::I8, true, ctx as u32, 11, shape));
    let base = Decoder::from_bytes(buf.as_bytes()).unwrap();
    let prompt: Vec<u32> = (0..35).map(|t| (t * 37 + 11) % 259).collect();
    let run = |model: Decoder<'_>| {
        let plan = model.plan_with_rows(ctx, 16).unwrap();
        let mut a = arena(plan.total_bytes());
        let mut state = State::with_plan(&model, bytemuck::cast_slice_mut(&mut a), plan).unwrap();
        let mut out = vec![logits_vec(state.prefill(&prompt).unwrap())];
        out.extend((0..3).map(|t| logits_vec(state.step(60 + t).unwrap())));
        out
    };
    let reference = run(base.with_kernel(Int8Kernel::Scalar));
    for threads in [1, 2, 3] {
        let model = base.with_threads(threads);
        assert_eq!(model.threads(), threads);
        assert_eq!(
            run(model),
            reference,
            "{threads} threads, {:?}",
            model.kernel()
        );
    }
}
