//! The API layer: [`Heap`] (allocation, collection, statistics), `Gc::new`, and what a
//! heap's life takes beyond its state (`mheap`): the pacer's collections, retiring a
//! heap and reusing it. Everything here may collect, so it sits above the collector.
//!
//! Allocation, in order (Go's mallocgc): zero-sized values need no memory; then, if the
//! pacer asked for a collection, one is tried (`maybe_collect`); then, inside a mutator
//! section, tiny noscan values without drop glue share a 16-byte block, small values take
//! a slot of their size class from the thread's cache (refilled from the central list, or
//! from new pages), and large values get a span of their own (`malloc`). Out of room, a
//! collection and one retry (`retry`). Objects of run-time length (`alloc_slice`,
//! `alloc_str`) take the same path with a request made at run time, and an interned
//! `[T; n]` descriptor in their header (`docs/design.md` §9 in the repository).
//!
//! Lifetime: a `Heap` is a counted reference to its `MHeap` (`Clone` adds one). When the
//! last `Heap` goes, the heap is *retired*: a collection frees what no handle keeps, its
//! free pages go back to the OS, and it waits in a list. `Heap::new` takes a retired heap
//! with no object left (again, the arenas already reserved) before it reserves new ones,
//! so a process that makes and drops heaps keeps its address space bounded by the most
//! heaps it ever had alive at once. A retired heap with live objects keeps them (handles
//! do not need a `Heap`) until they die; `fing::collect()` collects such heaps too, so
//! what dies there without reaching count zero (cycles, objects with weak handles) is
//! freed. The default heap is never retired.
//!
//! Lock order: `RETIRED` is taken alone (never while holding a heap's lock); a heap's own
//! locks are ordered in `mheap`'s docs.

use core::cell::Cell;
use core::mem::ManuallyDrop;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use gc_types::{Trace, Type};

use crate::handle::Gc;
use crate::malloc::Plan;
use crate::mheap::{first_goal, lock, HeapConfig, MHeap};
use crate::mstats::{Counters, MemStats};
use crate::slot::Header;
use crate::world;

/// Heaps whose last `Heap` was dropped, for `Heap::new` to reuse once empty.
static RETIRED: Mutex<Vec<&'static MHeap>> = Mutex::new(Vec::new());

