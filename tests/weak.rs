//! Weak handles through the public API, against Go's `weak` package: equality by
//! address, interior handles, nil once the object is unreachable (before its finalizer
//! runs, and for good even if the finalizer resurrects it), never nil for a static, an
//! upgrade racing a collection (Go's issue 69210), weak handles inside heap objects, and
//! many threads at once.
//!
//! Tests wait with `wait_finalizers()` and loops of `collect()`, never bare sleeps.

#![allow(missing_docs)]

#[path = "support/collector.rs"]
mod collector;
use collector::Collector;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use fing::{Gc, GcCell, Heap, HeapConfig, Trace, Weak};

fn heap() -> Heap {
    let mut c = HeapConfig::default();
    c.gogc = None;
    Heap::new(c)
}

#[derive(Trace, Debug)]
struct Node {
    value: u64,
    other: u64,
    next: GcCell<Option<Gc<Node>>>,
}

fn node(h: &Heap, value: u64) -> Gc<Node> {
    h.alloc(Node {
        value,
        other: value + 1,
        next: GcCell::new(None),
    })
}

static_assertions::assert_eq_size!(Weak<Node>, usize);
static_assertions::assert_impl_all!(Weak<Node>: Send, Sync, Clone, Default, Eq, std::hash::Hash, std::fmt::Debug);
static_assertions::assert_not_impl_any!(Weak<std::cell::Cell<u64>>: Send, Sync);

#[test]
fn upgrades_while_alive_and_goes_nil_after_the_collection_that_frees_it() {
    let h = heap();
    let n = node(&h, 7);
    let w = n.downgrade();
    h.collect();
    let up = w.upgrade().expect("alive: a handle holds it");
    assert_eq!(up.value, 7);
    assert!(Gc::ptr_eq(&up, &n));
    drop((n, up));
    let before = h.stats().frees;
    h.collect();
    assert!(w.upgrade().is_none(), "unreachable: nil");
    assert_eq!(h.stats().frees, before + 1, "freed by that collection");
    assert!(w.upgrade().is_none(), "and stays nil");
}

#[test]
fn weak_handles_of_one_address_are_equal_and_of_two_objects_never() {
    let h = heap();
    let a = node(&h, 1);
    let b = node(&h, 2);
    let (wa1, wa2, wb) = (a.downgrade(), a.clone().downgrade(), b.downgrade());
    assert_eq!(wa1, wa2, "made twice from one object");
    assert_eq!(wa1, wa1.clone());
    assert_ne!(wa1, wb, "two objects");
    let set: HashSet<Weak<Node>> = [wa1.clone(), wa2.clone(), wb.clone()].into_iter().collect();
    assert_eq!(set.len(), 2, "hashes follow equality");
    drop((a, b));
    h.collect();
    assert!(wa1.upgrade().is_none() && wb.upgrade().is_none());
    assert_eq!(wa1, wa2, "still equal after the object died");
    assert_ne!(wa1, wb, "still unequal after both died");
    // A new object at a reused address is a new weak identity.
    let c = node(&h, 3);
    assert_ne!(c.downgrade(), wa1);
}

#[test]
fn nil_weak_handles() {
    let w: Weak<Node> = Weak::new();
    assert!(w.upgrade().is_none());
    assert_eq!(w, Weak::default());
    assert_eq!(format!("{w:?}"), "(Weak: nil)");
    let h = heap();
    let n = node(&h, 1);
    assert_ne!(n.downgrade(), w);
    assert_eq!(format!("{:?}", n.downgrade()), "(Weak)");
}

#[test]
fn an_interior_weak_handle_upgrades_to_its_interior_address() {
    let h = heap();
    let n = node(&h, 10);
    let other: Gc<u64> = n.map(|n| &n.other);
    let value: Gc<u64> = n.map(|n| &n.value);
    let w = other.downgrade();
    assert_eq!(w, n.map(|n| &n.other).downgrade(), "same interior address");
    assert_ne!(w, value.downgrade(), "another field");
    let up = w.upgrade().expect("alive");
    assert_eq!(*up, 11);
    assert!(Gc::ptr_eq(&up, &other));
    assert!(Gc::same_object(&up, &n));
    drop((n, other, value, up));
    h.collect();
    assert!(w.upgrade().is_none());
}

