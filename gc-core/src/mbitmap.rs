//! Side bitmaps (Go's mbitmap, the part fing needs): one bit per object slot of a span,
//! for allocation and for marks, kept beside the objects and never inside them. The bits
//! are atomics used with relaxed loads and stores by one writer at a time (see mspan).

use core::sync::atomic::{AtomicU64, Ordering};

/// Calls `f` with the index of each set bit of a bitmap, in order.
pub(crate) fn for_each_set(bits: &[AtomicU64], mut f: impl FnMut(usize)) {
    for (wi, w) in bits.iter().enumerate() {
        let mut w = w.load(Ordering::Relaxed);
        while w != 0 {
            let i = wi * 64 + w.trailing_zeros() as usize;
            w &= w - 1;
            f(i);
        }
    }
}

pub(crate) fn bitmap(n: usize) -> Box<[AtomicU64]> {
    (0..n.div_ceil(64)).map(|_| AtomicU64::new(0)).collect()
}
