//! Freeing at count zero: a mutator frees an object when the last handle to it goes, as
//! `Rc`, `rust-cc` and `dumpster` do. The collector still finds what this leaves: cycles,
//! and the objects listed below.
//!
//! Why it is sound: an object's count counts every handle, those stored inside heap
//! objects too. At zero nothing refers to the object, and no handle to it can be made
//! again, because a clone needs a handle and a finalizer's resurrection needs a record.
//! The decrement is in a mutator section, so no collector is counting at the same time.
//! The collector's own drops never come here: it leaves an object whose count reaches zero
//! to its sweep.
//!
//! Two kinds of object die here:
//! - those whose destructor only drops handles, or only those and frees memory (a `Vec`
//!   or `String` field, an untraced `DropOnlyFrees` field: `Trace::DROP_ONLY_FREES`): freed
//!   in the section, as below, since no user code runs; except that one whose drop frees
//!   memory and that cannot join the chain (large, or in a span with records) is doomed
//!   as the next kind is, so that what it owns does not wait for a collection;
//! - those whose destructor runs user code (an untraced resource, an `unsafe_allow_drop`
//!   type): doomed (`mdrop`), and destroyed by this thread once it is outside every
//!   section, where user code may do anything a mutator does.
//!
//! Left to the collector: tiny blocks (the current block may still be filling); large
//! objects whose destructor only drops handles; objects in a span with finalizer or cleanup
//! records (one of them may be this object's: it must be resurrected, or its cleanups
//! queued, not freed here); and, while its heap's cycle marks, an object whose destructor
//! runs user code (doomed, it would not be marked: `doom_unless_recorded`). While a cycle
//! marks, an object left here is shaded, as a drop that leaves a count above zero shades
//! (mgcmark's snapshot argument): it was in the snapshot, so the cycle keeps it and the
//! next one finds it. What a cycle frees then does not depend on how far its marking had
//! gone when the last handle went (the model test's rule for cycles in steps: reachable
//! at the first step, kept).
//!
//! Freeing an object:
//! - drops its value. For a type with a pointer mask, that means lowering the counts of
//!   the mask's words. Targets that reach zero join the thread's chain: a work list, not
//!   recursion, so a long list frees in constant stack;
//! - writes [`FREED`] into the header: the collector then sees an object with no edges
//!   and no destructor;
//! - lists the slot in this thread's cache for the heap, where the next allocation of its
//!   class takes it (`MCache::push_free`). A thread without a cache for that heap leaves
//!   the slot dead until the next sweep frees it.
//!
//! A long chain does not hold a collector up when the section is the drop's own (checked
//! every `PAUSE_CHECK_EVERY` frees): it pins the objects still on the chain (one count each, so they are
//! roots), leaves the section, lets the collection run, enters again, unpins them and goes
//! on. Inside any other section (a `GcCell` guard's, a ring being applied) and on the
//! finalizer thread it runs to the end, and the collector waits for it.
//!
//! Order: the chain is last in, first out. It frees a tree depth first, so the free list
//! hands the slots back in an order close to the one they were allocated in; a breadth
//! first order made binary-trees three times slower. Before a target joins the chain, its
//! own targets' headers are prefetched, so their cache misses overlap.

use core::ptr::NonNull;
use core::sync::atomic::{fence, Ordering};

use gc_types::{AtZero, PtrMask, Type};

use crate::mpagealloc::{arena_of_cached, Arena};
use crate::mspan::Span;
use crate::slot::header;
use crate::slot::{data_offset, Doomed, FREED, HEADER};
use crate::world::{pause, stop_requested, Local};
use gc_types::word::{object_bits, object_of};

/// How often a chain of frees looks for a waiting collector (one relaxed load): at about
/// 50 ns a free, 1024 frees keep a collector waiting some 50 µs at most, and the load
/// costs nothing measurable on the freeing path.
const PAUSE_CHECK_EVERY: u32 = 1024;

