//! On-device byte-level BPE tokenizer with Hugging Face `tokenizers` semantics (GPT-2,
//! SmolLM2 and their relatives).
//!
//! [`ByteBpe`] reads its vocabulary, merges and special tokens in place from a
//! *byte-level BPE section* (magic `b"TFBB"`), validated once by
//! [`ByteBpe::from_section`]. [`ByteBpe::encode`] then turns UTF-8 text into ids exactly
//! as HF `tokenizers` does for a `BPE` model behind a `ByteLevel` pre-tokenizer
//! (checked id for id on 6,000 strings by `tests/bytebpe_parity.rs`), with no heap, no
//! recursion, no float arithmetic and no panics. [`ByteBpe::decode`] maps an id to its
//! raw bytes; feed them to [`Utf8Stream`](super::stream::Utf8Stream) to print whole
//! characters only. The host builds the section with [`encode_section`] (feature
//! `alloc`) from the strings `tokenizer.json` or GGUF store, next to the reader so that
//! the two cannot drift.
//!
//! ```
//! # #[cfg(feature = "alloc")] {
//! use tinyformer::tokenizer::bytebpe::{encode_section, ByteBpe, ByteBpeConfig, byte_char};
//!
//! // The 256 byte tokens (in GPT-2's byte-to-unicode alphabet, as tokenizer.json has
//! // them), then merged tokens, then a special token.
//! let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_char(b).to_string()).collect();
//! for merged in ["Ġh", "Ġhi"] {
//!     tokens.push(merged.to_string());
//! }
//! tokens.push("<|endoftext|>".to_string());
//! let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
//! let merges = ["Ġ h", "Ġh i"];
//! let section = encode_section(&tokens, &merges, &[258], &ByteBpeConfig::smollm2()).unwrap();
//!
//! let bpe = ByteBpe::from_section(&section).unwrap();
//! let mut ids = [0u32; 16];
//! let n = bpe.encode(b"a hi<|endoftext|>", true, &mut ids).unwrap();
//! assert_eq!(&ids[..n], &[bpe.token_id(b"a").unwrap(), 257, 258]);
//! assert_eq!(bpe.decode(257), b" hi"); // raw bytes: no alphabet mapping at run time
//! # }
//! ```
//!
//! # Section layout (version 1)
//!
//! All integers are `u32` little-endian. The section length is a multiple of 4 and the
//! model file places it at a 4-byte-aligned offset, but the reader uses
//! `from_le_bytes` on byte slices and needs no alignment. `N` = vocab size, `K` = added
//! (special) tokens, `M` = merges, `S` = total token bytes.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `b"TFBB"` ([`SECTION_MAGIC`]) |
//! | 4 | 4 | version = 1 ([`SECTION_VERSION`]) |
//! | 8 | 4 | flags: bit 0 add BOS when encoding; other bits 0 |
//! | 12 | 4 | `N`, vocab size, ≥ 1 |
//! | 16 | 4 | pre-tokenizer code ([`PreTokenizer`]: 0 GPT-2, 1 SmolLM2) |
//! | 20 | 4 | BOS id (< `N`), or [`NO_TOKEN`]; not `NO_TOKEN` when flag bit 0 is set |
//! | 24 | 4 | EOS id (< `N`), or [`NO_TOKEN`] |
//! | 28 | 4 | `M`, merges |
//! | 32 | 4 | `K`, added tokens, ≤ [`MAX_ADDED_TOKENS`] |
//! | 36 | 4 | `S`, total bytes of the tokens |
//! | 40 | 4·256 | byte tokens: entry `b` is the id of the token that is the single byte `b`, or [`NO_TOKEN`] when no token is (the byte is then dropped from the text, as Hugging Face's BPE without an unknown token drops it: SmolLM2 has no token for 21 bytes, 0xC0, 0xC1 and 0xF5..=0xFF among them, which UTF-8 never uses) |
//! | 1064 | 4·K | added-token ids (< `N`, tokens non-empty UTF-8), matched verbatim in the text |
//! | 1064+4K | 16·M | merges, each `(left, right, rank, result)`: ids < `N`, sorted strictly by `(left, right)`; `result`'s bytes are `left`'s then `right`'s; lower `rank` merges first |
//! | 1064+4K+16M | 4·(N+1) | token offsets: token `id` is bytes `off[id]..off[id+1]` of the token area; `off[0] = 0`, non-decreasing, `off[N] = S` |
//! | 1068+4K+16M+4N | 4·N | sorted index: all ids ordered by token bytes, strictly increasing |
//! | 1068+4K+16M+8N | S | token area: each token's *raw bytes* (not the byte-to-unicode alphabet), in id order |
//! | … | 0–3 | zero padding to a multiple of 4 |
//!
//! The section length must equal the padded total exactly. Everything from the token
//! offsets on is the *string table* the other tokenizer sections end with too
//! (`src/tokenizer/strings.rs`). Tokens are stored as raw bytes, so decoding needs no
//! mapping; the writer turns the byte-to-unicode strings of `tokenizer.json` and GGUF
//! into bytes once ([`char_byte`]). An added token is stored as its content's UTF-8,
//! which is what HF matches in the text.
//!
//! Validation ([`ByteBpe::from_section`]) is one pass over the section, O(length):
//! header fields, every size with checked arithmetic, exact length and zero padding,
//! BOS/EOS, byte-token and added ids in range, the 256 byte tokens, added tokens
//! non-empty UTF-8, offsets monotone and
//! in range, every merge's ids in range, strictly sorted, and its result the
//! concatenation of its parts, and the index in range and strictly increasing (a
//! permutation, so the tokens are distinct). After that, every access is infallible;
//! it still uses checked slice access only.
//!
//! # Encoding (HF `tokenizers`: added vocabulary, pre-tokenizer, `BPE`)
//!
//! 1. If flag bit 0: the BOS id.
//! 2. **Added tokens** (when `special_tokens` is true, HF's default): wherever an added
//!    token's bytes start in the text, it becomes its id (the longest if several start
//!    at the same byte; the leftmost match first), like HF's added-vocabulary split of
//!    special tokens (`normalized: false`, no `lstrip`/`rstrip`/`single_word`). The text
//!    between them is encoded apart: a pre-token never spans a special token. With
//!    `special_tokens` false they are plain text (HF's `encode_special_tokens = True`).
//! 3. **Pre-tokenizer** ([`PreTokenizer`]): for SmolLM2, every digit (HF `Digits` with
//!    `individual_digits`: Rust's `char::is_numeric`, probed) is cut out as a piece of
//!    its own first; then each piece is split by GPT-2's regex
//!    `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`,
//!    implemented by hand with the regex's exact semantics: alternatives in that order,
//!    each greedy, contractions lowercase ASCII only, ` ?` a U+0020 space only, and
//!    `\s+(?!\S)` giving back the last whitespace char of a run that a non-space
//!    follows (so `"  word"` is `" "`, `" word"`). Lookahead stops at the end of the
//!    piece. `\p{L}`, `\p{N}`, `\s` come from `src/tokenizer/bytebpe_tables.rs`,
//!    probed from HF (Oniguruma's Unicode tables).
//! 4. **BPE** per pre-token: each byte becomes its byte token; then, repeatedly, the
//!    adjacent pair with the lowest merge rank (the leftmost on ties) is replaced by the
//!    merge's result, until no adjacent pair is a merge (HF's `BPE` with no dropout and
//!    `ignore_merges: false`).
//!
//! Invalid UTF-8 is refused with [`TokenizerError::InvalidUtf8`] (HF takes `str`, so the
//! host rejects it earlier; the core checks anyway rather than guess a meaning).
//!
//! # Decoding
//!
//! [`ByteBpe::decode`]`(id)` is the token's raw bytes, an added token's content
//! included (HF's `decode(ids, skip_special_tokens=False)`; to skip them, test
//! [`ByteBpe::is_added`]). The bytes of one character may be split over tokens:
//! [`Utf8Stream`](super::stream::Utf8Stream) joins them, and over a whole sequence it
//! emits what HF's `ByteLevel` decoder does (`from_utf8_lossy` of all the bytes).
//! Known divergence: an added token whose content is made only of byte-to-unicode
//! alphabet chars that are not themselves (e.g. `Ġx`) is matched as its content but
//! HF decodes it through the alphabet (`" x"`); no common vocabulary has one.
//!
//! # Resources
//!
//! * Heap: none. Recursion: none. Float operations: none.
//! * Flash: the class tables (`src/tokenizer/bytebpe_tables.rs`) are 7.4 KiB (1,610
//!   class runs and 292 digit-run starts, `u32` each).
//! * Stack: a few words; no per-token buffer.
//! * `out`: each pre-token is expanded to one id per byte and merged in place in `out`;
//!   [`encode_buffer_len`] gives a length that always suffices; `out[len..]` may hold
//!   scratch values afterwards.
//! * Time: a binary search of the class table per char; per pre-token of `n` bytes,
//!   passes that each scan all adjacent pairs with one binary search of the `M` merges
//!   and apply every merge of the lowest rank found (see `merge_all`): O(p·n log M)
//!   for `p` passes, usually a few per distinct merge applied, at worst `n - 1` (HF
//!   uses a heap, O(n log n)). Measured on x86-64 with the 3,422-token test fixture,
//!   one pre-token each: 5,000 bytes of `"token"` repeated in 0.6 ms (244 ms merging
//!   one pair per scan), 5,000 random letters in 46 ms. A caller that takes untrusted
//!   text on a slow core should bound the text length. Added tokens: up to `K` prefix
//!   compares per byte.

