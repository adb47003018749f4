//! A thread's fing state ([`Local`]) and how code reaches it: `try_local` in one load of
//! a constant thread-local (`CURRENT`), which points at the lazily made `LOCAL`, or at a
//! temporary `Local` for a thread whose own is already destroyed.
//!
//! A thread's `Local` is owned by a thread-local (`LOCAL`), ended at thread exit, maybe
//! before other thread-locals that hold handles (first touched before fing's). What such
//! a destructor does (drop a handle, allocate, borrow a cell) runs with a temporary
//! `Local` of its own (`with_temporary`): a slot registered for the call and retired
//! after, so nothing is lost and nothing panics.
//!
//! Every `Local` is boxed, and ended by `end` through the box's pointer, never by a
//! `Drop` of `Local` itself: ending one runs fing calls (destructors, deferred drops) that
//! reach it through `CURRENT` meanwhile, which the `&mut self` of a `Drop` impl would
//! invalidate (Miri's Stacked Borrows).
//!
//! Invariant: a section never ends before its guard does. A `GcCell` write guard holds a
//! section of the `Local` it was taken with, and the collector keeps out of the heap only
//! while that section's slot is active; so a `Local` whose sections are still open when it
//! is ended (a guard kept in a thread-local destroyed after `LOCAL`, or taken inside a
//! temporary's call and kept) neither leaves its section nor retires its slot: it hands
//! both, with its depth, to a boxed heir that the open sections own (`adopt`,
//! `owned_by_sections`; `CURRENT` meanwhile), which the last of them ends as it ends
//! (`Section`'s drop). A section entered on a thread with no `Local` left makes such a box
//! too (`enter_temporary`), so guards taken there may end in any order. (Before, the first
//! guard's drop ended the temporary under the second, and a guard kept past `LOCAL`'s
//! destruction lost its section: a collection could then free the object the guard's
//! `&mut` pointed into.) A guard that is never dropped keeps its slot active for good,
//! thread gone or not, and every collection waits for it, as for a guard leaked on a live
//! thread.

use core::cell::Cell;
use core::ptr::NonNull;
use std::sync::Arc;

use super::{lock, Role, Slot, WORLD};
use crate::mspan::Span;

/// A thread's fing state. Only its own thread touches it (the collector reaches its
/// caches through the heaps' registries, and its slot through `World::slots`, with the
/// world stopped).
pub(crate) struct Local {
    /// This thread's slot in the handshake, shared with the collector.
    pub(crate) slot: Arc<Slot>,
    /// Sections this thread is in (0: none; only the outermost touches the slot).
    pub(crate) depth: Cell<u32>,
    /// This thread is the collector, and holds the stopped world.
    pub(crate) holds_world: Cell<bool>,
    /// This thread's allocation caches, one per heap it allocated from. Boxed so that each
    /// keeps its address: the cache registry (`mcache`) points at it.
    #[allow(clippy::vec_box)]
    pub(crate) caches: core::cell::UnsafeCell<Vec<Box<crate::mcache::MCache>>>,
    /// Set on a thread that must not wait for a collection to drop handles (the finalizer
    /// thread): with its ring full and the world stopped, drops go to its slot's
    /// `spilled` instead.
    pub(crate) spills: Cell<bool>,
    /// Inside a chain of frees at count zero (`mfree`).
    pub(crate) freeing: Cell<bool>,
    /// Set while the current section is one `drop_as_mutator` opened for itself, which a
    /// chain of frees may leave and enter again (`pause`).
    pub(crate) pausable: Cell<bool>,
    /// The objects a chain of frees has yet to free, with their spans (`mfree`).
    pub(crate) chain: core::cell::UnsafeCell<Vec<(core::ptr::NonNull<u8>, &'static Span)>>,
    /// Objects whose count reached zero on this thread and whose destructors run user
    /// code: destroyed (`mdrop::destroy`) as soon as the thread is outside every section
    /// (at the end of the drop's own section, or of the `GcCell` guard's it was made in).
    pub(crate) dying: core::cell::UnsafeCell<Vec<crate::slot::Doomed>>,
    /// Set while this thread runs destructors (`mdrop::destroy`): the end of a section
    /// leaves new dying objects to that loop instead of starting another.
    pub(crate) destroying: Cell<bool>,
    /// Drops a thread that `spills` made with its ring full while the world was stopped:
    /// applied with its ring in its next section of its own, or handed to its slot's
    /// spill when it finishes a batch (`flush_held`), or at its exit. (A plain vector: one lock per
    /// batch, not per drop. A collection that runs meanwhile does not see them, and
    /// keeps their objects: a count too high never frees anything early.)
    pub(crate) held: core::cell::UnsafeCell<Vec<core::ptr::NonNull<u8>>>,
    /// A temporary `Local` (`with_temporary`, `enter_temporary`, `adopt`).
    temporary: bool,
    /// Boxed, `CURRENT`, and owned by its open sections: the section whose end brings the
    /// depth to zero frees it (`Section`'s drop). See the module docs.
    pub(super) owned_by_sections: Cell<bool>,
    /// Set as the `Local` is dropped (thread exit): the thread no longer takes a slice's
    /// shared work while it waits for a stop (`help_through_stop`).
    pub(crate) exiting: Cell<bool>,
}

impl Local {
    fn new() -> Local {
        super::fences::init();
        let slot = Arc::new(Slot::new());
        lock(&WORLD.slots).push(slot.clone());
        Local {
            slot,
            depth: Cell::new(0),
            holds_world: Cell::new(false),
            caches: core::cell::UnsafeCell::new(Vec::new()),
            spills: Cell::new(false),
            freeing: Cell::new(false),
            pausable: Cell::new(false),
            chain: core::cell::UnsafeCell::new(Vec::new()),
            dying: core::cell::UnsafeCell::new(Vec::new()),
            destroying: Cell::new(false),
            held: core::cell::UnsafeCell::new(Vec::new()),
            temporary: false,
            owned_by_sections: Cell::new(false),
            exiting: Cell::new(false),
        }
    }

