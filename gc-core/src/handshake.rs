//! The world lock's handshake (Dekker's), as two small functions over any atomic flag, so
//! that the code the world lock runs is the code the loom model checks.
//!
//! Mutator: publish `active = true`, full fence, read `stop`; if set, withdraw `active`.
//! Collector: set `stop`, full fence, read every `active`. With both fences, at least one
//! side sees the other's store: a mutator never runs a section while the collector sees
//! every slot idle. The fences are the caller's (`symmetric`: sequentially consistent
//! accesses on both sides; asymmetric: a compiler fence on the mutator's side, `membarrier`
//! on the collector's; see `world`).

use core::sync::atomic::{AtomicBool, Ordering};

/// The process's stop flag, the collector's side of the handshake: raised by
/// `world::stop`, read by every section's `try_enter`. It lives here, below the layers
/// that allocate, so that a long run of work inside a section (a mutator sweeping spans:
/// `MHeap::sweep_for`) can see a collector waiting for it and end early.
pub(crate) static STOP: AtomicBool = AtomicBool::new(false);

/// Does a collector hold or want the world?
#[inline]
pub(crate) fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// An atomic boolean: std's, or loom's in the model.
pub(crate) trait Flag {
    fn load(&self, o: Ordering) -> bool;
    fn store(&self, v: bool, o: Ordering);
}

impl Flag for core::sync::atomic::AtomicBool {
    #[inline]
    fn load(&self, o: Ordering) -> bool {
        core::sync::atomic::AtomicBool::load(self, o)
    }
    #[inline]
    fn store(&self, v: bool, o: Ordering) {
        core::sync::atomic::AtomicBool::store(self, v, o)
    }
}

/// The mutator's side: `true` if the section may run; `false` (with `active` withdrawn)
/// if a collector holds or is taking the world. `mutator_fence` runs between the store and
/// the load: a full `fence(SeqCst)` in the symmetric mode, a compiler fence when the
/// collector's `membarrier` supplies the other half. (One code path for both, written with
/// fences rather than SeqCst accesses, which loom cannot model.)
#[inline]
pub(crate) fn try_enter(
    active: &impl Flag,
    stop: &impl Flag,
    mutator_fence: impl FnOnce(),
) -> bool {
    active.store(true, Ordering::Relaxed);
    mutator_fence();
    // Acquire: if this reads the collector's lowering of `stop`, everything the collector
    // did with the world stopped happens before this section (the loom model found the
    // race a relaxed load leaves).
    if !stop.load(Ordering::Acquire) {
        return true;
    }
    active.store(false, Ordering::Release);
    false
}

/// The mutator's exit from a section: everything the section did happens before a
/// collector's `all_idle` that reads this store.
#[inline]
pub(crate) fn leave(active: &impl Flag) {
    active.store(false, Ordering::Release);
}

/// The collector's first step: raise `stop`, then the collector's fence.
pub(crate) fn raise_stop(stop: &impl Flag, collector_fence: impl FnOnce()) {
    stop.store(true, Ordering::Relaxed);
    collector_fence();
}

/// The collector's check: is every slot idle? (After `raise_stop`, once this is true, no
/// section can start until `stop` is lowered.)
pub(crate) fn all_idle<'a, F: Flag + 'a>(slots: impl IntoIterator<Item = &'a F>) -> bool {
    slots.into_iter().all(|s| !s.load(Ordering::Acquire))
}

#[cfg(all(test, loom))]
mod loom_model {
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::atomic::{fence, AtomicBool};
    use loom::sync::Arc;
    use loom::thread;

    impl Flag for AtomicBool {
        fn load(&self, o: Ordering) -> bool {
            AtomicBool::load(self, o)
        }
        fn store(&self, v: bool, o: Ordering) {
            AtomicBool::store(self, v, o)
        }
    }

