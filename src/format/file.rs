//! [`ModelFile`]: [`ModelFile::from_bytes`] (the one validation pass over the whole
//! file) and the infallible accessors afterwards (config, sections, labels, tensor
//! views); the file CRC; [`Aligned`] and [`crate::include_model!`] for files baked
//! into the binary.

use super::config::hdr;
use super::directory::{check_entry, check_quant_params, parse_entry, tensor_count_u32};
use super::{
    dir, header, read_u32, self_test, tensor_index, tensor_spec, Config, FormatError,
    SelfTestCases, TensorInfo, TensorKind, ALIGN, DIR_ENTRY_LEN, HEADER_LEN,
};

/// A validated model file: the config plus zero-copy access to every tensor.
#[derive(Clone, Copy, Debug)]
pub struct ModelFile<'a> {
    bytes: &'a [u8],
    config: Config,
    crc32: u32,
    tensor_count: u32,
    dir_offset: usize,
    tokenizer: &'a [u8],
    labels: &'a [u8],
    /// Empty when the file has no self-test section.
    self_test: &'a [u8],
}

impl<'a> ModelFile<'a> {
    /// Validates `bytes` as a format-v1 model file, in one pass: magic, version,
    /// lengths, config ranges, the directory against the canonical tensor list
    /// (kinds, dtypes, shapes, byte lengths), every region in bounds, ordered, aligned
    /// and non-overlapping (checked arithmetic throughout), the labels and tokenizer
    /// sections, integer quantization constants, and the CRC-32.
    ///
    /// `bytes` must start at a 16-byte aligned address so that tensors can be viewed
    /// in place ([`FormatError::BufferMisaligned`] otherwise).
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, FormatError> {
        Self::validate::<true>(bytes)
    }

    /// [`ModelFile::from_bytes`] for an encoder: a decoder's file is refused with
    /// [`FormatError::WrongArch`] where its tokenizer section would be checked. What
    /// [`crate::Model::from_bytes`] calls, so that a firmware which only runs encoders
    /// links none of the decoder tokenizers' validation (byte-level BPE, SentencePiece:
    /// about 3 KB of Cortex-M4 flash at `opt-level = "z"` without LTO), which is reached through
    /// the file's data, not through the API: without this, only a build that can
    /// constant-fold a model baked into flash (LTO) drops it.
    pub(crate) fn encoder_from_bytes(bytes: &'a [u8]) -> Result<Self, FormatError> {
        Self::validate::<false>(bytes)
    }

    /// The validation pass; `DECODERS`: whether a decoder's file is validated (true)
    /// or refused (false; its tokenizer code is then not instantiated).
    fn validate<const DECODERS: bool>(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let addr_mod = (bytes.as_ptr() as usize % ALIGN) as u32;
        if addr_mod != 0 {
            return Err(FormatError::BufferMisaligned { addr_mod });
        }
        let config = Config::from_header(bytes)?;
        let file_len = hdr(bytes, header::FILE_LEN);

        // Directory.
        let tensor_count = hdr(bytes, header::TENSOR_COUNT);
        let expected = tensor_count_u32(&config);
        if tensor_count != expected {
            return Err(FormatError::TensorCountMismatch {
                expected,
                found: tensor_count,
            });
        }
        let dir_offset = hdr(bytes, header::DIR_OFFSET);
        let dir_len =
            tensor_count
                .checked_mul(DIR_ENTRY_LEN as u32)
                .ok_or(FormatError::OutOfBounds {
                    region: "directory",
                    offset: dir_offset,
                    len: u32::MAX,
                    file_len,
                })?;
        let mut end = check_region(
            "directory",
            dir_offset,
            dir_len,
            4,
            HEADER_LEN as u32,
            file_len,
        )?;

        // Sections.
        let tok_offset = hdr(bytes, header::TOKENIZER_OFFSET);
        let tok_len = hdr(bytes, header::TOKENIZER_LEN);
        end = check_region("tokenizer", tok_offset, tok_len, 4, end, file_len)?;
        let lab_offset = hdr(bytes, header::LABELS_OFFSET);
        let lab_len = hdr(bytes, header::LABELS_LEN);
        end = check_region("labels", lab_offset, lab_len, 4, end, file_len)?;
        let tokenizer = region(bytes, tok_offset, tok_offset + tok_len);
        let labels = region(bytes, lab_offset, lab_offset + lab_len);
        check_labels(labels, config.num_labels)?;
        // Optional self-test section, between the labels and the tensors.
        let st_offset = hdr(bytes, header::SELF_TEST_OFFSET);
        let st_len = hdr(bytes, header::SELF_TEST_LEN);
        let self_test = if st_offset == 0 && st_len == 0 {
            &[][..]
        } else {
            end = check_region("self_test", st_offset, st_len, 4, end, file_len)?;
            let section = region(bytes, st_offset, end);
            self_test::check_section(section, &config)?;
            section
        };
        let vocab = match config.decoder {
            None => crate::tokenizer::Tokenizer::from_section(tokenizer)
                .map_err(FormatError::Tokenizer)?
                .vocab_size(),
            Some(_) if !DECODERS => {
                return Err(FormatError::WrongArch {
                    expected: super::Arch::BertEncoder,
                    found: config.arch,
                })
            }
            Some(d) => {
                let sp = crate::tokenizer::decoder::DecoderTokenizer::from_section(tokenizer)
                    .map_err(FormatError::Tokenizer)?;
                if (sp.bos_id(), sp.eos_id()) != (Some(d.bos_id), Some(d.eos_id)) {
                    return Err(FormatError::BadHeaderField {
                        field: "bos_id/eos_id (tokenizer section disagrees)",
                        value: d.bos_id,
                    });
                }
                sp.vocab_size()
            }
        };
        if vocab != config.vocab_size {
            return Err(FormatError::VocabMismatch {
                config: config.vocab_size,
                tokenizer: vocab,
            });
        }

        // Tensors, in canonical order.
        for index in 0..tensor_count {
            let at = dir_offset + index * DIR_ENTRY_LEN as u32;
            let entry = region(bytes, at, at + DIR_ENTRY_LEN as u32);
            let info = check_entry(&config, index, entry, at as usize)?;
            end = check_region("tensor", info.offset, info.len, ALIGN as u32, end, file_len)?;
            let payload = region(bytes, info.offset, end);
            check_quant_params(index, &info, payload)?;
        }

        let stored = hdr(bytes, header::CRC32);
        let computed = file_crc32(bytes);
        if stored != computed {
            return Err(FormatError::ChecksumMismatch { stored, computed });
        }
        Ok(Self {
            bytes,
            config,
            crc32: stored,
            tensor_count,
            dir_offset: dir_offset as usize,
            tokenizer,
            labels,
            self_test,
        })
    }

