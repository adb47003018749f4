//! Objects of run-time length: `Gc<[T]>` and `Gc<str>` (`Heap::alloc_slice`,
//! `alloc_str`, `From`, `FromIterator`): elements traced (cycles through a slice are
//! collected, handles in it keep their objects), dropped exactly once with the object (at
//! count zero or by a collection), counted in `MemStats` and against `max_heap`; empty
//! and zero-sized cases need no memory; and `set_finalizer` treats them as Go treats
//! slices and strings: the slice handle is not a pointer, `&s[0]` is, and a handle to the
//! end of one never keeps the next object alive (Go's TestEmptySlice, TestEmptyString).
//!
//! Tests wait with `wait_finalizers()` and loops of `collect()`, never bare sleeps.

#![allow(missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use fing::{Func, Gc, GcCell, Heap, HeapConfig, Trace, Type, Typed, Value};

fn heap() -> Heap {
    let mut c = HeapConfig::default();
    c.gogc = None;
    Heap::new(c)
}

#[derive(Trace)]
struct Node {
    id: u64,
    kids: GcCell<Option<Gc<[Gc<Node>]>>>,
}

fn node(h: &Heap, id: u64) -> Gc<Node> {
    h.alloc(Node {
        id,
        kids: GcCell::new(None),
    })
}

#[test]
fn a_slice_reads_back_what_was_moved_in() {
    let h = heap();
    let s = h.alloc_slice(0..1000u64);
    assert_eq!(s.len(), 1000);
    assert_eq!(s.iter().sum::<u64>(), 499_500);
    let t: Gc<[u64]> = (0..1000u64).collect();
    assert_eq!(s, t);
    let c = s.clone();
    drop(s);
    assert_eq!(c[999], 999);
    let from_slice = Gc::<[i32]>::from(&[1, 2, 3][..]);
    assert_eq!(&*from_slice, &[1, 2, 3]);
    let from_vec = Gc::<[String]>::from(vec!["a".to_string(), "b".to_string()]);
    assert_eq!(from_vec.join("+"), "a+b");
}

#[test]
fn strings_short_and_long() {
    let h = heap();
    for s in [
        "",
        "a",
        "fifteen bytes!!",
        "sixteen bytes!!!",
        &"long ".repeat(10_000),
    ] {
        let g = h.alloc_str(s);
        assert_eq!(&*g, s);
        assert_eq!(g.len(), s.len());
    }
    let g: Gc<str> = "héllo".into();
    assert_eq!(format!("{g}"), "héllo");
    let k: Gc<str> = String::from("héllo").into();
    assert_eq!(g, k, "compared by value, as Arc<str> is");
    h.collect();
    assert_eq!(&*g, "héllo");
}

