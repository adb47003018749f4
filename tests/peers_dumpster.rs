//! dumpster's test suite, ported to fing.
//!
//! Peer: dumpster 2.1 (crate `dumpster`), repository `claytonwramsey/dumpster`. Its `sync`
//! module is the closest analogue of fing (`dumpster::sync::Gc` is `Send + Sync`, cycles go at
//! `dumpster::sync::collect`); the `unsync` tests check the same behaviours and are ported
//! alongside. Files read:
//! - `dumpster/src/sync/tests.rs`
//! - `dumpster/src/unsync/tests.rs`
//! - `dumpster/src/sync/loom_tests.rs` (loom models, ported as runs on real threads)
//! - `dumpster_test/src/lib.rs` (the derive tests)
//! - `dumpster/src/sync/mod.rs` (the `Gc` doc example, threads sharing one handle)
//!
//! Ported (fing code, written for fing's model: counted handles, `GcCell` for mutation,
//! cycles freed by a collection, every destructor run exactly once): `single_alloc`,
//! `ref_count` / `simple` / `unit`, `self_referential` (all three files), `double_loop`,
//! `two_cycle` / `cyclic`, `self_ref_two_cycle`, `parallel_loop` (all three files),
//! `complete4`, `deadlock`, `open_drop`, `double_borrow`, `eventually_collect`,
//! `malicious` and `root_canal` (a graph rearranged while collections run, here by a real
//! thread), `fuzz` / `unsync_fuzz`, `panic_visit`, `sync_leak_by_creation_in_drop` /
//! `leak_by_creation_in_drop`, `loom_sync_leak_by_creation_in_drop` (two threads),
//! `loom_single_alloc` / `loom_self_referential` / `loom_two_cycle` (several threads on one
//! heap), `custom_trait_object`, `coerce_array` / `coerce_array_using_macro`, `from_slice` /
//! `from_vec` / `gc_from_iter` (a `Gc<[T]>` made by `Gc::map`), `unsync_as_ptr`,
//! `dead_inside_alive` (its thread-local half), and the `sync::Gc` doc example.
//!
//! Some ports check what issue 13 fixed: a destructor that allocates, drops handles, calls
//! `collect()` or locks a mutex another thread holds, and handles kept in thread-locals
//! until thread exit. `collect()` returns once the destructors of the garbage it found have
//! run.
//!
//! Left out:
//! - `escape_dead_pointer` (sync and unsync), `dead_inside_alive`'s escape through `Drop`: a
//!   fing destructor cannot reach a handle (traced types may not implement `Drop`, and
//!   `#[gc(unsafe_allow_drop)]` promises not to touch handles), so no handle escapes.
//! - `make_mut`, `make_mut_2`, `make_mut_of_object_in_dumpster`: fing has no `make_mut`,
//!   `get_mut` or reference count query.
//! - `new_cyclic_simple`, `new_cyclic_nothing`, `new_cyclic_one`, `new_cyclic_panic`,
//!   `panic_new_cyclic`, `self_referential_from_iter`: fing has no `new_cyclic`; cycles are
//!   closed through a `GcCell` (the `self_referential` ports).
//! - `from_box`, `from_slice_panic`: fing has no `From<Box<T>>` or from-iterator
//!   constructors; a value is built before it is moved into the heap, so a panic while
//!   building it never reaches the heap. (The strong/weak count checks are dumpster's
//!   internals.)
//! - `erased_alloc*` (`dumpster/src/ptr.rs`) and `test_once*` (`loom_ext.rs`): internals.

#![allow(missing_docs)]

use std::cell::RefCell;
use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use fing::{Gc, GcCell, Heap, HeapConfig, Kind, Trace, Tracer, Type, Typed};

fn heap() -> Heap {
    let mut c = HeapConfig::default();
    c.gogc = None; // only explicit collections: the tests count destructors exactly
    Heap::new(c)
}

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

fn count(c: &Arc<AtomicUsize>) -> usize {
    c.load(Ordering::SeqCst)
}

/// Counts its drops: the destructor that must run exactly once per freed object.
struct Token(Arc<AtomicUsize>);

