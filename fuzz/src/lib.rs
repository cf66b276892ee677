//! Helpers shared by the fuzz targets: aligned copies, CRC repair, the request trailer
//! after a model file (`classify`, `generate`) and its custom mutator, and a walk over
//! every accessor of a validated model.

use libfuzzer_sys::fuzzer_mutate;
use tinyformer::format::{header, writer::AlignedBuf, DType, ModelFile, HEADER_LEN};
use tinyformer::rng::XorShift64Star;
use tinyformer::Model;

/// Copies `bytes` to a 16-byte aligned buffer, as the model reader requires.
pub fn aligned(bytes: &[u8]) -> AlignedBuf {
    AlignedBuf::from_bytes(bytes)
}

/// Rewrites the header CRC so that the checksum matches the bytes (no-op on a buffer
/// shorter than the header). Lets mutated files get past the CRC to deeper code.
pub fn fix_crc(bytes: &mut [u8]) {
    if bytes.len() < HEADER_LEN {
        return;
    }
    let crc = tinyformer::format::file_crc32(bytes);
    bytes[header::CRC32..header::CRC32 + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Splits a classify or generate input into the model file (its first `file_len`
/// bytes, as the header says) and the request trailer after it. Without a readable
/// header the whole input is the model and the trailer is empty.
pub fn split_request(data: &[u8]) -> (&[u8], &[u8]) {
    let file_len = data
        .get(header::FILE_LEN..header::FILE_LEN + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    match file_len {
        Some(n) if n >= HEADER_LEN && n <= data.len() => data.split_at(n),
        _ => (data, &[]),
    }
}

/// The custom mutator of the targets whose input is a model file followed by a request
/// trailer ([`split_request`]). It keeps valid model files valid most of the time, so
/// that the fuzzer's time goes into the code behind validation rather than into
/// checksum failures. Out of sixteen mutations: one is libFuzzer's own over the whole
/// input; four mutate the trailer only; the others mutate a window (1 to 64 bytes,
/// length kept) of the header (one), of the tokenizer section (one) or of one tensor
/// payload (nine). Whatever changed in the model part, its CRC is then repaired.
/// Returns the new size, as `fuzz_mutator!` expects.
pub fn mutate_model_and_request(data: &mut [u8], size: usize, max_size: usize, seed: u32) -> usize {
    // The mutator's choices, from the seed libFuzzer passes.
    let mut rng = XorShift64Star::new(u64::from(seed));
    let model_len = split_request(&data[..size]).0.len();
    let model_buf = aligned(&data[..model_len]);
    let (payloads, tokenizer) = match ModelFile::from_bytes(model_buf.as_bytes()) {
        Ok(file) => {
            let payloads: Vec<(usize, usize)> = (0..file.tensor_count())
                .filter_map(|i| file.tensor_info(i))
                .map(|t| (t.offset as usize, t.len as usize))
                .filter(|&(_, len)| len > 0)
                .collect();
            let section = file.tokenizer_section();
            let offset = section.as_ptr() as usize - model_buf.as_bytes().as_ptr() as usize;
            (payloads, (offset, section.len()))
        }
        Err(_) => (Vec::new(), (0, 0)),
    };
    let choice = rng.next_u32() % 16;
    if payloads.is_empty() || choice == 0 {
        // Anything goes, then the CRC of the (new) model part is repaired.
        let new_size = fuzzer_mutate(data, size, max_size);
        let model_len = split_request(&data[..new_size]).0.len();
        fix_crc(&mut data[..model_len]);
        return new_size;
    }
    if choice <= 4 && max_size > model_len {
        // The request trailer (unless the model alone fills `max_size`).
        let trailer = fuzzer_mutate(
            &mut data[model_len..],
            size - model_len,
            max_size.saturating_sub(model_len),
        );
        return model_len + trailer;
    }
    let (offset, len) = match choice {
        5 => (0, HEADER_LEN),
        6 if tokenizer.1 > 0 => tokenizer,
        _ => payloads[rng.next_u32() as usize % payloads.len()],
    };
    // A window of the region, length kept.
    let start = offset + rng.next_u32() as usize % len;
    let window = (offset + len - start).min(1 + rng.next_u32() as usize % 64);
    let mut scratch = data[start..start + window].to_vec();
    let n = fuzzer_mutate(&mut scratch, window, window);
    data[start..start + n].copy_from_slice(&scratch[..n]);
    fix_crc(&mut data[..model_len]);
    size
}

/// Calls every read accessor of a validated model and checks the invariants the
/// validation promises (they are `assert!`s: a failure is a bug the fuzzer reports).
pub fn touch_model(model: &Model<'_>) {
    let file = model.file();
    let config = *model.config();
    let count = file.tensor_count();
    for index in 0..count {
        let info = file.tensor_info(index).expect("validated entry parses");
        let bytes = file.tensor_bytes(info.kind, info.layer);
        assert_eq!(bytes.len(), info.len as usize);
        // Each tensor viewed as its stored element type, the contract of `tensor`
        // (a debug build panics on another type: a caller bug, not bad input). The
        // validated payload is aligned, so the view covers every byte.
        let viewed = match info.dtype {
            DType::F32 => size_of_val(file.tensor::<f32>(info.kind, info.layer)),
            DType::F16 => size_of_val(file.tensor::<u16>(info.kind, info.layer)),
            DType::I8 => size_of_val(file.tensor::<i8>(info.kind, info.layer)),
            DType::I32 => size_of_val(file.tensor::<i32>(info.kind, info.layer)),
        };
        assert_eq!(
            viewed,
            bytes.len(),
            "tensor {:?} {:?}",
            info.kind,
            info.layer
        );
    }
    assert!(file.tensor_info(count).is_none());
    assert!(file.tensor_info(u32::MAX).is_none());
    for index in 0..config.num_labels {
        assert!(file.label(index).is_some(), "label {index}");
    }
    assert!(file.label(config.num_labels).is_none());
    assert!(file.label(u32::MAX).is_none());
    assert!(model.label(usize::MAX).is_none());
    let _ = (
        file.crc32(),
        file.bytes().len(),
        file.tokenizer_section().len(),
    );

    let tokenizer = model.tokenizer();
    let vocab = tokenizer.vocab_size();
    assert_eq!(vocab, config.vocab_size);
    for id in 0..vocab {
        let token = tokenizer.token(id).expect("validated token");
        assert_eq!(tokenizer.token_id(token), Some(id), "token {id} {token:?}");
    }
    assert!(tokenizer.token(vocab).is_none());
    for id in [
        tokenizer.unk_id(),
        tokenizer.cls_id(),
        tokenizer.sep_id(),
        tokenizer.pad_id(),
    ] {
        assert!(id < vocab);
    }
    for id in tokenizer.added_token_ids() {
        assert!(id < vocab);
    }
    let _ = (
        tokenizer.lowercase(),
        tokenizer.strip_accents(),
        tokenizer.chinese_chars(),
        tokenizer.clean_text(),
        tokenizer.max_word_chars(),
        format!("{tokenizer:?}"),
    );

    // The plan is pure arithmetic on the config: every length must give Ok or an error.
    for seq in [
        0,
        1,
        2,
        config.max_seq as usize,
        config.max_seq as usize + 1,
        usize::MAX,
    ] {
        let _ = model.arena_bytes(seq);
    }
}
