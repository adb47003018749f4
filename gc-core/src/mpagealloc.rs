//! The page heap (Go's `pageAlloc` and `heapArena`s, in Go's mheap.go and mpagealloc.go):
//! arenas of OS memory, free page runs inside them, and the arena map that turns any
//! address into its arena, span and object (`find_object`). A heap's state (`mheap`)
//! owns one `PageHeap`; the arena map is the process's.
//!
//! Arenas are `ARENA_SIZE`-aligned reservations (bigger ones for huge objects); the arena
//! map, one entry per `ARENA_SIZE` of the 47-bit address space, is a lazily mapped, zeroed
//! table (16 MiB of address space, touched only where arenas are). Each arena has a span
//! pointer per page: every page of an in-use span points at the span, every other page is
//! null. Free runs live per arena (never spanning two), coalesce when freed, and are given
//! back to the OS at the end of a collection once they have stayed free through a whole
//! cycle (`release_free`).
//!
//! Locking: a heap's `PageHeap` sits behind its mutex; the arena map's entries and the
//! per-page span pointers are atomics, written under that mutex or with the world stopped,
//! read from anywhere.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, Ordering};
use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::mem;
use crate::mspan::Span;
use crate::sizeclasses::PAGE_SIZE;
use crate::slot::{HEADER, MAX_ALIGN};

/// Arenas are 64 MiB (`1 << 26`): large enough that a heap of a few GiB needs a few dozen
/// reservations and the map stays at 2^21 entries (16 MiB of address space), small enough
/// that a small heap reserves little. A value aligned to up to half an arena fits one
/// (`MAX_ALIGN`).
pub(crate) const ARENA_SHIFT: usize = 26;
pub(crate) const ARENA_SIZE: usize = 1 << ARENA_SHIFT;
const ADDR_BITS: usize = 47;
const _: () = assert!(ADDR_BITS <= gc_types::word::TAG_SHIFT as usize);
const _: () = assert!(MAX_ALIGN <= ARENA_SIZE / 2);
const MAP_LEN: usize = 1 << (ADDR_BITS - ARENA_SHIFT);

pub(crate) struct Arena {
    pub(crate) base: *mut u8,
    pub(crate) heap_id: u64,
    spans: Box<[AtomicPtr<Span>]>,
}

/// What a free run's pages are (see `PageHeap::release_free`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Pages {
    /// Freed since the last collection ended: resident, and likely to be filled again
    /// before the next one.
    Fresh,
    /// Free through a whole cycle, still resident.
    Aged,
    /// Given back to the OS (they read as zero and cost no resident memory).
    Released,
}

/// Free runs of one arena: start page index -> (pages, what they are).
type FreeRuns = BTreeMap<usize, (usize, Pages)>;

fn arena_map() -> &'static [AtomicPtr<Arena>] {
    static MAP: OnceLock<usize> = OnceLock::new();
    let bytes = MAP_LEN * core::mem::size_of::<AtomicPtr<Arena>>();
    let p = *MAP.get_or_init(|| {
        mem::reserve_aligned(bytes)
            .expect("fing: cannot reserve the arena map")
            .as_ptr() as usize
    });
    // SAFETY: `p` is a zeroed mapping of `bytes` bytes that lives forever; a zeroed
    // `AtomicPtr` is a valid null pointer.
    unsafe { core::slice::from_raw_parts(p as *const AtomicPtr<Arena>, MAP_LEN) }
}

/// The arena containing `addr`, if any heap has one there.
#[inline]
pub(crate) fn arena_of(addr: usize) -> Option<&'static Arena> {
    let i = addr >> ARENA_SHIFT;
    if i >= MAP_LEN {
        return None;
    }
    let a = arena_map()[i].load(Ordering::Acquire);
    // SAFETY: arenas are never freed once published in the map.
    NonNull::new(a).map(|a| unsafe { a.as_ref() })
}

/// `arena_of`, remembering the last arena found (any address within `ARENA_SIZE` of its
/// base is in it; larger arenas fall back to the map past that).
#[inline]
pub(crate) fn arena_of_cached(
    addr: usize,
    last: &mut Option<&'static Arena>,
) -> Option<&'static Arena> {
    if let Some(a) = *last {
        if addr.wrapping_sub(a.base as usize) < ARENA_SIZE {
            return Some(a);
        }
    }
    let a = arena_of(addr)?;
    *last = Some(a);
    Some(a)
}

impl Arena {
    /// The in-use span containing `addr`, an address in this arena, if any.
    #[inline]
    pub(crate) fn span_at(&self, addr: usize) -> Option<&'static Span> {
        let page = (addr - self.base as usize) / PAGE_SIZE;
        let s = self.spans.get(page)?.load(Ordering::Acquire);
        // SAFETY: a span pointer in the map points at a live span: the sweep clears it
        // before it frees the span, and frees spans only with the world stopped (at its
        // end, `mgcsweep::end`), so a pointer read inside a section or a stop stays valid
        // until that section or stop ends.
        NonNull::new(s).map(|s| unsafe { s.as_ref() })
    }
}

