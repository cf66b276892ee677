//! The llama2.c tokenizer (`tinyformer::tokenizer::sentencepiece`) and the streaming
//! detokenizer (`tinyformer::tokenizer::stream`).
//!
//! * Parity: `tests/fixtures/sentencepiece/stories260K.jsonl` holds llama2.c's own
//!   `encode` and `decode` output for 278 strings over `models/stories260K/tok512.bin`,
//!   made by `tools/reference/sp_tokenizer_goldens.py` (its docstring says how to
//!   regenerate it). Every id and every decoded byte must match.
//! * Round trips: ids -> `decode` -> `Utf8Stream` gives back the text (characters split
//!   over byte-fallback tokens included), or its lossy form for invalid UTF-8.
//! * Merge order: random small vocabularies with adversarial scores (ties, `-0.0`,
//!   `-1e10`, infinities) against a float model of llama2.c's loop.
//! * Hostile sections: every validation error from a specific corruption, and no panic
//!   on random or mutated bytes.

use std::path::PathBuf;

use proptest::prelude::*;
use serde_json::Value;
use tinyformer::tokenizer::sentencepiece::{
    encode_buffer_len, encode_section, merge_key, SentencePiece, SentencePieceConfig, HEADER_LEN,
    MAX_PIECE_LEN_LIMIT, MERGE_KEY_FLOOR, SECTION_MAGIC,
};
use tinyformer::tokenizer::stream::Utf8Stream;
use tinyformer::tokenizer::{SpecialToken, TokenizerError};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// llama2.c's `tokenizer.bin` (test-side reader; the host tool has its own, checked).
fn read_llama2c_tokenizer(vocab_size: usize) -> (Vec<Vec<u8>>, Vec<f32>) {
    let bytes = std::fs::read(repo("models/stories260K/tok512.bin")).expect("tok512.bin");
    let mut at = 4; // max_token_length
    let mut take = |n: usize| {
        let field = &bytes[at..at + n];
        at += n;
        field
    };
    let (mut pieces, mut scores) = (Vec::new(), Vec::new());
    for _ in 0..vocab_size {
        scores.push(f32::from_le_bytes(take(4).try_into().unwrap()));
        let len = i32::from_le_bytes(take(4).try_into().unwrap()) as usize;
        pieces.push(take(len).to_vec());
    }
    (pieces, scores)
}

fn section_from(pieces: &[Vec<u8>], scores: &[f32]) -> Result<Vec<u8>, TokenizerError> {
    let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
    encode_section(&refs, scores, &SentencePieceConfig::llama2c())
}

fn tok512_section() -> Vec<u8> {
    let (pieces, scores) = read_llama2c_tokenizer(512);
    section_from(&pieces, &scores).expect("tok512 section")
}

struct Golden {
    text: Vec<u8>,
    ids: Vec<u32>,
    decoded: Vec<Vec<u8>>,
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn goldens() -> Vec<Golden> {
    let raw = std::fs::read_to_string(repo("tests/fixtures/sentencepiece/stories260K.jsonl"))
        .expect("golden fixture");
    let mut lines = raw.lines();
    let provenance: Value = serde_json::from_str(lines.next().expect("provenance")).unwrap();
    let provenance = &provenance["provenance"];
    assert_eq!(provenance["tokenizer"], "models/stories260K/tok512.bin");
    assert_eq!(
        provenance["tokenizer_sha256"],
        "037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312"
    );
    lines
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("golden line is JSON");
            let text = match v["text"].as_str() {
                Some(text) => text.as_bytes().to_vec(),
                None => hex(v["hex"].as_str().expect("text or hex")),
            };
            let ids = v["ids"].as_array().expect("ids");
            let decoded = v["decoded"].as_array().expect("decoded");
            Golden {
                text,
                ids: ids.iter().map(|id| id.as_u64().unwrap() as u32).collect(),
                decoded: decoded.iter().map(|d| hex(d.as_str().unwrap())).collect(),
            }
        })
        .collect()
}