impl MHeap {
    /// A retired heap with no object left, made new under `config`; `None` if there is
    /// none. Each call also collects one retired heap that still had objects, in turn, so
    /// one whose objects died since becomes reusable. Its destructors go to the drop
    /// thread: `Heap::new` runs no user code and waits for no one's.
    fn reuse(config: HeapConfig) -> Option<&'static MHeap> {
        let mut retired = lock(&RETIRED);
        if let Some(i) = retired.iter().position(|h| h.is_empty()) {
            let h = retired.swap_remove(i);
            drop(retired);
            h.renew(config);
            return Some(h);
        }
        let stale = (!retired.is_empty()).then(|| retired.remove(0));
        drop(retired);
        let h = stale?;
        // Not in a section (a `GcCell` guard) or a collection: then it waits for its turn.
        if world::can_collect() && h.empty_out("fing::Heap::new", false) {
            h.renew(config);
            return Some(h);
        }
        lock(&RETIRED).push(h);
        None
    }

    /// Collects a retired heap until no object is left or a collection frees nothing
    /// more (objects with destructors take two: one to destroy them, one to free their
    /// slots), then gives its free pages back. Returns whether it is empty. `inline`: the
    /// collections' destructors run on this thread (the heap's own last `Heap` is being
    /// dropped here, as dropping the last `Arc` of a container runs its elements'); else
    /// they go to the drop thread. It never waits for the drop thread.
    fn empty_out(&'static self, api: &str, inline: bool) -> bool {
        let mut objects = u64::MAX;
        while !self.is_empty() {
            let batch = self
                .collect_now(true, Duration::from_millis(1), !inline, api)
                .unwrap_or_default();
            if inline {
                crate::world::with_local(|l| crate::mdrop::destroy(l, batch));
            }
            let now = self.stats().heap_objects;
            if now >= objects {
                break;
            }
            objects = now;
        }
        self.release_all();
        self.is_empty()
    }

    /// Makes an empty retired heap a new heap: `config`, statistics from zero, one `Heap`.
    fn renew(&'static self, config: HeapConfig) {
        crate::mheap::note_config(&config);
        *lock(&self.config) = config;
        self.next_gc.store(first_goal(&config), Ordering::Relaxed);
        self.trigger.store(first_goal(&config), Ordering::Relaxed);
        self.heap_live.store(0, Ordering::Relaxed);
        self.gc_wanted.store(false, Ordering::Relaxed);
        self.destructor_panics.store(0, Ordering::Relaxed);
        self.limit_refusals.store(0, Ordering::Relaxed);
        let mut k = lock(&self.counters);
        let zero = crate::mcache::totals(self, &k);
        *k = Counters {
            num_gc: 0,
            pause_total: Duration::ZERO,
            last_pause: Duration::ZERO,
            live_bytes: 0,
            base: k.base,
            bytes_at_gc: zero.bytes,
            free_bytes_at_gc: zero.free_bytes,
            finalizer_cycles: 0,
            zero,
            pause_max: Duration::ZERO,
            num_pauses: 0,
            pauses: Default::default(),
        };
        drop(k);
        self.handles.store(1, Ordering::Release);
    }

    /// Collects every retired heap that still holds objects (`fing::collect`): their
    /// objects that died since they were retired without reaching count zero (cycles,
    /// objects with weak handles or finalizers) are freed, and their weak handles go nil.
    fn collect_retired(api: &str) {
        let heaps: Vec<&'static MHeap> = lock(&RETIRED)
            .iter()
            .copied()
            .filter(|h| !h.is_empty())
            .collect();
        for h in heaps {
            h.collect_and_destroy(api);
        }
    }

    /// The last `Heap` went: collect what no handle keeps, give the free pages back, and
    /// list the heap for reuse (see the module docs).
    fn retire(&'static self) {
        if world::can_collect() {
            self.empty_out("fing::Heap::drop", !crate::mfinal::on_finalizer_thread());
        } else {
            self.release_all();
        }
        // No one can run them at a safe point now (collections of a retired heap hand
        // theirs to the thread: `mfinal::enqueue`).
        crate::mfinal::pending_to_thread(self);
        lock(&RETIRED).push(self);
    }

    /// Runs an automatic collection if the pacer asked for one and the world can be had
    /// soon: within 200 µs, 2 ms past twice the goal, 20 ms past four times (a thread
    /// preempted inside a section on a loaded machine holds it for a time slice).
    #[inline]
    fn maybe_collect(&'static self) {
        if self.gc_wanted.load(Ordering::Relaxed) {
            self.try_collect();
        }
    }

    #[cold]
    fn try_collect(&'static self) {
        if let Some(slice) = self.config().gc_slice {
            self.pace_slices(slice);
            return;
        }
        let live = self.heap_live.load(Ordering::Relaxed);
        let goal = self.next_gc.load(Ordering::Relaxed).max(1);
        // The further past its goal the heap is, the longer an allocation waits for the
        // world (always bounded: a thread holding a GcCell guard may be waiting for this
        // one). Busy mutators preempted inside sections otherwise starve the pacer.
        let budget = match live / goal {
            0 | 1 => Duration::from_micros(200),
            2 | 3 => Duration::from_millis(2),
            _ => Duration::from_millis(20),
        };
        // The allocating thread may hold a lock a destructor takes: the drop thread runs
        // them.
        let _ = self.collect_now(false, budget, true, "fing::Heap::alloc");
    }

    /// The pacer's part for cycles run in slices (`HeapConfig::gc_slice`): past the
    /// trigger, fing's collector thread is asked to run a cycle. While a cycle of this heap
    /// runs, the allocating thread does a slice of it itself (an assist, Go's mutator
    /// assist) whenever the heap has used more of its runway (trigger to goal) than the
    /// cycle has done of its expected work (Go's assist ratio: allocation may not outrun
    /// the collection, or each cycle's black allocation makes the next heap larger, its
    /// cycle longer, and the heap runs away); past the goal, also whenever the slices
    /// leave the mutators half the time, and then it waits longer for the world (past
    /// twice the goal, whenever it can have the world). Always a bounded wait, as in
    /// `try_collect`: a thread holding a `GcCell` write guard may be waiting for this one.
    fn pace_slices(&'static self, slice: Duration) {
        self.gc_wanted.store(false, Ordering::Relaxed);
        crate::mgcworker::request(self, MHeap::worker_step);
        if crate::mgc::in_progress() != Some(self.id) {
            return;
        }
        // Still wanted: the next span taken asks again.
        self.gc_wanted.store(true, Ordering::Relaxed);
        let live = self.heap_live.load(Ordering::Relaxed);
        let goal = self.next_gc.load(Ordering::Relaxed).max(1);
        let trigger = self.trigger.load(Ordering::Relaxed).min(goal);
        let used = live.saturating_sub(trigger) as f64 / (goal - trigger).max(1) as f64;
        let done = self.cycle_work_ns.load(Ordering::Relaxed) as f64
            / self.cycle_expected_ns.load(Ordering::Relaxed).max(1) as f64;
        let behind = used > done;
        if !behind && (live < goal || (live / goal < 2 && !crate::mgcworker::assist_due())) {
            return;
        }
        // Past the goal, an assist waits longer for the world: giving up when other
        // threads' sections did not drain within 200 µs let three busy mutators allocate
        // on while the cycle starved, and the heap ran away (the soak in slices: 1.5 GB
        // for 0.4 MB live).
        let patience = match live / goal {
            0 => Duration::from_micros(200),
            1 => Duration::from_millis(2),
            _ => Duration::from_millis(20),
        };
        let _ = self.collect_slice(Take::InTurn(patience), slice, "fing::Heap::alloc");
    }

    /// One slice of the cycle in progress (or of a new cycle of this heap), of at most
    /// `slice` of work, if the world can be had (`take`); its destructors go to the drop
    /// thread. Returns whether a cycle of this heap ended.
    pub(crate) fn collect_slice(&'static self, take: Take, slice: Duration, api: &str) -> bool {
        /// Wakes fing's threads for the work a slice's stop handed them quietly, once the
        /// world has resumed, on every way out (a `Trace` panic unwinds through here): it
        /// is dropped after `world`.
        struct Wake;
        impl Drop for Wake {
            fn drop(&mut self) {
                crate::mfinal::wake();
                crate::mdrop::wake();
            }
        }
        let _wake = Wake;
        // The helper that shares the slices' counting and marking starts outside every
        // stop.
        crate::mgchelp::start();
        let world = match take {
            Take::Wait => world::stop_for_slice(Duration::from_micros(200), api),
            Take::InTurn(patience) => world::stop_in_turn(patience, api),
        };
        let Some(world) = world else {
            return false;
        };
        let began = std::time::Instant::now();
        let mut out = crate::mgc::slice(self, &world, began + slice, api);
        later(&mut out);
        drop(world);
        crate::mgcworker::slice_ended(began.elapsed());
        let ended = out.reports.iter().any(|r| r.heap.id == self.id);
        self.after_stop(out, api, false);
        ended
    }

    /// A slice on fing's collector thread (`mgcworker`): returns whether the cycle is
    /// over. A request that no cycle is in progress for is tested again first (Go's
    /// `gcTrigger.test`): a `collect()` since it was made may have left the heap under its
    /// trigger, and a cycle started then would find nothing (and hold the last
    /// collection's freed slots as allocated until it ends).
    fn worker_step(heap: &'static MHeap) -> bool {
        if crate::mgc::in_progress().is_none()
            && heap.heap_live.load(Ordering::Relaxed) < heap.trigger.load(Ordering::Relaxed)
        {
            return true;
        }
        let slice = heap.config().gc_slice.unwrap_or(Duration::from_micros(250));
        heap.collect_slice(Take::Wait, slice, "fing::gc");
        crate::mgc::in_progress().is_none()
    }

    /// `Heap::collect_step`: a slice of about `work`, waiting for the world; the garbage's
    /// destructors run on this thread, as `collect()`'s do. Its stop is not a slice's to
    /// the other threads (`world::stop`, not `stop_for_slice`): its length is the caller's
    /// choice, so fing's threads run beside it and mutators sleep through it; its shared
    /// passes go to the helper thread.
    pub(crate) fn step_and_destroy(&'static self, work: Duration, api: &str) -> bool {
        crate::mgchelp::start();
        let world = world::stop(true, Duration::from_millis(1), api)
            .unwrap_or_else(|| panic!("{api}: the world could not be stopped"));
        let began = std::time::Instant::now();
        let out = crate::mgc::slice(self, &world, began + work, api);
        drop(world);
        // Taken after the stop: every batch an earlier stop handed over is under it.
        let ticket = crate::mdrop::ticket();
        let ended = out.reports.iter().any(|r| r.heap.id == self.id);
        let batch = self.after_stop(out, api, true);
        crate::mdrop::destroy_now(batch, ticket);
        ended
    }

    /// Runs a collection if the world can be had (see `world::stop`); returns its doomed
    /// garbage, which the caller destroys (mdrop) now that the world has resumed, or
    /// (`to_drop_thread`) hands it to the drop thread before the world resumes.
    pub(crate) fn collect_now(
        &'static self,
        wait: bool,
        budget: Duration,
        to_drop_thread: bool,
        api: &str,
    ) -> Option<Vec<crate::slot::Doomed>> {
        // The helper that shares the stop's longest passes starts outside every stop.
        crate::mgchelp::start();
        let world = world::stop(wait, budget, api)?;
        self.gc_wanted.store(false, Ordering::Relaxed);
        let mut out = crate::mgc::run(self, &world, api);
        if to_drop_thread {
            later(&mut out);
        }
        drop(world);
        Some(self.after_stop(out, api, true))
    }

    /// After a stop that ran collector work, with the world resumed: reports the cycles
    /// that ended to `tracing`, and hands back their doomed garbage. A `Trace` panic that
    /// the release step contained goes on to the caller if `raise` (`collect()`), the
    /// garbage to the drop thread first; else it is reported on stderr.
    fn after_stop(
        &self,
        out: crate::mgc::Outcome,
        api: &str,
        raise: bool,
    ) -> Vec<crate::slot::Doomed> {
        out.scavenge();
        #[cfg(feature = "tracing")]
        for r in &out.reports {
            r.emit(api);
        }
        if let Some(p) = out.panicked {
            eprintln!(
                "{api}: a Trace impl or a drop panicked while garbage was released (the object \
                 was kept, or its slot freed with its value half dropped)"
            );
            if raise {
                crate::mdrop::destroy_later(out.doomed);
                std::panic::resume_unwind(p);
            }
        }
        out.doomed
    }

    /// `collect()`: a full collection, then its destructors on this thread, then the drop
    /// thread's batches of before the call awaited (mdrop).
    pub(crate) fn collect_and_destroy(&'static self, api: &str) {
        let batch = self
            .collect_now(true, Duration::from_millis(1), false, api)
            .unwrap_or_default();
        // Taken after the stop: every batch an earlier stop handed over is under it.
        let ticket = crate::mdrop::ticket();
        crate::mdrop::destroy_now(batch, ticket);
    }

    pub(crate) fn stats(&self) -> MemStats {
        // Every lock here is one a collector's stop may take: each is held for a few loads
        // (this walked every span under `counters` and `all_spans`: half a millisecond at
        // 90 000 spans, and a stop waited for it). The pages in spans are every span's.
        let (in_use, sys, released) = {
            let pages = lock(&self.pages);
            (pages.in_use, pages.sys, pages.released)
        };
        let k = lock(&self.counters);
        let t = crate::mcache::totals(self, &k);
        // The finalizer thread's counts include cleanups, published in batches: a
        // snapshot may see a cleanup's count before the thread's.
        let (cleanups_queued, cleanups_run) = crate::mfinal::cleanup_counters();
        let (queued, run, panicked) = crate::mfinal::counters();
        MemStats {
            heap_alloc: (k.live_bytes as u64 + (t.bytes - k.bytes_at_gc))
                .saturating_sub(t.free_bytes - k.free_bytes_at_gc) as usize,
            heap_in_use: in_use,
            heap_sys: sys,
            heap_released: released,
            // The caches' counters are read while their threads run: a thread may take a
            // span (counted in `mallocs`) after its cache's `mallocs` was read, then free
            // objects of it at count zero before its `frees` is read.
            heap_objects: t.mallocs.saturating_sub(t.frees),
            mallocs: t.mallocs - k.zero.mallocs,
            total_alloc: t.bytes - k.zero.bytes,
            frees: t.frees - k.zero.frees,
            next_gc: self.next_gc.load(Ordering::Relaxed),
            num_gc: k.num_gc,
            pause_total: k.pause_total,
            last_pause: k.last_pause,
            finalizer_cycles: k.finalizer_cycles,
            destructor_panics: self.destructor_panics.load(Ordering::Relaxed),
            pause_max: k.pause_max,
            num_pauses: k.num_pauses,
            recent_pauses: k.pauses.iter().copied().collect(),
            uptime: self.started.elapsed(),
            finalizers_queued: queued.saturating_sub(cleanups_queued),
            finalizers_run: run.saturating_sub(cleanups_run),
            finalizers_panicked: panicked,
            cleanups_queued,
            cleanups_run,
        }
    }
}

