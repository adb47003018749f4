//! Edge cases of weak handles, ephemerons, cleanups and interned types, found by a
//! red-team review: an ephemeron made while a collection runs, cleanups on far handles,
//! a `Trace` impl that panics after weak handles were cleared, `Cleanup::stop` running
//! user destructors, weak handles of far handles and into a retired heap, interning of
//! descriptors that share a `TypeId`. Each failed before its fix.

#![allow(missing_docs)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use fing::{Ephemeron, Gc, GcCell, Heap, HeapConfig, Kind, Trace, Tracer, Type, Typed, WeakMap};

fn heap() -> Heap {
    let mut c = HeapConfig::default();
    c.gogc = None;
    Heap::new(c)
}

// ---------------------------------------------------------------------------------------
// 1. A weak handle made from a far handle counts on the far handle's FarCell, not on the
//    object: it goes nil once the FarCell dies, with the object alive.

// ---------------------------------------------------------------------------------------
// 2. add_cleanup on a far handle whose address is outside its object (here: a Vec's
//    buffer): the record goes into the owner's span with an address outside that span;
//    queue_cleanups' `s.index_of(r.ptr)` is then garbage: the collection panics (debug:
//    subtract overflow, or an out-of-bounds mark-bit index), and so does every later one.

#[test]
fn cleanup_on_far_handle_outside_object_breaks_collection() {
    let h = heap();
    let v = h.alloc(vec![1u64, 2, 3]);
    let p: Gc<u64> = v.map(|v| &v[0]);
    let _c = p.add_cleanup(1usize, |_| ()).expect("accepted");
    drop(p);
    let first = catch_unwind(AssertUnwindSafe(|| h.collect()));
    let second = catch_unwind(AssertUnwindSafe(|| h.collect()));
    assert!(
        first.is_ok() && second.is_ok(),
        "collections panic: first ok={} second ok={}",
        first.is_ok(),
        second.is_ok()
    );
    drop(v);
}

#[derive(Trace)]
struct Link {
    to: Gc<[u64; 8]>,
}

/// The same through a far handle into another object of another size class: and
/// `Cleanup::stop` looks in `span_of(ptr)` (the other object's span) while the record is in
/// the owner's span, so it cannot cancel it.
#[test]
fn stop_of_cleanup_on_far_handle_into_other_object() {
    let h = heap();
    let ran = Arc::new(AtomicUsize::new(0));
    // The other tests of this binary collect all the time, and a drop that meets another
    // heap's collection is deferred to a ring (it lowers the count later, and leaves the
    // object to this heap's next sweep): the experiment is repeated until one drop runs
    // clear of them.
    let freed_at_zero = (0..100).any(|_| {
        let b = h.alloc([2u64; 8]);
        let link = h.alloc(Link { to: b.clone() });
        let other: Gc<u64> = link.map(|l| &l.to[0]);
        let r = ran.clone();
        let c = other
            .add_cleanup(1usize, move |n| {
                r.fetch_add(n, Ordering::SeqCst);
            })
            .expect("accepted");
        c.stop();
        drop(other);
        // Had `stop` removed the record, `link`'s span would hold no record and `link`
        // would be freed at count zero here (as in the control below).
        let before = h.stats().heap_objects;
        drop(link);
        let after = h.stats().heap_objects;
        std::mem::forget(b);
        after == before - 1
    });
    // Keep the heap from being collected (that panics: see the test above).
    std::mem::forget(h);
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert!(
        freed_at_zero,
        "the stopped cleanup's record is still in link's span: link not freed at count zero"
    );
}

/// Control: the same with a near handle: `stop` removes the record and both go at zero.
#[test]
fn control_stop_of_cleanup_on_near_handle() {
    let h = heap();
    // Repeated until one drop runs clear of other tests' collections (see above).
    let freed_at_zero = (0..100).any(|_| {
        let b = h.alloc([2u64; 8]);
        let link = h.alloc(Link { to: b.clone() });
        let c = link.add_cleanup(1usize, |_| ()).expect("accepted");
        c.stop();
        let before = h.stats().heap_objects;
        drop(link);
        let freed = h.stats().heap_objects == before - 1;
        drop(b);
        freed
    });
    assert!(freed_at_zero);
}

// ---------------------------------------------------------------------------------------
// 3. A Trace impl that panics after `weak::after_mark` (in `mark_doomed`): the weak count
//    of a cleared cell (left in gc_refs for the sweep) is lost by `abandon`, so the object
//    keeps a count of one forever: it is a root in every later collection and never freed.

static ARMED: AtomicBool = AtomicBool::new(false);
static CALLS: AtomicUsize = AtomicUsize::new(0);

/// Garbage with a destructor (a `String`): doomed, so `mark_doomed` traces it.
struct Bomb {
    me: GcCell<Option<Gc<Bomb>>>,
    _s: String,
}

// SAFETY: a struct whose one handle `trace` reports.
unsafe impl Typed for Bomb {
    // SAFETY: describes `Bomb`.
    const TYPE: &'static Type = &unsafe { Type::rust::<Bomb>(Kind::Struct) }.named("rt.Bomb");
}

