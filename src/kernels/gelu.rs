//! FFN activations: in `f32`, and in Q10 fixed point for the int8 mode by linear
//! interpolation in an [`ACT_TABLE_LEN`]-entry (513) table the converter samples from
//! these same functions.

/// FFN activation. The model header stores it as its `repr(u8)` code (the config's
/// `activation` byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Activation {
    /// `x * Phi(x)` with the exact error function (HF `gelu`).
    Gelu = 1,
    /// The tanh approximation (HF `gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh = 2,
    /// `max(x, 0)`.
    Relu = 3,
    /// `x * sigmoid(x)` (SiLU), the gate of a SwiGLU FFN (decoders).
    Silu = 4,
}

impl Activation {
    /// Name as Hugging Face configs spell it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Gelu => "gelu",
            Self::GeluTanh => "gelu_tanh",
            Self::Relu => "relu",
            Self::Silu => "silu",
        }
    }
}

/// `x * Phi(x)` with the exact error function.
#[inline]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + libm::erff(x * core::f32::consts::FRAC_1_SQRT_2))
}

/// The tanh approximation of GELU.
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + libm::tanhf(SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)))
}

/// `x * sigmoid(x)` (SiLU, the SwiGLU gate), in llama2.c's order of operations.
#[inline]
pub fn silu(x: f32) -> f32 {
    x * (1.0 / (1.0 + libm::expf(-x)))
}

/// Applies `activation` in place.
pub fn activate_f32(x: &mut [f32], activation: Activation) {
    for v in x {
        *v = match activation {
            Activation::Gelu => gelu(*v),
            Activation::GeluTanh => gelu_tanh(*v),
            Activation::Relu => v.max(0.0),
            Activation::Silu => silu(*v),
        };
    }
}

/// Fractional bits of the fixed-point activation input and output.
pub const ACT_FRAC_BITS: u32 = 10;
/// Table samples per unit of input.
pub(crate) const ACT_STEPS_PER_UNIT: i32 = 32;
/// The table covers `[-ACT_RANGE, ACT_RANGE]`.
pub const ACT_RANGE: i32 = 8;
/// Entries of the activation table: `2 * 8 * 32 + 1`.
pub const ACT_TABLE_LEN: usize = (2 * ACT_RANGE * ACT_STEPS_PER_UNIT + 1) as usize;

/// Input of table entry `i`, in real units (host side: building the table).
pub fn act_table_input(i: usize) -> f64 {
    i as f64 / f64::from(ACT_STEPS_PER_UNIT) - f64::from(ACT_RANGE)
}

/// What a tabulated function does beyond `[-8, 8)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tail {
    /// `f(x) = table[0]` below, `f(x) = x` above: GELU (both forms) and ReLU, within
    /// 1e-14.
    Linear,
    /// `f(x) = table[0]` below, `f(x) = table[last]` above: tanh, within 3e-7.
    Flat,
}

/// A function `f` in Q10 fixed point by linear interpolation in `table`
/// (`f(-8 + i/32)` in Q10, [`ACT_TABLE_LEN`] entries), continued by `tail` outside
/// `[-8, 8)`. Interpolation error for GELU and tanh is below 1e-4 (step 1/32,
/// `|f''| <= 0.8`), near the Q10 resolution.
#[inline(always)]
pub fn activation_q10(x: i32, table: &[i32], tail: Tail) -> i32 {
    const UNIT: i32 = 1 << ACT_FRAC_BITS;
    const STEP: i32 = UNIT / ACT_STEPS_PER_UNIT;
    let lo = -ACT_RANGE * UNIT;
    if x < lo {
        return table.first().copied().unwrap_or(0);
    }
    if x >= ACT_RANGE * UNIT {
        return match tail {
            Tail::Linear => x,
            Tail::Flat => table.last().copied().unwrap_or(0),
        };
    }
    let offset = x - lo;
    let index = (offset / STEP) as usize;
    let frac = i64::from(offset % STEP);
    let a = i64::from(table.get(index).copied().unwrap_or(0));
    let b = i64::from(table.get(index + 1).copied().unwrap_or(0));
    // STEP is a power of two: an arithmetic shift is floor division, so rounding is
    // half-up for both signs of the slope.
    (a + (((b - a) * frac + i64::from(STEP / 2)) >> STEP.trailing_zeros())) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_known_values() {
        // Phi(1) = 0.841344746..., Phi(-1) = 0.158655254...
        assert!((gelu(1.0) - 0.841_344_7).abs() < 1e-6);
        assert!((gelu(-1.0) + 0.158_655_25).abs() < 1e-6);
        assert_eq!(gelu(0.0), 0.0);
        assert!((gelu_tanh(1.0) - gelu(1.0)).abs() < 1e-3);
    }

    #[test]
    fn fixed_point_gelu_matches_f64() {
        let table: alloc_free::Table = alloc_free::table();
        let mut worst = 0f64;
        for x in (-12_000..12_000).step_by(if cfg!(miri) { 97 } else { 1 }) {
            let got = f64::from(activation_q10(x, &table, Tail::Linear)) / 1024.0;
            let xr = f64::from(x) / 1024.0;
            let want = 0.5 * xr * (1.0 + libm::erf(xr / core::f64::consts::SQRT_2));
            worst = worst.max((got - want).abs());
        }
        // Half a Q10 unit of table rounding, half a unit of interpolation rounding,
        // and the interpolation error itself (< 0.1 unit).
        assert!(worst < 1.15 / 1024.0, "{worst}");
    }

    mod alloc_free {
        pub type Table = [i32; super::ACT_TABLE_LEN];
        pub fn table() -> Table {
            core::array::from_fn(|i| {
                let x = super::act_table_input(i);
                (0.5 * x * (1.0 + libm::erf(x / core::f64::consts::SQRT_2)) * 1024.0).round() as i32
            })
        }
    }
}
