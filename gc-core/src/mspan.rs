//! `Span` (Go's mspan): a run of pages cut into objects of one size, with its allocation
//! and mark bitmaps kept beside the objects, never inside them.
//!
//! Its slots are `slot`'s: a header, then the value.
//!
//! Spans are shared through raw pointers and only ever borrowed shared: their mutable
//! state is atomics used with relaxed loads and stores (plain moves), written by one owner
//! at a time. Ownership of that state (`free_index`, `alloc_count`, setting alloc bits):
//! the one mcache that holds it (inside a mutator section), or the central list under its
//! lock, or the collector with the world stopped. Alloc bits are atomics because
//! `find_object` may read them from any thread; mark bits are written with the world
//! stopped, by the collector and its helper (`mgchelp`: then with `mark_shared`), and by
//! mutators between a cycle's slices (`mark_shared`).

use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use gc_types::{Func, Type};

use crate::mbitmap::{bitmap, for_each_set};
use crate::sizeclasses::PAGE_SIZE;

/// A span shared by raw pointer (spans are only borrowed shared; see mspan).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpanPtr(pub(crate) NonNull<Span>);

// SAFETY: spans are shared between threads by design; their mutable state is atomics with
// one writer at a time (module docs of mspan).
unsafe impl Send for SpanPtr {}
// SAFETY: a shared `SpanPtr` gives only copies of itself (it is `Copy`), and a copy may be
// sent (above): the collector's helper reads a snapshot's list of them (`mgchelp`).
unsafe impl Sync for SpanPtr {}

impl SpanPtr {
    #[inline]
    pub(crate) fn get(self) -> &'static Span {
        // SAFETY: a SpanPtr is made from a leaked box and freed only by the collector with
        // the world stopped (`mgcsweep::end`), after it is removed from every list, cache
        // and the page map.
        unsafe { self.0.as_ref() }
    }
}

/// A span class: size class and the noscan bit (Go's spanClass). Class 0 is a large
/// object in a span of its own.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct SpanClass(pub(crate) u8);

impl SpanClass {
    pub(crate) const fn new(class: usize, noscan: bool) -> SpanClass {
        SpanClass((class as u8) << 1 | noscan as u8)
    }
    pub(crate) const fn noscan(self) -> bool {
        self.0 & 1 == 1
    }
    pub(crate) const fn index(self) -> usize {
        self.0 as usize
    }
}

// Marking prefetches a span's first two lines (`mgcmark::Marker`): what it reads is there.
const _: () =
    assert!(core::mem::offset_of!(Span, spc) < 128 && core::mem::align_of::<Span>() == 64);

/// `Span::records`: finalizer records.
const SPECIALS: u8 = 1;
/// `Span::records`: cleanup records.
const CLEANUPS: u8 = 2;

/// The fields marking reads for every edge (`mgcmark::drain`: the span's range, the slot
/// index, the mark bitmap, the class) come first, in the struct's first two cache lines
/// (`repr(C)` keeps the order; the alignment keeps a span from straddling more lines),
/// which marking prefetches before it reads them.
#[repr(C, align(64))]
pub(crate) struct Span {
    /// The first page.
    pub(crate) base: *mut u8,
    /// The first slot: `base`, except in a large span of a value aligned to more than a
    /// page, where it is the last `HEADER` bytes of the first page (see `data_offset`).
    slot0: *mut u8,
    pub(crate) npages: usize,
    pub(crate) elem_size: usize,
    pub(crate) nelems: usize,
    div_magic: u64,
    mark_bits: Box<[AtomicU64]>,
    pub(crate) spc: SpanClass,
    free_index: AtomicUsize,
    /// Allocated objects as of the last refill, flush or sweep (not kept up to date by
    /// the fast path; see `recount`).
    alloc_count: AtomicUsize,
    /// Set once any object whose destructor runs user code was allocated here: a
    /// collection looks for such garbage (`mgcmark::mark_doomed`) only in these spans.
    /// (The name is older than `mdrop`: the sweeper used to run those destructors.)
    needs_sweep_drop: AtomicBool,
    alloc_bits: Box<[AtomicU64]>,
    /// Finalizer records of objects in this span, sorted by the address each was set on
    /// (Go's specials list). Locked by `set_finalizer`; the collector takes it with the
    /// world stopped.
    pub(crate) specials: crate::spin::SpinLock<Vec<Record>>,
    /// Which record lists hold anything: `SPECIALS`, `CLEANUPS` (one byte, so that the
    /// freeing path asks both in one load; lets the collector skip the locks).
    records: AtomicU8,
    /// Cleanup records of objects in this span (Go's cleanup specials), in the order they
    /// were added. Locked by `add_cleanup` and `Cleanup::stop`; the collector takes it
    /// with the world stopped.
    pub(crate) cleanups: crate::spin::SpinLock<Vec<CleanupRecord>>,
    /// Arena-map identity of the owning heap.
    pub(crate) heap_id: u64,
}

