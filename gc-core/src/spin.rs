//! A spin lock for short critical sections that are almost never contended: the records
//! of one span (`Span::specials`), which `set_finalizer` takes once per call and the
//! collector once per span.
//!
//! Locking is one compare-and-swap and unlocking one release store. std's futex mutex
//! unlocks with a second read-modify-write (a swap, to learn whether to wake a waiter);
//! in `set_finalizer`'s profile the two atomic operations were half of the record
//! insertion. A waiter spins briefly, then yields its time slice, so a holder preempted
//! on a loaded machine costs the waiter its slice, not a core. No poisoning: the guard's
//! drop unlocks, and the data it guards (a sorted `Vec`) is whole between operations.
//!
//! Invariant: `data` is reached only through a `SpinGuard`, and a guard exists only while
//! its thread holds `locked` (set by the guard's creation, cleared by its drop).

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

pub(crate) struct SpinLock<T> {
    locked: AtomicBool,
    data: UnsafeCell<T>,
}

// SAFETY: the lock hands out `&mut T` to one thread at a time (the module invariant), which
// is what `Mutex<T>: Sync` requires of `T: Send`.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub(crate) const fn new(data: T) -> SpinLock<T> {
        SpinLock {
            locked: AtomicBool::new(false),
            data: UnsafeCell::new(data),
        }
    }

    /// Takes the lock, waiting for it.
    #[inline]
    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        if self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
        SpinGuard { lock: self }
    }

    #[cold]
    fn lock_contended(&self) {
        let mut spins = 0u32;
        loop {
            while self.locked.load(Ordering::Relaxed) {
                if spins < 64 {
                    spins += 1;
                    core::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }
}

/// Access to the data while the lock is held; unlocks on drop.
pub(crate) struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: this guard exists, so this thread holds the lock (module invariant): no
        // other reference to the data is live.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only use of the guard.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // Release: the holder's writes to the data happen before the next holder's
        // Acquire of the lock.
        self.lock.locked.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn threads_take_turns_and_lose_no_update() {
        let lock = Arc::new(SpinLock::new(Vec::new()));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let lock = lock.clone();
                std::thread::spawn(move || {
                    for i in 0..if cfg!(miri) { 20 } else { 10_000 } {
                        lock.lock().push(t * 100_000 + i);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let n = if cfg!(miri) { 20 } else { 10_000 };
        let mut v = core::mem::take(&mut *lock.lock());
        assert_eq!(v.len(), 4 * n);
        v.sort_unstable();
        v.dedup();
        assert_eq!(v.len(), 4 * n, "every push once");
    }
}
