//! Objects of run-time types (Go's `reflect.New`, `Value.Field`, `Value.Set`):
//! `Heap::alloc_zeroed` of structs and arrays built with `TypeBuilder`, zeroed (nil
//! pointers); `reflect::field` and `reflect::set_field` with Go's assignability and typed
//! errors that name the types; objects traced by their built type (held objects live,
//! cycles of built objects are freed), large aggregates traced part by part past nil
//! pointers; a finalizer whose parameter is the built pointer type; four threads writing
//! and reading one object's fields while collections run.
//!
//! Tests wait with `wait_finalizers()` and loops of `collect()`, never bare sleeps.

#![allow(missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use fing::frame::{Frame, FrameFn};
use fing::reflect::{field, set_field, ReflectError, TypeBuilder};
use fing::{Func, Gc, Heap, HeapConfig, Trace, Type, Typed, Value};

fn heap() -> Heap {
    let mut c = HeapConfig::default();
    c.gogc = None;
    Heap::new(c)
}

/// `script.Node { value: i64, ok: bool, weight: f64, next: *script.Leaf }` and its
/// pointer type, and `script.Leaf { n: i64 }` and its pointer type.
struct Types {
    node: &'static Type,
    node_ptr: &'static Type,
    leaf: &'static Type,
    leaf_ptr: &'static Type,
}

fn types() -> Types {
    let leaf = TypeBuilder::structure(Some("script.Leaf"))
        .field("n", i64::TYPE)
        .build();
    let leaf_ptr = TypeBuilder::pointer(<Gc<()>>::TYPE, None, leaf);
    let node = TypeBuilder::structure(Some("script.Node"))
        .field("value", i64::TYPE)
        .field("ok", bool::TYPE)
        .field("weight", f64::TYPE)
        .field("next", leaf_ptr)
        .build();
    let node_ptr = TypeBuilder::pointer(<Gc<()>>::TYPE, None, node);
    Types {
        node,
        node_ptr,
        leaf,
        leaf_ptr,
    }
}

fn int(v: Value) -> i64 {
    match v.downcast::<i64>() {
        Ok(n) => n,
        Err(v) => panic!("an i64, not a {}", v.type_of()),
    }
}

#[test]
fn a_zeroed_object_reads_zeroes_and_keeps_what_is_written() {
    let t = types();
    let h = heap();
    let n = h.alloc_zeroed(t.node).unwrap();
    // The unnamed pointer type to script.Node (Go's identity: the descriptor the compiler
    // emits for `Gc<()>` may differ between crates, so the interned one may too).
    assert!(fing::reflect::rules::identical(n.type_of(), t.node_ptr));
    assert_eq!(int(field(&n, 0).unwrap()), 0);
    assert_eq!(field(&n, 1).unwrap().downcast::<bool>().ok(), Some(false));
    assert_eq!(field(&n, 2).unwrap().downcast::<f64>().ok(), Some(0.0));
    assert!(field(&n, 3).unwrap().is_nil());
    set_field(&n, 0, Value::from(-5i64)).unwrap();
    set_field(&n, 1, Value::from(true)).unwrap();
    set_field(&n, 2, Value::from(2.5f64)).unwrap();
    let leaf = h.alloc_zeroed(t.leaf).unwrap();
    set_field(&leaf, 0, Value::from(99i64)).unwrap();
    set_field(&n, 3, leaf).unwrap();
    h.collect();
    assert_eq!(int(field(&n, 0).unwrap()), -5);
    assert_eq!(field(&n, 1).unwrap().downcast::<bool>().ok(), Some(true));
    assert_eq!(field(&n, 2).unwrap().downcast::<f64>().ok(), Some(2.5));
    let l = field(&n, 3).unwrap();
    assert!(fing::reflect::rules::identical(l.type_of(), t.leaf_ptr));
    assert_eq!(
        int(field(&l, 0).unwrap()),
        99,
        "held only by n's field, kept"
    );
    set_field(&n, 3, Value::nil()).unwrap();
    assert!(field(&n, 3).unwrap().is_nil());
    assert_eq!(int(field(&l, 0).unwrap()), 99, "still held by l");
}

