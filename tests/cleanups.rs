//! Cleanups through the public API, against Go's `runtime.AddCleanup`: run once the
//! object is unreachable, in the cycle that frees it, without the object (so cycles get
//! theirs); many per object and on interior handles; after the object's finalizer;
//! `stop`; the argument checks with Go's messages; the dynamic `add_cleanup` and its
//! typed errors; panics contained; `wait_finalizers`; four threads at once.
//!
//! Tests wait with `wait_finalizers()` and loops of `collect()`, never bare sleeps.

#![allow(missing_docs)]

#[path = "support/collector.rs"]
mod collector;
use collector::Collector;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use fing::{Cleanup, FinalizerError, Func, Gc, GcCell, Heap, HeapConfig, Trace, Value};

fn heap() -> Heap {
    let mut c = HeapConfig::default();
    c.gogc = None;
    Heap::new(c)
}

#[derive(Trace)]
struct Res {
    fd: i64,
    pair: [u64; 2],
    next: GcCell<Option<Gc<Res>>>,
}

fn res(h: &Heap, fd: i64) -> Gc<Res> {
    h.alloc(Res {
        fd,
        pair: [fd as u64; 2],
        next: GcCell::new(None),
    })
}

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

/// A cleanup that adds `arg` to `c`.
fn adder(c: &Arc<AtomicUsize>) -> impl FnOnce(usize) + Send + 'static {
    let c = c.clone();
    move |n| {
        c.fetch_add(n, Ordering::SeqCst);
    }
}

fn collect_and_wait(h: &Heap) {
    h.collect();
    h.wait_finalizers();
}

#[test]
fn runs_once_in_the_cycle_that_frees_the_object() {
    let h = heap();
    let c = counter();
    let r = res(&h, 3);
    r.add_cleanup(3usize, adder(&c)).unwrap();
    collect_and_wait(&h);
    assert_eq!(c.load(Ordering::SeqCst), 0, "alive: a handle holds it");
    let w = r.downgrade();
    drop(r);
    // Not at count zero: the collector frees objects with cleanups.
    assert!(w.upgrade().is_some());
    let frees = h.stats().frees;
    collect_and_wait(&h);
    assert_eq!(c.load(Ordering::SeqCst), 3, "ran");
    assert_eq!(
        h.stats().frees,
        frees + 1,
        "the object was freed by that cycle"
    );
    assert!(w.upgrade().is_none());
    for _ in 0..3 {
        collect_and_wait(&h);
    }
    assert_eq!(c.load(Ordering::SeqCst), 3, "once");
}

#[test]
fn many_per_object_and_on_interior_handles() {
    let h = heap();
    let c = counter();
    let r = res(&h, 1);
    r.add_cleanup(1usize, adder(&c)).unwrap();
    r.add_cleanup(10usize, adder(&c)).unwrap();
    r.map(|r| &r.pair[1])
        .add_cleanup(100usize, adder(&c))
        .unwrap();
    r.map(|r| &r.fd).add_cleanup(1000usize, adder(&c)).unwrap();
    drop(r);
    collect_and_wait(&h);
    assert_eq!(c.load(Ordering::SeqCst), 1111, "every cleanup, once");
}

#[test]
fn objects_in_a_cycle_get_their_cleanups() {
    let h = heap();
    let c = counter();
    let a = res(&h, 1);
    let b = res(&h, 2);
    *a.next.borrow_mut() = Some(b.clone());
    *b.next.borrow_mut() = Some(a.clone());
    a.add_cleanup(1usize, adder(&c)).unwrap();
    b.add_cleanup(2usize, adder(&c)).unwrap();
    drop((a, b));
    collect_and_wait(&h);
    assert_eq!(c.load(Ordering::SeqCst), 3);
    let s = h.stats();
    assert_eq!(s.heap_objects, 0, "the cycle was freed");
}

#[test]
fn the_object_is_not_passed_and_the_argument_lives_until_the_cleanup() {
    let h = heap();
    let got = Arc::new(Mutex::new(None));
    let r = res(&h, 5);
    let other = res(&h, 6);
    let g = got.clone();
    r.add_cleanup(other.clone(), move |o: Gc<Res>| {
        *g.lock().unwrap() = Some(o.fd);
    })
    .unwrap();
    drop((r, other));
    collect_and_wait(&h);
    assert_eq!(
        *got.lock().unwrap(),
        Some(6),
        "the argument was kept alive for it"
    );
}

