//! Reading a GGUF model file (llama.cpp's format, versions 2 and 3), hardened against
//! hostile input.
//!
//! # Using it
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use tinyformer_cli::gguf::{GgmlType, GgufFile};
//! let file = GgufFile::open(std::path::Path::new("model.gguf"))?; // memory-maps
//! let gguf = file.parse()?; // checks the whole layout; borrows the map
//! let layers = gguf.u32("llama.block_count")?; // any integer type that fits
//! let eps = gguf.f32("llama.attention.layer_norm_rms_epsilon")?;
//! let tokens: &[&str] = gguf.str_array("tokenizer.ggml.tokens")?;
//! let scores: Vec<f32> = gguf.f32_array("tokenizer.ggml.scores")?;
//! let kinds: Vec<i32> = gguf.i32_array("tokenizer.ggml.token_type")?;
//! if let Some(value) = gguf.get("general.name") { /* optional keys */ }
//! let wq = gguf.tensor("blk.0.attn_q.weight")?; // name, dims, type, byte range
//! assert_eq!(wq.ggml_type, GgmlType::Q8_0);
//! let rows = wq.dims()[1]; // dims()[0] is the row length (fastest-varying)
//! let weights: Vec<f32> = gguf.dequantize("blk.0.attn_q.weight")?; // row-major
//! # Ok(()) }
//! ```
//!
//! [`Gguf::parse`] reads any `&[u8]` (tests, fuzzing); [`GgufFile`] owns the memory map
//! and prefixes every error with the file name. Parsing checks everything below up
//! front, so afterwards lookups only fail on a missing key or tensor, a wrong type, or
//! a tensor type that cannot be dequantized. Errors name the metadata key or tensor
//! (`metadata `general.alignment`: ...`, `tensor `output.weight`: ...`) and, for
//! type mismatches, the expected and the found type. Values are not judged: a NaN
//! weight or an odd vocabulary is the caller's business.
//!
//! # File layout
//!
//! All little-endian. A *string* is a `u64` byte length and that many bytes of UTF-8.
//!
//! 1. Header: magic `GGUF` (bytes `47 47 55 46`), `u32` version (2 or 3), `u64`
//!    tensor count, `u64` metadata key-value count.
//! 2. Metadata, that many times: key (string), `u32` value type, value. Value types:
//!    0 `u8`, 1 `i8`, 2 `u16`, 3 `i16`, 4 `u32`, 5 `i32`, 6 `f32`, 7 `bool` (one byte, 0
//!    or 1), 8 string, 9 array (`u32` element type, `u64` count, the elements), 10
//!    `u64`, 11 `i64`, 12 `f64`.
//! 3. Tensor infos, tensor-count times: name (string), `u32` n_dims, n_dims `u64` dims
//!    (`ne[0]` first: the fastest-varying, i.e. the row length), `u32` ggml type,
//!    `u64` offset relative to the data section.
//! 4. Padding up to a multiple of the alignment (`general.alignment`, default 32),
//!    then the data section, to the end of the file. A tensor of type with block size
//!    `B` elements and block bytes `S` occupies `n_elements / B * S` bytes at its
//!    offset.
//!
//! Dequantization ([`TensorInfo::dequantize`]) covers `F32`, `F16` and three block
//! types of 32 elements: `Q8_0` (f16 `d`, 32 `i8` `q`: `x = q * d`), `Q4_0` (f16 `d`,
//! 16 bytes: element `j < 16` is the low nibble of byte `j`, element `16 + j` its high
//! nibble: `x = (q - 8) * d`) and `Q4_1` (f16 `d`, f16 `m`, nibbles as `Q4_0`:
//! `x = q * d + m`), computed in f32 exactly as the reference (`gguf` Python
//! package, `gguf.quants`), bit for bit. Other types parse and can be read as bytes
//! ([`TensorInfo::data`]); dequantizing them is an error naming tensor and type.
//!
//! # Checks
//!
//! - Magic `GGUF`; version 2 or 3 (the error names the version, and hints at a
//!   big-endian file when the byte-swapped version is 2 or 3).
//! - Every read is bounds-checked (a truncated file is an error, never a panic).
//! - Before anything is allocated from a count, the count times the smallest encoding
//!   of one item must fit in the bytes left (checked arithmetic): metadata count (13
//!   bytes a key-value), tensor count (32 bytes a tensor info), array count (the
//!   element size; 8 for strings), string length (its bytes); the tensor count again
//!   against what the metadata left. So memory stays within a small multiple of the
//!   file size: each index entry takes a few dozen bytes and needs at least 8 to 32
//!   bytes of file, numeric arrays stay in the file, and dequantizing a `Q4_0` tensor
//!   makes 128 bytes of f32 from 18 bytes.
//! - Strings are UTF-8; a `bool` is 0 or 1; unknown value types are refused.
//! - Arrays of arrays are refused (GGUF writers do not produce them, and a depth
//!   bound keeps the parser non-recursive).
//! - Metadata keys and tensor names are unique.
//! - `general.alignment`, if present, is an integer that is a power of two no larger
//!   than [`MAX_ALIGNMENT`] (1 MiB; 0 and 3 are refused).
//! - A tensor has 1 to 4 dims, each at least 1; the element count and the byte size
//!   are computed with checked multiplication; for block types `ne[0]` is a multiple
//!   of the block size; the ggml type is one of [`GgmlType`]'s (an unknown type has
//!   no known size, so its bytes could not be bounded); the offset is a multiple of
//!   the alignment; `offset + byte size` (checked) lies within the data section.
//!
//! Not checked: tensors may overlap each other (harmless for reading), and the
//! metadata's meaning (shapes against hyperparameters) is the converter's job.

