//! Cortex-M4/M7 (ARMv7E-M DSP extension) int8 dot products, bit-exact against the
//! scalar reference.
//!
//! Four int8 pairs per step: one 32-bit load per operand holds bytes `[b0 b1 b2 b3]`;
//! `SXTB16` sign-extends bytes 0 and 2 into two int16 halves, `SXTB16 ..., ROR #8`
//! bytes 1 and 3; `SMLAD` multiplies the halves pairwise and adds both products to the
//! `i32` accumulator (two products of at most `2^14` each: exact; the accumulation
//! wraps like the reference). In the four-row kernel each unpacked activation word
//! serves four weight rows, so a step of 16 MACs is 3 instructions for the activations
//! and 5 per row (load, two unpacks, two `SMLAD`), about 1.4 instructions per MAC
//! before loop overhead. Lengths that are not a multiple of 4 finish with the scalar
//! reference on the tail.
//!
//! The `core::arch::arm` DSP intrinsics are unstable, so each instruction is a
//! one-line `asm!` block; the build script enables this module (`cfg(tinyformer_dsp)`)
//! only when the target has the DSP extension: ARMv7E-M (`thumbv7em-*`, Cortex-M4/M7),
//! or an ARMv8-M core built with it (`-C target-cpu=cortex-m33`, `-C target-feature=+dsp`).

use core::arch::asm;

use super::{dot_i16_reference, dot_i8_reference};

/// Int8 elements per step.
const STEP: usize = 4;

/// Bytes 0 and 2 of `v`, each sign-extended to 16 bits: `[b0, b2]`.
#[inline(always)]
fn sxtb16(v: u32) -> u32 {
    let out;
    // SAFETY: a register-only ARMv7E-M DSP instruction (present: cfg(tinyformer_dsp)).
    unsafe {
        asm!("sxtb16 {out}, {v}", out = lateout(reg) out, v = in(reg) v,
             options(pure, nomem, nostack, preserves_flags));
    }
    out
}

/// Bytes 1 and 3 of `v`, each sign-extended to 16 bits: `[b1, b3]`.
#[inline(always)]
fn sxtb16_ror8(v: u32) -> u32 {
    let out;
    // SAFETY: as in `sxtb16`.
    unsafe {
        asm!("sxtb16 {out}, {v}, ror #8", out = lateout(reg) out, v = in(reg) v,
             options(pure, nomem, nostack, preserves_flags));
    }
    out
}

/// `acc + a.lo * b.lo + a.hi * b.hi` on signed 16-bit halves (wrapping; sets the Q
/// flag on overflow, which nothing reads).
#[inline(always)]
fn smlad(a: u32, b: u32, acc: i32) -> i32 {
    let out;
    // SAFETY: as in `sxtb16`; `SMLAD` may set the sticky Q flag, hence no
    // `preserves_flags`.
    unsafe {
        asm!("smlad {out}, {a}, {b}, {acc}", out = lateout(reg) out, a = in(reg) a,
             b = in(reg) b, acc = in(reg) acc, options(pure, nomem, nostack));
    }
    out
}

/// A 4-byte chunk as one little-endian word (one `LDR`: unaligned loads are allowed
/// on ARMv7-M); zero if the chunk is short (never: callers pass `chunks_exact(4)`).
#[inline(always)]
fn word(chunk: &[i8]) -> u32 {
    match *chunk {
        [b0, b1, b2, b3] => u32::from_le_bytes([b0, b1, b2, b3].map(|b| b as u8)),
        _ => 0,
    }
}

