//! The encoder: a validated model file plus a memory plan, and the forward pass.
//!
//! ```text
//! ids ──embed──▶ LN ──▶ [ attention ─▶ +residual ─▶ LN ─▶ FFN ─▶ +residual ─▶ LN ] x layers
//!                                                                   ──▶ pool ──▶ head ──▶ out
//! ```
//!
//! Two numeric modes share this structure: [`float`] (f32 or f16 weights, f32
//! arithmetic) and [`int8`] (int8 weights and activations, no floating point at all).
//! Both work token row by token row, so the only `[seq, hidden]` buffers are the layer
//! state `x` and the keys and values; see [`Plan`].

mod arena;
pub mod decoder;
mod float;
mod int8;
#[cfg(feature = "threads")]
mod parallel;
mod plan;

#[cfg(any(target_has_atomic = "8", feature = "critical-section"))]
pub use arena::StaticArena;
pub use arena::{arena_bytes, try_arena_bytes, Arena};
pub use plan::{Buffer, Phase, Plan, MAX_BATCH_ROWS};

use crate::format::{Arch, Config, FormatError, ModelFile};
use crate::kernels::matvec::Int8Kernel;
use crate::tokenizer::{Tokenizer, TokenizerError};
use core::fmt;

/// Why a forward pass (or its preparation) was refused. Nothing is written to the
/// output when an error is returned.
///
/// Also the one error type of an application: [`FormatError`] (loading a model),
/// [`TokenizerError`] (encoding text) and
/// [`SampleError`](decoder::sample::SampleError) (sampling) convert into it, so `?`
/// works across all of them in a function that returns `Result<_, Error>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// The arena is smaller than [`Model::arena_bytes`] for this sequence length.
    ArenaTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        got: usize,
    },
    /// The arena does not start at a 4-byte aligned address (use [`Arena`]).
    ArenaMisaligned {
        /// Required alignment.
        align: usize,
    },
    /// More tokens than the model's `max_seq`.
    SequenceTooLong {
        /// The model's `max_seq`.
        max: usize,
        /// Tokens given.
        got: usize,
    },
    /// No tokens.
    EmptySequence,
    /// A token id is not below the vocabulary size.
    TokenOutOfRange {
        /// Position in the input.
        index: usize,
        /// The id.
        id: u32,
        /// Vocabulary size.
        vocab: u32,
    },
    /// A token-type id is not below the token-type vocabulary size.
    TokenTypeOutOfRange {
        /// Position in the input.
        index: usize,
        /// The id.
        id: u32,
        /// Token-type vocabulary size.
        type_vocab: u32,
    },
    /// Mask or token-type slice length differs from the id count.
    InputLengthMismatch {
        /// Number of ids.
        ids: usize,
        /// Length of the mask or type-id slice.
        got: usize,
    },
    /// The attention mask has no non-zero entry.
    EmptyMask,
    /// The output slice length is not the model's output length.
    OutputLengthMismatch {
        /// `config.output_len()`.
        needed: usize,
        /// Length given.
        got: usize,
    },
    /// The fixed-point entry point was called on a float model.
    NotQuantized,
    /// The observed entry point was called on an int8 model.
    NotFloat,
    /// Tokenization failed.
    Tokenizer(TokenizerError),
    /// The model file was refused.
    Format(FormatError),
    /// Sampling was refused (a decoder's sampler settings or call).
    Sample(decoder::sample::SampleError),
    /// [`Model::self_test`]: the model file has no self-test section.
    NoSelfTest,
    /// [`Model::self_test`]: a golden case gave another output than the one stored
    /// in the file (the first differing value is reported).
    SelfTestMismatch {
        /// Index of the case in the file.
        case: u32,
        /// Index of the output value.
        index: u32,
        /// Value stored in the file (Q16.16).
        expected: i32,
        /// Value computed on this device (Q16.16).
        got: i32,
    },
    /// A decoder's key/value cache holds its whole context: no position is left
    /// (call `reset`, or size the state for a longer context).
    ContextFull {
        /// The context length the state was made for.
        ctx: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Error::*;
        match *self {
            ArenaTooSmall { needed, got } => {
                write!(f, "arena too small: needs {needed} bytes, got {got}")
            }
            ArenaMisaligned { align } => write!(f, "arena is not {align}-byte aligned"),
            SequenceTooLong { max, got } => {
                write!(
                    f,
                    "sequence of {got} tokens is longer than the model's maximum {max}"
                )
            }
            EmptySequence => write!(f, "empty token sequence"),
            TokenOutOfRange { index, id, vocab } => {
                write!(
                    f,
                    "token {index}: id {id} is not below the vocabulary size {vocab}"
                )
            }
            TokenTypeOutOfRange {
                index,
                id,
                type_vocab,
            } => write!(
                f,
                "token {index}: type id {id} is not below the type vocabulary size {type_vocab}"
            ),
            InputLengthMismatch { ids, got } => {
                write!(f, "mask or type ids have length {got}, ids have {ids}")
            }
            EmptyMask => write!(f, "attention mask selects no token"),
            OutputLengthMismatch { needed, got } => {
                write!(f, "output has length {got}, the model writes {needed}")
            }
            NotQuantized => write!(f, "fixed-point output needs an int8 model"),
            NotFloat => write!(f, "observation needs a float (f32/f16) model"),
            Tokenizer(e) => write!(f, "tokenizer: {e}"),
            Format(e) => write!(f, "model file: {e}"),
            Sample(e) => write!(f, "sampler: {e}"),
            ContextFull { ctx } => write!(f, "context full: all {ctx} positions are used"),
            NoSelfTest => write!(f, "the model file has no self-test section"),
            SelfTestMismatch {
                case,
                index,
                expected,
                got,
            } => write!(
                f,
                "self-test case {case}: output {index} is {got}, the file expects {expected}"
            ),
        }
    }
}

