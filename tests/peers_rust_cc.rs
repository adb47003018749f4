//! rust-cc's test suite, ported to fing.
//!
//! Peer: rust-cc 0.6 (crate `rust-cc`, module `rust_cc`: `Cc`, `collect_cycles`, `Finalize`),
//! repository `frengor/rust-cc`. Files read:
//! - `tests/cc.rs`
//! - `tests/auto_collect.rs`
//! - `tests/derive_macro_tests/*.rs` (run by `tests/macro_tests.rs`)
//! - `src/tests/cc.rs`, `src/tests/mod.rs` (the `Droppable` checker), `src/tests/panicking.rs`
//! - `src/tests/cleaners/mod.rs`, `src/tests/weak/mod.rs`, `tests/weak_upgrade_tests.rs`,
//!   `src/tests/lists.rs`, `src/tests/counter_marker.rs` (read, all left out: see below)
//!
//! rust-cc's `Finalize` maps to fing's Go-style finalizers (`Gc::set_finalizer`): they run on
//! the finalizer thread after a collection finds the object unreachable, in dependency
//! order (an object reachable from another finalizable one is finalized a cycle later), the
//! object resurrected for one cycle; a finalizable object in a cycle is never finalized (Go's
//! rule), where rust-cc finalizes cycles. The ports check fing's rules where they differ.
//!
//! Ported: `test_simple`, `test_less_simple` / `test_cc`, `test_complex`, `test_trait_object`,
//! `box_test`, `alignment_test`, `test_finalize_drop`, `test_finalization`,
//! `finalization_test`, `no_cyclic_finalization_ends`, `cyclic_finalization_ends`,
//! `test_cyclic_finalization_aliasing`, `test_self_loop_finalization_aliasing`,
//! `test_panicking_tracing_counting`, `test_panicking_tracing_root`,
//! `test_panicking_tracing_drop` (a panic at each successive trace call),
//! `test_panicking_tracing_resurrecting`, `test_panicking_finalize`, `test_panicking_drop`,
//! `test_panicking_drop_and_finalize`, `test_auto_collect`, `test_disable_auto_collect`, and
//! from the derive tests `derive_trace`, `empty_attribute` (no attribute), `no_drop`,
//! `traced_fields_struct`, `traced_fields_enum` (their traced halves).
//!
//! Left out:
//! - weak pointers (`src/tests/weak/mod.rs`, `tests/weak_upgrade_tests.rs`, the
//!   `weak-ptrs` parts of other tests): fing has no weak handles yet.
//! - cleaners (`src/tests/cleaners/mod.rs`): fing has no `add_cleanup` yet.
//! - `try_unwrap_test`, `fail_try_unwrap_test`, `finalization_try_unwrap_test`,
//!   `cyclic_finalization_try_unwrap_test`: fing has no `try_unwrap` or count query.
//! - `buffered_objects_count_test`, `test_buffered_threshold_auto_collect`, `lists.rs`,
//!   `counter_marker.rs`, `make_sure_droppable_is_finalizable`: rust-cc's internals (its
//!   buffer of possible roots, list and counter implementations).
//! - `ignored_variant` and the `#[rust_cc(ignore)]` halves of `traced_fields_*`: fing's
//!   `#[gc(untraced)]` is refused on a field that can hold handles and has no per-variant
//!   form; the `invalid_*` compile-fail cases: fing has its own (`tests/ui`).
//! - `useless_cyclic`, `test_cyclic`, `rc_test`: commented out upstream.

#![allow(missing_docs)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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

/// Collects and waits for finalizers until `done` holds, at most 20 rounds.
fn settle(h: &Heap, done: impl Fn() -> bool) {
    for _ in 0..20 {
        if done() {
            return;
        }
        h.collect();
        fing::wait_finalizers();
    }
}

