//! Splitting a batch's rows across threads (the `threads` feature: `std` and rayon's
//! pool, plus the calling thread). Each part is a disjoint set of token rows with its
//! own slices of the caller's buffers, computed exactly as one thread computes it, so
//! the results do not depend on the thread count.

/// Calls `f` on every item: with `threads > 1`, the first
/// on this thread and the others on rayon's pool at the same time (the caller sizes the
/// pool: `threads - 1` workers beside this thread); else in order on this thread. A
/// single item runs here without touching the pool.
#[inline]
pub(crate) fn each<T: Send>(
    threads: usize,
    items: impl Iterator<Item = T> + Send,
    f: impl Fn(T) + Sync,
) {
    let mut items = items.peekable();
    if threads > 1 {
        if let Some(first) = items.next() {
            if items.peek().is_none() {
                return f(first);
            }
            let f = &f;
            rayon::in_place_scope(|scope| {
                for item in items {
                    scope.spawn(move |_| f(item));
                }
                f(first);
            });
        }
        return;
    }
    items.for_each(f);
}

/// Fewest multiply-accumulates a block's batch must hold to be split across threads:
/// waking the pool's threads costs tens of microseconds, so a small batch (the
/// default 3 x 96 model's attention block of 64 rows is about 2 M) runs faster on one
/// thread. Measured with `tinyformer bench --threads 2` on a 2-core machine: the
/// default model at 64 tokens took 0.29 ms on one thread and 0.67 ms split; MiniLM's
/// blocks (22 M and 75 M at 64 rows) gain.
pub(crate) const MIN_MACS: usize = 8 << 20;

/// Token rows per part when a batch of `rows` is split for `threads` threads: a
/// multiple of 16 (the AVX-512 kernels' block of tokens, so no thread computes a
/// partial block another could have filled), at least 16; the whole batch (at least
/// 1) for one thread.
#[inline]
pub(crate) fn part_rows(threads: usize, rows: usize) -> usize {
    if threads <= 1 {
        return rows.max(1);
    }
    rows.div_ceil(threads).div_ceil(16).max(1) * 16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_batch_in_blocks_of_16() {
        assert_eq!(part_rows(1, 0), 1);
        assert_eq!(part_rows(1, 64), 64);
        assert_eq!(part_rows(2, 64), 32);
        assert_eq!(part_rows(2, 16), 16);
        assert_eq!(part_rows(3, 64), 32);
        assert_eq!(part_rows(4, 40), 16);
    }
}
