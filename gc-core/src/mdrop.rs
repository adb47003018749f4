//! Destructors of dead objects (Go has none; this is fing's own layer): where and when
//! the `Drop` of a dead object's value runs, when that `Drop` is user code (an
//! `#[gc(untraced)]` field's, a `Vec`'s, an `#[gc(unsafe_allow_drop)]` type's) rather than
//! handle drops alone (`runs_user_code`).
//!
//! The rule: no user code runs inside a mutator section or with the world stopped. Inside
//! either, ordinary code deadlocks (a destructor waiting for a lock that a thread blocked
//! on the world holds), crashes (an allocation through a cache the sweep is rebuilding)
//! or loses counts (a handle dropped while the collector settles counts in bulk). So a
//! dead object whose destructor is user code is first *doomed*: its header's type
//! becomes [`DYING`] (no edges, no destructor: the collector neither reads its value nor
//! frees its slot, and keeps it as a root), and it is listed with its real type
//! ([`Doomed`]). Then, outside every section, [`destroy`] runs each destructor (a panic is
//! caught, counted in `MemStats::destructor_panics` and reported on stderr), and finally,
//! in one section, writes [`FREED`](crate::mspan::FREED) into each header and gives small
//! slots to the thread's free lists (as `mfree` does; the others are freed by the next
//! sweep).
//!
//! Who dooms, and where the destructors run:
//! - a count that reaches zero (`mfree`): the dropping thread, as `Arc` does, as soon as
//!   it is outside every section (at the end of the drop's own section, or of the
//!   `GcCell` guard's it was dropped under); a chain of such deaths (a list whose nodes
//!   own `String`s) runs in constant stack;
//! - a collection (`mgcmark::mark_doomed`): garbage with such a destructor is marked,
//!   with everything it reaches (so nothing it can touch is freed this cycle, and the
//!   counts its handles hold are left for its destructor to drop), doomed, and handed
//!   over as the cycle's batch. An explicit `collect()` runs its batch on the calling
//!   thread after the world resumes, then waits for the batches of earlier automatic
//!   collections, so when it returns every destructor of garbage found so far has run.
//!   A collection an allocation triggered hands its batch to the drop thread
//!   (`fing-drop`, started on first use): the allocating thread may hold a lock that a
//!   destructor takes, so it must not run them, nor wait for them.
//!
//! `wait_finalizers()` also waits for the drop thread. The threads never wait in a cycle:
//! the drop thread may wait for the finalizer thread (a destructor calling
//! `wait_finalizers`), the finalizer thread never waits for the drop thread (its
//! `collect()` runs its own batch and does not wait for the others).
//!
//! What a destructor may touch: its own value, and everything its untraced fields reach
//! (a handle hidden from the collector there keeps its object alive: its count looked
//! like an outside reference). It must not dereference the *traced* handles of the value
//! being dropped: their objects may be dead in the same cycle, and destroyed already
//! (their slots stay allocated until the whole batch is done, so dropping those handles
//! is fine). Derived types cannot have a `Drop` of their own unless they opt out with the
//! `unsafe` promise to keep exactly this rule.

use core::ptr::NonNull;
use core::sync::atomic::Ordering;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;
use std::time::Instant;

use gc_types::Type;

use crate::mfinal::handoff::{Handoff, Queue};
use crate::mgcmark::header;
use crate::mspan::{data_offset, FREED, HEADER};
use crate::world::Local;

/// The type in the header of a doomed object until its destructor has run: no edges, no
/// destructor (the collector never reads the value, which another thread is dropping).
// SAFETY: the marker value type is never made: no value of it holds a handle; it is
// Send and Sync (a unit struct).
pub(crate) static DYING: Type =
    unsafe { Type::untraced::<Dying>("fing: object being dropped", true, true) };

/// The value type of [`DYING`] (never made).
struct Dying;

/// A doomed object: its header and its real type.
pub(crate) struct Doomed {
    pub(crate) obj: NonNull<u8>,
    pub(crate) ty: &'static Type,
}

// SAFETY: a doomed object belongs to whoever holds its `Doomed` (no handle to it is left
// that could be used), and its type was `Send` to be allocated.
unsafe impl Send for Doomed {}

/// Does dropping a value of `ty` run code other than handle drops?
#[inline]
pub(crate) fn runs_user_code(ty: &Type) -> bool {
    ty.needs_drop() && !ty.handles_only_drop()
}

/// Is `ty` one of the two sentinels of dead objects (`DYING`, `FREED`)?
#[inline]
pub(crate) fn is_dead_type(ty: *const Type) -> bool {
    core::ptr::eq(ty, &DYING) || core::ptr::eq(ty, &FREED)
}

/// Dooms `obj` (count zero, type `ty`, this thread in a section): its destructor runs
/// once this thread is outside every section.
pub(crate) fn doom(l: &Local, obj: NonNull<u8>, ty: &'static Type) {
    // SAFETY: `obj` heads an allocated object whose count just reached zero: no handle to
    // it is left, so no one else reads or writes its header's type now.
    unsafe { header(obj.as_ptr()) }
        .ty
        .store((&DYING as *const Type).cast_mut(), Ordering::Relaxed);
    l.push_dying(Doomed { obj, ty });
}