fn panic_message(err: &(dyn std::any::Any + Send)) -> String {
    err.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| err.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// Counts its drops (rust-cc's `DropChecker`).
struct Token(Arc<AtomicUsize>);

impl Drop for Token {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// rust-cc's `Circular` inside a `Droppable`: a link and a drop counter.
#[derive(Trace)]
struct Circular {
    cc: GcCell<Option<Gc<Circular>>>,
    #[gc(untraced)]
    token: Token,
}

fn circular(h: &Heap, drops: &Arc<AtomicUsize>) -> Gc<Circular> {
    h.alloc(Circular {
        cc: GcCell::new(None),
        token: Token(drops.clone()),
    })
}

/// Ports `src/tests/cc.rs::test_simple`: one object, collections while it is held, clones.
/// Its destructor runs once; fing runs destructors other than handle drops in the sweep.
#[test]
fn test_simple() {
    let h = heap();
    let drops = counter();
    let cc = circular(&h, &drops);
    h.collect();
    assert_eq!(count(&drops), 0);
    let cloned = cc.clone();
    assert!(Gc::ptr_eq(&cc, &cloned));
    drop(cloned);
    h.collect();
    assert_eq!(count(&drops), 0, "cc still holds it");
    drop(cc);
    h.collect();
    assert_eq!(count(&drops), 1);
    h.collect();
    assert_eq!(count(&drops), 1);
}

/// Ports `src/tests/cc.rs::test_less_simple` and `test_cc` (the same test twice upstream):
/// a two-cycle, collected only once both handles are gone.
#[test]
fn test_less_simple_and_test_cc() {
    let h = heap();
    let (d1, d2) = (counter(), counter());
    let cc1 = circular(&h, &d1);
    let cc2 = circular(&h, &d2);
    cc1.cc.set(Some(cc2.clone()));
    cc2.cc.set(Some(cc1.clone()));
    h.collect();
    assert_eq!((count(&d1), count(&d2)), (0, 0));
    let cloned = cc1.clone();
    drop(cloned);
    h.collect();
    assert_eq!((count(&d1), count(&d2)), (0, 0));
    drop(cc1);
    drop(cc2);
    assert_eq!(
        (count(&d1), count(&d2)),
        (0, 0),
        "a cycle waits for a collection"
    );
    h.collect();
    assert_eq!((count(&d1), count(&d2)), (1, 1));
}

#[derive(Trace)]
struct A {
    b: Gc<B>,
    #[gc(untraced)]
    token: Token,
}

#[derive(Trace)]
struct B {
    c: Gc<C>,
    #[gc(untraced)]
    token: Token,
}

#[derive(Trace)]
struct C {
    a: GcCell<Option<Gc<A>>>,
    b: GcCell<Option<Gc<B>>>,
    #[gc(untraced)]
    token: Token,
}

#[derive(Trace)]
struct D {
    c: Gc<C>,
    #[gc(untraced)]
    token: Token,
}

/// Ports `tests/cc.rs::test_complex`: a -> b -> c, c -> a and c -> b, and d -> c from
/// outside the cycle. Dropping `a` frees nothing (d reaches all); dropping `d` frees all.
#[test]
fn test_complex() {
    let h = heap();
    let drops = counter();
    let t = || Token(drops.clone());
    let c = h.alloc(C {
        a: GcCell::new(None),
        b: GcCell::new(None),
        token: t(),
    });
    let b = h.alloc(B {
        c: c.clone(),
        token: t(),
    });
    let a = h.alloc(A {
        b: b.clone(),
        token: t(),
    });
    drop((b, c));
    a.b.c.a.set(Some(a.clone()));
    a.b.c.b.set(Some(a.b.clone()));
    let d = h.alloc(D {
        c: a.b.c.clone(),
        token: t(),
    });
    drop(a);
    h.collect();
    assert_eq!(count(&drops), 0, "d reaches the whole cycle");
    let a = d.c.a.borrow().clone().expect("a is still there");
    assert!(Gc::ptr_eq(&a.b, d.c.b.borrow().as_ref().unwrap()));
    drop(a);
    drop(d);
    h.collect();
    assert_eq!(count(&drops), 4);
}

trait TestTrait: Send + Sync {
    fn hello(&self) -> u8;
}

#[derive(Trace)]
struct MyTraitObject {
    n: u8,
    me: GcCell<Option<Gc<MyTraitObject>>>,
    #[gc(untraced)]
    token: Token,
}

impl TestTrait for MyTraitObject {
    fn hello(&self) -> u8 {
        self.n
    }
}

/// Ports `src/tests/cc.rs::test_trait_object`: a self-loop reached through a handle to a
/// trait object (made with `Gc::map`), called, dropped and collected.
#[test]
fn test_trait_object() {
    let h = heap();
    let drops = counter();
    let cc = h.alloc(MyTraitObject {
        n: 5,
        me: GcCell::new(None),
        token: Token(drops.clone()),
    });
    cc.me.set(Some(cc.clone()));
    let dyn_cc: Gc<dyn TestTrait> = cc.map(|x| x as &dyn TestTrait);
    drop(cc);
    let cloned = dyn_cc.clone();
    assert!(Gc::ptr_eq(&dyn_cc, &cloned));
    drop(cloned);
    h.collect();
    assert_eq!(dyn_cc.hello(), 5);
    assert_eq!(count(&drops), 0);
    drop(dyn_cc);
    h.collect();
    assert_eq!(count(&drops), 1);
}

#[derive(Trace)]
struct BoxLoop {
    me: GcCell<Option<Box<Gc<BoxLoop>>>>,
    #[gc(untraced)]
    token: Token,
}

/// Ports `tests/cc.rs::box_test`: a self-loop through a `Box`.
#[test]
fn box_test() {
    let h = heap();
    let drops = counter();
    {
        let cc = h.alloc(BoxLoop {
            me: GcCell::new(None),
            token: Token(drops.clone()),
        });
        *cc.me.borrow_mut() = Some(Box::new(cc.clone()));
    }
    h.collect();
    assert_eq!(count(&drops), 1);
}

/// Ports `tests/cc.rs::alignment_test`: self-loops of types aligned to 1 .. 128 bytes; each
/// is placed at its alignment and collected.
#[test]
fn alignment_test() {
    let h = heap();
    let drops = counter();
    macro_rules! aligned {
        ($($n:tt),+) => {$({
            #[derive(Trace)]
            #[repr(align($n))]
            struct Aligned {
                cc: GcCell<Option<Gc<Aligned>>>,
                #[gc(untraced)]
                token: Token,
            }
            for _ in 0..3 {
                let cc = h.alloc(Aligned {
                    cc: GcCell::new(None),
                    token: Token(drops.clone()),
                });
                assert_eq!(Gc::as_ptr(&cc) as usize % std::mem::align_of::<Aligned>(), 0, "align({})", $n);
                cc.cc.set(Some(cc.clone()));
            }
        })+};
    }
    aligned!(1, 2, 4, 8, 16, 32, 64, 128);
    h.collect();
    assert_eq!(count(&drops), 24);
}

/// Ticks a shared clock when dropped, and keeps the time in `at`: the clock counts the
/// drops, `at` says when (0: not dropped).
struct Stamp {
    clock: Arc<AtomicUsize>,
    at: Arc<AtomicUsize>,
}

impl Drop for Stamp {
    fn drop(&mut self) {
        let now = self.clock.fetch_add(1, Ordering::SeqCst) + 1;
        self.at.store(now, Ordering::SeqCst);
    }
}

#[derive(Trace)]
struct Fin {
    id: u64,
    next: GcCell<Option<Gc<Fin>>>,
    #[gc(untraced)]
    stamp: Stamp,
}

/// Ports `tests/cc.rs::test_finalize_drop`: objects held only from a plain Rust value (an
/// `Rc` upstream), each with a finalizer and a destructor. Each finalizer runs once, before
/// its object's destructor; fing finalizes `b` (which reaches `a`) a cycle before `a`, where
/// rust-cc runs every finalizer before any destructor.
#[test]
fn test_finalize_drop() {
    let h = heap();
    let clock = counter();
    let (fin_a, fin_b, drop_a, drop_b) = (counter(), counter(), counter(), counter());
    let a = h.alloc(Fin {
        id: 1,
        next: GcCell::new(None),
        stamp: Stamp {
            clock: clock.clone(),
            at: drop_a.clone(),
        },
    });
    let b = h.alloc(Fin {
        id: 2,
        next: GcCell::new(Some(a.clone())),
        stamp: Stamp {
            clock: clock.clone(),
            at: drop_b.clone(),
        },
    });
    for (g, at) in [(&a, &fin_a), (&b, &fin_b)] {
        let (clock, at) = (clock.clone(), at.clone());
        g.set_finalizer(move |_| {
            let now = clock.fetch_add(1, Ordering::SeqCst) + 1;
            at.store(now, Ordering::SeqCst);
        })
        .unwrap();
    }
    drop(a);
    let outside = Box::new(b); // the graph is owned by a value outside the heap
    h.collect();
    fing::wait_finalizers();
    assert_eq!(count(&fin_a) + count(&fin_b), 0);
    drop(outside);
    settle(&h, || count(&drop_a) > 0 && count(&drop_b) > 0);
    let [fa, fb, da, db] = [&fin_a, &fin_b, &drop_a, &drop_b].map(count);
    assert!(fa > 0 && fb > 0 && da > 0 && db > 0, "{fa} {fb} {da} {db}");
    assert!(fb < db && fa < da, "each finalizer before its destructor");
    assert!(fb < fa, "b (which reaches a) is finalized first");
    assert_eq!(count(&clock), 4, "each event happened once");
}

/// Ports `tests/cc.rs::test_finalization`: a finalizer resurrects its object into a value
/// outside the heap; the object and what it reaches stay alive and intact, the finalizer
/// never runs again, and both are freed once the resurrected handle goes.
#[test]
fn test_finalization() {
    let h = heap();
    let clock = counter();
    let (drop_a, drop_b, fins) = (counter(), counter(), counter());
    let stamp = |at: &Arc<AtomicUsize>| Stamp {
        clock: clock.clone(),
        at: at.clone(),
    };
    let b = h.alloc(Fin {
        id: 2,
        next: GcCell::new(None),
        stamp: stamp(&drop_b),
    });
    let a = h.alloc(Fin {
        id: 1,
        next: GcCell::new(Some(b)),
        stamp: stamp(&drop_a),
    });
    let slot: Arc<Mutex<Option<Gc<Fin>>>> = Arc::new(Mutex::new(None));
    {
        let (slot, fins) = (slot.clone(), fins.clone());
        a.set_finalizer(move |a| {
            fins.fetch_add(1, Ordering::SeqCst);
            *slot.lock().unwrap() = Some(a);
        })
        .unwrap();
    }
    h.collect();
    fing::wait_finalizers();
    assert_eq!(count(&fins), 0);
    drop(a);
    settle(&h, || count(&fins) > 0);
    for _ in 0..3 {
        h.collect();
        fing::wait_finalizers();
    }
    assert_eq!(count(&fins), 1, "finalized once");
    assert_eq!(count(&clock), 0, "resurrected: nothing dropped");
    let a = slot.lock().unwrap().take().unwrap();
    assert_eq!(a.id, 1);
    assert_eq!(a.next.borrow().as_ref().unwrap().id, 2);
    drop(a);
    h.collect();
    h.collect();
    fing::wait_finalizers();
    assert!(count(&drop_a) > 0 && count(&drop_b) > 0);
    assert_eq!(count(&clock), 2, "each dropped once");
    assert_eq!(count(&fins), 1);
}

/// A `Fin` whose drops `drops` counts.
fn fin_node(h: &Heap, id: u64, drops: &Arc<AtomicUsize>) -> Gc<Fin> {
    h.alloc(Fin {
        id,
        next: GcCell::new(None),
        stamp: Stamp {
            clock: drops.clone(),
            at: counter(),
        },
    })
}

/// Ports `tests/cc.rs::finalization_test`: a finalizer allocates a new object and links it
/// into its object (a cycle upstream; a finalizable object in a cycle is never finalized in
/// fing, so the object points to nothing before). Both are freed afterwards.
#[test]
fn finalization_test() {
    let h = heap();
    let (drops, fins) = (counter(), counter());
    let a = fin_node(&h, 1, &drops);
    {
        let (h2, drops, fins) = (h.clone(), drops.clone(), fins.clone());
        a.set_finalizer(move |a| {
            fins.fetch_add(1, Ordering::SeqCst);
            let n = fin_node(&h2, 2, &drops);
            n.next.set(Some(a.clone())); // and a cycle, now that no finalizer is set
            a.next.set(Some(n));
        })
        .unwrap();
    }
    drop(a);
    settle(&h, || count(&fins) > 0);
    h.collect();
    h.collect();
    fing::wait_finalizers();
    assert_eq!(count(&fins), 1);
    assert_eq!(
        count(&drops),
        2,
        "the object and the one its finalizer made"
    );
}

/// Ports `src/tests/cc.rs::no_cyclic_finalization_ends`: a finalizer that allocates an
/// object of its own type (with no finalizer) runs once; the finalization ends.
#[test]
fn no_cyclic_finalization_ends() {
    let h = heap();
    let (drops, fins) = (counter(), counter());
    {
        let (h2, drops, fins) = (h.clone(), drops.clone(), fins.clone());
        fin_node(&h, 1, &drops.clone())
            .set_finalizer(move |_| {
                fins.fetch_add(1, Ordering::SeqCst);
                drop(fin_node(&h2, 2, &drops));
            })
            .unwrap();
    }
    settle(&h, || count(&fins) > 0);
    for _ in 0..4 {
        h.collect();
        fing::wait_finalizers();
    }
    assert_eq!(count(&fins), 1);
    assert_eq!(count(&drops), 2);
    assert_eq!(h.stats().heap_objects, 0);
}

/// Ports `src/tests/cc.rs::cyclic_finalization_ends`: a finalizer that makes a new
/// self-loop of its own type runs once, and the new cycle is collected.
#[test]
fn cyclic_finalization_ends() {
    let h = heap();
    let (drops, fins) = (counter(), counter());
    {
        let (h2, drops, fins) = (h.clone(), drops.clone(), fins.clone());
        fin_node(&h, 1, &drops.clone())
            .set_finalizer(move |_| {
                fins.fetch_add(1, Ordering::SeqCst);
                let n = fin_node(&h2, 2, &drops);
                n.next.set(Some(n.clone()));
            })
            .unwrap();
    }
    settle(&h, || count(&fins) > 0);
    for _ in 0..4 {
        h.collect();
        fing::wait_finalizers();
    }
    assert_eq!(count(&fins), 1);
    assert_eq!(count(&drops), 2);
}

/// Ports `src/tests/cc.rs::test_cyclic_finalization_aliasing`: a finalizer walks a cycle it
/// reaches, borrowing the same cells again and again. (The finalizable object is outside
/// the cycle: in fing a finalizable object in a cycle is never finalized.)
#[test]
fn test_cyclic_finalization_aliasing() {
    let h = heap();
    let (drops, a_drops, fins) = (counter(), counter(), counter());
    let b = fin_node(&h, 2, &drops);
    let c = fin_node(&h, 3, &drops);
    b.next.set(Some(c.clone()));
    c.next.set(Some(b.clone()));
    let a = fin_node(&h, 1, &a_drops);
    a.next.set(Some(b));
    drop(c);
    let walked = Arc::new(Mutex::new(Vec::new()));
    {
        let (walked, fins) = (walked.clone(), fins.clone());
        a.set_finalizer(move |a| {
            let mut cur = a.next.borrow().clone();
            let mut ids = Vec::new();
            for _ in 0..5 {
                let n = cur.expect("the cycle is intact");
                ids.push(n.id);
                cur = n.next.borrow().clone();
            }
            *walked.lock().unwrap() = ids;
            fins.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    }
    drop(a);
    settle(&h, || count(&fins) > 0);
    assert_eq!(*walked.lock().unwrap(), [2, 3, 2, 3, 2]);
    // Once its finalizer has let go of it, `a` may be freed at once (its count is zero);
    // the cycle it reached waits for a collection.
    assert!(count(&a_drops) <= 1);
    assert_eq!(count(&drops), 0, "the cycle lived through the finalizer");
    h.collect();
    h.collect();
    assert_eq!((count(&a_drops), count(&drops)), (1, 2));
}

/// Ports `src/tests/cc.rs::test_self_loop_finalization_aliasing`, by fing's (Go's) rule: a
/// finalizable object that reaches itself is never finalized and never freed, and
/// `check_finalizers` reports it.
#[test]
fn test_self_loop_finalization_aliasing() {
    let mut c = HeapConfig::default();
    c.gogc = None;
    c.check_finalizers = true;
    let h = Heap::new(c);
    let (drops, fins) = (counter(), counter());
    let a = fin_node(&h, 1, &drops);
    a.next.set(Some(a.clone()));
    {
        let fins = fins.clone();
        a.set_finalizer(move |_| {
            fins.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    }
    drop(a);
    for _ in 0..3 {
        h.collect();
        fing::wait_finalizers();
    }
    assert_eq!((count(&fins), count(&drops)), (0, 0));
    assert!(h.stats().finalizer_cycles >= 1, "{:?}", h.stats());
}

/// rust-cc's `Panicking`: a hand-written `Trace` that panics on demand, at a given call.
struct Panicking {
    armed: AtomicBool,
    /// Trace calls left before the one that panics.
    countdown: AtomicUsize,
    cc: GcCell<Option<Gc<Panicking>>>,
    #[allow(dead_code)] // counts the drop
    token: Token,
}

// SAFETY: the descriptor describes `Panicking` (size, alignment and drop glue from the
// compiler); `trace` reports its handles.
unsafe impl Typed for Panicking {
    const TYPE: &'static Type =
        // SAFETY: the impl's own argument: this descriptor describes the type exactly.
        &unsafe { Type::rust::<Panicking>(Kind::Struct) }.named("peers_rust_cc.Panicking");
}

// SAFETY: `trace` reports the one handle `Panicking` owns (or panics before reporting any).
unsafe impl Trace for Panicking {
    const NO_SCAN: bool = false;
    fn trace(&self, t: &mut Tracer) {
        if self.armed.load(Ordering::SeqCst) {
            let left = self.countdown.load(Ordering::SeqCst);
            if left == 0 {
                panic!("Test panic on Trace");
            }
            self.countdown.store(left - 1, Ordering::SeqCst);
        }
        self.cc.trace(t);
    }
}

fn panicking(h: &Heap, drops: &Arc<AtomicUsize>, countdown: usize) -> Gc<Panicking> {
    h.alloc(Panicking {
        armed: AtomicBool::new(true),
        countdown: AtomicUsize::new(countdown),
        cc: GcCell::new(None),
        token: Token(drops.clone()),
    })
}

/// Runs a collection that may panic in `Trace`: the panic's message, if it did.
fn try_collect(h: &Heap) -> Option<String> {
    catch_unwind(AssertUnwindSafe(|| h.collect()))
        .err()
        .map(|e| panic_message(&*e))
}

/// Ports `src/tests/panicking.rs::test_panicking_tracing_counting`: a garbage self-loop
/// whose `Trace` panics. The collection is abandoned (nothing freed) and the panic reaches
/// `collect()`'s caller; the next collection frees it once.
#[test]
fn test_panicking_tracing_counting() {
    let h = heap();
    let drops = counter();
    let cc = panicking(&h, &drops, 0);
    cc.cc.set(Some(cc.clone()));
    let keep = cc.clone();
    drop(cc);
    assert_eq!(try_collect(&h).as_deref(), Some("Test panic on Trace"));
    assert_eq!(count(&drops), 0);
    keep.armed.store(false, Ordering::SeqCst);
    drop(keep);
    assert_eq!(try_collect(&h), None);
    assert_eq!(count(&drops), 1);
}

/// Ports `src/tests/panicking.rs::test_panicking_tracing_root`: a live root whose second
/// trace panics; it survives, intact, and is freed once when dropped.
#[test]
fn test_panicking_tracing_root() {
    let h = heap();
    let drops = counter();
    let root = panicking(&h, &drops, 1);
    let other = panicking(&h, &drops, usize::MAX);
    other.armed.store(false, Ordering::SeqCst);
    other.cc.set(Some(root.clone()));
    root.cc.set(Some(other));
    for _ in 0..3 {
        if let Some(msg) = try_collect(&h) {
            assert_eq!(msg, "Test panic on Trace");
        }
    }
    root.armed.store(false, Ordering::SeqCst);
    assert_eq!(try_collect(&h), None);
    assert_eq!(count(&drops), 0, "the root and what it reaches live");
    let other = root.cc.borrow().clone().unwrap();
    assert!(Gc::ptr_eq(other.cc.borrow().as_ref().unwrap(), &root));
    drop((root, other));
    assert_eq!(try_collect(&h), None);
    assert_eq!(count(&drops), 2);
}

/// Ports `src/tests/panicking.rs::test_panicking_tracing_drop`: the panic comes at a later
/// trace call (rust-cc's dropping phase). For each position of the panicking call in turn,
/// the cycle survives the abandoned collection and is freed exactly once by the next.
#[test]
fn test_panicking_tracing_drop() {
    let h = heap();
    for k in 0..8 {
        let drops = counter();
        let a = panicking(&h, &drops, k);
        let b = panicking(&h, &drops, k);
        a.cc.set(Some(b.clone()));
        b.cc.set(Some(a.clone()));
        let (ka, kb) = (a.clone(), b.clone());
        drop((a, b));
        let panicked = try_collect(&h);
        if let Some(msg) = &panicked {
            assert_eq!(msg, "Test panic on Trace");
            assert_eq!(
                count(&drops),
                0,
                "k = {k}: freed by an abandoned collection"
            );
        }
        ka.armed.store(false, Ordering::SeqCst);
        kb.armed.store(false, Ordering::SeqCst);
        drop((ka, kb));
        assert_eq!(try_collect(&h), None);
        assert_eq!(count(&drops), 2, "k = {k}");
        assert_eq!(try_collect(&h), None);
        assert_eq!(count(&drops), 2, "k = {k}: freed twice");
    }
    assert_eq!(h.stats().heap_objects, 0);
}

#[derive(Trace)]
struct Resurrecter {
    panicking: Gc<Panicking>,
    #[gc(untraced)]
    token: Token,
}

/// Ports `src/tests/panicking.rs::test_panicking_tracing_resurrecting`: a finalizable
/// object reaching a cycle whose `Trace` panics. No finalizer runs for the abandoned
/// collection; then the finalizer runs once and resurrects the cycle, which lives until
/// released.
#[test]
fn test_panicking_tracing_resurrecting() {
    let h = heap();
    let (drops, r_drops, fins) = (counter(), counter(), counter());
    let p1 = panicking(&h, &drops, 0);
    let p2 = panicking(&h, &drops, 0);
    p1.cc.set(Some(p2.clone()));
    p2.cc.set(Some(p1.clone()));
    let r = h.alloc(Resurrecter {
        panicking: p1.clone(),
        token: Token(r_drops.clone()),
    });
    let slot: Arc<Mutex<Option<Gc<Panicking>>>> = Arc::new(Mutex::new(None));
    {
        let (slot, fins) = (slot.clone(), fins.clone());
        r.set_finalizer(move |r| {
            fins.fetch_add(1, Ordering::SeqCst);
            *slot.lock().unwrap() = Some(r.panicking.clone());
        })
        .unwrap();
    }
    drop(r);
    let (k1, k2) = (p1.clone(), p2.clone());
    drop((p1, p2));
    assert_eq!(try_collect(&h).as_deref(), Some("Test panic on Trace"));
    fing::wait_finalizers();
    assert_eq!(count(&fins), 0, "no finalizer for an abandoned collection");
    k1.armed.store(false, Ordering::SeqCst);
    k2.armed.store(false, Ordering::SeqCst);
    drop((k1, k2));
    settle(&h, || count(&fins) > 0);
    h.collect();
    h.collect();
    fing::wait_finalizers();
    assert_eq!(count(&fins), 1);
    assert_eq!(count(&r_drops), 1, "the finalized object went");
    assert_eq!(count(&drops), 0, "the resurrected cycle lives");
    let p = slot.lock().unwrap().take().unwrap();
    assert!(p.cc.borrow().is_some());
    drop(p);
    h.collect();
    assert_eq!(count(&drops), 2);
}

#[derive(Trace)]
struct Plain {
    next: GcCell<Option<Gc<Plain>>>,
    #[gc(untraced)]
    token: Token,
}

/// Ports `src/tests/panicking.rs::test_panicking_finalize`: a finalizer that panics is
/// caught and counted (rust-cc lets it reach `collect_cycles`); its object is freed after.
#[test]
fn test_panicking_finalize() {
    let h = heap();
    let drops = counter();
    let before = fing::stats().finalizers_panicked;
    let p = h.alloc(Plain {
        next: GcCell::new(None),
        token: Token(drops.clone()),
    });
    p.set_finalizer(|_| panic!("Test panic on Finalize"))
        .unwrap();
    drop(p);
    settle(&h, || fing::stats().finalizers_panicked > before);
    assert!(fing::stats().finalizers_panicked > before);
    h.collect();
    h.collect();
    assert_eq!(count(&drops), 1);
}

#[derive(Trace)]
#[gc(unsafe_allow_drop)]
struct DropPanicking {
    cyclic: GcCell<Option<Gc<DropPanicking>>>,
    #[gc(untraced)]
    drops: Arc<AtomicUsize>,
}

// SAFETY: its `Drop` dereferences none of its traced handles.
unsafe impl fing::AllowDrop for DropPanicking {}

impl Drop for DropPanicking {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
        panic!("Test panic on Drop");
    }
}

/// Ports `src/tests/panicking.rs::test_panicking_drop`: a destructor that panics in the
/// sweep is caught, counted, and the object freed anyway (rust-cc lets the panic through).
#[test]
fn test_panicking_drop() {
    let h = heap();
    let drops = counter();
    let cc = h.alloc(DropPanicking {
        cyclic: GcCell::new(None),
        drops: drops.clone(),
    });
    cc.cyclic.set(Some(cc.clone()));
    drop(cc);
    h.collect();
    assert_eq!(count(&drops), 1);
    assert_eq!(h.stats().destructor_panics, 1);
    // Its slot is freed in a section after the destructor: when another test's collection
    // holds the world then, the drop thread frees it (`mdrop::finish`), a little later.
    settle(&h, || h.stats().heap_objects == 0);
    assert_eq!(h.stats().heap_objects, 0);
    assert_eq!(count(&drops), 1, "the destructor ran once");
}

/// Ports `src/tests/panicking.rs::test_panicking_drop_and_finalize`: the finalizer runs
/// once, then the destructor panics in the sweep that frees the object, and is counted.
#[test]
fn test_panicking_drop_and_finalize() {
    let h = heap();
    let (drops, fins) = (counter(), counter());
    let cc = h.alloc(DropPanicking {
        cyclic: GcCell::new(None),
        drops: drops.clone(),
    });
    {
        let fins = fins.clone();
        cc.set_finalizer(move |_| {
            fins.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    }
    drop(cc);
    settle(&h, || count(&drops) > 0);
    assert_eq!((count(&fins), count(&drops)), (1, 1));
    assert_eq!(h.stats().destructor_panics, 1);
}

#[derive(Trace)]
struct Traceable {
    inner: GcCell<Option<Gc<Traceable>>>,
    big: [i64; 4096],
    #[gc(untraced)]
    token: Token,
}

fn traceable_cycle(h: &Heap, drops: &Arc<AtomicUsize>) -> Gc<Traceable> {
    let t = h.alloc(Traceable {
        inner: GcCell::new(None),
        big: [0; 4096],
        token: Token(drops.clone()),
    });
    t.inner.set(Some(h.alloc(Traceable {
        inner: GcCell::new(Some(t.clone())),
        big: [1; 4096],
        token: Token(drops.clone()),
    })));
    t
}

/// Ports `tests/auto_collect.rs::test_auto_collect`: dropping a cycle does not collect;
/// allocating enough afterwards does, and frees the cycle.
#[test]
fn test_auto_collect() {
    let mut c = HeapConfig::default();
    c.gogc = Some(100);
    c.min_heap = 256 << 10;
    let h = Heap::new(c);
    let drops = counter();
    let t = traceable_cycle(&h, &drops);
    let runs = h.stats().num_gc;
    drop(t);
    assert_eq!(h.stats().num_gc, runs, "a drop does not collect");
    // Past its goal an allocation collects if it can have the world within a bound; other
    // tests' collections may hold it (one world per process), so it goes on allocating
    // (holding 8 MB, far past the goal) until one did, for a while.
    let mut keep = Vec::new();
    let began = std::time::Instant::now();
    for i in 0.. {
        if h.stats().num_gc > runs || (i >= 256 && began.elapsed().as_secs() >= 30) {
            break;
        }
        let t = h.alloc(Traceable {
            inner: GcCell::new(None),
            big: [2; 4096],
            token: Token(counter()),
        });
        if keep.len() < 256 {
            keep.push(t);
        } else {
            keep[i % 256] = t;
        }
    }
    assert!(h.stats().num_gc > runs, "allocation started a collection");
    // A collection an allocation started hands its garbage's destructors to the drop
    // thread (the allocating thread may hold a lock one takes): wait for them.
    fing::wait_finalizers();
    assert_eq!(count(&drops), 2);
}

/// Ports `tests/auto_collect.rs::test_disable_auto_collect`: with automatic collection off
/// (`gogc = None`), allocation never collects; an explicit collection still does.
#[test]
fn test_disable_auto_collect() {
    let mut c = HeapConfig::default();
    c.gogc = None;
    c.min_heap = 256 << 10;
    let h = Heap::new(c);
    let drops = counter();
    let runs = h.stats().num_gc;
    drop(traceable_cycle(&h, &drops));
    let keep: Vec<_> = (0..64)
        .map(|_| {
            h.alloc(Traceable {
                inner: GcCell::new(None),
                big: [2; 4096],
                token: Token(counter()),
            })
        })
        .collect();
    assert_eq!(h.stats().num_gc, runs, "collected but shouldn't have");
    assert_eq!(count(&drops), 0);
    h.collect();
    assert_eq!(count(&drops), 2);
    drop(keep);
}

#[derive(Trace)]
struct MyStruct {
    a: (),
}

#[derive(Trace)]
enum MyEnum {
    A(),
    B(),
}

fn is_trace<T: Trace>(_: &T) -> bool {
    true
}

/// Ports the derive tests `derive_trace.rs` and `empty_attribute.rs` (without the empty
/// attribute): structs and enums with empty fields and variants derive `Trace`, hold no
/// handles, and go on the heap.
#[test]
fn derive_trace() {
    assert!(is_trace(&MyStruct { a: () }) && is_trace(&MyEnum::A()));
    const { assert!(<MyStruct as Trace>::NO_SCAN && <MyEnum as Trace>::NO_SCAN) };
    let h = heap();
    let s = h.alloc(MyStruct { a: () });
    let e = h.alloc(MyEnum::B());
    assert!(matches!(*e, MyEnum::B()));
    let () = s.a;
    drop((s, e));
    h.collect();
    assert_eq!(h.stats().heap_objects, 0);
}

#[derive(Trace)]
#[gc(unsafe_allow_drop)]
struct NoDropStruct {
    #[gc(untraced)]
    drops: Arc<AtomicUsize>,
}

// SAFETY: its `Drop` dereferences none of its traced handles.
unsafe impl fing::AllowDrop for NoDropStruct {}

impl Drop for NoDropStruct {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Trace)]
#[gc(unsafe_allow_drop)]
enum NoDropEnum {
    A(#[gc(untraced)] Arc<AtomicUsize>),
    B(),
}

// SAFETY: its `Drop` dereferences none of its traced handles.
unsafe impl fing::AllowDrop for NoDropEnum {}

impl Drop for NoDropEnum {
    fn drop(&mut self) {
        if let NoDropEnum::A(d) = self {
            d.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Ports the derive test `no_drop.rs`: `#[rust_cc(unsafe_no_drop)]` is fing's
/// `#[gc(unsafe_allow_drop)]`: a traced struct or enum with its own `Drop`, run once.
#[test]
fn no_drop() {
    let h = heap();
    let drops = counter();
    drop(h.alloc(NoDropStruct {
        drops: drops.clone(),
    }));
    drop(h.alloc(NoDropEnum::A(drops.clone())));
    drop(h.alloc(NoDropEnum::B()));
    h.collect();
    assert_eq!(count(&drops), 2);
    h.collect();
    assert_eq!(count(&drops), 2);
}

/// rust-cc's `ToTrace`: records that it was traced.
struct ToTrace {
    has_been_traced: AtomicBool,
}

// SAFETY: the descriptor describes `ToTrace` (size, alignment, drop glue from the compiler).
unsafe impl Typed for ToTrace {
    // SAFETY: the impl's own argument: this descriptor describes the type exactly.
    const TYPE: &'static Type =
        &unsafe { Type::rust::<ToTrace>(Kind::Struct) }.named("peers_rust_cc.ToTrace");
}

// SAFETY: `ToTrace` owns no handles; `trace` reports none.
unsafe impl Trace for ToTrace {
    const NO_SCAN: bool = false;
    fn trace(&self, _: &mut Tracer) {
        self.has_been_traced.store(true, Ordering::SeqCst);
    }
}

fn to_trace() -> ToTrace {
    ToTrace {
        has_been_traced: AtomicBool::new(false),
    }
}

#[derive(Trace)]
struct TracedStruct {
    cyclic: GcCell<Option<Gc<TracedStruct>>>,
    traced: ToTrace,
}

#[derive(Trace)]
enum TracedEnum {
    A {
        cyclic: GcCell<Option<Gc<TracedEnum>>>,
        traced: ToTrace,
    },
}

/// Ports the derive test `traced_fields_struct.rs` (its traced half): a derived `Trace`
/// traces each field, so a collection reaches the field's own `Trace`.
#[test]
fn traced_fields_struct() {
    let h = heap();
    let my_struct = h.alloc(TracedStruct {
        cyclic: GcCell::new(None),
        traced: to_trace(),
    });
    my_struct.cyclic.set(Some(my_struct.clone()));
    drop(my_struct.clone());
    h.collect();
    assert!(my_struct.traced.has_been_traced.load(Ordering::SeqCst));
}

/// Ports the derive test `traced_fields_enum.rs` (its traced half), for an enum variant.
#[test]
fn traced_fields_enum() {
    let h = heap();
    let my_enum = h.alloc(TracedEnum::A {
        cyclic: GcCell::new(None),
        traced: to_trace(),
    });
    let TracedEnum::A { cyclic, traced } = &*my_enum;
    cyclic.set(Some(my_enum.clone()));
    drop(my_enum.clone());
    h.collect();
    assert!(traced.has_been_traced.load(Ordering::SeqCst));
}
