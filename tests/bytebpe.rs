//! The byte-level BPE tokenizer (`tinyformer::tokenizer::bytebpe`) beyond HF parity
//! (`tests/bytebpe_parity.rs`): round trips, buffer sizes, merge order, writer errors,
//! every validation error from a specific corruption, and no panic on random text
//! (invalid UTF-8 included) or random and mutated sections.

mod common;

use std::sync::OnceLock;

use proptest::prelude::*;
use tinyformer::tokenizer::bytebpe::{
    byte_char, encode_buffer_len, encode_section, ByteBpe, ByteBpeConfig, PreTokenizer, HEADER_LEN,
    MAX_ADDED_TOKENS, NO_TOKEN, SECTION_MAGIC,
};
use tinyformer::tokenizer::{SpecialToken, TokenizerError};

/// The 256 byte tokens in the byte-to-unicode alphabet, then `extra`.
fn vocab(extra: &[&str]) -> Vec<String> {
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_char(b).to_string()).collect();
    tokens.extend(extra.iter().map(|s| s.to_string()));
    tokens
}

fn build(
    tokens: &[String],
    merges: &[&str],
    added: &[u32],
    config: &ByteBpeConfig,
) -> Result<Vec<u8>, TokenizerError> {
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
    encode_section(&tokens, merges, added, config)
}

/// A small section: merges `h e`, `he l`, `Ġ h`, `Ġh i`, `l l` (ranks 0..5), the special
/// token `<|endoftext|>` (id 261) as BOS and EOS, BOS added. N = 262, K = 1, M = 5.
fn small_section() -> Vec<u8> {
    let tokens = vocab(&["he", "hel", "Ġh", "Ġhi", "ll", "<|endoftext|>"]);
    let config = ByteBpeConfig {
        bos_id: Some(261),
        eos_id: Some(261),
        add_bos: true,
        ..ByteBpeConfig::gpt2()
    };
    build(
        &tokens,
        &["h e", "he l", "Ġ h", "Ġh i", "l l"],
        &[261],
        &config,
    )
    .unwrap()
}

/// The fixture tokenizer (`tests/fixtures/bytebpe/tokenizer.json`), built once.
fn fixture() -> &'static ByteBpe<'static> {
    static BPE: OnceLock<ByteBpe<'static>> = OnceLock::new();
    BPE.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/bytebpe/tokenizer.json"
        );
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut tokens = vec![String::new(); json["model"]["vocab"].as_object().unwrap().len()];
        for (token, id) in json["model"]["vocab"].as_object().unwrap() {
            tokens[id.as_u64().unwrap() as usize] = token.clone();
        }
        let added: Vec<u32> = json["added_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_u64().unwrap() as u32)
            .collect();
        let merges: Vec<String> = json["model"]["merges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| format!("{} {}", m[0].as_str().unwrap(), m[1].as_str().unwrap()))
            .collect();
        let merges: Vec<&str> = merges.iter().map(String::as_str).collect();
        let section = build(&tokens, &merges, &added, &ByteBpeConfig::smollm2()).unwrap();
        ByteBpe::from_section(section.leak()).unwrap()
    })
}

fn encode(
    bpe: &ByteBpe<'_>,
    text: &[u8],
    special_tokens: bool,
) -> Result<Vec<u32>, TokenizerError> {
    let mut out = vec![0u32; encode_buffer_len(text.len(), bpe.add_bos())];
    let n = bpe.encode(text, special_tokens, &mut out)?;
    out.truncate(n);
    Ok(out)
}