impl Drop for Token {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// dumpster's `MultiRef`: any number of handles, and a destructor.
#[derive(Trace)]
struct MultiRef {
    refs: GcCell<Vec<Gc<MultiRef>>>,
    #[gc(untraced)]
    token: Token,
}

fn multi(h: &Heap, drops: &Arc<AtomicUsize>, refs: Vec<Gc<MultiRef>>) -> Gc<MultiRef> {
    h.alloc(MultiRef {
        refs: GcCell::new(refs),
        token: Token(drops.clone()),
    })
}

/// A type with its own `Drop` (dumpster's `Foo`): the destructor touches no handle, which is
/// what `#[gc(unsafe_allow_drop)]` asks.
#[derive(Trace)]
#[gc(unsafe_allow_drop)]
struct Foo {
    next: GcCell<Option<Gc<Foo>>>,
    #[gc(untraced)]
    drops: Arc<AtomicUsize>,
}

// SAFETY: its `Drop` dereferences none of its traced handles.
unsafe impl fing::AllowDrop for Foo {}

impl Drop for Foo {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

/// A link whose drop only drops handles: freed when its count reaches zero.
#[derive(Trace)]
struct Link {
    value: u64,
    next: Option<Gc<Link>>,
}

/// A node for garbage that only a collection frees (self-loops), with no destructor.
#[derive(Trace)]
struct Loop {
    next: GcCell<Option<Gc<Loop>>>,
}

/// Ports `sync::tests::single_alloc` (and `loom_single_alloc`).
#[test]
fn single_alloc() {
    let h = heap();
    let drops = counter();
    let gc1 = multi(&h, &drops, Vec::new());
    h.collect();
    assert_eq!(count(&drops), 0, "held by a local");
    drop(gc1);
    h.collect();
    assert_eq!(count(&drops), 1);
    h.collect();
    assert_eq!(count(&drops), 1, "exactly once");
}

/// Ports `sync::tests::ref_count`, `unsync::tests::simple` and `dumpster_test::unit`: the
/// object lives while any handle does. A type with a destructor is freed by the sweep (fing
/// runs no user code when a count reaches zero); one whose drop only drops handles is freed
/// by the last handle's drop, with no collection.
#[test]
fn ref_count() {
    let h = heap();
    let drops = counter();
    let gc1 = multi(&h, &drops, Vec::new());
    let gc2 = Gc::clone(&gc1);
    drop(gc1);
    h.collect();
    assert_eq!(count(&drops), 0, "gc2 still holds it");
    drop(gc2);
    h.collect();
    assert_eq!(count(&drops), 1);

    // A drop that meets a collection elsewhere in the process waits in this thread's ring
    // until its next drop: drops on another heap flush it. If that collection applied the
    // ring itself, it only lowered the count and left the object to `h`'s next sweep: the
    // other tests of this binary collect all the time, so the experiment is repeated until
    // one drop runs clear of them.
    let other = heap();
    let freed_by_drop = (0..100).any(|_| {
        let before = h.stats();
        let a = h.alloc(Link {
            value: 7,
            next: None,
        });
        let b = a.clone();
        drop(a);
        assert_eq!(b.value, 7);
        drop(b);
        for _ in 0..1000 {
            if h.stats().frees > before.frees {
                break;
            }
            drop(other.alloc(Link {
                value: 0,
                next: None,
            }));
        }
        let after = h.stats();
        assert_eq!(after.num_gc, before.num_gc, "without a collection");
        after.frees == before.frees + 1
    });
    assert!(freed_by_drop, "freed by the last drop");
}

/// Ports `self_referential` of `sync::tests`, `unsync::tests` and `dumpster_test` (and
/// `loom_self_referential`): an object holding a handle to itself.
#[test]
fn self_referential() {
    let h = heap();
    let drops = counter();
    let gc1 = h.alloc(Foo {
        next: GcCell::new(None),
        drops: drops.clone(),
    });
    gc1.next.set(Some(gc1.clone()));
    h.collect();
    assert_eq!(count(&drops), 0);
    drop(gc1);
    assert_eq!(count(&drops), 0, "a cycle waits for a collection");
    h.collect();
    assert_eq!(count(&drops), 1);
}

/// Ports `dumpster_test::double_loop`: two handles from an object to itself.
#[test]
fn double_loop() {
    let h = heap();
    let drops = counter();
    let gc1 = multi(&h, &drops, Vec::new());
    gc1.refs
        .borrow_mut()
        .extend([Gc::clone(&gc1), Gc::clone(&gc1)]);
    drop(gc1);
    h.collect();
    assert_eq!(count(&drops), 1);
}

/// Ports `sync::tests::two_cycle`, `unsync::tests::cyclic` and `loom_two_cycle`.
#[test]
fn two_cycle() {
    let h = heap();
    let (d0, d1) = (counter(), counter());
    let gc0 = multi(&h, &d0, Vec::new());
    let gc1 = multi(&h, &d1, vec![gc0.clone()]);
    gc0.refs.borrow_mut().push(gc1.clone());
    h.collect();
    assert_eq!((count(&d0), count(&d1)), (0, 0));
    drop(gc0);
    h.collect();
    assert_eq!((count(&d0), count(&d1)), (0, 0), "gc1 keeps both");
    drop(gc1);
    h.collect();
    assert_eq!((count(&d0), count(&d1)), (1, 1));
}

/// Ports `sync::tests::self_ref_two_cycle`: a two-cycle whose members also point to
/// themselves.
#[test]
fn self_ref_two_cycle() {
    let h = heap();
    let (d0, d1) = (counter(), counter());
    let gc0 = multi(&h, &d0, Vec::new());
    let gc1 = multi(&h, &d1, vec![gc0.clone()]);
    gc0.refs.borrow_mut().extend([gc0.clone(), gc1.clone()]);
    gc1.refs.borrow_mut().push(gc1.clone());
    h.collect();
    assert_eq!((count(&d0), count(&d1)), (0, 0));
    drop(gc0);
    h.collect();
    assert_eq!((count(&d0), count(&d1)), (0, 0));
    drop(gc1);
    h.collect();
    assert_eq!((count(&d0), count(&d1)), (1, 1));
}

/// Ports `parallel_loop` of `sync::tests`, `unsync::tests` and `dumpster_test`: two paths
/// from 4 to 1 (through 2 and through 3) and 1 back to 4; nothing goes until the last
/// handle does.
#[test]
fn parallel_loop() {
    let h = heap();
    let d: Vec<Arc<AtomicUsize>> = (0..4).map(|_| counter()).collect();
    let counts = || d.iter().map(count).collect::<Vec<_>>();
    let gc1 = multi(&h, &d[0], Vec::new());
    let gc2 = multi(&h, &d[1], vec![gc1.clone()]);
    let gc3 = multi(&h, &d[2], vec![gc1.clone()]);
    let gc4 = multi(&h, &d[3], vec![gc2.clone(), gc3.clone()]);
    gc1.refs.borrow_mut().push(gc4.clone());
    for g in [gc1, gc2, gc3] {
        drop(g);
        h.collect();
        assert_eq!(counts(), [0, 0, 0, 0], "gc4 reaches everything");
    }
    drop(gc4);
    h.collect();
    assert_eq!(counts(), [1, 1, 1, 1]);
}

/// Ports `unsync::tests::complete4`: a complete graph of four objects.
#[test]
fn complete4() {
    let h = heap();
    let d: Vec<Arc<AtomicUsize>> = (0..4).map(|_| counter()).collect();
    let mut gcs: Vec<Gc<MultiRef>> = Vec::new();
    for dc in &d {
        let gc = multi(&h, dc, Vec::new());
        for x in &gcs {
            gc.refs.borrow_mut().push(x.clone());
            x.refs.borrow_mut().push(gc.clone());
        }
        gcs.push(gc);
    }
    for _ in 0..3 {
        gcs.pop();
    }
    h.collect();
    assert!(d.iter().all(|c| count(c) == 0));
    drop(gcs);
    h.collect();
    assert!(d.iter().all(|c| count(c) == 1));
}

#[derive(Trace)]
struct Locked {
    #[gc(untraced)]
    lock: Mutex<()>,
}

/// Ports `sync::tests::deadlock`: dropping a handle to an object whose mutex is locked, and
/// collecting, while the guard is held.
#[test]
fn deadlock() {
    let h = heap();
    let gc1 = h.alloc(Locked {
        lock: Mutex::new(()),
    });
    let gc2 = gc1.clone();
    let guard = gc1.lock.lock().unwrap();
    drop(gc2);
    h.collect();
    drop(guard);
    drop(gc1);
    h.collect();
    assert_eq!(h.stats().heap_objects, 0);
}

/// Drops by locking a mutex: a destructor that can block.
struct LockOnDrop {
    log: Arc<Mutex<Vec<u64>>>,
    dropping: Arc<AtomicBool>,
    id: u64,
}

impl Drop for LockOnDrop {
    fn drop(&mut self) {
        self.dropping.store(true, Ordering::SeqCst);
        self.log.lock().unwrap().push(self.id);
    }
}

#[derive(Trace)]
struct Logged {
    #[gc(untraced)]
    on_drop: LockOnDrop,
}

/// Ports `sync::tests::deadlock` the other way round: the destructor of the garbage locks a
/// mutex that another thread holds while it allocates. The collection must not stop that
/// thread for as long as the destructor waits (target semantics: `collect()` returns once
/// the destructor has run).
#[test]
fn deadlock_destructor_locks_a_mutex_held_by_an_allocating_thread() {
    let h = heap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let dropping = Arc::new(AtomicBool::new(false));
    drop(h.alloc(Logged {
        on_drop: LockOnDrop {
            log: log.clone(),
            dropping: dropping.clone(),
            id: 1,
        },
    }));
    let (ready_tx, ready_rx) = mpsc::channel();
    let holder = {
        let (h, log, dropping) = (h.clone(), log.clone(), dropping.clone());
        thread::spawn(move || {
            let guard = log.lock().unwrap();
            ready_tx.send(()).unwrap();
            // Allocate and drop (mutator sections) until the destructor waits for the lock,
            // and once more after: that section must not wait for the destructor.
            let mut n = 0u64;
            loop {
                let waiting = dropping.load(Ordering::SeqCst);
                drop(h.alloc(Link {
                    value: n,
                    next: None,
                }));
                n += 1;
                if waiting || n == 20_000_000 {
                    break;
                }
            }
            drop(guard);
        })
    };
    ready_rx.recv().unwrap();
    h.collect();
    assert_eq!(*log.lock().unwrap(), vec![1], "the destructor ran once");
    holder.join().unwrap();
}

/// Ports `sync::tests::open_drop`: a collection while a borrow of the object's cell is held.
#[test]
fn open_drop() {
    let h = heap();
    let drops = counter();
    let gc1 = multi(&h, &drops, Vec::new());
    gc1.refs.borrow_mut().push(gc1.clone());
    let guard = gc1.refs.borrow();
    h.collect();
    assert_eq!(count(&drops), 0);
    drop(guard);
    drop(gc1);
    h.collect();
    assert_eq!(count(&drops), 1);
}

/// Ports `unsync::tests::double_borrow`: the self-reference removed through a write guard.
#[test]
fn double_borrow() {
    let h = heap();
    let drops = counter();
    let gc = multi(&h, &drops, Vec::new());
    gc.refs.borrow_mut().push(gc.clone());
    let mut my_borrow = gc.refs.borrow_mut();
    my_borrow.pop();
    drop(my_borrow);
    h.collect();
    assert_eq!(count(&drops), 0);
    drop(gc);
    h.collect();
    assert_eq!(count(&drops), 1);
}

/// Ports `sync::tests::eventually_collect`: with automatic collection on, allocating enough
/// makes the collector free an unreachable cycle without an explicit `collect()`.
#[test]
fn eventually_collect() {
    let mut c = HeapConfig::default();
    c.gogc = Some(100);
    let h = Heap::new(c);
    let (d1, d2) = (counter(), counter());
    let gc1 = multi(&h, &d1, Vec::new());
    let gc2 = multi(&h, &d2, vec![gc1.clone()]);
    gc1.refs.borrow_mut().push(gc2.clone());
    drop((gc1, gc2));
    // Garbage that only a collection frees, so the heap grows towards its goal.
    for _ in 0..2_000_000 {
        if count(&d1) == 1 {
            break;
        }
        let l = h.alloc(Loop {
            next: GcCell::new(None),
        });
        l.next.set(Some(l.clone()));
    }
    assert!(h.stats().num_gc >= 1, "the pacer started a collection");
    assert_eq!((count(&d1), count(&d2)), (1, 1));
}

#[derive(Trace)]
struct EvilA {
    x: Gc<EvilX>,
    y: Gc<EvilY>,
    #[gc(untraced)]
    token: Token,
}

#[derive(Trace)]
struct EvilX {
    a: GcCell<Option<Gc<EvilA>>>,
}

#[derive(Trace)]
struct EvilY {
    a: GcCell<Option<Gc<EvilA>>>,
}

/// Ports `sync::tests::malicious` and `sync::tests::root_canal`: while collections run, the
/// only handles to an object are moved from one cell to another (dumpster's "evil" trace,
/// here a thread). The object is never freed while reachable, and freed once after.
#[test]
fn malicious_and_root_canal() {
    let h = heap();
    let drops = counter();
    let x = h.alloc(EvilX {
        a: GcCell::new(None),
    });
    let y = h.alloc(EvilY {
        a: GcCell::new(None),
    });
    let a = h.alloc(EvilA {
        x: x.clone(),
        y: y.clone(),
        token: Token(drops.clone()),
    });
    x.a.set(Some(a.clone()));
    drop(a); // reachable only through the cells now
    let stop = Arc::new(AtomicBool::new(false));
    let mover = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut moves = 0u64;
            while !stop.load(Ordering::SeqCst) || moves < 1000 {
                let held = x.a.take();
                assert!(held.is_some(), "the handle was lost");
                y.a.set(held);
                let held = y.a.take();
                x.a.set(held);
                moves += 1;
            }
            // Leave it in y's cell: the cycle a -> y -> a.
            let held = x.a.take();
            y.a.set(held);
        })
    };
    for _ in 0..50 {
        h.collect();
        assert_eq!(count(&drops), 0, "freed while reachable");
    }
    stop.store(true, Ordering::SeqCst);
    mover.join().unwrap();
    h.collect();
    assert_eq!(count(&drops), 1);
    h.collect();
    assert_eq!(count(&drops), 1);
    assert_eq!(h.stats().heap_objects, 0);
}

