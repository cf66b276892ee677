//! Per-character pieces of HF's `BertNormalizer` and `BertPreTokenizer`, over the
//! generated tables in [`super::tables`]. Every function is total: no input panics.

use super::tables::{CLASS_RUNS, LOWER_RUNS, STRIP_BMP, STRIP_SEQ, STRIP_WIDE};

/// What the normalizer and pre-tokenizer need to know about a code point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CharClass {
    /// Anything else.
    Normal,
    /// Dropped by `clean_text`: Cc (but not tab, LF, CR), Cf, Co, U+FFFD.
    Removed,
    /// Split off as its own word: ASCII punctuation or Unicode P*.
    Punct,
    /// Nonspacing mark (Mn), dropped by `strip_accents`.
    Mark,
}

/// The class of `c`, per the probed tables (ASCII decided inline).
pub(crate) fn class(c: char) -> CharClass {
    let cp = u32::from(c);
    if cp < 0x80 {
        return if c.is_ascii_punctuation() {
            CharClass::Punct
        } else if c.is_ascii_control() && !matches!(c, '\t' | '\n' | '\r') {
            CharClass::Removed
        } else {
            CharClass::Normal
        };
    }
    match super::run_class(&CLASS_RUNS, cp) {
        1 => CharClass::Removed,
        2 => CharClass::Punct,
        3 => CharClass::Mark,
        _ => CharClass::Normal,
    }
}

