//! The 128-byte header: the byte offset of every field ([`header`]), the model
//! [`Config`] it holds (bytes 48..128) with its enums, and the `const` reader
//! [`Config::from_header`] with every range check on the config.

use super::{limits, read_u16, read_u32, Activation, FormatError, HEADER_LEN, MAGIC, VERSION};

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
    /// i.e. everything [`ModelFile::from_bytes`](super::ModelFile::from_bytes) checks before the directory, with the
    /// same errors. A `const fn`, so a firmware can read its included model's config at
    /// compile time (see [`crate::arena_bytes`]). It does not check the alignment, the
    /// directory, the sections, the tensors or the CRC: use [`ModelFile::from_bytes`](super::ModelFile::from_bytes)
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

    pub(super) const fn check(&self) -> Result<(), FormatError> {
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

pub(super) const fn hdr(bytes: &[u8], at: usize) -> u32 {
    // Only called after the header length has been checked.
    match read_u32(bytes, at) {
        Some(value) => value,
        None => 0,
    }
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
