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
//!
//! Where things live:
//!
//! | file | content |
//! |---|---|
//! | `mod.rs` (here) | format constants ([`MAGIC`], [`HEADER_LEN`], [`ALIGN`], ...), [`limits`], the little-endian readers |
//! | `config.rs` | header field offsets ([`header`]), [`Config`], [`Arch`], [`DType`], [`Pooling`], [`DecoderParams`], [`Config::from_header`] |
//! | `error.rs` | [`FormatError`] and its `Display` |
//! | `directory.rs` | directory entry offsets ([`dir`]), [`TensorInfo`], the per-tensor checks (canonical order, dtype, shape, quantization constants) |
//! | `file.rs` | [`ModelFile`]: [`ModelFile::from_bytes`] (the validation pass), the accessors and tensor views, [`file_crc32`], [`Aligned`] and [`crate::include_model!`] |
//! | `spec.rs` | the canonical tensor list: [`TensorKind`], [`tensor_spec`], [`tensor_index`], [`scalar`] |
//! | `self_test.rs` | the self-test section ([`SelfTestCases`]) |
//! | `writer.rs` | the writer ([`writer`], `alloc` feature) |
//!
//! [`Activation`] is re-exported from [`crate::kernels::gelu`]: the kernels and
//! [`crate::quant`] depend on nothing in this module, so the format may depend on them.

mod config;
mod directory;
mod error;
mod file;
pub mod self_test;
mod spec;
#[cfg(feature = "alloc")]
pub mod writer;

/// The FFN activation lives with its kernels ([`crate::kernels::gelu`]), which need no
/// part of the format; the header's `activation` byte is its `repr(u8)` code.
pub use crate::kernels::gelu::Activation;
pub use config::{header, Arch, Config, DType, DecoderParams, Pooling};
pub use directory::{dir, TensorInfo};
pub use error::FormatError;
pub use file::{file_crc32, Aligned, ModelFile};
pub use self_test::{SelfTestCase, SelfTestCases};
pub use spec::{scalar, tensor_count, tensor_index, tensor_spec, TensorKind, TensorSpec};

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