#[test]
fn a_cleanup_runs_after_the_finalizer_two_cycles_on() {
    let h = heap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let r = res(&h, 7);
    let o = order.clone();
    r.add_cleanup((), move |()| o.lock().unwrap().push("cleanup"))
        .unwrap();
    let o = order.clone();
    r.set_finalizer(move |_: Gc<Res>| o.lock().unwrap().push("finalizer"))
        .unwrap();
    drop(r);
    collect_and_wait(&h);
    assert_eq!(
        *order.lock().unwrap(),
        ["finalizer"],
        "resurrected: the cleanup waits"
    );
    collect_and_wait(&h);
    assert_eq!(*order.lock().unwrap(), ["finalizer", "cleanup"]);
}

#[test]
fn stop_cancels_and_is_idempotent_and_harmless_after_the_run() {
    let h = heap();
    let c = counter();
    let r = res(&h, 1);
    let stopped = r.add_cleanup(1usize, adder(&c)).unwrap();
    let kept = r.add_cleanup(10usize, adder(&c)).unwrap();
    assert_ne!(stopped, kept);
    stopped.stop();
    stopped.stop();
    fing::keep_alive(&r);
    drop(r);
    collect_and_wait(&h);
    assert_eq!(c.load(Ordering::SeqCst), 10, "only the one not stopped");
    kept.stop();
    stopped.stop();
    // Slots are reused: a stale cleanup handle never touches a new object's cleanups.
    let r2 = res(&h, 2);
    r2.add_cleanup(100usize, adder(&c)).unwrap();
    kept.stop();
    drop(r2);
    collect_and_wait(&h);
    assert_eq!(c.load(Ordering::SeqCst), 110);
}

#[test]
fn stop_drops_the_function_and_its_argument() {
    let h = heap();
    let r = res(&h, 1);
    let arg = res(&h, 2);
    let w = arg.downgrade();
    let c = r.add_cleanup(arg, |_: Gc<Res>| ()).unwrap();
    collect_and_wait(&h);
    assert!(
        w.upgrade().is_some(),
        "the argument is a root while the cleanup waits"
    );
    c.stop();
    h.collect();
    assert!(w.upgrade().is_none(), "stopped: the argument was dropped");
    drop(r);
}

#[test]
fn an_argument_that_is_the_object_or_into_it_is_refused_with_gos_messages() {
    let h = heap();
    let r = res(&h, 1);
    let e = r.add_cleanup(r.clone(), |_: Gc<Res>| ()).unwrap_err();
    assert_eq!(e, FinalizerError::ArgIsObject);
    assert_eq!(
        e.to_string(),
        "fing::add_cleanup: ptr is equal to arg, cleanup will never run"
    );
    let e = r
        .add_cleanup(r.map(|r| &r.pair[1]), |_: Gc<u64>| ())
        .unwrap_err();
    assert_eq!(e, FinalizerError::ArgWithinObject);
    assert_eq!(
        e.to_string(),
        "fing::add_cleanup: ptr is within arg, cleanup will never run"
    );
    // On an interior handle, the argument equal to that address.
    let inner = r.map(|r| &r.pair[1]);
    let e = inner
        .add_cleanup(inner.clone(), |_: Gc<u64>| ())
        .unwrap_err();
    assert_eq!(e, FinalizerError::ArgIsObject);
    // Held inside the argument: an `Option`, a tuple.
    let e = r.add_cleanup(Some(r.clone()), |_| ()).unwrap_err();
    assert_eq!(e, FinalizerError::ArgIsObject);
    let e = r.add_cleanup((1u8, vec![r.clone()]), |_| ()).unwrap_err();
    assert_eq!(e, FinalizerError::ArgWithinObject);
    let e = fing::add_cleanup(
        Value::from(r.clone()),
        Func::new(|_: Option<Gc<Res>>| ()),
        Value::new(Some(r.clone())),
    )
    .unwrap_err();
    assert_eq!(e, FinalizerError::ArgIsObject);
    // Another object is fine.
    let other = res(&h, 2);
    r.add_cleanup(other, |_| ()).unwrap();
    // Tiny objects share their block: a handle to a neighbour is not "within".
    let t1 = h.alloc(1u32);
    let t2 = h.alloc(2u32);
    if Gc::same_object(&t1, &t2) {
        t1.add_cleanup(t2.clone(), |_| ()).unwrap();
    }
}