#[test]
fn a_weak_handle_keeps_nothing_alive_and_a_strong_one_from_it_does() {
    let h = heap();
    let n = node(&h, 5);
    let w = n.downgrade();
    drop(n);
    // No collection yet: still there (an object with weak handles is freed by a collection).
    let strong = w.upgrade().expect("not collected yet");
    h.collect();
    assert_eq!(
        w.upgrade().map(|n| n.value),
        Some(5),
        "the upgraded handle keeps it"
    );
    drop(strong);
    h.collect();
    assert!(w.upgrade().is_none());
}

#[test]
fn an_object_whose_weak_handles_are_gone_is_freed_by_the_next_collection() {
    let h = heap();
    let before = h.stats().frees;
    for i in 0..100 {
        let n = node(&h, i);
        drop(n.downgrade());
    }
    h.collect();
    assert_eq!(h.stats().frees, before + 100);
    h.collect();
    assert_eq!(h.stats().frees, before + 100, "nothing left to free");
}

#[test]
fn cycles_with_weak_handles_are_collected() {
    let h = heap();
    let a = node(&h, 1);
    let b = node(&h, 2);
    *a.next.borrow_mut() = Some(b.clone());
    *b.next.borrow_mut() = Some(a.clone());
    let (wa, wb) = (a.downgrade(), b.downgrade());
    drop((a, b));
    h.collect();
    assert!(wa.upgrade().is_none() && wb.upgrade().is_none());
}

#[test]
fn a_weak_handle_goes_nil_before_the_finalizer_runs_and_stays_nil_after_resurrection() {
    static KEPT: Mutex<Option<Gc<Node>>> = Mutex::new(None);
    static SEEN_NIL: AtomicBool = AtomicBool::new(false);
    static WEAK: Mutex<Option<Weak<Node>>> = Mutex::new(None);
    let h = heap();
    let n = node(&h, 42);
    *WEAK.lock().unwrap() = Some(n.downgrade());
    n.set_finalizer(|n: Gc<Node>| {
        let w = WEAK.lock().unwrap().clone().unwrap();
        SEEN_NIL.store(w.upgrade().is_none(), Ordering::SeqCst);
        *KEPT.lock().unwrap() = Some(n); // resurrected for good
    })
    .unwrap();
    drop(n);
    h.collect();
    h.wait_finalizers();
    assert!(
        SEEN_NIL.load(Ordering::SeqCst),
        "nil when the finalizer ran"
    );
    let w = WEAK.lock().unwrap().clone().unwrap();
    assert!(
        w.upgrade().is_none(),
        "nil though the finalizer resurrected it"
    );
    let kept = KEPT.lock().unwrap().clone().expect("resurrected");
    assert_eq!(kept.value, 42);
    // A new weak handle of the resurrected object is a new identity, and works.
    let w2 = kept.downgrade();
    assert_ne!(w2, w);
    assert_eq!(w2.upgrade().map(|n| n.value), Some(42));
    h.collect();
    assert!(w.upgrade().is_none(), "stays nil");
    KEPT.lock().unwrap().take();
    drop(kept);
    h.collect();
    assert!(w2.upgrade().is_none());
}

#[test]
fn an_object_reachable_from_a_finalizable_one_keeps_its_weak_handle_for_that_cycle() {
    // Go marks what a finalizable object points to (markfin): it is alive for the
    // finalizer, so its weak handle stays until a later cycle frees it.
    static RAN: AtomicUsize = AtomicUsize::new(0);
    let h = heap();
    let a = node(&h, 1);
    let b = node(&h, 2);
    *a.next.borrow_mut() = Some(b.clone());
    let wb = b.downgrade();
    a.set_finalizer(|_: Gc<Node>| {
        RAN.fetch_add(1, Ordering::SeqCst);
    })
    .unwrap();
    drop((a, b));
    h.collect();
    assert!(
        wb.upgrade().is_some(),
        "b is reachable from a, whose finalizer is queued"
    );
    h.wait_finalizers();
    assert_eq!(RAN.load(Ordering::SeqCst), 1);
    for _ in 0..5 {
        if wb.upgrade().is_none() {
            break;
        }
        h.collect();
    }
    assert!(wb.upgrade().is_none(), "freed once a's finalizer has run");
}

#[test]
fn a_static_weak_handle_never_goes_nil() {
    static S: u64 = 99;
    let g = Gc::from_static(&S);
    let w = g.downgrade();
    assert_eq!(w, Gc::from_static(&S).downgrade());
    drop(g);
    fing::collect();
    let h = heap();
    h.collect();
    assert_eq!(w.upgrade().as_deref(), Some(&99));
}