/// A garbage-collected heap: a counted reference to it, like an `Arc`. `Clone` adds a
/// reference; when the last one is dropped, the heap is collected (waiting for the world
/// like `collect()`, and running the destructors of its garbage on the dropping thread, as
/// dropping the last `Arc` of a container runs its elements'), its free pages go back to
/// the OS, and its address space is reused by a later `Heap::new` once no object is left
/// in it. Handles do not need a `Heap`: objects outlive the `Heap` they were allocated
/// with for as long as handles keep them. `Heap::new` may collect a retired heap to reuse
/// it; it runs no user-code destructors itself (the drop thread does), only the drops that
/// only free memory, which every collection's release step runs.
pub struct Heap {
    pub(crate) inner: &'static MHeap,
}

impl Clone for Heap {
    fn clone(&self) -> Heap {
        self.inner.handles.fetch_add(1, Ordering::Relaxed);
        Heap { inner: self.inner }
    }
}

impl Drop for Heap {
    fn drop(&mut self) {
        if self.inner.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.retire();
        }
    }
}

impl core::fmt::Debug for Heap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Heap({})", self.inner.id)
    }
}

impl PartialEq for Heap {
    fn eq(&self, other: &Heap) -> bool {
        self.inner.id == other.inner.id
    }
}

impl Eq for Heap {}