#[test]
fn outside_the_heap_the_cleanup_is_a_noop() {
    static S: i64 = 1;
    let c = counter();
    let s = Gc::from_static(&S);
    let cl = s.add_cleanup(1usize, adder(&c)).unwrap();
    cl.stop();
    cl.stop();
    let z = Gc::new(());
    let cz = z.add_cleanup(2usize, adder(&c)).unwrap();
    assert_eq!(cl, cz, "both no-ops");
    drop(z);
    fing::collect();
    fing::wait_finalizers();
    assert_eq!(c.load(Ordering::SeqCst), 0);
}

#[test]
fn a_panicking_cleanup_is_contained_and_counted() {
    let h = heap();
    let c = counter();
    let before = h.stats();
    let r = res(&h, 1);
    r.add_cleanup((), |()| panic!("a cleanup panics")).unwrap();
    r.add_cleanup(5usize, adder(&c)).unwrap();
    drop(r);
    collect_and_wait(&h);
    let after = h.stats();
    assert!(after.finalizers_panicked > before.finalizers_panicked);
    assert!(after.cleanups_run >= before.cleanups_run + 2);
    assert!(after.cleanups_queued >= before.cleanups_queued + 2);
    assert_eq!(c.load(Ordering::SeqCst), 5, "the thread went on");
}

#[test]
fn the_dynamic_add_cleanup() {
    let h = heap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let r = res(&h, 1);
    let g = got.clone();
    fing::add_cleanup(
        Value::from(r.clone()),
        Func::new(move |n: i64| g.lock().unwrap().push(format!("i64 {n}"))),
        Value::from(42i64),
    )
    .unwrap();
    let g = got.clone();
    // The empty interface takes any argument.
    fing::add_cleanup(
        Value::from(r.clone()),
        Func::new(move |v: Value| g.lock().unwrap().push(format!("{}", v.type_of()))),
        Value::from(7u8),
    )
    .unwrap();
    drop(r);
    collect_and_wait(&h);
    let mut got = got.lock().unwrap().clone();
    got.sort();
    assert_eq!(got, ["i64 42", "u8"]);
}

#[test]
fn the_dynamic_add_cleanup_refuses_with_typed_errors() {
    let h = heap();
    let r = res(&h, 1);
    let ran = counter();
    let f = || {
        let ran = ran.clone();
        Func::new(move |_: i64| {
            ran.fetch_add(1, Ordering::SeqCst);
        })
    };
    let obj = || Value::from(r.clone());
    let err = |o: Value, c: Value, a: Value| fing::add_cleanup(o, c, a).unwrap_err();
    let e = err(Value::nil(), f().into(), Value::from(1i64));
    assert_eq!(e, FinalizerError::CleanupNilObject);
    assert_eq!(e.to_string(), "fing::add_cleanup: ptr is nil");
    let e = err(Value::from(3i64), f().into(), Value::from(1i64));
    assert_eq!(e.to_string(), "fing::add_cleanup: ptr is i64, not pointer");
    let e = err(obj(), Value::from(3i64), Value::from(1i64));
    assert_eq!(
        e.to_string(),
        "fing::add_cleanup: cleanup is i64, not a function of one argument"
    );
    let e = err(
        obj(),
        Func::binary(|_: i64, _: i64| ()).into(),
        Value::from(1i64),
    );
    assert!(
        matches!(e, FinalizerError::CleanupNotFunction { .. }),
        "{e}"
    );
    let e = err(obj(), f().into(), Value::from(1u8));
    assert_eq!(
        e.to_string(),
        "fing::add_cleanup: cannot pass arg of type u8 to cleanup fn(i64)"
    );
    let ran2 = ran.clone();
    let e = err(
        obj(),
        Func::new(move |_: Gc<Res>| {
            ran2.fetch_add(1, Ordering::SeqCst);
        })
        .into(),
        Value::from(r.clone()),
    );
    assert_eq!(e, FinalizerError::ArgIsObject);
    // Nothing was recorded by the refusals: the object dies with no cleanup to run.
    drop(r);
    collect_and_wait(&h);
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert_eq!(h.stats().heap_objects, 0);
}

