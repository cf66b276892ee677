//! Runtime API guarantees: exact arena size, errors as values for every bad input,
//! padding masks, and the fixed-point entry points.

use std::path::Path;
use tinyformer::format::writer::AlignedBuf;
use tinyformer::{Error, Input, Model};
use tinyformer_cli::checkpoint::Checkpoint;
use tinyformer_cli::convert::{convert, Options, Precision};

fn build(name: &str, precision: Precision) -> AlignedBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name);
    let ckpt = Checkpoint::load(&dir).unwrap();
    let calibration: Vec<Vec<u32>> = (0..8u32)
        .map(|i| (2..20 + i).map(|t| t * 13 % 1500 + 5).collect())
        .collect();
    let options = Options {
        precision,
        max_seq: Some(32),
        progress: false,
        compensate: false,
        self_test: 2,
    };
    AlignedBuf::from_bytes(&convert(&ckpt, &options, Some(&calibration)).unwrap())
}

const PRECISIONS: [Precision; 3] = [Precision::F32, Precision::F16, Precision::Int8];

/// An aligned arena of exactly `len` bytes.
fn arena(len: usize) -> Vec<u128> {
    vec![0u128; len.div_ceil(16) + 1]
}

#[test]
fn arena_bytes_is_exact() {
    for precision in PRECISIONS {
        let buf = build("tiny-bert-cls", precision);
        let model = Model::from_bytes(buf.as_bytes()).unwrap();
        for n in [1usize, 2, 7, 32] {
            let ids: Vec<u32> = (0..n as u32).map(|i| i + 5).collect();
            let needed = model.arena_bytes(n).unwrap();
            let mut storage = arena(needed);
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut storage);
            let mut out = vec![0f32; 3];
            model
                .forward(Input::new(&ids), &mut bytes[..needed], &mut out)
                .unwrap();
            let err = model
                .forward(Input::new(&ids), &mut bytes[..needed - 1], &mut out)
                .unwrap_err();
            assert_eq!(
                err,
                Error::ArenaTooSmall {
                    needed,
                    got: needed - 1
                }
            );
            // The plan is the documented table: 4-byte rows first, then activations.
            let plan = model.plan(n).unwrap();
            assert_eq!(plan.total_bytes(), needed);
        }
    }
}

#[test]
fn bad_inputs_are_errors() {
    for precision in PRECISIONS {
        let buf = build("tiny-bert-cls", precision);
        let model = Model::from_bytes(buf.as_bytes()).unwrap();
        let mut storage = arena(model.arena_bytes(32).unwrap());
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut storage);
        let mut out = vec![0f32; 3];
        let long = vec![5u32; 33];
        assert_eq!(
            model
                .forward(Input::new(&long), bytes, &mut out)
                .unwrap_err(),
            Error::SequenceTooLong { max: 32, got: 33 }
        );
        assert_eq!(
            model.forward(Input::new(&[]), bytes, &mut out).unwrap_err(),
            Error::EmptySequence
        );
        assert_eq!(
            model
                .forward(Input::new(&[2, 1536, 3]), bytes, &mut out)
                .unwrap_err(),
            Error::TokenOutOfRange {
                index: 1,
                id: 1536,
                vocab: 1536
            }
        );
        let ids = [2u32, 10, 3];
        let short_mask = [1u8, 1];
        let input = Input {
            ids: &ids,
            mask: Some(&short_mask),
            type_ids: None,
        };
        assert_eq!(
            model.forward(input, bytes, &mut out).unwrap_err(),
            Error::InputLengthMismatch { ids: 3, got: 2 }
        );
        let zero_mask = [0u8; 3];
        let input = Input {
            ids: &ids,
            mask: Some(&zero_mask),
            type_ids: None,
        };
        assert_eq!(
            model.forward(input, bytes, &mut out).unwrap_err(),
            Error::EmptyMask
        );
        let types = [0u32, 2, 0];
        let input = Input {
            ids: &ids,
            mask: None,
            type_ids: Some(&types),
        };
        assert_eq!(
            model.forward(input, bytes, &mut out).unwrap_err(),
            Error::TokenTypeOutOfRange {
                index: 1,
                id: 2,
                type_vocab: 2
            }
        );
        let mut wrong = vec![0f32; 4];
        assert_eq!(
            model
                .forward(Input::new(&ids), bytes, &mut wrong)
                .unwrap_err(),
            Error::OutputLengthMismatch { needed: 3, got: 4 }
        );
        let err = model
            .forward(Input::new(&ids), &mut bytes[1..], &mut out)
            .unwrap_err();
        assert_eq!(err, Error::ArenaMisaligned { align: 4 });
        let mut fixed = vec![0i32; 3];
        let fixed_result = model.forward_fixed(Input::new(&ids), bytes, &mut fixed);
        if precision == Precision::Int8 {
            fixed_result.unwrap();
        } else {
            assert_eq!(fixed_result.unwrap_err(), Error::NotQuantized);
        }
    }
}

