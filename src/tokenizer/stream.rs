//! Streaming UTF-8 detokenization: bytes of decoded pieces in, whole characters out.
//!
//! A generator decodes one token at a time ([`SentencePiece::decode`]), and with byte
//! fallback one character may arrive over several tokens (`好` is `<0xE5> <0xA5> <0xBD>`).
//! [`Utf8Stream`] holds back an incomplete character (at most 3 bytes, on the stack)
//! until the bytes that complete it arrive, so the text it emits is always valid UTF-8
//! and a split character comes out whole. Bytes that cannot become a character are
//! replaced with U+FFFD ([`REPLACEMENT`]), one per *maximal invalid subpart*, the same
//! rule as `String::from_utf8_lossy` and the WHATWG decoder; the output of a whole
//! stream, [`Utf8Stream::finish`] included, equals `from_utf8_lossy` of all the bytes
//! pushed, however they were split.
//!
//! ```
//! use tinyformer::tokenizer::stream::Utf8Stream;
//!
//! let mut text = String::new();
//! let mut stream = Utf8Stream::new();
//! for piece in [&b" Hi "[..], &[0xE5], &[0xA5], &[0xBD], b"!"] {
//!     stream.push(piece, |s| text.push_str(s));
//!     assert!(text.is_char_boundary(text.len())); // never half a character
//! }
//! stream.push(&[0xFF, 0xE5], |s| text.push_str(s)); // invalid, then incomplete
//! stream.finish(|s| text.push_str(s));
//! assert_eq!(text, " Hi 好!\u{FFFD}\u{FFFD}");
//! ```
//!
//! Printing to a terminal: llama2.c's `safe_printf` also drops single-byte pieces that
//! are control characters; do that on the emitted `&str` if needed (`char::is_control`).
//!
//! [`SentencePiece::decode`]: super::sentencepiece::SentencePiece::decode

/// The replacement character U+FFFD, emitted for bytes that are not UTF-8.
pub const REPLACEMENT: &str = "\u{FFFD}";

/// Longest UTF-8 sequence, bytes.
const MAX_CHAR_BYTES: usize = 4;

/// Incremental UTF-8 decoder: 5 bytes of state, no heap.
///
/// Invariant: `pending[..len]` (`len` ≤ 3) is a proper prefix of some valid UTF-8
/// character (what [`core::str::from_utf8`] reports as an incomplete sequence at the
/// end of its input).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Utf8Stream {
    pending: [u8; MAX_CHAR_BYTES],
    len: u8,
}

impl Utf8Stream {
    /// An empty stream.
    pub const fn new() -> Self {
        Utf8Stream {
            pending: [0; MAX_CHAR_BYTES],
            len: 0,
        }
    }

