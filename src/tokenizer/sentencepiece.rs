//! On-device SentencePiece-style BPE tokenizer with llama2.c semantics.
//!
//! [`SentencePiece`] reads its pieces and merge priorities in place from a
//! *SentencePiece section* (magic `b"TFSP"`), validated once by
//! [`SentencePiece::from_section`]. [`SentencePiece::encode`] then turns raw text bytes
//! into ids exactly as llama2.c's `encode()` in `run.c` does (checked id for id against
//! llama2.c itself by `tests/sentencepiece.rs`), with no heap, no recursion, no float
//! arithmetic and no panics. [`SentencePiece::decode`] maps one id (given the previous
//! one) back to bytes with llama2.c's `decode()` rules; feed those bytes to
//! [`Utf8Stream`](super::stream::Utf8Stream) to print whole characters only. The host
//! builds the section with [`encode_section`] (feature `alloc`), next to the reader so
//! that the two cannot drift; `tinyformer-cli` reads llama2.c's `tokenizer.bin` into it.
//!
//! ```
//! # #[cfg(feature = "alloc")] {
//! use tinyformer::tokenizer::sentencepiece::{encode_section, SentencePiece, SentencePieceConfig};
//!
//! // llama2.c's vocabulary shape: <unk> <s> </s>, 256 byte pieces, then merged pieces
//! // with their scores (higher merges first).
//! let mut pieces: Vec<Vec<u8>> = vec![b"<unk>".to_vec(), b"\n<s>\n".to_vec(), b"\n</s>\n".to_vec()];
//! pieces.extend((0..=255u8).map(|b| format!("<0x{b:02X}>").into_bytes()));
//! let mut scores = vec![0.0f32; pieces.len()];
//! for (piece, score) in [(" ", -1.0), ("h", -2.0), ("i", -3.0), ("hi", -4.0), (" hi", -5.0)] {
//!     pieces.push(piece.as_bytes().to_vec());
//!     scores.push(score);
//! }
//! let pieces: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
//! let section = encode_section(&pieces, &scores, &SentencePieceConfig::llama2c()).unwrap();
//!
//! let sp = SentencePiece::from_section(&section).unwrap();
//! let mut ids = [0u32; 8];
//! let n = sp.encode(b"hi!", true, &mut ids).unwrap();
//! // BOS, " hi" (" " + "h" + "i" merged), then "!" by byte fallback (0x21 + 3).
//! assert_eq!(&ids[..n], &[1, sp.token_id(b" hi").unwrap(), 0x21 + 3]);
//! assert_eq!(sp.decode(1, ids[1]), b"hi"); // leading space stripped after BOS
//! assert_eq!(sp.decode(ids[1], ids[2]), b"!"); // <0x21> is the raw byte
//! # }
//! ```
//!
//! # Section layout (version 1)
//!
//! All integers are little-endian 32-bit (`u32` unless marked `i32`). The section length
//! is a multiple of 4 and the model file places it at a 4-byte-aligned offset, but the
//! reader uses `from_le_bytes` on byte slices and needs no alignment. `N` = vocab size,
//! `S` = total piece bytes.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `b"TFSP"` ([`SECTION_MAGIC`]) |
//! | 4 | 4 | version = 1 ([`SECTION_VERSION`]) |
//! | 8 | 4 | flags, all bits 0 (reserved) |
//! | 12 | 4 | `N`, vocab size, ≥ 1 (and ≥ `B + 256`, see below) |
//! | 16 | 4 | unk id (< `N`; `<unk>` in llama2.c, never produced by `encode`) |
//! | 20 | 4 | BOS id (< `N`; 1 in llama2.c) |
//! | 24 | 4 | EOS id (< `N`; 2 in llama2.c) |
//! | 28 | 4 | `B`, first byte-fallback id: `B + 256 ≤ N` and piece `B + b` is `<0xHH>` for byte `b` (3 in llama2.c) |
//! | 32 | 4 | `L`, bytes of the longest piece, exactly; 1..=[`MAX_PIECE_LEN_LIMIT`] |
//! | 36 | 4 | `S`, total bytes of the pieces |
//! | 40 | 4·N | merge keys (`i32`): [`merge_key`] of llama2.c's f32 score, per id |
//! | 40+4N | 4·(N+1) | piece offsets: piece `id` is bytes `off[id]..off[id+1]` of the piece area; `off[0] = 0`, non-decreasing, `off[N] = S` |
//! | 44+8N | 4·N | sorted index: all ids ordered by piece bytes (unsigned, like `strcmp`), strictly increasing |
//! | 44+12N | S | piece area: the pieces concatenated in id order (any bytes; may be empty) |
//! | 44+12N+S | 0–3 | zero padding to a multiple of 4 |
//!
//! The section length must equal the padded total exactly. For llama2.c's 512-token
//! `tok512.bin` it is 8,316 bytes; for a 32,000-token Llama 2 vocabulary about 0.5 MB
//! (12 bytes per token plus the pieces).
//!
//! Everything from the piece offsets on (offsets, sorted index, piece area, padding) is
//! the *string table* that the [WordPiece section](super) ends with too, starting here
//! at `T = 40+4N`: one layout, validator, lookup and writer for both, in
//! `src/tokenizer/strings.rs`. The SentencePiece section adds to it the merge keys
//! before it, and `L` and the byte pieces checked against it.
//!
//! Validation ([`SentencePiece::from_section`]) is one O(section length) pass: header
//! fields, every size with checked arithmetic, exact length and zero padding, special
//! and byte-fallback ids in range, offsets monotone and in range, `L` equal to the
//! longest piece, the 256 byte pieces, and the index in range and strictly increasing
//! (so it is a permutation and the pieces are distinct). After that, every access is
//! infallible; it still uses checked slice access only.
//!
//! # Merge keys
//!
//! llama2.c keeps an f32 score per piece and merges, at each step, the adjacent pair
//! whose concatenation is a piece with the highest score, provided that score is
//! `> -1e10` (its initial best), taking the leftmost pair on ties. The section stores
//! instead an `i32` key per piece, [`merge_key`]`(score)`: the order-preserving map of
//! f32 bits to `i32` (non-negative floats keep their bits, negative ones have all but
//! the sign bit flipped), with `-0.0` mapped like `+0.0` so that equal floats have equal
//! keys. For every pair of non-NaN floats, `a > b` exactly when
//! `merge_key(a) > merge_key(b)`, so comparing keys against [`MERGE_KEY_FLOOR`]
//! (`merge_key(-1e10)`) reproduces llama2.c's choices bit for bit with integer compares
//! only. NaN scores are refused by the writer.
//!
//! # Encoding (llama2.c's `encode` with `eos = 0`)
//!
//! 1. If `bos`: the BOS id.
//! 2. If the text is non-empty: the *dummy prefix*, the id of the piece `" "` (if the
//!    vocabulary has none, llama2.c writes id -1; this crate writes the byte-fallback id
//!    of `0x20` instead).
//! 3. The text is cut into *groups*: a group starts at any byte and takes the following
//!    UTF-8 continuation bytes (`0b10xx_xxxx`) while it is shorter than 4 bytes. A group
//!    that is a piece becomes its id; otherwise each of its bytes becomes the
//!    byte-fallback id `B + byte`. For valid UTF-8 a group is one codepoint. Invalid
//!    UTF-8 is not an error: it is grouped by the same rule (a stray continuation byte
//!    starts a group of its own; an ASCII byte followed by continuation bytes is one
//!    group), exactly as llama2.c does, and so it is encoded by byte fallback and
//!    decodes back to the same bytes. Unlike llama2.c, which reads a C string, a NUL byte
//!    does not end the text: it is an ordinary byte (`<0x00>` by byte fallback).
//! 4. Merge: repeatedly find, over all adjacent pairs, the leftmost pair whose
//!    concatenated pieces form a piece with the largest key above [`MERGE_KEY_FLOOR`],
//!    and replace the pair by that piece; stop when no pair qualifies. Pieces are
//!    concatenated as stored, byte pieces included (`<0xE4>` is six bytes here, as in
//!    llama2.c).
//!
//! The sequence before merging must fit in `out`; [`encode_buffer_len`] gives a length
//! that always does.
//!
//! # Decoding (llama2.c's `decode`)
//!
//! [`SentencePiece::decode`]`(prev, id)` is the piece of `id`, without its leading space
//! if `prev` is BOS, and if what remains is exactly `<0xHH>` (six bytes, hex digits in
//! either case) it is the single raw byte `0xHH` instead (for `<0x00>` the byte 0, where
//! llama2.c's C string is empty). llama2.c parses the byte
//! pieces with `sscanf("<0x%02hhX>")`, which also accepts malformed forms such as
//! `<0x4` or `<0x 4>`; no llama2.c vocabulary has such pieces, and here they decode as
//! text. Decoded bytes of a character split across byte pieces arrive over several
//! tokens: [`Utf8Stream`](super::stream::Utf8Stream) joins them.
//!
//! # Resources
//!
//! * Heap: none. Recursion: none. Float operations: none at run time.
//! * Stack: a few words; concatenated pieces are compared in place, never copied.
//! * `out`: the sequence is built and merged in place in `out`; `out[len..]` may hold
//!   scratch values afterwards.
//! * Time: O(text length · log N) for the groups; then each merge step scans all adjacent
//!   pairs with one binary search each, O(n² · log N · L) for n tokens before merging
//!   (llama2.c's algorithm). Pairs longer than `L` are skipped without a search.

