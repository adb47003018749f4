//! `MCache` (Go's mcache): a thread's allocation cache for one heap. One span per span
//! class to allocate from, the slots this thread freed when their counts fell to zero
//! (`mfree`), and the tiny block. The fast path (`alloc_small`) touches
//! only this cache and its spans: no lock, no atomic read-modify-write.
//!
//! Freed slots: each class keeps a list of slots this thread freed, linked through the
//! word after each slot's header; allocation takes from it first. A listed slot stays
//! allocated in its span's bitmap, with a header that says it is dead (count zero, type
//! [`FREED`](crate::slot::FREED)): the collector sees an object that nothing points to,
//! with no edges and no destructor. A collection forgets every list when it flushes the
//! caches, and its sweep frees the listed slots with the rest of the garbage.
//!
//! Ownership: the cache is reached through its thread's `Local`, inside a mutator section,
//! and by the collector with the world stopped (through the cache registry below, to
//! flush it).
//! The two never overlap: the collector owns the world only when no section is active.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use std::sync::{Mutex, MutexGuard};

use crate::mheap::MHeap;
use crate::mspan::SpanPtr;
use crate::mspan::{Span, SpanClass};
use crate::mstats::{Counters, Totals};
use crate::sizeclasses::TABLE;
use crate::slot::{Header, HEADER};

/// Bytes of a tiny block's payload (Go's maxTinySize).
pub(crate) const TINY_SIZE: usize = 16;

/// Counts a tiny block takes in advance when an object of `size` bytes aligned to `align`
/// starts it: as many objects of that size as the block can hold (a loop allocating one
/// type fills the block exactly, and nothing is added or taken back atomically).
const fn tiny_reserve(size: usize, align: usize) -> u32 {
    ((TINY_SIZE - size) / size.next_multiple_of(align) + 1) as u32
}

pub(crate) struct MCache {
    pub(crate) heap: &'static MHeap,
    /// Per span class: the span to allocate from, and the freed slots.
    alloc: Vec<ClassCache>,
    /// Header of the current tiny block, the next free offset in its payload, the objects
    /// handed out from it, and the counts its count holds for them. The block starts with
    /// a reserve (`tiny_reserve`), so a tiny allocation adds nothing atomically until
    /// smaller objects outnumber it (then each adds one); the part not handed out is
    /// taken back when the block stops being current (`retire_tiny`), which every
    /// collection does (`flush`) before it counts.
    tiny: Option<NonNull<Header>>,
    tiny_offset: usize,
    tiny_used: u32,
    tiny_reserved: u32,
    /// Objects and bytes allocated through this cache (read by `stats()` from anywhere).
    pub(crate) mallocs: AtomicU64,
    pub(crate) alloc_bytes: AtomicU64,
    /// The heap's id (a copy: the freeing path compares it per object).
    pub(crate) heap_id: u64,
    /// A cycle of this heap is in progress: allocation is black (each slot handed out
    /// from a span is marked), and so is a slot put on a free list (`mgcwork`). Set and
    /// cleared with the world stopped (`set_black`); a cache made meanwhile reads it.
    black: bool,
}

#[derive(Default)]
struct ClassCache {
    span: Option<SpanPtr>,
    /// The first freed slot (its header's address).
    free: Option<NonNull<u8>>,
    /// Slots on `free`.
    listed: u64,
    /// Slots listed ever, less those still listed when a collection forgot the list (its
    /// sweep counts their frees); slots taken from the list ever. Owner-written counters
    /// that `stats()` reads.
    freed: AtomicU64,
    reused: AtomicU64,
}

/// The free list's link in a listed slot: the word after its header.
#[inline]
fn link(slot: NonNull<u8>) -> *mut Option<NonNull<u8>> {
    slot.as_ptr().wrapping_add(HEADER).cast()
}

