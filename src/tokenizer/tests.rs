//! Unit tests for the documented pieces: layout, every validation error, the writer's
//! errors, and the encode contract (truncation, added tokens, word limits, errors).

use super::*;
use alloc::vec::Vec;

const VOCAB: &[&str] = &[
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "hello",
    ",",
    "world",
    "##s",
    "!",
    "un",
    "##aff",
    "##able",
    "cafe",
    "中",
    "a",
    "##a",
    ".",
    "i",
    "Hello",
    "[",
    "]",
    "mask",
    "##\u{307}",
    "=",
];

fn id(token: &str) -> u32 {
    VOCAB.iter().position(|t| *t == token).unwrap() as u32
}

fn section(config: &TokenizerConfig<'_>) -> Vec<u8> {
    encode_section(VOCAB, config).unwrap()
}

fn encode_with(config: &TokenizerConfig<'_>, text: &str, out_len: usize) -> (Vec<u32>, Encoding) {
    let bytes = section(config);
    let tokenizer = Tokenizer::from_section(&bytes).unwrap();
    let mut out = alloc::vec![0u32; out_len];
    let encoding = tokenizer.encode(text.as_bytes(), &mut out).unwrap();
    out.truncate(encoding.len);
    (out, encoding)
}

fn ids(text: &str) -> Vec<u32> {
    encode_with(&TokenizerConfig::bert_uncased(), text, 64).0
}

fn tokens(list: &[&str]) -> Vec<u32> {
    list.iter().map(|t| id(t)).collect()
}

fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

#[test]
fn layout_matches_docs() {
    let bytes = section(&TokenizerConfig::bert_uncased());
    let n = VOCAB.len();
    let strings: usize = VOCAB.iter().map(|t| t.len()).sum();
    assert_eq!(&bytes[..4], b"TFTK");
    assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 1);
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 0b1111);
    assert_eq!(
        u32::from_le_bytes(bytes[12..16].try_into().unwrap()),
        n as u32
    );
    for (at, token) in [(16, "[UNK]"), (20, "[CLS]"), (24, "[SEP]"), (28, "[PAD]")] {
        assert_eq!(
            u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()),
            id(token)
        );
    }
    assert_eq!(u32::from_le_bytes(bytes[32..36].try_into().unwrap()), 100);
    assert_eq!(u32::from_le_bytes(bytes[36..40].try_into().unwrap()), 5);
    assert_eq!(
        u32::from_le_bytes(bytes[40..44].try_into().unwrap()),
        strings as u32
    );
    let strings_at = 48 + 4 * 5 + 8 * n;
    assert_eq!(bytes.len(), (strings_at + strings + 3) & !3);
    assert_eq!(bytes.len() % 4, 0);
    assert_eq!(&bytes[strings_at..strings_at + 5], b"[PAD]");
    let config = TokenizerConfig {
        lowercase: false,
        strip_accents: true,
        chinese_chars: false,
        clean_text: false,
        ..TokenizerConfig::bert_uncased()
    };
    let bytes = section(&config);
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 0b0010);
}