#[test]
fn handles_in_a_slice_keep_their_objects_and_a_cycle_through_one_is_collected() {
    let h = heap();
    let dropped = Arc::new(AtomicUsize::new(0));
    let parent = node(&h, 0);
    let kids: Vec<Gc<Node>> = (1..=100).map(|i| node(&h, i)).collect();
    // Each kid points back at the parent through its own slice: cycles through slices.
    for k in &kids {
        *k.kids.borrow_mut() = Some(h.alloc_slice([parent.clone()]));
    }
    *parent.kids.borrow_mut() = Some(h.alloc_slice(kids));
    let weak = parent.downgrade();
    let d = dropped.clone();
    parent
        .add_cleanup((), move |()| {
            d.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
    h.collect();
    // Held: everything is there after a collection.
    let ids: u64 = parent
        .kids
        .borrow()
        .as_ref()
        .unwrap()
        .iter()
        .map(|k| k.id)
        .sum();
    assert_eq!(ids, 5050);
    drop(parent);
    for _ in 0..3 {
        h.collect();
        fing::wait_finalizers();
    }
    assert!(
        weak.upgrade().is_none(),
        "the cycle through the slices was freed"
    );
    assert_eq!(dropped.load(Ordering::Relaxed), 1);
}

static DROPS: AtomicUsize = AtomicUsize::new(0);

#[derive(Trace)]
#[gc(unsafe_allow_drop)]
struct Counted {
    n: u64,
}

// SAFETY: `drop` reads no handle.
unsafe impl fing::AllowDrop for Counted {}

impl Drop for Counted {
    fn drop(&mut self) {
        DROPS.fetch_add(self.n as usize, Ordering::SeqCst);
    }
}

#[test]
fn elements_are_dropped_once_with_their_object() {
    let h = heap();
    let before = DROPS.load(Ordering::SeqCst);
    // At count zero, on this thread.
    let s = h.alloc_slice((1..=10).map(|n| Counted { n }));
    drop(s);
    h.collect();
    assert_eq!(DROPS.load(Ordering::SeqCst) - before, 55);
    // By a collection: a node keeps the slice, the slice's cycle keeps the node.
    #[derive(Trace)]
    struct Holder {
        me: GcCell<Option<Gc<Holder>>>,
        items: Gc<[Counted]>,
    }
    let x = h.alloc(Holder {
        me: GcCell::new(None),
        items: h.alloc_slice((1..=4).map(|n| Counted { n: n * 100 })),
    });
    x.me.set(Some(x.clone()));
    drop(x);
    h.collect();
    fing::wait_finalizers();
    assert_eq!(DROPS.load(Ordering::SeqCst) - before, 55 + 1000);
    // An element's drop never runs for elements that were moved in and then given back.
    let mut c = HeapConfig::default();
    c.gogc = None;
    c.max_heap = Some(1 << 20);
    let small = Heap::new(c);
    let big: Vec<Counted> = (0..200_000).map(|_| Counted { n: 0 }).collect();
    let Err(e) = small.try_alloc_slice(big) else {
        panic!("200 000 elements fit in 1 MiB")
    };
    assert_eq!(e.limit(), Some(1 << 20));
    assert!(e.to_string().contains("[slices::Counted; 200000]"), "{e}");
    assert_eq!(e.into_inner().len(), 200_000, "the elements are given back");
}

#[test]
fn a_large_slice_is_counted_and_freed_at_count_zero() {
    let h = heap();
    h.collect();
    let s0 = h.stats();
    let s = h.alloc_slice(vec![7u64; 1 << 20]);
    let s1 = h.stats();
    assert!(
        s1.heap_in_use >= s0.heap_in_use + (8 << 20),
        "{s0:?} {s1:?}"
    );
    assert_eq!(s.iter().filter(|&&x| x == 7).count(), 1 << 20);
    drop(s);
    h.collect();
    let s2 = h.stats();
    assert!(s2.heap_alloc + (8 << 20) <= s1.heap_alloc, "{s1:?} {s2:?}");
}

#[test]
fn empty_and_zero_sized_slices_need_no_memory() {
    let h = heap();
    let e: Gc<[Gc<Node>]> = h.alloc_slice([]);
    assert!(e.is_empty());
    assert!(!Gc::is_in_heap(&e));
    let z = h.alloc_slice([(), (), ()]);
    assert_eq!(z.len(), 3);
    assert!(!Gc::is_in_heap(&z));
    let s = h.alloc_str("");
    assert!(!Gc::is_in_heap(&s));
}

#[test]
fn aligned_elements_stay_aligned() {
    #[derive(Trace, Clone, Copy)]
    #[repr(align(64))]
    struct Line {
        x: u64,
    }
    #[derive(Trace, Clone, Copy)]
    #[repr(align(8192))]
    struct Page {
        x: u64,
    }
    let h = heap();
    let a = h.alloc_slice((0..9).map(|x| Line { x }));
    assert_eq!(a.as_ptr() as usize % 64, 0);
    assert_eq!(a[8].x, 8);
    let b = h.alloc_slice((0..3).map(|x| Page { x }));
    assert_eq!(b.as_ptr() as usize % 8192, 0);
    assert_eq!(b[2].x, 2);
    h.collect();
    assert_eq!(a.iter().map(|l| l.x).sum::<u64>(), 36);
}

#[test]
fn the_types_are_named_and_never_identical_to_vec_or_string() {
    let t = <Gc<[i64]>>::TYPE;
    assert_eq!(t.to_string(), "Gc<[i64]>");
    assert_eq!(<Gc<str>>::TYPE.to_string(), "Gc<str>");
    let v = <Vec<i64>>::TYPE;
    assert!(!fing::reflect::rules::identical(t, v));
    assert!(!fing::reflect::rules::identical(
        <Gc<str>>::TYPE,
        String::TYPE
    ));
    assert!(fing::reflect::rules::identical(t, Type::of::<Gc<[i64]>>()));
    let val = Value::from(Gc::<[i64]>::from(vec![1, 2]));
    assert_eq!(val.type_of().to_string(), "Gc<[i64]>");
    let back = val.downcast::<Gc<[i64]>>().ok().unwrap();
    assert_eq!(&*back, &[1, 2]);
}

#[test]
fn a_slice_handle_is_not_a_pointer_but_its_first_element_is() {
    let h = heap();
    let s = h.alloc_slice([[1u64, 0], [2, 0], [3, 0]]);
    let e = fing::set_finalizer(Value::from(s.clone()), Func::new(|_: Value| ())).unwrap_err();
    assert!(e.to_string().contains("Gc<[[u64; 2]]>"), "{e}");
    assert!(e.to_string().contains("not pointer"), "{e}");
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let first = s.map(|s| &s[0]);
    first
        .set_finalizer(move |g: Gc<[u64; 2]>| {
            assert_eq!(g[0], 1);
            r.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
    // Not at the start of the object: refused, as Go refuses &s[1] for elements that
    // could not be tiny (16 bytes and more, or holding pointers).
    let e = s.map(|s| &s[1]).set_finalizer(|_| ()).unwrap_err();
    assert!(e.to_string().contains("not at beginning"), "{e}");
    drop((s, first));
    h.collect();
    fing::wait_finalizers();
    assert_eq!(ran.load(Ordering::Relaxed), 1);
}

/// Two objects of one size class, `y`'s slot right after `x`'s (Go's adjChunks).
fn adjacent<T: ?Sized + 'static>(mut make: impl FnMut() -> Gc<T>, slot: usize) -> (Gc<T>, Gc<T>) {
    let mut keep = Vec::new();
    for _ in 0..1000 {
        let x = make();
        let y = make();
        let (ax, ay) = (Gc::object_addr(&x).unwrap(), Gc::object_addr(&y).unwrap());
        if ay.as_ptr() as usize == ax.as_ptr() as usize + slot {
            return (x, y);
        }
        keep.push((x, y));
    }
    panic!("no adjacent pair in 1000 tries");
}

#[test]
fn an_empty_slice_at_the_end_of_one_object_does_not_keep_the_next_alive() {
    // Go's TestEmptySlice: 16 bytes of elements fill a 32-byte slot with the header.
    let h = heap();
    let (x, y) = adjacent(|| h.alloc_slice([1u64, 2]), 32);
    let xs = x.map(|s| &s[2..]);
    assert!(xs.is_empty());
    assert_eq!(
        Gc::object_addr(&xs),
        Gc::object_addr(&x),
        "the end of x counts on x"
    );
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    y.map(|s| &s[0])
        .set_finalizer(move |_| {
            r.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
    drop((x, y));
    for _ in 0..3 {
        h.collect();
        fing::wait_finalizers();
        if ran.load(Ordering::Relaxed) == 1 {
            break;
        }
    }
    assert_eq!(ran.load(Ordering::Relaxed), 1, "y was freed while xs lives");
    assert!(xs.is_empty());
}

#[test]
fn an_empty_string_at_the_end_of_one_object_does_not_keep_the_next_alive() {
    // Go's TestEmptyString: a 16-byte string fills a 32-byte slot with the header.
    let h = heap();
    let (x, y) = adjacent(|| h.alloc_str("0123456789abcdef"), 32);
    let xs = x.map(|s| &s[16..]);
    assert_eq!(&*xs, "");
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    y.map(|s| &s.as_bytes()[0])
        .set_finalizer(move |_| {
            r.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
    drop((x, y));
    for _ in 0..3 {
        h.collect();
        fing::wait_finalizers();
        if ran.load(Ordering::Relaxed) == 1 {
            break;
        }
    }
    assert_eq!(ran.load(Ordering::Relaxed), 1, "y was freed while xs lives");
}

#[test]
fn four_threads_allocate_slices_while_collections_run() {
    let h = heap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let h = h.clone();
            s.spawn(move || {
                let mut keep = Vec::new();
                for i in 0..2000u64 {
                    let n = node(&h, i);
                    let kids = h.alloc_slice((0..(i % 7)).map(|j| node(&h, j)));
                    *n.kids.borrow_mut() = Some(kids);
                    let s = h.alloc_str(&format!("thread {t} item {i}"));
                    if i % 10 == 0 {
                        keep.push((n, s));
                    }
                    if i % 500 == 0 {
                        h.collect();
                    }
                }
                for (i, (n, s)) in keep.iter().enumerate() {
                    let i = i as u64 * 10;
                    assert_eq!(n.id, i);
                    assert_eq!(n.kids.borrow().as_ref().unwrap().len() as u64, i % 7);
                    assert_eq!(&**s, format!("thread {t} item {i}"));
                }
            });
        }
    });
}
