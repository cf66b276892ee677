//! The tinyformer model file, format v1: bytes in, validated zero-copy views out.
//!
//! A model file is read **in place**: from a memory-mapped file on a host or straight
//! from flash (`include_bytes!`, see [`crate::include_model!`]). [`ModelFile::from_bytes`]
//! runs one validation pass; afterwards every tensor accessor is infallible.
//!
//! The byte-by-byte specification is in `docs/FORMAT.md`; this module is its reference
//! implementation (reader here, writer in [`writer`] behind the `alloc` feature, so the
//! two cannot drift).
//!
//! Summary (all integers little-endian):
//!
//! | region | content |
//! |---|---|
//! | header, 128 bytes at 0 | magic `TFMR`, version, file length, CRC-32, counts, section offsets, config |
//! | directory at `header.dir_offset` | `tensor_count` entries of 32 bytes |
//! | tokenizer section | opaque to this module, parsed by [`crate::tokenizer`] |
//! | labels section | `u32 count`, `u32 offsets[count + 1]`, UTF-8 names |
//! | self-test section (optional) | golden inputs and their exact outputs, see [`self_test`] |
//! | tensor payloads | in directory order, each 16-byte aligned |
//!
//! Regions appear in exactly that order and may not overlap; tensors appear in the
//! canonical order of [`tensor_spec`], which is a pure function of the [`Config`], so a
//! tensor is found by arithmetic, never by a search.

pub mod self_test;
mod spec;
#[cfg(feature = "alloc")]
pub mod writer;

/// The FFN activation lives with its kernels ([`crate::kernels::gelu`]), which need no
/// part of the format; the header's `activation` byte is its `repr(u8)` code.
pub use crate::kernels::gelu::Activation;
pub use self_test::{SelfTestCase, SelfTestCases};
pub use spec::{scalar, tensor_count, tensor_index, tensor_spec, TensorKind, TensorSpec};

use core::fmt;

/// File magic, the first four bytes of every model file.
pub const MAGIC: [u8; 4] = *b"TFMR";
/// The format version this build reads and writes.
pub const VERSION: u16 = 1;
/// Size of the fixed header in bytes.
pub const HEADER_LEN: usize = 128;
/// Size of one tensor directory entry in bytes.
pub const DIR_ENTRY_LEN: usize = 32;
/// Every tensor payload starts at a multiple of this many bytes from the file start.
pub const ALIGN: usize = 16;
/// Directory `layer` value for tensors that belong to the whole model.
pub const MODEL_LEVEL: u16 = 0xFFFF;

/// Largest values the reader accepts for config fields: keeps every size computation
/// far from overflow and refuses absurd headers before they cost anything.
pub mod limits {
    /// Largest vocabulary.
    pub const MAX_VOCAB: u32 = 1 << 20;
    /// Largest hidden size.
    pub const MAX_HIDDEN: u32 = 4096;
    /// Largest number of encoder layers.
    pub const MAX_LAYERS: u32 = 64;
    /// Largest FFN (intermediate) size.
    pub const MAX_FFN: u32 = 16384;
    /// Largest position table.
    pub const MAX_POSITIONS: u32 = 8192;
    /// Largest token-type table.
    pub const MAX_TYPE_VOCAB: u32 = 16;
    /// Largest number of labels.
    pub const MAX_LABELS: u32 = 1024;
    /// Largest attention head dimension.
    pub const MAX_HEAD_DIM: u32 = 512;

    // The int8 kernels accumulate in `i32`: every dot-product length the config allows
    // (`hidden` for Q/K/V/attention-output/pooler/classifier rows, `ffn` for the second
    // FFN matrix, `head_dim` for attention scores) must stay within the overflow-free
    // bound of `dot_i8`.
    const _: () = {
        let max_dot = crate::kernels::matvec::MAX_DOT_LEN as u32;
        assert!(MAX_HIDDEN <= max_dot);
        assert!(MAX_FFN <= max_dot);
        assert!(MAX_HEAD_DIM <= max_dot);
        // Attention context `sum_j p_j v_j`: Q15 probabilities sum to at most
        // `2^15 + seq / 2` after rounding, times 128, must fit `i32`.
        assert!((((1u64 << 15) + MAX_POSITIONS as u64) * 128) < i32::MAX as u64);
    };
}