impl Span {
    /// A span of `npages` pages at `base` cut into slots of `elem_size` bytes, the first
    /// one `first` bytes in (0 but for over-aligned large objects).
    pub(crate) fn new(
        base: *mut u8,
        npages: usize,
        elem_size: usize,
        first: usize,
        spc: SpanClass,
        heap_id: u64,
    ) -> Span {
        let nelems = (npages * PAGE_SIZE - first) / elem_size;
        debug_assert!(
            first == 0 || nelems == 1,
            "fing::mspan: an offset first slot in a small span"
        );
        Span {
            base,
            slot0: base.wrapping_add(first),
            npages,
            elem_size,
            nelems,
            spc,
            div_magic: u64::from(u32::MAX / elem_size.min(u32::MAX as usize) as u32) + 1,
            free_index: AtomicUsize::new(0),
            alloc_count: AtomicUsize::new(0),
            needs_sweep_drop: AtomicBool::new(false),
            alloc_bits: bitmap(nelems),
            mark_bits: bitmap(nelems),
            specials: crate::spin::SpinLock::new(Vec::new()),
            records: AtomicU8::new(0),
            cleanups: crate::spin::SpinLock::new(Vec::new()),
            heap_id,
        }
    }

    /// Objects allocated in the span.
    pub(crate) fn alloc_count(&self) -> usize {
        self.alloc_count.load(Ordering::Relaxed)
    }

    /// Does the span have a free slot (as of the last `recount` or sweep)?
    pub(crate) fn has_free(&self) -> bool {
        self.alloc_count() < self.nelems
    }

    /// Counts the allocated objects from the bitmap and records it. The owner, when it
    /// gives the span back.
    pub(crate) fn recount(&self) -> usize {
        let n = self.alloc_count_bits();
        self.alloc_count.store(n, Ordering::Relaxed);
        n
    }

    /// Notes that an object needing the sweeper's destructor call lives here. The owner.
    #[inline]
    pub(crate) fn note_sweep_drop(&self) {
        if !self.needs_sweep_drop.load(Ordering::Relaxed) {
            self.needs_sweep_drop.store(true, Ordering::Relaxed);
        }
    }

    /// Must the sweeper visit this span's garbage?
    pub(crate) fn needs_sweep_drop(&self) -> bool {
        self.needs_sweep_drop.load(Ordering::Relaxed)
    }

    /// Allocated objects, counted from the bitmap.
    pub(crate) fn alloc_count_bits(&self) -> usize {
        self.alloc_bits
            .iter()
            .map(|w| w.load(Ordering::Relaxed).count_ones() as usize)
            .sum()
    }

    /// Bytes the span covers.
    pub(crate) fn bytes(&self) -> usize {
        self.npages * PAGE_SIZE
    }

    /// Index of the object slot containing `addr` (which must lie in the span).
    #[inline]
    pub(crate) fn index_of(&self, addr: usize) -> usize {
        let off = addr - self.base as usize;
        if self.nelems == 1 {
            0
        } else {
            // Go's divMagic: exact for every offset inside a small span (tested below).
            ((off as u64 * self.div_magic) >> 32) as usize
        }
    }

    #[inline]
    pub(crate) fn slot(&self, i: usize) -> *mut u8 {
        self.slot0.wrapping_add(i * self.elem_size)
    }

    #[inline]
    pub(crate) fn is_allocated(&self, i: usize) -> bool {
        self.alloc_bits[i / 64].load(Ordering::Relaxed) >> (i % 64) & 1 == 1
    }

    #[inline]
    pub(crate) fn is_marked(&self, i: usize) -> bool {
        self.mark_bits[i / 64].load(Ordering::Relaxed) >> (i % 64) & 1 == 1
    }

    /// The address of the word that holds slot `i`'s mark bit (for a prefetch; `i` may be
    /// out of range: then any address).
    #[inline]
    pub(crate) fn mark_word(&self, i: usize) -> *const u8 {
        self.mark_bits.as_ptr().wrapping_add(i / 64).cast::<u8>()
    }