use crate::le;
use anyhow::{anyhow, bail, ensure, Context, Result};
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// The first four bytes of every GGUF file.
pub const MAGIC: [u8; 4] = *b"GGUF";

/// `general.alignment` when the key is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// Largest accepted `general.alignment`. llama.cpp writes 32; anything larger than a
/// page or so only wastes file space, and 1 MiB bounds the padding a file can claim.
pub const MAX_ALIGNMENT: u64 = 1 << 20;

/// Most dims a tensor can have (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;

/// Smallest encoding of one metadata key-value: empty key (8), type (4), a 1-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;

/// Smallest encoding of one tensor info: empty name (8), n_dims (4), one dim (8), type
/// (4), offset (8).
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 8 + 4 + 8;

/// The type of a metadata value, or of an array's elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    /// 0
    U8,
    /// 1
    I8,
    /// 2
    U16,
    /// 3
    I16,
    /// 4
    U32,
    /// 5
    I32,
    /// 6
    F32,
    /// 7: one byte, 0 or 1.
    Bool,
    /// 8: `u64` length and UTF-8 bytes.
    Str,
    /// 9: `u32` element type, `u64` count, elements.
    Array,
    /// 10
    U64,
    /// 11
    I64,
    /// 12
    F64,
}

impl ValueType {
    /// The type with GGUF id `id`, if there is one.
    pub fn from_id(id: u32) -> Option<Self> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => Str,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Size in bytes of one value of a fixed-size type; `None` for strings and arrays.
    pub fn fixed_size(self) -> Option<usize> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            Str | Array => None,
        }
    }

    /// Name in error messages (`u32`, `string`, ...).
    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            Str => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A metadata value, one variant per [`ValueType`]; strings borrow from the file.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(&'a str),
    Array(Array<'a>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value<'_> {
    /// The value's type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::Str(_) => ValueType::Str,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// The type for error messages: `u32`, or `array of string`.
    pub fn type_name(&self) -> String {
        match self {
            Value::Array(a) => format!("array of {}", a.element_type()),
            v => v.value_type().name().to_string(),
        }
    }

    /// An integer value of any width, widened; `None` for other types.
    pub fn as_integer(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            _ => return None,
        })
    }
}