/// The default heap, made on first use with `HeapConfig::default()`.
#[inline]
pub(crate) fn default_inner() -> &'static MHeap {
    // One load on the allocation path (`Gc::new`); the `OnceLock` makes it once.
    static MADE: AtomicPtr<MHeap> = AtomicPtr::new(core::ptr::null_mut());
    #[cold]
    fn make() -> &'static MHeap {
        static DEFAULT: OnceLock<Heap> = OnceLock::new();
        let h = DEFAULT
            .get_or_init(|| Heap::new(HeapConfig::default()))
            .inner;
        MADE.store((h as *const MHeap).cast_mut(), Ordering::Release);
        h
    }
    match NonNull::new(MADE.load(Ordering::Acquire)) {
        // SAFETY: `MADE` holds null or the default heap's `&'static MHeap`.
        Some(p) => unsafe { p.as_ref() },
        None => make(),
    }
}

impl Heap {
    /// A new heap of its own (a retired one with no object left, if there is one: see
    /// the type's docs).
    pub fn new(config: HeapConfig) -> Heap {
        let inner = MHeap::reuse(config).unwrap_or_else(|| MHeap::new(config));
        Heap { inner }
    }

    /// The default heap, made on first use with `HeapConfig::default()`; `Gc::new`
    /// allocates there. It is never retired.
    pub fn default_heap() -> Heap {
        let inner = default_inner();
        inner.handles.fetch_add(1, Ordering::Relaxed);
        Heap { inner }
    }

