//! Mutator sections: [`enter`] (a guard, for API calls that need one: `GcCell` writes,
//! `find_object`), [`with_section`] (the allocation path's, in one thread-local access),
//! and [`pause`] (a long chain of frees lets a waiting collector run). Leaving the
//! outermost section runs the destructors of what died in it (`Local::leave_outermost`).
//!
//! A fing call that needs a section, made on the collector's own thread (from a `Trace`
//! impl, with the world stopped), panics ([`in_collection`]) instead of waiting for
//! itself.

use super::local::{end, try_local, with_temporary, Local, CURRENT};
use core::cell::Cell;

/// A mutator section, held while the guard lives: of the `Local` that is `CURRENT` on
/// its thread from its start to its end (the thread's own, or one its open sections own:
/// see `local`'s module docs).
pub(crate) struct Section {
    _not_send: core::marker::PhantomData<*const ()>,
}

/// Panics for a fing call made while this thread holds the stopped world: from a `Trace`
/// impl, the only user code the collector runs with the world stopped.
#[cold]
#[inline(never)]
#[track_caller]
pub(crate) fn in_collection(api: &str) -> ! {
    panic!(
        "{api}: called from inside a collection (a Trace impl runs while the world is \
         stopped, and must not call into fing: it would wait for itself or change what \
         the collector is reading)"
    )
}

/// Enters a mutator section (waits while a collector owns the world). `api` names the
/// caller for the panic on the collector's own thread (see `in_collection`).
#[inline]
pub(crate) fn enter(api: &str) -> Section {
    let entered = try_local(|l| {
        if l.holds_world.get() {
            in_collection(api);
        }
        let d = l.depth.get();
        if d == 0 {
            l.slot.enter();
        }
        l.depth.set(d + 1);
    });
    if entered.is_none() {
        enter_temporary();
    }
    Section {
        _not_send: core::marker::PhantomData,
    }
}

/// `enter` on a thread whose `Local` is destroyed: a section of a temporary one, which
/// the open sections own (the last to end frees it), `CURRENT` meanwhile.
#[cold]
#[inline(never)]
fn enter_temporary() {
    let p = Local::temporary();
    CURRENT.with(|c| c.set(p.as_ptr()));
    // SAFETY: a live boxed `Local`, ended by the last of its sections (`free_owned`).
    let l = unsafe { p.as_ref() };
    l.owned_by_sections.set(true);
    l.enter_outermost();
}

impl Drop for Section {
    #[inline]
    fn drop(&mut self) {
        // The section's `Local` is `CURRENT`: a `Local` with open sections is never
        // destroyed, it hands them on (`local`'s module docs), so this finds it.
        let done = try_local(|l| {
            let d = l.depth.get() - 1;
            if d > 0 {
                l.depth.set(d);
                return false;
            }
            l.leave_outermost();
            // The destructors that leaving ran may have opened sections of their own and
            // kept them: then those own it now.
            l.owned_by_sections.get() && l.depth.get() == 0
        });
        if done == Some(true) {
            free_owned();
        }
    }
}

/// Ends the `CURRENT` `Local`, which its sections owned, once the last has ended: it
/// retires its slot and clears `CURRENT` (`local::end`).
#[cold]
#[inline(never)]
fn free_owned() {
    let p = core::ptr::NonNull::new(CURRENT.with(Cell::get).cast_mut())
        .expect("fing::world: a section's Local is not current");
    // SAFETY: `CURRENT` holds the pointer `Box::leak` gave (`enter_temporary`,
    // `Local::adopt`), and `owned_by_sections` says no one else ends it; no section is
    // open on it, so no guard refers to it, and no reference to it is live on this thread
    // (the closure that found it has returned).
    unsafe { end(p) };
}

/// Panics if this thread holds the stopped world (see `in_collection`).
pub(crate) fn assert_not_collecting(api: &str) {
    if try_local(|l| l.holds_world.get()).unwrap_or(false) {
        in_collection(api);
    }
}

/// Runs `f` inside a mutator section with this thread's `Local`, in one thread-local
/// access (the allocation path; `api` names it for the panic inside a collection).
#[inline]
pub(crate) fn with_section<R>(api: &str, f: impl FnOnce(&Local) -> R) -> R {
    let p = CURRENT.with(Cell::get);
    if p.is_null() {
        return with_section_slow(api, f);
    }
    // SAFETY: as in `try_local`.
    let l = unsafe { &*p };
    let outermost = !l.holds_world.get() && l.depth.get() == 0;
    if outermost {
        l.slot.enter();
        l.depth.set(1);
    } else if l.depth.get() == 0 {
        // The collector's thread (it never has a section: `enter` refuses it one).
        in_collection(api);
    }
    // Allocation drops no handle, so nothing dies in this section: the plain leave, not
    // `leave_outermost`'s look at the dying list (which holds objects here only when a
    // destructor allocates: `destroy`'s loop, further up the stack, takes them).
    struct Leave<'a>(&'a Local, bool);
    impl Drop for Leave<'_> {
        #[inline]
        fn drop(&mut self) {
            if self.1 {
                debug_assert!(
                    !self.0.has_dying() || self.0.destroying.get(),
                    "fing::world: an allocation doomed an object"
                );
                self.0.depth.set(0);
                self.0.slot.leave();
            }
        }
    }
    let _leave = Leave(l, outermost);
    f(l)
}

