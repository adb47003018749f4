//! Memory goes back to the OS: after a large structure is dropped and collected, the
//! heap's in-use bytes fall, and the process's resident set once the pages have stayed
//! free through a cycle. (A test binary of its
//! own, so that the resident set is this test's.)

#![allow(missing_docs)]

use fing::{Gc, GcCell, Heap, HeapConfig, Trace};

#[derive(Trace)]
struct Node {
    payload: [u64; 6],
    next: GcCell<Option<Gc<Node>>>,
}

#[test]
fn heap_in_use_and_rss_fall_after_a_large_structure_dies() {
    let mut c = HeapConfig::default();
    c.gogc = None;
    let h = Heap::new(c);
    let before = fing::resident_bytes().expect("/proc/self/statm");
    let head = h.alloc(Node {
        payload: [0; 6],
        next: GcCell::new(None),
    });
    let mut tail = head.clone();
    for i in 0..2_000_000u64 {
        let n = h.alloc(Node {
            payload: [i; 6],
            next: GcCell::new(None),
        });
        tail.next.set(Some(n.clone()));
        tail = n;
    }
    drop(tail);
    let grown = fing::resident_bytes().unwrap();
    let in_use = h.stats().heap_in_use;
    assert!(in_use > 150 << 20, "2M objects of 96 bytes: {in_use}");
    assert!(
        grown - before > 150 << 20,
        "RSS grew by {} MB",
        (grown - before) >> 20
    );
    drop(head);
    h.collect();
    // Pages go back once they have stayed free through a whole cycle (Go's scavenger
    // also lags the collection that freed them): the next collection gives them back.
    assert_eq!(h.stats().heap_in_use, 0);
    h.collect();
    let after = fing::resident_bytes().unwrap();
    let s = h.stats();
    assert_eq!(s.heap_in_use, 0, "{s:?}");
    assert!(
        after - before < (grown - before) / 10,
        "RSS: {} MB before, {} MB grown, {} MB after",
        before >> 20,
        grown >> 20,
        after >> 20
    );
}