    /// A temporary `Local`, boxed (ended by `end`): `CURRENT` points at it while it lives.
    pub(super) fn temporary() -> NonNull<Local> {
        let mut l = Box::new(Local::new());
        l.temporary = true;
        NonNull::from(Box::leak(l))
    }

    /// Leaves this thread's outermost section, then destroys what died in it (user code
    /// runs outside every section: see `mdrop`).
    #[inline]
    pub(crate) fn leave_outermost(&self) {
        self.depth.set(0);
        self.slot.leave();
        if self.has_dying() {
            self.destroy_dying();
        }
    }

    /// Are objects waiting for their destructors on this thread?
    #[inline]
    pub(crate) fn has_dying(&self) -> bool {
        // SAFETY: `dying` is this thread's, and no reference to it outlives a call.
        !unsafe { &*self.dying.get() }.is_empty()
    }

    /// Runs the dying objects' destructors, unless this thread is already doing so further
    /// up its stack (that loop takes them).
    #[cold]
    #[inline(never)]
    fn destroy_dying(&self) {
        if self.destroying.get() {
            return;
        }
        if super::role() == Role::Finalizer {
            // The finalizer thread runs finalizers only: a destructor there could not
            // wait for finalizers, and would hold up the ones queued behind it.
            crate::mdrop::destroy_dying_later(self);
        } else {
            crate::mdrop::destroy(self, Vec::new());
        }
    }

    /// Takes the next dying object, if any.
    pub(crate) fn pop_dying(&self) -> Option<crate::slot::Doomed> {
        // SAFETY: as in `has_dying`.
        unsafe { &mut *self.dying.get() }.pop()
    }

    /// Adds a dying object (in a section: see `mfree`).
    pub(crate) fn push_dying(&self, d: crate::slot::Doomed) {
        // SAFETY: as in `has_dying`.
        unsafe { &mut *self.dying.get() }.push(d);
    }

    /// Enters a section on this thread's own slot (depth 0 to 1), waiting while a
    /// collector holds the world.
    pub(crate) fn enter_outermost(&self) {
        debug_assert_eq!(self.depth.get(), 0);
        self.slot.enter();
        self.depth.set(1);
    }

    /// `enter_outermost` if the world is free now; `false` (nothing entered) if a
    /// collector holds or wants it.
    pub(crate) fn try_enter_outermost(&self) -> bool {
        debug_assert_eq!(self.depth.get(), 0);
        let entered = self.slot.try_enter();
        if entered {
            self.depth.set(1);
        }
        entered
    }

    /// Is this a temporary `Local` (its thread's own is destroyed)?
    pub(crate) fn is_temporary(&self) -> bool {
        self.temporary
    }

    /// The held drops, taken out.
    pub(crate) fn take_held(&self) -> Vec<core::ptr::NonNull<u8>> {
        // SAFETY: `held` is this thread's, and no reference to it outlives a call.
        core::mem::take(unsafe { &mut *self.held.get() })
    }

    /// Has this thread drops not yet applied (its ring, what it held, its spill)?
    fn has_deferred(&self) -> bool {
        !self.slot.ring.is_empty() || self.holds_drops() || !self.slot.spilled.lock().is_empty()
    }

