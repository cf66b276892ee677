//! Format v1: writer/reader round trip, and every corruption class refused with its
//! own error, without panicking.

use tinyformer::format::writer::{write_model, AlignedBuf, TensorData};
use tinyformer::format::{
    dir, header, scalar, tensor_count, tensor_spec, Activation, Arch, Config, DType, FormatError,
    ModelFile, Pooling, TensorKind, DIR_ENTRY_LEN, HEADER_LEN,
};
use tinyformer::tokenizer::{encode_section, TokenizerConfig};

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

/// A named corruption and the error class it must produce.
type Case = (
    &'static str,
    Box<dyn Fn(&mut Vec<u8>)>,
    fn(&FormatError) -> bool,
);

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

fn entry(index: usize) -> usize {
    HEADER_LEN + index * DIR_ENTRY_LEN
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

#[test]
#[cfg_attr(
    miri,
    ignore = "exhaustive: minutes under Miri; the other format tests cover the same code paths"
)]
fn every_single_byte_change_of_header_and_directory_is_refused() {
    let bytes = model_bytes(DType::I8);
    let count = tensor_count(&config(DType::I8));
    for at in 0..entry(count) {
        for flip in [0x01u8, 0x80, 0xFF] {
            let mut bad = bytes.clone();
            bad[at] ^= flip;
            assert!(load(&bad).is_err(), "byte {at} ^ {flip:#x} was accepted");
        }
    }
}

#[test]
fn payload_corruption_fails_the_checksum() {
    let mut bytes = model_bytes(DType::F32);
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    assert!(matches!(
        load(&bytes),
        Err(FormatError::ChecksumMismatch { .. })
    ));
}

/// Each header field corruption gets its own error class.
#[test]
fn header_field_errors() {
    let good = model_bytes(DType::F16);
    let cases: Vec<Case> = vec![
        ("magic", Box::new(|b| b[0] = b'X'), |e| {
            matches!(e, FormatError::BadMagic { .. })
        }),
        ("newer version", Box::new(|b| b[header::VERSION] = 2), |e| {
            matches!(
                e,
                FormatError::UnsupportedVersion {
                    found: 2,
                    supported: 1
                }
            )
        }),
        (
            "file length",
            Box::new(|b| put_u32(b, header::FILE_LEN, 5)),
            |e| matches!(e, FormatError::LengthMismatch { .. }),
        ),
        ("crc", Box::new(|b| b[header::CRC32] ^= 1), |e| {
            matches!(e, FormatError::ChecksumMismatch { .. })
        }),
        (
            "header length",
            Box::new(|b| put_u32(b, header::HEADER_LEN, 64)),
            |e| {
                matches!(
                    e,
                    FormatError::BadHeaderField {
                        field: "header_len",
                        ..
                    }
                )
            },
        ),
        ("reserved", Box::new(|b| b[100] = 1), |e| {
            matches!(e, FormatError::ReservedNotZero { offset: 100 })
        }),
        ("arch", Box::new(|b| b[header::ARCH] = 9), |e| {
            matches!(
                e,
                FormatError::UnknownCode {
                    field: "arch",
                    code: 9
                }
            )
        }),
        (
            "weight dtype",
            Box::new(|b| b[header::WEIGHT_DTYPE] = 77),
            |e| {
                matches!(
                    e,
                    FormatError::UnknownCode {
                        field: "weight_dtype",
                        code: 77
                    }
                )
            },
        ),
        ("activation", Box::new(|b| b[header::ACTIVATION] = 0), |e| {
            matches!(
                e,
                FormatError::UnknownCode {
                    field: "activation",
                    ..
                }
            )
        }),
        ("pooling", Box::new(|b| b[header::POOLING] = 4), |e| {
            matches!(
                e,
                FormatError::UnknownCode {
                    field: "pooling",
                    ..
                }
            )
        }),
        (
            "hidden",
            Box::new(|b| put_u32(b, header::HIDDEN, 1 << 30)),
            |e| {
                matches!(
                    e,
                    FormatError::ConfigOutOfRange {
                        field: "hidden",
                        ..
                    }
                )
            },
        ),
        ("heads", Box::new(|b| put_u32(b, header::HEADS, 3)), |e| {
            matches!(e, FormatError::HeadsDoNotDivideHidden { .. })
        }),
        (
            "eps",
            Box::new(|b| put_u32(b, header::LAYER_NORM_EPS, f32::NAN.to_bits())),
            |e| {
                matches!(
                    e,
                    FormatError::ConfigOutOfRange {
                        field: "layer_norm_eps",
                        ..
                    }
                )
            },
        ),
        (
            "max_seq",
            Box::new(|b| put_u32(b, header::MAX_SEQ, 9)),
            |e| {
                matches!(
                    e,
                    FormatError::ConfigOutOfRange {
                        field: "max_seq",
                        ..
                    }
                )
            },
        ),
        (
            "tensor count",
            Box::new(|b| put_u32(b, header::TENSOR_COUNT, 3)),
            |e| matches!(e, FormatError::TensorCountMismatch { found: 3, .. }),
        ),
        (
            "directory offset",
            Box::new(|b| put_u32(b, header::DIR_OFFSET, u32::MAX - 8)),
            |e| {
                matches!(
                    e,
                    FormatError::OutOfBounds {
                        region: "directory",
                        ..
                    }
                )
            },
        ),
        (
            "directory overlaps header",
            Box::new(|b| put_u32(b, header::DIR_OFFSET, 64)),
            |e| {
                matches!(
                    e,
                    FormatError::Overlap {
                        region: "directory",
                        ..
                    }
                )
            },
        ),
        (
            "tokenizer offset overflow",
            Box::new(|b| put_u32(b, header::TOKENIZER_OFFSET, u32::MAX)),
            |e| {
                matches!(
                    e,
                    FormatError::OutOfBounds {
                        region: "tokenizer",
                        ..
                    }
                )
            },
        ),
        (
            "tokenizer misaligned",
            Box::new(|b| {
                let off = get_u32(b, header::TOKENIZER_OFFSET);
                put_u32(b, header::TOKENIZER_OFFSET, off + 1);
            }),
            |e| {
                matches!(
                    e,
                    FormatError::Misaligned {
                        region: "tokenizer",
                        ..
                    }
                )
            },
        ),
        (
            "labels before tokenizer",
            Box::new(|b| put_u32(b, header::LABELS_OFFSET, HEADER_LEN as u32)),
            |e| {
                matches!(
                    e,
                    FormatError::Overlap {
                        region: "labels",
                        ..
                    }
                )
            },
        ),
    ];
    for (name, corrupt, check) in cases {
        let mut bad = good.clone();
        corrupt(&mut bad);
        let err = load(&bad).unwrap_err();
        assert!(check(&err), "{name}: got {err:?}");
        // Every error renders a message.
        assert!(!err.to_string().is_empty());
    }
}

