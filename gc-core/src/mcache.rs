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

    #[inline]
    fn count(&self, bytes: usize) {
        // Only the owner writes: a plain increment, visible to readers eventually.
        self.mallocs
            .store(self.mallocs.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        self.alloc_bytes.store(
            self.alloc_bytes.load(Ordering::Relaxed) + bytes as u64,
            Ordering::Relaxed,
        );
    }

    /// A fresh slot of span class `spc`: returns its address (the header goes there).
    #[inline]
    pub(crate) fn alloc_small(&mut self, spc: SpanClass) -> Option<NonNull<u8>> {
        if let Some(s) = self.alloc[spc.index()] {
            let span = s.get();
            if let Some(i) = span.next_free() {
                self.count(span.elem_size);
                return NonNull::new(span.slot(i));
            }
        }
        self.refill(spc)
    }

    #[cold]
    fn refill(&mut self, spc: SpanClass) -> Option<NonNull<u8>> {
        let s = self.heap.take_span(spc)?;
        self.alloc[spc.index()] = Some(s);
        let span = s.get();
        let i = span
            .next_free()
            .expect("fing::mcache: refilled span has no free slot");
        self.count(span.elem_size);
        NonNull::new(span.slot(i))
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
        let slot = self.alloc_small(SpanClass::new(class, true))?;
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
        for s in self.alloc.iter_mut() {
            if let Some(s) = s.take() {
                self.heap.return_span(s);
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
