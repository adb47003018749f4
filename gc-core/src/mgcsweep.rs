//! Sweeping (Go's mgcsweep), with the world stopped, in two passes.
//!
//! 1. Drop the value of every allocated, unmarked object. Handles inside it are dropped
//!    too; while this thread sweeps heap H (`Role::Collector { sweeping: H }`), dropping a
//!    handle to an object of H that is not marked does nothing (that object dies in this
//!    cycle, and its memory must not be touched as if it were alive), and dropping one to a
//!    live object decrements its count as usual. A destructor that panics is caught and
//!    counted; the object is freed anyway.
//! 2. Per span: the mark bits become the allocation bits (Go's trick), empty spans go back
//!    to the page heap, spans with free slots go to the central lists, and free pages are
//!    given back to the OS.

use core::ptr::NonNull;
use core::sync::atomic::Ordering;
use std::panic::{catch_unwind, AssertUnwindSafe};

use gc_types::Type;

use crate::heap::{lock, HeapInner, SpanPtr};
use crate::mgcmark::header;
use crate::mheap::span_of;
use crate::mspan::{data_offset, HEADER};

/// The byte freed values are overwritten with in debug builds.
const POISON: u8 = 0xde;
use crate::world::{self, Role, StoppedWorld};

pub(crate) struct Swept {
    pub(crate) freed_objects: u64,
    pub(crate) live_bytes: usize,
    pub(crate) drop_panics: u64,
}

pub(crate) fn sweep(heap: &'static HeapInner, world: &StoppedWorld, spans: &[SpanPtr]) -> Swept {
    let mut freed = 0u64;
    let mut panics = 0u64;
    world.set_sweeping(heap.id);
    for s in spans {
        let s = s.get();
        s.for_each_garbage(|i| {
            freed += 1;
            let slot = s.slot(i);
            // SAFETY: `i` is allocated.
            let ty = unsafe { header(slot) }.ty.load(Ordering::Relaxed);
            if !ty.is_null() {
                // SAFETY: a non-null header type is the `&'static Type` malloc stored.
                let ty: &'static Type = unsafe { &*ty };
                if ty.needs_drop() {
                    let data = slot.wrapping_add(data_offset(ty.align()));
                    // SAFETY: the value is valid and unreachable (unmarked): dropped once, here.
                    let r = catch_unwind(AssertUnwindSafe(|| unsafe { ty.drop_value(data) }));
                    if r.is_err() {
                        panics += 1;
                        eprintln!("fing: sweep: a destructor of {ty} panicked; the object is freed anyway");
                    }
                }
            }
            if cfg!(debug_assertions) {
                // Poison the value so that a wrong free shows up at the next read, not later.
                // SAFETY: the slot is garbage: nothing reads it until it is allocated again.
                unsafe { core::ptr::write_bytes(slot.wrapping_add(HEADER), POISON, s.elem_size - HEADER) };
            }
        });
    }
    world.set_sweeping(0);

    heap.reset_central();
    let mut keep = Vec::with_capacity(spans.len());
    let mut live_bytes = 0;
    let mut pages = lock(&heap.pages);
    for &sp in spans {
        let s = sp.get();
        let live = s.finish_sweep();
        if live == 0 {
            pages.set_span(s, core::ptr::null_mut());
            pages.free(s.base, s.npages);
            // SAFETY: the span is in no list or cache any more (caches were flushed, the
            // central lists reset, and it is left out of `keep`), and its pages no longer
            // point to it: this is the last reference.
            drop(unsafe { Box::from_raw((s as *const crate::mspan::Span).cast_mut()) });
            continue;
        }
        live_bytes += live * s.elem_size;
        if s.has_free() {
            heap.push_central(sp);
        }
        keep.push(sp);
    }
    pages.release_free();
    drop(pages);
    *lock(&heap.all_spans) = keep;
    Swept {
        freed_objects: freed,
        live_bytes,
        drop_panics: panics,
    }
}

/// Drops one count a handle held on `obj` (the `Drop` of a heap handle).
pub(crate) fn release(obj: NonNull<u8>) {
    let section = world::enter();
    if let Role::Collector { sweeping } = section.role() {
        if sweeping != 0 {
            if let Some(s) = span_of(obj.as_ptr() as usize) {
                if s.heap_id == sweeping && !s.is_marked(s.index_of(obj.as_ptr() as usize)) {
                    return;
                }
            }
        }
    }
    // SAFETY: a handle's `obj` is the header of an object that stays allocated while the
    // handle lives (the count we are about to drop kept it so).
    unsafe { header(obj.as_ptr()) }
        .count
        .fetch_sub(1, Ordering::Release);
}
