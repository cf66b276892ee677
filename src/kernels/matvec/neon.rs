//! AArch64 NEON int8 dot products, bit-exact against the scalar reference.
//!
//! 16 int8 pairs per step, in one of two ways:
//! - baseline NEON (every AArch64 CPU with Advanced SIMD): `SMULL`/`SMULL2` multiply
//!   the low and the high eight byte pairs into int16 (each product is at most
//!   `128 * 128 = 2^14`: exact), `SADALP` adds adjacent int16 products pairwise into
//!   four `i32` lanes (a pair sum is at most `2^15`, exact in `i32`), wrapping like the
//!   reference. Accumulating two products in one int16 lane (`SMLAL` after `SMULL`) is
//!   avoided: `-128 * -128 * 2 = 2^15` overflows `i16`. 4 instructions per step, plus
//!   one load per operand;
//! - `SDOT` (the dot-product extension, FEAT_DotProd: optional from Armv8.2-A,
//!   mandatory from Armv8.4-A; Cortex-A55/A76 and later, Neoverse, Apple M1): each of
//!   the four `i32` lanes gains the sum of four byte products (at most `2^16`, exact),
//!   so one instruction per step, plus the loads.
//!
//! In the four-row kernels each loaded activation vector serves four weight rows. The
//! `i32` lanes are summed (`ADDV`, wrapping) once per dot product, and lengths that are
//! not a multiple of 16 finish with the scalar reference on the tail.
//!
//! `vdotq_s32` is unstable (`stdarch_neon_dotprod`), so `SDOT` is a one-line `asm!`
//! inside functions compiled with `#[target_feature(enable = "neon,dotprod")]`
//! (stable), which is also what lets the assembler accept the mnemonic. Those functions
//! are safe to call only on a CPU with the extension, which the dispatch in `matvec.rs`
//! checks (at run time with `std`, else from the compile-time target features). The
//! module is compiled only for AArch64 targets with NEON (`target_feature = "neon"`, on
//! by default; not on the `*-softfloat` targets), where the baseline functions, also
//! `#[target_feature(enable = "neon")]` because the intrinsics require it, are always
//! safe to call.

use core::arch::aarch64::{
    int32x4_t, int8x16_t, vaddvq_s32, vdupq_n_s32, vdupq_n_s8, vget_low_s8, vld1q_s8,
    vmull_high_s8, vmull_s8, vpadalq_s16,
};
use core::arch::asm;

use super::dot_i8_reference;

/// Int8 elements per step.
const STEP: usize = 16;

/// A 16-byte chunk as one vector (`LD1`, no alignment needed); zero if the chunk is
/// short (never: callers pass `chunks_exact(16)`, so the check folds away).
#[inline]
#[target_feature(enable = "neon")]
fn load(chunk: &[i8]) -> int8x16_t {
    match <&[i8; STEP]>::try_from(chunk) {
        // SAFETY: `bytes` is 16 readable bytes.
        Ok(bytes) => unsafe { vld1q_s8(bytes.as_ptr()) },
        Err(_) => vdupq_n_s8(0),
    }
}

/// `acc` plus the 16 products `a[i] * b[i]`, two per `i32` lane (`SMULL`, `SMULL2`,
/// two `SADALP`).
#[inline]
#[target_feature(enable = "neon")]
fn mac_mull(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let low = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    let high = vmull_high_s8(a, b);
    vpadalq_s16(vpadalq_s16(acc, low), high)
}

/// `acc` plus the 16 products `a[i] * b[i]`, lane `l` gaining those of `i` in
/// `4l..4l + 4` (one `SDOT`).
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn mac_sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: a register-only instruction of the dot-product extension, which this
    // function requires (`target_feature`).
    unsafe {
        asm!("sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b", acc = inout(vreg) acc,
             a = in(vreg) a, b = in(vreg) b, options(pure, nomem, nostack, preserves_flags));
    }
    acc
}