/// Element type of a tensor (directory `dtype` byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum DType {
    /// IEEE 754 binary32.
    F32 = 1,
    /// IEEE 754 binary16.
    F16 = 2,
    /// Signed 8-bit integer.
    I8 = 3,
    /// Signed 32-bit integer.
    I32 = 4,
}

impl DType {
    /// Decodes a dtype byte.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::F32),
            2 => Some(Self::F16),
            3 => Some(Self::I8),
            4 => Some(Self::I32),
            _ => None,
        }
    }
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            Self::F32 | Self::I32 => 4,
            Self::F16 => 2,
            Self::I8 => 1,
        }
    }
    /// Lower-case name (`f32`, `f16`, `i8`, `i32`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::I8 => "i8",
            Self::I32 => "i32",
        }
    }
}

/// Model architecture (config `arch` byte): which canonical tensor list and which
/// forward pass the file is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Arch {
    /// BERT-style post-LayerNorm encoder.
    BertEncoder = 1,
    /// Llama-family pre-norm causal decoder: RMSNorm, rotary position embedding over
    /// adjacent pairs, grouped-query attention, SwiGLU (see [`DecoderParams`]).
    LlamaDecoder = 2,
}

impl Arch {
    /// Lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::BertEncoder => "bert_encoder",
            Self::LlamaDecoder => "llama_decoder",
        }
    }
}

/// The header fields only a causal decoder has (header bytes 92..112; zero in
/// encoder files).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DecoderParams {
    /// Key/value heads; divides `heads` (grouped-query attention: query head `h`
    /// reads key/value head `h / (heads / kv_heads)`).
    pub kv_heads: u32,
    /// RoPE base frequency `theta` as `f32` bits (float models compute the rotation
    /// from it; int8 models read a fixed-point table the converter wrote).
    pub rope_theta_bits: u32,
    /// Beginning-of-sequence token id.
    pub bos_id: u32,
    /// End-of-sequence token id.
    pub eos_id: u32,
    /// Whether the output head has its own matrix (`OutputW`); otherwise it is the
    /// token embedding (tied).
    pub separate_output: bool,
}

impl DecoderParams {
    /// RoPE theta as `f32`.
    pub fn rope_theta(&self) -> f32 {
        f32::from_bits(self.rope_theta_bits)
    }
}

/// How the per-token hidden states become one vector (config `pooling` byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Pooling {
    /// No pooling: a causal decoder's output is the next-token logits of each
    /// position (never valid for an encoder).
    None = 0,
    /// Hidden state of `[CLS]`, then the BERT pooler (dense + tanh).
    ClsPooler = 1,
    /// Mean of the hidden states over unmasked tokens (sentence-transformers).
    Mean = 2,
    /// Hidden state of `[CLS]` as is.
    Cls = 3,
}

impl Pooling {
    /// Lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::ClsPooler => "cls_pooler",
            Self::Mean => "mean",
            Self::Cls => "cls",
            Self::None => "none",
        }
    }
}

/// The model configuration stored in the header (bytes 48..128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config {
    /// Architecture.
    pub arch: Arch,
    /// Element type of the weight matrices and embedding tables
    /// (`F32`, `F16`, or `I8` for the full-integer mode).
    pub weight_dtype: DType,
    /// FFN activation.
    pub activation: Activation,
    /// Pooling.
    pub pooling: Pooling,
    /// Vocabulary size (rows of the word embedding table).
    pub vocab_size: u32,
    /// Hidden size.
    pub hidden: u32,
    /// Number of encoder layers.
    pub layers: u32,
    /// Number of attention heads; divides `hidden`.
    pub heads: u32,
    /// FFN (intermediate) size.
    pub ffn: u32,
    /// Rows of the position embedding table.
    pub max_positions: u32,
    /// Rows of the token-type embedding table.
    pub type_vocab: u32,
    /// Number of classification labels; 0 for an embedding model without a head.
    pub num_labels: u32,
    /// Longest sequence (tokens incl. `[CLS]`/`[SEP]`) the runtime accepts;
    /// at most `max_positions`.
    pub max_seq: u32,
    /// LayerNorm (RMSNorm for decoders) epsilon as `f32` bits (kept as bits so
    /// reading it needs no float op; the int8 mode has it folded into its integer
    /// constants).
    pub layer_norm_eps_bits: u32,
    /// Decoder fields; `Some` exactly when `arch` is [`Arch::LlamaDecoder`].
    pub decoder: Option<DecoderParams>,
}

