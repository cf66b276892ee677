//! Matrix-vector products, `y = W x + b`, with `W` row-major `[out, in]`.

use half::f16;

/// A weight element that the float kernels widen to `f32`.
pub trait Weight: Copy + bytemuck::Pod {
    /// Widens to `f32`.
    fn to_f32(self) -> f32;

    /// Widens `src` into `dst` (equal lengths), element by element unless the type
    /// has a faster bulk conversion.
    #[inline(always)]
    fn widen_into(src: &[Self], dst: &mut [f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = s.to_f32();
        }
    }
}

impl Weight for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
}

impl Weight for f16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }

    /// `half`'s slice conversion: F16C instructions when the target has them (detected
    /// at run time with the `std` feature), else software. Exact either way.
    #[inline(always)]
    fn widen_into(src: &[Self], dst: &mut [f32]) {
        use half::slice::HalfFloatSliceExt;
        let n = src.len().min(dst.len());
        if let (Some(src), Some(dst)) = (src.get(..n), dst.get_mut(..n)) {
            src.convert_to_f32_slice(dst);
        }
    }
}

/// Weights widened per chunk in [`matvec_f32`] (a stack buffer of this many `f32`).
const WIDEN_CHUNK: usize = 64;

/// Independent partial sums per row in [`matvec_f32`]: one AVX register of eight
/// `f32` lanes (two SSE2 ones). More registers measured no faster: the row-at-a-time
/// float pass is bound by streaming the weights.
const LANES: usize = 8;

/// `out[o] = bias[o] + sum_i w[o * x.len() + i] * x[i]`, accumulated in `f32`.
///
/// `w` holds `out.len()` rows of `x.len()` elements; missing rows or bias entries
/// read as zero (never happens for validated models). Weights are widened to `f32` a
/// chunk at a time (tract's convert-then-compute), which lets f16 use bulk conversion.
/// Element `i` is added to partial sum `i % 8`, and the eight sums are combined
/// pairwise at the end (`s[l] + s[l + 4]`, then `+ 2`, then `+ 1`): a fixed order
/// that vectorises (a single running sum cannot, float addition not being
/// associative) and gives the same bits on every target, the AVX build included (no
/// fused multiply-add).
pub fn matvec_f32<W: Weight>(out: &mut [f32], x: &[f32], w: &[W], bias: &[f32]) {
    #[cfg(all(target_arch = "x86_64", any(test, feature = "std")))]
    if std::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU supports AVX (checked just above).
        return unsafe { matvec_f32_avx(out, x, w, bias) };
    }
    matvec_f32_body(out, x, w, bias);
}

/// [`matvec_f32`] compiled for AVX (eight-lane vectors), selected at run time.
#[cfg(all(target_arch = "x86_64", any(test, feature = "std")))]
#[target_feature(enable = "avx")]
fn matvec_f32_avx<W: Weight>(out: &mut [f32], x: &[f32], w: &[W], bias: &[f32]) {
    matvec_f32_body(out, x, w, bias);
}

#[inline(always)]
fn matvec_f32_body<W: Weight>(out: &mut [f32], x: &[f32], w: &[W], bias: &[f32]) {
    let cols = x.len();
    let mut wide = [0.0f32; WIDEN_CHUNK];
    for (o, y) in out.iter_mut().enumerate() {
        let row = w.get(o * cols..(o + 1) * cols).unwrap_or(&[]);
        let mut acc = [0.0f32; LANES];
        for (w_chunk, x_chunk) in row.chunks(WIDEN_CHUNK).zip(x.chunks(WIDEN_CHUNK)) {
            let Some(wide) = wide.get_mut(..w_chunk.len()) else {
                continue;
            };
            W::widen_into(w_chunk, wide);
            // WIDEN_CHUNK is a multiple of LANES, so lane `l` of every chunk holds
            // elements `i` with `i % LANES == l`.
            let mut w8 = wide.chunks_exact(LANES);
            let mut x8 = x_chunk.chunks_exact(LANES);
            for (wv, xv) in (&mut w8).zip(&mut x8) {
                for ((a, wi), xi) in acc.iter_mut().zip(wv).zip(xv) {
                    *a += wi * xi;
                }
            }
            for ((a, wi), xi) in acc.iter_mut().zip(w8.remainder()).zip(x8.remainder()) {
                *a += wi * xi;
            }
        }
        let mut half = LANES / 2;
        while half > 0 {
            let (low, high) = acc.split_at_mut(half);
            for (a, b) in low.iter_mut().zip(high.iter()) {
                *a += *b;
            }
            half /= 2;
        }
        *y = acc[0] + bias.get(o).copied().unwrap_or(0.0);
    }
}

// ---------------------------------------------------------------------------------
// int8: the scalar reference (the definition), then the dispatch to fast paths.
// ---------------------------------------------------------------------------------

/// Longest int8 dot product whose `i32` accumulator cannot overflow:
/// `|sum| <= len * 128 * 128 <= i32::MAX` holds for `len <= 131_071` (`2^17 - 1`).
///
/// Every `in` dimension a validated model can have (`hidden`, `ffn`, `head_dim`) is
/// bounded by the model format's limits well below this; a compile-time assertion in
/// the format's `limits` module (which depends on the kernels, not the reverse) ties
/// the two together.
pub const MAX_DOT_LEN: usize = i32::MAX as usize / (128 * 128);

/// Dot product of two int8 vectors into `i32`, the scalar reference.
///
/// Runs over the common length (`min(a.len(), b.len())`) and sums in wrapping `i32`
/// arithmetic, so every summation order gives the same result; the sum is exact (no
/// wrap) when the common length is at most [`MAX_DOT_LEN`], which the format's config
/// validation guarantees for every dot product of the forward pass.
#[inline]
pub fn dot_i8_reference(a: &[i8], b: &[i8]) -> i32 {
    dot_reference(a, b)
}

/// The scalar dot product both references share: over the common length, products
/// exact in `i32` (at most `2^15 * 2^7`), sums wrapping.
#[inline(always)]
fn dot_reference<A: Copy + Into<i32>>(a: &[A], b: &[i8]) -> i32 {
    let mut acc = 0i32;
    for (&x, &y) in a.iter().zip(b) {
        acc = acc.wrapping_add(x.into() * i32::from(y));
    }
    acc
}

/// int8 matrix-vector product, the scalar reference: for each output row `o` in
/// `0..rows`, calls `store(o, bias[o] + dot(W[o], x))` with the `i32` accumulator (bias
/// added with saturation). `W` is row-major `[rows, x.len()]`; a row that `w` does not
/// hold completely reads as zero, a missing bias as 0. The caller requantizes, so one
/// kernel serves int8 and residual outputs. The accumulator is exact for
/// `x.len() <= MAX_DOT_LEN`.
pub fn matvec_i8_reference(
    rows: usize,
    x: &[i8],
    w: &[i8],
    bias: &[i32],
    mut store: impl FnMut(usize, i32),
) {
    let cols = x.len();
    for o in 0..rows {
        let row = w.get(o * cols..(o + 1) * cols).unwrap_or(&[]);
        let acc = dot_i8_reference(row, x).saturating_add(bias.get(o).copied().unwrap_or(0));
        store(o, acc);
    }
}

/// Dot products of `q` with `out.len()` rows of a strided matrix, the scalar
/// reference: `out[j] = dot_i8_reference(q, keys[j * stride..j * stride + q.len()])`
/// (a row `keys` does not hold completely gives 0). Attention scores: one query head
/// against the same head's columns of every key row (`stride` = hidden).
pub fn dots_i8_reference(out: &mut [i32], q: &[i8], keys: &[i8], stride: usize) {
    for (j, o) in out.iter_mut().enumerate() {
        *o = dot_i8_reference(q, strided_row(keys, j, stride, q.len()));
    }
}