/// The in-use span containing `addr`, if any.
#[inline]
pub(crate) fn span_of(addr: usize) -> Option<&'static Span> {
    arena_of(addr)?.span_at(addr)
}

/// Go's `findObject`: the span, slot index and header address of the allocated object
/// whose slot contains `addr`. An address inside an object's header is the first byte past
/// the end of the previous object's value, so it belongs to that previous object (never
/// to the next one): a handle to one past the end of an object keeps that object, not its
/// neighbour.
pub(crate) fn find_object(addr: usize) -> Option<(&'static Span, usize, *mut u8)> {
    let s = span_of(addr)?;
    let mut i = s.index_of(addr);
    if i >= s.nelems {
        return None;
    }
    // Before the first slot of an over-aligned large object's span: no object's.
    let off = addr.checked_sub(s.slot(i) as usize)?;
    if off < HEADER {
        // The slot's first byte is one past the end of the previous slot; the rest of the
        // header is no value's address.
        if off == 0 && i > 0 {
            i -= 1;
        } else {
            return None;
        }
    }
    s.is_allocated(i).then(|| (s, i, s.slot(i)))
}

/// A heap's pages.
pub(crate) struct PageHeap {
    heap_id: u64,
    arenas: Vec<(&'static Arena, FreeRuns)>,
    /// Bytes reserved from the OS.
    pub(crate) sys: usize,
    /// Bytes in free runs given back to the OS.
    pub(crate) released: usize,
    /// Bytes of pages in spans (what `HeapConfig::max_heap` limits).
    pub(crate) in_use: usize,
}

// SAFETY: the arenas are owned by the page heap (and, once published, by the process); all
// access goes through the heap's mutex or happens with the world stopped.
unsafe impl Send for PageHeap {}

impl PageHeap {
    pub(crate) fn new(heap_id: u64) -> PageHeap {
        PageHeap {
            heap_id,
            arenas: Vec::new(),
            sys: 0,
            released: 0,
            in_use: 0,
        }
    }

