//! On-target self-test of the int8 kernels (QEMU `mps2-an386`, Cortex-M4F).
//!
//! Runs the Cortex-M DSP kernels (`SMLAD`) and the scalar references on many
//! pseudo-random and extreme vectors (every length 0..=300, matrices of 0..=9 rows;
//! int8 activations as the encoder's, int16 as the decoder's, and the decoder's
//! attention scores; products of 0..=9 tokens at once, as the encoder's batches, and
//! of row-strided operands, as its attention scores), and the epilogues and
//! LayerNorm whose loops are assembly on this core against their definitions, and
//! exits with status 1 at the first mismatch, 0 if all agree. Then it times one
//! 128x384 matrix-vector product with each kernel, and the same matrix times 8 tokens
//! with the DSP kernel, between marker functions, so `tools/kernel-check-m4.sh` can
//! count the instructions of each with the QEMU plugin `tools/qemu/insncount.c`.
#![no_std]
#![no_main]

use core::fmt::Write as _;
use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hio};
use panic_semihosting as _;
use tinyformer::kernels::attention::{weighted_values, weighted_values_reference};
use tinyformer::kernels::gelu::{act_table_input, activation_q10, gelu, Tail, ACT_TABLE_LEN};
use tinyformer::kernels::layernorm::{layer_norm_i32, layer_norm_i32_reference};
use tinyformer::kernels::matvec::{
    dot_i8_with, dots_i16, dots_i16_reference, dots_i8_reference, dots_i8_with,
    matmul_i8_into_with, matmul_i8_strided_reference, matmul_i8_strided_with, matmul_i8_with,
    matvec_i16_with, matvec_i8_with, Int8Kernel, RowsI8,
};
use tinyformer::kernels::requant;
use tinyformer::quant::{
    clamp_residual, i16_activation_limit, mul_wide, saturate_i8, saturate_residual, Requant,
    RESIDUAL_MAX,
};

/// Shape of the timed matrix-vector product (an FFN-sized row block).
const ROWS: usize = 128;
const COLS: usize = 384;
/// Longest vector of the dot-product sweep.
const MAX_LEN: usize = 300;
/// Rows and columns of the matrix sweep.
const MAX_ROWS: usize = 9;
const SWEEP_COLS: [usize; 13] = [0, 1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 64, 130];
/// Tokens of the multi-token sweep (tiles of 4, 3 and 2, and one token alone).
const MAX_TOKENS: usize = 9;
/// Rows and columns of the multi-token sweep: row groups and column chunks of the
/// tiled kernel (32 rows, 128 columns) with every kind of leftover, and the default
/// model's shapes (96 and 384 columns).
const MATMUL_ROWS: [usize; 6] = [0, 1, 5, 33, 65, 96];
const MATMUL_COLS: [usize; 12] = [0, 1, 3, 4, 8, 12, 96, 127, 128, 131, 260, 384];

static mut WEIGHTS: [i8; ROWS * COLS] = [0; ROWS * COLS];
static mut TOKENS: [i8; MAX_TOKENS * COLS] = [0; MAX_TOKENS * COLS];
/// Results of the multi-token sweep, `[token][row]`: the DSP kernel's, the reference's.
static mut GOT: [i32; MAX_TOKENS * 96] = [0; MAX_TOKENS * 96];
static mut WANT: [i32; MAX_TOKENS * 96] = [0; MAX_TOKENS * 96];

/// Each marker bumps its own counter, so the linker cannot fold them into one address.
macro_rules! marker {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        #[inline(never)]
        #[no_mangle]
        pub extern "C" fn $name() {
            static CALLS: AtomicU32 = AtomicU32::new(0);
            CALLS.fetch_add(1, Ordering::SeqCst);
        }
    };
}
marker!(scalar_begin, "Start of the timed scalar matvec.");
marker!(scalar_end, "End of the timed scalar matvec.");
marker!(dsp_begin, "Start of the timed DSP matvec.");
marker!(dsp_end, "End of the timed DSP matvec.");
marker!(
    dsp_tokens_begin,
    "Start of the timed DSP product with several tokens."
);
marker!(
    dsp_tokens_end,
    "End of the timed DSP product with several tokens."
);
/// Tokens of the timed multi-token product.
const TIMED_TOKENS: usize = 8;

