//! Bad input across the public API, each case with what it must give: a heap limit
//! passed (a typed error that gives the value back, or a panic with the API's name from
//! `alloc`), a `Trace` impl that panics during a collection (the collection is abandoned,
//! nothing is freed, the heap stays consistent), a `Drop` that panics in the sweep
//! (caught, counted, the object freed anyway), and `set_finalizer` on an object whose
//! finalizer is running. (The `set_finalizer` checks are in finalizers.rs; handles across
//! heaps, `collect()` and `wait_finalizers()` inside a finalizer, and a finalizer that
//! never returns are there too.)
//!
//! Tests wait with `wait_finalizers()` and loops of `collect()`, never bare sleeps.

#![allow(missing_docs)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use fing::{Gc, GcCell, Heap, HeapConfig, Kind, Outcome, Trace, Tracer, Type, Typed};

fn heap(max: Option<usize>) -> Heap {
    let mut c = HeapConfig::default();
    c.gogc = None;
    c.max_heap = max;
    Heap::new(c)
}

/// 64 KiB: a large object (a span of its own: 9 pages of 8 KiB with its header).
#[derive(Trace)]
struct Block {
    bytes: [u64; 1 << 13],
}

const BLOCK_SPAN: usize = 9 << 13;

fn block() -> Block {
    Block {
        bytes: [7; 1 << 13],
    }
}

#[test]
fn past_the_heap_limit_try_alloc_gives_the_value_back_and_alloc_panics() {
    // A 64 KiB value passed by value down the allocation path (try, collect, try again,
    // give back) keeps a copy in each unoptimised frame of a debug build: about 2 MiB of
    // stack, the test harness's threads' size. The main thread's 8 MiB, then.
    std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(limit_passed)
        .unwrap()
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p));
}

fn limit_passed() {
    const LIMIT: usize = 1 << 20;
    let h = heap(Some(LIMIT));
    let mut held = Vec::new();
    let err = loop {
        match h.try_alloc(block()) {
            Ok(b) => held.push(b),
            Err(e) => break e,
        }
        assert!(held.len() <= 16, "the limit of 1 MiB was not enforced");
    };
    assert_eq!(
        held.len(),
        LIMIT / BLOCK_SPAN,
        "as many spans as fit in 1 MiB"
    );
    assert!(h.stats().heap_in_use <= LIMIT);
    assert_eq!(err.limit(), Some(LIMIT));
    assert_eq!(err.size(), 8 << 13);
    let msg = err.to_string();
    assert!(
        msg.starts_with("fing::Heap::try_alloc: cannot allocate a ") && msg.contains("Block"),
        "{msg}"
    );
    assert!(msg.contains("the heap's limit is 1048576 bytes"), "{msg}");
    let back = err.into_inner();
    assert_eq!(back.bytes[1234], 7, "the value comes back whole");

    let p = catch_unwind(AssertUnwindSafe(|| h.alloc(block())))
        .err()
        .unwrap();
    let p = p.downcast_ref::<String>().unwrap();
    assert!(
        p.starts_with("fing::Heap::alloc: cannot allocate a "),
        "{p}"
    );

    // Freeing makes room: try_alloc collects before it gives up.
    held.truncate(3);
    let b = h.try_alloc(back).expect("room after the collection");
    assert_eq!(b.bytes[0], 7);
    drop((held, b));
    h.collect();
    assert_eq!(h.stats().heap_objects, 0);
}

#[test]
fn an_object_larger_than_the_limit_is_refused_at_once() {
    let h = heap(Some(32 << 10));
    let Err(e) = h.try_alloc(block()) else {
        panic!("a 64 KiB object fit under a 32 KiB limit")
    };
    assert_eq!(e.limit(), Some(32 << 10));
    if let Err(e) = h.try_alloc(5u64) {
        panic!("small objects still fit: {e}");
    }
}

static TRACE_PANICS: AtomicBool = AtomicBool::new(false);

/// A hand-written `Trace` impl that panics on demand.
struct Bomb {
    next: Option<Gc<Node>>,
}

// SAFETY: the descriptor describes `Bomb`: a struct whose handles `trace` reports.
unsafe impl Typed for Bomb {
    // SAFETY: the impl's own argument: this descriptor describes the type exactly.
    const TYPE: &'static Type =
        &unsafe { Type::rust::<Bomb>(Kind::Struct) }.named("bad_input.Bomb");
}