    /// Moves `value` into the heap. May run a collection first if the pacer asks for one:
    /// it waits for the world a bounded time (200 µs, up to 20 ms the further the heap is
    /// past its goal) and skips the collection if the world cannot be had by then.
    ///
    /// # Panics
    /// Where `try_alloc` returns an error: past `HeapConfig::max_heap`, or when the OS
    /// refuses memory (`fing::Heap::alloc: cannot allocate ...`).
    #[inline]
    pub fn alloc<T: Trace + Send + 'static>(&self, value: T) -> Gc<T> {
        self.inner.alloc(value)
    }

    /// `alloc` that fails with an [`AllocError`] (which gives the value back) instead of
    /// panicking: when the object would take the heap past `HeapConfig::max_heap` even
    /// after a collection, or the OS refuses memory.
    pub fn try_alloc<T: Trace + Send + 'static>(&self, value: T) -> Result<Gc<T>, AllocError<T>> {
        match self.inner.alloc_fast(value) {
            Ok(g) => Ok(g),
            Err(value) => self.inner.retry(value),
        }
    }

    /// Runs a full collection (Go's `runtime.GC()`): when it returns, the heap has been
    /// marked and swept, every finalizer for the garbage found is queued, and every
    /// destructor of that garbage has run, on this thread, after the world resumed (and so
    /// have the destructors of garbage earlier automatic collections found, which the
    /// drop thread runs). Waits for every other thread to leave its mutator section (a
    /// thread blocked while holding a `GcCell` write guard keeps it waiting).
    ///
    /// Destructors run here as they would where the last handle to an object is dropped:
    /// do not call it while holding a lock that a destructor takes.
    ///
    /// # Panics
    /// If this thread holds a `GcCell` write guard (the collection would wait for it
    /// forever), or from a `Trace` impl (which runs inside a collection).
    pub fn collect(&self) {
        self.inner.collect_and_destroy("fing::collect");
    }

    /// Does one step of collection work: a slice of about `work` (at least the least
    /// step there is, one span or one object) of the cycle in progress, or of a new cycle
    /// of this heap, with the world stopped for its length. The cycle goes on at the next
    /// step (or on fing's collector thread, with `HeapConfig::gc_slice`); mutators may run
    /// between steps. Garbage destructors run here, as for `collect`. Returns whether a
    /// cycle of this heap ended in this step. (Lua's `collectgarbage("step")`; a program
    /// that wants to pay for collection at points of its choosing calls it there.)
    ///
    /// One cycle runs at a time in the process: a `collect()` of another heap, or a cycle
    /// the pacer starts for one, first finishes this heap's cycle in progress, so the cycle
    /// a step continues may have ended, and a new one begun, since the last step.
    ///
    /// # Panics
    /// As `collect`.
    pub fn collect_step(&self, work: Duration) -> bool {
        self.inner
            .step_and_destroy(work, "fing::Heap::collect_step")
    }

    /// [`wait_finalizers`](crate::wait_finalizers): one finalizer thread and one drop
    /// thread serve every heap, so this waits for the finalizers and destructors of all
    /// heaps, as that function does. Finalizers pending for
    /// [`run_finalizers`](Heap::run_finalizers) are not waited for.
    pub fn wait_finalizers(&self) {
        crate::mfinal::wait_finalizers();
    }

    /// Runs the finalizers and cleanups pending on this heap on the calling thread, in
    /// Go's order (a heap made with `HeapConfig::finalizers_at_safe_points`; on any other
    /// heap nothing is ever pending), and returns how many ran. Call it at the program's
    /// safe points (an interpreter between statements, a game loop between frames), after
    /// `collect()` to see what that collection found. Each runs as on the finalizer thread:
    /// resurrected and given its object, a panic contained, counted and reported
    /// ([`set_finalizer_panic_hook`](crate::set_finalizer_panic_hook)). What they queue in
    /// turn (finalizable garbage they make, once collected) waits for the next call.
    ///
    /// # Panics
    /// If called from one of the finalizers it is running (they run one at a time, in
    /// order), while this thread holds a `GcCell` write guard (finalizers run outside every
    /// section), or from a `Trace` impl (inside a collection).
    pub fn run_finalizers(&self) -> usize {
        crate::mfinal::run_pending(self.inner, "fing::Heap::run_finalizers")
    }

    /// How many finalizers and cleanups wait for [`run_finalizers`](Heap::run_finalizers).
    pub fn pending_finalizers(&self) -> usize {
        crate::mfinal::pending(self.inner)
    }

    /// Moves `elems` into one heap object of run-time length and returns a handle to them
    /// as a slice (a wide handle: address and length). The object is traced element by
    /// element (by mask when the elements' masks fit in 64 words), freed at count zero or
    /// by a collection like any other, its elements dropped with it, and counted in
    /// `MemStats` and against `HeapConfig::max_heap`. No elements, or zero-sized ones
    /// without destructors, need no memory (Go's `zerobase`).
    ///
    /// Its finalizer goes on its first element, as Go's goes on `&s[0]`:
    /// `fing::set_finalizer(Value::from(s.map(|s| &s[0])), f)`; the slice handle itself is
    /// not a pointer and is refused. A handle to its end (`s.map(|s| &s[s.len()..])`)
    /// counts on this object, never on the next one.
    ///
    /// The object's header names an array type `[T; n]` built at run time and interned,
    /// one per length used, as Go's `reflect.ArrayOf` caches them; elements without handles
    /// or destructors share one descriptor whatever the length.
    ///
    /// # Panics
    /// Where [`try_alloc_slice`](Heap::try_alloc_slice) returns an error.
    pub fn alloc_slice<T: Trace + Send + 'static>(
        &self,
        elems: impl IntoIterator<Item = T>,
    ) -> Gc<[T]> {
        match self.try_alloc_slice(elems.into_iter().collect()) {
            Ok(g) => g,
            Err(e) => panic!("fing::Heap::alloc_slice: {}", e.reason()),
        }
    }

    /// `alloc_slice` that fails with an [`AllocError`] (which gives the elements back)
    /// instead of panicking: past `HeapConfig::max_heap` even after a collection, or when
    /// the OS refuses memory.
    pub fn try_alloc_slice<T: Trace + Send + 'static>(
        &self,
        elems: Vec<T>,
    ) -> Result<Gc<[T]>, AllocError<Vec<T>>> {
        self.inner.maybe_collect();
        self.inner
            .place_vec(elems)
            .or_else(|elems| self.inner.retry_slice(elems))
    }

    /// Copies `s` into a heap object (see [`alloc_slice`](Heap::alloc_slice)): fing's
    /// string, one wide handle. Strings under 16 bytes share 16-byte blocks (the tiny
    /// allocator), and are freed by a collection rather than at count zero.
    ///
    /// # Panics
    /// Past `HeapConfig::max_heap` even after a collection, or when the OS refuses memory.
    pub fn alloc_str(&self, s: &str) -> Gc<str> {
        let b = s.as_bytes();
        self.inner.maybe_collect();
        // SAFETY: `b` is valid for reads of its bytes, which are `Copy`: nothing is moved.
        let bytes = match unsafe { self.inner.place_slice(b.as_ptr(), b.len()) } {
            Some(g) => g,
            None => match self.inner.retry_slice(b.to_vec()) {
                Ok(g) => g,
                Err(e) => panic!("fing::Heap::alloc_str: {}", e.reason()),
            },
        };
        // SAFETY: the bytes are `s`'s: UTF-8.
        unsafe { bytes.into_str_unchecked() }
    }

    /// The heap's counters.
    pub fn stats(&self) -> MemStats {
        self.inner.stats()
    }
}

