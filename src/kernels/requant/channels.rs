//! The tile epilogues a channel at a time, for 32-bit cores (Cortex-M): a channel's
//! requantization constants are worked out once and kept in registers while its
//! column of the tile (one element per token) goes through the arithmetic, in 32
//! bits, instead of being looked up, clamped and branched on for every element in
//! 64-bit arithmetic.
//!
//! A requantization by a total right shift of 8 to 62 bits is a [`High`] (33 and
//! more: the high word of the product, `SMMUL`, then a rounding shift) or a [`Low`]
//! (the input shifted up first, then the rounded high word, `SMMULR`). The columns go
//! through loops compiled per kind (`*_columns`, not inlined, so that the loop has the
//! core's registers to itself): for runs of channels of one kind, or, for the FFN
//! activation and the residual projections, for the kinds of channel 0 (a converted
//! model's tensor has one kind throughout). A channel of another kind, of neither, or
//! with a term out of the 32-bit bounds, runs the definition's element function, so
//! every result equals the row-at-a-time loops' (tested, on the host too).

use core::ops::Range;

use super::{activation_element, pair, ActTable};
use crate::kernels::gelu::{ACT_FRAC_BITS, ACT_RANGE, ACT_STEPS_PER_UNIT, ACT_TABLE_LEN};
use crate::quant::{clamp_residual, saturate_i8, saturate_residual, Requant};

/// A channel's [`Requant::apply_scaled`]`(x, extra)` in 32-bit arithmetic, for
/// results that are saturated to at most `±2^24` next, after adding terms of less
/// than `2^27` in all: `apply` returns the exact value, or [`SATURATED`] with its sign
/// when that value's magnitude is `2^29 - 1` or more; within `±2^30` either way.
/// Saturated as said, both give the same result.
trait Scale: Copy {
    fn apply(self, x: i32) -> i32;
}

/// A total right shift of 33 or more (capped at 62, as the definition caps it): the
/// high word of the product (`SMMUL`), then `shift = total - 32` (`1..=30`) with
/// rounding, `floor((high + 2^(shift-1)) / 2^shift)`, as `((high >> (shift - 1)) + 1)
/// >> 1` (the same floor; `|high| <= 2^30`, no overflow). Always exact.
#[derive(Clone, Copy)]
struct High {
    multiplier: i32,
    shift: u32,
}

impl Scale for High {
    #[inline(always)]
    fn apply(self, x: i32) -> i32 {
        high(x, self.multiplier, self.shift)
    }
}

/// [`High`]'s arithmetic with the shift an argument (`1..=30`).
#[inline(always)]
fn high(x: i32, multiplier: i32, shift: u32) -> i32 {
    let high = ((i64::from(x) * i64::from(multiplier)) >> 32) as i32;
    ((high >> (shift - 1)) + 1) >> 1
}

/// A total right shift of 8 to 32 with a normalised multiplier (`|m| >= 2^30`): with
/// `y = x * 2^up` (`up = 32 - total`) in `i32`, `floor((y * m + 2^31) / 2^32)`
/// (`SMMULR`) is `floor((x * m + 2^(total-1)) / 2^total)`. `y` does not fit only for
/// `|x| > 2^(total-1)`, and then `|x * m| / 2^total >= 2^29 - 1`: [`SATURATED`].
#[derive(Clone, Copy)]
struct Low {
    multiplier: i32,
    up: u32,
}

impl Scale for Low {
    #[inline(always)]
    fn apply(self, x: i32) -> i32 {
        let y = x << self.up;
        if y >> self.up == x {
            ((i64::from(y) * i64::from(self.multiplier) + (1 << 31)) >> 32) as i32
        } else if (x ^ self.multiplier) < 0 {
            -SATURATED
        } else {
            SATURATED
        }
    }
}

/// What [`Low`] returns, with the exact value's sign, for an exact value it does not
/// compute (one of magnitude `2^29 - 1` or more).
const SATURATED: i32 = 1 << 28;

/// The instructions of [`Low::apply`]'s saturated case on DSP targets: register `$x`
/// becomes [`SATURATED`] with the sign of `$x * $m` (`asm!` operands such as `"{x}"`;
/// needs a `sat = const SATURATED` operand; writes the flags).
#[cfg(tinyformer_dsp)]
macro_rules! low_saturated_asm {
    ($x:literal, $m:literal) => {
        concat!(
            "teq ",
            $x,
            ", ",
            $m,
            "\n",
            "mov ",
            $x,
            ", #{sat}\n",
            "it mi\n",
            "rsbmi ",
            $x,
            ", ",
            $x,
            ", #0",
        )
    };
}

/// Which [`Scale`] applies a channel's requantization, if one does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    High,
    Low,
    /// Neither: the definition's element function.
    Neither,
}

impl Kind {
    /// The kind of `rq.apply_scaled(_, extra)`.
    #[inline(always)]
    fn of(rq: Requant, extra: i32) -> Self {
        if High::from_pair(rq, extra).is_some() {
            Self::High
        } else if Low::from_pair(rq, extra).is_some() {
            Self::Low
        } else {
            Self::Neither
        }
    }
}

/// A [`Scale`] made from a channel's pair, if that pair is of its kind.
trait FromPair: Scale {
    fn from_pair(rq: Requant, extra: i32) -> Option<Self>;
}