fn encode(sp: &SentencePiece<'_>, text: &[u8], bos: bool) -> Vec<u32> {
    let mut out = vec![u32::MAX; encode_buffer_len(text.len(), bos)];
    let n = sp.encode(text, bos, &mut out).expect("encode");
    out.truncate(n);
    out
}

/// `decode` of every token after BOS, through a `Utf8Stream`, one push per token.
fn detokenize(sp: &SentencePiece<'_>, ids: &[u32]) -> (String, Vec<String>) {
    let mut stream = Utf8Stream::new();
    let (mut text, mut chunks) = (String::new(), Vec::new());
    for pair in ids.windows(2) {
        stream.push(sp.decode(pair[0], pair[1]), |s| {
            text.push_str(s);
            chunks.push(s.to_owned());
        });
    }
    stream.finish(|s| {
        text.push_str(s);
        chunks.push(s.to_owned());
    });
    (text, chunks)
}

#[test]
fn goldens_cover_the_brief() {
    let goldens = goldens();
    assert!(goldens.len() >= 200, "{} goldens", goldens.len());
    let has = |f: &dyn Fn(&Golden) -> bool| goldens.iter().any(f);
    assert!(has(&|g| g.text.is_empty()));
    assert!(has(&|g| std::str::from_utf8(&g.text).is_err()));
    assert!(has(&|g| g.text.windows(3).any(|w| w == b"   ")));
    assert!(has(&|g| String::from_utf8_lossy(&g.text).contains('😀')));
    assert!(has(&|g| String::from_utf8_lossy(&g.text).contains('好')));
    assert!(has(&|g| String::from_utf8_lossy(&g.text).contains('é')));
    // Byte fallback is exercised: ids in 3..259 appear.
    assert!(has(&|g| g.ids.iter().any(|&id| (3..259).contains(&id))));
}

#[test]
fn encode_matches_llama2c() {
    let section = tok512_section();
    let sp = SentencePiece::from_section(&section).unwrap();
    for golden in goldens() {
        let text = String::from_utf8_lossy(&golden.text);
        assert_eq!(encode(&sp, &golden.text, true), golden.ids, "{text:?}");
        // Without BOS: the same merges (no piece contains `\n<s>\n`).
        assert_eq!(
            encode(&sp, &golden.text, false),
            golden.ids[1..],
            "{text:?} without BOS"
        );
    }
}

#[test]
fn decode_matches_llama2c() {
    let section = tok512_section();
    let sp = SentencePiece::from_section(&section).unwrap();
    for golden in goldens() {
        let decoded: Vec<&[u8]> = golden
            .ids
            .windows(2)
            .map(|pair| sp.decode(pair[0], pair[1]))
            .collect();
        assert_eq!(
            decoded,
            golden.decoded,
            "{:?}",
            String::from_utf8_lossy(&golden.text)
        );
        assert_eq!(decoded.concat(), golden.text);
    }
}

#[test]
fn stream_round_trips_goldens() {
    let section = tok512_section();
    let sp = SentencePiece::from_section(&section).unwrap();
    for golden in goldens() {
        let (text, chunks) = detokenize(&sp, &golden.ids);
        assert_eq!(text, String::from_utf8_lossy(&golden.text));
        if std::str::from_utf8(&golden.text).is_ok() {
            // Chunks are whole characters: their concatenation never needed a replacement.
            assert!(!chunks.iter().any(|c| c.contains('\u{FFFD}')), "{text:?}");
        }
    }
}

#[test]
fn characters_split_over_byte_tokens_come_out_whole() {
    let section = tok512_section();
    let sp = SentencePiece::from_section(&section).unwrap();
    let ids = encode(&sp, "你好 😀!".as_bytes(), true);
    // 你 and 好 and 😀 are not pieces: 3 + 3 + 4 byte-fallback tokens.
    let bytes = ids.iter().filter(|&&id| (3..259).contains(&id)).count();
    assert_eq!(bytes, 10, "{ids:?}");
    let (text, chunks) = detokenize(&sp, &ids);
    assert_eq!(text, "你好 😀!");
    for chunk in &chunks {
        for c in chunk.chars() {
            assert_ne!(c, '\u{FFFD}');
        }
    }
    assert!(chunks.contains(&"你".to_owned()), "{chunks:?}");
    assert!(chunks.contains(&"😀".to_owned()), "{chunks:?}");
    // Invalid UTF-8 round-trips to its lossy form.
    let ids = encode(&sp, b"a\xe5\xa5b\xff", true);
    assert_eq!(detokenize(&sp, &ids).0, "a\u{FFFD}b\u{FFFD}");
}