use super::error::{SpecialToken, TokenizerError};
#[cfg(feature = "alloc")]
use super::strings::TableWriter;
use super::strings::{
    check_preamble, check_special_ids, slice, u32_at, u32_entry, words, StringTable, TableLayout,
};

/// First four bytes of a SentencePiece section.
pub const SECTION_MAGIC: [u8; 4] = *b"TFSP";
/// Layout version written and accepted by this module.
pub const SECTION_VERSION: u32 = 1;
/// Bytes in the fixed header.
pub const HEADER_LEN: usize = 40;
/// Longest piece a section may hold, in bytes. SentencePiece trains pieces of at most
/// 16 characters by default (`max_sentencepiece_length`), at most 64 UTF-8 bytes; the
/// limit bounds the cost of each piece compare.
pub const MAX_PIECE_LEN_LIMIT: u32 = 256;
/// Number of byte-fallback pieces, `<0x00>`..`<0xFF>`.
pub const BYTE_PIECES: u32 = 256;
/// Longest group of input bytes looked up as one piece (a 4-byte UTF-8 codepoint).
pub const MAX_GROUP_BYTES: usize = 4;
/// Key of llama2.c's merge threshold: a pair merges only when its piece's key is above
/// this, `merge_key(-1e10)` (llama2.c's `best_score` starts at `-1e10`).
pub const MERGE_KEY_FLOOR: i32 = -1_343_554_298;

