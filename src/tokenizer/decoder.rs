//! The tokenizer of a decoder model file: SentencePiece-style BPE ([`SentencePiece`],
//! llama2.c, Llama 2) or byte-level BPE ([`ByteBpe`], GPT-2, SmolLM2), told apart by
//! the section's magic. One type for what generation needs from either: encoding a
//! prompt, the bytes to print for a generated id, BOS and EOS.

use super::bytebpe::{self, ByteBpe};
use super::sentencepiece::{self, SentencePiece};
use super::TokenizerError;

/// A decoder's validated tokenizer section.
#[derive(Clone, Copy, Debug)]
pub enum DecoderTokenizer<'a> {
    /// Magic `TFSP`: llama2.c / SentencePiece-style BPE.
    SentencePiece(SentencePiece<'a>),
    /// Magic `TFBB`: GPT-2-style byte-level BPE.
    ByteBpe(ByteBpe<'a>),
}

impl<'a> DecoderTokenizer<'a> {
    /// Validates `section` as the kind its magic names; any other magic is
    /// [`TokenizerError::BadMagic`].
    pub fn from_section(section: &'a [u8]) -> Result<Self, TokenizerError> {
        match section.get(..4) {
            Some(m) if m == bytebpe::SECTION_MAGIC => {
                ByteBpe::from_section(section).map(DecoderTokenizer::ByteBpe)
            }
            // SentencePiece reports a bad magic or a short section itself.
            _ => SentencePiece::from_section(section).map(DecoderTokenizer::SentencePiece),
        }
    }

    /// Number of ids.
    pub fn vocab_size(&self) -> u32 {
        match self {
            DecoderTokenizer::SentencePiece(t) => t.vocab_size(),
            DecoderTokenizer::ByteBpe(t) => t.vocab_size(),
        }
    }

    /// Beginning-of-sequence id, if the vocabulary has one.
    pub fn bos_id(&self) -> Option<u32> {
        match self {
            DecoderTokenizer::SentencePiece(t) => Some(t.bos_id()),
            DecoderTokenizer::ByteBpe(t) => t.bos_id(),
        }
    }

    /// End-of-sequence id, if the vocabulary has one.
    pub fn eos_id(&self) -> Option<u32> {
        match self {
            DecoderTokenizer::SentencePiece(t) => Some(t.eos_id()),
            DecoderTokenizer::ByteBpe(t) => t.eos_id(),
        }
    }

    /// Length of an `out` buffer [`encode`](Self::encode) never finds too small for
    /// `text_len` bytes.
    pub fn encode_buffer_len(&self, text_len: usize) -> usize {
        match self {
            DecoderTokenizer::SentencePiece(_) => sentencepiece::encode_buffer_len(text_len, true),
            DecoderTokenizer::ByteBpe(t) => bytebpe::encode_buffer_len(text_len, t.add_bos()),
        }
    }

    /// A prompt's ids as the model was trained to see them: SentencePiece puts BOS
    /// first (llama2.c's `encode(text, bos=1)`); byte-level BPE adds BOS only if its
    /// section says so (SmolLM2 does not) and matches special tokens such as
    /// `<|im_start|>` in the text when `special_tokens` is true (Hugging Face's
    /// default; SentencePiece vocabularies have no such tokens and ignore it). Returns
    /// the number of ids in `out[..len]`.
    pub fn encode(
        &self,
        text: &[u8],
        special_tokens: bool,
        out: &mut [u32],
    ) -> Result<usize, TokenizerError> {
        match self {
            DecoderTokenizer::SentencePiece(t) => t.encode(text, true, out),
            DecoderTokenizer::ByteBpe(t) => t.encode(text, special_tokens, out),
        }
    }

    /// The bytes to print for `id` generated after `prev` (SentencePiece drops the
    /// dummy-prefix space after BOS); one character may span several ids, see
    /// [`Utf8Stream`](super::stream::Utf8Stream). Empty for an id out of range.
    pub fn decode(&self, prev: u32, id: u32) -> &'a [u8] {
        match self {
            DecoderTokenizer::SentencePiece(t) => t.decode(prev, id),
            DecoderTokenizer::ByteBpe(t) => t.decode(id),
        }
    }

    /// The vocabulary entry of `id` as stored (a SentencePiece piece such as `" the"`
    /// or `<0x0A>`, a byte-level token's raw bytes), for display.
    pub fn piece(&self, id: u32) -> Option<&'a [u8]> {
        match self {
            DecoderTokenizer::SentencePiece(t) => t.piece(id),
            DecoderTokenizer::ByteBpe(t) => t.token(id),
        }
    }
}