/// Row `j` of a strided matrix, `m[j * stride..][..cols]`; empty if `m` does not hold
/// it completely (or the offsets overflow).
#[inline(always)]
fn strided_row(m: &[i8], j: usize, stride: usize, cols: usize) -> &[i8] {
    j.checked_mul(stride)
        .and_then(|at| Some(at..at.checked_add(cols)?))
        .and_then(|range| m.get(range))
        .unwrap_or(&[])
}

/// Dot products shorter than this skip the dispatched kernels in [`dots_i8_with`].
const SHORT_DOT: usize = 16;

/// [`dots_i8_reference`] for `q.len() == N`: fixed-length products the compiler
/// unrolls (and vectorises where it can). A key row the slice does not hold
/// completely gives 0, as in the reference.
#[inline]
fn short_dots<const N: usize>(out: &mut [i32], q: &[i8], keys: &[i8], stride: usize) {
    let Ok(q) = <&[i8; N]>::try_from(q) else {
        return;
    };
    for (j, o) in out.iter_mut().enumerate() {
        *o = match <&[i8; N]>::try_from(strided_row(keys, j, stride, N)) {
            Ok(key) => {
                let mut acc = 0i32;
                for i in 0..N {
                    acc += i32::from(q[i]) * i32::from(key[i]);
                }
                acc
            }
            Err(_) => 0,
        };
    }
}

/// [`dots_i8_reference`], computed by the fastest available kernel.
#[inline]
pub fn dots_i8(out: &mut [i32], q: &[i8], keys: &[i8], stride: usize) {
    dots_i8_with(Int8Kernel::best(), out, q, keys, stride);
}

/// [`dots_i8_reference`], computed by `kernel` (the reference if it is not
/// available).
#[inline]
pub fn dots_i8_with(kernel: Int8Kernel, out: &mut [i32], q: &[i8], keys: &[i8], stride: usize) {
    // (Not on the Cortex-M DSP kernel, whose per-call set-up is small: measured
    // under QEMU, the plain loop costs it more instructions.)
    if q.len() < SHORT_DOT && !matches!(kernel, Int8Kernel::Dsp) {
        // Heads this short (a decoder's 8) are a handful of products per key: a plain
        // loop over the key rows, unrolled for the common lengths, beats any kernel's
        // per-call set-up.
        match q.len() {
            4 => short_dots::<4>(out, q, keys, stride),
            8 => short_dots::<8>(out, q, keys, stride),
            _ => {
                for (j, o) in out.iter_mut().enumerate() {
                    *o = dot_i8_reference(q, strided_row(keys, j, stride, q.len()));
                }
            }
        }
        return;
    }
    match kernel.for_int8() {
        #[cfg(target_arch = "x86_64")]
        Int8Kernel::AvxVnni if avx_vnni_available() => {
            // SAFETY: the CPU supports AVX-VNNI (checked just above).
            unsafe { vnni::dots(out, q, keys, stride) }
        }
        _ => {
            for (j, o) in out.iter_mut().enumerate() {
                *o = dot_i8_with(kernel, q, strided_row(keys, j, stride, q.len()));
            }
        }
    }
}

/// int8 matrix product over several tokens, the scalar reference: `xs` holds
/// `xs.len() / cols` token rows of `cols` elements; for each token `t` (in order) and
/// output row `o`, calls `store(t, o, acc)` with [`matvec_i8_reference`]'s accumulator
/// for that token. Fast paths may visit `(t, o)` in another order, each exactly once.
/// `cols == 0` means no tokens.
pub fn matmul_i8_reference(
    rows: usize,
    cols: usize,
    xs: &[i8],
    w: &[i8],
    bias: &[i32],
    mut store: impl FnMut(usize, usize, i32),
) {
    if cols == 0 {
        return;
    }
    for (t, x) in xs.chunks_exact(cols).enumerate() {
        matvec_i8_reference(rows, x, w, bias, |o, acc| store(t, o, acc));
    }
}

/// An implementation of the int8 dot products. All give bit-identical results (the
/// tests check it natively for the host's kernels, on emulated CPUs for the others:
/// `examples/kernel-check-m4` for the Cortex-M DSP kernel, `tools/neon-check.sh` for
/// the AArch64 ones; AVX-VNNI is tested only where the CPU has it); they differ only
/// in speed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Int8Kernel {
    /// The scalar reference, portable.
    Scalar,
    /// x86-64 AVX2: 16 products per instruction (`vpmaddwd` on sign-extended int16),
    /// four weight rows per pass sharing each widened activation load.
    Avx2,
    /// x86-64 AVX-VNNI: 32 products per instruction (`vpdpbusd`, weights offset to
    /// unsigned), four weight rows per pass; [`matmul_i8`] takes tiles of 3 weight rows
    /// by 4 tokens (the only kernel with a multi-token path so far).
    AvxVnni,
    /// x86-64 AVX-512 VNNI (with BW and VL): the int16-by-int8 products of the decoder
    /// ([`matvec_i16`], [`matmul_i16_with`]) by `vpdpwssd` on 512-bit registers, 32 products
    /// per instruction, tiles of 4 weight rows by 4 tokens; the encoder's int8 matrix
    /// product into a tile ([`matmul_i8_into_with`]) by `vpdpbusd` with 16 tokens in
    /// the lanes, tiles of 16 weight rows by 16 tokens; the other int8 products as
    /// [`Int8Kernel::AvxVnni`] where the CPU has it, else as [`Int8Kernel::Avx2`].
    Avx512Vnni,
    /// Cortex-M4/M7 DSP extension: `SMLAD` dual 16-bit multiply-accumulate on bytes
    /// unpacked with `SXTB16`, four weight rows per pass; [`matmul_i8`] takes tiles of
    /// one weight row by 4 tokens, the activations unpacked to int16 once.
    Dsp,
    /// AArch64 NEON: 16 products per step (`SMULL`/`SMULL2` into int16, `SADALP`
    /// pairwise into `i32` lanes), four weight rows per pass.
    Neon,
    /// AArch64 dot-product extension (FEAT_DotProd, Armv8.2-A and later): `SDOT`, 16
    /// products into four `i32` lanes per instruction, four weight rows per pass.
    NeonDot,
}

impl Int8Kernel {
    /// Every kernel, the reference first.
    pub const ALL: [Self; 7] = [
        Self::Scalar,
        Self::Avx2,
        Self::AvxVnni,
        Self::Avx512Vnni,
        Self::Dsp,
        Self::Neon,
        Self::NeonDot,
    ];

    /// Whether this kernel can run here: compiled in for this target and, with `std`
    /// on x86-64 (AVX2, AVX-VNNI) or AArch64 (dot product), supported by this CPU
    /// (detected at run time and cached).
    #[inline]
    pub fn is_available(self) -> bool {
        match self {
            Self::Scalar => true,
            Self::Avx2 => avx2_available(),
            Self::AvxVnni => avx_vnni_available(),
            Self::Avx512Vnni => avx512_vnni_available(),
            Self::Dsp => cfg!(tinyformer_dsp),
            Self::Neon => cfg!(all(target_arch = "aarch64", target_feature = "neon")),
            Self::NeonDot => dotprod_available(),
        }
    }

