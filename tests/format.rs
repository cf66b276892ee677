//! Format v1: writer/reader round trip, and every corruption class refused with its
//! own error, without panicking.
//!
//! The corruption tables re-stamp the CRC after each change ([`common::restamp_crc`]):
//! the checksum is verified last and covers every byte, so without that every change
//! would be refused by the checksum alone and a missing check would go unnoticed. Each
//! case names the exact error, fields included, so removing any one validation step
//! fails at least one case.

mod common;

use common::restamp_crc;
use tinyformer::format::writer::{write_model, AlignedBuf, TensorData};
use tinyformer::format::{
    dir, file_crc32, header, limits, scalar, tensor_count, tensor_index, tensor_spec, Activation,
    Arch, Config, DType, FormatError, ModelFile, Pooling, TensorKind, ALIGN, DIR_ENTRY_LEN,
    HEADER_LEN, MODEL_LEVEL, VERSION,
};
use tinyformer::tokenizer::{
    encode_section, SpecialToken, TokenizerConfig, TokenizerError, MAX_ADDED_TOKENS,
    MAX_WORD_CHARS_LIMIT,
};

fn config(weight_dtype: DType) -> Config {
    Config {
        arch: Arch::BertEncoder,
        weight_dtype,
        activation: Activation::Gelu,
        pooling: Pooling::ClsPooler,
        vocab_size: 12,
        hidden: 8,
        layers: 2,
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

const VOCAB: [&str; 12] = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "a", "good", "bad", "movie", "##s", ".", "[MASK]",
];

/// A valid model whose payload bytes are a deterministic pattern (requant tensors get
/// valid `(multiplier, shift)` pairs).
fn model_bytes(weight_dtype: DType) -> Vec<u8> {
    let config = config(weight_dtype);
    let payloads: Vec<(TensorKind, Option<u16>, Vec<u8>)> = (0..tensor_count(&config))
        .map(|i| {
            let spec = tensor_spec(&config, i).unwrap();
            let len = spec.byte_len() as usize;
            let bytes = if spec.kind == TensorKind::LayerScalars {
                // The score-to-exponent pair must be a valid requantization pair.
                vec![0; len]
            } else if spec.kind.is_requant() {
                [1 << 30, 0i32]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .cycle()
                    .take(len)
                    .collect()
            } else {
                (0..len).map(|b| (b * 7 + i) as u8).collect()
            };
            (spec.kind, spec.layer, bytes)
        })
        .collect();
    let tensors = TensorData::borrow_all(&payloads);
    let section = encode_section(&VOCAB, &TokenizerConfig::bert_uncased()).unwrap();
    write_model(&config, &section, &["negative", "positive"], &tensors).unwrap()
}

fn load(bytes: &[u8]) -> Result<(), FormatError> {
    let buf = AlignedBuf::from_bytes(bytes);
    ModelFile::from_bytes(buf.as_bytes()).map(|_| ())
}

fn put_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn get_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// File offset of directory entry `index`.
fn entry(index: usize) -> usize {
    HEADER_LEN + index * DIR_ENTRY_LEN
}

/// Changes a valid file in place.
type Corrupt = Box<dyn Fn(&mut [u8])>;

/// A named corruption and the exact error it must produce once the CRC is re-stamped.
struct Case {
    name: String,
    corrupt: Corrupt,
    expected: FormatError,
}

fn case(
    name: impl Into<String>,
    expected: FormatError,
    corrupt: impl Fn(&mut [u8]) + 'static,
) -> Case {
    Case {
        name: name.into(),
        corrupt: Box::new(corrupt),
        expected,
    }
}

/// A case that writes one `u32` at `at`.
fn set_u32(name: impl Into<String>, at: usize, value: u32, expected: FormatError) -> Case {
    case(name, expected, move |b| put_u32(b, at, value))
}

/// A case that writes one byte at `at`.
fn set_u8(name: impl Into<String>, at: usize, value: u8, expected: FormatError) -> Case {
    case(name, expected, move |b| b[at] = value)
}

/// Applies each case to a copy of `good`, re-stamps the CRC and checks the error;
/// reports every mismatch at once.
fn check_cases(good: &[u8], cases: Vec<Case>) {
    assert_eq!(load(good), Ok(()), "the unmodified file must load");
    let mut failures = Vec::new();
    for case in &cases {
        let mut bad = good.to_vec();
        (case.corrupt)(&mut bad);
        restamp_crc(&mut bad);
        let got = load(&bad);
        if got != Err(case.expected) {
            failures.push(format!(
                "{}: got {got:?}\n   expected {:?}",
                case.name, case.expected
            ));
        }
        // Every error renders a message.
        assert!(!case.expected.to_string().is_empty());
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Offsets and lengths of the regions of a writer-produced file.
struct Layout {
    file_len: u32,
    count: u32,
    dir_offset: u32,
    dir_end: u32,
    tok_offset: u32,
    tok_len: u32,
    lab_offset: u32,
    lab_len: u32,
}

impl Layout {
    fn of(bytes: &[u8]) -> Self {
        let count = get_u32(bytes, header::TENSOR_COUNT);
        let dir_offset = get_u32(bytes, header::DIR_OFFSET);
        let layout = Layout {
            file_len: bytes.len() as u32,
            count,
            dir_offset,
            dir_end: dir_offset + count * DIR_ENTRY_LEN as u32,
            tok_offset: get_u32(bytes, header::TOKENIZER_OFFSET),
            tok_len: get_u32(bytes, header::TOKENIZER_LEN),
            lab_offset: get_u32(bytes, header::LABELS_OFFSET),
            lab_len: get_u32(bytes, header::LABELS_LEN),
        };
        // The writer packs the regions; the cases below rely on it.
        assert_eq!(layout.dir_offset as usize, HEADER_LEN);
        assert_eq!(layout.tok_offset, layout.dir_end);
        assert_eq!(layout.lab_offset, layout.tok_offset + layout.tok_len);
        layout
    }
    fn tensor_offset(&self, bytes: &[u8], index: usize) -> u32 {
        get_u32(bytes, entry(index) + dir::OFFSET)
    }
}

fn out_of_range(field: &'static str, value: u32) -> FormatError {
    FormatError::ConfigOutOfRange { field, value }
}

fn unknown(field: &'static str, code: u8) -> FormatError {
    FormatError::UnknownCode { field, code }
}

#[test]
fn round_trip_every_dtype() {
    for dtype in [DType::F32, DType::F16, DType::I8] {
        let bytes = model_bytes(dtype);
        let buf = AlignedBuf::from_bytes(&bytes);
        let file = ModelFile::from_bytes(buf.as_bytes()).unwrap();
        assert_eq!(*file.config(), config(dtype));
        assert_eq!(file.tensor_count() as usize, tensor_count(&config(dtype)));
        assert_eq!(file.label(0), Some("negative"));
        assert_eq!(file.label(1), Some("positive"));
        assert_eq!(file.label(2), None);
        // Checked against the count before any offset arithmetic (which overflowed a
        // 32-bit usize for indices near u32::MAX).
        assert_eq!(file.label(u32::MAX), None);
        for i in 0..file.tensor_count() {
            let info = file.tensor_info(i).unwrap();
            assert_eq!(info.offset % 16, 0);
            let payload = file.tensor_bytes(info.kind, info.layer);
            assert_eq!(payload.len(), info.len as usize);
        }
    }
}

/// Typed views: the stored element type (or a group of them) views the payload; a kind
/// the config does not use is empty, silently, whatever the type.
#[test]
fn tensor_views_of_used_and_unused_kinds() {
    let bytes = model_bytes(DType::I8);
    let buf = AlignedBuf::from_bytes(&bytes);
    let file = ModelFile::from_bytes(buf.as_bytes()).unwrap();
    let h = config(DType::I8).hidden as usize;
    assert_eq!(file.tensor::<i8>(TensorKind::QueryW, Some(1)).len(), h * h);
    let pairs: &[[i32; 2]] = file.tensor(TensorKind::QueryRq, Some(0));
    assert_eq!(pairs.len(), h);
    assert_eq!(
        file.tensor::<i32>(TensorKind::QueryRq, Some(0)).len(),
        2 * h
    );
    // Decoder kinds, a layer past the last, a per-layer kind asked at model level.
    assert!(file.tensor::<i32>(TensorKind::RopeTable, None).is_empty());
    assert!(file.tensor::<i8>(TensorKind::QueryW, Some(2)).is_empty());
    assert!(file.tensor::<u8>(TensorKind::QueryW, None).is_empty());
    assert!(file.tensor_bytes(TensorKind::DecScalars, None).is_empty());
}

/// A view of a tensor the config uses with the wrong element type is the caller's bug:
/// a debug build panics (release builds return an empty slice).
#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "requested as i8")]
fn tensor_view_of_wrong_element_type_panics_in_debug() {
    let bytes = model_bytes(DType::I8);
    let buf = AlignedBuf::from_bytes(&bytes);
    let file = ModelFile::from_bytes(buf.as_bytes()).unwrap();
    // The byte cast alone would accept it: an i32 table has a whole number of bytes.
    let _ = file.tensor::<i8>(TensorKind::QueryB, Some(0));
}

/// Same for a byte view of an `f16` matrix.
#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "holds f16 elements, requested as u8")]
fn tensor_view_narrower_than_stored_panics_in_debug() {
    let bytes = model_bytes(DType::F16);
    let buf = AlignedBuf::from_bytes(&bytes);
    let file = ModelFile::from_bytes(buf.as_bytes()).unwrap();
    let _ = file.tensor::<u8>(TensorKind::QueryW, Some(0));
}

/// And where the byte cast itself fails: groups of three `i8` over a 64-byte matrix.
#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "64 bytes cannot be viewed as [i8; 3]")]
fn tensor_view_that_does_not_cast_panics_in_debug() {
    let bytes = model_bytes(DType::I8);
    let buf = AlignedBuf::from_bytes(&bytes);
    let file = ModelFile::from_bytes(buf.as_bytes()).unwrap();
    let _ = file.tensor::<[i8; 3]>(TensorKind::QueryW, Some(0));
}

#[test]
#[cfg_attr(
    miri,
    ignore = "exhaustive: minutes under Miri; the other format tests cover the same code paths"
)]
fn truncation_at_every_byte_is_refused() {
    let bytes = model_bytes(DType::I8);
    for len in 0..bytes.len() {
        let err = load(&bytes[..len]).unwrap_err();
        match err {
            FormatError::Truncated { .. }
            | FormatError::LengthMismatch { .. }
            | FormatError::BadMagic { .. } => {}
            other => panic!("truncated to {len}: unexpected {other:?}"),
        }
    }
}

/// Every single-byte change of the header and the directory is refused by a check of
/// its own, not only by the checksum: the CRC is re-stamped after each change. The
/// only changes a valid file survives are the CRC bytes themselves (re-stamping undoes
/// them), LayerNorm epsilons that stay positive and finite (any such value is a valid
/// epsilon), and a labels length that grows into the zero padding before the first
/// tensor (`docs/FORMAT.md` does not require the last name to end the section).
#[test]
#[cfg_attr(
    miri,
    ignore = "exhaustive: minutes under Miri; the other format tests cover the same code paths"
)]
fn every_single_byte_change_of_header_and_directory_is_refused() {
    let bytes = model_bytes(DType::I8);
    let count = tensor_count(&config(DType::I8));
    let eps = header::LAYER_NORM_EPS..header::LAYER_NORM_EPS + 4;
    let l = Layout::of(&bytes);
    let labels_room = l.tensor_offset(&bytes, 0) - l.lab_offset;
    for at in 0..entry(count) {
        for flip in [0x01u8, 0x80, 0xFF] {
            let mut bad = bytes.clone();
            bad[at] ^= flip;
            restamp_crc(&mut bad);
            let result = load(&bad);
            if (header::CRC32..header::CRC32 + 4).contains(&at) {
                assert_eq!(result, Ok(()), "byte {at}: re-stamping undoes the change");
            } else if eps.contains(&at) {
                let bits = get_u32(&bad, header::LAYER_NORM_EPS);
                let valid = f32::from_bits(bits) > 0.0 && f32::from_bits(bits).is_finite();
                assert_eq!(result.is_ok(), valid, "epsilon bits {bits:#010x}");
            } else if (header::LABELS_LEN..header::LABELS_LEN + 4).contains(&at) {
                let len = get_u32(&bad, header::LABELS_LEN);
                let valid = (l.lab_len..=labels_room).contains(&len);
                assert_eq!(result.is_ok(), valid, "labels length {len}: {result:?}");
            } else {
                assert!(result.is_err(), "byte {at} ^ {flip:#x} was accepted");
            }
        }
    }
}

