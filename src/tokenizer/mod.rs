//! On-device WordPiece tokenizer with Hugging Face BERT semantics; the llama2.c /
//! SentencePiece-style BPE tokenizer is in [`sentencepiece`], the GPT-2-style
//! byte-level BPE tokenizer (GPT-2, SmolLM2) in [`bytebpe`], a decoder file's choice of
//! the two in [`decoder`], and streaming UTF-8 detokenization for generated text in
//! [`stream`].
//!
//! [`Tokenizer`] reads its vocabulary and settings in place from a *tokenizer section*,
//! an opaque byte range of the model file, validated once by [`Tokenizer::from_section`].
//! [`Tokenizer::encode`] then turns raw text bytes into `[CLS] pieces… [SEP]` ids with no
//! heap, no recursion and no panics, id for id what Hugging Face `tokenizers`
//! (`BertTokenizerFast`: `BertNormalizer` + `BertPreTokenizer` + `WordPiece`, with
//! the BERT special tokens as added tokens) produces. The host converter builds the
//! section with [`encode_section`] (feature `alloc`), which lives next to the reader so
//! that the two cannot drift.
//!
//! ```
//! # #[cfg(feature = "alloc")] {
//! use tinyformer::tokenizer::{encode_section, Tokenizer, TokenizerConfig};
//!
//! let vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", ",", "world", "##s", "!"];
//! let section = encode_section(&vocab, &TokenizerConfig::bert_uncased()).unwrap();
//!
//! let tokenizer = Tokenizer::from_section(&section).unwrap();
//! let mut ids = [0u32; 16];
//! let encoding = tokenizer.encode("Hello, WORLDS!".as_bytes(), &mut ids).unwrap();
//! assert_eq!(&ids[..encoding.len], &[2, 5, 6, 7, 8, 9, 3]);
//! assert!(!encoding.truncated);
//! # }
//! ```
//!
//! # Section layout (version 1)
//!
//! All integers are `u32` little-endian. The section length is a multiple of 4 and the
//! model file places it at a 4-byte-aligned offset, but the reader reads integers with
//! `u32::from_le_bytes` from byte slices and needs no alignment. `N` = vocab size,
//! `K` = added-token count, `S` = string bytes.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `b"TFTK"` ([`SECTION_MAGIC`]) |
//! | 4 | 4 | version = 1 ([`SECTION_VERSION`]) |
//! | 8 | 4 | flags: bit 0 lowercase, bit 1 strip_accents, bit 2 chinese_chars, bit 3 clean_text; other bits 0 |
//! | 12 | 4 | `N`, vocab size, ≥ 1 |
//! | 16 | 4 | `[UNK]` id (< `N`) |
//! | 20 | 4 | `[CLS]` id (< `N`) |
//! | 24 | 4 | `[SEP]` id (< `N`) |
//! | 28 | 4 | `[PAD]` id (< `N`) |
//! | 32 | 4 | max chars per word, 1..=[`MAX_WORD_CHARS_LIMIT`] (100 in BERT) |
//! | 36 | 4 | `K`, added tokens, ≤ [`MAX_ADDED_TOKENS`] |
//! | 40 | 4 | `S`, total bytes of the token strings |
//! | 44 | 4·K | added-token ids (< `N`), matched verbatim in raw text |
//! | 44+4K | 4·(N+1) | string offsets: token `id` is bytes `off[id]..off[id+1]` of the string area; `off[0] = 0`, non-decreasing, `off[N] = S` |
//! | 48+4K+4N | 4·N | sorted index: all ids ordered by token bytes, strictly increasing |
//! | 48+4K+8N | S | string area: token strings (UTF-8, non-empty) concatenated in id order |
//! | 48+4K+8N+S | 0–3 | zero padding to a multiple of 4 |
//!
//! The section length must equal the padded total exactly. For the 30,522-token BERT
//! vocabulary this is about 0.43 MB (8 bytes per token plus the strings).
//!
//! Everything from the string offsets on (offsets, sorted index, string area, padding)
//! is the *string table* that the [SentencePiece section](sentencepiece) ends with too,
//! starting here at `T = 44+4K`: one layout, validator, lookup and writer for both, in
//! `src/tokenizer/strings.rs`. The WordPiece section adds to it the non-empty UTF-8
//! check of each token and the added-token list before it.
//!
//! Validation ([`Tokenizer::from_section`]) is one O(section length) pass: header
//! fields, every size with checked arithmetic, exact length and zero padding, special
//! and added ids in range, offsets monotone and in range, every token non-empty UTF-8,
//! and the index in range and strictly increasing. A strictly increasing index of `N`
//! entries below `N` is a permutation, and it also proves the strings distinct. After
//! that, lookups cannot fail; they still use checked slice access only.
//!
//! # Pipeline (HF `tokenizers` order)
//!
//! For each char of the (UTF-8-validated) input:
//!
//! 0. **Added tokens**: if one of the section's added tokens (`[CLS]`, `[MASK]`, … in
//!    BERT) starts here in the *raw* text, it is emitted as-is (longest wins) and acts as
//!    a word boundary, like HF's added-vocabulary split with `normalized: false`.
//! 1. **clean_text**: drop U+0000, U+FFFD and chars of category Cc (except tab, LF,
//!    CR), Cf and Co; map whitespace (`char::is_whitespace`) to a space. Note HF keeps
//!    *unassigned* code points (its "other" table predates them).
//! 2. **chinese_chars**: a CJK ideograph (HF's `is_chinese_char` ranges) becomes a
//!    word of its own.
//! 3. **strip_accents**: NFD, then drop nonspacing marks (Mn).
//! 4. **lowercase**: per-char full lowercase (`İ` → `i̇`, no final-sigma rule).
//! 5. **pre-tokenize**: whitespace ends a word; punctuation (ASCII punctuation or
//!    Unicode P*) is a word of its own.
//! 6. **WordPiece**: greedy longest-match-first with `##` continuation; a word of more
//!    than `max_word_chars` chars (counted after normalization), or one with any
//!    position that matches nothing, is one `[UNK]`.
//!
//! The Unicode tables (`src/tokenizer/tables.rs`, 15.4 KiB of flash; `encode` and
//! validation add about 5.5 KiB of code) are generated by
//! `tools/reference/tokenizer_goldens.py` by probing HF `tokenizers` with every code
//! point, because HF mixes Unicode versions (old category and NFD tables, new
//! lowercase). Known divergence: NFD canonical *reordering* is not applied. It can only
//! matter when two adjacent combining chars of different nonzero combining class, out
//! of canonical order, *both survive* accent stripping (e.g. the musical-symbol stems
//! U+1D16D U+1D165), and then only if the reordered word would match the vocabulary
//! differently: the MiniLM/BERT uncased vocabulary contains no such char, so those
//! words are `[UNK]` either way.
//!
//! # Resources
//!
//! * Heap: none. Recursion: none.
//! * Stack: bounded and input-independent. The word buffer is `4 × MAX_WORD_CHARS_LIMIT`
//!   = 512 bytes ([`WORD_BUFFER_BYTES`]); measured on thumbv7em (opt-level `s`, LTO),
//!   `encode`'s frame is 720 bytes and its deepest call chain about 1 KiB in total.
//! * Time: O(text length) for normalization; WordPiece makes at most
//!   `min(word bytes, longest token)` lookups per piece start, each a binary search of
//!   O(log N) token comparisons.
//! * `out[len..]` may be overwritten with scratch values: pieces of a word are written
//!   tentatively and replaced by `[UNK]` when the word fails to match.

