//! The tokenizer section: layout constants, the one-pass validator, and the writer.
//! See the [module docs](super) for the byte layout.

use super::error::{SpecialToken, TokenizerError};

/// First four bytes of a tokenizer section.
pub const SECTION_MAGIC: [u8; 4] = *b"TFTK";
/// Layout version written and accepted by this crate.
pub const SECTION_VERSION: u32 = 1;
/// Bytes in the fixed header.
pub const HEADER_LEN: usize = 44;
/// Largest `max_word_chars` a section may declare; sizes the on-stack word buffer
/// (4 bytes per char).
pub const MAX_WORD_CHARS_LIMIT: u32 = 128;
/// Largest number of added (literal) tokens a section may list.
pub const MAX_ADDED_TOKENS: u32 = 16;

pub(crate) const FLAG_LOWERCASE: u32 = 1 << 0;
pub(crate) const FLAG_STRIP_ACCENTS: u32 = 1 << 1;
pub(crate) const FLAG_CHINESE_CHARS: u32 = 1 << 2;
pub(crate) const FLAG_CLEAN_TEXT: u32 = 1 << 3;
const KNOWN_FLAGS: u32 = FLAG_LOWERCASE | FLAG_STRIP_ACCENTS | FLAG_CHINESE_CHARS | FLAG_CLEAN_TEXT;

// Header field offsets (all u32 little-endian after the magic).
const AT_VERSION: usize = 4;
const AT_FLAGS: usize = 8;
const AT_VOCAB_SIZE: usize = 12;
const AT_UNK: usize = 16;
const AT_CLS: usize = 20;
const AT_SEP: usize = 24;
const AT_PAD: usize = 28;
const AT_MAX_WORD_CHARS: usize = 32;
const AT_ADDED_COUNT: usize = 36;
const AT_STRINGS_LEN: usize = 40;

/// Writer-side description of a WordPiece tokenizer (HF `BertNormalizer` flags,
/// WordPiece limits and the special tokens, by string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenizerConfig<'s> {
    /// Lowercase every char (HF `lowercase` / `do_lower_case`).
    pub lowercase: bool,
    /// NFD and drop nonspacing marks (HF `strip_accents`; resolve HF's `None` to
    /// the value of `lowercase` before building the section).
    pub strip_accents: bool,
    /// Put CJK ideographs in words of their own (HF `handle_chinese_chars` /
    /// `tokenize_chinese_chars`).
    pub chinese_chars: bool,
    /// Drop control and format chars and map whitespace to a space (HF `clean_text`).
    pub clean_text: bool,
    /// Words longer than this many chars (after normalization) become `unk`
    /// (HF `max_input_chars_per_word`, 100 in BERT). 1..=[`MAX_WORD_CHARS_LIMIT`].
    pub max_word_chars: u32,
    /// Unknown-word token string.
    pub unk_token: &'s str,
    /// Sequence-start token string.
    pub cls_token: &'s str,
    /// Sequence-end token string.
    pub sep_token: &'s str,
    /// Padding token string.
    pub pad_token: &'s str,
    /// Tokens recognised verbatim in the raw text before any normalization (HF added
    /// tokens with `normalized: false`, e.g. all five BERT specials). At most
    /// [`MAX_ADDED_TOKENS`].
    pub added_tokens: &'s [&'s str],
}

/// The five special tokens of BERT checkpoints, all matched in raw text by HF.
pub const BERT_ADDED_TOKENS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

impl TokenizerConfig<'static> {
    /// Uncased BERT (`bert-base-uncased`, MiniLM, ...): lowercase, strip accents.
    pub const fn bert_uncased() -> Self {
        TokenizerConfig {
            lowercase: true,
            strip_accents: true,
            chinese_chars: true,
            clean_text: true,
            max_word_chars: 100,
            unk_token: "[UNK]",
            cls_token: "[CLS]",
            sep_token: "[SEP]",
            pad_token: "[PAD]",
            added_tokens: &BERT_ADDED_TOKENS,
        }
    }

    /// Cased BERT: no lowercasing, no accent stripping.
    pub const fn bert_cased() -> Self {
        let mut config = Self::bert_uncased();
        config.lowercase = false;
        config.strip_accents = false;
        config
    }
}

