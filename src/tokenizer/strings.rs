//! What the WordPiece section ([`section`](super::section), magic `b"TFTK"`), the
//! SentencePiece section ([`sentencepiece`](super::sentencepiece), magic `b"TFSP"`)
//! and the byte-level BPE section ([`bytebpe`](super::bytebpe), magic `b"TFBB"`)
//! share: the preamble (magic, version, flags, vocab size), little-endian `u32` reads, range checks of
//! special ids, and the *string table* that ends every section, with its layout, its
//! validation, its lookups and its writer. Each section's own header and its
//! per-section arrays (added-token ids, merge keys, byte tokens and merges) stay in its
//! module.
//!
//! # String table layout
//!
//! The table starts at a byte offset `T` fixed by the section (`44 + 4K` for WordPiece,
//! `40 + 4N` for SentencePiece, `1064 + 4K + 16M` for byte-level BPE), right after
//! those arrays. `N` = number of strings (the
//! vocab size), `S` = total string bytes (a header field of each section). All integers
//! are `u32` little-endian, read from byte slices (no alignment needed).
//!
//! | offset | size | field |
//! |---|---|---|
//! | `T` | 4·(N+1) | offsets: string `id` is bytes `off[id]..off[id+1]` of the string area; `off[0] = 0`, non-decreasing, `off[N] = S` |
//! | `T+4N+4` | 4·N | sorted index: all ids ordered by string bytes (unsigned, like `strcmp`), strictly increasing |
//! | `T+8N+4` | S | string area: the strings concatenated in id order |
//! | `T+8N+4+S` | 0–3 | zero padding to a multiple of 4 |
//!
//! The section length must equal the padded total exactly. Validation: every size with
//! checked arithmetic ([`TableLayout::new`]), exact length and zero padding
//! ([`TableLayout::check_length`]), offsets monotone and in range, with a per-string
//! check the section supplies ([`StringTable::parse`]), and the index in range and
//! strictly increasing ([`StringTable::check_index`]): `N` strictly increasing entries
//! below `N` are exactly a permutation, and they prove the strings distinct. After
//! that, lookups cannot fail; they still use checked slice access only.

use core::cmp::Ordering;

use super::error::{SpecialToken, TokenizerError};

// The header fields both sections start with (u32 little-endian after the magic).
const AT_VERSION: usize = 4;
const AT_FLAGS: usize = 8;
const AT_VOCAB_SIZE: usize = 12;

/// The start every tokenizer section shares, returned as `(flags, N)`: at least
/// `header_len` bytes, the 4-byte `magic`, the `u32` version (equal to `version`) at
/// byte 4, the flags (no bit outside `known_flags`) at byte 8, and `N`, the vocab size
/// (at least 1), at byte 12.
pub(crate) fn check_preamble(
    section: &[u8],
    header_len: usize,
    (magic, version): ([u8; 4], u32),
    known_flags: u32,
) -> Result<(u32, u32), TokenizerError> {
    use TokenizerError as E;
    if section.len() < header_len {
        return Err(E::Truncated {
            needed: header_len,
            len: section.len(),
        });
    }
    let mut found = [0u8; 4];
    found.copy_from_slice(section.get(..4).unwrap_or(&[0; 4]));
    if found != magic {
        return Err(E::BadMagic { found });
    }
    let found = u32_at(section, AT_VERSION);
    if found != version {
        return Err(E::UnsupportedVersion { version: found });
    }
    let flags = u32_at(section, AT_FLAGS);
    if flags & !known_flags != 0 {
        return Err(E::UnknownFlags { flags });
    }
    let vocab_size = u32_at(section, AT_VOCAB_SIZE);
    if vocab_size == 0 {
        return Err(E::EmptyVocab);
    }
    Ok((flags, vocab_size))
}

/// Reads the little-endian `u32` at byte `at`; 0 when out of range (never after
/// validation).
pub(crate) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    at.checked_add(4)
        .and_then(|end| bytes.get(at..end))
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_le_bytes)
}

