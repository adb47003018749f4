//! Destructors of dead objects (Go has none; this is fing's own layer): where and when
//! the `Drop` of a dead object's value runs, when that `Drop` is user code (an
//! `#[gc(untraced)]` field's without the `DropOnlyFrees` promise, an
//! `#[gc(unsafe_allow_drop)]` type's, a `Vec`'s of such values) rather than handle drops
//! and deallocations alone (`runs_user_code`). A drop that only frees memory besides
//! (`Trace::DROP_ONLY_FREES`) is this module's only at count zero for an object that
//! cannot be freed in the section (large, or in a span with records: `mfree`); otherwise
//! it runs in the freeing section, and in a collection's release step (`mgcsweep`).
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
//! in one section, writes [`FREED`](crate::slot::FREED) into each header and gives small
//! slots to the thread's free lists (as `mfree` does; the others are freed by the next
//! sweep).
//!
//! Who dooms, and where the destructors run:
//! - a count that reaches zero (`mfree`): the dropping thread, as `Arc` does, as soon as
//!   it is outside every section (at the end of the drop's own section, or of the
//!   `GcCell` guard's it was dropped under); a chain of such deaths (a list whose nodes
//!   own `String`s) runs in constant stack, on any thread, at thread exit too;
//! - a collection (`mgcmark::mark_doomed`): garbage with such a destructor is marked,
//!   with everything it reaches (so nothing it can touch is freed this cycle, and the
//!   counts its handles hold are left for its destructor to drop), doomed, and handed
//!   over as the cycle's batch. An explicit `collect()` runs its batch on the calling
//!   thread after the world resumes, then waits for the batches the drop thread was
//!   given before its stop ended (a ticket: a thread that keeps making garbage cannot
//!   keep it waiting), so when it returns every destructor of garbage found so far has
//!   run and its slot is free. A collection an allocation triggered, or a slice on the
//!   collector thread, hands its batch to the drop thread (`fing-drop`, started on first
//!   use) before the world resumes (so that a later `collect()` finds it under its
//!   ticket): the allocating thread may hold a lock that a destructor takes, so it must
//!   not run them, nor wait for them;
//! - never the finalizer thread: what dies there (a finalizer dropped the last handle),
//!   and a `collect()` it calls, go to the drop thread, so a destructor can always wait
//!   for finalizers, and a slow destructor never holds up the finalizers behind it;
//! - `Heap::new`, which collects retired heaps to reuse them, hands their destructors to
//!   the drop thread and waits for nothing; the drop of a heap's last `Heap` runs that
//!   heap's own destructors on the dropping thread (as the last `Arc` of a container).
//!
//! A drop never waits for a collection: freeing the slots after the destructors takes a
//! section, and if a collector holds or wants the world then, the drop thread finishes
//! them instead (`finish`).
//!
//! There is no backpressure, as there is none for Go's finalizers: a program whose
//! automatic collections find garbage with slow destructors faster than one thread can
//! run them grows its heap (doomed objects are kept until destroyed). `collect()` and
//! `wait_finalizers()` wait for the backlog of before their call.
//!
//! `wait_finalizers()` also waits for the drop thread (its batches of before the call).
//! The threads never wait in a cycle: the drop thread may wait for the finalizer thread
//! (a destructor calling `wait_finalizers`), the finalizer thread never waits for the
//! drop thread.
//!
//! What a destructor may touch: its own value, and everything its untraced fields reach
//! (a handle hidden from the collector there keeps its object alive: its count looked
//! like an outside reference). It must not dereference, clone or move out the *traced*
//! handles of the value being dropped: their objects may be dead in the same cycle, and
//! destroyed already (their slots stay allocated until the whole batch is done, so
//! dropping those handles is fine). Derived types cannot have a `Drop` of their own
//! unless they opt out with `unsafe impl AllowDrop`, the promise to keep exactly this
//! rule.
//!
//! Holding a lock, or a `GcCell` borrow, across `collect()` or `wait_finalizers()` that a
//! destructor takes makes them wait for each other, as dropping the last `Arc` of a value
//! whose `Drop` takes a lock the dropping thread holds does.

use core::sync::atomic::Ordering;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Instant;

use gc_types::Type;

use crate::handoff::{Handoff, Queue};
use crate::slot::{data_offset, header, Doomed, FREED, HEADER};
use crate::world::{Local, Role};

