//! Roots and marking (Go's mgcmark), in steps that a cycle may spread over slices with
//! the world running between them (`mgc`).
//!
//! Roots are found by trial subtraction. Outside a cycle every object's scratch `gc_refs`
//! is zero. Then:
//!
//! 1. [`count_refs`]: trace every unmarked object of the snapshot's spans once; each
//!    handle found adds one to its target's `gc_refs`, so that `gc_refs` counts the
//!    references from inside the heap. (Weak cells add theirs: `weak::before_mark`.)
//! 2. [`scan_roots`]: an object whose handle `count` is not its `gc_refs` is referenced
//!    from outside the heap: a root, marked and pushed.
//! 3. [`drain`]: follow edges from the marked objects with an explicit stack (no
//!    recursion: a list of a million nodes marks in constant stack), marking what they
//!    reach; then [`markfin`], Go's: what an unmarked finalizable object reaches is
//!    marked, but not the object (resurrected afterwards, in mfinal); and the ephemeron
//!    fixpoint (weak).
//! 4. [`mark_doomed`], after resurrection: garbage whose destructor runs user code is
//!    marked, with what it reaches, for its destructor (mdrop).
//!
//! Then mgcsweep's release gives back the counts that garbage holds on live objects, and
//! zeroes every scratch count again.
//!
//! # Why marking between slices is sound
//!
//! This is snapshot-at-the-beginning marking (Yuasa), with the roots of the snapshot
//! recovered from counts. The snapshot is the heap when the cycle begins (world stopped):
//! an object reachable then, from a handle outside the heap, must stay marked; an object
//! allocated since is black (marked at allocation). Mutators run between slices, and
//! keep that true through the barriers of `mgcwork`:
//!
//! - Heap edges change only in `GcCell`s (fields outside cells are written once, at
//!   allocation) and built objects (`reflect::set_field`). A cell's first mutable borrow
//!   in a cycle shades what it held (so every snapshot edge that a write could remove is
//!   marked) and stamps the cell; counting skips stamped cells, so an edge a mutator may
//!   have moved is never counted as held inside the heap. A cell counted before its first
//!   borrow was counted with its snapshot contents, which the barrier then shades.
//! - Counts change through clones (only raise a count: more roots) and drops. A drop that
//!   leaves a count above zero shades the object: the deletion barrier on every handle,
//!   inside or outside the heap. So an object whose count falls to its `gc_refs` after
//!   counting, and would not look like a root, is marked anyway. A drop to zero frees the
//!   object: nothing referred to it.
//! - Counting skips marked objects (shaded or black): their edges are not counted, which
//!   only makes their targets look referenced from outside (kept); marked objects are
//!   traced anyway. (It must: a black object is never scanned, and an edge it holds may be
//!   the only reference to an object the snapshot reached from a handle since moved into
//!   it.) Their cells are still visited, to be stamped (below).
//!
//! # Cell stamps
//!
//! A cell's stamp says "mutated in the cycle of this epoch" (the heap's cycles mod 3) or
//! `NO_EPOCH`. Counting skips a cell stamped with its own cycle's epoch, and stamps every
//! other cell it visits `NO_EPOCH`, marked objects' too: so every count that completes
//! leaves no stamp older than its own cycle, and a later cycle never meets a stale stamp
//! equal to its epoch (which would hide the cell's edges from the count: garbage kept a
//! cycle). A cycle abandoned part way (`collect()` while its heap's cycle marks) is
//! followed at once by a full cycle, whose count completes. Found by the model test: a
//! cell counted in one cycle and skipped (its object shaded first) in the next kept a
//! self-loop alive through the third's `collect()`.
//! - A root is an object with `count != gc_refs`, not `count > gc_refs`: counting may see
//!   an edge that a holder freed at zero later takes back, leaving the count below.
//! - A weak upgrade shades what it hands out; cells of unmarked objects are cleared only
//!   once marking is over, with the world stopped.
//! - Marking is over when, in one stop, the mark stack and every thread's grey list are
//!   empty and the ephemeron fixpoint finds nothing new; the barriers then stop shading.
//!
//! A `Trace` impl that under-reports (forgets a handle) only makes its target look
//! referenced from outside: a root, kept. One that over-reports (a handle it does not own,
//! or one twice) can make `gc_refs` equal `count` for an object that is referenced from
//! outside, and so free a live object: that is why `Trace` is an `unsafe trait`
//! (`gc_types::trace`).
//!
//! Edges are found by pointer mask where the type has one (a loop over the mask's bits, no
//! call), else by the type's trace function; both decode handle words with
//! `gc_types::word::object_of`, which gives nothing for handles outside every heap. Edges
//! into other heaps lie in no arena of this heap and are skipped (a handle into another
//! heap is an outside reference for that heap).
//!
//! Every step here takes a [`Budget`]: the time it may run before it returns to let the
//! world resume, with a cursor that says where to go on.
//!
//! # Two threads in a stop
//!
//! Over a large heap, [`count_refs`] and [`drain`] run on the collector's thread and a
//! second one at once (`mgchelp`: its helper thread, or in a slice a mutator waiting out
//! the stop): the stopped mutators leave a core idle. In a slice both stop at its
//! deadline: counting claims spans a few at a time, in order, and the cursor moves past
//! the ones claimed, each counted whole; marking empties its pipeline, and the second
//! thread puts its stack back for the next slice. What makes it sound is what each pass
//! writes. Counting
//! writes scratch counts (both threads may count edges into one object: `fetch_add`) and
//! the cell stamps of the objects it visits (each object is in one thread's chunk of
//! spans). Marking writes mark bits (two threads may set bits of one word: `fetch_or`,
//! and the thread whose `fetch_or` set a bit is the one that scans the object) and its
//! own stack, which holds marked objects only (markfin scans its unmarked objects itself,
//! rather than pushing them, which could let the other thread mark and scan one at the
//! same time). `Trace` impls run on both threads, each on
//! its own objects: a `Trace` type is `Send` (objects are), which is what running its
//! impl on another thread than the one that made the object asks; `Sync` is not needed,
//! since no object is traced by two threads at once. A panic on either thread stops the
//! other at its next object, and is resumed on the collector's thread once both are done
//! (the cycle is then abandoned as for any `Trace` panic), with the type of the panic
//! resumed in the report (`Failed`).