    /// Has this thread held drops?
    pub(crate) fn holds_drops(&self) -> bool {
        // SAFETY: as in `take_held`.
        !unsafe { &*self.held.get() }.is_empty()
    }
}

/// Ends a boxed `Local` (the thread's own at exit, a temporary, an heir): retires it, or
/// hands its open sections on (`retire`), then frees its box.
///
/// # Safety
/// `p` must come from `Box::leak`/`Box::into_raw` of a `Local` of this thread (`CURRENT`'s
/// provenance, not a reference's), not ended before, and no reference to it may be used
/// after this call. It is ended through shared references only: the fing calls that
/// retiring makes reach it through `CURRENT` meanwhile, which a `&mut` (a `Drop` impl)
/// would invalidate (Miri's Stacked Borrows said so).
pub(super) unsafe fn end(p: NonNull<Local>) {
    // SAFETY: `p` is a live boxed `Local` (the caller's contract).
    unsafe { p.as_ref() }.retire();
    // SAFETY: as above; retiring left nothing that refers to it (`CURRENT` cleared or
    // pointing at the heir), and the box is freed once.
    drop(unsafe { Box::from_raw(p.as_ptr()) });
}

/// The thread's own `Local`, owned by the thread-local `LOCAL`: its drop at thread exit
/// ends it (`end`).
pub(super) struct Owned(NonNull<Local>);

impl Drop for Owned {
    fn drop(&mut self) {
        // SAFETY: made by `Box::leak` in `LOCAL`'s initialiser and ended only here.
        unsafe { end(self.0) };
    }
}

impl Local {
    /// The end of this `Local` (`end`; thread exit, or the end of a temporary): apply
    /// the deferred drops, run the destructors they call for, and hand the caches' spans
    /// back, in sections of this slot, then retire the slot. `CURRENT` still points here
    /// meanwhile, so what those destructors do (drop more handles: a long list) goes
    /// through this `Local`, and its dying list, in constant stack; it is cleared last.
    ///
    /// Until nothing is left deferred: the destructors that leaving the section runs drop
    /// handles too, and a drop that meets a collection is recorded in this slot's ring
    /// (`release`). Once the slot leaves the list below, no collection drains it: the drop
    /// was lost, and the rest of a list that was being destroyed leaked (found by
    /// `chains_of_destructors_racing_collections` on one core, 1 run in 20).
    ///
    /// Sections still open on this `Local` (a guard that outlives it, or one that a
    /// destructor run by `leave_outermost` took and kept) keep its slot, active: they are
    /// handed to an heir (`adopt`), and this `Local` is left empty.
    fn retire(&self) {
        self.exiting.set(true);
        loop {
            // Sections still open on this `Local` (a guard that outlives it, or one that a
            // destructor run by `leave_outermost` below took and kept) keep its slot,
            // active: they own it from here (see the module docs).
            if self.depth.get() > 0 {
                self.adopt();
                return;
            }
            self.enter_outermost();
            crate::release::apply_all(self);
            self.leave_outermost();
            if self.depth.get() > 0 {
                self.adopt();
                return;
            }
            // SAFETY: this thread's caches; no reference to them is live between two
            // fing calls, and none is made while this one lives.
            let caches = core::mem::take(unsafe { &mut *self.caches.get() });
            self.enter_outermost();
            for mut c in caches {
                c.retire();
            }
            self.leave_outermost();
            if !self.has_deferred() && self.depth.get() == 0 {
                break;
            }
        }
        {
            // Objects this thread shaded that the collector has not taken yet stay grey:
            // they move to the orphans as the slot leaves the list, under the orphans'
            // lock, so a collector taking greys (the slots, then the orphans) sees them in
            // one place or the other (`mgcwork::take_greys`).
            let mut orphans = super::ORPHAN_GREYS.lock();
            lock(&WORLD.slots).retain(|s| !Arc::ptr_eq(s, &self.slot));
            orphans.append(&mut self.slot.grey.lock());
        }
        if self.is_current() {
            CURRENT.with(|c| c.set(core::ptr::null()));
        }
    }
}

impl Local {
    /// Hands this `Local`'s open sections, its slot (active) and its state to a boxed
    /// temporary `Local` that the sections own, and makes it `CURRENT`: `retire`'s way
    /// for a `Local` with `depth > 0`. Nothing on this thread's stack uses `self`'s state
    /// meanwhile (it is ended at thread exit, at the end of `with_temporary`'s call, or by
    /// the last of its sections), so moving it out is all.
    #[cold]
    #[inline(never)]
    fn adopt(&self) {
        // SAFETY: this thread's own cells, reached only by it; no reference to them is
        // live (see above).
        let caches = core::mem::take(unsafe { &mut *self.caches.get() });
        // SAFETY: as for `caches`.
        let chain = core::mem::take(unsafe { &mut *self.chain.get() });
        // SAFETY: as for `caches`.
        let dying = core::mem::take(unsafe { &mut *self.dying.get() });
        let held = self.take_held();
        let heir = Box::new(Local {
            slot: self.slot.clone(),
            depth: Cell::new(self.depth.get()),
            holds_world: Cell::new(false),
            caches: core::cell::UnsafeCell::new(caches),
            spills: Cell::new(self.spills.get()),
            freeing: Cell::new(false),
            pausable: Cell::new(false),
            chain: core::cell::UnsafeCell::new(chain),
            dying: core::cell::UnsafeCell::new(dying),
            destroying: Cell::new(false),
            held: core::cell::UnsafeCell::new(held),
            temporary: true,
            owned_by_sections: Cell::new(true),
            exiting: Cell::new(true),
        });
        // Its slot stays registered: it is the heir's now (one `Arc` less as `self` goes).
        CURRENT.with(|c| c.set(Box::into_raw(heir)));
    }