    /// The model configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The whole file.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// The verified CRC-32.
    pub fn crc32(&self) -> u32 {
        self.crc32
    }
    /// Number of tensors.
    pub fn tensor_count(&self) -> u32 {
        self.tensor_count
    }
    /// The raw tokenizer section (validated).
    pub fn tokenizer_section(&self) -> &'a [u8] {
        self.tokenizer
    }
    /// Number of label names (equals `config().num_labels`).
    pub fn label_count(&self) -> u32 {
        self.config.num_labels
    }
    /// Name of label `index`, `None` if out of range.
    pub fn label(&self, index: u32) -> Option<&'a str> {
        label_at(self.labels, index)
    }

    /// The golden cases of the self-test section, in file order; none if the file has
    /// no such section. Run them with [`crate::Model::self_test`].
    pub fn self_test_cases(&self) -> SelfTestCases<'a> {
        SelfTestCases::new(self.self_test, self.config.output_len())
    }

    /// Directory entry `index`, `None` if out of range.
    pub fn tensor_info(&self, index: u32) -> Option<TensorInfo> {
        if index >= self.tensor_count {
            return None;
        }
        let at = self.dir_offset + index as usize * DIR_ENTRY_LEN;
        let entry = self.bytes.get(at..at + DIR_ENTRY_LEN)?;
        parse_entry(entry)
    }

    /// Payload bytes of tensor `(kind, layer)`; empty if the config has no such tensor
    /// (generic code may ask for kinds a config does not use).
    ///
    /// Reads only the entry's offset and length: the load validated every entry
    /// against the canonical list (kind, layer, dtype, shape), so the forward passes,
    /// which look tensors up on every token, skip decoding the rest. A tensor the
    /// config uses is always there; a debug build asserts it.
    pub fn tensor_bytes(&self, kind: TensorKind, layer: Option<u16>) -> &'a [u8] {
        let Some(index) = tensor_index(&self.config, kind, layer) else {
            return &[];
        };
        let payload = self.payload(index);
        debug_assert!(
            payload.is_some(),
            "tensor {kind:?} (layer {layer:?}): the config uses it but directory entry \
             {index} has no payload",
        );
        payload.unwrap_or(&[])
    }

    /// Tensor `(kind, layer)` viewed as elements of `T` (zero-copy); empty if the
    /// config has no such tensor.
    ///
    /// `T` must be the stored element type or a group of them (`[i32; 2]` for the
    /// `(multiplier, shift)` pairs of an `i32` table). Asking for a tensor the config
    /// uses with another `T` is a bug of the caller: a debug build panics naming the
    /// tensor and `T` when the view does not cast or `T`'s size is not a whole number
    /// of stored elements; a release build returns an empty slice.
    pub fn tensor<T: bytemuck::Pod>(&self, kind: TensorKind, layer: Option<u16>) -> &'a [T] {
        let bytes = self.tensor_bytes(kind, layer);
        if bytes.is_empty() {
            // Not `try_cast_slice`: it refuses the empty slice's dangling address for
            // any `T` aligned beyond a byte.
            return &[];
        }
        if cfg!(debug_assertions) {
            self.check_element_type::<T>(kind, layer);
        }
        match bytemuck::try_cast_slice(bytes) {
            Ok(view) => view,
            Err(_) => {
                debug_assert!(
                    false,
                    "tensor {kind:?} (layer {layer:?}): {} bytes cannot be viewed as {}",
                    bytes.len(),
                    core::any::type_name::<T>(),
                );
                &[]
            }
        }
    }

    /// Payload of directory entry `index`, reading only its offset and length.
    fn payload(&self, index: u32) -> Option<&'a [u8]> {
        if index >= self.tensor_count {
            return None;
        }
        let at = self.dir_offset + index as usize * DIR_ENTRY_LEN;
        let entry = self.bytes.get(at..at + DIR_ENTRY_LEN)?;
        let offset = read_u32(entry, dir::OFFSET)? as usize;
        let len = read_u32(entry, dir::LEN)? as usize;
        self.bytes.get(offset..offset.checked_add(len)?)
    }

    /// Debug builds: panics if the config holds tensor `(kind, layer)` and `T` is not
    /// a whole number of its stored elements (an `i8` view of an `i32` table, say,
    /// which the byte cast alone would accept).
    fn check_element_type<T>(&self, kind: TensorKind, layer: Option<u16>) {
        let Some(index) = tensor_index(&self.config, kind, layer) else {
            return;
        };
        let Some(spec) = tensor_spec(&self.config, index as usize) else {
            return;
        };
        let size = core::mem::size_of::<T>();
        assert!(
            size != 0 && size.is_multiple_of(spec.dtype.size()),
            "tensor {kind:?} (layer {layer:?}) holds {} elements, requested as {}",
            spec.dtype.name(),
            core::any::type_name::<T>(),
        );
    }
}