impl Config {
    /// Reads and checks the header of the model file `bytes` (the whole file): the
    /// magic, version, file and header lengths, reserved bytes and every config range,
    /// i.e. everything [`ModelFile::from_bytes`] checks before the directory, with the
    /// same errors. A `const fn`, so a firmware can read its included model's config at
    /// compile time (see [`crate::arena_bytes`]). It does not check the alignment, the
    /// directory, the sections, the tensors or the CRC: use [`ModelFile::from_bytes`]
    /// before running the model.
    pub const fn from_header(bytes: &[u8]) -> Result<Self, FormatError> {
        if bytes.len() < 4 {
            return Err(FormatError::Truncated {
                what: "magic",
                needed: 4,
                got: bytes.len(),
            });
        }
        if bytes[0] != MAGIC[0]
            || bytes[1] != MAGIC[1]
            || bytes[2] != MAGIC[2]
            || bytes[3] != MAGIC[3]
        {
            return Err(FormatError::BadMagic {
                found: hdr(bytes, 0),
            });
        }
        if bytes.len() < 8 {
            return Err(FormatError::Truncated {
                what: "header",
                needed: HEADER_LEN,
                got: bytes.len(),
            });
        }
        let version = match read_u16(bytes, header::VERSION) {
            Some(version) => version,
            None => 0,
        };
        if version != VERSION {
            return Err(FormatError::UnsupportedVersion {
                found: version,
                supported: VERSION,
            });
        }
        if bytes.len() < HEADER_LEN {
            return Err(FormatError::Truncated {
                what: "header",
                needed: HEADER_LEN,
                got: bytes.len(),
            });
        }
        let file_len = hdr(bytes, header::FILE_LEN);
        if file_len as usize != bytes.len() {
            return Err(FormatError::LengthMismatch {
                header: file_len,
                actual: bytes.len(),
            });
        }
        let header_len = hdr(bytes, header::HEADER_LEN);
        if header_len as usize != HEADER_LEN {
            return Err(FormatError::BadHeaderField {
                field: "header_len",
                value: header_len,
            });
        }
        const_try!(check_zero(bytes, header::RESERVED0, header::RESERVED0 + 2));
        const_try!(check_zero(bytes, header::RESERVED1, header::RESERVED1 + 4));
        const_try!(check_zero(bytes, header::RESERVED2, HEADER_LEN));
        parse_config(bytes)
    }

    /// Hidden size of one attention head.
    pub const fn head_dim(&self) -> usize {
        let heads = if self.heads == 0 { 1 } else { self.heads };
        (self.hidden / heads) as usize
    }
    /// LayerNorm epsilon as `f32`.
    pub fn layer_norm_eps(&self) -> f32 {
        f32::from_bits(self.layer_norm_eps_bits)
    }
    /// Length of the model's output vector: `num_labels` logits, or the pooled
    /// embedding (`hidden`) for a model without a head.
    pub const fn output_len(&self) -> usize {
        if self.num_labels > 0 {
            self.num_labels as usize
        } else {
            self.hidden as usize
        }
    }
    /// Key/value heads: the decoder's, or `heads` for an encoder.
    pub const fn kv_heads(&self) -> usize {
        match self.decoder {
            Some(d) => d.kv_heads as usize,
            None => self.heads as usize,
        }
    }
    /// Width of one key (or value) row: `kv_heads * head_dim`.
    pub const fn kv_dim(&self) -> usize {
        self.kv_heads() * self.head_dim()
    }
    /// Whether this is a full-integer (int8) model.
    pub const fn is_int8(&self) -> bool {
        matches!(self.weight_dtype, DType::I8)
    }