impl MHeap {
    /// `Heap::alloc`.
    #[inline]
    pub(crate) fn alloc<T: Trace + Send + 'static>(&'static self, value: T) -> Gc<T> {
        match self.alloc_fast(value) {
            Ok(g) => g,
            Err(value) => self.alloc_slow(value),
        }
    }

    /// The first attempt: zero-sized values, the pacer's collection, a slot.
    #[inline(always)]
    fn alloc_fast<T: Trace + Send + 'static>(&'static self, value: T) -> Result<Gc<T>, T> {
        #[allow(clippy::let_unit_value)]
        let () = Plan::<T>::ALIGN_OK;
        if Plan::<T>::SIZE == 0 && !core::mem::needs_drop::<T>() {
            core::mem::forget(value);
            return Ok(Gc::zero_sized());
        }
        self.maybe_collect();
        self.place(value)
    }

    #[cold]
    #[inline(never)]
    fn alloc_slow<T: Trace + Send + 'static>(&'static self, value: T) -> Gc<T> {
        match self.retry(value) {
            Ok(g) => g,
            Err(e) => panic!("fing::Heap::alloc: {}", e.reason()),
        }
    }

    /// Out of room: collect (waiting for the world as `collect()` does, unless this thread
    /// holds a section: then only if the world can be had now), then try once more. The
    /// collection's destructors go to the drop thread (this thread may hold a lock one
    /// takes), so memory that only they give back is not there for the retry.
    #[cold]
    #[inline(never)]
    fn retry<T: Trace + Send + 'static>(&'static self, value: T) -> Result<Gc<T>, AllocError<T>> {
        self.retry_with(
            value,
            "fing::Heap::try_alloc",
            |v| self.place(v),
            |_| (T::TYPE, Plan::<T>::SIZE),
        )
    }

    /// `retry` for `try_alloc_slice` and `alloc_str`.
    #[cold]
    #[inline(never)]
    fn retry_slice<T: Trace + Send + 'static>(
        &'static self,
        elems: Vec<T>,
    ) -> Result<Gc<[T]>, AllocError<Vec<T>>> {
        self.retry_with(
            elems,
            "fing::Heap::try_alloc_slice",
            |e| self.place_vec(e),
            |e| {
                let n = e.len();
                (
                    gc_types::TypeBuilder::array(T::TYPE, n),
                    core::mem::size_of::<T>().saturating_mul(n),
                )
            },
        )
    }

    /// The collection and second attempt of every allocation path (`retry`): `place` is
    /// the attempt, `what` names the type and size an `AllocError` reports.
    fn retry_with<V, R>(
        &'static self,
        value: V,
        api: &str,
        place: impl FnOnce(V) -> Result<R, V>,
        what: impl FnOnce(&V) -> (&'static Type, usize),
    ) -> Result<R, AllocError<V>> {
        let wait = !world::in_section();
        let _ = self.collect_now(wait, Duration::from_millis(20), true, api);
        let refusals = self.limit_refusals.load(Ordering::Relaxed);
        place(value).map_err(|value| {
            let (ty, size) = what(&value);
            AllocError {
                value,
                ty,
                size,
                limit: self
                    .config()
                    .max_heap
                    .filter(|_| self.limit_refusals.load(Ordering::Relaxed) != refusals),
                in_use: lock(&self.pages).in_use,
            }
        })
    }

    /// `place_slice` of a vector's elements, moved out: the vector back if no slot could
    /// be had.
    fn place_vec<T: Trace + Send + 'static>(
        &'static self,
        mut elems: Vec<T>,
    ) -> Result<Gc<[T]>, Vec<T>> {
        // SAFETY: the vector's elements, moved out bitwise on success, when its length is
        // set to 0 so that it only frees its buffer.
        match unsafe { self.place_slice(elems.as_ptr(), elems.len()) } {
            Some(g) => {
                // SAFETY: the elements were moved into the heap: the vector must not drop
                // them.
                unsafe { elems.set_len(0) };
                Ok(g)
            }
            None => Err(elems),
        }
    }

    /// Allocates an object of `n` elements and moves them in, bitwise, from `src`: `None`
    /// (nothing moved) if no slot could be had, or the size overflows.
    ///
    /// # Safety
    /// `src` must be valid for reads of `n` `T`s; on `Some`, they belong to the heap
    /// object, and the caller must not use or drop them again (unless `T: Copy`).
    unsafe fn place_slice<T: Trace + Send + 'static>(
        &'static self,
        src: *const T,
        n: usize,
    ) -> Option<Gc<[T]>> {
        #[allow(clippy::let_unit_value)]
        let () = Plan::<T>::ALIGN_OK;
        let size = core::mem::size_of::<T>()
            .checked_mul(n)
            .filter(|&s| s <= isize::MAX as usize / 2)?;
        let needs_drop = core::mem::needs_drop::<T>();
        if n == 0 || (size == 0 && !needs_drop) {
            return Some(Gc::outside_slice(n));
        }
        // The header's type: `[T; n]` for the collector to trace and drop exactly `n`;
        // one `[T; 0]` for elements with nothing to trace or drop.
        let body = array_type(T::TYPE, if T::NO_SCAN && !needs_drop { 0 } else { n });
        let req = crate::malloc::Request::runtime(
            size,
            core::mem::align_of::<T>(),
            T::NO_SCAN,
            needs_drop,
            needs_drop && !T::HANDLES_ONLY_DROP && !T::DROP_ONLY_FREES,
        );
        // As `place`: slot, header and elements inside one section.
        world::with_section("fing::Heap::alloc_slice", move |l| {
            let (hdr, data) = self.malloc_typed(l, req, body)?;
            // SAFETY: `data` is valid for writes of `size` bytes aligned for `T` (the
            // request's), a fresh slot that cannot overlap `src` (the caller's memory).
            unsafe { core::ptr::copy_nonoverlapping(src, data.as_ptr().cast::<T>(), n) };
            let elems = NonNull::slice_from_raw_parts(data.cast::<T>(), n);
            // SAFETY: the header counts this handle, and `data` holds `n` valid `T`s.
            Some(unsafe { Gc::from_raw(elems, hdr.cast()) })
        })
    }

    /// A zeroed object whose header names `ty` (a type built at run time whose zero value
    /// is valid: `reflect`'s `alloc_zeroed` checks), with the pacer's collection first and
    /// one collection and retry when out of room, as `alloc` does. Returns a handle to
    /// its value, counted once, or why not (`AllocError`'s words).
    pub(crate) fn alloc_zeroed(&'static self, ty: &'static Type) -> Result<Gc<u8>, String> {
        self.maybe_collect();
        let place = |()| self.place_zeroed(ty).ok_or(());
        place(())
            .or_else(|()| {
                self.retry_with((), "fing::Heap::alloc_zeroed", place, |_| (ty, ty.size()))
            })
            .map_err(|e| e.reason())
    }

    /// A slot for a request made at run time, from this thread's cache, its header written
    /// (count one, type `ty`) unless it is in a tiny block (whose count is reserved
    /// already). In `l`'s section (the caller's `with_section`).
    fn malloc_typed(
        &'static self,
        l: &crate::world::Local,
        req: crate::malloc::Request,
        ty: &'static Type,
    ) -> Option<(NonNull<Header>, NonNull<u8>)> {
        // SAFETY: as in `place`: this thread's caches, in its section; the borrow ends
        // with this call.
        let caches = unsafe { &mut *l.caches.get() };
        let cache = crate::mcache::cache(self, caches);
        let (hdr, data) = self.malloc(cache, req)?;
        if !req.is_tiny() {
            let header = Header {
                count: core::sync::atomic::AtomicU32::new(1),
                gc_refs: core::sync::atomic::AtomicU32::new(0),
                ty: core::sync::atomic::AtomicPtr::new((ty as *const Type).cast_mut()),
            };
            // SAFETY: `hdr` heads a slot the cache just handed out, sized for the header.
            unsafe { hdr.as_ptr().write(header) };
        }
        Some((hdr, data))
    }

    /// `alloc_zeroed`'s attempt: `None` if no slot could be had.
    fn place_zeroed(&'static self, ty: &'static Type) -> Option<Gc<u8>> {
        if ty.size() == 0 {
            return Some(Gc::zero_sized());
        }
        let req = crate::malloc::Request::runtime(
            ty.size(),
            ty.align(),
            ty.is_noscan(),
            ty.needs_drop(),
            crate::slot::runs_user_code(ty),
        );
        world::with_section("fing::Heap::alloc_zeroed", move |l| {
            let (hdr, data) = self.malloc_typed(l, req, ty)?;
            // SAFETY: `data` is valid for writes of `ty.size()` bytes (the request's); all
            // zeroes is a valid `ty` (the caller checked `has_zero_value`).
            unsafe { data.as_ptr().write_bytes(0, ty.size()) };
            // SAFETY: the header counts this handle; `data` holds a valid value.
            Some(unsafe { Gc::from_raw(data, hdr.cast()) })
        })
    }

    /// The allocation itself: `Err(value)` if no slot could be had.
    #[inline(always)]
    fn place<T: Trace + Send + 'static>(&'static self, value: T) -> Result<Gc<T>, T> {
        let ty: &'static Type = T::TYPE;
        let tiny = Plan::<T>::TINY;
        // The value stays where it is until it is copied into its slot: moved into the
        // closure, it went through two more stack copies whose mixed-width stores stalled
        // the read after them on store forwarding (a third of `Gc::new`'s time for a
        // 40-byte frame). A panic in the section before the copy (an allocation inside a
        // `Trace` impl, an invariant of fing's broken) leaks it rather than dropping it: a
        // guard for that cost binary-trees 5 % of `Gc::new`'s instructions.
        let value = ManuallyDrop::new(value);
        let src: *const T = &*value;
        // The slot, its header and the value are written inside one section: the collector
        // must never see an allocated slot without its header. (`move`: the closure holds
        // the heap reference itself, not a reference to it, which kept it on the stack:
        // 3 % of an allocation's instructions.)
        let placed = world::with_section("fing::Heap::alloc", move |l| {
            // SAFETY: this thread's caches, inside its section: no other borrow of the
            // vector is live (the collector reaches caches only through the registry, with
            // the world stopped), and this borrow ends with the closure.
            let caches = unsafe { &mut *l.caches.get() };
            let cache = crate::mcache::cache(self, caches);
            let (hdr, data) = self.malloc(cache, Plan::<T>::REQUEST)?;
            // A tiny block's count already holds this handle (`MCache::alloc_tiny`).
            if !tiny {
                let header = Header {
                    count: core::sync::atomic::AtomicU32::new(1),
                    gc_refs: core::sync::atomic::AtomicU32::new(0),
                    ty: core::sync::atomic::AtomicPtr::new((ty as *const Type).cast_mut()),
                };
                // SAFETY: `hdr` heads a slot the cache just handed out, sized for the header.
                unsafe { hdr.as_ptr().write(header) };
            }
            // SAFETY: `data` is valid for writes of a `T` (the slot's); `src` is the valid
            // `T` in `value`, which is never dropped (`ManuallyDrop`) nor given back once
            // this copy is made (the closure returns `Some`): moved, bit for bit.
            unsafe { core::ptr::copy_nonoverlapping(src, data.as_ptr().cast::<T>(), 1) };
            // SAFETY: the header now counts this handle, and `data` holds a valid `T`.
            Some(unsafe { Gc::from_raw(data.cast(), hdr.cast()) })
        });
        match placed {
            Some(g) => Ok(g),
            None => Err(ManuallyDrop::into_inner(value)),
        }
    }
}