// SAFETY: reports its one handle; panics on its second trace once armed.
unsafe impl Trace for Bomb {
    const NO_SCAN: bool = false;
    fn trace(&self, t: &mut Tracer) {
        if ARMED.load(Ordering::SeqCst) && CALLS.fetch_add(1, Ordering::SeqCst) == 1 {
            panic!("Bomb::trace panics in mark_doomed");
        }
        self.me.trace(t);
    }
}

#[test]
fn trace_panic_after_after_mark_leaks_weakly_referenced_object_forever() {
    let h = heap();
    let x = h.alloc([1u64; 4]);
    let w2 = x.downgrade();
    drop(x);
    // And an ephemeron whose key dies: its value's count is lost the same way.
    let k = h.alloc([2u64; 4]);
    let e2 = Ephemeron::new(&k, h.alloc([3u64; 4]));
    drop(k);
    let b = h.alloc(Bomb {
        me: GcCell::new(None),
        _s: "boom".into(),
    });
    b.me.set(Some(b.clone()));
    drop(b); // a self-cycle: garbage only a collection finds
    let before = h.stats().heap_objects;
    ARMED.store(true, Ordering::SeqCst);
    CALLS.store(0, Ordering::SeqCst);
    let p = catch_unwind(AssertUnwindSafe(|| h.collect()));
    ARMED.store(false, Ordering::SeqCst);
    assert!(p.is_err(), "the bomb went off");
    assert!(
        w2.upgrade().is_none(),
        "cleared by after_mark before the panic"
    );
    assert!(e2.value().is_none());
    for _ in 0..3 {
        h.collect();
    }
    drop((w2, e2));
    for _ in 0..3 {
        h.collect();
    }
    assert_eq!(
        h.stats().heap_objects,
        0,
        "objects leaked (there were {before} before the abandoned collection)"
    );
}

// ---------------------------------------------------------------------------------------
// 4. Cleanup::stop drops the cancelled function and argument inside its mutator section:
//    user code in a section (here `collect()` refuses; a lock taken there deadlocks against
//    a thread that waits for the world while holding it).

struct Probe(Arc<AtomicBool>);

impl Drop for Probe {
    fn drop(&mut self) {
        // Outside every section, `collect()` works.
        let ok = catch_unwind(fing::collect).is_ok();
        self.0.store(ok, Ordering::SeqCst);
    }
}

// SAFETY: no handles.
unsafe impl Typed for Probe {
    // SAFETY: describes `Probe`.
    const TYPE: &'static Type = &unsafe { Type::rust::<Probe>(Kind::Struct) }.named("rt.Probe");
}
// SAFETY: no handles.
unsafe impl Trace for Probe {
    const NO_SCAN: bool = true;
    fn trace(&self, _t: &mut Tracer) {}
}

#[test]
fn cleanup_stop_runs_user_destructors_inside_a_section() {
    let h = heap();
    let x = h.alloc([1u64; 4]);
    let outside_ok = Arc::new(AtomicBool::new(false));
    drop(Probe(outside_ok.clone()));
    assert!(
        outside_ok.load(Ordering::SeqCst),
        "collect works from a plain drop"
    );
    let ok = Arc::new(AtomicBool::new(false));
    let c = x.add_cleanup(Probe(ok.clone()), |_| ()).unwrap();
    c.stop();
    assert!(
        ok.load(Ordering::SeqCst),
        "the argument's destructor ran inside a mutator section (collect() refused)"
    );
}

// ---------------------------------------------------------------------------------------
// 5. A retired heap is never collected again (except by a later Heap::new): an object of it
//    that had a weak handle is not freed at count zero, so it leaks and its weak handle
//    upgrades forever.

// ---------------------------------------------------------------------------------------
// 6. An ephemeron (WeakMap entry) keeps its value whatever holds the ephemeron: a WeakMap
//    inside a heap object whose value points back to the holder keeps the holder, the map
//    and the value alive while the key lives (JavaScript collects them).

#[derive(Trace)]
struct Holder {
    map: GcCell<WeakMap<[u64; 4], Back>>,
    #[gc(untraced)]
    drops: Arc<AtomicUsize>,
}