/// A metadata array (one element type; arrays of arrays are refused when parsing).
#[derive(Clone, Debug, PartialEq)]
pub enum Array<'a> {
    /// Elements of a fixed-size type, kept as their raw little-endian bytes (element
    /// `i` at `i * size`), so a large array costs no memory beyond the file's.
    Fixed {
        /// Element type (never `Str` or `Array`).
        element_type: ValueType,
        /// `len * element size` bytes of the file; `bool` bytes are checked 0 or 1.
        bytes: &'a [u8],
    },
    /// Strings, borrowed from the file.
    Strs(Vec<&'a str>),
}

impl<'a> Array<'a> {
    /// Element type.
    pub fn element_type(&self) -> ValueType {
        match self {
            Array::Fixed { element_type, .. } => *element_type,
            Array::Strs(_) => ValueType::Str,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Array::Fixed {
                element_type,
                bytes,
            } => bytes.len() / element_type.fixed_size().unwrap_or(1),
            Array::Strs(s) => s.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` as a value; `None` past the end.
    pub fn get(&self, i: usize) -> Option<Value<'a>> {
        match self {
            Array::Fixed {
                element_type,
                bytes,
            } => {
                let size = element_type.fixed_size()?;
                let at = i.checked_mul(size)?;
                fixed_value(*element_type, bytes.get(at..at.checked_add(size)?)?)
            }
            Array::Strs(s) => s.get(i).map(|s| Value::Str(s)),
        }
    }

    /// Every element, in order.
    pub fn iter(&self) -> impl Iterator<Item = Value<'a>> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

/// Decodes one fixed-size value from exactly its bytes; `None` if `bytes` is the wrong
/// length, the type is not fixed-size, or a `bool` byte is not 0 or 1.
fn fixed_value(ty: ValueType, bytes: &[u8]) -> Option<Value<'static>> {
    fn arr<const N: usize>(b: &[u8]) -> Option<[u8; N]> {
        b.try_into().ok()
    }
    Some(match ty {
        ValueType::U8 => Value::U8(u8::from_le_bytes(arr(bytes)?)),
        ValueType::I8 => Value::I8(i8::from_le_bytes(arr(bytes)?)),
        ValueType::U16 => Value::U16(u16::from_le_bytes(arr(bytes)?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(arr(bytes)?)),
        ValueType::U32 => Value::U32(u32::from_le_bytes(arr(bytes)?)),
        ValueType::I32 => Value::I32(i32::from_le_bytes(arr(bytes)?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(arr(bytes)?)),
        ValueType::Bool => match arr::<1>(bytes)? {
            [0] => Value::Bool(false),
            [1] => Value::Bool(true),
            _ => return None,
        },
        ValueType::U64 => Value::U64(u64::from_le_bytes(arr(bytes)?)),
        ValueType::I64 => Value::I64(i64::from_le_bytes(arr(bytes)?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(arr(bytes)?)),
        ValueType::Str | ValueType::Array => return None,
    })
}

/// Declares [`GgmlType`] from one table: variant, ggml id, block size in elements,
/// block size in bytes.
macro_rules! ggml_types {
    ($($name:ident = $id:literal, $block:literal, $bytes:literal;)*) => {
        /// A ggml tensor type whose storage size is known (the types of ggml's
        /// `ggml_type` enum that llama.cpp still writes; ids 4, 5 and 31 to 33 were
        /// removed from ggml).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        // ggml's own names (`Q4_0`), so that errors and code read like llama.cpp's.
        #[allow(non_camel_case_types)]
        pub enum GgmlType {
            $($name,)*
        }

        impl GgmlType {
            /// The type with ggml id `id`, if known.
            pub fn from_id(id: u32) -> Option<Self> {
                match id {
                    $($id => Some(Self::$name),)*
                    _ => None,
                }
            }

            /// ggml's id of the type.
            pub fn id(self) -> u32 {
                match self {
                    $(Self::$name => $id,)*
                }
            }

            /// ggml's name of the type (`Q8_0`).
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$name => stringify!($name),)*
                }
            }

            /// Elements per block (1 for the plain types).
            pub fn block_size(self) -> u64 {
                match self {
                    $(Self::$name => $block,)*
                }
            }

            /// Bytes per block.
            pub fn block_bytes(self) -> u64 {
                match self {
                    $(Self::$name => $bytes,)*
                }
            }
        }
    };
}

ggml_types! {
    F32 = 0, 1, 4;
    F16 = 1, 1, 2;
    Q4_0 = 2, 32, 18;
    Q4_1 = 3, 32, 20;
    Q5_0 = 6, 32, 22;
    Q5_1 = 7, 32, 24;
    Q8_0 = 8, 32, 34;
    Q8_1 = 9, 32, 40;
    Q2_K = 10, 256, 84;
    Q3_K = 11, 256, 110;
    Q4_K = 12, 256, 144;
    Q5_K = 13, 256, 176;
    Q6_K = 14, 256, 210;
    Q8_K = 15, 256, 292;
    IQ2_XXS = 16, 256, 66;
    IQ2_XS = 17, 256, 74;
    IQ3_XXS = 18, 256, 98;
    IQ1_S = 19, 256, 50;
    IQ4_NL = 20, 32, 18;
    IQ3_S = 21, 256, 110;
    IQ2_S = 22, 256, 82;
    IQ4_XS = 23, 256, 136;
    I8 = 24, 1, 1;
    I16 = 25, 1, 2;
    I32 = 26, 1, 4;
    I64 = 27, 1, 8;
    F64 = 28, 1, 8;
    IQ1_M = 29, 256, 56;
    BF16 = 30, 1, 2;
    TQ1_0 = 34, 256, 54;
    TQ2_0 = 35, 256, 66;
    MXFP4 = 39, 32, 17;
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One tensor's info, checked against the file: its bytes lie within the data section.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo<'a> {
    /// Tensor name (`blk.0.attn_q.weight`).
    pub name: &'a str,
    /// Storage type.
    pub ggml_type: GgmlType,
    /// Product of the dims.
    pub n_elements: u64,
    /// Offset from the start of the data section, as stored.
    pub offset: u64,
    /// Byte range of the tensor in the file.
    pub range: Range<usize>,
    /// The tensor's bytes (`range` of the file).
    pub data: &'a [u8],
    ne: [u64; MAX_DIMS],
    n_dims: usize,
}

impl TensorInfo<'_> {
    /// The dims in file order: `dims()[0]` is the fastest-varying (the row length),
    /// so a 2-D `[cols, rows]` tensor is `rows` rows of `cols` elements. 1 to 4 dims,
    /// each at least 1.
    pub fn dims(&self) -> &[u64] {
        &self.ne[..self.n_dims]
    }

    /// The tensor's values as f32 in storage order (`dims()[0]` fastest), for `F32`,
    /// `F16`, `Q8_0`, `Q4_0` and `Q4_1`; other types are an error naming the tensor
    /// and its type. Bit-exact with `gguf.quants.dequantize`.
    pub fn dequantize(&self) -> Result<Vec<f32>> {
        let f16 = |b0: u8, b1: u8| half::f16::from_le_bytes([b0, b1]).to_f32();
        let n = usize::try_from(self.n_elements)
            .map_err(|_| anyhow!("tensor `{}`: too many elements for this host", self.name))?;
        // Each block of the type's size through `f`; `data` is whole blocks (sized so
        // when parsing).
        let block = |f: &dyn Fn(&[u8], &mut Vec<f32>)| {
            let mut out = Vec::with_capacity(n);
            for b in self
                .data
                .chunks_exact(self.ggml_type.block_bytes() as usize)
            {
                f(b, &mut out);
            }
            out
        };
        let out = match self.ggml_type {
            GgmlType::F32 => le::f32s(self.data),
            GgmlType::F16 => le::f16s(self.data),
            GgmlType::Q8_0 => block(&|b, out| {
                let (d, qs) = b.split_at(2);
                let d = f16(d[0], d[1]);
                out.extend(qs.iter().map(|&q| f32::from(q as i8) * d));
            }),
            GgmlType::Q4_0 => block(&|b, out| {
                let (d, qs) = b.split_at(2);
                let d = f16(d[0], d[1]);
                let nibble = |q: u8| f32::from(q as i8 - 8) * d;
                out.extend(qs.iter().map(|&q| nibble(q & 0x0F)));
                out.extend(qs.iter().map(|&q| nibble(q >> 4)));
            }),
            GgmlType::Q4_1 => block(&|b, out| {
                let (dm, qs) = b.split_at(4);
                let (d, m) = (f16(dm[0], dm[1]), f16(dm[2], dm[3]));
                // Two roundings, as the reference: (d * q) + m, no fused multiply-add.
                let nibble = |q: u8| d * f32::from(q) + m;
                out.extend(qs.iter().map(|&q| nibble(q & 0x0F)));
                out.extend(qs.iter().map(|&q| nibble(q >> 4)));
            }),
            other => bail!(
                "tensor `{}`: dequantizing {other} is not supported (F32, F16, Q8_0, Q4_0 and Q4_1 are)",
                self.name
            ),
        };
        // The byte range was sized from the element count when parsing.
        debug_assert_eq!(out.len(), n);
        Ok(out)
    }
}

/// A parsed GGUF file, borrowing its bytes.
#[derive(Clone, Debug)]
pub struct Gguf<'a> {
    version: u32,
    alignment: u64,
    data_offset: usize,
    metadata: Vec<(&'a str, Value<'a>)>,
    keys: HashMap<&'a str, usize>,
    tensors: Vec<TensorInfo<'a>>,
    names: HashMap<&'a str, usize>,
}

/// A bounds-checked reader over the file.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn left(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8]> {
        let left = self.left();
        if n > left {
            bail!(
                "truncated: {n} bytes needed at offset {}, {left} left",
                self.pos
            );
        }
        // `n <= left`, so it fits `usize` and the slice is in bounds.
        let n = n as usize;
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let b = self.take(N as u64)?;
        b.try_into().map_err(|_| anyhow!("internal: short read"))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<&'a str> {
        let len = self.u64()?;
        let left = self.left();
        if len > left {
            bail!(
                "string length {len} at offset {} exceeds the {left} bytes left",
                self.pos - 8
            );
        }
        let at = self.pos;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map_err(|e| anyhow!("string at offset {at} is not UTF-8: {e}"))
    }

    /// Refuses `count` items of at least `min_bytes` each unless they fit in the bytes
    /// left: the bound on every allocation sized from the file.
    fn fits(&self, what: &str, count: u64, min_bytes: u64) -> Result<()> {
        let left = self.left();
        match count.checked_mul(min_bytes) {
            Some(need) if need <= left => Ok(()),
            Some(need) => bail!("{what} {count} needs at least {need} bytes, {left} left"),
            None => bail!("{what} {count} needs more bytes than any file has"),
        }
    }

    fn value_type(&mut self) -> Result<ValueType> {
        let id = self.u32()?;
        ValueType::from_id(id).ok_or_else(|| anyhow!("unknown value type {id}"))
    }

    fn value(&mut self, ty: ValueType) -> Result<Value<'a>> {
        match ty {
            ValueType::Str => Ok(Value::Str(self.string()?)),
            ValueType::Array => {
                let element_type = self.value_type().context("array element type")?;
                let count = self.u64()?;
                match element_type {
                    ValueType::Array => bail!("nested arrays (arrays of arrays) are not supported"),
                    ValueType::Str => {
                        self.fits("array of strings: count", count, 8)?;
                        // Bounded by the check above: at most a string per 8 bytes.
                        let mut strs = Vec::with_capacity(count as usize);
                        for i in 0..count {
                            strs.push(self.string().with_context(|| format!("element {i}"))?);
                        }
                        Ok(Value::Array(Array::Strs(strs)))
                    }
                    _ => {
                        let size = element_type.fixed_size().unwrap_or(1) as u64;
                        self.fits(&format!("array of {element_type}: count"), count, size)?;
                        let bytes = self.take(count * size)?;
                        if element_type == ValueType::Bool {
                            if let Some(i) = bytes.iter().position(|&b| b > 1) {
                                bail!("bool element {i} is {}, not 0 or 1", bytes[i]);
                            }
                        }
                        Ok(Value::Array(Array::Fixed {
                            element_type,
                            bytes,
                        }))
                    }
                }
            }
            _ => {
                let size = ty.fixed_size().unwrap_or(1) as u64;
                let bytes = self.take(size)?;
                fixed_value(ty, bytes)
                    .ok_or_else(|| anyhow!("bool value {:?} is not 0 or 1", bytes))
            }
        }
    }
}

impl<'a> Gguf<'a> {
    /// Parses and checks a whole GGUF file (see the module docs for every check).
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let mut c = Cursor { bytes, pos: 0 };
        let magic = c
            .array::<4>()
            .context("not a GGUF file: shorter than the magic")?;
        ensure!(
            magic == MAGIC,
            "not a GGUF file: magic {magic:02x?}, expected {MAGIC:02x?} (`GGUF`)"
        );
        let version = c.u32().context("header: version")?;
        if version != 2 && version != 3 {
            let hint = if matches!(version.swap_bytes(), 2 | 3) {
                " (a big-endian file? only little-endian is read)"
            } else {
                ""
            };
            bail!("GGUF version {version} is not supported (2 and 3 are){hint}");
        }
        let tensor_count = c.u64().context("header: tensor count")?;
        let kv_count = c.u64().context("header: metadata count")?;
        c.fits("header: metadata count", kv_count, MIN_KV_BYTES)?;
        c.fits("header: tensor count", tensor_count, MIN_TENSOR_INFO_BYTES)?;

        // Bounded by the file size (checked just above), as is every allocation below.
        let mut metadata = Vec::with_capacity(kv_count as usize);
        let mut keys = HashMap::with_capacity(kv_count as usize);
        for i in 0..kv_count {
            let key = c
                .string()
                .with_context(|| format!("metadata entry {i} of {kv_count}: key"))?;
            let value = c
                .value_type()
                .and_then(|ty| c.value(ty))
                .with_context(|| format!("metadata `{key}`"))?;
            if keys.insert(key, metadata.len()).is_some() {
                bail!("metadata `{key}`: duplicate key");
            }
            metadata.push((key, value));
        }
        let mut gguf = Gguf {
            version,
            alignment: DEFAULT_ALIGNMENT,
            data_offset: 0,
            metadata,
            keys,
            tensors: Vec::new(),
            names: HashMap::new(),
        };
        const ALIGNMENT_KEY: &str = "general.alignment";
        if let Some(v) = gguf.get(ALIGNMENT_KEY) {
            let a = u64::from(u32_of(ALIGNMENT_KEY, v)?);
            ensure!(
                a.is_power_of_two() && a <= MAX_ALIGNMENT,
                "metadata `{ALIGNMENT_KEY}`: {a} is not a power of two from 1 to {MAX_ALIGNMENT}"
            );
            gguf.alignment = a;
        }

        // Again against what the metadata left, so the two counts cannot both claim
        // the whole file.
        c.fits("header: tensor count", tensor_count, MIN_TENSOR_INFO_BYTES)?;
        gguf.tensors.reserve(tensor_count as usize);
        gguf.names.reserve(tensor_count as usize);
        // Infos first: their end fixes where the data section starts.
        let mut infos = Vec::with_capacity(tensor_count as usize);
        for i in 0..tensor_count {
            let name = c
                .string()
                .with_context(|| format!("tensor info {i} of {tensor_count}: name"))?;
            let info = read_tensor_info(&mut c).with_context(|| format!("tensor `{name}`"))?;
            infos.push((name, info));
        }
        let align = gguf.alignment;
        let end_of_infos = c.pos as u64;
        let data_offset = end_of_infos
            .checked_next_multiple_of(align)
            .ok_or_else(|| anyhow!("data section offset overflows"))?;
        // A file with no tensor may end without the padding.
        let data = usize::try_from(data_offset)
            .ok()
            .and_then(|at| bytes.get(at..))
            .unwrap_or(&[]);
        gguf.data_offset =
            usize::try_from(data_offset).map_or(bytes.len(), |at| at.min(bytes.len()));
        for (name, (ne, n_dims, ggml_type, offset)) in infos {
            let t = place_tensor(name, ne, n_dims, ggml_type, offset, align, data)
                .with_context(|| format!("tensor `{name}`"))?;
            let t = TensorInfo {
                range: t.range.start + gguf.data_offset..t.range.end + gguf.data_offset,
                ..t
            };
            if gguf.names.insert(name, gguf.tensors.len()).is_some() {
                bail!("tensor `{name}`: duplicate tensor name");
            }
            gguf.tensors.push(t);
        }
        Ok(gguf)
    }

    /// The file's GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The data alignment (`general.alignment`, or 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Where the data section starts in the file.
    pub fn data_offset(&self) -> usize {
        self.data_offset
    }

    /// The value of metadata key `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        self.keys.get(key).map(|&i| &self.metadata[i].1)
    }

    /// Every metadata key and value, in file order.
    pub fn metadata(&self) -> impl Iterator<Item = (&'a str, &Value<'a>)> + '_ {
        self.metadata.iter().map(|(k, v)| (*k, v))
    }