/// The one check the corruption tables skip: a change anywhere, with the CRC left as
/// it was, is a checksum mismatch naming both values.
#[test]
fn payload_corruption_fails_the_checksum() {
    let mut bytes = model_bytes(DType::F32);
    let stored = get_u32(&bytes, header::CRC32);
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    let computed = file_crc32(&bytes);
    assert_ne!(stored, computed);
    assert_eq!(
        load(&bytes),
        Err(FormatError::ChecksumMismatch { stored, computed })
    );
    // A change of the stored CRC itself.
    let mut bytes = model_bytes(DType::F32);
    bytes[header::CRC32] ^= 1;
    assert_eq!(
        load(&bytes),
        Err(FormatError::ChecksumMismatch {
            stored: stored ^ 1,
            computed: stored
        })
    );
}

/// The fixed fields of the header: magic, version, lengths, counts, reserved bytes.
#[test]
fn header_fixed_field_errors() {
    let good = model_bytes(DType::I8);
    let l = Layout::of(&good);
    let count = l.count;
    let file_len = l.file_len;
    check_cases(
        &good,
        vec![
            set_u8(
                "magic",
                header::MAGIC,
                b'X',
                FormatError::BadMagic {
                    found: u32::from_le_bytes(*b"XFMR"),
                },
            ),
            set_u8(
                "newer version",
                header::VERSION,
                2,
                FormatError::UnsupportedVersion {
                    found: 2,
                    supported: VERSION,
                },
            ),
            set_u8(
                "version 0",
                header::VERSION,
                0,
                FormatError::UnsupportedVersion {
                    found: 0,
                    supported: VERSION,
                },
            ),
            set_u32(
                "file length short",
                header::FILE_LEN,
                5,
                FormatError::LengthMismatch {
                    header: 5,
                    actual: file_len as usize,
                },
            ),
            set_u32(
                "file length long",
                header::FILE_LEN,
                file_len + 16,
                FormatError::LengthMismatch {
                    header: file_len + 16,
                    actual: file_len as usize,
                },
            ),
            set_u32(
                "header length",
                header::HEADER_LEN,
                64,
                FormatError::BadHeaderField {
                    field: "header_len",
                    value: 64,
                },
            ),
            set_u32(
                "tensor count low",
                header::TENSOR_COUNT,
                3,
                FormatError::TensorCountMismatch {
                    expected: count,
                    found: 3,
                },
            ),
            set_u32(
                "tensor count high",
                header::TENSOR_COUNT,
                count + 1,
                FormatError::TensorCountMismatch {
                    expected: count,
                    found: count + 1,
                },
            ),
            set_u8(
                "reserved0 first byte",
                header::RESERVED0,
                1,
                FormatError::ReservedNotZero {
                    offset: header::RESERVED0,
                },
            ),
            set_u8(
                "reserved0 last byte",
                header::RESERVED0 + 1,
                1,
                FormatError::ReservedNotZero {
                    offset: header::RESERVED0 + 1,
                },
            ),
            set_u8(
                "reserved1 first byte",
                header::RESERVED1,
                1,
                FormatError::ReservedNotZero {
                    offset: header::RESERVED1,
                },
            ),
            set_u8(
                "reserved1 last byte",
                header::RESERVED1 + 3,
                0x80,
                FormatError::ReservedNotZero {
                    offset: header::RESERVED1 + 3,
                },
            ),
            set_u8(
                "reserved2 first byte",
                header::RESERVED2,
                1,
                FormatError::ReservedNotZero {
                    offset: header::RESERVED2,
                },
            ),
            set_u8(
                "reserved2 last byte",
                HEADER_LEN - 1,
                0xFF,
                FormatError::ReservedNotZero {
                    offset: HEADER_LEN - 1,
                },
            ),
        ],
    );
}

