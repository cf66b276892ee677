//! The WordPiece tokenizer on arbitrary bytes (invalid UTF-8 included), with tokenizers
//! built from the real BERT uncased vocabulary (`tests/fixtures/tokenizer/vocab.txt`).
//!
//! Input: byte 0 selects the tokenizer settings (bits 0..4: lowercase, strip_accents,
//! chinese_chars, clean_text; bit 4: `max_word_chars` 8 instead of 100; bit 7: parse
//! the rest as a raw tokenizer section instead), byte 1 the output length (0..=255),
//! the rest is the text. Besides `encode`'s contract, a sample of `encode_window`'s
//! windows is checked against the untruncated encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tinyformer::tokenizer::{encode_section, Tokenizer, TokenizerConfig, TokenizerError};

const VOCAB: &str = include_str!("../../tests/fixtures/tokenizer/vocab.txt");

/// The tokenizer for a settings variant, built and validated once per process.
fn tokenizer(variant: u8) -> Tokenizer<'static> {
    static SECTIONS: [OnceLock<Tokenizer<'static>>; 32] = [const { OnceLock::new() }; 32];
    *SECTIONS[variant as usize % 32].get_or_init(|| {
        let vocab: Vec<&str> = VOCAB.lines().collect();
        let config = TokenizerConfig {
            lowercase: variant & 1 != 0,
            strip_accents: variant & 2 != 0,
            chinese_chars: variant & 4 != 0,
            clean_text: variant & 8 != 0,
            max_word_chars: if variant & 16 != 0 { 8 } else { 100 },
            ..TokenizerConfig::bert_uncased()
        };
        let section = encode_section(&vocab, &config).expect("the fixture vocabulary is valid");
        Tokenizer::from_section(section.leak()).expect("valid section")
    })
}

/// Checks the documented contract of one `encode` call.
fn encode_checked(tokenizer: &Tokenizer<'_>, text: &[u8], out: &mut [u32]) {
    match tokenizer.encode(text, out) {
        Ok(enc) => {
            let capacity = out.len() - 2;
            assert!(enc.len >= 2 && enc.len <= out.len());
            assert_eq!(enc.len, enc.pieces_total.min(capacity) + 2);
            assert_eq!(enc.truncated, enc.pieces_total > capacity);
            assert_eq!(out[0], tokenizer.cls_id());
            assert_eq!(out[enc.len - 1], tokenizer.sep_id());
            assert!(out[..enc.len].iter().all(|&id| id < tokenizer.vocab_size()));
        }
        Err(TokenizerError::OutputTooShort { len }) => assert!(len < 2),
        Err(TokenizerError::InvalidUtf8 { offset }) => {
            assert!(std::str::from_utf8(text).is_err());
            assert_eq!(
                std::str::from_utf8(&text[..offset]).ok().map(str::len),
                Some(offset)
            );
        }
        Err(e) => panic!("unexpected encode error {e:?}"),
    }
}

/// Checks `encode_window` against one untruncated encoding: the windows at piece 0,
/// one window on, the last window and just past the end hold exactly the pieces of the
/// whole text at those positions (a sample of windows: every one would make a long text
/// with a short output quadratic).
fn windows_checked(tokenizer: &Tokenizer<'_>, text: &[u8], out: &mut [u32]) {
    let Some(capacity) = out.len().checked_sub(2).filter(|&c| c > 0) else {
        return;
    };
    let Ok(first) = tokenizer.encode(text, out) else {
        return;
    };
    let total = first.pieces_total;
    let mut full = vec![0u32; total + 2];
    let whole = tokenizer.encode(text, &mut full).expect("encoded once already");
    assert!(!whole.truncated && whole.pieces_total == total);
    let last = total.saturating_sub(1) / capacity * capacity;
    for skip in [0, capacity, last, total] {
        let enc = tokenizer.encode_window(text, skip, out).expect("encoded once already");
        let kept = total.saturating_sub(skip).min(capacity);
        assert_eq!((enc.len, enc.pieces_total), (kept + 2, total));
        assert_eq!(enc.truncated, skip + kept < total);
        assert_eq!(out[0], tokenizer.cls_id());
        assert_eq!(out[kept + 1], tokenizer.sep_id());
        assert_eq!(out[1..=kept], full[1 + skip.min(total)..1 + skip.min(total) + kept]);
    }
}

fuzz_target!(|data: &[u8]| {
    let [variant, out_len, rest @ ..] = data else {
        return;
    };
    let mut out = vec![0u32; *out_len as usize];
    if variant & 0x80 != 0 {
        // A hostile section: Ok or an error, and a valid one must encode.
        if let Ok(tokenizer) = Tokenizer::from_section(rest) {
            for id in 0..tokenizer.vocab_size().min(4096) {
                let token = tokenizer.token(id).expect("validated token");
                assert_eq!(tokenizer.token_id(token), Some(id));
            }
            encode_checked(
                &tokenizer,
                b"Hello, [CLS] world! \xe4\xbd\xa0\xe5\xa5\xbd",
                &mut out,
            );
        }
        return;
    }
    encode_checked(&tokenizer(*variant), rest, &mut out);
    windows_checked(&tokenizer(*variant), rest, &mut out);
});
