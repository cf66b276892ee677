//! The index of a row's largest value: greedy decoding, predicted labels.

/// Index of the largest value, the lowest index on ties (and for incomparable values
/// such as NaN, which never win); 0 for an empty slice.
pub fn argmax<T: PartialOrd>(values: &[T]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate().skip(1) {
        if values.get(best).is_some_and(|b| v > b) {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::argmax;

    #[test]
    fn lowest_index_wins_ties() {
        assert_eq!(argmax::<i32>(&[]), 0);
        assert_eq!(argmax(&[3, 7, 7, 1]), 1);
        assert_eq!(argmax(&[i32::MIN, i32::MIN]), 0);
        assert_eq!(argmax(&[-1.0f32, f32::NAN, 2.0, 2.0]), 2);
        assert_eq!(argmax(&[f64::NAN, 1.0]), 0);
    }
}