// Header field offsets (all u32 little-endian after the magic; the version, flags and
// vocab size at bytes 4, 8 and 12 are read by `check_preamble`, shared with the
// WordPiece section).
const AT_UNK: usize = 16;
const AT_BOS: usize = 20;
const AT_EOS: usize = 24;
const AT_BYTE_BASE: usize = 28;
const AT_MAX_PIECE_LEN: usize = 32;
const AT_STRINGS_LEN: usize = 36;

/// The order-preserving map of an f32 merge score to the `i32` key stored in the
/// section: `a > b` exactly when `merge_key(a) > merge_key(b)`, for all non-NaN `a`,
/// `b` (`-0.0` and `+0.0` both map to 0). NaN maps somewhere meaningless; the writer
/// refuses it. Pure bit manipulation, no float arithmetic.
pub const fn merge_key(score: f32) -> i32 {
    let bits = score.to_bits();
    if bits == 0x8000_0000 {
        return 0; // -0.0 == +0.0
    }
    let signed = bits as i32;
    if signed < 0 {
        signed ^ 0x7FFF_FFFF
    } else {
        signed
    }
}

/// Length of an `out` buffer that [`SentencePiece::encode`] never finds too small for
/// `text_len` bytes of text: one id per byte, plus BOS and the dummy prefix.
pub const fn encode_buffer_len(text_len: usize, bos: bool) -> usize {
    let prefix = if text_len > 0 { 1 } else { 0 };
    text_len
        .saturating_add(prefix)
        .saturating_add(if bos { 1 } else { 0 })
}

/// The byte a `<0xHH>` piece stands for (exactly six bytes, hex digits in either case).
fn byte_piece_value(piece: &[u8]) -> Option<u8> {
    let [b'<', b'0', b'x', high, low, b'>'] = *piece else {
        return None;
    };
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some(digit(high)? << 4 | digit(low)?)
}