impl FromPair for High {
    #[inline(always)]
    fn from_pair(rq: Requant, extra: i32) -> Option<Self> {
        let total = total_shift(rq, extra);
        (total >= 33).then(|| Self {
            multiplier: rq.multiplier,
            shift: (total.min(62) - 32) as u32,
        })
    }
}

impl FromPair for Low {
    #[inline(always)]
    fn from_pair(rq: Requant, extra: i32) -> Option<Self> {
        let total = total_shift(rq, extra);
        let normalised = rq.multiplier.unsigned_abs() >= 1 << 30;
        ((8..=32).contains(&total) && normalised).then(|| Self {
            multiplier: rq.multiplier,
            up: (32 - total) as u32,
        })
    }
}

/// Calls `f(run, class)` for the maximal runs of channels `0..width` of one class,
/// in order.
#[inline(always)]
fn runs<C: PartialEq + Copy>(
    width: usize,
    class: impl Fn(usize) -> C,
    mut f: impl FnMut(Range<usize>, C),
) {
    let mut start = 0;
    while start < width {
        let c = class(start);
        let mut end = start + 1;
        while end < width && class(end) == c {
            end += 1;
        }
        f(start..end, c);
        start = end;
    }
}

/// `$body` with the type `$k` bound to the [`Scale`] of `$kind` (compiled per kind);
/// `Neither` takes [`High`]'s code, whose loops run the definition's element function
/// for a channel that is not of their kind.
macro_rules! with_kind {
    ($kind:expr, |$k:ident| $body:expr) => {
        match $kind {
            Kind::High | Kind::Neither => {
                type $k = High;
                $body
            }
            Kind::Low => {
                type $k = Low;
                $body
            }
        }
    };
}

/// The total right shift of `rq.apply_scaled(_, extra)`, as the definition computes it
/// (before it caps it at 62).
#[inline(always)]
fn total_shift(rq: Requant, extra: i32) -> i32 {
    31i32
        .saturating_sub(rq.shift)
        .saturating_sub(extra.clamp(-62, 62))
}

/// A table of `(multiplier, shift)` pairs, one per channel.
type Pairs<'a> = &'a [[i32; 2]];

/// Two tables of pairs read in step.
type Tables<'a> = (Pairs<'a>, Pairs<'a>);

/// [`super::to_i8`]: `out[t][o] = sat8(rq[o](acc[t][o]))`.
pub(super) fn to_i8(out: &mut [i8], acc: &[i32], rq: &[[i32; 2]], width: usize) {
    let kind = |o| Kind::of(pair(rq, o), 0);
    runs(width, kind, |run, kind| {
        #[cfg(tinyformer_dsp)]
        {
            let rows = (acc.len() / width).min(out.len() / width);
            let src = (acc.as_ptr().wrapping_add(run.start), 4 * width);
            let dst = (out.as_mut_ptr().wrapping_add(run.start).cast::<u8>(), width);
            let pairs = rq.get(run.clone()).filter(|_| rows > 0 && run.end <= width);
            if let Some(pairs) = pairs {
                // SAFETY: channel `c < run.len()` of row `t < rows` is `acc[t * width +
                // run.start + c]` and `out[t * width + run.start + c]`, below `rows *
                // width`, which both hold; its pair is `pairs[c]`.
                let done = unsafe { columns_dsp(kind, Dst::I8, src, dst, pairs, rows) };
                if done {
                    return;
                }
            }
        }
        with_kind!(kind, |K| to_i8_columns::<K>(out, acc, (rq, run), width))
    });
}