/// The config fields of the header: enum codes, ranges, and values that are in range
/// but contradict the rest of the file.
#[test]
fn header_config_field_errors() {
    use header as h;
    let good = model_bytes(DType::I8);
    let l = Layout::of(&good);
    let base = config(DType::I8);
    let count_with = |change: &dyn Fn(&mut Config)| {
        let mut c = base;
        change(&mut c);
        tensor_count(&c) as u32
    };
    // Tensor shapes under a changed config, for the first tensor the change affects.
    let shape_error = |change: &dyn Fn(&mut Config), kind, layer| {
        let mut c = base;
        change(&mut c);
        let index = tensor_index(&base, kind, layer).unwrap();
        FormatError::ShapeMismatch {
            index,
            expected: tensor_spec(&c, index as usize).unwrap().dims,
            found: tensor_spec(&base, index as usize).unwrap().dims,
        }
    };
    let eps_negative = (-1e-12f32).to_bits();
    let eps_inf = f32::INFINITY.to_bits();
    let eps_nan = f32::NAN.to_bits();
    check_cases(
        &good,
        vec![
            set_u8("arch 0", h::ARCH, 0, unknown("arch", 0)),
            set_u8("arch 9", h::ARCH, 9, unknown("arch", 9)),
            set_u8(
                "weight dtype 0",
                h::WEIGHT_DTYPE,
                0,
                unknown("weight_dtype", 0),
            ),
            set_u8(
                "weight dtype 77",
                h::WEIGHT_DTYPE,
                77,
                unknown("weight_dtype", 77),
            ),
            set_u8(
                "weight dtype i32 (a tensor dtype, not a weight dtype)",
                h::WEIGHT_DTYPE,
                DType::I32 as u8,
                unknown("weight_dtype", DType::I32 as u8),
            ),
            set_u8(
                "weight dtype f32 on an int8 file",
                h::WEIGHT_DTYPE,
                DType::F32 as u8,
                FormatError::TensorCountMismatch {
                    expected: tensor_count(&config(DType::F32)) as u32,
                    found: l.count,
                },
            ),
            set_u8("activation 0", h::ACTIVATION, 0, unknown("activation", 0)),
            set_u8("activation 4", h::ACTIVATION, 4, unknown("activation", 4)),
            set_u8("pooling 0", h::POOLING, 0, unknown("pooling", 0)),
            set_u8("pooling 4", h::POOLING, 4, unknown("pooling", 4)),
            set_u8(
                "pooling mean on a pooler model",
                h::POOLING,
                Pooling::Mean as u8,
                FormatError::TensorCountMismatch {
                    expected: count_with(&|c| c.pooling = Pooling::Mean),
                    found: l.count,
                },
            ),
            set_u32("vocab 0", h::VOCAB_SIZE, 0, out_of_range("vocab_size", 0)),
            set_u32(
                "vocab above the limit",
                h::VOCAB_SIZE,
                limits::MAX_VOCAB + 1,
                out_of_range("vocab_size", limits::MAX_VOCAB + 1),
            ),
            set_u32(
                "vocab differs from the tokenizer",
                h::VOCAB_SIZE,
                11,
                FormatError::VocabMismatch {
                    config: 11,
                    tokenizer: 12,
                },
            ),
            set_u32("hidden 0", h::HIDDEN, 0, out_of_range("hidden", 0)),
            set_u32(
                "hidden above the limit",
                h::HIDDEN,
                limits::MAX_HIDDEN + 1,
                out_of_range("hidden", limits::MAX_HIDDEN + 1),
            ),
            set_u32(
                "hidden in range, tensors of the old size",
                h::HIDDEN,
                16,
                shape_error(&|c| c.hidden = 16, TensorKind::WordEmb, None),
            ),
            set_u32("layers 0", h::LAYERS, 0, out_of_range("layers", 0)),
            set_u32(
                "layers above the limit",
                h::LAYERS,
                limits::MAX_LAYERS + 1,
                out_of_range("layers", limits::MAX_LAYERS + 1),
            ),
            set_u32(
                "one layer more than the directory holds",
                h::LAYERS,
                3,
                FormatError::TensorCountMismatch {
                    expected: count_with(&|c| c.layers = 3),
                    found: l.count,
                },
            ),
            set_u32("heads 0", h::HEADS, 0, out_of_range("heads", 0)),
            set_u32("heads above hidden", h::HEADS, 9, out_of_range("heads", 9)),
            set_u32(
                "heads do not divide hidden",
                h::HEADS,
                3,
                FormatError::HeadsDoNotDivideHidden {
                    hidden: 8,
                    heads: 3,
                },
            ),
            case(
                "head dim above the limit",
                out_of_range("head_dim", 2 * limits::MAX_HEAD_DIM),
                |b| {
                    put_u32(b, h::HIDDEN, 2 * limits::MAX_HEAD_DIM);
                    put_u32(b, h::HEADS, 1);
                },
            ),
            set_u32("ffn 0", h::FFN, 0, out_of_range("ffn", 0)),
            set_u32(
                "ffn above the limit",
                h::FFN,
                limits::MAX_FFN + 1,
                out_of_range("ffn", limits::MAX_FFN + 1),
            ),
            set_u32(
                "ffn in range, tensors of the old size",
                h::FFN,
                32,
                shape_error(&|c| c.ffn = 32, TensorKind::Ffn1W, Some(0)),
            ),
            set_u32(
                "max positions 1",
                h::MAX_POSITIONS,
                1,
                out_of_range("max_positions", 1),
            ),
            set_u32(
                "max positions above the limit",
                h::MAX_POSITIONS,
                limits::MAX_POSITIONS + 1,
                out_of_range("max_positions", limits::MAX_POSITIONS + 1),
            ),
            set_u32(
                "max positions below max seq",
                h::MAX_POSITIONS,
                7,
                out_of_range("max_seq", 8),
            ),
            set_u32(
                "type vocab 0",
                h::TYPE_VOCAB,
                0,
                out_of_range("type_vocab", 0),
            ),
            set_u32(
                "type vocab above the limit",
                h::TYPE_VOCAB,
                limits::MAX_TYPE_VOCAB + 1,
                out_of_range("type_vocab", limits::MAX_TYPE_VOCAB + 1),
            ),
            set_u32(
                "labels above the limit",
                h::NUM_LABELS,
                limits::MAX_LABELS + 1,
                out_of_range("num_labels", limits::MAX_LABELS + 1),
            ),
            set_u32(
                "labels 0: no classifier tensors expected",
                h::NUM_LABELS,
                0,
                FormatError::TensorCountMismatch {
                    expected: count_with(&|c| c.num_labels = 0),
                    found: l.count,
                },
            ),
            set_u32(
                "labels 3: the section has 2",
                h::NUM_LABELS,
                3,
                FormatError::BadLabels { index: 2 },
            ),
            set_u32("max seq 1", h::MAX_SEQ, 1, out_of_range("max_seq", 1)),
            set_u32(
                "max seq above max positions",
                h::MAX_SEQ,
                9,
                out_of_range("max_seq", 9),
            ),
            set_u32(
                "eps 0",
                h::LAYER_NORM_EPS,
                0,
                out_of_range("layer_norm_eps", 0),
            ),
            set_u32(
                "eps negative",
                h::LAYER_NORM_EPS,
                eps_negative,
                out_of_range("layer_norm_eps", eps_negative),
            ),
            set_u32(
                "eps infinite",
                h::LAYER_NORM_EPS,
                eps_inf,
                out_of_range("layer_norm_eps", eps_inf),
            ),
            set_u32(
                "eps NaN",
                h::LAYER_NORM_EPS,
                eps_nan,
                out_of_range("layer_norm_eps", eps_nan),
            ),
        ],
    );
}