/// xorshift64*: a seeded generator for the fuzz port.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Trace)]
struct Alloc {
    id: usize,
    refs: GcCell<Vec<Gc<Alloc>>>,
    #[gc(untraced)]
    detector: Detector,
}

/// One counter per allocation.
struct Detector(Arc<Vec<AtomicUsize>>, usize);

impl Drop for Detector {
    fn drop(&mut self) {
        self.0[self.1].fetch_add(1, Ordering::SeqCst);
    }
}

fn reachable(roots: &[Gc<Alloc>]) -> HashSet<usize> {
    let mut seen = HashSet::new();
    let mut stack: Vec<Gc<Alloc>> = roots.to_vec();
    while let Some(a) = stack.pop() {
        if seen.insert(a.id) {
            stack.extend(a.refs.borrow().iter().cloned());
        }
    }
    seen
}

/// Ports `sync::tests::fuzz` and `unsync::tests::unsync_fuzz`: 20 000 random operations
/// (allocate, link, drop a root, unlink), a collection every 1000 of them checking that no
/// reachable object was freed, then every object freed exactly once.
#[test]
fn fuzz() {
    const N: usize = 20_000;
    let h = heap();
    let detectors: Arc<Vec<AtomicUsize>> =
        Arc::new((0..N + 100).map(|_| AtomicUsize::new(0)).collect());
    let mut next_id = 0;
    let mut new = |h: &Heap| {
        let a = h.alloc(Alloc {
            id: next_id,
            refs: GcCell::new(Vec::new()),
            detector: Detector(detectors.clone(), next_id),
        });
        next_id += 1;
        a
    };
    let mut rng = Rng(12345);
    let mut gcs: Vec<Gc<Alloc>> = (0..50).map(|_| new(&h)).collect();
    for step in 0..N {
        if gcs.is_empty() {
            gcs.push(new(&h));
        }
        match rng.below(4) {
            0 => gcs.push(new(&h)),
            1 => {
                let from = rng.below(gcs.len());
                let to = rng.below(gcs.len());
                let target = gcs[to].clone();
                gcs[from].refs.borrow_mut().push(target);
            }
            2 => {
                let i = rng.below(gcs.len());
                gcs.swap_remove(i);
            }
            _ => {
                let from = rng.below(gcs.len());
                let mut refs = gcs[from].refs.borrow_mut();
                if !refs.is_empty() {
                    let to = rng.below(refs.len());
                    refs.swap_remove(to);
                }
            }
        }
        if step % 1000 == 999 {
            h.collect();
            for id in reachable(&gcs) {
                assert_eq!(
                    detectors[id].load(Ordering::SeqCst),
                    0,
                    "object {id} freed while reachable (step {step})"
                );
            }
        }
    }
    drop(gcs);
    h.collect();
    let wrong: Vec<(usize, usize)> = detectors[..next_id]
        .iter()
        .map(|d| d.load(Ordering::SeqCst))
        .enumerate()
        .filter(|&(_, n)| n != 1)
        .collect();
    assert!(wrong.is_empty(), "(id, drops) not dropped once: {wrong:?}");
}