use core::cmp::Ordering;

use super::bytebpe_tables::{CLASS_RUNS, DIGIT_RUN_STARTS};
use super::error::{SpecialToken, TokenizerError};
#[cfg(feature = "alloc")]
use super::strings::TableWriter;
use super::strings::{
    check_preamble, cmp_concat, slice, u32_at, u32_entry, words, StringTable, TableLayout,
};

/// First four bytes of a byte-level BPE section.
pub const SECTION_MAGIC: [u8; 4] = *b"TFBB";
/// Layout version written and accepted by this module.
pub const SECTION_VERSION: u32 = 1;
/// Bytes in the fixed header, before the byte tokens.
pub const HEADER_LEN: usize = 40;
/// Most added (special) tokens a section may hold; Llama 3 has 256, each is compared at
/// every byte of the text.
pub const MAX_ADDED_TOKENS: u32 = 1024;
/// Stored in place of an absent BOS or EOS id.
pub const NO_TOKEN: u32 = u32::MAX;

/// Flag bit 0: encoding starts with the BOS id.
const FLAG_ADD_BOS: u32 = 1;
const AT_PRE_TOKENIZER: usize = 16;
const AT_BOS: usize = 20;
const AT_EOS: usize = 24;
const AT_MERGES: usize = 28;
const AT_ADDED: usize = 32;
const AT_STRINGS_LEN: usize = 36;
/// Words per merge entry: left, right, rank, result.
const MERGE_WORDS: u32 = 4;
const MERGE_BYTES: usize = 16;