/// `dot_i8_reference(a, b)`, 16 pairs per `mac` step.
#[inline]
#[target_feature(enable = "neon")]
fn dot_by(a: &[i8], b: &[i8], mac: impl Fn(int32x4_t, int8x16_t, int8x16_t) -> int32x4_t) -> i32 {
    let len = a.len().min(b.len());
    let (a, b) = (a.get(..len).unwrap_or(&[]), b.get(..len).unwrap_or(&[]));
    let (a_steps, b_steps) = (a.chunks_exact(STEP), b.chunks_exact(STEP));
    let tail = dot_i8_reference(a_steps.remainder(), b_steps.remainder());
    let mut acc = vdupq_n_s32(0);
    for (x, y) in a_steps.zip(b_steps) {
        acc = mac(acc, load(x), load(y));
    }
    vaddvq_s32(acc).wrapping_add(tail)
}

/// The dot products of four contiguous rows `w4 = [W0 | W1 | W2 | W3]` (each
/// `x.len()` long) with `x`; each loaded `x` vector serves all four rows.
#[inline]
#[target_feature(enable = "neon")]
fn dot4_by(
    w4: &[i8],
    x: &[i8],
    mac: impl Fn(int32x4_t, int8x16_t, int8x16_t) -> int32x4_t,
) -> [i32; 4] {
    let cols = x.len();
    let Some(w4) = w4.get(..4 * cols) else {
        return [0; 4];
    };
    let row = |r: usize| w4.get(r * cols..(r + 1) * cols).unwrap_or(&[]);
    let rows = [row(0), row(1), row(2), row(3)];
    let x_steps = x.chunks_exact(STEP);
    let x_tail = x_steps.remainder();
    let [s0, s1, s2, s3] = rows.map(|row| row.chunks_exact(STEP));
    let mut acc = [vdupq_n_s32(0); 4];
    for ((((xs, w0), w1), w2), w3) in x_steps.zip(s0).zip(s1).zip(s2).zip(s3) {
        let xv = load(xs);
        for (acc, ws) in acc.iter_mut().zip([w0, w1, w2, w3]) {
            *acc = mac(*acc, load(ws), xv);
        }
    }
    let mut out = [0; 4];
    for ((o, acc), row) in out.iter_mut().zip(acc).zip(rows) {
        let row_tail = row.chunks_exact(STEP).remainder();
        *o = vaddvq_s32(acc).wrapping_add(dot_i8_reference(row_tail, x_tail));
    }
    out
}

/// `dot_i8_reference(a, b)` with baseline NEON.
#[target_feature(enable = "neon")]
pub(super) fn dot(a: &[i8], b: &[i8]) -> i32 {
    dot_by(a, b, |acc, x, y| mac_mull(acc, x, y))
}

/// `matvec_i8_reference(rows, x, w, bias, store)` with baseline NEON.
#[target_feature(enable = "neon")]
pub(super) fn matvec(rows: usize, x: &[i8], w: &[i8], bias: &[i32], store: impl FnMut(usize, i32)) {
    // The closures inherit NEON from this function, so everything inlines.
    super::matvec_by_four(
        rows,
        x,
        w,
        bias,
        store,
        |w4, x| dot4_by(w4, x, |acc, w, x| mac_mull(acc, w, x)),
        |row, x| dot(row, x),
    );
}

/// `dot_i8_reference(a, b)` with `SDOT`.
#[target_feature(enable = "neon,dotprod")]
pub(super) fn dot_sdot(a: &[i8], b: &[i8]) -> i32 {
    dot_by(a, b, |acc, x, y| mac_sdot(acc, x, y))
}

/// `matvec_i8_reference(rows, x, w, bias, store)` with `SDOT`.
#[target_feature(enable = "neon,dotprod")]
pub(super) fn matvec_sdot(
    rows: usize,
    x: &[i8],
    w: &[i8],
    bias: &[i32],
    store: impl FnMut(usize, i32),
) {
    // The closures inherit the extension from this function, so everything inlines.
    super::matvec_by_four(
        rows,
        x,
        w,
        bias,
        store,
        |w4, x| dot4_by(w4, x, |acc, w, x| mac_sdot(acc, w, x)),
        |row, x| dot_sdot(row, x),
    );
}