/// The `SMLAD` work of one 4-column step for four weight rows (`w0` points at row 0,
/// `w2` at row 2, `stride` bytes between rows), given the step's activations unpacked
/// as `xe = [x0, x2]`, `xo = [x1, x3]`: per row one load, two unpacks, two `SMLAD`.
macro_rules! four_rows {
    () => {
        concat!(
            "ldr {t}, [{w0}, {stride}]\n",
            "sxtb16 {u}, {t}\n",
            "smlad {a1}, {u}, {xe}, {a1}\n",
            "sxtb16 {t}, {t}, ror #8\n",
            "smlad {a1}, {t}, {xo}, {a1}\n",
            "ldr {t}, [{w0}], #4\n",
            "sxtb16 {u}, {t}\n",
            "smlad {a0}, {u}, {xe}, {a0}\n",
            "sxtb16 {t}, {t}, ror #8\n",
            "smlad {a0}, {t}, {xo}, {a0}\n",
            "ldr {t}, [{w2}, {stride}]\n",
            "sxtb16 {u}, {t}\n",
            "smlad {a3}, {u}, {xe}, {a3}\n",
            "sxtb16 {t}, {t}, ror #8\n",
            "smlad {a3}, {t}, {xo}, {a3}\n",
            "ldr {t}, [{w2}], #4\n",
            "sxtb16 {u}, {t}\n",
            "smlad {a2}, {u}, {xe}, {a2}\n",
            "sxtb16 {t}, {t}, ror #8\n",
            "smlad {a2}, {t}, {xo}, {a2}\n",
        )
    };
}

/// One 4-column step over int8 activations: one load, unpacked by `SXTB16`.
macro_rules! step_i8 {
    () => {
        concat!(
            "ldr {t}, [{xp}], #4\n",
            "sxtb16 {xe}, {t}\n",
            "sxtb16 {xo}, {t}, ror #8\n",
            four_rows!(),
        )
    };
}

/// One 4-column step over int16 activations: two loads, interleaved by `PKHBT`/`PKHTB`.
macro_rules! step_i16 {
    () => {
        concat!(
            "ldr {t}, [{xp}], #4\n",
            "ldr {u}, [{xp}], #4\n",
            "pkhbt {xe}, {t}, {u}, lsl #16\n",
            "pkhtb {xo}, {u}, {t}, asr #16\n",
            four_rows!(),
        )
    };
}

/// The count-down loop of the four-row kernels: `$body` (one or more steps) per
/// iteration, `$steps` (at least 1) iterations, over activations `$x` and four
/// contiguous weight rows `$w4` of `$cols` bytes each. Needs 13 registers: all but
/// `r7` (frame pointer), `sp` and `pc`, so `r6` too, which is free only in functions
/// without a base pointer (hence `inline(never)` on its users). Must be used inside
/// an `unsafe` block whose `SAFETY` comment covers the loads.
macro_rules! dot4_loop {
    ($body:expr, $steps:expr, $cols:expr, $x:expr, $w4:expr, $a0:ident, $a1:ident, $a2:ident, $a3:ident) => {
        asm!(
            concat!("2:\n", $body, "subs {n}, {n}, #1\n", "bne 2b"),
            n = inout(reg) $steps => _,
            stride = in(reg) $cols,
            xp = inout(reg) $x.as_ptr() => _,
            w0 = inout(reg) $w4.as_ptr() => _,
            w2 = inout(reg) $w4.as_ptr().add(2 * $cols) => _,
            a0 = inout(reg) $a0,
            a1 = inout(reg) $a1,
            a2 = inout(reg) $a2,
            a3 = inout(reg) $a3,
            t = out(reg) _,
            u = out(reg) _,
            xe = out(reg) _,
            xo = out(reg) _,
            options(readonly, nostack),
        )
    };
}

/// `acc + dot(w, x)` over the four bytes of each, `x` given unpacked (`[even, odd]`).
#[inline(always)]
fn mac4(acc: i32, w: u32, x: [u32; 2]) -> i32 {
    smlad(sxtb16_ror8(w), x[1], smlad(sxtb16(w), x[0], acc))
}

/// `w` split into 4-byte steps and the tail that `dot_i8_reference` finishes.
#[inline(always)]
fn steps(v: &[i8]) -> core::slice::ChunksExact<'_, i8> {
    v.chunks_exact(STEP)
}

