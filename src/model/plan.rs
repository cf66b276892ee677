//! The memory plan: every working buffer's offset in the caller's arena, computed once
//! from the config and the sequence length.
//!
//! The forward pass runs in phases, a batch of `rows` token rows at a time (`rows` is
//! 1 in the smallest plan). Within a layer, the attention phase computes keys and
//! values for all rows first; then for each batch of query rows the attention, output
//! projection, residual and LayerNorm, written back over those rows of `x` (their keys
//! and values already exist, and no later row reads them). The FFN phase then runs
//! batch by batch the same way; keys and values are dead by then, so the FFN batch
//! reuses their bytes. Pooling reuses `context`. So only `x`, `keys` and `values` are
//! `[seq, hidden]`; everything else is one batch of rows (or one row):
//!
//! | buffer | phase | elements | int8 mode | float modes |
//! |---|---|---|---|---|
//! | `residual` | all | `rows * hidden` | i32 | f32 |
//! | `scores` | attention | `rows * seq` | i32 (Q15 probabilities after softmax) | f32 |
//! | `keys` | attention | `seq * hidden` | i8 | f32 |
//! | `values` | attention | `seq * hidden` | i8 | f32 |
//! | `query` | attention | `rows * hidden` | i8 | f32 |
//! | `context` | attention, pooling | `rows * hidden` | i8 | f32 |
//! | `ffn_wide` | ffn | `rows * ffn` (int8 mode only) | i32 | - |
//! | `ffn` | ffn | `rows * ffn` | i8 | f32 |
//! | `x` | all | `seq * hidden` | i8 | f32 |
//!
//! Batching is a speed-for-memory trade: a batch of rows shares one pass over each
//! weight matrix ([`crate::kernels::matvec::matmul_i8`]). Results do not depend on
//! it (integer arithmetic, each row computed the same way). The int8 forward pass uses
//! the largest batch, up to [`MAX_BATCH_ROWS`], whose plan fits the arena it is given;
//! the float modes always use one row.
//!
//! Layout: `residual`, then one shared region holding either the attention buffers or
//! the FFN buffers (as large as the larger set), then `x`. Within each part 4-byte
//! elements come first, so every buffer is aligned for its element type when the arena
//! start is 4-byte aligned. The total is exact: `arena_bytes(seq)` succeeds and one
//! byte less is refused.
//!
//! The lower bound of any row-wise schedule is `3 * seq * hidden` activation elements
//! (`x`, keys and values are all live while attention runs); the plan adds only the
//! attention phase's rows, `O(seq + hidden)`.

use super::Error;
use crate::format::Config;
use crate::kernels::attention::attention_scratch_len;

// Every size in the plan is at most `4*r*h + 4*r*s + 8*s*h + 4*r*h + 4*r*h + 8*r*f +
// 4*s*h` bytes (`r` rows per batch) for the format's largest config, which fits a
// 32-bit `usize`: the plan's arithmetic cannot overflow on 32-bit microcontrollers.
const _: () = {
    use crate::format::limits::{MAX_FFN, MAX_HIDDEN, MAX_POSITIONS};
    let (h, s, f) = (MAX_HIDDEN as u64, MAX_POSITIONS as u64, MAX_FFN as u64);
    let r = MAX_BATCH_ROWS as u64;
    assert!(12 * r * h + 4 * r * s + 12 * s * h + 8 * r * f <= u32::MAX as u64);
};

/// Largest batch of token rows a plan can hold (see the module docs).
pub const MAX_BATCH_ROWS: usize = 64;

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
    /// When it is live; buffers of the attention and FFN phases share bytes.
    pub phase: Phase,
}

/// The part of the forward pass during which a buffer is live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The whole forward pass.
    All,
    /// Keys, values and the attention of each batch of rows, per layer (and pooling).
    Attention,
    /// The FFN of each batch of rows, per layer.
    Ffn,
}

impl Phase {
    /// Lower-case name, as in the module docs.
    pub fn name(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Attention => "attention",
            Self::Ffn => "ffn",
        }
    }
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
    pub const RESIDUAL: usize = 0;
    pub const SCORES: usize = 1;
    pub const KEYS: usize = 2;
    pub const VALUES: usize = 3;
    pub const QUERY: usize = 4;
    pub const CONTEXT: usize = 5;
    pub const FFN_WIDE: usize = 6;
    pub const FFN: usize = 7;
    pub const X: usize = 8;
}