    /// The kernel to run for a stored choice `self`: `self` where the choice is made
    /// at run time (with `std`: the host's CPU is detected), else the target's one
    /// fast kernel, [`Int8Kernel::best`], a constant, so that a firmware's forward
    /// pass links only the kernel it runs (a choice read from memory would link the
    /// scalar fallback at every product). The model types store `best()` at load on
    /// every target; only `std` builds can choose another (`with_kernel`).
    #[inline(always)]
    pub fn resolved(self) -> Self {
        if cfg!(feature = "std") {
            self
        } else {
            Self::best()
        }
    }

    /// The fastest available kernel; [`dot_i8`], [`dots_i8`], [`matvec_i8`],
    /// [`matmul_i8`], [`matvec_i16`] and [`dots_i16`] use it. A model chooses it once,
    /// when it is loaded, and passes it to the `*_with` variants.
    #[inline]
    pub fn best() -> Self {
        // Fastest first; availability is `is_available`'s, so the two cannot disagree.
        [
            Self::Dsp,
            Self::Avx512Vnni,
            Self::AvxVnni,
            Self::Avx2,
            Self::NeonDot,
            Self::Neon,
        ]
        .into_iter()
        .find(|k| k.is_available())
        .unwrap_or(Self::Scalar)
    }
}

impl Int8Kernel {
    /// Whether [`matmul_i16_with`] has a multi-token path on this kernel (reads each
    /// weight row once for several tokens) rather than running [`matvec_i16_with`]
    /// token by token. A constant for a firmware's resolved kernel, so a caller that
    /// branches on it links only the path its target runs.
    #[inline(always)]
    pub fn has_i16_matmul(self) -> bool {
        matches!(self, Self::Avx512Vnni)
    }

    /// The kernel of the int8-by-int8 products: [`Int8Kernel::Avx512Vnni`] has no
    /// int8 path of its own and runs AVX-VNNI's where the CPU has it, else AVX2's
    /// (every AVX-512 CPU has AVX2); every other kernel is its own.
    #[inline(always)]
    fn for_int8(self) -> Self {
        match self {
            Self::Avx512Vnni if avx_vnni_available() => Self::AvxVnni,
            Self::Avx512Vnni => Self::Avx2,
            kernel => kernel,
        }
    }
}

/// AVX2 at run time with `std` (or in tests), else only if compiled for it.
#[inline(always)]
fn avx2_available() -> bool {
    #[cfg(all(target_arch = "x86_64", any(test, feature = "std")))]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(all(target_arch = "x86_64", any(test, feature = "std"))))]
    {
        cfg!(all(target_arch = "x86_64", target_feature = "avx2"))
    }
}

/// AVX-VNNI (CPUID leaf 7, sub-leaf 1, EAX bit 4) on a CPU with AVX2, detected at run
/// time with `std` (or in tests) and cached; never without `std` (no detection there).
#[inline(always)]
fn avx_vnni_available() -> bool {
    #[cfg(all(target_arch = "x86_64", any(test, feature = "std")))]
    {
        use core::sync::atomic::{AtomicU8, Ordering};
        // 0 unknown, 1 absent, 2 present.
        static STATE: AtomicU8 = AtomicU8::new(0);
        match STATE.load(Ordering::Relaxed) {
            0 => {
                // AVX2 detection also checks that the OS saves the YMM registers (and
                // is false under Miri, which cannot run CPUID).
                let present = avx2_available() && {
                    // SAFETY: CPUID exists on every x86-64 CPU; leaf 7 exists when AVX2
                    // is reported (AVX2 is itself a leaf 7 flag). (`__cpuid_count` is a
                    // safe function since Rust 1.89; the MSRV needs the block.)
                    #[allow(unused_unsafe)]
                    let leaf = unsafe { core::arch::x86_64::__cpuid_count(7, 1) };
                    leaf.eax & (1 << 4) != 0
                };
                STATE.store(if present { 2 } else { 1 }, Ordering::Relaxed);
                present
            }
            state => state == 2,
        }
    }
    #[cfg(not(all(target_arch = "x86_64", any(test, feature = "std"))))]
    {
        false
    }
}

/// AVX-512 F/BW/VL and VNNI at run time with `std` (or in tests); never without `std`
/// (no detection there).
#[inline(always)]
fn avx512_vnni_available() -> bool {
    #[cfg(all(target_arch = "x86_64", any(test, feature = "std")))]
    {
        std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(all(target_arch = "x86_64", any(test, feature = "std"))))]
    {
        false
    }
}

/// The AArch64 dot-product extension (with NEON) at run time with `std` (or in tests),
/// else only if compiled for it.
#[inline(always)]
fn dotprod_available() -> bool {
    #[cfg(all(
        target_arch = "aarch64",
        target_feature = "neon",
        any(test, feature = "std")
    ))]
    {
        std::arch::is_aarch64_feature_detected!("dotprod")
    }
    #[cfg(not(all(
        target_arch = "aarch64",
        target_feature = "neon",
        any(test, feature = "std")
    )))]
    {
        cfg!(all(
            target_arch = "aarch64",
            target_feature = "neon",
            target_feature = "dotprod"
        ))
    }
}

/// [`dot_i8_reference`], computed by the fastest available kernel.
#[inline]
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    dot_i8_with(Int8Kernel::best(), a, b)
}

/// [`dot_i8_reference`], computed by `kernel` (the reference if it is not available).
#[inline]
pub fn dot_i8_with(kernel: Int8Kernel, a: &[i8], b: &[i8]) -> i32 {
    match kernel.for_int8() {
        #[cfg(target_arch = "x86_64")]
        Int8Kernel::Avx2 if avx2_available() => {
            // SAFETY: the CPU supports AVX2 (checked just above).
            unsafe { avx2::dot(a, b) }
        }
        #[cfg(target_arch = "x86_64")]
        Int8Kernel::AvxVnni if avx_vnni_available() => {
            // SAFETY: the CPU supports AVX-VNNI (checked just above).
            unsafe { vnni::dot(a, b) }
        }
        #[cfg(tinyformer_dsp)]
        Int8Kernel::Dsp => dsp::dot(a, b),
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        Int8Kernel::NeonDot if dotprod_available() => {
            // SAFETY: the CPU supports the dot-product extension (checked just above).
            unsafe { neon::dot_sdot(a, b) }
        }
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        Int8Kernel::Neon => {
            // SAFETY: this target has NEON (cfg above).
            unsafe { neon::dot(a, b) }
        }
        _ => dot_i8_reference(a, b),
    }
}

/// [`matvec_i8_reference`], computed by the fastest available kernel.
#[inline]
pub fn matvec_i8(rows: usize, x: &[i8], w: &[i8], bias: &[i32], store: impl FnMut(usize, i32)) {
    matvec_i8_with(Int8Kernel::best(), rows, x, w, bias, store);
}

/// [`matvec_i8_reference`], computed by `kernel` (the reference if it is not
/// available).
#[inline]
pub fn matvec_i8_with(
    kernel: Int8Kernel,
    rows: usize,
    x: &[i8],
    w: &[i8],
    bias: &[i32],
    store: impl FnMut(usize, i32),
) {
    match kernel.for_int8() {
        #[cfg(target_arch = "x86_64")]
        Int8Kernel::Avx2 if avx2_available() => {
            // SAFETY: the CPU supports AVX2 (checked just above).
            unsafe { avx2::matvec(rows, x, w, bias, store) }
        }
        #[cfg(target_arch = "x86_64")]
        Int8Kernel::AvxVnni if avx_vnni_available() => {
            // SAFETY: the CPU supports AVX-VNNI (checked just above).
            unsafe { vnni::matvec(rows, x, w, bias, store) }
        }
        #[cfg(tinyformer_dsp)]
        Int8Kernel::Dsp => dsp::matvec(rows, x, w, bias, store),
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        Int8Kernel::NeonDot if dotprod_available() => {
            // SAFETY: the CPU supports the dot-product extension (checked just above).
            unsafe { neon::matvec_sdot(rows, x, w, bias, store) }
        }
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        Int8Kernel::Neon => {
            // SAFETY: this target has NEON (cfg above).
            unsafe { neon::matvec(rows, x, w, bias, store) }
        }
        _ => matvec_i8_reference(rows, x, w, bias, store),
    }
}