pub mod bytebpe;
mod bytebpe_tables;
pub mod decoder;
mod error;
mod normalize;
mod section;
pub mod sentencepiece;
pub mod stream;
mod strings;
mod tables;

pub use error::{SpecialToken, TokenizerError};
#[cfg(feature = "alloc")]
pub use section::encode_section;
pub use section::{
    TokenizerConfig, BERT_ADDED_TOKENS, HEADER_LEN, MAX_ADDED_TOKENS, MAX_WORD_CHARS_LIMIT,
    SECTION_MAGIC, SECTION_VERSION,
};

use normalize::{class, is_chinese, lowercase, strip_accents, CharClass};
use section::{FLAG_CHINESE_CHARS, FLAG_CLEAN_TEXT, FLAG_LOWERCASE, FLAG_STRIP_ACCENTS};
use strings::u32_entry;

/// Continuation prefix of non-initial WordPiece pieces.
pub const CONTINUATION_PREFIX: &str = "##";

/// Bytes of the on-stack word buffer: a word of `MAX_WORD_CHARS_LIMIT` chars of up to 4
/// UTF-8 bytes each.
pub const WORD_BUFFER_BYTES: usize = 4 * MAX_WORD_CHARS_LIMIT as usize;

/// Result of [`Tokenizer::encode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Encoding {
    /// Ids written to `out[..len]`, `[CLS]` and `[SEP]` included.
    pub len: usize,
    /// Whether pieces were dropped to fit `out`.
    pub truncated: bool,
    /// Pieces the whole text produced, before truncation (without `[CLS]`/`[SEP]`).
    pub pieces_total: usize,
}