#[derive(Trace)]
#[gc(unsafe_allow_drop)]
struct Back {
    holder: Gc<Holder>,
    #[gc(untraced)]
    drops: Arc<AtomicUsize>,
}
// SAFETY: its Drop reads no handle.
unsafe impl fing::AllowDrop for Back {}
impl Drop for Back {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

/// Control for test 3: the same objects, no panic: everything is freed.
#[test]
fn control_no_trace_panic_frees_everything() {
    let h = heap();
    let x = h.alloc([1u64; 4]);
    let w2 = x.downgrade();
    drop(x);
    let k = h.alloc([2u64; 4]);
    let e2 = Ephemeron::new(&k, h.alloc([3u64; 4]));
    drop(k);
    let b = h.alloc(Bomb {
        me: GcCell::new(None),
        _s: "boom".into(),
    });
    b.me.set(Some(b.clone()));
    drop(b);
    for _ in 0..3 {
        h.collect();
    }
    drop((w2, e2));
    for _ in 0..3 {
        h.collect();
    }
    assert_eq!(h.stats().heap_objects, 0);
}

// ---------------------------------------------------------------------------------------
// 7. Interning keys on TypeIdent, but an untraced field's descriptor shares its type's
//    TypeId with the type's own descriptor (another kind, name, noscan bit): whichever
//    is built first is what the other gets.

#[derive(Trace)]
struct WithUntraced {
    #[gc(untraced)]
    v: Vec<u8>,
}

#[test]
fn interning_conflates_descriptors_sharing_a_type_id() {
    use fing::reflect::TypeBuilder;
    let untraced = WithUntraced::TYPE.fields()[0].ty.get();
    let own = <Vec<u8> as Typed>::TYPE;
    assert_eq!(untraced.ident(), own.ident());
    assert_ne!(untraced.kind(), own.kind(), "two different descriptors");
    let a = TypeBuilder::array(untraced, 2);
    let b = TypeBuilder::array(own, 2);
    assert_eq!(
        b.elem().unwrap().kind(),
        own.kind(),
        "array(Vec<u8>, 2) has element kind {:?} (the untraced field's), named {}",
        b.elem().unwrap().kind(),
        b
    );
    let _ = a;
    let _ = WithUntraced { v: Vec::new() }.v;
}

// ---------------------------------------------------------------------------------------
// 8. Across heaps, a value pointing back to its key keeps the key (the value's handle is
//    an outside reference for the key's heap), contrary to the docs.

// ---------------------------------------------------------------------------------------
// 9. Ephemeron::new pushes its cell into the registry outside any section: a collection
//    that stopped the world after the key's downgrade but before the push sees the cell
//    only from `ephemeron_round` on. `before_mark` never added the value's one to gc_refs,
//    but the round takes one off (key alive) or `after_mark` clears the value leaving its
//    count in place (key dead): the value's count is corrupted (settle subtracts
//    0x7FFF_FFFF from a gc_refs of u32::MAX) or leaks.

#[test]
fn ephemeron_new_racing_a_collection_corrupts_counts() {
    let h = heap();
    // Something to mark, so the collection's marking takes a while.
    #[derive(Trace)]
    struct L {
        next: Option<Gc<L>>,
    }
    let mut list: Option<Gc<L>> = None;
    for _ in 0..20_000 {
        list = Some(h.alloc(L { next: list }));
    }
    let key = h.alloc([1u64; 4]);
    let stop = Arc::new(AtomicBool::new(false));
    let ts: Vec<_> = (0..4)
        .map(|_| {
            let (h, key, stop) = (h.clone(), key.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut es = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) && i < 5000 {
                    es.push(Ephemeron::new(&key, h.alloc([i; 4])));
                    i += 1;
                }
                es
            })
        })
        .collect();
    for _ in 0..100 {
        h.collect();
    }
    stop.store(true, Ordering::SeqCst);
    let es: Vec<_> = ts.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let n = es.len();
    drop(es);
    drop((key, list));
    for _ in 0..4 {
        h.collect();
    }
    assert_eq!(
        h.stats().heap_objects,
        0,
        "objects leaked after {n} ephemerons made during 300 collections"
    );
}

#[test]
fn far_weak_goes_nil_while_its_object_lives() {
    let h = heap();
    let big = h.alloc([7u64; 10_000]); // 80 KB: index 9000 is > 64 KiB in: a far handle
    let far: Gc<u64> = big.map(|a| &a[9_000]);
    let w = far.downgrade();
    assert_eq!(w.upgrade().map(|g| *g), Some(7));
    drop(far);
    h.collect();
    // `big` is alive and holds the address the weak handle was made from.
    assert_eq!(
        w.upgrade().map(|g| *g),
        Some(7),
        "weak handle went nil while its object is alive"
    );
    drop(big);
}

#[test]
fn ephemeron_with_far_key_loses_value_while_key_object_lives() {
    let h = heap();
    let big = h.alloc([7u64; 10_000]);
    let far: Gc<u64> = big.map(|a| &a[9_000]);
    let e = Ephemeron::new(&far, h.alloc([5u64; 4]));
    drop(far);
    h.collect();
    assert!(
        e.value().is_some(),
        "value dropped while the key's object is alive"
    );
    drop(big);
}

/// A retired heap (its last `Heap` dropped) holding an object with a weak handle: once the
/// object dies, `fing::collect()` collects the retired heap too, and the weak handle goes
/// nil.
#[test]
fn weak_into_a_retired_heap_goes_nil_at_the_next_process_collect() {
    fing::collect(); // the default heap exists (its making collects a retired heap)
    let h = heap();
    let x = h.alloc([9u64; 4]);
    let w = x.downgrade();
    drop(h); // retired, with `x` alive
    drop(x); // count 1: the weak count
    fing::collect();
    assert!(
        w.upgrade().is_none(),
        "the object is unreachable, but its weak handle still upgrades"
    );
}