#[test]
fn tok512_section_matches_the_documented_layout() {
    let section = tok512_section();
    let (pieces, scores) = read_llama2c_tokenizer(512);
    let strings: usize = pieces.iter().map(Vec::len).sum();
    let word = |at: usize| u32::from_le_bytes(section[at..at + 4].try_into().unwrap());
    assert_eq!(
        section.len(),
        (HEADER_LEN + 4 + 12 * 512 + strings + 3) & !3
    );
    assert_eq!(section.len(), 8316);
    assert_eq!(&section[..4], &SECTION_MAGIC);
    assert_eq!(
        [4, 8, 12, 16, 20, 24, 28, 32, 36].map(word),
        [1, 0, 512, 0, 1, 2, 3, 7, strings as u32]
    );
    for (id, &score) in scores.iter().enumerate() {
        assert_eq!(word(40 + 4 * id) as i32, merge_key(score));
    }
    let offsets = 40 + 4 * 512;
    let index = offsets + 4 * 513;
    let area = index + 4 * 512;
    for (id, piece) in pieces.iter().enumerate() {
        let (start, end) = (word(offsets + 4 * id), word(offsets + 4 * id + 4));
        assert_eq!(
            &section[area + start as usize..area + end as usize],
            &piece[..]
        );
    }
    let sorted: Vec<&Vec<u8>> = (0..512)
        .map(|p| &pieces[word(index + 4 * p) as usize])
        .collect();
    assert!(sorted.windows(2).all(|w| w[0] < w[1]));

    let sp = SentencePiece::from_section(&section).unwrap();
    assert_eq!(
        (sp.vocab_size(), sp.bos_id(), sp.eos_id(), sp.unk_id()),
        (512, 1, 2, 0)
    );
    assert_eq!((sp.byte_fallback_base(), sp.max_piece_len()), (3, 7));
    for (id, piece) in pieces.iter().enumerate() {
        assert_eq!(sp.piece(id as u32), Some(&piece[..]));
        assert_eq!(sp.token_id(piece), Some(id as u32));
        assert_eq!(sp.score_key(id as u32), Some(merge_key(scores[id])));
    }
    assert_eq!(sp.piece(512), None);
    assert_eq!(sp.score_key(512), None);
    assert_eq!(sp.token_id(b"not a piece"), None);
    assert_eq!(sp.token_id(b""), None);
}

#[test]
fn decode_rules() {
    let section = tok512_section();
    let sp = SentencePiece::from_section(&section).unwrap();
    let the = sp.token_id(b" the").unwrap();
    assert_eq!(sp.decode(1, the), b"the"); // after BOS
    assert_eq!(sp.decode(the, the), b" the");
    for byte in 0..=255u8 {
        let id = 3 + u32::from(byte);
        assert_eq!(sp.decode(1, id), &[byte]);
        assert_eq!(sp.decode(the, id), &[byte]);
    }
    assert_eq!(sp.decode(1, 1), b"\n<s>\n");
    assert_eq!(sp.decode(1, 512), b"");
    assert_eq!(sp.decode(1, u32::MAX), b"");
}