/// Reads entry `index` of a little-endian `u32` array.
pub(crate) fn u32_entry(bytes: &[u8], index: usize) -> u32 {
    index.checked_mul(4).map_or(0, |at| u32_at(bytes, at))
}

/// The byte range of an array of `count` `u32` words starting at byte `start`.
pub(crate) fn words(start: usize, count: u32) -> Option<(usize, usize)> {
    let len = usize::try_from(count).ok()?.checked_mul(4)?;
    Some((start, start.checked_add(len)?))
}

/// `section[range]`, or empty when out of range (never after the length check).
pub(crate) fn slice(section: &[u8], range: (usize, usize)) -> &[u8] {
    section.get(range.0..range.1).unwrap_or(&[])
}

/// The first `(key, id)` whose id is not below `vocab_size`.
pub(crate) fn first_out_of_range<K>(
    ids: impl IntoIterator<Item = (K, u32)>,
    vocab_size: u32,
) -> Option<(K, u32)> {
    ids.into_iter().find(|(_, id)| *id >= vocab_size)
}

/// [`TokenizerError::SpecialIdOutOfRange`] for the first special id not below
/// `vocab_size`.
pub(crate) fn check_special_ids(
    specials: &[(SpecialToken, u32)],
    vocab_size: u32,
) -> Result<(), TokenizerError> {
    match first_out_of_range(specials.iter().copied(), vocab_size) {
        Some((which, id)) => Err(TokenizerError::SpecialIdOutOfRange {
            which,
            id,
            vocab_size,
        }),
        None => Ok(()),
    }
}

/// Compares `token` with the concatenation `left ++ right`, without copying.
pub(crate) fn cmp_concat(token: &[u8], left: &[u8], right: &[u8]) -> Ordering {
    let split = token.len().min(left.len());
    let head = token.get(..split).unwrap_or(&[]);
    match head.cmp(left.get(..split).unwrap_or(&[])) {
        Ordering::Equal => {}
        unequal => return unequal,
    }
    if token.len() < left.len() {
        return Ordering::Less; // a proper prefix of `left`
    }
    token.get(split..).unwrap_or(&[]).cmp(right)
}

/// Byte ranges of a string table's parts (see the [module docs](self)), from the
/// header counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableLayout {
    /// `N`, the number of strings.
    pub(crate) count: u32,
    /// `S`, the total string bytes.
    pub(crate) strings_len: u32,
    pub(crate) offsets: (usize, usize),
    pub(crate) index: (usize, usize),
    pub(crate) strings: (usize, usize),
    /// Total section length, padded to a multiple of 4.
    pub(crate) padded_len: usize,
}

impl TableLayout {
    /// The table of `count` strings of `strings_len` bytes in all, starting at byte
    /// `start`; `None` when a size overflows `usize`.
    pub(crate) fn new(start: usize, count: u32, strings_len: u32) -> Option<TableLayout> {
        // N + 1 offsets: one word more than `count` (which may be u32::MAX).
        let offsets = (start, words(start, count)?.1.checked_add(4)?);
        let index = words(offsets.1, count)?;
        let strings = (
            index.1,
            index.1.checked_add(usize::try_from(strings_len).ok()?)?,
        );
        let padded_len = strings.1.checked_add(3)? & !3;
        Some(TableLayout {
            count,
            strings_len,
            offsets,
            index,
            strings,
            padded_len,
        })
    }

    /// The section is exactly the padded length and its padding is zero.
    pub(crate) fn check_length(&self, section: &[u8]) -> Result<(), TokenizerError> {
        use TokenizerError as E;
        if section.len() != self.padded_len {
            return Err(E::LengthMismatch {
                expected: self.padded_len,
                len: section.len(),
            });
        }
        let padding = section.get(self.strings.1..).unwrap_or(&[]);
        if let Some(i) = padding.iter().position(|&b| b != 0) {
            return Err(E::NonZeroPadding {
                offset: self.strings.1.saturating_add(i),
            });
        }
        Ok(())
    }
}

