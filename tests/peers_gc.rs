//! The `gc` crate's test suite, ported to fing.
//!
//! Peer: gc 0.5 (crate `gc`, Manishearth's: `Gc`, `GcCell`, `force_collect`, `Finalize`),
//! repository `Manishearth/rust-gc`. Files read:
//! - `gc/tests/finalize.rs`, `gc/tests/gc_semantics.rs`, `gc/tests/gymnastics_cycle.rs`,
//!   `gc/tests/gc_cell_ref.rs`, `gc/tests/ignore_trace.rs`, `gc/tests/trace_impl.rs`,
//!   `gc/tests/unsized.rs`, `gc/tests/i128.rs`, `gc/tests/phantom_data.rs`,
//!   `gc/tests/derive_bounds.rs`
//! - `gc/src/lib.rs` (the documented `GcCell` borrow rules and their doc examples)
//! - `gc/tests/from_box.rs`, `gc/tests/from_raw.rs`, `gc/tests/gc_self_method.rs`,
//!   `gc/tests/serde.rs` (read, left out: see below)
//!
//! gc's `Finalize` maps to fing's Go-style finalizers (`Gc::set_finalizer`), which run on
//! the finalizer thread after a collection finds the object unreachable, resurrecting it
//! for one cycle (its destructor runs in a later collection), and never for an object in a
//! cycle; gc runs `finalize` just before the destructor, cycles included. gc's root/unroot
//! bookkeeping has no counterpart: fing counts every handle and finds roots at collection.
//!
//! Ported: `drop_triggers_finalize`, `basic_allocate`, `basic_cycle_allocate`,
//! `gccell_rooting`, `trait_gc`, `ptr_eq`, `as_ptr`, `test_cycle` (gymnastics),
//! `test_gc_cell_ref_mut_map`, `ignore_trace_gc` (a handle hidden from the collector, which
//! must still be released when its owner dies), `test` (trace_impl), `gc_box_dyn_foo`,
//! `gc_dyn_foo`, `gc_box_slice`, `gc_slice`, `gc_box_str`, `gc_str`, `i128`, `u128`,
//! `phantom_data`, `test_derive_bounds`, and the `GcCell` borrow rules of `gc/src/lib.rs`:
//! `borrow` panics while mutably borrowed, `borrow_mut` panics while borrowed, and the
//! `try_borrow` / `try_borrow_mut` examples.
//!
//! Left out:
//! - `test_into_raw` (`from_raw.rs`): fing has no `into_raw` / `from_raw`.
//! - `test_from_box_sized`, `test_from_box_dyn` (`from_box.rs`): no `From<Box<T>>`.
//! - `gc_self_method`: needs nightly `arbitrary_self_types`.
//! - `serde_tests`: fing has no serde support.
//! - `GcCellRef::map` / `filter_map` / `map_split` / `clone` and `GcCellRefMut::map` /
//!   `filter_map` (doc examples): fing's guards have no mapping functions (the
//!   `test_gc_cell_ref_mut_map` port writes through the guard instead).
//! - The `InnerRcStr` part of `trace_impl.rs`: `Rc` is not `Trace` in fing by design.

#![allow(missing_docs)]

use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

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