/// The arena layout for one sequence length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Sequence length.
    pub seq: usize,
    /// Token rows per batch, `1..=min(seq, MAX_BATCH_ROWS)`.
    pub rows: usize,
    /// The buffers, in arena order.
    pub buffers: [Buffer; 9],
}

impl Plan {
    /// The smallest plan for `seq` tokens of a model with `config` (one row per
    /// batch).
    pub const fn new(config: &Config, seq: usize) -> Result<Self, Error> {
        Self::batched(config, seq, 1)
    }

    /// The plan for `seq` tokens in batches of `rows` token rows (clamped to
    /// `1..=min(seq, MAX_BATCH_ROWS)`; always 1 for float models, whose pass runs one
    /// row at a time).
    ///
    /// A `const fn`: [`crate::arena_bytes`] runs this same code at compile time.
    pub const fn batched(config: &Config, seq: usize, rows: usize) -> Result<Self, Error> {
        let max = config.max_seq as usize;
        if seq == 0 {
            return Err(Error::EmptySequence);
        }
        if seq > max {
            return Err(Error::SequenceTooLong { max, got: seq });
        }
        let (h, f) = (config.hidden as usize, config.ffn as usize);
        let int8 = config.is_int8();
        let rows = if !int8 || rows == 0 {
            1
        } else if rows > seq || rows > MAX_BATCH_ROWS {
            if seq < MAX_BATCH_ROWS {
                seq
            } else {
                MAX_BATCH_ROWS
            }
        } else {
            rows
        };
        // Activations are 1 byte in the int8 mode, 4 in the float modes; scores and
        // the residual row are 4 bytes in both.
        let act = if int8 { 1 } else { 4 };
        // The int8 FFN keeps its rows of activations at 32 bits to choose each row's
        // power-of-two scale before narrowing to int8.
        let wide = if int8 { rows * f } else { 0 };
        use Phase::{All, Attention, Ffn};
        let specs: [(&'static str, Phase, usize, usize); 9] = [
            ("residual", All, rows * h, 4),
            ("scores", Attention, rows * attention_scratch_len(seq), 4),
            ("keys", Attention, seq * h, act),
            ("values", Attention, seq * h, act),
            ("query", Attention, rows * h, act),
            ("context", Attention, rows * h, act),
            ("ffn_wide", Ffn, wide, 4),
            ("ffn", Ffn, rows * f, act),
            ("x", All, seq * h, act),
        ];
        // One end per phase. A buffer of a phase goes at that phase's end; a buffer
        // live throughout goes after both phases, and both continue after it. So
        // `residual` is at 0, the attention and FFN buffers share the bytes after it,
        // and `x` follows the larger of the two.
        let (mut attention_end, mut ffn_end) = (0usize, 0usize);
        let mut buffers = [Buffer {
            name: "",
            offset: 0,
            bytes: 0,
            elem: 1,
            phase: All,
        }; 9];
        let mut i = 0;
        while i < specs.len() {
            let (name, phase, len, elem) = specs[i];
            let bytes = len * elem;
            let offset = match phase {
                All => {
                    let at = if attention_end > ffn_end {
                        attention_end
                    } else {
                        ffn_end
                    };
                    attention_end = at + bytes;
                    ffn_end = at + bytes;
                    at
                }
                Attention => {
                    attention_end += bytes;
                    attention_end - bytes
                }
                Ffn => {
                    ffn_end += bytes;
                    ffn_end - bytes
                }
            };
            buffers[i] = Buffer {
                name,
                offset,
                bytes,
                elem,
                phase,
            };
            i += 1;
        }
        Ok(Self { seq, rows, buffers })
    }

    /// Total arena bytes.
    pub const fn total_bytes(&self) -> usize {
        let last = self.buffers[ix::X];
        last.offset + last.bytes
    }

    /// Lower bound for a row-wise schedule: `x`, keys and values live together.
    pub const fn live_lower_bound(&self) -> usize {
        self.buffers[ix::X].bytes * 3
    }
}

/// The arena split by the plan: the buffers live in every phase, and the shared
/// region that [`attention`] and [`ffn`] split for their phase.
pub(crate) struct Views<'r, A, S> {
    pub residual: &'r mut [S],
    pub x: &'r mut [A],
    pub shared: &'r mut [u8],
}