/// xorshift32: deterministic pseudo-random bytes.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }

    fn byte(&mut self) -> i8 {
        (self.next() >> 24) as i8
    }

    /// Fills `v` with pattern `kind`: random, all -128, all 127, alternating extremes,
    /// random extremes.
    fn fill(&mut self, v: &mut [i8], kind: usize) {
        for (i, e) in v.iter_mut().enumerate() {
            *e = match kind {
                0 => self.byte(),
                1 => -128,
                2 => 127,
                3 => [127, -128][i % 2],
                _ => [127, -128][(self.byte() & 1) as usize],
            };
        }
    }
}

const PATTERNS: usize = 5;

/// Fills `v` with int16 activations for a product of `v.len()`: pattern `kind` as in
/// [`Rng::fill`], at the extremes the narrowing allows (`±i16_activation_limit`).
fn fill_i16(rng: &mut Rng, v: &mut [i16], kind: usize) {
    let top = i16_activation_limit(v.len());
    for (i, e) in v.iter_mut().enumerate() {
        *e = match kind {
            0 => {
                let raw = (i32::from(rng.byte()) << 8) | i32::from(rng.byte() as u8);
                (raw % (i32::from(top) + 1)) as i16
            }
            1 => -top,
            2 => top,
            3 => [top, -top][i % 2],
            _ => [top, -top][(rng.byte() & 1) as usize],
        };
    }
}

#[entry]
fn main() -> ! {
    let mut out = hio::hstdout().ok();
    let status = match run(&mut out) {
        Ok(()) => debug::EXIT_SUCCESS,
        Err(()) => debug::EXIT_FAILURE,
    };
    debug::exit(status);
    loop {
        cortex_m::asm::wfi();
    }
}

macro_rules! say {
    ($out:expr, $($t:tt)*) => {
        if let Some(o) = $out.as_mut() {
            let _ = writeln!(o, $($t)*);
        }
    };
}