/// A hand-written `Trace` that panics while armed (dumpster's `PanicVisit`).
struct PanicVisit {
    armed: AtomicBool,
    me: GcCell<Option<Gc<PanicVisit>>>,
    #[allow(dead_code)] // counts the drop
    token: Token,
}

// SAFETY: the descriptor describes `PanicVisit` (size, alignment and drop glue from the
// compiler); `trace` reports its handles.
unsafe impl Typed for PanicVisit {
    const TYPE: &'static Type =
        // SAFETY: the impl's own argument: this descriptor describes the type exactly.
        &unsafe { Type::rust::<PanicVisit>(Kind::Struct) }.named("peers_dumpster.PanicVisit");
}

// SAFETY: `trace` reports the one handle `PanicVisit` owns (or panics before reporting any).
unsafe impl Trace for PanicVisit {
    const NO_SCAN: bool = false;
    fn trace(&self, t: &mut Tracer) {
        if self.armed.load(Ordering::SeqCst) {
            panic!("panic on visit");
        }
        self.me.trace(t);
    }
}

/// Ports `panic_visit` of `sync::tests` and `unsync::tests`: a `Trace` that panics during a
/// collection. The panic reaches the caller of `collect()`; the collection is abandoned with
/// nothing freed, and the next one frees the cycle once.
#[test]
fn panic_visit() {
    let h = heap();
    let drops = counter();
    let gc = h.alloc(PanicVisit {
        armed: AtomicBool::new(true),
        me: GcCell::new(None),
        token: Token(drops.clone()),
    });
    gc.me.set(Some(gc.clone()));
    let again = gc.clone();
    drop(gc);
    let err = catch_unwind(AssertUnwindSafe(|| h.collect())).expect_err("the trace panicked");
    let msg = err
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| err.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert!(msg.contains("panic on visit"), "{msg}");
    assert_eq!(
        count(&drops),
        0,
        "nothing freed by the abandoned collection"
    );
    again.armed.store(false, Ordering::SeqCst);
    assert!(Gc::ptr_eq(again.me.borrow().as_ref().unwrap(), &again));
    drop(again);
    h.collect();
    assert_eq!(count(&drops), 1);
}