    const fn check(&self) -> Result<(), FormatError> {
        use limits::*;
        const_try!(field("vocab_size", self.vocab_size, 1, MAX_VOCAB));
        const_try!(field("hidden", self.hidden, 1, MAX_HIDDEN));
        const_try!(field("layers", self.layers, 1, MAX_LAYERS));
        const_try!(field("heads", self.heads, 1, self.hidden));
        const_try!(field("ffn", self.ffn, 1, MAX_FFN));
        const_try!(field("max_positions", self.max_positions, 2, MAX_POSITIONS));
        const_try!(field("max_seq", self.max_seq, 2, self.max_positions));
        let no_pooling = matches!(self.pooling, Pooling::None);
        let silu = matches!(self.activation, Activation::Silu);
        match (self.arch, self.decoder) {
            (Arch::BertEncoder, None) => {
                const_try!(field("type_vocab", self.type_vocab, 1, MAX_TYPE_VOCAB));
                const_try!(field("num_labels", self.num_labels, 0, MAX_LABELS));
                if no_pooling || silu {
                    return Err(FormatError::UnknownCode {
                        field: if no_pooling { "pooling" } else { "activation" },
                        code: if no_pooling {
                            Pooling::None as u8
                        } else {
                            Activation::Silu as u8
                        },
                    });
                }
            }
            (Arch::LlamaDecoder, Some(d)) => {
                // Fields an encoder uses and a decoder does not must be zero.
                const_try!(field("type_vocab", self.type_vocab, 0, 0));
                const_try!(field("num_labels", self.num_labels, 0, 0));
                if !no_pooling {
                    return Err(FormatError::UnknownCode {
                        field: "pooling",
                        code: self.pooling as u8,
                    });
                }
                if !silu {
                    return Err(FormatError::UnknownCode {
                        field: "activation",
                        code: self.activation as u8,
                    });
                }
                const_try!(field("kv_heads", d.kv_heads, 1, self.heads));
                if !self.heads.is_multiple_of(d.kv_heads) {
                    return Err(FormatError::ConfigOutOfRange {
                        field: "kv_heads",
                        value: d.kv_heads,
                    });
                }
                // RoPE rotates pairs of dimensions.
                if !self.hidden.is_multiple_of(self.heads)
                    || !(self.hidden / self.heads).is_multiple_of(2)
                {
                    return Err(FormatError::ConfigOutOfRange {
                        field: "head_dim",
                        value: self.hidden / self.heads,
                    });
                }
                const_try!(field("bos_id", d.bos_id, 0, self.vocab_size - 1));
                const_try!(field("eos_id", d.eos_id, 0, self.vocab_size - 1));
                if !is_positive_finite(d.rope_theta_bits) {
                    return Err(FormatError::ConfigOutOfRange {
                        field: "rope_theta",
                        value: d.rope_theta_bits,
                    });
                }
            }
            _ => {
                return Err(FormatError::UnknownCode {
                    field: "arch",
                    code: self.arch as u8,
                })
            }
        }
        if !self.hidden.is_multiple_of(self.heads) {
            return Err(FormatError::HeadsDoNotDivideHidden {
                hidden: self.hidden,
                heads: self.heads,
            });
        }
        const_try!(field("head_dim", self.hidden / self.heads, 1, MAX_HEAD_DIM));
        if !is_positive_finite(self.layer_norm_eps_bits) {
            return Err(FormatError::ConfigOutOfRange {
                field: "layer_norm_eps",
                value: self.layer_norm_eps_bits,
            });
        }
        if matches!(self.weight_dtype, DType::I32) {
            return Err(FormatError::UnknownCode {
                field: "weight_dtype",
                code: self.weight_dtype as u8,
            });
        }
        Ok(())
    }
}

/// Checks that a config field is in `min..=max`.
const fn field(name: &'static str, value: u32, min: u32, max: u32) -> Result<(), FormatError> {
    if value < min || value > max {
        Err(FormatError::ConfigOutOfRange { field: name, value })
    } else {
        Ok(())
    }
}

/// Checks that the reserved bytes `start..end` of `bytes` (in bounds) are zero.
const fn check_zero(bytes: &[u8], start: usize, end: usize) -> Result<(), FormatError> {
    let mut offset = start;
    while offset < end {
        if bytes[offset] != 0 {
            return Err(FormatError::ReservedNotZero { offset });
        }
        offset += 1;
    }
    Ok(())
}

/// Whether `f32` bits encode a finite value > 0, tested on the bits so that
/// validation uses no float op.
const fn is_positive_finite(bits: u32) -> bool {
    bits >> 31 == 0 && bits != 0 && (bits >> 23) & 0xFF != 0xFF
}

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
    /// The self-test section is malformed (see [`self_test`]).
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

/// Little-endian field readers over a byte slice that never panic (`const`, so the
/// header can be read at compile time).
pub(crate) const fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    if at >= bytes.len() || bytes.len() - at < 4 {
        return None;
    }
    Some(u32::from_le_bytes([
        bytes[at],
        bytes[at + 1],
        bytes[at + 2],
        bytes[at + 3],
    ]))
}