/// Every byte value once, so that [`SentencePiece::decode`] can return a byte piece as a
/// one-byte slice of static memory.
static BYTE_VALUES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = i as u8;
        i += 1;
    }
    table
};

fn raw_byte(byte: u8) -> &'static [u8] {
    let at = usize::from(byte);
    BYTE_VALUES.get(at..at + 1).unwrap_or(&[])
}

fn is_continuation(byte: u8) -> bool {
    byte & 0xC0 == 0x80
}

/// Byte ranges of the merge keys and of the string table, from the header counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    keys: (usize, usize),
    table: TableLayout,
}

impl Layout {
    fn new(vocab_size: u32, strings_len: u32) -> Option<Layout> {
        let keys = words(HEADER_LEN, vocab_size)?;
        let table = TableLayout::new(keys.1, vocab_size, strings_len)?;
        Some(Layout { keys, table })
    }
}

/// Writer-side special ids of a SentencePiece vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentencePieceConfig {
    /// Unknown-piece id (`<unk>`).
    pub unk_id: u32,
    /// Beginning-of-sequence id (`<s>`).
    pub bos_id: u32,
    /// End-of-sequence id (`</s>`).
    pub eos_id: u32,
    /// First byte-fallback id: piece `byte_fallback_base + b` must be `<0xHH>` for `b`.
    pub byte_fallback_base: u32,
}

impl SentencePieceConfig {
    /// llama2.c's layout: `<unk>` 0, `<s>` 1, `</s>` 2, byte pieces at 3..259.
    pub const fn llama2c() -> Self {
        SentencePieceConfig {
            unk_id: 0,
            bos_id: 1,
            eos_id: 2,
            byte_fallback_base: 3,
        }
    }
}

/// A SentencePiece-style BPE tokenizer borrowing a validated section.
#[derive(Clone, Copy)]
pub struct SentencePiece<'a> {
    vocab_size: u32,
    unk: u32,
    bos: u32,
    eos: u32,
    byte_base: u32,
    /// Id written before non-empty text: the piece `" "`, or the byte-fallback id of
    /// `0x20` when there is none.
    dummy_prefix: u32,
    keys: &'a [u8],
    /// The pieces; `table.longest()` is `L`, bytes of the longest piece.
    table: StringTable<'a>,
}

impl core::fmt::Debug for SentencePiece<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SentencePiece")
            .field("vocab_size", &self.vocab_size)
            .field("unk", &self.unk)
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("byte_fallback_base", &self.byte_base)
            .field("max_piece_len", &self.table.longest())
            .field("dummy_prefix", &self.dummy_prefix)
            .finish()
    }
}