/// A string table borrowed from a section whose offsets [`StringTable::parse`] checked.
#[derive(Clone, Copy)]
pub(crate) struct StringTable<'a> {
    count: u32,
    offsets: &'a [u8],
    index: &'a [u8],
    strings: &'a [u8],
    /// Bytes of the longest string.
    longest: usize,
}

impl<'a> StringTable<'a> {
    /// Checks the offsets of a section that passed [`TableLayout::check_length`]:
    /// `off[0] = 0`, non-decreasing, `off[N] = S`, with `check(id, bytes)` on each
    /// string in id order (its error is returned as is). The index is checked apart
    /// ([`StringTable::check_index`]), so that a section can check its strings first.
    pub(crate) fn parse(
        section: &'a [u8],
        layout: &TableLayout,
        mut check: impl FnMut(u32, &[u8]) -> Result<(), TokenizerError>,
    ) -> Result<StringTable<'a>, TokenizerError> {
        use TokenizerError as E;
        let offsets = slice(section, layout.offsets);
        let strings = slice(section, layout.strings);
        let mut start = u32_entry(offsets, 0);
        if start != 0 {
            return Err(E::BadOffset {
                id: 0,
                offset: start,
            });
        }
        let mut longest = 0;
        for id in 0..layout.count {
            let end = u32_entry(offsets, (id as usize).saturating_add(1));
            if end < start || end > layout.strings_len {
                return Err(E::BadOffset {
                    id: id.saturating_add(1),
                    offset: end,
                });
            }
            let string = strings.get(start as usize..end as usize).unwrap_or(&[]);
            check(id, string)?;
            longest = longest.max(string.len());
            start = end;
        }
        if start != layout.strings_len {
            return Err(E::BadOffset {
                id: layout.count,
                offset: start,
            });
        }
        Ok(StringTable {
            count: layout.count,
            offsets,
            index: slice(section, layout.index),
            strings,
            longest,
        })
    }

    /// Index entries in range and strictly increasing by bytes (so a permutation).
    pub(crate) fn check_index(&self) -> Result<(), TokenizerError> {
        use TokenizerError as E;
        let mut previous: &[u8] = &[];
        for position in 0..self.count {
            let id = u32_entry(self.index, position as usize);
            if id >= self.count {
                return Err(E::IndexOutOfRange { position, id });
            }
            let current = self.get(id);
            if position > 0 && previous >= current {
                return Err(E::IndexNotSorted { position });
            }
            previous = current;
        }
        Ok(())
    }

    /// Bytes of string `id` (empty if out of range, which validation rules out for
    /// every id a section produces).
    pub(crate) fn get(&self, id: u32) -> &'a [u8] {
        let start = u32_entry(self.offsets, id as usize) as usize;
        let end = u32_entry(self.offsets, (id as usize).saturating_add(1)) as usize;
        self.strings.get(start..end).unwrap_or(&[])
    }

    /// Bytes of the longest string.
    pub(crate) fn longest(&self) -> usize {
        self.longest
    }

    /// Binary search of the sorted index for the string `left ++ right`. Cost:
    /// O(log N) compares, none when the two are longer than the longest string.
    pub(crate) fn find(&self, left: &[u8], right: &[u8]) -> Option<u32> {
        if left.len().saturating_add(right.len()) > self.longest {
            return None;
        }
        let (mut lo, mut hi) = (0usize, self.count as usize);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let id = u32_entry(self.index, mid);
            match cmp_concat(self.get(id), left, right) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Some(id),
            }
        }
        None
    }
}

/// Host side of a string table: the strings, their sorted index and total length.
#[cfg(feature = "alloc")]
pub(crate) struct TableWriter<'s, S> {
    strings: &'s [S],
    order: alloc::vec::Vec<u32>,
    /// `S`, the total string bytes.
    pub(crate) strings_len: u32,
}