/// Go's `findObject`: the heap object whose slot contains `addr`, as `(slot start, slot
/// size)` (the slot starts with fing's 16-byte header; the value follows). `None` for an
/// address outside every heap, in a free slot, or inside a header, except that the first
/// byte of a slot, one past the end of the previous slot, belongs to the previous object:
/// an address one past the end of an object maps to that object or to none, never to the
/// next one. A slot freed when its count reached zero counts as allocated until it is
/// reused or the next collection sweeps it (it waits in a thread's free list), and so does
/// a slot of garbage while a collection sweeps, until its span is swept.
pub fn find_object(addr: *const u8) -> Option<(NonNull<u8>, usize)> {
    // In a section: a span is freed only with the world stopped (`mgcsweep::end`).
    let _section = world::enter("fing::find_object");
    let (s, _, slot) = crate::mpagealloc::find_object(addr as usize)?;
    Some((NonNull::new(slot)?, s.elem_size))
}

/// The default heap, borrowed, for the `From` impls: no count is taken and given back per
/// allocation (the default heap is never retired; this `Heap` is never dropped).
fn default_ref() -> &'static Heap {
    static H: OnceLock<Heap> = OnceLock::new();
    H.get_or_init(Heap::default_heap)
}

/// `TypeBuilder::array(elem, n)` through a small per-thread cache: the intern table's hash
/// and shard lock cost an interpreter that allocates a frame per call 7 % of its time;
/// frames of one procedure share their length, so a direct-mapped cache of 64 entries
/// answers nearly every request with two compares.
fn array_type(elem: &'static Type, n: usize) -> &'static Type {
    type Entry = Cell<(usize, usize, Option<&'static Type>)>;
    std::thread_local! {
        static CACHE: [Entry; 64] = const { [const { Cell::new((0, 0, None)) }; 64] };
    }
    let key = elem as *const Type as usize;
    let i = (key >> 4 ^ n.wrapping_mul(0x9e37_79b9)) % 64;
    CACHE
        .try_with(|c| match c[i].get() {
            (k, len, Some(t)) if k == key && len == n => t,
            _ => {
                let t = gc_types::TypeBuilder::array(elem, n);
                c[i].set((key, n, Some(t)));
                t
            }
        })
        .unwrap_or_else(|_| gc_types::TypeBuilder::array(elem, n))
}

impl<T: Trace + Send + 'static> FromIterator<T> for Gc<[T]> {
    /// Collects into one object of the default heap ([`Heap::alloc_slice`]).
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Gc<[T]> {
        default_ref().alloc_slice(iter)
    }
}

impl<T: Trace + Send + 'static> From<Vec<T>> for Gc<[T]> {
    /// Moves the elements into one object of the default heap ([`Heap::alloc_slice`]).
    fn from(v: Vec<T>) -> Gc<[T]> {
        default_ref().alloc_slice(v)
    }
}