#[test]
fn small_section_matches_the_documented_layout() {
    let section = small_section();
    let word = |at: usize| u32::from_le_bytes(section[at..at + 4].try_into().unwrap());
    assert_eq!(section[..4], SECTION_MAGIC);
    assert_eq!(
        [1, 1, 262, 0, 261, 261, 5, 1],
        [4, 8, 12, 16, 20, 24, 28, 32].map(word)
    );
    let strings = word(36) as usize;
    assert_eq!(strings, 256 + 2 + 3 + 2 + 3 + 2 + 13);
    assert_eq!(word(HEADER_LEN + 4 * b'a' as usize), b'a' as u32);
    assert_eq!(word(1064), 261); // the added token
                                 // Merges sorted by (left, right): (104 'h', 101 'e') -> 256 rank 0 comes after
                                 // (32 ' ', 104 'h') -> 258 rank 2.
    let merge = |i: usize| [0, 4, 8, 12].map(|o| word(1068 + 16 * i + o));
    assert_eq!(merge(0), [32, 104, 2, 258]);
    assert_eq!(merge(1), [104, 101, 0, 256]);
    let table = 1068 + 16 * 5;
    let n = 262;
    let padded = (table + 4 * (n + 1) + 4 * n + strings + 3) & !3;
    assert_eq!(section.len(), padded);
    let bpe = ByteBpe::from_section(&section).unwrap();
    assert_eq!(bpe.decode(258), b" h");
    assert_eq!(bpe.decode(261), b"<|endoftext|>");
    assert_eq!(bpe.merge(104, 101), Some((0, 256)));
    assert_eq!(bpe.merge(101, 104), None);
    assert_eq!(bpe.token(262), None);
    assert_eq!(bpe.decode(262), b"");
    assert_eq!(
        (bpe.bos_id(), bpe.eos_id(), bpe.add_bos()),
        (Some(261), Some(261), true)
    );
    assert_eq!(bpe.pre_tokenizer(), PreTokenizer::Gpt2);
    assert_eq!(bpe.added_token_ids().collect::<Vec<_>>(), [261]);
}

#[test]
fn merges_go_lowest_rank_first_then_leftmost() {
    let bpe_section = small_section();
    let bpe = ByteBpe::from_section(&bpe_section).unwrap();
    // BOS, then "hello": h e -> he (rank 0), he l -> hel (1); "l l" (rank 4) cannot
    // apply any more, the first l is inside hel.
    assert_eq!(encode(&bpe, b"hello", true).unwrap(), [261, 257, 108, 111]);
    // "llll": leftmost first on ties -> ll ll.
    assert_eq!(encode(&bpe, b"llll", true).unwrap(), [261, 260, 260]);
    assert_eq!(encode(&bpe, b"lll", true).unwrap(), [261, 260, 108]);
    // " hi" and special tokens, matched or not.
    assert_eq!(
        encode(&bpe, b" hi<|endoftext|>", true).unwrap(),
        [261, 259, 261]
    );
    // As plain text no merge applies: BOS and one byte token per byte.
    let plain = encode(&bpe, b"<|endoftext|>", false).unwrap();
    let bytes = b"<|endoftext|>".iter().map(|&b| u32::from(b));
    assert_eq!(plain, [261].into_iter().chain(bytes).collect::<Vec<_>>());
}

#[test]
fn encode_buffer_too_small_is_an_error() {
    let section = small_section();
    let bpe = ByteBpe::from_section(&section).unwrap();
    let text = b"hello world";
    let full = encode(&bpe, text, true).unwrap();
    for len in 0..encode_buffer_len(text.len(), true) {
        let mut out = vec![0u32; len];
        match bpe.encode(text, true, &mut out) {
            Ok(n) => assert_eq!(&out[..n], &full[..]),
            Err(e) => assert_eq!(
                e,
                TokenizerError::EncodeBufferTooSmall {
                    len,
                    needed: text.len() + 1
                }
            ),
        }
    }
    assert!(bpe.encode(text, true, &mut []).is_err());
}

#[test]
fn invalid_utf8_is_refused() {
    let section = small_section();
    let bpe = ByteBpe::from_section(&section).unwrap();
    assert_eq!(
        encode(&bpe, b"ab\xffcd", true),
        Err(TokenizerError::InvalidUtf8 { offset: 2 })
    );
    assert_eq!(
        encode(&bpe, b"\xe4\xbd", false),
        Err(TokenizerError::InvalidUtf8 { offset: 0 })
    );
}