    fn required(&self, key: &str) -> Result<&Value<'a>> {
        self.get(key)
            .ok_or_else(|| anyhow!("missing metadata key `{key}`"))
    }

    /// Required `key` as a `u32`: stored as any integer type whose value fits (writers
    /// differ: llama.cpp's store u32, others i32 or u64).
    pub fn u32(&self, key: &str) -> Result<u32> {
        u32_of(key, self.required(key)?)
    }

    /// Required `key` as an `f32` (stored as `f32`).
    pub fn f32(&self, key: &str) -> Result<f32> {
        match self.required(key)? {
            Value::F32(v) => Ok(*v),
            v => Err(mistyped(key, "f32", v)),
        }
    }

    /// Required `key` as a string.
    pub fn str(&self, key: &str) -> Result<&'a str> {
        match self.required(key)? {
            Value::Str(s) => Ok(s),
            v => Err(mistyped(key, "string", v)),
        }
    }

    /// Required `key` as an array of strings (e.g. `tokenizer.ggml.tokens`).
    pub fn str_array(&self, key: &str) -> Result<&[&'a str]> {
        match self.required(key)? {
            Value::Array(Array::Strs(s)) => Ok(s),
            v => Err(mistyped(key, "array of string", v)),
        }
    }

    /// Required `key` as an array of `f32` (e.g. `tokenizer.ggml.scores`).
    pub fn f32_array(&self, key: &str) -> Result<Vec<f32>> {
        match self.required(key)? {
            Value::Array(Array::Fixed {
                element_type: ValueType::F32,
                bytes,
            }) => Ok(le::f32s(bytes)),
            v => Err(mistyped(key, "array of f32", v)),
        }
    }

    /// Required `key` as an array of `i32` (e.g. `tokenizer.ggml.token_type`): elements
    /// of any integer type, each of which must fit `i32`.
    pub fn i32_array(&self, key: &str) -> Result<Vec<i32>> {
        let v = self.required(key)?;
        let Value::Array(a @ Array::Fixed { .. }) = v else {
            return Err(mistyped(key, "array of i32", v));
        };
        let mut out = Vec::with_capacity(a.len());
        for (i, e) in a.iter().enumerate() {
            let n = e
                .as_integer()
                .ok_or_else(|| mistyped(key, "array of i32", v))?;
            out.push(i32::try_from(n).map_err(|_| {
                anyhow!(
                    "metadata `{key}`: element {i} is {n} ({}), out of range for i32",
                    e.value_type()
                )
            })?);
        }
        Ok(out)
    }

    /// Every tensor info, in file order.
    pub fn tensors(&self) -> &[TensorInfo<'a>] {
        &self.tensors
    }

    /// The tensor named `name`; an error naming it if there is none.
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo<'a>> {
        self.names
            .get(name)
            .map(|&i| &self.tensors[i])
            .ok_or_else(|| anyhow!("no tensor `{name}` in the file"))
    }

    /// The values of tensor `name` as f32 ([`TensorInfo::dequantize`]).
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>> {
        self.tensor(name)?.dequantize()
    }
}