#[test]
fn wait_finalizers_waits_for_queued_cleanups() {
    let h = heap();
    let c = counter();
    for i in 0..2000 {
        let r = res(&h, i);
        r.add_cleanup(1usize, adder(&c)).unwrap();
    }
    h.collect();
    h.wait_finalizers();
    assert_eq!(c.load(Ordering::SeqCst), 2000);
}

/// Four threads add cleanups to shared and private objects, stop some, and drop their
/// objects while another thread collects: each cleanup not stopped runs exactly once,
/// and only for garbage.
#[test]
fn four_threads_lose_none_and_run_none_twice() {
    let h = heap();
    let ran: Arc<Mutex<BTreeMap<u64, u32>>> = Arc::default();
    let shared: Vec<Gc<Res>> = (0..8).map(|i| res(&h, i)).collect();
    let collector = Collector::start(&h);
    let workers: Vec<_> = (0..4u64)
        .map(|t| {
            let (h, ran, shared) = (h.clone(), ran.clone(), shared.clone());
            std::thread::spawn(move || {
                let mut expected = Vec::new();
                let mut stopped: Vec<Cleanup> = Vec::new();
                for i in 0..1500u64 {
                    let key = t * 1_000_000 + i;
                    let r = res(&h, i as i64);
                    if i % 4 == 0 {
                        *r.next.borrow_mut() = Some(r.clone()); // a cycle
                    }
                    let ran2 = ran.clone();
                    let c = r
                        .add_cleanup(key, move |k: u64| {
                            *ran2.lock().unwrap().entry(k).or_default() += 1;
                        })
                        .unwrap();
                    if i % 7 == 0 {
                        c.stop();
                        stopped.push(c);
                    } else {
                        expected.push(key);
                    }
                    // Cleanups on shared, live objects, stopped before the end.
                    let s = &shared[(i % 8) as usize];
                    stopped.push(
                        s.add_cleanup(u64::MAX, |_| panic!("a live object's cleanup ran"))
                            .unwrap(),
                    );
                }
                for c in &stopped {
                    c.stop();
                }
                expected
            })
        })
        .collect();
    let mut expected = Vec::new();
    for w in workers {
        expected.extend(w.join().unwrap());
    }
    collector.stop();
    collect_and_wait(&h);
    collect_and_wait(&h);
    let ran = ran.lock().unwrap();
    for k in &expected {
        assert_eq!(ran.get(k), Some(&1), "cleanup {k}");
    }
    assert_eq!(ran.len(), expected.len(), "no stopped cleanup ran");
    drop(shared);
}

/// `check_finalizers` (Go 1.25's `checkfinalizers`): a cleanup whose argument reaches its
/// own object through the heap is reported at each collection, and its object is never
/// freed; one whose argument does not is not reported.
#[test]
fn check_finalizers_reports_an_argument_that_reaches_its_object() {
    let mut c = HeapConfig::default();
    c.gogc = None;
    c.check_finalizers = true;
    let h = Heap::new(c);
    let r = res(&h, 1);
    let holder = res(&h, 2);
    *holder.next.borrow_mut() = Some(r.clone()); // the argument reaches `r`
    let w = r.downgrade();
    r.add_cleanup(holder, |_: Gc<Res>| ()).unwrap();
    let fine = res(&h, 3);
    fine.add_cleanup(res(&h, 4), |_: Gc<Res>| ()).unwrap();
    drop((r, fine));
    let before = h.stats().finalizer_cycles;
    collect_and_wait(&h);
    assert_eq!(
        h.stats().finalizer_cycles,
        before + 1,
        "one report: the first cleanup's"
    );
    collect_and_wait(&h);
    assert!(
        w.upgrade().is_some(),
        "never freed: its cleanup's argument keeps it"
    );
}