#[test]
fn writer_errors() {
    use TokenizerError as E;
    let tokens = vocab(&["he", "<|x|>"]);
    let config = ByteBpeConfig::gpt2();
    assert_eq!(build(&[], &[], &[], &config), Err(E::EmptyVocab));
    // A byte without a token is allowed (SmolLM2 lacks 21): encoding drops it.
    assert!(build(&vocab(&[])[1..], &[], &[], &config).is_ok());
    for (merges, rank) in [
        (&["h e", "he"][..], 1),
        (&["h e", "h x y"], 1),
        (&["e h"], 0), // "eh" is not a token
        (&["h e", "h e"], 1),
        (&["Ġ e"], 0),
    ] {
        assert_eq!(
            build(&tokens, merges, &[], &config),
            Err(E::BadMerge { rank }),
            "{merges:?}"
        );
    }
    assert_eq!(
        build(&tokens, &[], &[258], &config),
        Err(E::AddedIdOutOfRange {
            index: 0,
            id: 258,
            vocab_size: 258
        })
    );
    let many: Vec<u32> = vec![257; MAX_ADDED_TOKENS as usize + 1];
    assert_eq!(
        build(&tokens, &[], &many, &config),
        Err(E::TooManyAddedTokens {
            count: MAX_ADDED_TOKENS + 1,
            limit: MAX_ADDED_TOKENS
        })
    );
    // "Ġ" and an added token " " are the same byte string.
    let mut clash = vocab(&[" "]);
    clash[256] = " ".into();
    assert_eq!(
        build(&clash, &[], &[256], &config),
        Err(E::DuplicateToken {
            first: 32,
            second: 256
        })
    );
    let empty = vocab(&[""]);
    assert_eq!(
        build(&empty, &[], &[256], &config),
        Err(E::EmptyToken { id: 256 })
    );
    for (bos, add_bos, id) in [(None, true, NO_TOKEN), (Some(258), false, 258)] {
        let config = ByteBpeConfig {
            bos_id: bos,
            add_bos,
            ..config
        };
        assert_eq!(
            build(&tokens, &[], &[], &config),
            Err(E::SpecialIdOutOfRange {
                which: SpecialToken::Bos,
                id,
                vocab_size: 258
            })
        );
    }
}

fn put(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn load(bytes: &[u8]) -> Result<(), TokenizerError> {
    ByteBpe::from_section(bytes).map(|_| ())
}

#[test]
fn every_validation_error_from_a_specific_corruption() {
    use TokenizerError as E;
    let good = small_section();
    assert_eq!(load(&good), Ok(()));
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = good.clone();
        f(&mut bytes);
        load(&bytes)
    };
    let merges = 1068;
    let offsets = merges + 16 * 5;

    assert_eq!(
        load(&good[..HEADER_LEN - 1]),
        Err(E::Truncated {
            needed: HEADER_LEN,
            len: HEADER_LEN - 1
        })
    );
    assert_eq!(
        load(&good[..good.len() - 4]),
        Err(E::LengthMismatch {
            expected: good.len(),
            len: good.len() - 4
        })
    );
    assert_eq!(
        with(&|b| b[..4].copy_from_slice(b"TFSP")),
        Err(E::BadMagic { found: *b"TFSP" })
    );
    assert_eq!(
        with(&|b| put(b, 4, 2)),
        Err(E::UnsupportedVersion { version: 2 })
    );
    assert_eq!(with(&|b| put(b, 8, 3)), Err(E::UnknownFlags { flags: 3 }));
    assert_eq!(with(&|b| put(b, 12, 0)), Err(E::EmptyVocab));
    assert_eq!(
        with(&|b| put(b, 16, 2)),
        Err(E::UnknownPreTokenizer { value: 2 })
    );
    for (at, which, id) in [
        (20, SpecialToken::Bos, 262),
        (20, SpecialToken::Bos, NO_TOKEN), // BOS required by the flag
        (24, SpecialToken::Eos, 262),
    ] {
        assert_eq!(
            with(&|b| put(b, at, id)),
            Err(E::SpecialIdOutOfRange {
                which,
                id,
                vocab_size: 262
            })
        );
    }
    assert_eq!(
        with(&|b| {
            put(b, 8, 0);
            put(b, 20, NO_TOKEN);
            put(b, 24, NO_TOKEN);
        }),
        Ok(())
    );
    assert_eq!(
        with(&|b| put(b, 32, MAX_ADDED_TOKENS + 1)),
        Err(E::TooManyAddedTokens {
            count: MAX_ADDED_TOKENS + 1,
            limit: MAX_ADDED_TOKENS
        })
    );
    assert_eq!(with(&|b| put(b, 28, u32::MAX)), Err(E::SizeOverflow));
    assert!(matches!(
        with(&|b| put(b, 28, 6)),
        Err(E::LengthMismatch { .. })
    ));
    // S = 281: three bytes of padding.
    let last = good.len() - 1;
    assert_eq!(
        with(&|b| b[last] = 1),
        Err(E::NonZeroPadding { offset: last })
    );
    assert_eq!(
        with(&|b| put(b, HEADER_LEN + 4 * 7, 8)),
        Err(E::ByteTokenMismatch { byte: 7, id: 8 })
    );
    assert_eq!(
        with(&|b| put(b, HEADER_LEN, 9999)),
        Err(E::ByteTokenMismatch { byte: 0, id: 9999 })
    );
    assert_eq!(
        with(&|b| put(b, 1064, 262)),
        Err(E::AddedIdOutOfRange {
            index: 0,
            id: 262,
            vocab_size: 262
        })
    );
    // Added token 261 -> token 255 (the single byte 0xFF): not UTF-8.
    assert_eq!(
        with(&|b| put(b, 1064, 255)),
        Err(E::TokenNotUtf8 { id: 255 })
    );
    assert_eq!(
        with(&|b| put(b, merges + 4, 262)),
        Err(E::MergeIdOutOfRange { index: 0, id: 262 })
    );
    assert_eq!(
        with(&|b| put(b, merges + 16, 1)), // (1, 101) after (32, 104)
        Err(E::MergesNotSorted { index: 1 })
    );
    assert_eq!(
        with(&|b| put(b, merges + 16 + 12, 257)), // h e -> "hel"
        Err(E::MergeResultMismatch { index: 1 })
    );
    assert_eq!(
        with(&|b| put(b, offsets, 1)),
        Err(E::BadOffset { id: 0, offset: 1 })
    );
    let index = offsets + 4 * 263;
    assert_eq!(
        with(&|b| put(b, index, 262)),
        Err(E::IndexOutOfRange {
            position: 0,
            id: 262
        })
    );
    assert_eq!(
        with(&|b| {
            let (first, second) = (index..index + 4, index + 4..index + 8);
            let (a, c) = (b[first.clone()].to_vec(), b[second.clone()].to_vec());
            b[first].copy_from_slice(&c);
            b[second].copy_from_slice(&a);
        }),
        Err(E::IndexNotSorted { position: 1 })
    );
}