// SAFETY: `trace` reports the one handle `Bomb` owns (or panics before reporting any).
unsafe impl Trace for Bomb {
    const NO_SCAN: bool = false;
    fn trace(&self, t: &mut Tracer) {
        if TRACE_PANICS.load(Ordering::SeqCst) {
            panic!("Bomb::trace panics on purpose");
        }
        self.next.trace(t);
    }
}

// The destructor reads no handle (only `id`), which is what the opt-out asks.
#[derive(Trace)]
#[gc(unsafe_allow_drop)]
struct Node {
    id: u64,
    next: GcCell<Option<Gc<Node>>>,
    #[gc(untraced)]
    drops: Arc<AtomicUsize>,
}

// SAFETY: its `Drop` dereferences none of its traced handles.
unsafe impl fing::AllowDrop for Node {}

impl Drop for Node {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
        if self.id == 666 {
            panic!("Node::drop panics on purpose");
        }
    }
}

fn node(h: &Heap, id: u64, next: Option<Gc<Node>>, drops: &Arc<AtomicUsize>) -> Gc<Node> {
    h.alloc(Node {
        id,
        next: GcCell::new(next),
        drops: drops.clone(),
    })
}

/// `Mine::trace` panics from its call of this number on (`usize::MAX`: never).
static MINE_PANICS_FROM: AtomicUsize = AtomicUsize::new(usize::MAX);
static MINE_CALLS: AtomicUsize = AtomicUsize::new(0);

/// `Bomb` for `a_panicking_trace_in_a_shared_count_or_mark_loses_nothing` (its own flag:
/// the tests of this file run at once).
struct Mine {
    next: Option<Gc<Node>>,
}

// SAFETY: the descriptor describes `Mine`: a struct whose handles `trace` reports.
unsafe impl Typed for Mine {
    // SAFETY: the impl's own argument: this descriptor describes the type exactly.
    const TYPE: &'static Type =
        &unsafe { Type::rust::<Mine>(Kind::Struct) }.named("bad_input.Mine");
}

// SAFETY: `trace` reports the one handle `Mine` owns (or panics before reporting any).
unsafe impl Trace for Mine {
    const NO_SCAN: bool = false;
    fn trace(&self, t: &mut Tracer) {
        if MINE_CALLS.fetch_add(1, Ordering::SeqCst) >= MINE_PANICS_FROM.load(Ordering::SeqCst) {
            panic!("Mine::trace panics on purpose");
        }
        self.next.trace(t);
    }
}

/// A heap large enough that a collection's count and marking are shared with the
/// collector's helper thread (over 512 spans of objects with handles, over 4 MB), with
/// `Trace` impls that panic spread through it, first while references are counted (each
/// `Mine` is traced once there), then while marking (its second trace): whichever thread
/// meets one first, the panic reaches `collect()`, after both threads are done, nothing is
/// freed, and the next collection frees exactly the garbage.
#[test]
fn a_panicking_trace_in_a_shared_count_or_mark_loses_nothing() {
    const N: u64 = 120_000;
    for in_mark in [false, true] {
        let h = heap(None);
        let drops = Arc::new(AtomicUsize::new(0));
        let mut live = Vec::new();
        let mut mines = Vec::new();
        for id in 0..N {
            // Pairs of nodes: the even ones live, holding the odd ones; one pair in a
            // thousand made garbage (a cycle).
            let odd = node(&h, 2 * id + 1, None, &drops);
            let even = node(&h, 2 * id, Some(odd.clone()), &drops);
            if id % 1000 == 0 {
                odd.next.set(Some(even.clone()));
            } else {
                live.push(even);
            }
            if id % 1500 == 0 {
                mines.push(h.alloc(Mine {
                    next: Some(node(&h, 1_000_000 + id, None, &drops)),
                }));
            }
        }
        let garbage = 2 * N.div_ceil(1000) as usize;
        MINE_CALLS.store(0, Ordering::SeqCst);
        MINE_PANICS_FROM.store(if in_mark { mines.len() } else { 0 }, Ordering::SeqCst);
        let p = catch_unwind(AssertUnwindSafe(|| h.collect())).unwrap_err();
        MINE_PANICS_FROM.store(usize::MAX, Ordering::SeqCst);
        assert_eq!(
            p.downcast_ref::<&str>(),
            Some(&"Mine::trace panics on purpose")
        );
        assert_eq!(drops.load(Ordering::SeqCst), 0, "nothing was freed");
        h.collect();
        assert_eq!(drops.load(Ordering::SeqCst), garbage, "exactly the garbage");
        for (i, e) in live.iter().enumerate().step_by(997) {
            assert_eq!(e.id % 2, 0, "live node {i} intact");
            assert_eq!(e.next.borrow().as_ref().unwrap().id, e.id + 1);
        }
        let kept = mines.len();
        drop((live, mines));
        h.collect();
        assert_eq!(
            drops.load(Ordering::SeqCst),
            2 * N as usize + kept,
            "everything, once dropped"
        );
        assert_eq!(h.stats().heap_objects, 0);
    }
}