impl core::error::Error for Error {}

impl From<TokenizerError> for Error {
    fn from(e: TokenizerError) -> Self {
        Self::Tokenizer(e)
    }
}

impl From<FormatError> for Error {
    fn from(e: FormatError) -> Self {
        Self::Format(e)
    }
}

impl From<decoder::sample::SampleError> for Error {
    fn from(e: decoder::sample::SampleError) -> Self {
        Self::Sample(e)
    }
}

/// One input sequence: token ids with an optional attention mask and token types.
#[derive(Clone, Copy, Debug)]
pub struct Input<'i> {
    /// Token ids, `[CLS] ... [SEP]`.
    pub ids: &'i [u32],
    /// 1 = attend, 0 = padding; `None` attends to every token.
    pub mask: Option<&'i [u8]>,
    /// Segment ids; `None` means all 0.
    pub type_ids: Option<&'i [u32]>,
}

impl<'i> Input<'i> {
    /// Ids only: no padding, one segment.
    pub fn new(ids: &'i [u32]) -> Self {
        Self {
            ids,
            mask: None,
            type_ids: None,
        }
    }

    fn keep(&self, j: usize) -> bool {
        self.mask
            .is_none_or(|m| m.get(j).copied().unwrap_or(0) != 0)
    }

    fn type_id(&self, t: usize) -> usize {
        self.type_ids.and_then(|ty| ty.get(t)).copied().unwrap_or(0) as usize
    }
}

/// Where the float forward pass reports intermediate activations (the converter's
/// calibration uses it to choose int8 scales). Rows are reported one token at a time.
///
/// Decoders ([`decoder::State::step_observed`]) report `EmbSum` (the token's
/// embedding), `Query` and `Key` (after the rotary embedding), `Value`, `Context`,
/// `AttnSum` and `FfnSum` (the residual after each block), `Ffn1` (the SwiGLU gate
/// before SiLU), `Act` (`silu(gate) * up`) and `Logits`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    /// Sum of the three embeddings, before LayerNorm (a residual).
    EmbSum,
    /// Embedding LayerNorm output: the input of layer 0.
    EmbOut,
    /// Query projection.
    Query,
    /// Key projection.
    Key,
    /// Value projection.
    Value,
    /// Attention context, before the output projection.
    Context,
    /// Residual sum before the attention LayerNorm.
    AttnSum,
    /// Attention LayerNorm output.
    AttnOut,
    /// FFN first projection, before the activation.
    Ffn1,
    /// Activation output.
    Act,
    /// Residual sum before the FFN LayerNorm.
    FfnSum,
    /// FFN LayerNorm output: the input of the next layer.
    FfnOut,
    /// Pooler dense output, before tanh.
    PoolerPre,
    /// Pooled vector (after tanh for the BERT pooler).
    Pooled,
    /// Classifier logits.
    Logits,
}

/// Receives activations from [`Model::forward_observed`].
pub trait Observer {
    /// `values` are one token's activations at `point` of `layer` (0 for model-level
    /// points).
    fn observe(&mut self, point: Point, layer: usize, values: &[f32]);
}