/// HF's `is_chinese_char`: the CJK ideograph blocks BERT isolates as single words.
pub(crate) fn is_chinese(c: char) -> bool {
    matches!(
        u32::from(c),
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B920..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

/// Up to three chars produced from one (accent stripping yields at most three,
/// lowercasing at most two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chars {
    chars: [char; 3],
    len: u8,
}

impl Chars {
    const EMPTY: Chars = Chars {
        chars: ['\0'; 3],
        len: 0,
    };

    /// Just `c`.
    pub(crate) fn one(c: char) -> Chars {
        Chars {
            chars: [c, '\0', '\0'],
            len: 1,
        }
    }

    fn push(&mut self, c: char) {
        if let Some(slot) = self.chars.get_mut(usize::from(self.len)) {
            *slot = c;
            self.len += 1;
        }
    }

    /// The chars, in order.
    pub(crate) fn as_slice(&self) -> &[char] {
        self.chars.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

const HANGUL_S_BASE: u32 = 0xAC00;
const HANGUL_S_COUNT: u32 = 11_172;

/// `strip_accents` for one char: NFD (HF's tables) without nonspacing marks.
/// Canonical reordering is not applied (see the module docs).
pub(crate) fn strip_accents(c: char) -> Chars {
    let cp = u32::from(c);
    if cp < 0xC0 {
        return Chars::one(c); // nothing below U+00C0 decomposes or is Mn
    }
    if class(c) == CharClass::Mark {
        return Chars::EMPTY;
    }
    if let Some(i) = cp
        .checked_sub(HANGUL_S_BASE)
        .filter(|&i| i < HANGUL_S_COUNT)
    {
        // Unicode 3.12: L V [T]; jamo are neither marks nor decomposable.
        let mut out = Chars::EMPTY;
        let (l, v, t) = (0x1100 + i / 588, 0x1161 + (i % 588) / 28, 0x11A7 + i % 28);
        for (jamo, keep) in [(l, true), (v, true), (t, t != 0x11A7)] {
            if let Some(j) = char::from_u32(jamo).filter(|_| keep) {
                out.push(j);
            }
        }
        return out;
    }
    if let Ok(key) = u16::try_from(cp) {
        if let Ok(i) = STRIP_BMP.binary_search_by_key(&key, |&(k, _)| k) {
            let value = STRIP_BMP.get(i).map_or(cp, |&(_, v)| u32::from(v));
            return Chars::one(char::from_u32(value).unwrap_or(c));
        }
    }
    let Ok(i) = STRIP_WIDE.binary_search_by_key(&cp, |&(k, _)| k) else {
        return Chars::one(c);
    };
    let value = STRIP_WIDE.get(i).map_or(cp, |&(_, v)| v);
    if value < 0x11_0000 {
        return Chars::one(char::from_u32(value).unwrap_or(c));
    }
    let (len, offset) = ((value >> 24) as usize, (value & 0xFF_FFFF) as usize);
    let mut out = Chars::EMPTY;
    let seq = offset
        .checked_add(len)
        .and_then(|end| STRIP_SEQ.get(offset..end))
        .unwrap_or(&[]);
    for &s in seq {
        if let Some(s) = char::from_u32(s) {
            out.push(s);
        }
    }
    out
}

/// Per-char lowercase as HF does it (Rust `char::to_lowercase` of the `tokenizers`
/// build, so no final-sigma rule), from compact run tables.
pub(crate) fn lowercase(c: char) -> Chars {
    let cp = u32::from(c);
    if cp < 0x80 {
        return Chars::one(c.to_ascii_lowercase());
    }
    if c == '\u{130}' {
        let mut out = Chars::one('i');
        out.push('\u{307}');
        return out;
    }
    let runs_before = LOWER_RUNS.partition_point(|&(key, _)| key >> 8 <= cp);
    let Some(&(key, delta)) = runs_before.checked_sub(1).and_then(|i| LOWER_RUNS.get(i)) else {
        return Chars::one(c);
    };
    let (start, count, stride) = (key >> 8, (key >> 1) & 0x7F, 1 + (key & 1));
    let offset = cp - start; // start <= cp by the partition point
    if offset % stride != 0 || offset / stride >= count {
        return Chars::one(c);
    }
    let lowered = cp.checked_add_signed(delta).and_then(char::from_u32);
    Chars::one(lowered.unwrap_or(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code point; under Miri (which interprets every step) ASCII plus every
    /// 257th code point.
    fn all_chars() -> impl Iterator<Item = char> {
        let step = if cfg!(miri) { 257 } else { 1 };
        (0..0x80u32)
            .filter(move |_| step > 1)
            .chain((0..=0x10_FFFFu32).step_by(step))
            .filter_map(char::from_u32)
    }

    #[test]
    fn ascii_fast_path_matches_tables() {
        for c in (0u8..0x80).map(char::from) {
            let cp = u32::from(c);
            let i = CLASS_RUNS.partition_point(|&run| run >> 2 <= cp) - 1;
            let from_table = match CLASS_RUNS[i] & 3 {
                1 => CharClass::Removed,
                2 => CharClass::Punct,
                3 => CharClass::Mark,
                _ => CharClass::Normal,
            };
            assert_eq!(class(c), from_table, "{cp:#x}");
        }
    }

    #[test]
    fn tables_are_sorted_and_valid() {
        assert_eq!(CLASS_RUNS[0] >> 2, 0);
        assert!(CLASS_RUNS.windows(2).all(|w| w[0] >> 2 < w[1] >> 2));
        assert!(STRIP_BMP.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(STRIP_WIDE.windows(2).all(|w| w[0].0 < w[1].0));
        for &(_, v) in &STRIP_BMP {
            assert!(char::from_u32(u32::from(v)).is_some());
        }
        for &(_, v) in &STRIP_WIDE {
            if v < 0x11_0000 {
                assert!(char::from_u32(v).is_some());
            } else {
                let (len, off) = ((v >> 24) as usize, (v & 0xFF_FFFF) as usize);
                assert!((2..=3).contains(&len) && off + len <= STRIP_SEQ.len());
            }
        }
        assert!(STRIP_SEQ.iter().all(|&s| char::from_u32(s).is_some()));
        // Lowercase runs are disjoint: each ends before the next starts.
        for w in LOWER_RUNS.windows(2) {
            let (k, _) = w[0];
            let last = (k >> 8) + ((k >> 1) & 0x7F).saturating_sub(1) * (1 + (k & 1));
            assert!(last < w[1].0 >> 8);
        }
    }

    #[test]
    fn documented_examples() {
        assert_eq!(class('!'), CharClass::Punct);
        assert_eq!(class('\u{3001}'), CharClass::Punct); // 、
        assert_eq!(class('\u{00BF}'), CharClass::Punct); // ¿
        assert_eq!(class('$'), CharClass::Punct); // ASCII symbol counts as punctuation
        assert_eq!(class('\u{20AC}'), CharClass::Normal); // € is Sc, not punctuation
        assert_eq!(class('\u{200D}'), CharClass::Removed); // ZWJ (Cf)
        assert_eq!(class('\u{FFFD}'), CharClass::Removed);
        assert_eq!(class('\u{E000}'), CharClass::Removed); // private use
        assert_eq!(class('\u{0378}'), CharClass::Normal); // unassigned is kept by HF
        assert_eq!(class('\t'), CharClass::Normal);
        assert_eq!(class('\u{0301}'), CharClass::Mark);
        assert!(is_chinese('\u{4E2D}') && is_chinese('\u{F900}') && !is_chinese('\u{3042}'));

        assert_eq!(strip_accents('é').as_slice(), ['e']);
        assert_eq!(strip_accents('\u{0301}').as_slice(), [] as [char; 0]);
        assert_eq!(strip_accents('\u{212B}').as_slice(), ['A']); // Å sign
        assert_eq!(strip_accents('\u{2260}').as_slice(), ['=']); // ≠ becomes punctuation
        assert_eq!(strip_accents('\u{F900}').as_slice(), ['\u{8C48}']);
        assert_eq!(
            strip_accents('한').as_slice(),
            ['\u{1112}', '\u{1161}', '\u{11AB}']
        );
        assert_eq!(
            strip_accents('\u{AC00}').as_slice(),
            ['\u{1100}', '\u{1161}']
        );
        assert_eq!(
            strip_accents('\u{0B4B}').as_slice(),
            ['\u{0B47}', '\u{0B3E}']
        );
        assert_eq!(strip_accents('ß').as_slice(), ['ß']);
        assert_eq!(strip_accents('\u{FB01}').as_slice(), ['\u{FB01}']); // ﬁ: compatibility only

        assert_eq!(lowercase('A').as_slice(), ['a']);
        assert_eq!(lowercase('Σ').as_slice(), ['σ']); // never final sigma
        assert_eq!(lowercase('\u{130}').as_slice(), ['i', '\u{307}']);
        assert_eq!(lowercase('Ā').as_slice(), ['ā']);
        assert_eq!(lowercase('ā').as_slice(), ['ā']);
        assert_eq!(lowercase('Ж').as_slice(), ['ж']);
        assert_eq!(lowercase('\u{10400}').as_slice(), ['\u{10428}']); // Deseret
        assert_eq!(lowercase('ẞ').as_slice(), ['ß']);
    }

    /// The run tables reproduce core's lowercase wherever core maps to one char, except
    /// for code points that only differ by Unicode version (reported, bounded).
    #[test]
    fn lowercase_agrees_with_core() {
        let mut differ = 0;
        for c in all_chars() {
            let mut core_lower = c.to_lowercase();
            let ours = lowercase(c);
            if core_lower.len() == 1 {
                if core_lower.next() != ours.as_slice().first().copied() {
                    differ += 1;
                }
            } else {
                assert!(core_lower.eq(ours.as_slice().iter().copied()), "{c:?}");
            }
        }
        assert!(differ < 64, "{differ} code points differ from core");
    }

    #[test]
    fn total_over_all_chars() {
        for c in all_chars() {
            let _ = class(c);
            assert!(strip_accents(c).as_slice().len() <= 3);
            assert!(!lowercase(c).as_slice().is_empty());
        }
    }
}
