//! Reading llama2.c's `tokenizer.bin` and turning it into a tinyformer SentencePiece
//! section (`tinyformer::tokenizer::sentencepiece`).
//!
//! File layout (all little-endian, as written by llama2.c's `tokenizer.py export`):
//!
//! | size | field |
//! |---|---|
//! | 4 | `max_token_length`, `i32`: bytes of the longest piece |
//! | per token: 4 | `score`, `f32`: merge priority (higher merges first) |
//! | per token: 4 | `length`, `i32`: bytes of the piece |
//! | per token: `length` | the piece's bytes |
//!
//! The file does not store the number of tokens: like llama2.c's `build_tokenizer`, the
//! reader takes it from the caller (the checkpoint's `vocab_size`) and ignores bytes
//! after the last token (reported as [`Llama2cTokenizer::trailing_bytes`]).
//!
//! Memory is bounded: the file is at most [`MAX_FILE_BYTES`], the vocabulary at most
//! [`MAX_VOCAB`] tokens, and every length is checked against the bytes that remain
//! before anything is allocated for it.

use anyhow::{Context, Result};
use std::io::Read;
use std::path::Path;
use tinyformer::tokenizer::sentencepiece::{encode_section, SentencePieceConfig};
use tinyformer::tokenizer::TokenizerError;

/// Largest tokenizer file read, bytes (Llama 2's 32,000-token file is 434 KB).
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// Largest vocabulary accepted, tokens.
pub const MAX_VOCAB: usize = 1 << 20;

/// A llama2.c tokenizer: piece `id` is `pieces[id]` with merge score `scores[id]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Llama2cTokenizer {
    /// The file's `max_token_length`: no piece is longer (checked).
    pub max_token_length: u32,
    /// Piece bytes by id (byte pieces as their text, `<0x0A>`).
    pub pieces: Vec<Vec<u8>>,
    /// Merge scores by id, all finite.
    pub scores: Vec<f32>,
    /// Bytes after the last token read; llama2.c ignores them too.
    pub trailing_bytes: usize,
}

/// What is wrong with a tokenizer file; `token` is the id whose field is bad and
/// `offset` the byte offset of the field in the file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReadError {
    /// The vocabulary size given by the checkpoint is 0 or above [`MAX_VOCAB`].
    #[error("vocabulary size {vocab_size} is not in 1..={MAX_VOCAB} (too many tokens)")]
    VocabSize { vocab_size: usize },
    /// The file is too short for the vocabulary size: each token needs at least 8 bytes.
    #[error(
        "too many tokens: {vocab_size} tokens need at least {needed} bytes, the file has {len}"
    )]
    TooManyTokens {
        vocab_size: usize,
        needed: usize,
        len: usize,
    },
    /// The file ends inside a field.
    #[error("truncated: field `{field}`{} at offset {offset} needs {needed} bytes, {available} left", token_label(*.token))]
    Truncated {
        field: &'static str,
        token: Option<usize>,
        offset: usize,
        needed: usize,
        available: usize,
    },
    /// `max_token_length` is negative.
    #[error("field `max_token_length` is {value}, negative")]
    NegativeMaxTokenLength { value: i32 },
    /// A piece's `length` is negative.
    #[error("field `length` of token {token} at offset {offset} is {value}, negative")]
    NegativeLength {
        token: usize,
        offset: usize,
        value: i32,
    },
    /// A piece's `length` exceeds `max_token_length` (llama2.c would overflow its merge
    /// buffer).
    #[error(
        "field `length` of token {token} at offset {offset} is {value}, longer than \
         `max_token_length` {max_token_length}"
    )]
    LengthAboveMax {
        token: usize,
        offset: usize,
        value: u32,
        max_token_length: u32,
    },
    /// A piece's `length` runs past the end of the file.
    #[error(
        "field `length` of token {token} at offset {offset} is {value}, past the end of the \
         file ({available} bytes left)"
    )]
    LengthPastEnd {
        token: usize,
        offset: usize,
        value: u32,
        available: usize,
    },
    /// A score is NaN or infinite.
    #[error("field `score` of token {token} at offset {offset} is {score}, not finite")]
    NonFiniteScore {
        token: usize,
        offset: usize,
        score: f32,
    },
    /// A piece contains a NUL byte: llama2.c handles pieces as C strings and would cut it.
    #[error("field `bytes` of token {token} at offset {offset} contains a NUL byte")]
    NulInPiece { token: usize, offset: usize },
}