/// [`matmul_i8_reference`], computed by the fastest available kernel.
#[inline]
pub fn matmul_i8(
    rows: usize,
    cols: usize,
    xs: &[i8],
    w: &[i8],
    bias: &[i32],
    store: impl FnMut(usize, usize, i32),
) {
    matmul_i8_with(Int8Kernel::best(), rows, cols, xs, w, bias, store);
}

/// [`matmul_i8_reference`], computed by `kernel` (the reference if it is not
/// available). Kernels without a multi-token path run their matrix-vector product
/// token by token.
#[inline]
pub fn matmul_i8_with(
    kernel: Int8Kernel,
    rows: usize,
    cols: usize,
    xs: &[i8],
    w: &[i8],
    bias: &[i32],
    mut store: impl FnMut(usize, usize, i32),
) {
    match kernel.for_int8() {
        #[cfg(target_arch = "x86_64")]
        Int8Kernel::AvxVnni if avx_vnni_available() => {
            // SAFETY: the CPU supports AVX-VNNI (checked just above).
            unsafe { vnni::matmul(rows, cols, xs, w, bias, store) }
        }
        #[cfg(all(tinyformer_dsp, not(feature = "small-kernels")))]
        Int8Kernel::Dsp => dsp::matmul(rows, cols, xs, w, bias, store),
        _ if cols == 0 => {}
        _ => {
            for (t, x) in xs.chunks_exact(cols).enumerate() {
                matvec_i8_with(kernel, rows, x, w, bias, |o, acc| store(t, o, acc));
            }
        }
    }
}

/// A strided int8 matrix: `rows` rows of `cols` elements, row `r` at
/// `data[r * stride..][..cols]`. A row `data` does not hold completely reads as empty
/// (its dot products are 0), as everywhere in this module.
#[derive(Clone, Copy, Debug)]
pub struct RowsI8<'a> {
    /// The elements.
    pub data: &'a [i8],
    /// Number of rows.
    pub rows: usize,
    /// Elements per row.
    pub cols: usize,
    /// Elements from the start of one row to the next.
    pub stride: usize,
}

impl<'a> RowsI8<'a> {
    /// The complete rows of a row-major matrix `cols` wide (none if `cols` is 0).
    pub fn contiguous(data: &'a [i8], cols: usize) -> Self {
        let rows = data.len().checked_div(cols).unwrap_or(0);
        Self {
            data,
            rows,
            cols,
            stride: cols,
        }
    }

    /// Row `r`; empty if `data` does not hold it completely.
    #[inline(always)]
    pub fn row(&self, r: usize) -> &'a [i8] {
        strided_row(self.data, r, self.stride, self.cols)
    }

    /// How many of the first rows `data` holds completely.
    #[inline]
    fn held(&self) -> usize {
        match self.data.len().checked_sub(self.cols) {
            None => 0,
            Some(_) if self.stride == 0 => self.rows,
            Some(room) => self.rows.min(room / self.stride + 1),
        }
    }
}

/// Products of every row of `x` with every row of `w` into a tile, the scalar
/// reference: `out[t * out_stride + o] = dot(x[t], w[o])` plus `bias[o]` with
/// saturation (a missing bias is 0), for `t < x.rows`, `o < w.rows`, where `out` holds
/// that element. Dot products run over the common length, as [`dot_i8_reference`].
pub fn matmul_i8_strided_reference(
    x: RowsI8<'_>,
    w: RowsI8<'_>,
    bias: &[i32],
    out: &mut [i32],
    out_stride: usize,
) {
    for t in 0..x.rows {
        for o in 0..w.rows {
            let at = t.checked_mul(out_stride).and_then(|at| at.checked_add(o));
            if let Some(y) = at.and_then(|at| out.get_mut(at)) {
                let dot = dot_i8_reference(x.row(t), w.row(o));
                *y = dot.saturating_add(bias.get(o).copied().unwrap_or(0));
            }
        }
    }
}

/// Attention's weighted sums of values for a block of up to 64 query rows on
/// [`Int8Kernel::Avx512Vnni`]: for every row `t < rows`, `ctx[t * hidden + d] = sum_j
/// probs[t * keys + j] * values[j * hidden + d]` for `d < dims`, `j < keys` (`ctx`
/// and `values` start at the head's first column; `probs` holds Q15 probabilities,
/// `0..=2^15`). The kernel multiplies int16 probabilities: a row with a probability of
/// exactly `2^15` (one certain key), which int16 cannot hold, gets a wrong sum and its
/// bit set in the returned mask, for the caller's reference path to overwrite. `None`
/// (nothing written) where the kernel does not run: another kernel, a CPU without it,
/// more than 64 rows, or slices too short.
pub(crate) fn weighted_values_rows_with(
    kernel: Int8Kernel,
    ctx: &mut [i32],
    probs: &[i32],
    values: &[i8],
    (hidden, dims): (usize, usize),
    (rows, keys): (usize, usize),
) -> Option<u64> {
    let fits = |len: usize, stride: usize, n: usize, last: usize| {
        n == 0
            || (n - 1)
                .checked_mul(stride)
                .and_then(|end| end.checked_add(last))
                .is_some_and(|end| end <= len)
    };
    let runs = kernel == Int8Kernel::Avx512Vnni
        && avx512_vnni_available()
        && rows <= 64
        && dims <= hidden
        && fits(probs.len(), keys, rows, keys)
        && fits(values.len(), hidden, keys, dims)
        && fits(ctx.len(), hidden, rows, dims);
    #[cfg(target_arch = "x86_64")]
    if runs {
        let mut wide = 0u64;
        for (t, row) in probs.chunks_exact(keys.max(1)).enumerate().take(rows) {
            if row.iter().copied().max().unwrap_or(0) > i32::from(i16::MAX) {
                wide |= 1 << t;
            }
        }
        // SAFETY: the CPU supports AVX-512 F/BW/VL and VNNI, and the slices hold what
        // the kernel reads and writes (both checked above); the wide rows' sums are
        // written too and the caller overwrites them.
        unsafe {
            avx512::weighted_values_rows(
                ctx,
                hidden,
                (probs, keys),
                (values, hidden),
                (rows, keys, dims),
            )
        };
        return Some(wide);
    }
    let _ = runs;
    None
}

