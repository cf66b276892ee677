//! The memory plan: every working buffer's offset in the caller's arena, computed once
//! from the config and the sequence length.
//!
//! The forward pass runs token row by token row. Within a layer, keys and values are
//! computed for all rows first; then for each query row the attention, output
//! projection, residual and LayerNorm are computed and written back over that row of
//! `x` (its keys and values already exist, and no later row reads it); then the FFN
//! runs row by row the same way. So only `x`, `keys` and `values` are `[seq, hidden]`;
//! everything else is one row:
//!
//! | buffer | elements | int8 mode | float modes |
//! |---|---|---|---|
//! | `scores` | `seq` | i32 (Q15 probabilities after softmax) | f32 |
//! | `residual` | `hidden` | i32 | f32 |
//! | `ffn_wide` | `ffn` (int8 mode only) | i32 | - |
//! | `x` | `seq * hidden` | i8 | f32 |
//! | `keys` | `seq * hidden` | i8 | f32 |
//! | `values` | `seq * hidden` | i8 | f32 |
//! | `query` | `hidden` | i8 | f32 |
//! | `context` | `hidden` | i8 | f32 |
//! | `ffn` | `ffn` | i8 | f32 |
//!
//! Buffers are laid out in this order, 4-byte elements first, so every buffer is
//! aligned for its element type when the arena start is 4-byte aligned. The total is
//! exact: `arena_bytes(seq)` succeeds and one byte less is refused.
//!
//! The lower bound of any row-wise schedule is `3 * seq * hidden` activation elements
//! (`x`, keys and values are all live while attention runs); the rest is
//! `O(seq + hidden + ffn)`.

use super::Error;
use crate::format::Config;

/// Required alignment of the arena start.
pub const ARENA_ALIGN: usize = 4;

/// One buffer of the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffer {
    /// Name, as in the table above.
    pub name: &'static str,
    /// Byte offset in the arena.
    pub offset: usize,
    /// Length in bytes.
    pub bytes: usize,
    /// Bytes per element.
    pub elem: usize,
}

impl Buffer {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.bytes / self.elem
    }
    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }
}

/// Indices into [`Plan::buffers`].
pub(crate) mod ix {
    pub const SCORES: usize = 0;
    pub const RESIDUAL: usize = 1;
    pub const FFN_WIDE: usize = 2;
    pub const X: usize = 3;
    pub const KEYS: usize = 4;
    pub const VALUES: usize = 5;
    pub const QUERY: usize = 6;
    pub const CONTEXT: usize = 7;
    pub const FFN: usize = 8;
}

/// The arena layout for one sequence length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Sequence length.
    pub seq: usize,
    /// The buffers, in arena order.
    pub buffers: [Buffer; 9],
}

impl Plan {
    /// The plan for `seq` tokens of a model with `config`.
    pub fn new(config: &Config, seq: usize) -> Result<Self, Error> {
        let max = config.max_seq as usize;
        if seq == 0 {
            return Err(Error::EmptySequence);
        }
        if seq > max {
            return Err(Error::SequenceTooLong { max, got: seq });
        }
        let (h, f) = (config.hidden as usize, config.ffn as usize);
        // Activations are 1 byte in the int8 mode, 4 in the float modes; scores and
        // the residual row are 4 bytes in both.
        let act = if config.is_int8() { 1 } else { 4 };
        // The int8 FFN keeps one row of activations at 32 bits to choose its
        // power-of-two row scale before narrowing to int8.
        let wide = if config.is_int8() { f } else { 0 };
        let specs: [(&'static str, usize, usize); 9] = [
            ("scores", seq, 4),
            ("residual", h, 4),
            ("ffn_wide", wide, 4),
            ("x", seq * h, act),
            ("keys", seq * h, act),
            ("values", seq * h, act),
            ("query", h, act),
            ("context", h, act),
            ("ffn", f, act),
        ];
        let mut offset = 0;
        let buffers = specs.map(|(name, len, elem)| {
            let b = Buffer {
                name,
                offset,
                bytes: len * elem,
                elem,
            };
            offset += b.bytes;
            b
        });
        Ok(Self { seq, buffers })
    }

    /// Total arena bytes.
    pub fn total_bytes(&self) -> usize {
        let last = self.buffers[ix::FFN];
        last.offset + last.bytes
    }

    /// Lower bound for a row-wise schedule: `x`, keys and values live together.
    pub fn live_lower_bound(&self) -> usize {
        self.buffers[ix::X].bytes * 3
    }
}

/// Typed, disjoint views of the arena for one forward pass.
pub(crate) struct Views<'r, A, S> {
    pub scores: &'r mut [S],
    pub residual: &'r mut [S],
    pub ffn_wide: &'r mut [S],
    pub x: &'r mut [A],
    pub keys: &'r mut [A],
    pub values: &'r mut [A],
    pub query: &'r mut [A],
    pub context: &'r mut [A],
    pub ffn: &'r mut [A],
}

/// Splits the arena by the plan. The caller checked length and alignment, so the
/// casts succeed; should they not, the views are empty and the kernels (which never
/// index past a slice) compute nothing.
pub(crate) fn views<'r, A: bytemuck::Pod, S: bytemuck::Pod>(
    plan: &Plan,
    arena: &'r mut [u8],
) -> Views<'r, A, S> {
    let mut rest = arena;
    let mut take = |b: Buffer| -> &'r mut [u8] {
        let r = core::mem::take(&mut rest);
        let (head, tail) = r.split_at_mut(b.bytes.min(r.len()));
        rest = tail;
        head
    };
    let b = plan.buffers;
    let scores = bytemuck::try_cast_slice_mut(take(b[ix::SCORES])).unwrap_or(&mut []);
    let residual = bytemuck::try_cast_slice_mut(take(b[ix::RESIDUAL])).unwrap_or(&mut []);
    let ffn_wide = bytemuck::try_cast_slice_mut(take(b[ix::FFN_WIDE])).unwrap_or(&mut []);
    let mut act =
        |i: usize| -> &'r mut [A] { bytemuck::try_cast_slice_mut(take(b[i])).unwrap_or(&mut []) };
    Views {
        scores,
        residual,
        ffn_wide,
        x: act(ix::X),
        keys: act(ix::KEYS),
        values: act(ix::VALUES),
        query: act(ix::QUERY),
        context: act(ix::CONTEXT),
        ffn: act(ix::FFN),
    }
}