/// The attention phase's buffers (and `context` for pooling).
pub(crate) struct Attention<'r, A, S> {
    pub scores: &'r mut [S],
    pub keys: &'r mut [A],
    pub values: &'r mut [A],
    pub query: &'r mut [A],
    pub context: &'r mut [A],
}

/// The FFN phase's buffers.
pub(crate) struct Ffn<'r, A, S> {
    pub wide: &'r mut [S],
    pub act: &'r mut [A],
}

/// Cuts `bytes` off the front of `rest` (fewer if `rest` is shorter).
pub(crate) fn take<'r>(rest: &mut &'r mut [u8], bytes: usize) -> &'r mut [u8] {
    let r = core::mem::take(rest);
    let (head, tail) = r.split_at_mut(bytes.min(r.len()));
    *rest = tail;
    head
}

/// Reinterprets bytes as elements; empty if length or alignment do not fit.
pub(crate) fn cast<T: bytemuck::Pod>(bytes: &mut [u8]) -> &mut [T] {
    bytemuck::try_cast_slice_mut(bytes).unwrap_or(&mut [])
}

/// Splits the arena by the plan. The caller checked length and alignment, so the
/// casts succeed; should they not, the views are empty and the kernels (which never
/// index past a slice) compute nothing.
pub(crate) fn views<'r, A: bytemuck::Pod, S: bytemuck::Pod>(
    plan: &Plan,
    arena: &'r mut [u8],
) -> Views<'r, A, S> {
    let b = plan.buffers;
    let mut rest = arena;
    let residual = cast(take(&mut rest, b[ix::RESIDUAL].bytes));
    let shared = take(&mut rest, b[ix::X].offset - b[ix::RESIDUAL].bytes);
    Views {
        residual,
        x: cast(take(&mut rest, b[ix::X].bytes)),
        shared,
    }
}

/// The attention buffers in the shared region.
pub(crate) fn attention<'r, A: bytemuck::Pod, S: bytemuck::Pod>(
    plan: &Plan,
    mut shared: &'r mut [u8],
) -> Attention<'r, A, S> {
    let b = plan.buffers;
    Attention {
        scores: cast(take(&mut shared, b[ix::SCORES].bytes)),
        keys: cast(take(&mut shared, b[ix::KEYS].bytes)),
        values: cast(take(&mut shared, b[ix::VALUES].bytes)),
        query: cast(take(&mut shared, b[ix::QUERY].bytes)),
        context: cast(take(&mut shared, b[ix::CONTEXT].bytes)),
    }
}

