//! tinyformer: int8 and f16 transformer inference for microcontrollers.
//!
//! - [`format`]: the flat model file, validated once, read in place;
//! - [`tokenizer`]: BERT WordPiece over the vocabulary stored in the file;
//! - [`model`]: the memory plan and the forward pass (float and full-integer int8);
//! - [`kernels`]: one op per file, scalar reference implementations;
//! - [`quant`]: fixed-point helpers;
//! - [`rng`]: the seeded generator of the sampler and of the tests.
//!
//! No heap, no panics on any input, errors as values; the working memory of a forward
//! pass is a caller-provided arena whose exact size [`Model::arena_bytes`] gives before
//! the first inference.
//!
//! Stack: no recursion and no buffers sized by the input on the stack (every
//! `[seq, ...]` buffer lives in the arena), so stack use is bounded by the call depth.
//! Measured on a Cortex-M4F (`examples/cortex-m`, painted stack, `opt-level = 3`): the
//! whole firmware (tokenizer, int8 forward pass, probabilities, printing) peaks at
//! 1,832 bytes (`tools/firmware-check.sh` prints the figure).
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "alloc")]
extern crate alloc;

/// `?` for `const fn`s (the operator is not `const` on stable Rust): evaluates a
/// `Result`, returning its error early.
macro_rules! const_try {
    ($result:expr) => {
        match $result {
            Ok(value) => value,
            Err(error) => return Err(error),
        }
    };
}

#[cfg(target_endian = "big")]
compile_error!("tinyformer model files are little-endian and viewed in place: big-endian targets are not supported");
#[cfg(target_pointer_width = "16")]
compile_error!("tinyformer needs a usize of at least 32 bits (tensor offsets and lengths are u32): 16-bit targets are not supported");

pub mod format;
pub mod kernels;
pub mod model;
pub mod quant;
pub mod rng;
pub mod tokenizer;

pub use format::{Config, FormatError, ModelFile};
pub use model::decoder::{Decoder, Logits, State};
#[cfg(any(target_has_atomic = "8", feature = "critical-section"))]
pub use model::StaticArena;
pub use model::{arena_bytes, try_arena_bytes, Arena, Error, Input, Model, Plan};
pub use tokenizer::TokenizerError;

/// The README's Rust snippets, compiled and run as doctests (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
