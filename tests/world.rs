//! The world lock's hazards (docs/design.md), each shown with real threads: blocked threads
//! holding handles, cell guards against collections, clones racing drops and collections,
//! and a four-thread stress run checking every structure after every collection.

#![allow(missing_docs, dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use fing::{Gc, GcCell, Heap, HeapConfig, Trace};

#[derive(Trace)]
struct Node {
    id: u64,
    check: u64,
    next: GcCell<Option<Gc<Node>>>,
}

fn mk(h: &Heap, id: u64) -> Gc<Node> {
    h.alloc(Node {
        id,
        check: id.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        next: GcCell::new(None),
    })
}

fn intact(n: &Node) -> bool {
    n.check == n.id.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn quiet_heap() -> Heap {
    let mut c = HeapConfig::default();
    c.gogc = None;
    Heap::new(c)
}

/// Runs `f` on a thread and fails (instead of hanging) if it does not finish in time.
fn within<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("{what}: deadlocked"))
}

#[test]
fn a_thread_blocked_while_holding_handles_never_holds_the_world() {
    let h = quiet_heap();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let hc = h.clone();
    let holder = thread::spawn(move || {
        let mine: Vec<Gc<Node>> = (0..1000).map(|i| mk(&hc, i)).collect();
        ready_tx.send(()).unwrap();
        go_rx.recv().unwrap(); // blocked, holding 1000 handles
        assert!(mine
            .iter()
            .enumerate()
            .all(|(i, n)| n.id == i as u64 && intact(n)));
    });
    ready_rx.recv().unwrap();
    let hc = h.clone();
    within(60, "collect while another thread blocks", move || {
        hc.collect();
        hc.collect();
    });
    assert_eq!(
        h.stats().heap_objects,
        1000,
        "the blocked thread's handles are roots"
    );
    go_tx.send(()).unwrap();
    holder.join().unwrap();
}

#[test]
#[should_panic(expected = "fing::collect: called while this thread holds a mutator section")]
fn collect_while_holding_a_cell_guard_panics_instead_of_deadlocking() {
    let h = quiet_heap();
    let n = mk(&h, 1);
    let _guard = n.next.borrow_mut();
    h.collect();
}

#[test]
fn an_allocation_triggered_collection_never_waits_for_a_guard_holder() {
    let mut c = HeapConfig::default();
    c.gogc = Some(10);
    c.min_heap = 256 << 10;
    let h = Heap::new(c);
    let cell = mk(&h, 0);
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (held_tx, held_rx) = mpsc::channel::<()>();
    let c2 = cell.clone();
    // B holds a write guard and waits for A.
    let b = thread::spawn(move || {
        let mut g = c2.next.borrow_mut();
        held_tx.send(()).unwrap();
        release_rx.recv().unwrap();
        *g = None;
    });
    held_rx.recv().unwrap();
    // A allocates far past the trigger (keeping what it allocates: garbage would be freed
    // at count zero and the heap would not grow): every automatic collection must give
    // up, not wait.
    let hc = h.clone();
    within(60, "allocation while a guard is held", move || {
        let kept: Vec<_> = (0..200_000).map(|i| mk(&hc, i)).collect();
        drop(kept);
    });
    release_tx.send(()).unwrap();
    b.join().unwrap();
    // Once the guard is gone, allocation collects again (eventually: on a loaded machine an
    // automatic collection may give up a few times).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut kept = Vec::new();
    while h.stats().num_gc == 0 && Instant::now() < deadline {
        kept.extend((0..10_000).map(|i| mk(&h, i)));
    }
    assert!(
        h.stats().num_gc > 0,
        "collections ran once the guard was gone"
    );
}