    /// Is this the thread's `LOCAL` (not a temporary one)?
    fn is_current(&self) -> bool {
        core::ptr::eq(CURRENT.with(Cell::get), self)
    }
}

/// Runs `f` with a temporary `Local`, for a thread whose `LOCAL` is already destroyed (a
/// handle dropped, or a value allocated, by another thread-local's destructor at thread
/// exit). It registers a slot of its own for the call and retires it after: costly, and
/// only ever on that path.
///
/// The temporary is `CURRENT` while it lives, so that the fing calls its work makes (the
/// destructors it runs drop handles) use it rather than make temporaries of their own,
/// one inside the other.
#[cold]
#[inline(never)]
pub(crate) fn with_temporary<R>(f: impl FnOnce(&Local) -> R) -> R {
    // Boxed: it must not move while `CURRENT` points at it (its end included).
    let l = Local::temporary();
    CURRENT.with(|c| c.set(l.as_ptr()));
    // SAFETY: a live boxed `Local`, ended below, after the reference's last use.
    let r = f(unsafe { l.as_ref() });
    // SAFETY: from `Local::temporary`, ended once; `f`'s reference is gone.
    unsafe { end(l) };
    r
}

thread_local! {
    /// This thread's `Local`, made on first use, boxed (see `end`).
    static LOCAL: Owned = Owned(NonNull::from(Box::leak(Box::new(Local::new()))));
    /// The `Local` this thread uses: `LOCAL`'s address from its first use until its
    /// destructor ends, or a temporary's while one lives (after `LOCAL` is gone), null
    /// otherwise: a thread-local with a constant initialiser and no destructor, which the
    /// hot paths read with one load (`LOCAL` itself costs a lazy-initialisation check and
    /// a call).
    pub(super) static CURRENT: Cell<*const Local> = const { Cell::new(core::ptr::null()) };
}

/// Runs `f` with this thread's `Local`; `None` once it has been destroyed (thread exit).
#[inline(always)]
pub(crate) fn try_local<R>(f: impl FnOnce(&Local) -> R) -> Option<R> {
    let p = CURRENT.with(Cell::get);
    if p.is_null() {
        return try_local_slow(f);
    }
    // SAFETY: `CURRENT` holds the address of a live `Local`: `LOCAL`'s, set on its first
    // use (below) and cleared last thing in its `Local::drop`, or a boxed temporary's
    // (`with_temporary`, `enter_temporary`), cleared by its drop, before its box is freed.
    Some(f(unsafe { &*p }))
}

#[cold]
#[inline(never)]
fn try_local_slow<R>(f: impl FnOnce(&Local) -> R) -> Option<R> {
    LOCAL
        .try_with(|l| {
            CURRENT.with(|c| c.set(l.0.as_ptr()));
            // SAFETY: `LOCAL`'s `Local` lives until its `Owned` is dropped, after this.
            f(unsafe { l.0.as_ref() })
        })
        .ok()
}

/// Runs `f` with this thread's `Local`.
///
/// # Panics
/// During or after the thread-local's destruction.
#[inline(always)]
pub(crate) fn local<R>(f: impl FnOnce(&Local) -> R) -> R {
    try_local(f).expect("fing::world: the thread's world slot is already destroyed")
}

/// Does this thread hold a mutator section?
pub(crate) fn in_section() -> bool {
    try_local(|l| l.depth.get() > 0).unwrap_or(false)
}

/// Could this thread run a collection now: it has its fing state, holds no section and
/// is not the collector?
pub(crate) fn can_collect() -> bool {
    try_local(|l| l.depth.get() == 0 && !l.holds_world.get()).unwrap_or(false)
}

/// Runs `f` with this thread's `Local`, or a temporary one if it is destroyed.
pub(crate) fn with_local<R>(f: impl FnOnce(&Local) -> R) -> R {
    // `try_local` consumes `f` only when it has a `Local`; keep it for the fallback.
    let mut f = Some(f);
    match try_local(|l| (f.take().expect("once"))(l)) {
        Some(r) => r,
        None => with_temporary(f.take().expect("not called")),
    }
}