/// A destructor that makes new garbage: a self-loop `Bar` on the same heap, optionally
/// collecting afterwards (dumpster's `deliver_dumpster` call).
struct MakesBar {
    heap: Heap,
    bar_drops: Arc<AtomicUsize>,
    collect: bool,
}

impl Drop for MakesBar {
    fn drop(&mut self) {
        let bar = self.heap.alloc(Bar {
            me: GcCell::new(None),
            token: Token(self.bar_drops.clone()),
        });
        bar.me.set(Some(bar.clone()));
        drop(bar);
        if self.collect {
            self.heap.collect();
        }
    }
}

#[derive(Trace)]
struct FooMakesBar {
    me: GcCell<Option<Gc<FooMakesBar>>>,
    #[gc(untraced)]
    on_drop: MakesBar,
}

#[derive(Trace)]
struct Bar {
    me: GcCell<Option<Gc<Bar>>>,
    #[gc(untraced)]
    token: Token,
}

fn foo_makes_bar(h: &Heap, bar_drops: &Arc<AtomicUsize>, collect: bool) -> Gc<FooMakesBar> {
    let f = h.alloc(FooMakesBar {
        me: GcCell::new(None),
        on_drop: MakesBar {
            heap: h.clone(),
            bar_drops: bar_drops.clone(),
            collect,
        },
    });
    f.me.set(Some(f.clone()));
    f
}

