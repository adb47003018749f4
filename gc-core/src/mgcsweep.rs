//! Sweeping (Go's mgcsweep), in four steps.
//!
//! 1. [`release`], once marking is over, span by span of the snapshot (the world may run
//!    between its slices): every unmarked object is garbage. It gives back the counts it
//!    holds on marked objects (and on other heaps' objects, whose collectors count them
//!    as outside references), becomes a dead slot (`FREED`: no edges, no destructor), and
//!    is counted as freed. Garbage whose destructor runs user code was marked for the
//!    cycle's drop batch and is destroyed after the world resumes (mdrop); a destructor
//!    that only drops handles is skipped (the counts it would drop are what this gives
//!    back); one that only drops handles and frees memory (`Trace::DROP_ONLY_FREES`: an
//!    interpreter's frame of `Vec` slots, a `String`) runs here, its handle drops lowering
//!    their targets' counts on the thread that holds the world (`release::drop_count`),
//!    as giving them back does. Every live object's scratch count goes back to zero.
//!
//! Why the last kind runs here rather than after the world resumes, as user code does:
//! its drop calls nothing but fing's own handle release and the global allocator, which
//! the collector calls in its stops anyway, so it cannot wait for a mutator; and sent to
//! the drop thread it costs a mark to keep it and what it reaches, a list entry, a
//! destructor call on another core and a second section to free its slot (an
//! interpreter's closures, each a frame and a closure, spent half their collections
//! there).
//! 2. [`flip`], in one stop: the caches are flushed (allocation stops being black), the
//!    central lists emptied, and every span of the heap (those made during the cycle too)
//!    moved to `Spans::unswept` in one move.
//! 3. [`sweep`], span by span, resumable: the mark bits become the allocation bits (Go's
//!    trick), empty spans go back to the page heap, spans with free slots go to the
//!    central lists. Between its slices, a thread whose class list is empty sweeps too
//!    (`MHeap::sweep_for`, which argues why it may with the world running). Spans made
//!    meanwhile are swept already: their allocation bits are exact and their marks clear.
//! 4. [`end`], once no span is left: the spans it emptied are dropped, and the sweep's
//!    totals (bytes kept, objects freed) go to the pacer and the statistics. Free pages
//!    beyond what the pacer will use before the next cycle go back to the OS after the
//!    world resumes (`mgc::Outcome::scavenge`).
//!
//! Until the sweep ends the cycle is in progress: no cycle marks a span before it is
//! swept. The statistics count unswept spans as in use.
//!
//! Why the counts are given back one by one rather than settled in bulk: between slices
//! mutators change counts and cells, so what marking could subtract from live objects'
//! counts would be stale by the end. Garbage, unreachable, changes no more: what it holds
//! is exact.
//!
//! Most acyclic garbage never reaches the sweep: mutators free it when its count reaches
//! zero (`mfree`). Slots freed that way and not reused are still allocated, dead (type
//! `FREED`, count zero): unless a free list holds them (then they are marked, as every
//! slot handed out during a cycle), the sweep frees them with the rest.

use core::ptr::NonNull;
use core::sync::atomic::Ordering;
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use gc_types::{AtZero, PtrMask, Tracer, Type};

use crate::mgcmark::{for_each_edge, Budget};
use crate::mheap::{lock, MHeap};
use crate::mpagealloc::arena_of_cached;
use crate::mspan::SpanPtr;
use crate::slot::{data_offset, header, FREED, HEADER, POISON};
use crate::world::StoppedWorld;