/// How text is split into pre-tokens before BPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PreTokenizer {
    /// GPT-2's regex (HF `ByteLevel(add_prefix_space=False, use_regex=True)`); code 0.
    Gpt2,
    /// Every digit alone, then GPT-2's regex on each piece (HF
    /// `Sequence([Digits(individual_digits=True), ByteLevel(...)])`, SmolLM2); code 1.
    SmolLm2,
}

impl PreTokenizer {
    /// The code stored in the section.
    pub const fn code(self) -> u32 {
        match self {
            PreTokenizer::Gpt2 => 0,
            PreTokenizer::SmolLm2 => 1,
        }
    }

    /// The pre-tokenizer of a section code.
    pub const fn from_code(code: u32) -> Option<PreTokenizer> {
        match code {
            0 => Some(PreTokenizer::Gpt2),
            1 => Some(PreTokenizer::SmolLm2),
            _ => None,
        }
    }
}

/// GPT-2's byte-to-unicode alphabet (`bytes_to_unicode` in GPT-2's `encoder.py`): the
/// char that stands for byte `byte` in `tokenizer.json` and GGUF token strings.
/// Printable Latin-1 bytes (`!`..=`~`, `¡`..=`¬`, `®`..=`ÿ`) are themselves; the other
/// 68, in increasing order, are U+0100 onwards (space is `Ġ`, newline `Ċ`).
pub const fn byte_char(byte: u8) -> char {
    let shifted = match byte {
        0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF => return byte as char,
        0x00..=0x20 => byte as u32,
        0x7F..=0xA0 => 33 + (byte - 0x7F) as u32,
        // 0xAD, the only excluded byte left.
        _ => 67,
    };
    match char::from_u32(0x100 + shifted) {
        Some(c) => c,
        None => '\u{0}', // unreachable: 0x100..0x144 are scalars
    }
}

/// The byte `c` stands for in GPT-2's byte-to-unicode alphabet, or `None` if `c` is
/// not in it (inverse of [`byte_char`]).
pub const fn char_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    match cp {
        0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF => Some(cp as u8),
        0x100..=0x120 => Some((cp - 0x100) as u8),
        0x121..=0x142 => Some((cp - 0x121 + 0x7F) as u8),
        0x143 => Some(0xAD),
        _ => None,
    }
}

/// Length of an `out` buffer that [`ByteBpe::encode`] never finds too small for
/// `text_len` bytes of text: one id per byte (before merging), plus BOS.
pub const fn encode_buffer_len(text_len: usize, add_bos: bool) -> usize {
    text_len.saturating_add(if add_bos { 1 } else { 0 })
}

/// Byte ranges of the arrays before the string table, from the header counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    byte_ids: (usize, usize),
    added: (usize, usize),
    merges: (usize, usize),
    table: TableLayout,
}

impl Layout {
    fn new(vocab_size: u32, added: u32, merges: u32, strings_len: u32) -> Option<Layout> {
        let byte_ids = words(HEADER_LEN, 256)?;
        let added = words(byte_ids.1, added)?;
        let merges = words(added.1, merges.checked_mul(MERGE_WORDS)?)?;
        let table = TableLayout::new(merges.1, vocab_size, strings_len)?;
        Some(Layout {
            byte_ids,
            added,
            merges,
            table,
        })
    }
}

/// Writer-side settings of a byte-level BPE vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteBpeConfig {
    /// How text is split before BPE.
    pub pre_tokenizer: PreTokenizer,
    /// Beginning-of-sequence id, if the model has one.
    pub bos_id: Option<u32>,
    /// End-of-sequence id (the generator stops at it), if any.
    pub eos_id: Option<u32>,
    /// Whether `encode` starts with BOS (requires `bos_id`).
    pub add_bos: bool,
}

impl ByteBpeConfig {
    /// SmolLM2 (and this crate's test fixture): digits split, no BOS added; `eos_id`
    /// is left unset, fill it in from the model (`<|endoftext|>` or `<|im_end|>`).
    pub const fn smollm2() -> Self {
        ByteBpeConfig {
            pre_tokenizer: PreTokenizer::SmolLm2,
            bos_id: None,
            eos_id: None,
            add_bos: false,
        }
    }

    /// GPT-2: the plain regex, no BOS added.
    pub const fn gpt2() -> Self {
        ByteBpeConfig {
            pre_tokenizer: PreTokenizer::Gpt2,
            ..Self::smollm2()
        }
    }
}

/// A byte-level BPE tokenizer borrowing a validated section.
#[derive(Clone, Copy)]
pub struct ByteBpe<'a> {
    vocab_size: u32,
    flags: u32,
    pre_tokenizer: PreTokenizer,
    bos: u32,
    eos: u32,
    byte_ids: &'a [u8],
    added: &'a [u8],
    merges: &'a [u8],
    merge_count: u32,
    table: StringTable<'a>,
}

impl core::fmt::Debug for ByteBpe<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ByteBpe")
            .field("vocab_size", &self.vocab_size)
            .field("pre_tokenizer", &self.pre_tokenizer)
            .field("bos", &self.bos_id())
            .field("eos", &self.eos_id())
            .field("add_bos", &self.add_bos())
            .field("merges", &self.merge_count)
            .field("added_tokens", &(self.added.len() / 4))
            .finish()
    }
}

