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

/// The epoch no cycle ever has: a new cell's, and a counted one's.
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
    if s.mark_shared(i) {
        SHADED.fetch_add(1, Ordering::Relaxed);
        if !s.spc.noscan() {
            let slot = s.slot(i) as usize;
            try_local(|l| l.slot.grey.lock().push(slot))
                .unwrap_or_else(|| ORPHAN_GREYS.lock().push(slot));
        }
    }
}

/// Objects mutators shaded (marked) since the process began: a round of the ephemeron
/// fixpoint spread over slices is conclusive only if none was marked since it began, and
/// a shaded object that holds no handles goes on no grey list.
static SHADED: AtomicU64 = AtomicU64::new(0);

/// `SHADED`, read by the collector with the world stopped.
pub(crate) fn shaded() -> u64 {
    SHADED.load(Ordering::Relaxed)
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
pub(crate) fn take_greys(world: &StoppedWorld, into: &mut MarkStack) {
    for_each_slot(world, |s| {
        into.extend(s.grey.lock().drain(..).map(|a| a as *mut u8));
    });
    into.extend(ORPHAN_GREYS.lock().drain(..).map(|a| a as *mut u8));
}

/// The collector's mark stack (Go's work buffers): blocks of `MarkStack::BLOCK` slots,
/// the ones below the top block full. Pushing never copies what is on the stack, and
/// touches fresh memory a block at a time: a `Vec` doubling at 8 M entries copied 64 MB,
/// and faulted its new pages in, inside one step of a cycle in slices (1.5 to 5 ms).
/// Emptied blocks are kept for the cycle (freeing and refilling them churns the
/// allocator), and go with it.
#[derive(Default)]
pub(crate) struct MarkStack {
    blocks: Vec<Vec<*mut u8>>,
    /// The block pushed to and popped from; the ones above it are empty.
    top: usize,
}

impl MarkStack {
    const BLOCK: usize = 4096;

    #[inline]
    pub(crate) fn push(&mut self, p: *mut u8) {
        match self.blocks.get_mut(self.top) {
            Some(b) if b.len() < Self::BLOCK => b.push(p),
            _ => self.push_block(p),
        }
    }

    #[cold]
    fn push_block(&mut self, p: *mut u8) {
        if !self.blocks.is_empty() {
            self.top += 1;
        }
        if self.top == self.blocks.len() {
            self.blocks.push(Vec::with_capacity(Self::BLOCK));
        }
        self.blocks[self.top].push(p);
    }

    #[inline]
    pub(crate) fn pop(&mut self) -> Option<*mut u8> {
        loop {
            if let Some(p) = self.blocks.get_mut(self.top)?.pop() {
                return Some(p);
            }
            if self.top == 0 {
                return None;
            }
            self.top -= 1;
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self.blocks.get(self.top) {
            Some(b) => self.top * Self::BLOCK + b.len(),
            None => 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the oldest entries as addresses (a shared drain hands a tree's largest
    /// subtrees to the other thread): `n` of them (at most `len()`) when they are all in
    /// one block, else the whole of the bottom block, which is full.
    pub(crate) fn take_bottom(&mut self, n: usize) -> Vec<usize> {
        if self.top == 0 {
            let Some(b) = self.blocks.get_mut(0) else {
                return Vec::new();
            };
            let n = n.min(b.len());
            return b.drain(..n).map(|p| p as usize).collect();
        }
        self.top -= 1;
        self.blocks
            .remove(0)
            .into_iter()
            .map(|p| p as usize)
            .collect()
    }

    pub(crate) fn extend(&mut self, it: impl IntoIterator<Item = *mut u8>) {
        for p in it {
            self.push(p);
        }
    }
}

/// Forgets every grey object (after marking they are all marked and scanned already, or
/// marked after marking ended, which needs no scan). World stopped.
pub(crate) fn clear_greys(world: &StoppedWorld) {
    for_each_slot(world, |s| s.grey.lock().clear());
    ORPHAN_GREYS.lock().clear();
}

thread_local! {
    /// On the collector's thread, and its helper's, while it counts references
    /// (`mgcmark::count_refs`): the cycle's epoch plus one (0: not counting).
    static COUNTING: Cell<u32> = const { Cell::new(0) };
}

/// While the collector counts: the cycle's epoch. A `GcCell` stamped with it was mutated
/// in this cycle (its barrier shaded what it held at the snapshot), and its edges are not
/// counted; any other cell is counted and stamped `NO_EPOCH`, so that its first mutable
/// borrow after that still shades (mgcmark's "Cell stamps").
#[inline]
pub(crate) fn counting() -> Option<u32> {
    COUNTING.with(|c| c.get().checked_sub(1))
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

/// Models of a cycle run in stops with a mutator running between them (`mgc`'s steps):
/// the snapshot barriers of this module against the count-based roots of `mgcmark`. The
/// handshake is `handshake`'s code; the heap is a model of fing's, as in `handshake`'s
/// `loom_world`: payloads, links and cell stamps are loom cells (written in sections or
/// with the world stopped, and loom reports any overlap), counts and mark bits are
/// atomics, the mutator's grey list is a lock (as `Slot::grey`), taken by the collector
/// in its stops. The first stop starts the cycle and counts; the next ones find the roots,
/// take the greys, mark (all at once, or a budget at a time), end marking and sweep. The
/// mutator's operations land before, between or after them. Property: an object the
/// mutator still holds a handle to is never freed (its payload is read after the cycle),
/// and a collection after the mutator is done frees everything. Each model fails with its
/// barrier taken out (checked by hand when they were written).
#[cfg(all(test, not(loom)))]
mod tests {
    use super::MarkStack;

    /// Last in, first out across blocks; the length counts every block.
    #[test]
    fn mark_stack_is_a_stack_across_blocks() {
        // Addresses without provenance: never read (Miri's strict provenance).
        let p = core::ptr::without_provenance_mut::<u8>;
        let mut s = MarkStack::default();
        let n = MarkStack::BLOCK * 2 + 7;
        s.extend((1..=n).map(p));
        assert_eq!(s.len(), n);
        for i in (n - MarkStack::BLOCK - 10..=n).rev() {
            assert_eq!(s.pop(), Some(p(i)));
        }
        assert_eq!(s.len(), n - MarkStack::BLOCK - 11);
        s.push(p(9999));
        assert_eq!(s.pop(), Some(p(9999)));
        let mut left = 0;
        while s.pop().is_some() {
            left += 1;
        }
        assert_eq!(left, n - MarkStack::BLOCK - 11);
        assert!(s.is_empty());
        assert_eq!(s.pop(), None);
    }
}

#[cfg(all(test, loom))]
mod loom_cycle {
    use crate::handshake::{all_idle, leave, raise_stop, try_enter};
    use core::sync::atomic::Ordering;
    use loom::cell::UnsafeCell;
    use loom::sync::atomic::{fence, AtomicBool, AtomicU32};
    use loom::sync::{Arc, Mutex};
    use loom::thread;

    const LIVE: u32 = 42;
    const POISON: u32 = 0xdead;

    fn get<T: Copy>(c: &UnsafeCell<T>) -> T {
        // SAFETY: a loom cell: loom checks that no write races this read.
        c.with(|p| unsafe { *p })
    }

    fn put<T>(c: &UnsafeCell<T>, v: T) -> T {
        // SAFETY: as in `get`, for a write.
        c.with_mut(|p| unsafe { core::ptr::replace(p, v) })
    }

    struct Obj {
        count: AtomicU32,
        marked: AtomicBool,
        allocated: UnsafeCell<bool>,
        payload: UnsafeCell<u32>,
        /// A `GcCell<Option<Gc<_>>>`: the index of the object it holds.
        link: UnsafeCell<Option<usize>>,
        /// The cell's stamp: mutated in this cycle (its barrier shaded the old value).
        stamped: UnsafeCell<bool>,
    }

    struct Heap {
        stop: AtomicBool,
        active: AtomicBool,
        /// `MARKING`: the barriers shade.
        marking: AtomicBool,
        /// The mutator's grey list (`Slot::grey`).
        greys: Mutex<Vec<usize>>,
        objs: Vec<Obj>,
        /// The collector's `gc_refs`, between its stops.
        refs: UnsafeCell<Vec<u32>>,
        /// The collector's mark stack, between its stops.
        stack: UnsafeCell<Vec<usize>>,
    }

    impl Heap {
        /// `objs[i] = (count, link)`, all allocated.
        fn new(objs: &[(u32, Option<usize>)]) -> Arc<Heap> {
            Arc::new(Heap {
                stop: AtomicBool::new(false),
                active: AtomicBool::new(false),
                marking: AtomicBool::new(false),
                greys: Mutex::new(Vec::new()),
                objs: objs
                    .iter()
                    .map(|&(count, link)| Obj {
                        count: AtomicU32::new(count),
                        marked: AtomicBool::new(false),
                        allocated: UnsafeCell::new(true),
                        payload: UnsafeCell::new(LIVE),
                        link: UnsafeCell::new(link),
                        stamped: UnsafeCell::new(false),
                    })
                    .collect(),
                refs: UnsafeCell::new(vec![0; objs.len()]),
                stack: UnsafeCell::new(Vec::new()),
            })
        }

        /// A mutator section: a thread that finds the world stopping waits for it to
        /// resume before it tries again (as `world` parks it).
        fn section<R>(&self, f: impl FnOnce() -> R) -> R {
            while !try_enter(&self.active, &self.stop, || fence(Ordering::SeqCst)) {
                while self.stop.load(Ordering::Acquire) {
                    thread::yield_now();
                }
            }
            let r = f();
            leave(&self.active);
            r
        }

        /// `mgcwork::shade`: marks, and puts a newly marked object on the grey list.
        fn shade(&self, i: usize) {
            if !self.objs[i].marked.swap(true, Ordering::Relaxed) {
                self.greys.lock().unwrap().push(i);
            }
        }

        /// `Drop for Gc` (in a section): above zero the deletion barrier shades; at zero
        /// the object is freed here (`mfree`), lowering what it links to the same way.
        fn drop_handle(&self, i: usize) {
            self.section(|| self.lower(i));
        }

        fn lower(&self, i: usize) {
            let o = &self.objs[i];
            if o.count.fetch_sub(1, Ordering::Release) > 1 {
                if self.marking.load(Ordering::Relaxed) {
                    self.shade(i);
                }
                return;
            }
            fence(Ordering::Acquire);
            let link = put(&o.link, None);
            put(&o.payload, POISON);
            put(&o.allocated, false);
            if let Some(j) = link {
                self.lower(j);
            }
        }

        /// `GcCell::borrow_mut` + `take` (in a section): the snapshot barrier shades what
        /// the cell held and stamps it; the handle moves out to the caller.
        fn take_link(&self, i: usize) -> Option<usize> {
            self.section(|| {
                let o = &self.objs[i];
                if self.marking.load(Ordering::Relaxed) && !put(&o.stamped, true) {
                    if let Some(j) = get(&o.link) {
                        self.shade(j);
                    }
                }
                put(&o.link, None)
            })
        }

        /// `GcCell::borrow_mut` + `set` of a cell that holds nothing (in a section): the
        /// barrier stamps it; the caller's handle moves in.
        fn put_link(&self, i: usize, j: usize) {
            self.section(|| {
                let o = &self.objs[i];
                if self.marking.load(Ordering::Relaxed) && !put(&o.stamped, true) {
                    if let Some(k) = get(&o.link) {
                        self.shade(k);
                    }
                }
                assert_eq!(put(&o.link, Some(j)), None);
            })
        }

        fn read(&self, i: usize) {
            assert_eq!(
                get(&self.objs[i].payload),
                LIVE,
                "object {i} read after it was freed"
            );
        }

        /// Runs `f` with the world stopped, waiting for a running section to end.
        fn stopped(&self, f: impl FnOnce()) {
            raise_stop(&self.stop, || fence(Ordering::SeqCst));
            while !all_idle([&self.active]) {
                thread::yield_now();
            }
            f();
            self.stop.store(false, Ordering::Release);
        }

        /// First stop: the cycle starts (barriers on) and counts the references from
        /// unmarked objects' unstamped cells (`count_refs`).
        fn start_and_count(&self) {
            self.marking.store(true, Ordering::Relaxed);
            let mut refs = vec![0; self.objs.len()];
            for o in &self.objs {
                if get(&o.allocated) && !o.marked.load(Ordering::Relaxed) && !get(&o.stamped) {
                    if let Some(j) = get(&o.link) {
                        refs[j] += 1;
                    }
                }
            }
            put(&self.refs, refs);
        }

        /// The roots (`count != gc_refs`) and the greys go on the mark stack; then
        /// `budget` objects of it are scanned (`None`: all).
        fn roots_and_mark(&self, budget: Option<usize>) {
            let refs = put(&self.refs, Vec::new());
            let mut todo = put(&self.stack, Vec::new());
            for (i, o) in self.objs.iter().enumerate() {
                if get(&o.allocated)
                    && o.count.load(Ordering::Relaxed) != refs[i]
                    && !o.marked.swap(true, Ordering::Relaxed)
                {
                    todo.push(i);
                }
            }
            put(&self.stack, todo);
            self.mark(budget);
        }

        /// Takes the greys and scans `budget` objects of the mark stack (`None`: until it
        /// is empty).
        fn mark(&self, budget: Option<usize>) {
            let mut todo = put(&self.stack, Vec::new());
            todo.append(&mut self.greys.lock().unwrap());
            let mut left = budget.unwrap_or(usize::MAX);
            while left > 0 {
                let Some(i) = todo.pop() else { break };
                left -= 1;
                if let Some(j) = get(&self.objs[i].link) {
                    if !self.objs[j].marked.swap(true, Ordering::Relaxed) {
                        todo.push(j);
                    }
                }
            }
            put(&self.stack, todo);
        }

        /// Second stop: roots, marking to the end, the end of marking, and the sweep.
        fn mark_and_sweep(&self) {
            self.roots_and_mark(None);
            self.terminate_and_sweep();
        }

        /// Marking ends (the stack and the greys empty, in this stop), then the sweep:
        /// dead holders give back their counts on live targets.
        fn terminate_and_sweep(&self) {
            self.mark(None);
            self.marking.store(false, Ordering::Relaxed);
            let n = self.objs.len();
            let alloc: Vec<bool> = self.objs.iter().map(|o| get(&o.allocated)).collect();
            for i in (0..n).filter(|&i| alloc[i]) {
                let o = &self.objs[i];
                if o.marked.load(Ordering::Relaxed) {
                    continue;
                }
                if let Some(j) = put(&o.link, None) {
                    if self.objs[j].marked.load(Ordering::Relaxed) {
                        self.objs[j].count.fetch_sub(1, Ordering::Relaxed);
                    }
                }
                put(&o.payload, POISON);
                put(&o.allocated, false);
                o.count.store(0, Ordering::Relaxed);
            }
            for o in &self.objs {
                o.marked.store(false, Ordering::Relaxed);
                put(&o.stamped, false);
            }
        }

        /// A cycle in two stops.
        fn cycle(&self) {
            self.stopped(|| self.start_and_count());
            self.stopped(|| self.mark_and_sweep());
        }

        fn all_freed(&self) -> bool {
            self.objs.iter().all(|o| !get(&o.allocated))
        }
    }

    /// loom with a bound on preemptions (three: enough for the mutator's operations to land
    /// before, between or after the two stops, and inside either handshake).
    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.max_branches = 100_000;
        b.check(f);
    }

    fn race(heap: Arc<Heap>, mutator: impl FnOnce(&Heap) + Send + 'static) {
        let h2 = heap.clone();
        let m = thread::spawn(move || mutator(&h2));
        heap.cycle();
        m.join().unwrap();
        heap.stopped(|| {
            heap.start_and_count();
            heap.mark_and_sweep();
        });
        assert!(heap.all_freed(), "a count was left too high");
    }

    /// The snapshot barrier: B is held by a handle and by A's cell; the mutator moves B
    /// out of the cell (counted there by the first stop) and drops its other handle, so
    /// that B's count equals what the count saw inside the heap. Without the barrier the
    /// second stop would take B for garbage. (A and B held; A.link = B.)
    #[test]
    fn a_handle_moved_out_of_a_counted_cell_between_stops() {
        model(|| {
            let heap = Heap::new(&[(1, Some(1)), (2, None)]);
            race(heap, |h| {
                let b = h.take_link(0).unwrap();
                h.drop_handle(1);
                h.read(b);
                h.drop_handle(b);
                h.drop_handle(0);
            });
        });
    }

    /// The snapshot barrier with marking spread over stops: A and C held, A.link = B (its
    /// only reference). The second stop finds the roots A and C and scans C only; between
    /// it and the third the mutator moves B from A's cell into C's (already scanned); the
    /// third scans A, now empty. Without the barrier on A's cell B would be garbage while C
    /// holds it. (A, C held; A.link = B.)
    #[test]
    fn a_handle_moved_behind_the_marking_front() {
        model(|| {
            let heap = Heap::new(&[(1, Some(1)), (1, None), (1, None)]);
            let h2 = heap.clone();
            let m = thread::spawn(move || {
                let h = &*h2;
                let b = h.take_link(0).unwrap();
                h.put_link(2, b);
                h.drop_handle(0);
                h.read(b);
                h.drop_handle(2);
            });
            heap.stopped(|| heap.start_and_count());
            // The stack holds A then C: C is scanned first, and alone.
            heap.stopped(|| heap.roots_and_mark(Some(1)));
            heap.stopped(|| heap.terminate_and_sweep());
            m.join().unwrap();
            heap.stopped(|| {
                heap.start_and_count();
                heap.mark_and_sweep();
            });
            assert!(heap.all_freed(), "a count was left too high");
        });
    }

    /// The deletion barrier: C (held) links to B, which a handle also holds. The mutator
    /// drops C, which frees it at zero and lowers B to the count the first stop saw
    /// inside the heap (C's edge). Without the shade on that decrement the second stop
    /// would take B for garbage. (C, B held; C.link = B.)
    #[test]
    fn a_holder_freed_at_zero_between_stops() {
        model(|| {
            let heap = Heap::new(&[(1, Some(1)), (2, None)]);
            race(heap, |h| {
                h.drop_handle(0);
                h.read(1);
                h.drop_handle(1);
            });
        });
    }
}