/// An f16 file relabelled f32: same tensor list, wrong element type.
#[test]
fn weight_dtype_change_is_a_tensor_dtype_mismatch() {
    let good = model_bytes(DType::F16);
    check_cases(
        &good,
        vec![set_u8(
            "weight dtype f32 on an f16 file",
            header::WEIGHT_DTYPE,
            DType::F32 as u8,
            FormatError::TensorDTypeMismatch {
                index: 0,
                expected: DType::F32 as u8,
                found: DType::F16 as u8,
            },
        )],
    );
}

/// The section offsets and lengths of the header: each region in bounds (with
/// overflow-checked arithmetic), after the previous one, aligned.
#[test]
fn region_errors() {
    use header as h;
    let good = model_bytes(DType::I8);
    let l = Layout::of(&good);
    let first_tensor = l.tensor_offset(&good, 0);
    let dir_len = l.dir_end - l.dir_offset;
    let tok_end = l.tok_offset + l.tok_len;
    let lab_end = l.lab_offset + l.lab_len;
    let out_of_bounds = |region, offset, len| FormatError::OutOfBounds {
        region,
        offset,
        len,
        file_len: l.file_len,
    };
    let overlap = |region, offset, previous_end| FormatError::Overlap {
        region,
        offset,
        previous_end,
    };
    let misaligned = |region, offset, align| FormatError::Misaligned {
        region,
        offset,
        align,
    };
    check_cases(
        &good,
        vec![
            set_u32(
                "directory past the end",
                h::DIR_OFFSET,
                l.file_len - 8,
                out_of_bounds("directory", l.file_len - 8, dir_len),
            ),
            set_u32(
                "directory offset + length overflows u32",
                h::DIR_OFFSET,
                u32::MAX - 8,
                out_of_bounds("directory", u32::MAX - 8, dir_len),
            ),
            set_u32(
                "directory overlaps the header",
                h::DIR_OFFSET,
                64,
                overlap("directory", 64, HEADER_LEN as u32),
            ),
            set_u32(
                "directory misaligned",
                h::DIR_OFFSET,
                HEADER_LEN as u32 + 2,
                misaligned("directory", HEADER_LEN as u32 + 2, 4),
            ),
            set_u32(
                "tokenizer offset overflows",
                h::TOKENIZER_OFFSET,
                u32::MAX,
                out_of_bounds("tokenizer", u32::MAX, l.tok_len),
            ),
            set_u32(
                "tokenizer length past the end",
                h::TOKENIZER_LEN,
                l.file_len,
                out_of_bounds("tokenizer", l.tok_offset, l.file_len),
            ),
            set_u32(
                "tokenizer overlaps the directory",
                h::TOKENIZER_OFFSET,
                l.dir_end - 4,
                overlap("tokenizer", l.dir_end - 4, l.dir_end),
            ),
            set_u32(
                "tokenizer misaligned",
                h::TOKENIZER_OFFSET,
                l.tok_offset + 1,
                misaligned("tokenizer", l.tok_offset + 1, 4),
            ),
            set_u32(
                "labels offset overflows",
                h::LABELS_OFFSET,
                u32::MAX,
                out_of_bounds("labels", u32::MAX, l.lab_len),
            ),
            set_u32(
                "labels length overflows",
                h::LABELS_LEN,
                u32::MAX,
                out_of_bounds("labels", l.lab_offset, u32::MAX),
            ),
            set_u32(
                "labels before the tokenizer",
                h::LABELS_OFFSET,
                HEADER_LEN as u32,
                overlap("labels", HEADER_LEN as u32, tok_end),
            ),
            set_u32(
                "tokenizer runs into the labels",
                h::TOKENIZER_LEN,
                l.tok_len + 4,
                overlap("labels", l.lab_offset, tok_end + 4),
            ),
            set_u32(
                "labels misaligned",
                h::LABELS_OFFSET,
                l.lab_offset + 1,
                misaligned("labels", l.lab_offset + 1, 4),
            ),
            set_u32(
                "labels run into the first tensor",
                h::LABELS_LEN,
                first_tensor + 16 - l.lab_offset,
                overlap("tensor", first_tensor, first_tensor + 16),
            ),
            set_u32(
                "first tensor inside the labels",
                entry(0) + dir::OFFSET,
                l.lab_offset,
                overlap("tensor", l.lab_offset, lab_end),
            ),
        ],
    );
}

