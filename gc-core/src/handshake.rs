//! The world lock's handshake (Dekker's), as two small functions over any atomic flag, so
//! that the code the world lock runs is the code the loom model checks.
//!
//! Mutator: publish `active = true`, full fence, read `stop`; if set, withdraw `active`.
//! Collector: set `stop`, full fence, read every `active`. With both fences, at least one
//! side sees the other's store: a mutator never runs a section while the collector sees
//! every slot idle. The fences are the caller's (`symmetric`: sequentially consistent
//! accesses on both sides; asymmetric: a compiler fence on the mutator's side, `membarrier`
//! on the collector's; see `world`).

use core::sync::atomic::Ordering;

/// An atomic boolean: std's, or loom's in the model.
pub(crate) trait Flag {
    fn load(&self, o: Ordering) -> bool;
    fn store(&self, v: bool, o: Ordering);
}

impl Flag for core::sync::atomic::AtomicBool {
    #[inline]
    fn load(&self, o: Ordering) -> bool {
        core::sync::atomic::AtomicBool::load(self, o)
    }
    #[inline]
    fn store(&self, v: bool, o: Ordering) {
        core::sync::atomic::AtomicBool::store(self, v, o)
    }
}

/// The mutator's side: `true` if the section may run; `false` (with `active` withdrawn)
/// if a collector holds or is taking the world. `mutator_fence` runs between the store and
/// the load: a full `fence(SeqCst)` in the symmetric mode, a compiler fence when the
/// collector's `membarrier` supplies the other half. (One code path for both, written with
/// fences rather than SeqCst accesses, which loom cannot model.)
#[inline]
pub(crate) fn try_enter(
    active: &impl Flag,
    stop: &impl Flag,
    mutator_fence: impl FnOnce(),
) -> bool {
    active.store(true, Ordering::Relaxed);
    mutator_fence();
    // Acquire: if this reads the collector's lowering of `stop`, everything the collector
    // did with the world stopped happens before this section (the loom model found the
    // race a relaxed load leaves).
    if !stop.load(Ordering::Acquire) {
        return true;
    }
    active.store(false, Ordering::Release);
    false
}

/// The collector's first step: raise `stop`, then the collector's fence.
pub(crate) fn raise_stop(stop: &impl Flag, collector_fence: impl FnOnce()) {
    stop.store(true, Ordering::Relaxed);
    collector_fence();
}

/// The collector's check: is every slot idle? (After `raise_stop`, once this is true, no
/// section can start until `stop` is lowered.)
pub(crate) fn all_idle<'a, F: Flag + 'a>(slots: impl IntoIterator<Item = &'a F>) -> bool {
    slots.into_iter().all(|s| !s.load(Ordering::Acquire))
}

#[cfg(all(test, loom))]
mod loom_model {
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::atomic::{fence, AtomicBool};
    use loom::sync::Arc;
    use loom::thread;

    impl Flag for AtomicBool {
        fn load(&self, o: Ordering) -> bool {
            AtomicBool::load(self, o)
        }
        fn store(&self, v: bool, o: Ordering) {
            AtomicBool::store(self, v, o)
        }
    }

    /// `rounds` mutator sections against `rounds` collector stops. Property: a section
    /// and a stopped world never overlap. The cell is written inside the mutator's section
    /// and read while the collector owns the world; loom reports any interleaving where
    /// both happen at once, including the collector's lowering of `stop` racing a later
    /// section; and the collector never reads more writes than were made. Both fences are
    /// `fence(SeqCst)`: the symmetric mode's code exactly, and the asymmetric mode's with
    /// `membarrier`'s effect (a full fence on the mutator's thread) written out.
    fn exclusion(rounds: u32) {
        loom::model(move || {
            let stop = Arc::new(AtomicBool::new(false));
            let active = Arc::new(AtomicBool::new(false));
            let data = Arc::new(UnsafeCell::new(0u32));
            let (s2, a2, d2) = (stop.clone(), active.clone(), data.clone());
            let mutator = thread::spawn(move || {
                for _ in 0..rounds {
                    if try_enter(&*a2, &*s2, || fence(Ordering::SeqCst)) {
                        // SAFETY: inside a section (loom checks the exclusion).
                        d2.with_mut(|p| unsafe { *p += 1 });
                        a2.store(false, Ordering::Release);
                    }
                }
            });
            for _ in 0..rounds {
                raise_stop(&*stop, || fence(Ordering::SeqCst));
                if all_idle([&*active]) {
                    // SAFETY: the world is stopped (loom checks the exclusion).
                    let seen = data.with(|p| unsafe { core::ptr::read(p) });
                    assert!(seen <= rounds);
                }
                stop.store(false, Ordering::Release);
            }
            mutator.join().unwrap();
        });
    }

    #[test]
    fn sections_and_stopped_world_exclude_each_other() {
        exclusion(1);
    }

    #[test]
    fn two_rounds_keep_the_exclusion() {
        exclusion(2);
    }
}
