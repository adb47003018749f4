//! The central lists (Go's mcentral): for each span class, the spans with free slots that
//! thread caches refill from, and the making of new spans from the page heap.
//!
//! Invariants: a span is in at most one place at a time: one cache, or its class's central
//! list, or neither (full); every in-use span is in `all_spans`. The collector rebuilds the
//! lists after each sweep (world stopped).

use core::ptr::NonNull;

use crate::heap::{lock, HeapInner, SpanPtr};
use crate::mspan::{Span, SpanClass};
use crate::sizeclasses::{PAGE_SIZE, TABLE};
use crate::slot::HEADER;

impl HeapInner {
    /// A span of class `spc` with a free slot: from the central list, or new pages.
    pub(crate) fn take_span(&'static self, spc: SpanClass) -> Option<SpanPtr> {
        let s = match lock(&self.central[spc.index()]).pop() {
            Some(s) => s,
            None => {
                let class = TABLE.classes[spc.index() >> 1];
                self.new_span(class.npages, class.size, spc, 0)?
            }
        };
        let span = s.get();
        self.grew((span.nelems - span.alloc_count()) * span.elem_size);
        Some(s)
    }

    /// A span of `npages` new pages cut into slots of `elem_size` bytes. `align`: for a
    /// large object aligned to more than a page, the alignment of the page after its first
    /// (its value's, whose header ends the first page); else 0.
    pub(crate) fn new_span(
        &'static self,
        npages: usize,
        elem_size: usize,
        spc: SpanClass,
        align: usize,
    ) -> Option<SpanPtr> {
        let mut pages = lock(&self.pages);
        if let Some(limit) = self.config().max_heap {
            if pages
                .in_use
                .saturating_add(npages.saturating_mul(PAGE_SIZE))
                > limit
            {
                self.limit_refusals
                    .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
                return None;
            }
        }
        let (base, first) = if align > PAGE_SIZE {
            (pages.alloc_aligned(npages, align)?, PAGE_SIZE - HEADER)
        } else {
            (pages.alloc(npages)?, 0)
        };
        let span = Box::new(Span::new(
            base,
            npages,
            elem_size - first,
            first,
            spc,
            self.id,
        ));
        let ptr = Box::into_raw(span);
        // SAFETY: `ptr` was just made from a box.
        pages.set_span(unsafe { &*ptr }, ptr);
        drop(pages);
        // SAFETY: as above, non-null.
        let s = SpanPtr(unsafe { NonNull::new_unchecked(ptr) });
        lock(&self.all_spans).push(s);
        Some(s)
    }

    /// A cache gives back a span it allocated from.
    pub(crate) fn return_span(&self, s: SpanPtr) {
        if s.get().has_free() {
            lock(&self.central[s.get().spc.index()]).push(s);
        }
    }

    /// Rebuilds the central lists after a sweep. Collector only.
    pub(crate) fn reset_central(&self) {
        for c in self.central.iter() {
            lock(c).clear();
        }
    }

    pub(crate) fn push_central(&self, s: SpanPtr) {
        lock(&self.central[s.get().spc.index()]).push(s);
    }
}