fn panic_message(err: &(dyn std::any::Any + Send)) -> String {
    err.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| err.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// Counts its drops.
struct Token(Arc<AtomicUsize>);

impl Drop for Token {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// gc's `GcWatchFlags`, less root and unroot.
#[derive(Default)]
struct Flags {
    trace: AtomicUsize,
    drop: AtomicUsize,
    finalize: AtomicUsize,
}

impl Flags {
    /// (trace, drop, finalize)
    fn get(&self) -> (usize, usize, usize) {
        (
            self.trace.load(Ordering::SeqCst),
            self.drop.load(Ordering::SeqCst),
            self.finalize.load(Ordering::SeqCst),
        )
    }
}

/// gc's `GcWatch`: counts the calls of its `Trace` and its drops.
struct GcWatch(Arc<Flags>);

// SAFETY: the descriptor describes `GcWatch` (size, alignment and drop glue from the
// compiler); it owns no handles.
unsafe impl Typed for GcWatch {
    // SAFETY: the impl's own argument: this descriptor describes the type exactly.
    const TYPE: &'static Type =
        &unsafe { Type::rust::<GcWatch>(Kind::Struct) }.named("peers_gc.GcWatch");
}

// SAFETY: `GcWatch` owns no handles; `trace` reports none.
unsafe impl Trace for GcWatch {
    const NO_SCAN: bool = false;
    fn trace(&self, _: &mut Tracer) {
        self.0.trace.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for GcWatch {
    fn drop(&mut self) {
        self.0.drop.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Trace)]
struct Watched {
    watch: GcWatch,
}

#[derive(Trace)]
struct GcWatchCycle {
    watch: GcWatch,
    cycle: GcCell<Option<Gc<GcWatchCycle>>>,
}

#[derive(Trace)]
struct Inner {
    #[gc(untraced)]
    token: Token,
}

#[derive(Trace)]
struct Outer {
    inner: Box<Inner>,
    #[gc(untraced)]
    token: Token,
}

/// Ports `finalize.rs::drop_triggers_finalize`: freeing an object runs the destructors of
/// the values nested in it, each once; a finalizer set on it runs first.
#[test]
fn drop_triggers_finalize() {
    let h = heap();
    let (outer_drops, inner_drops, fins) = (counter(), counter(), counter());
    let x = h.alloc(Outer {
        inner: Box::new(Inner {
            token: Token(inner_drops.clone()),
        }),
        token: Token(outer_drops.clone()),
    });
    {
        let (fins, outer_drops) = (fins.clone(), outer_drops.clone());
        x.set_finalizer(move |_| {
            assert_eq!(count(&outer_drops), 0, "finalized before its destructor");
            fins.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    }
    drop(x);
    h.collect();
    fing::wait_finalizers();
    assert_eq!(count(&fins), 1);
    h.collect();
    assert_eq!((count(&outer_drops), count(&inner_drops)), (1, 1));
    h.collect();
    fing::wait_finalizers();
    assert_eq!(
        (count(&fins), count(&outer_drops), count(&inner_drops)),
        (1, 1, 1)
    );
}

/// Ports `gc_semantics.rs::basic_allocate`: a live object is traced by every collection; an
/// unreachable one is finalized once (fing: by the first collection that finds it, the
/// object resurrected and intact), then dropped once (fing: when the finalizer lets go of
/// it, or by the next collection), and never traced after.
#[test]
fn basic_allocate() {
    let h = heap();
    let f = Arc::new(Flags::default());
    {
        let gced_val = h.alloc(Watched {
            watch: GcWatch(f.clone()),
        });
        let f2 = f.clone();
        gced_val
            .set_finalizer(move |_| {
                assert_eq!(
                    f2.drop.load(Ordering::SeqCst),
                    0,
                    "finalized before dropped"
                );
                f2.finalize.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        assert_eq!(f.get(), (0, 0, 0));
        h.collect();
        let (t, d, fin) = f.get();
        assert!(t >= 1, "traced by the collection");
        assert_eq!((d, fin), (0, 0));
        h.collect();
        assert!(f.get().0 > t, "traced again");
    }
    h.collect();
    fing::wait_finalizers();
    assert_eq!(f.get().2, 1, "finalized");
    assert!(f.get().1 <= 1);
    h.collect();
    fing::wait_finalizers();
    let (t, d, fin) = f.get();
    assert_eq!((d, fin), (1, 1));
    h.collect();
    assert_eq!(f.get(), (t, 1, 1), "never traced after it was freed");
}

/// Ports `gc_semantics.rs::basic_cycle_allocate`: two nodes, the second moved into the
/// first's cell to make a cycle; traced while alive, dropped once together. (No finalizers:
/// fing never finalizes objects in a cycle.)
#[test]
fn basic_cycle_allocate() {
    let h = heap();
    let f1 = Arc::new(Flags::default());
    let f2 = Arc::new(Flags::default());
    {
        let node1 = h.alloc(GcWatchCycle {
            watch: GcWatch(f1.clone()),
            cycle: GcCell::new(None),
        });
        let node2 = h.alloc(GcWatchCycle {
            watch: GcWatch(f2.clone()),
            cycle: GcCell::new(Some(node1.clone())),
        });
        h.collect();
        let (t1, t2) = (f1.get().0, f2.get().0);
        assert!(t1 >= 1 && t2 >= 1);
        *node1.cycle.borrow_mut() = Some(node2);
        h.collect();
        assert!(f1.get().0 > t1 && f2.get().0 > t2);
        assert_eq!((f1.get().1, f2.get().1), (0, 0));
    }
    h.collect();
    assert_eq!((f1.get().1, f2.get().1), (1, 1));
    let (t1, t2) = (f1.get().0, f2.get().0);
    h.collect();
    assert_eq!((f1.get(), f2.get()), ((t1, 1, 0), (t2, 1, 0)));
}

/// Ports `gc_semantics.rs::gccell_rooting`: a `GcCell` borrowed (shared, twice; then
/// mutably) outside the heap and inside it. A collection traces the cell's value while
/// shared borrows are held; one under this thread's write guard panics (fing's rule, where
/// gc roots the value and skips it); the value is dropped once.
#[test]
fn gccell_rooting() {
    let h = heap();
    let f = Arc::new(Flags::default());
    let cell = GcCell::new(GcWatch(f.clone()));
    {
        let _borrowed = cell.borrow();
        let _borrowed2 = cell.borrow();
    }
    {
        let _borrowed = cell.borrow_mut();
    }
    assert_eq!(f.get(), (0, 0, 0));
    let gc_wrapper = h.alloc(cell);
    h.collect();
    let t = f.get().0;
    assert!(t >= 1);
    {
        let _borrowed = gc_wrapper.borrow();
        let _borrowed2 = gc_wrapper.borrow();
        h.collect();
        assert!(f.get().0 > t, "traced while borrowed");
    }
    {
        let _borrowed = gc_wrapper.borrow_mut();
        let err =
            catch_unwind(AssertUnwindSafe(|| h.collect())).expect_err("collect under a guard");
        assert!(
            panic_message(&*err).contains("holds a mutator section"),
            "{}",
            panic_message(&*err)
        );
    }
    h.collect();
    assert_eq!(f.get().1, 0);
    drop(gc_wrapper);
    h.collect();
    assert_eq!(f.get().1, 1);
}

trait Foo: Send + Sync {
    fn f(&self) -> i32;
}

/// gc's `Bar` is zero-sized; every handle to a zero-sized value in fing shares one address
/// outside the heap, so this one holds its answer.
#[derive(Trace)]
struct Bar {
    n: i32,
}

impl Foo for Bar {
    fn f(&self) -> i32 {
        self.n
    }
}

#[allow(clippy::needless_pass_by_value)]
fn use_trait_gc(x: Gc<dyn Foo>) -> i32 {
    x.f()
}

/// Ports `gc_semantics.rs::trait_gc` and `unsized.rs::gc_dyn_foo`: a `Gc<dyn Trait>`, made
/// with `Gc::map`.
#[test]
fn trait_gc() {
    let h = heap();
    let gc_bar = h.alloc(Bar { n: 10 });
    let gc_foo: Gc<dyn Foo> = gc_bar.map(|b| b as &dyn Foo);
    assert_eq!(use_trait_gc(gc_foo.clone()), 10);
    assert_eq!(use_trait_gc(gc_bar.map(|b| b as &dyn Foo)), 10);
    assert!(Gc::same_object(&gc_foo, &gc_bar));
}

#[derive(Trace)]
struct A {
    x: u8,
}

#[derive(Trace)]
struct B(Gc<A>);

/// Ports `gc_semantics.rs::ptr_eq`. (gc's `A` is zero-sized; in fing every handle to a
/// zero-sized value shares one address, so `A` holds a byte here.)
#[test]
fn ptr_eq() {
    let h = heap();
    let a = h.alloc(A { x: 1 });
    let aa = a.clone();
    assert!(Gc::ptr_eq(&a, &aa));
    let b = h.alloc(B(aa));
    assert!(Gc::ptr_eq(&a, &b.0));
    let bb = h.alloc(B(a.clone()));
    assert!(Gc::ptr_eq(&b.0, &bb.0));

    let a2 = h.alloc(A { x: 2 });
    assert!(!Gc::ptr_eq(&a, &a2));
    let b2 = h.alloc(B(a2.clone()));
    assert!(Gc::ptr_eq(&a2, &b2.0));
    assert!(!Gc::ptr_eq(&a, &b2.0));
    assert!(!Gc::ptr_eq(&b.0, &b2.0));
    assert!(!Gc::ptr_eq(&b.0, &a2));
    h.collect();
    assert_eq!((b.0.x, b2.0.x), (1, 2));
}

/// Ports `gc_semantics.rs::as_ptr`.
#[test]
fn as_ptr() {
    let h = heap();
    let a = h.alloc(A { x: 1 });
    let aa = a.clone();
    let a_ptr = Gc::as_ptr(&a);
    assert_eq!(a_ptr, Gc::as_ptr(&aa));
    let b = h.alloc(B(a.clone()));
    assert_eq!(a_ptr, Gc::as_ptr(&b.0));
    let bb = h.alloc(B(a.clone()));
    assert_eq!(a_ptr, Gc::as_ptr(&bb.0));

    let a2 = h.alloc(A { x: 2 });
    let a2_ptr = Gc::as_ptr(&a2);
    assert_ne!(a_ptr, a2_ptr);
    let b2 = h.alloc(B(a2.clone()));
    assert_eq!(a2_ptr, Gc::as_ptr(&b2.0));
    assert_ne!(a_ptr, Gc::as_ptr(&b2.0));
    assert_ne!(Gc::as_ptr(&b.0), Gc::as_ptr(&b2.0));
    assert_ne!(Gc::as_ptr(&b.0), a2_ptr);
    // SAFETY: `a` keeps the object alive.
    assert_eq!(unsafe { (*a_ptr).x }, 1);
}

#[derive(Trace)]
struct Cyclic {
    prev: GcCell<Option<Gc<Cyclic>>>,
    name: u8,
    #[gc(untraced)]
    token: Token,
}

/// Ports `gymnastics_cycle.rs::test_cycle`: a ring of four nodes, freed by one collection.
#[test]
fn test_cycle() {
    let h = heap();
    let drops = counter();
    {
        let mut gcs = vec![h.alloc(Cyclic {
            prev: GcCell::new(None),
            name: 0,
            token: Token(drops.clone()),
        })];
        for i in 1..4 {
            let prev = gcs[i - 1].clone();
            gcs.push(h.alloc(Cyclic {
                prev: GcCell::new(Some(prev)),
                name: i as u8,
                token: Token(drops.clone()),
            }));
        }
        let last = gcs[3].clone();
        *gcs[0].prev.borrow_mut() = Some(last);
        assert_eq!(gcs[0].prev.borrow().as_ref().unwrap().name, 3);
    }
    assert_eq!(count(&drops), 0);
    h.collect();
    assert_eq!(count(&drops), 4);
}

/// Ports `gc_cell_ref.rs::test_gc_cell_ref_mut_map`: a field of a `GcCell`'s tuple written
/// through the write guard (fing's guards have no `map`).
#[test]
fn test_gc_cell_ref_mut_map() {
    let h = heap();
    let a = h.alloc(GcCell::new((0, h.alloc(1))));
    a.borrow_mut().0 = 2;
    assert_eq!(a.borrow_mut().0, 2);
    h.collect();
    assert_eq!((a.borrow().0, *a.borrow().1), (2, 1));
}

/// Not `Trace`: a handle out of the collector's sight.
struct Hidden(Gc<Inner>);

#[derive(Trace)]
struct S {
    #[gc(untraced)]
    hidden: Hidden,
}

/// Ports `ignore_trace.rs::ignore_trace_gc`: gc's `#[unsafe_ignore_trace]` on a handle field
/// is refused by fing's derive, but a handle behind a wrapper that is not `Trace` gets past
/// it. Dereferencing it and collecting must not panic, and the hidden handle must be
/// released when its owner dies, so the object it points to is freed too.
#[test]
fn ignore_trace_gc() {
    let h = heap();
    let drops = counter();
    let base = h.stats().heap_objects;
    let inner = h.alloc(Inner {
        token: Token(drops.clone()),
    });
    let s = h.alloc(S {
        hidden: Hidden(inner),
    });
    let _ = &s.hidden.0.token;
    h.collect();
    assert_eq!(count(&drops), 0, "kept by its count");
    drop(s);
    h.collect(); // frees `s`, whose destructor drops the hidden handle
    h.collect(); // frees what it pointed to
    assert_eq!(count(&drops), 1);
    assert_eq!(h.stats().heap_objects, base);
}

/// gc's `trace_impl.rs::Foo`: counts the calls of its `Trace`.
#[derive(Clone)]
struct Counted(Arc<AtomicUsize>);

// SAFETY: the descriptor describes `Counted` (size, alignment and drop glue from the
// compiler); it owns no handles.
unsafe impl Typed for Counted {
    // SAFETY: the impl's own argument: this descriptor describes the type exactly.
    const TYPE: &'static Type =
        &unsafe { Type::rust::<Counted>(Kind::Struct) }.named("peers_gc.Counted");
}

// SAFETY: `Counted` owns no handles; `trace` reports none.
unsafe impl Trace for Counted {
    const NO_SCAN: bool = false;
    fn trace(&self, _: &mut Tracer) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Trace, Clone)]
struct TBar {
    inner: Counted,
}

#[derive(Trace, Clone)]
struct InnerBoxSlice {
    inner: Vec<u32>,
}

#[derive(Trace, Clone)]
struct InnerBoxStr {
    inner: Box<str>,
}

#[derive(Trace)]
struct Baz {
    a: TBar,
    b: TBar,
}

/// Ports `trace_impl.rs::test`: a derived `Trace` calls its fields' own `Trace`, once each.
#[test]
fn trace_impl() {
    InnerBoxSlice {
        inner: vec![1, 2, 3],
    }
    .trace(&mut Tracer::new());
    InnerBoxStr {
        inner: "abc".into(),
    }
    .trace(&mut Tracer::new());
    let x = counter();
    let bar = TBar {
        inner: Counted(x.clone()),
    };
    bar.trace(&mut Tracer::new());
    assert_eq!(count(&x), 1);
    let baz = Baz {
        a: bar.clone(),
        b: bar,
    };
    baz.trace(&mut Tracer::new());
    assert_eq!(count(&x), 3);
    // And the collector calls it through the heap object's descriptor.
    let h = heap();
    let g = h.alloc(baz);
    h.collect();
    assert!(
        count(&x) > 3 && (count(&x) - 3).is_multiple_of(2),
        "{}",
        count(&x)
    );
    drop(g);
}

/// Ports `unsized.rs`: `gc_box_str`, `gc_box_slice` and `gc_box_dyn_foo` (boxes in the
/// heap), `gc_slice`, `gc_str` and `gc_dyn_foo` (unsized handles, made with `Gc::map`).
#[test]
fn unsized_values() {
    let h = heap();
    let s: Gc<Box<str>> = h.alloc(Box::from("hello"));
    let v: Gc<Vec<u32>> = h.alloc(vec![0, 1, 2]);
    let boxed: Gc<Box<Bar>> = h.alloc(Box::new(Bar { n: 10 }));
    let dyn_foo: Gc<dyn Foo> = boxed.map(|b| &**b as &dyn Foo);
    let slice: Gc<[u32]> = h.alloc([0u32, 1, 2]).map(|a| &a[..]);
    let from_vec: Gc<[u32]> = v.map(|v| v.as_slice());
    let string: Gc<str> = h.alloc(String::from("world")).map(|s| s.as_str());
    drop((v, boxed));
    h.collect();
    assert_eq!((&**s, &*string), ("hello", "world"));
    assert_eq!((&*slice, &*from_vec), (&[0, 1, 2][..], &[0, 1, 2][..]));
    assert_eq!(dyn_foo.f(), 10);
}

/// Ports `i128.rs::i128` and `i128.rs::u128`: 16-byte-aligned values.
#[test]
fn i128_and_u128() {
    let h = heap();
    let a = h.alloc(-3i128 << 100);
    let b = h.alloc(u128::MAX - 5);
    assert_eq!(Gc::as_ptr(&a) as usize % std::mem::align_of::<i128>(), 0);
    assert_eq!(Gc::as_ptr(&b) as usize % std::mem::align_of::<u128>(), 0);
    h.collect();
    assert_eq!((*a, *b), (-3i128 << 100, u128::MAX - 5));
}

/// Ports `phantom_data.rs::phantom_data`: zero-sized values, which need no memory.
#[test]
fn phantom_data() {
    let h = heap();
    let before = h.stats().mallocs;
    let _x: Gc<PhantomData<u64>> = h.alloc(PhantomData);
    let _y: Gc<PhantomData<String>> = h.alloc(PhantomData);
    assert_eq!(h.stats().mallocs, before);
    h.collect();
}

#[derive(Trace)]
struct Thunk<T: 'static>(fn() -> T);

/// Ports `derive_bounds.rs::test_derive_bounds`: a generic type holding a function pointer.
/// (fing's descriptor of `fn() -> T` needs `T: Typed`, so `T` cannot be gc's `NotTrace`.)
#[test]
fn test_derive_bounds() {
    let h = heap();
    let t: Gc<Thunk<u32>> = h.alloc(Thunk(|| 7));
    assert_eq!((t.0)(), 7);
}

/// Ports the doc example of `GcCell::try_borrow` (`gc/src/lib.rs`).
#[test]
fn gccell_try_borrow() {
    let h = heap();
    let c = h.alloc(GcCell::new(5));
    {
        let _m = c.borrow_mut();
        assert!(c.try_borrow().is_err());
    }
    {
        let _m = c.borrow();
        assert!(c.try_borrow().is_ok());
    }
}

/// Ports the doc example of `GcCell::try_borrow_mut` (`gc/src/lib.rs`).
#[test]
fn gccell_try_borrow_mut() {
    let h = heap();
    let c = h.alloc(GcCell::new(5));
    {
        let _m = c.borrow();
        assert!(c.try_borrow_mut().is_err());
    }
    assert!(c.try_borrow_mut().is_ok());
}

/// Ports `GcCell::borrow_mut`'s documented panic (`gc/src/lib.rs`: "Panics if the value is
/// currently borrowed"): a re-entrant `borrow_mut` while this thread holds a borrow panics
/// like `RefCell`, and the cell is usable afterwards.
#[test]
fn gccell_borrow_mut_while_borrowed_panics() {
    let h = heap();
    let c = h.alloc(GcCell::new(5));
    let r = c.borrow();
    let err = catch_unwind(AssertUnwindSafe(|| {
        *c.borrow_mut() = 6;
    }))
    .expect_err("borrow_mut while borrowed must panic");
    assert!(
        panic_message(&*err).contains("borrow"),
        "{}",
        panic_message(&*err)
    );
    assert_eq!(*r, 5);
    drop(r);
    *c.borrow_mut() = 7;
    assert_eq!(*c.borrow(), 7);
}

/// Ports `GcCell::borrow_mut`'s documented panic for a second mutable borrow.
#[test]
fn gccell_borrow_mut_twice_panics() {
    let h = heap();
    let c = h.alloc(GcCell::new(5));
    let mut w = c.borrow_mut();
    let err = catch_unwind(AssertUnwindSafe(|| {
        *c.borrow_mut() = 6;
    }))
    .expect_err("a second borrow_mut must panic");
    assert!(
        panic_message(&*err).contains("borrow"),
        "{}",
        panic_message(&*err)
    );
    *w = 8;
    drop(w);
    assert_eq!(*c.borrow(), 8);
}

/// Ports `GcCell::borrow`'s documented panic (`gc/src/lib.rs`: "Panics if the value is
/// currently mutably borrowed").
#[test]
fn gccell_borrow_while_mutably_borrowed_panics() {
    let h = heap();
    let c = h.alloc(GcCell::new(5));
    let w = c.borrow_mut();
    let err = catch_unwind(AssertUnwindSafe(|| *c.borrow()))
        .expect_err("borrow while mutably borrowed must panic");
    assert!(
        panic_message(&*err).contains("borrow"),
        "{}",
        panic_message(&*err)
    );
    drop(w);
    assert_eq!(*c.borrow(), 5);
}