    /// `rounds` mutator sections against `rounds` collector stops. Property: a section
    /// and a stopped world never overlap. The cell is written inside the mutator's section
    /// and read while the collector owns the world; loom reports any interleaving where
    /// both happen at once, including the collector's lowering of `stop` racing a later
    /// section; and the collector never reads more writes than were made. Both fences are
    /// `fence(SeqCst)`: the symmetric mode's code exactly, and the asymmetric mode's with
    /// `membarrier`'s effect (a full fence on the mutator's thread) written out.
    fn exclusion(rounds: u32) {
        loom::model(move || {
            let stop = Arc::new(AtomicBool::new(false));
            let active = Arc::new(AtomicBool::new(false));
            let data = Arc::new(UnsafeCell::new(0u32));
            let (s2, a2, d2) = (stop.clone(), active.clone(), data.clone());
            let mutator = thread::spawn(move || {
                for _ in 0..rounds {
                    if try_enter(&*a2, &*s2, || fence(Ordering::SeqCst)) {
                        // SAFETY: inside a section (loom checks the exclusion).
                        d2.with_mut(|p| unsafe { *p += 1 });
                        leave(&*a2);
                    }
                }
            });
            for _ in 0..rounds {
                raise_stop(&*stop, || fence(Ordering::SeqCst));
                if all_idle([&*active]) {
                    // SAFETY: the world is stopped (loom checks the exclusion).
                    let seen = data.with(|p| unsafe { core::ptr::read(p) });
                    assert!(seen <= rounds);
                }
                stop.store(false, Ordering::Release);
            }
            mutator.join().unwrap();
        });
    }

    #[test]
    fn sections_and_stopped_world_exclude_each_other() {
        exclusion(1);
    }

    #[test]
    fn two_rounds_keep_the_exclusion() {
        exclusion(2);
    }
}

/// Models of the world lock against what mutators do without stopping each other: clone
/// (no section), drop, allocation and `GcCell` writes (in sections), each racing a
/// collection. The handshake is this module's code; the heap is a three-object model of
/// fing's: counts raised by `Relaxed` `fetch_add` outside sections (`Gc::clone`), lowered
/// by `Release` `fetch_sub` inside them (`mgcsweep::release`), read `Relaxed` by the
/// collector after `all_idle` (`mgcmark`), and trial subtraction, marking and sweeping as
/// `mgc` does them. Payloads and fields are loom cells: loom reports any read of an object
/// the collector may be freeing at the same time, and the assertions any read of a freed
/// one. Each model ends with a collection after the mutator is done, which must free
/// everything (no count is left too high by a race).
#[cfg(all(test, loom))]
mod loom_world {
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::atomic::{fence, AtomicBool, AtomicU32};
    use loom::sync::Arc;
    use loom::thread;

    const LIVE: u32 = 42;
    const POISON: u32 = 0xdead;

    /// Reads a loom cell.
    fn get<T: Copy>(c: &UnsafeCell<T>) -> T {
        // SAFETY: a loom cell: loom itself checks that no write races this read, which
        // is what the models are for.
        c.with(|p| unsafe { *p })
    }

    /// Writes a loom cell, returning the old value.
    fn put<T>(c: &UnsafeCell<T>, v: T) -> T {
        // SAFETY: as in `get`, for a write.
        c.with_mut(|p| unsafe { core::ptr::replace(p, v) })
    }

    struct Obj {
        count: AtomicU32,
        allocated: UnsafeCell<bool>,
        payload: UnsafeCell<u32>,
        /// A `GcCell<Option<Gc<_>>>` field: the index of the object it holds.
        link: UnsafeCell<Option<usize>>,
    }

    struct Heap {
        stop: AtomicBool,
        active: AtomicBool,
        objs: Vec<Obj>,
    }

    impl Heap {
        /// `objs[i] = (count, allocated, link)`.
        fn new(objs: &[(u32, bool, Option<usize>)]) -> Arc<Heap> {
            Arc::new(Heap {
                stop: AtomicBool::new(false),
                active: AtomicBool::new(false),
                objs: objs
                    .iter()
                    .map(|&(count, allocated, link)| Obj {
                        count: AtomicU32::new(count),
                        allocated: UnsafeCell::new(allocated),
                        payload: UnsafeCell::new(if allocated { LIVE } else { 0 }),
                        link: UnsafeCell::new(link),
                    })
                    .collect(),
            })
        }

        /// A mutator section (`world::enter`): waits while the world is stopped.
        fn section<R>(&self, f: impl FnOnce() -> R) -> R {
            while !try_enter(&self.active, &self.stop, || fence(Ordering::SeqCst)) {
                thread::yield_now();
            }
            let r = f();
            leave(&self.active);
            r
        }

        /// `Gc::clone`: no section.
        fn clone_handle(&self, i: usize) {
            self.objs[i].count.fetch_add(1, Ordering::Relaxed);
        }

        /// `Drop for Gc`: in a section.
        fn drop_handle(&self, i: usize) {
            self.section(|| self.objs[i].count.fetch_sub(1, Ordering::Release));
        }

        /// Deref through a handle the caller holds: the object must be live.
        fn read(&self, i: usize) {
            let v = get(&self.objs[i].payload);
            assert_eq!(v, LIVE, "object {i} read after it was freed");
        }

