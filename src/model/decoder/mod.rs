//! The causal decoder (Llama family): a validated model file, a state that lives in
//! the caller's arena (key/value cache for a context length fixed up front, one
//! token's scratch), and a step that turns one token into next-token logits.
//!
//! ```text
//! Decoder (file, validated once) ──▶ State in the arena ──step(token)──▶ logits
//!                                      ▲                                  │
//!                                      └──────── sample::Sampler ◀────────┘
//! ```
//!
//! Two numeric modes share the structure: [`float`] (f32 or f16 weights, f32
//! arithmetic, llama2.c's order of operations) and [`int8`] (int8 weights, int8 cache,
//! no floating point at all). The arena size for a context length is known before the
//! first token ([`Decoder::arena_bytes`]); a full context is an error, never a
//! wrap-around.

mod float;
mod int8;
mod plan;
pub mod sample;

pub use int8::KEY_WIDE_BITS;
pub use plan::{DecoderPlan, DECODER_BUFFERS, MAX_PREFILL_ROWS};

use super::plan::ARENA_ALIGN;
use super::{Error, FixedObserver, NoObserver, Observer};
use crate::format::{Arch, Config, DType, DecoderParams, FormatError, ModelFile};
use crate::kernels::matvec::Int8Kernel;
use half::f16;

/// A loaded decoder model: the validated file. Cheap to copy; holds only references
/// into the model bytes.
#[derive(Clone, Copy, Debug)]
pub struct Decoder<'a> {
    file: ModelFile<'a>,
    params: DecoderParams,
    /// The int8 kernel of every product in the int8 step, chosen once at load.
    kernel: Int8Kernel,
    /// Threads a prefill block's projections are split across ([`Decoder::with_threads`]).
    #[cfg(feature = "threads")]
    threads: usize,
}

