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
//! Several tokens at once ([`matmul`], [`matmul_into`], the encoder's batches): the tokens'
//! activations are unpacked to int16 once, so that one weight word, loaded and
//! unpacked once, serves a tile of four tokens, whose activations come two tokens at a
//! time by one `LDM` of four words, with two `SMLAD` per token: 13 instructions per 16
//! MACs, 0.81 per MAC before loop overhead.
//!
//! The `core::arch::arm` DSP intrinsics are unstable, so each instruction is a
//! one-line `asm!` block; the build script enables this module (`cfg(tinyformer_dsp)`)
//! only when the target has the DSP extension: ARMv7E-M (`thumbv7em-*`, Cortex-M4/M7),
//! or an ARMv8-M core built with it (`-C target-cpu=cortex-m33`, `-C target-feature=+dsp`).

use core::arch::asm;

#[cfg(not(feature = "small-kernels"))]
use super::RowsI8;
use super::{dot_i16_reference, dot_i8_reference};
#[cfg(not(feature = "small-kernels"))]
use core::mem::MaybeUninit;

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
        // Casts written out: `array::map` is a call per word at opt-level "z".
        [b0, b1, b2, b3] => u32::from_le_bytes([b0 as u8, b1 as u8, b2 as u8, b3 as u8]),
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

/// Token rows per tile of [`matmul`]: each weight word, loaded and unpacked once,
/// serves this many tokens.
#[cfg(not(feature = "small-kernels"))]
const TILE_TOKENS: usize = 4;

/// Activation columns [`matmul`] unpacks at a time (a multiple of [`STEP`]): the
/// unpacked chunk of a tile is `TILE_TOKENS * CHUNK_COLS * 2` bytes (1 KiB) on the
/// stack, so any row length runs in bounded memory.
#[cfg(not(feature = "small-kernels"))]
const CHUNK_COLS: usize = 128;

/// Weight rows whose partial sums (`GROUP_ROWS * TILE_TOKENS` `i32`, 512 bytes on the
/// stack) one unpacked chunk updates: a chunk is unpacked once per group of rows,
/// about `1 / GROUP_ROWS` instructions per MAC.
#[cfg(not(feature = "small-kernels"))]
const GROUP_ROWS: usize = 32;

/// Steps per iteration of the tile kernels' loops (their `TBB` table has this many
/// entries).
#[cfg(not(feature = "small-kernels"))]
const UNROLL: usize = 8;

/// One 4-column step of a tile of tokens for one weight row: the row's word loaded
/// and unpacked once (`we = [w0, w2]`, `w = [w1, w3]`), then the tokens' unpacked
/// activations (`[x0, x2]`, `[x1, x3]` each), two tokens at a time by one `LDM` into
/// `r0..r3` (or one token by `LDRD` into `r0, r1`), and two `SMLAD` per token into its
/// accumulator register (`$a`, `$b`: `r8..r11`).
#[cfg(not(feature = "small-kernels"))]
macro_rules! tile_step {
    ($($tokens:tt),+) => {
        concat!(
            "ldr {w}, [{wp}], #4\n",
            "sxtb16 {we}, {w}\n",
            "sxtb16 {w}, {w}, ror #8\n",
            $(tile_tokens!($tokens),)+
        )
    };
}

/// The two `SMLAD` of one step for the token whose accumulator is `$a` and whose
/// unpacked activations are in `$e`, `$o`.
#[cfg(not(feature = "small-kernels"))]
macro_rules! tile_smlad {
    ($a:ident, $e:ident, $o:ident) => {
        concat!(
            "smlad ",
            stringify!($a),
            ", {we}, ",
            stringify!($e),
            ", ",
            stringify!($a),
            "\n",
            "smlad ",
            stringify!($a),
            ", {w}, ",
            stringify!($o),
            ", ",
            stringify!($a),
            "\n",
        )
    };
}