/// Step 1, from span `*cursor` of the snapshot on (see the module docs). A `Trace` impl that
/// panics leaves its object allocated and marked, holding its counts (leaked, never freed
/// early); a drop that only frees and panics (only fing's own code can) leaves its value
/// half dropped and its slot freed; the first such panic goes in `panicked`. Returns
/// whether it is done. World stopped.
pub(crate) fn release(
    heap: &MHeap,
    spans: &[SpanPtr],
    cursor: &mut usize,
    panicked: &mut Option<Box<dyn Any + Send>>,
    budget: &mut Budget,
) -> bool {
    let mut t = Tracer::new();
    let mut last = None;
    let freed_ty = (&FREED as *const Type).cast_mut();
    while let Some(s) = spans.get(*cursor).map(|s| s.get()) {
        *cursor += 1;
        let mut n = 0;
        s.for_each_allocated(|i| {
            n += 1;
            let slot = s.slot(i);
            // SAFETY: `i` is allocated.
            let h = unsafe { header(slot) };
            if s.is_marked(i) {
                h.gc_refs.store(0, Ordering::Relaxed);
                return;
            }
            let ty = h.ty.load(Ordering::Relaxed);
            // SAFETY: a header's type is null (a tiny block) or a `&'static Type`.
            if let Some(ty) = unsafe { ty.as_ref() } {
                debug_assert!(
                    !crate::slot::runs_user_code(ty),
                    "fing::sweep: a garbage {ty} with a destructor was not marked for the drop batch"
                );
                if ty.drops_more_than_handles() && ty.at_zero() == AtZero::Free {
                    debug_assert_eq!(
                        crate::world::holds_world(),
                        Some(true),
                        "fing::sweep: a release off the thread that holds the world"
                    );
                    let data = slot.wrapping_add(data_offset(ty.align()));
                    let dropped = catch_unwind(AssertUnwindSafe(|| {
                        // SAFETY: the slot is allocated and unreachable (unmarked after
                        // marking ended): its value is valid and nothing reads it again;
                        // it is dropped once, here (its type becomes `FREED` below). The
                        // drop only frees memory and drops handles (its type's `at_zero`
                        // is `Free`, the branch's condition): each handle drop, on this
                        // thread that holds the world, lowers its target's count
                        // (`release::drop_count`), as `give_back` would; on garbage that
                        // count dies with it.
                        unsafe { ty.drop_value(data) }
                    }));
                    if let Err(p) = dropped {
                        // Only fing's own handle release can panic in such a drop (the
                        // global allocator must not unwind): an invariant broken. The
                        // value is half dropped (never twice); its slot is freed all the
                        // same, and the panic goes on to `collect()`'s caller.
                        panicked.get_or_insert(p);
                    }
                } else if !ty.is_noscan() {
                    // (A drop that is neither handles-only nor `Free` nor doomed, which
                    // only a descriptor marked `Keep` could have, is never run here: its
                    // counts are given back and what else it owns is leaked, rather than
                    // user code run in the stop.)
                    let give_back = |e: NonNull<u8>| {
                        match arena_of_cached(e.as_ptr() as usize, &mut last) {
                            Some(a) if a.heap_id == heap.id => {
                                let Some(ts) = a.span_at(e.as_ptr() as usize) else {
                                    return;
                                };
                                // Garbage holding garbage: that count dies with both.
                                if !ts.is_marked(ts.index_of(e.as_ptr() as usize)) {
                                    return;
                                }
                            }
                            Some(_) => {}
                            None => return,
                        }
                        crate::release::drop_count(e);
                    };
                    let traced = if let PtrMask::Small(_) = ty.ptrmask() {
                        // SAFETY: `slot` is allocated; world stopped.
                        unsafe { for_each_edge(slot, &mut t, give_back) };
                        Ok(())
                    } else {
                        t.clear();
                        // SAFETY: as above. User code (a `Trace` impl) runs: contained.
                        catch_unwind(AssertUnwindSafe(|| unsafe {
                            for_each_edge(slot, &mut t, give_back)
                        }))
                    };
                    if let Err(p) = traced {
                        // Edges are given back only after the trace returns: none was.
                        s.mark(i);
                        h.gc_refs.store(0, Ordering::Relaxed);
                        panicked.get_or_insert(p);
                        return;
                    }
                }
            }
            h.gc_refs.store(0, Ordering::Relaxed);
            h.ty.store(freed_ty, Ordering::Relaxed);
            if cfg!(debug_assertions) {
                // Poison the value so that a wrong free shows up at the next read, not later.
                // SAFETY: the slot is garbage: nothing reads it until it is allocated again.
                unsafe {
                    core::ptr::write_bytes(slot.wrapping_add(HEADER), POISON, s.elem_size - HEADER)
                };
            }
        });
        if !budget.go_on(n) {
            break;
        }
    }
    *cursor >= spans.len()
}