#[test]
fn bad_input_gets_typed_errors_naming_the_types() {
    let t = types();
    let h = heap();
    let n = h.alloc_zeroed(t.node).unwrap();
    let e = set_field(&n, 0, Value::from(1i32)).unwrap_err();
    assert!(matches!(e, ReflectError::NotAssignable { .. }));
    assert_eq!(
        e.to_string(),
        "fing::reflect::set_field: cannot assign i32 to field value (i64) of script.Node"
    );
    let e = set_field(&n, 3, Value::from(5i64)).unwrap_err();
    assert!(
        e.to_string().contains("cannot assign i64 to field next"),
        "{e}"
    );
    let e = set_field(&n, 0, Value::nil()).unwrap_err();
    assert!(
        e.to_string().contains("cannot assign nil to field value"),
        "{e}"
    );
    // A node where a leaf pointer goes: pointer types with different elements.
    let other = h.alloc_zeroed(t.node).unwrap();
    let e = set_field(&n, 3, other).unwrap_err();
    assert!(e.to_string().contains("to field next"), "{e}");
    let e = field(&n, 4).unwrap_err();
    assert_eq!(
        e.to_string(),
        "fing::reflect::field: script.Node has no field 4 (it has 4)"
    );
    let e = field(&Value::from(3i64), 0).unwrap_err();
    assert!(matches!(e, ReflectError::NotBuiltObject { .. }));
    #[derive(Trace)]
    struct Rusty {
        x: i64,
    }
    let r = Value::from(h.alloc(Rusty { x: 1 }));
    let e = set_field(&r, 0, Value::from(2i64)).unwrap_err();
    assert!(
        e.to_string().contains(
            "Gc<reflect_new::Rusty> is not a pointer to a struct or array built with TypeBuilder"
        ),
        "{e}"
    );
    // Types without a zero value.
    let e = h.alloc_zeroed(i64::TYPE).unwrap_err();
    assert!(e.to_string().contains("i64 has no zero value"), "{e}");
    let with_string = TypeBuilder::structure(Some("script.Named"))
        .field("name", String::TYPE)
        .build();
    let e = h.alloc_zeroed(with_string).unwrap_err();
    assert_eq!(
        e,
        ReflectError::NoZeroValue {
            ty: "script.Named".into(),
            part: "String".into()
        }
    );
    let with_value = TypeBuilder::structure(None).field("v", Value::TYPE).build();
    assert!(h.alloc_zeroed(with_value).is_err());
    // Past the heap's limit.
    let mut c = HeapConfig::default();
    c.gogc = None;
    c.max_heap = Some(1 << 20);
    let small = Heap::new(c);
    let big = TypeBuilder::array(i64::TYPE, 1 << 20);
    let e = small.alloc_zeroed(big).unwrap_err();
    assert!(matches!(e, ReflectError::Alloc(_)), "{e}");
    assert!(
        e.to_string().contains("the heap's limit is 1048576 bytes"),
        "{e}"
    );
}

/// A cleanup that counts, added to `obj` (read out of `holder`'s field `i`).
fn count_cleanup(obj: Value, n: &Arc<AtomicUsize>) {
    let n = n.clone();
    fing::add_cleanup(
        obj,
        Func::new(move |_: i64| {
            n.fetch_add(1, Ordering::Relaxed);
        }),
        Value::from(0i64),
    )
    .unwrap();
}

#[test]
fn a_cycle_of_built_objects_is_freed_and_what_a_held_one_reaches_lives() {
    // 16 bytes: not a tiny object (tiny ones share a block and die with it).
    let cell = TypeBuilder::structure(Some("script.Cell"))
        .field("n", i64::TYPE)
        .field("pad", i64::TYPE)
        .build();
    let cell_ptr = TypeBuilder::pointer(<Gc<()>>::TYPE, None, cell);
    let arr = TypeBuilder::array(cell_ptr, 3);
    let h = heap();
    let freed = Arc::new(AtomicUsize::new(0));
    let a = h.alloc_zeroed(arr).unwrap();
    for i in 0..3 {
        let c = h.alloc_zeroed(cell).unwrap();
        set_field(&c, 0, Value::from(i as i64 * 10)).unwrap();
        set_field(&a, i, c).unwrap();
        count_cleanup(field(&a, i).unwrap(), &freed);
    }
    for _ in 0..2 {
        h.collect();
        fing::wait_finalizers();
    }
    assert_eq!(freed.load(Ordering::Relaxed), 0, "held through the array");
    assert_eq!(int(field(&field(&a, 2).unwrap(), 0).unwrap()), 20);
    set_field(&a, 1, Value::nil()).unwrap();
    for _ in 0..3 {
        h.collect();
        fing::wait_finalizers();
    }
    assert_eq!(freed.load(Ordering::Relaxed), 1, "the one the array let go");
    drop(a);
    for _ in 0..3 {
        h.collect();
        fing::wait_finalizers();
    }
    assert_eq!(freed.load(Ordering::Relaxed), 3);
}

