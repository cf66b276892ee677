//! [`FormatError`]: why a byte buffer is not a valid model file.

use core::fmt;

use super::Arch;

/// Why a byte buffer is not a valid model file. Each variant is one failure class and
/// carries the offending values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FormatError {
    /// The buffer is shorter than a structure that must fit in it.
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        got: usize,
    },
    /// The first four bytes are not `TFMR`.
    BadMagic {
        /// The bytes found, as a little-endian `u32`.
        found: u32,
    },
    /// The file was written by a newer (or unknown) format version.
    UnsupportedVersion {
        /// Version in the file.
        found: u16,
        /// Version this build reads.
        supported: u16,
    },
    /// The header's `file_len` differs from the buffer length.
    LengthMismatch {
        /// Length stated in the header.
        header: u32,
        /// Length of the buffer.
        actual: usize,
    },
    /// The CRC-32 over the file does not match the header.
    ChecksumMismatch {
        /// CRC stored in the header.
        stored: u32,
        /// CRC computed over the bytes.
        computed: u32,
    },
    /// A reserved header or directory field is not zero.
    ReservedNotZero {
        /// Byte offset of the field in the file.
        offset: usize,
    },
    /// A header field has an unexpected fixed value.
    BadHeaderField {
        /// Field name.
        field: &'static str,
        /// Value found.
        value: u32,
    },
    /// An enum code (dtype, architecture, activation, pooling) is unknown.
    UnknownCode {
        /// Field name.
        field: &'static str,
        /// Code found.
        code: u8,
    },
    /// A config value is outside what the runtime supports.
    ConfigOutOfRange {
        /// Field name.
        field: &'static str,
        /// Value found.
        value: u32,
    },
    /// `hidden` is not a multiple of `heads`.
    HeadsDoNotDivideHidden {
        /// Hidden size.
        hidden: u32,
        /// Number of heads.
        heads: u32,
    },
    /// The directory does not hold the number of tensors the config implies.
    TensorCountMismatch {
        /// Count implied by the config.
        expected: u32,
        /// Count in the header.
        found: u32,
    },
    /// A directory entry names a different tensor than the canonical order requires.
    UnexpectedTensor {
        /// Directory index.
        index: u32,
        /// Kind code expected there.
        expected_kind: u16,
        /// Kind code found.
        found_kind: u16,
        /// Layer found.
        found_layer: u16,
    },
    /// A tensor has the wrong dtype for its kind and the model's weight dtype.
    TensorDTypeMismatch {
        /// Directory index.
        index: u32,
        /// Expected dtype code.
        expected: u8,
        /// Found dtype code.
        found: u8,
    },
    /// A tensor's shape disagrees with the config.
    ShapeMismatch {
        /// Directory index.
        index: u32,
        /// Expected `[dim0, dim1]` (`dim1` = 1 for vectors).
        expected: [u32; 2],
        /// Found.
        found: [u32; 2],
    },
    /// A tensor's byte length disagrees with its shape and dtype.
    ByteLengthMismatch {
        /// Directory index.
        index: u32,
        /// Bytes implied by shape and dtype.
        expected: u32,
        /// Bytes in the directory.
        found: u32,
    },
    /// A region (directory, section or tensor) lies outside the file.
    OutOfBounds {
        /// Which region (`"directory"`, `"tokenizer"`, `"labels"`, `"tensor"`).
        region: &'static str,
        /// Start offset.
        offset: u32,
        /// Length.
        len: u32,
        /// File length.
        file_len: u32,
    },
    /// A region starts before the previous one ends (regions must not overlap and
    /// must appear in the documented order).
    Overlap {
        /// Which region.
        region: &'static str,
        /// Its start offset.
        offset: u32,
        /// End of the previous region.
        previous_end: u32,
    },
    /// A tensor payload or section is not aligned as required.
    Misaligned {
        /// Which region.
        region: &'static str,
        /// Its start offset.
        offset: u32,
        /// Required alignment.
        align: u32,
    },
    /// The buffer itself is not 16-byte aligned in memory, so tensors cannot be viewed
    /// in place. Use [`crate::include_model!`] or an aligned/memory-mapped buffer.
    BufferMisaligned {
        /// Buffer address modulo 16.
        addr_mod: u32,
    },
    /// The labels section is malformed.
    BadLabels {
        /// Index of the offending label (or the count, for a count mismatch).
        index: u32,
    },
    /// The tokenizer section is malformed.
    Tokenizer(crate::tokenizer::TokenizerError),
    /// The tokenizer's vocabulary size differs from the config's `vocab_size`.
    VocabMismatch {
        /// `vocab_size` in the header.
        config: u32,
        /// Tokens in the tokenizer section.
        tokenizer: u32,
    },
    /// The writer was not given a tensor the config requires.
    MissingTensor {
        /// Kind code.
        kind: u16,
        /// Layer (`0xFFFF` for model-level).
        layer: u16,
    },
    /// The file is a valid model of another architecture than the caller runs
    /// (an encoder given to the decoder or the reverse).
    WrongArch {
        /// Architecture the caller runs.
        expected: Arch,
        /// Architecture of the file.
        found: Arch,
    },
    /// A quantization constant is outside the range the integer kernels are proven
    /// safe for (e.g. a requantization shift that would overflow).
    BadQuantParam {
        /// Directory index of the tensor.
        index: u32,
        /// Element index within it.
        element: u32,
    },
    /// The self-test section is malformed (see [`self_test`](super::self_test)).
    BadSelfTest {
        /// The offending field (`"kind"`, `"case_count"`, `"output_len"`,
        /// `"token_count"`, `"token id"`, `"length"`).
        field: &'static str,
        /// Index of the case it belongs to (0 for the section's own fields).
        case: u32,
        /// Value found.
        value: u32,
    },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use FormatError::*;
        match *self {
            Truncated { what, needed, got } => {
                write!(f, "truncated {what}: needs {needed} bytes, file has {got}")
            }
            BadMagic { found } => write!(f, "not a tinyformer model (magic {found:#010x})"),
            UnsupportedVersion { found, supported } => write!(
                f,
                "format version {found} is not supported (this build reads version {supported})"
            ),
            LengthMismatch { header, actual } => write!(
                f,
                "header says the file is {header} bytes but it is {actual} bytes"
            ),
            ChecksumMismatch { stored, computed } => write!(
                f,
                "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            ReservedNotZero { offset } => write!(f, "reserved field at byte {offset} is not zero"),
            BadHeaderField { field, value } => write!(f, "header field {field} has bad value {value}"),
            UnknownCode { field, code } => write!(f, "unknown {field} code {code}"),
            ConfigOutOfRange { field, value } => {
                write!(f, "config field {field} = {value} is out of the supported range")
            }
            HeadsDoNotDivideHidden { hidden, heads } => {
                write!(f, "hidden size {hidden} is not a multiple of {heads} heads")
            }
            TensorCountMismatch { expected, found } => {
                write!(f, "expected {expected} tensors for this config, directory has {found}")
            }
            UnexpectedTensor { index, expected_kind, found_kind, found_layer } => write!(
                f,
                "tensor {index}: expected kind {expected_kind}, found kind {found_kind} (layer {found_layer})"
            ),
            TensorDTypeMismatch { index, expected, found } => {
                write!(f, "tensor {index}: dtype code {found}, expected {expected}")
            }
            ShapeMismatch { index, expected, found } => write!(
                f,
                "tensor {index}: shape {found:?} does not match the config, expected {expected:?}"
            ),
            ByteLengthMismatch { index, expected, found } => write!(
                f,
                "tensor {index}: {found} bytes, shape and dtype need {expected}"
            ),
            OutOfBounds { region, offset, len, file_len } => write!(
                f,
                "{region} at offset {offset} with length {len} lies outside the {file_len}-byte file"
            ),
            Overlap { region, offset, previous_end } => write!(
                f,
                "{region} at offset {offset} overlaps the previous region ending at {previous_end}"
            ),
            Misaligned { region, offset, align } => {
                write!(f, "{region} at offset {offset} is not {align}-byte aligned")
            }
            BufferMisaligned { addr_mod } => write!(
                f,
                "model buffer address is {addr_mod} mod 16; it must be 16-byte aligned"
            ),
            BadLabels { index } => write!(f, "labels section is malformed at label {index}"),
            Tokenizer(e) => write!(f, "tokenizer section: {e}"),
            VocabMismatch { config, tokenizer } => write!(
                f,
                "config vocab_size is {config} but the tokenizer section has {tokenizer} tokens"
            ),
            MissingTensor { kind, layer } => {
                write!(f, "tensor of kind {kind} (layer {layer}) is missing")
            }
            WrongArch { expected, found } => write!(
                f,
                "the file holds a {} model, this entry point runs {} models",
                found.name(),
                expected.name()
            ),
            BadQuantParam { index, element } => write!(
                f,
                "tensor {index}: quantization constant {element} is out of the safe range"
            ),
            BadSelfTest { field, case, value } => write!(
                f,
                "self-test section: case {case}: {field} {value} is invalid"
            ),
        }
    }
}

impl core::error::Error for FormatError {}