/// Computes the file CRC: CRC-32 (IEEE, as zlib) of the whole file with the four CRC
/// bytes taken as zero. `bytes` must be at least [`HEADER_LEN`] long.
pub fn file_crc32(bytes: &[u8]) -> u32 {
    let head = bytes.get(..header::CRC32).unwrap_or(&[]);
    let tail = bytes.get(header::CRC32 + 4..).unwrap_or(&[]);
    #[cfg(not(feature = "small-crc"))]
    {
        // One 1 KiB table rather than slice-by-16's 16 KiB: flash matters more than
        // the speed of a check that runs once at boot.
        const CRC: crc::Crc<u32, crc::Table<1>> =
            crc::Crc::<u32, crc::Table<1>>::new(&crc::CRC_32_ISO_HDLC);
        let mut digest = CRC.digest();
        digest.update(head);
        digest.update(&[0u8; 4]);
        digest.update(tail);
        digest.finalize()
    }
    #[cfg(feature = "small-crc")]
    {
        !crc32_nibbles(crc32_nibbles(crc32_nibbles(!0, head), &[0u8; 4]), tail)
    }
}

/// The CRC-32 (IEEE, reflected) register after `bytes`, four bits at a time through a
/// 16-entry (64-byte) table instead of the 1 KiB byte table: the `small-crc` feature's
/// checksum, about twice the instructions of the byte table (docs/FIRMWARE.md).
/// Start from `!0` and invert the result, as zlib does.
#[cfg(any(test, feature = "small-crc"))]
fn crc32_nibbles(mut crc: u32, bytes: &[u8]) -> u32 {
    /// `NIBBLES[i]`: the register after shifting the four bits `i` out of it.
    const NIBBLES: [u32; 16] = {
        let mut table = [0u32; 16];
        let mut i = 0;
        while i < 16 {
            let mut value = i as u32;
            let mut bit = 0;
            while bit < 4 {
                value = if value & 1 == 1 {
                    (value >> 1) ^ 0xEDB8_8320
                } else {
                    value >> 1
                };
                bit += 1;
            }
            table[i] = value;
            i += 1;
        }
        table
    };
    for &byte in bytes {
        crc ^= u32::from(byte);
        crc = (crc >> 4) ^ NIBBLES[(crc & 0xF) as usize];
        crc = (crc >> 4) ^ NIBBLES[(crc & 0xF) as usize];
    }
    crc
}

/// `bytes[start..end]` for a region [`check_region`] accepted: `get` rather than
/// indexing, so that no panic path is linked into firmware (an empty slice if the
/// caller broke that rule).
fn region(bytes: &[u8], start: u32, end: u32) -> &[u8] {
    bytes.get(start as usize..end as usize).unwrap_or(&[])
}

