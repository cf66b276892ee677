//! Compute kernels, one file per op. Each file holds the scalar reference, whose
//! integer semantics are the definition; the fast paths (`matvec/`: AVX2, AVX-VNNI,
//! NEON, Cortex-M DSP) are tested bit-exact against it. Kernels work on slices the caller owns: they never allocate, and
//! any scratch they need is stated by a `*_scratch_len` function.

pub mod argmax;
pub mod attention;
pub mod gelu;
pub mod layernorm;
pub mod matvec;
pub mod requant;
pub mod rmsnorm;
pub mod rope;
pub mod softmax;

/// Runs `body` compiled for AVX-512 where the CPU has it (with `std`), else as is: the
/// loops of an element-wise kernel, vectorised by the compiler with 512-bit registers
/// and 64-bit lane arithmetic, same code and same results.
macro_rules! dispatch {
    ($avx512:ident, $body:ident($($arg:expr),*)) => {{
        #[cfg(all(target_arch = "x86_64", any(test, feature = "std")))]
        if $crate::kernels::avx512_available() {
            // SAFETY: the CPU supports the features `$avx512` is compiled for
            // (checked just above).
            return unsafe { $avx512($($arg),*) };
        }
        $body($($arg),*)
    }};
}

/// AVX-512 F, BW, DQ and VL, detected at run time (cached by `std`).
#[cfg(all(target_arch = "x86_64", any(test, feature = "std")))]
#[inline(always)]
pub(crate) fn avx512_available() -> bool {
    std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512dq")
        && std::is_x86_feature_detected!("avx512vl")
}

/// Defines `$avx512`: `$body` compiled for AVX-512 (for [`dispatch`]).
macro_rules! avx512_variant {
    ($avx512:ident, $body:ident($($arg:ident: $ty:ty),*)) => {
        avx512_variant!($avx512, $body($($arg: $ty),*) -> ());
    };
    ($avx512:ident, $body:ident($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        #[cfg(all(target_arch = "x86_64", any(test, feature = "std")))]
        #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
        fn $avx512($($arg: $ty),*) -> $ret {
            $body($($arg),*)
        }
    };
}

pub(crate) use {avx512_variant, dispatch};