    /// Bytes held back: the start of a character not yet complete (0 to 3 bytes).
    pub fn pending(&self) -> &[u8] {
        self.pending.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// Feeds `bytes` and calls `emit` with the text that is now complete, in order, as
    /// one or more non-empty `&str` (runs of valid text are passed through without
    /// copying; [`REPLACEMENT`] stands for each invalid subpart). The start of an
    /// incomplete character at the end is held back for the next `push` or
    /// [`finish`](Self::finish).
    pub fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(&str)) {
        let mut rest = bytes;
        if self.len > 0 {
            rest = self.complete_pending(rest, &mut emit);
        }
        loop {
            match core::str::from_utf8(rest) {
                Ok(text) => {
                    if !text.is_empty() {
                        emit(text);
                    }
                    return;
                }
                Err(error) => {
                    let valid = error.valid_up_to();
                    let text = rest
                        .get(..valid)
                        .and_then(|v| core::str::from_utf8(v).ok())
                        .unwrap_or("");
                    if !text.is_empty() {
                        emit(text);
                    }
                    let tail = rest.get(valid..).unwrap_or(&[]);
                    match error.error_len() {
                        Some(invalid) => {
                            emit(REPLACEMENT);
                            rest = tail.get(invalid..).unwrap_or(&[]);
                        }
                        None => {
                            // An incomplete character at the end: fewer than 4 bytes.
                            self.hold(tail);
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Ends the stream: a held-back incomplete character becomes one [`REPLACEMENT`].
    /// The stream is empty afterwards and can be reused.
    pub fn finish(&mut self, mut emit: impl FnMut(&str)) {
        if self.len > 0 {
            emit(REPLACEMENT);
            self.len = 0;
        }
    }

    /// Completes (or rejects) the held-back character with the first bytes of `bytes`;
    /// returns the bytes not consumed.
    fn complete_pending<'b>(&mut self, bytes: &'b [u8], emit: &mut impl FnMut(&str)) -> &'b [u8] {
        let held = usize::from(self.len);
        let take = bytes.len().min(MAX_CHAR_BYTES - held);
        let mut candidate = self.pending;
        let (Some(slot), Some(taken)) = (candidate.get_mut(held..held + take), bytes.get(..take))
        else {
            return bytes; // unreachable: held + take <= 4 and take <= bytes.len()
        };
        slot.copy_from_slice(taken);
        let candidate = candidate.get(..held + take).unwrap_or(&[]);
        let valid = match core::str::from_utf8(candidate) {
            Ok(_) => candidate.len(),
            Err(error) => error.valid_up_to(),
        };
        if valid > 0 {
            // The held character is complete: emit it alone, the rest goes the normal way.
            let text = candidate
                .get(..valid)
                .and_then(|v| core::str::from_utf8(v).ok())
                .unwrap_or("");
            let char_len = text.chars().next().map_or(0, char::len_utf8);
            if let Some(first) = text.get(..char_len) {
                emit(first);
            }
            self.len = 0;
            return bytes.get(char_len.saturating_sub(held)..).unwrap_or(&[]);
        }
        match core::str::from_utf8(candidate)
            .err()
            .and_then(|e| e.error_len())
        {
            Some(invalid) => {
                // The maximal invalid subpart covers the held bytes (a valid prefix) and
                // `invalid - held` of the new ones.
                emit(REPLACEMENT);
                self.len = 0;
                bytes.get(invalid.saturating_sub(held)..).unwrap_or(&[])
            }
            None => {
                // Still incomplete: every new byte was taken.
                self.hold(candidate);
                bytes.get(take..).unwrap_or(&[])
            }
        }
    }

    fn hold(&mut self, bytes: &[u8]) {
        let len = bytes.len().min(MAX_CHAR_BYTES - 1);
        if let (Some(slot), Some(kept)) = (self.pending.get_mut(..len), bytes.get(..len)) {
            slot.copy_from_slice(kept);
        }
        self.len = len as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> (String, Vec<String>) {
        let mut stream = Utf8Stream::new();
        let mut text = String::new();
        let mut pieces = Vec::new();
        for chunk in chunks {
            stream.push(chunk, |s| {
                assert!(!s.is_empty());
                text.push_str(s);
                pieces.push(s.to_owned());
            });
            assert!(stream.pending().len() < 4);
        }
        stream.finish(|s| {
            text.push_str(s);
            pieces.push(s.to_owned());
        });
        assert!(stream.pending().is_empty());
        (text, pieces)
    }

    fn lossy(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    /// Every way of cutting `bytes` into two or three chunks gives `from_utf8_lossy`.
    fn check_all_splits(bytes: &[u8]) {
        let expected = lossy(bytes);
        assert_eq!(run(&[bytes]).0, expected, "{bytes:x?}");
        for i in 0..=bytes.len() {
            let (a, b) = bytes.split_at(i);
            assert_eq!(run(&[a, b]).0, expected, "{bytes:x?} at {i}");
            for j in i..=bytes.len() {
                let (b, c) = bytes[i..].split_at(j - i);
                assert_eq!(run(&[a, b, c]).0, expected, "{bytes:x?} at {i}, {j}");
            }
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(run(&singles).0, expected, "{bytes:x?} byte by byte");
    }

    #[test]
    fn valid_text_passes_through_whole_characters() {
        check_all_splits("Once upon a time, é 好 😀 ∑!".as_bytes());
        let (_, pieces) = run(&[&[0xF0, 0x9F], &[0x98], &[0x80, b'a']]);
        assert_eq!(pieces, ["😀", "a"]);
    }

    #[test]
    fn invalid_sequences_become_replacement_characters() {
        for bytes in [
            &b"\xff"[..],
            b"a\x80b",
            b"\xe5\xa5",     // truncated at the end
            b"\xe5\xa5a",    // truncated in the middle
            b"\xed\xa0\x80", // surrogate
            b"\xc0\xaf",     // overlong
            b"\xf4\x90\x80\x80",
            b"\xf0\x9f\x98",
            b"\xe2\x82\xac\xe2\x82",
            b"\x80\x80\x80\x80\x80",
            b"\xf0\x80\xe5\xa5\xbd",
            b"\xc3",
            b"",
        ] {
            check_all_splits(bytes);
        }
    }

    #[test]
    fn finish_flushes_and_resets() {
        let mut stream = Utf8Stream::new();
        let mut text = String::new();
        stream.push(&[0xE5, 0xA5], |s| text.push_str(s));
        assert_eq!(stream.pending(), &[0xE5, 0xA5]);
        assert_eq!(text, "");
        stream.finish(|s| text.push_str(s));
        assert_eq!(text, "\u{FFFD}");
        stream.push(b"ok", |s| text.push_str(s));
        stream.finish(|s| text.push_str(s));
        assert_eq!(text, "\u{FFFD}ok");
    }

    #[test]
    fn exhaustive_short_sequences_match_lossy() {
        // Every 1- and 2-byte input, and 3-byte inputs over interesting bytes, split
        // every way.
        let all: &[u8] = &[
            0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xE1,
            0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF,
        ];
        // Under Miri (tools/miri.sh), where each split is interpreted, one byte of
        // each class.
        let interesting = if cfg!(miri) {
            &[0x41, 0x80, 0xC2, 0xE0, 0xF0, 0xFF][..]
        } else {
            all
        };
        let firsts = if cfg!(miri) { 0x38..=0x48u8 } else { 0..=255u8 };
        for a in firsts {
            check_all_splits(&[a]);
            for &b in interesting {
                check_all_splits(&[a, b]);
                check_all_splits(&[b, a]);
            }
        }
        for &a in interesting {
            for &b in interesting {
                for &c in interesting {
                    for &d in &[0x41u8, 0x80, 0xBF, 0xE5] {
                        check_all_splits(&[a, b, c, d]);
                    }
                }
            }
        }
    }
}