#[test]
fn a_panicking_trace_abandons_the_collection_and_loses_nothing() {
    let h = heap(None);
    let drops = Arc::new(AtomicUsize::new(0));
    // Live: a bomb holding a two-node list. Garbage: a cycle of two nodes.
    let tail = node(&h, 2, None, &drops);
    let bomb = h.alloc(Bomb {
        next: Some(node(&h, 1, Some(tail), &drops)),
    });
    let a = node(&h, 3, None, &drops);
    let b = node(&h, 4, Some(a.clone()), &drops);
    a.next.set(Some(b.clone()));
    drop((a, b));

    TRACE_PANICS.store(true, Ordering::SeqCst);
    let p = catch_unwind(AssertUnwindSafe(|| h.collect())).unwrap_err();
    TRACE_PANICS.store(false, Ordering::SeqCst);
    assert_eq!(
        p.downcast_ref::<&str>(),
        Some(&"Bomb::trace panics on purpose")
    );
    assert_eq!(drops.load(Ordering::SeqCst), 0, "nothing was freed");

    // The world resumed: another thread allocates and drops.
    let hc = h.clone();
    std::thread::spawn(move || drop(hc.alloc(9u64)))
        .join()
        .unwrap();
    // The heap is consistent: the next collection frees exactly the garbage cycle...
    h.collect();
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    let first = bomb.next.as_ref().unwrap();
    assert_eq!(first.id, 1);
    assert_eq!(first.next.borrow().as_ref().unwrap().id, 2);
    // ... and the rest once it is dropped: no count was left off by the abandoned cycle.
    drop(bomb);
    h.collect();
    assert_eq!(drops.load(Ordering::SeqCst), 4);
    assert_eq!(h.stats().heap_objects, 0);
}

#[test]
fn a_panicking_destructor_is_caught_and_counted_and_the_sweep_goes_on() {
    let h = heap(None);
    let drops = Arc::new(AtomicUsize::new(0));
    let before = h.stats().destructor_panics;
    for id in [1, 666, 2] {
        drop(node(&h, id, None, &drops));
    }
    h.collect();
    assert_eq!(
        drops.load(Ordering::SeqCst),
        3,
        "every destructor ran, once"
    );
    assert_eq!(h.stats().destructor_panics, before + 1);
    assert_eq!(
        h.stats().heap_objects,
        0,
        "the panicking object was freed too"
    );
}

#[test]
fn set_finalizer_on_an_object_whose_finalizer_is_running() {
    let h = heap(None);
    let drops = Arc::new(AtomicUsize::new(0));
    let (to_test, from_finalizer) = mpsc::channel::<Gc<Node>>();
    let (release, wait_release) = mpsc::channel::<()>();
    node(&h, 7, None, &drops)
        .set_finalizer(move |n| {
            to_test.send(n.clone()).unwrap();
            wait_release.recv().unwrap();
        })
        .unwrap();
    h.collect();
    // The finalizer is running, and holds the object; so does this thread now.
    let n = from_finalizer.recv().unwrap();
    // Its record was taken when it was queued (Go's rule): a new finalizer may be set,
    // and cleared, while the first one runs.
    assert_eq!(n.clear_finalizer(), Ok(Outcome::Removed));
    let again = Arc::new(AtomicUsize::new(0));
    let a = again.clone();
    n.set_finalizer(move |_| {
        a.fetch_add(1, Ordering::SeqCst);
    })
    .unwrap();
    assert!(n.set_finalizer(|_| ()).is_err(), "only one at a time");
    release.send(()).unwrap();
    fing::wait_finalizers();
    drop(n);
    // The second finalizer runs once the object is unreachable again, then it is freed.
    for _ in 0..4 {
        h.collect();
        fing::wait_finalizers();
    }
    assert_eq!(again.load(Ordering::SeqCst), 1);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}
