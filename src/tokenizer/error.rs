//! Tokenizer errors: section validation, section writing, and encoding.

use core::fmt;

/// One of the special tokens a tokenizer section must name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SpecialToken {
    /// Unknown-word token, `[UNK]` in BERT.
    Unk,
    /// Sequence start, `[CLS]` in BERT.
    Cls,
    /// Sequence end, `[SEP]` in BERT.
    Sep,
    /// Padding, `[PAD]` in BERT.
    Pad,
    /// Beginning of sequence, `<s>` in SentencePiece/llama2.c.
    Bos,
    /// End of sequence, `</s>` in SentencePiece/llama2.c.
    Eos,
}

impl fmt::Display for SpecialToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpecialToken::Unk => "unk",
            SpecialToken::Cls => "cls",
            SpecialToken::Sep => "sep",
            SpecialToken::Pad => "pad",
            SpecialToken::Bos => "bos",
            SpecialToken::Eos => "eos",
        })
    }
}

/// Everything that can go wrong in [`crate::tokenizer`] (WordPiece,
/// [`SentencePiece`](super::sentencepiece::SentencePiece) and
/// [`ByteBpe`](super::bytebpe::ByteBpe) sections alike). Offsets are
/// byte offsets, `id`s are token ids, `position`s are positions in the sorted index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TokenizerError {
    /// The section is shorter than its fixed header.
    Truncated {
        /// Bytes the header needs.
        needed: usize,
        /// Bytes available.
        len: usize,
    },
    /// The section does not start with its magic ([`super::SECTION_MAGIC`],
    /// [`super::sentencepiece::SECTION_MAGIC`] or [`super::bytebpe::SECTION_MAGIC`]).
    BadMagic {
        /// The first four bytes found.
        found: [u8; 4],
    },
    /// The section's layout version is not [`super::SECTION_VERSION`] (or
    /// [`super::sentencepiece::SECTION_VERSION`], [`super::bytebpe::SECTION_VERSION`]).
    UnsupportedVersion {
        /// Version found.
        version: u32,
    },
    /// Flag bits this version does not define are set.
    UnknownFlags {
        /// The whole flags word.
        flags: u32,
    },
    /// The vocabulary has no tokens.
    EmptyVocab,
    /// A size computed from the header does not fit in `usize` (or a vocabulary does
    /// not fit in the `u32` fields of the layout).
    SizeOverflow,
    /// The section length differs from what the header implies.
    LengthMismatch {
        /// Length implied by the header, padding included.
        expected: usize,
        /// Actual length.
        len: usize,
    },
    /// A padding byte at the end of the section is not zero.
    NonZeroPadding {
        /// Offset of the byte in the section.
        offset: usize,
    },
    /// `max_word_chars` is zero or above [`super::MAX_WORD_CHARS_LIMIT`].
    MaxWordChars {
        /// Value given.
        value: u32,
        /// Largest supported value.
        limit: u32,
    },
    /// More added (literal) tokens than [`super::MAX_ADDED_TOKENS`].
    TooManyAddedTokens {
        /// Count given.
        count: u32,
        /// Largest supported count.
        limit: u32,
    },
    /// A special token id is not below the vocabulary size.
    SpecialIdOutOfRange {
        /// Which special token.
        which: SpecialToken,
        /// Its id.
        id: u32,
        /// Vocabulary size.
        vocab_size: u32,
    },
    /// An added-token id is not below the vocabulary size.
    AddedIdOutOfRange {
        /// Position in the added-token list.
        index: u32,
        /// Its id.
        id: u32,
        /// Vocabulary size.
        vocab_size: u32,
    },
    /// The string offsets are not `0`, non-decreasing, ending at the string-area length.
    BadOffset {
        /// Index into the offsets table (token `id` starts there).
        id: u32,
        /// The offending offset.
        offset: u32,
    },
    /// A token's bytes are not valid UTF-8.
    TokenNotUtf8 {
        /// The token id.
        id: u32,
    },
    /// A token is the empty string.
    EmptyToken {
        /// The token id.
        id: u32,
    },
    /// A sorted-index entry is not a valid token id.
    IndexOutOfRange {
        /// Position in the index.
        position: u32,
        /// The entry.
        id: u32,
    },
    /// The index is not strictly increasing by token bytes at `position` (compared with
    /// `position - 1`); this also rejects duplicate entries and duplicate strings.
    IndexNotSorted {
        /// Position in the index.
        position: u32,
    },
    /// Writer: two ids have the same token string.
    DuplicateToken {
        /// The smaller id.
        first: u32,
        /// The larger id.
        second: u32,
    },
    /// Writer: a special token's string is not in the vocabulary.
    MissingSpecialToken {
        /// Which special token.
        which: SpecialToken,
    },
    /// Writer: an added token's string is not in the vocabulary.
    MissingAddedToken {
        /// Position in `TokenizerConfig::added_tokens`.
        index: u32,
    },
    /// Encode: the input text is not UTF-8; `offset` is the length of its valid prefix.
    InvalidUtf8 {
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// Encode: the output buffer cannot hold even `[CLS] [SEP]`.
    OutputTooShort {
        /// Length given (must be at least 2).
        len: usize,
    },
    /// SentencePiece: the 256 byte-fallback ids `base..base + 256` do not fit in the
    /// vocabulary.
    ByteFallbackOutOfRange {
        /// First byte-fallback id.
        base: u32,
        /// Vocabulary size.
        vocab_size: u32,
    },
    /// SentencePiece: byte-fallback token `id` is not the piece `<0xNN>` of its byte.
    ByteFallbackPiece {
        /// The token id.
        id: u32,
        /// The byte it stands for (`id - base`).
        byte: u8,
    },
    /// SentencePiece: the declared longest piece is 0 or above
    /// [`super::sentencepiece::MAX_PIECE_LEN_LIMIT`].
    MaxPieceLen {
        /// Value declared, bytes.
        value: u32,
        /// Largest supported value, bytes.
        limit: u32,
    },
    /// SentencePiece: the declared longest piece differs from the longest piece stored.
    MaxPieceLenMismatch {
        /// Value declared, bytes.
        declared: u32,
        /// Length of the longest piece, bytes.
        actual: u32,
    },
    /// SentencePiece writer: a piece is longer than
    /// [`super::sentencepiece::MAX_PIECE_LEN_LIMIT`].
    PieceTooLong {
        /// The token id.
        id: u32,
        /// Its length, bytes.
        len: usize,
        /// Largest supported length, bytes.
        limit: u32,
    },
    /// SentencePiece writer: a merge score is NaN (it has no place in llama2.c's order).
    NanScore {
        /// The token id.
        id: u32,
    },
    /// SentencePiece writer: there are not as many scores as pieces.
    ScoreCountMismatch {
        /// Number of pieces.
        pieces: usize,
        /// Number of scores.
        scores: usize,
    },
    /// SentencePiece or byte-level BPE encode: the output buffer is shorter than the
    /// token sequence before merging (see [`super::sentencepiece::encode_buffer_len`]
    /// and [`super::bytebpe::encode_buffer_len`]).
    EncodeBufferTooSmall {
        /// Length given.
        len: usize,
        /// SentencePiece: tokens before merging (optional BOS, dummy prefix, one per
        /// codepoint or fallback byte). Byte-level BPE: a length that always suffices,
        /// [`super::bytebpe::encode_buffer_len`] of the whole text.
        needed: usize,
    },
    /// Byte-level BPE section: the pre-tokenizer code is not one of
    /// [`super::bytebpe::PreTokenizer`].
    UnknownPreTokenizer {
        /// Code found.
        value: u32,
    },
    /// Byte-level BPE section: the token listed for a byte value is out of range or
    /// is not that single byte.
    ByteTokenMismatch {
        /// The byte value.
        byte: u8,
        /// The id listed for it.
        id: u32,
    },
    /// Byte-level BPE section: a merge names a token id not below the vocabulary size.
    MergeIdOutOfRange {
        /// Position of the merge in the section (sorted by pair).
        index: u32,
        /// The offending id.
        id: u32,
    },
    /// Byte-level BPE section: the merges are not strictly increasing by
    /// `(left, right)` at `index` (a repeated pair included).
    MergesNotSorted {
        /// Position of the merge in the section.
        index: u32,
    },
    /// Byte-level BPE section: a merge's result is not the concatenation of its two
    /// tokens.
    MergeResultMismatch {
        /// Position of the merge in the section.
        index: u32,
    },
    /// Byte-level BPE writer: a merge is not `"left right"`, names a token that is not
    /// in the vocabulary, has no token for its concatenation, or repeats a pair.
    BadMerge {
        /// Rank (line) of the merge in the list given.
        rank: u32,
    },
}

