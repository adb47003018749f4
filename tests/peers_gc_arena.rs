//! gc-arena's test suite, ported to fing.
//!
//! Peer: gc-arena 0.7 (crate `gc-arena`, kyren's arena collector), repository
//! `kyren/gc-arena`. Files read:
//! - `tests/tests.rs`
//! - `examples/linked_list.rs`
//! - `tests/ui/*.rs` (compile-fail cases; left out, see below)
//!
//! gc-arena's handles are `Copy` pointers branded with the arena's `'gc` lifetime, reachable
//! only from the arena's one root, and mutated through `Lock` / `RefLock` with write
//! barriers for its incremental collector. fing's are counted handles usable anywhere:
//! every handle held outside the heap is a root (the ports hold their "root" in a local),
//! `GcCell` is the lock, and collections stop the world, so no barrier is needed. The ports
//! check the behaviour each test is about, in fing's terms.
//!
//! Ported: `simple_allocation`, `dyn_sized_allocation`, `repeated_allocation_deallocation`,
//! `all_dropped`, `all_garbage_collected`, `test_layouts`, `derive_collect`,
//! `test_dynamic_roots`, `test_dynamic_bad_set` (handles across heaps, which fing allows),
//! `test_unsize`, `test_collection_bounded`, `gc_sleep_actually_sleeps`,
//! `stop_the_world_works`, `okay_panic`, `field_locks`, `barriers` (a cell written by one
//! thread while another collects), `basic_finalization` and `transitive_death` (with Go-style
//! finalizers in place of weak handles and the finalize phase), `zst_cache`,
//! `lesser_aligned_prefix_has_same_ptr` (with `Gc::map`), and `examples/linked_list.rs`.
//!
//! Left out:
//! - `weak_allocation`, and the weak halves of `test_unsize` and `barriers`: fing has no weak
//!   handles yet.
//! - `test_map` (`map_root` / `try_map_root`): re-typing an arena's root has no meaning
//!   when any handle is a root.
//! - `test_phases`, `cycle_debt_stops`: the phases of an incremental collector (sleeping,
//!   marking, sweeping, debt); a fing collection runs whole, with the world stopped.
//! - `cast`, `ptr_magic`: unsafe `Gc::cast` / `Gc::from_ptr`; fing projects safely with
//!   `Gc::map` (see `lesser_aligned_prefix_has_same_ptr`).
//! - `dyn_collect`, `static_collect_with_param`: `Box<dyn Trait>` tracing and
//!   `static_collect!`; fing traces interfaces through `#[fing::interface]` handles and
//!   keeps handle-free values in `#[gc(untraced)]` fields, which refuses generic types.
//! - `test_alloc_slice_with_header`, `test_slice_with_header_drop`,
//!   `test_panicking_slice_with_header_drop`, `test_slice_with_header_copy`,
//!   `test_thin_slice_with_header`, `test_thin_slice`, `test_thin_str`,
//!   `test_type_metadata`, `test_type_meta_same_types`, `test_builder_drop`: gc-arena's
//!   slice-with-header, thin pointer, type metadata and builder APIs, which fing lacks.
//! - `ui` (`tests/ui/*.rs`): compile-fail cases of gc-arena's derive; fing has its own.

#![allow(missing_docs)]

use std::collections::HashMap;
use std::fmt::{Debug, Display};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use fing::{Gc, GcCell, Heap, HeapConfig, Kind, Trace, Tracer, Type, Typed};

fn heap() -> Heap {
    let mut c = HeapConfig::default();
    c.gogc = None; // only explicit collections: the tests count destructors exactly
    Heap::new(c)
}

/// A heap with automatic collection, for the pacing tests.
fn paced_heap(min_heap: usize) -> Heap {
    let mut c = HeapConfig::default();
    c.gogc = Some(100);
    c.min_heap = min_heap;
    Heap::new(c)
}

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

fn count(c: &Arc<AtomicUsize>) -> usize {
    c.load(Ordering::SeqCst)
}

/// Counts its drops.
struct Token(Arc<AtomicUsize>);