impl<'a> Decoder<'a> {
    /// Validates `bytes` (see [`ModelFile::from_bytes`]); refuses an encoder file.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let file = ModelFile::from_bytes(bytes)?;
        match file.config().decoder {
            Some(params) => Ok(Self {
                file,
                params,
                kernel: Int8Kernel::best(),
                #[cfg(feature = "threads")]
                threads: 1,
            }),
            None => Err(FormatError::WrongArch {
                expected: Arch::LlamaDecoder,
                found: file.config().arch,
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        self.file.config()
    }

    /// The decoder's header fields.
    pub fn params(&self) -> &DecoderParams {
        &self.params
    }

    /// The validated file.
    pub fn file(&self) -> &ModelFile<'a> {
        &self.file
    }

    /// The int8 kernel of the int8 step: [`Int8Kernel::best`] when the model was
    /// loaded, unless [`Decoder::with_kernel`] chose another (`std` only: see
    /// [`Int8Kernel::resolved`]).
    #[inline]
    pub fn kernel(&self) -> Int8Kernel {
        self.kernel.resolved()
    }

    /// The decoder with its int8 step on `kernel` (for tests and benchmarks: every
    /// kernel gives the same result; one not available here runs the scalar
    /// reference). A [`State`] takes the kernel of the decoder it is made from.
    #[cfg(feature = "std")]
    pub fn with_kernel(self, kernel: Int8Kernel) -> Self {
        Self { kernel, ..self }
    }

    /// The decoder with the weight products of its int8 prefill blocks on up to
    /// `threads` threads (`threads` feature; at least 1, the default): a projection
    /// large enough to pay for waking them has its output rows split into one part per
    /// thread, each computed exactly as one thread computes it, so the cache and the
    /// logits do not depend on the count. Decoding steps (one token) stay on one
    /// thread. The parts run on the calling thread and rayon's global pool, the
    /// caller's to size (`threads - 1` workers). A [`State`] takes the count of the
    /// decoder it is made from.
    #[cfg(feature = "threads")]
    pub fn with_threads(self, threads: usize) -> Self {
        Self {
            threads: threads.max(1),
            ..self
        }
    }

    /// Threads of the int8 prefill's projections: 1 unless [`Decoder::with_threads`]
    /// chose more.
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

    /// The arena layout for a context of `ctx` positions.
    pub fn plan(&self, ctx: usize) -> Result<DecoderPlan, Error> {
        DecoderPlan::new(self.config(), ctx)
    }

    /// Exact arena bytes for a context of `ctx` positions (`1..=max_seq`): the
    /// key/value cache plus one token's scratch.
    pub fn arena_bytes(&self, ctx: usize) -> Result<usize, Error> {
        Ok(self.plan(ctx)?.total_bytes())
    }

    /// The arena layout for a context of `ctx` positions whose int8 prefill runs
    /// blocks of `rows` tokens ([`DecoderPlan::with_rows`]).
    pub fn plan_with_rows(&self, ctx: usize, rows: usize) -> Result<DecoderPlan, Error> {
        DecoderPlan::with_rows(self.config(), ctx, rows)
    }
}

/// Next-token logits, borrowed from the state's arena.
#[derive(Clone, Copy, Debug)]
pub enum Logits<'s> {
    /// Float models: `f32` logits.
    F32(&'s [f32]),
    /// int8 models: logits in Q16.16 fixed point (`value = raw / 65536`).
    Q16(&'s [i32]),
}

/// A decoding session: the key/value cache and scratch in the caller's arena, and the
/// next position. Positions `0..pos` are in the cache.
#[derive(Debug)]
pub struct State<'m, 'r> {
    model: Decoder<'m>,
    plan: DecoderPlan,
    arena: &'r mut [u8],
    pos: usize,
}

impl<'m, 'r> State<'m, 'r> {
    /// A state for a context of `ctx` positions in `arena`, which must be
    /// 4-byte aligned and at least [`Decoder::arena_bytes`]`(ctx)` long.
    pub fn new(model: &Decoder<'m>, arena: &'r mut [u8], ctx: usize) -> Result<Self, Error> {
        Self::with_plan(model, arena, model.plan(ctx)?)
    }

    /// A state laid out by `plan` ([`Decoder::plan_with_rows`]: an int8 prefill of
    /// several tokens per block reads each weight matrix once per block) in `arena`,
    /// which must be 4-byte aligned and at least `plan.total_bytes()` long. The
    /// results are those of [`State::new`], bit for bit.
    pub fn with_plan(
        model: &Decoder<'m>,
        arena: &'r mut [u8],
        plan: DecoderPlan,
    ) -> Result<Self, Error> {
        let needed = plan.total_bytes();
        if arena.len() < needed {
            return Err(Error::ArenaTooSmall {
                needed,
                got: arena.len(),
            });
        }
        if !(arena.as_ptr() as usize).is_multiple_of(ARENA_ALIGN) {
            return Err(Error::ArenaMisaligned { align: ARENA_ALIGN });
        }
        Ok(Self {
            model: *model,
            plan,
            arena,
            pos: 0,
        })
    }

    /// Positions in the cache (the position the next token gets).
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Context length: the most positions the cache holds.
    pub fn capacity(&self) -> usize {
        self.plan.ctx
    }

    /// The plan the arena is split by.
    pub fn plan(&self) -> &DecoderPlan {
        &self.plan
    }

    /// Forgets every position; the state is reusable for a new sequence.
    pub fn reset(&mut self) {
        self.pos = 0;
    }

    /// Runs `token` at the next position and returns the logits for the token after
    /// it. [`Error::ContextFull`] when the cache holds `capacity()` positions
    /// (nothing is changed then).
    pub fn step(&mut self, token: u32) -> Result<Logits<'_>, Error> {
        self.run(&[token], true, &mut Any(&mut NoObserver, &mut NoObserver))?;
        Ok(self.logits())
    }

    /// [`State::step`] for int8 models only, returning the Q16 logits: firmware that
    /// calls only this links no floating-point code. [`Error::NotQuantized`] for a
    /// float model.
    pub fn step_fixed(&mut self, token: u32) -> Result<&[i32], Error> {
        self.run(&[token], true, &mut Int8Only(&mut NoObserver))?;
        Ok(self.logits_q16())
    }

    /// Runs every token of `prompt` (the logits of all but the last are not
    /// computed) and returns the logits after the last. An int8 model runs the prompt
    /// in blocks of the plan's `rows` tokens. Nothing runs if the prompt is
    /// empty ([`Error::EmptySequence`]), holds an id outside the vocabulary, or does
    /// not fit the remaining context.
    pub fn prefill(&mut self, prompt: &[u32]) -> Result<Logits<'_>, Error> {
        self.prefill_with(prompt, &mut Any(&mut NoObserver, &mut NoObserver))?;
        Ok(self.logits())
    }

    /// [`State::prefill`] for int8 models only (see [`State::step_fixed`]).
    pub fn prefill_fixed(&mut self, prompt: &[u32]) -> Result<&[i32], Error> {
        self.prefill_with(prompt, &mut Int8Only(&mut NoObserver))?;
        Ok(self.logits_q16())
    }