impl<'a> ByteBpe<'a> {
    /// Validates a byte-level BPE section (see the module docs for the layout and the
    /// checks) and borrows it. Cost: O(section length); no allocation.
    pub fn from_section(section: &'a [u8]) -> Result<ByteBpe<'a>, TokenizerError> {
        use TokenizerError as E;
        let (flags, vocab_size) = check_preamble(
            section,
            HEADER_LEN,
            (SECTION_MAGIC, SECTION_VERSION),
            FLAG_ADD_BOS,
        )?;
        let field = |at| u32_at(section, at);
        let code = field(AT_PRE_TOKENIZER);
        let pre_tokenizer =
            PreTokenizer::from_code(code).ok_or(E::UnknownPreTokenizer { value: code })?;
        let (bos, eos) = (field(AT_BOS), field(AT_EOS));
        let bos_required = flags & FLAG_ADD_BOS != 0;
        for (which, id, required) in [
            (SpecialToken::Bos, bos, bos_required),
            (SpecialToken::Eos, eos, false),
        ] {
            if id >= vocab_size && (id != NO_TOKEN || required) {
                return Err(E::SpecialIdOutOfRange {
                    which,
                    id,
                    vocab_size,
                });
            }
        }
        let added_count = field(AT_ADDED);
        if added_count > MAX_ADDED_TOKENS {
            return Err(E::TooManyAddedTokens {
                count: added_count,
                limit: MAX_ADDED_TOKENS,
            });
        }
        let merge_count = field(AT_MERGES);
        let layout = Layout::new(vocab_size, added_count, merge_count, field(AT_STRINGS_LEN))
            .ok_or(E::SizeOverflow)?;
        layout.table.check_length(section)?;
        // Any bytes, empty tokens included (no merge can produce one, and the byte
        // tokens and added tokens are checked below).
        let table = StringTable::parse(section, &layout.table, |_, _| Ok(()))?;
        let parsed = ByteBpe {
            vocab_size,
            flags,
            pre_tokenizer,
            bos,
            eos,
            byte_ids: slice(section, layout.byte_ids),
            added: slice(section, layout.added),
            merges: slice(section, layout.merges),
            merge_count,
            table,
        };
        for byte in 0..=u8::MAX {
            let id = parsed.byte_id(byte);
            if id != NO_TOKEN && (id >= vocab_size || table.get(id) != [byte]) {
                return Err(E::ByteTokenMismatch { byte, id });
            }
        }
        for index in 0..added_count {
            let id = u32_entry(parsed.added, index as usize);
            if id >= vocab_size {
                return Err(E::AddedIdOutOfRange {
                    index,
                    id,
                    vocab_size,
                });
            }
            // An empty added token would match everywhere and consume nothing; a UTF-8
            // one can only match at char boundaries of the (UTF-8) text, which is what
            // lets `encode` cut the text at matches as `&str`.
            let token = table.get(id);
            if token.is_empty() {
                return Err(E::EmptyToken { id });
            }
            if core::str::from_utf8(token).is_err() {
                return Err(E::TokenNotUtf8 { id });
            }
        }
        let mut previous: Option<(u32, u32)> = None;
        for index in 0..merge_count {
            let [left, right, _, result] = parsed.merge_entry(index as usize);
            if let Some(id) = [left, right, result]
                .into_iter()
                .find(|&id| id >= vocab_size)
            {
                return Err(E::MergeIdOutOfRange { index, id });
            }
            if previous.is_some_and(|p| p >= (left, right)) {
                return Err(E::MergesNotSorted { index });
            }
            previous = Some((left, right));
            if cmp_concat(table.get(result), table.get(left), table.get(right)) != Ordering::Equal {
                return Err(E::MergeResultMismatch { index });
            }
        }
        table.check_index()?;
        Ok(parsed)
    }

    /// Number of tokens; ids are `0..vocab_size`.
    pub fn vocab_size(&self) -> u32 {
        self.vocab_size
    }

    /// How text is split before BPE.
    pub fn pre_tokenizer(&self) -> PreTokenizer {
        self.pre_tokenizer
    }

    /// Beginning-of-sequence id, if the vocabulary has one.
    pub fn bos_id(&self) -> Option<u32> {
        (self.bos != NO_TOKEN).then_some(self.bos)
    }

    /// End-of-sequence id (a generator stops at it), if the vocabulary has one.
    pub fn eos_id(&self) -> Option<u32> {
        (self.eos != NO_TOKEN).then_some(self.eos)
    }

    /// Whether [`encode`](Self::encode) starts with the BOS id.
    pub fn add_bos(&self) -> bool {
        self.flags & FLAG_ADD_BOS != 0
    }

    /// Number of merges.
    pub fn merge_count(&self) -> u32 {
        self.merge_count
    }

    /// The raw bytes of token `id`, or `None` if `id >= vocab_size`.
    pub fn token(&self, id: u32) -> Option<&'a [u8]> {
        (id < self.vocab_size).then(|| self.table.get(id))
    }

    /// The id of the token with exactly these raw bytes.
    pub fn token_id(&self, bytes: &[u8]) -> Option<u32> {
        self.table.find(bytes, b"")
    }

