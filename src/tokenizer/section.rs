//! The tokenizer section: layout constants, the one-pass validator, and the writer.
//! See the [module docs](super) for the byte layout; the string table that ends the
//! section (offsets, sorted index, strings, padding) is shared with the SentencePiece
//! section, in [`strings`](super::strings).

use super::error::{SpecialToken, TokenizerError};
#[cfg(feature = "alloc")]
use super::strings::TableWriter;
use super::strings::{
    check_preamble, check_special_ids, first_out_of_range, slice, u32_at, u32_entry, words,
    StringTable, TableLayout,
};

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

// Header field offsets (all u32 little-endian after the magic; the version, flags and
// vocab size at bytes 4, 8 and 12 are read by `check_preamble`, shared with the
// SentencePiece section).
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

/// Byte ranges of the added-token ids and of the string table, from the header counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) added: (usize, usize),
    pub(crate) table: TableLayout,
}

impl Layout {
    pub(crate) fn new(vocab_size: u32, added_count: u32, strings_len: u32) -> Option<Layout> {
        let added = words(HEADER_LEN, added_count)?;
        let table = TableLayout::new(added.1, vocab_size, strings_len)?;
        Some(Layout { added, table })
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
    /// The token strings; `table.longest()` is the longest token, in bytes.
    pub(crate) table: StringTable<'a>,
}

/// The one validation pass. Cost: O(section length); no allocation.
pub(crate) fn parse(section: &[u8]) -> Result<Section<'_>, TokenizerError> {
    use TokenizerError as E;
    let (flags, vocab_size) = check_preamble(
        section,
        HEADER_LEN,
        (SECTION_MAGIC, SECTION_VERSION),
        KNOWN_FLAGS,
    )?;
    let field = |at| u32_at(section, at);
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
    let layout =
        Layout::new(vocab_size, added_count, field(AT_STRINGS_LEN)).ok_or(E::SizeOverflow)?;
    layout.table.check_length(section)?;
    let (unk, cls, sep, pad) = (field(AT_UNK), field(AT_CLS), field(AT_SEP), field(AT_PAD));
    check_special_ids(
        &[
            (SpecialToken::Unk, unk),
            (SpecialToken::Cls, cls),
            (SpecialToken::Sep, sep),
            (SpecialToken::Pad, pad),
        ],
        vocab_size,
    )?;
    let added = slice(section, layout.added);
    let added_ids = (0..added_count).map(|index| (index, u32_entry(added, index as usize)));
    if let Some((index, id)) = first_out_of_range(added_ids, vocab_size) {
        return Err(E::AddedIdOutOfRange {
            index,
            id,
            vocab_size,
        });
    }
    // Every token non-empty UTF-8.
    let table = StringTable::parse(section, &layout.table, |id, token| {
        if token.is_empty() {
            return Err(E::EmptyToken { id });
        }
        if core::str::from_utf8(token).is_err() {
            return Err(E::TokenNotUtf8 { id });
        }
        Ok(())
    })?;
    table.check_index()?;
    Ok(Section {
        flags,
        vocab_size,
        unk,
        cls,
        sep,
        pad,
        max_word_chars,
        added,
        table,
    })
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
    if let Some(id) = vocab.iter().position(|t| t.is_empty()) {
        return Err(E::EmptyToken { id: id as u32 }); // below vocab_size, a u32
    }
    let table = TableWriter::new(vocab)?;
    let find = |token: &str| table.find(token.as_bytes());
    let special = |which, token| find(token).ok_or(E::MissingSpecialToken { which });
    let unk = special(SpecialToken::Unk, config.unk_token)?;
    let cls = special(SpecialToken::Cls, config.cls_token)?;
    let sep = special(SpecialToken::Sep, config.sep_token)?;
    let pad = special(SpecialToken::Pad, config.pad_token)?;
    let mut added = Vec::with_capacity(config.added_tokens.len());
    for (index, token) in (0u32..).zip(config.added_tokens) {
        added.push(find(token).ok_or(E::MissingAddedToken { index })?);
    }
    let strings_len = table.strings_len;
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

    let header = [
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
    ];
    debug_assert_eq!(4 + 4 * header.len(), HEADER_LEN);
    let out = table.write_section((SECTION_MAGIC, &header), added, &layout.table);
    Ok(out)
}