/// Ports `unsync::tests::leak_by_creation_in_drop`: a destructor run by a collection
/// allocates a new cycle, which the next collection frees (nothing leaks).
#[test]
fn leak_by_creation_in_drop() {
    let h = heap();
    let bar_drops = counter();
    drop(foo_makes_bar(&h, &bar_drops, false));
    h.collect(); // frees Foo, whose destructor makes Bar
    h.collect(); // frees Bar
    assert_eq!(count(&bar_drops), 1);
    h.collect();
    assert_eq!(count(&bar_drops), 1);
    assert_eq!(h.stats().heap_objects, 0);
}

/// Ports `sync::tests::sync_leak_by_creation_in_drop`: as above, and the destructor then
/// collects (dumpster delivers its dumpster there).
#[test]
fn sync_leak_by_creation_in_drop() {
    let h = heap();
    let bar_drops = counter();
    drop(foo_makes_bar(&h, &bar_drops, true));
    h.collect();
    h.collect();
    assert_eq!(count(&bar_drops), 1);
    assert_eq!(h.stats().heap_objects, 0);
}

/// Ports `loom_tests::loom_sync_leak_by_creation_in_drop` (ignored upstream): two threads
/// each make the garbage and collect twice, on one heap.
#[test]
fn loom_sync_leak_by_creation_in_drop() {
    let h = heap();
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let h = h.clone();
            thread::spawn(move || {
                let bar_drops = counter();
                drop(foo_makes_bar(&h, &bar_drops, false));
                h.collect();
                h.collect();
                count(&bar_drops)
            })
        })
        .collect();
    for r in runs {
        let n = r.join().unwrap();
        // The other thread's collections may free this thread's Bar, but never twice.
        assert!(n <= 1, "a Bar dropped {n} times");
    }
    h.collect();
    assert_eq!(h.stats().heap_objects, 0, "both Bars were freed");
}