/// A WordPiece tokenizer borrowing a validated tokenizer section.
#[derive(Clone, Copy)]
pub struct Tokenizer<'a> {
    section: section::Section<'a>,
}

impl core::fmt::Debug for Tokenizer<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.section.vocab_size)
            .field("flags", &self.section.flags)
            .field("unk", &self.section.unk)
            .field("cls", &self.section.cls)
            .field("sep", &self.section.sep)
            .field("pad", &self.section.pad)
            .field("max_word_chars", &self.section.max_word_chars)
            .field("added_tokens", &(self.section.added.len() / 4))
            .finish()
    }
}

impl<'a> Tokenizer<'a> {
    /// Validates a tokenizer section (see the module docs for the layout and the
    /// checks) and borrows it. This is the only fallible step besides bad input text.
    pub fn from_section(section: &'a [u8]) -> Result<Tokenizer<'a>, TokenizerError> {
        section::parse(section).map(|section| Tokenizer { section })
    }

    /// Number of tokens; ids are `0..vocab_size`.
    pub fn vocab_size(&self) -> u32 {
        self.section.vocab_size
    }

    /// The string of token `id`, or `None` if `id >= vocab_size`.
    pub fn token(&self, id: u32) -> Option<&'a str> {
        if id >= self.section.vocab_size {
            return None;
        }
        core::str::from_utf8(self.section.table.get(id)).ok()
    }

    /// The id of an exact token string (`"##ing"` for a continuation piece).
    pub fn token_id(&self, piece: &str) -> Option<u32> {
        self.find(b"", piece.as_bytes())
    }

    /// Unknown-word token id.
    pub fn unk_id(&self) -> u32 {
        self.section.unk
    }

    /// Sequence-start token id.
    pub fn cls_id(&self) -> u32 {
        self.section.cls
    }

    /// Sequence-end token id.
    pub fn sep_id(&self) -> u32 {
        self.section.sep
    }

    /// Padding token id (`encode` never writes it; the caller pads).
    pub fn pad_id(&self) -> u32 {
        self.section.pad
    }

    /// Whether text is lowercased.
    pub fn lowercase(&self) -> bool {
        self.section.flags & FLAG_LOWERCASE != 0
    }

    /// Whether accents are stripped (NFD, then nonspacing marks dropped).
    pub fn strip_accents(&self) -> bool {
        self.section.flags & FLAG_STRIP_ACCENTS != 0
    }

    /// Whether CJK ideographs become words of their own.
    pub fn chinese_chars(&self) -> bool {
        self.section.flags & FLAG_CHINESE_CHARS != 0
    }

    /// Whether control/format chars are dropped and whitespace mapped to a space.
    pub fn clean_text(&self) -> bool {
        self.section.flags & FLAG_CLEAN_TEXT != 0
    }

    /// Longest word, in chars after normalization, that WordPiece splits; longer
    /// words become `[UNK]`.
    pub fn max_word_chars(&self) -> u32 {
        self.section.max_word_chars
    }