    /// Ids of the added (special) tokens, in section order.
    pub fn added_token_ids(&self) -> impl Iterator<Item = u32> + 'a {
        let added = self.added;
        (0..added.len() / 4).map(move |i| u32_entry(added, i))
    }

    /// Whether `id` is an added (special) token (`<|im_end|>`, …).
    pub fn is_added(&self, id: u32) -> bool {
        self.added_token_ids().any(|added| added == id)
    }

    /// The merge of the pair `(left, right)`, as `(rank, result id)`; lower ranks
    /// merge first. Binary search of the sorted merges, O(log M).
    pub fn merge(&self, left: u32, right: u32) -> Option<(u32, u32)> {
        let (mut lo, mut hi) = (0usize, self.merge_count as usize);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let [l, r, rank, result] = self.merge_entry(mid);
            match (l, r).cmp(&(left, right)) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Some((rank, result)),
            }
        }
        None
    }

    /// Tokenizes UTF-8 `text` into `out` (see the module docs): BOS if the section says
    /// so, added tokens matched verbatim when `special_tokens` is true (HF's default;
    /// false treats them as plain text), then pre-tokens merged by BPE. Returns the
    /// number of ids written to `out[..len]`; `out[len..]` may hold scratch values.
    ///
    /// Errors: [`TokenizerError::InvalidUtf8`] (nothing is written then);
    /// [`TokenizerError::EncodeBufferTooSmall`] when a pre-token's bytes do not fit in
    /// the rest of `out` (a buffer of [`encode_buffer_len`] always fits; `needed` is
    /// that length), and `out` holds nothing meaningful then.
    pub fn encode(
        &self,
        text: &[u8],
        special_tokens: bool,
        out: &mut [u32],
    ) -> Result<usize, TokenizerError> {
        let text = core::str::from_utf8(text).map_err(|e| TokenizerError::InvalidUtf8 {
            offset: e.valid_up_to(),
        })?;
        let mut sink = Sink {
            out,
            len: 0,
            needed: encode_buffer_len(text.len(), self.add_bos()),
        };
        if self.add_bos() {
            sink.push(self.bos)?;
        }
        let bytes = text.as_bytes();
        let (mut segment_start, mut at) = (0, 0);
        while at < bytes.len() {
            let matched = if special_tokens {
                self.match_added(bytes.get(at..).unwrap_or(&[]))
            } else {
                None
            };
            match matched {
                Some((id, len)) => {
                    // Added tokens are UTF-8 strings, so `at` and `at + len` are char
                    // boundaries of `text`.
                    self.encode_segment(text.get(segment_start..at).unwrap_or(""), &mut sink)?;
                    sink.push(id)?;
                    at = at.saturating_add(len);
                    segment_start = at;
                }
                None => at += 1,
            }
        }
        self.encode_segment(text.get(segment_start..).unwrap_or(""), &mut sink)?;
        Ok(sink.len)
    }

    /// The raw bytes of token `id` (an added token's content included); empty if
    /// `id >= vocab_size`. One character's bytes may be split over several tokens:
    /// see [`Utf8Stream`](super::stream::Utf8Stream).
    pub fn decode(&self, id: u32) -> &'a [u8] {
        self.table.get(id)
    }

    /// Id of the token that is the single byte `byte`, or [`NO_TOKEN`].
    fn byte_id(&self, byte: u8) -> u32 {
        u32_entry(self.byte_ids, usize::from(byte))
    }

    fn merge_entry(&self, index: usize) -> [u32; 4] {
        let entry = index
            .checked_mul(MERGE_BYTES)
            .and_then(|at| self.merges.get(at..at.checked_add(MERGE_BYTES)?))
            .unwrap_or(&[]);
        [0, 1, 2, 3].map(|word| u32_entry(entry, word))
    }

    /// The longest added token starting at `rest`, as `(id, byte length)`.
    fn match_added(&self, rest: &[u8]) -> Option<(u32, usize)> {
        let mut best: Option<(u32, usize)> = None;
        for id in self.added_token_ids() {
            let token = self.table.get(id);
            if rest.starts_with(token) && best.is_none_or(|(_, len)| token.len() > len) {
                best = Some((id, token.len()));
            }
        }
        best
    }

    /// Pre-tokenizes and encodes text between added tokens.
    fn encode_segment(&self, segment: &str, sink: &mut Sink<'_>) -> Result<(), TokenizerError> {
        match self.pre_tokenizer {
            PreTokenizer::Gpt2 => self.encode_piece(segment, sink),
            PreTokenizer::SmolLm2 => {
                let mut piece_start = 0;
                for (at, c) in segment.char_indices() {
                    if is_digit(c) {
                        self.encode_piece(segment.get(piece_start..at).unwrap_or(""), sink)?;
                        let end = at + c.len_utf8();
                        self.encode_piece(segment.get(at..end).unwrap_or(""), sink)?;
                        piece_start = end;
                    }
                }
                self.encode_piece(segment.get(piece_start..).unwrap_or(""), sink)
            }
        }
    }

    /// Splits `piece` with GPT-2's regex and encodes each pre-token.
    fn encode_piece(&self, piece: &str, sink: &mut Sink<'_>) -> Result<(), TokenizerError> {
        let mut rest = piece;
        while !rest.is_empty() {
            let len = gpt2_match(rest);
            let (pre_token, tail) = rest.split_at_checked(len).unwrap_or((rest, ""));
            self.encode_pre_token(pre_token.as_bytes(), sink)?;
            rest = tail;
        }
        Ok(())
    }

    /// BPE of one pre-token: byte tokens, then merges in place in the sink.
    fn encode_pre_token(&self, bytes: &[u8], sink: &mut Sink<'_>) -> Result<(), TokenizerError> {
        let start = sink.len;
        for &byte in bytes {
            match self.byte_id(byte) {
                // No token: dropped, as Hugging Face does (see the section layout).
                NO_TOKEN => {}
                id => sink.push(id)?,
            }
        }
        let tokens = sink.out.get_mut(start..sink.len).unwrap_or(&mut []);
        let merged = self.merge_all(tokens);
        sink.len = start + merged;
        Ok(())
    }

    /// HF's BPE merge loop over `tokens`, in place; returns the merged length.
    ///
    /// HF merges one pair at a time: the pair of lowest rank, the leftmost on ties (its
    /// heap pops `(rank, position)` in that order). Doing exactly that costs a scan of
    /// all pairs per merge, O(n²) lookups for a pre-token of `n` bytes. Instead, each
    /// *pass* finds the lowest rank `r` among the current pairs, then sweeps left to
    /// right merging every pair of rank `r` it meets, which is the same sequence of
    /// merges as long as no pair created by a merge could come first: all pairs left of
    /// the sweep have rank above `r`, so the next HF merge is the leftmost rank-`r` pair
    /// at or after the sweep unless a merge creates a pair of rank below `r` (on either
    /// side), or of rank `r` on its left. The sweep stops at such a pair and a new pass
    /// starts. In a trained merge list, merges that use a result rank after the merge
    /// that made it, so a pass usually merges every occurrence of its pair: a few
    /// passes per distinct merge instead of one scan per merge.
    fn merge_all(&self, tokens: &mut [u32]) -> usize {
        let mut len = tokens.len();
        loop {
            let live = tokens.get(..len).unwrap_or(&[]);
            let lowest = live
                .windows(2)
                .filter_map(|pair| self.merge(pair[0], pair[1]).map(|(rank, _)| rank))
                .min();
            let Some(rank) = lowest else {
                return len;
            };
            len = self.merge_pass(tokens, len, rank);
        }
    }

    /// One sweep of [`merge_all`](Self::merge_all) over `tokens[..len]` with `rank`, the
    /// lowest rank among its pairs; returns the new length. The merged sequence is
    /// compacted in place: `tokens[..=write]` is the result so far, `tokens[read..]` is
    /// still unread (`write < read`).
    fn merge_pass(&self, tokens: &mut [u32], len: usize, rank: u32) -> usize {
        if len < 2 {
            return len; // no pair (never called so)
        }
        let token = |tokens: &[u32], at: usize| tokens.get(at).copied().unwrap_or(0);
        let (mut write, mut read) = (0usize, 1usize);
        while read < len {
            let left = token(tokens, write);
            let right = token(tokens, read);
            match self.merge(left, right) {
                Some((r, merged)) if r == rank => {
                    if let Some(slot) = tokens.get_mut(write) {
                        *slot = merged;
                    }
                    read += 1;
                    // The pair the merge made on its left: HF takes it next if its
                    // rank is at most `rank` (it is the leftmost such pair).
                    let before = write.checked_sub(1).map(|at| token(tokens, at));
                    if before
                        .and_then(|before| self.merge(before, merged))
                        .is_some_and(|(r, _)| r <= rank)
                    {
                        break;
                    }
                }
                // Only a pair made by a merge can rank below `rank`: HF takes it next.
                Some((r, _)) if r < rank => break,
                _ => {
                    write += 1;
                    if let Some(slot) = tokens.get_mut(write) {
                        *slot = right;
                    }
                    read += 1;
                }
            }
        }
        // Move the unread tail (if the sweep stopped early) next to the result.
        let kept = write + 1;
        for offset in 0..len.saturating_sub(read) {
            let value = token(tokens, read + offset);
            if let Some(slot) = tokens.get_mut(kept + offset) {
                *slot = value;
            }
        }
        kept + len.saturating_sub(read)
    }
}

