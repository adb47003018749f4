//! Heaps of their own come and go: a dropped `Heap` with no handle left into it gives its
//! memory back and its address space is used again by the next heap, so a process that
//! makes heaps (a test suite, a server with a heap per tenant) stays bounded.

#![allow(missing_docs)]

use fing::{Gc, GcCell, Heap, HeapConfig, Trace};

#[derive(Trace)]
struct Node {
    id: u64,
    next: GcCell<Option<Gc<Node>>>,
    name: String,
}

/// The process's reserved address space (`VmSize`), in bytes.
fn reserved() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = s
        .lines()
        .find(|l| l.starts_with("VmSize:"))
        .expect("VmSize");
    let kb: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

fn small() -> bool {
    cfg!(miri) || std::env::var("LD_PRELOAD").is_ok_and(|v| v.contains("vgpreload"))
}

#[test]
fn a_thousand_heaps_made_and_dropped_keep_reserved_memory_bounded() {
    let rounds = if small() { 100 } else { 1000 };
    let use_heap = |h: &Heap, round: u64| {
        // Some objects, a cycle, and a few large ones: every kind of span.
        let first = h.alloc(Node {
            id: round,
            next: GcCell::new(None),
            name: format!("heap {round}"),
        });
        let mut prev = first.clone();
        for i in 0..2_000 {
            let n = h.alloc(Node {
                id: i,
                next: GcCell::new(None),
                name: String::new(),
            });
            prev.next.set(Some(n.clone()));
            prev = n;
        }
        prev.next.set(Some(first.clone()));
        drop(h.alloc([round; 8192]));
        assert_eq!(first.name, format!("heap {round}"));
    };
    // Warm up: the first heaps set the level.
    for r in 0..8 {
        let h = Heap::new(HeapConfig::default());
        use_heap(&h, r);
    }
    let before = reserved();
    for r in 0..rounds {
        let h = Heap::new(HeapConfig::default());
        use_heap(&h, r);
        drop(h);
    }
    let grown = reserved().saturating_sub(before);
    assert!(
        grown < 256 << 20,
        "{rounds} heaps made and dropped grew the reserved address space by {} MiB",
        grown >> 20
    );
}

#[test]
fn a_heap_dropped_while_its_objects_live_keeps_them_until_they_die() {
    let h = Heap::new(HeapConfig::default());
    let kept = h.alloc(Node {
        id: 7,
        next: GcCell::new(None),
        name: "kept".into(),
    });
    drop(h);
    // The heap is gone from the program, not from memory: its object is intact.
    for _ in 0..3 {
        let other = Heap::new(HeapConfig::default());
        let o = other.alloc(Node {
            id: 8,
            next: GcCell::new(None),
            name: "other".into(),
        });
        assert_eq!((o.id, &*o.name), (8, "other"));
        fing::collect();
    }
    assert_eq!((kept.id, &*kept.name), (7, "kept"));
    assert!(Gc::is_in_heap(&kept));
}