/// [`matmul_i8_strided_reference`], computed by `kernel`: [`Int8Kernel::Avx512Vnni`]'s
/// own tile kernel (16 tokens in the lanes of a 512-bit register, tiles of 16 `w` rows
/// by 16 `x` rows, `src/kernels/matvec/avx512.rs`) when the columns are a multiple of
/// 4 and `x` and `out` hold every row; else `kernel`'s matrix product for contiguous
/// operands, or its strided dot products ([`dots_i8_with`]) row by row. The int8
/// forward pass's dense layers and attention scores: it requantizes the tile
/// afterwards with vector instructions ([`crate::kernels::requant`]), rather than per
/// element in a `store` callback.
#[inline]
pub fn matmul_i8_strided_with(
    kernel: Int8Kernel,
    x: RowsI8<'_>,
    w: RowsI8<'_>,
    bias: &[i32],
    out: &mut [i32],
    out_stride: usize,
) {
    let cols = x.cols.min(w.cols);
    let x = RowsI8 { cols, ..x };
    let w = RowsI8 { cols, ..w };
    // Every element `(t, o)` inside `out` (checked without overflow).
    let fits = x.rows == 0
        || (out_stride >= w.rows
            && (x.rows - 1)
                .checked_mul(out_stride)
                .and_then(|end| end.checked_add(w.rows))
                .is_some_and(|end| end <= out.len()));
    let x_held = x.held() == x.rows;
    #[cfg(target_arch = "x86_64")]
    if kernel == Int8Kernel::Avx512Vnni
        && avx512_vnni_available()
        && cols > 0
        && cols.is_multiple_of(4)
        && x_held
        && fits
    {
        // SAFETY: the CPU supports AVX-512 F/BW/VL and VNNI (checked just above); `x`
        // holds its rows and `out` every element (checked above).
        return unsafe { avx512::matmul_i8_into(x, w, bias, out, out_stride) };
    }
    // (`small-kernels`: every product through the per-row dot products below, one code
    // path: 2.6 KB less in the size firmware, 7.0 instead of 3.5 instructions per MAC
    // at opt-level "z", see docs/FIRMWARE.md.)
    #[cfg(all(tinyformer_dsp, not(feature = "small-kernels")))]
    if x_held
        && fits
        && cols > 0
        && x.stride >= cols
        && w.stride >= cols
        && kernel.for_int8() == Int8Kernel::Dsp
    {
        return dsp::matmul_into(x, (w, bias), out, out_stride);
    }
    if x_held
        && fits
        && x.stride == cols
        && w.stride == cols
        && cols > 0
        && !cfg!(feature = "small-kernels")
    {
        let xs = x.data.get(..x.rows * cols).unwrap_or(&[]);
        matmul_i8_with(kernel, w.rows, cols, xs, w.data, bias, |t, o, acc| {
            if let Some(y) = out.get_mut(t * out_stride + o) {
                *y = acc;
            }
        });
        return;
    }
    for t in 0..x.rows {
        let start = t.saturating_mul(out_stride);
        let Some(row) = out.get_mut(start..) else {
            break;
        };
        let n = row.len().min(w.rows);
        let row = row.get_mut(..n).unwrap_or(&mut []);
        dots_i8_with(kernel, row, x.row(t), w.data, w.stride);
        for (y, &b) in row.iter_mut().zip(bias) {
            *y = y.saturating_add(b);
        }
    }
}

/// [`matmul_i8_strided_with`] for row-major operands: `out[t * rows + o]` for every
/// complete token row `t` of `xs` (`cols` wide) and output row `o < rows` of `w`.
#[inline]
pub fn matmul_i8_into_with(
    kernel: Int8Kernel,
    rows: usize,
    cols: usize,
    xs: &[i8],
    w: &[i8],
    bias: &[i32],
    out: &mut [i32],
) {
    let w = RowsI8 {
        data: w,
        rows,
        cols,
        stride: cols,
    };
    matmul_i8_strided_with(kernel, RowsI8::contiguous(xs, cols), w, bias, out, rows);
}

/// The row loop the fast paths share, with the reference's semantics: complete groups
/// of four rows go through `dot4` (four rows of `x.len()`, contiguous), the remaining
/// rows, and any row `w` does not hold completely, through `dot`.
#[inline(always)]
#[allow(dead_code)] // unused on targets without a fast path
fn matvec_by_four<X>(
    rows: usize,
    x: &[X],
    w: &[i8],
    bias: &[i32],
    mut store: impl FnMut(usize, i32),
    dot4: impl Fn(&[i8], &[X]) -> [i32; 4],
    dot: impl Fn(&[i8], &[X]) -> i32,
) {
    let cols = x.len();
    let bias_at = |o: usize| bias.get(o).copied().unwrap_or(0);
    let mut o = 0;
    while o + 4 <= rows {
        match w.get(o * cols..(o + 4) * cols) {
            Some(w4) => {
                for (r, acc) in dot4(w4, x).into_iter().enumerate() {
                    store(o + r, acc.saturating_add(bias_at(o + r)));
                }
            }
            None => break,
        }
        o += 4;
    }
    for o in o..rows {
        let row = w.get(o * cols..(o + 1) * cols).unwrap_or(&[]);
        store(o, dot(row, x).saturating_add(bias_at(o)));
    }
}

/// Dot product of int16 activations `x` with int8 weights `w` into `i32`, the scalar
/// reference: over the common length, wrapping, so every summation order gives the
/// same result; exact when every `|x| <= i16_activation_limit(len)`
/// ([`crate::quant::narrow_row_i16`] guarantees it).
#[inline]
pub fn dot_i16_reference(x: &[i16], w: &[i8]) -> i32 {
    dot_reference(x, w)
}

/// Matrix-vector product of int8 weights with int16 activations, the scalar
/// reference: for each output row `o` in `0..rows`, calls `store(o, dot(W[o], x))`.
/// `W` is row-major `[rows, x.len()]`; a row `w` does not hold completely reads as
/// zero. The decoder's products (int16 activations narrowed per token).
pub fn matvec_i16_reference(rows: usize, x: &[i16], w: &[i8], mut store: impl FnMut(usize, i32)) {
    let cols = x.len();
    for o in 0..rows {
        let row = w.get(o * cols..(o + 1) * cols).unwrap_or(&[]);
        store(o, dot_i16_reference(x, row));
    }
}

/// [`matvec_i16_reference`], computed by the fastest available kernel.
#[inline]
pub fn matvec_i16(rows: usize, x: &[i16], w: &[i8], store: impl FnMut(usize, i32)) {
    matvec_i16_with(Int8Kernel::best(), rows, x, w, store);
}

/// [`matvec_i16_reference`], computed by `kernel`: AVX2 (also for AVX-VNNI, whose
/// CPUs have AVX2) and the Cortex-M DSP kernel have their own; the others run the
/// reference, which compilers vectorise.
#[inline]
pub fn matvec_i16_with(
    kernel: Int8Kernel,
    rows: usize,
    x: &[i16],
    w: &[i8],
    store: impl FnMut(usize, i32),
) {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Int8Kernel::Avx512Vnni if avx512_vnni_available() => {
            // SAFETY: the CPU supports AVX-512 BW/VL/VNNI (checked just above).
            unsafe { avx512::matvec_i16(rows, x, w, store) }
        }
        #[cfg(target_arch = "x86_64")]
        Int8Kernel::Avx2 | Int8Kernel::AvxVnni if avx2_available() => {
            // SAFETY: the CPU supports AVX2 (checked just above).
            unsafe { avx2::matvec_i16(rows, x, w, store) }
        }
        #[cfg(tinyformer_dsp)]
        Int8Kernel::Dsp => dsp::matvec_i16(rows, x, w, store),
        _ => matvec_i16_reference(rows, x, w, store),
    }
}