#[test]
fn encode_buffer_too_small_is_an_error() {
    let section = tok512_section();
    let sp = SentencePiece::from_section(&section).unwrap();
    // "你好" before merging: BOS, dummy prefix, 6 fallback bytes.
    let text = "你好".as_bytes();
    let mut out = [0u32; 7];
    assert_eq!(
        sp.encode(text, true, &mut out),
        Err(TokenizerError::EncodeBufferTooSmall { len: 7, needed: 8 })
    );
    let mut out = [0u32; 8];
    assert_eq!(sp.encode(text, true, &mut out), Ok(8));
    // "hello": 5 codepoints that are pieces, merged down afterwards.
    let mut out = [0u32; 6];
    assert_eq!(
        sp.encode(b"hello", true, &mut out),
        Err(TokenizerError::EncodeBufferTooSmall { len: 6, needed: 7 })
    );
    let mut out = [0u32; 7];
    let n = sp.encode(b"hello", true, &mut out).unwrap();
    assert!(n < 7);
    assert_eq!(sp.encode(b"", false, &mut []), Ok(0));
    assert_eq!(
        sp.encode(b"", true, &mut []),
        Err(TokenizerError::EncodeBufferTooSmall { len: 0, needed: 1 })
    );
    let mut out = [0u32; 1];
    assert_eq!(sp.encode(b"", true, &mut out), Ok(1));
    assert_eq!(out, [1]);
}

// ---------------------------------------------------------------------------------
// Synthetic vocabularies: merge order against a float model of llama2.c's loop.

/// `<unk>`, `<s>`, `</s>`, the 256 byte pieces (score 0), then `extra`.
fn vocab(extra: &[(&[u8], f32)]) -> (Vec<Vec<u8>>, Vec<f32>) {
    let mut pieces: Vec<Vec<u8>> =
        vec![b"<unk>".to_vec(), b"\n<s>\n".to_vec(), b"\n</s>\n".to_vec()];
    pieces.extend((0..=255u8).map(|b| format!("<0x{b:02X}>").into_bytes()));
    let mut scores = vec![0.0; pieces.len()];
    for &(piece, score) in extra {
        pieces.push(piece.to_vec());
        scores.push(score);
    }
    (pieces, scores)
}

/// llama2.c's `encode` in plain float terms (strings, f32 `>`, -1e10 start), as the
/// independent model the integer keys must reproduce.
fn reference_encode(pieces: &[Vec<u8>], scores: &[f32], text: &[u8], bos: bool) -> Vec<u32> {
    let lookup = |s: &[u8]| pieces.iter().position(|p| p == s).map(|i| i as u32);
    let mut tokens = Vec::new();
    if bos {
        tokens.push(1);
    }
    if !text.is_empty() {
        tokens.push(lookup(b" ").unwrap_or(3 + 0x20));
    }
    let mut i = 0;
    while i < text.len() {
        let mut j = i + 1;
        while j < text.len() && j - i < 4 && text[j] & 0xC0 == 0x80 {
            j += 1;
        }
        match lookup(&text[i..j]) {
            Some(id) => tokens.push(id),
            None => tokens.extend(text[i..j].iter().map(|&b| 3 + u32::from(b))),
        }
        i = j;
    }
    loop {
        let mut best_score = -1e10f32;
        let mut best = None;
        for i in 0..tokens.len().saturating_sub(1) {
            let joined = [
                &pieces[tokens[i] as usize][..],
                &pieces[tokens[i + 1] as usize],
            ]
            .concat();
            if let Some(id) = lookup(&joined) {
                if scores[id as usize] > best_score {
                    best_score = scores[id as usize];
                    best = Some((i, id));
                }
            }
        }
        let Some((i, id)) = best else { break };
        tokens[i] = id;
        tokens.remove(i + 1);
    }
    tokens
}

#[test]
fn ties_go_to_the_leftmost_pair_and_zero_signs_tie() {
    // "ab" and "bc" both score -0.0 / +0.0 (equal in f32): in "abc" the left pair wins.
    for (ab, bc) in [(0.0, 0.0), (-0.0, 0.0), (0.0, -0.0), (-5.0, -5.0)] {
        let (pieces, scores) = vocab(&[
            (b" ", -1.0),
            (b"a", -1.0),
            (b"b", -1.0),
            (b"c", -1.0),
            (b"ab", ab),
            (b"bc", bc),
        ]);
        let section = section_from(&pieces, &scores).unwrap();
        let sp = SentencePiece::from_section(&section).unwrap();
        let ids = encode(&sp, b"abc", false);
        let expect = reference_encode(&pieces, &scores, b"abc", false);
        assert_eq!(ids, expect);
        assert_eq!(ids[1], sp.token_id(b"ab").unwrap(), "{ab} {bc}");
    }
}