    /// Ids of the added tokens, matched verbatim in raw text.
    pub fn added_token_ids(&self) -> impl Iterator<Item = u32> + 'a {
        let added = self.section.added;
        (0..added.len() / 4).map(move |i| u32_entry(added, i))
    }

    /// Tokenizes `text` into `out` as `[CLS] pieces… [SEP]`.
    ///
    /// `out.len()` is the model's maximum sequence length: when the text has more than
    /// `out.len() - 2` pieces, the first `out.len() - 2` are kept, then `[SEP]`, and
    /// [`Encoding::truncated`] is set ([`Encoding::pieces_total`] still counts them all).
    /// Empty or whitespace-only text gives `[CLS] [SEP]`. Entries after
    /// [`Encoding::len`] may hold scratch values.
    ///
    /// Errors: [`TokenizerError::OutputTooShort`] if `out.len() < 2`,
    /// [`TokenizerError::InvalidUtf8`] (nothing meaningful is written then).
    pub fn encode(&self, text: &[u8], out: &mut [u32]) -> Result<Encoding, TokenizerError> {
        self.encode_window(text, 0, out)
    }

    /// Like [`Tokenizer::encode`], but the window of pieces starts at piece `skip`:
    /// `out` gets `[CLS] pieces[skip..skip + out.len() - 2] [SEP]`. A text longer than
    /// the model's context is read as consecutive windows `skip = 0, c, 2c, ...` with
    /// `c = out.len() - 2` until [`Encoding::truncated`] is false; their ids, without
    /// `[CLS]`/`[SEP]`, concatenate to the whole text's pieces. No buffer beyond `out`:
    /// each window tokenizes the text again from its start (linear in the text).
    /// `skip >= pieces_total` gives `[CLS] [SEP]`.
    pub fn encode_window(
        &self,
        text: &[u8],
        skip: usize,
        out: &mut [u32],
    ) -> Result<Encoding, TokenizerError> {
        let capacity = out
            .len()
            .checked_sub(2)
            .ok_or(TokenizerError::OutputTooShort { len: out.len() })?;
        let text = core::str::from_utf8(text).map_err(|e| TokenizerError::InvalidUtf8 {
            offset: e.valid_up_to(),
        })?;
        let mut sink = Sink {
            out,
            skip,
            capacity,
            total: 0,
        };
        let mut word = Word::new();
        let mut resume_at = 0;
        for (at, c) in text.char_indices() {
            if at < resume_at {
                continue; // inside an added token
            }
            if let Some((id, len)) = self.match_added(text.as_bytes().get(at..).unwrap_or(&[])) {
                self.flush(&mut word, &mut sink);
                sink.push(id);
                resume_at = at.saturating_add(len);
                continue;
            }
            self.feed(c, &mut word, &mut sink);
        }
        self.flush(&mut word, &mut sink);

        let kept = sink.total.saturating_sub(skip).min(capacity);
        if let Some(first) = sink.out.first_mut() {
            *first = self.section.cls;
        }
        if let Some(last) = sink.out.get_mut(kept + 1) {
            *last = self.section.sep;
        }
        Ok(Encoding {
            len: kept + 2,
            truncated: sink.total.saturating_sub(skip) > capacity,
            pieces_total: sink.total,
        })
    }

    /// Binary search of the sorted index for the token `prefix ++ piece`.
    fn find(&self, prefix: &[u8], piece: &[u8]) -> Option<u32> {
        self.section.table.find(prefix, piece)
    }

    /// The longest added token starting at `rest`, as `(id, byte length)`.
    fn match_added(&self, rest: &[u8]) -> Option<(u32, usize)> {
        let mut best: Option<(u32, usize)> = None;
        for id in self.added_token_ids() {
            let token = self.section.table.get(id);
            if rest.starts_with(token) && best.is_none_or(|(_, len)| token.len() > len) {
                best = Some((id, token.len()));
            }
        }
        best
    }

    /// Steps 1–5 of the pipeline for one input char.
    fn feed(&self, c: char, word: &mut Word, sink: &mut Sink<'_>) {
        let mut c = c;
        if self.clean_text() {
            if class(c) == CharClass::Removed {
                return;
            }
            if c.is_whitespace() {
                c = ' ';
            }
        }
        if self.chinese_chars() && is_chinese(c) {
            self.flush(word, sink);
            self.normalize(c, word, sink);
            self.flush(word, sink);
        } else {
            self.normalize(c, word, sink);
        }
    }

    /// Steps 3–5: accent stripping, lowercase, pre-tokenization.
    fn normalize(&self, c: char, word: &mut Word, sink: &mut Sink<'_>) {
        let stripped = if self.strip_accents() {
            strip_accents(c)
        } else {
            normalize::Chars::one(c)
        };
        for &s in stripped.as_slice() {
            let lowered = if self.lowercase() {
                lowercase(s)
            } else {
                normalize::Chars::one(s)
            };
            for &l in lowered.as_slice() {
                if l.is_whitespace() {
                    self.flush(word, sink);
                } else if class(l) == CharClass::Punct {
                    self.flush(word, sink);
                    word.push(l, self.section.max_word_chars);
                    self.flush(word, sink);
                } else {
                    word.push(l, self.section.max_word_chars);
                }
            }
        }
    }

    /// Ends the current word: emits its WordPiece pieces (or `[UNK]`) and clears it.
    fn flush(&self, word: &mut Word, sink: &mut Sink<'_>) {
        if word.too_long {
            sink.push(self.section.unk);
        } else if word.len > 0 {
            self.wordpiece(word.bytes(), sink);
        }
        word.clear();
    }

    /// Greedy longest-match-first WordPiece over one normalized word.
    fn wordpiece(&self, word: &[u8], sink: &mut Sink<'_>) {
        let rollback = sink.total;
        let is_boundary = |at: usize| word.get(at).is_none_or(|&b| b & 0xC0 != 0x80);
        let mut start = 0;
        while start < word.len() {
            let prefix: &[u8] = if start == 0 {
                b""
            } else {
                CONTINUATION_PREFIX.as_bytes()
            };
            // No token is longer than the longest: skip ends that cannot match.
            let longest = self.section.table.longest().saturating_sub(prefix.len());
            let mut end = word.len().min(start.saturating_add(longest));
            while end > start && !is_boundary(end) {
                end -= 1;
            }
            let mut matched = None;
            while end > start {
                let piece = word.get(start..end).unwrap_or(&[]);
                if let Some(id) = self.find(prefix, piece) {
                    matched = Some(id);
                    break;
                }
                end -= 1;
                while end > start && !is_boundary(end) {
                    end -= 1;
                }
            }
            match matched {
                Some(id) => {
                    sink.push(id);
                    start = end;
                }
                None => {
                    sink.total = rollback;
                    sink.push(self.section.unk);
                    return;
                }
            }
        }
    }
}

