//! The decoder's memory plan: the key/value cache for a context length fixed up front
//! and the scratch of a block of `rows` tokens, every buffer's offset in the caller's
//! arena.
//!
//! `rows` is how many prompt tokens an int8 prefill runs together (each weight matrix
//! is then read once per block instead of once per token); generating one token at a
//! time needs `rows = 1`, the smallest arena and what [`DecoderPlan::new`] plans.
//! Float models always plan one row (their prefill runs token by token).
//!
//! | buffer | elements | int8 mode | float modes |
//! |---|---|---|---|
//! | `residual` | `rows * hidden` | i32 | f32 |
//! | `query` | `rows * hidden` | i32 (before narrowing) | f32 |
//! | `key` | `rows * kv_dim` | i32 (before the cache) | - |
//! | `context` | `rows * hidden` | i32 | f32 |
//! | `out` | `hidden` | - | f32 (projection before the residual add) |
//! | `gate` | `rows * ffn` | i32 (Q10) | f32 |
//! | `up` | `rows * ffn` | i32 (Q10) | f32 |
//! | `scores` | `ctx` | i32 | f32 |
//! | `logits` | `vocab` | i32 (Q16) | f32 |
//! | `input` | `rows * max(hidden, ffn)` | i16 (matmul input rows) | f32 (norm output) |
//! | `query_narrow` | `hidden` | i16 (the query heads, narrowed) | - |
//! | `keys` | `layers * ctx * kv_dim` | i8 | f32 |
//! | `values` | `layers * ctx * kv_dim` | i8 | f32 |
//!
//! Elements are in decreasing size (4-byte, then 2-byte, then the int8 cache), so
//! every buffer is aligned for its type when the arena start is 4-byte aligned. Attention scratch is one row of `ctx` scores, reused by
//! every head: O(context), not O(heads x context). The total is exact:
//! [`super::Decoder::arena_bytes`] succeeds and one byte less is refused.
//!
//! The cache dominates: `2 * layers * ctx * kv_dim` elements (stories260K, int8:
//! 320 bytes per position).

use crate::format::Config;
use crate::model::plan::{Buffer, Phase};
use crate::model::Error;

/// The most tokens an int8 prefill block holds ([`DecoderPlan::with_rows`]); the step
/// keeps one narrowing exponent per row on the stack.
pub const MAX_PREFILL_ROWS: usize = 16;

/// Number of buffers of a decoder plan.
pub const DECODER_BUFFERS: usize = 13;

/// Indices into [`DecoderPlan::buffers`].
pub(crate) mod ix {
    pub const RESIDUAL: usize = 0;
    pub const QUERY: usize = 1;
    pub const KEY: usize = 2;
    pub const CONTEXT: usize = 3;
    pub const OUT: usize = 4;
    pub const GATE: usize = 5;
    pub const UP: usize = 6;
    pub const SCORES: usize = 7;
    pub const LOGITS: usize = 8;
    pub const INPUT: usize = 9;
    pub const QUERY_NARROW: usize = 10;
    pub const KEYS: usize = 11;
    pub const VALUES: usize = 12;
}

/// The arena layout of a decoder state for one context length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecoderPlan {
    /// Context length: positions the key/value cache holds.
    pub ctx: usize,
    /// Tokens per prefill block (`1..=MAX_PREFILL_ROWS`; 1 for float models).
    pub rows: usize,
    /// The buffers, in arena order (unused ones have length 0).
    pub buffers: [Buffer; DECODER_BUFFERS],
}

// Every size is at most `4 * (n (5 h + 2 f + max(h, f)) + h + c + v) + 8 * l * c * h`
// bytes, `c` the context, `n <= 16` the rows; for the format's largest config that
// exceeds 32 bits (never 64), so the plan computes in `u64` and refuses what does not
// fit `usize`.