/// The activations and `SMLAD` of one step for three tokens `($a, $b, $c)` (one `LDM`
/// of six words), two `($a, $b)` (four words) or one `$a` (`LDRD`).
#[cfg(not(feature = "small-kernels"))]
macro_rules! tile_tokens {
    (($a:ident, $b:ident)) => {
        concat!(
            "ldm {xp}!, {{r0, r1, r2, r3}}\n",
            tile_smlad!($a, r0, r1),
            tile_smlad!($b, r2, r3),
        )
    };
    (($a:ident, $b:ident, $c:ident)) => {
        concat!(
            "ldm {xp}!, {{r0, r1, r2, r3, r4, r5}}\n",
            tile_smlad!($a, r0, r1),
            tile_smlad!($b, r2, r3),
            tile_smlad!($c, r4, r5),
        )
    };
    ($a:ident) => {
        concat!("ldrd r0, r1, [{xp}], #8\n", tile_smlad!($a, r0, r1))
    };
}

/// A tile kernel `fn $name(sums, (w, row_len), cols, x)`: `sums[r][t] += dot(W[r][cols],
/// token t)` for every row `r` that `sums` has and `w` holds (rows `row_len` apart) and the
/// tile's tokens (accumulators `$accs`, registers `r8..`), with `x` the tokens' columns
/// `cols` unpacked by [`unpack_tile`]. One `asm!` block runs all the rows, so that the
/// row loop costs about 15 instructions: store and load the sums (one `STM` and one
/// `LDM` for two or more tokens), the next row's pointers from a state block on the
/// stack, and the jump into the loop (`TBB`: a count of steps that is not a multiple
/// of [`UNROLL`] enters past the steps it does not have). Per step of `4 * tokens`
/// MACs: 3 instructions for the weight word, one `LDM` per two tokens and two `SMLAD`
/// per token (13 for four tokens, 0.81 per MAC), plus 2 or 3 for the loop per
/// [`UNROLL`] steps: a count (`$row_start` loads it, `$loop_end` counts down) or, where
/// no register is left for one, the activations' end (`$operands`: the kernel's own
/// registers). 13 registers for three and four tokens.
#[cfg(not(feature = "small-kernels"))]
macro_rules! tile_fn {
    (
        $(#[$doc:meta])* $name:ident, $tokens:literal, ($store:literal, $load:literal),
        [$($pairs:tt),+], ($row_start:literal, $loop_end:literal), [$($operands:tt)*]
    ) => {
        $(#[$doc])*
        #[inline(always)]
        fn $name(
            sums: &mut [[i32; TILE_TOKENS]],
            (w, row_len): (&[i8], usize),
            cols: core::ops::Range<usize>,
            x: &[u32],
        ) {
            let steps = cols.len() / STEP;
            // The rows `w` holds (row `r`'s columns at `r * row_len + cols`).
            let held = w.len().checked_sub(cols.end).and_then(|n| n.checked_div(row_len));
            let rows = sums.len().min(held.map_or(0, |n| n + 1));
            if steps == 0 || rows == 0 || cols.end > row_len || x.len() < steps * 2 * $tokens {
                return;
            }
            let sums = sums.as_mut_ptr_range();
            // The row loop's state (passed in `r0`, kept at the stack pointer): the next
            // row's sums, the end of the rows, the bytes from one row's last step to
            // the next row's first, the activations, the loop's iterations, the steps
            // its first iteration skips, and the activations' end (copied to the stack
            // for kernels whose loop ends on it).
            let mut state = [
                sums.start as usize,
                sums.start.wrapping_add(rows) as usize,
                row_len - STEP * steps,
                x.as_ptr() as usize,
                steps.div_ceil(UNROLL),
                (UNROLL - steps % UNROLL) % UNROLL,
                x.as_ptr().wrapping_add(steps * 2 * $tokens) as usize,
            ];
            // SAFETY: for each row `r < rows` (`(rows - 1) * row_len + cols.end <=
            // w.len()`, `rows <= sums.len()`) reads `steps` words of `w` from `r *
            // row_len + cols.start` (`cols.start + 4 * steps <= cols.end <= row_len`;
            // word loads, which ARMv7-M allows unaligned), `2 * $tokens * steps` words of `x` (checked
            // above; `LDM`/`LDRD` need 4-byte alignment, which `&[u32]` has), and loads
            // and stores the `$tokens` first sums of `sums[r]` (16 bytes apart, 4-byte
            // aligned). `steps >= 1`: `ceil(steps / UNROLL) >= 1` iterations of which
            // the first enters past `(UNROLL - steps % UNROLL) % UNROLL` steps (a `TBB`
            // index below the table's 8 entries), so each row's loop ends; the row
            // loop ends at the `rows`-th row (a loop that ends on the activations' end
            // meets it after the same `steps`). The state pointer and the activations'
            // end are kept in 8 bytes below the stack pointer, restored before the end.
            // Every register written is an output; the DSP instructions exist on this
            // target (cfg(tinyformer_dsp)).
            unsafe {
                asm!(
                    concat!(
                        "str r0, [sp, #-8]!\n",
                        "ldr r1, [r0, #24]\n",
                        "str r1, [sp, #4]\n",
                        "ldr r1, [r0]\n",
                        "b 1f\n",
                        // A row's end: its sums stored, the next row's pointers.
                        "9:\n",
                        "ldr r0, [sp]\n",
                        "ldr r1, [r0]\n",
                        $store, "\n",
                        "adds r1, #16\n",
                        "str r1, [r0]\n",
                        "ldr r2, [r0, #4]\n",
                        "cmp r1, r2\n",
                        "beq 8f\n",
                        "ldr r2, [r0, #8]\n",
                        "add {wp}, r2\n",
                        // A row's start: its sums, then a jump to the loop's entry.
                        "1:\n",
                        "ldr {xp}, [r0, #12]\n",
                        $load, "\n",
                        $row_start, "\n",
                        "ldr {w}, [r0, #20]\n",
                        "tbb [pc, {w}]\n",
                        "19:\n",
                        ".byte (20f - 19b) / 2, (21f - 19b) / 2, (22f - 19b) / 2, (23f - 19b) / 2\n",
                        ".byte (24f - 19b) / 2, (25f - 19b) / 2, (26f - 19b) / 2, (27f - 19b) / 2\n",
                        ".p2align 1\n",
                        "20:\n",
                        tile_step!($($pairs),+),
                        "21:\n",
                        tile_step!($($pairs),+),
                        "22:\n",
                        tile_step!($($pairs),+),
                        "23:\n",
                        tile_step!($($pairs),+),
                        "24:\n",
                        tile_step!($($pairs),+),
                        "25:\n",
                        tile_step!($($pairs),+),
                        "26:\n",
                        tile_step!($($pairs),+),
                        "27:\n",
                        tile_step!($($pairs),+),
                        $loop_end, "\n",
                        "bne 20b\n",
                        "b 9b\n",
                        "8:\n",
                        "add sp, #8\n",
                    ),
                    wp = inout(reg) w.as_ptr().wrapping_add(cols.start) => _,
                    xp = out(reg) _,
                    w = out(reg) _,
                    we = out(reg) _,
                    inout("r0") state.as_mut_ptr() => _,
                    out("r1") _,
                    out("r2") _,
                    out("r3") _,
                    $($operands)*
                );
            }
        }
    };
}

#[cfg(not(feature = "small-kernels"))]
tile_fn!(
    /// One token (a batch of one): 6 instructions per step of 4 MACs, about as many
    /// as [`dot4`]'s 25 per 16.
    tile1,
    1,
    ("str r8, [r1]", "ldr r8, [r1]"),
    [r8],
    ("ldr {n}, [r0, #16]", "subs {n}, {n}, #1"),
    [n = out(reg) _, out("r8") _]
);
#[cfg(not(feature = "small-kernels"))]
tile_fn!(
    /// Two tokens: 8 instructions per step of 8 MACs.
    tile2,
    2,
    ("stm r1, {{r8, r9}}", "ldm r1, {{r8, r9}}"),
    [(r8, r9)],
    ("ldr {n}, [r0, #16]", "subs {n}, {n}, #1"),
    [n = out(reg) _, out("r8") _, out("r9") _]
);
#[cfg(not(feature = "small-kernels"))]
tile_fn!(
    /// Three tokens: 10 instructions per step of 12 MACs (one `LDM` of six words, so
    /// the loop ends on the activations' end, kept on the stack, instead of a count).
    tile3,
    3,
    ("stm r1, {{r8, r9, r10}}", "ldm r1, {{r8, r9, r10}}"),
    [(r8, r9, r10)],
    ("", "ldr {w}, [sp, #4]\ncmp {xp}, {w}"),
    [out("r4") _, out("r5") _, out("r8") _, out("r9") _, out("r10") _]
);
#[cfg(not(feature = "small-kernels"))]
tile_fn!(
    /// Four tokens: 13 instructions per step of 16 MACs.
    tile4,
    4,
    ("stm r1, {{r8, r9, r10, r11}}", "ldm r1, {{r8, r9, r10, r11}}"),
    [(r8, r9), (r10, r11)],
    ("ldr {n}, [r0, #16]", "subs {n}, {n}, #1"),
    [n = out(reg) _, out("r8") _, out("r9") _, out("r10") _, out("r11") _]
);
/// Columns `cols` of the tile's token rows (`tile` holds `tokens` rows of `row_len`
/// int8), unpacked for the tile kernels: per 4-column step, per token, `[x0, x2]` and
/// `[x1, x3]` as int16 halves (`SXTB16`), so step `s` of token `t` is at words
/// `2 * (s * tokens + t)`. The kernels then read the unpacked words in order: the
/// written part of `out`, returned. (`out` is not zeroed first: 1 KiB a call.)
#[cfg(not(feature = "small-kernels"))]
#[inline(never)]
fn unpack_tile<'u>(
    out: &'u mut [MaybeUninit<u32>],
    tile: &[i8],
    (tokens, row_len): (usize, usize),
    cols: core::ops::Range<usize>,
) -> &'u [u32] {
    let n = (cols.len() / STEP).min(out.len() / (2 * tokens).max(1));
    let len = 2 * tokens * n;
    for t in 0..tokens {
        let start = t * row_len;
        let x = tile.get(start + cols.start..start + cols.end);
        let Some(x) = x.filter(|_| n > 0) else {
            // (Never for the tiles' rows, which `x` holds; written all the same.)
            for step in out
                .get_mut(..len)
                .unwrap_or(&mut [])
                .chunks_exact_mut(2 * tokens)
            {
                for word in step.get_mut(2 * t..2 * t + 2).unwrap_or(&mut []) {
                    word.write(0);
                }
            }
            continue;
        };
        // SAFETY: reads `n` words of `x` (`4 * n <= cols.len() == x.len()`; word loads,
        // which ARMv7-M allows unaligned) and writes words `2 * (s * tokens + t)` and
        // the next for `s < n` (`t < tokens`, so below `2 * tokens * n <= out.len()`;
        // `STRD` needs 4-byte alignment, which `MaybeUninit<u32>` has): an odd step
        // first, then `n / 2` iterations of two (skipped when 0), so the loop ends.
        // Every register written is an output; the DSP instructions exist on this
        // target (cfg(tinyformer_dsp)).
        unsafe {
            asm!(
                // An odd count starts with one step, then two steps per iteration.
                "lsrs {n}, {n}, #1",
                "bcc 3f",
                "ldr {v}, [{src}], #4",
                "sxtb16 {e}, {v}",
                "sxtb16 {v}, {v}, ror #8",
                "strd {e}, {v}, [{dst}]",
                "add {dst}, {dst}, {stride}",
                "3:",
                "cmp {n}, #0",
                "beq 4f",
                "2:",
                // (Two word loads: the rows need not be word-aligned, `LDRD` must.)
                "ldr {v}, [{src}], #4",
                "ldr {w}, [{src}], #4",
                "sxtb16 {e}, {v}",
                "sxtb16 {v}, {v}, ror #8",
                "strd {e}, {v}, [{dst}]",
                "add {dst}, {dst}, {stride}",
                "sxtb16 {e}, {w}",
                "sxtb16 {w}, {w}, ror #8",
                "strd {e}, {w}, [{dst}]",
                "add {dst}, {dst}, {stride}",
                "subs {n}, {n}, #1",
                "bne 2b",
                "4:",
                src = inout(reg) x.as_ptr() => _,
                dst = inout(reg) out.as_mut_ptr().wrapping_add(2 * t) => _,
                n = inout(reg) n => _,
                stride = in(reg) 8 * tokens,
                v = out(reg) _,
                w = out(reg) _,
                e = out(reg) _,
                options(nostack),
            );
        }
    }
    // SAFETY: every word of `out[..len]` was written above: words `2 * (s * tokens +
    // t)` and the next, for every `t < tokens` and `s < n`.
    unsafe { assume_init(out.get(..len).unwrap_or(&[])) }
}