/// Where pieces go: piece number `total` lands in `out[total - skip + 1]` when it is in
/// the window `skip..skip + capacity` (slot 0 is `[CLS]`); the rest are only counted.
struct Sink<'o> {
    out: &'o mut [u32],
    skip: usize,
    capacity: usize,
    total: usize,
}

impl Sink<'_> {
    fn push(&mut self, id: u32) {
        if let Some(at) = self.total.checked_sub(self.skip) {
            if at < self.capacity {
                if let Some(slot) = self.out.get_mut(at + 1) {
                    *slot = id;
                }
            }
        }
        self.total = self.total.saturating_add(1);
    }
}

/// The normalized word being collected, as UTF-8 on the stack.
struct Word {
    buf: [u8; WORD_BUFFER_BYTES],
    len: usize,
    chars: u32,
    /// More than `max_word_chars` chars: the word will be `[UNK]`; chars are no
    /// longer stored.
    too_long: bool,
}

impl Word {
    fn new() -> Word {
        Word {
            buf: [0; WORD_BUFFER_BYTES],
            len: 0,
            chars: 0,
            too_long: false,
        }
    }

    fn push(&mut self, c: char, max_chars: u32) {
        if self.too_long {
            return;
        }
        if self.chars >= max_chars {
            self.too_long = true;
            return;
        }
        let mut utf8 = [0u8; 4];
        let encoded = c.encode_utf8(&mut utf8).as_bytes();
        let end = self.len + encoded.len();
        match self.buf.get_mut(self.len..end) {
            Some(slot) => {
                slot.copy_from_slice(encoded);
                self.len = end;
                self.chars += 1;
            }
            // Unreachable: max_chars <= MAX_WORD_CHARS_LIMIT was validated.
            None => self.too_long = true,
        }
    }

    fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    fn clear(&mut self) {
        self.len = 0;
        self.chars = 0;
        self.too_long = false;
    }
}

/// The 2-bit class of code point `cp` in a generated run table (`tables.rs`,
/// `bytebpe_tables.rs`): entries `start << 2 | class`, sorted by start, the first
/// starting at 0.
fn run_class(runs: &[u32], cp: u32) -> u32 {
    let runs_before = runs.partition_point(|&run| run >> 2 <= cp);
    let run = runs_before
        .checked_sub(1)
        .and_then(|i| runs.get(i))
        .copied()
        .unwrap_or(0);
    run & 3
}

#[cfg(all(test, feature = "alloc"))]
mod tests;