    /// Sets the mark bit with an atomic read-modify-write; returns whether it was clear.
    /// For mutators between a cycle's slices (`mgcwork::shade`, black allocation), and the
    /// two threads of a shared drain (`mgcmark::drain_shared`), which
    /// may share a bitmap word with another thread's.
    #[inline]
    pub(crate) fn mark_shared(&self, i: usize) -> bool {
        let bit = 1u64 << (i % 64);
        self.mark_bits[i / 64].fetch_or(bit, Ordering::Relaxed) & bit == 0
    }

    /// Sets the mark bit; returns whether it was clear. Collector only, world stopped (no
    /// mutator marks then).
    #[inline]
    pub(crate) fn mark(&self, i: usize) -> bool {
        let w = &self.mark_bits[i / 64];
        let old = w.load(Ordering::Relaxed);
        let bit = 1u64 << (i % 64);
        if old & bit != 0 {
            return false;
        }
        w.store(old | bit, Ordering::Relaxed);
        true
    }

    /// Takes the next free slot (Go's nextFreeFast + nextFree): the owner only.
    #[inline]
    pub(crate) fn next_free(&self) -> Option<usize> {
        let mut fi = self.free_index.load(Ordering::Relaxed);
        while fi < self.nelems {
            let wi = fi / 64;
            let w = self.alloc_bits[wi].load(Ordering::Relaxed);
            let free = !w & (u64::MAX << (fi % 64));
            if free != 0 {
                let i = wi * 64 + free.trailing_zeros() as usize;
                if i >= self.nelems {
                    break;
                }
                self.alloc_bits[wi].store(w | 1 << (i % 64), Ordering::Relaxed);
                self.free_index.store(i + 1, Ordering::Relaxed);
                return Some(i);
            }
            fi = (wi + 1) * 64;
        }
        self.free_index.store(self.nelems, Ordering::Relaxed);
        None
    }

    /// Calls `f` with each allocated slot index.
    pub(crate) fn for_each_allocated(&self, f: impl FnMut(usize)) {
        for_each_set(&self.alloc_bits, f);
    }

    /// Does the span hold finalizer or cleanup records? (Its objects are then left to the
    /// collector: `mfree`.)
    #[inline]
    pub(crate) fn has_records(&self) -> bool {
        self.records.load(Ordering::Relaxed) != 0
    }

    /// Does `specials` hold anything?
    #[inline]
    pub(crate) fn has_specials(&self) -> bool {
        self.records.load(Ordering::Relaxed) & SPECIALS != 0
    }

    /// Does `cleanups` hold anything?
    #[inline]
    pub(crate) fn has_cleanups(&self) -> bool {
        self.records.load(Ordering::Relaxed) & CLEANUPS != 0
    }

    /// Says whether `specials` holds anything (with its lock held).
    pub(crate) fn set_has_specials(&self, any: bool) {
        self.set_flag(SPECIALS, any);
    }

    /// Says whether `cleanups` holds anything (with its lock held).
    pub(crate) fn set_has_cleanups(&self, any: bool) {
        self.set_flag(CLEANUPS, any);
    }

    /// The two lists have locks of their own: each flag is set or cleared without losing
    /// the other's.
    fn set_flag(&self, flag: u8, on: bool) {
        if on {
            self.records.fetch_or(flag, Ordering::Relaxed);
        } else {
            self.records.fetch_and(!flag, Ordering::Relaxed);
        }
    }

    /// Is any object marked? Collector only.
    pub(crate) fn any_marked(&self) -> bool {
        self.mark_bits
            .iter()
            .any(|m| m.load(Ordering::Relaxed) != 0)
    }

    /// Is any allocated object unmarked? Collector only.
    pub(crate) fn any_unmarked(&self) -> bool {
        self.alloc_bits
            .iter()
            .zip(self.mark_bits.iter())
            .any(|(a, m)| a.load(Ordering::Relaxed) & !m.load(Ordering::Relaxed) != 0)
    }

    /// Clears every mark bit (an abandoned cycle). Collector only.
    pub(crate) fn clear_marks(&self) {
        for m in self.mark_bits.iter() {
            m.store(0, Ordering::Relaxed);
        }
    }

