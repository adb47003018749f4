//! Deferred handle drops: a handle dropped outside a mutator section while a collector
//! holds or wants the world only records the object in this thread's ring, so that a
//! drop never waits for a collection. (Otherwise the drop lowers the count at once, in a
//! section of its own, and may free the object: `mfree`.) The ring is applied later by the
//! thread itself (in its next such section, when the ring is full, or when the thread
//! exits) or by the next collection (with the world stopped, before it counts anything).
//!
//! Why it is sound: a drop not yet applied leaves a count too high, which can only make
//! the collector keep an object (a count above the references from inside the heap marks
//! a root). And every collection applies every ring first, so a collection sees exactly
//! the drops made before it stopped the world, as if each had been applied on the spot:
//! an object unreachable when its last handle is dropped is freed by the next collection,
//! from any thread, if no thread freed it before.
//!
//! The ring is single-producer (its thread) and single-consumer at a time (its thread
//! inside a section, or a collector with the world stopped: the world lock excludes the
//! two). The producer writes a slot, then publishes it with a `Release` store of `tail`;
//! a consumer reads `tail` with `Acquire`, applies the slots up to it, then stores `head`
//! (`Release`). The producer reads `head` with `Acquire` before reusing a slot; a stale
//! `head` only makes the ring look fuller. The loom model below checks that every drop is
//! applied exactly once.

/// Objects whose counts are to be lowered by one each: a thread's spill (`release`), a
/// plain vector behind its slot's lock.
#[derive(Default)]
pub(crate) struct Spilled(Vec<NonNull<u8>>);

// SAFETY: each entry is a count on a heap object that some thread must lower; whichever
// thread holds the world or the owner's section does it (the decrement is atomic).
unsafe impl Send for Spilled {}

impl Spilled {
    /// Adds `more` (emptying it).
    pub(crate) fn append(&mut self, more: &mut Vec<NonNull<u8>>) {
        self.0.append(more);
    }

    /// Is it empty?
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Takes every entry out.
    pub(crate) fn take(&mut self) -> Vec<NonNull<u8>> {
        core::mem::take(&mut self.0)
    }
}

#[cfg(loom)]
use loom::sync::atomic::{AtomicPtr, AtomicUsize};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicPtr, AtomicUsize};

use core::ptr::NonNull;
use core::sync::atomic::Ordering;

/// Drops a thread may record before it applies them itself: the drops it can make while a
/// collection runs without waiting for it (a full ring makes its next drop wait to apply
/// it). 256 pointers are 2 KiB per thread; a pause of a few milliseconds rarely sees more
/// drops from one thread, and each collection drains every ring, so a larger one would
/// cost every collection more reading.
pub(crate) const RING: usize = 256;

pub(crate) struct Ring<const CAP: usize = RING> {
    head: AtomicUsize,
    tail: AtomicUsize,
    slots: [AtomicPtr<u8>; CAP],
}

impl<const CAP: usize> Ring<CAP> {
    pub(crate) fn new() -> Ring<CAP> {
        Ring {
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
            slots: core::array::from_fn(|_| AtomicPtr::new(core::ptr::null_mut())),
        }
    }

    /// The producer: records `obj`, or returns `false` if the ring is full (the caller
    /// applies it in a section, then records again).
    #[inline]
    pub(crate) fn push(&self, obj: NonNull<u8>) -> bool {
        // Only this thread writes `tail`.
        let t = self.tail.load(Ordering::Relaxed);
        if t.wrapping_sub(self.head.load(Ordering::Acquire)) >= CAP {
            return false;
        }
        self.slots[t % CAP].store(obj.as_ptr(), Ordering::Relaxed);
        self.tail.store(t.wrapping_add(1), Ordering::Release);
        true
    }

    /// Does the ring hold drops? (The owner, as a hint: a consumer may be draining it.)
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.tail.load(Ordering::Relaxed) == self.head.load(Ordering::Relaxed)
    }

    /// A consumer (the owner in a section, or a collector with the world stopped): calls
    /// `apply` on every recorded drop, once.
    pub(crate) fn drain(&self, mut apply: impl FnMut(NonNull<u8>)) {
        let t = self.tail.load(Ordering::Acquire);
        let mut h = self.head.load(Ordering::Relaxed);
        while h != t {
            let p = self.slots[h % CAP].load(Ordering::Relaxed);
            apply(NonNull::new(p).expect("fing::deferred: an empty slot below tail"));
            h = h.wrapping_add(1);
        }
        self.head.store(t, Ordering::Release);
    }
}

#[cfg(all(test, loom))]
mod loom_model {
    use super::*;
    use crate::handshake::{all_idle, leave, raise_stop, try_enter};
    use loom::sync::atomic::{fence, AtomicBool, AtomicU32};
    use loom::sync::Arc;
    use loom::thread;

    /// Property: a thread records three drops in a ring of two (so it applies the ring
    /// itself, in a section, once it fills), while a collector drains the ring with the
    /// world stopped; every drop is applied exactly once, never twice and never lost.
    #[test]
    fn every_recorded_drop_is_applied_once() {
        loom::model(|| {
            struct Shared {
                ring: Ring<2>,
                stop: AtomicBool,
                active: AtomicBool,
                count: AtomicU32,
            }
            let s = Arc::new(Shared {
                ring: Ring::new(),
                stop: AtomicBool::new(false),
                active: AtomicBool::new(false),
                count: AtomicU32::new(3),
            });
            let apply = |s: &Shared| {
                s.ring.drain(|_| {
                    s.count.fetch_sub(1, Ordering::Relaxed);
                })
            };
            let s2 = s.clone();
            let owner = thread::spawn(move || {
                let obj = NonNull::<u8>::dangling();
                for _ in 0..3 {
                    while !s2.ring.push(obj) {
                        while !try_enter(&s2.active, &s2.stop, || fence(Ordering::SeqCst)) {
                            thread::yield_now();
                        }
                        apply(&s2);
                        leave(&s2.active);
                    }
                }
            });
            raise_stop(&s.stop, || fence(Ordering::SeqCst));
            if all_idle([&s.active]) {
                apply(&s);
            }
            s.stop.store(false, Ordering::Release);
            owner.join().unwrap();
            apply(&s);
            assert_eq!(s.count.load(Ordering::Relaxed), 0);
        });
    }
}