#[cfg(feature = "alloc")]
impl<'s, S: AsRef<[u8]>> TableWriter<'s, S> {
    /// Sorts the ids of `strings` by bytes and sums their lengths. The caller has
    /// checked that their number fits in `u32`.
    ///
    /// Errors: [`TokenizerError::DuplicateToken`], [`TokenizerError::SizeOverflow`].
    pub(crate) fn new(strings: &'s [S]) -> Result<Self, TokenizerError> {
        use TokenizerError as E;
        let count = u32::try_from(strings.len()).map_err(|_| E::SizeOverflow)?;
        let text = |id: u32| strings.get(id as usize).map_or(&[][..], AsRef::as_ref);
        let mut order: alloc::vec::Vec<u32> = (0..count).collect();
        order.sort_unstable_by(|&a, &b| text(a).cmp(text(b)).then(a.cmp(&b)));
        if let Some(pair) = order.windows(2).find(|w| text(w[0]) == text(w[1])) {
            return Err(E::DuplicateToken {
                first: pair[0],
                second: pair[1],
            });
        }
        let strings_len = strings
            .iter()
            .try_fold(0u32, |sum, s| {
                sum.checked_add(u32::try_from(s.as_ref().len()).ok()?)
            })
            .ok_or(E::SizeOverflow)?;
        Ok(TableWriter {
            strings,
            order,
            strings_len,
        })
    }

    /// The id of the string with exactly these bytes.
    pub(crate) fn find(&self, string: &[u8]) -> Option<u32> {
        let text = |id: u32| self.strings.get(id as usize).map_or(&[][..], AsRef::as_ref);
        self.order
            .binary_search_by(|&id| text(id).cmp(string))
            .ok()
            .and_then(|pos| self.order.get(pos).copied())
    }

    /// The whole section: `magic`, the header `fields` (from the version on), the
    /// section's array of `u32` words before the table, then the table (offsets, index,
    /// strings) and the zero padding, laid out as `layout` says.
    pub(crate) fn write_section(
        &self,
        (magic, fields): ([u8; 4], &[u32]),
        array: impl IntoIterator<Item = u32>,
        layout: &TableLayout,
    ) -> alloc::vec::Vec<u8> {
        let mut out = alloc::vec::Vec::with_capacity(layout.padded_len);
        out.extend_from_slice(&magic);
        let mut put = |value: u32| out.extend_from_slice(&value.to_le_bytes());
        fields.iter().copied().for_each(&mut put);
        array.into_iter().for_each(&mut put);
        let mut offset = 0u32;
        put(offset);
        for s in self.strings {
            // Cannot overflow: the sum fits (checked by `new`).
            offset = offset.wrapping_add(s.as_ref().len() as u32);
            put(offset);
        }
        self.order.iter().copied().for_each(&mut put);
        debug_assert_eq!(out.len(), layout.strings.0);
        for s in self.strings {
            out.extend_from_slice(s.as_ref());
        }
        out.resize(layout.padded_len, 0);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmp_concat_matches_concatenation() {
        let words: [&[u8]; 6] = [b"", b"a", b"ab", b"abc", b"b", b"\xff"];
        for &token in &words {
            for &left in &words {
                for &right in &words {
                    let mut joined = left.to_vec();
                    joined.extend_from_slice(right);
                    assert_eq!(cmp_concat(token, left, right), token.cmp(&joined[..]));
                }
            }
        }
    }

    #[test]
    fn layout_overflow_is_checked() {
        assert_eq!(
            TableLayout::new(44, u32::MAX, u32::MAX).is_none(),
            usize::BITS <= 32
        );
        assert!(TableLayout::new(usize::MAX - 3, 0, 0).is_none());
        let layout = TableLayout::new(44, 1, 1).unwrap();
        assert_eq!(
            (layout.offsets, layout.index, layout.strings),
            ((44, 52), (52, 56), (56, 57))
        );
        assert_eq!(layout.padded_len, 60);
    }
}