/// Lowers `obj`'s count by one in `l`'s mutator section; at zero the object is freed now
/// if it can be.
#[inline]
pub(crate) fn lower(l: &Local, obj: NonNull<u8>) {
    // SAFETY: `obj` is the header of an object a handle counted on; the count being
    // dropped kept it allocated until now.
    match lower_count(unsafe { header(obj.as_ptr()) }) {
        Some(ty) => free_at_zero(l, obj, ty),
        // The deletion barrier (`mgcwork`): the object stays, and the cycle keeps it.
        None => crate::mgcwork::shade_if_marking(obj),
    }
}

/// Takes from `h`'s count the one of a handle being dropped; if it reached zero, the
/// object's type (null for a tiny block), read on the way.
///
/// A count of one is the dropped handle's alone (`Arc::get_mut`'s reasoning): a new handle
/// needs a clone of an existing one, and the `Acquire` load that reads it pairs with the
/// `Release` decrements of every other handle's drop. So it is lowered with a plain store,
/// not an atomic subtract, which waits for the thread's earlier stores (in binary-trees,
/// a fifth of the time went to the subtracts of freed nodes' children). Not for a tiny
/// block: its count holds its allocator's reserve, and that thread may still add to it.
/// The caller is in a mutator section (no collector counts meanwhile).
#[inline(always)]
fn lower_count(h: &crate::slot::Header) -> Option<*const Type> {
    // The type is written before any handle to the object exists and stays until it is
    // freed, which needs this count.
    let ty = h.ty.load(Ordering::Relaxed).cast_const();
    lower_counter(&h.count, !ty.is_null()).then_some(ty)
}

/// An object's count: std's `AtomicU32`, or loom's in the model.
pub(crate) trait Counter {
    fn load(&self, o: Ordering) -> u32;
    fn store(&self, v: u32, o: Ordering);
    fn fetch_sub(&self, v: u32, o: Ordering) -> u32;
}

impl Counter for core::sync::atomic::AtomicU32 {
    #[inline(always)]
    fn load(&self, o: Ordering) -> u32 {
        core::sync::atomic::AtomicU32::load(self, o)
    }
    #[inline(always)]
    fn store(&self, v: u32, o: Ordering) {
        core::sync::atomic::AtomicU32::store(self, v, o)
    }
    #[inline(always)]
    fn fetch_sub(&self, v: u32, o: Ordering) -> u32 {
        core::sync::atomic::AtomicU32::fetch_sub(self, v, o)
    }
}

/// `lower_count` over any counter; `plain_ok`: no one adds to it without a handle (it is
/// not a tiny block's).
#[inline(always)]
fn lower_counter(count: &impl Counter, plain_ok: bool) -> bool {
    if plain_ok && count.load(Ordering::Acquire) == 1 {
        count.store(0, Ordering::Relaxed);
        true
    } else {
        count.fetch_sub(1, Ordering::Release) == 1
    }
}

#[cold]
#[inline(never)]
fn free_at_zero(l: &Local, obj: NonNull<u8>, ty: *const Type) {
    let mut arena = None;
    // Inside a chain (a destructor that `free_one` ran through its glue dropped this
    // handle), joining it is all.
    if !join_chain(l, obj, ty, &mut arena) || l.freeing.get() {
        return;
    }
    l.freeing.set(true);
    let mut n = 0u32;
    while let Some((o, s)) = chain(l).pop() {
        free_one(l, o, s, &mut arena);
        // SAFETY: this thread's caches, in its section; no other borrow of them is live
        // (allocation drops no handles, and `free_one` has returned).
        let caches = unsafe { &mut *l.caches.get() };
        if let Some(c) = caches.iter_mut().find(|c| c.heap_id == s.heap_id) {
            // SAFETY: `free_one` left `o` a dead slot of class `s.spc` in `c`'s heap, at
            // least a header and a word long (`at_zero`), owned by no one.
            unsafe { c.push_free(s, o) };
        }
        n = n.wrapping_add(1);
        if n.is_multiple_of(PAUSE_CHECK_EVERY) && l.pausable.get() && stop_requested() {
            // A collector waits. The objects still on the chain have count zero: pinned
            // (one count each) they are roots that it keeps, with what they point to.
            pause(l, |pinned| {
                for &(o, _) in chain(l).iter() {
                    // SAFETY: chained objects are allocated (their slots are not listed).
                    let c = &unsafe { header(o.as_ptr()) }.count;
                    if pinned {
                        c.fetch_add(1, Ordering::Relaxed);
                    } else {
                        c.fetch_sub(1, Ordering::Relaxed);
                    }
                }
            });
        }
    }
    l.freeing.set(false);
}

