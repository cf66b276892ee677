//! Helpers shared by the integration tests (the ones that forge model files:
//! `tests/format.rs`, `tests/properties.rs`, `tests/decoder.rs`; the byte-level BPE
//! ones; each uses a subset).
#![allow(dead_code)]

use tinyformer::format::{file_crc32, header, HEADER_LEN};

/// Rewrites the header CRC so that it matches the bytes (no-op on a buffer shorter
/// than the header): a forged file, so that a test reaches the check it means to test
/// instead of stopping at the checksum, which is verified last and covers every byte.
pub fn restamp_crc(bytes: &mut [u8]) {
    if bytes.len() < HEADER_LEN {
        return;
    }
    let crc = file_crc32(bytes);
    bytes[header::CRC32..header::CRC32 + 4].copy_from_slice(&crc.to_le_bytes());
}

/// A small random Llama-family decoder file (the writer's output, so it validates):
/// `hidden` 16, 4 query heads and 2 key/value heads of 4, ffn 24, 3 layers, a
/// 259-token byte-level vocabulary (`<unk>`, `<s>`, `</s>`, 256 byte pieces), context
/// `max_seq`. Weights are random; int8 requantization pairs are valid but arbitrary,
/// so an int8 model's outputs mean nothing beyond exercising every path.
pub fn tiny_decoder(
    weight_dtype: tinyformer::format::DType,
    separate_output: bool,
    max_seq: u32,
    seed: u64,
) -> Vec<u8> {
    let shape = DecoderShape {
        hidden: 16,
        heads: 4,
        kv_heads: 2,
        ffn: 24,
        layers: 3,
    };
    sized_decoder(weight_dtype, separate_output, max_seq, seed, shape)
}

/// The dimensions of a [`sized_decoder`].
pub struct DecoderShape {
    pub hidden: u32,
    pub heads: u32,
    pub kv_heads: u32,
    pub ffn: u32,
    pub layers: u32,
}

/// [`tiny_decoder`] with other dimensions.
pub fn sized_decoder(
    weight_dtype: tinyformer::format::DType,
    separate_output: bool,
    max_seq: u32,
    seed: u64,
    shape: DecoderShape,
) -> Vec<u8> {
    use tinyformer::format::writer::{write_model, TensorData};
    use tinyformer::format::{
        tensor_count, tensor_spec, Activation, Arch, Config, DType, DecoderParams, Pooling,
        TensorKind as K,
    };
    use tinyformer::tokenizer::sentencepiece::{encode_section, SentencePieceConfig};
    let config = Config {
        arch: Arch::LlamaDecoder,
        weight_dtype,
        activation: Activation::Silu,
        pooling: Pooling::None,
        vocab_size: 259,
        hidden: shape.hidden,
        layers: shape.layers,
        heads: shape.heads,
        ffn: shape.ffn,
        max_positions: max_seq,
        type_vocab: 0,
        num_labels: 0,
        max_seq,
        layer_norm_eps_bits: 1e-5f32.to_bits(),
        decoder: Some(DecoderParams {
            kv_heads: shape.kv_heads,
            rope_theta_bits: 10000f32.to_bits(),
            bos_id: 1,
            eos_id: 2,
            separate_output,
        }),
    };
    let mut pieces: Vec<Vec<u8>> = vec![b"<unk>".to_vec(), b"<s>".to_vec(), b"</s>".to_vec()];
    pieces.extend((0..=255u8).map(|b| format!("<0x{b:02X}>").into_bytes()));
    let piece_refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
    let scores = vec![0.0f32; pieces.len()];
    let section = encode_section(&piece_refs, &scores, &SentencePieceConfig::llama2c()).unwrap();
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut payloads = Vec::new();
    for index in 0..tensor_count(&config) {
        let spec = tensor_spec(&config, index).unwrap();
        let n = (spec.dims[0] * spec.dims[1]) as usize;
        let bytes: Vec<u8> = match spec.dtype {
            DType::F32 => (0..n)
                .flat_map(|_| (((next() % 2001) as f32 / 1000.0 - 1.0) * 0.3).to_le_bytes())
                .collect(),
            DType::F16 => (0..n)
                .flat_map(|_| {
                    half::f16::from_f32((next() % 2001) as f32 / 3000.0 - 0.33).to_le_bytes()
                })
                .collect(),
            DType::I8 => (0..n).map(|_| next() as u8).collect(),
            DType::I32 => (0..n)
                .map(|i| match spec.kind {
                    k if k.is_requant() && i % 2 == 0 => (1 << 30) + (next() % (1 << 29)) as i32,
                    k if k.is_requant() => -((next() % 12) as i32),
                    K::RopeTable => (next() % 32769) as i32 - 16384,
                    K::DecScalars => 0,
                    K::RmsAttn | K::RmsFfn | K::RmsFinal => 16384,
                    _ => (next() % 4096) as i32 - 2048,
                })
                .flat_map(i32::to_le_bytes)
                .collect(),
        };
        payloads.push((spec.kind, spec.layer, bytes));
    }
    let tensors: Vec<TensorData<'_>> = payloads
        .iter()
        .map(|(kind, layer, bytes)| TensorData {
            kind: *kind,
            layer: *layer,
            bytes,
        })
        .collect();
    write_model(&config, &section, &[], &tensors).unwrap()
}

/// The text of `ids` as a generator prints it: each id's bytes through `Utf8Stream`.
pub fn decode_bytebpe(bpe: &tinyformer::tokenizer::bytebpe::ByteBpe<'_>, ids: &[u32]) -> String {
    let mut text = String::new();
    let mut stream = tinyformer::tokenizer::stream::Utf8Stream::new();
    for &id in ids {
        stream.push(bpe.decode(id), |s| text.push_str(s));
    }
    stream.finish(|s| text.push_str(s));
    text
}
