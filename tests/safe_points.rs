//! Finalizers at the program's safe points (`HeapConfig::finalizers_at_safe_points`,
//! `Heap::run_finalizers`), as Lua runs `__gc` and a JavaScript host its
//! `FinalizationRegistry` callbacks: queued on the heap, run on the caller's thread, with
//! everything else Go's (the checks, resurrection, A before B, cycles never finalized,
//! panics contained); cleanups go the same way; the last `Heap` hands what is pending to
//! the finalizer thread; `run_finalizers` refuses to nest.
//!
//! Tests wait with `wait_finalizers()` and loops of `collect()`, never bare sleeps.

#![allow(missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use fing::{Gc, GcCell, Heap, HeapConfig, Trace};

fn safe_point_heap() -> Heap {
    let mut c = HeapConfig::default();
    c.gogc = None;
    c.finalizers_at_safe_points = true;
    Heap::new(c)
}

#[derive(Trace)]
struct Node {
    id: u64,
    next: GcCell<Option<Gc<Node>>>,
}

fn node(h: &Heap, id: u64) -> Gc<Node> {
    h.alloc(Node {
        id,
        next: GcCell::new(None),
    })
}

type Log = Arc<Mutex<Vec<(u64, ThreadId)>>>;

fn log_finalizer(n: &Gc<Node>, log: &Log) {
    let log = log.clone();
    n.set_finalizer(move |n: Gc<Node>| {
        log.lock()
            .unwrap()
            .push((n.id, std::thread::current().id()))
    })
    .unwrap();
}

#[test]
fn finalizers_wait_for_run_finalizers_and_run_on_its_thread() {
    let h = safe_point_heap();
    let log: Log = Arc::default();
    let objs: Vec<_> = (0..100).map(|i| node(&h, i)).collect();
    objs.iter().for_each(|n| log_finalizer(n, &log));
    drop(objs);
    h.collect();
    // The finalizer thread is not theirs: waiting for it leaves them pending.
    fing::wait_finalizers();
    assert!(log.lock().unwrap().is_empty());
    assert_eq!(h.pending_finalizers(), 100);
    assert_eq!(h.run_finalizers(), 100);
    assert_eq!(h.pending_finalizers(), 0);
    assert_eq!(h.run_finalizers(), 0, "nothing is pending twice");
    let log = log.lock().unwrap();
    let mut ids: Vec<u64> = log.iter().map(|e| e.0).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..100).collect::<Vec<_>>());
    let me = std::thread::current().id();
    assert!(
        log.iter().all(|e| e.1 == me),
        "every one ran on this thread"
    );
}

#[test]
fn a_chain_is_finalized_in_dependency_order_one_safe_point_per_cycle() {
    let h = safe_point_heap();
    let log: Log = Arc::default();
    let a = node(&h, 1);
    let b = node(&h, 2);
    *a.next.borrow_mut() = Some(b.clone());
    log_finalizer(&a, &log);
    log_finalizer(&b, &log);
    drop((a, b));
    h.collect();
    assert_eq!(h.run_finalizers(), 1, "A only: its resurrection keeps B");
    h.collect();
    assert_eq!(h.run_finalizers(), 1, "then B");
    let ids: Vec<u64> = log.lock().unwrap().iter().map(|e| e.0).collect();
    assert_eq!(ids, [1, 2]);
}

#[test]
fn a_finalizer_that_resurrects_keeps_its_object_and_runs_once() {
    let h = safe_point_heap();
    let saved: Arc<Mutex<Option<Gc<Node>>>> = Arc::default();
    let ran = Arc::new(AtomicUsize::new(0));
    let n = node(&h, 7);
    let (s, r) = (saved.clone(), ran.clone());
    n.set_finalizer(move |n| {
        r.fetch_add(1, Ordering::Relaxed);
        *s.lock().unwrap() = Some(n);
    })
    .unwrap();
    drop(n);
    h.collect();
    assert_eq!(h.run_finalizers(), 1);
    for _ in 0..3 {
        h.collect();
        assert_eq!(h.run_finalizers(), 0);
    }
    assert_eq!(ran.load(Ordering::Relaxed), 1);
    assert_eq!(saved.lock().unwrap().as_ref().unwrap().id, 7);
    drop(saved.lock().unwrap().take());
    h.collect();
    assert_eq!(
        h.run_finalizers(),
        0,
        "the finalizer was cleared when it was queued"
    );
}