/// `obj`'s count just reached zero (`ty`: its header's type): if it may be freed here,
/// starts loading its targets' headers and puts it on the chain. Returns whether it did.
#[inline(always)]
fn join_chain(
    l: &Local,
    obj: NonNull<u8>,
    ty: *const Type,
    arena: &mut Option<&'static Arena>,
) -> bool {
    // Pairs with the `Release` decrements of the other handles' drops: what their threads
    // wrote to the object (a finalizer record, a cell) is visible here.
    fence(Ordering::Acquire);
    match at_zero(obj, ty, arena) {
        AtZeroHere::Chain(span, ty) => {
            prefetch_edges(obj, ty);
            chain(l).push((obj, span));
            true
        }
        AtZeroHere::Doom(ty) => {
            doom_unless_recorded(l, obj, ty, arena);
            false
        }
        AtZeroHere::Leave => {
            crate::mgcwork::shade_if_marking(obj);
            false
        }
    }
}

/// This thread's chain of objects to free.
#[allow(clippy::mut_from_ref)] // one borrow at a time: each ends before the chain is used again
fn chain(l: &Local) -> &mut Vec<(NonNull<u8>, &'static Span)> {
    // SAFETY: only this thread touches its chain, and every caller drops the borrow before
    // anything that could borrow it again runs.
    unsafe { &mut *l.chain.get() }
}