/// Directory entry corruptions: offsets out of bounds, overlapping, misaligned,
/// overflowing, unknown dtype, wrong kind or shape.
#[test]
fn directory_entry_errors() {
    let good = model_bytes(DType::I8);
    let e = entry(1);
    let cases: Vec<Case> = vec![
        ("kind", Box::new(move |b| b[e + dir::KIND] = 99), |e| {
            matches!(e, FormatError::UnexpectedTensor { index: 1, .. })
        }),
        ("layer", Box::new(move |b| b[e + dir::LAYER] = 0), |e| {
            matches!(e, FormatError::UnexpectedTensor { index: 1, .. })
        }),
        (
            "unknown dtype",
            Box::new(move |b| b[e + dir::DTYPE] = 200),
            |e| {
                matches!(
                    e,
                    FormatError::UnknownCode {
                        field: "dtype",
                        code: 200
                    }
                )
            },
        ),
        (
            "wrong dtype",
            Box::new(move |b| b[e + dir::DTYPE] = DType::F32 as u8),
            |e| matches!(e, FormatError::TensorDTypeMismatch { index: 1, .. }),
        ),
        (
            "shape",
            Box::new(move |b| put_u32(b, e + dir::DIM0, 13)),
            |e| matches!(e, FormatError::ShapeMismatch { index: 1, .. }),
        ),
        ("rank", Box::new(move |b| b[e + dir::RANK] = 3), |e| {
            matches!(e, FormatError::ShapeMismatch { index: 1, .. })
        }),
        (
            "byte length",
            Box::new(move |b| put_u32(b, e + dir::LEN, 3)),
            |e| matches!(e, FormatError::ByteLengthMismatch { index: 1, .. }),
        ),
        (
            "offset past the end",
            Box::new(move |b| put_u32(b, e + dir::OFFSET, 1 << 30)),
            |e| {
                matches!(
                    e,
                    FormatError::OutOfBounds {
                        region: "tensor",
                        ..
                    }
                )
            },
        ),
        (
            "offset + length overflows u32",
            Box::new(move |b| put_u32(b, e + dir::OFFSET, u32::MAX - 15)),
            |e| {
                matches!(
                    e,
                    FormatError::OutOfBounds {
                        region: "tensor",
                        ..
                    }
                )
            },
        ),
        (
            "overlaps the previous tensor",
            Box::new(move |b| {
                let prev = get_u32(b, entry(0) + dir::OFFSET);
                put_u32(b, e + dir::OFFSET, prev);
            }),
            |e| {
                matches!(
                    e,
                    FormatError::Overlap {
                        region: "tensor",
                        ..
                    }
                )
            },
        ),
        (
            "misaligned",
            Box::new(move |b| {
                let off = get_u32(b, e + dir::OFFSET);
                put_u32(b, e + dir::OFFSET, off + 4);
            }),
            |e| {
                matches!(
                    e,
                    FormatError::Misaligned {
                        region: "tensor",
                        ..
                    }
                )
            },
        ),
        (
            "reserved",
            Box::new(move |b| b[e + dir::RESERVED1] = 1),
            |e| matches!(e, FormatError::ReservedNotZero { .. }),
        ),
        (
            "requant shift out of range",
            Box::new(|b| {
                // Tensor 1 of an int8 model is the word-embedding requant table.
                let off = get_u32(b, entry(1) + dir::OFFSET) as usize;
                put_u32(b, off + 4, 40);
            }),
            |e| {
                matches!(
                    e,
                    FormatError::BadQuantParam {
                        index: 1,
                        element: 0
                    }
                )
            },
        ),
        (
            "score-to-exponent shift out of range",
            Box::new(|b| {
                let config = config(DType::I8);
                let i = (0..tensor_count(&config))
                    .find(|&i| tensor_spec(&config, i).unwrap().kind == TensorKind::LayerScalars)
                    .unwrap();
                let off = get_u32(b, entry(i) + dir::OFFSET) as usize;
                put_u32(b, off + 4 * (scalar::SCORE_TO_LOG2 + 1), i32::MIN as u32);
            }),
            |e| matches!(e, FormatError::BadQuantParam { element: 2, .. }),
        ),
    ];
    for (name, corrupt, check) in cases {
        let mut bad = good.clone();
        corrupt(&mut bad);
        let err = load(&bad).unwrap_err();
        assert!(check(&err), "{name}: got {err:?}");
    }
}