#[test]
fn lookups_and_accessors() {
    let bytes = section(&TokenizerConfig::bert_uncased());
    let t = Tokenizer::from_section(&bytes).unwrap();
    assert_eq!(t.vocab_size(), VOCAB.len() as u32);
    for (i, token) in VOCAB.iter().enumerate() {
        assert_eq!(t.token(i as u32), Some(*token));
        assert_eq!(t.token_id(token), Some(i as u32));
    }
    assert_eq!(t.token(VOCAB.len() as u32), None);
    assert_eq!(t.token(u32::MAX), None);
    assert_eq!(t.token_id("absent"), None);
    assert_eq!(t.token_id(""), None);
    assert_eq!(t.token_id("##"), None);
    assert_eq!(
        (t.unk_id(), t.cls_id(), t.sep_id(), t.pad_id()),
        (1, 2, 3, 0)
    );
    assert!(t.lowercase() && t.strip_accents() && t.chinese_chars() && t.clean_text());
    assert_eq!(t.max_word_chars(), 100);
    assert_eq!(t.added_token_ids().collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    assert!(alloc::format!("{t:?}").contains("vocab_size: 25"));

    let bytes = section(&TokenizerConfig::bert_cased());
    let t = Tokenizer::from_section(&bytes).unwrap();
    assert!(!t.lowercase() && !t.strip_accents() && t.chinese_chars() && t.clean_text());
}

#[test]
fn basic_encoding() {
    assert_eq!(
        ids("Hello, WORLDS!"),
        tokens(&["[CLS]", "hello", ",", "world", "##s", "!", "[SEP]"])
    );
    assert_eq!(
        ids("unaffable"),
        tokens(&["[CLS]", "un", "##aff", "##able", "[SEP]"])
    );
    assert_eq!(ids("Café"), tokens(&["[CLS]", "cafe", "[SEP]"]));
    assert_eq!(ids("cafe\u{301}"), tokens(&["[CLS]", "cafe", "[SEP]"]));
    // A CJK ideograph is a word of its own, even inside a word.
    assert_eq!(ids("a中a"), tokens(&["[CLS]", "a", "中", "a", "[SEP]"]));
    // A word with no full match is one [UNK], not a partial match.
    assert_eq!(
        ids("helloz world"),
        tokens(&["[CLS]", "[UNK]", "world", "[SEP]"])
    );
    // Removed and whitespace chars.
    assert_eq!(
        ids("he\u{0}l\u{200D}lo\u{3000}\tworld\u{FFFD}"),
        tokens(&["[CLS]", "hello", "world", "[SEP]"])
    );
    // ≠ strips to "=", which is punctuation.
    assert_eq!(
        ids("a\u{2260}a"),
        tokens(&["[CLS]", "a", "=", "a", "[SEP]"])
    );
}

#[test]
fn empty_and_whitespace_only() {
    let cls_sep = tokens(&["[CLS]", "[SEP]"]);
    for text in [
        "",
        " ",
        "\t\n\r ",
        "\u{A0}\u{3000}\u{2028}",
        "\u{200B}\u{0}\u{FEFF}",
    ] {
        let (out, enc) = encode_with(&TokenizerConfig::bert_uncased(), text, 2);
        assert_eq!(out, cls_sep, "{text:?}");
        assert_eq!(
            enc,
            Encoding {
                len: 2,
                truncated: false,
                pieces_total: 0
            }
        );
    }
}

#[test]
fn added_tokens_match_raw_text() {
    assert_eq!(
        ids("a[MASK]a"),
        tokens(&["[CLS]", "a", "[MASK]", "a", "[SEP]"])
    );
    assert_eq!(ids("[CLS]"), tokens(&["[CLS]", "[CLS]", "[SEP]"]));
    // Lowercase text is not the token; normalization does not create matches.
    assert_eq!(ids("[mask]"), tokens(&["[CLS]", "[", "mask", "]", "[SEP]"]));
    assert_eq!(
        ids("[MA\u{0}SK]"),
        tokens(&["[CLS]", "[", "mask", "]", "[SEP]"])
    );
    // Without added tokens in the config, "[MASK]" is ordinary text.
    let config = TokenizerConfig {
        added_tokens: &[],
        ..TokenizerConfig::bert_uncased()
    };
    assert_eq!(
        encode_with(&config, "[MASK]", 8).0,
        tokens(&["[CLS]", "[", "mask", "]", "[SEP]"])
    );
    // Longest added token wins.
    let vocab = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "<a>", "<a><b>", "x"];
    let config = TokenizerConfig {
        unk_token: "[UNK]",
        added_tokens: &["<a>", "<a><b>"],
        ..TokenizerConfig::bert_uncased()
    };
    let bytes = encode_section(&vocab, &config).unwrap();
    let t = Tokenizer::from_section(&bytes).unwrap();
    let mut out = [0u32; 8];
    let enc = t.encode(b"x<a><b><a>x", &mut out).unwrap();
    assert_eq!(&out[..enc.len], &[1, 6, 5, 4, 6, 2]);
}

