//! Roots and marking (Go's mgcmark), with the world stopped.
//!
//! Roots are found by trial subtraction, counted without a copy pass. Outside a
//! collection every object's scratch `gc_refs` is zero. Then:
//!
//! 1. [`count_refs`]: trace every allocated object once; each handle found inside the heap
//!    adds one to its target's `gc_refs`. Now `gc_refs` = references from inside the heap,
//!    and an object whose handle `count` differs is referenced from outside: a root.
//! 2. [`mark`]: mark the roots, then follow edges with an explicit stack (no recursion: a
//!    list of a million nodes marks in constant stack). Every edge *from a live object*
//!    takes one back off its target's `gc_refs`, so afterwards a live object's `gc_refs`
//!    counts exactly the references held by garbage.
//! 3. [`mark_doomed`], after the finalizers' resurrection (mfinal): garbage whose
//!    destructor runs user code is marked, with what it reaches, for its destructor.
//!
//! The sweeper then subtracts the remainder from each live object's `count` and zeroes
//! `gc_refs` (restoring the invariant), so the handles inside garbage never need to be
//! dropped one by one.
//!
//! `count` may grow during the cycle (clones need no section); roots are objects whose
//! `count` is not `gc_refs`, so a concurrent clone only adds roots, and the final
//! subtraction is atomic. A `Trace` impl that under-reports (forgets a handle) only makes
//! its target look referenced from outside: a root, kept. One that over-reports (a handle
//! it does not own, or one twice) can make `gc_refs` equal `count` for an object that is
//! referenced from outside, and so free a live object: that is why `Trace` is an
//! `unsafe trait` (`gc_types::trace`).
//!
//! Edges are found by pointer mask where the type has one (a loop over the mask's bits, no
//! call), else by the type's trace function; both decode handle words with
//! `gc_types::word::object_of`, which gives nothing for handles outside every heap. Edges
//! into other heaps lie in no arena of this heap and are skipped (a handle into another
//! heap is an outside reference for that heap).

use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, Ordering};

use gc_types::{PtrMask, Tracer, Type};

use crate::mheap::MHeap;
use crate::mpagealloc::{arena_of_cached, span_of, Arena};
use crate::mspan::Span;
use crate::mspan::SpanPtr;
use crate::slot::{data_offset, header, Doomed};

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
    // For the report if this user code panics (one collector at a time writes it).
    TRACING.store((ty as *const Type).cast_mut(), Ordering::Relaxed);
    // SAFETY: the value at `data` is a valid value of `ty` (written at allocation, alive
    // until swept), and nothing mutates it while the world is stopped.
    unsafe { ty.trace_value(data, t) };
    while let Some(e) = t.pop() {
        f(e);
    }
}

/// The type whose `Trace` impl ran last (see `for_each_edge`).
static TRACING: AtomicPtr<Type> = AtomicPtr::new(core::ptr::null_mut());

/// The type whose `Trace` impl ran last: after a panic in tracing, the one that panicked.
pub(crate) fn tracing_type() -> Option<&'static Type> {
    // SAFETY: TRACING is null or a `&'static Type` (stored in `for_each_edge`).
    unsafe { TRACING.load(Ordering::Relaxed).as_ref() }
}

/// Undoes an interrupted count-and-mark (a `Trace` impl panicked): every scratch count
/// back to zero and every mark bit clear, the state outside a cycle. Nothing was freed or
/// settled yet, so the heap is as it was before the cycle. Collector only.
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

/// Pass 1. Returns whether any edge pointed into another heap.
pub(crate) fn count_refs(heap: &MHeap, spans: &[SpanPtr]) -> bool {
    let mut t = Tracer::new();
    let mut cross_heap = false;
    // Edges usually land in the arena of the last one: remember its address range.
    let mut last: Option<&'static Arena> = None;
    for s in spans.iter().map(|s| s.get()).filter(|s| !s.spc.noscan()) {
        s.for_each_allocated(|i| {
            let edge = |e: NonNull<u8>| match arena_of_cached(e.as_ptr() as usize, &mut last) {
                Some(a) if a.heap_id == heap.id => {
                    // SAFETY: edges into this heap are headers of its live objects.
                    let h = unsafe { header(e.as_ptr()) };
                    h.gc_refs.store(
                        h.gc_refs.load(Ordering::Relaxed).wrapping_add(1),
                        Ordering::Relaxed,
                    );
                }
                Some(_) => cross_heap = true,
                None => {}
            };
            // SAFETY: `i` is allocated and the world is stopped.
            unsafe { for_each_edge(s.slot(i), &mut t, edge) };
        });
    }
    cross_heap
}