use core::cell::Cell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::time::Instant;

use gc_types::{PtrMask, Tracer, Type};

use crate::mgcwork::MarkStack;
use crate::mheap::MHeap;
use crate::mpagealloc::{arena_of_cached, span_of, Arena};
use crate::mspan::{Span, SpanPtr};
use crate::sizeclasses::PAGE_SIZE;
use crate::slot::{data_offset, header, Doomed};

/// How long a step may run: until a deadline, or without end (`collect()`).
pub(crate) struct Budget {
    deadline: Option<Instant>,
    /// Units of work between looks at the clock.
    every: u32,
    n: u32,
    spent: bool,
}

impl Budget {
    /// No limit: a whole cycle in one stop.
    pub(crate) fn unlimited() -> Budget {
        Budget {
            deadline: None,
            every: u32::MAX,
            n: 0,
            spent: false,
        }
    }

    /// Until `deadline`. One already past gives the least step there is: one unit of
    /// work (an object popped, a span visited) per step.
    pub(crate) fn until(deadline: Instant) -> Budget {
        let past = Instant::now() >= deadline;
        Budget {
            deadline: Some(deadline),
            every: if past { 1 } else { 64 },
            n: 0,
            spent: false,
        }
    }

    /// `units` of work were done: is there time left for more?
    #[inline]
    pub(crate) fn go_on(&mut self, units: u32) -> bool {
        if self.spent {
            return false;
        }
        self.n = self.n.saturating_add(units);
        if self.n >= self.every {
            self.n = 0;
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                self.spent = true;
            }
        }
        !self.spent
    }

    /// The deadline, if any.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The time is up (a shared pass found it so).
    pub(crate) fn run_out(&mut self) {
        self.spent = true;
    }

    /// Has the time run out?
    pub(crate) fn spent(&self) -> bool {
        self.spent
    }
}

/// Calls `f` with every handle target of the object at `slot`.
///
/// # Safety
/// `slot` must be the start of an allocated object slot, with the world stopped.
#[inline]
pub(crate) unsafe fn for_each_edge(slot: *mut u8, t: &mut Tracer, mut f: impl FnMut(NonNull<u8>)) {
    // SAFETY: the caller's contract.
    let ty = unsafe { header(slot) }.ty.load(Ordering::Relaxed);
    if ty.is_null() {
        return;
    }
    // SAFETY: a non-null header type is the `&'static Type` malloc stored.
    let ty: &'static Type = unsafe { &*ty };
    if ty.is_noscan() {
        return;
    }
    let data = slot.wrapping_add(data_offset(ty.align()));
    if let PtrMask::Small(mut m) = ty.ptrmask() {
        while m != 0 {
            let i = m.trailing_zeros() as usize;
            m &= m - 1;
            let word = data.cast::<*const u8>().wrapping_add(i);
            // SAFETY: mask words lie inside the value, which is not mutated while the world
            // is stopped.
            let w = unsafe { word.read() };
            // SAFETY: a mask word holds null or a handle word (the descriptor's invariant).
            if let Some(e) = unsafe { gc_types::word::object_of(w) } {
                f(e);
            }
        }
        return;
    }
    // For the report if this user code panics (this thread's: the collector's helper
    // traces too).
    TRACING.with(|t| t.set(ty));
    // SAFETY: the value at `data` is a valid value of `ty` (written at allocation, alive
    // until swept), and nothing mutates it while the world is stopped.
    unsafe { ty.trace_value(data, t) };
    while let Some(e) = t.pop() {
        f(e);
    }
}

thread_local! {
    /// The type whose `Trace` impl ran last on this thread (see `for_each_edge`; a shared
    /// count puts the one that panicked here: `count_refs`).
    static TRACING: Cell<*const Type> = const { Cell::new(core::ptr::null()) };
}

/// The type whose `Trace` impl ran last on this thread: after a panic in tracing, the one
/// that panicked.
pub(crate) fn tracing_type() -> Option<&'static Type> {
    // SAFETY: TRACING is null or a `&'static Type` (set in `for_each_edge`, or from what
    // `for_each_edge` set on the helper's thread).
    unsafe { TRACING.with(Cell::get).as_ref() }
}

/// Undoes an interrupted cycle (a `Trace` impl panicked, or `collect()` starts afresh
/// while this heap's cycle marks): every scratch count back to zero and every mark bit
/// clear, over `spans` (all the heap's spans), the state outside a cycle. Nothing was
/// freed or released yet. Collector only, world stopped.
pub(crate) fn abandon(spans: &[SpanPtr]) {
    for s in spans {
        let s = s.get();
        s.for_each_allocated(|i| {
            // SAFETY: `i` is allocated.
            unsafe { header(s.slot(i)) }
                .gc_refs
                .store(0, Ordering::Relaxed);
        });
        s.clear_marks();
    }
}