/// Adds `by` to an owner-written counter (a plain load and store).
#[inline]
fn bump(c: &AtomicU64, by: u64) {
    c.store(
        c.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

impl MCache {
    pub(crate) fn new(heap: &'static MHeap) -> MCache {
        MCache {
            heap,
            alloc: (0..2 * TABLE.len).map(|_| ClassCache::default()).collect(),
            tiny: None,
            tiny_offset: 0,
            tiny_used: 0,
            tiny_reserved: 0,
            mallocs: AtomicU64::new(0),
            alloc_bytes: AtomicU64::new(0),
            heap_id: heap.id,
            black: crate::mheap::cycling() == heap.id,
        }
    }

    /// What this cache allocated and freed: slots of the spans it took, and slots taken
    /// from and put on its free lists.
    pub(crate) fn totals(&self) -> Totals {
        let mut t = Totals {
            mallocs: self.mallocs.load(Ordering::Relaxed),
            bytes: self.alloc_bytes.load(Ordering::Relaxed),
            ..Totals::default()
        };
        for (i, c) in self.alloc.iter().enumerate() {
            let size = TABLE.classes[i >> 1].size as u64;
            let reused = c.reused.load(Ordering::Relaxed);
            let freed = c.freed.load(Ordering::Relaxed);
            t += Totals {
                mallocs: reused,
                bytes: reused * size,
                frees: freed,
                free_bytes: freed * size,
            };
        }
        t
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
    /// `sweep_drop`: the object's destructor runs user code (marks the span).
    ///
    /// Counting is Go's: a span's free slots count as allocated when the cache takes the
    /// span, and the ones left unused are taken back when it gives the span back, so the
    /// fast path counts nothing.
    #[inline]
    pub(crate) fn alloc_small(&mut self, spc: SpanClass, sweep_drop: bool) -> Option<NonNull<u8>> {
        let c = &mut self.alloc[spc.index()];
        if let Some(slot) = c.free {
            // SAFETY: a listed slot holds the next one in the word after its header
            // (`push_free`), and this cache owns its list.
            c.free = unsafe { link(slot).read() };
            c.listed -= 1;
            bump(&c.reused, 1);
            if sweep_drop {
                note_sweep_drop(slot);
            }
            return Some(slot);
        }
        if let Some(s) = c.span {
            let span = s.get();
            if let Some(i) = span.next_free() {
                if sweep_drop {
                    span.note_sweep_drop();
                }
                if self.black {
                    span.mark_shared(i);
                }
                return NonNull::new(span.slot(i));
            }
        }
        self.refill(spc, sweep_drop)
    }

    #[cold]
    fn refill(&mut self, spc: SpanClass, sweep_drop: bool) -> Option<NonNull<u8>> {
        if let Some(old) = self.alloc[spc.index()].span.take() {
            self.give_back(old);
        }
        let s = self.heap.take_span(spc)?;
        self.alloc[spc.index()].span = Some(s);
        let span = s.get();
        self.count((span.nelems - span.alloc_count()) as i64, span.elem_size);
        let i = span
            .next_free()
            .expect("fing::mcache: refilled span has no free slot");
        if sweep_drop {
            span.note_sweep_drop();
        }
        if self.black {
            span.mark_shared(i);
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
    /// The block's count already includes the new handle (see `tiny`).
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
                self.tiny_used += 1;
                if self.tiny_used > self.tiny_reserved {
                    // SAFETY: the block is allocated while it is current (a collection
                    // retires it before it sweeps).
                    unsafe { h.as_ref() }.count.fetch_add(1, Ordering::Relaxed);
                    self.tiny_reserved += 1;
                }
                let p = h.as_ptr().cast::<u8>().wrapping_add(HEADER + off);
                return Some((h, NonNull::new(p)?));
            }
        }
        let class = crate::sizeclasses::size_to_class(HEADER + TINY_SIZE);
        let slot = self.alloc_small(SpanClass::new(class, true), false)?;
        self.retire_tiny();
        let h = slot.cast::<Header>();
        let reserve = tiny_reserve(size, align);
        // SAFETY: `slot` is a fresh slot of at least HEADER + TINY_SIZE bytes, owned by this
        // cache until published; the block starts with the reserve as its count and no
        // type.
        unsafe {
            h.as_ptr().write(Header {
                count: core::sync::atomic::AtomicU32::new(reserve),
                gc_refs: core::sync::atomic::AtomicU32::new(0),
                ty: core::sync::atomic::AtomicPtr::new(core::ptr::null_mut()),
            })
        };
        self.tiny = Some(h);
        self.tiny_offset = size;
        self.tiny_used = 1;
        self.tiny_reserved = reserve;
        Some((h, NonNull::new(slot.as_ptr().wrapping_add(HEADER))?))
    }

    /// The current tiny block stops being current: the reserve not handed out comes off
    /// its count (which may reach zero: the sweep frees it then).
    fn retire_tiny(&mut self) {
        if let Some(h) = self.tiny.take() {
            let unused = self.tiny_reserved - self.tiny_used;
            if unused > 0 {
                // SAFETY: the block is allocated: its count holds the reserve until this.
                unsafe { h.as_ref() }
                    .count
                    .fetch_sub(unused, Ordering::Release);
            }
        }
        self.tiny_offset = 0;
        self.tiny_used = 0;
        self.tiny_reserved = 0;
    }

    /// Lists a slot of span `s` whose object was freed at count zero (its header already
    /// says so: see the module docs). During a cycle the slot is marked: a listed slot is
    /// allocated, and black like every slot allocation hands out (`mgcwork`).
    ///
    /// # Safety
    /// `slot` must be the start of an allocated slot of `s`, a small span of this cache's
    /// heap with slots at least `HEADER + 8` bytes long, whose object is dead and
    /// unreachable, with no other owner (no list, no queue entry that will use it).
    #[inline(always)]
    pub(crate) unsafe fn push_free(&mut self, s: &Span, slot: NonNull<u8>) {
        if self.black {
            s.mark_shared(s.index_of(slot.as_ptr() as usize));
        }
        let c = &mut self.alloc[s.spc.index()];
        // SAFETY: the caller's contract: the word after the header is ours to write.
        unsafe { link(slot).write(c.free) };
        c.free = Some(slot);
        c.listed += 1;
        bump(&c.freed, 1);
    }

    /// Gives every cached span back to the heap's central lists, forgets the freed slots
    /// (the sweep frees them: their frees are counted there) and the tiny block (Go's
    /// releaseAll). Collector (world stopped) or the owner inside a section.
    pub(crate) fn flush(&mut self) {
        for i in 0..self.alloc.len() {
            let c = &mut self.alloc[i];
            c.free = None;
            let listed = core::mem::take(&mut c.listed);
            bump(&c.freed, listed.wrapping_neg());
            if let Some(s) = self.alloc[i].span.take() {
                self.give_back(s);
            }
        }
        self.retire_tiny();
    }

    /// Allocation becomes black, or stops being so (see `black`). World stopped.
    pub(crate) fn set_black(&mut self, on: bool) {
        self.black = on;
    }

    /// Thread exit: flush, fold the counters into the heap, and leave its registry.
    pub(crate) fn retire(&mut self) {
        self.flush();
        // Both locks at once, in order: `stats()` sees these totals in `base` or in the
        // registry, never in both or neither.
        let mut k = crate::mheap::lock(&self.heap.counters);
        let mut r = registry();
        k.base += self.totals();
        r.retain(|p| !core::ptr::eq(p.as_ptr(), self));
    }
}

/// Every thread cache of every heap, for the collector (which flushes a heap's caches with
/// the world stopped) and `stats()` (which sums their counters). Go reaches its mcaches
/// through its Ps; fing's caches belong to threads it does not know, so each registers
/// here on first use and leaves when it retires. A registered cache lives until then.
/// Lock order: after a heap's `counters`, before its `all_spans`.
struct Registry(Mutex<Vec<NonNull<MCache>>>);

// SAFETY: the pointers are only dereferenced by the collector with the world stopped (no
// owner is in a section then), or for the counters, which are atomics; a cache leaves the
// registry, under its lock, before it is freed.
unsafe impl Sync for Registry {}

static REGISTRY: Registry = Registry(Mutex::new(Vec::new()));

fn registry() -> MutexGuard<'static, Vec<NonNull<MCache>>> {
    // Every update completes before unlocking: poisoning is ignored.
    REGISTRY.0.lock().unwrap_or_else(|e| e.into_inner())
}

/// This thread's cache for `heap` among `caches` (made and registered on first use).
#[inline(always)]
#[allow(clippy::vec_box)] // the boxes keep each cache's address: the registry points at it
pub(crate) fn cache<'l>(heap: &'static MHeap, caches: &'l mut Vec<Box<MCache>>) -> &'l mut MCache {
    // The heap allocated from last is first: a thread that has used many heaps (a test
    // per heap) does not search them all on every allocation. The caches are boxed, so
    // reordering moves no cache (the registry points at them).
    if caches.first().is_some_and(|c| c.heap_id == heap.id) {
        return &mut caches[0];
    }
    cache_slow(heap, caches)
}

/// `cache` when this heap's is not first: found and moved first, or made.
#[cold]
#[inline(never)]
#[allow(clippy::vec_box)]
fn cache_slow<'l>(heap: &'static MHeap, caches: &'l mut Vec<Box<MCache>>) -> &'l mut MCache {
    match caches.iter().skip(1).position(|c| c.heap_id == heap.id) {
        Some(i) => caches.swap(0, i + 1),
        None => {
            let mut c = Box::new(MCache::new(heap));
            registry().push(NonNull::from(&mut *c));
            caches.push(c);
            let last = caches.len() - 1;
            caches.swap(0, last);
        }
    }
    &mut caches[0]
}

/// Flushes every cache of `heap` (`MCache::flush`), and makes their allocation black or
/// not (`black`): the first and last steps of a cycle.
///
/// # Safety
/// The world is stopped, by this thread.
pub(crate) unsafe fn flush_all(heap: &MHeap, black: bool) {
    let caches: Vec<NonNull<MCache>> = registry()
        .iter()
        .copied()
        // SAFETY: as in `totals`.
        .filter(|c| unsafe { c.as_ref() }.heap_id == heap.id)
        .collect();
    for c in caches {
        // SAFETY: the world is stopped (the caller's contract), so no cache's owner is
        // inside a section, and a registered cache lives until it retires (which needs a
        // section).
        let c = unsafe { &mut *c.as_ptr() };
        c.flush();
        c.set_black(black);
    }
}

/// Objects and bytes `heap` allocated and freed ever, over every cache (live and retired),
/// large objects and sweeps; `k` is its counters, locked.
pub(crate) fn totals(heap: &MHeap, k: &Counters) -> Totals {
    let mut t = k.base;
    t.mallocs += heap.large_mallocs.load(Ordering::Relaxed);
    for c in registry().iter() {
        // SAFETY: registered caches live until they retire, which removes them from the
        // registry under this lock; the counters are atomics.
        let c = unsafe { c.as_ref() };
        if c.heap_id == heap.id {
            t += c.totals();
        }
    }
    t
}

/// A reused slot will hold an object whose destructor runs user code: its span must say
/// so.
#[cold]
fn note_sweep_drop(slot: NonNull<u8>) {
    crate::mpagealloc::span_of(slot.as_ptr() as usize)
        .expect("fing::mcache: a listed slot lies in no span")
        .note_sweep_drop();
}