/// Each field of a directory entry, against the canonical tensor list.
#[test]
fn directory_entry_errors() {
    let good = model_bytes(DType::I8);
    let l = Layout::of(&good);
    let base = config(DType::I8);
    let spec = |i: usize| tensor_spec(&base, i).unwrap();
    // Entry 1 is model-level (the word-embedding requant table of an int8 model);
    // `first_layer` is the first tensor of layer 0.
    let e = 1usize;
    let at = entry(e);
    let s = spec(e);
    assert_eq!(s.layer, None);
    let first_layer = tensor_index(&base, TensorKind::QueryW, Some(0)).unwrap() as usize;
    assert_eq!(spec(first_layer).layer, Some(0));
    let index = e as u32;
    let next_kind = spec(e + 1).kind as u16;
    let offset = l.tensor_offset(&good, e);
    let previous = l.tensor_offset(&good, e - 1);
    let previous_end = previous + spec(e - 1).byte_len() as u32;
    let other_dtype = if s.dtype == DType::F32 {
        DType::I8
    } else {
        DType::F32
    };
    let unexpected =
        |index, expected: TensorKind, kind: u16, layer: u16| FormatError::UnexpectedTensor {
            index,
            expected_kind: expected as u16,
            found_kind: kind,
            found_layer: layer,
        };
    let shape = |found| FormatError::ShapeMismatch {
        index,
        expected: s.dims,
        found,
    };
    let reserved = |offset| FormatError::ReservedNotZero { offset };
    let kind_code =
        |b: &mut [u8], at: usize, v: u16| b[at..at + 2].copy_from_slice(&v.to_le_bytes());
    check_cases(
        &good,
        vec![
            case(
                "unknown kind",
                unexpected(index, s.kind, 99, MODEL_LEVEL),
                move |b| kind_code(b, at + dir::KIND, 99),
            ),
            case(
                "known kind in the wrong place",
                unexpected(index, s.kind, next_kind, MODEL_LEVEL),
                move |b| kind_code(b, at + dir::KIND, next_kind),
            ),
            case(
                "model-level tensor given a layer",
                unexpected(index, s.kind, s.kind as u16, 0),
                move |b| kind_code(b, at + dir::LAYER, 0),
            ),
            case(
                "layer 0 tensor given layer 1",
                unexpected(
                    first_layer as u32,
                    spec(first_layer).kind,
                    spec(first_layer).kind as u16,
                    1,
                ),
                move |b| kind_code(b, entry(first_layer) + dir::LAYER, 1),
            ),
            set_u8("unknown dtype", at + dir::DTYPE, 200, unknown("dtype", 200)),
            set_u8("dtype 0", at + dir::DTYPE, 0, unknown("dtype", 0)),
            set_u8(
                "wrong dtype",
                at + dir::DTYPE,
                other_dtype as u8,
                FormatError::TensorDTypeMismatch {
                    index,
                    expected: s.dtype as u8,
                    found: other_dtype as u8,
                },
            ),
            set_u8("rank 3", at + dir::RANK, 3, shape([3, 0])),
            set_u8("rank 0", at + dir::RANK, 0, shape([0, 0])),
            set_u8(
                "reserved0",
                at + dir::RESERVED0,
                1,
                reserved(at + dir::RESERVED0),
            ),
            set_u8(
                "reserved0 last byte",
                at + dir::RESERVED0 + 1,
                1,
                reserved(at + dir::RESERVED0 + 1),
            ),
            set_u8(
                "reserved1",
                at + dir::RESERVED1,
                1,
                reserved(at + dir::RESERVED1),
            ),
            set_u8(
                "reserved1 last byte",
                at + DIR_ENTRY_LEN - 1,
                0x80,
                reserved(at + DIR_ENTRY_LEN - 1),
            ),
            set_u32(
                "dim0",
                at + dir::DIM0,
                s.dims[0] + 1,
                shape([s.dims[0] + 1, s.dims[1]]),
            ),
            set_u32(
                "dim1",
                at + dir::DIM1,
                s.dims[1] + 1,
                shape([s.dims[0], s.dims[1] + 1]),
            ),
            set_u32(
                "byte length",
                at + dir::LEN,
                3,
                FormatError::ByteLengthMismatch {
                    index,
                    expected: s.byte_len() as u32,
                    found: 3,
                },
            ),
            set_u32(
                "offset past the end",
                at + dir::OFFSET,
                1 << 30,
                FormatError::OutOfBounds {
                    region: "tensor",
                    offset: 1 << 30,
                    len: s.byte_len() as u32,
                    file_len: l.file_len,
                },
            ),
            set_u32(
                "offset + length overflows u32",
                at + dir::OFFSET,
                u32::MAX - 15,
                FormatError::OutOfBounds {
                    region: "tensor",
                    offset: u32::MAX - 15,
                    len: s.byte_len() as u32,
                    file_len: l.file_len,
                },
            ),
            set_u32(
                "overlaps the previous tensor",
                at + dir::OFFSET,
                previous,
                FormatError::Overlap {
                    region: "tensor",
                    offset: previous,
                    previous_end,
                },
            ),
            set_u32(
                "misaligned",
                at + dir::OFFSET,
                offset + 4,
                FormatError::Misaligned {
                    region: "tensor",
                    offset: offset + 4,
                    align: ALIGN as u32,
                },
            ),
        ],
    );
}