pub(crate) const fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    if at >= bytes.len() || bytes.len() - at < 2 {
        return None;
    }
    Some(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
}

/// Byte offsets of the header fields (see `docs/FORMAT.md`).
pub mod header {
    /// `[u8; 4]` magic.
    pub const MAGIC: usize = 0;
    /// `u16` format version.
    pub const VERSION: usize = 4;
    /// `u16` reserved, zero.
    pub const RESERVED0: usize = 6;
    /// `u32` total file length.
    pub const FILE_LEN: usize = 8;
    /// `u32` CRC-32 (IEEE) of the whole file with these four bytes as zero.
    pub const CRC32: usize = 12;
    /// `u32` header length, 128.
    pub const HEADER_LEN: usize = 16;
    /// `u32` number of directory entries.
    pub const TENSOR_COUNT: usize = 20;
    /// `u32` directory offset.
    pub const DIR_OFFSET: usize = 24;
    /// `u32` tokenizer section offset.
    pub const TOKENIZER_OFFSET: usize = 28;
    /// `u32` tokenizer section length.
    pub const TOKENIZER_LEN: usize = 32;
    /// `u32` labels section offset.
    pub const LABELS_OFFSET: usize = 36;
    /// `u32` labels section length.
    pub const LABELS_LEN: usize = 40;
    /// `u32` reserved, zero.
    pub const RESERVED1: usize = 44;
    /// `u8` architecture code.
    pub const ARCH: usize = 48;
    /// `u8` weight dtype code.
    pub const WEIGHT_DTYPE: usize = 49;
    /// `u8` activation code.
    pub const ACTIVATION: usize = 50;
    /// `u8` pooling code.
    pub const POOLING: usize = 51;
    /// `u32` vocab size.
    pub const VOCAB_SIZE: usize = 52;
    /// `u32` hidden size.
    pub const HIDDEN: usize = 56;
    /// `u32` layers.
    pub const LAYERS: usize = 60;
    /// `u32` heads.
    pub const HEADS: usize = 64;
    /// `u32` FFN size.
    pub const FFN: usize = 68;
    /// `u32` max positions.
    pub const MAX_POSITIONS: usize = 72;
    /// `u32` type vocab.
    pub const TYPE_VOCAB: usize = 76;
    /// `u32` number of labels.
    pub const NUM_LABELS: usize = 80;
    /// `u32` max sequence length.
    pub const MAX_SEQ: usize = 84;
    /// `u32` LayerNorm epsilon, `f32` bits.
    pub const LAYER_NORM_EPS: usize = 88;
    /// `u32` decoder: key/value heads (0 in encoder files, like the four below).
    pub const KV_HEADS: usize = 92;
    /// `u32` decoder: RoPE theta, `f32` bits.
    pub const ROPE_THETA: usize = 96;
    /// `u32` decoder: BOS token id.
    pub const BOS_ID: usize = 100;
    /// `u32` decoder: EOS token id.
    pub const EOS_ID: usize = 104;
    /// `u32` decoder flags: bit 0 = separate output head; other bits zero.
    pub const DECODER_FLAGS: usize = 108;
    /// `u32` self-test section offset (0 with a zero length: no self-test section).
    pub const SELF_TEST_OFFSET: usize = 112;
    /// `u32` self-test section length (0: no self-test section).
    pub const SELF_TEST_LEN: usize = 116;
    /// Bytes 120..128 are reserved and zero.
    pub const RESERVED2: usize = 120;
}

/// Byte offsets within a 32-byte directory entry.
pub mod dir {
    /// `u16` tensor kind code.
    pub const KIND: usize = 0;
    /// `u16` layer index, or `0xFFFF` for model-level tensors.
    pub const LAYER: usize = 2;
    /// `u8` dtype code.
    pub const DTYPE: usize = 4;
    /// `u8` rank (1 or 2).
    pub const RANK: usize = 5;
    /// `u16` reserved, zero.
    pub const RESERVED0: usize = 6;
    /// `u32` first dimension (rows).
    pub const DIM0: usize = 8;
    /// `u32` second dimension (columns; 1 for vectors).
    pub const DIM1: usize = 12;
    /// `u32` payload offset from the file start, a multiple of 16.
    pub const OFFSET: usize = 16;
    /// `u32` payload length in bytes.
    pub const LEN: usize = 20;
    /// Bytes 24..32 are reserved and zero.
    pub const RESERVED1: usize = 24;
}