impl DecoderPlan {
    /// The plan for a context of `ctx` positions (`1..=max_seq`), one token at a
    /// time. A `const fn`, so [`crate::arena_bytes`] sizes a `static` arena with it at
    /// compile time.
    pub const fn new(config: &Config, ctx: usize) -> Result<Self, Error> {
        Self::with_rows(config, ctx, 1)
    }

    /// The plan for a context of `ctx` positions (`1..=max_seq`) whose int8 prefill
    /// runs blocks of `rows` tokens: taken as at least 1 and at most
    /// [`MAX_PREFILL_ROWS`] and `ctx`; 1 for a float model.
    pub const fn with_rows(config: &Config, ctx: usize, rows: usize) -> Result<Self, Error> {
        let max = config.max_seq as usize;
        if ctx == 0 {
            return Err(Error::EmptySequence);
        }
        if ctx > max {
            return Err(Error::SequenceTooLong { max, got: ctx });
        }
        let int8 = config.is_int8();
        let cap = if ctx < MAX_PREFILL_ROWS {
            ctx
        } else {
            MAX_PREFILL_ROWS
        };
        let rows = if !int8 || rows == 0 {
            1
        } else if rows > cap {
            cap
        } else {
            rows
        };
        let n = rows as u64;
        let (h, f) = (config.hidden as u64, config.ffn as u64);
        let (v, l) = (config.vocab_size as u64, config.layers as u64);
        let kv = config.kv_dim() as u64;
        let c = ctx as u64;
        let (act, cache) = if int8 { (2, 1) } else { (4, 4) };
        let (int8_kv, int8_h, float_h) = if int8 { (kv, h, 0) } else { (0, 0, h) };
        let input = if h > f { h } else { f };
        let specs: [(&'static str, u64, u64); DECODER_BUFFERS] = [
            ("residual", n * h, 4),
            ("query", n * h, 4),
            ("key", n * int8_kv, 4),
            ("context", n * h, 4),
            ("out", float_h, 4),
            ("gate", n * f, 4),
            ("up", n * f, 4),
            ("scores", c, 4),
            ("logits", v, 4),
            ("input", n * input, act),
            ("query_narrow", int8_h, 2),
            ("keys", l * c * kv, cache),
            ("values", l * c * kv, cache),
        ];
        let mut buffers = [Buffer {
            name: "",
            offset: 0,
            bytes: 0,
            elem: 1,
            phase: Phase::All,
        }; DECODER_BUFFERS];
        let mut at = 0u64;
        let mut i = 0;
        while i < DECODER_BUFFERS {
            let (name, len, elem) = specs[i];
            let bytes = len * elem;
            if at + bytes > usize::MAX as u64 {
                return Err(Error::ArenaTooSmall {
                    needed: usize::MAX,
                    got: 0,
                });
            }
            buffers[i] = Buffer {
                name,
                offset: at as usize,
                bytes: bytes as usize,
                elem: elem as usize,
                phase: Phase::All,
            };
            at += bytes;
            i += 1;
        }
        Ok(Self { ctx, rows, buffers })
    }

    /// Total arena bytes.
    pub const fn total_bytes(&self) -> usize {
        let last = self.buffers[DECODER_BUFFERS - 1];
        last.offset + last.bytes
    }

    /// Bytes of the key/value cache.
    pub fn cache_bytes(&self) -> usize {
        self.buffers[ix::KEYS].bytes + self.buffers[ix::VALUES].bytes
    }
}

/// The arena split by a decoder plan, as elements of `S` (4-byte: `f32` or `i32`), `I`
/// (matmul inputs: `f32` or `i16`) and `A` (the cache: `f32` or `i8`).
pub(crate) struct Views<'r, S, I, A> {
    pub residual: &'r mut [S],
    pub query: &'r mut [S],
    pub key: &'r mut [S],
    pub context: &'r mut [S],
    pub out: &'r mut [S],
    pub gate: &'r mut [S],
    pub up: &'r mut [S],
    pub scores: &'r mut [S],
    pub logits: &'r mut [S],
    pub input: &'r mut [I],
    pub query_narrow: &'r mut [i16],
    pub keys: &'r mut [A],
    pub values: &'r mut [A],
}