impl<T: Trace + Send + Clone + 'static> From<&[T]> for Gc<[T]> {
    /// Clones the elements into one object of the default heap ([`Heap::alloc_slice`]).
    fn from(s: &[T]) -> Gc<[T]> {
        default_ref().alloc_slice(s.iter().cloned())
    }
}

impl From<&str> for Gc<str> {
    /// Copies the string into the default heap ([`Heap::alloc_str`]).
    fn from(s: &str) -> Gc<str> {
        default_ref().alloc_str(s)
    }
}

impl From<String> for Gc<str> {
    /// Copies the string into the default heap ([`Heap::alloc_str`]).
    fn from(s: String) -> Gc<str> {
        default_ref().alloc_str(&s)
    }
}

/// Runs a full collection of the default heap, then of every retired heap that still
/// holds objects (a heap whose last `Heap` was dropped has no other way to be collected:
/// this is the process's `runtime.GC()`). See [`Heap::collect`].
pub fn collect() {
    default_inner().collect_and_destroy("fing::collect");
    MHeap::collect_retired("fing::collect");
}

/// The default heap's counters.
pub fn stats() -> MemStats {
    default_inner().stats()
}

/// An allocation that could not be made: the heap's limit (`HeapConfig::max_heap`) would
/// be passed even after a collection, or the OS refused memory. Holds the value, which
/// `into_inner` gives back.
pub struct AllocError<T> {
    value: T,
    ty: &'static Type,
    size: usize,
    limit: Option<usize>,
    in_use: usize,
}

impl<T> AllocError<T> {
    /// The value that was to be allocated.
    pub fn into_inner(self) -> T {
        self.value
    }

    /// The size of the value, in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The heap's limit, if that is what refused the allocation (`None`: the OS did).
    pub fn limit(&self) -> Option<usize> {
        self.limit
    }

    fn reason(&self) -> String {
        let (ty, size, in_use) = (self.ty, self.size, self.in_use);
        match self.limit {
            Some(limit) => format!(
                "cannot allocate a {ty} ({size} bytes): the heap's limit is {limit} bytes and {in_use} are in use after a collection"
            ),
            None => format!("cannot allocate a {ty} ({size} bytes): the OS refused memory ({in_use} bytes in use)"),
        }
    }
}

impl<T> core::fmt::Debug for AllocError<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AllocError")
            .field("ty", &self.ty.to_string())
            .field("size", &self.size)
            .field("limit", &self.limit)
            .field("in_use", &self.in_use)
            .finish_non_exhaustive()
    }
}

impl<T> core::fmt::Display for AllocError<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "fing::Heap::try_alloc: {}", self.reason())
    }
}

impl<T> std::error::Error for AllocError<T> {}

/// How a slice takes the world.
#[derive(Clone, Copy)]
pub(crate) enum Take {
    /// As `collect()` does: until it has it (fing's collector thread, which holds no
    /// section and which no thread waits for).
    Wait,
    /// Within this long, after any other collector's slice (an assist: bounded, since a
    /// thread holding a `GcCell` write guard may be waiting for this one).
    InTurn(Duration),
}

/// Hands a stop's doomed garbage to the drop thread, with the world still stopped: a
/// `collect()` whose stop comes after this one then finds the batch under its ticket
/// (taken after its own stop) and waits for it, so that when it returns every destructor
/// of garbage found before it has run and its slot is free. (Handed over after the world
/// resumed, a batch could reach the drop thread after such a `collect()` took its ticket.)
fn later(out: &mut crate::mgc::Outcome) {
    crate::mdrop::destroy_later(core::mem::take(&mut out.doomed));
}