#[test]
fn weak_handles_inside_heap_objects() {
    #[derive(Trace)]
    struct Entry {
        key: Weak<Node>,
        hits: u64,
    }
    let h = heap();
    let n = node(&h, 3);
    let e = h.alloc(Entry {
        key: n.downgrade(),
        hits: 1,
    });
    h.collect();
    assert_eq!(
        e.key.upgrade().map(|n| n.value),
        Some(3),
        "a field does not keep it, the local does"
    );
    drop(n);
    h.collect();
    assert!(e.key.upgrade().is_none());
    assert_eq!(e.hits, 1);
    // The entry's own death releases its weak handle (its destructor runs).
    let n = node(&h, 4);
    let w = n.downgrade();
    let e2 = h.alloc(Entry {
        key: n.downgrade(),
        hits: 0,
    });
    drop(e2);
    drop(e);
    h.collect();
    assert_eq!(w.upgrade().map(|n| n.value), Some(4));
    drop(n);
    h.collect();
    assert!(w.upgrade().is_none());
}

/// Go's issue 69210: a weak handle upgraded while another thread collects, the strong
/// handle stored into a fresh cycle, collected again: the object is intact.
#[test]
fn an_upgrade_racing_a_collection_is_safe() {
    let h = heap();
    for round in 0..50u64 {
        let n = node(&h, round);
        let w = n.downgrade();
        let keep = node(&h, 1000 + round);
        *keep.next.borrow_mut() = Some(n.clone());
        drop(n);
        let collector = Collector::start(&h);
        let mut got = Vec::new();
        for _ in 0..200 {
            if let Some(s) = w.upgrade() {
                // A fresh cycle holding the upgraded handle.
                let c1 = node(&h, 0);
                let c2 = node(&h, 0);
                *c1.next.borrow_mut() = Some(c2.clone());
                *c2.next.borrow_mut() = Some(c1.clone());
                let holder = node(&h, 0);
                *holder.next.borrow_mut() = Some(s);
                *c1.next.borrow_mut() = Some(holder);
                got.push(c1);
            }
        }
        collector.stop();
        drop(keep);
        h.collect();
        for c1 in &got {
            let holder = c1.next.borrow().clone().unwrap();
            let s = holder.next.borrow().clone().unwrap();
            assert_eq!(s.value, round, "intact after the collections");
        }
        assert_eq!(
            w.upgrade().map(|n| n.value),
            Some(round),
            "the cycles' handles keep it"
        );
        drop(got);
        h.collect();
        assert!(w.upgrade().is_none());
    }
}

/// Four threads downgrade, upgrade, clone and drop weak handles of shared and private
/// objects while one collects: every upgrade sees an intact object, and every object is
/// freed in the end.
#[test]
fn many_threads() {
    let h = heap();
    let shared: Vec<Gc<Node>> = (0..64).map(|i| node(&h, i)).collect();
    let weak: Vec<Weak<Node>> = shared.iter().map(|n| n.downgrade()).collect();
    let collector = Collector::start(&h);
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let (h, weak) = (h.clone(), weak.clone());
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..2000u64 {
                    let w = &weak[(i as usize * 7 + t) % weak.len()];
                    let s = w.upgrade().expect("shared objects stay alive");
                    assert_eq!(s.other, s.value + 1);
                    assert_eq!(s.downgrade(), *w);
                    let p = node(&h, i);
                    mine.push((p.downgrade(), i));
                    if i % 3 == 0 {
                        *p.next.borrow_mut() = Some(p.clone()); // a cycle
                    }
                    if i % 5 == 0 {
                        mine.truncate(mine.len() / 2);
                    }
                    for (pw, v) in mine.iter().rev().take(4) {
                        if let Some(q) = pw.upgrade() {
                            assert_eq!(q.value, *v);
                        }
                    }
                }
                mine
            })
        })
        .collect();
    let mut left = Vec::new();
    for w in workers {
        left.extend(w.join().unwrap());
    }
    collector.stop();
    h.collect();
    h.collect();
    for (w, _) in &left {
        assert!(w.upgrade().is_none(), "private objects are all garbage");
    }
    for (w, n) in weak.iter().zip(&shared) {
        assert!(Gc::ptr_eq(&w.upgrade().unwrap(), n));
    }
    drop(shared);
    h.collect();
    assert!(weak.iter().all(|w| w.upgrade().is_none()));
}