/// Ports `loom_single_alloc`, `loom_self_referential` and `loom_two_cycle` from
/// `loom_tests.rs`: the same shapes made, dropped and collected by four threads at once on
/// one heap. Every object is freed exactly once, none while its thread holds it.
#[test]
fn loom_shapes_on_four_threads() {
    let h = heap();
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let h = h.clone();
            thread::spawn(move || {
                let drops = counter();
                let mut made = 0;
                for round in 0..200 {
                    let single = multi(&h, &drops, Vec::new());
                    let me = multi(&h, &drops, Vec::new());
                    me.refs.borrow_mut().push(me.clone());
                    let gc0 = multi(&h, &drops, Vec::new());
                    let gc1 = multi(&h, &drops, vec![gc0.clone()]);
                    gc0.refs.borrow_mut().push(gc1.clone());
                    made += 4;
                    if round % 50 == t {
                        h.collect();
                    }
                    assert!(count(&drops) <= made - 4, "freed while held");
                    drop((single, me, gc0, gc1));
                    if round % 20 == 0 {
                        h.collect();
                    }
                }
                (drops, made)
            })
        })
        .collect();
    let results: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    h.collect();
    for (drops, made) in results {
        assert_eq!(count(&drops), made);
    }
}

trait MyTrait: Send + Sync {
    fn value(&self) -> i32;
}

impl MyTrait for i32 {
    fn value(&self) -> i32 {
        *self
    }
}

/// Ports `sync::tests::custom_trait_object` (and `unsync`'s): a handle to a trait object,
/// made with `Gc::map`, keeps its object like any other handle.
#[test]
fn custom_trait_object() {
    let h = heap();
    let gc = h.alloc(5i32);
    let dyn_gc: Gc<dyn MyTrait> = gc.map(|x| x as &dyn MyTrait);
    assert!(Gc::same_object(&dyn_gc, &gc));
    drop(gc);
    h.collect();
    assert_eq!(dyn_gc.value(), 5);
}

/// Ports `coerce_array` and `coerce_array_using_macro` (sync and unsync): an array handle
/// seen as a slice handle.
#[test]
fn coerce_array() {
    let h = heap();
    let gc1: Gc<[u8; 3]> = h.alloc([1, 2, 3]);
    let gc2: Gc<[u8]> = gc1.map(|a| &a[..]);
    assert_eq!(gc2.len(), 3);
    assert_eq!(&*gc2, &[1, 2, 3]);
    assert!(Gc::same_object(&gc1, &gc2));
    assert_eq!(
        std::mem::size_of::<Gc<[u8; 3]>>(),
        std::mem::size_of::<usize>()
    );
    drop(gc1);
    h.collect();
    assert_eq!(&*gc2, &[1, 2, 3], "the slice handle keeps the array");
}

