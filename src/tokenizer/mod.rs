//! WordPiece tokenizer (temporary interface stub; replaced by the real module).
#![allow(missing_docs)]
use core::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TokenizerError {
    Truncated,
}
impl fmt::Display for TokenizerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}
impl core::error::Error for TokenizerError {}

#[derive(Clone, Copy, Debug)]
pub struct Tokenizer<'a> {
    section: &'a [u8],
}
impl<'a> Tokenizer<'a> {
    pub fn from_section(section: &'a [u8]) -> Result<Self, TokenizerError> {
        Ok(Self { section })
    }
}

#[derive(Clone, Copy, Debug)]
pub struct TokenizerConfig {
    pub lowercase: bool,
    pub strip_accents: bool,
    pub chinese_chars: bool,
    pub max_word_chars: u32,
}
impl Default for TokenizerConfig {
    fn default() -> Self {
        Self {
            lowercase: true,
            strip_accents: true,
            chinese_chars: true,
            max_word_chars: 100,
        }
    }
}
#[cfg(feature = "alloc")]
pub fn encode_section(
    vocab: &[&str],
    _config: &TokenizerConfig,
) -> Result<alloc::vec::Vec<u8>, TokenizerError> {
    let mut v = alloc::vec::Vec::new();
    for t in vocab {
        v.extend_from_slice(t.as_bytes());
        v.push(b'\n');
    }
    Ok(v)
}
#[derive(Clone, Copy, Debug)]
pub struct Encoding {
    pub len: usize,
    pub truncated: bool,
    pub pieces_total: usize,
}
impl<'a> Tokenizer<'a> {
    pub fn encode(&self, _text: &[u8], _out: &mut [u32]) -> Result<Encoding, TokenizerError> {
        let _ = self.section;
        Err(TokenizerError::Truncated)
    }
}
impl<'a> Tokenizer<'a> {
    pub fn token(&self, _id: u32) -> Option<&'a str> {
        None
    }
    pub fn vocab_size(&self) -> u32 {
        0
    }
}
