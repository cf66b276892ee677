//! The byte-level BPE tokenizer on arbitrary bytes (invalid UTF-8 included), with the
//! tokenizer trained by `tools/reference/bytebpe_goldens.py`
//! (`tests/fixtures/bytebpe/tokenizer.json`).
//!
//! Input: byte 0 selects the settings (bit 0: match special tokens; bit 1: GPT-2's
//! pre-tokenizer instead of SmolLM2's; bit 7: parse the rest as a raw section instead),
//! byte 1 the output length (0..=255), the rest is the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tinyformer::tokenizer::bytebpe::{
    encode_buffer_len, encode_section, ByteBpe, ByteBpeConfig, PreTokenizer,
};
use tinyformer::tokenizer::stream::Utf8Stream;
use tinyformer::tokenizer::TokenizerError;

const TOKENIZER_JSON: &str = include_str!("../../tests/fixtures/bytebpe/tokenizer.json");

/// The fixture tokenizer with either pre-tokenizer, built and validated once.
fn tokenizer(gpt2: bool) -> ByteBpe<'static> {
    static BPE: [OnceLock<ByteBpe<'static>>; 2] = [const { OnceLock::new() }; 2];
    *BPE[usize::from(gpt2)].get_or_init(|| {
        let json: serde_json::Value = serde_json::from_str(TOKENIZER_JSON).expect("json");
        let vocab = json["model"]["vocab"].as_object().expect("vocab");
        let mut tokens = vec![""; vocab.len()];
        for (token, id) in vocab {
            tokens[id.as_u64().expect("id") as usize] = token;
        }
        let merges: Vec<String> = json["model"]["merges"]
            .as_array()
            .expect("merges")
            .iter()
            .map(|m| format!("{} {}", m[0].as_str().unwrap(), m[1].as_str().unwrap()))
            .collect();
        let merges: Vec<&str> = merges.iter().map(String::as_str).collect();
        let added: Vec<u32> = json["added_tokens"]
            .as_array()
            .expect("added tokens")
            .iter()
            .map(|t| t["id"].as_u64().expect("id") as u32)
            .collect();
        let config = ByteBpeConfig {
            pre_tokenizer: if gpt2 {
                PreTokenizer::Gpt2
            } else {
                PreTokenizer::SmolLm2
            },
            ..ByteBpeConfig::smollm2()
        };
        let section = encode_section(&tokens, &merges, &added, &config).expect("valid fixture");
        ByteBpe::from_section(section.leak()).expect("valid section")
    })
}

/// Checks the documented contract of one `encode` call, and the decode round trip.
fn encode_checked(bpe: &ByteBpe<'_>, text: &[u8], special_tokens: bool, out: &mut [u32]) {
    match bpe.encode(text, special_tokens, out) {
        Ok(len) => {
            assert!(len <= out.len());
            assert!(out[..len].iter().all(|&id| id < bpe.vocab_size()));
            let mut decoded = Vec::new();
            let mut stream = Utf8Stream::new();
            for &id in &out[..len] {
                stream.push(bpe.decode(id), |s| decoded.extend_from_slice(s.as_bytes()));
            }
            stream.finish(|s| decoded.extend_from_slice(s.as_bytes()));
            if !bpe.add_bos() {
                assert_eq!(decoded, text);
            }
        }
        Err(TokenizerError::EncodeBufferTooSmall { len, needed }) => {
            assert_eq!(len, out.len());
            assert_eq!(needed, encode_buffer_len(text.len(), bpe.add_bos()));
            assert!(out.len() < needed);
        }
        Err(TokenizerError::InvalidUtf8 { offset }) => {
            let error = std::str::from_utf8(text).expect_err("invalid text");
            assert_eq!(error.valid_up_to(), offset);
        }
        Err(e) => panic!("unexpected encode error {e:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let [variant, out_len, rest @ ..] = data else {
        return;
    };
    let mut out = vec![0u32; *out_len as usize];
    if variant & 0x80 != 0 {
        // A hostile section: Ok or an error, and a valid one must encode.
        if let Ok(bpe) = ByteBpe::from_section(rest) {
            for id in 0..bpe.vocab_size().min(4096) {
                let token = bpe.token(id).expect("validated token");
                assert_eq!(bpe.token_id(token), Some(id));
            }
            let text = "Hello, <|im_end|> world 123! \u{4f60}\u{597d}".as_bytes();
            encode_checked(&bpe, text, variant & 1 != 0, &mut out);
        }
        return;
    }
    encode_checked(&tokenizer(variant & 2 != 0), rest, variant & 1 != 0, &mut out);
});