/// Integer activations reported by [`Model::forward_fixed_observed`]: int8
/// activations, or the i32 residual stream and outputs.
#[derive(Clone, Copy, Debug)]
pub enum Fixed<'v> {
    /// int8 values (their scales are the converter's; see `docs/FORMAT.md`).
    I8(&'v [i8]),
    /// i32 values: residual sums (before LayerNorm) and Q16 outputs.
    I32(&'v [i32]),
}

/// Receives integer activations from [`Model::forward_fixed_observed`], at the same
/// [`Point`]s as [`Observer`] (used to measure quantization error layer by layer).
/// Within one point and layer, rows arrive in token order; how the points of a layer
/// interleave depends on the batch size the arena allows (with batches, e.g. `Query`
/// and `Context` for every row of a batch, then `AttnSum` and `AttnOut` for each).
pub trait FixedObserver {
    /// Whether [`FixedObserver::observe`] does anything: a pass with an observer that
    /// does runs on one thread, so that the rows arrive in order.
    const OBSERVES: bool = true;

    /// One token's values at `point` of `layer`.
    fn observe(&mut self, point: Point, layer: usize, values: Fixed<'_>);
}

/// An observer that does nothing (compiled away).
pub struct NoObserver;

impl Observer for NoObserver {
    #[inline(always)]
    fn observe(&mut self, _: Point, _: usize, _: &[f32]) {}
}

impl FixedObserver for NoObserver {
    const OBSERVES: bool = false;

    #[inline(always)]
    fn observe(&mut self, _: Point, _: usize, _: Fixed<'_>) {}
}

/// A loaded model: the validated file and its tokenizer. Cheap to copy; holds only
/// references into the model bytes.
#[derive(Clone, Copy, Debug)]
pub struct Model<'a> {
    file: ModelFile<'a>,
    tokenizer: Tokenizer<'a>,
    /// The int8 kernel of every product in the int8 forward pass, chosen once at load.
    kernel: Int8Kernel,
    /// Threads of the int8 forward pass ([`Model::with_threads`]).
    #[cfg(feature = "threads")]
    threads: usize,
}

/// Class probabilities from Q16.16 logits, integer only: `logits` are replaced by
/// probabilities in Q15 (`32768` = 1.0) using [`crate::kernels::softmax::softmax_q15`].
/// This is what the int8 mode reports on a device, bit for bit.
pub fn probabilities_q15(logits: &mut [i32]) {
    // One logit unit is 2^-16, so the base-2 exponent in Q16 is distance * log2(e).
    crate::kernels::softmax::softmax_q15(logits, crate::quant::LOG2_E);
}

/// Fractional bits of the int8 mode's fixed-point outputs (logits and embeddings):
/// `value = raw / 65536`.
pub const OUTPUT_FRAC_BITS: u32 = 16;

impl<'a> Model<'a> {
    /// Validates `bytes` (see [`ModelFile::from_bytes`]) and prepares the model. A
    /// decoder's file is refused with [`FormatError::WrongArch`] before its tokenizer
    /// section is read (so an encoder-only firmware links no decoder tokenizer).
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let file = ModelFile::encoder_from_bytes(bytes)?;
        if file.config().arch != Arch::BertEncoder {
            return Err(FormatError::WrongArch {
                expected: Arch::BertEncoder,
                found: file.config().arch,
            });
        }
        let tokenizer =
            Tokenizer::from_section(file.tokenizer_section()).map_err(FormatError::Tokenizer)?;
        Ok(Self {
            file,
            tokenizer,
            kernel: Int8Kernel::best(),
            #[cfg(feature = "threads")]
            threads: 1,
        })
    }

    /// The int8 kernel of the int8 forward pass: [`Int8Kernel::best`] when the model was
    /// loaded, unless [`Model::with_kernel`] chose another (`std` only: see
    /// [`Int8Kernel::resolved`]).
    #[inline]
    pub fn kernel(&self) -> Int8Kernel {
        self.kernel.resolved()
    }

    /// The model with its int8 forward pass on `kernel` (for tests and benchmarks:
    /// every kernel gives the same result; one not available here runs the scalar
    /// reference).
    #[cfg(feature = "std")]
    pub fn with_kernel(self, kernel: Int8Kernel) -> Self {
        Self { kernel, ..self }
    }

    /// The model with its int8 forward pass on up to `threads` threads, the calling
    /// one and rayon's global pool (`threads` feature; at least 1, the default): each
    /// batch of token rows is split into parts of 16 rows or more (the matrix products,
    /// their requantization and the attention of each part), computed exactly as on
    /// one thread, so the results are the same for every thread count. The pool is the
    /// caller's to size (`rayon::ThreadPoolBuilder`, `threads - 1` workers).
    #[cfg(feature = "threads")]
    pub fn with_threads(self, threads: usize) -> Self {
        Self {
            threads: threads.max(1),
            ..self
        }
    }

    /// Threads of the int8 forward pass: 1 unless [`Model::with_threads`] chose more.
    #[inline]
    pub fn threads(&self) -> usize {
        #[cfg(feature = "threads")]
        {
            self.threads
        }
        #[cfg(not(feature = "threads"))]
        {
            1
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        self.file.config()
    }

    /// The validated file (tensors, labels).
    pub fn file(&self) -> &ModelFile<'a> {
        &self.file
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer<'a> {
        &self.tokenizer
    }

    /// Name of label `index`.
    pub fn label(&self, index: usize) -> Option<&'a str> {
        self.file.label(u32::try_from(index).ok()?)
    }

    /// The memory plan for `seq` tokens.
    pub fn plan(&self, seq: usize) -> Result<Plan, Error> {
        Plan::new(self.config(), seq)
    }

    /// Exact arena bytes a forward pass over `seq` tokens needs: a pure function of
    /// the config and `seq`. Fails for `seq == 0` or `seq > max_seq`.
    pub fn arena_bytes(&self, seq: usize) -> Result<usize, Error> {
        Ok(self.plan(seq)?.total_bytes())
    }

    /// Arena bytes with which the int8 forward pass runs `rows` token rows per pass
    /// over the weights (clamped to `1..=min(seq, MAX_BATCH_ROWS)`, 1 for float
    /// models; see [`Plan`]):
    /// faster where a multi-row kernel exists (AVX-VNNI), same results. With `rows ==
    /// 1` this is [`Model::arena_bytes`]; given any arena, the pass uses the largest
    /// batch that fits.
    pub fn arena_bytes_batched(&self, seq: usize, rows: usize) -> Result<usize, Error> {
        Ok(Plan::batched(self.config(), seq, rows)?.total_bytes())
    }

    /// Runs the encoder and writes `config().output_len()` values to `out`: logits for
    /// a classifier, else the pooled embedding. Float models compute in `f32`; int8
    /// models compute in integers and convert the fixed-point result at the end (use
    /// [`Model::forward_fixed`] to avoid that single float step).
    pub fn forward(
        &self,
        input: Input<'_>,
        arena: &mut [u8],
        out: &mut [f32],
    ) -> Result<(), Error> {
        if self.config().is_int8() {
            let fixed: &mut [i32] = bytemuck::cast_slice_mut(out);
            self.forward_fixed(input, arena, fixed)?;
            for v in out.iter_mut() {
                *v = v.to_bits() as i32 as f32 / (1u32 << OUTPUT_FRAC_BITS) as f32;
            }
            Ok(())
        } else {
            self.forward_observed(input, arena, out, &mut NoObserver)
        }
    }

    /// The int8 forward pass, integer only: writes the output in fixed point with
    /// [`OUTPUT_FRAC_BITS`] fractional bits (Q16.16).
    pub fn forward_fixed(
        &self,
        input: Input<'_>,
        arena: &mut [u8],
        out: &mut [i32],
    ) -> Result<(), Error> {
        self.forward_fixed_observed(input, arena, out, &mut NoObserver)
    }

    /// [`Model::forward_fixed`], reporting every intermediate activation to `observer`.
    pub fn forward_fixed_observed<O: FixedObserver>(
        &self,
        input: Input<'_>,
        arena: &mut [u8],
        out: &mut [i32],
        observer: &mut O,
    ) -> Result<(), Error> {
        if !self.config().is_int8() {
            return Err(Error::NotQuantized);
        }
        let plan = self.check(&input, arena, out.len())?;
        int8::forward(
            &self.file,
            &input,
            &plan,
            (self.kernel(), self.threads()),
            arena,
            out,
            observer,
        );
        Ok(())
    }

    /// The float forward pass, reporting every intermediate activation to `observer`.
    pub fn forward_observed<O: Observer>(
        &self,
        input: Input<'_>,
        arena: &mut [u8],
        out: &mut [f32],
        observer: &mut O,
    ) -> Result<(), Error> {
        let plan = self.check(&input, arena, out.len())?;
        match self.config().weight_dtype {
            crate::format::DType::F32 => {
                float::forward::<f32, O>(&self.file, &input, &plan, arena, out, observer)
            }
            crate::format::DType::F16 => {
                float::forward::<half::f16, O>(&self.file, &input, &plan, arena, out, observer)
            }
            _ => return Err(Error::NotFloat),
        }
        Ok(())
    }

    /// Reruns the golden cases of the file's self-test section (see
    /// [`crate::format::self_test`]) and compares every output value bit for bit with
    /// the one stored by the converter; `Ok` if all match. Catches what the CRC
    /// cannot: a miscompiled or wrongly selected kernel, a wrong target feature, an
    /// arena whose RAM does not hold what was written.
    ///
    /// `arena` must hold [`Model::self_test_arena_bytes`]: the forward pass of the
    /// longest case plus its output (the output is kept at the arena's end, so no
    /// stack buffer). The first mismatch is [`Error::SelfTestMismatch`]; a file
    /// without the section gives [`Error::NoSelfTest`].
    pub fn self_test(&self, arena: &mut [u8]) -> Result<(), Error> {
        let mut cases = self.file.self_test_cases().peekable();
        if cases.peek().is_none() {
            return Err(Error::NoSelfTest);
        }
        let out_bytes = 4 * self.config().output_len();
        let needed = self.self_test_arena_bytes()?;
        let got = arena.len();
        let too_small = Error::ArenaTooSmall { needed, got };
        if got < needed {
            return Err(too_small);
        }
        // The output at the end, 4-byte aligned like the arena's start. (`_checked`
        // and `get_mut` cannot fail after the length check; they keep panic paths out
        // of firmware.)
        let split = (got - out_bytes) & !(plan::ARENA_ALIGN - 1);
        let (work, rest) = arena.split_at_mut_checked(split).ok_or(too_small)?;
        let out: &mut [i32] = bytemuck::try_cast_slice_mut(
            rest.get_mut(..out_bytes).ok_or(too_small)?,
        )
        .map_err(|_| Error::ArenaMisaligned {
            align: plan::ARENA_ALIGN,
        })?;
        for (case, golden) in cases.enumerate() {
            self.forward_fixed(Input::new(golden.ids), work, out)?;
            let first = out
                .iter()
                .zip(golden.expected)
                .position(|(got, want)| got != want);
            if let Some(index) = first {
                return Err(Error::SelfTestMismatch {
                    case: case as u32,
                    index: index as u32,
                    expected: golden.expected[index],
                    got: out[index],
                });
            }
        }
        Ok(())
    }

    /// Arena bytes [`Model::self_test`] needs: the plan of the longest golden case
    /// plus its output, rounded up to the arena alignment (0 without a section).
    pub fn self_test_arena_bytes(&self) -> Result<usize, Error> {
        let longest = self.file.self_test_cases().map(|c| c.ids.len()).max();
        let Some(longest) = longest else {
            return Ok(0);
        };
        let out_bytes = 4 * self.config().output_len();
        Ok(self
            .arena_bytes(longest)?
            .next_multiple_of(plan::ARENA_ALIGN)
            + out_bytes)
    }

    /// Checks the input, output and arena against the config; returns the plan.
    fn check(&self, input: &Input<'_>, arena: &[u8], out_len: usize) -> Result<Plan, Error> {
        let config = self.config();
        let n = input.ids.len();
        let plan = self.plan(n)?;
        if out_len != config.output_len() {
            return Err(Error::OutputLengthMismatch {
                needed: config.output_len(),
                got: out_len,
            });
        }
        for (index, &id) in input.ids.iter().enumerate() {
            if id >= config.vocab_size {
                return Err(Error::TokenOutOfRange {
                    index,
                    id,
                    vocab: config.vocab_size,
                });
            }
        }
        if let Some(mask) = input.mask {
            if mask.len() != n {
                return Err(Error::InputLengthMismatch {
                    ids: n,
                    got: mask.len(),
                });
            }
            if mask.iter().all(|&m| m == 0) {
                return Err(Error::EmptyMask);
            }
        }
        if let Some(types) = input.type_ids {
            if types.len() != n {
                return Err(Error::InputLengthMismatch {
                    ids: n,
                    got: types.len(),
                });
            }
            for (index, &id) in types.iter().enumerate() {
                if id >= config.type_vocab {
                    return Err(Error::TokenTypeOutOfRange {
                        index,
                        id,
                        type_vocab: config.type_vocab,
                    });
                }
            }
        }
        let needed = plan.total_bytes();
        if arena.len() < needed {
            return Err(Error::ArenaTooSmall {
                needed,
                got: arena.len(),
            });
        }
        if !(arena.as_ptr() as usize).is_multiple_of(plan::ARENA_ALIGN) {
            return Err(Error::ArenaMisaligned {
                align: plan::ARENA_ALIGN,
            });
        }
        if config.is_int8() {
            // The largest batch whose plan fits the arena (the float passes run one row
            // at a time).
            for rows in (2..=plan::MAX_BATCH_ROWS.min(n)).rev() {
                match Plan::batched(config, n, rows) {
                    Ok(batched) if batched.total_bytes() <= arena.len() => return Ok(batched),
                    _ => {}
                }
            }
        }
        Ok(plan)
    }
}