#[test]
fn large_aggregates_are_traced_part_by_part_past_nil_pointers() {
    let t = types();
    // 100 pointers (past a 64-word mask) and a nested built struct.
    let ptrs = TypeBuilder::array(t.leaf_ptr, 100);
    let outer = TypeBuilder::structure(Some("script.Big"))
        .field("ptrs", ptrs)
        .field("node", t.node)
        .build();
    assert!(outer.has_zero_value());
    let h = heap();
    let big = h.alloc_zeroed(ptrs).unwrap();
    for i in (0..100).step_by(7) {
        let l = h.alloc_zeroed(t.leaf).unwrap();
        set_field(&l, 0, Value::from(i as i64)).unwrap();
        set_field(&big, i, l).unwrap();
    }
    h.collect();
    h.collect();
    for i in 0..100 {
        let l = field(&big, i).unwrap();
        if i % 7 == 0 {
            assert_eq!(int(field(&l, 0).unwrap()), i as i64);
        } else {
            assert!(l.is_nil());
        }
    }
    let o = h.alloc_zeroed(outer).unwrap();
    let e = field(&o, 0).unwrap_err();
    assert!(matches!(e, ReflectError::NotReadable { .. }), "{e}");
    // The nested struct reads out whole (its mask is known), nil pointer and all.
    let node = field(&o, 1).unwrap();
    assert!(std::ptr::eq(node.type_of(), t.node));
    drop((node, o));
    h.collect();
}

#[test]
fn a_finalizer_takes_the_built_pointer_type() {
    let t = types();
    let h = heap();
    let seen = Arc::new(AtomicUsize::new(0));
    struct Fin(Arc<AtomicUsize>);
    impl FrameFn for Fin {
        fn call(self: Box<Self>, frame: &mut Frame<'_>) {
            let obj = frame.take_arg_value(0).expect("one argument");
            let v = field(&obj, 0).unwrap().downcast::<i64>().ok().unwrap();
            self.0.store(v as usize, Ordering::Relaxed);
        }
    }
    let sig = TypeBuilder::func(&[t.leaf_ptr], &[], false);
    let l = h.alloc_zeroed(t.leaf).unwrap();
    set_field(&l, 0, Value::from(77i64)).unwrap();
    fing::set_finalizer(l, Func::from_frame_fn(sig, Fin(seen.clone()))).unwrap();
    // A signature of another built pointer type is refused with Go's message.
    let n = h.alloc_zeroed(t.node).unwrap();
    let e = fing::set_finalizer(n, Func::from_frame_fn(sig, Fin(seen.clone()))).unwrap_err();
    assert!(e.to_string().contains("cannot pass Gc<script.Node>"), "{e}");
    for _ in 0..3 {
        h.collect();
        fing::wait_finalizers();
        if seen.load(Ordering::Relaxed) == 77 {
            break;
        }
    }
    assert_eq!(seen.load(Ordering::Relaxed), 77);
}

/// A `&Value` shared by threads in a scope.
#[derive(Clone, Copy)]
struct SharedValue<'a>(&'a Value);

// SAFETY: the value holds a handle to a built object of `Send + Sync` parts (integers and
// handles): reading it from several threads (through `field`, which takes the object's
// stripe lock) is what `Gc` allows.
unsafe impl Send for SharedValue<'_> {}
// SAFETY: as above.
unsafe impl Sync for SharedValue<'_> {}

impl<'a> SharedValue<'a> {
    fn get(self) -> &'a Value {
        self.0
    }
}