#[test]
fn cleanups_are_pending_too_and_run_after_the_object_finalizer() {
    let h = safe_point_heap();
    let order: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let n = node(&h, 1);
    let o = order.clone();
    n.add_cleanup((), move |()| o.lock().unwrap().push("cleanup"))
        .unwrap();
    let o = order.clone();
    n.set_finalizer(move |_| o.lock().unwrap().push("finalizer"))
        .unwrap();
    // A cleanup alone (no finalizer) goes in the cycle that frees its object.
    let m = node(&h, 2);
    let o = order.clone();
    m.add_cleanup((), move |()| o.lock().unwrap().push("lone cleanup"))
        .unwrap();
    drop((n, m));
    h.collect();
    fing::wait_finalizers();
    assert!(order.lock().unwrap().is_empty());
    assert_eq!(h.run_finalizers(), 2, "n's finalizer and m's cleanup");
    h.collect();
    assert_eq!(h.run_finalizers(), 1, "n's cleanup, once n is freed");
    let order = order.lock().unwrap();
    // One batch's entries have no order between objects; n's cleanup comes a cycle later.
    let mut first = order[..2].to_vec();
    first.sort_unstable();
    assert_eq!(first, ["finalizer", "lone cleanup"]);
    assert_eq!(order[2], "cleanup");
}

#[test]
fn a_panic_is_contained_and_the_rest_run() {
    let h = safe_point_heap();
    let ran = Arc::new(AtomicUsize::new(0));
    let panics = h.stats().finalizers_panicked;
    for i in 0..10 {
        let n = node(&h, i);
        let r = ran.clone();
        n.set_finalizer(move |n| {
            r.fetch_add(1, Ordering::Relaxed);
            assert!(n.id != 4, "script finalizer failed");
        })
        .unwrap();
    }
    h.collect();
    assert_eq!(h.run_finalizers(), 10);
    assert_eq!(ran.load(Ordering::Relaxed), 10);
    assert_eq!(h.stats().finalizers_panicked, panics + 1);
}

#[test]
fn run_finalizers_from_a_finalizer_it_runs_panics() {
    let h = safe_point_heap();
    let msg: Arc<Mutex<Option<String>>> = Arc::default();
    let n = node(&h, 1);
    let (m, h2) = (msg.clone(), h.clone());
    n.set_finalizer(move |_| {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h2.run_finalizers()));
        let e = r.expect_err("nested run_finalizers must panic");
        *m.lock().unwrap() = e.downcast_ref::<String>().cloned();
    })
    .unwrap();
    drop(n);
    h.collect();
    assert_eq!(h.run_finalizers(), 1);
    let msg = msg.lock().unwrap().clone().unwrap();
    assert!(
        msg.starts_with("fing::Heap::run_finalizers: called from a finalizer"),
        "{msg}"
    );
}

#[test]
fn the_last_heap_hands_what_is_pending_to_the_finalizer_thread() {
    let h = safe_point_heap();
    let log: Log = Arc::default();
    let objs: Vec<_> = (0..10).map(|i| node(&h, i)).collect();
    objs.iter().for_each(|n| log_finalizer(n, &log));
    drop(objs);
    h.collect();
    assert_eq!(h.pending_finalizers(), 10);
    drop(h);
    fing::wait_finalizers();
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 10);
    let me = std::thread::current().id();
    assert!(
        log.iter().all(|e| e.1 != me),
        "the finalizer thread ran them"
    );
}

#[test]
fn objects_of_other_threads_are_finalized_at_this_threads_safe_point() {
    let h = safe_point_heap();
    let log: Log = Arc::default();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (h, log) = (h.clone(), log.clone());
            s.spawn(move || {
                for i in 0..250 {
                    let n = node(&h, t * 1000 + i);
                    log_finalizer(&n, &log);
                }
            });
        }
    });
    let mut ran = 0;
    for _ in 0..10 {
        h.collect();
        ran += h.run_finalizers();
        if ran == 1000 {
            break;
        }
    }
    assert_eq!(ran, 1000);
    let me = std::thread::current().id();
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 1000);
    assert!(log.iter().all(|e| e.1 == me));
}

#[test]
fn a_heap_without_the_option_never_has_pending_finalizers() {
    let mut c = HeapConfig::default();
    c.gogc = None;
    let h = Heap::new(c);
    let ran = Arc::new(AtomicUsize::new(0));
    let n = node(&h, 1);
    let r = ran.clone();
    n.set_finalizer(move |_| {
        r.fetch_add(1, Ordering::Relaxed);
    })
    .unwrap();
    drop(n);
    h.collect();
    assert_eq!(h.pending_finalizers(), 0);
    assert_eq!(h.run_finalizers(), 0);
    fing::wait_finalizers();
    assert_eq!(ran.load(Ordering::Relaxed), 1);
}

#[test]
fn run_finalizers_under_a_gccell_write_guard_panics() {
    let h = safe_point_heap();
    let n = node(&h, 1);
    let guard = n.next.borrow_mut();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h.run_finalizers()));
    drop(guard);
    let e = r.expect_err("finalizers never run inside a section");
    let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("GcCell write guard"), "{msg}");
}
