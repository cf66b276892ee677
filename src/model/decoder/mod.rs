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
// MERGE-SAMPLER pub mod sample;

pub use int8::KEY_WIDE_BITS;
pub use plan::{DecoderPlan, DECODER_BUFFERS};

use super::plan::ARENA_ALIGN;
use super::{Error, FixedObserver, NoObserver, Observer};
use crate::format::{Arch, Config, DType, DecoderParams, FormatError, ModelFile};
use half::f16;

/// A loaded decoder model: the validated file. Cheap to copy; holds only references
/// into the model bytes.
#[derive(Clone, Copy, Debug)]
pub struct Decoder<'a> {
    file: ModelFile<'a>,
    params: DecoderParams,
}

impl<'a> Decoder<'a> {
    /// Validates `bytes` (see [`ModelFile::from_bytes`]); refuses an encoder file.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let file = ModelFile::from_bytes(bytes)?;
        match file.config().decoder {
            Some(params) => Ok(Self { file, params }),
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

    /// The arena layout for a context of `ctx` positions.
    pub fn plan(&self, ctx: usize) -> Result<DecoderPlan, Error> {
        DecoderPlan::new(self.config(), ctx)
    }

    /// Exact arena bytes for a context of `ctx` positions (`1..=max_seq`): the
    /// key/value cache plus one token's scratch.
    pub fn arena_bytes(&self, ctx: usize) -> Result<usize, Error> {
        Ok(self.plan(ctx)?.total_bytes())
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
        let plan = model.plan(ctx)?;
        let needed = plan.total_bytes();
        if arena.len() < needed {
            return Err(Error::ArenaTooSmall {
                needed,
                got: arena.len(),
            });
        }
        if arena.as_ptr() as usize % ARENA_ALIGN != 0 {
            return Err(Error::ArenaMisaligned {
                align: ARENA_ALIGN,
            });
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
        self.run(token, true, &mut NoObserver, &mut NoObserver)?;
        Ok(self.logits())
    }

    /// Runs every token of `prompt` (the logits of all but the last are not
    /// computed) and returns the logits after the last. Nothing runs if the prompt is
    /// empty ([`Error::EmptySequence`]) or does not fit the remaining context.
    pub fn prefill(&mut self, prompt: &[u32]) -> Result<Logits<'_>, Error> {
        let (&last, rest) = prompt.split_last().ok_or(Error::EmptySequence)?;
        self.check_room(prompt.len())?;
        for (index, &id) in prompt.iter().enumerate() {
            self.check_token(index, id)?;
        }
        for &id in rest {
            self.run(id, false, &mut NoObserver, &mut NoObserver)?;
        }
        self.step(last)
    }

    /// [`State::step`] on a float model, reporting activations to `obs` (the
    /// converter's calibration); refuses int8 models.
    pub fn step_observed<O: Observer>(&mut self, token: u32, obs: &mut O) -> Result<Logits<'_>, Error> {
        if self.model.config().is_int8() {
            return Err(Error::NotFloat);
        }
        self.run(token, true, obs, &mut NoObserver)?;
        Ok(self.logits())
    }

    /// [`State::step`] on an int8 model, reporting integer activations to `obs`;
    /// refuses float models.
    pub fn step_fixed_observed<O: FixedObserver>(
        &mut self,
        token: u32,
        obs: &mut O,
    ) -> Result<Logits<'_>, Error> {
        if !self.model.config().is_int8() {
            return Err(Error::NotQuantized);
        }
        self.run(token, true, &mut NoObserver, obs)?;
        Ok(self.logits())
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

    fn run<O: Observer, F: FixedObserver>(
        &mut self,
        token: u32,
        logits: bool,
        obs: &mut O,
        fixed: &mut F,
    ) -> Result<(), Error> {
        self.check_room(1)?;
        self.check_token(0, token)?;
        let (file, plan, pos) = (&self.model.file, &self.plan, self.pos);
        let arena = &mut *self.arena;
        match file.config().weight_dtype {
            DType::I8 => int8::step(file, plan, arena, token, pos, logits, fixed),
            DType::F16 => float::step::<f16, O>(file, plan, arena, token, pos, logits, obs),
            _ => float::step::<f32, O>(file, plan, arena, token, pos, logits, obs),
        }
        self.pos += 1;
        Ok(())
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