#[test]
fn word_length_limit_counts_normalized_chars() {
    let limit = |n: u32| TokenizerConfig {
        max_word_chars: n,
        strip_accents: false, // keep the U+0307 that lowercasing "İ" produces
        ..TokenizerConfig::bert_uncased()
    };
    let a4 = "aaaa";
    assert_eq!(
        encode_with(&limit(4), a4, 8).0,
        tokens(&["[CLS]", "a", "##a", "##a", "##a", "[SEP]"])
    );
    assert_eq!(
        encode_with(&limit(3), a4, 8).0,
        tokens(&["[CLS]", "[UNK]", "[SEP]"])
    );
    // "İ" lowercases to two chars: "i" + U+0307.
    assert_eq!(
        encode_with(&limit(2), "İ", 8).0,
        tokens(&["[CLS]", "i", "##\u{307}", "[SEP]"])
    );
    assert_eq!(
        encode_with(&limit(1), "İ", 8).0,
        tokens(&["[CLS]", "[UNK]", "[SEP]"])
    );
    // A long word is one [UNK], and the next word is unaffected.
    let long = "a".repeat(MAX_WORD_CHARS_LIMIT as usize + 50) + " a";
    assert_eq!(
        encode_with(&limit(MAX_WORD_CHARS_LIMIT), &long, 8).0,
        tokens(&["[CLS]", "[UNK]", "a", "[SEP]"])
    );
    // 4-byte chars up to the limit fit in the word buffer.
    let wide = "\u{1F600}".repeat(MAX_WORD_CHARS_LIMIT as usize);
    assert_eq!(
        encode_with(&limit(MAX_WORD_CHARS_LIMIT), &wide, 8).0,
        tokens(&["[CLS]", "[UNK]", "[SEP]"])
    );
}

#[test]
fn truncation_keeps_first_pieces() {
    let text = "a a a a a ! ! !"; // 8 pieces
    let (out, enc) = encode_with(&TokenizerConfig::bert_uncased(), text, 5);
    assert_eq!(out, tokens(&["[CLS]", "a", "a", "a", "[SEP]"]));
    assert_eq!(
        enc,
        Encoding {
            len: 5,
            truncated: true,
            pieces_total: 8
        }
    );
    let (out, enc) = encode_with(&TokenizerConfig::bert_uncased(), text, 2);
    assert_eq!(out, tokens(&["[CLS]", "[SEP]"]));
    assert_eq!(
        enc,
        Encoding {
            len: 2,
            truncated: true,
            pieces_total: 8
        }
    );
    let (_, enc) = encode_with(&TokenizerConfig::bert_uncased(), text, 10);
    assert_eq!(
        enc,
        Encoding {
            len: 10,
            truncated: false,
            pieces_total: 8
        }
    );
    // A word whose tentative pieces cross the end, then fail, still counts once.
    let (out, enc) = encode_with(&TokenizerConfig::bert_uncased(), "a unaffz a", 4);
    assert_eq!(out, tokens(&["[CLS]", "a", "[UNK]", "[SEP]"]));
    assert_eq!(enc.pieces_total, 3);
}

#[test]
fn windows_concatenate_to_the_whole_text() {
    let bytes = section(&TokenizerConfig::bert_uncased());
    let t = Tokenizer::from_section(&bytes).unwrap();
    // Rolled-back pieces ("un ##aff" then no match for "z") and an added-free mix.
    let text = b"hello, worlds! unaffable a unaffz caf\xc3\xa9 a. i = [mask] unaffable";
    let mut full = alloc::vec![0u32; 64];
    let whole = t.encode(text, &mut full).unwrap();
    assert!(!whole.truncated);
    let pieces = &full[1..whole.len - 1];
    // Every window size (a few under Miri: each window re-reads the text).
    let step = if cfg!(miri) { 7 } else { 1 };
    for out_len in (3..=pieces.len() + 3).step_by(step) {
        let capacity = out_len - 2;
        let mut joined = Vec::new();
        let mut out = alloc::vec![0u32; out_len];
        let mut skip = 0;
        loop {
            let enc = t.encode_window(text, skip, &mut out).unwrap();
            assert_eq!(enc.pieces_total, pieces.len());
            assert_eq!((out[0], out[enc.len - 1]), (id("[CLS]"), id("[SEP]")));
            joined.extend_from_slice(&out[1..enc.len - 1]);
            skip += capacity;
            assert_eq!(enc.truncated, skip < pieces.len(), "out_len {out_len}");
            if !enc.truncated {
                break;
            }
        }
        assert_eq!(joined, pieces, "out_len {out_len}");
    }
    // Past the end: an empty window.
    let mut out = [0u32; 4];
    let enc = t.encode_window(text, usize::MAX, &mut out).unwrap();
    assert_eq!((enc.len, enc.truncated), (2, false));
    assert_eq!(out[..2], [id("[CLS]"), id("[SEP]")]);
}