/// What becomes of an object whose count reached zero on this thread.
enum AtZeroHere {
    /// Freed here, in the chain: its span and type.
    Chain(&'static Span, &'static Type),
    /// Its destructor runs user code: doomed, unless its span has finalizer or cleanup
    /// records.
    Doom(&'static Type),
    /// Left to the collector.
    Leave,
}

/// What becomes of `obj` (count zero, header type `ty`; see the module docs): a small
/// object whose destructor only drops handles (`AtZero::Free`), outside spans with
/// finalizer or cleanup records, joins the chain; a type whose destructor runs user code
/// (`AtZero::Doom`) is doomed; the rest (a dead slot's marker type says `AtZero::Keep`, a
/// tiny block has no type) are left. The freeing path's one test per object is the type's
/// `at_zero` byte.
#[inline]
fn at_zero(obj: NonNull<u8>, ty: *const Type, arena: &mut Option<&'static Arena>) -> AtZeroHere {
    // SAFETY: a header's type is null (a tiny block) or a `&'static Type`.
    let Some(ty) = (unsafe { ty.as_ref() }) else {
        return AtZeroHere::Leave;
    };
    match ty.at_zero() {
        AtZero::Free => {
            let addr = obj.as_ptr() as usize;
            let Some(s) = arena_of_cached(addr, arena).and_then(|a| a.span_at(addr)) else {
                return AtZeroHere::Leave;
            };
            let small = s.nelems > 1 && s.elem_size >= HEADER + core::mem::size_of::<usize>();
            if small && !s.has_records() {
                AtZeroHere::Chain(s, ty)
            } else if ty.drops_more_than_handles() {
                // A drop that frees memory (a large object's, or one in a span with
                // records) is not left for a collection: what it owns would wait there.
                // Doomed, as user code is: destroyed outside the section, the slot to the
                // sweep (large) or kept for the records' owner (`doom_unless_recorded`).
                AtZeroHere::Doom(ty)
            } else {
                AtZeroHere::Leave
            }
        }
        AtZero::Doom => AtZeroHere::Doom(ty),
        AtZero::Keep => AtZeroHere::Leave,
    }
}

/// Dooms `obj` (count zero, type `ty`, whose destructor runs user code), to be destroyed
/// once this thread is outside every section (mdrop), unless its span has finalizer
/// or cleanup records: then it is left to the collector, which may have to resurrect it
/// or queue its cleanups.
#[cold]
#[inline(never)]
fn doom_unless_recorded(
    l: &Local,
    obj: NonNull<u8>,
    ty: &'static Type,
    arena: &mut Option<&'static Arena>,
) {
    let addr = obj.as_ptr() as usize;
    let Some(s) = arena_of_cached(addr, arena).and_then(|a| a.span_at(addr)) else {
        return;
    };
    if crate::mgcwork::marking() == s.heap_id {
        // Its heap's cycle is marking: the object was in the snapshot (or allocated
        // black), and what it points to may be reachable from nothing else the cycle will
        // scan (its holder, freed at zero just now, reads as `FREED`). Doomed, its header
        // would say `DYING` (no edges) and its mark stay clear: the cycle would free its
        // slot, and leave what it points to unmarked, while its destructor runs. Left to
        // the collector instead, shaded with its type in place, as an object left at zero
        // is; the next cycle dooms it (`mark_doomed`), or drops it in its release step if
        // its drop only frees.
        crate::mgcwork::shade(obj);
        return;
    }
    if !s.has_records() {
        // SAFETY: `obj`'s count just reached zero, in this thread's section: no handle to
        // it is left.
        l.push_dying(unsafe { Doomed::doom(obj, ty) });
    } else {
        crate::mgcwork::shade_if_marking(obj);
    }
}

/// Starts loading the headers `obj`'s handles point at, which freeing it will lower.
#[inline]
fn prefetch_edges(obj: NonNull<u8>, ty: &'static Type) {
    if let PtrMask::Small(m) = ty.ptrmask() {
        // A handle word minus its tag is the header it counts on (garbage for an empty or
        // outside word, which a prefetch ignores).
        for_each_mask_word(obj, ty, m, |w| crate::mem::prefetch(object_bits(w)));
    }
}

/// Calls `f` with the word at each bit of `m` in the value of the object at `obj`.
#[inline(always)]
fn for_each_mask_word(
    obj: NonNull<u8>,
    ty: &'static Type,
    mut m: u64,
    mut f: impl FnMut(*const u8),
) {
    let data = obj.as_ptr().wrapping_add(data_offset(ty.align()));
    while m != 0 {
        let i = m.trailing_zeros() as usize;
        m &= m - 1;
        // SAFETY: mask words lie inside the value, which is valid until it is freed.
        f(unsafe { data.cast::<*const u8>().wrapping_add(i).read() });
    }
}

/// Frees one object that `at_zero` put on the chain: drops its value, adding the targets that
/// reach zero to the chain, and marks the slot dead. The caller lists the slot.
#[inline(always)]
fn free_one(l: &Local, obj: NonNull<u8>, s: &'static Span, arena: &mut Option<&'static Arena>) {
    // SAFETY: `obj` heads an allocated object with count zero: nothing else refers to it.
    let h = unsafe { header(obj.as_ptr()) };
    // SAFETY: `at_zero` read a `&'static Type` here; no one has written the header since.
    let ty: &'static Type = unsafe { &*h.ty.load(Ordering::Relaxed) };
    if ty.needs_drop() {
        if let (true, PtrMask::Small(m)) = (ty.handles_only_drop(), ty.ptrmask()) {
            // The destructor only drops handles, and the mask marks exactly the words that
            // hold them (the `Trace` contract): lowering those counts is the whole drop.
            for_each_mask_word(obj, ty, m, |w| {
                // SAFETY: mask words hold null or a handle word (the `Trace` contract).
                let Some(e) = (unsafe { object_of(w) }) else {
                    return;
                };
                // SAFETY: the object a handle word counts on is a heap object's header.
                match lower_count(unsafe { header(e.as_ptr()) }) {
                    Some(ty) => {
                        join_chain(l, e, ty, arena);
                    }
                    None => crate::mgcwork::shade_if_marking(e),
                }
            });
        } else {
            let data = obj.as_ptr().wrapping_add(data_offset(ty.align()));
            // SAFETY: the value is valid and unreachable: dropped once, here. Its
            // destructor only drops handles and frees memory (`at_zero`), so no user code
            // runs here; the handles' drops come back through `lower` and join the chain.
            unsafe { ty.drop_value(data) };
        }
    }
    if cfg!(debug_assertions) {
        let value = HEADER + core::mem::size_of::<usize>();
        // SAFETY: the slot is dead; the bytes past the free list's link are nobody's.
        unsafe {
            core::ptr::write_bytes(
                obj.as_ptr().wrapping_add(value),
                crate::slot::POISON,
                s.elem_size - value,
            )
        };
    }
    h.ty.store((&FREED as *const Type).cast_mut(), Ordering::Relaxed);
    // A cycle may have counted references to the object before they went: the slot's
    // next object starts from zero, as every scratch count outside a cycle is.
    h.gc_refs.store(0, Ordering::Relaxed);
}

#[cfg(all(test, loom))]
mod loom_model {
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::atomic::{fence, AtomicU32};
    use loom::sync::Arc;
    use loom::thread;

