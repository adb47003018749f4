//! `MCache` (Go's mcache): a thread's allocation cache for one heap. One span per span
//! class to allocate from, and the tiny block. The fast path (`alloc_small`) touches only
//! this cache and its spans: no lock, no atomic read-modify-write.
//!
//! Ownership: the cache is reached through its thread's `Local`, inside a mutator section,
//! and by the collector with the world stopped (through the heap's registry, to flush it).
//! The two never overlap: the collector owns the world only when no section is active.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::heap::{HeapInner, SpanPtr};
use crate::mspan::{Header, SpanClass, HEADER};
use crate::sizeclasses::TABLE;

/// Bytes of a tiny block's payload (Go's maxTinySize).
pub(crate) const TINY_SIZE: usize = 16;

pub(crate) struct MCache {
    pub(crate) heap: &'static HeapInner,
    alloc: Vec<Option<SpanPtr>>,
    /// Header of the current tiny block, and the next free offset in its payload.
    tiny: Option<NonNull<Header>>,
    tiny_offset: usize,
    /// Objects and bytes allocated through this cache (read by `stats()` from anywhere).
    pub(crate) mallocs: AtomicU64,
    pub(crate) alloc_bytes: AtomicU64,
}

impl MCache {
    pub(crate) fn new(heap: &'static HeapInner) -> MCache {
        MCache {
            heap,
            alloc: vec![None; 2 * TABLE.len],
            tiny: None,
            tiny_offset: 0,
            mallocs: AtomicU64::new(0),
            alloc_bytes: AtomicU64::new(0),
        }
    }

    /// Adds `objects` slots of `size` bytes to the counters (owner only: plain stores).
    fn count(&self, objects: i64, size: usize) {
        let m = self
            .mallocs
            .load(Ordering::Relaxed)
            .wrapping_add_signed(objects);
        self.mallocs.store(m, Ordering::Relaxed);
        let b = self
            .alloc_bytes
            .load(Ordering::Relaxed)
            .wrapping_add_signed(objects * size as i64);
        self.alloc_bytes.store(b, Ordering::Relaxed);
    }

    /// A fresh slot of span class `spc`: returns its address (the header goes there).
    /// `sweep_drop`: the object's destructor must run when it dies (marks the span).
    ///
    /// Counting is Go's: a span's free slots count as allocated when the cache takes the
    /// span, and the ones left unused are taken back when it gives the span back, so the
    /// fast path counts nothing.
    #[inline]
    pub(crate) fn alloc_small(&mut self, spc: SpanClass, sweep_drop: bool) -> Option<NonNull<u8>> {
        if let Some(s) = self.alloc[spc.index()] {
            let span = s.get();
            if let Some(i) = span.next_free() {
                if sweep_drop {
                    span.note_sweep_drop();
                }
                return NonNull::new(span.slot(i));
            }
        }
        self.refill(spc, sweep_drop)
    }

    #[cold]
    fn refill(&mut self, spc: SpanClass, sweep_drop: bool) -> Option<NonNull<u8>> {
        if let Some(old) = self.alloc[spc.index()].take() {
            self.give_back(old);
        }
        let s = self.heap.take_span(spc)?;
        self.alloc[spc.index()] = Some(s);
        let span = s.get();
        self.count((span.nelems - span.alloc_count()) as i64, span.elem_size);
        let i = span
            .next_free()
            .expect("fing::mcache: refilled span has no free slot");
        if sweep_drop {
            span.note_sweep_drop();
        }
        NonNull::new(span.slot(i))
    }

    /// Gives a span back: its unused slots come off the counters, then it goes to the
    /// central list if it has free slots.
    fn give_back(&mut self, s: SpanPtr) {
        let span = s.get();
        let unused = span.nelems - span.recount();
        self.count(-(unused as i64), span.elem_size);
        self.heap.return_span(s);
    }

    /// A tiny object of `size` bytes aligned to `align` (≤ 8) inside the current tiny
    /// block (Go's tiny allocator): returns the block's header and the object's address.
    /// The caller adds the handle's count to the block.
    #[inline]
    pub(crate) fn alloc_tiny(
        &mut self,
        size: usize,
        align: usize,
    ) -> Option<(NonNull<Header>, NonNull<u8>)> {
        if let Some(h) = self.tiny {
            let off = self.tiny_offset.next_multiple_of(align);
            if off + size <= TINY_SIZE {
                self.tiny_offset = off + size;
                let p = h.as_ptr().cast::<u8>().wrapping_add(HEADER + off);
                return Some((h, NonNull::new(p)?));
            }
        }
        let class = crate::sizeclasses::size_to_class(HEADER + TINY_SIZE);
        let slot = self.alloc_small(SpanClass::new(class, true), false)?;
        let h = slot.cast::<Header>();
        // SAFETY: `slot` is a fresh slot of at least HEADER + TINY_SIZE bytes, owned by this
        // cache until published; the block starts with no handles and no type.
        unsafe {
            h.as_ptr().write(Header {
                count: core::sync::atomic::AtomicU32::new(0),
                gc_refs: core::sync::atomic::AtomicU32::new(0),
                ty: core::sync::atomic::AtomicPtr::new(core::ptr::null_mut()),
            })
        };
        self.tiny = Some(h);
        self.tiny_offset = size;
        Some((h, NonNull::new(slot.as_ptr().wrapping_add(HEADER))?))
    }

    /// Gives every cached span back to the heap's central lists and forgets the tiny block
    /// (Go's releaseAll). Collector (world stopped) or the owner inside a section.
    pub(crate) fn flush(&mut self) {
        for i in 0..self.alloc.len() {
            if let Some(s) = self.alloc[i].take() {
                self.give_back(s);
            }
        }
        self.tiny = None;
        self.tiny_offset = 0;
    }

    /// Thread exit: flush, fold the counters into the heap, and leave its registry.
    pub(crate) fn retire(mut self: Box<Self>) {
        self.flush();
        self.heap.retire_cache(&self);
    }
}