/// Reads the little-endian `u32` at byte `at`; 0 when out of range (never after
/// validation).
/// The start every tokenizer section shares: at least `header_len` bytes, the 4-byte
/// `magic`, then the `u32` version at byte 4 (flags follow at byte 8).
pub(crate) fn check_preamble(
    section: &[u8],
    header_len: usize,
    magic: [u8; 4],
    version: u32,
) -> Result<(), TokenizerError> {
    use TokenizerError as E;
    if section.len() < header_len {
        return Err(E::Truncated {
            needed: header_len,
            len: section.len(),
        });
    }
    let mut found = [0u8; 4];
    found.copy_from_slice(section.get(..4).unwrap_or(&[0; 4]));
    if found != magic {
        return Err(E::BadMagic { found });
    }
    let found = u32_at(section, AT_VERSION);
    if found != version {
        return Err(E::UnsupportedVersion { version: found });
    }
    Ok(())
}

pub(crate) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    at.checked_add(4)
        .and_then(|end| bytes.get(at..end))
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_le_bytes)
}

/// Reads entry `index` of a little-endian `u32` array.
pub(crate) fn u32_entry(bytes: &[u8], index: usize) -> u32 {
    index.checked_mul(4).map_or(0, |at| u32_at(bytes, at))
}

/// Byte ranges of the variable-size parts, from the header counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) added: (usize, usize),
    pub(crate) offsets: (usize, usize),
    pub(crate) index: (usize, usize),
    pub(crate) strings: (usize, usize),
    /// Total length, padded to a multiple of 4.
    pub(crate) padded_len: usize,
}

impl Layout {
    pub(crate) fn new(vocab_size: u32, added_count: u32, strings_len: u32) -> Option<Layout> {
        let n = usize::try_from(vocab_size).ok()?;
        let words = |count: usize| count.checked_mul(4);
        let added = (
            HEADER_LEN,
            HEADER_LEN.checked_add(words(usize::try_from(added_count).ok()?)?)?,
        );
        let offsets = (added.1, added.1.checked_add(words(n.checked_add(1)?)?)?);
        let index = (offsets.1, offsets.1.checked_add(words(n)?)?);
        let strings = (
            index.1,
            index.1.checked_add(usize::try_from(strings_len).ok()?)?,
        );
        let padded_len = strings.1.checked_add(3)? & !3;
        Some(Layout {
            added,
            offsets,
            index,
            strings,
            padded_len,
        })
    }
}

/// The validated header fields and sub-slices of a section.
#[derive(Clone, Copy)]
pub(crate) struct Section<'a> {
    pub(crate) flags: u32,
    pub(crate) vocab_size: u32,
    pub(crate) unk: u32,
    pub(crate) cls: u32,
    pub(crate) sep: u32,
    pub(crate) pad: u32,
    pub(crate) max_word_chars: u32,
    pub(crate) added: &'a [u8],
    pub(crate) offsets: &'a [u8],
    pub(crate) index: &'a [u8],
    pub(crate) strings: &'a [u8],
    /// Longest token, in bytes.
    pub(crate) max_token_len: usize,
}

impl<'a> Section<'a> {
    /// Bytes of token `id` (empty if out of range, which validation rules out).
    pub(crate) fn token_bytes(&self, id: u32) -> &'a [u8] {
        let start = u32_entry(self.offsets, id as usize) as usize;
        let end = u32_entry(self.offsets, (id as usize).saturating_add(1)) as usize;
        self.strings.get(start..end).unwrap_or(&[])
    }
}

fn slice(section: &[u8], range: (usize, usize)) -> &[u8] {
    section.get(range.0..range.1).unwrap_or(&[])
}