/// Runs the destructors of `batch` (objects a collection doomed) and of every object that
/// dies on this thread meanwhile (`l`'s dying list), then frees their slots. Outside
/// every section; re-entrant (a destructor may `collect()`, which destroys its own batch
/// here, nested).
pub(crate) fn destroy(l: &Local, mut batch: Vec<Doomed>) {
    /// Restores `destroying` however `destroy` ends (a panic that escapes a destructor's
    /// payload is contained, but not one from fing itself).
    struct Restore<'a>(&'a Local, bool);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            self.0.destroying.set(self.1);
        }
    }
    let _restore = Restore(l, l.destroying.replace(true));
    let mut done: Vec<Doomed> = Vec::new();
    let drop_thread = on_drop_thread();
    loop {
        while let Some(d) = batch.pop().or_else(|| l.pop_dying()) {
            if drop_thread {
                crate::world::yield_to_collector();
            }
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
}

/// Objects whose slots are freed in one section (their destructors have run): a long list
/// frees in parts, and a waiting collector waits for one part at most (256 slots, a few
/// microseconds of freeing).
const FINISH_EVERY: usize = 256;

/// Runs one doomed object's destructor, outside every section. A panic is caught and
/// counted: the object is freed anyway.
fn run_destructor(d: &Doomed) {
    let data = d.obj.as_ptr().wrapping_add(data_offset(d.ty.align()));
    // SAFETY: the value is valid and nothing can reach it (its count is zero, or the
    // collection that doomed it found it unreachable); it is dropped once, here.
    let r = catch_unwind(AssertUnwindSafe(|| unsafe { d.ty.drop_value(data) }));
    if let Err(payload) = r {
        eprintln!(
            "fing: a destructor of {} panicked; the object is freed anyway",
            d.ty
        );
        if let Some(h) = crate::mheap::heap_of(d.obj) {
            h.destructor_panics.fetch_add(1, Ordering::Relaxed);
        }
        drop_payload(payload);
    }
}

/// Drops a caught panic's payload, whose own `Drop` may panic: that panic is caught too and
/// its payload dropped in turn, and so on; a chain longer than `MAX_PAYLOAD_CHAIN` (each
/// payload's drop panicking anew) is cut by forgetting the last payload, as std's thread
/// runtime forgets a payload that panics on drop.
pub(crate) fn drop_payload(payload: Box<dyn core::any::Any + Send>) {
    const MAX_PAYLOAD_CHAIN: usize = 8;
    let mut p = payload;
    for _ in 0..MAX_PAYLOAD_CHAIN {
        match catch_unwind(AssertUnwindSafe(move || drop(p))) {
            Ok(()) => return,
            Err(again) => p = again,
        }
    }
    core::mem::forget(p);
}

/// Frees the slots of objects whose destructors have run, `FINISH_EVERY` per section:
/// after this thread's own deferred drops (which may be the last drops of those objects),
/// each header becomes `FREED`, and small slots go to this thread's free lists for their
/// heap (made if this thread has none: then the frees are counted now, and `collect()` can
/// return exact statistics); a large object's slot is freed by the next sweep.
///
/// A drop never waits for a collection (`world`): on a mutator thread, if a collector
/// holds or wants the world, what is left goes to the drop thread to finish instead (the
/// objects stay doomed, kept, meanwhile). The drop thread and a thread whose fing state is
/// gone wait.
///
/// A destructor may have taken a section and kept it (a `GcCell` write guard put away in
/// a thread-local): then the work goes inside that section, which stays open, rather than
/// in one of its own, whose leaving would end the guard's section under it.
fn finish(l: &Local, done: &mut Vec<Doomed>) {
    while !done.is_empty() {
        let kept = l.depth.get();
        if kept > 0 {
            l.depth.set(kept + 1);
        } else if on_drop_thread() || l.is_temporary() {
            l.enter_outermost();
        } else if !l.try_enter_outermost() {
            push(Batch {
                objs: core::mem::take(done),
                destroyed: true,
            });
            return;
        }
        crate::release::apply_deferred(l);
        let from = done.len().saturating_sub(FINISH_EVERY);
        // SAFETY: this thread's caches, in its section; no other borrow is live.
        let caches = unsafe { &mut *l.caches.get() };
        for d in done.drain(from..) {
            free_slot(caches, &d);
        }
        if kept > 0 {
            l.depth.set(kept);
        } else {
            l.leave_outermost();
        }
    }
}

/// Frees one destroyed object's slot (in a section).
#[allow(clippy::vec_box)] // the thread's caches, boxed so the registry can point at them
fn free_slot(caches: &mut Vec<Box<crate::mcache::MCache>>, d: &Doomed) {
    // SAFETY: a doomed object's slot stays allocated until this store.
    let h = unsafe { header(d.obj.as_ptr()) };
    let last = h.count.load(Ordering::Acquire) == 0;
    h.ty.store((&FREED as *const Type).cast_mut(), Ordering::Release);
    if last {
        // As `mfree::free_one`: a dead slot's scratch count is zero.
        h.gc_refs.store(0, Ordering::Relaxed);
    }
    let Some(s) = crate::mpagealloc::span_of(d.obj.as_ptr() as usize) else {
        return;
    };
    let small = s.nelems > 1 && s.elem_size >= HEADER + core::mem::size_of::<usize>();
    if !(last && small) {
        return;
    }
    let cache = match caches.iter().position(|c| c.heap_id == s.heap_id) {
        Some(i) => Some(&mut *caches[i]),
        None => crate::mheap::heap_of(d.obj).map(|h| crate::mcache::cache(h, caches)),
    };
    if let Some(c) = cache {
        // SAFETY: the slot is dead (count zero, `FREED`), of class `s.spc` in `c`'s heap,
        // long enough for the link, and owned by no one now.
        unsafe { c.push_free(s, d.obj) };
    }
}

/// Runs a collection's batch on this thread, now (an explicit `collect()`, after the
/// world resumed), then waits for the batches the drop thread had been given before
/// `ticket` (`ticket()`, taken when `collect()` began). On the finalizer thread, the batch
/// goes to the drop thread instead, and nothing is waited for (see the module docs); on
/// the drop thread, nothing is waited for either (it would wait for itself).
pub(crate) fn destroy_now(batch: Vec<Doomed>, ticket: u64) {
    if crate::world::role() == Role::Finalizer {
        destroy_later(batch);
        return;
    }
    if !batch.is_empty() {
        crate::world::with_local(|l| destroy(l, batch));
    }
    if !on_drop_thread() {
        let _ = wait_for(ticket, None);
    }
}

/// Hands a collection's batch to the drop thread (a collection an allocation triggered,
/// or any on the finalizer thread).
pub(crate) fn destroy_later(batch: Vec<Doomed>) {
    if !batch.is_empty() {
        push(Batch {
            objs: batch,
            destroyed: false,
        });
    }
}

/// Hands the objects that died on the finalizer thread to the drop thread: the finalizer
/// thread runs finalizers only (`Local::destroy_dying`).
pub(crate) fn destroy_dying_later(l: &Local) {
    let mut objs = Vec::new();
    while let Some(d) = l.pop_dying() {
        objs.push(d);
    }
    destroy_later(objs);
}

/// Queues a batch for the drop thread. In a slice's stop (a collection hands its garbage
/// over before the world resumes), the thread is woken only once it has resumed
/// ([`wake`]), so that its destructors do not take a core from the short stop.
fn push(b: Batch) {
    start();
    let add = |q: &mut Batches| {
        q.batches.push(b);
        q.pushed += 1;
    };
    if crate::world::in_short_stop() {
        DROPS.push_quiet(add);
    } else {
        DROPS.push(add);
    }
}

/// Wakes the drop thread for what `push` queued while the world was stopped. Called by
/// whoever stopped it, once it has resumed.
pub(crate) fn wake() {
    DROPS.wake_owed();
}

/// The ticket of the batches handed to the drop thread so far: `wait_for(ticket())` waits
/// for them, not for later ones (a thread making garbage quickly cannot starve it).
pub(crate) fn ticket() -> u64 {
    DROPS.with(|q| q.pushed)
}

/// Waits until the drop thread has finished every batch before `ticket` (at most until
/// `deadline`); `Err` with how many are left if time ran out. A no-op on the drop thread.
pub(crate) fn wait_for(ticket: u64, deadline: Option<Instant>) -> Result<(), usize> {
    if on_drop_thread() {
        return Ok(());
    }
    // A batch handed over quietly (a slice's stop) whose wake-up is still owed.
    DROPS.wake_owed();
    let mut done = lock(&DONE.0);
    while *done < ticket {
        done = match deadline {
            None => DONE.1.wait(done).unwrap_or_else(|e| e.into_inner()),
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return Err((ticket - *done) as usize);
                }
                DONE.1
                    .wait_timeout(done, d - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A plain counter: poisoning carries no meaning.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the drop thread is given: objects to destroy, or objects whose destructors ran
/// and whose slots only need freeing (`finish` on a thread that must not wait).
pub(crate) struct Batch {
    objs: Vec<Doomed>,
    destroyed: bool,
}

/// The drop thread's queue: whole batches, and how many were ever pushed (the tickets).
#[derive(Default)]
pub(crate) struct Batches {
    batches: Vec<Batch>,
    pushed: u64,
}

impl Queue for Batches {
    type Batch = Vec<Batch>;
    fn len(&self) -> usize {
        self.batches.len()
    }
    fn take_all(&mut self) -> Vec<Batch> {
        core::mem::take(&mut self.batches)
    }
}

#[cfg(not(loom))]
static DROPS: Handoff<Batches> = Handoff::new(Batches {
    batches: Vec::new(),
    pushed: 0,
});

#[cfg(loom)]
static DROPS: std::sync::LazyLock<Handoff<Batches>> =
    std::sync::LazyLock::new(|| Handoff::new(Batches::default()));

/// Batches the drop thread finished, ever, and the condition variable that says so.
static DONE: (Mutex<u64>, Condvar) = (Mutex::new(0), Condvar::new());

/// Is this the drop thread?
fn on_drop_thread() -> bool {
    crate::world::role() == Role::Drop
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

/// The drop thread: takes every queued batch and destroys (or finishes) it, in order,
/// counting each in `DONE` as it ends.
fn run() {
    crate::world::set_role(Role::Drop);
    while let Some(batches) = DROPS.take() {
        crate::world::with_local(|l| {
            for b in batches {
                if b.destroyed {
                    let mut objs = b.objs;
                    finish(l, &mut objs);
                } else {
                    destroy(l, b.objs);
                }
                *lock(&DONE.0) += 1;
                DONE.1.notify_all();
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