/// Where ids go: `out[..len]`; a push past the end is the buffer error.
struct Sink<'o> {
    out: &'o mut [u32],
    len: usize,
    /// [`encode_buffer_len`] of the text, for the error.
    needed: usize,
}

impl Sink<'_> {
    fn push(&mut self, id: u32) -> Result<(), TokenizerError> {
        let slot = self
            .out
            .get_mut(self.len)
            .ok_or(TokenizerError::EncodeBufferTooSmall {
                len: self.len,
                needed: self.needed,
            })?;
        *slot = id;
        self.len += 1;
        Ok(())
    }
}

/// GPT-2 regex class of a char.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// `[^\s\p{L}\p{N}]`.
    Other,
    /// `\p{L}`.
    Letter,
    /// `\p{N}`.
    Number,
    /// `\s`.
    Space,
}

fn class(c: char) -> Class {
    let cp = u32::from(c);
    match super::run_class(&CLASS_RUNS, cp) {
        1 => Class::Letter,
        2 => Class::Number,
        3 => Class::Space,
        _ => Class::Other,
    }
}

/// HF `Digits` (Rust's `char::is_numeric`, as probed): an odd number of run starts at
/// or below `c`.
fn is_digit(c: char) -> bool {
    let cp = u32::from(c);
    DIGIT_RUN_STARTS.partition_point(|&start| start <= cp) % 2 == 1
}