/// Requantization pairs `(multiplier, shift)`: multiplier in `[0, 2^31)`, shift in
/// `[-31, 30]`, in every `*Rq` table and in the score-to-exponent pair of the layer
/// scalars; the bounds themselves are accepted.
#[test]
fn requant_range_errors() {
    let good = model_bytes(DType::I8);
    let l = Layout::of(&good);
    let base = config(DType::I8);
    let word_rq = tensor_index(&base, TensorKind::WordRq, None).unwrap();
    let ctx_rq_last = tensor_index(&base, TensorKind::CtxRq, Some(1)).unwrap();
    let scalars = tensor_index(&base, TensorKind::LayerScalars, Some(1)).unwrap();
    let word_rq_at = l.tensor_offset(&good, word_rq as usize) as usize;
    let ctx_rq_at = l.tensor_offset(&good, ctx_rq_last as usize) as usize;
    let ctx_pairs = tensor_spec(&base, ctx_rq_last as usize).unwrap().byte_len() as u32 / 8;
    let scalars_at = l.tensor_offset(&good, scalars as usize) as usize;
    let score = 4 * scalar::SCORE_TO_LOG2;
    let bad = |index, element| FormatError::BadQuantParam { index, element };
    // (multiplier, shift) written over pair `element` of the tensor at `at`.
    let pair = |name: &str, at: usize, element: u32, m: i32, s: i32, expected| {
        case(name, expected, move |b| {
            let at = at + 8 * element as usize;
            put_u32(b, at, m as u32);
            put_u32(b, at + 4, s as u32);
        })
    };
    check_cases(
        &good,
        vec![
            pair("shift 31", word_rq_at, 0, 1 << 30, 31, bad(word_rq, 0)),
            pair("shift -32", word_rq_at, 0, 1 << 30, -32, bad(word_rq, 0)),
            pair(
                "shift i32::MIN",
                word_rq_at,
                0,
                1 << 30,
                i32::MIN,
                bad(word_rq, 0),
            ),
            pair("negative multiplier", word_rq_at, 0, -1, 0, bad(word_rq, 0)),
            pair(
                "a later element",
                word_rq_at,
                5,
                1 << 30,
                40,
                bad(word_rq, 5),
            ),
            pair(
                "last element of the last layer's context requant",
                ctx_rq_at,
                ctx_pairs - 1,
                i32::MIN,
                0,
                bad(ctx_rq_last, ctx_pairs - 1),
            ),
            case(
                "score-to-exponent multiplier negative",
                bad(scalars, scalar::SCORE_TO_LOG2 as u32),
                move |b| put_u32(b, scalars_at + score, -5i32 as u32),
            ),
            case(
                "score-to-exponent shift 31",
                bad(scalars, scalar::SCORE_TO_LOG2 as u32),
                move |b| put_u32(b, scalars_at + score + 4, 31),
            ),
            case(
                "score-to-exponent shift i32::MIN",
                bad(scalars, scalar::SCORE_TO_LOG2 as u32),
                move |b| put_u32(b, scalars_at + score + 4, i32::MIN as u32),
            ),
        ],
    );
    // The bounds of the range are valid.
    for (m, s) in [(i32::MAX, 30), (0, -31), (1, 30)] {
        let mut ok = good.clone();
        for at in [word_rq_at + 8, ctx_rq_at, scalars_at + score] {
            put_u32(&mut ok, at, m as u32);
            put_u32(&mut ok, at + 4, s as u32);
        }
        restamp_crc(&mut ok);
        assert_eq!(load(&ok), Ok(()), "({m}, {s})");
    }
}