fn token_label(token: Option<usize>) -> String {
    token.map_or_else(String::new, |t| format!(" of token {t}"))
}

/// Cursor over the file bytes; every read is bounded by what remains.
struct Cursor<'b> {
    bytes: &'b [u8],
    at: usize,
}

impl<'b> Cursor<'b> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(
        &mut self,
        len: usize,
        field: &'static str,
        token: Option<usize>,
    ) -> Result<&'b [u8], ReadError> {
        let available = self.remaining();
        if len > available {
            return Err(ReadError::Truncated {
                field,
                token,
                offset: self.at,
                needed: len,
                available,
            });
        }
        let field = &self.bytes[self.at..self.at + len];
        self.at += len;
        Ok(field)
    }

    fn word(&mut self, field: &'static str, token: Option<usize>) -> Result<[u8; 4], ReadError> {
        let bytes = self.take(4, field, token)?;
        Ok(crate::le::word(bytes).unwrap_or_default())
    }
}

/// Parses the bytes of a `tokenizer.bin` holding (at least) `vocab_size` tokens.
pub fn parse(bytes: &[u8], vocab_size: usize) -> Result<Llama2cTokenizer, ReadError> {
    if vocab_size == 0 || vocab_size > MAX_VOCAB {
        return Err(ReadError::VocabSize { vocab_size });
    }
    let needed = 4 + 8 * vocab_size; // cannot overflow: vocab_size <= MAX_VOCAB
    if needed > bytes.len() {
        return Err(ReadError::TooManyTokens {
            vocab_size,
            needed,
            len: bytes.len(),
        });
    }
    let mut cursor = Cursor { bytes, at: 0 };
    let max_token_length = i32::from_le_bytes(cursor.word("max_token_length", None)?);
    let max_token_length =
        u32::try_from(max_token_length).map_err(|_| ReadError::NegativeMaxTokenLength {
            value: max_token_length,
        })?;
    let mut pieces = Vec::with_capacity(vocab_size);
    let mut scores = Vec::with_capacity(vocab_size);
    for token in 0..vocab_size {
        let offset = cursor.at;
        let score = f32::from_le_bytes(cursor.word("score", Some(token))?);
        if !score.is_finite() {
            return Err(ReadError::NonFiniteScore {
                token,
                offset,
                score,
            });
        }
        let offset = cursor.at;
        let length = i32::from_le_bytes(cursor.word("length", Some(token))?);
        let length = u32::try_from(length).map_err(|_| ReadError::NegativeLength {
            token,
            offset,
            value: length,
        })?;
        if length > max_token_length {
            return Err(ReadError::LengthAboveMax {
                token,
                offset,
                value: length,
                max_token_length,
            });
        }
        let available = cursor.remaining();
        if length as usize > available {
            return Err(ReadError::LengthPastEnd {
                token,
                offset,
                value: length,
                available,
            });
        }
        let offset = cursor.at;
        let piece = cursor.take(length as usize, "bytes", Some(token))?;
        if piece.contains(&0) {
            return Err(ReadError::NulInPiece { token, offset });
        }
        pieces.push(piece.to_vec());
        scores.push(score);
    }
    Ok(Llama2cTokenizer {
        max_token_length,
        pieces,
        scores,
        trailing_bytes: cursor.remaining(),
    })
}

/// Reads `path` (a llama2.c `tokenizer.bin`) with `vocab_size` tokens; errors name the
/// file and the field.
pub fn read(path: &Path, vocab_size: usize) -> Result<Llama2cTokenizer> {
    let file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        anyhow::bail!(
            "{}: larger than {MAX_FILE_BYTES} bytes, not a llama2.c tokenizer",
            path.display()
        );
    }
    parse(&bytes, vocab_size).with_context(|| format!("{}: llama2.c tokenizer", path.display()))
}