    fn grow(&mut self, npages: usize) -> Option<usize> {
        let size = (npages * PAGE_SIZE).next_power_of_two().max(ARENA_SIZE);
        let base = mem::reserve_aligned(size)?.as_ptr();
        // The arena map and the handle word (gc_types::word) both take addresses to fit
        // in `ADDR_BITS`; user-space addresses do on every target fing supports.
        assert!(
            (base as usize).checked_add(size).is_some_and(|end| end <= 1 << ADDR_BITS),
            "fing::Heap: the OS placed an arena at {base:p}, past the 2^{ADDR_BITS} bytes handles can address"
        );
        let pages = size / PAGE_SIZE;
        let mut free = BTreeMap::new();
        free.insert(0, (pages, Pages::Released));
        let arena: &'static Arena = Box::leak(Box::new(Arena {
            base,
            heap_id: self.heap_id,
            spans: (0..pages)
                .map(|_| AtomicPtr::new(core::ptr::null_mut()))
                .collect(),
        }));
        let map = arena_map();
        for i in 0..size >> ARENA_SHIFT {
            map[(base as usize >> ARENA_SHIFT) + i]
                .store((arena as *const Arena).cast_mut(), Ordering::Release);
        }
        self.arenas.push((arena, free));
        self.sys += size;
        self.released += size;
        Some(self.arenas.len() - 1)
    }

    /// Takes `npages` contiguous pages. `None` if the OS has no more memory.
    pub(crate) fn alloc(&mut self, npages: usize) -> Option<*mut u8> {
        let p = self.alloc_pages(npages, 1)?;
        self.in_use += npages * PAGE_SIZE;
        Some(p)
    }

    /// Takes `npages` contiguous pages whose second page starts at a multiple of `align`
    /// (a power of two above the page size, at most `MAX_ALIGN`): a large object aligned
    /// to more than a page has its header end the first page (see `mspan::data_offset`).
    pub(crate) fn alloc_aligned(&mut self, npages: usize, align: usize) -> Option<*mut u8> {
        debug_assert!(align.is_power_of_two() && align > PAGE_SIZE && npages >= 2);
        let p = self.alloc_pages(npages, align / PAGE_SIZE)?;
        self.in_use += npages * PAGE_SIZE;
        Some(p)
    }

    /// `npages` pages whose second page's index in its arena is a multiple of `step` (1:
    /// any run; arenas are aligned to at least `ARENA_SIZE`, so an index multiple is an
    /// address multiple).
    fn alloc_pages(&mut self, npages: usize, step: usize) -> Option<*mut u8> {
        for (arena, free) in self.arenas.iter_mut() {
            if let Some(p) = Self::take(arena, free, npages, step, &mut self.released) {
                return Some(p);
            }
        }
        let i = self.grow(if step == 1 { npages } else { npages + step })?;
        let (arena, free) = &mut self.arenas[i];
        Self::take(arena, free, npages, step, &mut self.released)
    }

    /// The first place for `npages` pages (see `alloc_pages`) in the free runs of one
    /// arena, taken out of its run (what is left on either side stays free).
    fn take(
        arena: &Arena,
        free: &mut FreeRuns,
        npages: usize,
        step: usize,
        released: &mut usize,
    ) -> Option<*mut u8> {
        // The first page at or after `start` whose next page's index is a multiple of
        // `step` (`start` itself when `step` is 1).
        let place = |start: usize| (start + 1).next_multiple_of(step) - 1;
        let (&start, &(n, rel)) = free
            .iter()
            .find(|(&start, &(n, _))| place(start) + npages <= start + n)?;
        let at = place(start);
        free.remove(&start);
        if at > start {
            free.insert(start, (at - start, rel));
        }
        if start + n > at + npages {
            free.insert(at + npages, (start + n - at - npages, rel));
        }
        if rel == Pages::Released {
            *released -= npages * PAGE_SIZE;
        }
        Some(arena.base.wrapping_add(at * PAGE_SIZE))
    }

    /// Publishes `span` as the owner of its pages.
    pub(crate) fn set_span(&self, span: &Span, ptr: *mut Span) {
        let arena = arena_of(span.base as usize).expect("fing::mheap: span outside the heap");
        let first = (span.base as usize - arena.base as usize) / PAGE_SIZE;
        for p in &arena.spans[first..first + span.npages] {
            p.store(ptr, Ordering::Release);
        }
    }

    /// Returns a span's pages (after it was unpublished with a null `set_span`).
    pub(crate) fn free(&mut self, base: *mut u8, npages: usize) {
        self.in_use -= npages * PAGE_SIZE;
        let a = arena_of(base as usize).expect("fing::mheap: free outside the heap");
        let (arena, free) = self
            .arenas
            .iter_mut()
            .find(|(x, _)| core::ptr::eq(*x, a))
            .expect("fing::mheap: free of another heap's pages");
        let mut start = (base as usize - arena.base as usize) / PAGE_SIZE;
        let mut n = npages;
        if let Some((&ps, &(pn, prel))) = free.range(..start).next_back() {
            if ps + pn == start {
                free.remove(&ps);
                if prel == Pages::Released {
                    self.released -= pn * PAGE_SIZE;
                }
                start = ps;
                n += pn;
            }
        }
        if let Some(&(nn, nrel)) = free.get(&(start + n)) {
            free.remove(&(start + n));
            if nrel == Pages::Released {
                self.released -= nn * PAGE_SIZE;
            }
            n += nn;
        }
        // A merged run is fresh: its released part reads as zero, and is given back
        // again with the rest once the run has aged.
        free.insert(start, (n, Pages::Fresh));
    }

    /// Gives free runs back to the OS (Go's scavenger, run at the end of each collection).
    /// A run freed by this collection is kept for one cycle: the pages a burst of garbage
    /// leaves are what the next burst of allocation fills, and giving them back now would
    /// only fault them in again (in the 1M-finalizer cycle, a third of the allocation
    /// time). So, like Go's background scavenger, which gives pages back some time after
    /// they were freed, this gives back runs that stayed free through a whole cycle,
    /// keeping up to `retain` bytes of free resident pages (counting the fresh ones): the
    /// pacer will fill about that much before the next cycle.
    ///
    /// With `all` (a retired heap), every free run goes back, fresh or not.
    pub(crate) fn release_free(&mut self, retain: usize, all: bool) {
        let mut kept: usize = self
            .arenas
            .iter()
            .flat_map(|(_, free)| free.values())
            .filter(|run| run.1 == Pages::Fresh)
            .map(|run| run.0 * PAGE_SIZE)
            .sum();
        for (arena, free) in self.arenas.iter_mut() {
            for (&start, run) in free.iter_mut() {
                match run.1 {
                    Pages::Released => continue,
                    Pages::Fresh if !all => {
                        run.1 = Pages::Aged;
                        continue;
                    }
                    Pages::Fresh | Pages::Aged => {}
                }
                let bytes = run.0 * PAGE_SIZE;
                if kept + bytes <= retain {
                    kept += bytes;
                    continue;
                }
                // SAFETY: a free run holds no object and lies inside the arena's mapping.
                unsafe { mem::release(arena.base.wrapping_add(start * PAGE_SIZE), bytes) };
                run.1 = Pages::Released;
                self.released += bytes;
            }
        }
    }
}
