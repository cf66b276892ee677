//! Compute kernels, one file per op. Each file holds the scalar reference, whose
//! integer semantics are the definition; the fast paths (`matvec/`: AVX2, AVX-VNNI,
//! NEON, Cortex-M DSP) are tested bit-exact against it. Kernels work on slices the caller owns: they never allocate, and
//! any scratch they need is stated by a `*_scratch_len` function.

pub mod argmax;
pub mod attention;
pub mod gelu;
pub mod layernorm;
pub mod matvec;
pub mod rmsnorm;
pub mod rope;
pub mod softmax;
