//! Ephemerons and `WeakMap` through the public API: a value kept exactly while its key
//! is alive from elsewhere, including a value that points back to its key and chains of
//! ephemerons (the fixpoint); both nil together; a key queued for its finalizer; a
//! weak-keyed map with JavaScript's `WeakMap` operations; many threads.
//!
//! Tests wait with loops of `collect()`, never bare sleeps.

#![allow(missing_docs)]

#[path = "support/collector.rs"]
mod collector;
use collector::Collector;

use std::sync::Arc;

use fing::{Ephemeron, Gc, GcCell, Heap, HeapConfig, Trace, WeakMap};

fn heap() -> Heap {
    let mut c = HeapConfig::default();
    c.gogc = None;
    Heap::new(c)
}

#[derive(Trace, Debug)]
struct Obj {
    id: u64,
    link: GcCell<Option<Gc<Obj>>>,
}

fn obj(h: &Heap, id: u64) -> Gc<Obj> {
    h.alloc(Obj {
        id,
        link: GcCell::new(None),
    })
}

static_assertions::assert_eq_size!(Ephemeron<Obj, Obj>, usize);
static_assertions::assert_impl_all!(Ephemeron<Obj, Obj>: Send, Sync, Clone, std::fmt::Debug);

#[test]
fn the_value_lives_exactly_while_the_key_does() {
    let h = heap();
    let k = obj(&h, 1);
    let e = Ephemeron::new(&k, obj(&h, 2));
    for _ in 0..3 {
        h.collect();
        assert_eq!(e.value().map(|v| v.id), Some(2), "the key is alive");
        assert_eq!(e.key().map(|k| k.id), Some(1));
    }
    let frees = h.stats().frees;
    drop(k);
    h.collect();
    assert!(e.key().is_none() && e.value().is_none(), "nil together");
    assert_eq!(
        h.stats().frees,
        frees + 2,
        "key and value freed by that collection"
    );
}

#[test]
fn a_value_pointing_back_to_its_key_does_not_keep_it() {
    let h = heap();
    let k = obj(&h, 1);
    let v = obj(&h, 2);
    *v.link.borrow_mut() = Some(k.clone());
    let e = Ephemeron::new(&k, v);
    h.collect();
    assert_eq!(e.value().map(|v| v.id), Some(2));
    drop(k);
    h.collect();
    assert!(e.key().is_none() && e.value().is_none());
    assert_eq!(h.stats().heap_objects, 0, "the pair is gone");
}

#[test]
fn chains_of_ephemerons_reach_a_fixpoint() {
    let h = heap();
    // k1 -> (e1) v1, v1 holds k2, k2 -> (e2) v2, v2 holds k3, k3 -> (e3) v3.
    let k1 = obj(&h, 1);
    let k2 = obj(&h, 2);
    let k3 = obj(&h, 3);
    let v1 = obj(&h, 10);
    *v1.link.borrow_mut() = Some(k2.clone());
    let v2 = obj(&h, 20);
    *v2.link.borrow_mut() = Some(k3.clone());
    let v3 = obj(&h, 30);
    *v3.link.borrow_mut() = Some(k1.clone()); // and back to the first key
                                              // Registered in reverse, so one round is not enough.
    let e3 = Ephemeron::new(&k3, v3);
    let e2 = Ephemeron::new(&k2, v2);
    let e1 = Ephemeron::new(&k1, v1);
    drop((k2, k3));
    h.collect();
    assert_eq!(e1.value().map(|v| v.id), Some(10));
    assert_eq!(e2.value().map(|v| v.id), Some(20), "k2 reached through v1");
    assert_eq!(e3.value().map(|v| v.id), Some(30), "k3 reached through v2");
    drop(k1);
    h.collect();
    for e in [&e1, &e2, &e3] {
        assert!(e.value().is_none() && e.key().is_none());
    }
    assert_eq!(h.stats().heap_objects, 0);
}

#[test]
fn a_dropped_ephemeron_releases_its_value_at_the_next_collection() {
    let h = heap();
    let k = obj(&h, 1);
    let v = obj(&h, 2);
    let w = v.downgrade();
    let e = Ephemeron::new(&k, v);
    let e2 = e.clone();
    drop(e);
    h.collect();
    assert!(w.upgrade().is_some(), "a clone is left");
    drop(e2);
    h.collect();
    assert!(w.upgrade().is_none(), "released with the last ephemeron");
    assert_eq!(k.id, 1);
}