impl<'a> SentencePiece<'a> {
    /// Validates a SentencePiece section (see the module docs for the layout and the
    /// checks) and borrows it. This is the only fallible step besides a too-short
    /// output buffer. Cost: O(section length); no allocation.
    pub fn from_section(section: &'a [u8]) -> Result<SentencePiece<'a>, TokenizerError> {
        use TokenizerError as E;
        // No flag is defined: all bits reserved.
        let (_, vocab_size) =
            check_preamble(section, HEADER_LEN, (SECTION_MAGIC, SECTION_VERSION), 0)?;
        let field = |at| u32_at(section, at);
        let (unk, bos, eos) = (field(AT_UNK), field(AT_BOS), field(AT_EOS));
        check_special_ids(
            &[
                (SpecialToken::Unk, unk),
                (SpecialToken::Bos, bos),
                (SpecialToken::Eos, eos),
            ],
            vocab_size,
        )?;
        let byte_base = field(AT_BYTE_BASE);
        if byte_base
            .checked_add(BYTE_PIECES)
            .is_none_or(|end| end > vocab_size)
        {
            return Err(E::ByteFallbackOutOfRange {
                base: byte_base,
                vocab_size,
            });
        }
        let declared_max = field(AT_MAX_PIECE_LEN);
        if !(1..=MAX_PIECE_LEN_LIMIT).contains(&declared_max) {
            return Err(E::MaxPieceLen {
                value: declared_max,
                limit: MAX_PIECE_LEN_LIMIT,
            });
        }
        let layout = Layout::new(vocab_size, field(AT_STRINGS_LEN)).ok_or(E::SizeOverflow)?;
        layout.table.check_length(section)?;
        // Any bytes, empty pieces included.
        let table = StringTable::parse(section, &layout.table, |_, _| Ok(()))?;
        // At most S, a u32.
        let longest = u32::try_from(table.longest()).unwrap_or(u32::MAX);
        if longest != declared_max {
            return Err(E::MaxPieceLenMismatch {
                declared: declared_max,
                actual: longest,
            });
        }

        let mut parsed = SentencePiece {
            vocab_size,
            unk,
            bos,
            eos,
            byte_base,
            dummy_prefix: 0,
            keys: slice(section, layout.keys),
            table,
        };
        for byte in 0..=u8::MAX {
            let id = byte_base + u32::from(byte);
            if byte_piece_value(parsed.piece_bytes(id)) != Some(byte) {
                return Err(E::ByteFallbackPiece { id, byte });
            }
        }
        table.check_index()?;
        parsed.dummy_prefix = parsed
            .find(b" ", b"")
            .unwrap_or(byte_base + u32::from(b' '));
        Ok(parsed)
    }

    /// Number of tokens; ids are `0..vocab_size`.
    pub fn vocab_size(&self) -> u32 {
        self.vocab_size
    }

    /// Beginning-of-sequence id (`<s>`).
    pub fn bos_id(&self) -> u32 {
        self.bos
    }

    /// End-of-sequence id (`</s>`); `encode` never writes it, a generator stops at it.
    pub fn eos_id(&self) -> u32 {
        self.eos
    }

    /// Unknown-piece id (`<unk>`); `encode` never writes it (byte fallback instead).
    pub fn unk_id(&self) -> u32 {
        self.unk
    }

    /// First byte-fallback id: byte `b` is token `byte_fallback_base() + b`.
    pub fn byte_fallback_base(&self) -> u32 {
        self.byte_base
    }

    /// Bytes of the longest piece.
    pub fn max_piece_len(&self) -> usize {
        self.table.longest()
    }

    /// The bytes of piece `id` as stored (byte pieces as their text `<0xHH>`), or `None`
    /// if `id >= vocab_size`.
    pub fn piece(&self, id: u32) -> Option<&'a [u8]> {
        (id < self.vocab_size).then(|| self.piece_bytes(id))
    }

    /// The merge key of piece `id` ([`merge_key`] of its score), or `None` if out of
    /// range.
    pub fn score_key(&self, id: u32) -> Option<i32> {
        (id < self.vocab_size).then(|| self.key(id))
    }

    /// The id of the piece with exactly these bytes.
    pub fn token_id(&self, piece: &[u8]) -> Option<u32> {
        self.find(piece, b"")
    }

    /// Tokenizes `text` into `out` with llama2.c's `encode` (see the module docs):
    /// optional BOS, the dummy prefix when `text` is non-empty, one id per UTF-8
    /// codepoint or fallback byte, then best-first merges. Returns the number of ids
    /// written to `out[..len]`; `out[len..]` may hold scratch values. Any bytes are
    /// accepted; invalid UTF-8 is encoded by byte fallback.
    ///
    /// Errors: [`TokenizerError::EncodeBufferTooSmall`] when the sequence before merging
    /// does not fit in `out` (a buffer of [`encode_buffer_len`] always fits); `needed`
    /// is the exact length required, and `out` holds nothing meaningful then.
    pub fn encode(&self, text: &[u8], bos: bool, out: &mut [u32]) -> Result<usize, TokenizerError> {
        let mut sink = Sink { out, len: 0 };
        if bos {
            sink.push(self.bos);
        }
        if !text.is_empty() {
            sink.push(self.dummy_prefix);
        }
        let mut start = 0;
        while start < text.len() {
            let mut end = start + 1;
            while end - start < MAX_GROUP_BYTES
                && text.get(end).is_some_and(|&b| is_continuation(b))
            {
                end += 1;
            }
            let group = text.get(start..end).unwrap_or(&[]);
            match self.find(group, b"") {
                Some(id) => sink.push(id),
                None => {
                    for &byte in group {
                        sink.push(self.byte_base + u32::from(byte));
                    }
                }
            }
            start = end;
        }
        let (len, capacity) = (sink.len, sink.out.len());
        let tokens = sink
            .out
            .get_mut(..len)
            .ok_or(TokenizerError::EncodeBufferTooSmall {
                len: capacity,
                needed: len,
            })?;
        Ok(self.merge(tokens))
    }