/// Step 2, the flip (see the module docs): flushes the caches, which stop allocating
/// black, empties the central lists, and hands every span to the sweep, in one move.
/// World stopped.
pub(crate) fn flip(heap: &'static MHeap, world: &StoppedWorld) {
    let _ = world;
    // SAFETY: the world is stopped (`world`).
    unsafe { crate::mcache::flush_all(heap, false) };
    heap.central.reset();
    let mut all = lock(&heap.all_spans);
    assert!(
        all.unswept.is_empty(),
        "fing::collect: a sweep began before the last one ended"
    );
    all.unswept = core::mem::take(&mut all.swept);
    all.live = 0;
    all.freed = 0;
    heap.sweeping.store(true, Ordering::Relaxed);
}

/// Step 3, the collector's part of the sweep: sweeps spans until none is left (`true`)
/// or the budget is spent. World stopped.
pub(crate) fn sweep(heap: &'static MHeap, world: &StoppedWorld, budget: &mut Budget) -> bool {
    let _ = world;
    let mut all = lock(&heap.all_spans);
    let mut pages = lock(&heap.pages);
    while let Some(sp) = all.unswept.pop() {
        if MHeap::sweep_span(sp, &mut all, &mut pages) {
            heap.central.push(sp);
        }
        // One span is the least step, and worth a look at the clock (64 units): a span
        // swept cold takes about 20 µs, and 64 of them between two looks overran a 250 µs
        // slice by 1.3 ms.
        if !budget.go_on(64) {
            return all.unswept.is_empty();
        }
    }
    true
}

/// The end of the sweep, once no span is left to sweep: the spans it emptied are dropped.
/// Returns the bytes of the objects the sweep kept, the objects it freed, and how many
/// bytes of free pages to keep for the pacer to fill before the next cycle: the caller
/// gives the rest back to the OS once the world has resumed (`PageHeap::release_free`:
/// one `madvise` per run, 31 ms once in a stop when a heap shrank by half). World stopped.
pub(crate) fn end(heap: &'static MHeap, world: &StoppedWorld) -> (usize, u64, usize) {
    let _ = world;
    let mut all = lock(&heap.all_spans);
    assert!(
        all.unswept.is_empty(),
        "fing::collect: a cycle ended with spans still to sweep"
    );
    heap.sweeping.store(false, Ordering::Relaxed);
    for sp in core::mem::take(&mut all.dead) {
        let raw = (sp.get() as *const crate::mspan::Span).cast_mut();
        // SAFETY: `raw` came from a leaked box (`MHeap::new_span`); the sweep took the span
        // out of every list and the page map (`MHeap::sweep_span`), and the world is
        // stopped, so no thread holds it from an earlier lookup: this is its last reference.
        drop(unsafe { Box::from_raw(raw) });
    }
    let (live_bytes, freed) = (all.live, all.freed);
    let config = heap.config();
    let retain = match config.gogc {
        Some(g) => (live_bytes.saturating_mul(g as usize) / 100).max(config.min_heap),
        None => 0,
    };
    if cfg!(debug_assertions) {
        let in_use: usize = all.iter().map(|s| s.get().bytes()).sum();
        assert_eq!(
            lock(&heap.pages).in_use,
            in_use,
            "fing::collect: the pages in spans are not the spans' bytes"
        );
        for s in all.swept.iter().map(|s| s.get()) {
            s.for_each_allocated(|i| {
                // SAFETY: `i` is allocated.
                let r = unsafe { header(s.slot(i)) }.gc_refs.load(Ordering::Relaxed);
                assert_eq!(r, 0, "fing::collect: a scratch count left after a cycle");
            });
        }
    }
    (live_bytes, freed, retain)
}
