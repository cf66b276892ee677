//! Rotary position embedding over adjacent pairs of dimensions (llama2.c's and
//! GGUF's convention): within each head, dimensions `(2i, 2i + 1)` are rotated by the
//! angle `pos * theta^(-2i / head_dim)`.

/// Rotates every head of `x` (`heads * head_dim` values) for position `pos`, in
/// `f32`, computing the angles as llama2.c does (`powf`, then `cosf`/`sinf` of
/// `pos * freq` in `f32`) so float models reproduce its outputs.
pub fn rope_f32(x: &mut [f32], head_dim: usize, pos: usize, theta: f32) {
    if head_dim < 2 {
        return;
    }
    for i in (0..head_dim).step_by(2) {
        let freq = 1.0 / libm::powf(theta, i as f32 / head_dim as f32);
        let angle = pos as f32 * freq;
        let (sin, cos) = (libm::sinf(angle), libm::cosf(angle));
        for head in x.chunks_exact_mut(head_dim) {
            let (a, b) = (head[i], head[i + 1]);
            head[i] = a * cos - b * sin;
            head[i + 1] = a * sin + b * cos;
        }
    }
}

/// Fractional bits of the fixed-point `(cos, sin)` table.
pub const ROPE_BITS: u32 = 14;

/// Largest magnitude of a table entry: `1.0` in Q14 (validated at load, which bounds
/// the products in [`rope_i32`]).
pub const ROPE_ONE: i32 = 1 << ROPE_BITS;

/// `(cos, sin)` of position `pos` and frequency `i` in Q14, as the converter writes
/// the table (host side): `theta^(-2i / head_dim)` in `f64`.
pub fn rope_table_entry(pos: usize, i: usize, head_dim: usize, theta: f64) -> [i32; 2] {
    let angle = pos as f64 * libm::pow(theta, -((2 * i) as f64) / head_dim as f64);
    let q = |v: f64| libm::round(v * f64::from(ROPE_ONE)) as i32;
    [q(libm::cos(angle)), q(libm::sin(angle))]
}

/// Rotates every head of `x` (`heads * head_dim` values on any fixed-point grid) by
/// one position's row of the table: `row[2i], row[2i + 1]` = `(cos, sin)` of
/// frequency `i` in Q14 (`head_dim` entries). Each output is
/// `round((a * cos - b * sin) / 2^14)` (half up), saturated to `i32`. With
/// `|cos|, |sin| <= 2^14` the products are below `2^45`: exact in `i64`.
pub fn rope_i32(x: &mut [i32], head_dim: usize, row: &[i32]) {
    if head_dim < 2 || row.len() < head_dim {
        return;
    }
    let clamp = |v: i32| i64::from(v.clamp(-ROPE_ONE, ROPE_ONE));
    let round = |v: i64| {
        ((v + (1 << (ROPE_BITS - 1))) >> ROPE_BITS).clamp(i64::from(i32::MIN), i64::from(i32::MAX))
            as i32
    };
    for head in x.chunks_exact_mut(head_dim) {
        for (pair, cs) in head.chunks_exact_mut(2).zip(row.chunks_exact(2)) {
            let (cos, sin) = (clamp(cs[0]), clamp(cs[1]));
            let (a, b) = (i64::from(pair[0]), i64::from(pair[1]));
            pair[0] = round(a * cos - b * sin);
            pair[1] = round(a * sin + b * cos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_point_rotation_matches_float() {
        let head_dim = 8;
        let theta = 10000.0;
        for pos in [0usize, 1, 7, 100, 511] {
            let row: Vec<i32> = (0..head_dim / 2)
                .flat_map(|i| rope_table_entry(pos, i, head_dim, theta))
                .collect();
            let real: Vec<f32> = (0..2 * head_dim).map(|i| (i as f32 - 7.5) * 0.37).collect();
            let mut float = real.clone();
            rope_f32(&mut float, head_dim, pos, theta as f32);
            let mut fixed: Vec<i32> = real.iter().map(|v| (v * 4096.0).round() as i32).collect();
            rope_i32(&mut fixed, head_dim, &row);
            for (f, q) in float.iter().zip(&fixed) {
                let got = *q as f32 / 4096.0;
                assert!((got - f).abs() < 2e-3, "pos {pos}: {got} vs {f}");
            }
        }
    }

    #[test]
    fn position_zero_is_identity() {
        let mut x = [1.5f32, -2.0, 3.0, 4.0];
        rope_f32(&mut x, 4, 0, 10000.0);
        assert_eq!(x, [1.5, -2.0, 3.0, 4.0]);
        let mut q = [i32::MAX, i32::MIN, 5, -5];
        rope_i32(&mut q, 4, &[ROPE_ONE, 0, ROPE_ONE, 0]);
        assert_eq!(q, [i32::MAX, i32::MIN, 5, -5]);
    }

    #[test]
    fn hostile_tables_are_total() {
        let mut q = [i32::MAX, i32::MIN, i32::MAX, i32::MIN];
        rope_i32(&mut q, 2, &[i32::MIN, i32::MAX]);
        rope_i32(&mut q, 4, &[1]);
        rope_i32(&mut q, 0, &[]);
    }
}