/// A type-mismatch error naming the key, the expected and the found type.
fn mistyped(key: &str, expected: &str, found: &Value<'_>) -> anyhow::Error {
    anyhow!(
        "metadata `{key}`: expected {expected}, found {}",
        found.type_name()
    )
}

fn u32_of(key: &str, v: &Value<'_>) -> Result<u32> {
    let n = v.as_integer().ok_or_else(|| mistyped(key, "u32", v))?;
    u32::try_from(n).map_err(|_| {
        anyhow!(
            "metadata `{key}`: {n} ({}) is out of range for u32",
            v.value_type()
        )
    })
}

/// A tensor info after its name: dims, type, offset.
type RawInfo = ([u64; MAX_DIMS], usize, GgmlType, u64);

fn read_tensor_info(c: &mut Cursor<'_>) -> Result<RawInfo> {
    let n_dims = c.u32().context("n_dims")?;
    ensure!(
        (1..=MAX_DIMS as u32).contains(&n_dims),
        "n_dims {n_dims} is not from 1 to {MAX_DIMS}"
    );
    let n_dims = n_dims as usize;
    let mut ne = [1u64; MAX_DIMS];
    for (i, d) in ne.iter_mut().take(n_dims).enumerate() {
        *d = c.u64().with_context(|| format!("dim {i}"))?;
        ensure!(*d >= 1, "dim {i} is 0");
    }
    let id = c.u32().context("ggml type")?;
    let ggml_type = GgmlType::from_id(id)
        .ok_or_else(|| anyhow!("unknown ggml type {id} (its size is unknown)"))?;
    let offset = c.u64().context("offset")?;
    Ok((ne, n_dims, ggml_type, offset))
}