/// Step 1, from span `*cursor` of the snapshot on: counts the references from inside the
/// heap into `gc_refs` (module docs). Returns whether it is done.
///
/// A count over more than `SHARED_SPANS` spans is shared with a second thread
/// (`mgchelp`): both threads claim chunks of `SHARED_CHUNK` spans (`SLICE_CHUNK` in a
/// slice, until its deadline) from one counter, and add to scratch counts with
/// `fetch_add` (two threads may count edges into one object), where one thread alone
/// adds with a plain load and store (module docs, "Two threads in a stop"). If no second
/// thread takes the job in time, the caller does it all and takes it back
/// (`mgchelp::Helper::share`).
pub(crate) fn count_refs(
    heap: &MHeap,
    spans: &[SpanPtr],
    cursor: &mut usize,
    budget: &mut Budget,
) -> bool {
    if (spans.len() > SHARED_SPANS || always_share()) && crate::mgchelp::available() {
        // In a slice, each thread claims smaller chunks, and none once the slice's time is
        // up (after its first: every step makes progress).
        let (deadline, size) = match budget.deadline() {
            Some(d) => (Some(d), SLICE_CHUNK),
            None => (None, SHARED_CHUNK),
        };
        let next = AtomicUsize::new(*cursor);
        let caller = std::thread::current().id();
        share(
            &|| {
                // The caller claims one chunk whatever the time (every step makes
                // progress); the other thread, none past the deadline.
                let mut claimed = std::thread::current().id() != caller;
                loop {
                    if claimed && deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    let from = next.fetch_add(size, Ordering::Relaxed);
                    let Some(chunk) = spans.get(from..(from + size).min(spans.len())) else {
                        break;
                    };
                    claimed = true;
                    count_chunk::<true>(heap, chunk, &mut 0, &mut Budget::unlimited());
                }
            },
            // The other thread stops at its next claim.
            &|| next.store(usize::MAX / 2, Ordering::Relaxed),
            deadline.is_some(),
        );
        // Chunks are claimed in order, and each claimed one was counted whole.
        *cursor = next.load(Ordering::Relaxed).min(spans.len());
        if *cursor < spans.len() {
            budget.run_out();
        }
        return *cursor >= spans.len();
    }
    count_chunk::<false>(heap, spans, cursor, budget)
}

/// Runs `work` on this thread and on a second one at once (`mgchelp::run_shared`; `short`:
/// a slice's pass, which a mutator waiting out the stop may take). A `Trace` panic in
/// either's part calls `stop` (the other ends its part soon: the cycle is abandoned) and
/// is resumed here once both are done, with `tracing_type` naming the type of the panic
/// resumed.
fn share(work: &(dyn Fn() + Sync), stop: &(dyn Fn() + Sync), short: bool) {
    let failed = Failed::new();
    if let Err(p) = catch_unwind(AssertUnwindSafe(|| {
        crate::mgchelp::run_shared(
            &|| {
                if let Err(p) = catch_unwind(AssertUnwindSafe(work)) {
                    failed.record();
                    stop();
                    resume_unwind(p);
                }
            },
            short,
        )
    })) {
        TRACING.with(|t| t.set(failed.resumed()));
        resume_unwind(p);
    }
}

/// The types whose `Trace` impls panicked in a shared pass, on the calling thread and on
/// the helper: `mgchelp::run_shared` resumes the caller's panic if it had one, else the
/// helper's, and `tracing_type` must name the type of that one.
struct Failed {
    caller: std::thread::ThreadId,
    mine: AtomicPtr<Type>,
    theirs: AtomicPtr<Type>,
}