/// `words` as the values they hold.
///
/// # Safety
///
/// Every element of `words` must have been written.
#[cfg(not(feature = "small-kernels"))]
unsafe fn assume_init<T>(words: &[MaybeUninit<T>]) -> &[T] {
    // SAFETY: `MaybeUninit<T>` has the layout of `T`, and the caller promises every
    // element is initialised.
    unsafe { &*(core::ptr::from_ref(words) as *const [T]) }
}

/// The products of a group of weight rows (`w` holds up to `sums.len()` rows of
/// `cols` columns, `w_stride` apart) with a tile of `tokens` tokens (`tile`, rows
/// `x_stride` apart):
/// `sums[r][t] = init[r] + dot(row r, token t)` (wrapping; a missing `init` is 0), or
/// `init[r]` for a row `w` does not hold; `sums` is written first and returned
/// initialised. Unpacks the tile's activations into `unpacked` chunk by chunk
/// ([`unpack_tile`]), except that a tile of one chunk is unpacked only for its first
/// group (`first_group`) and kept for the others. Not generic and not inlined: one
/// copy serves every caller.
#[cfg(not(feature = "small-kernels"))]
#[inline(never)]
fn tile_group<'s>(
    sums: &'s mut [MaybeUninit<[i32; TILE_TOKENS]>],
    unpacked: &mut [MaybeUninit<u32>],
    (tile, w): (&[i8], &[i8]),
    (tokens, cols_len): (usize, usize),
    (x_stride, w_stride): (usize, usize),
    (first_group, init): (bool, &[i32]),
) -> &'s mut [[i32; TILE_TOKENS]] {
    let (head, rest) = sums.split_at_mut(init.len().min(sums.len()));
    for (sum, &b) in head.iter_mut().zip(init) {
        sum.write([b; TILE_TOKENS]);
    }
    for sum in rest {
        sum.write([0; TILE_TOKENS]);
    }
    // SAFETY: every element of `sums` was written just above.
    let sums = unsafe { &mut *(core::ptr::from_mut(sums) as *mut [[i32; TILE_TOKENS]]) };
    // Only the rows `w` holds completely (the others' sums stay at `init`).
    let held = w
        .len()
        .checked_sub(cols_len)
        .map(|room| room / w_stride.max(1) + 1);
    let w = w
        .get(..held.map_or(0, |n| (n - 1) * w_stride + cols_len))
        .unwrap_or(&[]);
    let body = cols_len / STEP * STEP;
    let chunks = body.div_ceil(CHUNK_COLS);
    for c in 0..chunks {
        let cols = c * CHUNK_COLS..((c + 1) * CHUNK_COLS).min(body);
        let Some(x) = unpacked.get_mut(..2 * tokens * cols.len() / STEP) else {
            return sums;
        };
        let x = if chunks > 1 || first_group {
            unpack_tile(x, tile, (tokens, x_stride), cols.clone())
        } else {
            // SAFETY: a tile of one chunk was unpacked by its first group (`tiles`
            // calls `first_group` first for each tile), the same tokens and columns:
            // these words, all written by `unpack_tile`.
            unsafe { assume_init(x) }
        };
        let group = (w, w_stride);
        match tokens {
            1 => tile1(sums, group, cols, x),
            2 => tile2(sums, group, cols, x),
            3 => tile3(sums, group, cols, x),
            _ => tile4(sums, group, cols, x),
        }
    }
    if body < cols_len {
        // Row `r`'s last columns, rows `stride` apart.
        let tail = |r: usize, stride: usize| r * stride + body..r * stride + cols_len;
        for (r, acc) in sums.iter_mut().enumerate() {
            let Some(row_tail) = w.get(tail(r, w_stride)) else {
                break;
            };
            for (t, acc) in acc.iter_mut().enumerate().take(tokens) {
                let x_tail = tile.get(tail(t, x_stride)).unwrap_or(&[]);
                *acc = acc.wrapping_add(dot(x_tail, row_tail));
            }
        }
    }
    sums
}