/// The FFN buffers in the shared region.
pub(crate) fn ffn<'r, A: bytemuck::Pod, S: bytemuck::Pod>(
    plan: &Plan,
    mut shared: &'r mut [u8],
) -> Ffn<'r, A, S> {
    let b = plan.buffers;
    Ffn {
        wide: cast(take(&mut shared, b[ix::FFN_WIDE].bytes)),
        act: cast(take(&mut shared, b[ix::FFN].bytes)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::format::{Activation, Arch, DType, Pooling};

    fn config(weight_dtype: DType, hidden: u32, ffn: u32) -> Config {
        Config {
            arch: Arch::BertEncoder,
            weight_dtype,
            activation: Activation::Gelu,
            pooling: Pooling::Mean,
            vocab_size: 100,
            hidden,
            layers: 1,
            heads: 4,
            ffn,
            max_positions: 512,
            type_vocab: 2,
            num_labels: 0,
            max_seq: 512,
            layer_norm_eps_bits: 1e-12f32.to_bits(),
            decoder: None,
        }
    }

    /// Buffers of the same phase, and `all` buffers with everything, never overlap;
    /// every buffer is aligned for its element type and inside the total; the total
    /// is the larger phase plus the buffers live throughout.
    #[test]
    fn phases_share_bytes_and_nothing_else() {
        for dtype in [DType::I8, DType::F16, DType::F32] {
            for (hidden, ffn) in [(64, 256), (128, 512), (384, 1536), (32, 4096)] {
                for (seq, rows) in [
                    (1, 1),
                    (2, 1),
                    (2, 8),
                    (16, 1),
                    (16, 5),
                    (64, 1),
                    (128, 8),
                    (512, 1),
                ] {
                    let plan = Plan::batched(&config(dtype, hidden, ffn), seq, rows).unwrap();
                    let want = if dtype == DType::I8 { rows.min(seq) } else { 1 };
                    assert_eq!(plan.rows, want);
                    let b = plan.buffers;
                    for (i, x) in b.iter().enumerate() {
                        assert_eq!(x.offset % x.elem, 0, "{} misaligned", x.name);
                        assert!(x.offset + x.bytes <= plan.total_bytes());
                        for y in &b[i + 1..] {
                            let share = x.phase != y.phase
                                && x.phase != Phase::All
                                && y.phase != Phase::All;
                            let apart =
                                x.offset + x.bytes <= y.offset || y.offset + y.bytes <= x.offset;
                            assert!(share || apart, "{} overlaps {}", x.name, y.name);
                        }
                    }
                    let sum = |p: Phase| -> usize {
                        b.iter().filter(|x| x.phase == p).map(|x| x.bytes).sum()
                    };
                    let total = sum(Phase::All) + sum(Phase::Attention).max(sum(Phase::Ffn));
                    assert_eq!(plan.total_bytes(), total);
                    assert!(plan.total_bytes() >= plan.live_lower_bound());
                }
            }
        }
    }
    /// Offset and length in bytes of `view` within the arena starting at `base`.
    pub(crate) fn byte_range<T>(base: *const u8, view: &[T]) -> (usize, usize) {
        let offset = view.as_ptr() as usize - base as usize;
        (offset, core::mem::size_of_val(view))
    }

    /// Checks views against the plan's buffers: every buffer is seen once, with its
    /// length, and at its offset (an empty buffer has no meaningful address).
    pub(crate) fn assert_views_are(buffers: &[Buffer], seen: &[(&str, (usize, usize))]) {
        assert_eq!(seen.len(), buffers.len());
        for &(name, (offset, bytes)) in seen {
            let buffer = buffers.iter().find(|b| b.name == name).expect(name);
            assert_eq!(bytes, buffer.bytes, "{name}: length");
            if bytes > 0 {
                assert_eq!(offset, buffer.offset, "{name}: offset");
            }
        }
    }

    fn encoder_views<A: bytemuck::Pod, S: bytemuck::Pod>(plan: &Plan) {
        let mut words = vec![0u32; plan.total_bytes().div_ceil(4)];
        let arena = &mut bytemuck::cast_slice_mut::<u32, u8>(&mut words)[..plan.total_bytes()];
        let base = arena.as_ptr();
        let views = views::<A, S>(plan, arena);
        let mut seen = vec![
            ("residual", byte_range(base, views.residual)),
            ("x", byte_range(base, views.x)),
        ];
        let a = attention::<A, S>(plan, &mut *views.shared);
        seen.extend([
            ("scores", byte_range(base, a.scores)),
            ("keys", byte_range(base, a.keys)),
            ("values", byte_range(base, a.values)),
            ("query", byte_range(base, a.query)),
            ("context", byte_range(base, a.context)),
        ]);
        let f = ffn::<A, S>(plan, &mut *views.shared);
        seen.extend([
            ("ffn_wide", byte_range(base, f.wide)),
            ("ffn", byte_range(base, f.act)),
        ]);
        assert_views_are(&plan.buffers, &seen);
    }

    /// The forward passes' views are the plan's buffers, byte for byte (int8 and f32
    /// element types): a change to the layout or to the views without the other
    /// fails here.
    #[test]
    fn views_are_the_plans_buffers() {
        for (hidden, ffn) in [(64, 256), (32, 4096)] {
            for (seq, rows) in [(1, 1), (16, 5), (64, 8)] {
                let plan = Plan::batched(&config(DType::I8, hidden, ffn), seq, rows).unwrap();
                encoder_views::<i8, i32>(&plan);
                let plan = Plan::batched(&config(DType::F32, hidden, ffn), seq, rows).unwrap();
                encoder_views::<f32, f32>(&plan);
            }
        }
    }
}