    /// End of sweep (Go's trick): the mark bits become the alloc bits, the marks clear.
    /// Returns the live objects, and the allocated ones freed by this. Whoever sweeps the
    /// span (`MHeap::sweep_span`): the collector, or a thread holding `all_spans`.
    pub(crate) fn finish_sweep(&self) -> (usize, usize) {
        let (mut live, mut freed) = (0, 0);
        for (a, m) in self.alloc_bits.iter().zip(self.mark_bits.iter()) {
            let mw = m.load(Ordering::Relaxed);
            live += mw.count_ones() as usize;
            freed += (a.load(Ordering::Relaxed) & !mw).count_ones() as usize;
            a.store(mw, Ordering::Relaxed);
            m.store(0, Ordering::Relaxed);
        }
        self.alloc_count.store(live, Ordering::Relaxed);
        self.free_index.store(0, Ordering::Relaxed);
        (live, freed)
    }
}

/// A finalizer waiting for its object to die (Go's finalizer special), and once its
/// object is found dead, the same 48 bytes as an entry of the queue (Go's finalizer),
/// which then holds one count on the object. The object itself is not stored: it is the
/// slot of the span that `ptr` lies in (row 5 of `set_finalizer`'s check table puts `ptr` at the start of the object's
/// value, or inside a tiny block).
pub(crate) struct Record {
    /// The address the finalizer was set on: raw, as a record must not keep its object
    /// alive.
    pub(crate) ptr: *const u8,
    pub(crate) func: Func,
    /// The object's pointer type.
    pub(crate) obj_ty: &'static Type,
}

// SAFETY: `ptr` is an address inside a heap object, only read; `Func` is Send; a queued
// entry's count on its object is a handle's, and handles to Send + Sync objects may move
// between threads (row 11 checked the object type).
unsafe impl Send for Record {}

// The queue's blocks hold 85 of them; set, resurrection and the queue move them whole.
const _: () = assert!(core::mem::size_of::<Record>() == 48);

/// A cleanup (`Gc::add_cleanup`) of the object in whose slot `ptr` lies. Like a
/// finalizer record it names its object by raw address, so it does not keep it alive; its
/// function, which owns the cleanup's argument, holds counted handles, which are roots.
pub(crate) struct CleanupRecord {
    /// The address the cleanup was added on (any address inside the object).
    pub(crate) ptr: *const u8,
    /// The cleanup's identity for `Cleanup::stop`, unique in the process, never zero.
    pub(crate) id: u64,
    /// The cleanup with its argument: a one-parameter closure taking `()`.
    pub(crate) func: Func,
}

// SAFETY: as for `Record`: `ptr` is only compared and never read through; `Func` is Send.
unsafe impl Send for CleanupRecord {}

// One layout with `Record`: a run of records becomes a run of queue entries in place.
const _: () = assert!(
    core::mem::size_of::<CleanupRecord>() == core::mem::size_of::<Record>()
        && core::mem::align_of::<CleanupRecord>() == core::mem::align_of::<Record>()
);

impl Record {
    /// The header of the object this record's address lies in, in span `s`.
    pub(crate) fn object(&self, s: &Span) -> NonNull<u8> {
        NonNull::new(s.slot(s.index_of(self.ptr as usize)))
            .expect("fing::mfinal: a record outside its span")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sizeclasses::TABLE;

    #[test]
    fn div_magic_is_exact_for_every_offset_of_every_class() {
        for c in 1..TABLE.len {
            let k = TABLE.classes[c];
            let base = core::ptr::without_provenance_mut::<u8>(0x10_0000);
            let s = Span::new(base, k.npages, k.size, 0, SpanClass::new(c, false), 0);
            // Every word offset natively; a prime stride under Miri (pure arithmetic).
            let step = if cfg!(miri) { 4099 } else { 8 };
            for off in (0..s.nelems * k.size).step_by(step) {
                assert_eq!(
                    s.index_of(base as usize + off),
                    off / k.size,
                    "class {c} off {off}"
                );
            }
        }
    }

    #[test]
    fn next_free_and_sweep_bits() {
        let s = Span::new(
            core::ptr::without_provenance_mut(0x10_0000),
            1,
            48,
            0,
            SpanClass::new(5, false),
            0,
        );
        assert_eq!(s.nelems, 170);
        let got: Vec<usize> = (0..170).map(|_| s.next_free().unwrap()).collect();
        assert_eq!(got, (0..170).collect::<Vec<_>>());
        assert_eq!(s.next_free(), None);
        for i in (0..170).step_by(3) {
            s.mark(i);
        }
        let mut garbage = 0;
        s.for_each_allocated(|i| garbage += usize::from(!s.is_marked(i)));
        assert_eq!(garbage, 170 - 57);
        assert_eq!(s.finish_sweep().0, 57);
        assert_eq!(s.next_free(), Some(1));
        assert_eq!(s.next_free(), Some(2));
        assert_eq!(s.next_free(), Some(4));
    }
}