/// Dooms an object a collection found dead (world stopped).
///
/// # Safety
/// `obj` heads an allocated, unreachable object of type `ty`, marked by this cycle.
pub(crate) unsafe fn doom_in_collection(obj: NonNull<u8>) {
    // SAFETY: the caller's contract; the world is stopped.
    unsafe { header(obj.as_ptr()) }
        .ty
        .store((&DYING as *const Type).cast_mut(), Ordering::Relaxed);
}

/// Runs the destructors of `batch` (objects a collection doomed) and of every object that
/// dies on this thread meanwhile (`l`'s dying list), then frees their slots. Outside
/// every section; re-entrant (a destructor may `collect()`, which destroys its own batch
/// here, nested).
pub(crate) fn destroy(l: &Local, mut batch: Vec<Doomed>) {
    let was = l.destroying.replace(true);
    let mut done: Vec<Doomed> = Vec::new();
    loop {
        while let Some(d) = batch.pop().or_else(|| l.pop_dying()) {
            run_destructor(&d);
            done.push(d);
            // A batch's slots stay allocated until every destructor of the batch has run
            // (a destructor may drop handles to its batch-mates); objects that died on
            // their own may be finished in parts, so a long chain frees as it goes.
            if batch.is_empty() && done.len() >= FINISH_EVERY {
                finish(l, &mut done);
            }
        }
        finish(l, &mut done);
        if !l.has_dying() {
            break;
        }
    }
    l.destroying.set(was);
}

/// Objects whose destructors ran before their slots are freed, when nothing else holds
/// them back: one section per this many.
const FINISH_EVERY: usize = 256;