#[test]
fn the_value_goes_when_the_keys_finalizer_is_queued() {
    let h = heap();
    let k = obj(&h, 1);
    let kept = Arc::new(std::sync::Mutex::new(None));
    let kk = kept.clone();
    k.set_finalizer(move |k: Gc<Obj>| *kk.lock().unwrap() = Some(k))
        .unwrap();
    let e = Ephemeron::new(&k, obj(&h, 2));
    drop(k);
    h.collect();
    h.wait_finalizers();
    assert!(
        e.value().is_none() && e.key().is_none(),
        "as a weak handle does"
    );
    assert_eq!(
        kept.lock().unwrap().as_ref().map(|k| k.id),
        Some(1),
        "resurrected"
    );
}

#[test]
fn a_static_key_keeps_its_value() {
    static K: u64 = 5;
    let h = heap();
    let e = Ephemeron::new(&Gc::from_static(&K), obj(&h, 2));
    h.collect();
    h.collect();
    assert_eq!(e.value().map(|v| v.id), Some(2));
    assert_eq!(e.key().as_deref(), Some(&5));
}

#[test]
fn weak_map_operations() {
    let h = heap();
    let mut m: WeakMap<Obj, Obj> = WeakMap::new();
    let keys: Vec<Gc<Obj>> = (0..10).map(|i| obj(&h, i)).collect();
    for k in &keys {
        // Each value points back to its key: the leak a strong-valued map would have.
        let v = obj(&h, 100 + k.id);
        *v.link.borrow_mut() = Some(k.clone());
        assert!(m.insert(k, v).is_none());
    }
    assert_eq!(m.len(), 10);
    assert_eq!(m.get(&keys[3]).map(|v| v.id), Some(103));
    assert!(m.contains_key(&keys[4]));
    let old = m.insert(&keys[4], obj(&h, 999)).map(|v| v.id);
    assert_eq!(old, Some(104), "insert returns the value it replaces");
    assert_eq!(m.remove(&keys[5]).map(|v| v.id), Some(105));
    assert!(m.get(&keys[5]).is_none());
    assert_eq!(m.len(), 9);
    let mut keys = keys;
    keys.truncate(3); // keys 0, 1, 2 stay
    h.collect();
    assert_eq!(m.len(), 3, "entries of dead keys went with them");
    assert_eq!(m.get(&keys[2]).map(|v| v.id), Some(102));
    // A new object at a dead key's address is not that key.
    for i in 0..50 {
        let fresh = obj(&h, 1000 + i);
        assert!(m.get(&fresh).is_none());
        assert!(!m.contains_key(&fresh));
    }
    drop(keys);
    h.collect();
    assert!(m.is_empty());
    assert_eq!(h.stats().heap_objects, 0, "no entry kept anything");
}

#[test]
fn a_weak_map_inside_a_heap_object() {
    #[derive(Trace)]
    struct Interp {
        props: GcCell<WeakMap<Obj, Obj>>,
    }
    let h = heap();
    let interp = h.alloc(Interp {
        props: GcCell::new(WeakMap::new()),
    });
    let k = obj(&h, 1);
    interp.props.borrow_mut().insert(&k, obj(&h, 2));
    h.collect();
    assert_eq!(interp.props.borrow().get(&k).map(|v| v.id), Some(2));
    drop(k);
    h.collect();
    assert_eq!(interp.props.borrow_mut().len(), 0);
    drop(interp);
    h.collect();
    assert_eq!(h.stats().heap_objects, 0);
}

#[test]
fn many_threads() {
    let h = heap();
    let collector = Collector::start(&h);
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let h = h.clone();
            std::thread::spawn(move || {
                let mut live = Vec::new();
                let mut m: WeakMap<Obj, Obj> = WeakMap::new();
                for i in 0..1500u64 {
                    let k = obj(&h, i);
                    let v = obj(&h, i + 1_000_000);
                    *v.link.borrow_mut() = Some(k.clone());
                    m.insert(&k, v);
                    if i % 2 == 0 {
                        live.push(k);
                    }
                    if i % 100 == 0 {
                        for k in &live {
                            let v = m.get(k).expect("a live key keeps its value");
                            assert_eq!(v.id, k.id + 1_000_000, "thread {t}");
                        }
                    }
                }
                (live, m)
            })
        })
        .collect();
    let mut kept = Vec::new();
    for w in workers {
        kept.push(w.join().unwrap());
    }
    collector.stop();
    h.collect();
    for (live, m) in &mut kept {
        assert_eq!(m.len(), live.len());
        for k in live.iter() {
            assert_eq!(m.get(k).map(|v| v.id), Some(k.id + 1_000_000));
        }
    }
    drop(kept);
    h.collect();
    h.collect();
    assert_eq!(h.stats().heap_objects, 0);
}