/// `with_section` before the thread's first use of its `Local` (made here), or after its
/// destruction (a temporary one).
#[cold]
#[inline(never)]
fn with_section_slow<R>(api: &str, f: impl FnOnce(&Local) -> R) -> R {
    if try_local(|_| ()).is_some() {
        return with_section(api, f);
    }
    with_temporary(|l| {
        l.enter_outermost();
        let r = f(l);
        l.leave_outermost();
        r
    })
}

/// Leaves `l`'s section and enters it again, letting a waiting collector run in between:
/// `pin(true)` runs before leaving, `pin(false)` after entering again. Only in a section
/// that is `pausable`, whose owner holds no state the collector must not see.
pub(crate) fn pause(l: &Local, pin: impl Fn(bool)) {
    debug_assert!(l.pausable.get() && l.depth.get() == 1);
    pin(true);
    l.depth.set(0);
    l.slot.leave();
    l.slot.enter();
    l.depth.set(1);
    pin(false);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::{lock, Slot, WORLD};
    use core::sync::atomic::Ordering;
    use std::cell::RefCell;
    use std::sync::Arc;

    /// The slot `CURRENT` uses on this thread.
    fn my_slot() -> Arc<Slot> {
        try_local(|l| l.slot.clone()).expect("a Local")
    }

    fn registered(s: &Arc<Slot>) -> bool {
        lock(&WORLD.slots).iter().any(|x| Arc::ptr_eq(x, s))
    }

    /// After the thread is gone, its slots are idle and retired (no one holds them but
    /// the test).
    fn retired(slots: &[Arc<Slot>]) {
        for s in slots {
            assert!(!s.active.load(Ordering::SeqCst), "a slot left active");
            assert!(!registered(s), "a slot left registered");
            assert_eq!(Arc::strong_count(s), 1, "a slot still held");
        }
    }

    /// Slots the tests' thread-local destructors saw, for the test to check once the
    /// thread is gone.
    static SEEN: std::sync::Mutex<Vec<Arc<Slot>>> = std::sync::Mutex::new(Vec::new());

    fn seen(slot: Arc<Slot>) {
        SEEN.lock().unwrap_or_else(|e| e.into_inner()).push(slot);
    }

    fn take_seen(n: usize) -> Vec<Arc<Slot>> {
        let mut s = SEEN.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(s.len(), n, "the destructors ran");
        core::mem::take(&mut *s)
    }

    /// Sections kept past the thread's `Local`: at their drop, the slot they were entered
    /// on is still registered and active.
    struct Kept {
        sections: Vec<Section>,
        slot: Option<Arc<Slot>>,
    }

    impl Drop for Kept {
        fn drop(&mut self) {
            let Some(slot) = self.slot.take() else { return };
            assert!(registered(&slot), "the slot of a live section was retired");
            assert!(
                slot.active.load(Ordering::SeqCst),
                "a live section's slot is idle"
            );
            self.sections.clear();
            seen(slot);
        }
    }

    thread_local! {
        static KEPT: RefCell<Kept> = const {
            RefCell::new(Kept { sections: Vec::new(), slot: None })
        };
    }

    /// Sections kept in a thread-local that outlives the thread's `Local` (first touched
    /// before it): the slot stays registered and active until the last one ends, then it
    /// is retired. (Under Miri, this is also the check that handing a `Local`'s state to
    /// its heir aliases nothing.)
    #[test]
    fn sections_kept_past_the_threads_local_keep_its_slot_until_they_end() {
        let _serial = serial();
        std::thread::spawn(|| {
            KEPT.with(|_| ());
            let s = enter("test");
            let slot = my_slot();
            KEPT.with(|k| {
                let mut k = k.borrow_mut();
                k.sections.push(s);
                k.sections.push(enter("test"));
                k.slot = Some(slot);
            });
        })
        .join()
        .unwrap();
        retired(&take_seen(1));
    }

    /// Takes two sections after the thread's `Local` is gone (in a temporary one) and ends
    /// the first before the second: the slot stays registered and active until then.
    struct Late;

    impl Drop for Late {
        fn drop(&mut self) {
            let first = enter("test");
            let second = enter("test");
            let slot = my_slot();
            drop(first);
            assert!(registered(&slot), "the slot of a live section was retired");
            assert!(
                slot.active.load(Ordering::SeqCst),
                "a live section's slot is idle"
            );
            drop(second);
            seen(slot);
        }
    }

    thread_local! {
        static LATE: Late = const { Late };
    }

    #[test]
    fn sections_taken_after_the_threads_local_end_in_any_order() {
        let _serial = serial();
        std::thread::spawn(|| {
            // Touched before the `Local` is made: destroyed after it.
            LATE.with(|_| ());
            drop(enter("test"));
            seen(my_slot());
        })
        .join()
        .unwrap();
        retired(&take_seen(2));
    }

    /// The two tests share `SEEN`.
    fn serial() -> std::sync::MutexGuard<'static, ()> {
        static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        SERIAL.lock().unwrap_or_else(|e| e.into_inner())
    }
}