/// [`to_i8`] for a run of channels of kind `K`.
#[inline(never)]
fn to_i8_columns<K: FromPair>(
    out: &mut [i8],
    acc: &[i32],
    (rq, run): (Pairs<'_>, Range<usize>),
    width: usize,
) {
    for o in run {
        let rq = pair(rq, o);
        let values = out.chunks_exact_mut(width).zip(acc.chunks_exact(width));
        let values = values.filter_map(|(y, a)| y.get_mut(o).zip(a.get(o)));
        match K::from_pair(rq, 0) {
            Some(s) => {
                for (y, &a) in values {
                    *y = s.apply(a).clamp(-128, 127) as i8;
                }
            }
            None => {
                for (y, &a) in values {
                    *y = saturate_i8(rq.apply(a));
                }
            }
        }
    }
}

/// [`super::to_wide`]: `acc[t][o] = sat_r(rq[o](acc[t][o]))`.
pub(super) fn to_wide(acc: &mut [i32], rq: &[[i32; 2]], width: usize) {
    let kind = |o| Kind::of(pair(rq, o), 0);
    runs(width, kind, |run, kind| {
        #[cfg(tinyformer_dsp)]
        {
            let rows = acc.len() / width;
            let column = acc.as_mut_ptr().wrapping_add(run.start);
            let pairs = rq.get(run.clone()).filter(|_| rows > 0 && run.end <= width);
            if let Some(pairs) = pairs {
                let (src, dst) = (
                    (column.cast_const(), 4 * width),
                    (column.cast::<u8>(), 4 * width),
                );
                // SAFETY: channel `c < run.len()` of row `t < rows` is `acc[t * width +
                // run.start + c]`, below `rows * width`; its pair is `pairs[c]`.
                let done = unsafe { columns_dsp(kind, Dst::Wide, src, dst, pairs, rows) };
                if done {
                    return;
                }
            }
        }
        with_kind!(kind, |K| to_wide_columns::<K>(acc, (rq, run), width))
    });
}

/// [`to_wide`] for a run of channels of kind `K`.
#[inline(never)]
fn to_wide_columns<K: FromPair>(
    acc: &mut [i32],
    (rq, run): (Pairs<'_>, Range<usize>),
    width: usize,
) {
    for o in run {
        let rq = pair(rq, o);
        let column = acc.chunks_exact_mut(width).filter_map(|row| row.get_mut(o));
        match K::from_pair(rq, 0) {
            Some(s) => column.for_each(|a| *a = clamp_residual(s.apply(*a))),
            None => column.for_each(|a| *a = saturate_residual(rq.apply(*a))),
        }
    }
}

/// [`super::context`]: `c = rq[d].add_scaled_residual(0, c, 0)` on the columns `cols`
/// of the first `rows` rows (`width` wide). For a [`Scale`] kind that is
/// `sat_r(rq[d](c))` (a total shift of 8 to 62, where both compute the same value).
pub(super) fn context(
    ctx: &mut [i32],
    rq: &[[i32; 2]],
    (cols, width): (Range<usize>, usize),
    rows: usize,
) {
    let width = width.max(1);
    let ctx = ctx
        .get_mut(..rows.saturating_mul(width).min(ctx.len()))
        .unwrap_or(&mut []);
    let kind = |d| Kind::of(pair(rq, d), 0);
    runs(cols.len(), kind, |run, kind| {
        #[cfg(tinyformer_dsp)]
        {
            // The rows that hold the columns (the last may be short).
            let rows = ctx.len() / width + usize::from(ctx.len() % width >= cols.end.max(1));
            let column = ctx.as_mut_ptr().wrapping_add(cols.start + run.start);
            let pairs = rq
                .get(run.clone())
                .filter(|_| rows > 0 && cols.end <= width);
            if let Some(pairs) = pairs {
                let (src, dst) = (
                    (column.cast_const(), 4 * width),
                    (column.cast::<u8>(), 4 * width),
                );
                // SAFETY: column `c < run.len()` of row `t < rows` is `ctx[t * width +
                // cols.start + run.start + c]`, inside row `t` (`cols.start + run.end <=
                // cols.end <= width`), which `ctx` holds up to `cols.end` (the rows
                // counted); its pair is `pairs[c]` (`rq[run.start + c]`).
                let done = unsafe { columns_dsp(kind, Dst::Wide, src, dst, pairs, rows) };
                if done {
                    return;
                }
            }
        }
        with_kind!(kind, |K| context_columns::<K>(
            ctx,
            (rq, run),
            (&cols, width)
        ))
    });
}

/// [`context`] for a run of columns of kind `K`.
#[inline(never)]
fn context_columns<K: FromPair>(
    ctx: &mut [i32],
    (rq, run): (Pairs<'_>, Range<usize>),
    (cols, width): (&Range<usize>, usize),
) {
    for d in run {
        let rq = pair(rq, d);
        let rows = ctx.chunks_mut(width).filter(|row| row.len() >= cols.end);
        let column = rows.filter_map(|row| row.get_mut(cols.start + d));
        match K::from_pair(rq, 0) {
            Some(s) => column.for_each(|c| *c = clamp_residual(s.apply(*c))),
            None => column.for_each(|c| *c = rq.add_scaled_residual(0, *c, 0)),
        }
    }
}

/// The activation table, when its neighbouring entries differ by less than `2^26`
/// ([`ActTable`]'s `narrow`).
type NarrowTable<'t> = &'t [i32; ACT_TABLE_LEN];

/// [`activation_q10`](crate::kernels::gelu::activation_q10) with the linear tail in 32 bits, of a value `pre` not yet
/// saturated to the residual range (within `±2^30`): below the table its first entry,
/// above it `pre` saturated (the reference's input is, and the tail is the identity),
/// else the interpolation (its `as i32` a wrapping add).
#[inline(always)]
fn interpolate(pre: i32, table: NarrowTable<'_>) -> i32 {
    const UNIT: i32 = 1 << ACT_FRAC_BITS;
    const STEP_BITS: u32 = ACT_FRAC_BITS - ACT_STEPS_PER_UNIT.trailing_zeros();
    let lo = -ACT_RANGE * UNIT;
    if pre < lo {
        return table[0];
    }
    if pre >= -lo {
        return clamp_residual(pre);
    }
    let offset = (pre - lo) as usize;
    let frac = (offset & ((1 << STEP_BITS) - 1)) as i32;
    let index = offset >> STEP_BITS;
    match (table.get(index), table.get(index + 1)) {
        (Some(&a), Some(&b)) => {
            a.wrapping_add(((b - a) * frac + (1 << (STEP_BITS - 1))) >> STEP_BITS)
        }
        _ => 0,
    }
}

/// [`super::activation`]: `acc[t][o] = sat_r(act_rq[o](f(sat_r(rq[o](acc)))))`. The
/// loops are compiled for the kinds of channel 0 (all channels have the same in a
/// converted model); a channel of other kinds runs the element function.
pub(super) fn activation(
    acc: &mut [i32],
    (rq, act_rq): (&[[i32; 2]], &[[i32; 2]]),
    table: ActTable<'_>,
    width: usize,
) {
    #[cfg(tinyformer_dsp)]
    if let Some(narrow) = table.narrow {
        if activation_dsp(acc, (rq, act_rq), (narrow, table.largest), width) {
            return;
        }
    }
    let tables = (rq, act_rq);
    let kinds = (Kind::of(pair(rq, 0), 0), Kind::of(pair(act_rq, 0), 0));
    with_kind!(kinds.0, |A| with_kind!(kinds.1, |B| {
        activation_columns::<A, B>(acc, tables, table, width)
    }))
}

/// [`activation`] for channels whose kinds are `A` (`rq`) and `B` (`act_rq`).
#[inline(never)]
fn activation_columns<A: FromPair, B: FromPair>(
    acc: &mut [i32],
    (rq, act_rq): Tables<'_>,
    table: ActTable<'_>,
    width: usize,
) {
    let (narrow, table) = (table.narrow, table.entries);
    for o in 0..width {
        let (rq, act_rq) = (pair(rq, o), pair(act_rq, o));
        let column = acc.chunks_exact_mut(width).filter_map(|row| row.get_mut(o));
        match (A::from_pair(rq, 0), B::from_pair(act_rq, 0), narrow) {
            (Some(pre), Some(post), Some(narrow)) => column.for_each(|a| {
                *a = clamp_residual(post.apply(interpolate(pre.apply(*a), narrow)));
            }),
            _ => column.for_each(|a| *a = activation_element(*a, (rq, act_rq), table)),
        }
    }
}

/// What [`columns_dsp`] writes: int8 (`sat8`), or 32-bit values clamped to the
/// residual range.
#[cfg(tinyformer_dsp)]
#[derive(Clone, Copy)]
enum Dst {
    I8,
    Wide,
}

/// The column loops of [`to_i8`], [`to_wide`] and [`context`] on DSP cores, for a run
/// of channels of one [`Kind`]: one `asm!` block over all of them, per channel its
/// constants from the raw pair ([`High`]: the shift `total - 32 = -1 - shift`, capped
/// at 30 as `High::from_pair` caps; [`Low`]: `up = 32 - total = 1 + shift`, about 15
/// instructions), then its column, `rows` values `src.1` bytes apart, requantized and
/// stored to `dst` (`dst.1` bytes apart, `dst.0` advancing a value per channel): 10 to
/// 15 instructions per value, where the compiler's loops take 17 to 28 and about 60
/// per channel. `false` (nothing written) for [`Kind::Neither`].
///
/// # Safety
///
/// For every channel `c < pairs.len()` and row `t < rows`, `src.0 + c + t * src.1 / 4`
/// must be readable (`i32`), `dst.0 + c * size + t * dst.1` writable (`size` 1 or 4,
/// an `i8` or `i32`; `dst` may be `src`), both 4-byte aligned where 32-bit; `rows >= 1`.
#[cfg(tinyformer_dsp)]
unsafe fn columns_dsp(
    kind: Kind,
    out: Dst,
    (src, src_stride): (*const i32, usize),
    (dst, dst_stride): (*mut u8, usize),
    pairs: &[[i32; 2]],
    rows: usize,
) -> bool {
    if pairs.is_empty() {
        return true;
    }
    let mut state = [
        src as usize,
        dst as usize,
        pairs.as_ptr() as usize,
        rows,
        pairs.len(),
    ];
    let size = match out {
        Dst::I8 => 1,
        Dst::Wide => 4,
    };
    // The loop over the channels around a column loop: `$derive` turns the pair's shift
    // in `{k}` into the constant, `$element` requantizes `{x}` (`{m}` the multiplier),
    // `$store` writes it; `$tail` is code after the loops (the `Low` saturation).
    macro_rules! columns_asm {
        ($derive:expr, $element:expr, $store:expr, $tail:expr, [$($operands:tt)*]) => {
            // SAFETY: the caller's contract covers every load and store (channel `c`'s
            // column starts `4 * c` bytes into `src` and `size * c` into `dst`); the
            // pair loads read `pairs`; `rows >= 1` and `pairs.len() >= 1`: both
            // count-down loops end. Register-only ARMv7E-M instructions otherwise
            // (cfg(tinyformer_dsp)); every register written is an output.
            unsafe {
                core::arch::asm!(
                    "10:",
                    "ldr {p}, [{st}]",
                    "add {x}, {p}, #4",
                    "str {x}, [{st}]",
                    "ldr {q}, [{st}, #4]",
                    "add {x}, {q}, {size}",
                    "str {x}, [{st}, #4]",
                    "ldr {x}, [{st}, #8]",
                    "ldrd {m}, {k}, [{x}], #8",
                    "str {x}, [{st}, #8]",
                    $derive,
                    "ldr {n}, [{st}, #12]",
                    "1:",
                    "ldr {x}, [{p}]",
                    "add {p}, {p}, {is}",
                    $element,
                    $store,
                    "add {q}, {q}, {os}",
                    "subs {n}, {n}, #1",
                    "bne 1b",
                    "ldr {x}, [{st}, #16]",
                    "subs {x}, {x}, #1",
                    "str {x}, [{st}, #16]",
                    "bne 10b",
                    "b 9f",
                    $tail,
                    "9:",
                    st = in(reg) state.as_mut_ptr(),
                    is = in(reg) src_stride,
                    os = in(reg) dst_stride,
                    size = in(reg) size,
                    p = out(reg) _,
                    q = out(reg) _,
                    n = out(reg) _,
                    m = out(reg) _,
                    k = out(reg) _,
                    x = out(reg) _,
                    $($operands)*
                    options(nostack),
                )
            }
        };
    }
    // High: `k = min(-1 - shift, 30) - 1`, then `((high >> k) + 1) >> 1` (the last
    // shift in the store's saturation for int8). Low: `k = up`, `x << up` when it fits.
    macro_rules! high_derive {
        () => {
            "mvn {k}, {k}\nsub {k}, {k}, #1\ncmp {k}, #29\nit gt\nmovgt {k}, #29"
        };
    }
    macro_rules! high {
        () => {
            "smmul {x}, {x}, {m}\nasr {x}, {x}, {k}\nadd {x}, {x}, #1\n"
        };
    }
    macro_rules! low {
        () => {
            "lsl {y}, {x}, {k}\nasr {t}, {y}, {k}\ncmp {t}, {x}\nbne 5f\nsmmulr {x}, {y}, {m}\n6:\n"
        };
    }
    // `x << up` does not fit: SATURATED with the sign of `x * m`.
    macro_rules! low_tail {
        () => {
            concat!("5:\n", low_saturated_asm!("{x}", "{m}"), "\nb 6b")
        };
    }
    match (kind, out) {
        (Kind::High, Dst::I8) => columns_asm!(
            high_derive!(),
            concat!(high!(), "ssat {x}, #8, {x}, asr #1"),
            "strb {x}, [{q}]",
            "",
            []
        ),
        (Kind::High, Dst::Wide) => columns_asm!(
            high_derive!(),
            concat!(
                high!(),
                "asr {x}, {x}, #1\n",
                crate::quant::clamp_residual_asm!("{x}")
            ),
            "str {x}, [{q}]",
            "",
            []
        ),
        (Kind::Low, Dst::I8) => columns_asm!(
            "add {k}, {k}, #1",
            concat!(low!(), "ssat {x}, #8, {x}"),
            "strb {x}, [{q}]",
            low_tail!(),
            [y = out(reg) _, t = out(reg) _, sat = const SATURATED,]
        ),
        (Kind::Low, Dst::Wide) => columns_asm!(
            "add {k}, {k}, #1",
            concat!(low!(), crate::quant::clamp_residual_asm!("{x}")),
            "str {x}, [{q}]",
            low_tail!(),
            [y = out(reg) _, t = out(reg) _, sat = const SATURATED,]
        ),
        _ => return false,
    }
    true
}

/// [`activation`] on DSP cores when every channel's requantization is a [`High`]
/// before the activation and a [`Low`] after it, with total shifts of at most 62 (no
/// cap) and the table narrow; `false` (nothing written) otherwise. One `asm!` block
/// runs all the channels: per channel its constants from the raw pairs (`High`'s
/// shift `total - 32 = -1 - shift`, `Low`'s `up = 32 - total = 1 + shift`), about 20
/// instructions, then its column, about 26 per element (the compiler's form of the
/// same arithmetic reloads its constants from the stack: 42 per element, 70 per
/// channel), as `Low::apply` needs no overflow check on values from the table where
/// its largest entry allows (checked once; otherwise `false`). The same steps as [`activation_columns`]' loop: `High::apply`,
/// [`interpolate`] (below the table its first entry, above it the clamped input),
/// then `Low::apply` (its [`SATURATED`] branch) and the residual clamp.
#[cfg(tinyformer_dsp)]
fn activation_dsp(
    acc: &mut [i32],
    (rq, act_rq): (&[[i32; 2]], &[[i32; 2]]),
    (table, largest): (NarrowTable<'_>, u32),
    width: usize,
) -> bool {
    const UNIT: i32 = 1 << ACT_FRAC_BITS;
    const STEP_BITS: u32 = ACT_FRAC_BITS - ACT_STEPS_PER_UNIT.trailing_zeros();
    let rows = acc.len().checked_div(width).unwrap_or(0);
    let (Some(rq), Some(act_rq)) = (rq.get(..width), act_rq.get(..width)) else {
        return false;
    };
    // `High` uncapped: total 33..=62; `Low`: total 8..=32, normalised multiplier.
    // An interpolated value lies between two entries, so where `x << up` fits for every
    // entry and every channel's `up = 1 + shift`, `Low::apply` needs no check on it
    // (only on the clamped input above the table): the largest `up`, if every
    // channel's kinds are right.
    let up = rq
        .iter()
        .zip(act_rq)
        .try_fold(0, |up, (&[_, pre], &[m, post])| {
            let kinds = (-31..=-2).contains(&pre)
                && (-1..=23).contains(&post)
                && m.unsigned_abs() >= 1 << 30;
            kinds.then_some(up.max(post + 1))
        });
    if up.is_none_or(|up| largest >= 1 << (31 - up)) {
        return false;
    }
    if rows == 0 {
        return true;
    }
    // The channel loop's state: the next column, the next pairs of each table, the
    // rows, the channels left.
    let mut state = [
        acc.as_mut_ptr() as usize,
        rq.as_ptr() as usize,
        act_rq.as_ptr() as usize,
        rows,
        width,
    ];
    // SAFETY: for channel `o < width` (the pairs `rq[o]`, `act_rq[o]`, both tables
    // hold `width`) loads and stores `acc[o + t * width]` for `t < rows` (below `rows *
    // width <= acc.len()`; 4-byte aligned) and reads `table[0]` and `table[i]`,
    // `table[i + 1]` for `i = (pre + HALF) >> STEP_BITS` with `0 <= pre + HALF < 2 *
    // HALF` (checked first), so `i + 1 <= ACT_TABLE_LEN - 1`. `rows >= 1` and `width >=
    // 1`: both count-down loops end. Shifts: `-2 - shift` in `0..=29` and `1 + shift`
    // in `0..=24` (checked above). Register-only ARMv7E-M instructions otherwise
    // (cfg(tinyformer_dsp)); every register written is an output.
    unsafe {
        core::arch::asm!(
            // A channel: its column and constants.
            "10:",
            "ldr {p}, [{st}]",
            "add {x}, {p}, #4",
            "str {x}, [{st}]",
            "ldr {a}, [{st}, #4]",
            "ldrd {m1}, {s1}, [{a}], #8",
            "str {a}, [{st}, #4]",
            "mvn {s1}, {s1}",
            "sub {s1}, {s1}, #1",
            "ldr {a}, [{st}, #8]",
            "ldrd {m2}, {up}, [{a}], #8",
            "str {a}, [{st}, #8]",
            "add {up}, {up}, #1",
            "ldr {n}, [{st}, #12]",
            "1:",
            // pre = High::apply(acc); offset = pre - lo, below the table (negative) or
            // above it
            "ldr {x}, [{p}]",
            "smmul {x}, {x}, {m1}",
            "asr {x}, {x}, {s1}",
            "add {x}, {x}, #1",
            "asr {x}, {x}, #1",
            "adds {off}, {x}, #{half}",
            "bmi 3f",
            "cmp {off}, #{span}",
            "bhs 4f",
            "and {b}, {off}, #{frac}",
            "lsr {off}, {off}, #{step_bits}",
            "add {off}, {tbl}, {off}, lsl #2",
            "ldrd {a}, {off}, [{off}]",
            "sub {off}, {off}, {a}",
            "mul {off}, {off}, {b}",
            "add {off}, {off}, #{round}",
            "add {x}, {a}, {off}, asr #{step_bits}",
            // post = Low::apply(x), x from the table: x << up fits
            "2:",
            "lsl {off}, {x}, {up}",
            "smmulr {x}, {off}, {m2}",
            "6:",
            crate::quant::clamp_residual_asm!("{x}"),
            "str {x}, [{p}]",
            "add {p}, {p}, {stride}",
            "subs {n}, {n}, #1",
            "bne 1b",
            // the next channel
            "ldr {x}, [{st}, #16]",
            "subs {x}, {x}, #1",
            "str {x}, [{st}, #16]",
            "bne 10b",
            "b 9f",
            // below the table: its first entry
            "3:",
            "ldr {x}, [{tbl}]",
            "b 2b",
            // above the table: the input, clamped, then Low::apply with its check:
            // SATURATED with the sign of x * m2 when x << up does not fit
            "4:",
            crate::quant::clamp_residual_asm!("{x}"),
            "lsl {off}, {x}, {up}",
            "asr {a}, {off}, {up}",
            "cmp {a}, {x}",
            "it eq",
            "smmulreq {x}, {off}, {m2}",
            "beq 6b",
            low_saturated_asm!("{x}", "{m2}"),
            "b 6b",
            "9:",
            st = in(reg) state.as_mut_ptr(),
            stride = in(reg) width * 4,
            tbl = in(reg) table.as_ptr(),
            p = out(reg) _,
            n = out(reg) _,
            m1 = out(reg) _,
            s1 = out(reg) _,
            up = out(reg) _,
            m2 = out(reg) _,
            x = out(reg) _,
            off = out(reg) _,
            a = out(reg) _,
            b = out(reg) _,
            half = const ACT_RANGE * UNIT,
            span = const 2 * ACT_RANGE * UNIT,
            frac = const (1 << STEP_BITS) - 1,
            step_bits = const STEP_BITS,
            round = const 1 << (STEP_BITS - 1),
            sat = const SATURATED,
            options(nostack),
        );
    }
    true
}

/// [`super::onto_residual`] for a tile whose skip rows are all present (`skip` holds
/// `acc.len()` values): `acc[t][o] = sat_r(rq[o](acc[t][o] * 2^e[t]) + rq[o](bias[o]) +
/// skip_rq[o](skip[t][o]))`. The loops are compiled for the skip term's kind in channel
/// 0 (as [`activation`]'s). The fast path takes a channel whose product term is a
/// [`High`] for every row's exponent (total shift `total(0) - e[t]` from 33 to 62,
/// uncapped), whose skip term is a [`Scale`] of that kind with a total shift of 17 or
/// more (so within `±2^22` for every int8 input), and whose bias term (a `High` too)
/// is within `±2^26`: the terms [`Scale::apply`] allows. Any other channel runs the
/// element function.
pub(super) fn onto_residual(
    acc: &mut [i32],
    exponents: &[u8],
    (rq, bias): (&[[i32; 2]], &[i32]),
    (skip, skip_rq): (&[i8], &[[i32; 2]]),
    width: usize,
) {
    #[cfg(tinyformer_dsp)]
    if onto_residual_dsp(acc, exponents, (rq, bias), (skip, skip_rq), width) {
        return;
    }
    let tables = (rq, bias, skip_rq);
    with_kind!(Kind::of(pair(skip_rq, 0), 0), |K| {
        onto_residual_columns::<K>(acc, tables, (skip, exponents), width)
    })
}

/// [`onto_residual`] with skip terms of kind `K`.
#[inline(never)]
fn onto_residual_columns<K: FromPair>(
    acc: &mut [i32],
    (rq, bias, skip_rq): (Pairs<'_>, &[i32], Pairs<'_>),
    (skip, exponents): (&[i8], &[u8]),
    width: usize,
) {
    let tokens = acc.len().checked_div(width).unwrap_or(0);
    let exponent = |t: usize| i32::from(exponents.get(t).copied().unwrap_or(0));
    let (low, top) = (0..tokens)
        .map(exponent)
        .fold((i32::MAX, 0), |(low, top), e| (low.min(e), top.max(e)));
    let held = exponents.len() >= tokens && top <= 62;
    for o in 0..width {
        let (rq, skip_rq) = (pair(rq, o), pair(skip_rq, o));
        let bias = bias.get(o).copied().unwrap_or(0);
        let rows = acc.chunks_exact_mut(width).zip(skip.chunks_exact(width));
        let values = rows.filter_map(|(a, x)| a.get_mut(o).zip(x.get(o)));
        let total = total_shift(rq, 0);
        let product =
            held && total.saturating_sub(top) >= 33 && total.saturating_sub(low.min(top)) <= 62;
        let skip_scale = K::from_pair(skip_rq, 0).filter(|_| total_shift(skip_rq, 0) >= 17);
        let bias_term = High::from_pair(rq, 0).map_or(0, |s| s.apply(bias));
        match skip_scale {
            Some(skip_scale) if product && bias_term.abs() < 1 << 26 => {
                // Per row the product's shift is `total(0) - 32 - e[t]`, in `1..=30`.
                let base = total - 32;
                for ((a, x), &e) in values.zip(exponents) {
                    let product = high(*a, rq.multiplier, (base - i32::from(e)) as u32);
                    *a = clamp_residual(product + bias_term + skip_scale.apply(i32::from(*x)));
                }
            }
            _ => {
                let bias = rq.apply(bias);
                for ((a, x), t) in values.zip(0..) {
                    let product = rq.apply_scaled(*a, exponent(t));
                    *a = saturate_residual(product + bias + skip_rq.apply(i32::from(*x)));
                }
            }
        }
    }
}

/// [`onto_residual`] on DSP cores when every channel takes [`onto_residual_columns`]'
/// fast path with a [`Low`] skip term (a total shift of 17 to 32: `up <= 15`, so `x
/// << up` fits for any int8 `x` and needs no check), checked first; `false` (nothing
/// written) otherwise. One `asm!` block runs all the channels: per channel its
/// constants from the raw pairs and its bias term (`High::apply(bias)`, the shift
/// capped at 30 as `High::from_pair` caps it), about 37 instructions, then its
/// column, 20 per element (the compiler's loops: 33 per element, about 107 per
/// channel): the product's `high` with the row's shift `base - e[t]` (`1..=30`), plus
/// the bias term, plus `Low::apply(x)`, clamped to the residual range.
#[cfg(tinyformer_dsp)]
fn onto_residual_dsp(
    acc: &mut [i32],
    exponents: &[u8],
    (rq, bias): (&[[i32; 2]], &[i32]),
    (skip, skip_rq): (&[i8], &[[i32; 2]]),
    width: usize,
) -> bool {
    let rows = acc.len().checked_div(width).unwrap_or(0);
    let (Some(rq), Some(bias), Some(skip_rq)) =
        (rq.get(..width), bias.get(..width), skip_rq.get(..width))
    else {
        return false;
    };
    let Some(row_exponents) = exponents.get(..rows) else {
        return false;
    };
    if rows == 0 || skip.len() < rows * width {
        return false;
    }
    let (low, top) = row_exponents
        .iter()
        .fold((u8::MAX, 0), |(low, top), &e| (low.min(e), top.max(e)));
    let (low, top) = (i32::from(low), i32::from(top));
    // The fast path's conditions on the raw pairs: with `total = 31 - shift`, `total -
    // top >= 33` and `total - low <= 62`; the skip term a `Low` of total 17..=32; the
    // bias term (a `High`, its shift `min(total, 62) - 32`) within `2^26`.
    let shifts = -31 - low..=-2 - top;
    let fast = top <= 62
        && rq
            .iter()
            .zip(bias)
            .zip(skip_rq)
            .all(|((&[m, shift], &b), &[ms, skip_shift])| {
                shifts.contains(&shift)
                    && (-1..=14).contains(&skip_shift)
                    && ms.unsigned_abs() >= 1 << 30
                    && high(b, m, (-1 - shift).min(30) as u32).unsigned_abs() < 1 << 26
            });
    if !fast {
        return false;
    }
    // The channel loop's state (kept at the stack pointer): the next column of `acc`
    // and of `skip`, the next pair of each table, the next bias, the exponents, the
    // rows, the channels left.
    let mut state = [
        acc.as_mut_ptr() as usize,
        skip.as_ptr() as usize,
        rq.as_ptr() as usize,
        skip_rq.as_ptr() as usize,
        bias.as_ptr() as usize,
        row_exponents.as_ptr() as usize,
        rows,
        width,
    ];
    // SAFETY: for channel `o < width` (every table holds `width`, checked) loads and
    // stores `acc[o + t * width]` and loads `skip[o + t * width]` and `exponents[t]` for
    // `t < rows` (below `rows * width`, which `acc` and `skip` hold, and `rows <=
    // exponents.len()`); `rows >= 1` and `width >= 1`: both count-down loops end. The
    // state pointer is kept 8 bytes below the stack pointer, restored before the end.
    // Shifts: `base - 1 - e[t]` in `0..=29`, `up = 1 + shift` in `0..=15`, the bias
    // term's in `0..=29` (checked above). Register-only ARMv7E-M instructions
    // otherwise (cfg(tinyformer_dsp)); every register written is an output.
    unsafe {
        core::arch::asm!(
            "str {a}, [sp, #-8]!",
            // A channel: its columns, constants and bias term.
            "10:",
            "ldr {a}, [sp]",
            "ldr {p}, [{a}]",
            "add {e}, {p}, #4",
            "str {e}, [{a}]",
            "ldr {xp}, [{a}, #4]",
            "add {e}, {xp}, #1",
            "str {e}, [{a}, #4]",
            "ldr {e}, [{a}, #8]",
            "ldrd {m}, {base1}, [{e}], #8",
            "str {e}, [{a}, #8]",
            "ldr {e}, [{a}, #12]",
            "ldrd {ms}, {up}, [{e}], #8",
            "str {e}, [{a}, #12]",
            "add {up}, {up}, #1",
            "ldr {e}, [{a}, #16]",
            "ldr {bias}, [{e}], #4",
            "str {e}, [{a}, #16]",
            // base = total - 32 = -1 - shift; the bias term's shift min(base, 30)
            "mvn {base1}, {base1}",
            "sub {y}, {base1}, #1",
            "cmp {y}, #29",
            "it gt",
            "movgt {y}, #29",
            "smmul {bias}, {bias}, {m}",
            "asr {bias}, {bias}, {y}",
            "add {bias}, {bias}, #1",
            "asr {bias}, {bias}, #1",
            "sub {base1}, {base1}, #1",
            "ldr {ep}, [{a}, #20]",
            "ldr {n}, [{a}, #24]",
            "1:",
            // the product: high(acc, m, base - e[t]), plus the bias term
            "ldr {a}, [{p}]",
            "ldrb {e}, [{ep}], #1",
            "sub {e}, {base1}, {e}",
            "smmul {a}, {a}, {m}",
            "asr {a}, {a}, {e}",
            "add {a}, {a}, #1",
            "add {a}, {bias}, {a}, asr #1",
            // the skip term: Low::apply(x)
            "ldrsb {y}, [{xp}]",
            "add {xp}, {xp}, {stride}, lsr #2",
            "lsl {y}, {y}, {up}",
            "smmulr {y}, {y}, {ms}",
            "add {a}, {a}, {y}",
            crate::quant::clamp_residual_asm!("{a}"),
            "str {a}, [{p}]",
            "add {p}, {p}, {stride}",
            "subs {n}, {n}, #1",
            "bne 1b",
            // the next channel
            "ldr {a}, [sp]",
            "ldr {e}, [{a}, #28]",
            "subs {e}, {e}, #1",
            "str {e}, [{a}, #28]",
            "bne 10b",
            "add sp, #8",
            a = inout(reg) state.as_mut_ptr() => _,
            stride = in(reg) width * 4,
            p = out(reg) _,
            ep = out(reg) _,
            xp = out(reg) _,
            n = out(reg) _,
            base1 = out(reg) _,
            m = out(reg) _,
            bias = out(reg) _,
            up = out(reg) _,
            ms = out(reg) _,
            e = out(reg) _,
            y = out(reg) _,
        );
    }
    true
}

/// [`super::add_row`]: `sum[o] = sat_r(sat_r(sum[o]) + rq(row[o]))`. An int8 input is
/// within `2^(total-1)` for a total shift of 8 or more, so a [`Low`] is exact too, and
/// each term within `±2^30`; `sum` is clamped first (`±2^24`), so the sum fits 32 bits.
pub(super) fn add_row(sum: &mut [i32], row: &[i8], rq: Requant) {
    with_kind!(Kind::of(rq, 0), |K| add_row_scaled::<K>(sum, row, rq))
}

#[inline(never)]
fn add_row_scaled<K: FromPair>(sum: &mut [i32], row: &[i8], rq: Requant) {
    let values = sum.iter_mut().zip(row);
    match K::from_pair(rq, 0) {
        Some(s) => values.for_each(|(acc, &e)| {
            *acc = clamp_residual(clamp_residual(*acc) + s.apply(i32::from(e)));
        }),
        None => values.for_each(|(acc, &e)| {
            *acc = saturate_residual(i64::from(clamp_residual(*acc)) + rq.apply(i32::from(e)));
        }),
    }
}
