//! Host-side library of the tinyformer tool: checkpoint reading, conversion and
//! quantization, and helpers the CLI and tests share.

pub mod checkpoint;
pub mod convert;