#[test]
fn every_error_has_a_message() {
    use TokenizerError as E;
    for error in [
        E::UnknownPreTokenizer { value: 9 },
        E::ByteTokenMismatch { byte: 7, id: 8 },
        E::MergeIdOutOfRange { index: 1, id: 2 },
        E::MergesNotSorted { index: 3 },
        E::MergeResultMismatch { index: 4 },
        E::BadMerge { rank: 5 },
    ] {
        assert!(!error.to_string().is_empty());
    }
}

#[test]
fn fixture_round_trips_tricky_text() {
    let bpe = fixture();
    for text in [
        "",
        "  leading and trailing  ",
        "tabs\tand\nnewlines\r\n",
        "<|im_start|>user\n你好 😀<|im_end|>",
        "numbers 1234567890 ٣٤ ½",
        "it's we'll THEY'RE",
    ] {
        for special in [true, false] {
            let ids = encode(bpe, text.as_bytes(), special).unwrap();
            assert!(ids.iter().all(|&id| id < bpe.vocab_size()));
            assert_eq!(common::decode_bytebpe(bpe, &ids), text);
        }
    }
}

/// HF's BPE on one pre-token, one merge at a time, as the reference for the merge
/// order: the adjacent pair of lowest rank, the leftmost on ties.
fn reference_bpe(merges: &[(String, String)], word: &str) -> Vec<String> {
    let mut parts: Vec<String> = word.chars().map(String::from).collect();
    loop {
        let best = (0..parts.len().saturating_sub(1))
            .filter_map(|at| {
                let rank = merges
                    .iter()
                    .position(|(l, r)| *l == parts[at] && *r == parts[at + 1])?;
                Some((rank, at))
            })
            .min();
        let Some((_, at)) = best else {
            return parts;
        };
        let right = parts.remove(at + 1);
        parts[at].push_str(&right);
    }
}