    /// [`State::step`] on a float model, reporting activations to `obs` (the
    /// converter's calibration); [`Error::NotFloat`] for int8 models.
    pub fn step_observed<O: Observer>(
        &mut self,
        token: u32,
        obs: &mut O,
    ) -> Result<Logits<'_>, Error> {
        self.run(&[token], true, &mut FloatOnly(obs))?;
        Ok(self.logits())
    }

    /// [`State::step`] on an int8 model, reporting integer activations to `obs`;
    /// [`Error::NotQuantized`] for float models.
    pub fn step_fixed_observed<O: FixedObserver>(
        &mut self,
        token: u32,
        obs: &mut O,
    ) -> Result<&[i32], Error> {
        self.run(&[token], true, &mut Int8Only(obs))?;
        Ok(self.logits_q16())
    }

    fn prefill_with<S: Stepper>(&mut self, prompt: &[u32], stepper: &mut S) -> Result<(), Error> {
        if prompt.is_empty() {
            return Err(Error::EmptySequence);
        }
        self.check_room(prompt.len())?;
        for (index, &id) in prompt.iter().enumerate() {
            self.check_token(index, id)?;
        }
        let blocks = prompt.chunks(self.plan.rows.max(1));
        let last = blocks.len();
        for (i, block) in blocks.enumerate() {
            self.run(block, i + 1 == last, stepper)?;
        }
        Ok(())
    }

    fn check_room(&self, tokens: usize) -> Result<(), Error> {
        if tokens > self.plan.ctx - self.pos {
            return Err(Error::ContextFull { ctx: self.plan.ctx });
        }
        Ok(())
    }

    fn check_token(&self, index: usize, id: u32) -> Result<(), Error> {
        let vocab = self.model.config().vocab_size;
        if id >= vocab {
            return Err(Error::TokenOutOfRange { index, id, vocab });
        }
        Ok(())
    }

    /// Runs `tokens` (at most the plan's `rows`; one for a float model) at the next
    /// positions; the logits of the last if `logits`.
    fn run<S: Stepper>(
        &mut self,
        tokens: &[u32],
        logits: bool,
        stepper: &mut S,
    ) -> Result<(), Error> {
        self.check_room(tokens.len())?;
        for (index, &id) in tokens.iter().enumerate() {
            self.check_token(index, id)?;
        }
        let step = Step {
            file: &self.model.file,
            kernel: self.model.kernel(),
            #[cfg(feature = "threads")]
            threads: self.model.threads(),
            plan: &self.plan,
            tokens,
            pos: self.pos,
            logits,
        };
        stepper.step(&step, &mut *self.arena)?;
        self.pos += tokens.len();
        Ok(())
    }

    fn logits_q16(&self) -> &[i32] {
        let b = self.plan.buffers[plan::ix::LOGITS];
        let bytes = self.arena.get(b.offset..b.offset + b.bytes).unwrap_or(&[]);
        bytemuck::try_cast_slice(bytes).unwrap_or(&[])
    }

    fn logits(&mut self) -> Logits<'_> {
        let b = self.plan.buffers[plan::ix::LOGITS];
        let bytes = self.arena.get(b.offset..b.offset + b.bytes).unwrap_or(&[]);
        if self.model.config().is_int8() {
            Logits::Q16(bytemuck::try_cast_slice(bytes).unwrap_or(&[]))
        } else {
            Logits::F32(bytemuck::try_cast_slice(bytes).unwrap_or(&[]))
        }
    }
}

/// One step: which tokens go where, and whether the last one's logits are wanted.
pub(crate) struct Step<'s, 'f> {
    pub file: &'s ModelFile<'f>,
    /// The int8 kernel (int8 models).
    pub kernel: Int8Kernel,
    /// Threads a block's projections may be split across (int8 models).
    #[cfg(feature = "threads")]
    pub threads: usize,
    pub plan: &'s DecoderPlan,
    /// A block of tokens at positions `pos..`: at most `plan.rows` (int8 models), one
    /// for a float model (its plan has one row).
    pub tokens: &'s [u32],
    pub pos: usize,
    pub logits: bool,
}

/// The model's dimensions as the steps use them.
pub(crate) struct Shape {
    pub hidden: usize,
    pub ffn: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub kv_dim: usize,
    /// Query heads per key/value head.
    pub group: usize,
}

impl Shape {
    pub fn of(config: &Config) -> Self {
        let heads = config.heads as usize;
        Self {
            hidden: config.hidden as usize,
            ffn: config.ffn as usize,
            heads,
            head_dim: config.head_dim(),
            kv_dim: config.kv_dim(),
            group: heads / config.kv_heads().max(1),
        }
    }
}

/// Which step functions a call may reach: keeping the int8-only entry points free of
/// any reference to the float step keeps floating-point code out of firmware that
/// uses only them.
trait Stepper {
    fn step(&mut self, step: &Step<'_, '_>, arena: &mut [u8]) -> Result<(), Error>;
}

/// Any weight dtype.
struct Any<'o, O, F>(&'o mut O, &'o mut F);
/// int8 models only.
struct Int8Only<'o, F>(&'o mut F);
/// Float models only.
struct FloatOnly<'o, O>(&'o mut O);

impl<O: Observer, F: FixedObserver> Stepper for Any<'_, O, F> {
    fn step(&mut self, step: &Step<'_, '_>, arena: &mut [u8]) -> Result<(), Error> {
        if step.file.config().is_int8() {
            Int8Only(&mut *self.1).step(step, arena)
        } else {
            FloatOnly(&mut *self.0).step(step, arena)
        }
    }
}

impl<F: FixedObserver> Stepper for Int8Only<'_, F> {
    fn step(&mut self, step: &Step<'_, '_>, arena: &mut [u8]) -> Result<(), Error> {
        if !step.file.config().is_int8() {
            return Err(Error::NotQuantized);
        }
        int8::step(step, arena, self.0);
        Ok(())
    }
}

impl<O: Observer> Stepper for FloatOnly<'_, O> {
    fn step(&mut self, step: &Step<'_, '_>, arena: &mut [u8]) -> Result<(), Error> {
        match step.file.config().weight_dtype {
            DType::F16 => float::step::<f16, O>(step, arena, self.0),
            DType::F32 => float::step::<f32, O>(step, arena, self.0),
            _ => return Err(Error::NotFloat),
        }
        Ok(())
    }
}