        /// A field read (`GcCell::borrow`): no section.
        fn link(&self, i: usize) -> Option<usize> {
            get(&self.objs[i].link)
        }

        /// One collection; `false` if a section was running (the real collector waits
        /// and retries; the model gives up the round).
        fn collect(&self) -> bool {
            raise_stop(&self.stop, || fence(Ordering::SeqCst));
            let stopped = all_idle([&self.active]);
            if stopped {
                self.stopped_world_cycle();
            }
            self.stop.store(false, Ordering::Release);
            stopped
        }

        fn stopped_world_cycle(&self) {
            let n = self.objs.len();
            // The world is stopped: the cells below are read and written by the collector
            // alone (loom checks it).
            let alloc: Vec<bool> = self.objs.iter().map(|o| get(&o.allocated)).collect();
            let links: Vec<Option<usize>> = (0..n)
                .map(|i| if alloc[i] { self.link(i) } else { None })
                .collect();
            let mut refs = vec![0u32; n];
            for l in links.iter().flatten() {
                refs[*l] += 1;
            }
            let mut marked: Vec<bool> = (0..n)
                .map(|i| alloc[i] && self.objs[i].count.load(Ordering::Relaxed) != refs[i])
                .collect();
            let mut todo: Vec<usize> = (0..n).filter(|&i| marked[i]).collect();
            while let Some(i) = todo.pop() {
                if let Some(j) = links[i] {
                    if !marked[j] {
                        marked[j] = true;
                        todo.push(j);
                    }
                }
            }
            for i in (0..n).filter(|&i| alloc[i] && !marked[i]) {
                if let Some(j) = links[i] {
                    if marked[j] {
                        // Settle: the live target loses the dead holder's reference.
                        self.objs[j].count.fetch_sub(1, Ordering::Relaxed);
                    }
                }
                let o = &self.objs[i];
                put(&o.payload, POISON);
                put(&o.allocated, false);
                o.count.store(0, Ordering::Relaxed);
            }
        }

        fn all_freed(&self) -> bool {
            self.objs.iter().all(|o| !get(&o.allocated))
        }
    }

    /// Runs `mutator` against one collection, then collects once more and requires an
    /// empty heap.
    fn race(heap: Arc<Heap>, mutator: impl FnOnce(&Heap) + Send + 'static) {
        let h2 = heap.clone();
        let m = thread::spawn(move || mutator(&h2));
        heap.collect();
        m.join().unwrap();
        assert!(heap.collect());
        assert!(heap.all_freed(), "a count was left too high");
    }

    /// Property: a handle cloned out of a field without a section, while another thread
    /// (here the same mutator, then the collector) drops the field's owner and collects,
    /// keeps its object alive until it is dropped. (A is held; A.link = B.)
    #[test]
    fn a_clone_without_a_section_racing_a_collection() {
        loom::model(|| {
            let heap = Heap::new(&[(1, true, Some(1)), (1, true, None)]);
            race(heap, |h| {
                let b = h.link(0).unwrap();
                h.clone_handle(b);
                h.drop_handle(0);
                h.read(b);
                h.drop_handle(b);
            });
        });
    }

    /// Property: a handle moved out of a `GcCell` in a section (its count now a root's,
    /// no longer a field's) is never freed by a collection racing the move, and the
    /// collector never reads the cell while it is written.
    #[test]
    fn a_cell_write_racing_a_collection() {
        loom::model(|| {
            let heap = Heap::new(&[(1, true, Some(1)), (1, true, None)]);
            race(heap, |h| {
                // Written inside a section, as `GcCell::borrow_mut` does.
                let b = h.section(|| put(&h.objs[0].link, None));
                let b = b.unwrap();
                h.read(b);
                h.drop_handle(b);
                h.drop_handle(0);
            });
        });
    }

    /// Property: an object allocated in a section is seen whole by a racing collection
    /// (allocated, with its count), so it is not swept while its first handle lives.
    #[test]
    fn an_allocation_racing_a_collection() {
        loom::model(|| {
            let heap = Heap::new(&[(0, false, None)]);
            race(heap, |h| {
                h.section(|| {
                    let o = &h.objs[0];
                    // Written inside a section, as `malloc` does.
                    put(&o.allocated, true);
                    put(&o.payload, LIVE);
                    o.count.store(1, Ordering::Relaxed);
                });
                h.read(0);
                h.drop_handle(0);
            });
        });
    }
}
