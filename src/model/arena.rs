//! The caller's working memory: its exact size at compile time ([`arena_bytes`]),
//! and its storage ([`Arena`], [`StaticArena`]).

use super::plan::Plan;
use super::Error;
use crate::format::{Arch, Config, FormatError};

/// Exact arena bytes for the model file `model` at `len` tokens: what
/// [`Model::arena_bytes`](super::Model::arena_bytes)`(len)` returns for an encoder,
/// and [`Decoder::arena_bytes`](super::decoder::Decoder::arena_bytes)`(len)` (`len`
/// the context) for a decoder, computed from the header alone.
///
/// A `const fn` meant for compile time, over the bytes of
/// [`include_model!`](crate::include_model): a length of 0 or above the model's
/// `max_seq`, or a header that [`Config::from_header`] refuses, makes it panic, which
/// in a `const` or a `static`'s type is a compile error. Called at run time, it panics
/// likewise; [`try_arena_bytes`] returns the error instead.
///
/// A firmware sizes one `static` arena for the model it includes and the sequence
/// length it runs, and a model that does not fit that length does not compile:
///
/// ```
/// use tinyformer::StaticArena;
///
/// static MODEL: &[u8] = tinyformer::include_model!(concat!(
///     env!("CARGO_MANIFEST_DIR"),
///     "/models/default/sentiment-int8.tfm"
/// ));
/// static ARENA: StaticArena<{ tinyformer::arena_bytes(MODEL, 64) }> = StaticArena::new();
///
/// let arena: &'static mut [u8] = ARENA.take().expect("taken once");
/// assert_eq!(arena.len(), 19_264); // the plan at 64 tokens, exactly
/// assert!(ARENA.take().is_none());
/// ```
///
/// The default model allows 64 tokens (`max_seq`), so asking for 65 is an error at
/// compile time (`evaluation panicked: tinyformer::arena_bytes: the length is longer
/// than the model's max_seq`), not at boot:
///
/// ```compile_fail,E0080
/// # use tinyformer::StaticArena;
/// static MODEL: &[u8] = tinyformer::include_model!(concat!(
///     env!("CARGO_MANIFEST_DIR"),
///     "/models/default/sentiment-int8.tfm"
/// ));
/// static ARENA: StaticArena<{ tinyformer::arena_bytes(MODEL, 65) }> = StaticArena::new();
/// ```
pub const fn arena_bytes(model: &[u8], len: usize) -> usize {
    match try_arena_bytes(model, len) {
        Ok(bytes) => bytes,
        Err(error) => panic!("{}", compile_time_message(&error)),
    }
}

/// [`arena_bytes`] with the error as a value: [`Error::Format`] for a header that
/// [`Config::from_header`] refuses, [`Error::EmptySequence`] or
/// [`Error::SequenceTooLong`] for the length.
pub const fn try_arena_bytes(model: &[u8], len: usize) -> Result<usize, Error> {
    let config = match Config::from_header(model) {
        Ok(config) => config,
        Err(error) => return Err(Error::Format(error)),
    };
    match config.arch {
        Arch::BertEncoder => match Plan::new(&config, len) {
            Ok(plan) => Ok(plan.total_bytes()),
            Err(error) => Err(error),
        },
        Arch::LlamaDecoder => match super::decoder::DecoderPlan::new(&config, len) {
            Ok(plan) => Ok(plan.total_bytes()),
            Err(e) => Err(e),
        },
    }
}

/// What a compile error from [`arena_bytes`] says (a `const` panic takes one
/// `&'static str`: no values).
const fn compile_time_message(error: &Error) -> &'static str {
    match error {
        Error::SequenceTooLong { .. } => {
            "tinyformer::arena_bytes: the length is longer than the model's max_seq \
             (`tinyformer inspect MODEL` prints it)"
        }
        Error::EmptySequence => "tinyformer::arena_bytes: the length is 0",
        Error::ArenaTooSmall { .. } => {
            "tinyformer::arena_bytes: the arena for this length exceeds the address space"
        }
        Error::Format(FormatError::BadMagic { .. }) => {
            "tinyformer::arena_bytes: not a tinyformer model file (bad magic)"
        }
        Error::Format(FormatError::Truncated { .. }) => {
            "tinyformer::arena_bytes: the model file is shorter than its header"
        }
        Error::Format(FormatError::UnsupportedVersion { .. }) => {
            "tinyformer::arena_bytes: the model file's format version is not the one this \
             tinyformer reads"
        }
        Error::Format(FormatError::LengthMismatch { .. }) => {
            "tinyformer::arena_bytes: the model file's length differs from its header's \
             file_len"
        }
        _ => {
            "tinyformer::arena_bytes: the model file's header is invalid \
             (`tinyformer inspect MODEL` says why)"
        }
    }
}

/// A 16-byte aligned arena of `N` bytes (on the stack, or in a `static` through
/// [`StaticArena`]).
#[repr(C, align(16))]
pub struct Arena<const N: usize>(pub [u8; N]);