/// The labels section: `u32 count`, `count + 1` offsets from the section start, the
/// first just after the table, non-decreasing, within the section; UTF-8 names.
#[test]
fn labels_section_errors() {
    let good = model_bytes(DType::I8);
    let l = Layout::of(&good);
    let lab = l.lab_offset as usize;
    // Two labels: table of 4 words, then "negative" (16..24) and "positive" (24..32).
    assert_eq!(get_u32(&good, lab + 4), 16);
    assert_eq!(l.lab_len, 32);
    let bad = |index| FormatError::BadLabels { index };
    check_cases(
        &good,
        vec![
            set_u32("count differs from the header", lab, 3, bad(3)),
            set_u32("first offset not after the table", lab + 4, 12, bad(0)),
            set_u32("first end past the section", lab + 8, 1000, bad(0)),
            set_u32("offsets decrease", lab + 12, 20, bad(1)),
            set_u32("last end past the section", lab + 12, 33, bad(1)),
            set_u8("first name not UTF-8", lab + 16, 0xFF, bad(0)),
            set_u8("second name not UTF-8", lab + 31, 0xC3, bad(1)),
            set_u32(
                "section too short for its table",
                header::LABELS_LEN,
                8,
                bad(0),
            ),
        ],
    );
}

/// The tokenizer section is validated as part of the file (its own tests cover every
/// tokenizer error; here each reaches the reader wrapped in `FormatError::Tokenizer`).
#[test]
fn tokenizer_section_errors() {
    let good = model_bytes(DType::I8);
    let l = Layout::of(&good);
    let tok = l.tok_offset as usize;
    let vocab_size = VOCAB.len() as u32;
    let flags = get_u32(&good, tok + 8);
    let tokenizer = FormatError::Tokenizer;
    // Layout (see `tinyformer::tokenizer`): 44-byte header, 5 added ids, 13 offsets,
    // 12 index entries, then the strings; 46 string bytes padded to 48.
    let index_at = tok + 44 + 4 * 5 + 4 * 13;
    let strings_at = index_at + 4 * 12;
    assert_eq!(l.tok_len as usize, strings_at + 48 - tok);
    check_cases(
        &good,
        vec![
            set_u8(
                "magic",
                tok,
                b'X',
                tokenizer(TokenizerError::BadMagic { found: *b"XFTK" }),
            ),
            set_u32(
                "version",
                tok + 4,
                2,
                tokenizer(TokenizerError::UnsupportedVersion { version: 2 }),
            ),
            set_u32(
                "unknown flag",
                tok + 8,
                flags | 1 << 4,
                tokenizer(TokenizerError::UnknownFlags {
                    flags: flags | 1 << 4,
                }),
            ),
            set_u32(
                "unk id out of range",
                tok + 16,
                vocab_size,
                tokenizer(TokenizerError::SpecialIdOutOfRange {
                    which: SpecialToken::Unk,
                    id: vocab_size,
                    vocab_size,
                }),
            ),
            set_u32(
                "max word chars 0",
                tok + 32,
                0,
                tokenizer(TokenizerError::MaxWordChars {
                    value: 0,
                    limit: MAX_WORD_CHARS_LIMIT,
                }),
            ),
            set_u32(
                "too many added tokens",
                tok + 36,
                MAX_ADDED_TOKENS + 1,
                tokenizer(TokenizerError::TooManyAddedTokens {
                    count: MAX_ADDED_TOKENS + 1,
                    limit: MAX_ADDED_TOKENS,
                }),
            ),
            case(
                "index not sorted",
                tokenizer(TokenizerError::IndexNotSorted { position: 1 }),
                move |b| {
                    let (first, second) = (get_u32(b, index_at), get_u32(b, index_at + 4));
                    put_u32(b, index_at, second);
                    put_u32(b, index_at + 4, first);
                },
            ),
            set_u8(
                "token not UTF-8",
                strings_at,
                0xFF,
                tokenizer(TokenizerError::TokenNotUtf8 { id: 0 }),
            ),
            set_u8(
                "padding not zero",
                strings_at + 47,
                1,
                tokenizer(TokenizerError::NonZeroPadding {
                    offset: strings_at + 47 - tok,
                }),
            ),
            set_u32(
                "section shorter than its header implies",
                header::TOKENIZER_LEN,
                l.tok_len - 4,
                tokenizer(TokenizerError::LengthMismatch {
                    expected: l.tok_len as usize,
                    len: l.tok_len as usize - 4,
                }),
            ),
        ],
    );
}

#[test]
fn misaligned_buffer_is_refused() {
    let bytes = model_bytes(DType::F32);
    let mut shifted = vec![0u8; bytes.len() + 16];
    let base = shifted.as_ptr() as usize;
    let start = (16 - base % 16) % 16 + 1;
    shifted[start..start + bytes.len()].copy_from_slice(&bytes);
    let err = ModelFile::from_bytes(&shifted[start..start + bytes.len()]).unwrap_err();
    assert_eq!(err, FormatError::BufferMisaligned { addr_mod: 1 });
}