/// One validated directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// What the tensor is.
    pub kind: TensorKind,
    /// Layer index, `None` for model-level tensors.
    pub layer: Option<u16>,
    /// Element type.
    pub dtype: DType,
    /// `[rows, cols]`; vectors have `cols == 1` and `rank == 1`.
    pub dims: [u32; 2],
    /// 1 or 2.
    pub rank: u8,
    /// Payload offset from the file start.
    pub offset: u32,
    /// Payload length in bytes.
    pub len: u32,
}

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

const fn hdr(bytes: &[u8], at: usize) -> u32 {
    // Only called after the header length has been checked.
    match read_u32(bytes, at) {
        Some(value) => value,
        None => 0,
    }
}

/// Computes the file CRC: CRC-32 (IEEE, as zlib) of the whole file with the four CRC
/// bytes taken as zero. `bytes` must be at least [`HEADER_LEN`] long.
pub fn file_crc32(bytes: &[u8]) -> u32 {
    // One 1 KiB table rather than slice-by-16's 16 KiB: flash matters more than
    // the speed of a check that runs once at boot.
    const CRC: crc::Crc<u32, crc::Table<1>> =
        crc::Crc::<u32, crc::Table<1>>::new(&crc::CRC_32_ISO_HDLC);
    let mut digest = CRC.digest();
    digest.update(bytes.get(..header::CRC32).unwrap_or(&[]));
    digest.update(&[0u8; 4]);
    digest.update(bytes.get(header::CRC32 + 4..).unwrap_or(&[]));
    digest.finalize()
}