impl fmt::Display for TokenizerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use TokenizerError::*;
        match *self {
            Truncated { needed, len } => {
                write!(
                    f,
                    "tokenizer section truncated: header needs {needed} bytes, have {len}"
                )
            }
            BadMagic { found } => write!(f, "tokenizer section has bad magic {found:02x?}"),
            UnsupportedVersion { version } => {
                write!(f, "tokenizer section version {version} is not supported")
            }
            UnknownFlags { flags } => write!(f, "tokenizer section has unknown flags {flags:#x}"),
            EmptyVocab => f.write_str("tokenizer vocabulary is empty"),
            SizeOverflow => f.write_str("tokenizer section sizes overflow"),
            LengthMismatch { expected, len } => write!(
                f,
                "tokenizer section is {len} bytes but its header implies {expected}"
            ),
            NonZeroPadding { offset } => {
                write!(f, "tokenizer section padding byte at {offset} is not zero")
            }
            MaxWordChars { value, limit } => {
                write!(f, "max_word_chars {value} is not in 1..={limit}")
            }
            TooManyAddedTokens { count, limit } => {
                write!(f, "{count} added tokens, at most {limit} supported")
            }
            SpecialIdOutOfRange {
                which,
                id,
                vocab_size,
            } => write!(
                f,
                "{which} token id {id} out of range (vocab size {vocab_size})"
            ),
            AddedIdOutOfRange {
                index,
                id,
                vocab_size,
            } => write!(
                f,
                "added token {index} has id {id} out of range (vocab size {vocab_size})"
            ),
            BadOffset { id, offset } => write!(f, "token {id} has bad string offset {offset}"),
            TokenNotUtf8 { id } => write!(f, "token {id} is not valid UTF-8"),
            EmptyToken { id } => write!(f, "token {id} is empty"),
            IndexOutOfRange { position, id } => {
                write!(f, "sorted index entry {position} is id {id}, out of range")
            }
            IndexNotSorted { position } => {
                write!(
                    f,
                    "sorted index is not strictly increasing at entry {position}"
                )
            }
            DuplicateToken { first, second } => {
                write!(f, "tokens {first} and {second} have the same string")
            }
            MissingSpecialToken { which } => {
                write!(f, "the {which} token is not in the vocabulary")
            }
            MissingAddedToken { index } => {
                write!(f, "added token {index} is not in the vocabulary")
            }
            InvalidUtf8 { offset } => write!(f, "input text is not UTF-8 at byte {offset}"),
            OutputTooShort { len } => {
                write!(f, "output buffer of {len} ids cannot hold [CLS] and [SEP]")
            }
            ByteFallbackOutOfRange { base, vocab_size } => write!(
                f,
                "byte-fallback ids {base}..{base}+256 do not fit in the vocabulary of {vocab_size}"
            ),
            ByteFallbackPiece { id, byte } => {
                write!(
                    f,
                    "byte-fallback token {id} is not the piece <0x{byte:02X}>"
                )
            }
            MaxPieceLen { value, limit } => {
                write!(f, "longest piece of {value} bytes is not in 1..={limit}")
            }
            MaxPieceLenMismatch { declared, actual } => write!(
                f,
                "section declares a longest piece of {declared} bytes, but the longest is {actual}"
            ),
            PieceTooLong { id, len, limit } => {
                write!(
                    f,
                    "token {id} is {len} bytes, longer than the limit {limit}"
                )
            }
            NanScore { id } => write!(f, "token {id} has a NaN merge score"),
            ScoreCountMismatch { pieces, scores } => {
                write!(f, "{pieces} pieces but {scores} merge scores")
            }
            EncodeBufferTooSmall { len, needed } => write!(
                f,
                "output buffer of {len} ids is too small: the text needs {needed} before merging"
            ),
            UnknownPreTokenizer { value } => write!(f, "unknown pre-tokenizer code {value}"),
            ByteTokenMismatch { byte, id } => write!(
                f,
                "token {id} listed for byte {byte:#04x} is not that single byte"
            ),
            MergeIdOutOfRange { index, id } => {
                write!(f, "merge {index} names token {id}, out of range")
            }
            MergesNotSorted { index } => write!(
                f,
                "merges are not strictly increasing by (left, right) at entry {index}"
            ),
            MergeResultMismatch { index } => write!(
                f,
                "merge {index}: the result is not the concatenation of its two tokens"
            ),
            BadMerge { rank } => write!(
                f,
                "merge {rank} is not two vocabulary tokens whose concatenation is a token, or repeats a pair"
            ),
        }
    }
}

impl core::error::Error for TokenizerError {}
