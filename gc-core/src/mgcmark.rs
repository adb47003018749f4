//! Roots and marking (Go's mgcmark), with the world stopped.
//!
//! Roots are found by trial subtraction (DESIGN §4): every object's scratch count starts at
//! its handle count; tracing every object once subtracts one for each handle found inside
//! the heap; what is left counts handles held outside the heap (locals, `Vec`s, other
//! threads, other heaps). An object with a positive remainder is a root. Marking then
//! follows edges from the roots with an explicit stack (no recursion: a list of a million
//! nodes marks in constant stack).
//!
//! Safety margin: a `Trace` impl that reports a handle it does not own makes the remainder
//! wrap below zero, which reads as a huge count: a root. Only reporting a handle that is
//! owned elsewhere *and* missing one that is owned here could hide a root.

use core::ptr::NonNull;
use core::sync::atomic::Ordering;

use gc_types::{Tracer, Type};

use crate::heap::{HeapInner, SpanPtr};
use crate::mheap::{arena_of, span_of};
use crate::mspan::{data_offset, Header};

/// The header of the object at `slot`.
///
/// # Safety
/// `slot` must be the start of an allocated object slot.
#[inline]
pub(crate) unsafe fn header<'a>(slot: *mut u8) -> &'a Header {
    // SAFETY: allocated slots start with an initialised header (malloc writes it first).
    unsafe { &*slot.cast::<Header>() }
}

/// Reports the handles of the object at `slot` to `t`.
///
/// # Safety
/// `slot` must be the start of an allocated object slot, with the world stopped.
#[inline]
pub(crate) unsafe fn trace_object(slot: *mut u8, t: &mut Tracer) {
    // SAFETY: the caller's contract.
    let ty = unsafe { header(slot) }.ty.load(Ordering::Relaxed);
    if ty.is_null() {
        return;
    }
    // SAFETY: a non-null header type is the `&'static Type` malloc stored.
    let ty: &'static Type = unsafe { &*ty };
    let data = slot.wrapping_add(data_offset(ty.align()));
    // SAFETY: the value at `data` is a valid value of `ty` (written at allocation, alive
    // until swept), and nothing mutates it while the world is stopped.
    unsafe { ty.trace_value(data, t) };
}

#[inline]
fn in_heap(e: NonNull<u8>, heap: &HeapInner) -> bool {
    arena_of(e.as_ptr() as usize).is_some_and(|a| a.heap_id == heap.id)
}

pub(crate) fn count_refs(heap: &HeapInner, spans: &[SpanPtr]) {
    for s in spans {
        let s = s.get();
        s.for_each_allocated(|i| {
            // SAFETY: `i` is allocated.
            let h = unsafe { header(s.slot(i)) };
            h.gc_refs
                .store(h.count.load(Ordering::Relaxed), Ordering::Relaxed);
        });
    }
    let mut t = Tracer::new();
    for s in spans.iter().map(|s| s.get()).filter(|s| !s.spc.noscan()) {
        s.for_each_allocated(|i| {
            // SAFETY: `i` is allocated and the world is stopped.
            unsafe { trace_object(s.slot(i), &mut t) };
            while let Some(e) = t.pop() {
                if in_heap(e, heap) {
                    // SAFETY: edges are headers of live objects of this heap (Trace contract).
                    let h = unsafe { header(e.as_ptr()) };
                    let r = h.gc_refs.load(Ordering::Relaxed);
                    h.gc_refs.store(r.wrapping_sub(1), Ordering::Relaxed);
                }
            }
        });
    }
}

pub(crate) fn mark(heap: &HeapInner, spans: &[SpanPtr]) {
    let mut stack: Vec<*mut u8> = Vec::new();
    for s in spans {
        let s = s.get();
        s.for_each_allocated(|i| {
            // SAFETY: `i` is allocated.
            if unsafe { header(s.slot(i)) }.gc_refs.load(Ordering::Relaxed) > 0
                && s.mark(i)
                && !s.spc.noscan()
            {
                stack.push(s.slot(i));
            }
        });
    }
    let mut t = Tracer::new();
    while let Some(slot) = stack.pop() {
        // SAFETY: only allocated, marked slots are pushed; the world is stopped.
        unsafe { trace_object(slot, &mut t) };
        while let Some(e) = t.pop() {
            let Some(s) = span_of(e.as_ptr() as usize) else {
                continue;
            };
            if s.heap_id != heap.id {
                continue;
            }
            let i = s.index_of(e.as_ptr() as usize);
            if s.mark(i) && !s.spc.noscan() {
                stack.push(s.slot(i));
            }
        }
    }
}