/// Padding with mask 0 changes nothing: same logits (CLS pooler) and same mean-pooled
/// embedding as the unpadded sequence, bit for bit.
#[test]
fn padding_mask_is_exact() {
    for (name, out_len) in [("tiny-bert-cls", 3), ("tiny-bert-mean", 64)] {
        for precision in PRECISIONS {
            let buf = build(name, precision);
            let model = Model::from_bytes(buf.as_bytes()).unwrap();
            let ids = [2u32, 200, 300, 400, 3];
            let padded = [2u32, 200, 300, 400, 3, 0, 0, 0];
            let mask = [1u8, 1, 1, 1, 1, 0, 0, 0];
            let mut storage = arena(model.arena_bytes(8).unwrap());
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut storage);
            let mut plain = vec![0f32; out_len];
            let mut masked = vec![0f32; out_len];
            model.forward(Input::new(&ids), bytes, &mut plain).unwrap();
            let input = Input {
                ids: &padded,
                mask: Some(&mask),
                type_ids: None,
            };
            model.forward(input, bytes, &mut masked).unwrap();
            assert_eq!(plain, masked, "{name} {precision:?}");
        }
    }
}

/// The int8 forward pass is deterministic and its f32 output is the Q16 output / 2^16.
#[test]
fn fixed_and_float_outputs_agree() {
    let buf = build("tiny-bert-cls", Precision::Int8);
    let model = Model::from_bytes(buf.as_bytes()).unwrap();
    let ids = [2u32, 17, 99, 3];
    let mut storage = arena(model.arena_bytes(4).unwrap());
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut storage);
    let mut fixed = [0i32; 3];
    let mut float = [0f32; 3];
    model
        .forward_fixed(Input::new(&ids), bytes, &mut fixed)
        .unwrap();
    model.forward(Input::new(&ids), bytes, &mut float).unwrap();
    for (q, f) in fixed.iter().zip(float) {
        assert_eq!(*q as f32 / 65536.0, f);
    }
    let mut probs = fixed;
    tinyformer::model::probabilities_q15(&mut probs);
    let sum: i32 = probs.iter().sum();
    assert!((sum - 32768).abs() <= 3, "{probs:?}");
}

/// The converter's self-test section: the int8 file reruns its golden cases and
/// matches; a changed expected value (CRC re-stamped, so only the self-test can tell)
/// is reported as the first mismatch; a short arena and a file without the section
/// are errors, not panics.
#[test]
fn self_test_passes_and_reports_the_first_mismatch() {
    let buf = build("tiny-bert-cls", Precision::Int8);
    let model = Model::from_bytes(buf.as_bytes()).unwrap();
    let cases: Vec<_> = model.file().self_test_cases().collect();
    assert_eq!(cases.len(), 2, "Options::self_test = 2");
    let needed = model.self_test_arena_bytes().unwrap();
    let mut storage = arena(needed);
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut storage);
    model.self_test(&mut bytes[..needed]).unwrap();
    assert_eq!(
        model.self_test(&mut bytes[..needed - 1]),
        Err(Error::ArenaTooSmall {
            needed,
            got: needed - 1
        })
    );

    // Case 1, output 2 changed by one unit.
    let expected = cases[1].expected[2];
    let at = cases[1].expected[2..].as_ptr() as usize - buf.as_bytes().as_ptr() as usize;
    let mut bad = buf.as_bytes().to_vec();
    bad[at..at + 4].copy_from_slice(&(expected + 1).to_le_bytes());
    let crc = tinyformer::format::file_crc32(&bad);
    let crc_at = tinyformer::format::header::CRC32;
    bad[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
    let bad = AlignedBuf::from_bytes(&bad);
    let model = Model::from_bytes(bad.as_bytes()).unwrap();
    assert_eq!(
        model.self_test(&mut bytes[..needed]),
        Err(Error::SelfTestMismatch {
            case: 1,
            index: 2,
            expected: expected + 1,
            got: expected
        })
    );

    // Float files and `--self-test 0` carry no section.
    let float = build("tiny-bert-cls", Precision::F32);
    let model = Model::from_bytes(float.as_bytes()).unwrap();
    assert_eq!(model.self_test(bytes), Err(Error::NoSelfTest));
}