fn run(out: &mut Option<hio::HostStream>) -> Result<(), ()> {
    if !Int8Kernel::Dsp.is_available() || Int8Kernel::best() != Int8Kernel::Dsp {
        say!(
            out,
            "FAIL the DSP kernel is not compiled in for this target"
        );
        return Err(());
    }
    let (fast, reference) = (Int8Kernel::Dsp, Int8Kernel::Scalar);
    let mut rng = Rng(0x1234_5678);
    let mut cases = 0u32;

    // The 32-bit helpers written in assembly on this core, against their definitions:
    // the residual clamp at and around its bounds and on random values, and the
    // 32 x 32 -> 64-bit product.
    let r = RESIDUAL_MAX as i32;
    let edges = [
        0,
        1,
        -1,
        r,
        r + 1,
        -r,
        -r - 1,
        -r - 2,
        1 << 24,
        -(1 << 24),
        i32::MAX,
        i32::MIN,
    ];
    for i in 0..4096u32 {
        let x = match edges.get(i as usize) {
            Some(&x) => x,
            None => (rng.next() as i32) >> (i % 8),
        };
        let y = rng.next() as i32;
        cases += 1;
        if clamp_residual(x) != x.clamp(-r, r) || mul_wide(x, y) != i64::from(x) * i64::from(y) {
            say!(out, "FAIL clamp_residual / mul_wide at {x}, {y}");
            return Err(());
        }
    }

    // The epilogues with loops in assembly on this core (the FFN activation and the
    // residual projections), against their definitions element by element: channels
    // of every requantization kind (total right shifts of 33..62, whose loops are
    // assembly, 8..32 with a normalised multiplier, and others), accumulators and
    // biases random at every magnitude and at the extremes, rows with exponents.
    let table: [i32; ACT_TABLE_LEN] =
        // GELU in Q10, tilted so that neighbouring entries differ (below the table is
        // its first entry, not its second).
        core::array::from_fn(|i| (gelu(act_table_input(i) as f32) * 1024.0) as i32 + 3 * i as i32 - 700);
    let pair = |rng: &mut Rng, kind: u32| -> [i32; 2] {
        let normalised = (1 << 30) | (rng.next() >> 2) as i32;
        let total = match kind {
            0 => 33 + rng.next() % 38,
            1 => 8 + rng.next() % 25,
            _ => 1 + rng.next() % 62,
        } as i32;
        let m = if kind == 2 {
            (rng.next() >> (rng.next() % 31)) as i32
        } else {
            normalised
        };
        [m, 31 - total]
    };
    let value = |rng: &mut Rng, i: usize| match i % 7 {
        0 => [i32::MAX, i32::MIN, 0, 1, -1][(rng.next() % 5) as usize],
        _ => (rng.next() as i32) >> (rng.next() % 32),
    };
    for trial in 0..3000u32 {
        let (width, rows) = (1 + (trial % 12) as usize, 1 + (trial / 12 % 9) as usize);
        // Every channel of the fast loops' kinds on most trials (each channel's pair
        // still checked), other kinds mixed in on the rest.
        let mixed = trial % 4 == 3;
        let kind = |rng: &mut Rng, fast: u32| if mixed { rng.next() % 3 } else { fast };
        let (mut rq, mut act_rq, mut skip_rq) = ([[0i32; 2]; 12], [[0i32; 2]; 12], [[0i32; 2]; 12]);
        let (mut bias, mut skip, mut exponents) = ([0i32; 12], [0i8; 108], [0u8; 9]);
        for o in 0..width {
            let k = kind(&mut rng, 0);
            rq[o] = pair(&mut rng, k);
            let k = kind(&mut rng, 1);
            act_rq[o] = pair(&mut rng, k);
            let k = kind(&mut rng, 1);
            skip_rq[o] = pair(&mut rng, k);
            bias[o] = value(&mut rng, o + 1);
        }
        for e in exponents.iter_mut() {
            *e = (rng.next() % [4, 12, 32][(trial % 3) as usize]) as u8;
        }
        // Some trials where the residual projections' bias term has its shift capped
        // (a total shift of 63 or 64, every row's exponent 2 or 3) and the skip term is
        // of the fast loop's kind (a total shift of 17 to 32).
        if trial % 8 == 5 {
            for e in exponents.iter_mut() {
                *e = 2 + (rng.next() % 2) as u8;
            }
            for o in 0..width {
                let normalised = |rng: &mut Rng| (1 << 30) | (rng.next() >> 2) as i32;
                rq[o] = [normalised(&mut rng), 31 - (63 + (rng.next() % 2) as i32)];
                skip_rq[o] = [normalised(&mut rng), 31 - (17 + (rng.next() % 16) as i32)];
            }
        }
        rng.fill(&mut skip, (trial % PATTERNS as u32) as usize);
        let mut acc = [0i32; 108];
        for (i, a) in acc.iter_mut().enumerate() {
            *a = value(&mut rng, i);
        }
        let n = width * rows;
        let (mut got, mut want) = (acc, acc);
        requant::activation(
            &mut got[..n],
            (&rq[..width], &act_rq[..width]),
            requant::ActTable::new(&table),
            width,
        );
        for (i, w) in want[..n].iter_mut().enumerate() {
            let (pre, post) = (
                Requant::new(rq[i % width][0], rq[i % width][1]),
                Requant::new(act_rq[i % width][0], act_rq[i % width][1]),
            );
            let x = saturate_residual(pre.apply(*w));
            *w = saturate_residual(post.apply(activation_q10(x, &table, Tail::Linear)));
        }
        cases += 1;
        if got[..n] != want[..n] {
            say!(
                out,
                "FAIL activation {rows}x{width} trial {trial}: {:?} want {:?}",
                &got[..n],
                &want[..n]
            );
            return Err(());
        }
        // The plain requantizations (keys and values to int8, queries to the wide grid,
        // a head's context columns), on both tables (their kinds differ per channel).
        for table in [&rq[..width], &act_rq[..width]] {
            let apply = |o: usize, a: i32| Requant::new(table[o][0], table[o][1]).apply(a);
            let mut got8 = [0i8; 108];
            requant::to_i8(&mut got8[..n], &acc[..n], table, width);
            let (mut got, mut want) = (acc, acc);
            requant::to_wide(&mut got[..n], table, width);
            let mut ok = (0..n).all(|i| got8[i] == saturate_i8(apply(i % width, acc[i])));
            for (i, w) in want[..n].iter_mut().enumerate() {
                *w = saturate_residual(apply(i % width, *w));
            }
            ok &= got[..n] == want[..n];
            // A head of columns `1..width` (the pairs from its first column).
            let (mut got, mut want) = (acc, acc);
            requant::context(&mut got[..n], table, (1..width, width), rows);
            for (i, w) in want[..n].iter_mut().enumerate() {
                if i % width >= 1 {
                    let rq = Requant::new(table[i % width - 1][0], table[i % width - 1][1]);
                    *w = rq.add_scaled_residual(0, *w, 0);
                }
            }
            ok &= got[..n] == want[..n];
            cases += 1;
            if !ok {
                say!(
                    out,
                    "FAIL to_i8 / to_wide / context {rows}x{width} trial {trial}"
                );
                return Err(());
            }
        }
        let (mut got, mut want) = (acc, acc);
        requant::onto_residual(
            &mut got[..n],
            &exponents[..rows],
            (&rq[..width], &bias[..width]),
            (&skip[..n], &skip_rq[..width]),
            width,
        );
        for (i, w) in want[..n].iter_mut().enumerate() {
            let (o, t) = (i % width, i / width);
            let rq = Requant::new(rq[o][0], rq[o][1]);
            let skip_rq = Requant::new(skip_rq[o][0], skip_rq[o][1]);
            let sum = rq.apply_scaled(*w, i32::from(exponents[t]))
                + rq.apply(bias[o])
                + skip_rq.apply(i32::from(skip[i]));
            *w = saturate_residual(sum);
        }
        cases += 1;
        if got[..n] != want[..n] {
            say!(
                out,
                "FAIL onto_residual {rows}x{width} trial {trial}: {:?} want {:?}",
                &got[..n],
                &want[..n]
            );
            return Err(());
        }
    }

    // LayerNorm (its 32-bit form with the statistics and the normalisation in
    // assembly on this core) against its 64-bit reference: rows of 1 to 130 values
    // (the assembly sums take rows shorter than 128), values at and past the residual
    // range, parameters of every size.
    for case in 0..1200u32 {
        let n = [1, 2, 3, 7, 96, 127, 128, 130][(case % 8) as usize];
        let amp = [1u32, 40, 3000, 1 << 24, u32::MAX][(case % 5) as usize];
        let mut x = [0i32; 130];
        for (i, v) in x[..n].iter_mut().enumerate() {
            *v = match (case as usize + i) % 11 {
                0 => r,
                1 => -r - 5,
                2 => i32::MIN,
                _ => ((rng.next() % amp) as i32).wrapping_sub((amp / 2) as i32),
            };
        }
        let (mut gq, mut bq) = ([0i32; 130], [0i32; 130]);
        for (g, b) in gq[..n].iter_mut().zip(&mut bq[..n]) {
            let wide = case % 3 == 0;
            *g = if wide {
                rng.next() as i32
            } else {
                (rng.next() % (1 << 20)) as i32 - (1 << 19)
            };
            *b = if wide {
                rng.next() as i32
            } else {
                (rng.next() % (1 << 20)) as i32 - (1 << 19)
            };
        }
        let eps = [0i64, 1, 1 << 20][(case % 3) as usize];
        let (mut got, mut want) = ([0i8; 130], [0i8; 130]);
        layer_norm_i32(&mut got[..n], &x[..n], &gq[..n], &bq[..n], eps);
        layer_norm_i32_reference(&mut want[..n], &x[..n], &gq[..n], &bq[..n], eps);
        cases += 1;
        if got[..n] != want[..n] {
            say!(out, "FAIL layer_norm_i32 n {n} case {case}");
            return Err(());
        }
    }

    // Dot products: every length, every pair of patterns, and unequal lengths.
    let (mut a, mut b) = ([0i8; MAX_LEN], [0i8; MAX_LEN]);
    for len in 0..=MAX_LEN {
        for pa in 0..PATTERNS {
            for pb in 0..PATTERNS {
                rng.fill(&mut a[..len], pa);
                rng.fill(&mut b[..len], pb);
                for (x, y) in [(&a[..len], &b[..len]), (&a[..len], &b[..len / 2])] {
                    let (got, want) = (dot_i8_with(fast, x, y), dot_i8_with(reference, x, y));
                    cases += 1;
                    if got != want {
                        say!(
                            out,
                            "FAIL dot len {} patterns {pa},{pb}: dsp {got} reference {want}",
                            x.len()
                        );
                        return Err(());
                    }
                }
            }
        }
    }

    // Matrix-vector products: row groups of four plus tails, bias saturation, missing
    // rows (a short weight slice reads as zero rows).
    let biases = [0, -3, i32::MAX, i32::MIN, 1 << 30];
    // SAFETY: the only reference to WEIGHTS, in the single thread of the program.
    let weights = unsafe { &mut *core::ptr::addr_of_mut!(WEIGHTS) };
    let mut x = [0i8; COLS];
    for rows in 0..=MAX_ROWS {
        for cols in SWEEP_COLS {
            for pattern in 0..PATTERNS {
                rng.fill(&mut x[..cols], pattern);
                rng.fill(&mut weights[..rows * cols], (pattern + 1) % PATTERNS);
                let mut bias = [0i32; MAX_ROWS];
                for (o, b) in bias.iter_mut().enumerate() {
                    *b = biases[(o + pattern) % biases.len()];
                }
                for (w_len, bias_len) in [(rows * cols, rows), (rows * cols * 2 / 3, rows / 2)] {
                    let (w, bias) = (&weights[..w_len], &bias[..bias_len]);
                    let (mut got, mut want) = ([0i32; MAX_ROWS], [0i32; MAX_ROWS]);
                    let mut calls = 0;
                    matvec_i8_with(fast, rows, &x[..cols], w, bias, |o, v| {
                        got[o] = v;
                        calls += 1;
                    });
                    matvec_i8_with(reference, rows, &x[..cols], w, bias, |o, v| want[o] = v);
                    cases += 1;
                    if got != want || calls != rows {
                        say!(
                            out,
                            "FAIL matvec {rows}x{cols} pattern {pattern}: dsp {:?} reference {:?}",
                            &got[..rows],
                            &want[..rows]
                        );
                        return Err(());
                    }
                }
            }
        }
    }

    // Several tokens at once (the encoder's batches): every (token, row) pair as the
    // reference computes it (a pair never stored keeps 7) and as many stores as pairs,
    // bias saturation and missing rows included.
    // SAFETY: the only references to these statics, in the single thread of the program.
    let (xs, got, want) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(TOKENS),
            &mut *core::ptr::addr_of_mut!(GOT),
            &mut *core::ptr::addr_of_mut!(WANT),
        )
    };
    for tokens in 0..=MAX_TOKENS {
        for rows in MATMUL_ROWS {
            for cols in MATMUL_COLS {
                for pattern in 0..PATTERNS {
                    // Random patterns for the large shapes (the extremes on small ones).
                    if rows * cols > 4096 && pattern != 0 && pattern != 1 {
                        continue;
                    }
                    rng.fill(&mut xs[..tokens * cols], pattern);
                    rng.fill(&mut weights[..rows * cols], (pattern + 1) % PATTERNS);
                    let mut bias = [0i32; 96];
                    for (o, b) in bias.iter_mut().enumerate() {
                        *b = biases[(o + pattern) % biases.len()];
                    }
                    for (w_len, bias_len) in [(rows * cols, rows), (rows * cols * 2 / 3, rows / 2)]
                    {
                        let (w, bias) = (&weights[..w_len], &bias[..bias_len]);
                        let x = &xs[..tokens * cols];
                        let mut calls = 0;
                        got.fill(7);
                        want.fill(0);
                        matmul_i8_with(fast, rows, cols, x, w, bias, |t, o, v| {
                            got[t * rows + o] = v;
                            calls += 1;
                        });
                        matmul_i8_with(reference, rows, cols, x, w, bias, |t, o, v| {
                            want[t * rows + o] = v;
                        });
                        cases += 1;
                        let n = if cols == 0 { 0 } else { tokens * rows };
                        if got[..n] != want[..n] || calls != n {
                            say!(
                                out,
                                "FAIL matmul {tokens}x{rows}x{cols} pattern {pattern}: {calls} stores of {n}"
                            );
                            return Err(());
                        }
                        // The same product into rows of a buffer (the encoder's tiles).
                        got.fill(7);
                        matmul_i8_into_with(fast, rows, cols, x, w, bias, &mut got[..]);
                        if got[..n] != want[..n] {
                            say!(
                                out,
                                "FAIL matmul into {tokens}x{rows}x{cols} pattern {pattern}"
                            );
                            return Err(());
                        }
                    }
                }
            }
        }
    }

    // Int16 activations (the decoder's products) and attention scores of int16
    // queries against strided int8 keys.
    let mut x16 = [0i16; COLS];
    for rows in 0..=MAX_ROWS {
        for cols in SWEEP_COLS {
            for pattern in 0..PATTERNS {
                fill_i16(&mut rng, &mut x16[..cols], pattern);
                rng.fill(&mut weights[..rows * cols], (pattern + 1) % PATTERNS);
                for w_len in [rows * cols, rows * cols * 2 / 3] {
                    let w = &weights[..w_len];
                    let (mut got, mut want) = ([7i32; MAX_ROWS], [0i32; MAX_ROWS]);
                    matvec_i16_with(fast, rows, &x16[..cols], w, |o, v| got[o] = v);
                    matvec_i16_with(reference, rows, &x16[..cols], w, |o, v| want[o] = v);
                    cases += 1;
                    if got[..rows] != want[..rows] {
                        say!(
                            out,
                            "FAIL matvec_i16 {rows}x{cols} pattern {pattern}: dsp {:?} reference {:?}",
                            &got[..rows],
                            &want[..rows]
                        );
                        return Err(());
                    }
                }
            }
        }
    }
    for head in [4, 8, 12, 16, 32, 64, 128] {
        for keys in [0, 1, 5, 9] {
            for stride in [head, head + 3, 2 * head + 8] {
                for pattern in 0..PATTERNS {
                    fill_i16(&mut rng, &mut x16[..head], pattern);
                    let len = (keys * stride + head).min(weights.len());
                    rng.fill(&mut weights[..len], (pattern + 2) % PATTERNS);
                    for k in [
                        &weights[..len],
                        &weights[..len.saturating_sub(head / 2 + 1)],
                    ] {
                        let (mut got, mut want) = ([7i32; 9], [0i32; 9]);
                        dots_i16(&mut got[..keys], &x16[..head], k, stride);
                        dots_i16_reference(&mut want[..keys], &x16[..head], k, stride);
                        cases += 1;
                        if got[..keys] != want[..keys] {
                            say!(
                                out,
                                "FAIL dots_i16 head {head} keys {keys} stride {stride}: dsp {:?} reference {:?}",
                                &got[..keys],
                                &want[..keys]
                            );
                            return Err(());
                        }
                    }
                }
            }
        }
    }

    // The scores of a block of queries against the keys of one head (the encoder's
    // attention): both operands row-strided (a head's columns of `[tokens, hidden]`
    // rows), through the tiles of 1..=4 tokens, the key rows in groups (more than 32
    // keys), the last key cut short (not held: its scores are the bias, 0).
    for (hidden, head) in [(12, 4), (96, 32), (100, 30), (64, 64), (40, 13)] {
        for queries in [1, 2, 3, 5, 6, 7, 9] {
            for keys in [1, 4, 13, 33, 40] {
                for offset in [0, hidden - head] {
                    for cut in [0, 1] {
                        rng.fill(&mut xs[..queries * hidden], (queries + keys) % PATTERNS);
                        let len = (keys * hidden).min(weights.len());
                        rng.fill(&mut weights[..len], (keys + offset) % PATTERNS);
                        let x = RowsI8 {
                            data: &xs[offset..queries * hidden],
                            rows: queries,
                            cols: head,
                            stride: hidden,
                        };
                        let w = RowsI8 {
                            data: &weights[offset..len - cut],
                            rows: keys,
                            ..x
                        };
                        got.fill(7);
                        want.fill(7);
                        matmul_i8_strided_with(fast, x, w, &[], &mut got[..], keys);
                        matmul_i8_strided_reference(x, w, &[], &mut want[..], keys);
                        cases += 1;
                        let n = queries * keys;
                        if got[..n] != want[..n] {
                            say!(
                                out,
                                "FAIL strided scores hidden {hidden} head {head} {queries}x{keys} offset {offset} cut {cut}"
                            );
                            return Err(());
                        }
                    }
                }
            }
        }
    }

    // Attention scores of int8 queries (the encoder's) against strided int8 keys,
    // overlapping rows (a stride below the head) included.
    let mut q8 = [0i8; 128];
    for head in [4, 8, 12, 16, 32, 64, 128] {
        for keys in [0, 1, 5, 9] {
            for stride in [head / 2, head, head + 3, 2 * head + 8] {
                for pattern in 0..PATTERNS {
                    rng.fill(&mut q8[..head], pattern);
                    let len = (keys * stride + head).min(weights.len());
                    rng.fill(&mut weights[..len], (pattern + 2) % PATTERNS);
                    for k in [
                        &weights[..len],
                        &weights[..len.saturating_sub(head / 2 + 1)],
                    ] {
                        let (mut got, mut want) = ([7i32; 9], [0i32; 9]);
                        dots_i8_with(fast, &mut got[..keys], &q8[..head], k, stride);
                        dots_i8_reference(&mut want[..keys], &q8[..head], k, stride);
                        cases += 1;
                        if got[..keys] != want[..keys] {
                            say!(
                                out,
                                "FAIL dots_i8 head {head} keys {keys} stride {stride}: dsp {:?} reference {:?}",
                                &got[..keys],
                                &want[..keys]
                            );
                            return Err(());
                        }
                    }
                }
            }
        }
    }

    // The attention's weighted sum of values (the DSP path takes heads of a multiple
    // of 4):
    // probabilities from 0 to 2^15 (all the weight on one key) and out of range, keys
    // with partial rows, every head of a row.
    let mut probs = [0i32; 9];
    for head_dim in [4, 6, 8, 12, 16, 32] {
        for hidden in [head_dim, 2 * head_dim, 4 * head_dim + 8] {
            for keys in 0..=9 {
                for pattern in 0..PATTERNS {
                    for (j, p) in probs.iter_mut().enumerate() {
                        let r = i32::from(rng.byte() as u8) << 7 | i32::from(rng.byte() as u8 >> 1);
                        *p = match pattern {
                            0 => r,
                            1 => [0, 32768][j % 2],
                            2 => [r, 0, 32767, -5][j % 4],
                            _ => r & 0x7F,
                        };
                    }
                    let len = (keys * hidden).min(weights.len());
                    rng.fill(&mut weights[..len], pattern);
                    for head in 0..hidden / head_dim {
                        for v in [&weights[..len], &weights[..len.saturating_sub(3)]] {
                            let (mut got, mut want) = ([0i32; 32], [0i32; 32]);
                            let probs = &probs[..keys];
                            weighted_values(&mut got[..head_dim], probs, v, hidden, head);
                            weighted_values_reference(
                                &mut want[..head_dim],
                                probs,
                                v,
                                hidden,
                                head,
                            );
                            cases += 1;
                            if got != want {
                                say!(
                                    out,
                                    "FAIL weighted_values head_dim {head_dim} hidden {hidden} keys {keys} head {head}: dsp {:?} reference {:?}",
                                    &got[..head_dim],
                                    &want[..head_dim]
                                );
                                return Err(());
                            }
                        }
                    }
                }
            }
        }
    }

    // The timed product, once per kernel; the results must agree too.
    rng.fill(weights, 0);
    rng.fill(&mut x, 0);
    let (mut sum_reference, mut sum_fast) = (0i32, 0i32);
    scalar_begin();
    matvec_i8_with(reference, ROWS, &x, weights, &[], |_, v| {
        sum_reference = sum_reference.wrapping_add(v)
    });
    scalar_end();
    dsp_begin();
    matvec_i8_with(fast, ROWS, &x, weights, &[], |_, v| {
        sum_fast = sum_fast.wrapping_add(v)
    });
    dsp_end();
    // The same matrix times several tokens (the first is `x`), against the matrix-vector
    // products token by token.
    let xs = &mut xs[..TIMED_TOKENS * COLS];
    rng.fill(xs, 0);
    xs[..COLS].copy_from_slice(&x);
    let mut sum_tokens = 0i32;
    dsp_tokens_begin();
    matmul_i8_with(fast, ROWS, COLS, xs, weights, &[], |t, _, v| {
        if t == 0 {
            sum_tokens = sum_tokens.wrapping_add(v)
        }
    });
    dsp_tokens_end();
    cases += 1;
    if sum_fast != sum_reference || sum_tokens != sum_reference {
        say!(
            out,
            "FAIL timed products: dsp {sum_fast}, {sum_tokens} tokens, reference {sum_reference}"
        );
        return Err(());
    }
    say!(
        out,
        "OK {cases} cases: the DSP kernel matches the scalar reference"
    );
    say!(out, "MACS {}", ROWS * COLS);
    say!(out, "TOKENS {}", TIMED_TOKENS);
    Ok(())
}