impl<const N: usize> Arena<N> {
    /// A zeroed arena.
    pub const fn new() -> Self {
        Self([0; N])
    }
    /// The bytes.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl<const N: usize> Default for Arena<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// An [`Arena`] in a `static`, handed out once as `&'static mut [u8]`: no `static mut`
/// and no `unsafe` in the caller. Zero-initialized, so it lives in `.bss` (no flash
/// image, no copy on the stack). Size it with [`arena_bytes`] (see its example).
///
/// Needs an atomic swap (every target with `target_has_atomic = "8"`: Cortex-M3 and
/// up, RISC-V with the A extension, hosts); on targets without one (Cortex-M0/M0+,
/// `riscv32imc`), enable the `critical-section` feature and link an implementation
/// (`cortex-m`'s `critical-section-single-core`, for one).
#[cfg(any(target_has_atomic = "8", feature = "critical-section"))]
pub struct StaticArena<const N: usize> {
    arena: core::cell::UnsafeCell<Arena<N>>,
    taken: core::sync::atomic::AtomicBool,
}

// SAFETY: the arena's bytes are reached only through `take`, which hands out one
// reference, once, whichever thread or interrupt asks first.
#[cfg(any(target_has_atomic = "8", feature = "critical-section"))]
unsafe impl<const N: usize> Sync for StaticArena<N> {}

#[cfg(any(target_has_atomic = "8", feature = "critical-section"))]
impl<const N: usize> StaticArena<N> {
    /// A zeroed arena, not yet taken.
    pub const fn new() -> Self {
        Self {
            arena: core::cell::UnsafeCell::new(Arena::new()),
            taken: core::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The arena's bytes the first time (16-byte aligned, `N` long); `None` ever after.
    // A `&'static mut` from `&'static self` is the point: exclusivity comes from the
    // flag, not from the borrow.
    #[allow(clippy::mut_from_ref)]
    pub fn take(&'static self) -> Option<&'static mut [u8]> {
        if self.mark_taken() {
            return None;
        }
        // SAFETY: `mark_taken` returned `false` to this caller only (it sets the flag
        // in one indivisible step and the flag is never cleared), so no other
        // reference to the arena exists or will ever be made.
        Some(unsafe { &mut (*self.arena.get()).0 })
    }

    /// Sets the flag and returns its previous value, in one indivisible step.
    #[cfg(target_has_atomic = "8")]
    fn mark_taken(&self) -> bool {
        // The flag orders nothing else (the bytes are zero from the start), so
        // `Relaxed` suffices: the swap's atomicity alone gives one `false`.
        self.taken.swap(true, core::sync::atomic::Ordering::Relaxed)
    }

    /// Sets the flag and returns its previous value, in one indivisible step.
    #[cfg(not(target_has_atomic = "8"))]
    fn mark_taken(&self) -> bool {
        use core::sync::atomic::Ordering::Relaxed;
        critical_section::with(|_| {
            let taken = self.taken.load(Relaxed);
            self.taken.store(true, Relaxed);
            taken
        })
    }
}

#[cfg(any(target_has_atomic = "8", feature = "critical-section"))]
impl<const N: usize> Default for StaticArena<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Activation, DType, DecoderParams, Pooling};
    use crate::model::decoder::DecoderPlan;

    fn decoder_config(
        weight_dtype: DType,
        (vocab_size, hidden, layers, heads, kv_heads, ffn): (u32, u32, u32, u32, u32, u32),
        max_seq: u32,
    ) -> Config {
        Config {
            arch: Arch::LlamaDecoder,
            weight_dtype,
            activation: Activation::Silu,
            pooling: Pooling::None,
            vocab_size,
            hidden,
            layers,
            heads,
            ffn,
            max_positions: max_seq,
            type_vocab: 0,
            num_labels: 0,
            max_seq,
            layer_norm_eps_bits: 1e-5f32.to_bits(),
            decoder: Some(DecoderParams {
                kv_heads,
                rope_theta_bits: 10_000f32.to_bits(),
                bos_id: 1,
                eos_id: 2,
                separate_output: false,
            }),
        }
    }

    /// The decoder plan (a `const fn`, so [`arena_bytes`] is the runtime plan itself)
    /// tiles the arena: buffers in order, no gap or overlap, each aligned for its
    /// element type, total = sum; and it refuses the lengths the state refuses.
    #[test]
    fn decoder_plan_tiles_the_arena() {
        let shapes = [
            (512, 64, 5, 8, 4, 172),
            (32000, 288, 6, 6, 6, 768),
            (100, 16, 1, 2, 1, 8),
            (1 << 20, 4096, 64, 32, 8, 16384),
        ];
        for dtype in [DType::I8, DType::F16, DType::F32] {
            for shape in shapes {
                for max_seq in [2, 256, 8192] {
                    let config = decoder_config(dtype, shape, max_seq);
                    for ctx in [0, 1, 2, 3, 100, 255, 256, 257, 512, 8191, 8192, 8193] {
                        let plan = match DecoderPlan::new(&config, ctx) {
                            Ok(plan) => plan,
                            Err(e) => {
                                assert!(
                                    ctx == 0
                                        || ctx > max_seq as usize
                                        || cfg!(target_pointer_width = "32"),
                                    "{e:?}"
                                );
                                continue;
                            }
                        };
                        let mut at = 0;
                        for b in plan.buffers {
                            assert_eq!(b.offset, at, "{dtype:?} {shape:?} ctx {ctx} {}", b.name);
                            assert_eq!(b.offset % b.elem, 0, "{} misaligned", b.name);
                            at += b.bytes;
                        }
                        assert_eq!(plan.total_bytes(), at);
                    }
                }
            }
        }
    }

    #[test]
    fn static_arena_is_taken_once() {
        static ARENA: StaticArena<100> = StaticArena::new();
        let arena = ARENA.take().expect("first take");
        assert_eq!(arena.len(), 100);
        assert_eq!(arena.as_ptr() as usize % 16, 0);
        assert!(arena.iter().all(|&b| b == 0));
        assert!(ARENA.take().is_none());
        assert!(ARENA.take().is_none());
    }
}
