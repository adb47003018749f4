//! Over-aligned types: every value sits at a multiple of its alignment (up to 64 KiB here;
//! fing honours up to `fing::MAX_ALIGN` and refuses more at compile time), its handle is
//! counted, it can have a finalizer, and it is freed like any other object.
//! `#[derive(Trace)]` accepts `#[repr(align(N))]` and `#[repr(C, align(N))]`.

#![allow(missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};

use fing::{Gc, GcCell, Heap, HeapConfig, Outcome, Trace};

#[derive(Trace)]
#[repr(align(64))]
struct Line {
    x: u64,
}

#[derive(Trace)]
#[repr(align(4096))]
struct Page {
    x: u64,
    next: Option<Gc<Page>>,
}

#[derive(Trace)]
#[repr(align(16384))]
struct A16k {
    x: u64,
}

#[derive(Trace)]
#[repr(C, align(65536))]
struct A64k {
    x: u64,
    next: GcCell<Option<Gc<A64k>>>,
}

#[derive(Trace)]
#[repr(align(1048576))]
struct A1m {
    x: [u64; 4],
}

fn heap() -> Heap {
    let mut c = HeapConfig::default();
    c.gogc = None;
    Heap::new(c)
}

/// Runs `f` on a thread with a large stack: values aligned to 64 KiB and more take that
/// much stack each time a debug build moves one (an over-aligned frame is padded too).
fn big_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p));
}

fn aligned<T>(g: &Gc<T>) -> bool {
    (Gc::as_ptr(g) as usize).is_multiple_of(std::mem::align_of::<T>())
}

#[test]
fn values_sit_at_multiples_of_their_alignment() {
    big_stack(values_sit_at_multiples_of_their_alignment_inner);
}

fn values_sit_at_multiples_of_their_alignment_inner() {
    let h = heap();
    let lines: Vec<_> = (0..1000).map(|x| h.alloc(Line { x })).collect();
    let pages: Vec<_> = (0..50).map(|x| h.alloc(Page { x, next: None })).collect();
    let a16: Vec<_> = (0..20).map(|x| h.alloc(A16k { x })).collect();
    let a64: Vec<_> = (0..10)
        .map(|x| {
            h.alloc(A64k {
                x,
                next: GcCell::new(None),
            })
        })
        .collect();
    let a1m: Vec<_> = (0..3).map(|x| h.alloc(A1m { x: [x; 4] })).collect();
    assert!(lines.iter().all(aligned));
    assert!(pages.iter().all(aligned));
    assert!(a16.iter().all(aligned));
    assert!(a64.iter().all(aligned));
    assert!(a1m.iter().all(aligned));
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l.x, i as u64);
    }
    for (i, a) in a64.iter().enumerate() {
        assert_eq!(a.x, i as u64);
        assert!(
            Gc::is_in_heap(a),
            "a 64 KiB-aligned object's handle is counted"
        );
    }
    assert_eq!(a1m[2].x, [2; 4]);
    let objects = h.stats().heap_objects;
    drop((lines, pages, a16, a64, a1m));
    h.collect();
    assert!(h.stats().heap_objects < objects);
    assert_eq!(h.stats().heap_objects, 0, "every over-aligned object freed");
}

#[test]
fn over_aligned_objects_in_cycles_with_finalizers() {
    big_stack(over_aligned_objects_in_cycles_with_finalizers_inner);
}

fn over_aligned_objects_in_cycles_with_finalizers_inner() {
    let h = heap();
    static RAN: AtomicUsize = AtomicUsize::new(0);
    let a = h.alloc(A64k {
        x: 1,
        next: GcCell::new(None),
    });
    let b = h.alloc(A64k {
        x: 2,
        next: GcCell::new(Some(a.clone())),
    });
    a.next.set(Some(b.clone()));
    // A cycle: neither is found by count; b gets a finalizer and keeps a (Go's A-before-B
    // rule does not apply inside a cycle through a finalizable object, which is kept), so
    // only a plain cycle is collected here.
    drop((a, b));
    let c = h.alloc(A64k {
        x: 3,
        next: GcCell::new(None),
    });
    assert_eq!(
        c.set_finalizer(|c| {
            assert_eq!(c.x, 3);
            RAN.fetch_add(1, Ordering::SeqCst);
        }),
        Ok(Outcome::Set)
    );
    drop(c);
    h.collect();
    fing::wait_finalizers();
    assert_eq!(RAN.load(Ordering::SeqCst), 1);
    h.collect();
    assert_eq!(h.stats().heap_objects, 0);
}

#[test]
fn the_derive_accepts_repr_align() {
    use fing::Type;
    assert_eq!(Type::of::<A64k>().align(), 65536);
    assert_eq!(Type::of::<A16k>().size(), 16384);
    assert_eq!(Type::of::<Line>().align(), 64);
}