/// Byte length of GPT-2's regex match at the start of non-empty `text` (at least one
/// char; 0 only for empty text). Alternatives in the regex's order:
/// `'s|'t|'re|'ve|'m|'ll|'d`, ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`,
/// `\s+(?!\S)`, `\s+`.
fn gpt2_match(text: &str) -> usize {
    if let Some(after) = text.strip_prefix('\'') {
        for suffix in ["s", "t", "re", "ve", "m", "ll", "d"] {
            if after.starts_with(suffix) {
                return 1 + suffix.len();
            }
        }
    }
    let mut chars = text.chars();
    let Some(first) = chars.next() else {
        return 0;
    };
    // ` ?X+`: an optional U+0020, then a run of one class. With the space, the run
    // starts at the second char; without, at the first (which is then not `\s`).
    let (run_start, run_class) = match (first, chars.next()) {
        (' ', Some(second)) if class(second) != Class::Space => (1, class(second)),
        (c, _) => (0, class(c)),
    };
    if run_class != Class::Space {
        let run = text.get(run_start..).unwrap_or("");
        let run_len = run
            .char_indices()
            .find(|&(_, c)| class(c) != run_class)
            .map_or(run.len(), |(at, _)| at);
        return run_start + run_len;
    }
    // Whitespace: the maximal run, minus its last char if a non-space follows and
    // that leaves at least one (`\s+(?!\S)`); else the whole run (`\s+`).
    let mut last_start = 0;
    for (at, c) in text.char_indices() {
        if class(c) != Class::Space {
            return if last_start > 0 { last_start } else { at };
        }
        last_start = at;
    }
    text.len()
}

/// Builds a byte-level BPE section.
///
/// * `tokens[id]`: every token string as `tokenizer.json` (`model.vocab`, plus
///   `added_tokens` at their ids) or GGUF (`tokenizer.ggml.tokens`) store it, in GPT-2's
///   byte-to-unicode alphabet; a string with a char outside the alphabet is taken as
///   its UTF-8 bytes (what HF's `ByteLevel` decoder does).
/// * `merges`: `"left right"` in rank order (line `r` has rank `r`), both and their
///   concatenation tokens of `tokens`.
/// * `added`: ids of the added (special) tokens matched verbatim in the text; their
///   strings are stored as their UTF-8 content, not through the alphabet.
///
/// The output length is a multiple of 4; place it at a 4-byte-aligned offset of the
/// model file. It is checked with [`ByteBpe::from_section`] before it is returned.
///
/// Errors: [`TokenizerError::EmptyVocab`], [`TokenizerError::SizeOverflow`],
/// [`TokenizerError::TooManyAddedTokens`], [`TokenizerError::AddedIdOutOfRange`],
/// [`TokenizerError::EmptyToken`] (an empty added token),
/// [`TokenizerError::DuplicateToken`] (two tokens with the same bytes),
/// [`TokenizerError::BadMerge`],
/// [`TokenizerError::SpecialIdOutOfRange`] (BOS/EOS out of range, or `add_bos` without
/// a BOS).
#[cfg(feature = "alloc")]
pub fn encode_section(
    tokens: &[&str],
    merges: &[&str],
    added: &[u32],
    config: &ByteBpeConfig,
) -> Result<alloc::vec::Vec<u8>, TokenizerError> {
    use alloc::vec::Vec;
    use TokenizerError as E;

    let vocab_size = u32::try_from(tokens.len()).map_err(|_| E::SizeOverflow)?;
    if vocab_size == 0 {
        return Err(E::EmptyVocab);
    }
    let added_count = u32::try_from(added.len()).map_err(|_| E::SizeOverflow)?;
    if added_count > MAX_ADDED_TOKENS {
        return Err(E::TooManyAddedTokens {
            count: added_count,
            limit: MAX_ADDED_TOKENS,
        });
    }
    for (index, &id) in (0u32..).zip(added) {
        if id >= vocab_size {
            return Err(E::AddedIdOutOfRange {
                index,
                id,
                vocab_size,
            });
        }
    }
    let bytes: Vec<Vec<u8>> = (0u32..)
        .zip(tokens)
        .map(|(id, token)| match added.contains(&id) {
            true => token.as_bytes().to_vec(),
            false => alphabet_bytes(token),
        })
        .collect();
    let table = TableWriter::new(&bytes)?;
    let mut byte_ids = [0u32; 256];
    for (byte, slot) in (0..=u8::MAX).zip(byte_ids.iter_mut()) {
        *slot = table.find(&[byte]).unwrap_or(NO_TOKEN);
    }
    let mut entries: Vec<[u32; 4]> = Vec::with_capacity(merges.len());
    for (rank, merge) in (0u32..).zip(merges) {
        let bad = E::BadMerge { rank };
        let (left, right) = merge.split_once(' ').ok_or(bad)?;
        let (left, right) = (alphabet_bytes(left), alphabet_bytes(right));
        let left_id = table.find(&left).ok_or(bad)?;
        let right_id = table.find(&right).ok_or(bad)?;
        let result = table.find(&[left, right].concat()).ok_or(bad)?;
        entries.push([left_id, right_id, rank, result]);
    }
    entries.sort_unstable();
    if let Some(pair) = entries.windows(2).find(|w| w[0][..2] == w[1][..2]) {
        return Err(E::BadMerge {
            rank: pair[0][2].max(pair[1][2]),
        });
    }
    let merge_count = u32::try_from(entries.len()).map_err(|_| E::SizeOverflow)?;
    let strings_len = table.strings_len;
    let layout =
        Layout::new(vocab_size, added_count, merge_count, strings_len).ok_or(E::SizeOverflow)?;
    let header = [
        SECTION_VERSION,
        if config.add_bos { FLAG_ADD_BOS } else { 0 },
        vocab_size,
        config.pre_tokenizer.code(),
        config.bos_id.unwrap_or(NO_TOKEN),
        config.eos_id.unwrap_or(NO_TOKEN),
        merge_count,
        added_count,
        strings_len,
    ];
    debug_assert_eq!(4 + 4 * header.len(), HEADER_LEN);
    let array = byte_ids
        .into_iter()
        .chain(added.iter().copied())
        .chain(entries.into_iter().flatten());
    let out = table.write_section((SECTION_MAGIC, &header), array, &layout.table);
    ByteBpe::from_section(&out)?;
    Ok(out)
}