/// Pass 2: marks from the roots, then Go's markfin; returns how many finalizable objects
/// were found reaching themselves (only searched for with `check_finalizers`).
pub(crate) fn mark(heap: &MHeap, spans: &[SpanPtr]) -> u64 {
    let mut stack: Vec<*mut u8> = Vec::new();
    let dying = (&crate::slot::DYING as *const Type).cast_mut();
    for s in spans {
        let s = s.get();
        s.for_each_allocated(|i| {
            // SAFETY: `i` is allocated.
            let h = unsafe { header(s.slot(i)) };
            // A root: referenced from outside the heap, or doomed by an earlier cycle or a
            // mutator and still being destroyed (its slot stays; its value is not read).
            let root = h.count.load(Ordering::Relaxed) != h.gc_refs.load(Ordering::Relaxed)
                || h.ty.load(Ordering::Relaxed) == dying;
            if root && s.mark(i) && !s.spc.noscan() {
                stack.push(s.slot(i));
            }
        });
    }
    let mut t = Tracer::new();
    drain(heap, &mut stack, &mut t);
    let mut fin_scanned = Vec::new();
    // Go's markfin: an object with finalizers that is still unmarked has what it points to
    // marked, but is not marked itself (if it stays unmarked, the sweeper resurrects it and
    // queues its finalizers). Its edges count as live ones: the object survives this cycle.
    // `FIN_SCANNED` in its scratch count says its edges are being counted here, so that
    // marking it later (from another finalizable object) does not count them again.
    for_each_scannable_object_with_records(spans, |s, obj| {
        // SAFETY: a record's object is allocated.
        let h = unsafe { header(obj.as_ptr()) };
        let r = h.gc_refs.load(Ordering::Relaxed);
        if s.is_marked(s.index_of(obj.as_ptr() as usize)) || r & FIN_SCANNED != 0 {
            return;
        }
        h.gc_refs.store(r | FIN_SCANNED, Ordering::Relaxed);
        stack.push(obj.as_ptr());
        fin_scanned.push(obj);
    });
    drain(heap, &mut stack, &mut t);
    if !heap.config().check_finalizers {
        return 0;
    }
    // Go's checkfinalizers: a finalizable object that the finalizer scan itself marked is
    // reachable from some finalizable object; report it if that object is itself.
    let mut found = 0;
    for obj in fin_scanned {
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

/// Pass 3, after resurrection: garbage whose destructor runs user code (mdrop). Each such
/// object still unmarked, and without finalizer records (those were just resurrected), is
/// marked and listed, and what it reaches is marked too. So this cycle frees nothing its
/// destructor can touch, and the counts its handles hold are left in place for that
/// destructor to drop (marking subtracts its edges as live ones). After resurrection, so
/// that a finalizable object reachable only from such garbage is queued in this cycle,
/// as Go queues it (to Go, the holder is plain garbage): reaching it here only keeps it
/// allocated, already marked. The caller dooms the listed objects.
pub(crate) fn mark_doomed(heap: &MHeap, spans: &[SpanPtr]) -> Vec<Doomed> {
    let (mut stack, mut t) = (Vec::new(), Tracer::new());
    let mut doomed = Vec::new();
    let mut with_records = Vec::new();
    for s in spans
        .iter()
        .map(|s| s.get())
        .filter(|s| s.needs_sweep_drop())
    {
        // Objects with finalizer records are resurrected instead (in noscan spans too,
        // which markfin skips). Records are sorted by address, so these indices are too.
        with_records.clear();
        if s.has_specials() {
            with_records.extend(s.specials.lock().iter().map(|r| s.index_of(r.ptr as usize)));
        }
        s.for_each_allocated(|i| {
            if s.is_marked(i) || with_records.binary_search(&i).is_ok() {
                return;
            }
            let slot = s.slot(i);
            // SAFETY: `i` is allocated.
            let h = unsafe { header(slot) };
            // SAFETY: a header's type is null (a tiny block) or a `&'static Type`.
            let Some(ty) = (unsafe { h.ty.load(Ordering::Relaxed).as_ref() }) else {
                return;
            };
            if !crate::slot::runs_user_code(ty) {
                return;
            }
            s.mark(i);
            if !s.spc.noscan() {
                stack.push(slot);
            }
            doomed.push(Doomed {
                obj: NonNull::new(slot).expect("fing::mark: a slot at null"),
                ty,
            });
        });
    }
    drain(heap, &mut stack, &mut t);
    doomed
}

/// Marks the objects `objs` (headers of objects in this heap whose references from live
/// holders were already taken off their `gc_refs`: ephemeron values, `weak`) and what
/// they reach, as marking from roots does. World stopped.
pub(crate) fn mark_and_drain(heap: &MHeap, objs: &[NonNull<u8>]) {
    let mut stack = Vec::new();
    for o in objs {
        let Some(s) = span_of(o.as_ptr() as usize) else {
            continue;
        };
        // SAFETY: `o` heads an allocated object of this heap (the caller's).
        let r = unsafe { header(o.as_ptr()) }
            .gc_refs
            .load(Ordering::Relaxed);
        let i = s.index_of(o.as_ptr() as usize);
        if s.mark(i) && !s.spc.noscan() && r & FIN_SCANNED == 0 {
            stack.push(s.slot(i));
        }
    }
    drain(heap, &mut stack, &mut Tracer::new());
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

/// In an object's scratch count during marking: the finalizer scan counts its edges.
pub(crate) const FIN_SCANNED: u32 = 1 << 31;

/// Traces the stack's objects to a fixpoint: each edge into this heap takes one off its
/// target's `gc_refs` and marks it; newly marked scan objects are pushed, except those
/// the finalizer scan already pushed (`FIN_SCANNED`).
fn drain(heap: &MHeap, stack: &mut Vec<*mut u8>, t: &mut Tracer) {
    // Consecutive edges usually land in the same span: remember the last one.
    let mut last: Option<&'static Span> = None;
    while let Some(slot) = stack.pop() {
        let edge = |e: NonNull<u8>| {
            let addr = e.as_ptr() as usize;
            let s = match last {
                Some(l) if addr.wrapping_sub(l.base as usize) < l.bytes() => l,
                _ => {
                    let Some(s) = span_of(addr) else { return };
                    if s.heap_id != heap.id {
                        return;
                    }
                    last = Some(s);
                    s
                }
            };
            // SAFETY: an edge into this heap is the header of an allocated object.
            let h = unsafe { header(e.as_ptr()) };
            let r = h.gc_refs.load(Ordering::Relaxed).wrapping_sub(1);
            h.gc_refs.store(r, Ordering::Relaxed);
            let i = s.index_of(addr);
            if s.mark(i) && !s.spc.noscan() && r & FIN_SCANNED == 0 {
                stack.push(s.slot(i));
            }
        };
        // SAFETY: only allocated slots are pushed (marked ones, or unmarked objects with
        // finalizers); the world is stopped.
        unsafe { for_each_edge(slot, t, edge) };
    }
}

/// Calls `f` with each span that holds records of objects that can point to others, and
/// each record's object (repeated for a tiny block with several): the marker scans the
/// unmarked ones. Noscan spans are skipped without reading their records: their objects
/// point nowhere, so the scan has nothing to mark. World stopped.
fn for_each_scannable_object_with_records(
    spans: &[SpanPtr],
    mut f: impl FnMut(&'static Span, NonNull<u8>),
) {
    for s in spans
        .iter()
        .map(|s| s.get())
        .filter(|s| !s.spc.noscan() && s.has_specials())
    {
        for r in s.specials.lock().iter() {
            f(s, r.object(s));
        }
    }
}