/// The config fields of a header whose length was checked, and their ranges.
const fn parse_config(bytes: &[u8]) -> Result<Config, FormatError> {
    use header as h;
    let arch = match bytes[h::ARCH] {
        1 => Arch::BertEncoder,
        2 => Arch::LlamaDecoder,
        c => {
            return Err(FormatError::UnknownCode {
                field: "arch",
                code: c,
            })
        }
    };
    let weight_dtype = match DType::from_code(bytes[h::WEIGHT_DTYPE]) {
        Some(dtype) => dtype,
        None => {
            return Err(FormatError::UnknownCode {
                field: "weight_dtype",
                code: bytes[h::WEIGHT_DTYPE],
            })
        }
    };
    let activation = match bytes[h::ACTIVATION] {
        1 => Activation::Gelu,
        2 => Activation::GeluTanh,
        3 => Activation::Relu,
        4 => Activation::Silu,
        c => {
            return Err(FormatError::UnknownCode {
                field: "activation",
                code: c,
            })
        }
    };
    let pooling = match bytes[h::POOLING] {
        0 => Pooling::None,
        1 => Pooling::ClsPooler,
        2 => Pooling::Mean,
        3 => Pooling::Cls,
        c => {
            return Err(FormatError::UnknownCode {
                field: "pooling",
                code: c,
            })
        }
    };
    let decoder = match arch {
        Arch::LlamaDecoder => {
            let flags = hdr(bytes, h::DECODER_FLAGS);
            if flags & !1 != 0 {
                return Err(FormatError::BadHeaderField {
                    field: "decoder_flags",
                    value: flags,
                });
            }
            Some(DecoderParams {
                kv_heads: hdr(bytes, h::KV_HEADS),
                rope_theta_bits: hdr(bytes, h::ROPE_THETA),
                bos_id: hdr(bytes, h::BOS_ID),
                eos_id: hdr(bytes, h::EOS_ID),
                separate_output: flags & 1 != 0,
            })
        }
        Arch::BertEncoder => {
            // The decoder fields are reserved in an encoder file.
            const_try!(check_zero(bytes, h::KV_HEADS, h::SELF_TEST_OFFSET));
            None
        }
    };
    let config = Config {
        arch,
        weight_dtype,
        activation,
        pooling,
        vocab_size: hdr(bytes, h::VOCAB_SIZE),
        hidden: hdr(bytes, h::HIDDEN),
        layers: hdr(bytes, h::LAYERS),
        heads: hdr(bytes, h::HEADS),
        ffn: hdr(bytes, h::FFN),
        max_positions: hdr(bytes, h::MAX_POSITIONS),
        type_vocab: hdr(bytes, h::TYPE_VOCAB),
        num_labels: hdr(bytes, h::NUM_LABELS),
        max_seq: hdr(bytes, h::MAX_SEQ),
        layer_norm_eps_bits: hdr(bytes, h::LAYER_NORM_EPS),
        decoder,
    };
    const_try!(config.check());
    Ok(config)
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
        let tokenizer = &bytes[tok_offset as usize..(tok_offset + tok_len) as usize];
        let labels = &bytes[lab_offset as usize..(lab_offset + lab_len) as usize];
        check_labels(labels, config.num_labels)?;
        // Optional self-test section, between the labels and the tensors.
        let st_offset = hdr(bytes, header::SELF_TEST_OFFSET);
        let st_len = hdr(bytes, header::SELF_TEST_LEN);
        let self_test = if st_offset == 0 && st_len == 0 {
            &[][..]
        } else {
            end = check_region("self_test", st_offset, st_len, 4, end, file_len)?;
            let section = &bytes[st_offset as usize..end as usize];
            self_test::check_section(section, &config)?;
            section
        };
        let vocab = match config.decoder {
            None => crate::tokenizer::Tokenizer::from_section(tokenizer)
                .map_err(FormatError::Tokenizer)?
                .vocab_size(),
            Some(d) => {
                let sp = crate::tokenizer::sentencepiece::SentencePiece::from_section(tokenizer)
                    .map_err(FormatError::Tokenizer)?;
                if (sp.bos_id(), sp.eos_id()) != (d.bos_id, d.eos_id) {
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
            let at = dir_offset as usize + index as usize * DIR_ENTRY_LEN;
            let entry = &bytes[at..at + DIR_ENTRY_LEN];
            let info = check_entry(&config, index, entry, at)?;
            end = check_region("tensor", info.offset, info.len, ALIGN as u32, end, file_len)?;
            let payload = &bytes[info.offset as usize..end as usize];
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

    /// Payload bytes of tensor `(kind, layer)`; empty if the model has no such tensor
    /// (which a validated model only answers for kinds its config does not use).
    ///
    /// Reads only the entry's offset and length: the load validated every entry
    /// against the canonical list (kind, layer, dtype, shape), so the forward passes,
    /// which look tensors up on every token, skip decoding the rest.
    pub fn tensor_bytes(&self, kind: TensorKind, layer: Option<u16>) -> &'a [u8] {
        tensor_index(&self.config, kind, layer)
            .filter(|&i| i < self.tensor_count)
            .and_then(|i| {
                let at = self.dir_offset + i as usize * DIR_ENTRY_LEN;
                let entry = self.bytes.get(at..at + DIR_ENTRY_LEN)?;
                let offset = read_u32(entry, dir::OFFSET)? as usize;
                let len = read_u32(entry, dir::LEN)? as usize;
                self.bytes.get(offset..offset.checked_add(len)?)
            })
            .unwrap_or(&[])
    }

    /// Tensor `(kind, layer)` viewed as elements of `T` (zero-copy). Empty if absent or
    /// if `T` does not match the stored layout.
    pub fn tensor<T: bytemuck::Pod>(&self, kind: TensorKind, layer: Option<u16>) -> &'a [T] {
        bytemuck::try_cast_slice(self.tensor_bytes(kind, layer)).unwrap_or(&[])
    }
}

fn tensor_count_u32(config: &Config) -> u32 {
    tensor_count(config) as u32
}

fn parse_entry(entry: &[u8]) -> Option<TensorInfo> {
    let kind = TensorKind::from_code(read_u16(entry, dir::KIND)?)?;
    let layer = read_u16(entry, dir::LAYER)?;
    Some(TensorInfo {
        kind,
        layer: (layer != MODEL_LEVEL).then_some(layer),
        dtype: DType::from_code(*entry.get(dir::DTYPE)?)?,
        rank: *entry.get(dir::RANK)?,
        dims: [read_u32(entry, dir::DIM0)?, read_u32(entry, dir::DIM1)?],
        offset: read_u32(entry, dir::OFFSET)?,
        len: read_u32(entry, dir::LEN)?,
    })
}

fn check_entry(
    config: &Config,
    index: u32,
    entry: &[u8],
    at: usize,
) -> Result<TensorInfo, FormatError> {
    // `tensor_spec` is total for index < tensor_count.
    let spec = tensor_spec(config, index as usize).ok_or(FormatError::TensorCountMismatch {
        expected: tensor_count_u32(config),
        found: index,
    })?;
    let kind_code = read_u16(entry, dir::KIND).unwrap_or(0);
    let layer = read_u16(entry, dir::LAYER).unwrap_or(0);
    let want_layer = spec.layer.unwrap_or(MODEL_LEVEL);
    if kind_code != spec.kind as u16 || layer != want_layer {
        return Err(FormatError::UnexpectedTensor {
            index,
            expected_kind: spec.kind as u16,
            found_kind: kind_code,
            found_layer: layer,
        });
    }
    let dtype_code = entry[dir::DTYPE];
    if dtype_code != spec.dtype as u8 {
        if DType::from_code(dtype_code).is_none() {
            return Err(FormatError::UnknownCode {
                field: "dtype",
                code: dtype_code,
            });
        }
        return Err(FormatError::TensorDTypeMismatch {
            index,
            expected: spec.dtype as u8,
            found: dtype_code,
        });
    }
    let rank = entry[dir::RANK];
    if rank != spec.rank {
        return Err(FormatError::ShapeMismatch {
            index,
            expected: spec.dims,
            found: [rank as u32, 0],
        });
    }
    for (start, end) in [
        (dir::RESERVED0, dir::RESERVED0 + 2),
        (dir::RESERVED1, DIR_ENTRY_LEN),
    ] {
        if let Some(i) = entry[start..end].iter().position(|&b| b != 0) {
            return Err(FormatError::ReservedNotZero {
                offset: at + start + i,
            });
        }
    }
    let dims = [
        read_u32(entry, dir::DIM0).unwrap_or(0),
        read_u32(entry, dir::DIM1).unwrap_or(0),
    ];
    if dims != spec.dims {
        return Err(FormatError::ShapeMismatch {
            index,
            expected: spec.dims,
            found: dims,
        });
    }
    let len = read_u32(entry, dir::LEN).unwrap_or(0);
    let expected_len = spec.byte_len();
    if u64::from(len) != expected_len {
        return Err(FormatError::ByteLengthMismatch {
            index,
            expected: u32::try_from(expected_len).unwrap_or(u32::MAX),
            found: len,
        });
    }
    Ok(TensorInfo {
        kind: spec.kind,
        layer: spec.layer,
        dtype: spec.dtype,
        dims,
        rank,
        offset: read_u32(entry, dir::OFFSET).unwrap_or(0),
        len,
    })
}

/// Requantization pairs `(multiplier, shift)` must be in the range
/// [`crate::quant::Requant::apply`] is exact for: multiplier in `[0, 2^31)`, right
/// shift `31 - shift` in `[1, 62]`. That covers the `*Rq` tables and the
/// score-to-exponent pair among the layer scalars.
fn check_quant_params(index: u32, info: &TensorInfo, payload: &[u8]) -> Result<(), FormatError> {
    if info.kind == TensorKind::LayerScalars {
        let at = scalar::SCORE_TO_LOG2;
        let multiplier = read_u32(payload, 4 * at).unwrap_or(0) as i32;
        let shift = read_u32(payload, 4 * (at + 1)).unwrap_or(0) as i32;
        if !crate::quant::Requant::new(multiplier, shift).is_valid() {
            return Err(FormatError::BadQuantParam {
                index,
                element: at as u32,
            });
        }
        return Ok(());
    }
    if info.kind == TensorKind::RopeTable {
        // `(cos, sin)` in Q14: the bound the fixed-point rotation's products rest on.
        let one = crate::kernels::rope::ROPE_ONE;
        for (i, v) in payload.chunks_exact(4).enumerate() {
            let v = read_u32(v, 0).unwrap_or(0) as i32;
            if !(-one..=one).contains(&v) {
                return Err(FormatError::BadQuantParam {
                    index,
                    element: i as u32,
                });
            }
        }
        return Ok(());
    }
    if !info.kind.is_requant() {
        return Ok(());
    }
    for (i, pair) in payload.chunks_exact(8).enumerate() {
        let multiplier = read_u32(pair, 0).unwrap_or(0) as i32;
        let shift = read_u32(pair, 4).unwrap_or(0) as i32;
        if !crate::quant::Requant::new(multiplier, shift).is_valid() {
            return Err(FormatError::BadQuantParam {
                index,
                element: i as u32,
            });
        }
    }
    Ok(())
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
