//! Releasing a handle: the path of every `Drop` of a heap handle, and what it does when
//! the count cannot be lowered now.
//!
//! On a mutator thread ([`release`]): in a section, the count is lowered at once
//! (`mfree::lower`, which frees the object if it reaches zero). Outside one, the drop
//! enters a section of its own if the world is free (`Slot::try_enter`: never waiting)
//! and lowers the count there. While a collector holds or wants the world it only records
//! the drop in the thread's ring (`deferred::Ring`), which the thread applies in its next
//! such section or when the ring is full, and which every collection applies first with
//! the world stopped (`drain_deferred`). So a drop never waits for a collection.
//!
//! The finalizer thread, which runs finalizers while their collection is still going,
//! does not even wait to apply a full ring: with the world stopped it holds the drop in a
//! plain vector (`Local::held`), applied with its ring in its next section or handed
//! after each batch to its slot's spill (`flush_held`), which the next collection applies
//! with the ring.
//!
//! On the collector's thread (a handle dropped with the world stopped) the count is
//! lowered at once, and an object it leaves at zero is left to the collector
//! (`release_slow`). On a thread whose `Local` is destroyed (a handle in another
//! thread-local, dropped at thread exit), in a temporary `Local`'s section.

use core::ptr::NonNull;
use core::sync::atomic::Ordering;

use crate::slot::header;
use crate::world::{
    for_each_slot, holds_world, local, try_local, with_temporary, Local, StoppedWorld,
};

/// Drops one count a handle held on `obj` (the `Drop` of a heap handle): on a mutator
/// thread, now (recorded for later while a collector holds or wants the world: see
/// `drop_as_mutator`); on the collector's thread, as the sweep says.
#[inline]
pub(crate) fn release(obj: NonNull<u8>) {
    if !drop_as_mutator(obj) {
        release_slow(obj);
    }
}

/// `release` on the collector's thread, or on a thread whose fing state is destroyed.
/// (Out of line: the mutator's path stays small.)
#[cold]
#[inline(never)]
fn release_slow(obj: NonNull<u8>) {
    match holds_world() {
        Some(true) => drop_count(obj),
        _ => drop_orphan(obj),
    }
}

/// Lowers `obj`'s count by one with the world stopped (an object whose count reaches zero
/// is left to the collector). The object is shaded if a cycle marks: above zero, that is
/// `mgcwork`'s deletion barrier; at zero, the object is left as `mfree` leaves objects, and
/// shaded as it shades them (the cycle keeps what its snapshot held).
pub(crate) fn drop_count(obj: NonNull<u8>) {
    // SAFETY: `obj` is the header of an object a handle counted on; the count being
    // dropped kept it allocated until now.
    unsafe { header(obj.as_ptr()) }
        .count
        .fetch_sub(1, Ordering::Release);
    crate::mgcwork::shade_if_marking(obj);
}

/// Drops a handle's count on `obj` on a mutator thread: at once if this thread is in a
/// section, or in a section of its own if the world is free; else (a collector holds or
/// wants the world) recorded in this thread's ring (`deferred`), so that a drop never
/// waits for a collection. `false`: this thread holds the world, or its `Local` is gone
/// (`release_slow`).
#[inline]
fn drop_as_mutator(obj: NonNull<u8>) -> bool {
    try_local(|l| {
        if l.holds_world.get() {
            return false;
        }
        if l.depth.get() > 0 {
            crate::mfree::lower(l, obj);
        } else if l.slot.try_enter() {
            l.depth.set(1);
            if !l.slot.ring.is_empty() {
                apply_deferred(l);
            }
            // This section is the drop's own: a long chain of frees may pause it for
            // a waiting collector (not on a thread that must never wait for one).
            l.pausable.set(!l.spills.get());
            crate::mfree::lower(l, obj);
            l.pausable.set(false);
            l.leave_outermost();
        } else {
            defer(l, obj);
        }
        true
    })
    .unwrap_or(false)
}

/// Drops a count on a thread whose `Local` is destroyed (a handle in another
/// thread-local, dropped at thread exit): in a temporary `Local`'s section, so the object
/// is freed and its destructor run now, as for any other drop.
#[cold]
#[inline(never)]
fn drop_orphan(obj: NonNull<u8>) {
    with_temporary(|l| {
        l.enter_outermost();
        crate::mfree::lower(l, obj);
        l.leave_outermost();
    });
}