/// `matmul_i8_reference(rows, cols, xs, w, bias, store)`: tiles of up to
/// [`TILE_TOKENS`] tokens share each weight word (one load and two unpacks for four
/// tokens' eight `SMLAD`), the tile's activations unpacked to int16 once per chunk of
/// [`CHUNK_COLS`] columns (once per tile when the rows are no longer than that, else
/// once per group of [`GROUP_ROWS`] rows, whose sums stay on the stack from chunk to
/// chunk); [`tile_group`] computes them.
#[cfg(not(feature = "small-kernels"))]
pub(super) fn matmul(
    rows: usize,
    cols: usize,
    xs: &[i8],
    w: &[i8],
    bias: &[i32],
    mut store: impl FnMut(usize, usize, i32),
) {
    let (x, w) = (RowsI8::contiguous(xs, cols), RowsI8::contiguous(w, cols));
    tiles(rows, x, (w, &[]), |(t0, tokens), group, sums| {
        for (o, acc) in group.zip(sums) {
            let b = bias.get(o).copied().unwrap_or(0);
            for (t, &acc) in acc.iter().enumerate().take(tokens) {
                store(t0 + t, o, acc.saturating_add(b));
            }
        }
    });
}

/// [`matmul`] into rows of `out`, for row-strided operands (`x` and `w` as wide as
/// each other, rows at least that far apart; the attention scores' heads too): `out[t *
/// out_stride + o] = dot(W[o], x row t) + bias[o]` (saturating) for `o < w.rows`, each
/// tile's sums stored a token row at a time (contiguous stores, one bounds check per
/// row); an element outside `out` is not written. Where no sum can overflow (rows
/// shorter than `2^15`: `|dot| < 2^29`; every `|bias| < 2^30`), the sums start from the
/// bias, whose saturating addition is then the plain one, and the stores are copies.
#[cfg(not(feature = "small-kernels"))]
pub(super) fn matmul_into(
    x: RowsI8<'_>,
    (w, bias): (RowsI8<'_>, &[i32]),
    out: &mut [i32],
    out_stride: usize,
) {
    // (An OR over the magnitudes, without the early exit of `all`: about half the
    // instructions per bias.)
    let bits = bias.iter().fold(0, |bits, b| bits | b.unsigned_abs());
    let folded = x.cols < 1 << 15 && bits < 1 << 30;
    let init = if folded { bias } else { &[] };
    tiles(w.rows, x, (w, init), |(t0, tokens), group, sums| {
        for t in 0..tokens.min(TILE_TOKENS) {
            let start = (t0 + t)
                .saturating_mul(out_stride)
                .saturating_add(group.start);
            let Some(y) = out.get_mut(start..).and_then(|y| y.get_mut(..group.len())) else {
                continue;
            };
            if folded {
                copy_column(y, sums, t);
                continue;
            }
            let sums = sums.iter().map(|acc| acc.get(t).copied().unwrap_or(0));
            {
                for ((y, acc), o) in y.iter_mut().zip(sums).zip(group.clone()) {
                    *y = acc.saturating_add(bias.get(o).copied().unwrap_or(0));
                }
            }
        }
    });
}

/// `y[r] = sums[r][t]` for `r < min(y.len(), sums.len())` (`t < TILE_TOKENS`): four
/// values per iteration by four loads 16 bytes apart and one `STM`, 7 instructions
/// (the compiler's loop takes about 5 per value).
#[cfg(not(feature = "small-kernels"))]
#[inline(always)]
fn copy_column(y: &mut [i32], sums: &[[i32; TILE_TOKENS]], t: usize) {
    let n = y.len().min(sums.len());
    if t >= TILE_TOKENS {
        return;
    }
    let (fours, rest) = (n / 4, n % 4);
    if fours > 0 {
        // SAFETY: reads `sums[r][t]` (`16 * r + 4 * t` bytes into `sums`, `t <
        // TILE_TOKENS` checked) and writes `y[r]` for `r < 4 * fours <= n`, both held (`n` is
        // the shorter length); 4-byte aligned (`STM`). `fours >= 1`: the count-down
        // loop ends. Every register written is an output.
        unsafe {
            asm!(
                "2:",
                "ldr r0, [{s}], #16",
                "ldr r1, [{s}], #16",
                "ldr r2, [{s}], #16",
                "ldr r3, [{s}], #16",
                "stm {y}!, {{r0, r1, r2, r3}}",
                "subs {n}, {n}, #1",
                "bne 2b",
                s = inout(reg) sums.as_ptr().cast::<i32>().wrapping_add(t) => _,
                y = inout(reg) y.as_mut_ptr() => _,
                n = inout(reg) fours => _,
                out("r0") _,
                out("r1") _,
                out("r2") _,
                out("r3") _,
                options(nostack),
            );
        }
    }
    let done = 4 * fours;
    for (y, row) in y.iter_mut().zip(sums).skip(done).take(rest) {
        *y = row.get(t).copied().unwrap_or(0);
    }
}

/// The tiles of [`matmul`]: `emit((t0, tokens), group, sums)` with, for each output
/// row `o` of `group`, `sums[o - group.start][t] = init[o] + dot(W[o], token t0 + t)`
/// (wrapping; a missing `init` is 0) for the tile's `t < tokens`. Only `emit` is generic; not inlined into the caller, so that it does not
/// hold several copies of the 1.5 KiB of stack buffers at once.
#[cfg(not(feature = "small-kernels"))]
#[inline(never)]
fn tiles(
    rows: usize,
    x: RowsI8<'_>,
    (w, init): (RowsI8<'_>, &[i32]),
    mut emit: impl FnMut((usize, usize), core::ops::Range<usize>, &[[i32; TILE_TOKENS]]),
) {
    let cols = x.cols.min(w.cols);
    if cols == 0 {
        return;
    }
    let tokens = x.held();
    // Not zeroed (1.5 KiB a call): `tile_group` writes what it reads.
    let mut unpacked = [MaybeUninit::<u32>::uninit(); 2 * TILE_TOKENS * CHUNK_COLS / STEP];
    let mut sums = [MaybeUninit::<[i32; TILE_TOKENS]>::uninit(); GROUP_ROWS];
    let mut t0 = 0;
    while t0 < tokens {
        // Tiles of 4 and 3 (0.81 and 0.83 instructions per MAC), not 2 or 1 (1.0 and
        // 1.5) where that can be helped: 5 is 3 + 2, 6 is 3 + 3, 9 is 3 + 3 + 3.
        let n = match tokens - t0 {
            5 | 6 | 9 => 3,
            left => left.min(TILE_TOKENS),
        };
        let tile = x.data.get(t0 * x.stride..).unwrap_or(&[]);
        for g0 in (0..rows).step_by(GROUP_ROWS) {
            let group = g0..(g0 + GROUP_ROWS).min(rows);
            // The group's rows (the kernels skip those `w` does not hold: their sums
            // stay at `init`).
            let group_w = w.data.get(g0 * w.stride..).unwrap_or(&[]);
            let sums = sums.get_mut(..group.len()).unwrap_or(&mut []);
            let init = init.get(g0..).unwrap_or(&[]);
            let sums = tile_group(
                sums,
                &mut unpacked,
                (tile, group_w),
                (n, cols),
                (x.stride, w.stride),
                (g0 == 0, init),
            );
            emit((t0, n), group, sums);
        }
        t0 += n;
    }
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

/// `ctx[c] += sum_j probs[j] * values[j * stride + c]` for a head of a multiple of 4
/// channels (the values of one head start at `values[0]`), the attention's weighted
/// sum; other head sizes return `false` for the reference. Probabilities must be in `[0, 2^15)` for
/// the packed loop (the softmax gives `2^15` only when all the weight is on one key):
/// the loop stops at the first pair with one outside, and the rest goes key by key.
/// Keys two at a time: their probabilities packed as two int16 in one word (`PKHBT`),
/// the values unpacked by `SXTB16`, then one 16x16 multiply-accumulate per value
/// (`SMLAxy` picks the halves: no repacking); four channels per pass (13 registers),
/// `head / 4` passes: 19 instructions per pair of keys and pass. Exact integer sums,
/// as the reference.
#[inline(never)]
pub(crate) fn weighted_values(
    ctx: &mut [i32],
    probs: &[i32],
    values: &[i8],
    stride: usize,
) -> bool {
    let head = ctx.len();
    if stride == 0 || head == 0 || !head.is_multiple_of(4) {
        return false;
    }
    // Keys whose `head` values the slice holds (the reference skips the others).
    let whole = match values.len().checked_sub(head) {
        Some(last) => last / stride + 1,
        None => 0,
    }
    .min(probs.len());
    let pairs = whole / 2;
    // Pairs the loop took before meeting a probability outside `[0, 2^15)` (the
    // same in every pass: same probabilities).
    let mut done = pairs;
    for (pass, c) in ctx.chunks_exact_mut(4).enumerate() {
        if pairs == 0 {
            break;
        }
        let [mut a0, mut a1, mut a2, mut a3] = [c[0], c[1], c[2], c[3]];
        let left: usize;
        // SAFETY: `pairs >= 1` pairs of keys are read: probabilities `2k, 2k + 1 <
        // whole <= probs.len()` (doubleword loads of `probs`, 4-byte aligned as
        // `i32`s), value rows `j * stride + 4 * pass ..+ 4` with `j < whole` and
        // `4 * pass + 4 <= head`, inside `values` (the definition of `whole`), by
        // word loads ARMv7-M allows
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
                vp = inout(reg) values.as_ptr().add(4 * pass) => _,
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
        done = pairs - left;
    }
    // From the pair the loop stopped at (if any), and the odd last whole key, as the
    // reference.
    for j in 2 * done..whole {
        let p = probs.get(j).copied().unwrap_or(0);
        if p != 0 {
            let row = values.get(j * stride..j * stride + head).unwrap_or(&[]);
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