/// `dot_i8_reference(a, b)`.
pub(super) fn dot(a: &[i8], b: &[i8]) -> i32 {
    let len = a.len().min(b.len());
    let (a, b) = (a.get(..len).unwrap_or(&[]), b.get(..len).unwrap_or(&[]));
    let (a_steps, b_steps) = (steps(a), steps(b));
    let tail = dot_i8_reference(a_steps.remainder(), b_steps.remainder());
    let mut acc = 0i32;
    for (x, y) in a_steps.zip(b_steps) {
        let y = word(y);
        acc = mac4(acc, word(x), [sxtb16(y), sxtb16_ror8(y)]);
    }
    acc.wrapping_add(tail)
}

/// A four-row kernel `fn $name(w4: &[i8], x: &[$x]) -> [i32; 4]`: the dot products
/// of four contiguous rows `w4 = [W0 | W1 | W2 | W3]` (each `x.len()` long) with `x`,
/// `$body` per loop iteration (`$cols` columns), the last columns by `$reference(x,
/// w)`. The loop is one `asm!` block ([`dot4_loop`]), because the compiler spills
/// registers in it otherwise; `inline(never)` frees `r6` (no base pointer).
macro_rules! dot4_fn {
    ($(#[$doc:meta])* $name:ident, $x:ty, $cols:expr, $body:expr, $reference:expr) => {
        $(#[$doc])*
        #[inline(never)]
        fn $name(w4: &[i8], x: &[$x]) -> [i32; 4] {
            let cols = x.len();
            let Some(w4) = w4.get(..4 * cols) else {
                return [0; 4];
            };
            let steps = cols / $cols;
            let body = steps * $cols;
            let mut acc = [0i32; 4];
            if steps > 0 {
                let [mut a0, mut a1, mut a2, mut a3] = acc;
                // SAFETY: reads `steps * $cols <= cols` elements of `x` and as many bytes
                // from each of the four rows of `w4` (row `r` starts at `r * cols`; `w4`
                // holds `4 * cols` bytes), with word loads that ARMv7-M allows unaligned;
                // `steps >= 1`, so the count-down loop ends. Every register written is
                // an output. The DSP instructions exist on this target
                // (cfg(tinyformer_dsp)).
                unsafe {
                    dot4_loop!($body, steps, cols, x, w4, a0, a1, a2, a3);
                }
                acc = [a0, a1, a2, a3];
            }
            let x_tail = x.get(body..).unwrap_or(&[]);
            for (r, acc) in acc.iter_mut().enumerate() {
                let row_tail = w4.get(r * cols + body..(r + 1) * cols).unwrap_or(&[]);
                *acc = acc.wrapping_add($reference(x_tail, row_tail));
            }
            acc
        }
    };
}

dot4_fn!(
    /// Int8 activations: each unpacked `x` word serves all four rows. Per step of 16
    /// MACs: 3 instructions for the activations, 5 per row, 2 for the loop (25, 1.56
    /// per MAC).
    dot4,
    i8,
    STEP,
    step_i8!(),
    dot_i8_reference
);

/// `matvec_i8_reference(rows, x, w, bias, store)`.
pub(super) fn matvec(rows: usize, x: &[i8], w: &[i8], bias: &[i32], store: impl FnMut(usize, i32)) {
    #[cfg(tinyformer_break_kernel_for_test)]
    let store = broken_on_purpose(store);
    super::matvec_by_four(rows, x, w, bias, store, dot4, dot);
}

/// Two int16 activations as one word `[x0 | x1 << 16]` (one `LDR`); zero if short.
#[inline(always)]
fn pair(chunk: &[i16]) -> u32 {
    match *chunk {
        [x0, x1] => u32::from(x0 as u16) | (u32::from(x1 as u16) << 16),
        _ => 0,
    }
}

/// Four int16 activations `[x0 x1 x2 x3]` rearranged as `[x0, x2]` and `[x1, x3]`, the
/// halves `SXTB16` gives the weight bytes in (`PKHBT`, `PKHTB`).
#[inline(always)]
fn interleave(x01: u32, x23: u32) -> [u32; 2] {
    let (even, odd);
    // SAFETY: register-only ARMv7E-M DSP instructions (present: cfg(tinyformer_dsp)).
    // `even` is written before the inputs are read again, so it must not share a
    // register with them (`out`, not `lateout`).
    unsafe {
        asm!("pkhbt {e}, {a}, {b}, lsl #16", "pkhtb {o}, {b}, {a}, asr #16",
             e = out(reg) even, o = lateout(reg) odd, a = in(reg) x01, b = in(reg) x23,
             options(pure, nomem, nostack, preserves_flags));
    }
    [even, odd]
}

/// `dot_i16_reference(x, w)`, four pairs per step.
fn dot_i16(w: &[i8], x: &[i16]) -> i32 {
    let len = x.len().min(w.len());
    let (w, x) = (w.get(..len).unwrap_or(&[]), x.get(..len).unwrap_or(&[]));
    let (w_steps, x_steps) = (steps(w), x.chunks_exact(STEP));
    let tail = dot_i16_reference(x_steps.remainder(), w_steps.remainder());
    let mut acc = 0i32;
    for (w, x) in w_steps.zip(x_steps) {
        let (lo, hi) = x.split_at(2);
        acc = mac4(acc, word(w), interleave(pair(lo), pair(hi)));
    }
    acc.wrapping_add(tail)
}

dot4_fn!(
    /// Int16 activations: [`dot4`]'s loop with the activations loaded as two words and
    /// interleaved (`PKHBT`/`PKHTB`) instead of unpacked from bytes, unrolled twice.
    /// Per step of 16 MACs: 4 instructions for the activations, 5 per row, 1 for the
    /// loop (25).
    dot4_i16,
    i16,
    2 * STEP,
    concat!(step_i16!(), step_i16!()),
    dot_i16_reference
);

/// `matvec_i16_reference(rows, x, w, store)`.
pub(super) fn matvec_i16(rows: usize, x: &[i16], w: &[i8], store: impl FnMut(usize, i32)) {
    #[cfg(tinyformer_break_kernel_for_test)]
    let store = broken_on_purpose(store);
    super::matvec_by_four(rows, x, w, &[], store, dot4_i16, dot_i16);
}

/// `dots_i16_reference(out, q, keys, stride)` for the usual decoder head sizes (8,
/// 16, 32, 64, 128): the query interleaved once into `head / 2` words, then per key
/// one load, two unpacks and two `SMLAD` per four elements. Returns `false` (and
/// writes nothing) for other lengths, which the caller computes with the reference.
pub(super) fn dots_i16(out: &mut [i32], q: &[i16], keys: &[i8], stride: usize) -> bool {
    match q.len() {
        8 => dots_head8(out, q, keys, stride),
        16 => dots_packed::<8>(out, q, keys, stride),
        32 => dots_packed::<16>(out, q, keys, stride),
        64 => dots_packed::<32>(out, q, keys, stride),
        128 => dots_packed::<64>(out, q, keys, stride),
        _ => return false,
    }
    true
}

/// [`dots_i16`] for a head of 8 (llama2.c's small models): the packed query in four
/// registers and one `asm!` loop over the key rows, 14 instructions per key (two
/// loads, four unpacks, four multiply-accumulates, the row step, the store, the
/// count).
fn dots_head8(out: &mut [i32], q: &[i16], keys: &[i8], stride: usize) {
    let Ok(q) = <&[i16; 8]>::try_from(q) else {
        return;
    };
    let [p0, p1] = interleave(pair(&q[0..2]), pair(&q[2..4]));
    let [p2, p3] = interleave(pair(&q[4..6]), pair(&q[6..8]));
    // Rows `j` with `j * stride + 8 <= keys.len()` are whole; the rest give 0.
    let whole = match (keys.len().checked_sub(8), stride) {
        (Some(_), 0) => out.len(),
        (Some(last), _) => last / stride + 1,
        (None, _) => 0,
    }
    .min(out.len());
    let (body, rest) = out.split_at_mut(whole);
    rest.fill(0);
    if body.is_empty() {
        return;
    }
    // SAFETY: `whole >= 1` rows are read, row `j` at `j * stride ..+ 8` with
    // `(whole - 1) * stride + 8 <= keys.len()` (the definition of `whole`), by word
    // loads ARMv7-M allows unaligned; `whole` words are stored to `body`, which holds
    // exactly that many `i32`. The count-down loop ends (`whole >= 1`). Every register
    // written is an output; the DSP instructions exist on this target.
    unsafe {
        asm!(
            "2:",
            "ldr {t}, [{kp}]",
            "sxtb16 {u}, {t}",
            "smuad {acc}, {u}, {p0}",
            "sxtb16 {t}, {t}, ror #8",
            "smlad {acc}, {t}, {p1}, {acc}",
            "ldr {t}, [{kp}, #4]",
            "sxtb16 {u}, {t}",
            "smlad {acc}, {u}, {p2}, {acc}",
            "sxtb16 {t}, {t}, ror #8",
            "smlad {acc}, {t}, {p3}, {acc}",
            "add {kp}, {kp}, {stride}",
            "str {acc}, [{op}], #4",
            "subs {n}, {n}, #1",
            "bne 2b",
            n = inout(reg) body.len() => _,
            kp = inout(reg) keys.as_ptr() => _,
            op = inout(reg) body.as_mut_ptr() => _,
            stride = in(reg) stride,
            p0 = in(reg) p0,
            p1 = in(reg) p1,
            p2 = in(reg) p2,
            p3 = in(reg) p3,
            t = out(reg) _,
            u = out(reg) _,
            acc = out(reg) _,
            options(nostack),
        );
    }
}

/// `ctx[c] += sum_j probs[j] * values[j * stride + c]` for a head of 8 channels (the
/// values of one head start at `values[0]`), the attention's weighted sum; other head
/// sizes return `false` for the reference. Probabilities must be in `[0, 2^15)` for
/// the packed loop (the softmax gives `2^15` only when all the weight is on one key):
/// the loop stops at the first pair with one outside, and the rest goes key by key.
/// Keys two at a time: their probabilities packed as two int16 in one word (`PKHBT`),
/// the values unpacked by `SXTB16`, then one 16x16 multiply-accumulate per value
/// (`SMLAxy` picks the halves: no repacking); four channels per pass (13 registers),
/// two passes: 19 instructions per pair of keys and pass. Exact integer sums, as the
/// reference.
#[inline(never)]
pub(crate) fn weighted_values(
    ctx: &mut [i32],
    probs: &[i32],
    values: &[i8],
    stride: usize,
) -> bool {
    let Ok(ctx) = <&mut [i32; 8]>::try_from(ctx) else {
        return false;
    };
    if stride == 0 {
        return false;
    }
    // Keys whose 8 values the slice holds (the reference skips the others).
    let whole = match values.len().checked_sub(8) {
        Some(last) => last / stride + 1,
        None => 0,
    }
    .min(probs.len());
    let pairs = whole / 2;
    // Pairs the loop took before meeting a probability outside `[0, 2^15)` (the
    // same in both passes: same probabilities).
    let mut done = pairs;
    let (mut c, rest) = ctx.split_at_mut(4);
    for half in 0..2 {
        if pairs == 0 {
            break;
        }
        let [mut a0, mut a1, mut a2, mut a3] = [c[0], c[1], c[2], c[3]];
        let left: usize;
        // SAFETY: `pairs >= 1` pairs of keys are read: probabilities `2k, 2k + 1 <
        // whole <= probs.len()` (doubleword loads of `probs`, 4-byte aligned as
        // `i32`s), value rows `j * stride + 4 * half ..+ 4` with `j < whole`, inside
        // `values` (the definition of `whole`), by word loads ARMv7-M allows
        // unaligned. The count-down loop ends. Every register written is an output;
        // the DSP instructions exist on this target. Registers: all but r7, sp, pc
        // (r6 too, as this function is `inline(never)`: no base pointer).
        unsafe {
            asm!(
                "2:",
                "ldrd {t}, {u}, [{pp}], #8",
                // Both in [0, 2^15) <=> their OR is below 2^15 as unsigned.
                "orr {p}, {t}, {u}",
                "cmp {p}, #32768",
                "bhs 3f",
                "pkhbt {p}, {t}, {u}, lsl #16",
                "ldr {t}, [{vp}, {stride}]",
                "ldr {u}, [{vp}]",
                "add {vp}, {vp}, {stride}, lsl #1",
                "sxtb16 {x}, {u}",
                "sxtb16 {y}, {t}",
                "smlabb {a0}, {x}, {p}, {a0}",
                "smlabt {a0}, {y}, {p}, {a0}",
                "smlatb {a2}, {x}, {p}, {a2}",
                "smlatt {a2}, {y}, {p}, {a2}",
                "sxtb16 {x}, {u}, ror #8",
                "sxtb16 {y}, {t}, ror #8",
                "smlabb {a1}, {x}, {p}, {a1}",
                "smlabt {a1}, {y}, {p}, {a1}",
                "smlatb {a3}, {x}, {p}, {a3}",
                "smlatt {a3}, {y}, {p}, {a3}",
                "subs {n}, {n}, #1",
                "bne 2b",
                "3:",
                n = inout(reg) pairs => left,
                pp = inout(reg) probs.as_ptr() => _,
                vp = inout(reg) values.as_ptr().add(4 * half) => _,
                stride = in(reg) stride,
                a0 = inout(reg) a0,
                a1 = inout(reg) a1,
                a2 = inout(reg) a2,
                a3 = inout(reg) a3,
                p = out(reg) _,
                t = out(reg) _,
                u = out(reg) _,
                x = out(reg) _,
                y = out(reg) _,
                options(readonly, nostack),
            );
        }
        c.copy_from_slice(&[a0, a1, a2, a3]);
        c = &mut *rest;
        done = pairs - left;
    }
    // From the pair the loop stopped at (if any), and the odd last whole key, as the
    // reference.
    for j in 2 * done..whole {
        let p = probs.get(j).copied().unwrap_or(0);
        if p != 0 {
            let row = values.get(j * stride..j * stride + 8).unwrap_or(&[]);
            for (c, &v) in ctx.iter_mut().zip(row) {
                *c += p * i32::from(v);
            }
        }
    }
    true
}

/// [`dots_i16`] for a query of `2 * W` elements.
#[inline(always)]
fn dots_packed<const W: usize>(out: &mut [i32], q: &[i16], keys: &[i8], stride: usize) {
    let mut packed = [0u32; W];
    for (p, x) in packed.chunks_exact_mut(2).zip(q.chunks_exact(STEP)) {
        let (lo, hi) = x.split_at(2);
        p.copy_from_slice(&interleave(pair(lo), pair(hi)));
    }
    // Key rows start every `stride` bytes; the last may end right after its head.
    let mut rows = keys.chunks(stride.max(1));
    for o in out.iter_mut() {
        let key = rows.next().and_then(|row| row.get(..2 * W));
        let mut acc = 0i32;
        if let (Some(key), true) = (key, stride > 0) {
            for (k, p) in steps(key).zip(packed.chunks_exact(2)) {
                acc = mac4(acc, word(k), [p[0], p[1]]);
            }
        }
        *o = acc;
    }
}

/// **Wrong on purpose**, and compiled only into builds with
/// `cfg(tinyformer_break_kernel_for_test)` (`TINYFORMER_BREAK_KERNEL_FOR_TEST=1`, see
/// `build.rs`): flips bit 12 of output row 0's accumulator. `tools/firmware-check.sh`
/// builds the firmware this way to show that the boot self-test
/// (`Model::self_test`) catches a kernel that computes the wrong thing while the model
/// bytes (and so the CRC) are intact.
#[cfg(tinyformer_break_kernel_for_test)]
fn broken_on_purpose(mut store: impl FnMut(usize, i32)) -> impl FnMut(usize, i32) {
    move |row, acc| store(row, if row == 0 { acc ^ (1 << 12) } else { acc })
}