/// The one validation pass. Cost: O(section length); no allocation.
pub(crate) fn parse(section: &[u8]) -> Result<Section<'_>, TokenizerError> {
    use TokenizerError as E;
    check_preamble(section, HEADER_LEN, SECTION_MAGIC, SECTION_VERSION)?;
    let field = |at| u32_at(section, at);
    let flags = field(AT_FLAGS);
    if flags & !KNOWN_FLAGS != 0 {
        return Err(E::UnknownFlags { flags });
    }
    let vocab_size = field(AT_VOCAB_SIZE);
    if vocab_size == 0 {
        return Err(E::EmptyVocab);
    }
    let max_word_chars = field(AT_MAX_WORD_CHARS);
    if !(1..=MAX_WORD_CHARS_LIMIT).contains(&max_word_chars) {
        return Err(E::MaxWordChars {
            value: max_word_chars,
            limit: MAX_WORD_CHARS_LIMIT,
        });
    }
    let added_count = field(AT_ADDED_COUNT);
    if added_count > MAX_ADDED_TOKENS {
        return Err(E::TooManyAddedTokens {
            count: added_count,
            limit: MAX_ADDED_TOKENS,
        });
    }
    let strings_len = field(AT_STRINGS_LEN);
    let layout = Layout::new(vocab_size, added_count, strings_len).ok_or(E::SizeOverflow)?;
    if section.len() != layout.padded_len {
        return Err(E::LengthMismatch {
            expected: layout.padded_len,
            len: section.len(),
        });
    }
    let padding = section.get(layout.strings.1..).unwrap_or(&[]);
    if let Some(i) = padding.iter().position(|&b| b != 0) {
        return Err(E::NonZeroPadding {
            offset: layout.strings.1 + i,
        });
    }
    let (unk, cls, sep, pad) = (field(AT_UNK), field(AT_CLS), field(AT_SEP), field(AT_PAD));
    for (which, id) in [
        (SpecialToken::Unk, unk),
        (SpecialToken::Cls, cls),
        (SpecialToken::Sep, sep),
        (SpecialToken::Pad, pad),
    ] {
        if id >= vocab_size {
            return Err(E::SpecialIdOutOfRange {
                which,
                id,
                vocab_size,
            });
        }
    }
    let added = slice(section, layout.added);
    for index in 0..added_count {
        let id = u32_entry(added, index as usize);
        if id >= vocab_size {
            return Err(E::AddedIdOutOfRange {
                index,
                id,
                vocab_size,
            });
        }
    }

    // Offsets: start at 0, never decrease, end at strings_len; every token non-empty UTF-8.
    let offsets = slice(section, layout.offsets);
    let strings = slice(section, layout.strings);
    let mut start = u32_entry(offsets, 0);
    if start != 0 {
        return Err(E::BadOffset {
            id: 0,
            offset: start,
        });
    }
    let mut max_token_len = 0;
    for id in 0..vocab_size {
        let end = u32_entry(offsets, id as usize + 1);
        if end < start || end > strings_len {
            return Err(E::BadOffset {
                id: id + 1,
                offset: end,
            });
        }
        let token = strings.get(start as usize..end as usize).unwrap_or(&[]);
        if token.is_empty() {
            return Err(E::EmptyToken { id });
        }
        if core::str::from_utf8(token).is_err() {
            return Err(E::TokenNotUtf8 { id });
        }
        max_token_len = max_token_len.max(token.len());
        start = end;
    }
    if start != strings_len {
        return Err(E::BadOffset {
            id: vocab_size,
            offset: start,
        });
    }

    // Index: entries in range and strictly increasing by bytes. N strictly increasing
    // entries below N are exactly a permutation, so no "seen" bitmap is needed.
    let parsed = Section {
        flags,
        vocab_size,
        unk,
        cls,
        sep,
        pad,
        max_word_chars,
        added,
        offsets,
        index: slice(section, layout.index),
        strings,
        max_token_len,
    };
    let mut previous: &[u8] = &[];
    for position in 0..vocab_size {
        let id = u32_entry(parsed.index, position as usize);
        if id >= vocab_size {
            return Err(E::IndexOutOfRange { position, id });
        }
        let current = parsed.token_bytes(id);
        if position > 0 && previous >= current {
            return Err(E::IndexNotSorted { position });
        }
        previous = current;
    }
    Ok(parsed)
}