#[test]
fn encode_errors() {
    let bytes = section(&TokenizerConfig::bert_uncased());
    let t = Tokenizer::from_section(&bytes).unwrap();
    for len in [0, 1] {
        let mut out = alloc::vec![0u32; len];
        assert_eq!(
            t.encode(b"a", &mut out),
            Err(TokenizerError::OutputTooShort { len })
        );
    }
    let mut out = [0u32; 8];
    assert_eq!(
        t.encode(b"ab\xffc", &mut out),
        Err(TokenizerError::InvalidUtf8 { offset: 2 })
    );
    assert_eq!(
        t.encode(b"caf\xc3", &mut out),
        Err(TokenizerError::InvalidUtf8 { offset: 3 })
    );
    assert_eq!(
        t.encode(b"\xed\xa0\x80", &mut out),
        Err(TokenizerError::InvalidUtf8 { offset: 0 })
    );
}

#[test]
fn cased_config() {
    let (out, _) = encode_with(&TokenizerConfig::bert_cased(), "Hello hello Café", 16);
    assert_eq!(out, tokens(&["[CLS]", "Hello", "hello", "[UNK]", "[SEP]"]));
}

#[test]
fn writer_errors() {
    use TokenizerError as E;
    let uncased = TokenizerConfig::bert_uncased();
    assert_eq!(encode_section(&[], &uncased), Err(E::EmptyVocab));
    assert_eq!(
        encode_section(&["[UNK]", ""], &uncased),
        Err(E::EmptyToken { id: 1 })
    );
    assert_eq!(
        encode_section(&["x", "[UNK]", "x"], &uncased),
        Err(E::DuplicateToken {
            first: 0,
            second: 2
        })
    );
    let no_sep = ["[PAD]", "[UNK]", "[CLS]", "[MASK]"];
    assert_eq!(
        encode_section(&no_sep, &uncased),
        Err(E::MissingSpecialToken {
            which: SpecialToken::Sep
        })
    );
    let no_mask = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"];
    assert_eq!(
        encode_section(&no_mask, &uncased),
        Err(E::MissingAddedToken { index: 4 })
    );
    let many = ["[PAD]"; 17];
    let config = TokenizerConfig {
        added_tokens: &many,
        ..uncased
    };
    assert_eq!(
        encode_section(VOCAB, &config),
        Err(E::TooManyAddedTokens {
            count: 17,
            limit: 16
        })
    );
    for value in [0, MAX_WORD_CHARS_LIMIT + 1] {
        let config = TokenizerConfig {
            max_word_chars: value,
            ..uncased
        };
        assert_eq!(
            encode_section(VOCAB, &config),
            Err(E::MaxWordChars {
                value,
                limit: MAX_WORD_CHARS_LIMIT
            })
        );
    }
}

