//! The compile-time arena size ([`tinyformer::arena_bytes`], a `const fn` over the
//! model file's header) equals the runtime plan's (`Model::arena_bytes`,
//! `Decoder::arena_bytes`) for the committed models and for written decoders at many
//! contexts, and is evaluated at compile time where a firmware uses it.

mod common;

use tinyformer::format::writer::AlignedBuf;
use tinyformer::format::{Arch, DType, FormatError};
use tinyformer::{arena_bytes, try_arena_bytes, Config, Decoder, Error, Model};

/// The committed model files, in `models/`.
const MODELS: [(&str, &[u8]); 3] = [
    (
        "default/sentiment-int8.tfm",
        include_bytes!("../models/default/sentiment-int8.tfm"),
    ),
    (
        "default/sentiment-f16.tfm",
        include_bytes!("../models/default/sentiment-f16.tfm"),
    ),
    (
        "stories260K/stories260K-int8.tfm",
        include_bytes!("../models/stories260K/stories260K-int8.tfm"),
    ),
];

/// Evaluated by the compiler: the figures the README and the firmware quote.
const DEFAULT_INT8_AT_64: usize = arena_bytes(MODELS[0].1, 64);
const STORIES_AT_256: usize = arena_bytes(MODELS[2].1, 256);
const STORIES_AT_512: usize = arena_bytes(MODELS[2].1, 512);

/// The runtime plan's total for `len` tokens (or context positions) of a file.
fn runtime_arena_bytes(bytes: &[u8], len: usize) -> Result<usize, Error> {
    let buf = AlignedBuf::from_bytes(bytes);
    match Config::from_header(bytes)?.arch {
        Arch::BertEncoder => Model::from_bytes(buf.as_bytes())?.arena_bytes(len),
        Arch::LlamaDecoder => Decoder::from_bytes(buf.as_bytes())?.arena_bytes(len),
    }
}

/// Every length from 0 to one past `max_seq`: equal sizes, equal refusals.
fn assert_tied(name: &str, bytes: &[u8]) {
    let max_seq = Config::from_header(bytes).unwrap().max_seq as usize;
    for len in 0..=max_seq + 1 {
        assert_eq!(
            try_arena_bytes(bytes, len),
            runtime_arena_bytes(bytes, len),
            "{name} at {len}"
        );
    }
    assert_eq!(
        arena_bytes(bytes, max_seq),
        runtime_arena_bytes(bytes, max_seq).unwrap()
    );
}

#[test]
fn committed_models_compile_time_size_is_the_runtime_plan() {
    for (name, bytes) in MODELS {
        assert_tied(name, bytes);
    }
    assert_eq!(DEFAULT_INT8_AT_64, 19_264);
    assert_eq!(STORIES_AT_256, 87_736);
    assert_eq!(STORIES_AT_512, 170_680);
    assert_eq!(Ok(DEFAULT_INT8_AT_64), runtime_arena_bytes(MODELS[0].1, 64));
    assert_eq!(Ok(STORIES_AT_256), runtime_arena_bytes(MODELS[2].1, 256));
}

#[test]
fn written_decoders_compile_time_size_is_the_runtime_plan() {
    for dtype in [DType::I8, DType::F16, DType::F32] {
        for max_seq in [2, 3, 16, 100, 257] {
            for separate_output in [false, true] {
                let bytes = common::tiny_decoder(dtype, separate_output, max_seq, 7);
                assert_tied(&format!("{dtype:?} max_seq {max_seq}"), &bytes);
            }
        }
    }
}

/// What a build would report: each refusal carries the runtime error.
#[test]
fn refusals_name_the_error() {
    let model = MODELS[0].1;
    assert_eq!(
        try_arena_bytes(model, 65),
        Err(Error::SequenceTooLong { max: 64, got: 65 })
    );
    assert_eq!(try_arena_bytes(model, 0), Err(Error::EmptySequence));
    assert_eq!(
        try_arena_bytes(&model[..100], 64),
        Err(Error::Format(FormatError::Truncated {
            what: "header",
            needed: 128,
            got: 100
        }))
    );
    assert_eq!(
        try_arena_bytes(&model[..1000], 64),
        Err(Error::Format(FormatError::LengthMismatch {
            header: model.len() as u32,
            actual: 1000
        }))
    );
    assert!(matches!(
        try_arena_bytes(b"not a model", 64),
        Err(Error::Format(FormatError::BadMagic { .. }))
    ));
    // Called at run time, the compile-time function panics with the same message a
    // build would print.
    let panic = std::panic::catch_unwind(|| arena_bytes(model, 65)).unwrap_err();
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("longer than the model's max_seq"),
        "{message}"
    );
}