/// A random merge list over the letters `a`, `b`, `c` in a random rank order (not the
/// order training would give: results may rank before the merges that make their
/// parts), with every result a token.
fn merges_strategy() -> impl Strategy<Value = Vec<(String, String)>> {
    (
        prop::collection::vec(
            (any::<prop::sample::Index>(), any::<prop::sample::Index>()),
            1..40,
        ),
        any::<u64>(),
    )
        .prop_map(|(picks, seed)| {
            let mut tokens: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
            let mut merges: Vec<(String, String)> = Vec::new();
            for (x, y) in picks {
                let (x, y) = (x.get(&tokens).clone(), y.get(&tokens).clone());
                if x.len() + y.len() <= 6 && !merges.contains(&(x.clone(), y.clone())) {
                    let merged = format!("{x}{y}");
                    if !tokens.contains(&merged) {
                        tokens.push(merged);
                    }
                    merges.push((x, y));
                }
            }
            // Fisher-Yates with a small LCG: a deterministic shuffle of the ranks.
            let mut state = seed | 1;
            for i in (1..merges.len()).rev() {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                merges.swap(i, (state >> 33) as usize % (i + 1));
            }
            merges
        })
}

fn text_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::char::range(' ', '~'),
            2 => prop::sample::select(vec!['\t', '\n', ' ', '\u{a0}', '\u{3000}', '\'', '7', 'é', '你', '😀']),
            1 => any::<char>(),
        ],
        0..48,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Any text comes back from decode, with or without special-token matching.
    #[test]
    fn fixture_round_trips_any_text(text in text_strategy(), special in any::<bool>()) {
        let bpe = fixture();
        let ids = encode(bpe, text.as_bytes(), special).unwrap();
        prop_assert!(ids.len() <= text.len());
        prop_assert!(ids.iter().all(|&id| id < bpe.vocab_size()));
        prop_assert_eq!(common::decode_bytebpe(bpe, &ids), text);
    }

    /// The pass-wise merge loop gives HF's one-merge-at-a-time result, for merge lists
    /// in any rank order.
    #[test]
    fn merges_follow_hf_order(merges in merges_strategy(), word in "[abc]{0,40}") {
        let mut extra: Vec<String> = Vec::new();
        for (l, r) in &merges {
            let merged = format!("{l}{r}");
            if !extra.contains(&merged) {
                extra.push(merged);
            }
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let lines: Vec<String> = merges.iter().map(|(l, r)| format!("{l} {r}")).collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let section = build(&vocab(&extra), &lines, &[], &ByteBpeConfig::gpt2()).unwrap();
        let bpe = ByteBpe::from_section(&section).unwrap();
        let expected: Vec<u32> = reference_bpe(&merges, &word)
            .iter()
            .map(|part| bpe.token_id(part.as_bytes()).unwrap())
            .collect();
        prop_assert_eq!(encode(&bpe, word.as_bytes(), true).unwrap(), expected);
    }

    /// Any bytes: ids for UTF-8, `InvalidUtf8` at the first bad byte otherwise.
    #[test]
    fn any_bytes_never_panic(text in prop::collection::vec(any::<u8>(), 0..64), special in any::<bool>()) {
        let bpe = fixture();
        match (encode(bpe, &text, special), std::str::from_utf8(&text)) {
            (Ok(ids), Ok(s)) => prop_assert_eq!(common::decode_bytebpe(bpe, &ids), s),
            (Err(TokenizerError::InvalidUtf8 { offset }), Err(e)) => {
                prop_assert_eq!(offset, e.valid_up_to())
            }
            (result, utf8) => prop_assert!(false, "{result:?} for {utf8:?}"),
        }
    }

    #[test]
    fn random_sections_never_panic(
        header in prop::collection::vec(any::<u32>(), 9),
        body in prop::collection::vec(any::<u8>(), 0..1600),
    ) {
        let mut bytes = SECTION_MAGIC.to_vec();
        for value in header {
            bytes.extend_from_slice(&value.to_le_bytes());
        }
        bytes.extend_from_slice(&body);
        let _ = ByteBpe::from_section(&bytes);
        let _ = ByteBpe::from_section(&body);
    }

    /// Corrupting bytes of a valid section: either an error, or a section that
    /// encodes and decodes any text without panicking, with ids in range.
    #[test]
    fn mutated_sections_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        text in prop::collection::vec(any::<u8>(), 0..32),
    ) {
        let mut bytes = small_section();
        for (at, value) in edits {
            let at = at.index(bytes.len());
            bytes[at] = value;
        }
        if let Ok(bpe) = ByteBpe::from_section(&bytes) {
            for special in [true, false] {
                if let Ok(ids) = encode(&bpe, &text, special) {
                    prop_assert!(ids.iter().all(|&id| id < bpe.vocab_size()));
                    let _ = common::decode_bytebpe(&bpe, &ids);
                }
            }
        }
    }
}
