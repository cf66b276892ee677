//! The converter's checkpoint reading (`config.json`, `model.safetensors`, vocabulary,
//! tokenizer and pooling configs) on arbitrary bytes: Ok or an error, never a panic or
//! an allocation the input does not pay for. A checkpoint that loads is also converted
//! to a float model file, which must then validate.
//!
//! Input: byte 0 = flags (bit 0 vocabulary is `tokenizer.json` rather than
//! `vocab.txt`, bit 1 a `tokenizer_config.json` is present, bit 2 a pooling config is
//! present, bit 3 convert to f16), then length-prefixed parts (u32 LE length, clamped
//! to what is left): `config.json`, vocabulary, `tokenizer_config.json` (if bit 1),
//! pooling config (if bit 2); the rest is `model.safetensors`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinyformer_cli::checkpoint::{Checkpoint, Parts, VocabSource};

fn take<'a>(rest: &mut &'a [u8]) -> &'a [u8] {
    let len = rest
        .get(..4)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let body = rest.get(4..).unwrap_or(&[]);
    let (part, tail) = body.split_at(len.min(body.len()));
    *rest = tail;
    part
}

fuzz_target!(|data: &[u8]| {
    let [flags, rest @ ..] = data else {
        return;
    };
    let mut rest: &[u8] = rest;
    let config_json = take(&mut rest);
    let vocab = take(&mut rest);
    let tokenizer_config = (flags & 2 != 0).then(|| take(&mut rest));
    let pooling_config = (flags & 4 != 0).then(|| take(&mut rest));
    let parts = Parts {
        config_json,
        safetensors: rest,
        vocab: if flags & 1 != 0 {
            VocabSource::TokenizerJson(vocab)
        } else {
            VocabSource::Txt(vocab)
        },
        tokenizer_config,
        pooling_config,
    };
    let ckpt = match Checkpoint::from_parts(&parts) {
        Ok(ckpt) => ckpt,
        Err(e) => {
            let _ = format!("{e:#}");
            return;
        }
    };
    match tinyformer_cli::convert::convert_float(&ckpt, flags & 8 != 0, None) {
        Ok(bytes) => {
            let buf = tinyformer::format::writer::AlignedBuf::from_bytes(&bytes);
            if let Err(e) = tinyformer::Model::from_bytes(buf.as_bytes()) {
                panic!("converter wrote a file that does not validate: {e}");
            }
        }
        Err(e) => {
            let _ = format!("{e:#}");
        }
    }
});