    /// llama2.c's merge loop over `tokens` (all ids `< vocab_size`), in place; returns
    /// the merged length.
    fn merge(&self, tokens: &mut [u32]) -> usize {
        let mut len = tokens.len();
        loop {
            let mut best_key = MERGE_KEY_FLOOR;
            let mut best: Option<(usize, u32)> = None;
            let live = tokens.get(..len).unwrap_or(&[]);
            for (at, pair) in live.windows(2).enumerate() {
                let [left, right] = *pair else { continue };
                if let Some(id) = self.find(self.piece_bytes(left), self.piece_bytes(right)) {
                    let key = self.key(id);
                    // Strictly greater: the leftmost pair wins ties, as in llama2.c.
                    if key > best_key {
                        best_key = key;
                        best = Some((at, id));
                    }
                }
            }
            let Some((at, id)) = best else {
                return len;
            };
            if let Some(slot) = tokens.get_mut(at) {
                *slot = id;
            }
            // Drop the right half of the pair: shift the tail left by one.
            for i in at + 1..len - 1 {
                if let Some(&next) = tokens.get(i + 1) {
                    if let Some(slot) = tokens.get_mut(i) {
                        *slot = next;
                    }
                }
            }
            len -= 1;
        }
    }

    /// llama2.c's `decode`: the bytes to print for token `id` following token `prev`.
    /// The piece, without its leading space after BOS; a `<0xHH>` piece is the single
    /// raw byte `0xHH`. Out-of-range `id` gives the empty slice. The bytes of one
    /// character may be split over several tokens; see
    /// [`Utf8Stream`](super::stream::Utf8Stream).
    pub fn decode(&self, prev: u32, id: u32) -> &'a [u8] {
        let mut piece = self.piece_bytes(id);
        if prev == self.bos {
            if let Some(rest) = piece.strip_prefix(b" ") {
                piece = rest;
            }
        }
        match byte_piece_value(piece) {
            Some(byte) => raw_byte(byte),
            None => piece,
        }
    }

    /// Bytes of piece `id` (empty if out of range, which validation rules out for every
    /// id this type produces).
    fn piece_bytes(&self, id: u32) -> &'a [u8] {
        self.table.get(id)
    }

    fn key(&self, id: u32) -> i32 {
        u32_entry(self.keys, id as usize) as i32
    }

    /// Binary search of the sorted index for the piece `left ++ right`.
    fn find(&self, left: &[u8], right: &[u8]) -> Option<u32> {
        self.table.find(left, right)
    }
}

/// Where the ids before merging go: `out[..len]`, counting past its end so that the
/// error can say how many were needed.
struct Sink<'o> {
    out: &'o mut [u32],
    len: usize,
}

impl Sink<'_> {
    fn push(&mut self, id: u32) {
        if let Some(slot) = self.out.get_mut(self.len) {
            *slot = id;
        }
        self.len = self.len.saturating_add(1);
    }
}