    impl Counter for AtomicU32 {
        fn load(&self, o: Ordering) -> u32 {
            AtomicU32::load(self, o)
        }
        fn store(&self, v: u32, o: Ordering) {
            AtomicU32::store(self, v, o)
        }
        fn fetch_sub(&self, v: u32, o: Ordering) -> u32 {
            AtomicU32::fetch_sub(self, v, o)
        }
    }

    /// An object: its count and its value, which the drop that reaches zero frees
    /// (overwrites), after `join_chain`'s `Acquire` fence.
    struct Obj {
        count: AtomicU32,
        value: UnsafeCell<u32>,
    }

    fn drop_handle(o: &Obj) {
        if lower_counter(&o.count, true) {
            fence(Ordering::Acquire);
            // SAFETY: a loom cell; loom reports a free racing any read of the value.
            o.value.with_mut(|p| unsafe { *p = 0xdead });
        }
    }

    fn read(o: &Obj) -> u32 {
        // SAFETY: as in `drop_handle`, for a read through a handle still held.
        o.value.with(|p| unsafe { *p })
    }

    /// Property: with two handles on two threads, one of which clones its own (a count
    /// that reaches one and is read as one on the other thread while the clone comes),
    /// the value is freed exactly once, after every read through a handle (loom reports a
    /// free racing a read), and never while a handle is held (the reads see it whole).
    #[test]
    fn a_count_of_one_is_the_dropped_handles_alone() {
        loom::model(|| {
            let o = Arc::new(Obj {
                count: AtomicU32::new(2),
                value: UnsafeCell::new(42),
            });
            let o2 = o.clone();
            let other = thread::spawn(move || {
                // Clone the handle this thread holds, read through both, drop both.
                o2.count.fetch_add(1, Ordering::Relaxed);
                assert_eq!(read(&o2), 42);
                drop_handle(&o2);
                assert_eq!(read(&o2), 42);
                drop_handle(&o2);
            });
            assert_eq!(read(&o), 42);
            drop_handle(&o);
            other.join().unwrap();
            assert_eq!(o.count.load(Ordering::Relaxed), 0);
            assert_eq!(read(&o), 0xdead, "freed once all handles are gone");
        });
    }
}