/// Product of int8 weights with several tokens' int16 activation rows, the scalar
/// reference: `xs` holds `xs.len() / cols` token rows of `cols` elements; for each
/// token `t` (in order) and output row `o`, calls `store(t, o, acc)` with
/// [`matvec_i16_reference`]'s accumulator for that token. Fast paths may visit
/// `(t, o)` in another order, each exactly once. `cols == 0` means no tokens. The
/// decoder's prompt (prefill) products.
pub fn matmul_i16_reference(
    rows: usize,
    cols: usize,
    xs: &[i16],
    w: &[i8],
    mut store: impl FnMut(usize, usize, i32),
) {
    if cols == 0 {
        return;
    }
    for (t, x) in xs.chunks_exact(cols).enumerate() {
        matvec_i16_reference(rows, x, w, |o, acc| store(t, o, acc));
    }
}

/// [`matmul_i16_reference`], computed by `kernel`: AVX-512 VNNI in tiles that read
/// each weight row once per four tokens; every other kernel token by token through
/// [`matvec_i16_with`].
#[inline]
pub fn matmul_i16_with(
    kernel: Int8Kernel,
    rows: usize,
    cols: usize,
    xs: &[i16],
    w: &[i8],
    mut store: impl FnMut(usize, usize, i32),
) {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Int8Kernel::Avx512Vnni if avx512_vnni_available() => {
            // SAFETY: the CPU supports AVX-512 BW/VL/VNNI (checked just above).
            unsafe { avx512::matmul_i16(rows, cols, xs, w, store) }
        }
        _ if cols == 0 => {}
        _ => {
            for (t, x) in xs.chunks_exact(cols).enumerate() {
                matvec_i16_with(kernel, rows, x, w, |o, acc| store(t, o, acc));
            }
        }
    }
}

/// Attention scores of an int16 query against int8 keys, the scalar reference:
/// `out[j] = dot_i16_reference(q, keys[j * stride..][..q.len()])` (a key row the
/// slice does not hold completely gives 0).
pub fn dots_i16_reference(out: &mut [i32], q: &[i16], keys: &[i8], stride: usize) {
    for (j, o) in out.iter_mut().enumerate() {
        *o = dot_i16_reference(q, strided_row(keys, j, stride, q.len()));
    }
}

/// [`dots_i16_reference`], computed by the fastest available kernel.
#[inline]
pub fn dots_i16(out: &mut [i32], q: &[i16], keys: &[i8], stride: usize) {
    dots_i16_with(Int8Kernel::best(), out, q, keys, stride);
}

/// [`dots_i16_reference`], computed by `kernel` (decoder heads are short: the
/// Cortex-M DSP kernel packs the query once for all keys; every other kernel runs the
/// plain loop, which compilers unroll and vectorise, and which beats any call set-up).
#[inline]
pub fn dots_i16_with(kernel: Int8Kernel, out: &mut [i32], q: &[i16], keys: &[i8], stride: usize) {
    match kernel {
        // `dsp::dots_i16` returns false, having written nothing, for a shape it has no
        // path for; the reference computes it then.
        #[cfg(tinyformer_dsp)]
        Int8Kernel::Dsp if dsp::dots_i16(out, q, keys, stride) => {}
        _ => dots_i16_reference(out, q, keys, stride),
    }
}

/// A query element type of integer attention: int8 (the encoder) or int16 (the
/// decoder), each with its score kernel.
pub trait QueryElem: Copy {
    /// `out[j] = q . keys[j * stride..][..q.len()]` in exact `i32`, by `kernel`
    /// ([`dots_i8_with`], [`dots_i16_with`]).
    fn dots_with(kernel: Int8Kernel, out: &mut [i32], q: &[Self], keys: &[i8], stride: usize);

    /// [`QueryElem::dots_with`] by the fastest available kernel.
    #[inline]
    fn dots(out: &mut [i32], q: &[Self], keys: &[i8], stride: usize) {
        Self::dots_with(Int8Kernel::best(), out, q, keys, stride);
    }
}

impl QueryElem for i8 {
    #[inline]
    fn dots_with(kernel: Int8Kernel, out: &mut [i32], q: &[i8], keys: &[i8], stride: usize) {
        dots_i8_with(kernel, out, q, keys, stride);
    }
}

impl QueryElem for i16 {
    #[inline]
    fn dots_with(kernel: Int8Kernel, out: &mut [i32], q: &[i16], keys: &[i8], stride: usize) {
        dots_i16_with(kernel, out, q, keys, stride);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(tinyformer_dsp)]
mod dsp;
/// The attention's weighted sum of values on the DSP (see there).
#[cfg(tinyformer_dsp)]
pub(crate) use dsp::weighted_values as weighted_values_dsp;
#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
mod neon;
#[cfg(target_arch = "x86_64")]
mod vnni;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::XorShift64Star;

    #[test]
    fn float_matvec_small() {
        let w = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut out = [0.0f32; 2];
        matvec_f32(&mut out, &[1.0, 0.5, -1.0], &w, &[0.25, -0.25]);
        assert_eq!(out, [1.0 + 1.0 - 3.0 + 0.25, 4.0 + 2.5 - 6.0 - 0.25]);
        let wh: [f16; 6] = w.map(f16::from_f32);
        let mut out16 = [0.0f32; 2];
        matvec_f32(&mut out16, &[1.0, 0.5, -1.0], &wh, &[0.25, -0.25]);
        assert_eq!(out, out16);
    }

    #[test]
    fn int8_matvec_extremes() {
        let x = [-128i8; 64];
        let w = [-128i8; 128];
        for kernel in available() {
            let mut got = [0i32; 2];
            matvec_i8_with(kernel, 2, &x, &w, &[i32::MAX, 5], |o, v| got[o] = v);
            assert_eq!(got, [i32::MAX, 64 * 16384 + 5], "{kernel:?}");
        }
    }

    /// The kernels this machine can run (the reference always among them).
    fn available() -> impl Iterator<Item = Int8Kernel> {
        Int8Kernel::ALL.into_iter().filter(|k| k.is_available())
    }

    /// The high byte of the next 32 bits.
    fn random_i8(rng: &mut XorShift64Star) -> i8 {
        (rng.next_u32() >> 24) as i8
    }

    /// Vectors of length `len`: random, all -128, all 127, alternating extremes.
    fn patterns(len: usize, rng: &mut XorShift64Star) -> [Vec<i8>; 4] {
        [
            (0..len).map(|_| random_i8(rng)).collect(),
            vec![-128; len],
            vec![127; len],
            (0..len)
                .map(|i| if i % 3 == 0 { 127 } else { -128 })
                .collect(),
        ]
    }