/// The SentencePiece section of a llama2.c tokenizer (`<unk>` 0, `<s>` 1, `</s>` 2,
/// byte pieces from 3, as llama2.c assumes).
pub fn build_section(tokenizer: &Llama2cTokenizer) -> Result<Vec<u8>, TokenizerError> {
    let pieces: Vec<&[u8]> = tokenizer.pieces.iter().map(Vec::as_slice).collect();
    encode_section(&pieces, &tokenizer.scores, &SentencePieceConfig::llama2c())
}

/// [`read`] then [`build_section`], with the file named in every error.
pub fn section_from_file(path: &Path, vocab_size: usize) -> Result<Vec<u8>> {
    let tokenizer = read(path, vocab_size)?;
    build_section(&tokenizer)
        .map_err(|e| anyhow::anyhow!("{}: tokenizer section: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use tinyformer::tokenizer::sentencepiece::SentencePiece;

    fn tok512_path() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/stories260K/tok512.bin")
    }

    /// A small well-formed file: max_token_length, then (score, piece) tokens.
    fn file(max: i32, tokens: &[(f32, &[u8])]) -> Vec<u8> {
        let mut bytes = max.to_le_bytes().to_vec();
        for (score, piece) in tokens {
            bytes.extend_from_slice(&score.to_le_bytes());
            bytes.extend_from_slice(&(piece.len() as i32).to_le_bytes());
            bytes.extend_from_slice(piece);
        }
        bytes
    }

    #[test]
    fn reads_tok512() {
        let tokenizer = read(&tok512_path(), 512).unwrap();
        assert_eq!(tokenizer.max_token_length, 7);
        assert_eq!(tokenizer.pieces.len(), 512);
        assert_eq!(tokenizer.trailing_bytes, 0);
        assert_eq!(tokenizer.pieces[0], b"<unk>");
        assert_eq!(tokenizer.pieces[1], b"\n<s>\n");
        assert_eq!(tokenizer.pieces[3 + 0x0A], b"<0x0A>");
        assert_eq!(tokenizer.pieces[259], b" t");
        assert_eq!(tokenizer.scores[260], -1.0);

        let section = section_from_file(&tok512_path(), 512).unwrap();
        let sp = SentencePiece::from_section(&section).unwrap();
        let mut ids = [0u32; 64];
        let n = sp
            .encode(
                b"Once upon a time, there was a little girl named Lily.",
                true,
                &mut ids,
            )
            .unwrap();
        // llama2.c's output (first line of tests/fixtures/sentencepiece/stories260K.jsonl).
        assert_eq!(
            &ids[..n],
            &[1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426]
        );
        // A smaller vocabulary reads a prefix, as llama2.c does.
        let prefix = read(&tok512_path(), 300).unwrap();
        assert_eq!(prefix.pieces[..], tokenizer.pieces[..300]);
        assert!(prefix.trailing_bytes > 0);
    }

    #[test]
    fn errors_name_the_field() {
        let good = file(2, &[(0.0, b"a"), (-1.0, b"bc")]);
        assert_eq!(
            parse(&good, 2).unwrap().pieces,
            [b"a".to_vec(), b"bc".to_vec()]
        );
        assert_eq!(parse(&good, 0), Err(ReadError::VocabSize { vocab_size: 0 }));
        assert_eq!(
            parse(&good, MAX_VOCAB + 1),
            Err(ReadError::VocabSize {
                vocab_size: MAX_VOCAB + 1
            })
        );
        assert_eq!(
            parse(&good, 3),
            Err(ReadError::TooManyTokens {
                vocab_size: 3,
                needed: 28,
                len: 23
            })
        );
        // Truncated: in a piece's bytes (its length runs past the end), in a score.
        let short = file(2, &[(0.0, b"a"), (-1.0, b"")]);
        assert_eq!(parse(&short, 2).unwrap().pieces[1], b"");
        assert_eq!(
            parse(&good[..21], 2),
            Err(ReadError::LengthPastEnd {
                token: 1,
                offset: 17,
                value: 2,
                available: 0
            })
        );
        let first_long = file(8, &[(0.0, b"abcdefgh"), (0.0, b"x")]);
        assert_eq!(
            parse(&first_long[..22], 2),
            Err(ReadError::Truncated {
                field: "score",
                token: Some(1),
                offset: 20,
                needed: 4,
                available: 2
            })
        );
        let three = file(2, &[(0.0, b"a"), (-1.0, b"bc"), (0.0, b"")]);
        assert_eq!(
            parse(&three[..28], 3),
            Err(ReadError::Truncated {
                field: "length",
                token: Some(2),
                offset: 27,
                needed: 4,
                available: 1
            })
        );
        let mut negative = good.clone();
        negative[..4].copy_from_slice(&(-1i32).to_le_bytes());
        assert_eq!(
            parse(&negative, 2),
            Err(ReadError::NegativeMaxTokenLength { value: -1 })
        );
        let mut negative = good.clone();
        negative[17..21].copy_from_slice(&i32::MIN.to_le_bytes());
        assert_eq!(
            parse(&negative, 2),
            Err(ReadError::NegativeLength {
                token: 1,
                offset: 17,
                value: i32::MIN
            })
        );
        let mut huge = file(i32::MAX, &[(0.0, b"a"), (-1.0, b"bc")]);
        huge[17..21].copy_from_slice(&i32::MAX.to_le_bytes());
        assert_eq!(
            parse(&huge, 2),
            Err(ReadError::LengthPastEnd {
                token: 1,
                offset: 17,
                value: i32::MAX as u32,
                available: 2
            })
        );
        let above = file(1, &[(0.0, b"a"), (-1.0, b"bc")]);
        assert_eq!(
            parse(&above, 2),
            Err(ReadError::LengthAboveMax {
                token: 1,
                offset: 17,
                value: 2,
                max_token_length: 1
            })
        );
        for score in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let bad = file(2, &[(0.0, b"a"), (score, b"bc")]);
            assert!(matches!(
                parse(&bad, 2),
                Err(ReadError::NonFiniteScore {
                    token: 1,
                    offset: 13,
                    ..
                })
            ));
        }
        let nul = file(2, &[(0.0, b"a"), (-1.0, b"b\0")]);
        assert_eq!(
            parse(&nul, 2),
            Err(ReadError::NulInPiece {
                token: 1,
                offset: 21
            })
        );
        // Messages name the field and the token.
        let message = ReadError::Truncated {
            field: "score",
            token: Some(7),
            offset: 100,
            needed: 4,
            available: 2,
        }
        .to_string();
        assert!(message.contains("`score` of token 7"), "{message}");
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.bin");
        let error = format!("{:#}", read(&missing, 512).unwrap_err());
        assert!(error.contains("missing.bin"), "{error}");

        let short = dir.path().join("short.bin");
        std::fs::write(&short, file(2, &[(0.0, b"a")])).unwrap();
        let error = format!("{:#}", read(&short, 2).unwrap_err());
        assert!(
            error.contains("short.bin") && error.contains("too many tokens"),
            "{error}"
        );

        // Readable, but not a valid section: no byte pieces.
        let no_bytes = dir.path().join("no_bytes.bin");
        std::fs::write(&no_bytes, file(2, &[(0.0, b"a"), (0.0, b"b"), (0.0, b"c")])).unwrap();
        let error = format!("{:#}", section_from_file(&no_bytes, 3).unwrap_err());
        assert!(
            error.contains("no_bytes.bin") && error.contains("byte-fallback"),
            "{error}"
        );
    }

    #[test]
    fn random_files_never_panic() {
        // A deterministic byte soup of many lengths and vocabulary sizes.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 24) as u8
                })
                .collect();
            for vocab_size in [1, 2, 3, 10, 50] {
                if let Ok(tokenizer) = parse(&bytes, vocab_size) {
                    let _ = build_section(&tokenizer);
                }
            }
        }
    }
}