/// Hazard 1: a handle cloned out of a field while the last handle to the field's owner
/// is dropped, racing collections.
#[test]
fn clone_out_of_a_field_racing_the_drop_of_its_owner() {
    let h = quiet_heap();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let hc = h.clone();
    let collector = thread::spawn(move || {
        let mut n = 0;
        while !s2.load(Ordering::Relaxed) {
            hc.collect();
            n += 1;
        }
        n
    });
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut rounds = 0u64;
    while Instant::now() < deadline {
        let owner = mk(&h, rounds);
        owner.next.set(Some(mk(&h, rounds + 1)));
        let child = owner.next.borrow().clone().unwrap();
        drop(owner);
        // Give the collector a chance to run between the drop and the use.
        thread::yield_now();
        assert!(
            child.id == rounds + 1 && intact(&child),
            "child freed while held"
        );
        rounds += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let collections = collector.join().unwrap();
    assert!(
        rounds > 100 && collections > 1,
        "rounds {rounds}, collections {collections}"
    );
}

/// Hazard 2: a handle moved out of a `GcCell` into a local during a collection.
#[test]
fn handle_moved_out_of_a_cell_during_collections() {
    let h = quiet_heap();
    let holder = mk(&h, 0);
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let hc = h.clone();
    let collector = thread::spawn(move || {
        while !s2.load(Ordering::Relaxed) {
            hc.collect();
        }
    });
    for i in 1..20_000u64 {
        holder.next.set(Some(mk(&h, i)));
        let moved = holder.next.take().expect("just set");
        assert!(moved.id == i && intact(&moved));
    }
    stop.store(true, Ordering::Relaxed);
    collector.join().unwrap();
}

/// Four mutator threads allocate, link, clone and drop while a fifth collects; each
/// checks its whole structure after every collection it sees.
#[test]
fn stress_four_mutators_and_a_collector() {
    let mut c = HeapConfig::default();
    c.gogc = Some(50);
    c.min_heap = 1 << 20;
    let h = Heap::new(c);
    let stop = Arc::new(AtomicBool::new(false));
    let seen_gc = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for t in 0..4u64 {
        let stop = stop.clone();
        let h = h.clone();
        threads.push(thread::spawn(move || {
            let base = t << 40;
            let head = mk(&h, base);
            let mut len = 1u64;
            let mut last_gc = 0;
            let mut rounds = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Push a node at the front, sometimes cut the list in half.
                let n = mk(&h, base + len);
                n.next.set(head.next.take());
                head.next.set(Some(n));
                len += 1;
                if len.is_multiple_of(512) {
                    let mut cur = head.next.borrow().clone();
                    for _ in 0..len / 2 - 1 {
                        cur = cur.and_then(|c| c.next.borrow().clone());
                    }
                    if let Some(c) = cur {
                        c.next.set(None);
                    }
                }
                // Garbage with cycles.
                let a = mk(&h, 1);
                let b = mk(&h, 2);
                a.next.set(Some(b.clone()));
                b.next.set(Some(a));
                rounds += 1;
                let gcs = h.stats().num_gc;
                if gcs != last_gc {
                    last_gc = gcs;
                    // Walk the whole list: every node intact and in descending order.
                    let mut cur = head.next.borrow().clone();
                    let mut prev = u64::MAX;
                    while let Some(c) = cur {
                        assert!(intact(&c), "thread {t}: node {} corrupted", c.id);
                        assert!(
                            c.id >> 40 == t && c.id < prev,
                            "thread {t}: list out of order"
                        );
                        prev = c.id;
                        cur = c.next.borrow().clone();
                    }
                }
            }
            rounds
        }));
    }
    let s2 = stop.clone();
    let sg = seen_gc.clone();
    let hc = h.clone();
    let collector = thread::spawn(move || {
        while !s2.load(Ordering::Relaxed) {
            hc.collect();
            sg.fetch_add(1, Ordering::Relaxed);
            thread::sleep(Duration::from_millis(5));
        }
    });
    thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let rounds: u64 = threads
        .into_iter()
        .map(|t| t.join().expect("mutator panicked"))
        .sum();
    collector.join().unwrap();
    assert!(rounds > 1000, "rounds {rounds}");
    assert!(h.stats().num_gc >= 10, "{:?}", h.stats());
    h.collect();
    assert_eq!(
        h.stats().heap_objects,
        0,
        "every thread's structures are garbage now"
    );
}

/// A handle dropped on another thread, which then blocks without allocating or exiting,
/// is seen by the next collection: the drop sits in that thread's ring of deferred drops,
/// and every collection applies every ring before it counts.
#[test]
fn a_drop_deferred_on_a_blocked_thread_is_seen_by_the_next_collection() {
    let h = quiet_heap();
    let before = h.stats().heap_objects;
    let list = mk(&h, 1);
    list.next.set(Some(mk(&h, 2)));
    let (dropped_tx, dropped_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let t = thread::spawn(move || {
        drop(list);
        dropped_tx.send(()).unwrap();
        done_rx.recv().unwrap(); // blocked, holding its unapplied drop
    });
    dropped_rx.recv().unwrap();
    h.collect();
    assert_eq!(h.stats().heap_objects, before, "both nodes freed");
    done_tx.send(()).unwrap();
    t.join().unwrap();
}

/// `stats()` runs outside sections, while collections free spans: it must only ever read
/// spans still in use (a freed span read here showed up as a heap of petabytes in the
/// soak; AddressSanitizer reports the read in `.ci/deep`).
#[test]
fn stats_read_during_collections_sees_only_live_spans() {
    let h = quiet_heap();
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let hc = h.clone();
    let reader = thread::spawn(move || {
        let mut reads = 0u64;
        while !d.load(Ordering::Relaxed) {
            let s = hc.stats();
            assert!(
                s.heap_in_use < 1 << 30,
                "heap in use {} bytes",
                s.heap_in_use
            );
            reads += 1;
        }
        reads
    });
    for round in 0..30u64 {
        // Several spans' worth, all garbage by the collection: their spans are freed.
        let v: Vec<Gc<Node>> = (0..20_000).map(|i| mk(&h, round * 100_000 + i)).collect();
        drop(v);
        h.collect();
    }
    done.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
}