/// Splits the arena by the plan. The caller checked length and alignment, so the
/// casts succeed; should they not, the views are empty and the kernels (which never
/// index past a slice) compute nothing.
pub(crate) fn views<'r, S: bytemuck::Pod, I: bytemuck::Pod, A: bytemuck::Pod>(
    plan: &DecoderPlan,
    arena: &'r mut [u8],
) -> Views<'r, S, I, A> {
    use crate::model::plan::{cast, take};
    let b = plan.buffers;
    let mut rest = arena;
    let mut next = |i: usize| take(&mut rest, b[i].bytes);
    Views {
        residual: cast(next(ix::RESIDUAL)),
        query: cast(next(ix::QUERY)),
        key: cast(next(ix::KEY)),
        context: cast(next(ix::CONTEXT)),
        out: cast(next(ix::OUT)),
        gate: cast(next(ix::GATE)),
        up: cast(next(ix::UP)),
        scores: cast(next(ix::SCORES)),
        logits: cast(next(ix::LOGITS)),
        input: cast(next(ix::INPUT)),
        query_narrow: cast(next(ix::QUERY_NARROW)),
        keys: cast(next(ix::KEYS)),
        values: cast(next(ix::VALUES)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Activation, Arch, DType, DecoderParams, Pooling};
    use crate::model::plan::tests::{assert_views_are, byte_range};

    fn config(weight_dtype: DType) -> Config {
        Config {
            arch: Arch::LlamaDecoder,
            weight_dtype,
            activation: Activation::Silu,
            pooling: Pooling::None,
            vocab_size: 512,
            hidden: 64,
            layers: 5,
            heads: 8,
            ffn: 172,
            max_positions: 256,
            type_vocab: 0,
            num_labels: 0,
            max_seq: 256,
            layer_norm_eps_bits: 1e-5f32.to_bits(),
            decoder: Some(DecoderParams {
                kv_heads: 4,
                rope_theta_bits: 10_000f32.to_bits(),
                bos_id: 1,
                eos_id: 2,
                separate_output: false,
            }),
        }
    }

    fn decoder_views<S: bytemuck::Pod, I: bytemuck::Pod, A: bytemuck::Pod>(plan: &DecoderPlan) {
        let mut words = vec![0u32; plan.total_bytes().div_ceil(4)];
        let arena = &mut bytemuck::cast_slice_mut::<u32, u8>(&mut words)[..plan.total_bytes()];
        let base = arena.as_ptr();
        let v = views::<S, I, A>(plan, arena);
        let seen = [
            ("residual", byte_range(base, v.residual)),
            ("query", byte_range(base, v.query)),
            ("key", byte_range(base, v.key)),
            ("context", byte_range(base, v.context)),
            ("out", byte_range(base, v.out)),
            ("gate", byte_range(base, v.gate)),
            ("up", byte_range(base, v.up)),
            ("scores", byte_range(base, v.scores)),
            ("logits", byte_range(base, v.logits)),
            ("input", byte_range(base, v.input)),
            ("query_narrow", byte_range(base, v.query_narrow)),
            ("keys", byte_range(base, v.keys)),
            ("values", byte_range(base, v.values)),
        ];
        assert_views_are(&plan.buffers, &seen);
    }

    /// The step's views are the plan's buffers, byte for byte, in the int8 and the
    /// f32 mode: a change to the layout or to the views without the other fails here.
    #[test]
    fn views_are_the_plans_buffers() {
        for ctx in [1, 2, 100, 256] {
            decoder_views::<i32, i16, i8>(&DecoderPlan::new(&config(DType::I8), ctx).unwrap());
            decoder_views::<f32, f32, f32>(&DecoderPlan::new(&config(DType::F32), ctx).unwrap());
        }
    }
}
