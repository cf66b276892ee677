//! The tensor directory: the layout of one 32-byte entry ([`dir`]), the validated
//! [`TensorInfo`] it decodes to, and the per-entry checks of the validation pass
//! (against the canonical [`tensor_spec`], and the integer quantization constants).

use super::{
    read_u16, read_u32, scalar, tensor_count, tensor_spec, Config, DType, FormatError, TensorKind,
    DIR_ENTRY_LEN, MODEL_LEVEL,
};

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

pub(super) fn tensor_count_u32(config: &Config) -> u32 {
    tensor_count(config) as u32
}

pub(super) fn parse_entry(entry: &[u8]) -> Option<TensorInfo> {
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

pub(super) fn check_entry(
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
        let reserved = entry.get(start..end).unwrap_or(&[]);
        if let Some(i) = reserved.iter().position(|&b| b != 0) {
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
pub(super) fn check_quant_params(
    index: u32,
    info: &TensorInfo,
    payload: &[u8],
) -> Result<(), FormatError> {
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