/// Builds a tokenizer section from a vocabulary (`vocab[id]` is token `id`, as in
/// `vocab.txt`) and a config. The output length is a multiple of 4; place it at a
/// 4-byte-aligned offset of the model file (the reader itself needs no alignment).
///
/// Errors: [`TokenizerError::EmptyVocab`], [`TokenizerError::EmptyToken`],
/// [`TokenizerError::DuplicateToken`], [`TokenizerError::MissingSpecialToken`],
/// [`TokenizerError::MissingAddedToken`], [`TokenizerError::TooManyAddedTokens`],
/// [`TokenizerError::MaxWordChars`], [`TokenizerError::SizeOverflow`].
#[cfg(feature = "alloc")]
pub fn encode_section(
    vocab: &[&str],
    config: &TokenizerConfig<'_>,
) -> Result<alloc::vec::Vec<u8>, TokenizerError> {
    use alloc::vec::Vec;
    use TokenizerError as E;

    let vocab_size = u32::try_from(vocab.len()).map_err(|_| E::SizeOverflow)?;
    if vocab_size == 0 {
        return Err(E::EmptyVocab);
    }
    if !(1..=MAX_WORD_CHARS_LIMIT).contains(&config.max_word_chars) {
        return Err(E::MaxWordChars {
            value: config.max_word_chars,
            limit: MAX_WORD_CHARS_LIMIT,
        });
    }
    let added_count = u32::try_from(config.added_tokens.len())
        .ok()
        .filter(|&n| n <= MAX_ADDED_TOKENS)
        .ok_or(E::TooManyAddedTokens {
            count: u32::try_from(config.added_tokens.len()).unwrap_or(u32::MAX),
            limit: MAX_ADDED_TOKENS,
        })?;
    let text = |id: u32| vocab.get(id as usize).map_or(&b""[..], |t| t.as_bytes());
    if let Some(id) = (0..vocab_size).find(|&id| text(id).is_empty()) {
        return Err(E::EmptyToken { id });
    }
    let mut order: Vec<u32> = (0..vocab_size).collect();
    order.sort_unstable_by(|&a, &b| text(a).cmp(text(b)).then(a.cmp(&b)));
    if let Some(pair) = order.windows(2).find(|w| text(w[0]) == text(w[1])) {
        return Err(E::DuplicateToken {
            first: pair[0],
            second: pair[1],
        });
    }
    let find = |token: &str| {
        order
            .binary_search_by(|&id| text(id).cmp(token.as_bytes()))
            .ok()
            .and_then(|pos| order.get(pos).copied())
    };
    let special = |which, token| find(token).ok_or(E::MissingSpecialToken { which });
    let unk = special(SpecialToken::Unk, config.unk_token)?;
    let cls = special(SpecialToken::Cls, config.cls_token)?;
    let sep = special(SpecialToken::Sep, config.sep_token)?;
    let pad = special(SpecialToken::Pad, config.pad_token)?;
    let mut added = Vec::with_capacity(config.added_tokens.len());
    for (index, token) in (0u32..).zip(config.added_tokens) {
        added.push(find(token).ok_or(E::MissingAddedToken { index })?);
    }
    let strings_len = vocab
        .iter()
        .try_fold(0u32, |sum, t| sum.checked_add(u32::try_from(t.len()).ok()?))
        .ok_or(E::SizeOverflow)?;
    let layout = Layout::new(vocab_size, added_count, strings_len).ok_or(E::SizeOverflow)?;

    let flags = [
        (config.lowercase, FLAG_LOWERCASE),
        (config.strip_accents, FLAG_STRIP_ACCENTS),
        (config.chinese_chars, FLAG_CHINESE_CHARS),
        (config.clean_text, FLAG_CLEAN_TEXT),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .fold(0, |acc, (_, bit)| acc | bit);

    let mut out = Vec::with_capacity(layout.padded_len);
    out.extend_from_slice(&SECTION_MAGIC);
    for value in [
        SECTION_VERSION,
        flags,
        vocab_size,
        unk,
        cls,
        sep,
        pad,
        config.max_word_chars,
        added_count,
        strings_len,
    ] {
        out.extend_from_slice(&value.to_le_bytes());
    }
    debug_assert_eq!(out.len(), HEADER_LEN);
    for id in added {
        out.extend_from_slice(&id.to_le_bytes());
    }
    let mut offset = 0u32;
    out.extend_from_slice(&offset.to_le_bytes());
    for token in vocab {
        offset += token.len() as u32; // cannot overflow: the sum fits (checked above)
        out.extend_from_slice(&offset.to_le_bytes());
    }
    for id in order {
        out.extend_from_slice(&id.to_le_bytes());
    }
    for token in vocab {
        out.extend_from_slice(token.as_bytes());
    }
    out.resize(layout.padded_len, 0);
    Ok(out)
}