/// Ports `from_slice`, `from_vec` and `gc_from_iter` (sync and unsync): a `Gc<[T]>` made
/// from a vector or a collected iterator, by `Gc::map` over the heap value that owns it.
#[test]
fn from_slice_from_vec_from_iter() {
    let h = heap();
    let v = h.alloc(vec![String::from("hello"), String::from("world")]);
    let s: Gc<[String]> = v.map(|v| v.as_slice());
    drop(v);
    h.collect();
    assert_eq!(&*s, ["hello", "world"]);
    let it: Gc<[u32]> = h.alloc((0..100).collect::<Vec<u32>>()).map(|v| &v[..]);
    h.collect();
    assert_eq!(it.len(), 100);
    assert!(it.iter().copied().eq(0..100));
    drop((s, it));
    h.collect();
    assert_eq!(h.stats().heap_objects, 0);
}

#[derive(Trace)]
struct Empty;

#[derive(Trace)]
struct B(Gc<Empty>);

/// Ports `dumpster_test::unsync_as_ptr`: handles to one object share its address, handles
/// to different objects do not, whether held in locals or in heap objects.
#[test]
fn unsync_as_ptr() {
    let h = heap();
    // `Empty` is zero-sized and needs no memory: every handle to it has one address. The
    // distinct objects here are one-byte values.
    let empty = h.alloc(1u8);
    let empty_a = Gc::clone(&empty);
    let empty_ptr = Gc::as_ptr(&empty);
    assert_eq!(empty_ptr, Gc::as_ptr(&empty_a));
    let ghost = h.alloc(Empty);
    let b = B(ghost.clone());
    assert_eq!(Gc::as_ptr(&ghost), Gc::as_ptr(&b.0));
    let bb = h.alloc(B(ghost.clone()));
    assert_eq!(Gc::as_ptr(&ghost), Gc::as_ptr(&bb.0));
    let empty2 = h.alloc(2u8);
    assert_ne!(empty_ptr, Gc::as_ptr(&empty2));
    let hold = h.alloc((empty.clone(), empty2.clone()));
    assert_eq!(Gc::as_ptr(&hold.0), empty_ptr);
    assert_eq!(Gc::as_ptr(&hold.1), Gc::as_ptr(&empty2));
    assert_ne!(Gc::as_ptr(&hold.0), Gc::as_ptr(&hold.1));
    h.collect();
    assert_eq!((*hold.0, *hold.1), (1, 2));
}

thread_local! {
    static ESCAPE: RefCell<Option<Gc<MultiRef>>> = const { RefCell::new(None) };
}

/// Ports `unsync::tests::dead_inside_alive`, the half that fing allows: a handle kept in a
/// thread-local is a root while the thread lives, and the thread's exit releases it. One
/// thread touches the thread-local before its first allocation (its destructor is then
/// registered before fing's per-thread state), the other after.
#[test]
fn dead_inside_alive() {
    let h = heap();
    let drops = counter();
    let (held_tx, held_rx) = mpsc::channel();
    let (exit_tx, exit_rx) = mpsc::channel::<()>();
    let exit_rx = Arc::new(Mutex::new(exit_rx));
    let threads: Vec<_> = [true, false]
        .into_iter()
        .map(|touch_first| {
            let (h, drops) = (h.clone(), drops.clone());
            let (held_tx, exit_rx) = (held_tx.clone(), exit_rx.clone());
            thread::spawn(move || {
                if touch_first {
                    ESCAPE.with(|e| assert!(e.borrow().is_none()));
                }
                let c = multi(&h, &drops, Vec::new());
                c.refs.borrow_mut().push(c.clone()); // a cycle, too
                ESCAPE.with(|e| *e.borrow_mut() = Some(c));
                held_tx.send(()).unwrap();
                exit_rx.lock().unwrap().recv().unwrap();
            })
        })
        .collect();
    held_rx.recv().unwrap();
    held_rx.recv().unwrap();
    h.collect();
    assert_eq!(count(&drops), 0, "the thread-locals are roots");
    exit_tx.send(()).unwrap();
    exit_tx.send(()).unwrap();
    for t in threads {
        t.join().unwrap();
    }
    h.collect();
    assert_eq!(count(&drops), 2, "released at thread exit, then collected");
}

/// Ports the example of `dumpster::sync::Gc`'s documentation: threads share one handle.
#[test]
fn sync_gc_doc_example() {
    let h = heap();
    let shared = h.alloc(AtomicUsize::new(0));
    thread::scope(|s| {
        s.spawn(|| {
            let other_gc = shared.clone();
            other_gc.store(1, Ordering::Relaxed);
        });
        shared.store(2, Ordering::Relaxed);
    });
    h.collect();
    assert!(matches!(shared.load(Ordering::Relaxed), 1 | 2));
}