/// Builds a SentencePiece section from a vocabulary (`pieces[id]`, `scores[id]`, as in
/// llama2.c's `tokenizer.bin`) and the special ids. The output length is a multiple of
/// 4; place it at a 4-byte-aligned offset of the model file (the reader itself needs no
/// alignment). The result is checked with [`SentencePiece::from_section`] before it is
/// returned, so an `Ok` section always loads.
///
/// Errors: [`TokenizerError::ScoreCountMismatch`], [`TokenizerError::EmptyVocab`],
/// [`TokenizerError::NanScore`], [`TokenizerError::PieceTooLong`],
/// [`TokenizerError::DuplicateToken`], [`TokenizerError::SizeOverflow`], and the
/// validation errors for bad special or byte-fallback ids
/// ([`TokenizerError::SpecialIdOutOfRange`], [`TokenizerError::ByteFallbackOutOfRange`],
/// [`TokenizerError::ByteFallbackPiece`]).
#[cfg(feature = "alloc")]
pub fn encode_section(
    pieces: &[&[u8]],
    scores: &[f32],
    config: &SentencePieceConfig,
) -> Result<alloc::vec::Vec<u8>, TokenizerError> {
    use TokenizerError as E;

    if pieces.len() != scores.len() {
        return Err(E::ScoreCountMismatch {
            pieces: pieces.len(),
            scores: scores.len(),
        });
    }
    let vocab_size = u32::try_from(pieces.len()).map_err(|_| E::SizeOverflow)?;
    if vocab_size == 0 {
        return Err(E::EmptyVocab);
    }
    if let Some(id) = scores.iter().position(|s| s.is_nan()) {
        return Err(E::NanScore { id: id as u32 });
    }
    if let Some((id, piece)) = pieces
        .iter()
        .enumerate()
        .find(|(_, p)| p.len() > MAX_PIECE_LEN_LIMIT as usize)
    {
        return Err(E::PieceTooLong {
            id: id as u32,
            len: piece.len(),
            limit: MAX_PIECE_LEN_LIMIT,
        });
    }
    let table = TableWriter::new(pieces)?;
    let strings_len = table.strings_len;
    // At most MAX_PIECE_LEN_LIMIT (checked above), so it fits in u32.
    let max_piece_len = pieces.iter().map(|p| p.len()).max().unwrap_or(0) as u32;
    let layout = Layout::new(vocab_size, strings_len).ok_or(E::SizeOverflow)?;

    let header = [
        SECTION_VERSION,
        0, // flags
        vocab_size,
        config.unk_id,
        config.bos_id,
        config.eos_id,
        config.byte_fallback_base,
        max_piece_len,
        strings_len,
    ];
    debug_assert_eq!(4 + 4 * header.len(), HEADER_LEN);
    let keys = scores.iter().map(|&score| merge_key(score) as u32);
    let out = table.write_section((SECTION_MAGIC, &header), keys, &layout.table);
    SentencePiece::from_section(&out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_key_floor_is_llama2c_threshold() {
        assert_eq!(MERGE_KEY_FLOOR, merge_key(-1e10));
    }

    #[test]
    fn merge_key_preserves_f32_order() {
        let values = [
            f32::NEG_INFINITY,
            f32::MIN,
            -1e10,
            -2.0,
            -1.0,
            -f32::MIN_POSITIVE,
            -1e-45,
            -0.0,
            0.0,
            1e-45,
            f32::MIN_POSITIVE,
            1.0,
            2.0,
            f32::MAX,
            f32::INFINITY,
        ];
        for &a in &values {
            for &b in &values {
                assert_eq!(
                    a > b,
                    merge_key(a) > merge_key(b),
                    "{a} > {b} vs keys {} {}",
                    merge_key(a),
                    merge_key(b)
                );
                assert_eq!(a == b, merge_key(a) == merge_key(b), "{a} == {b}");
            }
        }
        // Neighbouring floats, across a sweep of bit patterns.
        let mut bits = 0u32;
        loop {
            let x = f32::from_bits(bits);
            let next = f32::from_bits(bits.wrapping_add(1));
            if !x.is_nan() && !next.is_nan() {
                assert_eq!(x > next, merge_key(x) > merge_key(next), "{bits:#x}");
                assert_eq!(x < next, merge_key(x) < merge_key(next), "{bits:#x}");
            }
            bits = match bits.checked_add(0x0001_0001) {
                Some(b) => b,
                None => break,
            };
        }
    }

    #[test]
    fn byte_pieces_parse_exactly() {
        assert_eq!(byte_piece_value(b"<0x00>"), Some(0));
        assert_eq!(byte_piece_value(b"<0xE4>"), Some(0xE4));
        assert_eq!(byte_piece_value(b"<0xe4>"), Some(0xE4));
        assert_eq!(byte_piece_value(b"<0xFF>"), Some(0xFF));
        for bad in [
            &b"<0x4>"[..],
            b"<0x4",
            b"<0xG0>",
            b"<0x0A",
            b"0x0A>",
            b" <0x0A>",
            b"",
        ] {
            assert_eq!(byte_piece_value(bad), None, "{bad:?}");
        }
        for byte in 0..=255u8 {
            assert_eq!(raw_byte(byte), &[byte]);
        }
    }

    #[test]
    fn encode_buffer_len_counts_prefixes() {
        assert_eq!(encode_buffer_len(0, false), 0);
        assert_eq!(encode_buffer_len(0, true), 1);
        assert_eq!(encode_buffer_len(5, false), 6);
        assert_eq!(encode_buffer_len(5, true), 7);
        assert_eq!(encode_buffer_len(usize::MAX, true), usize::MAX);
    }
}