#[test]
fn merge_threshold_is_exclusive_minus_1e10() {
    let just_above = f32::from_bits((-1e10f32).to_bits() - 1);
    assert!(just_above > -1e10);
    for (score, merges) in [
        (-1e10f32, false),
        (f32::NEG_INFINITY, false),
        (f32::MIN, false),
        (just_above, true),
        (f32::INFINITY, true),
    ] {
        let (pieces, scores) = vocab(&[(b" ", 0.0), (b"x", 0.0), (b"y", 0.0), (b"xy", score)]);
        let section = section_from(&pieces, &scores).unwrap();
        let sp = SentencePiece::from_section(&section).unwrap();
        let ids = encode(&sp, b"xy", false);
        assert_eq!(ids, reference_encode(&pieces, &scores, b"xy", false));
        assert_eq!(ids.len() == 2, merges, "score {score}");
    }
    assert!(merge_key(just_above) > MERGE_KEY_FLOOR);
}

#[test]
fn dummy_prefix_falls_back_to_the_space_byte() {
    let (pieces, scores) = vocab(&[(b"a", 0.0)]);
    let section = section_from(&pieces, &scores).unwrap();
    let sp = SentencePiece::from_section(&section).unwrap();
    assert_eq!(encode(&sp, b"a", true), [1, 3 + 0x20, 259]);
    assert_eq!(encode(&sp, b"", true), [1]);
}

fn piece_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(b" abc\xc3\xa9".to_vec()), 1..5)
}