impl Failed {
    fn new() -> Failed {
        Failed {
            caller: std::thread::current().id(),
            mine: AtomicPtr::new(core::ptr::null_mut()),
            theirs: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// On the thread whose pass panicked: records the type it was tracing.
    fn record(&self) {
        let ty = TRACING.with(Cell::get).cast_mut();
        let at = if std::thread::current().id() == self.caller {
            &self.mine
        } else {
            &self.theirs
        };
        at.store(ty, Ordering::Relaxed);
    }

    /// The type of the panic `run_shared` resumes: this thread's, else the helper's.
    fn resumed(&self) -> *const Type {
        let mine = self.mine.load(Ordering::Relaxed);
        if mine.is_null() {
            self.theirs.load(Ordering::Relaxed)
        } else {
            mine
        }
    }
}

/// `FING_DEBUG=sharedmark`: every count and mark (in a whole cycle's stop or a slice's) is
/// shared with a second thread, whatever the heap's size (for the tests, whose heaps are
/// small: the model test runs with it in `.ci/deep`). Read once.
fn always_share() -> bool {
    static ALWAYS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ALWAYS.get_or_init(|| crate::mheap::env_lists("FING_DEBUG", "sharedmark"))
}

/// Spans of a snapshot over which a count is shared (4 MB of small-object spans, a count
/// of a few milliseconds): below it the hand-off (tens of microseconds when the helper
/// thread has to wake) is a large part of the gain.
const SHARED_SPANS: usize = 512;

/// Spans claimed at a time by each thread of a shared count: small enough that the two end
/// close together, large enough that the counter they share is rarely touched.
const SHARED_CHUNK: usize = 16;

/// The spans claimed at a time in a slice's shared count: a chunk is counted whole, so
/// it is what a slice may run over its deadline (a span counts in about 2 µs).
const SLICE_CHUNK: usize = 4;

/// `count_refs` over `spans` from `*cursor`, on this thread; `SHARED`: another thread
/// counts other spans of the same heap at the same time (`count_refs`).
fn count_chunk<const SHARED: bool>(
    heap: &MHeap,
    spans: &[SpanPtr],
    cursor: &mut usize,
    budget: &mut Budget,
) -> bool {
    let _counting = crate::mgcwork::Counting::start();
    let mut t = Tracer::new();
    // Edges usually land in the arena of the last one: remember its address range.
    let mut last: Option<&'static Arena> = None;
    // Edges found and prefetched, counted `COUNT_AHEAD` edges later (all of them before
    // this step returns: a count is whole for every span the cursor has passed).
    let mut ahead = Ring::<NonNull<u8>, COUNT_AHEAD>::new();
    let mut last_page = usize::MAX;
    let mut count = |e: *mut u8| {
        if arena_of_cached(e as usize, &mut last).is_some_and(|a| a.heap_id == heap.id) {
            // SAFETY: edges into this heap are headers of its live objects.
            let h = unsafe { header(e) };
            if SHARED {
                h.gc_refs.fetch_add(1, Ordering::Relaxed);
            } else {
                h.gc_refs.store(
                    h.gc_refs.load(Ordering::Relaxed).wrapping_add(1),
                    Ordering::Relaxed,
                );
            }
        }
    };
    while let Some(s) = spans.get(*cursor).map(|s| s.get()) {
        *cursor += 1;
        if s.spc.noscan() {
            // A span passed over is a unit too: a run of them is a run of cache misses.
            if !budget.go_on(1) {
                break;
            }
            continue;
        }
        let mut n = 0;
        s.for_each_allocated(|i| {
            n += 1;
            if s.is_marked(i) {
                // Not counted (above), but its cells are stamped.
                // SAFETY: `i` is allocated and the world is stopped.
                unsafe { for_each_edge(s.slot(i), &mut t, |_| {}) };
                return;
            }
            let edge = |e: NonNull<u8>| {
                // An edge into the page of the edge before is counted at once (a heap in
                // allocation order: its header is likely in the cache already).
                let page = e.as_ptr() as usize / PAGE_SIZE;
                if page == core::mem::replace(&mut last_page, page) {
                    count(e.as_ptr());
                    return;
                }
                // Any address may be prefetched: the edge is checked when it is counted.
                crate::mem::prefetch(e.as_ptr());
                if let Some(old) = ahead.push(e) {
                    count(old.as_ptr());
                }
            };
            // SAFETY: `i` is allocated and the world is stopped.
            unsafe { for_each_edge(s.slot(i), &mut t, edge) };
        });
        if !budget.go_on(n.max(1)) {
            break;
        }
    }
    while let Some(e) = ahead.pop() {
        count(e.as_ptr());
    }
    *cursor >= spans.len()
}

/// How long the mark stack may grow while roots are found before they are traced.
const ROOTS_STACK: usize = 1 << 14;

/// Step 2, from span `*cursor` on: marks the roots (module docs) and pushes them on
/// `stack`, tracing it whenever it holds `ROOTS_STACK`. Returns whether it is done.
pub(crate) fn scan_roots(
    heap: &MHeap,
    spans: &[SpanPtr],
    cursor: &mut usize,
    stack: &mut MarkStack,
    budget: &mut Budget,
) -> bool {
    let dying = (&crate::slot::DYING as *const Type).cast_mut();
    loop {
        // Roots are traced as they are found once the stack is long: a heap whose objects
        // are all roots (an interpreter's values held in a Rust `Vec`) would otherwise
        // push them all first, and the stack's growth (a copy and fresh pages at each
        // doubling: 60 ms for 5 M roots) would fall inside one step.
        if stack.len() >= ROOTS_STACK && !drain(heap, stack, budget) {
            return false;
        }
        let Some(s) = spans.get(*cursor).map(|s| s.get()) else {
            break;
        };
        *cursor += 1;
        let noscan = s.spc.noscan();
        let mut n = 0;
        s.for_each_allocated(|i| {
            n += 1;
            // SAFETY: `i` is allocated.
            let h = unsafe { header(s.slot(i)) };
            // A root: referenced from outside the heap, or doomed by an earlier cycle or a
            // mutator and still being destroyed (its slot stays; its value is not read).
            let root = h.count.load(Ordering::Relaxed) != h.gc_refs.load(Ordering::Relaxed)
                || h.ty.load(Ordering::Relaxed) == dying;
            if root && s.mark(i) && !noscan {
                stack.push(s.slot(i));
            }
        });
        if !budget.go_on(n) {
            break;
        }
    }
    *cursor >= spans.len()
}

/// Marks the objects `objs` (headers of this heap's objects: ephemeron values, far cells,
/// `weak`) and pushes those newly marked that can hold handles on `stack`, for `drain`.
pub(crate) fn mark_objects(objs: &[NonNull<u8>], stack: &mut MarkStack) {
    for o in objs {
        let Some(s) = span_of(o.as_ptr() as usize) else {
            continue;
        };
        let i = s.index_of(o.as_ptr() as usize);
        if s.mark(i) && !s.spc.noscan() {
            stack.push(s.slot(i));
        }
    }
}

/// Go's markfin, from `*cursor` on: each object with finalizers that is still unmarked
/// has what it points to marked, but is not marked itself (if it stays unmarked, it is
/// resurrected and its finalizers queued: mfinal). Two passes, one cursor: first the
/// snapshot's spans (`*cursor` below `spans.len()`) are walked and every such object is
/// listed in `fin_scanned` (for `check_fin_cycles` too), under each span's record lock;
/// then the listed objects are scanned, with no lock held (a `Trace` impl is user code),
/// as Go's `markrootSpans` scans them: their targets are marked and pushed on `stack`. So
/// the stack holds marked objects only, which a shared drain needs (an unmarked object on
/// it could be marked through another edge and scanned by both threads at once); and the
/// list is made before any scan, so which objects are listed does not depend on the
/// order of the scans. The stack is drained as it grows past `ROOTS_STACK`, as
/// `scan_roots` drains it. Noscan spans are skipped without reading their records: their
/// objects point nowhere. Returns whether it is done.
pub(crate) fn markfin(
    heap: &MHeap,
    spans: &[SpanPtr],
    cursor: &mut usize,
    stack: &mut MarkStack,
    fin_scanned: &mut Vec<NonNull<u8>>,
    budget: &mut Budget,
) -> bool {
    while let Some(s) = spans.get(*cursor).map(|s| s.get()) {
        *cursor += 1;
        if s.spc.noscan() || !s.has_specials() {
            if !budget.go_on(1) {
                return false;
            }
            continue;
        }
        let mut n = 1;
        for r in s.specials.lock().iter() {
            n += 1;
            let obj = r.object(s);
            let i = s.index_of(obj.as_ptr() as usize);
            // Records are sorted by address: a tiny block's several are adjacent.
            if s.is_marked(i) || fin_scanned.last() == Some(&obj) {
                continue;
            }
            fin_scanned.push(obj);
        }
        if !budget.go_on(n) {
            return false;
        }
    }
    let mut t = Tracer::new();
    let mut m = Marker::<false>::new(heap.id);
    while let Some(&obj) = fin_scanned.get(*cursor - spans.len()) {
        if stack.len() >= ROOTS_STACK {
            m.flush(stack);
            if !drain(heap, stack, budget) {
                break;
            }
        }
        *cursor += 1;
        // SAFETY: a listed object's slot is allocated, as a pushed one is in `drain` (a
        // slot is freed only by the sweep, after marking; at worst its object was freed at
        // count zero since, `FREED`, with no edges), and the world is stopped.
        unsafe { for_each_edge(obj.as_ptr(), &mut t, |e| m.edge(e, stack)) };
        if !budget.go_on(1) {
            break;
        }
    }
    // Nothing left in flight: what this step's scans reach is marked and pushed.
    m.flush(stack);
    *cursor - spans.len() >= fin_scanned.len()
}

/// Go's checkfinalizers, once marking is over: a finalizable object that the finalizer
/// scan itself marked is reachable from some finalizable object; reports it if that object
/// is itself. Returns how many it found. Debug only (`check_finalizers`).
pub(crate) fn check_fin_cycles(heap: &MHeap, fin_scanned: &[NonNull<u8>]) -> u64 {
    let mut t = Tracer::new();
    let mut found = 0;
    for &obj in fin_scanned {
        let Some(s) = span_of(obj.as_ptr() as usize) else {
            continue;
        };
        if s.is_marked(s.index_of(obj.as_ptr() as usize)) && reaches_itself(heap, obj, &mut t) {
            found += 1;
            // SAFETY: a record's object is allocated.
            let ty = unsafe { header(obj.as_ptr()) }.ty.load(Ordering::Relaxed);
            // SAFETY: a header's type is null or a `&'static Type`.
            let ty = unsafe { ty.as_ref() };
            eprintln!(
                "fing: checkfinalizers: a {} at {:p} with a finalizer reaches itself through \
                 the heap: its finalizer will never run and it will never be freed",
                ty.map_or_else(|| "tiny block".to_string(), |t| t.to_string()),
                obj
            );
        }
    }
    found
}

/// Step 4, after resurrection, from span `*cursor` on: garbage whose destructor runs user
/// code (mdrop). Each such object still unmarked, and without finalizer records (those
/// were just resurrected), is marked and listed in `doomed`; `plain` is set if any other
/// garbage is left (unmarked objects this step does not doom). Then the caller marks what
/// the doomed reach (`push_doomed` and `drain`), so that this cycle frees nothing their
/// destructors can touch, and the counts their handles hold stay for those destructors to
/// drop; unless no other garbage is left, when that trace could mark nothing (garbage
/// whose every object has a user-code destructor: the trace was half of this step).
/// Garbage whose drop only frees is not doomed (`runs_user_code`): the release step drops
/// it. After resurrection, so that a finalizable object reachable only from such
/// garbage is queued in this cycle, as Go queues it (to Go, the holder is plain garbage):
/// reaching it here only keeps it allocated, already marked. Nothing turns unmarked
/// between slices (marking is over and allocation black), so `plain` holds across them.
/// Once that is done, the caller dooms the listed objects. Returns whether it is done.
pub(crate) fn mark_doomed(
    spans: &[SpanPtr],
    cursor: &mut usize,
    doomed: &mut Vec<Doomed>,
    plain: &mut bool,
    budget: &mut Budget,
) -> bool {
    let mut with_records = Vec::new();
    while let Some(s) = spans.get(*cursor).map(|s| s.get()) {
        *cursor += 1;
        if !s.needs_sweep_drop() {
            // No object here runs user code: what is unmarked is plain garbage, or a slot
            // freed at count zero.
            let mut n = 1;
            if !*plain && s.any_unmarked() {
                s.for_each_allocated(|i| {
                    n += 1;
                    *plain = *plain || (!s.is_marked(i) && !is_freed(s, i));
                });
            }
            if !budget.go_on(n) {
                break;
            }
            continue;
        }
        // Objects with finalizer records are resurrected instead (in noscan spans too,
        // which markfin skips). Records are sorted by address, so these indices are too.
        with_records.clear();
        if s.has_specials() {
            with_records.extend(s.specials.lock().iter().map(|r| s.index_of(r.ptr as usize)));
        }
        let mut n = 0;
        s.for_each_allocated(|i| {
            n += 1;
            if s.is_marked(i) {
                return;
            }
            if with_records.binary_search(&i).is_ok() {
                *plain = true;
                return;
            }
            let slot = s.slot(i);
            // SAFETY: `i` is allocated.
            let h = unsafe { header(slot) };
            // SAFETY: a header's type is null (a tiny block) or a `&'static Type`.
            let Some(ty) = (unsafe { h.ty.load(Ordering::Relaxed).as_ref() }) else {
                *plain = true;
                return;
            };
            if !crate::slot::runs_user_code(ty) {
                // A slot freed at count zero (on a free list since before the cycle) is
                // no object: nothing reaches it, and it reaches nothing.
                *plain = *plain || !core::ptr::eq(ty, &crate::slot::FREED);
                return;
            }
            s.mark(i);
            doomed.push(Doomed {
                obj: NonNull::new(slot).expect("fing::mark: a slot at null"),
                ty,
            });
        });
        if !budget.go_on(n) {
            break;
        }
    }
    *cursor >= spans.len()
}

/// Is slot `i` of `s` (allocated) one freed at count zero?
fn is_freed(s: &Span, i: usize) -> bool {
    // SAFETY: `i` is allocated: its header is initialised.
    let ty = unsafe { header(s.slot(i)) }.ty.load(Ordering::Relaxed);
    core::ptr::eq(ty, &crate::slot::FREED)
}

/// Pushes the doomed objects that can hold handles on `stack`, for `drain` to mark what
/// they reach (`mark_doomed`).
pub(crate) fn push_doomed(doomed: &[Doomed], stack: &mut MarkStack) {
    stack.extend(
        doomed
            .iter()
            .filter(|d| !d.ty.is_noscan())
            .map(|d| d.obj.as_ptr()),
    );
}

/// Is `obj` reachable from its own fields? (A search with its own visited set; debug only.)
fn reaches_itself(heap: &MHeap, obj: NonNull<u8>, t: &mut Tracer) -> bool {
    search(heap, vec![obj.as_ptr()], obj, t)
}

/// Is `target` one of `starts` (headers of objects of this heap), or reachable from them?
/// (Debug only: `check_finalizers`' check of cleanups' arguments.) World stopped.
pub(crate) fn reaches(heap: &MHeap, starts: &[NonNull<u8>], target: NonNull<u8>) -> bool {
    starts.contains(&target)
        || search(
            heap,
            starts.iter().map(|s| s.as_ptr()).collect(),
            target,
            &mut Tracer::new(),
        )
}

/// Is `target` an edge of an object reachable from the objects in `todo` (scanned in
/// turn, each once)?
fn search(heap: &MHeap, mut todo: Vec<*mut u8>, target: NonNull<u8>, t: &mut Tracer) -> bool {
    let mut seen = std::collections::HashSet::new();
    while let Some(slot) = todo.pop() {
        let mut hit = false;
        // SAFETY: only allocated objects are pushed (edges into this heap, or the
        // caller's); world stopped.
        unsafe {
            for_each_edge(slot, t, |e| {
                let Some(s) = span_of(e.as_ptr() as usize) else {
                    return;
                };
                if s.heap_id != heap.id {
                    return;
                }
                if e == target {
                    hit = true;
                } else if seen.insert(e.as_ptr()) && !s.spc.noscan() {
                    todo.push(e.as_ptr());
                }
            })
        };
        if hit {
            return true;
        }
    }
    false
}

/// How many edges `drain` has in flight between finding one and reading its span (whose
/// lines are prefetched), and between that and setting its mark bit (whose word, and the
/// target's slot, are).
const EDGE_AHEAD: usize = 16;

/// How many edges `count_refs` has in flight: found, their targets' headers prefetched,
/// not yet counted (each count is a write to a header anywhere in the heap).
const COUNT_AHEAD: usize = 16;

/// Traces the stack's objects until it is empty or the budget is spent: each edge into
/// this heap marks its target, and a newly marked one that can hold handles is pushed.
/// Returns whether the stack is empty.
///
/// # Prefetching
///
/// On a heap larger than the cache whose edges go anywhere (one that mutators have
/// relinked for a while), marking waits on memory: each edge is a miss on its span (where
/// the mark bitmap's address is), then on the bitmap's word, and each object scanned one
/// more on its slot. Taken one after the other these cost 250 ns an object on the latency
/// example's 256 MB. So an edge that leaves the page of the edge before goes through a
/// pipeline whose stages are `EDGE_AHEAD` entries apart, each prefetching what the next
/// reads (after Cher, Hosking and Vijaykumar, "Software prefetching for mark-sweep garbage
/// collection", ASPLOS 2004):
///
/// 1. checked against its arena (one of a few, cached), it waits with its span's lines
///    prefetched;
/// 2. then its slot index is found, and it waits with its mark word and its slot
///    prefetched;
/// 3. then it is marked, and pushed if newly marked and it can hold handles; popped, its
///    slot is in the cache.
///
/// An edge into the page of the edge before is marked at once, and so is every edge of an
/// object popped with the stack then empty (a list: each scan finds the next object only,
/// and a pipeline would hide nothing). That keeps the stack's order where the heap lies
/// in allocation order (binary-trees' trees, built depth first, are marked in address
/// order: the hardware's own prefetcher follows, and a FIFO in front of the scan made
/// their marking about twice as slow). Any order marks the same set: every object is marked
/// before it is pushed, and scanned once. The pipeline is emptied before this returns, so
/// a slice ends with all its edges marked. A `Trace` panic loses what is in flight, but
/// the cycle is abandoned then (`mgc`), its marks cleared.
pub(crate) fn drain(heap: &MHeap, stack: &mut MarkStack, budget: &mut Budget) -> bool {
    let share = (heap.heap_live.load(Ordering::Relaxed) >= SHARED_HEAP || always_share())
        && crate::mgchelp::available();
    let mut t = Tracer::new();
    let mut m = Marker::<false>::new(heap.id);
    loop {
        if share && stack.len() >= 2 {
            // Two objects to scan: one for each thread (a tree's stack is as deep as the
            // tree, and its bottom entries are its largest subtrees).
            m.flush(stack);
            drain_shared(heap, stack, budget.deadline());
            if !stack.is_empty() {
                budget.run_out();
            }
            return stack.is_empty();
        }
        let Some(slot) = stack.pop() else {
            // Nothing left to scan: what the edges in flight mark is.
            if m.is_idle() {
                break;
            }
            m.flush(stack);
            continue;
        };
        m.direct = stack.is_empty() && m.is_idle();
        // SAFETY: only allocated slots are pushed (marked ones, and grey objects, also
        // marked, whose slots stay allocated until the cycle ends:
        // at worst freed at count zero, `FREED`, with no edges); the world is stopped.
        unsafe { for_each_edge(slot, &mut t, |e| m.edge(e, stack)) };
        if !budget.go_on(1) {
            break;
        }
    }
    m.flush(stack);
    stack.is_empty()
}

/// A heap with this many bytes allocated is marked by two threads, in a whole cycle's
/// stop and in a slice's: this one and a second taker (`mgchelp`). Its marking takes
/// milliseconds a cycle.
const SHARED_HEAP: usize = 4 << 20;

/// The most objects handed between the two threads of a shared drain at a time.
const SHARED_BATCH: usize = 512;

/// `drain` on this thread and a second one (see `SHARED_HEAP`) to the end, or (a slice)
/// to `deadline`: each marks with atomic mark bits (`Span::mark_shared`: the two may mark
/// objects of one bitmap word) from a stack of its own; a thread with nothing left takes
/// a batch from the pool, and while one waits there, the other gives it batches off its
/// stack. Marking is over when every thread that took part waits at an empty pool (a
/// thread that never started counts for nothing: it has no objects to give). At the
/// deadline each thread empties its pipeline and leaves: this one keeps its stack (in a
/// slice it works on `stack` itself), the other puts its own into the pool, and what the
/// pool holds goes back onto `stack` (empty if marking is over).
fn drain_shared(heap: &MHeap, stack: &mut MarkStack, deadline: Option<Instant>) {
    let pool = Pool {
        state: std::sync::Mutex::new(PoolState::default()),
        more: std::sync::Condvar::new(),
        hungry: core::sync::atomic::AtomicBool::new(false),
        abort: core::sync::atomic::AtomicBool::new(false),
        timeup: core::sync::atomic::AtomicBool::new(false),
        deadline,
    };
    // To the end: the whole stack goes into the pool, a batch at a time, for both threads
    // to take from (a tree's roots spread at once: binary-trees' largest pause was 15 %
    // longer when one batch went over first and the rest only as the other asked). In a
    // slice, the other thread starts on one batch off the bottom, and this one works on
    // `stack` itself: it may hold millions of entries, and moving them into the pool and
    // back cost each slice two milliseconds.
    let spread = deadline.is_none();
    {
        let mut st = pool.lock();
        loop {
            let n = if spread { stack.len() } else { stack.len() / 2 };
            st.batches.push(stack.take_bottom(n.min(SHARED_BATCH)));
            if !spread || stack.is_empty() {
                break;
            }
        }
    }
    let caller = std::thread::current().id();
    let own = CallerStack(stack as *mut MarkStack);
    share(
        &|| {
            pool.lock().started += 1;
            if !spread && std::thread::current().id() == caller {
                // SAFETY: only the caller's thread reaches here (its id), and `stack` is
                // borrowed by this function until `share` returns.
                drain_worker(heap, &pool, unsafe { &mut *own.get() }, true);
            } else {
                drain_worker(heap, &pool, &mut MarkStack::default(), false);
            }
        },
        // The other thread stops at its next object, or leaves the pool it waits at.
        &|| {
            pool.abort.store(true, Ordering::Relaxed);
            pool.lock().idle += 1;
            pool.more.notify_all();
        },
        deadline.is_some(),
    );
    // Both threads have left: what the other had left to scan (after a deadline) is in
    // the pool.
    for b in pool.lock().batches.drain(..) {
        stack.extend(b.into_iter().map(|a| a as *mut u8));
    }
}

/// The caller's stack in `drain_shared`, reached only from the caller's thread.
struct CallerStack(*mut MarkStack);

// SAFETY: the pointer is dereferenced only on the thread that made it (`drain_shared`
// compares thread ids), while the borrow it came from lives.
unsafe impl Sync for CallerStack {}

impl CallerStack {
    /// The pointer (a method, so that a closure captures the whole wrapper, not its field).
    fn get(&self) -> *mut MarkStack {
        self.0
    }
}

/// Objects a thread of a shared drain scans between two looks at the clock.
const SHARED_CLOCK_EVERY: u32 = 64;

/// One thread's part of `drain_shared`, from `stack` (the caller's own, `keep`: left
/// there at the deadline; else put back into the pool).
fn drain_worker(heap: &MHeap, pool: &Pool, stack: &mut MarkStack, keep: bool) {
    let mut t = Tracer::new();
    let mut m = Marker::<true>::new(heap.id);
    let mut n = 0u32;
    loop {
        if pool.abort.load(Ordering::Relaxed) {
            return;
        }
        n += 1;
        if pool.timeup.load(Ordering::Relaxed)
            || (n.is_multiple_of(SHARED_CLOCK_EVERY)
                && pool.deadline.is_some_and(|d| Instant::now() >= d))
        {
            // What is in flight is marked and pushed; the rest goes back for the next
            // slice.
            m.flush(stack);
            pool.time_up(stack, keep);
            return;
        }
        let Some(slot) = stack.pop() else {
            if !m.is_idle() {
                m.flush(stack);
                continue;
            }
            if !pool.take(stack) {
                return;
            }
            continue;
        };
        m.direct = stack.is_empty() && m.is_idle();
        // The other thread scans other objects: every entry of a shared drain is marked
        // (markfin scans its unmarked objects itself), and each is
        // pushed once, by the thread whose `mark_shared` set its bit.
        // SAFETY: as in `drain`, and no object is scanned by both threads (above).
        unsafe { for_each_edge(slot, &mut t, |e| m.edge(e, stack)) };
        if pool.hungry.load(Ordering::Relaxed) && stack.len() >= 2 {
            pool.give(stack);
        }
    }
}

/// The batches two threads of a shared drain hand each other.
struct Pool {
    state: std::sync::Mutex<PoolState>,
    /// Signalled when a batch is given, or marking is over.
    more: std::sync::Condvar,
    /// A thread waits for a batch: the other gives one at its next object.
    hungry: core::sync::atomic::AtomicBool,
    /// A `Trace` impl panicked: both stop.
    abort: core::sync::atomic::AtomicBool,
    /// The slice's deadline has passed: both put their stacks back and stop.
    timeup: core::sync::atomic::AtomicBool,
    deadline: Option<Instant>,
}

#[derive(Default)]
struct PoolState {
    /// Slot addresses to scan, a batch at a time.
    batches: Vec<Vec<usize>>,
    /// Threads that began their part.
    started: usize,
    /// Of those, the ones waiting at an empty pool (or gone).
    idle: usize,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        // Nothing runs under this lock that can panic and leave it half changed.
        crate::mheap::lock(&self.state)
    }

    /// A batch onto `stack`; or, once every thread that began waits here with the pool
    /// empty, `false`: marking is over.
    fn take(&self, stack: &mut MarkStack) -> bool {
        let mut st = self.lock();
        let mut waited = false;
        let mut awake_since = None;
        loop {
            if let Some(b) = st.batches.pop() {
                if waited {
                    st.idle -= 1;
                }
                self.hungry.store(st.idle > 0, Ordering::Relaxed);
                stack.extend(b.into_iter().map(|a| a as *mut u8));
                return true;
            }
            if !waited {
                st.idle += 1;
                waited = true;
            }
            if st.idle == st.started
                || self.abort.load(Ordering::Relaxed)
                || self.timeup.load(Ordering::Relaxed)
            {
                self.more.notify_all();
                return false;
            }
            self.hungry.store(true, Ordering::Relaxed);
            if let Some(d) = self.deadline {
                // A slice: a sleeping thread may wake a scheduler tick late (4 ms here),
                // sixteen times a slice's length; wait awake for half a millisecond, then
                // asleep until the deadline (a long `collect_step`).
                let now = Instant::now();
                if now >= d {
                    self.timeup.store(true, Ordering::Relaxed);
                    continue;
                }
                let since = *awake_since.get_or_insert(now);
                if now.duration_since(since) < std::time::Duration::from_micros(500) {
                    drop(st);
                    for i in 0..64u32 {
                        if i % 16 == 15 {
                            std::thread::yield_now();
                        } else {
                            core::hint::spin_loop();
                        }
                    }
                    st = self.lock();
                } else {
                    st = self
                        .more
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                continue;
            }
            st = self.more.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The deadline has passed: `stack` goes back into the pool whole, and the other
    /// thread leaves too (at its next object, or from `take`).
    fn time_up(&self, stack: &mut MarkStack, keep: bool) {
        let mut st = self.lock();
        self.timeup.store(true, Ordering::Relaxed);
        while !keep && !stack.is_empty() {
            st.batches.push(stack.take_bottom(stack.len()));
        }
        drop(st);
        self.more.notify_all();
    }

    /// A batch off `stack` for the thread waiting in `take`: half of it, at most
    /// `SHARED_BATCH`, from its bottom (a tree's largest subtrees).
    fn give(&self, stack: &mut MarkStack) {
        let batch = stack.take_bottom((stack.len() / 2).min(SHARED_BATCH));
        let mut st = self.lock();
        st.batches.push(batch);
        self.hungry.store(false, Ordering::Relaxed);
        drop(st);
        self.more.notify_one();
    }
}

/// The pipeline of `drain` (and of markfin's scans): edges waiting for their span, then
/// for their mark word. Each span is live until the stop ends (spans are freed only at a
/// cycle's end, `mgcsweep::end`), and the rings are emptied before `drain` (or `markfin`)
/// returns.
struct Marker<const SHARED: bool> {
    heap_id: u64,
    /// The arena of the last edge that left `last` (edges usually land in the one of the
    /// one before).
    arena: Option<&'static Arena>,
    /// The span of the last edge that needed a lookup, and the page that edge is in: an
    /// edge into the same page is marked at once. (A page, not the span's range: that is
    /// in the span, whose lines may be only on their way; comparing against them made
    /// every edge wait for the edge before's miss, a third of marking's time in slices.)
    last: Option<&'static Span>,
    last_page: usize,
    /// Mark every edge at once (`drain`, when nothing else is in flight).
    direct: bool,
    /// Edges (target headers) whose span's lines were prefetched, and that span.
    spans: Ring<(*mut u8, &'static Span), EDGE_AHEAD>,
    /// Edges' spans and slot indices, whose mark word and slot were prefetched.
    words: Ring<(&'static Span, usize), EDGE_AHEAD>,
}

impl<const SHARED: bool> Marker<SHARED> {
    fn new(heap_id: u64) -> Self {
        Marker {
            heap_id,
            arena: None,
            last: None,
            last_page: 0,
            direct: false,
            spans: Ring::new(),
            words: Ring::new(),
        }
    }

    /// Stage 1: an edge found by a scan. One into another heap (or none) is dropped here.
    #[inline(always)]
    fn edge(&mut self, e: NonNull<u8>, stack: &mut MarkStack) {
        let addr = e.as_ptr() as usize;
        let page = addr / PAGE_SIZE;
        if let Some(l) = self.last.filter(|_| page == self.last_page) {
            Self::mark(l, l.index_of(addr), stack);
            return;
        }
        let Some(a) = arena_of_cached(addr, &mut self.arena) else {
            return;
        };
        if a.heap_id != self.heap_id {
            return;
        }
        let Some(s) = a.span_at(addr) else { return };
        self.last = Some(s);
        self.last_page = page;
        if self.direct {
            Self::mark(s, s.index_of(addr), stack);
            return;
        }
        let p = (s as *const Span).cast::<u8>();
        crate::mem::prefetch(p);
        crate::mem::prefetch(p.wrapping_add(64));
        if let Some((addr, s)) = self.spans.push((e.as_ptr(), s)) {
            self.index(addr, s, stack);
        }
    }

    /// Stage 2: the edge's slot index, read off its span.
    #[inline(always)]
    fn index(&mut self, addr: *mut u8, s: &'static Span, stack: &mut MarkStack) {
        let i = s.index_of(addr as usize);
        crate::mem::prefetch(s.mark_word(i));
        crate::mem::prefetch(addr);
        if let Some((s, i)) = self.words.push((s, i)) {
            Self::mark(s, i, stack);
        }
    }

    /// Stage 3: marks slot `i` of `s`; pushes it if newly marked and it can hold handles.
    #[inline(always)]
    fn mark(s: &Span, i: usize, stack: &mut MarkStack) {
        // Shared: the other thread may set a bit of the same word.
        let new = if SHARED { s.mark_shared(i) } else { s.mark(i) };
        if new && !s.spc.noscan() {
            stack.push(s.slot(i));
        }
    }

    fn is_idle(&self) -> bool {
        self.spans.is_empty() && self.words.is_empty()
    }

    /// Takes every edge in flight through to its mark, oldest first.
    fn flush(&mut self, stack: &mut MarkStack) {
        while let Some((addr, s)) = self.spans.pop() {
            self.index(addr, s, stack);
        }
        while let Some((s, i)) = self.words.pop() {
            Self::mark(s, i, stack);
        }
    }
}

/// A ring of at most `N` entries in flight (`count_refs`, `Marker`): an entry pushed into a
/// full ring pushes out the oldest, `N` entries later.
struct Ring<T: Copy, const N: usize> {
    items: [Option<T>; N],
    /// The place of the oldest entry, where the next one goes once the ring is full.
    at: usize,
    len: usize,
}

impl<T: Copy, const N: usize> Ring<T, N> {
    fn new() -> Self {
        Ring {
            items: [None; N],
            at: 0,
            len: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `x`; returns the entry it pushed out, if the ring was full.
    #[inline(always)]
    fn push(&mut self, x: T) -> Option<T> {
        let place = (self.at + self.len) % N;
        let old = self.items[place].replace(x);
        if old.is_some() {
            self.at = (self.at + 1) % N;
        } else {
            self.len += 1;
        }
        old
    }

    /// Takes the oldest entry.
    #[inline(always)]
    fn pop(&mut self) -> Option<T> {
        let x = self.items[self.at].take()?;
        self.at = (self.at + 1) % N;
        self.len -= 1;
        Some(x)
    }
}
