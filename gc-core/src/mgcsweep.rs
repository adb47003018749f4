//! Sweeping (Go's mgcsweep), with the world stopped, in two passes.
//!
//! 1. Every allocated object: a live (marked) one gets its count settled (minus the
//!    references garbage held, which marking left in `gc_refs`; see mgcmark) and its
//!    `gc_refs` zeroed. Garbage is never dropped here: its destructor only drops handles
//!    (garbage whose destructor runs user code was marked for the cycle's drop batch and
//!    is destroyed after the world resumes: mdrop), and those handles' counts were
//!    settled in bulk. Except for handles into another heap, which that heap counts as
//!    outside references: when this cycle saw such an edge, every garbage value is
//!    dropped, and those handles decrement their targets (no user code: handle drops).
//! 2. Per span: the mark bits become the allocation bits (Go's trick), empty spans go back
//!    to the page heap, spans with free slots go to the central lists, and free pages
//!    that stayed free through a whole cycle, beyond what the pacer will use before the
//!    next cycle, go back to the OS (`PageHeap::release_free`).
//!
//! Most acyclic garbage never reaches the sweep: mutators free it when its count reaches
//! zero (`mfree`). Slots freed that way and not reused by the collection are still
//! allocated, dead (type `FREED`: no edges, no destructor, count zero): the flush of the
//! thread caches forgot their free lists, and pass 2 frees them with the rest.

use core::sync::atomic::Ordering;

use gc_types::Type;

use crate::mgcmark::FIN_SCANNED;
use crate::mheap::{lock, MHeap};
use crate::mspan::SpanPtr;
use crate::slot::{data_offset, header, HEADER, POISON};

use crate::world::{StoppedWorld, Sweeping};

pub(crate) struct Swept {
    pub(crate) freed_objects: u64,
    pub(crate) live_bytes: usize,
}

pub(crate) fn sweep(
    heap: &'static MHeap,
    world: &StoppedWorld,
    spans: &[SpanPtr],
    cross_heap: bool,
) -> Swept {
    let mut freed = 0u64;
    world.set_sweeping(Sweeping::Heap(heap.id));
    for s in spans {
        let s = s.get();
        if !cross_heap && !cfg!(debug_assertions) {
            // Nothing to do for this span's garbage: settle the live objects only.
            s.for_each_marked(|i| {
                // SAFETY: marked slots are allocated.
                settle(unsafe { header(s.slot(i)) });
            });
            freed += (s.alloc_count_bits() - s.marked_count()) as u64;
            continue;
        }
        s.for_each_allocated(|i| {
            let slot = s.slot(i);
            // SAFETY: `i` is allocated.
            let h = unsafe { header(slot) };
            if s.is_marked(i) {
                settle(h);
                return;
            }
            freed += 1;
            let ty = h.ty.load(Ordering::Relaxed);
            if !ty.is_null() {
                // SAFETY: a non-null header type is the `&'static Type` malloc stored.
                let ty: &'static Type = unsafe { &*ty };
                debug_assert!(
                    !crate::slot::runs_user_code(ty),
                    "fing::sweep: a garbage {ty} with a destructor was not marked for the drop batch"
                );
                if cross_heap && ty.needs_drop() {
                    let data = slot.wrapping_add(data_offset(ty.align()));
                    // SAFETY: the value is valid and unreachable (unmarked): dropped once,
                    // here. Its destructor only drops handles (garbage with any other is
                    // marked and destroyed after the world resumes: mdrop), so no user
                    // code runs with the world stopped.
                    unsafe { ty.drop_value(data) };
                }
            }
            if cfg!(debug_assertions) {
                // Poison the value so that a wrong free shows up at the next read, not later.
                // SAFETY: the slot is garbage: nothing reads it until it is allocated again.
                unsafe { core::ptr::write_bytes(slot.wrapping_add(HEADER), POISON, s.elem_size - HEADER) };
            }
        });
    }
    world.set_sweeping(Sweeping::No);

    heap.central.reset();
    let mut keep = Vec::with_capacity(spans.len());
    let mut live_bytes = 0;
    // `all_spans` is held until it no longer lists the spans freed here: `stats()` reads
    // it without a section, and must never see a freed span.
    let mut all_spans = lock(&heap.all_spans);
    let mut pages = lock(&heap.pages);
    for &sp in spans {
        let s = sp.get();
        let live = s.finish_sweep();
        if live == 0 {
            pages.set_span(s, core::ptr::null_mut());
            pages.free(s.base, s.npages);
            // The span is in no list or cache any more (caches were flushed, the central
            // lists reset, and it is left out of `keep`, which replaces `all_spans` before
            // that lock is released), and its pages no longer point to it.
            let raw = (s as *const crate::mspan::Span).cast_mut();
            // SAFETY: `raw` came from a leaked box and this is its last reference (above).
            drop(unsafe { Box::from_raw(raw) });
            continue;
        }
        live_bytes += live * s.elem_size;
        if s.has_free() {
            heap.central.push(sp);
        }
        keep.push(sp);
    }
    // Keep the free pages the pacer will fill before the next cycle; give back the rest.
    let config = heap.config();
    let retain = match config.gogc {
        Some(g) => (live_bytes.saturating_mul(g as usize) / 100).max(config.min_heap),
        None => 0,
    };
    pages.release_free(retain, false);
    drop(pages);
    *all_spans = keep;
    drop(all_spans);
    Swept {
        freed_objects: freed,
        live_bytes,
    }
}

/// Settles a live object after marking: its count loses the references garbage held
/// (what marking left in `gc_refs`, less the finalizer-scan bit), and `gc_refs` goes back
/// to zero, the invariant outside a cycle.
#[inline]
fn settle(h: &crate::slot::Header) {
    let r = h.gc_refs.load(Ordering::Relaxed);
    if r != 0 {
        h.count.fetch_sub(r & !FIN_SCANNED, Ordering::Relaxed);
        h.gc_refs.store(0, Ordering::Relaxed);
    }
}
