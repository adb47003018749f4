//! The finalizer panic hook (`set_finalizer_panic_hook`): a finalizer or cleanup that
//! panics is reported to the program with its payload, its object's type and the object
//! itself, on the thread that ran it (the finalizer thread, or `Heap::run_finalizers`'
//! caller); without a hook, stderr and the counter as before; a panicking hook is
//! contained. The hook is process-wide, so this file's tests take turns (`TURN`).
//!
//! Tests wait with `wait_finalizers()` and loops of `collect()`, never bare sleeps.

#![allow(missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use fing::{Gc, Heap, HeapConfig, Trace};

static TURN: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

fn heap(safe_points: bool) -> Heap {
    let mut c = HeapConfig::default();
    c.gogc = None;
    c.finalizers_at_safe_points = safe_points;
    Heap::new(c)
}

#[derive(Trace)]
struct Script {
    name: String,
}

#[derive(Debug, Clone, PartialEq)]
struct Report {
    message: Option<String>,
    object_type: Option<String>,
    name: Option<String>,
    cleanup: bool,
}

fn install() -> Arc<Mutex<Vec<Report>>> {
    let reports: Arc<Mutex<Vec<Report>>> = Arc::default();
    let r = reports.clone();
    fing::set_finalizer_panic_hook(move |p| {
        let name = p
            .object()
            .and_then(|v| v.downcast_ref::<Gc<Script>>().cloned())
            .map(|g| g.name.clone());
        r.lock().unwrap().push(Report {
            message: p.message().map(str::to_string),
            object_type: p.object_type().map(|t| t.to_string()),
            name,
            cleanup: p.is_cleanup(),
        });
    });
    reports
}

#[test]
fn the_hook_is_shown_the_payload_the_type_and_the_object() {
    let _t = turn();
    let reports = install();
    let h = heap(false);
    let panics = h.stats().finalizers_panicked;
    let s = h.alloc(Script {
        name: "on-close".into(),
    });
    s.set_finalizer(|s: Gc<Script>| panic!("script error in {}", s.name))
        .unwrap();
    drop(s);
    h.collect();
    fing::wait_finalizers();
    let got = reports.lock().unwrap().clone();
    let _ = fing::take_finalizer_panic_hook();
    assert_eq!(
        got,
        [Report {
            message: Some("script error in on-close".into()),
            object_type: Some("Gc<panic_hook::Script>".into()),
            name: Some("on-close".into()),
            cleanup: false,
        }]
    );
    assert_eq!(h.stats().finalizers_panicked, panics + 1);
}

#[test]
fn at_a_safe_point_the_hook_runs_on_the_callers_thread_and_the_rest_go_on() {
    let _t = turn();
    let reports = install();
    let on: Arc<Mutex<Vec<std::thread::ThreadId>>> = Arc::default();
    let on2 = on.clone();
    fing::set_finalizer_panic_hook(move |p| {
        on2.lock().unwrap().push(std::thread::current().id());
        assert!(p.message().is_some());
    });
    drop(reports);
    let h = heap(true);
    let ran = Arc::new(AtomicUsize::new(0));
    for i in 0..5 {
        let s = h.alloc(Script {
            name: format!("s{i}"),
        });
        let r = ran.clone();
        s.set_finalizer(move |s: Gc<Script>| {
            r.fetch_add(1, Ordering::Relaxed);
            if s.name == "s2" {
                panic!("boom");
            }
        })
        .unwrap();
    }
    h.collect();
    assert_eq!(h.run_finalizers(), 5);
    let _ = fing::take_finalizer_panic_hook();
    assert_eq!(ran.load(Ordering::Relaxed), 5);
    assert_eq!(*on.lock().unwrap(), [std::thread::current().id()]);
}

#[test]
fn a_cleanup_panic_is_reported_without_an_object() {
    let _t = turn();
    let reports = install();
    let h = heap(false);
    let s = h.alloc(Script { name: "x".into() });
    s.add_cleanup(7u32, |n| panic!("cleanup {n} failed"))
        .unwrap();
    drop(s);
    h.collect();
    fing::wait_finalizers();
    let got = reports.lock().unwrap().clone();
    let _ = fing::take_finalizer_panic_hook();
    assert_eq!(
        got,
        [Report {
            message: Some("cleanup 7 failed".into()),
            object_type: None,
            name: None,
            cleanup: true,
        }]
    );
}

#[test]
fn the_hook_may_keep_the_object_which_then_lives_on_without_its_finalizer() {
    let _t = turn();
    let kept: Arc<Mutex<Option<Gc<Script>>>> = Arc::default();
    let k = kept.clone();
    fing::set_finalizer_panic_hook(move |p| {
        *k.lock().unwrap() = p
            .object()
            .and_then(|v| v.downcast_ref::<Gc<Script>>().cloned());
    });
    let h = heap(false);
    let ran = Arc::new(AtomicUsize::new(0));
    let s = h.alloc(Script {
        name: "kept".into(),
    });
    let r = ran.clone();
    s.set_finalizer(move |_| {
        r.fetch_add(1, Ordering::Relaxed);
        panic!("once");
    })
    .unwrap();
    drop(s);
    h.collect();
    fing::wait_finalizers();
    let _ = fing::take_finalizer_panic_hook();
    for _ in 0..3 {
        h.collect();
        fing::wait_finalizers();
    }
    assert_eq!(ran.load(Ordering::Relaxed), 1);
    assert_eq!(kept.lock().unwrap().as_ref().unwrap().name, "kept");
}

#[test]
fn a_panicking_hook_is_contained_and_take_restores_the_default() {
    let _t = turn();
    fing::set_finalizer_panic_hook(|_| panic!("the hook itself"));
    let h = heap(false);
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        let s = h.alloc(Script { name: "p".into() });
        let r = ran.clone();
        s.set_finalizer(move |_| {
            r.fetch_add(1, Ordering::Relaxed);
            panic!("finalizer");
        })
        .unwrap();
    }
    h.collect();
    fing::wait_finalizers();
    assert_eq!(
        ran.load(Ordering::Relaxed),
        3,
        "the thread went on past the hook's panics"
    );
    assert!(fing::take_finalizer_panic_hook().is_some());
    assert!(fing::take_finalizer_panic_hook().is_none());
    // The default again: the stderr line and the counter.
    let panics = h.stats().finalizers_panicked;
    let s = h.alloc(Script { name: "d".into() });
    s.set_finalizer(|_| panic!("default")).unwrap();
    drop(s);
    h.collect();
    fing::wait_finalizers();
    assert_eq!(h.stats().finalizers_panicked, panics + 1);
}
