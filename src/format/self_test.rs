//! The optional self-test section: golden inputs and the exact outputs the int8
//! runtime computed for them when the file was written.
//!
//! A device reruns them at boot ([`crate::Model::self_test`]) and compares bit for bit:
//! the CRC proves the bytes are intact, the self-test proves the code that runs them
//! is (a miscompiled or wrongly selected kernel, a wrong target feature, a faulty
//! arena RAM).
//!
//! Layout (all fields little-endian `u32`/`i32`; the section starts 4-byte aligned,
//! between the labels section and the first tensor; the header's `self_test_offset`
//! and `self_test_len` at bytes 112 and 116 locate it, both 0 when it is absent):
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | `kind`: 1 = the Q16.16 output of [`crate::Model::forward_fixed`] (encoders) |
//! | 4..8 | `case_count`, `1..=`[`MAX_CASES`] |
//! | 8..12 | `output_len`, equal to [`Config::output_len`] |
//! | 12.. | `case_count` cases, each: `u32 token_count` (`1..=max_seq`), `u32 ids[token_count]` (each `< vocab_size`), `i32 expected[output_len]` |
//!
//! The cases fill the section exactly (no trailing bytes).

use super::{read_u32, Arch, Config, FormatError};

/// `kind` of a self-test section holding encoder outputs ([`crate::Model::forward_fixed`]).
pub const KIND_ENCODER_FIXED: u32 = 1;
/// Most cases a self-test section may hold (a boot check, not a test suite).
pub const MAX_CASES: u32 = 64;
/// Bytes before the first case.
pub const PREAMBLE_LEN: usize = 12;

/// One golden case: token ids and the exact fixed-point output expected for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SelfTestCase<'a> {
    /// Token ids, `1..=max_seq` of them, each below `vocab_size`.
    pub ids: &'a [u32],
    /// `config.output_len()` values in Q16.16, as [`crate::Model::forward_fixed`] wrote them.
    pub expected: &'a [i32],
}

/// The cases of a validated self-test section, in file order.
#[derive(Clone, Debug)]
pub struct SelfTestCases<'a> {
    rest: &'a [u8],
    output_len: usize,
    remaining: u32,
}

impl<'a> SelfTestCases<'a> {
    /// `section` was accepted by [`check_section`] (or is empty: no cases).
    pub(super) fn new(section: &'a [u8], output_len: usize) -> Self {
        let remaining = read_u32(section, 4).unwrap_or(0);
        Self {
            rest: section.get(PREAMBLE_LEN..).unwrap_or(&[]),
            output_len,
            remaining,
        }
    }
}

impl<'a> Iterator for SelfTestCases<'a> {
    type Item = SelfTestCase<'a>;

    fn next(&mut self) -> Option<SelfTestCase<'a>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let tokens = read_u32(self.rest, 0)? as usize;
        let ids_end = 4 + 4 * tokens;
        let end = ids_end + 4 * self.output_len;
        let (case, rest) = self.rest.split_at_checked(end)?;
        self.rest = rest;
        // Validated lengths, and 4-byte aligned: the file is 16-byte aligned and every
        // field of the 4-byte aligned section is 4 bytes. (`get`, not indexing: no
        // panic path is linked into firmware.)
        Some(SelfTestCase {
            ids: bytemuck::try_cast_slice(case.get(4..ids_end)?).ok()?,
            expected: bytemuck::try_cast_slice(case.get(ids_end..)?).ok()?,
        })
    }
}

/// Checks a self-test section against the config (see the module docs for the rules).
pub(super) fn check_section(section: &[u8], config: &Config) -> Result<(), FormatError> {
    let bad = |field, case, value| FormatError::BadSelfTest { field, case, value };
    let word =
        |at: usize, case| read_u32(section, at).ok_or(bad("length", case, section.len() as u32));
    let kind = word(0, 0)?;
    if kind != KIND_ENCODER_FIXED || config.arch != Arch::BertEncoder || !config.is_int8() {
        return Err(bad("kind", 0, kind));
    }
    let count = word(4, 0)?;
    if count == 0 || count > MAX_CASES {
        return Err(bad("case_count", 0, count));
    }
    let output_len = word(8, 0)?;
    if output_len as usize != config.output_len() {
        return Err(bad("output_len", 0, output_len));
    }
    // Every length below is bounded (max_seq <= 8192, output_len <= 4096, 64 cases),
    // so the offsets stay far below `u32::MAX` even on a 32-bit `usize`.
    let mut at = PREAMBLE_LEN;
    for case in 0..count {
        let tokens = word(at, case)?;
        if tokens == 0 || tokens > config.max_seq {
            return Err(bad("token_count", case, tokens));
        }
        at += 4;
        for i in 0..tokens as usize {
            let id = word(at + 4 * i, case)?;
            if id >= config.vocab_size {
                return Err(bad("token id", case, id));
            }
        }
        at += 4 * (tokens as usize + output_len as usize);
        if at > section.len() {
            return Err(bad("length", case, section.len() as u32));
        }
    }
    if at != section.len() {
        return Err(bad("length", count, section.len() as u32));
    }
    Ok(())
}

/// Serialises a self-test section for an encoder (the writer's half; see
/// [`super::writer::with_self_test`]). Each case is `(ids, expected)`; all `expected`
/// must have the same length.
#[cfg(feature = "alloc")]
pub fn encode_section(output_len: usize, cases: &[(&[u32], &[i32])]) -> alloc::vec::Vec<u8> {
    let mut out = alloc::vec::Vec::new();
    for v in [KIND_ENCODER_FIXED, cases.len() as u32, output_len as u32] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for (ids, expected) in cases {
        out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
        for id in ids.iter() {
            out.extend_from_slice(&id.to_le_bytes());
        }
        for v in expected.iter() {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}
