//! The costs fing's design decides (docs/design.md, "The rooting model"): allocating a
//! 32-byte traced object (with the collections it triggers, amortised) against
//! `Box::new`; cloning and dropping a handle against `Arc`; a full collection of a heap of
//! 1 000 000 live objects (the mark rate, in objects per second), and of the same heap
//! with a weak handle to each object (the collector's walks over weak cells), of a
//! heap of as many objects linked at random (marking that waits on memory), and of that
//! heap reached only through an object with a finalizer (marking from markfin's scan).
//!
//! `cargo bench --bench heap`

#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use fing::{Gc, GcCell, Heap, HeapConfig, Trace};

#[derive(Trace)]
struct Obj32 {
    a: u64,
    b: u64,
    c: u64,
    next: Option<Gc<Obj32>>,
}

#[allow(dead_code)] // the fields only give the box its size
struct Boxed32 {
    a: u64,
    b: u64,
    c: u64,
    next: Option<Box<Boxed32>>,
}

#[derive(Trace)]
struct ListNode {
    value: u64,
    next: GcCell<Option<Gc<ListNode>>>,
}

fn alloc(c: &mut Criterion) {
    // The same fields on both sides: a handle is one word, as a `Box` is.
    assert_eq!(std::mem::size_of::<Obj32>(), 32);
    assert_eq!(std::mem::size_of::<Boxed32>(), 32);
    let mut g = c.benchmark_group("alloc_32_bytes");
    g.bench_function("fing Gc::new", |b| {
        b.iter(|| {
            black_box(Gc::new(Obj32 {
                a: 1,
                b: 2,
                c: 3,
                next: None,
            }))
        })
    });
    g.bench_function("Box::new", |b| {
        b.iter(|| {
            black_box(Box::new(Boxed32 {
                a: 1,
                b: 2,
                c: 3,
                next: None,
            }))
        })
    });
    g.finish();
}

fn clone_drop(c: &mut Criterion) {
    let mut g = c.benchmark_group("clone_and_drop");
    let gc = Gc::new(Obj32 {
        a: 1,
        b: 2,
        c: 3,
        next: None,
    });
    g.bench_function("fing Gc", |b| b.iter(|| drop(black_box(gc.clone()))));
    let arc = Arc::new(Boxed32 {
        a: 1,
        b: 2,
        c: 3,
        next: None,
    });
    g.bench_function("Arc", |b| b.iter(|| drop(black_box(arc.clone()))));
    g.finish();
}

fn collect(c: &mut Criterion) {
    let mut config = HeapConfig::default();
    config.gogc = None;
    let heap = Heap::new(config);
    const N: u64 = 1_000_000;
    let head = heap.alloc(ListNode {
        value: 0,
        next: GcCell::new(None),
    });
    let mut tail = head.clone();
    for i in 1..N {
        let n = heap.alloc(ListNode {
            value: i,
            next: GcCell::new(None),
        });
        tail.next.set(Some(n.clone()));
        tail = n;
    }
    drop(tail);
    let mut g = c.benchmark_group("collect");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.bench_function("1M live objects", |b| {
        b.iter_batched(|| (), |()| heap.collect(), BatchSize::PerIteration)
    });
    let mut weak = Vec::with_capacity(N as usize);
    let mut n = Some(head.clone());
    while let Some(node) = n {
        weak.push(node.downgrade());
        n = node.next.borrow().clone();
    }
    g.bench_function("1M live objects, a weak handle each", |b| {
        b.iter_batched(|| (), |()| heap.collect(), BatchSize::PerIteration)
    });
    assert!(weak.iter().all(|w| w.upgrade().is_some()));
    assert_eq!(head.value, 0);
    drop((weak, head));
    // The same number of objects linked at random (a shuffled list, and a second edge from
    // each node to any other): consecutive edges land anywhere in the heap, as in a heap
    // that has been mutated for a while, and marking waits on memory.
    let scattered = scattered_heap(&heap, N);
    g.bench_function("1M live objects linked at random", |b| {
        b.iter_batched(|| (), |()| heap.collect(), BatchSize::PerIteration)
    });
    assert!(scattered.next.borrow().is_some());
    drop(scattered);
    // The same again, reached only through an object with a finalizer that the list leads
    // back to: a cycle through a finalizable object, never finalized (Go's rule), so each
    // collection marks the million objects from markfin's scan of that object.
    let head = scattered_heap(&heap, N);
    let mut last = head.clone();
    while let Some(n) = {
        let n = last.next.borrow().clone();
        n
    } {
        last = n;
    }
    last.next.set(Some(head.clone()));
    head.set_finalizer(|_: Gc<Scattered>| ())
        .expect("a finalizer");
    let weak = head.downgrade();
    drop((head, last));
    g.bench_function(
        "1M objects linked at random, reached through a finalizer's object",
        |b| b.iter_batched(|| (), |()| heap.collect(), BatchSize::PerIteration),
    );
    g.finish();
    assert!(
        weak.upgrade().is_some(),
        "a cycle through a finalizer's object is kept"
    );
}

#[derive(Trace)]
struct Scattered {
    next: GcCell<Option<Gc<Scattered>>>,
    other: GcCell<Option<Gc<Scattered>>>,
}

/// `n` objects allocated in order, then linked in a random order into one list, each with
/// a second edge to a random one; returns the list's head.
fn scattered_heap(heap: &Heap, n: u64) -> Gc<Scattered> {
    let nodes: Vec<Gc<Scattered>> = (0..n)
        .map(|_| {
            heap.alloc(Scattered {
                next: GcCell::new(None),
                other: GcCell::new(None),
            })
        })
        .collect();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut rand = move |bound: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % bound as u64) as usize
    };
    let mut order: Vec<usize> = (0..nodes.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rand(i + 1));
    }
    for w in order.windows(2) {
        nodes[w[0]].next.set(Some(nodes[w[1]].clone()));
    }
    for node in &nodes {
        node.other.set(Some(nodes[rand(nodes.len())].clone()));
    }
    nodes[order[0]].clone()
}

criterion_group!(benches, alloc, clone_drop, collect);
criterion_main!(benches);
