//! What mutators do for a cycle in progress (Go's mgcwork and mbarrier): the state that
//! says a cycle is running, shading, the grey lists, and the counting mode of `GcCell`.
//!
//! A cycle of a heap may run in slices (`mgc`): the world is stopped for each slice and
//! runs between them. Between slices mutators keep the snapshot the cycle marks from
//! intact (the argument is in `mgcmark`'s docs) through these rules. The barriers apply
//! while [`marking`] names a heap, black allocation while `mheap::cycling` does (from the
//! cycle's start to its end, past marking, so that release frees nothing allocated
//! since the snapshot):
//! - a handle drop that leaves a count above zero *shades* the object ([`shade`]): Yuasa's
//!   deletion barrier, applied to every handle, inside the heap or not (`mfree::lower`,
//!   `release::drain_deferred`);
//! - the first mutable borrow of a `GcCell` in a cycle shades what the cell holds, and
//!   stamps the cell with the cycle's *epoch* ([`epoch`]); the collector does not count
//!   the edges of a stamped cell ([`counting`]);
//! - allocation is black: a new object's slot is marked (`mcache`, `malloc`), and so is a
//!   slot freed at count zero when it goes on a thread's free list;
//! - a weak handle's upgrade, and `reflect::set_field`, shade the object they touch.
//!
//! Shading marks the object's slot (an atomic `fetch_or`: threads share bitmap words)
//! and, for an object that can hold handles, puts it on the thread's grey list
//! (`Slot::grey`), which the collector takes at each slice with the world stopped
//! ([`take_greys`]). A thread that exits hands its greys over (`Local::drop`).
//!
//! Only one cycle runs at a time in the process (one world); [`begin`] and [`end`] are
//! called with the world stopped, so a mutator sees `cycling` change only between its
//! sections: within one section the answer holds.

use core::cell::Cell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use gc_types::{Trace, Tracer};

use crate::mheap::MHeap;
use crate::mpagealloc::span_of;
use crate::world::{for_each_slot, try_local, StoppedWorld, ORPHAN_GREYS};

/// The id of the heap whose cycle is marking, or 0: the barriers shade.
static MARKING: AtomicU64 = AtomicU64::new(0);
/// The cell epoch of the cycle in progress: cycles its heap has begun, mod 3. Per heap, so
/// that every cycle of a heap has an epoch other than its last one's stamps (a count
/// shared by all heaps would let a heap's cycle meet the stamps of its cycle before last,
/// and skip cells it should count).
static EPOCH: AtomicU32 = AtomicU32::new(0);

/// The epoch no cycle ever has: a new cell's (it has never been counted or stamped).
pub(crate) const NO_EPOCH: u32 = 3;

/// The heap whose cycle is marking (its id), or 0: the barriers shade only then (once
/// marking is over, what is unmarked is garbage and no mutator can reach it).
#[inline(always)]
pub(crate) fn marking() -> u64 {
    MARKING.load(Ordering::Relaxed)
}

/// The cell epoch of the cycle in progress (see `cycling`).
#[inline]
pub(crate) fn epoch() -> u32 {
    EPOCH.load(Ordering::Relaxed)
}

/// A cycle of heap `heap_id` begins: from now on mutators shade. World stopped.
pub(crate) fn begin(_world: &StoppedWorld, heap: &MHeap) {
    let n = heap.cycles_begun.fetch_add(1, Ordering::Relaxed);
    EPOCH.store((n % 3) as u32, Ordering::Relaxed);
    crate::mheap::set_cycling(heap.id);
    MARKING.store(heap.id, Ordering::Relaxed);
}

/// Marking is over: the barriers stop shading (allocation stays black until the cycle
/// ends). World stopped.
pub(crate) fn marking_done(world: &StoppedWorld) {
    MARKING.store(0, Ordering::Relaxed);
    clear_greys(world);
}

/// The cycle is over (or abandoned): mutators stop shading, and what they shaded since
/// marking ended is forgotten. World stopped.
pub(crate) fn end(world: &StoppedWorld) {
    crate::mheap::set_cycling(0);
    MARKING.store(0, Ordering::Relaxed);
    clear_greys(world);
}

/// Shades `obj` if a cycle is marking (a handle's count on it was dropped and is not
/// zero, or a mutator is about to hold it).
#[inline(always)]
pub(crate) fn shade_if_marking(obj: NonNull<u8>) {
    if marking() != 0 {
        shade(obj);
    }
}

/// Marks the object whose header is `obj`, if it belongs to the heap being collected;
/// one newly marked that can hold handles goes on this thread's grey list.
#[cold]
#[inline(never)]
pub(crate) fn shade(obj: NonNull<u8>) {
    let heap = marking();
    let addr = obj.as_ptr() as usize;
    let Some(s) = span_of(addr) else { return };
    if s.heap_id != heap || heap == 0 {
        return;
    }
    let i = s.index_of(addr);
    if s.mark_shared(i) && !s.spc.noscan() {
        let slot = s.slot(i) as usize;
        try_local(|l| l.slot.grey.lock().push(slot))
            .unwrap_or_else(|| ORPHAN_GREYS.lock().push(slot));
    }
}

/// Shades every object `value` holds a handle to (the barrier of a `GcCell`'s first
/// mutable borrow in a cycle: what the cell held at the snapshot stays reachable).
#[cold]
#[inline(never)]
pub(crate) fn shade_contents<T: Trace>(value: &T) {
    let mut t = Tracer::new();
    value.trace(&mut t);
    while let Some(e) = t.pop() {
        shade(e);
    }
}

/// Moves every grey object (each thread's, and the orphans of exited threads) to `into`.
/// World stopped: no thread shades meanwhile (shading is done in sections).
pub(crate) fn take_greys(world: &StoppedWorld, into: &mut Vec<*mut u8>) {
    for_each_slot(world, |s| {
        into.extend(s.grey.lock().drain(..).map(|a| a as *mut u8));
    });
    into.extend(ORPHAN_GREYS.lock().drain(..).map(|a| a as *mut u8));
}

/// Forgets every grey object (after marking they are all marked and scanned already, or
/// marked after marking ended, which needs no scan). World stopped.
pub(crate) fn clear_greys(world: &StoppedWorld) {
    for_each_slot(world, |s| s.grey.lock().clear());
    ORPHAN_GREYS.lock().clear();
}

thread_local! {
    /// On the collector's thread while it counts references (`mgcmark::count_refs`): the
    /// cycle's epoch plus one (0: not counting).
    static COUNTING: Cell<u32> = const { Cell::new(0) };
}

/// While the collector counts: the cycle's epoch. A `GcCell` stamped with it was mutated
/// in this cycle (its barrier shaded what it held at the snapshot), and its edges are not
/// counted; any other cell is counted and stamped `counted_epoch`, so that its first
/// mutable borrow after that still shades.
#[inline]
pub(crate) fn counting() -> Option<u32> {
    COUNTING.with(|c| c.get().checked_sub(1))
}

/// The stamp of a cell counted in a cycle of epoch `e`: neither `e` nor the next cycle's
/// epoch, so that a later cycle never mistakes it for its own.
#[inline]
pub(crate) const fn counted_epoch(e: u32) -> u32 {
    (e + 2) % 3
}

/// Counting mode on this thread while the guard lives (`mgcmark::count_refs`).
pub(crate) struct Counting(());

impl Counting {
    pub(crate) fn start() -> Counting {
        COUNTING.with(|c| c.set(epoch() + 1));
        Counting(())
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        COUNTING.with(|c| c.set(0));
    }
}