    #[test]
    fn dot_kernels_match_reference() {
        let mut rng = XorShift64Star::new(1);
        // Miri interprets every instruction: a sample of the lengths there.
        let lens: Vec<usize> = if cfg!(miri) {
            vec![0, 1, 15, 16, 17, 33, 100]
        } else {
            (0..=300).collect()
        };
        for kernel in available() {
            for &len in &lens {
                let a = patterns(len, &mut rng);
                let b = patterns(len, &mut rng);
                for x in &a {
                    for y in &b {
                        let want = dot_i8_reference(x, y);
                        assert_eq!(dot_i8_with(kernel, x, y), want, "{kernel:?} len {len}");
                        // Unequal lengths run over the common prefix.
                        let short = &y[..len / 2];
                        assert_eq!(
                            dot_i8_with(kernel, x, short),
                            dot_i8_reference(x, short),
                            "{kernel:?} len {len}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn matvec_kernels_match_reference() {
        let mut rng = XorShift64Star::new(2);
        let biases = [0, 1, -7, i32::MAX, i32::MIN, 1 << 30];
        let (rows_max, cols_list): (usize, &[usize]) = if cfg!(miri) {
            (5, &[0, 1, 16, 17, 33])
        } else {
            (
                9,
                &[
                    0, 1, 3, 4, 5, 15, 16, 17, 31, 32, 33, 64, 100, 127, 300, 384,
                ],
            )
        };
        for kernel in available() {
            for rows in 0..=rows_max {
                for &cols in cols_list {
                    for (x, w) in patterns(cols, &mut rng)
                        .into_iter()
                        .zip(patterns(rows * cols, &mut rng))
                    {
                        let bias: Vec<i32> = (0..rows).map(|o| biases[o % biases.len()]).collect();
                        // Full weights, then weights missing the last rows (read as zero)
                        // and a short bias.
                        for (w, bias) in [
                            (&w[..], &bias[..]),
                            (&w[..w.len() * 2 / 3], &bias[..rows / 2]),
                        ] {
                            let mut want = vec![0; rows];
                            matvec_i8_reference(rows, &x, w, bias, |o, v| want[o] = v);
                            let mut got = vec![0; rows];
                            let mut calls = 0;
                            matvec_i8_with(kernel, rows, &x, w, bias, |o, v| {
                                got[o] = v;
                                calls += 1;
                            });
                            assert_eq!(calls, rows);
                            assert_eq!(got, want, "{kernel:?} {rows}x{cols}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn matmul_kernels_match_reference() {
        let mut rng = XorShift64Star::new(3);
        let (tokens_max, rows_max, cols_list): (usize, usize, &[usize]) = if cfg!(miri) {
            (5, 3, &[0, 1, 33])
        } else {
            (9, 7, &[0, 1, 5, 31, 32, 33, 64, 100, 384])
        };
        for kernel in available() {
            for tokens in 0..=tokens_max {
                for rows in 0..=rows_max {
                    for &cols in cols_list {
                        for (xs, w) in patterns(tokens * cols, &mut rng)
                            .into_iter()
                            .zip(patterns(rows * cols, &mut rng))
                        {
                            let bias: Vec<i32> = (0..rows as i32).map(|o| o - 2).collect();
                            // Full weights, then weights missing the last rows.
                            for w in [&w[..], &w[..w.len() * 2 / 3]] {
                                let mut want = vec![None; tokens * rows];
                                matmul_i8_reference(rows, cols, &xs, w, &bias, |t, o, v| {
                                    want[t * rows + o] = Some(v)
                                });
                                let mut got = vec![None; tokens * rows];
                                matmul_i8_with(kernel, rows, cols, &xs, w, &bias, |t, o, v| {
                                    assert!(got[t * rows + o].replace(v).is_none(), "twice");
                                });
                                let name = format!("{kernel:?} {tokens}x{rows}x{cols}");
                                assert_eq!(got, want, "{name}");
                                if cols > 0 {
                                    assert!(got.iter().all(Option::is_some), "{name}");
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn matmul_into_kernels_match_reference() {
        let mut rng = XorShift64Star::new(7);
        // Token counts across the 16-lane blocks and 64-token chunks, rows across the
        // 16-row tiles, columns across the 256-column chunks and not multiples of 4.
        let (tokens_list, rows_list, cols_list): (&[usize], &[usize], &[usize]) = if cfg!(miri) {
            (&[0, 1, 3], &[0, 1, 2], &[0, 1, 8])
        } else {
            (
                &[0, 1, 15, 16, 17, 64, 70],
                &[0, 1, 2, 16, 17, 40],
                &[0, 1, 4, 33, 64, 96, 256, 260, 516],
            )
        };
        for kernel in available() {
            for &tokens in tokens_list {
                for &rows in rows_list {
                    for &cols in cols_list {
                        for (xs, w) in patterns(tokens * cols, &mut rng)
                            .into_iter()
                            .zip(patterns(rows * cols, &mut rng))
                        {
                            // Small biases, then extremes that saturate.
                            let small: Vec<i32> = (0..rows as i32).map(|o| o - 2).collect();
                            let extreme: Vec<i32> = (0..rows)
                                .map(|o| {
                                    if o % 2 == 0 {
                                        i32::MAX - 5
                                    } else {
                                        i32::MIN + 5
                                    }
                                })
                                .collect();
                            for (w, bias) in [
                                (&w[..], &small[..]),
                                (&w[..], &extreme[..]),
                                // Weights missing the last rows, a bias missing some.
                                (&w[..w.len() * 2 / 3], &small[..rows / 2]),
                            ] {
                                let mut want = vec![0; tokens * rows];
                                matmul_i8_reference(rows, cols, &xs, w, bias, |t, o, v| {
                                    want[t * rows + o] = v
                                });
                                let mut got = vec![7; tokens * rows];
                                matmul_i8_into_with(kernel, rows, cols, &xs, w, bias, &mut got);
                                let name = format!("{kernel:?} {tokens}x{rows}x{cols}");
                                if cols > 0 {
                                    assert_eq!(got, want, "{name}");
                                }
                                // A tile one element short: the rest as the reference.
                                if tokens > 0 && rows > 0 && cols > 0 {
                                    let mut short = vec![7; tokens * rows - 1];
                                    matmul_i8_into_with(
                                        kernel, rows, cols, &xs, w, bias, &mut short,
                                    );
                                    assert_eq!(short, want[..short.len()], "{name} short");
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn strided_tiles_match_reference() {
        let mut rng = XorShift64Star::new(8);
        // Attention's shapes: queries and keys `head_dim` wide, `hidden` apart.
        let shapes: &[(usize, usize, usize)] = if cfg!(miri) {
            &[(3, 5, 8)]
        } else {
            &[
                (1, 1, 4),
                (17, 64, 24),
                (64, 70, 32),
                (5, 33, 20),
                (40, 16, 6),
                (3, 9, 64),
            ]
        };
        for kernel in available() {
            for &(queries, keys, cols) in shapes {
                let stride = cols * 3 + 1;
                let xs: Vec<i8> = (0..queries * stride).map(|_| random_i8(&mut rng)).collect();
                let ws: Vec<i8> = (0..keys * stride).map(|_| random_i8(&mut rng)).collect();
                let out_stride = keys + 5;
                let bias: Vec<i32> = (0..keys as i32 / 2).map(|o| o * 1000 - 7).collect();
                // Whole operands, then the last query and key rows cut short.
                for cut in [0, stride - cols + 1] {
                    let x = RowsI8 {
                        data: &xs[..xs.len() - cut],
                        rows: queries,
                        cols,
                        stride,
                    };
                    let w = RowsI8 {
                        data: &ws[..ws.len() - cut],
                        rows: keys,
                        cols,
                        stride,
                    };
                    let mut want = vec![7; queries * out_stride];
                    matmul_i8_strided_reference(x, w, &bias, &mut want, out_stride);
                    let mut got = vec![7; queries * out_stride];
                    matmul_i8_strided_with(kernel, x, w, &bias, &mut got, out_stride);
                    assert_eq!(got, want, "{kernel:?} {queries}x{keys}x{cols} cut {cut}");
                }
            }
        }
    }

    #[test]
    fn strided_dots_match_reference() {
        let mut rng = XorShift64Star::new(4);
        let lens: &[usize] = if cfg!(miri) {
            &[0, 5, 33]
        } else {
            &[0, 1, 16, 31, 32, 33, 64, 100]
        };
        for kernel in available() {
            for &cols in lens {
                for keys_n in 0..=9 {
                    for stride in [cols, cols + 3, 2 * cols + 32] {
                        for (q, keys) in patterns(cols, &mut rng)
                            .into_iter()
                            .zip(patterns(keys_n * stride + cols, &mut rng))
                        {
                            // Whole rows, then a matrix that ends inside its last row.
                            for keys in
                                [&keys[..], &keys[..keys.len().saturating_sub(cols / 2 + 1)]]
                            {
                                let mut want = vec![7; keys_n];
                                dots_i8_reference(&mut want, &q, keys, stride);
                                let mut got = vec![7; keys_n];
                                dots_i8_with(kernel, &mut got, &q, keys, stride);
                                assert_eq!(
                                    got, want,
                                    "{kernel:?} {keys_n} keys x {cols} / {stride}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// Int16 activation rows of length `len` at the extremes the narrowing allows
    /// (`±i16_activation_limit(len)`), zeros, and pseudo-random values.
    fn patterns_i16(len: usize, rng: &mut XorShift64Star) -> [Vec<i16>; 3] {
        let top = crate::quant::i16_activation_limit(len);
        let random = (0..len)
            .map(|_| {
                let a = i32::from(random_i8(rng)) * 256 + i32::from(random_i8(rng));
                (a % (i32::from(top) + 1)) as i16
            })
            .collect();
        [
            (0..len)
                .map(|i| if i % 3 == 0 { -top } else { top })
                .collect(),
            vec![0; len],
            random,
        ]
    }

    #[test]
    fn int16_kernels_match_reference() {
        let mut rng = XorShift64Star::new(5);
        let (rows_max, cols_list): (usize, &[usize]) = if cfg!(miri) {
            (5, &[0, 1, 16, 17, 33])
        } else {
            (9, &[0, 1, 3, 4, 5, 8, 15, 16, 17, 33, 64, 172, 300, 600])
        };
        for kernel in available() {
            for rows in 0..=rows_max {
                for &cols in cols_list {
                    for x in patterns_i16(cols, &mut rng) {
                        for w in patterns(rows * cols, &mut rng) {
                            // Full weights, then weights missing the last rows.
                            for w in [&w[..], &w[..w.len() * 2 / 3]] {
                                let mut want = vec![0; rows];
                                matvec_i16_reference(rows, &x, w, |o, v| want[o] = v);
                                let mut got = vec![7; rows];
                                matvec_i16_with(kernel, rows, &x, w, |o, v| got[o] = v);
                                assert_eq!(got, want, "{kernel:?} {rows}x{cols}");
                            }
                        }
                    }
                }
            }
        }
        // Several tokens at once: every (token, row) pair exactly once, as the
        // reference computes it (tiles of 4 x 4 and every kind of leftover).
        // Miri runs only the scalar path (no CPU features there): a token-by-token
        // sample of it.
        let (tokens_max, rows_max, cols_list): (usize, usize, &[usize]) = if cfg!(miri) {
            (2, 2, &[0, 33])
        } else {
            (9, 9, &[0, 1, 5, 31, 32, 33, 64, 100, 576])
        };
        for kernel in available() {
            for tokens in 0..=tokens_max {
                for rows in 0..=rows_max {
                    for &cols in cols_list {
                        for xs in patterns_i16(tokens * cols, &mut rng) {
                            for w in patterns(rows * cols, &mut rng) {
                                for w in [&w[..], &w[..w.len() * 2 / 3]] {
                                    let mut want = vec![None; tokens * rows];
                                    matmul_i16_reference(rows, cols, &xs, w, |t, o, v| {
                                        want[t * rows + o] = Some(v)
                                    });
                                    let mut got = vec![None; tokens * rows];
                                    matmul_i16_with(kernel, rows, cols, &xs, w, |t, o, v| {
                                        assert!(got[t * rows + o].replace(v).is_none(), "twice");
                                    });
                                    let name = format!("{kernel:?} {tokens}x{rows}x{cols}");
                                    assert_eq!(got, want, "{name}");
                                    if cols > 0 {
                                        assert!(got.iter().all(Option::is_some), "{name}");
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        // Exact at the limit: the longest rows keep the accumulator in range.
        let cols = 600;
        let top = crate::quant::i16_activation_limit(cols);
        let x = vec![top; cols];
        let w = vec![-128i8; cols];
        assert_eq!(
            i64::from(dot_i16_reference(&x, &w)),
            -128 * i64::from(top) * cols as i64
        );
        // Attention scores: the dispatched kernel equals the reference.
        for &cols in &[0usize, 4, 8, 16, 12, 64] {
            for keys_n in 0..=5 {
                for stride in [cols, cols + 3] {
                    for q in patterns_i16(cols, &mut rng) {
                        for keys in patterns(keys_n * stride + cols, &mut rng) {
                            let short = &keys[..keys.len().saturating_sub(cols / 2 + 1)];
                            for keys in [&keys[..], short] {
                                let mut want = vec![7; keys_n];
                                dots_i16_reference(&mut want, &q, keys, stride);
                                let mut got = vec![7; keys_n];
                                dots_i16(&mut got, &q, keys, stride);
                                assert_eq!(got, want, "{keys_n} keys x {cols} / {stride}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn best_kernel_is_available() {
        assert!(Int8Kernel::best().is_available());
        assert!(Int8Kernel::Scalar.is_available());
    }

    /// Which kernels the tests above ran here (shown with `--nocapture`;
    /// `tools/neon-check.sh` reads these lines).
    #[test]
    fn report_available_kernels() {
        for kernel in Int8Kernel::ALL {
            let state = if kernel.is_available() {
                "tested"
            } else {
                "not available"
            };
            println!("int8 kernel {kernel:?}: {state}");
        }
        println!("int8 kernel best: {:?}", Int8Kernel::best());
    }

    /// Start of the product that `instruction_count_probe` measures. The two markers
    /// have distinct straight-line bodies: identical ones would be folded into one
    /// address, and the QEMU plugin `tools/qemu/insncount.c` finds them by symbol.
    #[inline(never)]
    #[no_mangle]
    extern "C" fn tinyformer_int8_cost_begin() {
        core::hint::black_box(1u32);
    }

    /// End of the product that `instruction_count_probe` measures.
    #[inline(never)]
    #[no_mangle]
    extern "C" fn tinyformer_int8_cost_end() {
        core::hint::black_box(2u32);
    }

    /// One 128x384 product (an FFN-sized row block) between the markers, with the
    /// kernel named by `TINYFORMER_COST_KERNEL` (its `Debug` name; unset: the best),
    /// checked against the reference. `tools/neon-check.sh` counts its instructions
    /// under QEMU.
    #[test]
    #[ignore = "instruction-count probe, run by tools/neon-check.sh"]
    fn instruction_count_probe() {
        const ROWS: usize = 128;
        const COLS: usize = 384;
        let kernel = match std::env::var("TINYFORMER_COST_KERNEL") {
            Ok(name) => available()
                .find(|k| format!("{k:?}") == name)
                .expect("TINYFORMER_COST_KERNEL names an available kernel"),
            Err(_) => Int8Kernel::best(),
        };
        let mut rng = XorShift64Star::new(3);
        let x: Vec<i8> = (0..COLS).map(|_| random_i8(&mut rng)).collect();
        let w: Vec<i8> = (0..ROWS * COLS).map(|_| random_i8(&mut rng)).collect();
        let mut got = vec![0; ROWS];
        tinyformer_int8_cost_begin();
        matvec_i8_with(kernel, ROWS, &x, &w, &[], |o, v| got[o] = v);
        tinyformer_int8_cost_end();
        let mut want = vec![0; ROWS];
        matvec_i8_reference(ROWS, &x, &w, &[], |o, v| want[o] = v);
        assert_eq!(got, want, "{kernel:?}");
        println!("int8 cost probe: {kernel:?} MACS {}", ROWS * COLS);
    }
}