/// Applies the drops `l` deferred while a collector had the world (its ring, and what it
/// held past it), in its section: what they free is freed at once rather than at the next
/// sweep. (Out of line: the drop path stays small.)
#[cold]
#[inline(never)]
pub(crate) fn apply_deferred(l: &Local) {
    l.slot.ring.drain(|o| crate::mfree::lower(l, o));
    if l.holds_drops() {
        l.take_held()
            .into_iter()
            .for_each(|o| crate::mfree::lower(l, o));
    }
}

/// Records a drop in `l`'s ring; if the ring is full, applies it first in a section.
#[cold]
fn defer(l: &Local, obj: NonNull<u8>) {
    if !l.slot.ring.push(obj) {
        // Full: apply the ring in one section, then record. A thread that spills does not
        // wait for a running collection: the drop goes to its slot's spill, for the next
        // collection (which also keeps the spill off this thread's path: a burst of it
        // would be applied on cold headers).
        let entered = if l.spills.get() {
            l.slot.try_enter()
        } else {
            l.slot.enter();
            true
        };
        if !entered {
            // SAFETY: as in `Local::take_held`.
            unsafe { &mut *l.held.get() }.push(obj);
            return;
        }
        l.depth.set(1);
        l.slot.ring.drain(|o| crate::mfree::lower(l, o));
        l.leave_outermost();
        let pushed = l.slot.ring.push(obj);
        debug_assert!(pushed, "fing::world: a drained ring is full");
    }
}

/// Hands the drops this thread held (see `Local::held`) to its slot's spill, for the next
/// collection to apply: the finalizer thread does it after each batch, before it can be
/// seen idle, so that a collection after `wait_finalizers` sees every drop of the
/// finalizers that ran.
pub(crate) fn flush_held() {
    local(|l| {
        if l.holds_drops() {
            let mut held = l.take_held();
            l.slot.spilled.lock().append(&mut held);
        }
    });
}

/// Makes this thread's handle drops never wait for a running collection (see `Local`'s
/// `spills`).
pub(crate) fn spill_drops() {
    local(|l| l.spills.set(true));
}

/// Applies everything `l`'s thread deferred (its ring, its spill and what it held), in
/// its section: at thread exit (`Local::drop`), where what dies is freed now.
pub(crate) fn apply_all(l: &Local) {
    l.slot.ring.drain(|o| crate::mfree::lower(l, o));
    let spilled = l.slot.spilled.lock().take();
    spilled
        .into_iter()
        .chain(l.take_held())
        .for_each(|o| crate::mfree::lower(l, o));
}

/// Applies every thread's deferred drops: the first thing a collection does. Collector
/// only, world stopped.
pub(crate) fn drain_deferred(world: &StoppedWorld) {
    for_each_slot(world, |s| {
        s.ring.drain(drop_count);
        let spilled = s.spilled.lock().take();
        spilled.into_iter().for_each(drop_count);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::stop;
    use std::time::Duration;

    /// A thread that `spills`, dropping handles past its ring while the world is stopped,
    /// holds the drops (no lock each) and hands them to its slot's spill with
    /// `flush_held`: the next collection sees every one and frees the objects.
    // A real heap reserves its arenas with `mmap` flags Miri does not model.
    #[test]
    #[cfg_attr(miri, ignore)]
    fn held_drops_reach_the_next_collection_once_flushed() {
        // Past the ring's 256.
        const N: u64 = 1000;
        let h = crate::Heap::new(crate::HeapConfig {
            gogc: None,
            ..Default::default()
        });
        let objs: Vec<crate::Gc<[u64; 4]>> = (0..N).map(|i| h.alloc([i; 4])).collect();
        let (go, stopped) = std::sync::mpsc::channel::<()>();
        let (done, dropped) = std::sync::mpsc::channel::<()>();
        let spiller = std::thread::spawn(move || {
            spill_drops();
            stopped.recv().unwrap();
            drop(objs);
            local(|l| assert!(l.holds_drops(), "past the ring, with the world stopped"));
            flush_held();
            done.send(()).unwrap();
            // The thread stays until the collection below is done (its exit would apply
            // the held drops anyway).
            stopped.recv().unwrap_or(());
        });
        let world = stop(true, Duration::from_secs(10), "test").expect("the world");
        go.send(()).unwrap();
        dropped.recv().unwrap();
        drop(world);
        h.collect();
        assert_eq!(h.stats().heap_objects, 0, "every dropped object freed");
        drop(go);
        spiller.join().unwrap();
    }
}