impl Drop for Token {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Implements `Typed` and `Trace` by hand for a type with no handles. (Today's derive
/// refuses `#[repr(align(N))]`, reading it as `packed`.)
macro_rules! noscan {
    ($t:ident) => {
        // SAFETY: the descriptor describes `$t` (size, alignment and drop glue from the
        // compiler); it holds no handles.
        unsafe impl Typed for $t {
            const TYPE: &'static Type =
                // SAFETY: the impl's own argument: this descriptor describes the type exactly.
                &unsafe { Type::rust::<$t>(Kind::Struct) }
                    .named(concat!("peers_gc_arena.", stringify!($t)));
        }
        // SAFETY: `$t` holds no handles.
        unsafe impl Trace for $t {
            const NO_SCAN: bool = true;
            fn trace(&self, _: &mut Tracer) {}
        }
    };
}

/// gc-arena's `RefCounter`: an `Rc` there, an `Arc` here (heap values are `Send`).
#[derive(Trace, Clone)]
struct RefCounter {
    #[gc(untraced)]
    rc: Arc<()>,
}

#[derive(Trace)]
struct TestRoot {
    test: Gc<i32>,
}

/// Ports `simple_allocation`.
#[test]
fn simple_allocation() {
    let h = heap();
    let root = h.alloc(TestRoot { test: h.alloc(42) });
    h.collect();
    assert_eq!(*root.test, 42);
}

/// Ports `dyn_sized_allocation`: a slice of handles (`Gc<[Gc<RefCounter>]>`) keeps every
/// element; replacing it with an empty slice frees them all.
#[test]
fn dyn_sized_allocation() {
    const SIZE: usize = 10;
    let h = heap();
    let counter = RefCounter { rc: Arc::new(()) };
    let array: [Gc<RefCounter>; SIZE] = std::array::from_fn(|_| h.alloc(counter.clone()));
    let mut slice: Gc<[Gc<RefCounter>]> = h.alloc(array).map(|a| &a[..]);
    h.collect();
    assert_eq!(Arc::strong_count(&counter.rc), SIZE + 1, "none dropped");
    assert_eq!(slice.len(), SIZE);
    slice = h
        .alloc(Vec::new())
        .map(|v: &Vec<Gc<RefCounter>>| v.as_slice());
    assert!(slice.is_empty());
    h.collect();
    assert_eq!(Arc::strong_count(&counter.rc), 1, "all dropped");
}

/// xorshift64*: a seeded generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Ports `repeated_allocation_deallocation`: random inserts and removals in a map of
/// handles held by a root, collections in between; at the end exactly the live entries
/// hold the counter.
#[test]
fn repeated_allocation_deallocation() {
    let h = heap();
    let r = RefCounter { rc: Arc::new(()) };
    let root = h.alloc(GcCell::new(HashMap::<i32, Gc<(i32, RefCounter)>>::new()));
    let mut rng = Rng(0x5eed);
    for _ in 0..20 {
        {
            let mut map = root.borrow_mut();
            for _ in 0..20 {
                let i = (rng.next() % 200) as i32;
                if let Some(old) = map.insert(i, h.alloc((i, r.clone()))) {
                    assert_eq!(old.0, i);
                }
            }
            for _ in 0..20 {
                let i = (rng.next() % 200) as i32;
                if let Some(old) = map.remove(&i) {
                    assert_eq!(old.0, i);
                }
            }
        }
        h.collect();
    }
    h.collect();
    h.collect();
    let live_size = root.borrow().len();
    assert_eq!(Arc::strong_count(&r.rc), live_size + 1);
}

fn hundred(h: &Heap, r: &RefCounter) -> Gc<GcCell<Vec<Gc<RefCounter>>>> {
    let root = h.alloc(GcCell::new(Vec::new()));
    {
        let mut v = root.borrow_mut();
        for _ in 0..100 {
            v.push(h.alloc(r.clone()));
        }
    }
    root
}

/// Ports `all_dropped`: gc-arena frees everything when the arena is dropped; a fing heap
/// lives for the rest of the process, so the port drops the root and collects once.
#[test]
fn all_dropped() {
    let h = heap();
    let r = RefCounter { rc: Arc::new(()) };
    let root = hundred(&h, &r);
    assert_eq!(Arc::strong_count(&r.rc), 101);
    drop(root);
    h.collect();
    assert_eq!(Arc::strong_count(&r.rc), 1);
    assert_eq!(h.stats().heap_objects, 0);
}

/// Ports `all_garbage_collected`: the root lives, its vector is cleared.
#[test]
fn all_garbage_collected() {
    let h = heap();
    let r = RefCounter { rc: Arc::new(()) };
    let root = hundred(&h, &r);
    root.borrow_mut().clear();
    h.collect();
    assert_eq!(Arc::strong_count(&r.rc), 1);
    assert!(root.borrow().is_empty());
}

/// gc-arena's `Wrapper`: records where its value was when dropped.
#[derive(Trace)]
#[gc(unsafe_allow_drop)]
struct Wrapper<T: Trace> {
    value: T,
    #[gc(untraced)]
    dropped_at: Arc<AtomicUsize>,
}

// SAFETY: its `Drop` dereferences none of its traced handles.
unsafe impl<T: Trace> fing::AllowDrop for Wrapper<T> {}

impl<T: Trace> Drop for Wrapper<T> {
    fn drop(&mut self) {
        self.dropped_at
            .store(self as *const Self as usize, Ordering::SeqCst);
    }
}

/// Ports `test_layouts`: values of sizes 0 to 64 bytes and alignments 1 to 32, each
/// aligned, intact, and dropped in place (the destructor sees the handle's address).
#[test]
fn test_layouts() {
    let h = heap();
    macro_rules! test_layout {
        ($name:ident, size = $size:tt, align = $align:tt) => {{
            #[repr(align($align))]
            struct $name([u8; $size]);
            noscan!($name);
            let array: [u8; $size] = core::array::from_fn(|i| i as u8);
            let at = counter();
            let gc = h.alloc(Wrapper {
                value: $name(array),
                dropped_at: at.clone(),
            });
            assert_eq!(gc.value.0, array);
            let ptr = Gc::as_ptr(&gc) as usize;
            assert_eq!(
                ptr % std::mem::align_of::<$name>(),
                0,
                "size={}, align={}",
                $size,
                $align
            );
            drop(gc);
            h.collect();
            assert_eq!(count(&at), ptr, "size={}, align={}", $size, $align);
        }};
    }
    test_layout!(S0A1, size = 0, align = 1);
    test_layout!(S1A1, size = 1, align = 1);
    test_layout!(S2A1, size = 2, align = 1);
    test_layout!(S0A2, size = 0, align = 2);
    test_layout!(S2A2, size = 2, align = 2);
    test_layout!(S4A2, size = 4, align = 2);
    test_layout!(S0A4, size = 0, align = 4);
    test_layout!(S4A4, size = 4, align = 4);
    test_layout!(S8A4, size = 8, align = 4);
    test_layout!(S0A8, size = 0, align = 8);
    test_layout!(S8A8, size = 8, align = 8);
    test_layout!(S16A8, size = 16, align = 8);
    test_layout!(S0A16, size = 0, align = 16);
    test_layout!(S16A16, size = 16, align = 16);
    test_layout!(S32A16, size = 32, align = 16);
    test_layout!(S0A32, size = 0, align = 32);
    test_layout!(S32A32, size = 32, align = 32);
    test_layout!(S64A32, size = 64, align = 32);
}

#[allow(dead_code)]
#[derive(Trace)]
struct Test1 {
    a: i32,
    b: Gc<i32>,
}

#[allow(dead_code)]
#[derive(Trace)]
struct Test2 {
    a: i32,
    b: i32,
}

#[allow(dead_code)]
#[derive(Trace)]
enum Test3 {
    B(Gc<i32>),
    A(i32),
}

#[allow(dead_code)]
#[derive(Trace)]
enum Test4 {
    A(i32),
}

#[allow(dead_code)]
#[derive(Trace)]
struct Test6(i32);

struct NoImpl;

#[allow(dead_code)]
#[derive(Trace)]
struct Test7 {
    #[gc(untraced)]
    field: NoImpl,
}

#[allow(dead_code)]
#[derive(Trace)]
enum Test8 {
    First {
        #[gc(untraced)]
        field: NoImpl,
    },
}

#[allow(dead_code)]
#[derive(Trace)]
struct Test9<T>(T);

/// Ports `derive_collect`: gc-arena's `NEEDS_TRACE` is fing's `!Trace::NO_SCAN`, derived
/// for structs, enums, untraced fields (gc-arena's `require_static`) and generics.
#[test]
fn derive_collect() {
    const {
        assert!(!<Test1 as Trace>::NO_SCAN);
        assert!(<Test2 as Trace>::NO_SCAN);
        assert!(!<Test3 as Trace>::NO_SCAN);
        assert!(<Test4 as Trace>::NO_SCAN);
        assert!(<Test6 as Trace>::NO_SCAN);
        assert!(<Test7 as Trace>::NO_SCAN);
        assert!(<Test8 as Trace>::NO_SCAN);
        assert!(<Test9<i32> as Trace>::NO_SCAN);
        assert!(!<Test9<Gc<i32>> as Trace>::NO_SCAN);
    }
}

#[derive(Trace)]
struct HeldA {
    #[gc(untraced)]
    rc: Arc<i32>,
}

#[derive(Trace)]
struct HeldB {
    #[gc(untraced)]
    rc: Arc<String>,
}

/// Ports `test_dynamic_roots`: gc-arena stashes handles in a `DynamicRootSet` to keep them
/// past a `mutate` call; in fing any handle held outside the heap is a root. The objects
/// live exactly as long as some stashed handle does.
#[test]
fn test_dynamic_roots() {
    let h = heap();
    let rc_a = Arc::new(12);
    let rc_b = Arc::new("hello".to_owned());
    let root_a = h.alloc(HeldA { rc: rc_a.clone() });
    let root_b = h.alloc(HeldB { rc: rc_b.clone() });
    assert_eq!((Arc::strong_count(&rc_a), Arc::strong_count(&rc_b)), (2, 2));
    h.collect();
    assert_eq!((Arc::strong_count(&rc_a), Arc::strong_count(&rc_b)), (2, 2));
    assert_eq!(*root_a.rc, 12);
    assert_eq!(root_b.rc.as_str(), "hello");
    let root_b_dup = Some(root_b.clone());
    let (root_a_clone, root_b_clone) = (root_a.clone(), root_b.clone());
    drop((root_a, root_b));
    h.collect();
    assert_eq!((Arc::strong_count(&rc_a), Arc::strong_count(&rc_b)), (2, 2));
    drop((root_a_clone, root_b_clone));
    h.collect();
    assert_eq!(Arc::strong_count(&rc_a), 1);
    assert_eq!(Arc::strong_count(&rc_b), 2, "root_b_dup still holds it");
    drop(root_b_dup);
    h.collect();
    assert_eq!(Arc::strong_count(&rc_b), 1);
}

#[derive(Trace)]
struct Holder {
    to: Gc<HeldA>,
}

/// Ports `test_dynamic_bad_set`: gc-arena panics when a root from one arena is fetched in
/// another; fing allows handles across heaps. An object of one heap holding an object of
/// another keeps it alive through both heaps' collections, and releases it when it dies.
#[test]
fn test_dynamic_bad_set() {
    let (h1, h2) = (heap(), heap());
    let rc = Arc::new(44);
    let inner = h1.alloc(HeldA { rc: rc.clone() });
    let outer = h2.alloc(Holder { to: inner.clone() });
    drop(inner);
    h1.collect();
    h2.collect();
    assert_eq!(Arc::strong_count(&rc), 2);
    assert_eq!(*outer.to.rc, 44);
    drop(outer);
    h2.collect();
    h1.collect();
    assert_eq!(Arc::strong_count(&rc), 1);
}

/// Ports `test_unsize`: handles to `dyn Display`, made with `Gc::map`.
#[test]
fn test_unsize() {
    let h = heap();
    let gc: Gc<String> = h.alloc("Hello world!".into());
    let dyn_gc: Gc<dyn Display + Send + Sync> = gc.map(|s| s as &(dyn Display + Send + Sync));
    drop(gc);
    h.collect();
    assert_eq!(dyn_gc.to_string(), "Hello world!");
    let cell: Gc<GcCell<i32>> = h.alloc(GcCell::new(12345));
    let dyn_cell: Gc<dyn Debug + Send + Sync> = cell.map(|c| c as &(dyn Debug + Send + Sync));
    assert_eq!(cell.borrow().to_string(), "12345");
    assert_eq!(format!("{:?}", &*dyn_cell), "GcCell(12345)");
}

#[derive(Trace)]
struct Loop {
    next: GcCell<Option<Gc<Loop>>>,
    pad: [u64; 4],
}

fn garbage_loop(h: &Heap) {
    let l = h.alloc(Loop {
        next: GcCell::new(None),
        pad: [0; 4],
    });
    l.next.set(Some(l.clone()));
}

/// Ports `test_collection_bounded`: with automatic collection on, a live root and a steady
/// stream of garbage (self-loops, which only a collection frees) keep the heap bounded; the
/// root is intact throughout.
#[test]
fn test_collection_bounded() {
    let h = paced_heap(1 << 20);
    let root: [Gc<u8>; 32] = std::array::from_fn(|i| h.alloc(i as u8));
    let mut peak = 0;
    for round in 0..32 {
        for _ in 0..4096 {
            garbage_loop(&h);
        }
        peak = peak.max(h.stats().heap_in_use);
        assert!(
            root.iter().enumerate().all(|(i, g)| **g == i as u8),
            "round {round}"
        );
    }
    let s = h.stats();
    assert!(s.num_gc >= 2, "{s:?}");
    assert!(peak < 16 << 20, "the heap grew to {peak} bytes: {s:?}");
}

/// Ports `gc_sleep_actually_sleeps`: below its goal (`MemStats::next_gc`, at least
/// `min_heap`) the heap does not collect; past it, it does.
#[test]
fn gc_sleep_actually_sleeps() {
    let h = paced_heap(1 << 20);
    let goal = h.stats().next_gc;
    assert_eq!(goal, 1 << 20);
    let mut live = Vec::new();
    while h.stats().heap_in_use < goal / 4 {
        live.push(h.alloc([0u64; 8]));
    }
    assert_eq!(h.stats().num_gc, 0, "asleep below the goal");
    for _ in 0..(4 * goal / 64) {
        if h.stats().num_gc > 0 {
            break;
        }
        live.push(h.alloc([0u64; 8]));
    }
    assert!(h.stats().num_gc > 0, "awake past the goal: {:?}", h.stats());
}

/// Ports `stop_the_world_works`: after a full collection the goal is the live heap times
/// (1 + GOGC/100); allocating less than the headroom starts no collection.
#[test]
fn stop_the_world_works() {
    let h = paced_heap(256 << 10);
    let live: Vec<Gc<[u64; 8]>> = (0..40_000).map(|_| h.alloc([1u64; 8])).collect();
    h.collect();
    let s = h.stats();
    assert!(
        s.next_gc >= 2 * s.heap_alloc * 9 / 10,
        "goal {} for {} live bytes",
        s.next_gc,
        s.heap_alloc
    );
    let runs = s.num_gc;
    let headroom = s.next_gc.saturating_sub(s.heap_in_use);
    let more: Vec<Gc<[u64; 8]>> = (0..headroom / 2 / 80).map(|_| h.alloc([2u64; 8])).collect();
    assert_eq!(h.stats().num_gc, runs, "asleep within the headroom");
    assert_eq!((live.len(), more.is_empty()), (40_000, headroom < 160));
}

/// gc-arena's `okay_panic` object: a `Trace` that panics a given number of times.
struct Flaky {
    data: Gc<[u8; 256]>,
    panic_count: AtomicU8,
    trace_finished: AtomicBool,
}

// SAFETY: the descriptor describes `Flaky` (size, alignment and drop glue from the
// compiler); `trace` reports its handles.
unsafe impl Typed for Flaky {
    // SAFETY: the impl's own argument: this descriptor describes the type exactly.
    const TYPE: &'static Type =
        &unsafe { Type::rust::<Flaky>(Kind::Struct) }.named("peers_gc_arena.Flaky");
}

// SAFETY: `trace` reports the one handle `Flaky` owns (or panics before reporting any).
unsafe impl Trace for Flaky {
    const NO_SCAN: bool = false;
    fn trace(&self, t: &mut Tracer) {
        let panics = self.panic_count.load(Ordering::SeqCst);
        if panics > 0 {
            self.panic_count.store(panics - 1, Ordering::SeqCst);
            panic!("test panic");
        }
        self.data.trace(t);
        self.trace_finished.store(true, Ordering::SeqCst);
    }
}

/// Ports `okay_panic`: a `Trace` that panics five times. Each collection it panics in is
/// abandoned (the panic reaches `collect()`); the sixth completes, and the root and what it
/// holds are intact.
#[test]
fn okay_panic() {
    let h = heap();
    let root = h.alloc(Flaky {
        data: h.alloc([5; 256]),
        panic_count: AtomicU8::new(5),
        trace_finished: AtomicBool::new(false),
    });
    let mut panics = 0;
    for _ in 0..10 {
        match catch_unwind(AssertUnwindSafe(|| h.collect())) {
            Err(err) => {
                assert_eq!(*err.downcast::<&'static str>().unwrap(), "test panic");
                panics += 1;
            }
            Ok(()) => break,
        }
    }
    assert_eq!(panics, 5);
    assert_eq!(root.panic_count.load(Ordering::SeqCst), 0);
    assert!(root.trace_finished.load(Ordering::SeqCst));
    assert!(root.data.iter().all(|&b| b == 5));
}

#[derive(Trace)]
struct Nested {
    bar: GcCell<Option<Gc<FieldTest>>>,
}

#[derive(Trace)]
struct FieldTest {
    foo: GcCell<Gc<i32>>,
    nested: Nested,
    #[gc(untraced)]
    token: Token,
}

/// Ports `field_locks`: writes through the cells of a field and of a nested field
/// (gc-arena's `unlock!` / `field!` projections), one of them closing a cycle.
#[test]
fn field_locks() {
    let h = heap();
    let drops = counter();
    let root = h.alloc(FieldTest {
        foo: GcCell::new(h.alloc(10)),
        nested: Nested {
            bar: GcCell::new(None),
        },
        token: Token(drops.clone()),
    });
    assert_eq!(**root.foo.borrow(), 10);
    assert!(root.nested.bar.borrow().is_none());
    *root.foo.borrow_mut() = h.alloc(42);
    root.nested.bar.set(Some(root.clone()));
    h.collect();
    assert_eq!(**root.foo.borrow(), 42);
    assert!(Gc::ptr_eq(
        root.nested.bar.borrow().as_ref().unwrap(),
        &root
    ));
    drop(root);
    h.collect();
    assert_eq!(count(&drops), 1);
}

#[derive(Trace)]
struct Val {
    x: u64,
    #[gc(untraced)]
    token: Token,
}

#[derive(Trace)]
struct BarrierNode {
    strong_child: GcCell<Option<Gc<Val>>>,
}

/// Ports `barriers` (its strong half): gc-arena checks that a child stored into an
/// already-marked object survives the cycle. fing has no incremental marking, so the port
/// stores fresh children from one thread while another collects: every stored child
/// survives, every replaced one is freed exactly once.
#[test]
fn barriers() {
    let h = heap();
    let drops = counter();
    let root = h.alloc(BarrierNode {
        strong_child: GcCell::new(None),
    });
    let done = Arc::new(AtomicBool::new(false));
    let collector = {
        let (h, done) = (h.clone(), done.clone());
        thread::spawn(move || {
            let mut n = 0;
            while !done.load(Ordering::SeqCst) || n < 10 {
                h.collect();
                n += 1;
            }
        })
    };
    for i in 0..2000 {
        let p = h.alloc(Val {
            x: i,
            token: Token(drops.clone()),
        });
        root.strong_child.set(Some(p));
        assert_eq!(root.strong_child.borrow().as_ref().unwrap().x, i);
    }
    done.store(true, Ordering::SeqCst);
    collector.join().unwrap();
    h.collect();
    assert_eq!(root.strong_child.borrow().as_ref().unwrap().x, 1999);
    assert_eq!(count(&drops), 1999);
}

/// Re-arms its finalizer from the finalizer `times` times (resurrecting the object each
/// time), counting runs.
fn arm(g: &Gc<Val>, runs: Arc<AtomicUsize>, times: usize) {
    let r = runs.clone();
    g.set_finalizer(move |g| {
        let n = r.fetch_add(1, Ordering::SeqCst) + 1;
        if n <= times {
            arm(&g, r.clone(), times);
        }
    })
    .unwrap();
}

/// Ports `basic_finalization`: gc-arena resurrects a dead object from its finalize phase
/// (through a weak handle) and sees it die a cycle later. Here the finalizer resurrects its
/// object by setting itself again, twice; the object dies after the third run. The object
/// still rooted is never finalized.
#[test]
fn basic_finalization() {
    let h = heap();
    let (drops_a, drops_b, runs_a, runs_b) = (counter(), counter(), counter(), counter());
    let a = h.alloc(Val {
        x: 1,
        token: Token(drops_a.clone()),
    });
    let b = h.alloc(Val {
        x: 2,
        token: Token(drops_b.clone()),
    });
    arm(&a, runs_a.clone(), 2);
    arm(&b, runs_b.clone(), 0);
    let _root = (
        h.alloc(Val {
            x: 3,
            token: Token(counter()),
        }),
        b,
    );
    drop(a); // the root's `a` replaced: unreachable
    for _ in 0..10 {
        if count(&drops_a) > 0 {
            break;
        }
        h.collect();
        fing::wait_finalizers();
        assert!(
            count(&drops_a) == 0 || count(&runs_a) == 3,
            "died before its last run"
        );
    }
    assert_eq!((count(&runs_a), count(&drops_a)), (3, 1));
    assert_eq!((count(&runs_b), count(&drops_b)), (0, 0));
}

#[derive(Trace)]
struct Outer {
    inner: Gc<Val>,
    #[gc(untraced)]
    token: Token,
}

/// Ports `transitive_death`: an object reachable only from a dead object is dead too. With
/// finalizers on both (Go's order): the outer one is finalized first, seeing the inner one
/// intact; the inner one is finalized in the cycle that frees the outer one.
#[test]
fn transitive_death() {
    let h = heap();
    let (inner_drops, outer_drops) = (counter(), counter());
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let a = h.alloc(Outer {
        inner: h.alloc(Val {
            x: 1,
            token: Token(inner_drops.clone()),
        }),
        token: Token(outer_drops.clone()),
    });
    {
        let o = order.clone();
        a.set_finalizer(move |a| o.lock().unwrap().push(("outer", a.inner.x)))
            .unwrap();
        let order = order.clone();
        a.inner
            .set_finalizer(move |i| order.lock().unwrap().push(("inner", i.x)))
            .unwrap();
    }
    h.collect();
    fing::wait_finalizers();
    assert!(order.lock().unwrap().is_empty(), "rooted: alive");
    drop(a);
    h.collect();
    fing::wait_finalizers();
    assert_eq!(*order.lock().unwrap(), [("outer", 1)]);
    h.collect();
    fing::wait_finalizers();
    assert_eq!(*order.lock().unwrap(), [("outer", 1), ("inner", 1)]);
    h.collect();
    h.collect();
    assert_eq!((count(&outer_drops), count(&inner_drops)), (1, 1));
}

#[repr(align(8))]
struct Aligned8;
noscan!(Aligned8);
#[repr(align(16))]
struct Aligned16;
noscan!(Aligned16);
#[repr(align(32))]
struct Aligned32;
noscan!(Aligned32);

/// Ports `zst_cache`: zero-sized values of any alignment need no memory (gc-arena caches
/// them up to an alignment); their handles are aligned and outside every heap.
#[test]
fn zst_cache() {
    let h = heap();
    let before = h.stats().mallocs;
    let a8 = h.alloc(Aligned8);
    let a8b = h.alloc(Aligned8);
    let a16 = h.alloc(Aligned16);
    let a32 = h.alloc(Aligned32);
    assert_eq!(h.stats().mallocs, before);
    assert_eq!(Gc::as_ptr(&a8) as usize % 8, 0);
    assert_eq!(Gc::as_ptr(&a8b) as usize % 8, 0);
    assert_eq!(Gc::as_ptr(&a16) as usize % 16, 0);
    assert_eq!(Gc::as_ptr(&a32) as usize % 32, 0);
    assert!(!Gc::is_in_heap(&a8) && !Gc::is_in_heap(&a32));
    h.collect();
}

#[repr(align(1))]
struct UnderAligned(u8);
noscan!(UnderAligned);

#[repr(C, align(1024))]
struct OverAligned {
    header: UnderAligned,
    value: u8,
}
noscan!(OverAligned);

/// Ports `lesser_aligned_prefix_has_same_ptr`: a handle to the first field of an
/// over-aligned value (gc-arena: an unsafe pointer cast; fing: `Gc::map`) has the value's
/// address and keeps it alive.
#[test]
fn lesser_aligned_prefix_has_same_ptr() {
    let h = heap();
    let gc = h.alloc(OverAligned {
        header: UnderAligned(7),
        value: 13,
    });
    assert_eq!(Gc::as_ptr(&gc) as usize % 1024, 0);
    let header_gc: Gc<UnderAligned> = gc.map(|o| &o.header);
    assert_eq!(Gc::as_ptr(&header_gc) as usize, Gc::as_ptr(&gc) as usize);
    assert_eq!(gc.value, 13);
    drop(gc);
    h.collect();
    assert_eq!(header_gc.0, 7);
}

#[derive(Trace)]
struct ListNode {
    prev: GcCell<Option<Gc<ListNode>>>,
    next: GcCell<Option<Gc<ListNode>>>,
    value: u64,
    #[gc(untraced)]
    token: Token,
}

fn node_join(left: &Gc<ListNode>, right: &Gc<ListNode>) {
    left.next.set(Some(right.clone()));
    right.prev.set(Some(left.clone()));
}

fn node_rotate_right(node: &mut Gc<ListNode>) -> bool {
    let next = node.next.borrow().clone();
    match next {
        Some(n) => {
            *node = n;
            true
        }
        None => false,
    }
}

fn node_rotate_left(node: &mut Gc<ListNode>) -> bool {
    let prev = node.prev.borrow().clone();
    match prev {
        Some(p) => {
            *node = p;
            true
        }
        None => false,
    }
}

/// Ports `examples/linked_list.rs`: a doubly-linked list (every pair of neighbours a cycle),
/// walked both ways through a cursor; here 100 000 nodes long. The cursor keeps the whole
/// list; without it, one collection frees every node once.
#[test]
fn linked_list() {
    const N: u64 = 100_000;
    let h = heap();
    let drops = counter();
    let new_node = |value| {
        h.alloc(ListNode {
            prev: GcCell::new(None),
            next: GcCell::new(None),
            value,
            token: Token(drops.clone()),
        })
    };
    let mut cursor = new_node(0);
    let mut tail = cursor.clone();
    for i in 1..N {
        let n = new_node(i);
        node_join(&tail, &n);
        tail = n;
    }
    drop(tail);
    h.collect();
    assert_eq!(count(&drops), 0);
    let mut steps = 0;
    while node_rotate_right(&mut cursor) {
        steps += 1;
    }
    assert_eq!((steps, cursor.value), (N - 1, N - 1));
    while node_rotate_left(&mut cursor) {
        steps += 1;
    }
    assert_eq!((steps, cursor.value), (2 * (N - 1), 0));
    h.collect();
    assert_eq!(count(&drops), 0, "the cursor keeps the list");
    drop(cursor);
    h.collect();
    assert_eq!(count(&drops), N as usize);
}