fn score_strategy() -> impl Strategy<Value = f32> {
    prop_oneof![
        Just(0.0f32),
        Just(-0.0f32),
        Just(-1e10f32),
        Just(f32::NEG_INFINITY),
        Just(f32::INFINITY),
        (-4i32..4).prop_map(|s| s as f32),
        any::<f32>().prop_filter("not NaN", |s| !s.is_nan()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Integer merge keys choose exactly what llama2.c's float scores choose.
    #[test]
    fn encode_matches_float_reference(
        extra in prop::collection::vec((piece_strategy(), score_strategy()), 1..24),
        text in prop::collection::vec(prop::sample::select(b" abc\xc3\xa9\x80!".to_vec()), 0..24),
        bos in any::<bool>(),
    ) {
        let mut seen = std::collections::HashSet::new();
        let extra: Vec<(&[u8], f32)> = extra
            .iter()
            .filter(|(p, _)| seen.insert(p.clone()))
            .map(|(p, s)| (&p[..], *s))
            .collect();
        let (pieces, scores) = vocab(&extra);
        let section = section_from(&pieces, &scores).unwrap();
        let sp = SentencePiece::from_section(&section).unwrap();
        let ids = encode(&sp, &text, bos);
        prop_assert_eq!(&ids, &reference_encode(&pieces, &scores, &text, bos));
        // Decoding gives the text back: after BOS, the dummy prefix's space is stripped;
        // without BOS it stays, and so it does when the vocabulary has no " " piece (the
        // dummy prefix is then the byte piece <0x20>, whose text does not start with a
        // space).
        let strips = bos && sp.token_id(b" ").is_some();
        let mut decoded = Vec::new();
        let mut prev = if bos { 1 } else { u32::MAX };
        for &id in if bos { &ids[1..] } else { &ids[..] } {
            decoded.extend_from_slice(sp.decode(prev, id));
            prev = id;
        }
        let mut expected = if strips || text.is_empty() { Vec::new() } else { b" ".to_vec() };
        expected.extend_from_slice(&text);
        prop_assert_eq!(decoded, expected);
    }

    /// Any bytes encode with the real vocabulary, and decode back to themselves.
    #[test]
    fn tok512_round_trips_any_bytes(text in prop::collection::vec(any::<u8>(), 0..64)) {
        let section = tok512_section();
        let sp = SentencePiece::from_section(&section).unwrap();
        let ids = encode(&sp, &text, true);
        prop_assert!(ids.iter().all(|&id| id < 512));
        let decoded: Vec<u8> = ids.windows(2).flat_map(|p| sp.decode(p[0], p[1]).to_vec()).collect();
        prop_assert_eq!(&decoded, &text);
        let mut streamed = String::new();
        let mut stream = Utf8Stream::new();
        for pair in ids.windows(2) {
            stream.push(sp.decode(pair[0], pair[1]), |s| streamed.push_str(s));
        }
        stream.finish(|s| streamed.push_str(s));
        prop_assert_eq!(streamed, String::from_utf8_lossy(&text));
    }
}

// ---------------------------------------------------------------------------------
// Writer errors.

#[test]
fn writer_errors() {
    use TokenizerError as E;
    let (pieces, scores) = vocab(&[(b" ", -1.0), (b"ab", -2.0)]);
    let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
    let config = SentencePieceConfig::llama2c();
    assert_eq!(
        encode_section(&refs, &scores[1..], &config),
        Err(E::ScoreCountMismatch {
            pieces: 261,
            scores: 260
        })
    );
    assert_eq!(encode_section(&[], &[], &config), Err(E::EmptyVocab));
    let mut nan = scores.clone();
    nan[260] = f32::NAN;
    assert_eq!(
        encode_section(&refs, &nan, &config),
        Err(E::NanScore { id: 260 })
    );
    let long = vec![b'a'; MAX_PIECE_LEN_LIMIT as usize + 1];
    let mut too_long = refs.clone();
    too_long[260] = &long;
    assert_eq!(
        encode_section(&too_long, &scores, &config),
        Err(E::PieceTooLong {
            id: 260,
            len: 257,
            limit: 256
        })
    );
    let mut duplicate = refs.clone();
    duplicate[260] = b" ";
    assert_eq!(
        encode_section(&duplicate, &scores, &config),
        Err(E::DuplicateToken {
            first: 259,
            second: 260
        })
    );
    let bad = |config: SentencePieceConfig| encode_section(&refs, &scores, &config);
    assert_eq!(
        bad(SentencePieceConfig {
            eos_id: 261,
            ..config
        }),
        Err(E::SpecialIdOutOfRange {
            which: SpecialToken::Eos,
            id: 261,
            vocab_size: 261
        })
    );
    assert_eq!(
        bad(SentencePieceConfig {
            byte_fallback_base: 6,
            ..config
        }),
        Err(E::ByteFallbackOutOfRange {
            base: 6,
            vocab_size: 261
        })
    );
    assert_eq!(
        bad(SentencePieceConfig {
            byte_fallback_base: 4,
            ..config
        }),
        Err(E::ByteFallbackPiece { id: 4, byte: 0 })
    );
    // The largest piece allowed is fine.
    let longest = vec![b'a'; MAX_PIECE_LEN_LIMIT as usize];
    let mut ok = refs.clone();
    ok[260] = &longest;
    let section = encode_section(&ok, &scores, &config).unwrap();
    let sp = SentencePiece::from_section(&section).unwrap();
    assert_eq!(sp.max_piece_len(), 256);
}

// ---------------------------------------------------------------------------------
// Hostile sections.

fn put(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn word(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn load(bytes: &[u8]) -> Result<(), TokenizerError> {
    SentencePiece::from_section(bytes).map(|_| ())
}

#[test]
fn every_validation_error_from_a_specific_corruption() {
    use TokenizerError as E;
    let good = tok512_section();
    assert_eq!(load(&good), Ok(()));
    let n = 512usize;
    let strings = word(&good, 36);
    let offsets = 40 + 4 * n;
    let index = offsets + 4 * (n + 1);
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = good.clone();
        f(&mut bytes);
        load(&bytes)
    };

    for len in [0, 1, 4, HEADER_LEN - 1] {
        assert_eq!(
            load(&good[..len]),
            Err(E::Truncated {
                needed: HEADER_LEN,
                len
            })
        );
    }
    for len in [HEADER_LEN, 1000, good.len() - 4, good.len() - 1] {
        assert_eq!(
            load(&good[..len]),
            Err(E::LengthMismatch {
                expected: good.len(),
                len
            })
        );
    }
    let mut longer = good.clone();
    longer.extend_from_slice(&[0; 4]);
    assert_eq!(
        load(&longer),
        Err(E::LengthMismatch {
            expected: good.len(),
            len: good.len() + 4
        })
    );
    assert_eq!(
        with(&|b| b[..4].copy_from_slice(b"TFTK")),
        Err(E::BadMagic { found: *b"TFTK" })
    );
    assert_eq!(
        with(&|b| put(b, 4, 2)),
        Err(E::UnsupportedVersion { version: 2 })
    );
    assert_eq!(
        with(&|b| put(b, 8, 0x10)),
        Err(E::UnknownFlags { flags: 0x10 })
    );
    assert_eq!(with(&|b| put(b, 12, 0)), Err(E::EmptyVocab));
    for (at, which) in [
        (16, SpecialToken::Unk),
        (20, SpecialToken::Bos),
        (24, SpecialToken::Eos),
    ] {
        assert_eq!(
            with(&|b| put(b, at, 512)),
            Err(E::SpecialIdOutOfRange {
                which,
                id: 512,
                vocab_size: 512
            })
        );
    }
    for base in [257, u32::MAX - 255, u32::MAX] {
        assert_eq!(
            with(&|b| put(b, 28, base)),
            Err(E::ByteFallbackOutOfRange {
                base,
                vocab_size: 512
            })
        );
    }
    assert_eq!(
        with(&|b| put(b, 28, 4)),
        Err(E::ByteFallbackPiece { id: 4, byte: 0 })
    );
    for value in [0, MAX_PIECE_LEN_LIMIT + 1, u32::MAX] {
        assert_eq!(
            with(&|b| put(b, 32, value)),
            Err(E::MaxPieceLen {
                value,
                limit: MAX_PIECE_LEN_LIMIT
            })
        );
    }
    for declared in [6, 8, 256] {
        assert_eq!(
            with(&|b| put(b, 32, declared)),
            Err(E::MaxPieceLenMismatch {
                declared,
                actual: 7
            })
        );
    }
    // A header that claims far more than the bytes present.
    assert!(matches!(
        with(&|b| put(b, 12, u32::MAX)),
        Err(E::LengthMismatch { .. } | E::SizeOverflow)
    ));
    assert!(matches!(
        with(&|b| put(b, 36, u32::MAX)),
        Err(E::LengthMismatch { .. } | E::SizeOverflow)
    ));
    // Padding (the section is 8315 bytes of content + 1 of padding).
    assert_eq!(
        with(&|b| *b.last_mut().unwrap() = 1),
        Err(E::NonZeroPadding {
            offset: good.len() - 1
        })
    );
    // Offsets.
    assert_eq!(
        with(&|b| put(b, offsets, 1)),
        Err(E::BadOffset { id: 0, offset: 1 })
    );
    let off = |id: usize| word(&good, offsets + 4 * id);
    assert_eq!(
        with(&|b| put(b, offsets + 4 * 100, off(99) - 1)),
        Err(E::BadOffset {
            id: 100,
            offset: off(99) - 1
        })
    );
    assert_eq!(
        with(&|b| put(b, offsets + 4 * 300, strings + 1)),
        Err(E::BadOffset {
            id: 300,
            offset: strings + 1
        })
    );
    assert_eq!(
        with(&|b| put(b, offsets + 4 * n, strings - 1)),
        Err(E::BadOffset {
            id: 512,
            offset: strings - 1
        })
    );
    // Moving a boundary changes two pieces: still monotone and in range, but a byte
    // piece breaks, or the longest piece grows past the declared 7 bytes.
    assert_eq!(
        with(&|b| put(b, offsets + 4 * 4, off(4) + 1)),
        Err(E::ByteFallbackPiece { id: 3, byte: 0 })
    );
    let grow = (260..n).find(|&k| off(k + 1) - off(k - 1) > 7).unwrap();
    assert_eq!(
        with(&|b| put(b, offsets + 4 * grow, off(grow + 1))),
        Err(E::MaxPieceLenMismatch {
            declared: 7,
            actual: off(grow + 1) - off(grow - 1)
        })
    );
    // A byte piece's text.
    let area = index + 4 * n;
    let piece_at = area + off(3 + 0x41) as usize;
    assert_eq!(&good[piece_at..piece_at + 6], b"<0x41>");
    assert_eq!(
        with(&|b| b[piece_at + 4] = b'2'),
        Err(E::ByteFallbackPiece {
            id: 3 + 0x41,
            byte: 0x41
        })
    );
    // Index.
    assert_eq!(
        with(&|b| put(b, index + 4 * 7, 512)),
        Err(E::IndexOutOfRange {
            position: 7,
            id: 512
        })
    );
    let swapped = with(&|b| {
        let (x, y) = (word(b, index + 40), word(b, index + 44));
        put(b, index + 40, y);
        put(b, index + 44, x);
    });
    assert_eq!(swapped, Err(E::IndexNotSorted { position: 11 }));
    let duplicated = with(&|b| {
        let x = word(b, index + 40);
        put(b, index + 44, x);
    });
    assert_eq!(duplicated, Err(E::IndexNotSorted { position: 11 }));
    // Two equal pieces: " a" (261) edited into " t" (259). Strict order refuses it.
    let area_a = area + off(261) as usize;
    assert_eq!(&good[area_a..area_a + 2], b" a");
    assert!(matches!(
        with(&|b| b[area_a + 1] = b't'),
        Err(E::IndexNotSorted { .. })
    ));
}

#[test]
fn every_error_has_a_message() {
    use TokenizerError as E;
    for error in [
        E::ByteFallbackOutOfRange {
            base: 3,
            vocab_size: 10,
        },
        E::ByteFallbackPiece { id: 4, byte: 1 },
        E::MaxPieceLen {
            value: 0,
            limit: 256,
        },
        E::MaxPieceLenMismatch {
            declared: 6,
            actual: 7,
        },
        E::PieceTooLong {
            id: 1,
            len: 300,
            limit: 256,
        },
        E::NanScore { id: 5 },
        E::ScoreCountMismatch {
            pieces: 2,
            scores: 1,
        },
        E::EncodeBufferTooSmall { len: 1, needed: 2 },
    ] {
        assert!(!error.to_string().is_empty());
    }
    assert!(E::ByteFallbackPiece { id: 4, byte: 1 }
        .to_string()
        .contains("<0x01>"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Random bytes behind a valid-looking header never panic the validator.
    #[test]
    fn random_sections_never_panic(
        header in prop::collection::vec(any::<u32>(), 9),
        body in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut bytes = SECTION_MAGIC.to_vec();
        for value in header {
            bytes.extend_from_slice(&value.to_le_bytes());
        }
        bytes.extend_from_slice(&body);
        let _ = SentencePiece::from_section(&bytes);
        let _ = SentencePiece::from_section(&body);
    }

    /// Corrupting bytes of the real section: either a specific error, or a section that
    /// still encodes and decodes any text without panicking, with ids in range.
    #[test]
    fn mutated_sections_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        text in prop::collection::vec(any::<u8>(), 0..32),
    ) {
        let mut bytes = tok512_section();
        for (at, value) in edits {
            let at = at.index(bytes.len());
            bytes[at] = value;
        }
        if let Ok(sp) = SentencePiece::from_section(&bytes) {
            let ids = encode(&sp, &text, true);
            prop_assert!(ids.iter().all(|&id| id < sp.vocab_size()));
            for pair in ids.windows(2) {
                let _ = sp.decode(pair[0], pair[1]);
            }
        }
    }
}