#[test]
fn misaligned_buffer_is_refused() {
    let bytes = model_bytes(DType::F32);
    let mut shifted = vec![0u8; bytes.len() + 16];
    let base = shifted.as_ptr() as usize;
    let start = (16 - base % 16) % 16 + 1;
    shifted[start..start + bytes.len()].copy_from_slice(&bytes);
    let err = ModelFile::from_bytes(&shifted[start..start + bytes.len()]).unwrap_err();
    assert!(
        matches!(err, FormatError::BufferMisaligned { .. }),
        "{err:?}"
    );
}

#[test]
fn writer_refuses_missing_or_mis_sized_tensors() {
    let config = config(DType::F32);
    let section = encode_section(&VOCAB, &TokenizerConfig::bert_uncased()).unwrap();
    let err = write_model(&config, &section, &["a", "b"], &[]).unwrap_err();
    assert!(
        matches!(err, FormatError::MissingTensor { kind: 1, .. }),
        "{err:?}"
    );
    let err = write_model(&config, &section, &["a"], &[]).unwrap_err();
    assert!(matches!(err, FormatError::BadLabels { .. }), "{err:?}");
    let short = [0u8; 4];
    let tensors = [TensorData {
        kind: TensorKind::WordEmb,
        layer: None,
        bytes: &short,
    }];
    let err = write_model(&config, &section, &["a", "b"], &tensors).unwrap_err();
    assert!(
        matches!(err, FormatError::ByteLengthMismatch { index: 0, .. }),
        "{err:?}"
    );
}

#[test]
fn tokenizer_vocab_must_match_config() {
    let mut bytes = model_bytes(DType::F32);
    // vocab_size 12 -> 11: the directory shapes no longer match either, but the
    // tokenizer check comes first.
    put_u32(&mut bytes, header::VOCAB_SIZE, 11);
    let err = load(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            FormatError::VocabMismatch {
                config: 11,
                tokenizer: 12
            }
        ),
        "{err:?}"
    );
}