/// Checks that `[offset, offset + len)` lies inside the file, starts at or after
/// `previous_end` and is aligned; returns its end.
fn check_region(
    region: &'static str,
    offset: u32,
    len: u32,
    align: u32,
    previous_end: u32,
    file_len: u32,
) -> Result<u32, FormatError> {
    let end = offset
        .checked_add(len)
        .filter(|&end| end <= file_len)
        .ok_or(FormatError::OutOfBounds {
            region,
            offset,
            len,
            file_len,
        })?;
    if offset < previous_end {
        return Err(FormatError::Overlap {
            region,
            offset,
            previous_end,
        });
    }
    if !offset.is_multiple_of(align) {
        return Err(FormatError::Misaligned {
            region,
            offset,
            align,
        });
    }
    Ok(end)
}

fn check_labels(section: &[u8], count: u32) -> Result<(), FormatError> {
    let bad = |index| FormatError::BadLabels { index };
    let found = read_u32(section, 0).ok_or(bad(0))?;
    if found != count {
        return Err(bad(found));
    }
    let table_end = (count as usize + 2) * 4;
    let mut previous = read_u32(section, 4).ok_or(bad(0))? as usize;
    if previous != table_end {
        return Err(bad(0));
    }
    for i in 0..count as usize {
        let next = read_u32(section, 8 + 4 * i).ok_or(bad(i as u32))? as usize;
        let name = section.get(previous..next).ok_or(bad(i as u32))?;
        if core::str::from_utf8(name).is_err() {
            return Err(bad(i as u32));
        }
        previous = next;
    }
    if previous > section.len() {
        return Err(bad(count));
    }
    Ok(())
}

fn label_at(section: &[u8], index: u32) -> Option<&str> {
    // The count check first: it bounds `index` (<= 1024) before any offset arithmetic,
    // which could otherwise overflow a 32-bit `usize` for an index near `u32::MAX`.
    if index >= read_u32(section, 0)? {
        return None;
    }
    let at = 4 + 4 * index as usize;
    let start = read_u32(section, at)? as usize;
    let end = read_u32(section, at + 4)? as usize;
    core::str::from_utf8(section.get(start..end)?).ok()
}

/// Places a model file in memory with the 16-byte alignment [`ModelFile::from_bytes`]
/// requires. Used by [`crate::include_model!`].
#[repr(C, align(16))]
pub struct Aligned<B: ?Sized>(pub B);

/// Embeds a model file in the binary (flash on a microcontroller), 16-byte aligned,
/// as a `&'static [u8]`.
///
/// The path is resolved as [`include_bytes!`] resolves it: relative to the source
/// file that contains the macro call (`"../models/m.tfm"` from `src/main.rs` names
/// `models/m.tfm` beside `src/`). Any expression `include_bytes!` takes works, such as
/// `concat!(env!("CARGO_MANIFEST_DIR"), "/...")` for a path from the crate's root, or
/// `env!("MODEL")` for one chosen at build time.
///
/// ```
/// static MODEL: &[u8] = tinyformer::include_model!(concat!(
///     env!("CARGO_MANIFEST_DIR"),
///     "/models/default/sentiment-int8.tfm"
/// ));
///
/// let model = tinyformer::Model::from_bytes(MODEL)?;
/// assert_eq!(model.config().max_seq, 64);
/// // The header can be read at compile time too.
/// const MAX_SEQ: u32 = match tinyformer::Config::from_header(MODEL) {
///     Ok(config) => config.max_seq,
///     Err(_) => panic!("not a model file"),
/// };
/// assert_eq!(MAX_SEQ, 64);
/// # Ok::<(), tinyformer::Error>(())
/// ```
#[macro_export]
macro_rules! include_model {
    ($path:expr) => {{
        static ALIGNED: &$crate::format::Aligned<[u8]> =
            &$crate::format::Aligned(*include_bytes!($path));
        &ALIGNED.0
    }};
}

#[cfg(test)]
mod tests {
    use super::crc32_nibbles;

    /// The `small-crc` checksum equals the table-driven one (the `crc` crate's
    /// CRC-32/ISO-HDLC), on the standard check input and on lengths around a word.
    #[test]
    fn nibble_crc_matches_the_table() {
        const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
        assert_eq!(!crc32_nibbles(!0, b"123456789"), 0xCBF4_3926);
        let bytes: [u8; 1031] = core::array::from_fn(|i| (i * 7919 % 251) as u8);
        for len in [0, 1, 2, 3, 4, 5, 8, 255, 256, 1031] {
            let data = &bytes[..len];
            assert_eq!(!crc32_nibbles(!0, data), CRC.checksum(data), "length {len}");
        }
    }
}