#[test]
fn four_threads_write_and_read_one_object_while_collections_run() {
    let t = types();
    let h = heap();
    let slots = TypeBuilder::array(t.leaf_ptr, 4);
    let root = h.alloc_zeroed(slots).unwrap();
    // `Value` is not `Sync` (it may hold any handle): the threads share the address of
    // this one, which outlives the scope and whose handle is `Send + Sync`.
    let root = SharedValue(&root);
    std::thread::scope(|s| {
        for th in 0..4usize {
            let h = h.clone();
            let t = &t;
            s.spawn(move || {
                let root = root.get();
                for i in 0..3000i64 {
                    let l = h.alloc_zeroed(t.leaf).unwrap();
                    set_field(&l, 0, Value::from(th as i64 * 1_000_000 + i)).unwrap();
                    set_field(root, th, l).unwrap();
                    let back = field(root, th).unwrap();
                    assert_eq!(int(field(&back, 0).unwrap()), th as i64 * 1_000_000 + i);
                    // Another thread's slot: nil or one of its leaves.
                    let other = field(root, (th + 1) % 4).unwrap();
                    if !other.is_nil() {
                        let v = int(field(&other, 0).unwrap());
                        assert_eq!(v / 1_000_000, ((th + 1) % 4) as i64);
                    }
                    if i % 1000 == 0 {
                        h.collect();
                    }
                }
            });
        }
    });
    h.collect();
    let root = root.get();
    for th in 0..4 {
        let v = int(field(&field(root, th).unwrap(), 0).unwrap());
        assert_eq!(v, th as i64 * 1_000_000 + 2999);
    }
}

/// A built array is identical to no Rust array: a zeroed `[*i64; 1]` (a nil pointer) is
/// not passed where Rust expects a `Gc<[Gc<i64>; 1]>` (the review's finding: it was, and
/// Rust code saw a null handle).
#[test]
fn a_built_array_is_never_passed_as_a_rust_array() {
    let h = heap();
    let ptr_i64 = TypeBuilder::pointer(<Gc<()>>::TYPE, None, i64::TYPE);
    let arr = TypeBuilder::array(ptr_i64, 1);
    assert!(!fing::reflect::rules::identical(arr, <[Gc<i64>; 1]>::TYPE));
    assert!(!fing::reflect::rules::identical(
        TypeBuilder::array(i64::TYPE, 2),
        <[i64; 2]>::TYPE
    ));
    let obj = h.alloc_zeroed(arr).unwrap();
    let f = Func::new(|g: Gc<[Gc<i64>; 1]>| drop(g));
    assert!(f.call(vec![obj]).is_err());
}

/// `set_field` never writes into a Rust object: a Rust `Gc<[i64; 2]>` (or
/// `Gc<[Gc<i64>; 1]>`) is not assignable to a built pointer field `*[i64; 2]`, so it can
/// never come back out of one as a built pointer to be written through (the review found
/// both a nil written into a Rust array and a Rust array changed under a live `&`).
#[test]
fn set_field_never_reaches_a_rust_object() {
    let h = heap();
    let arr = TypeBuilder::array(i64::TYPE, 2);
    let p_arr = TypeBuilder::pointer(<Gc<()>>::TYPE, None, arr);
    let holder = TypeBuilder::structure(Some("review.Holder2"))
        .field("p", p_arr)
        .build();
    let rust: Gc<[i64; 2]> = h.alloc([1, 2]);
    let obj = h.alloc_zeroed(holder).unwrap();
    let e = set_field(&obj, 0, Value::from(rust.clone())).unwrap_err();
    assert!(matches!(e, ReflectError::NotAssignable { .. }), "{e}");
    assert_eq!(*rust, [1, 2]);
    let ptr_i64 = TypeBuilder::pointer(<Gc<()>>::TYPE, None, i64::TYPE);
    let p_arr = TypeBuilder::pointer(<Gc<()>>::TYPE, None, TypeBuilder::array(ptr_i64, 1));
    let holder = TypeBuilder::structure(Some("review.Holder"))
        .field("p", p_arr)
        .build();
    let rust: Gc<[Gc<i64>; 1]> = h.alloc([h.alloc(7i64)]);
    let obj = h.alloc_zeroed(holder).unwrap();
    assert!(set_field(&obj, 0, Value::from(rust.clone())).is_err());
    assert_eq!(*rust[0], 7);
}