/// Sizes a tensor and places it in `data` (its range is relative to `data`).
fn place_tensor<'a>(
    name: &'a str,
    ne: [u64; MAX_DIMS],
    n_dims: usize,
    ggml_type: GgmlType,
    offset: u64,
    align: u64,
    data: &'a [u8],
) -> Result<TensorInfo<'a>> {
    let dims = &ne[..n_dims];
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| anyhow!("dims {dims:?}: the element count overflows u64"))?;
    let block = ggml_type.block_size();
    ensure!(
        ne[0].is_multiple_of(block),
        "dims {dims:?}: row length {} is not a multiple of {ggml_type}'s block size {block}",
        ne[0]
    );
    let size = (n_elements / block)
        .checked_mul(ggml_type.block_bytes())
        .ok_or_else(|| anyhow!("dims {dims:?}: the byte size of {ggml_type} overflows u64"))?;
    ensure!(
        offset.is_multiple_of(align),
        "offset {offset} is not a multiple of the alignment {align}"
    );
    let end = offset
        .checked_add(size)
        .ok_or_else(|| anyhow!("offset {offset} + {size} bytes overflows u64"))?;
    ensure!(
        end <= data.len() as u64,
        "{ggml_type} {dims:?} at offset {offset}: bytes {offset}..{end} run past the end of the data section ({} bytes)",
        data.len()
    );
    // `end <= data.len()`, so both fit `usize`.
    let range = offset as usize..end as usize;
    Ok(TensorInfo {
        name,
        ggml_type,
        n_elements,
        offset,
        data: &data[range.clone()],
        range,
        ne,
        n_dims,
    })
}

/// A memory-mapped GGUF file: [`GgufFile::parse`] borrows the map.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    map: memmap2::Mmap,
}

impl GgufFile {
    /// Opens and memory-maps `path` (a regular file).
    pub fn open(path: &Path) -> Result<Self> {
        let name = || path.display().to_string();
        let file = std::fs::File::open(path).with_context(|| format!("{}: cannot open", name()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("{}: cannot read metadata", name()))?;
        if !meta.is_file() {
            bail!("{}: not a regular file", name());
        }
        // SAFETY: the map is read-only; a concurrent writer truncating the file could
        // fault the process, the documented limit of every memory-mapped loader.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .with_context(|| format!("{}: cannot map", name()))?;
        Ok(Self {
            path: path.to_path_buf(),
            map,
        })
    }

    /// Parses the file ([`Gguf::parse`]); errors start with the file name.
    pub fn parse(&self) -> Result<Gguf<'_>> {
        Gguf::parse(&self.map).with_context(|| self.path.display().to_string())
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