/// Runs one doomed object's destructor, outside every section. A panic is caught and
/// counted: the object is freed anyway.
fn run_destructor(d: &Doomed) {
    let data = d.obj.as_ptr().wrapping_add(data_offset(d.ty.align()));
    // SAFETY: the value is valid and nothing can reach it (its count is zero, or the
    // collection that doomed it found it unreachable); it is dropped once, here.
    let r = catch_unwind(AssertUnwindSafe(|| unsafe { d.ty.drop_value(data) }));
    if r.is_err() {
        eprintln!(
            "fing: a destructor of {} panicked; the object is freed anyway",
            d.ty
        );
        if let Some(h) = crate::heap::heap_of(d.obj) {
            h.destructor_panics.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Frees the slots of objects whose destructors have run: in one section, after this
/// thread's own deferred drops (which may be the last drops of those objects), each
/// header becomes `FREED`, and small slots go to this thread's free lists for their heap
/// (made if this thread has none: then the frees are counted now, and `collect()` can
/// return exact statistics); a large object's slot is freed by the next sweep.
fn finish(l: &Local, done: &mut Vec<Doomed>) {
    if done.is_empty() {
        return;
    }
    l.enter_outermost();
    crate::world::apply_deferred(l);
    // SAFETY: this thread's caches, in its section; no other borrow is live.
    let caches = unsafe { &mut *l.caches.get() };
    for d in done.drain(..) {
        // SAFETY: a doomed object's slot stays allocated until this store.
        let h = unsafe { header(d.obj.as_ptr()) };
        let last = h.count.load(Ordering::Acquire) == 0;
        h.ty.store((&FREED as *const Type).cast_mut(), Ordering::Release);
        let Some(s) = crate::mheap::span_of(d.obj.as_ptr() as usize) else {
            continue;
        };
        let small = s.nelems > 1 && s.elem_size >= HEADER + core::mem::size_of::<usize>();
        if !(last && small) {
            continue;
        }
        let cache = match caches.iter().position(|c| c.heap_id == s.heap_id) {
            Some(i) => Some(&mut *caches[i]),
            None => crate::heap::heap_of(d.obj).map(|h| h.cache_for(caches)),
        };
        if let Some(c) = cache {
            // SAFETY: the slot is dead (count zero, `FREED`), of class `s.spc` in `c`'s
            // heap, long enough for the link, and owned by no one now.
            unsafe { c.push_free(s.spc, d.obj) };
        }
    }
    l.leave_outermost();
}

/// Runs a collection's batch on this thread, now (an explicit `collect()`, after the
/// world resumed), then waits for the drop thread's earlier batches, unless this thread is
/// the drop thread or the finalizer thread (see the module docs).
pub(crate) fn destroy_now(batch: Vec<Doomed>) {
    if !batch.is_empty() {
        crate::world::with_local(|l| destroy(l, batch));
    }
    if !on_drop_thread() && !crate::mfinal::on_finalizer_thread() {
        let _ = DROPS.wait_idle(None);
    }
}

/// Hands a collection's batch to the drop thread (a collection an allocation triggered).
pub(crate) fn destroy_later(batch: Vec<Doomed>) {
    if batch.is_empty() {
        return;
    }
    start();
    DROPS.push(|q| q.batches.push(batch));
}

/// Waits until the drop thread has run every batch handed to it (at most until
/// `deadline`); `Err` with the batches left if time ran out. A no-op on the drop thread.
pub(crate) fn wait_idle(deadline: Option<Instant>) -> Result<(), usize> {
    if on_drop_thread() {
        return Ok(());
    }
    DROPS.wait_idle(deadline)
}

/// Does the drop thread have work, queued or running?
pub(crate) fn busy() -> bool {
    DROPS.busy()
}

/// The drop thread's queue: whole batches.
#[derive(Default)]
pub(crate) struct Batches {
    batches: Vec<Vec<Doomed>>,
}

impl Queue for Batches {
    type Batch = Vec<Vec<Doomed>>;
    fn len(&self) -> usize {
        self.batches.len()
    }
    fn take_all(&mut self) -> Vec<Vec<Doomed>> {
        core::mem::take(&mut self.batches)
    }
}

#[cfg(not(loom))]
static DROPS: Handoff<Batches> = Handoff::new(Batches {
    batches: Vec::new(),
});

#[cfg(loom)]
static DROPS: std::sync::LazyLock<Handoff<Batches>> =
    std::sync::LazyLock::new(|| Handoff::new(Batches::default()));

std::thread_local! {
    static ON_DROP_THREAD: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

/// Is this the drop thread?
pub(crate) fn on_drop_thread() -> bool {
    ON_DROP_THREAD.with(|f| f.get())
}

fn start() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        std::thread::Builder::new()
            .name("fing-drop".into())
            .spawn(run)
            .expect("fing: cannot start the drop thread");
    });
}

/// The drop thread: takes every queued batch and destroys it, in order.
fn run() {
    ON_DROP_THREAD.with(|f| f.set(true));
    while let Some(batches) = DROPS.take() {
        crate::world::with_local(|l| {
            for b in batches {
                destroy(l, b);
            }
        });
        DROPS.finished(|_| {});
    }
}

/// A model of dooming against a collection: a mutator dooms an object whose count reached
/// zero in its section (the header's type becomes `DYING`), runs the destructor outside
/// any section (a write of the value), and finishes it in a new section (the type becomes
/// `FREED`); a collector stops the world, reads the type, and frees (overwrites) the slot
/// only if it is `FREED`, keeping a `DYING` one. Property: the collector never frees the
/// slot while the destructor writes it (loom reports the race), nor before it finished
/// (the assertion), and the slot is freed once, after the destructor, by the last
/// collection.
#[cfg(all(test, loom))]
mod loom_model {
    use crate::handshake::{all_idle, leave, raise_stop, try_enter};
    use core::sync::atomic::Ordering;
    use loom::cell::UnsafeCell;
    use loom::sync::atomic::{fence, AtomicBool, AtomicU8};
    use loom::sync::Arc;
    use loom::thread;

    const LIVE: u8 = 0;
    const DYING: u8 = 1;
    const FREED: u8 = 2;

    struct Obj {
        stop: AtomicBool,
        active: AtomicBool,
        /// The header's type: LIVE, DYING or FREED.
        ty: AtomicU8,
        /// The value: 1 while live, 2 once its destructor ran, 0 once the slot is freed.
        value: UnsafeCell<u8>,
    }

    fn enter(o: &Obj) {
        while !try_enter(&o.active, &o.stop, || fence(Ordering::SeqCst)) {
            thread::yield_now();
        }
    }

    /// The collector's cycle: frees the slot if it is `FREED` (once).
    fn collect(o: &Obj) -> bool {
        raise_stop(&o.stop, || fence(Ordering::SeqCst));
        let mut freed = false;
        if all_idle([&o.active]) && o.ty.load(Ordering::Relaxed) == FREED {
            // SAFETY: a loom cell; loom reports a write racing the destructor's.
            let v = o.value.with_mut(|p| unsafe { core::ptr::replace(p, 0) });
            assert!(v == 2 || v == 0, "freed before its destructor ran: {v}");
            freed = v == 2;
        }
        o.stop.store(false, Ordering::Release);
        freed
    }

    #[test]
    fn a_doomed_object_is_freed_only_after_its_destructor() {
        loom::model(|| {
            let o = Arc::new(Obj {
                stop: AtomicBool::new(false),
                active: AtomicBool::new(false),
                ty: AtomicU8::new(LIVE),
                value: UnsafeCell::new(1),
            });
            let m = o.clone();
            let mutator = thread::spawn(move || {
                // The count reached zero in this section: doom.
                enter(&m);
                m.ty.store(DYING, Ordering::Relaxed);
                leave(&m.active);
                // The destructor, outside any section.
                // SAFETY: a loom cell, as above.
                m.value.with_mut(|p| unsafe { *p = 2 });
                // Finish, in a section.
                enter(&m);
                m.ty.store(FREED, Ordering::Release);
                leave(&m.active);
            });
            let early = collect(&o);
            mutator.join().unwrap();
            let late = collect(&o);
            assert!(early ^ late, "freed exactly once");
        });
    }
}
