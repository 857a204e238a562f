//! Data-parallel loops on candle's CPU worker pool.
//!
//! candle's quantised matmuls run on a barrier pool whose workers spin briefly between
//! calls. Running thresh's own CPU kernels (attention, sampling) on the same pool, rather
//! than on a second thread pool, keeps the two from fighting over the cores.

/// Runs `f(i)` for every `i` in `0..n`, spread over candle's CPU workers.
pub fn parallel_for<F: Fn(usize) + Sync>(n: usize, f: F) {
    if n <= 1 {
        (0..n).for_each(f);
        return;
    }
    candle_core::utils::barrier_pool().execute_chunked(n, |range| range.for_each(&f));
}

/// Applies `f` to every element of `items` in parallel; `f` gets the index and a mutable
/// reference to that element only.
pub fn parallel_for_each_mut<T: Send, F: Fn(usize, &mut T) + Sync>(items: &mut [T], f: F) {
    let base = SendPtr(items.as_mut_ptr());
    let n = items.len();
    parallel_for(n, |i| {
        // SAFETY: `parallel_for` calls every index in 0..n exactly once, so each element is
        // borrowed mutably by one call only, and `items` outlives the loop.
        let item = unsafe { &mut *base.get().add(i) };
        f(i, item);
    });
}

struct SendPtr<T>(*mut T);

impl<T> SendPtr<T> {
    fn get(&self) -> *mut T {
        self.0
    }
}

// SAFETY: the pointer is only dereferenced at disjoint indices (see above).
unsafe impl<T: Send> Sync for SendPtr<T> {}
unsafe impl<T: Send> Send for SendPtr<T> {}