#[test]
fn writer_refuses_missing_or_mis_sized_tensors() {
    let config = config(DType::F32);
    let section = encode_section(&VOCAB, &TokenizerConfig::bert_uncased()).unwrap();
    let err = write_model(&config, &section, &["a", "b"], &[]).unwrap_err();
    assert_eq!(
        err,
        FormatError::MissingTensor {
            kind: TensorKind::WordEmb as u16,
            layer: MODEL_LEVEL
        }
    );
    let err = write_model(&config, &section, &["a"], &[]).unwrap_err();
    assert_eq!(err, FormatError::BadLabels { index: 1 });
    let short = [0u8; 4];
    let tensors = [TensorData {
        kind: TensorKind::WordEmb,
        layer: None,
        bytes: &short,
    }];
    let err = write_model(&config, &section, &["a", "b"], &tensors).unwrap_err();
    assert_eq!(
        err,
        FormatError::ByteLengthMismatch {
            index: 0,
            expected: tensor_spec(&config, 0).unwrap().byte_len() as u32,
            found: 4
        }
    );
}

/// A model file with a two-case self-test section (arbitrary expected values: only
/// the layout is under test here; `tools/tests/runtime.rs` runs real ones).
fn with_self_test_bytes() -> (Vec<u8>, Vec<u8>) {
    use tinyformer::format::self_test::encode_section;
    let good = model_bytes(DType::I8);
    let cases: [(&[u32], &[i32]); 2] = [(&[2, 4, 3], &[1, -2]), (&[2, 6, 8, 9, 3], &[3, 4])];
    let section = encode_section(2, &cases);
    let with = tinyformer::format::writer::with_self_test(&good, &section).unwrap();
    (good, with)
}

#[test]
fn self_test_section_round_trip_and_old_files_load() {
    let (good, with) = with_self_test_bytes();
    // A file without the section (zeros at 112..120) has no cases.
    assert_eq!(get_u32(&good, header::SELF_TEST_OFFSET), 0);
    let buf = AlignedBuf::from_bytes(&good);
    assert_eq!(
        ModelFile::from_bytes(buf.as_bytes())
            .unwrap()
            .self_test_cases()
            .count(),
        0
    );
    let buf = AlignedBuf::from_bytes(&with);
    let file = ModelFile::from_bytes(buf.as_bytes()).unwrap();
    let cases: Vec<_> = file.self_test_cases().collect();
    assert_eq!(cases.len(), 2);
    assert_eq!(
        (cases[0].ids, cases[0].expected),
        (&[2, 4, 3][..], &[1, -2][..])
    );
    assert_eq!(
        (cases[1].ids, cases[1].expected),
        (&[2, 6, 8, 9, 3][..], &[3, 4][..])
    );
    // Only the header, the directory offsets and the inserted section differ: the
    // tensors moved by a multiple of 16 and are byte-identical.
    let shift = with.len() - good.len();
    assert_eq!(shift % ALIGN, 0);
    let first = get_u32(&good, entry(0) + dir::OFFSET) as usize;
    assert_eq!(&with[first + shift..], &good[first..]);
    let l = Layout::of(&good);
    assert_eq!(
        get_u32(&with, header::SELF_TEST_OFFSET),
        l.lab_offset + l.lab_len
    );
    // Adding a second section is refused.
    let again = tinyformer::format::writer::with_self_test(&with, &[0; 12]);
    assert!(matches!(again, Err(FormatError::BadSelfTest { .. })));
}

#[test]
fn self_test_section_errors() {
    let (_, good) = with_self_test_bytes();
    let st = get_u32(&good, header::SELF_TEST_OFFSET) as usize;
    let len = get_u32(&good, header::SELF_TEST_LEN);
    // Case 0 starts at st + 12: token_count, 3 ids, 2 outputs; case 1 at st + 36.
    let bad = |field, case, value| FormatError::BadSelfTest { field, case, value };
    let first_tensor = get_u32(&good, entry(0) + dir::OFFSET);
    check_cases(
        &good,
        vec![
            set_u32("kind", st, 2, bad("kind", 0, 2)),
            set_u32("no cases", st + 4, 0, bad("case_count", 0, 0)),
            set_u32("too many cases", st + 4, 65, bad("case_count", 0, 65)),
            set_u32("more cases than bytes", st + 4, 3, bad("length", 2, len)),
            set_u32("output_len", st + 8, 3, bad("output_len", 0, 3)),
            set_u32("empty case", st + 12, 0, bad("token_count", 0, 0)),
            set_u32(
                "case longer than max_seq",
                st + 36,
                9,
                bad("token_count", 1, 9),
            ),
            set_u32("id not below vocab", st + 20, 12, bad("token id", 0, 12)),
            set_u32("case past the section", st + 36, 8, bad("length", 1, len)),
            set_u32(
                "trailing bytes",
                header::SELF_TEST_LEN,
                len + 4,
                bad("length", 2, len + 4),
            ),
            set_u32(
                "section too short for its preamble",
                header::SELF_TEST_LEN,
                8,
                bad("length", 0, 8),
            ),
            set_u32(
                "offset without a length",
                header::SELF_TEST_LEN,
                0,
                bad("length", 0, 0),
            ),
            set_u32(
                "section overlaps the labels",
                header::SELF_TEST_OFFSET,
                st as u32 - 4,
                FormatError::Overlap {
                    region: "self_test",
                    offset: st as u32 - 4,
                    previous_end: st as u32,
                },
            ),
            set_u32(
                "section misaligned",
                header::SELF_TEST_OFFSET,
                st as u32 + 2,
                FormatError::Misaligned {
                    region: "self_test",
                    offset: st as u32 + 2,
                    align: 4,
                },
            ),
            set_u32(
                "section longer than its cases, up to the tensors",
                header::SELF_TEST_LEN,
                first_tensor - st as u32 + 4,
                // The section's own check comes first: a length reaching into the
                // tensors is not filled exactly by the cases.
                bad("length", 2, first_tensor - st as u32 + 4),
            ),
        ],
    );
    // A float model has no integer outputs to check.
    let float = model_bytes(DType::F32);
    let section = tinyformer::format::self_test::encode_section(2, &[(&[2, 3], &[0, 0])]);
    assert_eq!(
        tinyformer::format::writer::with_self_test(&float, &section),
        Err(bad("kind", 0, 1))
    );
}