/// The raw bytes of a token string in GPT-2's byte-to-unicode alphabet, or its UTF-8
/// when a char is outside the alphabet (HF's `ByteLevel` decoder does the same).
#[cfg(feature = "alloc")]
fn alphabet_bytes(token: &str) -> alloc::vec::Vec<u8> {
    token
        .chars()
        .map(char_byte)
        .collect::<Option<alloc::vec::Vec<u8>>>()
        .unwrap_or_else(|| token.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphabet_round_trips_every_byte() {
        let mut seen = std::collections::BTreeSet::new();
        for byte in 0..=u8::MAX {
            let c = byte_char(byte);
            assert_eq!(char_byte(c), Some(byte), "{byte:#x}");
            assert!(seen.insert(c));
        }
        assert_eq!(byte_char(b' '), 'Ġ');
        assert_eq!(byte_char(b'\n'), 'Ċ');
        assert_eq!(byte_char(b'\t'), 'ĉ');
        assert_eq!(byte_char(0xAD), '\u{143}');
        assert_eq!(char_byte('\u{144}'), None);
        assert_eq!(char_byte(' '), None);
    }

    fn split(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let (head, tail) = rest.split_at(gpt2_match(rest));
            assert!(!head.is_empty());
            out.push(head);
            rest = tail;
        }
        out
    }

    #[test]
    fn gpt2_regex_splits() {
        assert_eq!(split("Hello world"), ["Hello", " world"]);
        assert_eq!(split("Hello  world"), ["Hello", " ", " world"]);
        assert_eq!(split("a\t\tb"), ["a", "\t", "\t", "b"]);
        assert_eq!(split("a \t b"), ["a", " \t", " b"]);
        assert_eq!(split("end  "), ["end", "  "]);
        assert_eq!(split("it's we'LL"), ["it", "'s", " we", "'", "LL"]);
        assert_eq!(split("x 42!!'s"), ["x", " 42", "!!'", "s"]);
        assert_eq!(split(" !"), [" !"]);
        assert_eq!(split("  \n"), ["  \n"]);
        assert_eq!(split("\n x"), ["\n", " x"]);
        assert_eq!(split("café 你好"), ["café", " 你好"]);
        assert_eq!(split(""), Vec::<&str>::new());
    }

    #[test]
    fn classes_of_ascii() {
        for c in ['a', 'Z', 'é', '你'] {
            assert_eq!(class(c), Class::Letter, "{c:?}");
        }
        for c in ['0', '9', '²', '½'] {
            assert_eq!(class(c), Class::Number, "{c:?}");
        }
        for c in [
            ' ', '\t', '\n', '\r', '\u{b}', '\u{c}', '\u{a0}', '\u{3000}',
        ] {
            assert_eq!(class(c), Class::Space, "{c:?}");
        }
        for c in ['!', '\'', '\0', '😀'] {
            assert_eq!(class(c), Class::Other, "{c:?}");
        }
        assert!(is_digit('7') && is_digit('٣') && !is_digit('a') && !is_digit('\0'));
    }

    /// A byte no token stands for (SmolLM2 has none for 21 bytes) is dropped from the
    /// text, as Hugging Face's BPE without an unknown token drops it.
    #[cfg(feature = "alloc")]
    #[test]
    fn bytes_without_a_token_are_dropped() {
        let missing = [0x04, 0xFF];
        let mut tokens: std::vec::Vec<std::string::String> = (0..=u8::MAX)
            .filter(|b| !missing.contains(b))
            .map(|b| byte_char(b).into())
            .collect();
        tokens.push("ab".into());
        let tokens: std::vec::Vec<&str> = tokens.iter().map(|t| t.as_str()).collect();
        let section = encode_section(&tokens, &["a b"], &[], &ByteBpeConfig::gpt2()).unwrap();
        let bpe = ByteBpe::from_section(&section).unwrap();
        assert_eq!(bpe.byte_id(0x04), NO_TOKEN);
        let id = |t: &[u8]| bpe.token_id(t).unwrap();
        let mut out = [0u32; 8];
        // "\x04" is a pre-token of its own (GPT-2's split), which comes out empty.
        let n = bpe.encode(b"ab\x04b", false, &mut out).unwrap();
        assert_eq!(&out[..n], &[id(b"ab"), id(b"b")]);
        let n = bpe.encode(b"\x04", false, &mut out).unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn encode_buffer_len_counts_bos() {
        assert_eq!(encode_buffer_len(0, false), 0);
        assert_eq!(encode_buffer_len(5, true), 6);
        assert_eq!(encode_buffer_len(usize::MAX, true), usize::MAX);
    }
}
