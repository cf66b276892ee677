//! Model files that pass validation, run forward: every call must return Ok or an
//! error, never panic, and a well-formed request must succeed.
//!
//! Input: a model file (its header's `file_len` bytes) followed by a request trailer:
//! byte 0 = flags, the rest = text (tokenized by the model's tokenizer) or raw ids.
//! Flags: bit 0 raw ids (u16 LE each, taken modulo `vocab_size + 1`, so the last id is
//! out of range), bit 1 attention mask, bit 2 token types, bit 3 arena one byte short,
//! bit 4 misaligned arena, bit 5 wrong output length, bit 6 the other entry point
//! (`forward` for int8 models, `forward` without observer for float ones), bit 7 an
//! arena for batches of up to `MAX_BATCH_ROWS` (64) token rows (`arena_bytes_batched`).
//! An empty trailer classifies a fixed sentence.
//!
//! The custom mutator (`mutate_model_and_request`) keeps valid models valid most of
//! the time: it mutates a window of one tensor payload, of the tokenizer section or of
//! the header, or the trailer, and repairs the CRC, so the fuzzer spends its time in
//! the forward pass rather than on checksum failures.
#![no_main]

use libfuzzer_sys::{fuzz_mutator, fuzz_target};
use tinyformer::model::{Fixed, FixedObserver, Observer, Point};
use tinyformer::{Error, Input, Model};
use tinyformer_fuzz::{aligned, mutate_model_and_request, split_request};

/// Counts observed values; checks that every reported row is non-empty.
struct Count(usize);

impl Observer for Count {
    fn observe(&mut self, _: Point, _: usize, values: &[f32]) {
        self.0 += values.len();
    }
}

impl FixedObserver for Count {
    fn observe(&mut self, _: Point, _: usize, values: Fixed<'_>) {
        self.0 += match values {
            Fixed::I8(v) => v.len(),
            Fixed::I32(v) => v.len(),
        };
    }
}

fn classify(model: &Model<'_>, request: &[u8]) {
    let config = *model.config();
    let max_seq = config.max_seq as usize;
    let (flags, body) = match request {
        [] => (0, &b"a gorgeous, witty, seductive movie"[..]),
        [flags, body @ ..] => (*flags, body),
    };
    let ids: Vec<u32> = if flags & 1 != 0 {
        body.chunks_exact(2)
            .take(max_seq + 1)
            .map(|b| u32::from(u16::from_le_bytes([b[0], b[1]])) % (config.vocab_size + 1))
            .collect()
    } else {
        let mut ids = vec![0u32; max_seq];
        match model.tokenizer().encode(body, &mut ids) {
            Ok(enc) => ids.truncate(enc.len),
            Err(_) => return,
        }
        ids
    };
    let mask: Vec<u8> = ids.iter().map(|&id| u8::from(id % 4 != 0)).collect();
    let types: Vec<u32> = ids.iter().map(|&id| id % (config.type_vocab + 1)).collect();
    let input = Input {
        ids: &ids,
        mask: (flags & 2 != 0).then_some(&mask[..]),
        type_ids: (flags & 4 != 0).then_some(&types[..]),
    };
    let well_formed = !ids.is_empty()
        && ids.len() <= max_seq
        && ids.iter().all(|&id| id < config.vocab_size)
        && (input.mask.is_none() || mask.iter().any(|&m| m != 0))
        && (input.type_ids.is_none() || types.iter().all(|&t| t < config.type_vocab))
        && flags & 0x38 == 0;

    let needed = if flags & 128 != 0 {
        model.arena_bytes_batched(ids.len(), tinyformer::model::MAX_BATCH_ROWS)
    } else {
        model.arena_bytes(ids.len())
    }
    .unwrap_or(0);
    let arena_len = if flags & 8 != 0 {
        needed.saturating_sub(1)
    } else {
        needed
    };
    // u32 words: 4-byte aligned, as the arena requires; bit 4 shifts it by one byte.
    let mut words = vec![0u32; arena_len.div_ceil(4) + 1];
    let shift = usize::from(flags & 16 != 0);
    let arena = &mut bytemuck::cast_slice_mut::<u32, u8>(&mut words)[shift..shift + arena_len];
    let out_len = config.output_len() + usize::from(flags & 32 != 0);

    let result: Result<(), Error> = if config.is_int8() {
        let mut out = vec![0i32; out_len];
        if flags & 64 != 0 {
            let mut out = vec![0f32; out_len];
            model.forward(input, arena, &mut out)
        } else {
            let mut count = Count(0);
            model.forward_fixed_observed(input, arena, &mut out, &mut count)
        }
    } else {
        let mut out = vec![0f32; out_len];
        if flags & 64 != 0 {
            model.forward(input, arena, &mut out)
        } else {
            let mut count = Count(0);
            model.forward_observed(input, arena, &mut out, &mut count)
        }
    };
    if well_formed {
        assert_eq!(result, Ok(()), "well-formed request refused");
    } else if let Err(e) = result {
        let _ = e.to_string();
    }
}

fuzz_target!(|data: &[u8]| {
    let (model_bytes, request) = split_request(data);
    let buf = aligned(model_bytes);
    let Ok(model) = Model::from_bytes(buf.as_bytes()) else {
        return;
    };
    classify(&model, request);
});

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    mutate_model_and_request(data, size, max_size, seed)
});