/// Table-driven: one corruption per validation error.
#[test]
fn validation_errors() {
    use TokenizerError as E;
    let good = section(&TokenizerConfig::bert_uncased());
    let n = VOCAB.len();
    let offsets_at = HEADER_LEN + 4 * 5;
    let index_at = offsets_at + 4 * (n + 1);
    let strings_at = index_at + 4 * n;
    let strings_len: usize = VOCAB.iter().map(|t| t.len()).sum();
    let patch = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = good.clone();
        f(&mut bytes);
        Tokenizer::from_section(&bytes).map(|_| ())
    };
    let check = |expected: E, corrupt: &dyn Fn(&mut Vec<u8>)| {
        assert_eq!(patch(corrupt), Err(expected));
    };
    check(
        E::Truncated {
            needed: 44,
            len: 43,
        },
        &|b| b.truncate(43),
    );
    check(E::BadMagic { found: *b"TFTX" }, &|b| b[3] = b'X');
    check(E::UnsupportedVersion { version: 2 }, &|b| put_u32(b, 4, 2));
    check(E::UnknownFlags { flags: 0x1F }, &|b| put_u32(b, 8, 0x1F));
    check(E::EmptyVocab, &|b| put_u32(b, 12, 0));
    check(
        E::MaxWordChars {
            value: 0,
            limit: 128,
        },
        &|b| put_u32(b, 32, 0),
    );
    check(
        E::MaxWordChars {
            value: 129,
            limit: 128,
        },
        &|b| put_u32(b, 32, 129),
    );
    check(
        E::TooManyAddedTokens {
            count: 17,
            limit: 16,
        },
        &|b| put_u32(b, 36, 17),
    );
    check(
        E::LengthMismatch {
            expected: good.len(),
            len: good.len() + 4,
        },
        &|b| b.extend([0; 4]),
    );
    check(
        E::LengthMismatch {
            expected: good.len(),
            len: good.len() - 4,
        },
        &|b| b.truncate(b.len() - 4),
    );
    check(
        E::NonZeroPadding {
            offset: strings_at + strings_len,
        },
        &|b| *b.last_mut().unwrap() = 1,
    );
    check(
        E::SpecialIdOutOfRange {
            which: SpecialToken::Sep,
            id: n as u32,
            vocab_size: n as u32,
        },
        &|b| put_u32(b, 24, n as u32),
    );
    check(
        E::AddedIdOutOfRange {
            index: 2,
            id: u32::MAX,
            vocab_size: n as u32,
        },
        &|b| put_u32(b, HEADER_LEN + 8, u32::MAX),
    );
    check(E::BadOffset { id: 0, offset: 1 }, &|b| {
        put_u32(b, offsets_at, 1)
    });
    check(E::BadOffset { id: 3, offset: 2 }, &|b| {
        put_u32(b, offsets_at + 12, 2)
    });
    check(E::EmptyToken { id: 2 }, &|b| {
        put_u32(b, offsets_at + 12, 10)
    });
    check(E::TokenNotUtf8 { id: 0 }, &|b| b[strings_at] = 0xFF);
    check(
        E::IndexOutOfRange {
            position: 1,
            id: n as u32,
        },
        &|b| put_u32(b, index_at + 4, n as u32),
    );
    check(E::IndexNotSorted { position: 1 }, &|b| {
        let first = b[index_at..index_at + 4].to_vec();
        b[index_at + 4..index_at + 8].copy_from_slice(&first);
    });
    // Sizes that overflow usize: a vocab size near u32::MAX on 32-bit, or simply far
    // longer than the section.
    let huge = patch(&|b| put_u32(b, 12, u32::MAX));
    assert!(
        matches!(huge, Err(E::SizeOverflow | E::LengthMismatch { .. })),
        "{huge:?}"
    );
    let strings = patch(&|b| put_u32(b, 40, u32::MAX));
    assert!(
        matches!(strings, Err(E::SizeOverflow | E::LengthMismatch { .. })),
        "{strings:?}"
    );
    assert!(patch(&|_| ()).is_ok());
}

#[test]
fn layout_overflow_is_checked() {
    assert_eq!(
        section::Layout::new(u32::MAX, 0, u32::MAX).is_none(),
        usize::BITS <= 32
    );
    let layout = section::Layout::new(1, 2, 1).unwrap();
    assert_eq!(layout.added, (44, 52));
    assert_eq!(
        (
            layout.table.offsets,
            layout.table.index,
            layout.table.strings
        ),
        ((52, 60), (60, 64), (64, 65))
    );
    assert_eq!(layout.table.padded_len, 68);
}

#[test]
fn errors_display() {
    let e = TokenizerError::InvalidUtf8 { offset: 7 };
    assert_eq!(alloc::format!("{e}"), "input text is not UTF-8 at byte 7");
    let e = TokenizerError::SpecialIdOutOfRange {
        which: SpecialToken::Unk,
        id: 9,
        vocab_size: 3,
    };
    assert_eq!(
        alloc::format!("{e}"),
        "unk token id 9 out of range (vocab size 3)"
    );
    let _: &dyn core::error::Error = &e;
}
